"""PMML models through the real server: golden fixtures (exported by
sklearn2pmml or hand-written, expected values computed by JPMML, see
tests/fixtures/pmml) served from a repository and queried with tritonclient
(HTTP binary and gRPC, FP64/FP32/BYTES inputs, one input per PMML field),
KServe v1 `instances`, outputs shaped as KServe's pmmlserver answers (v1: a
record per row keyed by the target and output field names; v2: one output
per field), JSON null as a missing value, the optional `output-0` and
`probabilities` outputs, and `method: predict_proba` (per model and per
request)."""

import json
import shutil

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from conftest import ROOT, Server

PMML = ROOT / "tests" / "fixtures" / "pmml"
MANIFEST = json.loads((PMML / "manifest.json").read_text())
SPECS = {m["name"]: m for m in MANIFEST["models"]}


def columns(name, which):
    """{column: values} of a fixture's inputs or JPMML results."""
    spec = SPECS[name]
    n = spec["rows"]
    data = np.fromfile(PMML / name / f"{which}.f64", dtype="<f8")
    out = {}
    for c in spec["inputs" if which == "inputs" else "expected"]:
        if c["type"] == "f64":
            out[c["name"]] = data[c["index"] * n:(c["index"] + 1) * n]
        else:
            out[c["name"]] = np.array(c["values"], dtype=object)
    return out


def complete_rows(name):
    """Rows with no missing input (JSON cannot carry NaN) and a prediction."""
    ins = columns(name, "inputs")
    exp = columns(name, "expected")
    ok = np.ones(SPECS[name]["rows"], dtype=bool)
    for v in ins.values():
        ok &= np.array([x is not None and not (isinstance(x, float) and np.isnan(x)) for x in v])
    for v in exp.values():
        if v.dtype != object:
            ok &= ~np.isnan(v)
    return np.flatnonzero(ok)


@pytest.fixture(scope="module")
def pmml_server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("pmml-repo")
    for served, fixture, target in [("pmml_rf", "rf_iris", "model.pmml"),
                                    ("pmml_cat", "cat_logreg", "pipeline.pmml"),
                                    ("pmml_gbr", "gbr_diabetes", "model.pmml"),
                                    ("pmml_proba", "gbc_iris", "model.pmml"),
                                    ("pmml_gbc", "gbc_iris", "model.pmml"),
                                    ("pmml_scorecard", "hw_scorecard", "scorecard.pmml")]:
        d = repo / served / "1"
        d.mkdir(parents=True)
        shutil.copy(PMML / fixture / "model.pmml", d / target)
    (repo / "pmml_proba" / "model.yaml").write_text("parameters:\n  method: predict_proba\n")
    s = Server(["--model_repository", str(repo), "--max_batch_size", "4096"])
    yield s
    s.stop()


IRIS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


def test_metadata(pmml_server):
    meta = requests.get(f"{pmml_server.url}/v2/models/pmml_rf").json()
    assert meta["platform"] == "pmml"
    assert [i["name"] for i in meta["inputs"]] == IRIS
    assert all(i["datatype"] == "FP64" and i["shape"] == [-1] for i in meta["inputs"])
    outs = {o["name"]: o for o in meta["outputs"]}
    assert outs["output-0"]["datatype"] == "INT64"
    assert outs["probabilities"]["shape"] == [-1, 3]
    assert "probability(0)" in outs
    cat = requests.get(f"{pmml_server.url}/v2/models/pmml_cat").json()
    assert {i["name"]: i["datatype"] for i in cat["inputs"]} == {"color": "BYTES", "size": "FP64", "w": "FP64"}
    assert {o["name"]: o["datatype"] for o in cat["outputs"]}["output-0"] == "BYTES"
    assert "loaded PMML model" in pmml_server.log()


def test_http_binary_all_rows_with_missing(pmml_server):
    # Every fixture row, missing values (NaN) and threshold rows included.
    # Rows with a missing input have no prediction: NaN probabilities. (With
    # INT64 labels such a row would fail the request, so this model is
    # served with method: predict_proba.)
    ins = columns("gbc_iris", "inputs")
    exp = columns("gbc_iris", "expected")
    c = httpclient.InferenceServerClient(pmml_server.http)
    inputs = []
    for name in IRIS:
        x = ins[name] if name != "petal width (cm)" else ins[name].astype(np.float32)
        inp = httpclient.InferInput(name, [len(x)], "FP64" if x.dtype == np.float64 else "FP32")
        inp.set_data_from_numpy(x, binary_data=True)
        inputs.append(inp)
    outs = [httpclient.InferRequestedOutput("output-0", binary_data=True),
            httpclient.InferRequestedOutput("probability(1)", binary_data=True)]
    res = c.infer("pmml_proba", inputs, outputs=outs)
    want = np.stack([exp[f"probability({k})"] for k in range(3)], axis=1)
    assert np.isnan(want).any()
    np.testing.assert_allclose(res.as_numpy("output-0"), want, rtol=1e-6, atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(res.as_numpy("probability(1)"), exp["probability(1)"], rtol=1e-6, equal_nan=True)


def test_grpc_labels_on_thresholds(pmml_server):
    idx = complete_rows("rf_iris")
    ins = columns("rf_iris", "inputs")
    exp = columns("rf_iris", "expected")
    c = grpcclient.InferenceServerClient(pmml_server.grpc)
    inputs = []
    for name in IRIS:
        inp = grpcclient.InferInput(name, [len(idx)], "FP64")
        inp.set_data_from_numpy(ins[name][idx])
        inputs.append(inp)
    res = c.infer("pmml_rf", inputs)
    # KServe's shape: one output per field, the target then the output fields.
    names = [o.name for o in res.get_response().outputs]
    assert names == ["target", "probability(0)", "probability(1)", "probability(2)"]
    assert res.as_numpy("target").dtype == np.int64
    np.testing.assert_array_equal(res.as_numpy("target"), exp["target"][idx].astype(np.int64))
    np.testing.assert_allclose(res.as_numpy("probability(2)"), exp["probability(2)"][idx], rtol=1e-6)
    # output-0 (the label) on request, as before.
    res = c.infer("pmml_rf", inputs, outputs=[grpcclient.InferRequestedOutput("output-0")])
    np.testing.assert_array_equal(res.as_numpy("output-0"), exp["target"][idx].astype(np.int64))


def test_grpc_bytes_inputs_and_labels(pmml_server):
    ins = columns("cat_logreg", "inputs")
    exp = columns("cat_logreg", "expected")
    idx = complete_rows("cat_logreg")
    c = grpcclient.InferenceServerClient(pmml_server.grpc)
    color = grpcclient.InferInput("color", [len(idx)], "BYTES")
    color.set_data_from_numpy(np.array([v.encode() for v in ins["color"][idx]], dtype=np.object_))
    size = grpcclient.InferInput("size", [len(idx)], "FP64")
    size.set_data_from_numpy(ins["size"][idx])
    w = grpcclient.InferInput("w", [len(idx)], "FP32")
    w.set_data_from_numpy(ins["w"][idx].astype(np.float32))
    res = c.infer("pmml_cat", [color, size, w], outputs=[grpcclient.InferRequestedOutput("output-0"),
                                                         grpcclient.InferRequestedOutput("probabilities")])
    labels = [b.decode() for b in res.as_numpy("output-0")]
    assert labels == list(exp["y"][idx])
    want = np.stack([exp[f"probability({k})"][idx] for k in ("maybe", "no", "yes")], axis=1)
    np.testing.assert_allclose(res.as_numpy("probabilities"), want, rtol=1e-6)


def test_v1_named_instances(pmml_server):
    idx = complete_rows("gbr_diabetes")[:40]
    ins = columns("gbr_diabetes", "inputs")
    exp = columns("gbr_diabetes", "expected")
    body = {"instances": [{k: float(v[i]) for k, v in ins.items()} for i in idx]}
    r = requests.post(f"{pmml_server.url}/v1/models/pmml_gbr:predict", json=body)
    assert r.status_code == 200, r.text
    # A record per row keyed by the target field, even with one field.
    preds = r.json()["predictions"]
    assert all(list(p) == ["progression"] for p in preds)
    np.testing.assert_allclose(np.array([p["progression"] for p in preds]), exp["progression"][idx], rtol=1e-6)
    # String fields in v1 instances.
    idx = complete_rows("cat_logreg")[:20]
    ins = columns("cat_logreg", "inputs")
    exp = columns("cat_logreg", "expected")
    body = {"instances": [{"color": ins["color"][i], "size": float(ins["size"][i]), "w": float(ins["w"][i])} for i in idx]}
    r = requests.post(f"{pmml_server.url}/v1/models/pmml_cat:predict", json=body)
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert [p["y"] for p in preds] == list(exp["y"][idx])
    for k in ("maybe", "no", "yes"):
        np.testing.assert_allclose([p[f"probability({k})"] for p in preds], exp[f"probability({k})"][idx], rtol=1e-6)


def test_predict_proba_parameter(pmml_server):
    idx = complete_rows("gbc_iris")
    ins = columns("gbc_iris", "inputs")
    exp = columns("gbc_iris", "expected")
    body = {"inputs": [{"name": n, "datatype": "FP64", "shape": [len(idx)], "data": ins[n][idx].tolist()} for n in IRIS]}
    r = requests.post(f"{pmml_server.url}/v2/models/pmml_proba/infer", json=body)
    assert r.status_code == 200, r.text
    out = r.json()["outputs"]
    assert [o["name"] for o in out] == ["output-0"]
    assert out[0]["shape"] == [len(idx), 3]
    want = np.stack([exp[f"probability({k})"][idx] for k in range(3)], axis=1)
    np.testing.assert_allclose(np.array(out[0]["data"]).reshape(-1, 3), want, rtol=1e-6)


def test_scorecard_reason_codes(pmml_server):
    idx = complete_rows("hw_scorecard")
    ins = columns("hw_scorecard", "inputs")
    exp = columns("hw_scorecard", "expected")
    c = httpclient.InferenceServerClient(pmml_server.http)
    inputs = []
    for name in ("age", "income"):
        inp = httpclient.InferInput(name, [len(idx)], "FP64")
        inp.set_data_from_numpy(ins[name][idx], binary_data=True)
        inputs.append(inp)
    st = httpclient.InferInput("status", [len(idx)], "BYTES")
    st.set_data_from_numpy(np.array([s.encode() for s in ins["status"][idx]], dtype=np.object_), binary_data=True)
    inputs.append(st)
    outs = [httpclient.InferRequestedOutput(n, binary_data=True) for n in ("output-0", "Reason Code 1", "Reason Code 2")]
    res = c.infer("pmml_scorecard", inputs, outputs=outs)
    np.testing.assert_allclose(res.as_numpy("output-0"), exp["score"][idx], rtol=1e-9)
    got = [b.decode() or None for b in res.as_numpy("Reason Code 1")]
    assert got == list(exp["Reason Code 1"][idx])


def test_bad_requests(pmml_server):
    url = f"{pmml_server.url}/v2/models/pmml_rf/infer"
    # A value that is not a number for a numeric field: invalid, and the
    # field's invalidValueTreatment is returnInvalid.
    r = requests.post(url, json={"inputs": [{"name": "sepal length (cm)", "datatype": "BYTES", "shape": [1], "data": ["abc"]}]})
    assert r.status_code == 400 and "sepal length (cm)" in r.json()["error"]
    r = requests.post(url, json={"inputs": [{"name": "sepal length", "datatype": "FP64", "shape": [1], "data": [1.0]}]})
    assert r.status_code == 400 and "unexpected input" in r.json()["error"]
    r = requests.post(url, json={"inputs": [{"name": IRIS[0], "datatype": "FP64", "shape": [1, 1], "data": [1.0]}]})
    assert r.status_code == 400


def test_kserve_shape_records_ints_and_null(pmml_server):
    """KServe pmmlserver's answer: v1 a record per row keyed by the target
    and output field names (integer targets stay numbers), v2 one output per
    field; JSON null is a missing value in v1 rows and v2 FP64 data."""
    ins = columns("gbc_iris", "inputs")
    exp = columns("gbc_iris", "expected")
    n = SPECS["gbc_iris"]["rows"]
    complete = complete_rows("gbc_iris")
    url = pmml_server.url
    # Complete rows: the integer target is an int in JSON.
    body = {"instances": [{k: float(ins[k][i]) for k in IRIS} for i in complete]}
    r = requests.post(f"{url}/v1/models/pmml_gbc:predict", json=body)
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert list(preds[0]) == ["target", "probability(0)", "probability(1)", "probability(2)"]
    assert all(type(p["target"]) is int for p in preds)
    assert [p["target"] for p in preds] == exp["target"][complete].astype(int).tolist()
    # Every row, missing values sent as null: rows JPMML gives no
    # prediction for answer null.
    body = {"instances": [{k: (None if np.isnan(ins[k][i]) else float(ins[k][i])) for k in IRIS}
                          for i in range(n)]}
    assert any(v is None for row in body["instances"] for v in row.values())
    r = requests.post(f"{url}/v1/models/pmml_gbc:predict", json=body)
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    for name in ("target", "probability(0)", "probability(2)"):
        got = np.array([np.nan if p[name] is None else p[name] for p in preds], dtype=float)
        np.testing.assert_allclose(got, exp[name], rtol=1e-6, atol=1e-12, equal_nan=True)
    # v2 JSON: FP64 data with null; one output per field.
    body = {"inputs": [{"name": k, "datatype": "FP64", "shape": [n],
                        "data": [None if np.isnan(v) else float(v) for v in ins[k]]} for k in IRIS]}
    r = requests.post(f"{url}/v2/models/pmml_gbc/infer", json=body)
    assert r.status_code == 200, r.text
    outs = {o["name"]: o for o in r.json()["outputs"]}
    assert list(outs) == ["target", "probability(0)", "probability(1)", "probability(2)"]
    assert outs["target"]["datatype"] == "FP64"  # a missing row turns the INT64 column float, as pandas does
    got = np.array([np.nan if v is None else v for v in outs["probability(1)"]["data"]], dtype=float)
    np.testing.assert_allclose(got, exp["probability(1)"], rtol=1e-6, atol=1e-12, equal_nan=True)
    # Per request, probabilities instead (and back for a predict_proba model).
    body["parameters"] = {"method": "predict_proba"}
    r = requests.post(f"{url}/v2/models/pmml_gbc/infer", json=body)
    out = r.json()["outputs"]
    assert [(o["name"], o["shape"]) for o in out] == [("output-0", [n, 3])]
    body["parameters"] = {"method": "predict"}
    r = requests.post(f"{url}/v2/models/pmml_proba/infer", json=body)
    assert [o["name"] for o in r.json()["outputs"]][0] == "target"

"""LightGBM models through the real server: golden fixtures (trained and
predicted by the `lightgbm` package, see tests/fixtures/lightgbm) served from
a repository, queried with tritonclient (HTTP binary and gRPC), with FP32 and
FP64 inputs, the optional `margin` output, KServe v1 `instances`, and the
`missing` parameter."""

import json
import shutil

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from conftest import ROOT, Server

LGB = ROOT / "tests" / "fixtures" / "lightgbm"
MANIFEST = json.loads((LGB / "manifest.json").read_text())
SPECS = {m["name"]: m for m in MANIFEST["models"]}


def rows(dataset):
    d = MANIFEST["datasets"][dataset]
    return np.fromfile(LGB / d["file"], dtype="<f8").reshape(d["rows"], d["cols"])


def expected(name, what="output"):
    k = SPECS[name]["outputs"]
    a = np.fromfile(LGB / name / f"{what}.f64", dtype="<f8")
    return a if k == 1 else a.reshape(-1, k)


@pytest.fixture(scope="module")
def lgb_server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("lgb-repo")
    # multiclass as model.txt; early stopping as model.bst (KServe lgbserver's
    # name, also XGBoost's: detected by content); categorical under another
    # *.txt name; regression with a configured missing value.
    for served, fixture, target in [("lgb_multiclass", "multiclass", "model.txt"),
                                    ("lgb_bst", "early_stopping", "model.bst"),
                                    ("lgb_cat", "categorical_binary", "booster.txt"),
                                    ("lgb_missing", "regression", "model.txt"),
                                    ("lgb_pandas", "pandas_categorical", "model.txt")]:
        d = repo / served / "1"
        d.mkdir(parents=True)
        shutil.copy(LGB / fixture / SPECS[fixture]["file"], d / target)
    (repo / "lgb_missing" / "model.yaml").write_text('parameters:\n  missing: "-999"\n')
    s = Server(["--model_repository", str(repo), "--max_batch_size", "4096"])
    yield s
    s.stop()


def test_metadata(lgb_server):
    meta = requests.get(f"{lgb_server.url}/v2/models/lgb_multiclass").json()
    assert meta["platform"] == "lightgbm"
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP32", "shape": [-1, 10]}]
    outs = {o["name"]: o for o in meta["outputs"]}
    assert outs["output-0"]["datatype"] == "FP64" and outs["output-0"]["shape"] == [-1, 4]
    assert outs["margin"]["shape"] == [-1, 4]
    assert "loaded LightGBM model" in lgb_server.log() and "income" in lgb_server.log()
    assert "income" in meta["parameters"]["feature_names"]


@pytest.mark.parametrize("model,fixture", [("lgb_multiclass", "multiclass"), ("lgb_bst", "early_stopping"),
                                           ("lgb_cat", "categorical_binary")])
def test_http_binary_fp32(lgb_server, model, fixture):
    x = rows(SPECS[fixture]["dataset"]).astype(np.float32)
    c = httpclient.InferenceServerClient(lgb_server.http)
    inp = httpclient.InferInput("input-0", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=True)
    res = c.infer(model, [inp])
    names = [o["name"] for o in res.get_response()["outputs"]]
    assert names == ["output-0"], "margin is returned only on request"
    np.testing.assert_allclose(res.as_numpy("output-0"), expected(fixture), rtol=1e-5, atol=1e-9)


def test_http_margin_and_fp64(lgb_server):
    x = rows("num")
    c = httpclient.InferenceServerClient(lgb_server.http)
    inp = httpclient.InferInput("input-0", list(x.shape), "FP64")
    inp.set_data_from_numpy(x, binary_data=True)
    outs = [httpclient.InferRequestedOutput("margin", binary_data=True),
            httpclient.InferRequestedOutput("output-0", binary_data=True)]
    res = c.infer("lgb_multiclass", [inp], outputs=outs)
    assert res.as_numpy("margin").dtype == np.float64
    np.testing.assert_allclose(res.as_numpy("margin"), expected("multiclass", "margin"), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(res.as_numpy("output-0"), expected("multiclass"), rtol=1e-6, atol=1e-9)


def test_grpc_fp32_and_margin(lgb_server):
    x = rows("cat").astype(np.float32)
    c = grpcclient.InferenceServerClient(lgb_server.grpc)
    inp = grpcclient.InferInput("input-0", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    outs = [grpcclient.InferRequestedOutput("output-0"), grpcclient.InferRequestedOutput("margin")]
    res = c.infer("lgb_cat", [inp], outputs=outs)
    np.testing.assert_allclose(res.as_numpy("output-0"), expected("categorical_binary"), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(res.as_numpy("margin"), expected("categorical_binary", "margin"), rtol=1e-5, atol=1e-9)
    meta = c.get_model_metadata("lgb_cat", as_json=True)
    assert meta["platform"] == "lightgbm"


def test_grpc_fp64_single_row(lgb_server):
    x = rows("num")
    c = grpcclient.InferenceServerClient(lgb_server.grpc)
    for i in (0, 200, 202):  # ordinary, all-NaN and all-inf rows
        inp = grpcclient.InferInput("input-0", [1, 10], "FP64")
        inp.set_data_from_numpy(x[i:i + 1])
        res = c.infer("lgb_bst", [inp])
        np.testing.assert_allclose(res.as_numpy("output-0"), expected("early_stopping")[i:i + 1], rtol=1e-6, atol=1e-9)


def test_v1_instances(lgb_server):
    x = rows("num")
    finite = np.isfinite(x).all(axis=1)
    idx = np.flatnonzero(finite)[:50]
    body = {"instances": x[idx].tolist()}
    r = requests.post(f"{lgb_server.url}/v1/models/lgb_multiclass:predict", json=body)
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.array(r.json()["predictions"]), expected("multiclass")[idx], rtol=1e-5, atol=1e-9)
    r = requests.post(f"{lgb_server.url}/v1/models/lgb_bst:predict", json=body)
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.array(r.json()["predictions"]).reshape(-1), expected("early_stopping")[idx],
                               rtol=1e-5, atol=1e-9)


def test_configured_missing_value(lgb_server):
    x = rows("num")
    marked = np.where(np.isnan(x), -999.0, x).astype(np.float32)
    c = httpclient.InferenceServerClient(lgb_server.http)
    inp = httpclient.InferInput("input-0", list(marked.shape), "FP32")
    inp.set_data_from_numpy(marked, binary_data=True)
    res = c.infer("lgb_missing", [inp])
    np.testing.assert_allclose(res.as_numpy("output-0"), expected("regression"), rtol=1e-5, atol=1e-9)


def test_bad_requests(lgb_server):
    c = requests.post(f"{lgb_server.url}/v2/models/lgb_multiclass/infer", json={
        "inputs": [{"name": "input-0", "datatype": "FP32", "shape": [1, 9], "data": [0.0] * 9}]})
    assert c.status_code == 400 and "input-0" in c.json()["error"]
    c = requests.post(f"{lgb_server.url}/v2/models/lgb_multiclass/infer", json={
        "inputs": [{"name": "input-0", "datatype": "INT32", "shape": [1, 10], "data": [0] * 10}]})
    assert c.status_code == 400


def test_rows_and_inputs_by_feature_name(lgb_server):
    """v1 rows keyed by feature name and v2 one column per feature map onto the model's columns
    (in the model's feature order, whatever order the client uses); absent features are missing."""
    names = requests.get(f"{lgb_server.url}/v2/models/lgb_multiclass").json()["parameters"]["feature_names"]
    x = rows("num")
    idx = np.flatnonzero(np.isfinite(x).all(axis=1))[:20]
    want = expected("multiclass")[idx]
    records = [dict(reversed(list(zip(names, map(float, row))))) for row in x[idx]]
    r = requests.post(f"{lgb_server.url}/v1/models/lgb_multiclass:predict", json={"instances": records})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.array(r.json()["predictions"]), want, rtol=1e-6, atol=1e-9)
    cols = [{"name": n, "shape": [len(idx)], "datatype": "FP64", "data": x[idx, j].tolist()}
            for j, n in reversed(list(enumerate(names)))]
    r = requests.post(f"{lgb_server.url}/v2/models/lgb_multiclass/infer", json={"inputs": cols})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.array(r.json()["outputs"][0]["data"]).reshape(want.shape), want, rtol=1e-6, atol=1e-9)
    bad = requests.post(f"{lgb_server.url}/v2/models/lgb_multiclass/infer",
                        json={"inputs": [{"name": "no_such_feature", "shape": [1], "datatype": "FP64", "data": [1.0]}]})
    assert bad.status_code == 400 and "one column per feature" in bad.json()["error"]


def test_categories_by_value(lgb_server):
    """pandas `category` columns sent as strings map to LightGBM's category codes."""
    meta = requests.get(f"{lgb_server.url}/v2/models/lgb_pandas").json()["parameters"]
    names, cats = meta["feature_names"], meta["categorical_values"]
    assert set(cats) == {"color", "shape"}
    x = rows("pandas")
    idx = np.flatnonzero(np.isfinite(x).all(axis=1) & (x[:, 0] >= 0) & (x[:, 2] >= 0))[:30]
    want = expected("pandas_categorical")[idx]
    records = []
    for row in x[idx]:
        rec = {}
        for j, n in enumerate(names):
            rec[n] = cats[n][int(row[j])] if n in cats else float(row[j])
        records.append(rec)
    r = requests.post(f"{lgb_server.url}/v1/models/lgb_pandas:predict", json={"instances": records})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.array(r.json()["predictions"]).reshape(-1), want, rtol=1e-6, atol=1e-9)
    # An unknown category is missing (NaN), as in LightGBM's predict(DataFrame).
    rec = dict(records[0], color="no-such-colour")
    assert requests.post(f"{lgb_server.url}/v1/models/lgb_pandas:predict", json={"instances": [rec]}).status_code == 200

"""scikit-learn models through the real server: golden fixtures (fitted and
predicted by the real `scikit-learn`, see tests/fixtures/sklearn) served from
a repository in joblib, pickle and skops files, queried with tritonclient
(HTTP binary and gRPC), KServe v1 `instances`, the optional outputs, the
`method` parameter (per model and per request), KServe's PREDICT_PROBA
switch (`--predict_proba`, `PREDICT_PROBA=true`), MLPs, per-column
DataFrame inputs with BYTES columns, and a malicious pickle that must be
refused without running anything."""

import json
import os
import shutil

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from conftest import ROOT, Server

SK = ROOT / "tests" / "fixtures" / "sklearn"
V = "v1.9"
MANIFEST = json.loads((SK / f"manifest-{V}.json").read_text())
SPECS = {m["name"]: m for m in MANIFEST["models"]}
MARKER = "/tmp/ferroserve-pwned"


def rows(name="x"):
    return np.fromfile(SK / "data" / f"{name}.f64", dtype="<f8").reshape(-1, 6)


def expected(model, out="output-0"):
    spec = SPECS[model]["outputs"][out]
    d = SK / V / model
    if spec["datatype"] == "FP64":
        a = np.fromfile(d / f"{out}.f64", dtype="<f8")
    elif spec["datatype"] == "INT64":
        a = np.fromfile(d / f"{out}.i64", dtype="<i8")
    else:
        a = np.array(json.loads((d / f"{out}.json").read_text()), dtype=object)
    return a.reshape(spec["shape"])


@pytest.fixture(scope="module")
def skl_server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("skl-repo")
    for served, fixture, src, target in [
        ("skl_logreg", "logreg_binary", "model.joblib", "model.joblib"),
        ("skl_logreg_pkl", "logreg_binary", "pickle5/model.pkl", "model.pkl"),
        ("skl_logreg_xz", "logreg_binary", "xz/model.joblib", "classifier.joblib"),
        ("skl_multi", "logreg_multinomial", "model.joblib", "model.joblib"),
        ("skl_rf_skops", "rf_clf", "skops/model.skops", "forest.skops"),
        ("skl_rf_proba", "rf_clf", "model.joblib", "model.joblib"),
        ("skl_hgb", "hgb_reg", "model.joblib", "model.joblib"),
        ("skl_ct", "pipe_ct_mixed", "model.joblib", "model.joblib"),
        ("skl_hgb_cat", "hgb_cat_pandas", "model.joblib", "model.joblib"),
        ("skl_pca", "pca", "model.joblib", "model.joblib"),
        ("skl_mlp", "mlp_clf", "model.joblib", "model.joblib"),
        ("skl_mlp_reg", "mlp_reg", "model.joblib", "model.joblib"),
    ]:
        d = repo / served / "1"
        d.mkdir(parents=True)
        shutil.copy(SK / V / fixture / src, d / target)
        (repo / served / "model.yaml").write_text("format: sklearn\n")
    (repo / "skl_rf_proba" / "model.yaml").write_text("format: sklearn\nparameters:\n  method: predict_proba\n")
    if os.path.exists(MARKER):
        os.remove(MARKER)
    s = Server(["--model_repository", str(repo)])
    yield s
    s.stop()


def test_metadata(skl_server):
    meta = requests.get(f"{skl_server.url}/v2/models/skl_multi").json()
    assert meta["platform"] == "sklearn"
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 6]}]
    outs = {o["name"]: o for o in meta["outputs"]}
    assert outs["output-0"]["datatype"] == "BYTES" and outs["output-0"]["shape"] == [-1]
    assert outs["predict_proba"]["shape"] == [-1, 3]
    meta = requests.get(f"{skl_server.url}/v2/models/skl_ct").json()
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [
        ("a", "FP64"), ("b", "FP64"), ("c", "FP64"), ("color", "BYTES"), ("size", "BYTES")]
    assert "loaded scikit-learn model" in skl_server.log()


@pytest.mark.parametrize("fixture", ["os_system.pkl", "builtins_eval.pkl", "subprocess_popen.pkl",
                                     "inside_model.joblib"])
def test_malicious_pickle_refused(tmp_path, fixture):
    if os.path.exists(MARKER):
        os.remove(MARKER)
    d = tmp_path / "evil"
    d.mkdir()
    shutil.copy(SK / "malicious" / fixture, d / ("model.pkl" if fixture.endswith(".pkl") else "model.joblib"))
    s = Server(["--model_dir", str(d), "--model_name", "evil"], expect_ready=False)
    try:
        s.wait_exit(60)
    finally:
        s.stop()
    s._reader.join(10)  # the log reader may still be draining stderr
    assert s.proc.returncode != 0
    log = s.log()
    assert "refusing pickle global" in log, log
    assert any(n in log for n in ("posix.system", "os.system", "builtins.eval", "subprocess.Popen")), log
    assert not os.path.exists(MARKER), "the pickle ran code"


@pytest.mark.parametrize("model", ["skl_logreg", "skl_logreg_pkl", "skl_logreg_xz"])
def test_http_binary_with_optional_outputs(skl_server, model):
    x = rows()
    c = httpclient.InferenceServerClient(skl_server.http)
    inp = httpclient.InferInput("input-0", list(x.shape), "FP64")
    inp.set_data_from_numpy(x, binary_data=True)
    res = c.infer(model, [inp])
    assert [o["name"] for o in res.get_response()["outputs"]] == ["output-0"]
    np.testing.assert_array_equal(res.as_numpy("output-0"), expected("logreg_binary"))
    outs = [httpclient.InferRequestedOutput(n, binary_data=True) for n in ("predict_proba", "decision_function")]
    res = c.infer(model, [inp], outputs=outs)
    np.testing.assert_allclose(res.as_numpy("predict_proba"), expected("logreg_binary", "predict_proba"), rtol=1e-6)
    np.testing.assert_allclose(res.as_numpy("decision_function"), expected("logreg_binary", "decision_function"),
                               rtol=1e-6, atol=1e-12)


def test_grpc_string_labels_fp32(skl_server):
    x = rows().astype(np.float32)
    c = grpcclient.InferenceServerClient(skl_server.grpc)
    inp = grpcclient.InferInput("input-0", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    res = c.infer("skl_multi", [inp])
    got = [v.decode() for v in res.as_numpy("output-0")]
    assert got == list(expected("logreg_multinomial"))


def test_method_parameter_and_skops(skl_server):
    x = rows()
    c = httpclient.InferenceServerClient(skl_server.http)
    inp = httpclient.InferInput("input-0", list(x.shape), "FP64")
    inp.set_data_from_numpy(x, binary_data=True)
    res = c.infer("skl_rf_proba", [inp])
    np.testing.assert_allclose(res.as_numpy("output-0"), expected("rf_clf", "predict_proba"), rtol=1e-9)
    res = c.infer("skl_rf_skops", [inp])
    np.testing.assert_array_equal(res.as_numpy("output-0"), expected("rf_clf"))
    res = c.infer("skl_pca", [inp])
    np.testing.assert_allclose(res.as_numpy("output-0"), expected("pca"), rtol=1e-6, atol=1e-9)


def dataframe_inputs():
    num = np.fromfile(SK / "data" / "mixed_num.f64", dtype="<f8").reshape(-1, 3)
    strs = np.array(json.loads((SK / "data" / "mixed_str.json").read_text()), dtype=object)
    inputs = []
    for j, name in enumerate("abc"):
        i = httpclient.InferInput(name, [len(num)], "FP64")
        i.set_data_from_numpy(num[:, j].copy(), binary_data=True)
        inputs.append(i)
    for j, name in enumerate(["color", "size"]):
        i = httpclient.InferInput(name, [len(num)], "BYTES")
        i.set_data_from_numpy(strs[:, j].copy(), binary_data=False)
        inputs.append(i)
    return inputs


def test_dataframe_columns(skl_server):
    c = httpclient.InferenceServerClient(skl_server.http)
    res = c.infer("skl_ct", dataframe_inputs(), outputs=[httpclient.InferRequestedOutput("output-0"),
                                                         httpclient.InferRequestedOutput("predict_proba")])
    assert [v.decode() for v in res.as_numpy("output-0")] == list(expected("pipe_ct_mixed"))
    np.testing.assert_allclose(res.as_numpy("predict_proba"), expected("pipe_ct_mixed", "predict_proba"), rtol=1e-6)
    # HistGradientBoosting on pandas `category` columns (its own fitted preprocessor)
    res = c.infer("skl_hgb_cat", dataframe_inputs())
    np.testing.assert_allclose(res.as_numpy("output-0"), expected("hgb_cat_pandas"), rtol=1e-9)


def test_v1_instances(skl_server):
    x = rows("x_nan")
    idx = np.flatnonzero(np.isfinite(x).all(axis=1))  # JSON has no NaN: rows without missing values
    r = requests.post(f"{skl_server.url}/v1/models/skl_hgb:predict", json={"instances": x[idx].tolist()})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.array(r.json()["predictions"]), expected("hgb_reg")[idx], rtol=1e-6)
    x = rows()
    r = requests.post(f"{skl_server.url}/v1/models/skl_multi:predict", json={"instances": x.tolist()})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == list(expected("logreg_multinomial"))


def test_bad_requests(skl_server):
    r = requests.post(f"{skl_server.url}/v2/models/skl_logreg/infer", json={
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 5], "data": [0.0] * 5}]})
    assert r.status_code == 400 and "input-0" in r.json()["error"]
    r = requests.post(f"{skl_server.url}/v2/models/skl_ct/infer", json={"inputs": [
        {"name": "a", "datatype": "FP64", "shape": [1], "data": [0.0]},
        {"name": "b", "datatype": "FP64", "shape": [1], "data": [0.0]},
        {"name": "c", "datatype": "FP64", "shape": [1], "data": [0.0]},
        {"name": "color", "datatype": "BYTES", "shape": [1], "data": ["purple"]},
        {"name": "size", "datatype": "BYTES", "shape": [1], "data": ["XL"]}]})
    # OneHotEncoder ignores unknown colors; OrdinalEncoder(handle_unknown='error') refuses the size
    assert r.status_code == 400 and "XL" in r.json()["error"], r.text


def v2_body(x, parameters=None):
    body = {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": list(x.shape),
                        "data": x.ravel().tolist()}]}
    if parameters:
        body["parameters"] = parameters
    return body


def test_mlp_parity(skl_server):
    x = rows()
    r = requests.post(f"{skl_server.url}/v1/models/skl_mlp:predict", json={"instances": x.tolist()})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == list(expected("mlp_clf"))
    r = requests.post(f"{skl_server.url}/v2/models/skl_mlp_reg/infer", json=v2_body(x))
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["outputs"][0]["data"], expected("mlp_reg"), rtol=1e-6)


def test_request_method_parameter(skl_server):
    x = rows()
    url = f"{skl_server.url}/v2/models/skl_mlp/infer"
    r = requests.post(url, json=v2_body(x, {"method": "predict_proba"}))
    assert r.status_code == 200, r.text
    out = r.json()["outputs"]
    assert [(o["name"], o["datatype"], o["shape"]) for o in out] == [("output-0", "FP64", [60, 3])]
    np.testing.assert_allclose(np.array(out[0]["data"]).reshape(60, 3), expected("mlp_clf", "predict_proba"),
                               rtol=1e-6)
    # The next request without the parameter gets labels again.
    r = requests.post(url, json=v2_body(x))
    assert r.json()["outputs"][0]["data"] == list(expected("mlp_clf"))
    # A model served with method: predict_proba switches back per request.
    r = requests.post(f"{skl_server.url}/v2/models/skl_rf_proba/infer", json=v2_body(x, {"method": "predict"}))
    assert r.json()["outputs"][0]["data"] == expected("rf_clf").tolist()
    # gRPC and tritonclient carry request parameters too.
    c = grpcclient.InferenceServerClient(skl_server.grpc)
    inp = grpcclient.InferInput("input-0", list(x.shape), "FP64")
    inp.set_data_from_numpy(x)
    res = c.infer("skl_mlp", [inp], parameters={"method": "predict_proba"})
    np.testing.assert_allclose(res.as_numpy("output-0"), expected("mlp_clf", "predict_proba"), rtol=1e-6)
    # A method the model lacks, or an unknown one, is a 400 naming what it has.
    r = requests.post(f"{skl_server.url}/v2/models/skl_mlp_reg/infer", json=v2_body(x, {"method": "predict_proba"}))
    assert r.status_code == 400 and "available: predict" in r.json()["error"], r.text
    r = requests.post(url, json=v2_body(x, {"method": "explain"}))
    assert r.status_code == 400 and "predict_proba" in r.json()["error"], r.text


@pytest.mark.parametrize("how", ["flag", "FERROSERVE_PREDICT_PROBA", "PREDICT_PROBA"])
def test_predict_proba_switch(tmp_path, how):
    """KServe's PREDICT_PROBA: classifiers answer predict_proba, models
    without it (a regressor) answer predict, a model's own parameter wins."""
    for served, fixture in [("clf", "mlp_clf"), ("reg", "mlp_reg"), ("own", "logreg_binary")]:
        d = tmp_path / served
        d.mkdir()
        shutil.copy(SK / V / fixture / "model.joblib", d / "model.joblib")
    (tmp_path / "own" / "model.yaml").write_text("parameters:\n  predict_proba: false\n")
    args = ["--model_repository", str(tmp_path)]
    env = {}
    if how == "flag":
        args.append("--predict_proba")
    elif how == "FERROSERVE_PREDICT_PROBA":
        env[how] = "true"
    else:
        env[how] = "True"  # KServe lower-cases the value
    s = Server(args, env=env)
    try:
        x = rows()
        meta = requests.get(f"{s.url}/v2/models/clf").json()
        assert {o["name"]: o["shape"] for o in meta["outputs"]}["output-0"] == [-1, 3]
        r = requests.post(f"{s.url}/v1/models/clf:predict", json={"instances": x.tolist()})
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(np.array(r.json()["predictions"]), expected("mlp_clf", "predict_proba"),
                                   rtol=1e-6)
        r = requests.post(f"{s.url}/v2/models/clf/infer", json=v2_body(x, {"method": "predict"}))
        assert r.json()["outputs"][0]["data"] == list(expected("mlp_clf"))
        r = requests.post(f"{s.url}/v1/models/reg:predict", json={"instances": x.tolist()})
        np.testing.assert_allclose(np.array(r.json()["predictions"]), expected("mlp_reg"), rtol=1e-6)
        r = requests.post(f"{s.url}/v1/models/own:predict", json={"instances": x.tolist()})
        assert r.json()["predictions"] == expected("logreg_binary").tolist()
    finally:
        s.stop()


def test_kserve_predict_proba_other_values_are_off(tmp_path):
    d = tmp_path / "clf"
    d.mkdir()
    shutil.copy(SK / V / "mlp_clf" / "model.joblib", d / "model.joblib")
    s = Server(["--model_dir", str(d)], env={"PREDICT_PROBA": "1"})
    try:
        r = requests.post(f"{s.url}/v1/models/clf:predict", json={"instances": rows()[:2].tolist()})
        assert r.json()["predictions"] == list(expected("mlp_clf")[:2])
    finally:
        s.stop()

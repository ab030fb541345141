"""XGBoost models served by the real binary: golden fixtures (predictions made by
the real XGBoost, see tests/fixtures/xgboost/gen_xgboost.py) checked over v2 REST
(tritonclient binary tensors), v2 gRPC, FP64 input, the optional `margin` output,
the `missing` parameter and KServe v1 `instances`."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from conftest import ROOT, Server

XGB = ROOT / "tests" / "fixtures" / "xgboost"
MANIFEST = json.loads((XGB / "manifest.json").read_text())
ENTRIES = {m["name"]: m for m in MANIFEST["models"]}

# served name -> fixture
MODELS = {
    "xgb_softprob": "v3_multi_softprob",  # UBJSON, 4 classes
    "xgb_binary": "v3_binary_logistic",  # UBJSON written into model.bst by XGBoost 3
    "xgb_cat": "v3_categorical_partition",  # categorical splits
    "xgb_missing": "v3_missing_999",  # served with parameters: {missing: "-999"}
    "xgb_v13": "v1_3_reg_squarederror",  # JSON of XGBoost 1.3
    "xgb_softmax": "v3_multi_softmax",  # class index output
}


def rows(fixture):
    ds = MANIFEST["datasets"][ENTRIES[fixture]["dataset"]]
    return np.fromfile(XGB / ds["file"], dtype="<f8").reshape(ds["rows"], ds["cols"])


def expected(fixture, what="output"):
    e = ENTRIES[fixture]
    f = e[f"{what}_file"] or e["output_file"]
    return np.fromfile(XGB / f, dtype="<f4").reshape(e[f"{what}_shape"])


@pytest.fixture(scope="module")
def xgb_server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("xgb-repo")
    for name, fixture in MODELS.items():
        src = XGB / ENTRIES[fixture]["file"]
        dest = repo / name / "1"
        dest.mkdir(parents=True)
        shutil.copy(src, dest / src.name)
        yaml = "max_batch_size: 4096\n"
        if "missing" in ENTRIES[fixture]:
            yaml += f'parameters:\n  missing: "{ENTRIES[fixture]["missing"]}"\n'
        (repo / name / "model.yaml").write_text(yaml)
    s = Server(["--model_repository", str(repo)])
    yield s
    s.stop()


def test_metadata_and_load_log(xgb_server):
    m = requests.get(f"{xgb_server.url}/v2/models/xgb_softprob").json()
    assert m["platform"] == "xgboost"
    assert m["inputs"] == [{"name": "input-0", "datatype": "FP32", "shape": [-1, 10]}]
    assert [o["name"] for o in m["outputs"]] == ["output-0", "margin"]
    assert m["outputs"][0]["shape"] == [-1, 4]
    log = xgb_server.log()
    assert "loaded XGBoost model" in log and "f0,f1,f2" in log
    assert m["parameters"]["feature_names"][:3] == ["f0", "f1", "f2"]
    assert m["parameters"]["objective"] == "multi:softprob"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_v2_http_binary_fp32(xgb_server, name):
    fixture = MODELS[name]
    x = rows(fixture).astype(np.float32)
    c = httpclient.InferenceServerClient(xgb_server.http)
    inp = httpclient.InferInput("input-0", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=True)
    res = c.infer(name, [inp], outputs=[httpclient.InferRequestedOutput("output-0", binary_data=True)])
    got = res.as_numpy("output-0")
    assert res.as_numpy("margin") is None
    np.testing.assert_allclose(got, expected(fixture), rtol=1e-5, atol=1e-9)


def test_default_outputs_leave_out_margin(xgb_server):
    x = rows("v3_binary_logistic")[:5].astype(np.float32)
    c = httpclient.InferenceServerClient(xgb_server.http)
    inp = httpclient.InferInput("input-0", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=True)
    res = c.infer("xgb_binary", [inp])
    assert [o["name"] for o in res.get_response()["outputs"]] == ["output-0"]


@pytest.mark.parametrize("name", ["xgb_softprob", "xgb_binary", "xgb_softmax"])
def test_v2_grpc_with_margin(xgb_server, name):
    fixture = MODELS[name]
    x = rows(fixture).astype(np.float32)
    c = grpcclient.InferenceServerClient(xgb_server.grpc)
    inp = grpcclient.InferInput("input-0", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    outs = [grpcclient.InferRequestedOutput("output-0"), grpcclient.InferRequestedOutput("margin")]
    res = c.infer(name, [inp], outputs=outs)
    np.testing.assert_allclose(res.as_numpy("output-0"), expected(fixture), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(res.as_numpy("margin"), expected(fixture, "margin"), rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("name", ["xgb_softprob", "xgb_cat", "xgb_missing"])
def test_fp64_input(xgb_server, name):
    fixture = MODELS[name]
    x = rows(fixture)
    c = httpclient.InferenceServerClient(xgb_server.http)
    inp = httpclient.InferInput("input-0", list(x.shape), "FP64")
    inp.set_data_from_numpy(x, binary_data=True)
    outs = [httpclient.InferRequestedOutput("margin", binary_data=True)]
    res = c.infer(name, [inp], outputs=outs)
    assert res.as_numpy("output-0") is None
    np.testing.assert_allclose(res.as_numpy("margin"), expected(fixture, "margin"), rtol=1e-6, atol=1e-9)


def test_v1_instances(xgb_server):
    fixture = MODELS["xgb_softprob"]
    x = rows(fixture)
    keep = ~np.isnan(x).any(axis=1)  # JSON has no NaN
    idx = np.flatnonzero(keep)[:40]
    body = {"instances": x[idx].tolist()}
    r = requests.post(f"{xgb_server.url}/v1/models/xgb_softprob:predict", json=body)
    assert r.status_code == 200, r.text
    got = np.array(r.json()["predictions"], dtype=np.float32)
    np.testing.assert_allclose(got, expected(fixture)[idx], rtol=1e-6, atol=1e-9)
    # One prediction per row for a single-output model.
    fixture = MODELS["xgb_binary"]
    x = rows(fixture)
    idx = np.flatnonzero(~np.isnan(x).any(axis=1))[:10]
    r = requests.post(f"{xgb_server.url}/v1/models/xgb_binary:predict", json={"instances": x[idx].tolist()})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.array(r.json()["predictions"], dtype=np.float32).ravel(),
                               expected(fixture)[idx], rtol=1e-6, atol=1e-9)


def test_bad_requests(xgb_server):
    r = requests.post(f"{xgb_server.url}/v1/models/xgb_binary:predict", json={"instances": [[1.0, 2.0]]})
    assert r.status_code == 400
    r = requests.post(f"{xgb_server.url}/v2/models/xgb_binary/infer", json={
        "inputs": [{"name": "input-0", "datatype": "INT32", "shape": [1, 10], "data": [0] * 10}]})
    assert r.status_code == 400


def test_legacy_binary_model_fails_with_advice(tmp_path):
    d = tmp_path / "old"
    d.mkdir()
    shutil.copy(XGB / "legacy_binary" / "model.bst", d / "model.bst")
    s = Server(["--model_dir", str(d)], expect_ready=False)
    try:
        s.wait_exit(60)
    finally:
        s.stop()
    assert s.proc.returncode != 0
    assert "old binary format" in s.log() and "save_model" in s.log()

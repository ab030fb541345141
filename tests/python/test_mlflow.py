"""MLflow model folders through the real server: models saved by
mlflow.sklearn (cloudpickle and skops), mlflow.xgboost and mlflow.lightgbm
(tests/fixtures/mlflow, gen_mlflow.py), checked against what
mlflow.pyfunc.load_model(...).predict(df) returned. v2 metadata (the MLflow
signature's columns), v2 infer (per-column inputs and one input-0 matrix),
MLflow's /invocations (dataframe_split, dataframe_records, instances,
inputs, CSV), /ping, /health, /version, the saved input examples (in the
metadata; serving_input_example.json POSTed to /invocations as is), and an
unsupported flavor."""

import json

import numpy as np
import pytest
import requests

from conftest import ROOT, Server

MLFLOW = ROOT / "tests" / "fixtures" / "mlflow"
EXPECTED = json.loads((MLFLOW / "expected.json").read_text())
NAMES = sorted(EXPECTED)
V2_TYPES = {"float64": "FP64", "int64": "INT64"}


def check(got, name):
    want = np.asarray(EXPECTED[name]["predictions"], dtype=float)
    np.testing.assert_allclose(np.asarray(got, dtype=float).reshape(want.shape), want,
                               rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.fixture(scope="module")
def multi():
    args = []
    for n in NAMES:
        args += ["--model_dir", str(MLFLOW / n)]
    s = Server(args)
    yield s
    s.stop()


@pytest.fixture(scope="module", params=NAMES)
def single(request):
    s = Server(["--model_dir", str(MLFLOW / request.param)])
    yield request.param, s
    s.stop()


@pytest.mark.parametrize("name", NAMES)
def test_metadata_has_signature_columns(multi, name):
    md = requests.get(f"{multi.url}/v2/models/{name}").json()
    case = EXPECTED[name]
    cols = {i["name"]: i for i in md["inputs"]}
    for c, dt in zip(case["columns"], case["dtypes"]):
        assert cols[c]["datatype"] == V2_TYPES[dt], md
        assert cols[c]["shape"] == [-1]
    params = md["parameters"]
    assert params["mlflow_signature"]["inputs"][0]["name"] == case["columns"][0]
    assert params["mlflow_flavor"] in ("sklearn", "xgboost", "lightgbm")


@pytest.mark.parametrize("name", NAMES)
def test_v2_infer_columns_and_matrix(multi, name):
    case = EXPECTED[name]
    data = np.asarray(case["data"], dtype=float)
    inputs = []
    for j, (c, dt) in enumerate(zip(case["columns"], case["dtypes"])):
        col = data[:, j]
        if dt == "int64":
            inputs.append({"name": c, "datatype": "INT64", "shape": [len(col)],
                           "data": [int(v) for v in col]})
        else:
            inputs.append({"name": c, "datatype": "FP64", "shape": [len(col)], "data": col.tolist()})
    r = requests.post(f"{multi.url}/v2/models/{name}/infer", json={"inputs": inputs})
    assert r.status_code == 200, r.text
    check(r.json()["outputs"][0]["data"], name)
    md = requests.get(f"{multi.url}/v2/models/{name}").json()
    if "input-0" in [i["name"] for i in md["inputs"]]:
        r = requests.post(f"{multi.url}/v2/models/{name}/infer", json={"inputs": [
            {"name": "input-0", "datatype": "FP64", "shape": list(data.shape),
             "data": data.ravel().tolist()}]})
        assert r.status_code == 200, r.text
        check(r.json()["outputs"][0]["data"], name)
    # a missing column is a 400 naming it
    r = requests.post(f"{multi.url}/v2/models/{name}/infer", json={"inputs": inputs[1:]})
    assert r.status_code == 400
    assert case["columns"][0] in r.text


def test_invocations_needs_a_single_model(multi):
    r = requests.post(f"{multi.url}/invocations",
                      json={"dataframe_split": {"columns": ["a"], "data": [[1]]}})
    assert r.status_code == 400
    body = r.json()
    assert body["error_code"] == "BAD_REQUEST"
    for n in NAMES:
        assert n in body["message"]


def test_invocations(single):
    name, s = single
    case = EXPECTED[name]
    cols, data = case["columns"], case["data"]
    data = [[int(v) if dt == "int64" else v for v, dt in zip(row, case["dtypes"])] for row in data]
    records = [dict(zip(cols, row)) for row in data]
    url = f"{s.url}/invocations"
    for body in [
        {"dataframe_split": {"columns": cols, "data": data}},
        {"dataframe_split": {"index": list(range(len(data))), "columns": cols, "data": data}},
        {"dataframe_records": records},
        {"instances": records},
        {"inputs": {c: [row[j] for row in data] for j, c in enumerate(cols)}},
    ]:
        r = requests.post(url, json=body)
        assert r.status_code == 200, (body, r.text)
        check(r.json()["predictions"], name)
    md = requests.get(f"{s.url}/v2/models/{name}").json()
    if "input-0" in [i["name"] for i in md["inputs"]]:
        r = requests.post(url, json={"instances": data})
        assert r.status_code == 200, r.text
        check(r.json()["predictions"], name)
    csv = ",".join(cols) + "\n" + "\n".join(",".join(str(v) for v in row) for row in data) + "\n"
    r = requests.post(url, data=csv, headers={"Content-Type": "text/csv"})
    assert r.status_code == 200, r.text
    check(r.json()["predictions"], name)
    for bad in [{"nope": 1}, {"dataframe_split": {"columns": cols, "data": [[1]]}}, [1, 2]]:
        r = requests.post(url, json=bad)
        assert r.status_code == 400, r.text
        assert r.json()["error_code"] == "BAD_REQUEST" and r.json()["message"]
    assert requests.get(f"{s.url}/ping").status_code == 200
    assert requests.get(f"{s.url}/health").status_code == 200
    v = requests.get(f"{s.url}/version")
    assert v.status_code == 200 and v.text.strip()


def test_serving_input_example(single):
    """The model's own serving_input_example.json is a valid /invocations
    body and predicts what mlflow.pyfunc predicts for the input example;
    both examples are in the v2 model metadata."""
    name, s = single
    body = (MLFLOW / name / "serving_input_example.json").read_bytes()
    r = requests.post(f"{s.url}/invocations", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    want = np.asarray(EXPECTED[name]["input_example_predictions"], dtype=float)
    np.testing.assert_allclose(np.asarray(r.json()["predictions"], dtype=float).reshape(want.shape), want,
                               rtol=1e-5, atol=1e-6)
    params = requests.get(f"{s.url}/v2/models/{name}").json()["parameters"]
    assert params["mlflow_serving_input_example"] == json.loads(body)
    example = json.loads((MLFLOW / name / "input_example.json").read_text())
    assert params["mlflow_input_example"] == example
    assert params["mlflow_input_example_info"]["type"] == "dataframe"
    # The stored example (split orient) as v2 columns gives the same answer.
    inputs = []
    for j, c in enumerate(example["columns"]):
        col = [row[j] for row in example["data"]]
        dt = "INT64" if all(isinstance(v, int) for v in col) else "FP64"
        inputs.append({"name": c, "datatype": dt, "shape": [len(col)], "data": col})
    r = requests.post(f"{s.url}/v2/models/{name}/infer", json={"inputs": inputs})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.asarray(r.json()["outputs"][0]["data"], dtype=float), want, rtol=1e-5, atol=1e-6)


def test_unsupported_flavor_fails_clearly():
    s = Server(["--model_dir", str(MLFLOW / "unsupported")], expect_ready=False)
    try:
        assert s.wait_exit(60) != 0
    finally:
        s.stop()
    log = s.log()
    assert "pytorch" in log and "custom Python model" in log and "supported: sklearn" in log, log

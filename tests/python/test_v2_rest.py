"""Open Inference Protocol v2 over REST, with plain HTTP and with Triton's
own Python client (JSON and binary tensor data)."""

import json

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient

from conftest import FIXTURES


def expected(name):
    return json.loads((FIXTURES / name / "expected.json").read_text())


def test_health_and_metadata(server):
    assert requests.get(server.url + "/v2/health/live").status_code == 200
    assert requests.get(server.url + "/v2/health/ready").status_code == 200
    meta = requests.get(server.url + "/v2").json()
    assert meta["name"] == "ferroserve"
    for ext in ("binary_tensor_data", "model_repository", "model_configuration", "statistics"):
        assert ext in meta["extensions"]
    m = requests.get(server.url + "/v2/models/simple").json()
    assert m["name"] == "simple" and m["versions"] == ["1"]
    assert m["platform"] == "onnxruntime_onnx"
    assert m["inputs"][0] == {"name": "INPUT0", "datatype": "INT32", "shape": [-1, 16]}
    assert requests.get(server.url + "/v2/models/simple/versions/1").json() == m
    assert requests.get(server.url + "/v2/models/simple/ready").status_code == 200
    assert requests.get(server.url + "/v2/models/simple/versions/1/ready").status_code == 200


def test_config_and_stats(server):
    cfg = requests.get(server.url + "/v2/models/simple/config").json()
    assert cfg["max_batch_size"] > 0
    assert cfg["input"][0]["dims"] == [16]
    assert cfg["input"][0]["data_type"] == "TYPE_INT32"
    assert requests.get(server.url + "/v2/models/simple/versions/1/config").json() == cfg
    before = requests.get(server.url + "/v2/models/simple/stats").json()["model_stats"][0]
    body = {"inputs": [{"name": n, "shape": [1, 16], "datatype": "INT32", "data": list(range(16))}
                       for n in ("INPUT0", "INPUT1")]}
    assert requests.post(server.url + "/v2/models/simple/infer", json=body).status_code == 200
    after = requests.get(server.url + "/v2/models/simple/stats").json()["model_stats"][0]
    assert after["inference_stats"]["success"]["count"] == before["inference_stats"]["success"]["count"] + 1
    assert after["execution_count"] == before["execution_count"] + 1
    assert after["batch_stats"][0]["batch_size"] == 1
    allstats = requests.get(server.url + "/v2/models/stats").json()["model_stats"]
    assert {s["name"] for s in allstats} >= {"simple", "dtypes", "iris"}


def test_json_infer_nested_and_flat_with_id_and_outputs(server):
    a = np.arange(32, dtype=np.int32).reshape(2, 16)
    b = np.ones((2, 16), dtype=np.int32)
    body = {"id": "req-42", "parameters": {"custom": "x"},
            "inputs": [{"name": "INPUT0", "shape": [2, 16], "datatype": "INT32", "data": a.tolist()},
                       {"name": "INPUT1", "shape": [2, 16], "datatype": "INT32",
                        "data": b.flatten().tolist()}],
            "outputs": [{"name": "OUTPUT1"}]}
    r = requests.post(server.url + "/v2/models/simple/versions/1/infer", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["id"] == "req-42"
    assert out["model_name"] == "simple" and out["model_version"] == "1"
    assert [o["name"] for o in out["outputs"]] == ["OUTPUT1"]
    assert out["outputs"][0]["data"] == (a - b).flatten().tolist()
    assert "parameters" not in out["outputs"][0]


@pytest.mark.parametrize("binary_in,binary_out", [(False, False), (True, False), (False, True), (True, True)])
def test_tritonclient_http(server, binary_in, binary_out):
    client = httpclient.InferenceServerClient(server.http)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("simple")
    a = np.random.randint(-100, 100, size=(3, 16), dtype=np.int32)
    b = np.random.randint(-100, 100, size=(3, 16), dtype=np.int32)
    inputs = [httpclient.InferInput("INPUT0", a.shape, "INT32"),
              httpclient.InferInput("INPUT1", b.shape, "INT32")]
    inputs[0].set_data_from_numpy(a, binary_data=binary_in)
    inputs[1].set_data_from_numpy(b, binary_data=binary_in)
    outputs = [httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary_out),
               httpclient.InferRequestedOutput("OUTPUT1", binary_data=binary_out)]
    res = client.infer("simple", inputs, outputs=outputs, request_id="7")
    np.testing.assert_array_equal(res.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(res.as_numpy("OUTPUT1"), a - b)
    assert res.get_response()["id"] == "7"
    meta = client.get_model_metadata("simple")
    assert meta["name"] == "simple"
    cfg = client.get_model_config("simple")
    assert cfg["name"] == "simple"
    stats = client.get_inference_statistics("simple")
    assert stats["model_stats"][0]["name"] == "simple"


@pytest.mark.parametrize("binary", [False, True])
def test_every_datatype(server, binary):
    exp = expected("dtypes")
    client = httpclient.InferenceServerClient(server.http)
    inputs = []
    for i in exp["inputs"]:
        arr = np.array(i["data"], dtype=httpclient.triton_to_np_dtype(i["datatype"])).reshape(i["shape"])
        t = httpclient.InferInput(i["name"], arr.shape, i["datatype"])
        t.set_data_from_numpy(arr, binary_data=binary)
        inputs.append(t)
    outs = [httpclient.InferRequestedOutput(o["name"], binary_data=binary) for o in exp["outputs"]]
    res = client.infer("dtypes", inputs, outputs=outs)
    for o in exp["outputs"]:
        got = res.as_numpy(o["name"])
        want = np.array(o["data"], dtype=httpclient.triton_to_np_dtype(o["datatype"])).reshape(o["shape"])
        assert got.dtype == want.dtype, o["name"]
        np.testing.assert_array_equal(got, want, err_msg=o["name"])


def test_missing_input_is_400(server):
    body = {"inputs": [{"name": "x_f16", "shape": [1, 3], "datatype": "FP16", "data": [1.5, -2.0, 65504]}],
            "outputs": [{"name": "y_f16"}]}
    r = requests.post(server.url + "/v2/models/dtypes/infer", json=body)
    assert r.status_code == 400 and "missing input" in r.json()["error"]


@pytest.mark.parametrize("binary", [False, True])
def test_bytes_tensors(server, binary):
    exp = expected("strings")
    client = httpclient.InferenceServerClient(server.http)
    i = exp["inputs"][0]
    arr = np.array([s.encode() for s in i["data"]], dtype=np.object_).reshape(i["shape"])
    t = httpclient.InferInput(i["name"], arr.shape, "BYTES")
    t.set_data_from_numpy(arr, binary_data=binary)
    res = client.infer("strings", [t], outputs=[httpclient.InferRequestedOutput("category", binary_data=binary)])
    assert res.as_numpy("category").tolist() == exp["outputs"][0]["data"]


def test_quickstart_example(server):
    root = FIXTURES.parents[2] / "examples" / "iris"
    body = json.loads((root / "request.json").read_text())
    want = json.loads((root / "response.json").read_text())
    r = requests.post(server.url + "/v2/models/iris/infer", json=body)
    assert r.status_code == 200, r.text
    got = r.json()["outputs"][0]
    assert got["shape"] == want["outputs"][0]["shape"]
    np.testing.assert_allclose(got["data"], want["outputs"][0]["data"], rtol=1e-5, atol=1e-6)

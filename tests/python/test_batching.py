"""Dynamic batching and per-model queueing through the real server, with
Triton-style config.pbtxt and model.yaml."""

import concurrent.futures as cf
import json
import random
import shutil
import time

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import FIXTURES, Server, slow_cnn_request

PBTXT = """
name: "simple"
backend: "onnxruntime"
max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
        { name: "INPUT1" data_type: TYPE_INT32 dims: [ 16 ] } ]
dynamic_batching {
  preferred_batch_size: [ 4, 8 ]
  max_queue_delay_microseconds: 2000
}
instance_group [ { count: 1 kind: KIND_CPU } ]
optimization { graph { level: 1 } }
"""


@pytest.fixture(scope="module")
def batch_server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("batchrepo")
    (repo / "simple" / "1").mkdir(parents=True)
    shutil.copy(FIXTURES / "add_sub" / "model.onnx", repo / "simple" / "1" / "model.onnx")
    (repo / "simple" / "config.pbtxt").write_text(PBTXT)
    # Triton's exact waiting (no dispatch-when-idle), so that merging is certain even though
    # this model computes in microseconds.
    (repo / "simple_wait" / "1").mkdir(parents=True)
    shutil.copy(FIXTURES / "add_sub" / "model.onnx", repo / "simple_wait" / "1" / "model.onnx")
    (repo / "simple_wait" / "model.yaml").write_text(
        "max_batch_size: 8\ndynamic_batching:\n  preferred_batch_size: [4, 8]\n"
        "  max_queue_delay_microseconds: 3000\n  dispatch_when_idle: false\n")
    (repo / "cnn" / "1").mkdir(parents=True)
    shutil.copy(FIXTURES / "cnn" / "model.onnx", repo / "cnn" / "1" / "model.onnx")
    (repo / "cnn" / "model.yaml").write_text(
        "max_batch_size: 100000\n"
        "dynamic_batching:\n"
        "  max_queue_delay_microseconds: 100\n"
        "  priority_levels: 2\n"
        "  default_queue_policy: {max_queue_size: 1, default_timeout_microseconds: 400000,"
        " allow_timeout_override: true}\n"
        "parameters: {engine: tract}\n")
    s = Server(["--model_repository", str(repo), "--onnx_engine", "tract"])
    yield s
    s.stop()


def test_config_reports_batching(batch_server):
    cfg = requests.get(batch_server.url + "/v2/models/simple/config").json()
    assert cfg["max_batch_size"] == 8
    assert cfg["dynamic_batching"]["preferred_batch_size"] == [4, 8]
    assert cfg["dynamic_batching"]["max_queue_delay_microseconds"] == 2000
    assert cfg["input"][0]["dims"] == [16]
    g = grpcclient.InferenceServerClient(batch_server.grpc).get_model_config("simple", as_json=True)["config"]
    assert g["dynamic_batching"]["preferred_batch_size"] == [4, 8]


@pytest.mark.parametrize("model", ["simple", "simple_wait"])
def test_rows_go_back_to_their_callers(batch_server, model):
    def call(i):
        rng = np.random.default_rng(i)
        rows = int(rng.integers(1, 4))
        a = rng.integers(-1000, 1000, size=(rows, 16), dtype=np.int32)
        b = rng.integers(-1000, 1000, size=(rows, 16), dtype=np.int32)
        if i % 2:
            c = httpclient.InferenceServerClient(batch_server.http)
            mod = httpclient
        else:
            c = grpcclient.InferenceServerClient(batch_server.grpc)
            mod = grpcclient
        ins = [mod.InferInput("INPUT0", a.shape, "INT32"), mod.InferInput("INPUT1", b.shape, "INT32")]
        ins[0].set_data_from_numpy(a)
        ins[1].set_data_from_numpy(b)
        r = c.infer(model, ins, request_id=str(i))
        np.testing.assert_array_equal(r.as_numpy("OUTPUT0"), a + b)
        np.testing.assert_array_equal(r.as_numpy("OUTPUT1"), a - b)
        return rows

    with cf.ThreadPoolExecutor(32) as ex:
        total_rows = sum(ex.map(call, range(400)))
    st = requests.get(f"{batch_server.url}/v2/models/{model}/stats").json()["model_stats"][0]
    assert st["inference_count"] >= total_rows
    sizes = {b["batch_size"] for b in st["batch_stats"]}
    assert max(sizes) <= 8
    if model == "simple_wait":
        assert st["execution_count"] < 400, "requests were never merged"


def test_queue_full_and_timeouts(batch_server):
    s = batch_server
    slow, done = slow_cnn_request(s, n=30000)
    one = json.dumps({"inputs": [{"name": "image", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.1] * 64}]})
    with cf.ThreadPoolExecutor(2) as ex:
        queued = ex.submit(requests.post, s.url + "/v2/models/cnn/infer", data=one)
        time.sleep(0.05)
        full = requests.post(s.url + "/v2/models/cnn/infer", data=one)
        assert full.status_code == 429, full.text
        assert "full" in full.json()["error"]
        g = grpcclient.InferenceServerClient(s.grpc)
        a = np.full((1, 1, 8, 8), 0.1, dtype=np.float32)
        t = grpcclient.InferInput("image", a.shape, "FP32")
        t.set_data_from_numpy(a)
        with pytest.raises(InferenceServerException) as e:
            g.infer("cnn", [t])
        assert e.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
        r = queued.result()
    slow.join()
    assert done["status"] == 200
    # The queued request either ran (the slow one finished within 400 ms) or timed out with 504.
    assert r.status_code in (200, 504), r.text
    # A request that times out in the queue gets 504 and never runs.
    slow, done = slow_cnn_request(s, n=30000)
    short = json.dumps({"parameters": {"timeout": 1000},
                        "inputs": [{"name": "image", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.1] * 64}]})
    before = requests.get(s.url + "/v2/models/cnn/stats").json()["model_stats"][0]["inference_count"]
    r = requests.post(s.url + "/v2/models/cnn/infer", data=short)
    assert r.status_code == 504, r.text
    assert "timed out" in r.json()["error"]
    slow.join()
    after = requests.get(s.url + "/v2/models/cnn/stats").json()["model_stats"][0]["inference_count"]
    assert after - before == 30000, "the timed-out request ran"


def test_bad_priority_is_400(batch_server):
    body = json.dumps({"parameters": {"priority": 7},
                       "inputs": [{"name": "image", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.1] * 64}]})
    r = requests.post(batch_server.url + "/v2/models/cnn/infer", data=body)
    assert r.status_code == 400 and "priority" in r.json()["error"]

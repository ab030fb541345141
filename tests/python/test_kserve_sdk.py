"""The KServe Python SDK (PyPI `kserve`) against ferroserve: v1 and v2 over
REST, v2 over gRPC. The SDK registers its own `inference.*` protobuf
messages, which clash with tritonclient's in one process, so tests/run.sh
runs this file alone in a second venv; in the main venv it is skipped."""

import asyncio
import json

import numpy as np
import pytest

from conftest import EXAMPLES, Server

kserve = pytest.importorskip("kserve")
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig  # noqa: E402

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]]
WANT = json.loads((EXAMPLES / "iris" / "response.json").read_text())["outputs"][0]["data"]


@pytest.fixture(scope="module")
def iris():
    s = Server(["--model_dir", str(EXAMPLES / "iris"), "--onnx_engine", "tract"])
    yield s
    s.stop()


def run(coro):
    return asyncio.run(coro)


def test_rest_v2(iris):
    async def go():
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=10))
        assert await client.is_server_ready(iris.url)
        assert await client.is_server_live(iris.url)
        assert await client.is_model_ready(iris.url, "iris")
        inp = InferInput(name="input", shape=[2, 4], datatype="FP32")
        inp.set_data_from_numpy(np.array(ROWS, dtype=np.float32))
        resp = await client.infer(iris.url, InferRequest(model_name="iris", infer_inputs=[inp], request_id="k1"),
                                  model_name="iris")
        await client.close()
        return resp
    resp = run(go())
    assert resp.id == "k1"
    np.testing.assert_allclose(resp.outputs[0].as_numpy().flatten(), WANT, rtol=1e-5, atol=1e-6)


def test_rest_v1(iris):
    async def go():
        client = InferenceRESTClient(RESTConfig(protocol="v1", timeout=10))
        assert await client.is_model_ready(iris.url, "iris")
        resp = await client.infer(iris.url, {"instances": ROWS}, model_name="iris")
        await client.close()
        return resp
    resp = run(go())
    np.testing.assert_allclose(np.array(resp["predictions"]).flatten(), WANT, rtol=1e-5, atol=1e-6)


def test_grpc_v2(iris):
    async def go():
        client = InferenceGRPCClient(iris.grpc, timeout=10)
        assert await client.is_server_ready()
        assert await client.is_model_ready("iris")
        inp = InferInput(name="input", shape=[2, 4], datatype="FP32")
        inp.set_data_from_numpy(np.array(ROWS, dtype=np.float32), binary_data=True)
        resp = await client.infer(InferRequest(model_name="iris", infer_inputs=[inp], request_id="g1"))
        await client.close()
        return resp
    resp = run(go())
    np.testing.assert_allclose(resp.outputs[0].as_numpy().flatten(), WANT, rtol=1e-5, atol=1e-6)

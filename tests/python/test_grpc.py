"""Open Inference Protocol v2 over gRPC with Triton's client, plus the
standard health and reflection services."""

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from tritonclient.utils import InferenceServerException

from test_v2_rest import expected


def test_server_and_model_calls(server):
    c = grpcclient.InferenceServerClient(server.grpc)
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready("simple")
    meta = c.get_server_metadata()
    assert "model_repository" in meta.extensions
    m = c.get_model_metadata("simple", as_json=True)
    assert m["inputs"][0]["name"] == "INPUT0"
    cfg = c.get_model_config("simple", as_json=True)["config"]
    assert cfg["name"] == "simple" and int(cfg["max_batch_size"]) > 0
    assert cfg["input"][0]["data_type"] == "TYPE_INT32"


def test_infer_raw_contents(server):
    c = grpcclient.InferenceServerClient(server.grpc)
    a = np.random.randint(-50, 50, size=(4, 16), dtype=np.int32)
    b = np.random.randint(-50, 50, size=(4, 16), dtype=np.int32)
    ins = [grpcclient.InferInput("INPUT0", a.shape, "INT32"), grpcclient.InferInput("INPUT1", b.shape, "INT32")]
    ins[0].set_data_from_numpy(a)
    ins[1].set_data_from_numpy(b)
    res = c.infer("simple", ins, request_id="g1", outputs=[grpcclient.InferRequestedOutput("OUTPUT0")])
    np.testing.assert_array_equal(res.as_numpy("OUTPUT0"), a + b)
    assert res.as_numpy("OUTPUT1") is None
    assert res.get_response().id == "g1"
    stats = c.get_inference_statistics("simple", as_json=True)
    assert int(stats["model_stats"][0]["inference_count"]) >= 4


def test_every_datatype_grpc(server):
    exp = expected("dtypes")
    c = grpcclient.InferenceServerClient(server.grpc)
    ins = []
    for i in exp["inputs"]:
        arr = np.array(i["data"], dtype=grpcclient.triton_to_np_dtype(i["datatype"])).reshape(i["shape"])
        t = grpcclient.InferInput(i["name"], arr.shape, i["datatype"])
        t.set_data_from_numpy(arr)
        ins.append(t)
    res = c.infer("dtypes", ins)
    for o in exp["outputs"]:
        want = np.array(o["data"], dtype=grpcclient.triton_to_np_dtype(o["datatype"])).reshape(o["shape"])
        np.testing.assert_array_equal(res.as_numpy(o["name"]), want, err_msg=o["name"])


def test_bytes_grpc(server):
    exp = expected("strings")
    c = grpcclient.InferenceServerClient(server.grpc)
    i = exp["inputs"][0]
    arr = np.array([s.encode() for s in i["data"]], dtype=np.object_)
    t = grpcclient.InferInput("text", arr.shape, "BYTES")
    t.set_data_from_numpy(arr)
    assert c.infer("strings", [t]).as_numpy("category").tolist() == exp["outputs"][0]["data"]


def test_streaming_infer(server):
    c = grpcclient.InferenceServerClient(server.grpc)
    results = []
    c.start_stream(callback=lambda result, error: results.append((result, error)))
    a = np.ones((1, 16), dtype=np.int32)
    for k in range(3):
        ins = [grpcclient.InferInput("INPUT0", a.shape, "INT32"), grpcclient.InferInput("INPUT1", a.shape, "INT32")]
        ins[0].set_data_from_numpy(a * k)
        ins[1].set_data_from_numpy(a)
        c.async_stream_infer("simple", ins, request_id=str(k))
    c.stop_stream()
    assert len(results) == 3
    for k, (res, err) in enumerate(results):
        assert err is None
        np.testing.assert_array_equal(res.as_numpy("OUTPUT0"), a * k + a)


def test_errors_have_grpc_codes(server):
    c = grpcclient.InferenceServerClient(server.grpc)
    with pytest.raises(InferenceServerException) as e:
        c.get_model_metadata("nope")
    assert e.value.status() == "StatusCode.NOT_FOUND"
    a = np.ones((1, 16), dtype=np.float32)
    t = grpcclient.InferInput("INPUT0", a.shape, "FP32")
    t.set_data_from_numpy(a)
    with pytest.raises(InferenceServerException) as e:
        c.infer("simple", [t])
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT"
    with pytest.raises(InferenceServerException) as e:
        c.infer("simple", [t], model_version="9")
    assert e.value.status() == "StatusCode.NOT_FOUND"


def test_health_and_reflection(server):
    ch = grpc.insecure_channel(server.grpc)
    h = health_pb2_grpc.HealthStub(ch)
    assert h.Check(health_pb2.HealthCheckRequest(service="")).status == health_pb2.HealthCheckResponse.SERVING
    assert h.Check(health_pb2.HealthCheckRequest(service="inference.GRPCInferenceService")).status == \
        health_pb2.HealthCheckResponse.SERVING
    db = ProtoReflectionDescriptorDatabase(ch)
    services = db.get_services()
    assert "inference.GRPCInferenceService" in services
    assert "grpc.health.v1.Health" in services
    fd = db.FindFileContainingSymbol("inference.GRPCInferenceService")
    assert fd.package == "inference"

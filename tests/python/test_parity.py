"""Parity through the real server: every golden fixture (outputs computed by
Python onnxruntime, see tests/fixtures/gen_onnx.py) on every engine that
should run it, sent with Triton's client as binary tensors."""

import json
import os

import numpy as np
import pytest
import tritonclient.http as httpclient

from conftest import FIXTURES, Server, make_repository, ort_library

FIXTURE_NAMES = sorted(p.name for p in FIXTURES.iterdir() if (p / "expected.json").exists())


def cases():
    for name in FIXTURE_NAMES:
        exp = json.loads((FIXTURES / name / "expected.json").read_text())
        for engine in exp["engines"]:
            yield name, engine


def np_array(entry):
    dt = entry["datatype"]
    if dt == "BYTES":
        return np.array([s.encode() for s in entry["data"]], dtype=np.object_).reshape(entry["shape"])
    if dt == "BF16":
        return np.array(entry["data"], dtype=np.float32).reshape(entry["shape"])
    return np.array(entry["data"], dtype=httpclient.triton_to_np_dtype(dt)).reshape(entry["shape"])


@pytest.fixture(scope="module", params=["tract", "ort"])
def engine_server(request, tmp_path_factory):
    engine = request.param
    env = {}
    if engine == "ort":
        lib = ort_library()
        if not lib:
            if os.environ.get("FERROSERVE_REQUIRE_ORT"):
                pytest.fail("onnxruntime library not found but FERROSERVE_REQUIRE_ORT is set")
            pytest.skip("onnxruntime not installed")
        env["ORT_DYLIB_PATH"] = lib
    models = {name: name for name, e in cases() if e == engine}
    repo = make_repository(tmp_path_factory.mktemp(f"parity-{engine}"), models)
    s = Server(["--model_repository", str(repo), "--onnx_engine", engine], env=env)
    s.engine = engine
    yield s
    s.stop()


def bf16_bytes(values):
    f = np.array(values, dtype=np.float32).view(np.uint32)
    return ((f + 0x7FFF + ((f >> 16) & 1)) >> 16).astype(np.uint16).tobytes()


@pytest.mark.parametrize("fixture", FIXTURE_NAMES)
def test_fixture_parity(engine_server, fixture):
    exp = json.loads((FIXTURES / fixture / "expected.json").read_text())
    if engine_server.engine not in exp["engines"]:
        pytest.skip(f"{fixture} does not run on {engine_server.engine}")
    client = httpclient.InferenceServerClient(engine_server.http)
    inputs = []
    for i in exp["inputs"]:
        t = httpclient.InferInput(i["name"], i["shape"], i["datatype"])
        if i["datatype"] == "BF16":
            t._raw_data = bf16_bytes(i["data"])
            t._parameters["binary_data_size"] = len(t._raw_data)
        else:
            t.set_data_from_numpy(np_array(i), binary_data=True)
        inputs.append(t)
    outs = [httpclient.InferRequestedOutput(o["name"], binary_data=o["datatype"] != "BF16") for o in exp["outputs"]]
    res = client.infer(fixture, inputs, outputs=outs)
    worst = 0.0
    for o in exp["outputs"]:
        if o["datatype"] == "BF16":
            entry = next(x for x in res.get_response()["outputs"] if x["name"] == o["name"])
            got = np.array(entry["data"]).reshape(entry["shape"])
        else:
            got = res.as_numpy(o["name"])
        assert got is not None, o["name"]
        assert list(got.shape) == o["shape"], (o["name"], got.shape)
        if o["datatype"] == "BYTES":
            assert [x.decode() for x in got.flatten()] == o["data"]
        elif o["datatype"] in ("FP16", "BF16", "FP32", "FP64"):
            want = np.array(o["data"], dtype=np.float64).reshape(o["shape"])
            g = got.astype(np.float64)
            rel = np.abs(g - want) / np.maximum(np.abs(want), 1e-6)
            worst = max(worst, float(rel.max(initial=0.0)))
            np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-6, err_msg=o["name"])
            if "zipmap_keys" in o:
                params = next(x for x in res.get_response()["outputs"] if x["name"] == o["name"]).get("parameters", {})
                assert json.loads(params["zipmap_keys"]) == o["zipmap_keys"]
        else:
            np.testing.assert_array_equal(got, np.array(o["data"]).reshape(o["shape"]), err_msg=o["name"])
    print(f"{fixture} on {engine_server.engine}: worst relative error {worst:.2e}")

"""Command line, start-up errors, start-up time, and graceful shutdown."""

import os
import shutil
import subprocess

import requests

from conftest import EXAMPLES, FIXTURES, Server, binary, slow_cnn_request


def run_fail(args, env=None):
    p = subprocess.run([binary(), "serve", "--host", "127.0.0.1", "--http_port", "0", "--grpc_port", "0", *args],
                       capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})
    assert p.returncode != 0
    return p.stderr


def test_single_model_dir_with_name_and_kebab_flags():
    s = Server(["--model-dir", str(EXAMPLES / "iris"), "--model-name", "flowers", "--onnx-engine", "tract"])
    try:
        assert requests.get(s.url + "/v2/models/flowers/ready").status_code == 200
        assert requests.get(s.url + "/v2/models/iris").status_code == 404
    finally:
        assert s.stop() == 0


def test_env_fallback():
    s = Server([], env={"FERROSERVE_MODEL_DIR": str(EXAMPLES / "iris"), "FERROSERVE_ONNX_ENGINE": "tract"})
    try:
        assert requests.get(s.url + "/v1/models/iris").json()["ready"] is True
    finally:
        s.stop()


def test_startup_errors(tmp_path):
    assert "nothing to serve" in run_fail([])
    assert "does not exist" in run_fail(["--model_dir", str(tmp_path / "missing")])
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("hi")
    err = run_fail(["--model_dir", str(empty)])
    assert "no model found" in err and "notes.txt" in err
    err = run_fail(["--model_dir", str(EXAMPLES / "iris"), "--model_format", "caffe2"])
    assert "unknown model format 'caffe2'" in err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.onnx").write_bytes(b"\x08\x07garbage")
    assert "bad" in run_fail(["--model_dir", str(bad)])
    yaml = tmp_path / "yaml"
    shutil.copytree(EXAMPLES / "iris", yaml)
    (yaml / "model.yaml").write_text("max_batch_sise: 3\n")
    assert "max_batch_sise" in run_fail(["--model_dir", str(yaml)])


def test_tract_refuses_ml_ops_with_a_hint(tmp_path):
    d = tmp_path / "gbr"
    d.mkdir()
    shutil.copy(FIXTURES / "gbr_regressor" / "model.onnx", d / "model.onnx")
    err = run_fail(["--model_dir", str(d), "--onnx_engine", "tract"])
    assert "onnxruntime" in err.lower()


def test_startup_time_and_idle_memory():
    s = Server(["--model_dir", str(EXAMPLES / "iris"), "--onnx_engine", "tract"])
    try:
        body = (EXAMPLES / "iris" / "request.json").read_text()
        assert requests.post(s.url + "/v2/models/iris/infer", data=body).status_code == 200
        rss = int([l for l in open(f"/proc/{s.proc.pid}/status") if l.startswith("VmRSS")][0].split()[1])
        print(f"ready after {s.ready_after * 1000:.1f} ms, idle RSS {rss / 1024:.1f} MiB")
        assert s.ready_after < 5.0
    finally:
        s.stop()


def test_sigterm_drains_in_flight_and_exits_zero(tmp_path):
    d = tmp_path / "cnn"
    d.mkdir()
    shutil.copy(FIXTURES / "cnn" / "model.onnx", d / "model.onnx")
    s = Server(["--model_dir", str(d), "--onnx_engine", "tract", "--max_batch_size", "100000"])
    t, result = slow_cnn_request(s)
    code = s.stop()
    t.join()
    assert code == 0
    assert result["status"] == 200
    assert "shutdown complete" in s.log()

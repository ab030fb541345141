"""Ingress limits: header size (431), per-request timeout (504 / gRPC
DEADLINE_EXCEEDED, and the client's grpc-timeout), concurrent connections."""

import json
import shutil
import socket
import time

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from conftest import EXAMPLES, FIXTURES, Server

BODY = (EXAMPLES / "iris" / "request.json").read_bytes()
IRIS = ["--model_dir", str(EXAMPLES / "iris"), "--onnx_engine", "tract"]


def test_header_too_large_is_431():
    s = Server([*IRIS, "--max_header_bytes", "2048"])
    try:
        ok = requests.post(s.url + "/v2/models/iris/infer", data=BODY, headers={"x-small": "a" * 100})
        assert ok.status_code == 200
        r = requests.post(s.url + "/v2/models/iris/infer", data=BODY, headers={"x-big": "a" * 4000})
        assert r.status_code == 431
        assert "--max_header_bytes" in r.json()["error"]
        # Many small headers add up.
        many = {f"x-h{i}": "b" * 50 for i in range(60)}
        assert requests.get(s.url + "/v2/health/ready", headers=many).status_code == 431
        # gRPC advertises the limit in HTTP/2 settings: an oversized call fails.
        g = grpcclient.InferenceServerClient(s.grpc)
        assert g.is_server_live()
        with pytest.raises(InferenceServerException):
            g.is_server_live(headers={"x-big": "a" * 8000})
        # A head far over the limit is refused by the HTTP/1 parser before it is
        # buffered whole (hyper's own cap would be ~400 KiB): 431 and the
        # connection closed, the server still serving.
        import socket
        host, port = s.http.rsplit(":", 1)
        with socket.create_connection((host, int(port))) as c:
            c.sendall(b"GET /v2/health/ready HTTP/1.1\r\nhost: x\r\n")
            sent = 0
            try:
                while sent < 300_000:
                    c.sendall(b"x-fill: " + b"a" * 990 + b"\r\n")
                    sent += 1000
            except OSError:
                pass  # the server stopped reading and closed
            c.settimeout(5)
            answer = b""
            try:
                while chunk := c.recv(4096):
                    answer += chunk
            except OSError:
                pass
        assert sent < 300_000 or answer.startswith(b"HTTP/1.1 431"), (sent, answer[:100])
        assert requests.get(s.url + "/v2/health/ready").status_code == 200
    finally:
        s.stop()


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    (repo / "cnn" / "1").mkdir(parents=True)
    shutil.copy(FIXTURES / "cnn" / "model.onnx", repo / "cnn" / "1" / "model.onnx")
    (repo / "cnn" / "model.yaml").write_text("max_batch_size: 1000000\nparameters: {engine: tract}\n")
    s = Server(["--model_repository", str(repo), *IRIS, "--request_timeout", "0.25"])
    yield s
    s.stop()


def cnn_body(n):
    return json.dumps({"inputs": [{"name": "image", "shape": [n, 1, 8, 8], "datatype": "FP32",
                                   "data": [0.5] * (n * 64)}]})


def test_over_long_request_is_504(slow_server):
    s = slow_server
    assert requests.post(s.url + "/v2/models/iris/infer", data=BODY).status_code == 200
    t0 = time.monotonic()
    r = requests.post(s.url + "/v2/models/cnn/infer", data=cnn_body(80000))
    took = time.monotonic() - t0
    assert r.status_code == 504, r.text[:200]
    assert "--request_timeout" in r.json()["error"]
    # The answer comes at the limit, not when the work would have finished.
    assert took < 5, took
    # The server is still healthy.
    assert requests.post(s.url + "/v2/models/iris/infer", data=BODY).status_code == 200


def test_grpc_deadline_exceeded(slow_server):
    s = slow_server
    g = grpcclient.InferenceServerClient(s.grpc)
    # Binary tensors decode fast: many more rows than over JSON to be slow.
    n = 150000
    t = grpcclient.InferInput("image", [n, 1, 8, 8], "FP32")
    t.set_data_from_numpy(np.full((n, 1, 8, 8), 0.5, dtype=np.float32))
    with pytest.raises(InferenceServerException) as e:
        g.infer("cnn", [t])
    assert "DEADLINE_EXCEEDED" in str(e.value.status()), e.value
    assert "--request_timeout" in e.value.message()
    # The client's own grpc-timeout is honoured as well.
    with pytest.raises(InferenceServerException) as e:
        g.infer("cnn", [t], client_timeout=0.05)
    assert "DEADLINE_EXCEEDED" in str(e.value.status())
    small = grpcclient.InferInput("input", [1, 4], "FP32")
    small.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
    assert g.infer("iris", [small]).as_numpy("probabilities").shape == (1, 3)


def test_connection_limit_queues_extra_connections():
    s = Server([*IRIS, "--max_connections", "2"])
    try:
        host, port = s.http.rsplit(":", 1)
        held = [socket.create_connection((host, int(port))) for _ in range(2)]
        time.sleep(0.2)
        # A third connection waits for a free slot...
        third = socket.create_connection((host, int(port)))
        third.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        third.settimeout(1.0)
        with pytest.raises(socket.timeout):
            third.recv(1024)
        # ...and is served once one closes.
        held.pop().close()
        third.settimeout(5.0)
        answer = b""
        while True:
            chunk = third.recv(4096)
            if not chunk:
                break
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
        third.close()
        for c in held:
            c.close()
        # The budget is back: plain requests work.
        assert requests.get(s.url + "/v2/health/live", timeout=5).status_code == 200
    finally:
        s.stop()

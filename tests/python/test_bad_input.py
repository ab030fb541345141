"""Bad input gets a clear error with the right status code; the server
keeps serving and its memory does not grow."""

import json
import struct

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from conftest import Server, make_repository

GOOD = {"inputs": [{"name": n, "shape": [1, 16], "datatype": "INT32", "data": list(range(16))}
                   for n in ("INPUT0", "INPUT1")]}


def post(server, body, path="/v2/models/simple/infer", headers=None):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(server.url + path, data=data, headers=headers or {})


def binary_body(n0=64, n1=64, extra=b"", cut=0):
    header = json.dumps({"inputs": [
        {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "parameters": {"binary_data_size": n0}},
        {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "parameters": {"binary_data_size": n1}},
    ]}).encode()
    data = np.arange(16, dtype=np.int32).tobytes() * 2 + extra
    if cut:
        data = data[:-cut]
    return header, header + data


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


CASES = {
    "malformed json": (b'{"inputs": [', None, 400, "malformed"),
    "not an object": (b'[1,2,3]', None, 400, "malformed"),
    "length mismatch": ({"inputs": [{"name": "INPUT0", "shape": [2, 16], "datatype": "INT32", "data": list(range(16))},
                                    GOOD["inputs"][1]]}, None, 400, "needs"),
    "unknown datatype": ({"inputs": [{"name": "INPUT0", "shape": [1, 16], "datatype": "FLOAT", "data": [0] * 16}]},
                         None, 400, "unknown datatype"),
    "wrong datatype": ({"inputs": [{"name": "INPUT0", "shape": [1, 16], "datatype": "FP32", "data": [0.5] * 16},
                                   GOOD["inputs"][1]]}, None, 400, "expects INT32"),
    "wrong shape": ({"inputs": [{"name": n, "shape": [2, 8], "datatype": "INT32", "data": [0] * 16}
                                for n in ("INPUT0", "INPUT1")]}, None, 400, "shape"),
    "missing input": ({"inputs": GOOD["inputs"][:1]}, None, 400, "missing input 'INPUT1'"),
    "extra input": ({"inputs": GOOD["inputs"] + [{"name": "X", "shape": [1], "datatype": "INT32", "data": [1]}]},
                    None, 400, "unexpected input 'X'"),
    "duplicate input": ({"inputs": GOOD["inputs"] + GOOD["inputs"][:1]}, None, 400, "twice"),
    "string for number": ({"inputs": [{"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": ["a"] * 16},
                                      GOOD["inputs"][1]]}, None, 400, "string"),
    "out of range": ({"inputs": [{"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": [2**40] * 16},
                                 GOOD["inputs"][1]]}, None, 400, "out of range"),
    "negative dim": ({"inputs": [{"name": "INPUT0", "shape": [-1, 16], "datatype": "INT32", "data": [0] * 16}]},
                     None, 400, "invalid shape"),
    "overflowing shape": ({"inputs": [{"name": "INPUT0", "shape": [2**62, 2**62], "datatype": "INT32", "data": [0]}]},
                          None, 400, "invalid shape"),
    "unknown output": ({**GOOD, "outputs": [{"name": "NOPE"}]}, None, 400, "unknown output"),
    "no data": ({"inputs": [{"name": "INPUT0", "shape": [1, 16], "datatype": "INT32"}]}, None, 400, "neither"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_json_requests(server, case):
    body, headers, status, needle = CASES[case]
    r = post(server, body, headers=headers)
    assert r.status_code == status, r.text
    assert needle in r.json()["error"], r.json()
    assert post(server, GOOD).status_code == 200


def test_binary_lengths(server):
    header, body = binary_body()
    hl = {"Inference-Header-Content-Length": str(len(header))}
    assert post(server, body, headers=hl).status_code == 200
    # shorter than the parameters say
    _, short = binary_body(cut=4)
    r = post(server, short, headers=hl)
    assert r.status_code == 400 and "remain" in r.json()["error"]
    # longer than the parameters say
    _, long_ = binary_body(extra=b"\0" * 8)
    r = post(server, long_, headers=hl)
    assert r.status_code == 400 and "no input claims" in r.json()["error"]
    # header length larger than the body
    r = post(server, body, headers={"Inference-Header-Content-Length": str(len(body) + 10)})
    assert r.status_code == 400 and "Inference-Header-Content-Length" in r.json()["error"]
    r = post(server, body, headers={"Inference-Header-Content-Length": "abc"})
    assert r.status_code == 400
    # binary_data_size disagreeing with the shape
    _, odd = binary_body(n0=60, extra=b"")
    r = post(server, odd, headers=hl)
    assert r.status_code == 400


def test_truncated_bytes_element(server):
    header = json.dumps({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": 6}}]}).encode()
    body = header + struct.pack("<I", 10) + b"ab"
    r = post(server, body, path="/v2/models/strings/infer",
             headers={"Inference-Header-Content-Length": str(len(header))})
    assert r.status_code == 400 and "BYTES" in r.json()["error"]


def test_unknown_model_and_version(server):
    r = post(server, GOOD, path="/v2/models/nope/infer")
    assert r.status_code == 404 and "nope" in r.json()["error"]
    r = post(server, GOOD, path="/v2/models/simple/versions/7/infer")
    assert r.status_code == 404 and "version '7'" in r.json()["error"]
    assert requests.get(server.url + "/v2/models/nope").status_code == 404
    assert requests.get(server.url + "/v2/models/nope/ready").status_code == 404
    assert requests.get(server.url + "/v2/models/simple/versions/x/config").status_code == 404
    r = requests.get(server.url + "/v3/whatever")
    assert r.status_code == 404 and "error" in r.json()


def test_memory_does_not_grow_under_bad_input(server):
    pid = server.proc.pid
    _, long_ = binary_body(extra=b"\0" * 8)
    header, _ = binary_body()
    hl = {"Inference-Header-Content-Length": str(len(header))}
    s = requests.Session()

    def burst(n):
        for i in range(n):
            s.post(server.url + "/v2/models/simple/infer", data=long_, headers=hl)
            s.post(server.url + "/v2/models/simple/infer", data=b'{"inputs": [')
            s.post(server.url + "/v2/models/simple/infer", data=json.dumps(CASES["length mismatch"][0]))
            s.post(server.url + "/v2/models/simple/infer", data=json.dumps(GOOD))
    burst(300)
    first = rss_kib(pid)
    burst(1500)
    second = rss_kib(pid)
    assert second - first < 4096, f"RSS grew from {first} KiB to {second} KiB"


@pytest.fixture(scope="module")
def small_limit_server(tmp_path_factory):
    repo = make_repository(tmp_path_factory.mktemp("repo"), {"simple": "add_sub"})
    s = Server(["--model_repository", str(repo), "--max_request_bytes", "4096", "--onnx_engine", "tract"])
    yield s
    s.stop()


def test_body_over_limit(small_limit_server):
    s = small_limit_server
    big = {"inputs": [{"name": n, "shape": [64, 16], "datatype": "INT32", "data": [1] * 1024}
                      for n in ("INPUT0", "INPUT1")]}
    r = requests.post(s.url + "/v2/models/simple/infer", data=json.dumps(big))
    assert r.status_code == 413 and "limit" in r.json()["error"]

    # Chunked upload without Content-Length is cut off while streaming.
    def gen():
        data = json.dumps(big).encode()
        for i in range(0, len(data), 1000):
            yield data[i:i + 1000]
    r = requests.post(s.url + "/v2/models/simple/infer", data=gen())
    assert r.status_code == 413
    r = requests.post(s.url + "/v1/models/simple:predict", data=json.dumps({"instances": [[1] * 16] * 500}))
    assert r.status_code == 413
    c = grpcclient.InferenceServerClient(s.grpc)
    a = np.ones((64, 16), dtype=np.int32)
    ins = [grpcclient.InferInput("INPUT0", a.shape, "INT32"), grpcclient.InferInput("INPUT1", a.shape, "INT32")]
    ins[0].set_data_from_numpy(a)
    ins[1].set_data_from_numpy(a)
    with pytest.raises(InferenceServerException) as e:
        c.infer("simple", ins)
    assert e.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    # still serving
    assert requests.post(s.url + "/v2/models/simple/infer", data=json.dumps(GOOD)).status_code == 200

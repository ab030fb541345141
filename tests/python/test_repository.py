"""The model repository extension: index, load, unload, version swaps,
in-flight requests, and concurrent load/unload while serving."""

import json
import shutil
import threading
import time

import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from conftest import FIXTURES, ROOT, Server, make_repository, slow_cnn_request

GOOD = json.dumps({"inputs": [{"name": n, "shape": [1, 16], "datatype": "INT32", "data": list(range(16))}
                              for n in ("INPUT0", "INPUT1")]})


@pytest.fixture()
def repo_server(tmp_path):
    repo = make_repository(tmp_path / "repo", {"simple": "add_sub", "other": "add_sub", "cnn": "cnn"})
    s = Server(["--model_repository", str(repo), "--onnx_engine", "tract", "--max_batch_size", "100000"])
    s.repo = repo
    yield s
    s.stop()


def index(s):
    return requests.post(s.url + "/v2/repository/index").json()


def test_index_load_unload_http(repo_server):
    s = repo_server
    rows = {r["name"]: r for r in index(s)}
    assert rows["simple"]["state"] == "READY" and rows["simple"]["version"] == "1"
    assert requests.post(s.url + "/v2/repository/models/simple/unload").status_code == 200
    rows = {r["name"]: r for r in index(s)}
    assert rows["simple"]["state"] == "UNAVAILABLE" and rows["simple"]["reason"] == "unloaded"
    assert [r["name"] for r in requests.post(s.url + "/v2/repository/index", json={"ready": True}).json()] \
        == ["cnn", "other"]
    r = requests.post(s.url + "/v2/models/simple/infer", data=GOOD)
    assert r.status_code == 503 and "unloaded" in r.json()["error"]
    assert requests.get(s.url + "/v2/models/simple/ready").status_code == 503
    assert requests.post(s.url + "/v2/repository/models/simple/load").status_code == 200
    assert requests.post(s.url + "/v2/models/simple/infer", data=GOOD).status_code == 200
    r = requests.post(s.url + "/v2/repository/models/missing/load")
    assert r.status_code == 404 and "missing" in r.json()["error"]
    r = requests.post(s.url + "/v2/repository/models/..%2F..%2Fetc/load")
    assert r.status_code == 404


def test_repository_with_tritonclient(repo_server):
    s = repo_server
    hc = httpclient.InferenceServerClient(s.http)
    gc = grpcclient.InferenceServerClient(s.grpc)
    assert {m["name"] for m in hc.get_model_repository_index()} == {"simple", "other", "cnn"}
    gc.unload_model("other")
    assert not hc.is_model_ready("other")
    idx = gc.get_model_repository_index(as_json=True)["models"]
    assert any(m["name"] == "other" and m["state"] == "UNAVAILABLE" for m in idx)
    gc.load_model("other")
    assert gc.is_model_ready("other")
    hc.unload_model("other")
    assert not gc.is_model_ready("other")
    hc.load_model("other")
    assert hc.is_model_ready("other")


def test_new_version_swaps_without_dropping_traffic(repo_server):
    s = repo_server
    failures, done = [], threading.Event()
    versions = set()

    def hammer():
        sess = requests.Session()
        while not done.is_set():
            r = sess.post(s.url + "/v2/models/simple/infer", data=GOOD)
            if r.status_code != 200:
                failures.append((r.status_code, r.text))
            else:
                versions.add(r.json()["model_version"])

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    (s.repo / "simple" / "2").mkdir()
    shutil.copy(FIXTURES / "add_sub" / "model.onnx", s.repo / "simple" / "2" / "model.onnx")
    assert requests.post(s.url + "/v2/repository/models/simple/load").status_code == 200
    time.sleep(0.3)
    done.set()
    for t in threads:
        t.join()
    assert not failures, failures[:3]
    assert versions == {"1", "2"}
    meta = requests.get(s.url + "/v2/models/simple").json()
    assert meta["versions"] == ["2"]
    assert requests.get(s.url + "/v2/models/simple/versions/1").status_code == 404


def test_failed_reload_keeps_old_version(repo_server):
    s = repo_server
    (s.repo / "simple" / "3").mkdir()
    (s.repo / "simple" / "3" / "model.onnx").write_bytes(b"this is not an onnx model")
    r = requests.post(s.url + "/v2/repository/models/simple/load")
    assert r.status_code == 400 and "3" in r.json()["error"]
    assert requests.post(s.url + "/v2/models/simple/infer", data=GOOD).status_code == 200


def test_model_library_panic_is_a_load_error_not_a_crash_report(repo_server):
    # A file tract panics on (found by the fuzz harness): the load fails with
    # the panic's message, the log has one warning instead of Rust's report.
    s = repo_server
    bad = ROOT / "crates/ferroserve-runtime-onnx/tests/fuzz-regressions"
    (s.repo / "simple" / "3").mkdir()
    shutil.copy(bad / "output_without_producer.onnx", s.repo / "simple" / "3" / "model.onnx")
    r = requests.post(s.url + "/v2/repository/models/simple/load")
    assert r.status_code == 400 and "tract could not read the model" in r.json()["error"]
    assert requests.post(s.url + "/v2/models/simple/infer", data=GOOD).status_code == 200
    assert "contained a panic in a model library" in s.log()
    assert "panicked at" not in s.log()


def test_unload_waits_for_in_flight(repo_server):
    s = repo_server
    t, result = slow_cnn_request(s)
    r = requests.post(s.url + "/v2/repository/models/cnn/unload")
    unloaded = time.monotonic()
    t.join()
    assert r.status_code == 200
    assert result["status"] == 200
    assert unloaded >= result["done"] - 0.05


def test_concurrent_load_unload_while_serving(repo_server):
    s = repo_server
    done = threading.Event()
    bad, flapping_codes = [], set()

    def serve_other():
        sess = requests.Session()
        while not done.is_set():
            r = sess.post(s.url + "/v2/models/other/infer", data=GOOD)
            if r.status_code != 200:
                bad.append(r.text)

    def hit_flapping():
        sess = requests.Session()
        while not done.is_set():
            flapping_codes.add(sess.post(s.url + "/v2/models/simple/infer", data=GOOD).status_code)

    def flap(action):
        sess = requests.Session()
        for _ in range(25):
            sess.post(s.url + f"/v2/repository/models/simple/{action}")

    workers = [threading.Thread(target=serve_other), threading.Thread(target=hit_flapping)]
    flappers = [threading.Thread(target=flap, args=(a,)) for a in ("load", "unload", "load", "unload")]
    for t in workers + flappers:
        t.start()
    for t in flappers:
        t.join()
    done.set()
    for t in workers:
        t.join()
    assert not bad, bad[:3]
    assert flapping_codes <= {200, 503}, flapping_codes
    assert requests.post(s.url + "/v2/repository/models/simple/load").status_code == 200
    assert requests.post(s.url + "/v2/models/simple/infer", data=GOOD).status_code == 200
    assert s.proc.poll() is None

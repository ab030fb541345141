"""Request/response logger (KServe's logger semantics) against sinks started
inside the test: a healthy CloudEvents sink under load, a failing sink, a
hanging sink, the JSON-lines file sink, the mode filter, gRPC ModelInfer
logging and the egress allow-list at start-up."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from prometheus_client.parser import text_string_to_metric_families

from conftest import EXAMPLES, Server

BODY = (EXAMPLES / "iris" / "request.json").read_bytes()
IRIS = ["--model_dir", str(EXAMPLES / "iris"), "--onnx_engine", "tract"]


class Sink:
    """A CloudEvents sink: records each POST's headers (lower-case) and body.
    behaviour: 'ok' (200), 'fail' (500) or 'hang' (answers after `hang` s)."""

    def __init__(self, behaviour="ok", hang=30.0, tls=None):
        self.events = []
        self.attempts = 0
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(n)
                with sink.lock:
                    sink.attempts += 1
                if behaviour == "hang":
                    time.sleep(hang)
                if behaviour == "fail":
                    self.send_response(500)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                with sink.lock:
                    sink.events.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        scheme = "http"
        if tls:
            import ssl
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.port}/events"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def wait_for(self, n, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.events) >= n:
                    return list(self.events)
            time.sleep(0.02)
        with self.lock:
            return list(self.events)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def logger_metrics(server):
    text = requests.get(server.url + "/metrics").text
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "ferroserve_logger_events_total":
                out[s.labels["outcome"]] = s.value
            elif s.name.startswith("ferroserve_logger_"):
                out[s.name] = s.value
    return out


def wait_metric(server, outcome, at_least, timeout=20):
    deadline = time.monotonic() + timeout
    m = {}
    while time.monotonic() < deadline:
        m = logger_metrics(server)
        if m.get(outcome, 0) >= at_least:
            return m
        time.sleep(0.05)
    return m


@pytest.fixture
def sink():
    s = Sink()
    yield s
    s.close()


def test_every_event_arrives_with_kserve_headers(sink):
    s = Server([*IRIS, "--logger_url", sink.url, "--egress_allow", "127.0.0.1",
                "--logger_inference_service", "iris-isvc", "--logger_namespace", "team-a",
                "--logger_endpoint", "default"])
    try:
        n = 200
        answers = {}

        def one(i):
            r = requests.post(s.url + "/v2/models/iris/infer", data=BODY,
                              headers={"content-type": "application/json", "ce-id": f"req-{i}"})
            assert r.status_code == 200
            answers[f"req-{i}"] = r.content

        with ThreadPoolExecutor(8) as ex:
            list(ex.map(one, range(n)))
        # KServe v1 too, with a generated id.
        r = requests.post(s.url + "/v1/models/iris:predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
        assert r.status_code == 200
        events = sink.wait_for(2 * n + 2)
        assert len(events) == 2 * n + 2, len(events)
        by_id = {}
        for h, body in events:
            by_id.setdefault(h["ce-id"], []).append((h, body))
        assert len(by_id) == n + 1
        for i in range(n):
            pair = by_id[f"req-{i}"]
            types = sorted(h["ce-type"] for h, _ in pair)
            assert types == ["org.kubeflow.serving.inference.request",
                             "org.kubeflow.serving.inference.response"]
            for h, body in pair:
                assert h["ce-specversion"] == "1.0"
                assert h["ce-source"] == f"http://localhost:{s.http.rsplit(':', 1)[1]}/"
                assert h["ce-inferenceservicename"] == "iris-isvc"
                assert h["ce-namespace"] == "team-a"
                assert h["ce-component"] == "predictor"
                assert h["ce-endpoint"] == "default"
                assert h["ce-time"].endswith("Z") and "T" in h["ce-time"]
                assert h["content-type"] == "application/json"
                if h["ce-type"].endswith(".request"):
                    assert body == BODY
                else:
                    assert body == answers[f"req-{i}"]
        v1 = [v for k, v in by_id.items() if not k.startswith("req-")][0]
        assert len(v1) == 2
        assert all(len(h["ce-id"]) == 36 for h, _ in v1)
        m = wait_metric(s, "sent", 2 * n + 2)
        assert m["sent"] == 2 * n + 2
        assert m["dropped"] == 0 and m["failed"] == 0
    finally:
        s.stop()


def test_grpc_model_infer_is_logged_as_protobuf(sink):
    from tritonclient.grpc import service_pb2
    s = Server([*IRIS, "--logger_url", sink.url])
    try:
        g = grpcclient.InferenceServerClient(s.grpc)
        t = grpcclient.InferInput("input", [1, 4], "FP32")
        t.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
        g.infer("iris", [t], headers={"ce-id": "grpc-1"})
        events = sink.wait_for(2)
        assert len(events) == 2
        for h, body in events:
            assert h["ce-id"] == "grpc-1"
            assert h["content-type"].startswith("application/x-protobuf")
            if h["ce-type"].endswith(".request"):
                assert service_pb2.ModelInferRequest.FromString(body).model_name == "iris"
            else:
                assert service_pb2.ModelInferResponse.FromString(body).model_name == "iris"
    finally:
        s.stop()


@pytest.mark.parametrize("mode", ["request", "response"])
def test_mode_filters_events(sink, mode):
    s = Server([*IRIS, "--logger_url", sink.url, "--logger_mode", mode])
    try:
        for _ in range(5):
            assert requests.post(s.url + "/v2/models/iris/infer", data=BODY).status_code == 200
        # Errors are not logged as responses (KServe logs only 200 answers).
        assert requests.post(s.url + "/v2/models/iris/infer", data=b"{").status_code == 400
        wait_metric(s, "sent", 5 if mode == "response" else 6)
        time.sleep(0.3)
        events = sink.wait_for(5)
        types = {h["ce-type"] for h, _ in events}
        assert types == {f"org.kubeflow.serving.inference.{mode}"}
        assert len(events) == (6 if mode == "request" else 5)
        # Non-inference routes are never logged.
        requests.get(s.url + "/v2/models/iris")
        time.sleep(0.2)
        assert len(sink.wait_for(0)) == len(events)
    finally:
        s.stop()


def test_failing_sink_is_retried_then_counted():
    sink = Sink("fail")
    s = Server([*IRIS, "--logger_url", sink.url, "--logger_max_retries", "2"])
    try:
        for _ in range(3):
            assert requests.post(s.url + "/v2/models/iris/infer", data=BODY).status_code == 200
        m = wait_metric(s, "failed", 6)
        assert m["failed"] == 6
        assert m["sent"] == 0
        assert m["ferroserve_logger_retries_total"] == 12
        assert sink.attempts == 18
        assert "event not delivered" in s.log()
    finally:
        s.stop()
        sink.close()


def test_hanging_sink_does_not_slow_inference_and_drops_are_counted():
    # Baseline latency without a logger.
    base = Server(IRIS)
    try:
        requests.post(base.url + "/v2/models/iris/infer", data=BODY)
        t0 = time.monotonic()
        for _ in range(50):
            assert requests.post(base.url + "/v2/models/iris/infer", data=BODY).status_code == 200
        baseline = (time.monotonic() - t0) / 50
    finally:
        base.stop()
    sink = Sink("hang", hang=30)
    s = Server([*IRIS, "--logger_url", sink.url, "--logger_queue_size", "4",
                "--logger_workers", "1", "--logger_timeout", "20"])
    try:
        requests.post(s.url + "/v2/models/iris/infer", data=BODY)
        worst = 0.0
        t0 = time.monotonic()
        for _ in range(50):
            t = time.monotonic()
            assert requests.post(s.url + "/v2/models/iris/infer", data=BODY).status_code == 200
            worst = max(worst, time.monotonic() - t)
        mean = (time.monotonic() - t0) / 50
        # Generous margins: the sink would add 30 s per event if it mattered.
        assert worst < 1.0, worst
        assert mean < baseline + 0.05, (mean, baseline)
        m = logger_metrics(s)
        # 102 events: at most 4 queued and 1 in delivery, the rest dropped.
        assert m["dropped"] >= 102 - 5, m
        assert m["ferroserve_logger_queue_size"] <= 4
        assert "event dropped" in s.log()
    finally:
        s.stop()
        sink.close()


@pytest.mark.parametrize("plain_path", [False, True])
def test_file_sink_writes_json_lines(tmp_path, plain_path):
    path = tmp_path / "log.jsonl"
    url = str(path) if plain_path else f"file://{path}"
    s = Server([*IRIS, "--logger_url", url, "--egress_allow", "example.com"])
    try:
        for i in range(3):
            r = requests.post(s.url + "/v2/models/iris/infer", data=BODY, headers={"ce-id": f"f{i}"})
            assert r.status_code == 200
        wait_metric(s, "sent", 6)
        lines = path.read_text().splitlines()
        assert len(lines) == 6
        events = [json.loads(line) for line in lines]
        for e in events:
            assert e["specversion"] == "1.0"
            assert e["id"] in {"f0", "f1", "f2"}
            assert e["datacontenttype"] == "application/json"
            assert e["component"] == "predictor"
        req = [e for e in events if e["type"] == "org.kubeflow.serving.inference.request"]
        resp = [e for e in events if e["type"] == "org.kubeflow.serving.inference.response"]
        assert len(req) == 3 and len(resp) == 3
        assert req[0]["data"] == json.loads(BODY)
        assert resp[0]["data"]["model_name"] == "iris"
    finally:
        s.stop()


def test_requests_refused_before_or_while_reading_the_body(tmp_path):
    """The body is recorded as the handler reads it: one the handler never
    reads (unknown model) is read and logged anyway; one past the body limit
    is refused (413) and not logged; a chunked body is logged whole."""
    path = tmp_path / "log.jsonl"
    s = Server([*IRIS, "--logger_url", f"file://{path}", "--max_request_bytes", "4096"])
    try:
        r = requests.post(s.url + "/v2/models/nope/infer", data=BODY, headers={"ce-id": "unknown"})
        assert r.status_code == 404
        r = requests.post(s.url + "/v2/models/iris/infer", data=b"[" * 5000, headers={"ce-id": "big"})
        assert r.status_code == 413
        chunks = iter([BODY[:10], BODY[10:30], BODY[30:]])
        r = requests.post(s.url + "/v2/models/iris/infer", data=chunks, headers={"ce-id": "chunked"})
        assert r.status_code == 200, r.text
        wait_metric(s, "sent", 3)
        time.sleep(0.2)
        events = [json.loads(line) for line in path.read_text().splitlines()]
        got = sorted((e["id"], e["type"].rsplit(".", 1)[1]) for e in events)
        assert got == [("chunked", "request"), ("chunked", "response"), ("unknown", "request")]
        for e in events:
            if e["type"].endswith(".request"):
                assert e["data"] == json.loads(BODY)
        # The server keeps serving on the same connection pool after each.
        assert requests.post(s.url + "/v2/models/iris/infer", data=BODY).status_code == 200
    finally:
        s.stop()


def test_egress_allow_list_refuses_logger_sink_at_start():
    s = Server([*IRIS, "--logger_url", "http://10.1.2.3:9000/events", "--egress_allow", "127.0.0.1",
                "--egress_allow", "sink.example.com:443"], expect_ready=False)
    try:
        assert s.wait_exit(30) != 0
        s._reader.join(5)
        log = s.log()
        assert "egress allow-list" in log and "10.1.2.3" in log, log
    finally:
        s.stop()


@pytest.mark.parametrize("args,message", [
    (["--logger_url", "ftp://x/"], "unsupported scheme"),
    (["--logger_mode", "request"], "--logger_mode needs --logger_url"),
    (["--egress_allow", "host:port"], "invalid --egress_allow rule"),
    (["--logger_url", "/nonexistent-dir/x/log.jsonl"], "cannot open logger file"),
])
def test_bad_logger_flags_fail_the_start(args, message):
    s = Server([*IRIS, *args], expect_ready=False)
    try:
        assert s.wait_exit(30) != 0
        s._reader.join(5)
        assert message in s.log(), s.log()
    finally:
        s.stop()


def test_openai_embeddings_are_logged(tmp_path):
    from conftest import ROOT
    path = tmp_path / "log.jsonl"
    s = Server(["--model_dir", str(ROOT / "tests" / "fixtures" / "hf" / "st_bert"), "--model_name", "st-bert",
                "--logger_url", f"file://{path}"])
    try:
        req = {"model": "st-bert", "input": ["hello world"], "encoding_format": "float"}
        for route in ("/openai/v1/embeddings", "/v1/embeddings"):
            r = requests.post(s.url + route, json=req, headers={"ce-id": route})
            assert r.status_code == 200, r.text
        wait_metric(s, "sent", 4)
        events = [json.loads(line) for line in path.read_text().splitlines()]
        assert len(events) == 4
        for e in events:
            if e["type"].endswith(".request"):
                assert e["data"] == req
            else:
                assert e["data"]["object"] == "list"
                assert len(e["data"]["data"][0]["embedding"]) > 0
        assert {e["id"] for e in events} == {"/openai/v1/embeddings", "/v1/embeddings"}
    finally:
        s.stop()


def make_pki(tmp_path):
    """A CA and a server certificate for 127.0.0.1 / localhost (PEM files)."""
    import datetime
    import ipaddress
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("logger test CA")).issuer_name(name("logger test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(name("localhost")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (tmp_path / "ca.crt").write_bytes(ca.public_bytes(pem))
    (tmp_path / "sink.crt").write_bytes(cert.public_bytes(pem))
    (tmp_path / "sink.key").write_bytes(key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return tmp_path / "ca.crt", (str(tmp_path / "sink.crt"), str(tmp_path / "sink.key"))


def test_https_sink(tmp_path):
    ca, pair = make_pki(tmp_path)
    sink = Sink(tls=pair)
    s = Server([*IRIS, "--logger_url", sink.url, "--logger_ca_cert_file", str(ca)])
    try:
        assert requests.post(s.url + "/v2/models/iris/infer", data=BODY).status_code == 200
        events = sink.wait_for(2)
        assert len(events) == 2
        assert {h["ce-type"] for h, _ in events} == {"org.kubeflow.serving.inference.request",
                                                     "org.kubeflow.serving.inference.response"}
    finally:
        s.stop()
    # A sink whose certificate is not from a trusted CA gets nothing; the
    # events are counted as failed.
    (tmp_path / "other").mkdir()
    other, _ = make_pki(tmp_path / "other")
    s = Server([*IRIS, "--logger_url", sink.url, "--logger_ca_cert_file", str(other),
                "--logger_max_retries", "0"])
    try:
        before = len(sink.wait_for(0))
        assert requests.post(s.url + "/v2/models/iris/infer", data=BODY).status_code == 200
        m = wait_metric(s, "failed", 2)
        assert m["failed"] == 2 and m["sent"] == 0
        assert len(sink.wait_for(0)) == before
    finally:
        s.stop()
        sink.close()


def test_streamed_completion_is_logged_when_it_ends(sink):
    """An SSE answer is recorded as sent and logged as one response event
    (content type text/event-stream) once the stream ends."""
    from conftest import ROOT
    s = Server(["--model_dir", str(ROOT / "tests" / "fixtures" / "llm" / "llama"), "--model_name", "tiny-llama",
                "--logger_url", sink.url])
    try:
        req = {"model": "tiny-llama", "prompt": "hello", "max_tokens": 5, "temperature": 0, "stream": True}
        r = requests.post(s.url + "/v1/completions", json=req, headers={"ce-id": "sse-1"}, stream=True)
        assert r.status_code == 200
        sent = b"".join(r.iter_content(None))
        assert sent.rstrip().endswith(b"data: [DONE]")
        events = sink.wait_for(2)
        assert len(events) == 2
        by_type = {h["ce-type"].rsplit(".", 1)[1]: (h, body) for h, body in events}
        assert json.loads(by_type["request"][1]) == req
        h, body = by_type["response"]
        assert h["ce-id"] == "sse-1"
        assert h["content-type"].startswith("text/event-stream")
        assert body == sent
    finally:
        s.stop()


def test_grpc_stream_messages_are_logged_one_by_one(sink):
    """ModelStreamInfer: every request message and its response are logged,
    paired by an id of their own."""
    from tritonclient.grpc import service_pb2
    import queue
    s = Server([*IRIS, "--logger_url", sink.url])
    try:
        g = grpcclient.InferenceServerClient(s.grpc)
        got = queue.Queue()
        g.start_stream(callback=lambda result, error: got.put((result, error)))
        for i in range(3):
            t = grpcclient.InferInput("input", [1, 4], "FP32")
            t.set_data_from_numpy(np.full((1, 4), i, dtype=np.float32))
            g.async_stream_infer("iris", [t], request_id=f"r{i}")
        for _ in range(3):
            result, error = got.get(timeout=10)
            assert error is None
        g.stop_stream()
        events = sink.wait_for(6)
        assert len(events) == 6
        pairs = {}
        for h, body in events:
            kind = h["ce-type"].rsplit(".", 1)[1]
            msg = (service_pb2.ModelInferRequest if kind == "request" else service_pb2.ModelInferResponse).FromString(body)
            pairs.setdefault(h["ce-id"], {})[kind] = msg.id
        assert len(pairs) == 3
        assert sorted(p["request"] for p in pairs.values()) == ["r0", "r1", "r2"]
        assert all(p["request"] == p["response"] for p in pairs.values())
    finally:
        s.stop()


def test_trace_context_is_forwarded_to_the_sink(sink, tmp_path):
    """With tracing off, the caller's traceparent/tracestate reach the sink
    unchanged (HTTP sink headers; file sink attributes)."""
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    path = tmp_path / "log.jsonl"
    for url in (sink.url, f"file://{path}"):
        s = Server([*IRIS, "--logger_url", url])
        try:
            r = requests.post(s.url + "/v2/models/iris/infer", data=BODY,
                              headers={"traceparent": tp, "tracestate": "vendor=1"})
            assert r.status_code == 200
            wait_metric(s, "sent", 2)
        finally:
            s.stop()
    events = sink.wait_for(2)
    assert [h.get("traceparent") for h, _ in events] == [tp, tp]
    assert [h.get("tracestate") for h, _ in events] == ["vendor=1", "vendor=1"]
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["traceparent"] for e in lines] == [tp, tp]
    assert [e["tracestate"] for e in lines] == ["vendor=1", "vendor=1"]


def test_queued_body_bytes_are_bounded():
    """With a hanging sink, --logger_queue_bytes caps the memory held by
    waiting events: past it, events are dropped and counted."""
    hang = Sink("hang", hang=30)
    size = len(BODY)
    s = Server([*IRIS, "--logger_url", hang.url, "--logger_workers", "1", "--logger_queue_bytes", str(3 * size),
                "--logger_mode", "request"])
    try:
        for _ in range(20):
            assert requests.post(s.url + "/v2/models/iris/infer", data=BODY).status_code == 200
        m = logger_metrics(s)
        assert m["dropped"] == 17, m
        assert m["ferroserve_logger_queue_bytes"] == 3 * size
    finally:
        s.stop()
        hang.close()

"""OpenTelemetry tracing: ferroserve exports spans over OTLP (gRPC and
HTTP/protobuf) to a receiver started here, honours W3C `traceparent` on HTTP
and gRPC, and links every stage span to its request's server span."""

import json
import os
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from conftest import EXAMPLES, Server, make_repository

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


class Sink:
    """Collects exported spans: a list of (resource attributes, span)."""

    def __init__(self):
        self.spans = []
        self.lock = threading.Lock()
        self.requests = 0

    def add(self, req):
        with self.lock:
            self.requests += 1
            for rs in req.resource_spans:
                res = attrs(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        self.spans.append((res, s))

    def wait_for(self, pred, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                found = [s for _, s in self.spans if pred(s)]
            if found:
                return found
            time.sleep(0.05)
        return []

    def trace(self, trace_id: bytes):
        with self.lock:
            return [s for _, s in self.spans if s.trace_id == trace_id]


def attrs(kvs):
    out = {}
    for kv in kvs:
        v = kv.value
        which = v.WhichOneof("value")
        out[kv.key] = getattr(v, which) if which else None
    return out


class GrpcSink(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, sink):
        self.sink = sink

    def Export(self, request, context):
        self.sink.add(request)
        return trace_service_pb2.ExportTraceServiceResponse()


def start_grpc_receiver(sink):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(GrpcSink(sink), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"http://127.0.0.1:{port}"


def start_http_receiver(sink):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            ok = self.path == "/v1/traces" and self.headers.get("Content-Type") == "application/x-protobuf"
            if ok:
                req = trace_service_pb2.ExportTraceServiceRequest()
                req.ParseFromString(body)
                sink.add(req)
            out = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200 if ok else 400)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *a):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def otel_env(endpoint, protocol, **extra):
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_SERVICE_NAME": "ferroserve-under-test",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    env.update(extra)
    return env


def traceparent(trace_id=TRACE_ID, parent=PARENT_ID, flags="01"):
    return f"00-{trace_id}-{parent}-{flags}"


def children(spans, parent):
    return {s.name: s for s in spans if s.parent_span_id == parent.span_id}


def v2_body():
    a = list(range(16))
    return {"inputs": [{"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": a},
                       {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": a}]}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return make_repository(tmp_path_factory.mktemp("repo"), {"simple": "add_sub"})


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_spans_exported_with_remote_parent(repo, protocol):
    sink = Sink()
    if protocol == "grpc":
        receiver, endpoint = start_grpc_receiver(sink)
    else:
        receiver, endpoint = start_http_receiver(sink)
    s = Server(["--model_repository", str(repo), "--model_dir", str(EXAMPLES / "iris"),
                "--onnx_engine", "tract"], env=otel_env(endpoint, protocol))
    try:
        # v2 REST, child of the caller's span.
        r = requests.post(f"{s.url}/v2/models/simple/infer", json=v2_body(),
                          headers={"traceparent": traceparent(), "tracestate": "vendor=1"})
        assert r.status_code == 200, r.text
        tid = bytes.fromhex(TRACE_ID)
        found = sink.wait_for(lambda sp: sp.trace_id == tid and sp.name == "POST /v2/models/{m}/infer")
        assert found, f"no server span exported; got {[x.name for _, x in sink.spans]}"
        server_span = found[0]
        assert server_span.parent_span_id == bytes.fromhex(PARENT_ID)
        assert server_span.kind == server_span.SPAN_KIND_SERVER
        a = attrs(server_span.attributes)
        assert a["ferroserve.model.name"] == "simple"
        assert a["ferroserve.model.version"] == "1"
        assert a["ferroserve.protocol"] == "v2"
        assert a["http.request.method"] == "POST"
        assert a["http.route"] == "/v2/models/{m}/infer"
        assert a["http.response.status_code"] == 200
        assert server_span.trace_state == "vendor=1"
        # The stage spans are its children (they may arrive in a later batch).
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            kids = children(sink.trace(tid), server_span)
            if {"receive", "decode", "compute", "encode"} <= kids.keys():
                break
            time.sleep(0.05)
        assert {"receive", "decode", "compute", "encode"} <= kids.keys(), kids.keys()
        compute = attrs(kids["compute"].attributes)
        assert compute["ferroserve.model.name"] == "simple"
        # Stages run in order, inside the server span.
        assert kids["receive"].end_time_unix_nano <= kids["decode"].start_time_unix_nano
        assert kids["decode"].end_time_unix_nano <= kids["compute"].start_time_unix_nano
        assert kids["compute"].end_time_unix_nano <= kids["encode"].start_time_unix_nano
        for k in kids.values():
            assert server_span.start_time_unix_nano <= k.start_time_unix_nano
            assert k.end_time_unix_nano <= server_span.end_time_unix_nano

        # KServe v1: protocol and model recorded; no traceparent: a new trace.
        rows = json.loads((EXAMPLES / "iris" / "request.json").read_text())["inputs"][0]["data"]
        r = requests.post(f"{s.url}/v1/models/iris:predict", json={"instances": [rows[:4]]})
        assert r.status_code == 200, r.text
        v1 = sink.wait_for(lambda sp: sp.name == "POST /v1/models/{m}")
        assert v1
        a = attrs(v1[0].attributes)
        assert a["ferroserve.protocol"] == "v1" and a["ferroserve.model.name"] == "iris"
        assert v1[0].parent_span_id == b""

        # v2 gRPC with traceparent metadata.
        grpc_tid = "0af7651916cd43dd8448eb211c80319c"
        c = grpcclient.InferenceServerClient(s.grpc)
        x = np.arange(16, dtype=np.int32).reshape(1, 16)
        ins = [grpcclient.InferInput("INPUT0", x.shape, "INT32"), grpcclient.InferInput("INPUT1", x.shape, "INT32")]
        ins[0].set_data_from_numpy(x)
        ins[1].set_data_from_numpy(x)
        c.infer("simple", ins, headers={"traceparent": traceparent(grpc_tid, "b7ad6b7169203331")})
        g = sink.wait_for(lambda sp: sp.trace_id == bytes.fromhex(grpc_tid)
                          and sp.name == "inference.GRPCInferenceService/ModelInfer")
        assert g
        gs = g[0]
        assert gs.parent_span_id == bytes.fromhex("b7ad6b7169203331")
        a = attrs(gs.attributes)
        assert a["rpc.system"] == "grpc" and a["rpc.method"] == "ModelInfer"
        assert a["ferroserve.protocol"] == "v2-grpc" and a["ferroserve.model.name"] == "simple"
        assert a["rpc.grpc.status_code"] == 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            kids = children(sink.trace(bytes.fromhex(grpc_tid)), gs)
            if {"decode", "compute", "encode"} <= kids.keys():
                break
            time.sleep(0.05)
        assert {"decode", "compute", "encode"} <= kids.keys(), kids.keys()

        # Parent-based sampling: a caller that did not sample is not traced.
        unsampled = "11111111111111111111111111111111"
        r = requests.post(f"{s.url}/v2/models/simple/infer", json=v2_body(),
                          headers={"traceparent": traceparent(unsampled, flags="00")})
        assert r.status_code == 200
        # Resource: the service name from OTEL_SERVICE_NAME.
        assert sink.spans[0][0]["service.name"] == "ferroserve-under-test"
    finally:
        s.stop()
        if protocol == "grpc":
            receiver.stop(0)
        else:
            receiver.shutdown()
    assert not sink.trace(bytes.fromhex(unsampled))


def test_dynamic_batching_queue_and_batch_spans(repo):
    sink = Sink()
    receiver, endpoint = start_grpc_receiver(sink)
    s = Server(["--model_repository", str(repo), "--onnx_engine", "tract", "--dynamic_batching",
                "--max_queue_delay_microseconds", "2000"], env=otel_env(endpoint, "grpc"))
    try:
        tids = [f"{i:032x}" for i in range(1, 9)]

        def send(t):
            r = requests.post(f"{s.url}/v2/models/simple/infer", json=v2_body(),
                              headers={"traceparent": traceparent(t)})
            assert r.status_code == 200

        with futures.ThreadPoolExecutor(8) as ex:
            list(ex.map(send, tids))
        for t in tids:
            tid = bytes.fromhex(t)
            deadline = time.monotonic() + 10
            names = set()
            while time.monotonic() < deadline:
                spans = sink.trace(tid)
                names = {x.name for x in spans}
                if {"queue", "batch", "compute"} <= names:
                    break
                time.sleep(0.05)
            assert {"POST /v2/models/{m}/infer", "queue", "batch", "compute"} <= names, names
            by = {x.name: x for x in spans}
            root = by["POST /v2/models/{m}/infer"]
            assert by["queue"].parent_span_id == root.span_id
            assert by["batch"].parent_span_id == root.span_id
            assert by["compute"].parent_span_id == by["batch"].span_id
            assert by["queue"].end_time_unix_nano <= by["batch"].start_time_unix_nano
            b = attrs(by["batch"].attributes)
            assert b["ferroserve.batch.requests"] >= 1 and b["ferroserve.batch.rows"] >= 1
    finally:
        s.stop()
        receiver.stop(0)


def test_tracing_off_by_exporter_none_and_flag_needed(repo):
    sink = Sink()
    receiver, endpoint = start_grpc_receiver(sink)
    try:
        # OTEL_TRACES_EXPORTER=none wins over an endpoint.
        s = Server(["--model_repository", str(repo), "--onnx_engine", "tract"],
                   env=otel_env(endpoint, "grpc", OTEL_TRACES_EXPORTER="none"))
        try:
            r = requests.post(f"{s.url}/v2/models/simple/infer", json=v2_body(),
                              headers={"traceparent": traceparent()})
            assert r.status_code == 200
        finally:
            s.stop()
        assert "OpenTelemetry tracing on" not in s.log()
        assert sink.requests == 0 and not sink.spans
        # An unknown exporter is a start-up error, not a silent no-op.
        s = Server(["--model_repository", str(repo)], expect_ready=False,
                   env={"OTEL_TRACES_EXPORTER": "zipkin", "FERROSERVE_TRACING": "true"})
        assert s.wait_exit(30) != 0
        assert "OTEL_TRACES_EXPORTER" in s.log()
    finally:
        receiver.stop(0)


def test_flag_turns_tracing_on_with_traces_endpoint(repo):
    """--tracing with only the per-signal endpoint (HTTP, used verbatim)."""
    sink = Sink()
    httpd, endpoint = start_http_receiver(sink)
    env = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint + "/v1/traces",
           "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_BSP_SCHEDULE_DELAY": "100"}
    s = Server(["--model_repository", str(repo), "--onnx_engine", "tract", "--tracing"], env=env)
    try:
        assert requests.get(f"{s.url}/v2/models/simple").status_code == 200
        spans = sink.wait_for(lambda sp: sp.name == "GET /v2/models/{m}")
        assert spans
        assert attrs(spans[0].attributes)["ferroserve.model.name"] == "simple"
        # Default service name.
        assert sink.spans[0][0]["service.name"] == "ferroserve"
    finally:
        s.stop()
        httpd.shutdown()


def test_otlp_endpoint_outside_the_egress_allow_list_fails_start_up():
    env = otel_env("http://10.255.0.1:4317", "grpc")
    srv = Server(["--model_dir", str(EXAMPLES / "iris"), "--egress_allow", "127.0.0.1"],
                 env=env, expect_ready=False)
    try:
        assert srv.wait_exit(30) != 0
    finally:
        srv.stop()
    assert "OTLP" in srv.log() and "10.255.0.1" in srv.log()


def test_logger_events_carry_the_server_span_as_parent(repo, tmp_path):
    """The request logger propagates the trace: each CloudEvent carries a
    traceparent naming this server's span (the caller's trace id)."""
    sink = Sink()
    receiver, endpoint = start_http_receiver(sink)
    log = tmp_path / "events.jsonl"
    s = Server(["--model_repository", str(repo), "--logger_url", f"file://{log}"],
               env=otel_env(endpoint, "http/protobuf"))
    try:
        r = requests.post(f"{s.url}/v2/models/simple/infer", json=v2_body(),
                          headers={"traceparent": traceparent()})
        assert r.status_code == 200, r.text
        tid = bytes.fromhex(TRACE_ID)
        found = sink.wait_for(lambda sp: sp.trace_id == tid and sp.name == "POST /v2/models/{m}/infer")
        assert found
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(log.read_text().splitlines() if log.exists() else []) < 2:
            time.sleep(0.05)
        events = [json.loads(line) for line in log.read_text().splitlines()]
        assert len(events) == 2
        want = f"00-{TRACE_ID}-{found[0].span_id.hex()}-01"
        assert [e["traceparent"] for e in events] == [want, want]
    finally:
        s.stop()
        receiver.shutdown()

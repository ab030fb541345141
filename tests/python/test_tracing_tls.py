"""OTLP export over TLS: `https://` collectors for gRPC and HTTP/protobuf,
trusted through OTEL_EXPORTER_OTLP_CERTIFICATE, with a client certificate
(OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE / _CLIENT_KEY, mutual TLS); a
collector whose CA is not trusted gets nothing while the server keeps
serving. Certificates are made here as in test_tls.py; the receivers are
those of test_tracing.py behind TLS."""

import ssl
import threading
import time
from concurrent import futures
from http.server import ThreadingHTTPServer

import grpc
import pytest
import requests
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

from conftest import Server, make_repository
from test_tls import issue, make_ca, pem_cert, pem_key
from test_tracing import GrpcSink, Sink, start_http_receiver


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("otlp-pki")
    ca = make_ca("collector CA")
    client_ca = make_ca("exporter client CA")
    other = make_ca("untrusted CA")
    files = {}
    for name, (cert, key) in {
        "collector": issue(ca, "localhost", 5005),
        "exporter": issue(client_ca, "ferroserve", 6006, server=False),
    }.items():
        (d / f"{name}.crt").write_bytes(pem_cert(cert))
        (d / f"{name}.key").write_bytes(pem_key(key))
        files[name] = (d / f"{name}.crt", d / f"{name}.key")
    for name, (cert, _) in {"ca": ca, "client_ca": client_ca, "other": other}.items():
        (d / f"{name}.crt").write_bytes(pem_cert(cert))
        files[name] = d / f"{name}.crt"
    return files


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return make_repository(tmp_path_factory.mktemp("repo"), {"simple": "add_sub"})


def start_grpc_tls_receiver(sink, pki, mutual):
    crt, key = pki["collector"]
    creds = grpc.ssl_server_credentials(
        [(key.read_bytes(), crt.read_bytes())],
        root_certificates=pki["client_ca"].read_bytes() if mutual else None,
        require_client_auth=mutual)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(GrpcSink(sink), server)
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    return server.stop, f"https://127.0.0.1:{port}"


def start_http_tls_receiver(sink, pki, mutual):
    httpd, endpoint = start_http_receiver(sink)
    # start_http_receiver serves already: stop it, wrap its socket, serve again.
    httpd.shutdown()
    crt, key = pki["collector"]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    if mutual:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(pki["client_ca"])
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return (lambda *_: httpd.shutdown()), endpoint.replace("http://", "https://")


def receiver(protocol, sink, pki, mutual):
    if protocol == "grpc":
        return start_grpc_tls_receiver(sink, pki, mutual)
    return start_http_tls_receiver(sink, pki, mutual)


def env(endpoint, protocol, ca, client=None):
    e = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
         "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
         "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE": str(ca),
         "OTEL_EXPORTER_OTLP_TIMEOUT": "2000",
         "OTEL_BSP_SCHEDULE_DELAY": "100"}
    if client:
        e["OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"] = str(client[0])
        e["OTEL_EXPORTER_OTLP_CLIENT_KEY"] = str(client[1])
    return e


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_spans_arrive_over_mutual_tls(repo, pki, protocol):
    sink = Sink()
    stop, endpoint = receiver(protocol, sink, pki, mutual=True)
    s = Server(["--model_repository", str(repo), "--onnx_engine", "tract"],
               env=env(endpoint, protocol, pki["ca"], pki["exporter"]))
    try:
        assert requests.get(f"{s.url}/v2/models/simple").status_code == 200
        spans = sink.wait_for(lambda sp: sp.name == "GET /v2/models/{m}")
        assert spans, s.log()
    finally:
        s.stop()
        stop(0)


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_untrusted_collector_gets_nothing_and_server_serves(repo, pki, protocol):
    sink = Sink()
    stop, endpoint = receiver(protocol, sink, pki, mutual=False)
    s = Server(["--model_repository", str(repo), "--onnx_engine", "tract"],
               env=env(endpoint, protocol, pki["other"]))
    try:
        for _ in range(5):
            assert requests.get(f"{s.url}/v2/models/simple").status_code == 200
        time.sleep(3)
        assert requests.get(f"{s.url}/v2/models/simple").status_code == 200
        assert s.proc.poll() is None
        assert sink.requests == 0 and not sink.spans
    finally:
        s.stop()
        stop(0)
    assert sink.requests == 0


def test_server_certificate_alone_is_enough_without_mutual_tls(repo, pki):
    sink = Sink()
    stop, endpoint = receiver("http/protobuf", sink, pki, mutual=False)
    e = env(endpoint, "http/protobuf", pki["ca"])
    # The per-signal endpoint, used verbatim.
    e["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = e.pop("OTEL_EXPORTER_OTLP_ENDPOINT") + "/v1/traces"
    s = Server(["--model_repository", str(repo), "--onnx_engine", "tract"], env=e)
    try:
        assert requests.get(f"{s.url}/v2/models/simple").status_code == 200
        assert sink.wait_for(lambda sp: sp.name == "GET /v2/models/{m}")
    finally:
        s.stop()
        stop(0)


def test_bad_tls_files_fail_start_up(repo, pki, tmp_path):
    for extra in ({"OTEL_EXPORTER_OTLP_CERTIFICATE": str(tmp_path / "missing.pem")},
                  {"OTEL_EXPORTER_OTLP_CLIENT_KEY": str(pki["exporter"][1])}):
        e = {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://127.0.0.1:4317",
             "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", **extra}
        s = Server(["--model_repository", str(repo), "--onnx_engine", "tract"], env=e,
                   expect_ready=False)
        assert s.wait_exit() != 0
        assert "OTLP exporter TLS" in s.log(), s.log()


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_mutual_tls_collector_refuses_an_exporter_without_certificate(repo, pki, protocol):
    sink = Sink()
    stop, endpoint = receiver(protocol, sink, pki, mutual=True)
    s = Server(["--model_repository", str(repo), "--onnx_engine", "tract"],
               env=env(endpoint, protocol, pki["ca"]))
    try:
        assert requests.get(f"{s.url}/v2/models/simple").status_code == 200
        time.sleep(2)
        assert requests.get(f"{s.url}/v2/models/simple").status_code == 200
    finally:
        s.stop()
        stop(0)
    assert sink.requests == 0

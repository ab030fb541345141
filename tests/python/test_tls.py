"""TLS on the HTTP and gRPC listeners: certificates made here with
`cryptography`; plain HTTP, an unknown CA and a missing client certificate
(mutual TLS) are refused; SIGHUP swaps the certificate without closing the
listeners."""

import datetime
import ipaddress
import json
import signal
import socket
import ssl
import time

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import EXAMPLES, Server


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def issue(ca, cn, serial, server=True):
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_cert.subject)
         .public_key(key.public_key()).serial_number(serial)
         .not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                        critical=False))
    if server:
        b = (b.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    else:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return b.sign(ca_key, hashes.SHA256()), key


def pem_cert(c):
    return c.public_bytes(serialization.Encoding.PEM)


def pem_key(k):
    return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = make_ca("ferroserve test CA")
    other = make_ca("some other CA")
    client_ca = make_ca("client CA")
    files = {}
    for name, (cert, key) in {
        "server1": issue(ca, "localhost", 1001),
        "server2": issue(ca, "localhost", 2002),
        "client": issue(client_ca, "client-a", 3003, server=False),
        "rogue_client": issue(other, "client-b", 4004, server=False),
    }.items():
        (d / f"{name}.crt").write_bytes(pem_cert(cert))
        (d / f"{name}.key").write_bytes(pem_key(key))
        files[name] = (d / f"{name}.crt", d / f"{name}.key")
    for name, (cert, _) in {"ca": ca, "other": other, "client_ca": client_ca}.items():
        (d / f"{name}.crt").write_bytes(pem_cert(cert))
        files[name] = d / f"{name}.crt"
    # The served pair lives in files the test rewrites for the reload.
    (d / "tls.crt").write_bytes(files["server1"][0].read_bytes())
    (d / "tls.key").write_bytes(files["server1"][1].read_bytes())
    files["dir"] = d
    return files


def https(server, path):
    return f"https://{server.http}{path}"


def host_port(addr):
    host, port = addr.rsplit(":", 1)
    return host, int(port)


def peer_serial(addr, cafile):
    ctx = ssl.create_default_context(cafile=str(cafile))
    host, port = host_port(addr)
    with socket.create_connection((host, port), timeout=5) as sock:
        with ctx.wrap_socket(sock, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).serial_number


def iris_instances():
    return json.loads((EXAMPLES / "iris" / "request.json").read_text())["inputs"][0]["data"][:4]


@pytest.fixture(scope="module")
def tls_server(pki):
    d = pki["dir"]
    s = Server(["--model_dir", str(EXAMPLES / "iris"), "--onnx_engine", "tract",
                "--tls_cert_file", str(d / "tls.crt"), "--tls_key_file", str(d / "tls.key")])
    yield s
    s.stop()


def test_https_with_the_right_ca(tls_server, pki):
    r = requests.get(https(tls_server, "/v2/health/ready"), verify=str(pki["ca"]))
    assert r.status_code == 200 and r.json() == {"ready": True}
    r = requests.post(https(tls_server, "/v1/models/iris:predict"),
                      json={"instances": [iris_instances()]}, verify=str(pki["ca"]))
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 1


def test_plain_http_refused_on_tls_port(tls_server):
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://{tls_server.http}/v2/health/ready", timeout=5)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://{tls_server.grpc}/", timeout=5)


def test_wrong_ca_refused(tls_server, pki):
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(https(tls_server, "/v2/health/ready"), verify=str(pki["other"]))
    creds = grpc.ssl_channel_credentials(root_certificates=pki["other"].read_bytes())
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    with grpc.secure_channel(tls_server.grpc, creds,
                             options=[("grpc.ssl_target_name_override", "localhost")]) as ch:
        with pytest.raises(grpc.RpcError) as e:
            health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE


def test_grpc_over_tls(tls_server, pki):
    c = grpcclient.InferenceServerClient(tls_server.grpc, ssl=True,
                                         root_certificates=str(pki["ca"]))
    assert c.is_server_live() and c.is_model_ready("iris")
    x = np.array([iris_instances()], dtype=np.float32)
    inp = grpcclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    res = c.infer("iris", [inp])
    assert res.get_response().model_name == "iris"
    # The server sees the peer address through TLS too (no crash, valid call).
    c.close()


def test_sighup_reloads_certificate_without_dropping_listener(tls_server, pki):
    d = pki["dir"]
    assert peer_serial(tls_server.http, pki["ca"]) == 1001
    assert peer_serial(tls_server.grpc, pki["ca"]) == 1001
    keep = requests.Session()
    assert keep.get(https(tls_server, "/v2/health/live"), verify=str(pki["ca"])).status_code == 200
    # A broken pair is refused and the old certificate stays.
    (d / "tls.key").write_bytes(pki["server2"][1].read_bytes())
    tls_server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "TLS reload failed" not in tls_server.log():
        time.sleep(0.05)
    assert "TLS reload failed" in tls_server.log()
    assert peer_serial(tls_server.http, pki["ca"]) == 1001
    # The new pair is taken.
    (d / "tls.crt").write_bytes(pki["server2"][0].read_bytes())
    tls_server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "TLS certificate reloaded" not in tls_server.log():
        time.sleep(0.05)
    assert "TLS certificate reloaded" in tls_server.log()
    assert tls_server.proc.poll() is None
    assert peer_serial(tls_server.http, pki["ca"]) == 2002
    assert peer_serial(tls_server.grpc, pki["ca"]) == 2002
    # The connection opened before the reload still works.
    assert keep.get(https(tls_server, "/v2/health/live"), verify=str(pki["ca"])).status_code == 200
    c = grpcclient.InferenceServerClient(tls_server.grpc, ssl=True, root_certificates=str(pki["ca"]))
    assert c.is_server_live()


@pytest.fixture(scope="module")
def mtls_server(pki):
    s = Server(["--model_dir", str(EXAMPLES / "iris"), "--onnx_engine", "tract",
                "--tls_cert_file", str(pki["server1"][0]), "--tls_key_file", str(pki["server1"][1]),
                "--tls_client_ca_file", str(pki["client_ca"])])
    yield s
    s.stop()


def test_mtls_requires_client_certificate(mtls_server, pki):
    with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
        requests.get(https(mtls_server, "/v2/health/ready"), verify=str(pki["ca"]), timeout=5)
    with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
        requests.get(https(mtls_server, "/v2/health/ready"), verify=str(pki["ca"]), timeout=5,
                     cert=(str(pki["rogue_client"][0]), str(pki["rogue_client"][1])))
    r = requests.get(https(mtls_server, "/v2/health/ready"), verify=str(pki["ca"]),
                     cert=(str(pki["client"][0]), str(pki["client"][1])))
    assert r.status_code == 200


def test_mtls_grpc(mtls_server, pki):
    bare = grpcclient.InferenceServerClient(mtls_server.grpc, ssl=True,
                                            root_certificates=str(pki["ca"]))
    with pytest.raises(Exception):
        bare.is_server_live(client_timeout=5)
    c = grpcclient.InferenceServerClient(mtls_server.grpc, ssl=True,
                                         root_certificates=str(pki["ca"]),
                                         private_key=str(pki["client"][1]),
                                         certificate_chain=str(pki["client"][0]))
    assert c.is_server_live() and c.is_model_ready("iris")


def test_bad_tls_flags_fail_at_startup(pki):
    s = Server(["--model_dir", str(EXAMPLES / "iris"), "--tls_cert_file", str(pki["server1"][0])],
               expect_ready=False)
    assert s.wait_exit(30) != 0
    assert "--tls_key_file" in s.log()
    s = Server(["--model_dir", str(EXAMPLES / "iris"), "--tls_cert_file", str(pki["server1"][0]),
                "--tls_key_file", str(pki["server2"][1])], expect_ready=False)
    assert s.wait_exit(30) != 0
    assert "invalid TLS configuration" in s.log()

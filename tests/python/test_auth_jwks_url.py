"""JWT keys from a JWKS URL (`jwt.jwks_url`): fetched at start-up through the
egress allow-list, refetched when a token names an unknown `kid` (rate
limited), refreshed in the background, last good keys kept while the
identity provider is down. The identity provider is a tiny http.server on
loopback serving the test-only keys of tests/fixtures/auth."""

import http.server
import json
import ssl
import threading
import time

import pytest
import requests
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from conftest import Server, make_repository
from test_auth import AUTH, ISSUER, assert_401, bearer, token
from test_tls import issue, make_ca, pem_cert, pem_key


def jwks(*kids):
    doc = json.loads((AUTH / "jwks.json").read_text())
    doc["keys"] = [k for k in doc["keys"] if k.get("kid") in kids]
    return json.dumps(doc).encode()


class Idp:
    """Serves `self.doc` at /jwks.json (or `self.status` when not 200) and
    counts the requests."""

    def __init__(self, doc, tls=None):
        self.doc = doc
        self.status = 200
        self.hits = 0
        idp = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                idp.hits += 1
                if self.path != "/jwks.json" or idp.status != 200:
                    self.send_response(404 if idp.status == 200 else idp.status)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(idp.doc)))
                self.end_headers()
                self.wfile.write(idp.doc)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        scheme = "http"
        if tls:  # (certificate file, key file)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.port}/jwks.json"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def config(url, extra=""):
    return f"""
roles:
  reader: {{ models: [simple] }}
jwt:
  jwks_url: {url}
  issuer: [{ISSUER}]
  audience: [ferroserve]
{extra}"""


def start(tmp_path, url, extra="", args=(), expect_ready=True):
    repo = make_repository(tmp_path / "repo", {"simple": "add_sub"})
    cfg = tmp_path / "auth.yaml"
    cfg.write_text(config(url, extra))
    return Server(["--model_repository", str(repo), "--onnx_engine", "tract",
                   "--auth_config", str(cfg), *args], expect_ready=expect_ready)


def wait_for(cond, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


def test_rotation_refresh_and_idp_down(tmp_path):
    idp = Idp(jwks("rsa-1"))
    s = start(tmp_path, idp.url, "  jwks_refresh_seconds: 2\n  jwks_min_refetch_seconds: 1\n",
              args=["--egress_allow", f"127.0.0.1:{idp.port}"])
    try:
        u = s.url + "/v2/models/simple"
        assert idp.hits == 1
        assert requests.get(u, headers=bearer(token())).status_code == 200
        assert_401(requests.get(u, headers=bearer(token(pem="rogue-rsa.pem"))))  # forged
        # Key B (ec-1) is not published yet.
        assert_401(requests.get(u, headers=bearer(token(kid="ec-1", alg="ES256", pem="ec-1.pem"))))
        # Key B (ec-1) is published: a token signed with it refetches at once.
        idp.doc = jwks("rsa-1", "ec-1")
        time.sleep(1.1)  # past the unknown-kid refetch window of the 401 above
        ec = bearer(token(kid="ec-1", alg="ES256", pem="ec-1.pem"))
        assert requests.get(u, headers=ec).status_code == 200
        # Over gRPC too (with ed-1 published the same way).
        idp.doc = jwks("rsa-1", "ec-1", "ed-1")
        time.sleep(1.1)
        c = grpcclient.InferenceServerClient(s.grpc)
        ed = token(kid="ed-1", alg="EdDSA", pem="ed-1.pem")
        assert c.get_model_metadata("simple", headers={"authorization": f"Bearer {ed}"}).name \
            == "simple"
        c.close()
        # Key A is retired: the background refresh drops it.
        idp.doc = jwks("ec-1")
        assert wait_for(lambda: requests.get(u, headers=bearer(token())).status_code == 401)
        assert requests.get(u, headers=ec).status_code == 200
        # The identity provider fails, then goes away: the last keys stay.
        idp.status = 503
        hits = idp.hits
        assert wait_for(lambda: idp.hits > hits)
        assert requests.get(u, headers=ec).status_code == 200
        idp.stop()
        time.sleep(2.5)
        assert requests.get(u, headers=ec).status_code == 200
        assert s.proc.poll() is None
        assert "JWKS refresh failed" in s.log()
        # /metrics (behind auth like any endpoint) counts the fetches.
        m = requests.get(s.url + "/metrics", headers=ec).text
        got = {k: float(v) for k, v in (ln.rsplit(" ", 1) for ln in m.splitlines()
                                        if ln.startswith("ferroserve_jwks_"))}
        assert got['ferroserve_jwks_fetches_total{outcome="success"}'] >= 3, m
        assert got['ferroserve_jwks_fetches_total{outcome="failure"}'] >= 1, m
        assert got["ferroserve_jwks_keys"] == 1
        assert 0 < time.time() - got["ferroserve_jwks_last_success_timestamp_seconds"] < 60
    finally:
        s.stop()
        idp.stop()


def test_forged_kids_do_not_hammer_the_idp(tmp_path):
    idp = Idp(jwks("rsa-1"))
    s = start(tmp_path, idp.url)  # default: unknown-kid refetch at most every 30 s
    try:
        u = s.url + "/v2/models/simple"
        for i in range(20):
            assert_401(requests.get(u, headers=bearer(token(kid=f"forged-{i}",
                                                            pem="rogue-rsa.pem"))))
        assert idp.hits <= 2, idp.hits  # start-up fetch + one refetch
        assert requests.get(u, headers=bearer(token())).status_code == 200
    finally:
        s.stop()
        idp.stop()


def test_start_up_refused(tmp_path):
    # Not allowed by --egress_allow: refused before any request is made.
    idp = Idp(jwks("rsa-1"))
    try:
        s = start(tmp_path / "a", idp.url, args=["--egress_allow", "idp.example.com"],
                  expect_ready=False)
        assert s.wait_exit() != 0
        assert "--egress_allow" in s.log() and "jwks_url" in s.log()
        assert idp.hits == 0
        # Invalid JWKS.
        idp.doc = b"<html>"
        s = start(tmp_path / "b", idp.url, expect_ready=False)
        assert s.wait_exit() != 0
        assert "JWKS" in s.log()
    finally:
        idp.stop()
    # Unreachable.
    s = start(tmp_path / "c", idp.url, expect_ready=False)
    assert s.wait_exit() != 0
    assert "cannot fetch JWKS" in s.log()


def test_https_idp_with_its_ca(tmp_path):
    ca = make_ca("idp CA")
    cert, key = issue(ca, "localhost", 7007)
    (tmp_path / "idp.crt").write_bytes(pem_cert(cert))
    (tmp_path / "idp.key").write_bytes(pem_key(key))
    (tmp_path / "ca.crt").write_bytes(pem_cert(ca[0]))
    idp = Idp(jwks("rsa-1"), tls=(tmp_path / "idp.crt", tmp_path / "idp.key"))
    try:
        # Untrusted (the system CAs): start-up fails.
        s = start(tmp_path / "a", idp.url, expect_ready=False)
        assert s.wait_exit() != 0
        assert "cannot fetch JWKS" in s.log()
        # jwks_ca_file (relative to the config file) trusts it.
        (tmp_path / "b").mkdir()
        (tmp_path / "b" / "idp-ca.pem").write_bytes(pem_cert(ca[0]))
        s = start(tmp_path / "b", idp.url, "  jwks_ca_file: idp-ca.pem\n")
        try:
            r = requests.get(s.url + "/v2/models/simple", headers=bearer(token()))
            assert r.status_code == 200, r.text
        finally:
            s.stop()
    finally:
        idp.stop()

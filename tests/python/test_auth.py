"""Authentication, authorization, rate limits and CORS (`--auth_config`,
`--cors_allow_origin`), over REST and gRPC. JWTs are signed with the
test-only keys in tests/fixtures/auth (made by make_keys.py)."""

import hashlib
import time

import jwt
import pytest
import requests
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from conftest import ROOT, Server, make_repository

AUTH = ROOT / "tests" / "fixtures" / "auth"
ORIGIN = "https://app.example.com"
ISSUER = "https://issuer.test"


def sha(key):
    return hashlib.sha256(key.encode()).hexdigest()


CONFIG = f"""
open_health: true
roles:
  reader: {{ models: [simple] }}
  ops: {{ models: ["*"], admin: true }}
api_keys:
  - {{ name: reader, sha256: {sha("reader-key")}, roles: [reader] }}
  - {{ name: admin, sha256: {sha("admin-key")}, roles: [ops] }}
  - name: limited
    sha256: {sha("limited-key")}
    models: [simple]
    rate_limit: {{ requests_per_second: 0.2, burst: 3 }}
env_keys: {{ models: [mlp] }}
jwt:
  jwks_file: {AUTH / "jwks.json"}
  issuer: [{ISSUER}]
  audience: [ferroserve]
  leeway_seconds: 5
"""


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("auth")
    repo = make_repository(tmp / "repo", {"simple": "add_sub", "mlp": "mlp"})
    cfg = tmp / "auth.yaml"
    cfg.write_text(CONFIG)
    s = Server(["--model_repository", str(repo), "--onnx_engine", "tract",
                "--auth_config", str(cfg), "--cors_allow_origin", ORIGIN],
               env={"FERROSERVE_API_KEYS": "env-key"})
    yield s
    s.stop()


def key(k):
    return {"x-api-key": k}


def bearer(t):
    return {"Authorization": f"Bearer {t}"}


def token(kid="rsa-1", alg="RS256", pem="rsa-1.pem", **claims):
    body = {"sub": "bob", "iss": ISSUER, "aud": "ferroserve", "exp": int(time.time()) + 300,
            "roles": ["reader"]}
    body.update(claims)
    return jwt.encode(body, (AUTH / pem).read_bytes(), algorithm=alg, headers={"kid": kid})


def assert_401(r):
    assert r.status_code == 401, r.text
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert "error" in r.json()


def test_health_is_open(auth_server):
    for path in ("/v2/health/live", "/v2/health/ready", "/ping"):
        assert requests.get(auth_server.url + path).status_code == 200


def test_missing_and_wrong_key(auth_server):
    u = auth_server.url + "/v2/models/simple"
    assert_401(requests.get(u))
    assert_401(requests.get(u, headers=key("wrong")))
    assert_401(requests.get(u, headers=bearer("wrong")))
    assert_401(requests.get(auth_server.url + "/v2"))
    assert_401(requests.get(auth_server.url + "/metrics"))
    assert requests.get(u, headers=key("reader-key")).status_code == 200
    assert requests.get(u, headers=bearer("reader-key")).status_code == 200
    assert requests.get(auth_server.url + "/metrics", headers=key("reader-key")).status_code == 200


def test_model_permissions_hide_existence(auth_server):
    u = auth_server.url
    h = key("reader-key")
    # Passes auth (then fails on the empty body).
    assert requests.post(u + "/v2/models/simple/infer", headers=h, data="{}").status_code == 400
    other = requests.post(u + "/v2/models/mlp/infer", headers=h, data="{}")
    unknown = requests.post(u + "/v2/models/no_such_model/infer", headers=h, data="{}")
    assert other.status_code == unknown.status_code == 403
    assert "error" in other.json() and "error" in unknown.json()
    assert "not found" not in unknown.text.lower()
    for path in ("/v2/models/mlp", "/v2/models/mlp/ready", "/v2/models/no_such_model/ready",
                 "/v1/models/mlp", "/v2/models/stats"):
        assert requests.get(u + path, headers=h).status_code == 403, path
    # The model list is open to any caller but shows only the caller's models.
    listed = requests.get(u + "/v1/models", headers=h)
    assert listed.status_code == 200 and listed.json()["models"] == ["simple"]
    assert requests.get(u + "/v1/models").status_code == 401
    assert requests.post(u + "/v1/models/mlp:predict", headers=h, json={}).status_code == 403
    # The env key (FERROSERVE_API_KEYS) gets env_keys' grant.
    assert requests.get(u + "/v2/models/mlp", headers=key("env-key")).status_code == 200
    assert requests.get(u + "/v2/models/simple", headers=key("env-key")).status_code == 403


def test_repository_needs_admin(auth_server):
    u = auth_server.url
    for path in ("/v2/repository/index", "/v2/repository/models/mlp/unload",
                 "/v2/repository/models/mlp/load"):
        assert requests.post(u + path, headers=key("reader-key")).status_code == 403, path
    a = key("admin-key")
    assert requests.post(u + "/v2/repository/index", headers=a).status_code == 200
    assert requests.post(u + "/v2/repository/models/mlp/unload", headers=a).status_code == 200
    assert requests.post(u + "/v2/repository/models/mlp/load", headers=a).status_code == 200
    assert requests.get(u + "/v2/models/mlp/ready", headers=a).status_code == 200
    # An admin may see that a model does not exist.
    assert requests.get(u + "/v2/models/no_such_model", headers=a).status_code == 404


def test_jwt(auth_server):
    u = auth_server.url + "/v2/models/simple"
    assert requests.get(u, headers=bearer(token())).status_code == 200
    assert requests.get(u, headers=bearer(token("ed-1", "EdDSA", "ed-1.pem"))).status_code == 200
    assert requests.get(u, headers=bearer(token("ec-1", "ES256", "ec-1.pem"))).status_code == 200
    # Valid token, model outside its roles.
    assert requests.get(auth_server.url + "/v2/models/mlp", headers=bearer(token())).status_code == 403
    assert_401(requests.get(u, headers=bearer(token(pem="rogue-rsa.pem"))))  # forged signature
    assert_401(requests.get(u, headers=bearer(token(exp=int(time.time()) - 60))))  # expired
    assert_401(requests.get(u, headers=bearer(token(aud="someone-else"))))
    assert_401(requests.get(u, headers=bearer(token(iss="https://evil.test"))))
    assert_401(requests.get(u, headers=bearer(jwt.encode({"sub": "x"}, "secret", algorithm="HS256"))))


def test_rate_limit(auth_server):
    u = auth_server.url + "/v2/models/simple"
    codes = [requests.get(u, headers=key("limited-key")) for _ in range(5)]
    assert [r.status_code for r in codes[:3]] == [200, 200, 200]
    over = codes[3]
    assert over.status_code == 429
    assert int(over.headers["Retry-After"]) >= 1
    assert "error" in over.json()
    # Other keys are not affected.
    assert requests.get(u, headers=key("reader-key")).status_code == 200


def test_cors(auth_server):
    u = auth_server.url + "/v2/models/simple/infer"
    pre = {"Access-Control-Request-Method": "POST",
           "Access-Control-Request-Headers": "content-type,x-api-key"}
    ok = requests.options(u, headers={"Origin": ORIGIN, **pre})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == ORIGIN
    assert "x-api-key" in ok.headers["access-control-allow-headers"].lower()
    bad = requests.options(u, headers={"Origin": "https://evil.example", **pre})
    assert "access-control-allow-origin" not in bad.headers
    r = requests.get(auth_server.url + "/v2/models/simple",
                     headers={"Origin": ORIGIN, **key("reader-key")})
    assert r.headers["access-control-allow-origin"] == ORIGIN


def grpc_status(call):
    with pytest.raises(InferenceServerException) as e:
        call()
    return e.value.status()


def test_grpc(auth_server):
    c = grpcclient.InferenceServerClient(auth_server.grpc)
    assert c.is_server_live() and c.is_server_ready()  # health is open
    assert grpc_status(lambda: c.get_model_metadata("simple")) == "StatusCode.UNAUTHENTICATED"
    assert grpc_status(lambda: c.get_server_metadata()) == "StatusCode.UNAUTHENTICATED"
    assert grpc_status(lambda: c.get_model_metadata("simple", headers=key("wrong"))) \
        == "StatusCode.UNAUTHENTICATED"
    assert grpc_status(lambda: c.get_model_metadata("simple", headers={"authorization": f"Bearer {token(exp=1)}"})) \
        == "StatusCode.UNAUTHENTICATED"
    assert c.get_model_metadata("simple", headers=key("reader-key")).name == "simple"
    assert c.get_model_metadata("simple", headers={"authorization": f"Bearer {token()}"}).name \
        == "simple"
    for model in ("mlp", "no_such_model"):
        assert grpc_status(lambda: c.get_model_metadata(model, headers=key("reader-key"))) \
            == "StatusCode.PERMISSION_DENIED"
        assert grpc_status(lambda: c.is_model_ready(model, headers=key("reader-key"))) \
            == "StatusCode.PERMISSION_DENIED"
    assert grpc_status(lambda: c.unload_model("mlp", headers=key("reader-key"))) \
        == "StatusCode.PERMISSION_DENIED"
    assert grpc_status(lambda: c.get_model_repository_index(headers=key("reader-key"))) \
        == "StatusCode.PERMISSION_DENIED"
    assert c.get_model_repository_index(headers=key("admin-key")) is not None
    c.close()


def test_grpc_rate_limit(auth_server):
    c = grpcclient.InferenceServerClient(auth_server.grpc)
    # The REST test above may already have emptied this key's bucket.
    statuses = []
    for _ in range(5):
        try:
            c.get_model_metadata("simple", headers=key("limited-key"))
            statuses.append("OK")
        except InferenceServerException as e:
            statuses.append(e.status())
    assert "StatusCode.RESOURCE_EXHAUSTED" in statuses
    c.close()


def test_closed_health_and_env_keys_need_config(tmp_path):
    repo = make_repository(tmp_path / "repo", {"simple": "add_sub"})
    cfg = tmp_path / "auth.yaml"
    cfg.write_text(f"open_health: false\napi_keys: [{{name: a, sha256: {sha('k')}, models: ['*']}}]\n")
    s = Server(["--model_repository", str(repo), "--onnx_engine", "tract",
                "--auth_config", str(cfg)])
    try:
        assert_401(requests.get(s.url + "/v2/health/ready"))
        assert requests.get(s.url + "/v2/health/ready", headers=key("k")).status_code == 200
        c = grpcclient.InferenceServerClient(s.grpc)
        assert grpc_status(lambda: c.is_server_live()) == "StatusCode.UNAUTHENTICATED"
        assert c.is_server_live(headers=key("k"))
        c.close()
    finally:
        s.stop()
    s = Server(["--model_repository", str(repo)], env={"FERROSERVE_API_KEYS": "x"},
               expect_ready=False)
    assert s.wait_exit() != 0
    assert "--auth_config" in s.log()

"""KServe v1 protocol."""

import numpy as np
import requests

from conftest import EXAMPLES
import json


def test_list_and_status(server):
    names = requests.get(server.url + "/v1/models").json()["models"]
    assert "iris" in names and "simple" in names
    assert requests.get(server.url + "/v1/models/iris").json() == {"name": "iris", "ready": True}
    r = requests.get(server.url + "/v1/models/nope")
    assert r.status_code == 404 and "error" in r.json()


def test_predict_instances_matches_v2(server):
    req = json.loads((EXAMPLES / "iris" / "request.json").read_text())["inputs"][0]
    rows = np.array(req["data"], dtype=np.float32).reshape(req["shape"]).tolist()
    r = requests.post(server.url + "/v1/models/iris:predict", json={"instances": rows})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    want = json.loads((EXAMPLES / "iris" / "response.json").read_text())["outputs"][0]["data"]
    np.testing.assert_allclose(np.array(preds).flatten(), want, rtol=1e-5, atol=1e-6)
    r2 = requests.post(server.url + "/v1/models/iris:predict", json={"inputs": rows})
    assert r2.json() == r.json()


def test_named_instances_multi_input(server):
    inst = [{"INPUT0": list(range(16)), "INPUT1": [1] * 16}]
    r = requests.post(server.url + "/v1/models/simple:predict", json={"instances": inst})
    assert r.status_code == 200, r.text
    p = r.json()["predictions"][0]
    assert p["OUTPUT0"] == [x + 1 for x in range(16)]
    assert p["OUTPUT1"] == [x - 1 for x in range(16)]


def test_explain_and_bad_verbs(server):
    r = requests.post(server.url + "/v1/models/iris:explain", json={"instances": [[1, 2, 3, 4]]})
    assert r.status_code == 501 and "explainer" in r.json()["error"]
    r = requests.post(server.url + "/v1/models/iris:frobnicate", json={})
    assert r.status_code == 404
    r = requests.post(server.url + "/v1/models/nope:predict", json={"instances": [[1]]})
    assert r.status_code == 404
    r = requests.post(server.url + "/v1/models/iris:predict", json={"instances": [[1, 2], [3]]})
    assert r.status_code == 400
    r = requests.post(server.url + "/v1/models/iris:predict", data=b"{not json")
    assert r.status_code == 400

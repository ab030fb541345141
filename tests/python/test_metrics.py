"""Prometheus metrics, parsed with the official Python client's parser."""

import json

import numpy as np
import requests
import tritonclient.grpc as grpcclient
from prometheus_client.parser import text_string_to_metric_families

from conftest import EXAMPLES, Server

BODY = (EXAMPLES / "iris" / "request.json").read_text()


def families(text):
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(fams, family, name, **labels):
    for s in fams[family].samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise KeyError((family, name, labels))


def test_metrics_after_traffic():
    s = Server(["--model_dir", str(EXAMPLES / "iris"), "--onnx_engine", "tract", "--metrics_port", "0"])
    try:
        for _ in range(5):
            assert requests.post(s.url + "/v2/models/iris/infer", data=BODY).status_code == 200
        assert requests.post(s.url + "/v2/models/nope/infer", data=BODY).status_code == 404
        assert requests.post(s.url + "/v2/models/iris/infer", data=b"{").status_code == 400
        wrong_type = json.dumps({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64",
                                             "data": [1, 2, 3, 4]}]})
        assert requests.post(s.url + "/v2/models/iris/infer", data=wrong_type).status_code == 400
        g = grpcclient.InferenceServerClient(s.grpc)
        t = grpcclient.InferInput("input", [1, 4], "FP32")
        t.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
        g.infer("iris", [t])
        r = requests.get(s.url + "/metrics")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain")
        f = families(r.text)
        for name in ("request_preprocess_seconds", "request_predict_seconds", "request_postprocess_seconds",
                     "request_explain_seconds", "nv_inference_request_success", "nv_inference_count",
                     "ferroserve_batch_size", "ferroserve_model_load_seconds", "process_resident_memory_bytes",
                     "process_cpu_seconds", "process_open_fds"):
            assert name in f, name
        assert sample(f, "nv_inference_request_success", "nv_inference_request_success_total",
                      model="iris", version="1") == 6
        assert sample(f, "nv_inference_request_failure", "nv_inference_request_failure_total",
                      model="iris", version="1") == 1
        assert sample(f, "request_predict_seconds", "request_predict_seconds_count", model_name="iris") == 6
        assert sample(f, "ferroserve_http_request_duration_seconds",
                      "ferroserve_http_request_duration_seconds_count",
                      route="/v2/models/{m}/infer", method="POST", status="200") == 5
        assert sample(f, "ferroserve_http_request_duration_seconds",
                      "ferroserve_http_request_duration_seconds_count",
                      route="/v2/models/{m}/infer", method="POST", status="404") == 1
        assert sample(f, "ferroserve_http_request_duration_seconds",
                      "ferroserve_http_request_duration_seconds_count",
                      route="/v2/models/{m}/infer", method="POST", status="400") == 2
        assert sample(f, "ferroserve_grpc_request_duration_seconds",
                      "ferroserve_grpc_request_duration_seconds_count", method="ModelInfer", grpc_status="0") == 1
        assert sample(f, "ferroserve_model_state", "ferroserve_model_state", model="iris", state="READY") == 1
        assert sample(f, "process_resident_memory_bytes", "process_resident_memory_bytes") > 1e6
        # Unknown paths do not create new label values.
        requests.get(s.url + "/some/random/path/123")
        after = requests.get(s.url + "/metrics").text
        assert "/some/random" not in after
        # The separate metrics port serves the same.
        log = [json.loads(line) for line in s.lines if line.startswith("{")]
        port = next(r["fields"]["metrics"] for r in log if r.get("fields", {}).get("message") == "ferroserve ready")
        assert "nv_inference_count" in requests.get(f"http://{port}/metrics").text
    finally:
        s.stop()


def test_metrics_off():
    s = Server(["--model_dir", str(EXAMPLES / "iris"), "--onnx_engine", "tract", "--metrics", "false"])
    try:
        assert requests.get(s.url + "/metrics").status_code == 404
        assert requests.post(s.url + "/v2/models/iris/infer", data=BODY).status_code == 200
    finally:
        s.stop()

"""Black-box test harness: starts the real `ferroserve` binary on loopback
ports and hands tests its addresses.

The binary is taken from $FERROSERVE_BIN, else from
$CARGO_TARGET_DIR/release/ferroserve, else target/release/ferroserve.
"""

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "onnx"
EXAMPLES = ROOT / "examples"


def binary() -> str:
    env = os.environ.get("FERROSERVE_BIN")
    if env:
        return env
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    return str(Path(target) / "release" / "ferroserve")


def ort_library():
    """Path of libonnxruntime from the installed onnxruntime wheel, if any."""
    if os.environ.get("ORT_DYLIB_PATH"):
        return os.environ["ORT_DYLIB_PATH"]
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    capi = Path(onnxruntime.__file__).parent / "capi"
    libs = sorted(capi.glob("libonnxruntime.so*"))
    return str(libs[0]) if libs else None


class Server:
    """A running ferroserve process."""

    def __init__(self, args, env=None, expect_ready=True, timeout=60):
        self.args = [binary(), "serve", "--host", "127.0.0.1", "--http_port", "0",
                     "--grpc_port", "0", "--log_format", "json", *args]
        full_env = dict(os.environ)
        full_env.setdefault("RUST_LOG", "info")
        if env:
            full_env.update(env)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=full_env, text=True)
        self.lines = []
        self.ready = threading.Event()
        self.http = None
        self.grpc = None
        self.ready_after = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if expect_ready:
            if not self.ready.wait(timeout):
                self.stop()
                raise RuntimeError("ferroserve did not become ready:\n" + "\n".join(self.lines))

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line.rstrip())
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            fields = rec.get("fields", {})
            if fields.get("message") == "ferroserve ready":
                self.http = fields["http"]
                self.grpc = fields["grpc"]
                self.ready_after = time.monotonic() - self.started
                self.ready.set()
        self.ready.set()

    @property
    def url(self):
        return f"http://{self.http}"

    def wait_exit(self, timeout=30):
        return self.proc.wait(timeout)

    def log(self):
        return "\n".join(self.lines)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def slow_cnn_request(server, model="cnn", n=40000):
    """Starts a large CNN request in a thread and returns once the server has
    it in flight (its queue statistic moved). Returns (thread, result dict)."""
    import requests
    body = json.dumps({"inputs": [{"name": "image", "shape": [n, 1, 8, 8], "datatype": "FP32",
                                   "data": [0.5] * (n * 64)}]})
    result = {}

    def run():
        r = requests.post(f"{server.url}/v2/models/{model}/infer", data=body)
        result["status"] = r.status_code
        result["done"] = time.monotonic()

    def queued():
        st = requests.get(f"{server.url}/v2/models/{model}/stats").json()["model_stats"][0]
        return st["inference_stats"]["queue"]["count"]

    before = queued()
    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and queued() == before:
        time.sleep(0.005)
    return t, result


def make_repository(dest: Path, models: dict, engine=None):
    """Copies fixture models into a Triton-style repository:
    dest/<name>/<version>/model.onnx. `models` maps name -> fixture name."""
    for name, fixture in models.items():
        vdir = dest / name / "1"
        vdir.mkdir(parents=True)
        shutil.copy(FIXTURES / fixture / "model.onnx", vdir / "model.onnx")
        if engine:
            (dest / name / "model.yaml").write_text(f"parameters:\n  engine: {engine}\n")
    return dest


@pytest.fixture(scope="session")
def ort_lib():
    return ort_library()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server with the add_sub, dtypes, strings, mlp and iris models (tract engine)."""
    repo = make_repository(tmp_path_factory.mktemp("repo"), {
        "simple": "add_sub", "dtypes": "dtypes", "strings": "strings", "mlp": "mlp",
    })
    s = Server(["--model_repository", str(repo), "--model_dir", str(EXAMPLES / "iris"),
                "--onnx_engine", "tract"])
    yield s
    s.stop()

"""End-to-end tree/sklearn model benchmark (issues 4 and 6): ferroserve's native XGBoost and
scikit-learn runtimes against KServe's Python ModelServer serving the same files
(`bench/kserve/xgb_server.py`, `bench/kserve/iris_sklearn_server.py`), driven by the same load
generator (`bench/loadgen`) over HTTP v2 JSON and gRPC v2, batch 1, concurrency 1 and 8.

    python bench/e2e/run.py [--duration 5] [--kserve-python /tmp/kserve-venv/bin/python]

Writes bench/results/<date>-e2e-trees.md. Median of --repeats runs per row.
"""

import argparse
import datetime
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", "/tmp/ferroserve-target")) / "release"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.1)
    raise RuntimeError(f"not ready: {url}")


def loadgen(url, protocol, model, conc, body, pid, duration):
    out = subprocess.run([str(TARGET / "loadgen"), "--url", url, "--protocol", protocol, "--model", model,
                          "--concurrency", str(conc), "--duration", str(duration), "--warmup", "1",
                          "--body-file", str(body), "--server-pid", str(pid)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--kserve-python", default="/tmp/kserve-venv/bin/python")
    a = p.parse_args()
    work = Path("/tmp/ferroserve-bench-e2e")
    (work / "xgb").mkdir(parents=True, exist_ok=True)
    (work / "skl").mkdir(parents=True, exist_ok=True)
    kpy = a.kserve_python
    subprocess.run([kpy, "-c", "import sys, pathlib; sys.path.insert(0, 'bench/xgboost'); import bench; "
                    f"bench.make_model(pathlib.Path('{work}/xgb'))"], cwd=ROOT, check=True)
    # A RandomForest (ferroserve's sklearn runtime has no MLPClassifier; the serving-core benchmark
    # covers the MLP through ONNX).
    subprocess.run([kpy, "-c", "import joblib; from sklearn.datasets import load_iris; "
                    "from sklearn.ensemble import RandomForestClassifier; x, y = load_iris(return_X_y=True); "
                    "m = RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0, n_jobs=1).fit(x, y); "
                    f"joblib.dump(m, '{work}/skl/model.joblib')"], cwd=ROOT, check=True)
    (work / "skl" / "model.yaml").write_text("parameters: {method: predict_proba}\n")
    xgb_body = work / "xgb-body.json"
    xgb_body.write_text(json.dumps({"inputs": [{"name": "input-0", "shape": [1, 20], "datatype": "FP32",
                                                "data": [0.1 * i for i in range(20)]}]}))
    skl_body = work / "skl-body.json"
    skl_body.write_text(json.dumps({"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32",
                                                "data": [5.1, 3.5, 1.4, 0.2]}]}))
    cases = [("xgboost", work / "xgb", xgb_body, "bench/kserve/xgb_server.py"),
             ("sklearn", work / "skl", skl_body, "bench/kserve/iris_sklearn_server.py")]
    rows = []
    for model, mdir, body, kscript in cases:
        for server in ("ferroserve", "kserve"):
            hp, gp = free_port(), free_port()
            if server == "ferroserve":
                argv = [str(TARGET / "ferroserve"), "serve", "--model_dir", str(mdir), "--model_name", model,
                        "--host", "127.0.0.1", "--http_port", str(hp), "--grpc_port", str(gp)]
            else:
                argv = [kpy, kscript, "--model_dir", str(mdir), "--model_name", model,
                        "--http_port", str(hp), "--grpc_port", str(gp)]
            proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_ready(f"http://127.0.0.1:{hp}/v2/models/{model}/ready")
                for protocol, port in (("http", hp), ("grpc", gp)):
                    for conc in (1, 8):
                        runs = [loadgen(f"http://127.0.0.1:{port}", protocol, model, conc, body, proc.pid,
                                        a.duration) for _ in range(a.repeats)]
                        def med(get):
                            vals = [get(r) for r in runs if get(r) is not None]
                            return statistics.median(vals) if vals else float("nan")
                        rows.append({"model": model, "server": server, "protocol": protocol, "c": conc,
                                     "throughput": med(lambda r: r["throughput_rps"]),
                                     "p50": med(lambda r: r["latency_us"]["p50"]),
                                     "p99": med(lambda r: r["latency_us"]["p99"]),
                                     "cpu": med(lambda r: r["server_cpu_us_per_req"]),
                                     "errors": sum(r["errors"] for r in runs)})
                        print(rows[-1], flush=True)
            finally:
                proc.terminate()
                proc.wait(30)
    lines = [f"# End-to-end: XGBoost and scikit-learn models, ferroserve vs KServe ModelServer — {datetime.date.today()}",
             "", "Same load generator (`bench/loadgen`, closed loop, one connection per worker), batch 1, median of "
             f"{a.repeats} runs of {a.duration:.0f} s. XGBoost: 100 trees, depth 6, 20 features (`bench/xgboost`); "
             "KServe side: `kserve.Model` with `Booster.inplace_predict` (nthread 1). scikit-learn: a "
             "RandomForestClassifier (100 trees, depth 8) on iris in a joblib file; both answer `predict_proba` "
             "(ferroserve: `method: predict_proba` in model.yaml). 2 shared cores (load generator and server on the same machine). "
             "Command: `python bench/e2e/run.py`.", "",
             "| model | server | protocol | c | infer/s | p50 (µs) | p99 (µs) | server CPU (µs/req) | errors |",
             "|---|---|---|--:|--:|--:|--:|--:|--:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['server']} | {r['protocol']} | {r['c']} | {r['throughput']:,.0f} | "
                     f"{r['p50']:,.0f} | {r['p99']:,.0f} | {r['cpu']:,.1f} | {r['errors']} |")
    lines += ["", "| model | protocol | c | throughput ferroserve ÷ KServe | server CPU/req ferroserve ÷ KServe |",
              "|---|---|--:|--:|--:|"]
    for model, *_ in cases:
        for protocol in ("http", "grpc"):
            for c in (1, 8):
                f = next(r for r in rows if (r["model"], r["server"], r["protocol"], r["c"]) == (model, "ferroserve", protocol, c))
                k = next(r for r in rows if (r["model"], r["server"], r["protocol"], r["c"]) == (model, "kserve", protocol, c))
                lines.append(f"| {model} | {protocol} | {c} | {f['throughput'] / k['throughput']:.1f}× | {f['cpu'] / k['cpu']:.3f}× |")
    out = ROOT / "bench" / "results" / f"{datetime.date.today()}-e2e-trees.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Serving-core benchmark: ferroserve vs KServe's Python ModelServer vs a fixed-response anchor,
all driven by the same load generator (bench/loadgen), plus Triton's perf_analyzer against ferroserve.

Normally started through bench/run.sh, which builds and installs what this needs. Standard library only.
See bench/README.md for what every number means.
"""

import argparse
import csv
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ /proc helpers

def _stat(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    return s[s.rfind(")") + 2:].split()


def process_tree(root):
    children = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            f = _stat(int(name))
            if f:
                children.setdefault(int(f[1]), []).append(int(name))
    out, i = [root], 0
    while i < len(out):
        out.extend(children.get(out[i], []))
        i += 1
    return out


def tree_memory_mib(root):
    """(RSS, PSS) in MiB summed over the process tree of root. PSS splits shared pages between
    the processes that share them, so it does not double-count a forked worker's copy-on-write pages."""
    rss = pss = 0
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
        except OSError:
            pass
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except OSError:
            pass
    return round(rss / 1024, 1), round(pss / 1024, 1)


def machine_busy_cores(interval=1.0):
    def busy():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        return sum(v) - v[3] - v[4], sum(v)

    b0, t0 = busy()
    time.sleep(interval)
    b1, t1 = busy()
    return (b1 - b0) / max(1, t1 - t0) * os.cpu_count()


def wait_idle(threshold, max_wait):
    """Waits until the rest of the machine uses less than `threshold` cores (other engineers'
    builds share this machine). Returns the last measured load."""
    deadline = time.monotonic() + max_wait
    load = machine_busy_cores(0.5)
    warned = False
    while load > threshold and time.monotonic() < deadline:
        if not warned:
            log(f"machine busy ({load:.2f} cores in use by others): waiting up to {max_wait:.0f} s")
            warned = True
        time.sleep(2)
        load = machine_busy_cores(1.0)
    return round(load, 2)


# ------------------------------------------------------------------ servers

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url, body, timeout=2.0):
    req = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


class Server:
    def __init__(self, name, kind, argv, http_port, grpc_port, env=None, cwd=None, grpc=True):
        self.name, self.kind, self.argv = name, kind, argv
        self.http_port, self.grpc_port = http_port, grpc_port
        self.env, self.cwd, self.grpc = env, cwd, grpc
        self.proc = None

    def start(self, logdir, body, model, timeout=180.0):
        """Spawns the server and polls a v2 infer until it answers 200. Returns ms from spawn."""
        logf = open(os.path.join(logdir, f"{self.name}.log"), "ab")
        env = dict(os.environ)
        env.update(self.env or {})
        t0 = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdout=logf, stderr=subprocess.STDOUT, env=env,
                                     cwd=self.cwd or ROOT, start_new_session=True)
        url = f"http://127.0.0.1:{self.http_port}/v2/models/{model}/infer"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {logf.name}")
            try:
                status, resp = post(url, body, timeout=5.0)
                if status == 200:
                    ms = (time.monotonic() - t0) * 1000
                    if b"outputs" not in resp:
                        raise RuntimeError(f"{self.name}: unexpected response {resp[:200]!r}")
                    return round(ms, 1)
            except (urllib.error.URLError, ConnectionError, socket.timeout, OSError):
                pass
            if time.monotonic() - t0 > timeout:
                self.stop()
                raise RuntimeError(f"{self.name} not ready after {timeout} s; see {logf.name}")
            time.sleep(0.002)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # the server's own process group only
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None


# ------------------------------------------------------------------ load runs

def run_loadgen(a, server, protocol, conc, body_file, model):
    port = server.http_port if protocol == "http" else server.grpc_port
    cmd = [a.loadgen, "--url", f"http://127.0.0.1:{port}", "--protocol", protocol, "--model", model,
           "--concurrency", str(conc), "--duration", str(a.duration), "--warmup", str(a.warmup),
           "--body-file", body_file, "--server-pid", str(server.proc.pid),
           "--label", f"{server.name}/{protocol}/c{conc}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=a.duration + a.warmup + 60)
    if out.returncode != 0:
        raise RuntimeError(f"loadgen failed: {out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_of(runs, path):
    vals = []
    for r in runs:
        v = r
        for k in path.split("."):
            v = v.get(k) if isinstance(v, dict) else None
        if v is not None:
            vals.append(v)
    return statistics.median(vals) if vals else None


def summarize(runs):
    return {
        "throughput_rps": median_of(runs, "throughput_rps"),
        "throughput_min": min(r["throughput_rps"] for r in runs),
        "throughput_max": max(r["throughput_rps"] for r in runs),
        "p50_us": median_of(runs, "latency_us.p50"),
        "p90_us": median_of(runs, "latency_us.p90"),
        "p99_us": median_of(runs, "latency_us.p99"),
        "server_cpu_us_per_req": median_of(runs, "server_cpu_us_per_req"),
        "server_cpu_cores": median_of(runs, "server_cpu_cores"),
        "loadgen_cpu_us_per_req": median_of(runs, "loadgen_cpu_us_per_req"),
        "other_cpu_cores_max": max(max(r.get("other_cpu_cores") or 0, 0) for r in runs),
        "errors": sum(r.get("errors", 0) for r in runs),
        "first_error": next((r["first_error"] for r in runs if r.get("first_error")), None),
        "repeats": len(runs),
    }


def run_perf_analyzer(a, server, protocol, conc, model, tensor_format, logdir):
    port = server.http_port if protocol == "http" else server.grpc_port
    csv_path = os.path.join(logdir, f"pa-{server.name}-{protocol}-{tensor_format}-c{conc}.csv")
    cmd = [a.perf_analyzer, "-m", model, "-u", f"127.0.0.1:{port}", "-i", protocol,
           "--concurrency-range", f"{conc}:{conc}", "--measurement-interval", str(a.pa_interval_ms),
           "--stability-percentage", "25", "--max-trials", "8",
           "--shape", "input:4", "-b", "1", "-f", csv_path]
    if protocol == "http":
        cmd += ["--input-tensor-format", tensor_format, "--output-tensor-format", tensor_format]
    t0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    with open(os.path.join(logdir, "perf_analyzer.log"), "a") as f:
        f.write(f"$ {' '.join(cmd)}\n{out.stdout}\n{out.stderr}\n")
    res = {"tool": "perf_analyzer", "server": server.name, "protocol": protocol,
           "tensor_format": tensor_format if protocol == "http" else "raw (protobuf)",
           "concurrency": conc, "wall_s": round(time.monotonic() - t0, 1), "rc": out.returncode}
    if out.returncode != 0 or not os.path.exists(csv_path):
        tail = (out.stdout + out.stderr).strip().splitlines()[-3:]
        res["error"] = " / ".join(tail)
        return res
    with open(csv_path) as f:
        row = next(csv.DictReader(f))
    res.update({
        "throughput_rps": float(row["Inferences/Second"]),
        "p50_us": float(row["p50 latency"]), "p90_us": float(row["p90 latency"]),
        "p99_us": float(row["p99 latency"]),
    })
    return res


# ------------------------------------------------------------------ report

def fmt(v, nd=0):
    if v is None:
        return "–"
    if isinstance(v, float) and nd == 0:
        return f"{v:,.0f}"
    return f"{v:,.{nd}f}"


def ratio(a, b, nd=2):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.{nd}f}×"


def write_report(path_md, data):
    a = data["settings"]
    L = []
    L.append(f"# Serving core benchmark — {data['date']}\n")
    L.append("Iris MLP (4 → 16 → 3), one row per request (batch 1). Closed loop: each of *c* workers holds one "
             "connection and sends its next request when the previous answer arrives. "
             f"Every load-generator row is the median of {a['repeats']} runs of {a['warmup']} s warm-up + "
             f"{a['duration']} s measured. Load generator: `bench/loadgen` (hyper HTTP/1.1 keep-alive for REST JSON, "
             "tonic for gRPC with typed `contents`). See `bench/README.md` for definitions.\n")
    m = data["machine"]
    L.append(f"**Machine**: {m['cpus']} CPUs ({m['cpu_model']}), {m['mem_gib']} GiB, kernel {m['kernel']}. "
             "Load generator and server share the 2 cores; nothing is pinned. "
             f"CPU in use by other processes before the run: {m['other_load_at_start']} cores.\n")
    L.append("**Versions**: " + ", ".join(f"{k} {v}" for k, v in data["versions"].items()) + "\n")

    L.append("## Throughput, latency, CPU\n")
    L.append("| server | protocol | c | throughput (req/s) | min–max | p50 (µs) | p99 (µs) | server CPU (µs/req) | "
             "server CPU (cores) | loadgen CPU (µs/req) | others (cores) | errors |")
    L.append("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in data["load"]:
        s = r["summary"]
        L.append(f"| {r['server']} | {r['protocol']} | {r['concurrency']} | {fmt(s['throughput_rps'])} | "
                 f"{fmt(s['throughput_min'])}–{fmt(s['throughput_max'])} | {fmt(s['p50_us'])} | {fmt(s['p99_us'])} | {fmt(s['server_cpu_us_per_req'], 1)} | "
                 f"{fmt(s['server_cpu_cores'], 2)} | {fmt(s['loadgen_cpu_us_per_req'], 1)} | "
                 f"{fmt(s['other_cpu_cores_max'], 2)} | {s['errors']} |")
    L.append("")

    L.append("## Start-up and memory\n")
    L.append("| server | start-up to first successful infer (ms, median) | all tries (ms) | idle RSS (MiB) | idle PSS (MiB) | processes |")
    L.append("|---|--:|---|--:|--:|--:|")
    for s in data["servers"]:
        L.append(f"| {s['name']} | {fmt(s['startup_ms'], 1)} | {', '.join(fmt(x, 1) for x in s['startup_tries_ms'])} | "
                 f"{fmt(s['idle_rss_mib'], 1)} | {fmt(s['idle_pss_mib'], 1)} | {s['processes']} |")
    L.append("")

    by = {(r["server"], r["protocol"], r["concurrency"]): r["summary"] for r in data["load"]}
    fs_names = [s["name"] for s in data["servers"] if s["name"].startswith("ferroserve")]
    if fs_names:
        L.append("## Ratios\n")
        L.append("ferroserve ÷ other, same protocol and concurrency. Throughput: above 1× means ferroserve is faster; "
                 "p50, p99 and CPU/req: below 1× means ferroserve is lower (better).\n")
        L.append("| ferroserve | vs | protocol | c | throughput | p50 | p99 | server CPU/req |")
        L.append("|---|---|---|--:|--:|--:|--:|--:|")
        others = [s["name"] for s in data["servers"] if not s["name"].startswith("ferroserve")]
        for fs in fs_names:
            for other in others:
                for (srv, proto, c), s in by.items():
                    if srv != fs:
                        continue
                    o = by.get((other, proto, c))
                    if not o:
                        continue
                    L.append(f"| {fs} | {other} | {proto} | {c} | {ratio(s['throughput_rps'], o['throughput_rps'])} | "
                             f"{ratio(s['p50_us'], o['p50_us'])} | {ratio(s['p99_us'], o['p99_us'])} | "
                             f"{ratio(s['server_cpu_us_per_req'], o['server_cpu_us_per_req'])} |")
        st = {s["name"]: s for s in data["servers"]}
        if "kserve" in st:
            L.append("")
            for fs in fs_names:
                L.append(f"- {fs} ÷ kserve: start-up {ratio(st[fs]['startup_ms'], st['kserve']['startup_ms'], 3)}, "
                         f"idle RSS {ratio(st[fs]['idle_rss_mib'], st['kserve']['idle_rss_mib'], 3)}")
        L.append("")

    if data["perf_analyzer"]:
        L.append("## perf_analyzer (Triton)\n")
        L.append("One perf_analyzer run per row (it repeats its own measurement windows until they are stable "
                 f"within 25%, windows of {a['pa_interval_ms']} ms, at most 8). `loadgen` columns repeat the medians "
                 "above for the same server, protocol and concurrency. perf_analyzer sends gRPC tensors as "
                 "`raw_input_contents`; over HTTP it is run with JSON tensors (as loadgen) and, against ferroserve, with "
                 "the binary tensor extension. Its anchor rows show perf_analyzer's own limit on this machine.\n")
        L.append("| server | protocol | tensors | c | throughput (req/s) | p50 (µs) | p99 (µs) | loadgen throughput | loadgen p50 | note |")
        L.append("|---|---|---|--:|--:|--:|--:|--:|--:|---|")
        for r in data["perf_analyzer"]:
            lg = by.get((r["server"], r["protocol"], r["concurrency"]), {})
            L.append(f"| {r['server']} | {r['protocol']} | {r['tensor_format']} | {r['concurrency']} | "
                     f"{fmt(r.get('throughput_rps'))} | {fmt(r.get('p50_us'))} | {fmt(r.get('p99_us'))} | "
                     f"{fmt(lg.get('throughput_rps'))} | {fmt(lg.get('p50_us'))} | {r.get('error', '')} |")
        L.append("")

    if data["notes"]:
        L.append("## Notes\n")
        L.extend(f"- {n}" for n in data["notes"])
        L.append("")
    with open(path_md, "w") as f:
        f.write("\n".join(L))


# ------------------------------------------------------------------ main

def versions(a):
    v = {}
    try:
        v["rustc"] = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.split()[1]
    except Exception:
        pass
    try:
        v["kserve"] = subprocess.run([a.kserve_python, "-c", "import kserve,sklearn;print(kserve.__version__,sklearn.__version__)"],
                                     capture_output=True, text=True).stdout.split()[0]
        v["scikit-learn"] = subprocess.run([a.kserve_python, "-c", "import sklearn;print(sklearn.__version__)"],
                                           capture_output=True, text=True).stdout.strip()
        v["python"] = subprocess.run([a.kserve_python, "-c", "import platform;print(platform.python_version())"],
                                     capture_output=True, text=True).stdout.strip()
    except Exception:
        pass
    if a.ort_lib:
        v["onnxruntime"] = os.path.basename(a.ort_lib).replace("libonnxruntime.so.", "")
    if a.perf_analyzer:
        v["perf_analyzer"] = "2.60.0 (PyPI wheel)"
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        v["ferroserve"] = (rev.stdout.strip() or "no commit") + (" + uncommitted changes" if dirty else "")
        fs = os.path.join(a.bin_dir or os.path.join(a.target_dir, "release"), "ferroserve")
        v["ferroserve binary"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime(os.path.getmtime(fs))) + " UTC"
    except Exception:
        pass
    return v


def machine_info():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) / 1024 / 1024
    except OSError:
        mem = 0
    return {"cpus": os.cpu_count(), "cpu_model": model, "mem_gib": round(mem, 1), "kernel": platform.release()}


def main():
    p = argparse.ArgumentParser(description=__doc__)
    tgt = os.environ.get("CARGO_TARGET_DIR", "/tmp/ferroserve-target")
    p.add_argument("--target-dir", default=tgt)
    p.add_argument("--bin-dir", default=None, help="folder with ferroserve, loadgen, anchor-server "
                   "(default: TARGET_DIR/release)")
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--startup-repeats", type=int, default=3)
    p.add_argument("--concurrency", default="1,8")
    p.add_argument("--servers", default="ferroserve-tract,ferroserve-ort,kserve,anchor")
    p.add_argument("--kserve-python", default=os.environ.get("KSERVE_PYTHON", "/tmp/kserve-venv/bin/python"))
    p.add_argument("--kserve-model-dir", default=os.environ.get("KSERVE_MODEL_DIR", "/tmp/kserve-iris"))
    p.add_argument("--kserve-workers", type=int, default=int(os.environ.get("KSERVE_WORKERS", "1")))
    p.add_argument("--ort-lib", default=os.environ.get("ORT_DYLIB_PATH"))
    p.add_argument("--perf-analyzer", default=os.environ.get("PERF_ANALYZER"))
    p.add_argument("--pa-interval-ms", type=int, default=1500)
    p.add_argument("--pa-servers", default="ferroserve-tract,anchor",
                   help="servers perf_analyzer runs against (the anchor row calibrates perf_analyzer itself)")
    p.add_argument("--body-file", default=os.path.join(BENCH, "request-batch1.json"))
    p.add_argument("--model", default="iris")
    p.add_argument("--idle-threshold", type=float, default=0.3, help="cores used by others that count as busy")
    p.add_argument("--idle-wait", type=float, default=60, help="seconds to wait for an idle machine per config")
    p.add_argument("--out", default=os.path.join(BENCH, "results"))
    a = p.parse_args()
    # On SIGTERM unwind through the `finally` that stops the running server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rel = a.bin_dir or os.path.join(a.target_dir, "release")
    a.loadgen = os.path.join(rel, "loadgen")
    concs = [int(c) for c in a.concurrency.split(",")]
    with open(a.body_file, "rb") as f:
        body = f.read()
    logdir = os.path.join(a.out, "tmp", time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(logdir, exist_ok=True)
    notes = []

    servers = []
    for name in a.servers.split(","):
        hp, gp = free_port(), free_port()
        if name in ("ferroserve-tract", "ferroserve-ort"):
            engine = name.split("-")[1]
            env = {"RUST_LOG": os.environ.get("RUST_LOG", "info")}
            if engine == "ort":
                if not a.ort_lib or not os.path.exists(a.ort_lib):
                    notes.append("ferroserve-ort skipped: no ONNX Runtime library (set ORT_DYLIB_PATH).")
                    continue
                env["ORT_DYLIB_PATH"] = a.ort_lib
            servers.append(Server(name, "ferroserve", [
                os.path.join(rel, "ferroserve"), "serve", "--model_dir", "examples/iris", "--host", "127.0.0.1",
                "--http_port", str(hp), "--grpc_port", str(gp), "--onnx_engine", engine], hp, gp, env=env))
        elif name == "kserve":
            servers.append(Server(name, "kserve", [
                a.kserve_python, os.path.join(BENCH, "kserve", "iris_sklearn_server.py"),
                "--model_dir", a.kserve_model_dir, "--model_name", a.model,
                "--http_port", str(hp), "--grpc_port", str(gp), "--workers", str(a.kserve_workers)],
                hp, gp, cwd=logdir))
        elif name == "anchor":
            servers.append(Server(name, "anchor", [
                os.path.join(rel, "anchor-server"), "--host", "127.0.0.1",
                "--http_port", str(hp), "--grpc_port", str(gp)], hp, gp))
        else:
            sys.exit(f"unknown server {name}")

    data = {"date": datetime.date.today().isoformat(), "machine": machine_info(), "versions": versions(a),
            "settings": {"duration": a.duration, "warmup": a.warmup, "repeats": a.repeats,
                         "concurrency": concs, "body_file": os.path.relpath(a.body_file, ROOT),
                         "pa_interval_ms": a.pa_interval_ms, "kserve_workers": a.kserve_workers},
            "servers": [], "load": [], "perf_analyzer": [], "notes": notes}
    data["machine"]["other_load_at_start"] = wait_idle(a.idle_threshold, a.idle_wait)
    t_start = time.monotonic()

    for srv in servers:
        try:
            tries = []
            for i in range(max(1, a.startup_repeats)):
                wait_idle(a.idle_threshold, a.idle_wait)
                ms = srv.start(logdir, body, a.model)
                tries.append(ms)
                if i + 1 < a.startup_repeats:
                    srv.stop()
            time.sleep(1.0)  # let start-up work (JIT-less, but allocator/GC) settle
            rss, pss = tree_memory_mib(srv.proc.pid)
            nproc = len(process_tree(srv.proc.pid))
            info = {"name": srv.name, "startup_ms": statistics.median(tries), "startup_tries_ms": tries,
                    "idle_rss_mib": rss, "idle_pss_mib": pss, "processes": nproc,
                    "http_port": srv.http_port, "grpc_port": srv.grpc_port, "argv": srv.argv}
            data["servers"].append(info)
            log(f"{srv.name}: start-up {info['startup_ms']} ms, idle RSS {rss} MiB ({nproc} processes)")

            for proto in ("http", "grpc"):
                for c in concs:
                    runs = []
                    for _ in range(a.repeats):
                        wait_idle(a.idle_threshold, a.idle_wait)
                        runs.append(run_loadgen(a, srv, proto, c, a.body_file, a.model))
                    s = summarize(runs)
                    data["load"].append({"server": srv.name, "protocol": proto, "concurrency": c,
                                         "summary": s, "runs": runs})
                    log(f"{srv.name} {proto} c={c}: {s['throughput_rps']} req/s, p50 {s['p50_us']} µs, "
                        f"p99 {s['p99_us']} µs, server {s['server_cpu_us_per_req']} µs/req, errors {s['errors']}")
                    if s["errors"]:
                        notes.append(f"{srv.name} {proto} c={c}: {s['errors']} errors, first: {s['first_error']}")

            if srv.name in a.pa_servers.split(",") and a.perf_analyzer:
                # The anchor answers JSON only: perf_analyzer's binary HTTP format is run against ferroserve.
                http_fmts = ("json", "binary") if srv.kind == "ferroserve" else ("json",)
                for proto, fmts in (("http", http_fmts), ("grpc", ("binary",))):
                    for tf in fmts:
                        for c in concs:
                            wait_idle(a.idle_threshold, a.idle_wait)
                            r = run_perf_analyzer(a, srv, proto, c, a.model, tf, logdir)
                            data["perf_analyzer"].append(r)
                            log(f"perf_analyzer {srv.name} {proto}/{r['tensor_format']} c={c}: "
                                f"{r.get('throughput_rps')} req/s, p50 {r.get('p50_us')} µs {r.get('error', '')}")
            if srv.kind == "ferroserve" and srv.name == "ferroserve-tract":
                # The server's own statistics (Triton statistics extension), for the record.
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{srv.http_port}/v2/models/{a.model}/stats", timeout=5) as r:
                        data.setdefault("ferroserve_stats", json.loads(r.read()))
                except Exception:
                    pass
        finally:
            srv.stop()

    busy_runs = [f"{r['server']}/{r['protocol']}/c{r['concurrency']}" for r in data["load"]
                 if (r["summary"]["other_cpu_cores_max"] or 0) > a.idle_threshold]
    if busy_runs:
        notes.append("Other processes used more than %.1f cores during: %s — those rows are less reliable."
                     % (a.idle_threshold, ", ".join(busy_runs)))
    if a.kserve_workers == 1 and any(s["name"] == "kserve" for s in data["servers"]):
        notes.append("KServe runs with its defaults (`--workers 1`, request/latency logging on, logs to a file); "
                     "the model is a kserve.Model subclass calling predict_proba (PyPI `kserve` has no sklearnserver).")
    data["elapsed_s"] = round(time.monotonic() - t_start, 1)
    notes.append(f"Whole benchmark took {data['elapsed_s']} s.")

    stem = os.path.join(a.out, f"{data['date']}-serving-core")
    with open(stem + ".json", "w") as f:
        json.dump(data, f, indent=1)
    write_report(stem + ".md", data)
    log(f"wrote {stem}.md and {stem}.json (logs in {logdir})")
    print(open(stem + ".md").read())


if __name__ == "__main__":
    main()

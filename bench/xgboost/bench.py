#!/usr/bin/env python3
"""Single-thread prediction speed: ferroserve's XGBoost evaluator (Rust, in
process: crates/ferroserve-runtime-xgboost/examples/xgb_bench.rs) against the
`xgboost` package (nthread=1) on the same model (100 trees, depth 6, 20
features) and the same 10,000 rows: `inplace_predict`, and `predict` on a
DMatrix (what KServe's xgbserver does per request).

    python bench/xgboost/bench.py [--seconds 3] [--out DIR]

Run it with a Python that has `xgboost` (see run.sh). Writes
bench/xgboost/RESULTS.md unless --no-write.
"""

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import xgboost as xgb

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
F = 20
N = 10_000


def make_model(out: Path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20_000, F))
    x[rng.random(x.shape) < 0.05] = np.nan
    z = np.nan_to_num(x)
    y = (z[:, 0] + z[:, 1] * z[:, 2] + np.sin(z[:, 3]) + 0.5 * z[:, 4:10].sum(axis=1)
         + rng.normal(size=len(x)) > 0).astype(float)
    params = {"objective": "binary:logistic", "max_depth": 6, "eta": 0.1, "tree_method": "hist",
              "nthread": 1, "seed": 1}
    b = xgb.train(params, xgb.DMatrix(x, label=y), num_boost_round=100)
    b.save_model(str(out / "model.json"))
    rows = rng.normal(size=(N, F))
    rows[rng.random(rows.shape) < 0.05] = np.nan
    rows.astype("<f8").tofile(out / "rows.f64")
    return b.num_boosted_rounds()


def rate(seconds, rows_per_call, fn):
    t_end = time.perf_counter() + seconds / 10
    while time.perf_counter() < t_end:
        fn()
    calls = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        calls += 1
    return calls * rows_per_call / (time.perf_counter() - start)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--out", default="/tmp/ferroserve-bench-xgboost")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    trees = make_model(out)
    rows = np.fromfile(out / "rows.f64", dtype="<f8").reshape(N, F)
    rows32 = rows.astype(np.float32)
    booster = xgb.Booster(model_file=str(out / "model.json"))
    booster.set_param({"nthread": 1})

    i = [0]

    def one_inplace():
        r = i[0] % N
        i[0] += 1
        booster.inplace_predict(rows32[r:r + 1])

    def one_dmatrix():
        r = i[0] % N
        i[0] += 1
        booster.predict(xgb.DMatrix(rows32[r:r + 1], nthread=1))

    py_b1 = rate(args.seconds, 1, one_inplace)
    py_full = rate(args.seconds, N, lambda: booster.inplace_predict(rows32))
    dm_b1 = rate(args.seconds, 1, one_dmatrix)
    dm_full = rate(args.seconds, N, lambda: booster.predict(xgb.DMatrix(rows32, nthread=1)))
    want = booster.predict(xgb.DMatrix(rows[:5]))

    target = os.environ.get("CARGO_TARGET_DIR", "/tmp/ferroserve-target")
    subprocess.run(["cargo", "build", "--release", "-p", "ferroserve-runtime-xgboost", "--example", "xgb_bench"],
                   cwd=ROOT, check=True, env=dict(os.environ, CARGO_TARGET_DIR=target))
    res = subprocess.run([f"{target}/release/examples/xgb_bench", str(out / "model.json"), str(out / "rows.f64"),
                          str(F), str(args.seconds)], check=True, capture_output=True, text=True)
    rs = json.loads(res.stdout)
    np.testing.assert_array_equal(np.array(rs["first"], dtype=np.float32), want)

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    lines = [
        "# XGBoost evaluator vs the xgboost package (single thread)",
        "",
        f"Model: binary:logistic, {trees} trees, max_depth 6, {F} features, 5% NaN; {N:,} rows of the same kind.",
        f"xgboost {xgb.__version__} with `nthread=1`: `Booster.inplace_predict(X)` on a float32 numpy array, and",
        "`Booster.predict(DMatrix(X))` (KServe xgbserver's path), vs `XgboostModel::predict` with",
        "`intra_op_threads: 1` (`crates/ferroserve-runtime-xgboost/examples/xgb_bench.rs`, in process, release",
        "build). The batch-1 `Model::infer` column includes building the FP32 input tensor and both output",
        "tensors, as the server calls it. Predictions are bit-identical (checked on the first rows).",
        "",
        f"Machine: {cpu}, {os.cpu_count()} cores, shared with other jobs (load average "
        f"{os.getloadavg()[0]:.1f} at the end of the run: expect ±30% from run to run); {args.seconds:g} s "
        "per measurement. Regenerate: `bench/xgboost/run.sh`.",
        "",
        "| rows per call | xgboost `inplace_predict` (pred/s) | xgboost DMatrix + `predict` (pred/s) "
        "| ferroserve `predict` (pred/s) | vs inplace | ferroserve `Model::infer` (pred/s) | vs inplace |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| 1 | {py_b1:,.0f} | {dm_b1:,.0f} | {rs['batch1_per_s']:,.0f} | {rs['batch1_per_s'] / py_b1:.1f}× "
        f"| {rs['batch1_infer_per_s']:,.0f} | {rs['batch1_infer_per_s'] / py_b1:.1f}× |",
        f"| {N:,} | {py_full:,.0f} | {dm_full:,.0f} | {rs['batch_full_per_s']:,.0f} | "
        f"{rs['batch_full_per_s'] / py_full:.1f}× | – | – |",
        "",
        f"Model load: {rs['load_ms']:.1f} ms (Rust, JSON).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        (HERE / "RESULTS.md").write_text(text)


if __name__ == "__main__":
    main()

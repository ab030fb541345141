#!/usr/bin/env python3
"""Single-thread prediction speed: ferroserve's LightGBM evaluator (Rust, in
process: crates/ferroserve-runtime-lightgbm/examples/lgbm_bench.rs) against
the `lightgbm` package's Booster.predict (num_threads=1), on the same model
(100 trees, depth 6, 20 features) and the same 10,000 rows.

    python bench/lightgbm/bench.py [--seconds 3] [--out DIR]

Run it with a Python that has `lightgbm` (see run.sh). Writes
bench/lightgbm/RESULTS.md unless --no-write.
"""

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np

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
    params = {"objective": "binary", "max_depth": 6, "num_leaves": 64, "learning_rate": 0.1,
              "min_data_in_leaf": 5, "verbose": -1, "num_threads": 1, "seed": 1, "deterministic": True}
    b = lgb.train(params, lgb.Dataset(x, y), num_boost_round=100)
    b.save_model(str(out / "model.txt"))
    rows = rng.normal(size=(N, F))
    rows[rng.random(rows.shape) < 0.05] = np.nan
    rows.astype("<f8").tofile(out / "rows.f64")
    return b.num_trees()


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
    ap.add_argument("--out", default="/tmp/ferroserve-bench-lightgbm")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    trees = make_model(out)
    rows = np.fromfile(out / "rows.f64", dtype="<f8").reshape(N, F)
    booster = lgb.Booster(model_file=str(out / "model.txt"))

    i = [0]

    def one():
        r = i[0] % N
        i[0] += 1
        booster.predict(rows[r:r + 1], num_threads=1)

    py_b1 = rate(args.seconds, 1, one)
    py_full = rate(args.seconds, N, lambda: booster.predict(rows, num_threads=1))
    want = booster.predict(rows[:5], num_threads=1)

    target = os.environ.get("CARGO_TARGET_DIR", "/tmp/ferroserve-target")
    subprocess.run(["cargo", "build", "--release", "-p", "ferroserve-runtime-lightgbm", "--example", "lgbm_bench"],
                   cwd=ROOT, check=True, env=dict(os.environ, CARGO_TARGET_DIR=target))
    res = subprocess.run([f"{target}/release/examples/lgbm_bench", str(out / "model.txt"), str(out / "rows.f64"),
                          str(F), str(args.seconds)], check=True, capture_output=True, text=True)
    rs = json.loads(res.stdout)
    np.testing.assert_allclose(rs["first"], want, rtol=1e-12)

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    table = [
        ("batch 1", py_b1, rs["batch1_per_s"], rs["batch1_infer_per_s"]),
        (f"batch {N:,}", py_full, rs["batch_full_per_s"], None),
    ]
    lines = [
        "# LightGBM evaluator vs the lightgbm package (single thread)",
        "",
        f"Model: binary, {trees} trees, max_depth 6 (≤ 64 leaves), {F} features, 5% NaN; {N:,} rows of the same kind.",
        f"lightgbm {lgb.__version__} `Booster.predict(X, num_threads=1)` on a float64 numpy array vs",
        "`LightgbmModel::predict(Rows::F64, Output::Transformed)` with `threads: 1`",
        "(`crates/ferroserve-runtime-lightgbm/examples/lgbm_bench.rs`, in process, release build).",
        "The batch-1 `Model::infer` column includes building the FP32 input tensor and both output tensors,",
        "as the server calls it. Predictions agree (checked on the first rows).",
        "",
        f"Machine: {cpu}, {os.cpu_count()} cores (shared); {args.seconds:g} s per measurement. Regenerate: `bench/lightgbm/run.sh`.",
        "",
        "| rows per call | lightgbm (pred/s) | ferroserve `predict` (pred/s) | ratio | ferroserve `Model::infer` (pred/s) | ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, py, r, ri in table:
        ri_s = f"{ri:,.0f} | {ri / py:.1f}×" if ri else "– | –"
        lines.append(f"| {name} | {py:,.0f} | {r:,.0f} | {r / py:.1f}× | {ri_s} |")
    lines.append("")
    lines.append(f"At batch 1, lightgbm's time is mostly the Python call and its data conversion "
                 f"({1e6 / py_b1:.1f} µs per call vs {1e6 / py_full:.2f} µs per row at batch {N:,}); "
                 "the batch-{N:,} row compares the tree walks themselves.".replace("{N:,}", f"{N:,}"))
    lines.append(f"Model load: {rs['load_ms']:.1f} ms (Rust).")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        (HERE / "RESULTS.md").write_text(text)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""scikit-learn side of the ferroserve-vs-scikit-learn benchmark (issue 6).

    bench.py train  DIR          trains the models, saves DIR/<name>/model.joblib and the rows
    bench.py time   DIR OUT.json times scikit-learn's predict / predict_proba (1 thread)
    bench.py report DIR SK.json FERRO.json RESULTS.md

Both sides see the same models and the same rows. Batch 1 cycles through
the first ROWS1 rows one call at a time; batch 10,000 calls on all rows.
"""
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

N_TRAIN = 20_000
N_ROWS = 10_000
ROWS1 = 2_000          # distinct single rows cycled through at batch 1
F = 20
MIN_SECONDS = 1.0      # each measurement runs at least this long
METHODS = ["predict", "predict_proba"]


def data(seed=0):
    rng = np.random.RandomState(seed)
    n = N_TRAIN + N_ROWS
    x = rng.normal(size=(n, F))
    y = (x[:, 0] + 0.5 * x[:, 1] * x[:, 2] - 0.3 * x[:, 3] ** 2 + rng.normal(scale=0.5, size=n))
    y = np.digitize(y, np.quantile(y, [0.33, 0.66]))            # 3 classes
    colors = np.array(["red", "green", "blue", "black", "white"])
    sizes = np.array(["S", "M", "L"])
    col_c = colors[rng.randint(0, 5, size=n)]
    col_s = sizes[rng.randint(0, 3, size=n)]
    y_mixed = ((x[:, 0] > 0) ^ (col_c == "red") ^ (col_s == "L")).astype(int)
    return x, y, col_c, col_s, y_mixed


def frame(x, col_c, col_s):
    import pandas as pd
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "d": x[:, 3],
                         "color": col_c, "size": col_s})


def models():
    from sklearn import compose, ensemble, linear_model, pipeline, preprocessing
    return [
        ("logreg", linear_model.LogisticRegression(max_iter=1000), "x"),
        ("rf", ensemble.RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0, n_jobs=1), "x"),
        ("hgb", ensemble.HistGradientBoostingClassifier(max_iter=100, early_stopping=False, random_state=0), "x"),
        ("pipe_scaler_logreg", pipeline.Pipeline([
            ("scale", preprocessing.StandardScaler()),
            ("clf", linear_model.LogisticRegression(max_iter=1000))]), "x"),
        ("pipe_ct_onehot_logreg", pipeline.Pipeline([
            ("ct", compose.ColumnTransformer([
                ("onehot", preprocessing.OneHotEncoder(handle_unknown="ignore"), ["color", "size"]),
                ("scale", preprocessing.StandardScaler(), ["a", "b", "c", "d"])])),
            ("clf", linear_model.LogisticRegression(max_iter=1000))]), "mixed"),
    ]


def train(out):
    import joblib
    out.mkdir(parents=True, exist_ok=True)
    x, y, col_c, col_s, y_mixed = data()
    tr, te = slice(0, N_TRAIN), slice(N_TRAIN, None)
    x[te].astype("<f8").tofile(out / "x.f64")
    (out / "mixed.json").write_text(json.dumps({
        "a": x[te, 0].tolist(), "b": x[te, 1].tolist(), "c": x[te, 2].tolist(), "d": x[te, 3].tolist(),
        "color": col_c[te].tolist(), "size": col_s[te].tolist()}))
    entries = []
    for name, est, kind in models():
        t = time.time()
        if kind == "x":
            est.fit(x[tr], y[tr])
        else:
            est.fit(frame(x[tr], col_c[tr], col_s[tr]), y_mixed[tr])
        d = out / name
        d.mkdir(exist_ok=True)
        joblib.dump(est, d / "model.joblib")
        entries.append({"name": name, "dir": str(d), "dataset": kind, "features": F})
        print(f"trained {name} in {time.time() - t:.1f}s", file=sys.stderr)
    (out / "bench.json").write_text(json.dumps({
        "rows": N_ROWS, "rows1": ROWS1, "min_seconds": MIN_SECONDS, "methods": METHODS,
        "models": entries}, indent=1))


def measure(fn, calls_per_round, rows_per_call):
    """Predictions per second: runs rounds of calls until MIN_SECONDS pass."""
    fn(0)  # warm-up
    done, start = 0, time.perf_counter()
    while True:
        for i in range(calls_per_round):
            fn(i)
        done += calls_per_round
        el = time.perf_counter() - start
        if el >= MIN_SECONDS:
            return done * rows_per_call / el, el / done


def time_sklearn(out, result):
    import joblib
    from threadpoolctl import threadpool_limits
    cfg = json.loads((out / "bench.json").read_text())
    x, _, col_c, col_s, _ = data()
    x, col_c, col_s = x[N_TRAIN:], col_c[N_TRAIN:], col_s[N_TRAIN:]
    rows = []
    with threadpool_limits(limits=1):
        for m in cfg["models"]:
            est = joblib.load(Path(m["dir"]) / "model.joblib")
            if hasattr(est, "n_jobs"):
                est.n_jobs = 1
            if m["dataset"] == "x":
                big = x
                singles = [x[i:i + 1] for i in range(ROWS1)]
            else:
                big = frame(x, col_c, col_s)
                singles = [big.iloc[i:i + 1] for i in range(ROWS1)]
            ref = {}
            for meth in METHODS:
                f = getattr(est, meth)
                ref[meth] = np.asarray(f(big))
                ps, lat = measure(lambda i: f(singles[i % ROWS1]), 200, 1)
                rows.append({"model": m["name"], "method": meth, "batch": 1, "preds_per_s": ps, "s_per_call": lat})
                ps, lat = measure(lambda i: f(big), 1, N_ROWS)
                rows.append({"model": m["name"], "method": meth, "batch": N_ROWS, "preds_per_s": ps,
                             "s_per_call": lat})
                print(f"sklearn {m['name']} {meth}: done", file=sys.stderr)
            # reference outputs, checked by the Rust side
            d = Path(m["dir"])
            ref["predict"].astype("<i8").tofile(d / "predict.i64")
            ref["predict_proba"].astype("<f8").tofile(d / "predict_proba.f64")
    result.write_text(json.dumps(rows, indent=1))


def report(out, sk_path, fe_path, md):
    import sklearn
    sk = json.loads(Path(sk_path).read_text())
    fe = {(r["model"], r["method"], r["batch"]): r for r in json.loads(Path(fe_path).read_text())}
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    lines = [
        "# ferroserve vs scikit-learn: single-thread prediction throughput",
        "",
        f"Made by `bench/sklearn/run.sh` on {time.strftime('%Y-%m-%d')}: {cpu}, Python {platform.python_version()}, "
        f"scikit-learn {sklearn.__version__}, numpy {np.__version__}.",
        "",
        f"{os.cpu_count()} CPUs visible, load average {os.getloadavg()[0]:.1f} when the report was written "
        "(the machine may be shared; both sides ran back to back in the same conditions).",
        "",
        "Same models (trained once, saved with joblib, loaded by both sides), same rows, one run.",
        "scikit-learn: `est.predict(X)` / `est.predict_proba(X)` in Python, under",
        "`threadpoolctl.threadpool_limits(1)` (and `n_jobs=1`). ferroserve: the `sklearn_bench` example,",
        "in process, `SklearnModel::infer_outputs` (request tensors in, output tensors out; decoding",
        "and label mapping included) with `intra_op_threads = 1`, computing only the output asked for.",
        f"Batch 1: one row per call, cycling through {ROWS1} distinct rows (inputs prepared beforehand:",
        "numpy row views / one-row DataFrames on the Python side, tensors on the Rust side).",
        f"Batch 10,000: all {N_ROWS} rows in one call. Each cell ran ≥ {MIN_SECONDS:.0f} s. Data: {F} standard-normal",
        "features, 3 classes (the ColumnTransformer model: 4 numeric + 2 string columns, 2 classes).",
        "ferroserve's outputs were checked against scikit-learn's on all 10,000 rows (labels equal,",
        "probabilities within the shown max abs difference).",
        "",
        "| model | method | batch | scikit-learn pred/s | ferroserve pred/s | ferroserve / sklearn |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in sk:
        f = fe.get((r["model"], r["method"], r["batch"]))
        if f is None:
            continue
        ratio = f["preds_per_s"] / r["preds_per_s"]
        lines.append(f"| {r['model']} | {r['method']} | {r['batch']:,} | {r['preds_per_s']:,.0f} | "
                     f"{f['preds_per_s']:,.0f} | **{ratio:.1f}×** |")
    diffs = {}
    for r in fe.values():
        if r["method"] == "predict_proba":
            diffs[r["model"]] = max(diffs.get(r["model"], 0.0), r["max_abs_diff"])
    lines += ["", "Max |ferroserve − scikit-learn| of predict_proba over the 10,000 rows: " +
              ", ".join(f"{m} {d:.1e}" for m, d in diffs.items()) + "."]
    lines += ["", "Notes:", "",
              "- At batch 1 scikit-learn's time is almost all per-call Python overhead (input validation,",
              "  and for HistGradientBoosting one Python-level call per tree: 100 iterations × 3 classes),",
              "  hence the 100×–1,500× ratios; ferroserve's per-call cost is a few allocations.",
              "- At 10,000 rows both sides are compute-bound; tree ensembles are bound by branchy tree walks",
              "  on both sides, so the margin there is small (≈1.2×).",
              "- HistGradientBoosting was 0.6× at 10,000 rows before this benchmark's fix: its trees were",
              "  stored as one array per node field and walked row by row across all 300 trees. Nodes are",
              "  now packed (one 32-byte struct per node) and walked tree by tree over blocks of 128 rows.",
              "- RandomForest: blocking rows or interleaving 4 walks made it slower here (large trees stay",
              "  in cache best tree by tree), so it keeps its loop."]
    Path(md).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    cmd, out = sys.argv[1], Path(sys.argv[2])
    if cmd == "train":
        train(out)
    elif cmd == "time":
        time_sklearn(out, Path(sys.argv[3]))
    elif cmd == "report":
        report(out, sys.argv[3], sys.argv[4], sys.argv[5])
    else:
        sys.exit(f"unknown command {cmd}")

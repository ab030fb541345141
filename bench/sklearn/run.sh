#!/usr/bin/env bash
# ferroserve vs scikit-learn, single thread, same models and rows (issue 6).
# Trains and saves the models (joblib) under $BENCH_DIR, times scikit-learn's
# predict / predict_proba (threadpoolctl: 1 thread) and ferroserve's evaluator
# in process (examples/sklearn_bench.rs), then writes bench/sklearn/RESULTS.md.
#
#   PYTHON=/work/skl-venv/bin/python bench/sklearn/run.sh
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PYTHON="${PYTHON:-/work/skl-venv/bin/python}"
BENCH_DIR="${BENCH_DIR:-/tmp/ferroserve-sklearn-bench}"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 RAYON_NUM_THREADS=1

cd "$ROOT"
# build first so that compiling does not overlap with the timings
cargo build --release -p ferroserve-runtime-sklearn --example sklearn_bench
"$PYTHON" "$HERE/bench.py" train "$BENCH_DIR"
"$PYTHON" "$HERE/bench.py" time "$BENCH_DIR" "$BENCH_DIR/sklearn.json"
cargo run --release -q -p ferroserve-runtime-sklearn --example sklearn_bench -- "$BENCH_DIR" > "$BENCH_DIR/ferroserve.json"
"$PYTHON" "$HERE/bench.py" report "$BENCH_DIR" "$BENCH_DIR/sklearn.json" "$BENCH_DIR/ferroserve.json" "$HERE/RESULTS.md"

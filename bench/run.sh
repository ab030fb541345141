#!/usr/bin/env bash
# Serving-core benchmark: builds and installs what it needs, then runs bench/run.py.
#   bench/run.sh                 # full run (~6-8 min on 2 cores)
#   bench/run.sh --duration 2 --repeats 1 --servers ferroserve-tract,anchor   # any run.py option
# Environment: CARGO_TARGET_DIR (default /tmp/ferroserve-target), KSERVE_VENV (/tmp/kserve-venv),
#   PERF_ANALYZER_PREFIX (/tmp/perf-analyzer), ORT_DYLIB_PATH (auto-detected from an onnxruntime wheel),
#   BENCH_BIN_DIR (/tmp/ferroserve-bench-bin), SKIP_BUILD=1 (reuse the binaries there), SKIP_PERF_ANALYZER=1.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/ferroserve-target}"
KSERVE_VENV="${KSERVE_VENV:-/tmp/kserve-venv}"
PYTHON="${PYTHON:-python3}"

# Other checkouts (CI clones, worktrees) build into the same CARGO_TARGET_DIR: every cargo build, even a
# fresh one, re-links target/release/<bin> to *its* tree's artifact. So copy this tree's binaries aside,
# build again, and accept the copies only when the second build left the same files (else retry).
BIN_DIR="${BENCH_BIN_DIR:-/tmp/ferroserve-bench-bin}"
BINS=(ferroserve loadgen anchor-server)
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    mkdir -p "$BIN_DIR"
    ok=0
    for try in 1 2 3 4 5; do
        cargo build --release -p ferroserve -p ferroserve-loadgen
        for b in "${BINS[@]}"; do
            cp -f "$CARGO_TARGET_DIR/release/$b" "$BIN_DIR/$b.tmp" && mv -f "$BIN_DIR/$b.tmp" "$BIN_DIR/$b"
        done
        cargo build --release -q -p ferroserve -p ferroserve-loadgen
        same=1
        for b in "${BINS[@]}"; do cmp -s "$CARGO_TARGET_DIR/release/$b" "$BIN_DIR/$b" || same=0; done
        if [[ $same == 1 ]]; then ok=1; break; fi
        echo "bench: another build replaced the binaries while copying; retrying ($try)" >&2
    done
    [[ $ok == 1 ]] || { echo "bench: could not get a stable copy of this tree's binaries" >&2; exit 1; }
fi
[[ -x "$BIN_DIR/ferroserve" ]] || BIN_DIR="$CARGO_TARGET_DIR/release"

# KServe's Python ModelServer in its own venv, and the scikit-learn model it serves.
if [[ ! -x "$KSERVE_VENV/bin/python" ]] || ! "$KSERVE_VENV/bin/python" -c 'import kserve, sklearn, joblib' 2>/dev/null; then
    "$PYTHON" -m venv "$KSERVE_VENV"
    "$KSERVE_VENV/bin/pip" install -q kserve scikit-learn joblib
fi
export KSERVE_PYTHON="$KSERVE_VENV/bin/python"
export KSERVE_MODEL_DIR="${KSERVE_MODEL_DIR:-$KSERVE_VENV/iris-model}"
if [[ ! -f "$KSERVE_MODEL_DIR/model.joblib" ]]; then
    "$KSERVE_PYTHON" bench/kserve/iris_sklearn_server.py --train "$KSERVE_MODEL_DIR"
fi

# Triton's perf_analyzer (private glibc, see setup_perf_analyzer.sh).
if [[ "${SKIP_PERF_ANALYZER:-0}" != 1 ]]; then
    export PERF_ANALYZER="$(bash bench/setup_perf_analyzer.sh | tail -n1)"
fi

# ONNX Runtime for the ferroserve-ort row: a PyPI onnxruntime wheel's library.
if [[ -z "${ORT_DYLIB_PATH:-}" ]]; then
    for d in /work/gen-venv /tmp/gen-venv "$KSERVE_VENV" .venv; do
        f="$(ls "$d"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.1* 2>/dev/null | head -n1 || true)"
        if [[ -n "$f" ]]; then export ORT_DYLIB_PATH="$f"; break; fi
    done
fi

exec "$PYTHON" bench/run.py --bin-dir "$BIN_DIR" "$@"

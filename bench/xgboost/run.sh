#!/usr/bin/env bash
# XGBoost evaluator benchmark: makes a venv with xgboost-cpu (once), then runs bench.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${XGB_BENCH_VENV:-/tmp/xgb-bench-venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet -r tests/fixtures/xgboost/requirements.txt
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/ferroserve-target}"
"$VENV/bin/python" bench/xgboost/bench.py "$@"

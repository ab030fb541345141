#!/usr/bin/env bash
# LightGBM evaluator benchmark: makes a venv with lightgbm (once), then runs bench.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${LGBM_BENCH_VENV:-/tmp/lgbm-bench-venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet -r tests/fixtures/lightgbm/requirements.txt
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/ferroserve-target}"
"$VENV/bin/python" bench/lightgbm/bench.py "$@"

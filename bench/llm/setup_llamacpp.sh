#!/usr/bin/env bash
# Builds llama.cpp (the reference and benchmark anchor for issue 5) from the PyPI sdist of
# llama-cpp-python, which vendors llama.cpp under vendor/llama.cpp. Nothing prebuilt is downloaded:
# only PyPI packages (the sdist, cmake, ninja, scikit-build-core) and the system compiler.
#
# Produces (idempotent: each step is skipped when its output exists):
#   $LLAMA_VENV            venv with llama-cpp-python importable (its shared libraries are the ones
#                          built below, so Python and the CLI tools run the very same code)
#   $LLAMA_BUILD/bin/      llama-bench, llama-server, llama-quantize, llama-tokenize, lib*.so
#   $LLAMA_SRC             the unpacked sdist (convert_hf_to_gguf.py is in vendor/llama.cpp)
#
# Usage: bench/llm/setup_llamacpp.sh      (env: JOBS=2, LLAMA_CPP_PYTHON_VERSION=0.3.36)
set -euo pipefail

VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
LLAMA_VENV="${LLAMA_VENV:-/work/llama-venv}"
LLAMA_SRC_ROOT="${LLAMA_SRC_ROOT:-/work/llama-src}"
LLAMA_SRC="$LLAMA_SRC_ROOT/llama_cpp_python-$VERSION"
LLAMA_BUILD="${LLAMA_BUILD:-/work/llama.cpp-build}"
JOBS="${JOBS:-2}"
PY="$LLAMA_VENV/bin/python"

# 1. venv with the build tools (PyPI cmake/ninja wheels).
if [ ! -x "$PY" ]; then
  python3 -m venv "$LLAMA_VENV"
fi
"$PY" -m pip install -q --upgrade pip cmake ninja scikit-build-core numpy typing-extensions diskcache jinja2

# 2. The sdist (no wheel: --no-binary; --no-build-isolation so pip does not build cmake from source
#    just to read the metadata).
mkdir -p "$LLAMA_SRC_ROOT"
if [ ! -d "$LLAMA_SRC" ]; then
  ( cd "$LLAMA_SRC_ROOT" &&
    "$PY" -m pip download --no-deps --no-build-isolation --no-binary llama-cpp-python \
      "llama-cpp-python==$VERSION" -d . &&
    tar xzf "llama_cpp_python-$VERSION.tar.gz" )
fi

# 3. One cmake build of the vendored llama.cpp: shared libraries + CLI tools.
#    GGML_NATIVE=ON: -march=native (AVX-512 VNNI/BF16 here), but AMX switched off (-mno-amx-*): this
#    VM advertises AMX and grants the tile permission, yet ggml's AMX matmul (used for Q4_0/Q8_0/k-quants)
#    dies with SIGILL here. LLAMA_USE_PREBUILT_UI=OFF: the server's web UI would otherwise be downloaded
#    prebuilt; the server works without it (API only).
NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
TOOLS=(llama-bench llama-server llama-quantize llama-tokenize)
need_build=0
for t in "${TOOLS[@]}"; do [ -x "$LLAMA_BUILD/bin/$t" ] || need_build=1; done
grep -q -- "CMAKE_CXX_FLAGS:STRING=$NO_AMX" "$LLAMA_BUILD/CMakeCache.txt" 2>/dev/null || need_build=1
if [ "$need_build" = 1 ]; then
  export PATH="$LLAMA_VENV/bin:$PATH"
  cmake -S "$LLAMA_SRC/vendor/llama.cpp" -B "$LLAMA_BUILD" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_C_FLAGS="$NO_AMX" -DCMAKE_CXX_FLAGS="$NO_AMX" \
    -DBUILD_SHARED_LIBS=ON \
    -DGGML_NATIVE=ON \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF
  cmake --build "$LLAMA_BUILD" -j "$JOBS" --target "${TOOLS[@]}"
fi

# 4. llama-cpp-python itself, its own C++ build switched off (LLAMA_BUILD=OFF, LLAVA_BUILD=OFF):
#    the package gets the shared libraries built in step 3, from the same vendored source.
if ! "$PY" -c "import llama_cpp" 2>/dev/null; then
  CMAKE_ARGS="-DLLAMA_BUILD=OFF -DLLAVA_BUILD=OFF" \
    "$PY" -m pip install --no-build-isolation --no-deps "$LLAMA_SRC"
fi
# (Re)copy the libraries whenever the build is newer than the copy.
SITE_LIB="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/llama_cpp/lib"
if [ ! -e "$SITE_LIB/libggml-cpu.so" ] || [ "$LLAMA_BUILD/bin/libggml-cpu.so" -nt "$SITE_LIB/libggml-cpu.so" ]; then
  SITE_LIB="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/llama_cpp/lib"
  mkdir -p "$SITE_LIB"
  cp -a "$LLAMA_BUILD"/bin/lib*.so* "$SITE_LIB"/
  "$PY" -c "import llama_cpp; print('llama_cpp', llama_cpp.__version__, 'ok')"
fi

# 5. What convert_hf_to_gguf.py needs, for the venv that runs it (the torch venv; see
#    tests/fixtures/llm/gguf/make_gguf.py). Not done here: that venv is shared.
echo "llama.cpp tools in $LLAMA_BUILD/bin; python: $PY"

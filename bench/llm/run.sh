#!/usr/bin/env bash
# Language-model benchmark, one run, same model files, same thread count, same load tool:
#   * GGUF (Q4_K_M, Q8_0): ferroserve vs llama.cpp's llama-server (built here from the source that
#     PyPI llama-cpp-python vendors: bench/llm/setup_llamacpp.sh), single stream (bench/llm/single.py:
#     prompt tok/s and decode tok/s over HTTP, streaming) and aggregate throughput at 1, 4 and 16
#     concurrent streams (bench/llm/load.py; llama-server with 16 slots + continuous batching).
#   * safetensors (f32): ferroserve vs HuggingFace transformers (PyTorch CPU), single stream.
# The random TinyLlama-1.1B-shaped model comes from bench/llm/make_bench_model.py.
#
# Env: THREADS (2), MODELS_DIR (/work/bench-models), LLAMA_BIN (/work/llama.cpp-build/bin),
#      FERRO_BIN ($CARGO_TARGET_DIR/release/ferroserve), QUANTS ("q4_k_m q8_0"), TORCH_PY
#      (/work/torch-venv/bin/python; empty skips transformers), REQS (2), MAX_TOKENS (64),
#      PROMPT_WORDS (48), STREAMS (1,4,16), OUT (bench/llm/results/<stamp>).
set -euo pipefail
cd "$(dirname "$0")/../.."
THREADS="${THREADS:-2}"
MODELS_DIR="${MODELS_DIR:-/work/bench-models}"
LLAMA_BIN="${LLAMA_BIN:-/work/llama.cpp-build/bin}"
FERRO_BIN="${FERRO_BIN:-${CARGO_TARGET_DIR:-/tmp/ferroserve-target}/release/ferroserve}"
QUANTS="${QUANTS:-q4_k_m q8_0}"
TORCH_PY="${TORCH_PY-/work/torch-venv/bin/python}"
REQS="${REQS:-2}"
MAX_TOKENS="${MAX_TOKENS:-64}"
PROMPT_WORDS="${PROMPT_WORDS:-48}"
STREAMS="${STREAMS:-1,4,16}"
PY="${PY:-python3}"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="${OUT:-bench/llm/results/$stamp}"
PORT=18090
mkdir -p "$OUT"
export RAYON_NUM_THREADS="$THREADS"
{ echo "date: $stamp"; echo "threads: $THREADS"; nproc; uptime; } > "$OUT/machine.txt"

wait_http() {
  for _ in $(seq 1 600); do
    if curl -sf "$1" > /dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "server at $1 did not come up" >&2
  return 1
}

measure() { # name base_url
  "$PY" bench/llm/single.py --base-url "$2" --model bench --prompt-tokens 128 \
    --max-tokens "$MAX_TOKENS" --vocab 32000 --label "$1" > "$OUT/$1-single.json"
  cat "$OUT/$1-single.json"
  "$PY" bench/llm/load.py --base-url "$2" --model bench --concurrency "$STREAMS" \
    --requests-per-client "$REQS" --max-tokens "$MAX_TOKENS" --prompt-words "$PROMPT_WORDS" \
    --label "$1" --json "$OUT/$1-load.json" > "$OUT/$1-load.txt"
  cat "$OUT/$1-load.txt"
}

for q in $QUANTS; do
  m="$MODELS_DIR/tinyllama-shape-$q.gguf"
  [ -f "$m" ] || { echo "missing $m (run bench/llm/make_bench_model.py)"; exit 1; }
  echo "== llama-server $q"
  "$LLAMA_BIN/llama-server" -m "$m" -t "$THREADS" -tb "$THREADS" -np 16 -cb -c 8192 \
    --host 127.0.0.1 --port "$PORT" --alias bench --no-webui > "$OUT/llama-server-$q.log" 2>&1 &
  srv=$!
  wait_http "http://127.0.0.1:$PORT/health"
  measure "llamacpp-$q" "http://127.0.0.1:$PORT/v1"
  kill "$srv"; wait "$srv" 2>/dev/null || true

  echo "== ferroserve $q"
  dir="$(mktemp -d)"; ln -s "$m" "$dir/model.gguf"
  "$FERRO_BIN" serve --model_dir "$dir" --model_name bench --host 127.0.0.1 --http_port "$PORT" \
    --no_grpc --max_num_seqs 16 --max_model_len 2048 > "$OUT/ferroserve-$q.log" 2>&1 &
  srv=$!
  wait_http "http://127.0.0.1:$PORT/v2/health/ready"
  measure "ferroserve-$q" "http://127.0.0.1:$PORT/v1"
  kill "$srv"; wait "$srv" 2>/dev/null || true
  rm -rf "$dir"
done

hf="$MODELS_DIR/tinyllama-shape"
if [ -n "$TORCH_PY" ] && [ -d "$hf" ]; then
  echo "== transformers (f32)"
  "$TORCH_PY" bench/llm/transformers_single.py --model-dir "$hf" --threads "$THREADS" \
    --dtype float32 --prompt-tokens 128 --max-tokens 32 | tee "$OUT/transformers-f32-single.json"
  echo "== ferroserve safetensors (f32)"
  "$FERRO_BIN" serve --model_dir "$hf" --model_name bench --host 127.0.0.1 --http_port "$PORT" \
    --no_grpc --dtype float32 --max_model_len 2048 > "$OUT/ferroserve-f32.log" 2>&1 &
  srv=$!
  wait_http "http://127.0.0.1:$PORT/v2/health/ready"
  "$PY" bench/llm/single.py --base-url "http://127.0.0.1:$PORT/v1" --model bench \
    --prompt-tokens 128 --max-tokens 32 --vocab 32000 --label ferroserve-f32 \
    | tee "$OUT/ferroserve-f32-single.json"
  kill "$srv"; wait "$srv" 2>/dev/null || true
fi
{ echo; uptime; } >> "$OUT/machine.txt"
"$PY" bench/llm/summarize.py "$OUT" | tee "$OUT/summary.md"

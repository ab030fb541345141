#!/usr/bin/env bash
# llama.cpp benchmark anchor for issue 5 (CPU). Needs bench/llm/setup_llamacpp.sh and
# bench/llm/make_bench_model.py to have run.
#
#  1. llama-bench, single stream: pp128 (prompt tok/s) and tg64 (decode tok/s), -t $THREADS, for the
#     Q4_K_M and Q8_0 files.
#  2. llama-server with 16 parallel slots and continuous batching (-np 16 -cb), driven by
#     bench/llm/load.py (OpenAI /v1/completions, streaming, ignore_eos) at 1, 4, 16 streams.
#
# Env: THREADS (2), MODELS_DIR (/work/bench-models), LLAMA_BIN (/work/llama.cpp-build/bin),
#      QUANTS ("q4_k_m q8_0"), PORT (8089), OUT (/work/bench-models/results), REQS (requests per client, 2),
#      MAX_TOKENS (64), PROMPT_WORDS (48), SKIP_BENCH=1 / SKIP_SERVER=1.
set -euo pipefail
cd "$(dirname "$0")/../.."
THREADS="${THREADS:-2}"
MODELS_DIR="${MODELS_DIR:-/work/bench-models}"
LLAMA_BIN="${LLAMA_BIN:-/work/llama.cpp-build/bin}"
QUANTS="${QUANTS:-q4_k_m q8_0}"
PORT="${PORT:-8089}"
OUT="${OUT:-/work/bench-models/results}"
REQS="${REQS:-2}"
MAX_TOKENS="${MAX_TOKENS:-64}"
PROMPT_WORDS="${PROMPT_WORDS:-48}"
PY="${PY:-python3}"
mkdir -p "$OUT"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"

if [ "${SKIP_BENCH:-0}" != 1 ]; then
  for q in $QUANTS; do
    m="$MODELS_DIR/tinyllama-shape-$q.gguf"
    echo "== llama-bench $q (-t $THREADS)"
    "$LLAMA_BIN/llama-bench" -m "$m" -p 128 -n 64 -t "$THREADS" -r 3 -o md | tee "$OUT/llama-bench-$q-$stamp.md"
  done
fi

if [ "${SKIP_SERVER:-0}" != 1 ]; then
  for q in $QUANTS; do
    m="$MODELS_DIR/tinyllama-shape-$q.gguf"
    echo "== llama-server $q (-t $THREADS -np 16 -cb)"
    # 16 slots x 512 tokens of context each (prompt ~70 + 64 generated fits easily).
    "$LLAMA_BIN/llama-server" -m "$m" -t "$THREADS" -tb "$THREADS" -np 16 -cb -c 8192 \
      --host 127.0.0.1 --port "$PORT" --alias bench --no-webui > "$OUT/llama-server-$q-$stamp.log" 2>&1 &
    srv=$!
    trap 'kill $srv 2>/dev/null || true' EXIT
    for _ in $(seq 1 300); do
      if curl -sf "http://127.0.0.1:$PORT/health" > /dev/null 2>&1; then break; fi
      sleep 1
    done
    "$PY" bench/llm/load.py --base-url "http://127.0.0.1:$PORT/v1" --model bench \
      --concurrency 1,4,16 --requests-per-client "$REQS" --max-tokens "$MAX_TOKENS" \
      --prompt-words "$PROMPT_WORDS" --label "llama-server $q -t $THREADS -np 16 -cb" \
      --json "$OUT/llama-server-$q-$stamp.json"
    kill "$srv" 2>/dev/null || true
    wait "$srv" 2>/dev/null || true
    trap - EXIT
  done
fi

#!/usr/bin/env bash
# Dynamic batching benchmark (issue 3): perf_analyzer at concurrency 1, 8, 32, 64 against an
# ONNX MLP and an XGBoost model (100 trees, depth 6, 20 features), each served twice by ONE
# ferroserve process — with and without dynamic batching — over gRPC, in one run.
# Writes bench/results/<date>-batching.md.
#   ENGINE=ort|tract (default: ort when an onnxruntime wheel is found), SECONDS_PER_POINT=3
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/ferroserve-target}"
WORK="${BENCH_WORK:-/tmp/ferroserve-bench-batching}"
VENV="${BENCH_VENV:-/tmp/ferroserve-bench-venv}"
INTERVAL_MS=$(( ${SECONDS_PER_POINT:-3} * 1000 ))
mkdir -p "$WORK" bench/results

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check numpy onnx onnxruntime \
  "$(grep -E '^xgboost' tests/fixtures/xgboost/requirements.txt)"
PA="$(bench/setup_perf_analyzer.sh | tail -1)"
cargo build --release -q -p ferroserve
BIN="$CARGO_TARGET_DIR/release/ferroserve"

ENGINE="${ENGINE:-}"
ORT_LIB="$("$VENV/bin/python" -c 'import glob,os,onnxruntime as o; l=sorted(glob.glob(os.path.join(os.path.dirname(o.__file__),"capi","libonnxruntime.so*"))); print(l[0] if l else "")')"
if [ -z "$ENGINE" ]; then ENGINE=$([ -n "$ORT_LIB" ] && echo ort || echo tract); fi
export ORT_DYLIB_PATH="$ORT_LIB"

rm -rf "$WORK/repo" && mkdir -p "$WORK/repo/mlp_plain/1" "$WORK/repo/mlp_batched/1" \
  "$WORK/repo/xgb_plain/1" "$WORK/repo/xgb_batched/1"
"$VENV/bin/python" -c "import sys, pathlib; sys.path.insert(0, 'bench/xgboost'); import bench; bench.make_model(pathlib.Path('$WORK/repo/xgb_plain/1'))"
rm -f "$WORK/repo/xgb_plain/1/rows.f64"
cp "$WORK/repo/xgb_plain/1/model.json" "$WORK/repo/xgb_batched/1/model.json"
printf 'max_batch_size: 64\n' > "$WORK/repo/xgb_plain/model.yaml"
printf 'max_batch_size: 64\ndynamic_batching:\n  max_queue_delay_microseconds: 500\n' > "$WORK/repo/xgb_batched/model.yaml"
"$VENV/bin/python" bench/batching/make_mlp.py "$WORK/repo/mlp_plain/1/model.onnx"
cp "$WORK/repo/mlp_plain/1/model.onnx" "$WORK/repo/mlp_batched/1/model.onnx"
cat > "$WORK/repo/mlp_plain/model.yaml" <<YAML
max_batch_size: 64
parameters: {engine: $ENGINE}
YAML
cat > "$WORK/repo/mlp_batched/model.yaml" <<YAML
max_batch_size: 64
dynamic_batching:
  max_queue_delay_microseconds: 500
parameters: {engine: $ENGINE}
YAML

"$BIN" serve --model_repository "$WORK/repo" --host 127.0.0.1 --http_port 18180 --grpc_port 18181 \
  --log_format json > "$WORK/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf localhost:18180/v2/health/ready >/dev/null && break; sleep 0.1; done

for model in mlp_plain mlp_batched xgb_plain xgb_batched; do
  for c in 1 8 32 64; do
    "$PA" -m "$model" -u 127.0.0.1:18181 -i grpc --concurrency-range "$c:$c" \
      --measurement-interval "$INTERVAL_MS" --stability-percentage 999 --max-trials 3 --percentile 99 -f "$WORK/$model-c$c.csv" > "$WORK/$model-c$c.txt" 2>&1 \
      || { echo "perf_analyzer failed for $model c=$c"; cat "$WORK/$model-c$c.txt"; exit 1; }
  done
done

"$VENV/bin/python" - "$WORK" "$ENGINE" <<'PY'
import csv, datetime, pathlib, subprocess, sys
work, engine = pathlib.Path(sys.argv[1]), sys.argv[2]
rows = {}
MODELS = ("mlp_plain", "mlp_batched", "xgb_plain", "xgb_batched")
for model in MODELS:
    for c in (1, 8, 32, 64):
        rows[(model, c)] = next(csv.DictReader(open(work / f"{model}-c{c}.csv")))
def f(r, k): return float(r[k])
lines = [f"# Dynamic batching, perf_analyzer over gRPC",
         "", f"{datetime.date.today()}, machine: {subprocess.getoutput('nproc')} cores shared by perf_analyzer and the server "
         "(and, when this was run, other build jobs: expect ±30%). Command: `bench/batching/run.sh`. "
         f"MLP: ONNX 512→2048→2048→10 on the {engine} engine; XGBoost: 100 trees, depth 6, 20 features, binary:logistic. "
         "Batching on = `dynamic_batching {max_queue_delay_microseconds: 500}`, `max_batch_size: 64` for both. "
         "Latencies in µs; server queue/compute are perf_analyzer's server-side averages per request.",
         "", "| model | batching | concurrency | infer/s | p50 | p99 | server queue | server compute |", "|---|---|---|---|---|---|---|---|"]
for model in MODELS:
    for c in (1, 8, 32, 64):
        r = rows[(model, c)]
        lines.append(f"| {model.split('_')[0]} | {'on' if model.endswith('batched') else 'off'} | {c} | {f(r,'Inferences/Second'):.0f} | {f(r,'p50 latency'):.0f} | "
                     f"{f(r,'p99 latency'):.0f} | {f(r,'Server Queue'):.0f} | {f(r,'Server Compute Infer') + f(r,'Server Compute Input') + f(r,'Server Compute Output'):.0f} |")
lines.append("")
for m in ("mlp", "xgb"):
    t32 = f(rows[(m + "_batched", 32)], "Inferences/Second") / f(rows[(m + "_plain", 32)], "Inferences/Second")
    p1 = f(rows[(m + "_batched", 1)], "p50 latency") / f(rows[(m + "_plain", 1)], "p50 latency")
    lines.append(f"- {m}: throughput on/off at concurrency 32: **{t32:.2f}×**" + (" (target ≥ 3×)" if m == "mlp" else "")
                 + f"; p50 on/off at concurrency 1: **{p1:.2f}** (target ≤ 1: no added latency).")
out = pathlib.Path("bench/results") / f"{datetime.date.today()}-batching.md"
out.write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY

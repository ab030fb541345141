#!/usr/bin/env bash
# Per-feature cost: perf_analyzer HTTP c=8 on examples/iris with one feature on at a time (metrics,
# 1% tracing to a local OTLP/HTTP sink, file request logger, API-key auth), then everything on at
# once (the issue's target row), against everything off (configs.sh). Three more for diagnosis,
# not run by default: "edge" (the HTTP edge on with nothing to do), "tracing0" (tracing on, nothing
# sampled) and "lognull" (the file logger writing to /dev/null: all of it but the file append). Configurations are interleaved round by round (ROUNDS, default 3) so drift on this
# shared machine hits all of them alike; the summary gives each configuration's median and its
# ratio to the median of "off".
# Needs /tmp/perf-analyzer/perf_analyzer (bench/setup_perf_analyzer.sh) and a release build.
# Usage: bench/overhead/per_feature.sh [config ...]   (default: all configurations)
set -u
cd "$(dirname "$0")/../.."
B="${FERRO_BIN:-${CARGO_TARGET_DIR:-/tmp/ferroserve-target}/release/ferroserve}"; PA=/tmp/perf-analyzer/perf_analyzer
ROUNDS="${ROUNDS:-3}"; WINDOW_MS="${WINDOW_MS:-3000}"
source bench/overhead/configs.sh
OUT=$(mktemp -d /tmp/ovh.XXXX)
overhead_setup "$OUT"
trap 'overhead_teardown; rm -rf $OUT' EXIT
base="$B serve --model_dir examples/iris --host 127.0.0.1 --http_port 18190 --no_grpc"
CONFIGS=("$@"); [ ${#CONFIGS[@]} -eq 0 ] && CONFIGS=(off metrics tracing logfile auth allon)
# CPU ticks (user + system) of process $1; inferences served so far (Triton statistics).
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
served() { curl -s ${2:+-H $2} 127.0.0.1:18190/v2/models/iris/stats | python3 -c "import json,sys; print(json.load(sys.stdin)['model_stats'][0]['inference_count'])"; }
run() {
  IFS='|' read -r envs flags extra <<<"$(overhead_cfg $1)"
  # The previous server must be gone before this one binds the port.
  for i in $(seq 50); do curl -s -o /dev/null 127.0.0.1:18190/ || break; sleep 0.1; done
  env $envs $base $flags > $OUT/server-$1.log 2>&1 & local p=$!
  for i in $(seq 300); do curl -sf 127.0.0.1:18190/v2/health/ready >/dev/null && break; sleep 0.1; done
  local t="" c0 n0 c1 n1
  c0=$(cpu $p); n0=$(served $extra)
  for try in 1 2; do  # perf_analyzer now and then fails to stabilise on this busy box: once more
    t=$($PA -m iris -u 127.0.0.1:18190 -i http --concurrency-range 8 --measurement-interval $WINDOW_MS $extra 2>&1 \
      | grep -m1 Throughput | awk '{print $2}')
    [ -n "$t" ] && break
  done
  [ -z "$t" ] && { echo "$1: no result; server log:" >&2; tail -5 $OUT/server-$1.log >&2; }
  c1=$(cpu $p); n1=$(served $extra)
  # Server CPU per inference (µs): what each feature costs, independent of how the two cores
  # were shared with perf_analyzer.
  [ -n "$t" ] && echo "$1 $(python3 -c "print(round(($c1-$c0)/$(getconf CLK_TCK)*1e6/max(1,$n1-$n0),2))")" >> $OUT/cpu
  kill $p; wait $p 2>/dev/null; rm -f $OUT/events-*.jsonl
  [ -n "$t" ] && echo "$1 $t" | tee -a $OUT/results
}
for r in $(seq $ROUNDS); do for c in "${CONFIGS[@]}"; do run $c; done; done
echo "== medians (infer/s) and ratio to off, $ROUNDS rounds"
python3 - $OUT/results $OUT/cpu <<'PY'
import sys, statistics, collections
def load(f):
    d = collections.defaultdict(list)
    for line in open(f):
        k, v = line.split(); d[k].append(float(v))
    return d
tp, cpu = load(sys.argv[1]), load(sys.argv[2])
off, off_cpu = (statistics.median(tp["off"]), statistics.median(cpu["off"])) if "off" in tp else (None, None)
print(f"{'config':10s} {'infer/s':>9s} {'vs off':>7s} {'cpu µs/inf':>10s} {'vs off':>7s}   runs")
for k, v in tp.items():
    m, c = statistics.median(v), statistics.median(cpu[k])
    rel = f"{(m / off - 1) * 100:+.1f}%" if off else ""
    crel = f"{(c / off_cpu - 1) * 100:+.1f}%" if off_cpu else ""
    print(f"{k:10s} {m:9.0f} {rel:>7s} {c:10.1f} {crel:>7s}   {' '.join(f'{x:.0f}' for x in v)} | {' '.join(f'{x:.1f}' for x in cpu[k])}")
PY

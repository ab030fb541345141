#!/usr/bin/env bash
# Every configuration's server running at once (one port each, idle while another is measured),
# measured in turn by short perf_analyzer runs (HTTP c=8, 3 windows of WINDOW_MS), ROUNDS times,
# the order rotated each round: each configuration is compared with the "off" measurement of the
# same round, seconds apart, rather than minutes (per_feature.sh restarts a server for each run
# and waits for perf_analyzer to stabilise). Drift on this shared 2-vCPU machine moved whole runs
# by ±5-10%; what it does within a round largely cancels. Prints per configuration the median
# and quartiles of the per-round throughput ratio to "off", and of the extra server CPU per
# inference (µs, from /proc ticks around each measurement).
# Needs /tmp/perf-analyzer/perf_analyzer (bench/setup_perf_analyzer.sh) and a release build.
# Usage: bench/overhead/paired.sh [config ...]   (default: off allon; "off" is always included)
set -u
cd "$(dirname "$0")/../.."
B="${FERRO_BIN:-${CARGO_TARGET_DIR:-/tmp/ferroserve-target}/release/ferroserve}"; PA=/tmp/perf-analyzer/perf_analyzer
ROUNDS="${ROUNDS:-12}"; WINDOW_MS="${WINDOW_MS:-1500}"
source bench/overhead/configs.sh
OUT=$(mktemp -d /tmp/ovp.XXXX)
overhead_setup "$OUT"
CONFIGS=(off); for c in "${@:-allon}"; do [ "$c" != off ] && CONFIGS+=("$c"); done
declare -A PORT PID EXTRA
cleanup() { for c in "${CONFIGS[@]}"; do kill "${PID[$c]:-}" 2>/dev/null; done; overhead_teardown; rm -rf "$OUT"; }
trap cleanup EXIT
port=18190
for c in "${CONFIGS[@]}"; do
  IFS='|' read -r envs flags extra <<<"$(overhead_cfg "$c")"
  PORT[$c]=$port; EXTRA[$c]=$extra
  env $envs $B serve --model_dir examples/iris --host 127.0.0.1 --http_port $port --no_grpc $flags \
    > "$OUT/server-$c.log" 2>&1 &
  PID[$c]=$!
  for i in $(seq 300); do curl -sf 127.0.0.1:$port/v2/health/ready >/dev/null && break; sleep 0.1; done
  port=$((port + 1))
done
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
served() { curl -s ${2:+-H $2} 127.0.0.1:$1/v2/models/iris/stats | python3 -c "import json,sys; print(json.load(sys.stdin)['model_stats'][0]['inference_count'])"; }
measure() {  # config round
  local c=$1 p=${PORT[$1]} x=${EXTRA[$1]} t="" c0 n0 c1 n1
  c0=$(cpu ${PID[$c]}); n0=$(served $p ${x#-H })
  t=$($PA -m iris -u 127.0.0.1:$p -i http --concurrency-range 8 -p $WINDOW_MS -s 100 -r 3 $x 2>&1 \
    | grep -m1 Throughput | awk '{print $2}')
  c1=$(cpu ${PID[$c]}); n1=$(served $p ${x#-H })
  # The logging configurations' files would grow by ~1 GB a minute: emptied (the server appends).
  : > "$OUT/events-$c.jsonl" 2>/dev/null
  [ -n "$t" ] && echo "$2 $c $t $(python3 -c "print(round(($c1-$c0)/$(getconf CLK_TCK)*1e6/max(1,$n1-$n0),2))")" \
    | tee -a "$OUT/results"
}
# Warm-up: one unrecorded run each.
for c in "${CONFIGS[@]}"; do measure "$c" 0 > /dev/null; done
: > "$OUT/results"
n=${#CONFIGS[@]}
for r in $(seq "$ROUNDS"); do
  for k in $(seq 0 $((n - 1))); do measure "${CONFIGS[$(( (k + r) % n ))]}" "$r"; done
done
echo "== $ROUNDS rounds: per-round ratio to off (median [quartiles]), extra server CPU µs/inference"
python3 - "$OUT/results" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(dict)  # round -> config -> (infer/s, cpu)
for line in open(sys.argv[1]):
    r, c, t, cpu = line.split()
    runs[r][c] = (float(t), float(cpu))
configs = list(dict.fromkeys(c for r in runs.values() for c in r))
def q(v):
    v = sorted(v); qs = statistics.quantiles(v, n=4) if len(v) > 1 else [v[0]] * 3
    return f"{statistics.median(v):+6.1f} [{qs[0]:+6.1f} {qs[2]:+6.1f}]"
off_tp = [r["off"][0] for r in runs.values() if "off" in r]
print(f"{'off':10s} {statistics.median(off_tp):9.0f} infer/s (median), "
      f"{statistics.median(r['off'][1] for r in runs.values() if 'off' in r):.1f} µs CPU/inference")
for c in configs:
    if c == "off":
        continue
    pairs = [(r[c], r["off"]) for r in runs.values() if c in r and "off" in r]
    ratio = [100 * (x[0] / o[0] - 1) for x, o in pairs]
    cpu = [x[1] - o[1] for x, o in pairs]
    print(f"{c:10s} throughput % {q(ratio)}   CPU µs {q(cpu)}   ({len(pairs)} rounds)")
PY

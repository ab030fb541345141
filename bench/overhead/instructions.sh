#!/usr/bin/env bash
# Instructions per inference, per configuration, counted by valgrind's callgrind: the server
# (examples/iris) answers N binary-tensor v2 requests like perf_analyzer's, one connection, after
# a warm-up; counters are zeroed before and dumped after them. Unlike throughput on this shared
# 2-vCPU machine (runs move ±5-10%), the count repeats to ~0.1%, so it resolves what one change
# costs or saves on the request path and the logger's writer thread (kernel time, cache misses
# and contention are not counted: confirm with bench/overhead/ab.sh). Note: under valgrind
# SHA-256 runs without the SHA-NI instructions, so "auth" counts ~3,400 instructions more than
# it costs natively.
# Needs valgrind (apt-get install valgrind) and a release build. Output: Ir/inference and the
# difference to "off"; with TOP=n, the n functions whose (self) count grew most against "off".
# Usage: bench/overhead/instructions.sh [config ...]   (default: off metrics tracing logfile auth allon)
set -u
cd "$(dirname "$0")/../.."
source bench/overhead/configs.sh
B="${FERRO_BIN:-${CARGO_TARGET_DIR:-/tmp/ferroserve-target}/release/ferroserve}"
N="${N:-3000}"; TOP="${TOP:-0}"
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
OUT=$(mktemp -d /tmp/ovi.XXXX)
overhead_setup "$OUT"
trap 'overhead_teardown; rm -rf $OUT' EXIT
# N requests as perf_analyzer sends them (binary tensor extension), on one keep-alive connection.
drive() {
  python3 - "$1" "${2:-}" <<'PY'
import http.client, random, struct, sys
n, key = int(sys.argv[1]), sys.argv[2]
head = (b'{"id":"","inputs":[{"name":"input","datatype":"FP32","shape":[1,4],'
        b'"parameters":{"binary_data_size":16}}],"outputs":[{"name":"probabilities",'
        b'"parameters":{"binary_data":true}}]}')
h = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(head))}
if key:
    h["x-api-key"] = key.split(":", 1)[1]
c = http.client.HTTPConnection("127.0.0.1", 18190, timeout=600)
for _ in range(n):
    c.request("POST", "/v2/models/iris/infer", headers=h,
              body=head + struct.pack("<4f", *(random.random() for _ in range(4))))
    r = c.getresponse(); r.read()
    if r.status != 200:
        sys.exit(f"answer {r.status}")
PY
}
count() {
  local name=$1 envs flags extra
  IFS='|' read -r envs flags extra <<<"$(overhead_cfg "$name")"
  local key=${extra#-H }
  env $envs valgrind --tool=callgrind --callgrind-out-file=$OUT/$name.cg \
    $B serve --model_dir examples/iris --host 127.0.0.1 --http_port 18190 --no_grpc $flags > $OUT/$name.log 2>&1 &
  local p=$!
  for i in $(seq 600); do curl -sf 127.0.0.1:18190/v2/health/ready >/dev/null && break; sleep 0.2; done
  drive 300 "$key"
  callgrind_control -z $p >/dev/null
  drive "$N" "$key"
  sleep 1.5  # the logger's writer writes what it holds
  callgrind_control -d $p >/dev/null
  kill $p; wait $p 2>/dev/null; rm -f $OUT/events-*.jsonl
}
CONFIGS=("$@"); [ ${#CONFIGS[@]} -eq 0 ] && CONFIGS=(off metrics tracing logfile auth allon)
for c in "${CONFIGS[@]}"; do count "$c"; done
python3 - "$OUT" "$N" "$TOP" "${CONFIGS[@]}" <<'PY'
import collections, glob, os, re, subprocess, sys
out, n, top, configs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
STACK_FRAMES = re.compile(r"start_thread|thread_start|:clone |call_once\{\{vtable|__rust_begin_short_backtrace|tokio::runtime::(task::raw::poll|task::core::Core<T,S>::poll|scheduler::multi_thread::worker::run|context::|blocking::)")
def load(name):
    # The dump made after the N requests (callgrind appends .1 to the file name).
    f = max(glob.glob(f"{out}/{name}.cg.*"), key=os.path.getmtime)
    text = subprocess.run(["callgrind_annotate", "--threshold=100", f],
                          capture_output=True, text=True).stdout
    total, by_fn = 0, collections.Counter()
    for line in text.splitlines():
        m = re.match(r"\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(.*)", line)
        if not m:
            continue
        v = int(m.group(1).replace(",", ""))
        if "PROGRAM TOTALS" in line:
            total = v
        # Frames that were running when the counters were zeroed (thread
        # starts, the runtime's loops) are listed with what ran beneath
        # them since: not their own cost.
        elif v < total / 3 and not STACK_FRAMES.search(m.group(2)):
            by_fn[re.sub(r"\s*\[.*\]$", "", m.group(2).split(":", 1)[-1])] += v
    return total / n, by_fn
data = {c: load(c) for c in configs}
off = data["off"][0] if "off" in data else None
print(f"== instructions per inference (callgrind Ir, {n} requests)")
for c, (ir, _) in data.items():
    d = f"{ir - off:+8.0f} ({100 * (ir / off - 1):+5.1f}%)" if off else ""
    print(f"{c:10s} {ir:9.0f} {d}")
if top and off:
    for c, (_, fns) in data.items():
        if c == "off":
            continue
        base = data["off"][1]
        grew = sorted(((fns[k] - base[k]) / n, k) for k in set(fns) | set(base))[::-1][:top]
        print(f"-- {c}: functions that grew most (self Ir per inference)")
        for v, k in grew:
            print(f"   {v:+7.0f} {k[:110]}")
PY

#!/usr/bin/env bash
# Interleaved A/B of two server binaries: each round runs bench/overhead/per_feature.sh once per
# binary with the given configurations, so drift on this shared machine hits both alike; then
# prints each binary's medians against its own "off". Single runs move ±3% here; changes of ~1 µs
# per inference need this (4 rounds or more).
# Usage: bench/overhead/ab.sh BIN_A BIN_B ROUNDS [config ...]   (include "off"; e.g. off logfile allon)
set -u
cd "$(dirname "$0")/../.."
A=$1; B=$2; R=$3; shift 3
OUT=$(mktemp /tmp/ab.XXXX)
for r in $(seq "$R"); do
  for bin in "$A" "$B"; do
    FERRO_BIN=$bin ROUNDS=1 bench/overhead/per_feature.sh "$@" 2>/dev/null \
      | awk -v b="$bin" '$3 ~ /%$/ {print b, $0}' | tee -a "$OUT"
  done
done
echo "== medians over $R rounds (infer/s, vs off; server CPU µs/inference, vs off)"
python3 - "$OUT" <<'PY'
import sys, collections, statistics
tp, cpu = collections.defaultdict(list), collections.defaultdict(list)
for line in open(sys.argv[1]):
    p = line.split()
    tp[(p[0], p[1])].append(float(p[2])); cpu[(p[0], p[1])].append(float(p[4]))
for b in dict.fromkeys(k[0] for k in tp):
    off_t, off_c = statistics.median(tp[(b, "off")]), statistics.median(cpu[(b, "off")])
    for (bb, cfg), v in tp.items():
        if bb != b:
            continue
        t, c = statistics.median(v), statistics.median(cpu[(b, cfg)])
        print(f"{b:40s} {cfg:8s} {t:8.0f} {100 * (t / off_t - 1):+6.1f}%  {c:5.1f} µs {c - off_c:+5.1f}")
PY
rm -f "$OUT"

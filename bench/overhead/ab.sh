#!/usr/bin/env bash
# Interleaved A/B of two server binaries: each round runs bench/overhead/per_feature.sh once per
# binary with the given configurations, so drift on this shared machine hits both alike; then
# prints each binary's medians against its own "off", and B against A paired by round (drift
# between rounds cancels out). Single runs move ±3% (±10% on a busy host) here; changes of ~1 µs
# per inference need this (4 rounds or more).
# Usage: bench/overhead/ab.sh BIN_A BIN_B ROUNDS [config ...]   (include "off"; e.g. off logfile allon)
set -u
cd "$(dirname "$0")/../.."
A=$1; B=$2; R=$3; shift 3
OUT=$(mktemp /tmp/ab.XXXX)
for r in $(seq "$R"); do
  for bin in "$A" "$B"; do
    FERRO_BIN=$bin ROUNDS=1 bench/overhead/per_feature.sh "$@" 2>/dev/null \
      | awk -v b="$bin" -v r="$r" '$3 ~ /%$/ {print b, r, $0}' | tee -a "$OUT"
  done
done
echo "== medians over $R rounds (infer/s, vs off; server CPU µs/inference, vs off)"
python3 - "$OUT" "$A" "$B" <<'PY'
import sys, collections, statistics
tp, cpu = collections.defaultdict(list), collections.defaultdict(list)
by_round = {}  # (bin, config, round) -> (infer/s, cpu)
for line in open(sys.argv[1]):
    p = line.split()  # bin round config infer/s vs-off cpu ...
    tp[(p[0], p[2])].append(float(p[3])); cpu[(p[0], p[2])].append(float(p[5]))
    by_round[(p[0], p[2], p[1])] = (float(p[3]), float(p[5]))
print(f"{'':40s} {'':8s} {'':8s} {'medians':>7s}  {'':8s} {'':5s}  per round: {'vs off':>6s} {'CPU':>5s}")
for b in dict.fromkeys(k[0] for k in tp):
    off_t, off_c = statistics.median(tp[(b, "off")]), statistics.median(cpu[(b, "off")])
    for (bb, cfg), v in tp.items():
        if bb != b:
            continue
        t, c = statistics.median(v), statistics.median(cpu[(b, cfg)])
        # Each configuration against the "off" run just before it in the same round (minutes
        # apart at most), median over rounds: less exposed to the host's drift than the ratio of
        # the medians, and to a binary whose "off" runs happened to be lucky.
        rounds = [(by_round[k], by_round[(b, "off", k[2])]) for k in by_round
                  if k[0] == b and k[1] == cfg and (b, "off", k[2]) in by_round]
        pr = statistics.median(100 * (x[0] / o[0] - 1) for x, o in rounds)
        pc = statistics.median(x[1] - o[1] for x, o in rounds)
        print(f"{b:40s} {cfg:8s} {t:8.0f} {100 * (t / off_t - 1):+6.1f}%  {c:5.1f} µs {c - off_c:+5.1f}"
              f"             {pr:+5.1f}% {pc:+5.1f}")
# Paired by round (each round runs A then B): drift between rounds cancels out.
bins = list(dict.fromkeys(k[0] for k in tp))
if len(bins) == 2:
    a, b = sys.argv[2], sys.argv[3]
    print(f"== B vs A, paired by round (median of per-round differences)")
    for cfg in dict.fromkeys(k[1] for k in tp):
        pairs = [(by_round[(a, c, r)], by_round[(b, c, r)])
                 for (bb, c, r) in by_round if bb == b and c == cfg and (a, c, r) in by_round]
        if pairs:
            d = statistics.median(100 * (y[0] / x[0] - 1) for x, y in pairs)
            dc = statistics.median(y[1] - x[1] for x, y in pairs)
            print(f"{cfg:8s} throughput {d:+6.1f}%  server CPU {dc:+5.1f} µs/inference  ({len(pairs)} rounds)")
PY
rm -f "$OUT"

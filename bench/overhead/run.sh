#!/usr/bin/env bash
# Cost of the "serverless features" (issue 7): perf_analyzer throughput on the iris example with
# metrics + OpenTelemetry tracing (1% sampled, exported to a local OTLP/HTTP sink) + request/response
# logging (HTTP CloudEvents sink) + API-key auth all on, against everything off, alternating
# off/on rounds in one run on the same machine.
#
# Env: FERRO_BIN, PA (perf_analyzer, from bench/setup_perf_analyzer.sh), ROUNDS (3), CONC (8),
#      SECONDS_PER_RUN (5000 ms windows), OUT (bench/results/overhead-<stamp>).
set -euo pipefail
cd "$(dirname "$0")/../.."
FERRO_BIN="${FERRO_BIN:-${CARGO_TARGET_DIR:-/tmp/ferroserve-target}/release/ferroserve}"
PA="${PA:-/tmp/perf-analyzer/perf_analyzer}"
ROUNDS="${ROUNDS:-3}"
CONC="${CONC:-8}"
WINDOW_MS="${WINDOW_MS:-4000}"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="${OUT:-bench/results/overhead-$stamp}"
mkdir -p "$OUT"
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# A sink that accepts anything (OTLP/HTTP export and CloudEvents) with 200.
python3 - "$work/sink.port" <<'PY' &
import sys, http.server, socketserver
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
s = S(("127.0.0.1", 0), H)
open(sys.argv[1], "w").write(str(s.server_address[1]))
s.serve_forever()
PY
for _ in $(seq 50); do [ -s "$work/sink.port" ] && break; sleep 0.1; done
SINK="http://127.0.0.1:$(cat "$work/sink.port")"
KEY=bench-key
SHA="$(printf %s "$KEY" | sha256sum | cut -d' ' -f1)"
printf 'api_keys:\n  - {name: bench, sha256: %s, models: ["*"]}\n' "$SHA" > "$work/auth.yaml"

run() { # label port extra-perf-args...
  local label=$1 port=$2; shift 2
  "$PA" -m iris -u "127.0.0.1:$port" -i http --concurrency-range "$CONC" \
    --measurement-interval "$WINDOW_MS" -f "$OUT/$label.csv" "$@" > "$OUT/$label.txt" 2>&1 || {
    cat "$OUT/$label.txt"; return 1; }
  grep -m1 "Throughput" "$OUT/$label.txt" | sed "s/^/$label: /"
}

start() { # port extra-args...
  local port=$1; shift
  "$FERRO_BIN" serve --model_dir examples/iris --host 127.0.0.1 --http_port "$port" --no_grpc \
    "$@" > "$work/server-$port.log" 2>&1 &
  for _ in $(seq 100); do curl -sf "127.0.0.1:$port/v2/health/ready" > /dev/null && return 0; sleep 0.1; done
  cat "$work/server-$port.log"; return 1
}

start 18181 --metrics false
OTEL_EXPORTER_OTLP_ENDPOINT="$SINK" OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf \
OTEL_TRACES_SAMPLER=traceidratio OTEL_TRACES_SAMPLER_ARG=0.01 \
  start 18182 --metrics true --tracing --logger_url "$SINK/events" --logger_mode all \
  --auth_config "$work/auth.yaml"
for r in $(seq "$ROUNDS"); do
  run "off-$r" 18181
  run "on-$r" 18182 -H "x-api-key: $KEY"
done
curl -s 127.0.0.1:18182/metrics -H "x-api-key: $KEY" | grep '^ferroserve_logger_events_total' > "$OUT/logger-events.txt" || true
cat "$OUT/logger-events.txt"

#!/usr/bin/env bash
# Per-feature cost: perf_analyzer HTTP c=8 on examples/iris with one feature on at a time (metrics,
# 1% tracing to a local OTLP/HTTP sink, file request logger, API-key auth), one run. Needs
# /tmp/perf-analyzer/perf_analyzer (bench/setup_perf_analyzer.sh) and a release build.
set -u
cd "$(dirname "$0")/../.."
B="${FERRO_BIN:-${CARGO_TARGET_DIR:-/tmp/ferroserve-target}/release/ferroserve}"; PA=/tmp/perf-analyzer/perf_analyzer
SHA=$(printf %s k | sha256sum | cut -d' ' -f1); printf 'api_keys:\n  - {name: b, sha256: %s, models: ["*"]}\n' $SHA > /tmp/ovh-auth.yaml
python3 -c "
import http.server, socketserver
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get('content-length', 0)))
        self.send_response(200); self.send_header('content-length','0'); self.end_headers()
    def log_message(self,*a): pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer): daemon_threads=True
S(('127.0.0.1',18199),H).serve_forever()" &
SINKPID=$!
sleep 1
t() { label=$1; shift; env "$@" > /tmp/ovh-$label.log 2>&1 & p=$!; for i in $(seq 100); do curl -sf 127.0.0.1:18190/v2/health/ready >/dev/null && break; sleep 0.1; done
  $PA -m iris -u 127.0.0.1:18190 -i http --concurrency-range 8 --measurement-interval 3000 $H 2>&1 | grep -m1 Throughput | sed "s/^/$label /"; kill $p; wait $p 2>/dev/null; }
base="$B serve --model_dir examples/iris --host 127.0.0.1 --http_port 18190 --no_grpc"
H=""; t off $base --metrics false
H=""; t metrics $base --metrics true
H=""; t tracing1pct OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:18199 OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf OTEL_TRACES_SAMPLER=traceidratio OTEL_TRACES_SAMPLER_ARG=0.01 $base --metrics false --tracing
H=""; t logfile $base --metrics false --logger_url file:///tmp/ovh-events.jsonl
H="-H x-api-key:k"; t auth $base --metrics false --auth_config /tmp/ovh-auth.yaml
H=""; t off2 $base --metrics false
kill $SINKPID

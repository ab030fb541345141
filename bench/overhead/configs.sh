# The configurations of the overhead benchmarks (sourced by per_feature.sh and instructions.sh):
# examples/iris on 127.0.0.1:18190 with one feature on at a time, everything on ("allon", the
# issue's target row), everything off; 1% tracing goes to a local OTLP/HTTP sink on :18199.
# overhead_setup DIR writes the API-key file into DIR and starts the sink; overhead_teardown
# stops it; overhead_cfg NAME prints "env|server flags|perf_analyzer extra" for NAME (a logging
# configuration logs to DIR/events-NAME.jsonl, so several servers can run at once).

# overhead_setup DIR: the API-key file (key "k") and the OTLP sink.
overhead_setup() {
  OVERHEAD_DIR=$1
  local sha; sha=$(printf %s k | sha256sum | cut -d' ' -f1)
  printf 'api_keys:\n  - {name: b, sha256: %s, models: ["*"]}\n' "$sha" > "$OVERHEAD_DIR/auth.yaml"
  python3 -c "
import http.server, socketserver
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def do_POST(self):
        self.rfile.read(int(self.headers.get('content-length', 0)))
        self.send_response(200); self.send_header('content-length','0'); self.end_headers()
    def log_message(self,*a): pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer): daemon_threads=True
S(('127.0.0.1',18199),H).serve_forever()" &
  OVERHEAD_SINK=$!
  sleep 1
}

# overhead_teardown: stops the OTLP sink.
overhead_teardown() {
  kill "${OVERHEAD_SINK:-}" 2>/dev/null
}

# overhead_cfg NAME: "env|server flags|perf_analyzer extra" of configuration NAME.
overhead_cfg() {
  local trace="OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:18199 OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf OTEL_TRACES_SAMPLER=traceidratio OTEL_TRACES_SAMPLER_ARG=0.01"
  local dir=$OVERHEAD_DIR
  case $1 in
    off)      echo "|--metrics false|";;
    metrics)  echo "|--metrics true|";;
    # The edge alone (a header size limit: a check costing nothing), for
    # what turning any feature on costs before the feature's own work.
    edge)     echo "|--metrics false --max_header_bytes 65536|";;
    tracing)  echo "$trace|--metrics false --tracing|";;
    # Tracing on, nothing sampled: what the 1% of traced requests cost is
    # the difference to "tracing".
    tracing0) echo "${trace%=0.01}=0|--metrics false --tracing|";;
    logfile)  echo "|--metrics false --logger_url file://$dir/events-$1.jsonl|";;
    # The file logger writing to /dev/null: everything but the kernel's append to a file.
    lognull)  echo "|--metrics false --logger_url file:///dev/null|";;
    auth)     echo "|--metrics false --auth_config $dir/auth.yaml|-H x-api-key:k";;
    allon)    echo "$trace|--metrics true --tracing --logger_url file://$dir/events-$1.jsonl --auth_config $dir/auth.yaml|-H x-api-key:k";;
    *)        echo "unknown configuration $1" >&2; return 1;;
  esac
}

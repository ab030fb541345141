//! Command line of the `ferroserve` binary. Flags follow KServe's runtime
//! contract (`--model_dir`, `--model_name`, `--http_port`, …); every flag
//! also accepts its kebab-case spelling and an environment variable.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// ferroserve: one small binary that serves trained models over KServe v1
/// and the Open Inference Protocol v2 (REST and gRPC).
#[derive(Debug, Parser)]
#[command(name = "ferroserve", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve models from folders.
    Serve(ServeArgs),
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// ONNX engine choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnnxEngine {
    /// ONNX Runtime when its library is found, else tract.
    Auto,
    /// ONNX Runtime (library from ORT_DYLIB_PATH or an installed onnxruntime Python package).
    Ort,
    /// tract, pure Rust.
    Tract,
}

/// Flags of `ferroserve serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A folder holding one model (repeatable). Its name defaults to the folder name.
    #[arg(
        long = "model_dir",
        visible_alias = "model-dir",
        env = "FERROSERVE_MODEL_DIR",
        value_delimiter = ','
    )]
    pub model_dir: Vec<PathBuf>,

    /// Name of the model in --model_dir (repeatable, paired with --model_dir in order).
    #[arg(
        long = "model_name",
        visible_alias = "model-name",
        env = "FERROSERVE_MODEL_NAME",
        value_delimiter = ','
    )]
    pub model_name: Vec<String>,

    /// A folder with one subfolder per model, each with optional numeric version subfolders (repeatable).
    #[arg(long = "model_repository", visible_aliases = ["model-repository", "model_store", "model-store"], env = "FERROSERVE_MODEL_REPOSITORY", value_delimiter = ',')]
    pub model_repository: Vec<PathBuf>,

    /// Force the model format instead of detecting it from the files (e.g. `onnx`).
    #[arg(
        long = "model_format",
        visible_alias = "model-format",
        env = "FERROSERVE_MODEL_FORMAT"
    )]
    pub model_format: Option<String>,

    /// Address to listen on.
    #[arg(long, env = "FERROSERVE_HOST", default_value = "0.0.0.0")]
    pub host: String,

    /// HTTP port (KServe v1 and Open Inference Protocol v2 REST). 0 picks a free port.
    #[arg(
        long = "http_port",
        visible_alias = "http-port",
        env = "FERROSERVE_HTTP_PORT",
        default_value_t = 8080
    )]
    pub http_port: u16,

    /// gRPC port (Open Inference Protocol v2 gRPC, health, reflection). 0 picks a free port.
    #[arg(
        long = "grpc_port",
        visible_alias = "grpc-port",
        env = "FERROSERVE_GRPC_PORT",
        default_value_t = 8081
    )]
    pub grpc_port: u16,

    /// Disable the gRPC server.
    #[arg(
        long = "no_grpc",
        visible_alias = "no-grpc",
        env = "FERROSERVE_NO_GRPC"
    )]
    pub no_grpc: bool,

    /// Compute threads running inferences (0: one per CPU core).
    #[arg(
        long,
        visible_alias = "threads",
        env = "FERROSERVE_WORKERS",
        default_value_t = 0
    )]
    pub workers: usize,

    /// Threads one inference may use inside the engine (0: engine default).
    #[arg(
        long = "intra_op_threads",
        visible_alias = "intra-op-threads",
        env = "FERROSERVE_INTRA_OP_THREADS",
        default_value_t = 0
    )]
    pub intra_op_threads: usize,

    /// Log format.
    #[arg(long = "log_format", visible_alias = "log-format", env = "FERROSERVE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// ONNX engine for models that do not choose one in model.yaml.
    #[arg(long = "onnx_engine", visible_alias = "onnx-engine", env = "FERROSERVE_ONNX_ENGINE", value_enum, default_value_t = OnnxEngine::Auto)]
    pub onnx_engine: OnnxEngine,

    /// Largest request body (HTTP) or message (gRPC) accepted, in bytes.
    #[arg(long = "max_request_bytes", visible_alias = "max-request-bytes", env = "FERROSERVE_MAX_REQUEST_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_request_bytes: usize,

    /// Largest batch (dimension 0) for batchable models without `max_batch_size` in model.yaml.
    #[arg(
        long = "max_batch_size",
        visible_alias = "max-batch-size",
        env = "FERROSERVE_MAX_BATCH_SIZE"
    )]
    pub max_batch_size: Option<u32>,

    /// Turn on dynamic batching for every batchable model without its own
    /// `dynamic_batching` (or KServe `batcher`) setting.
    #[arg(
        long = "dynamic_batching",
        visible_alias = "dynamic-batching",
        env = "FERROSERVE_DYNAMIC_BATCHING"
    )]
    pub dynamic_batching: bool,

    /// Default dynamic batching: longest wait for a batch to fill, in microseconds.
    #[arg(
        long = "max_queue_delay_microseconds",
        visible_alias = "max-queue-delay-microseconds",
        env = "FERROSERVE_MAX_QUEUE_DELAY_MICROSECONDS",
        default_value_t = 500
    )]
    pub max_queue_delay_microseconds: u64,

    /// Default dynamic batching: preferred batch sizes (comma-separated).
    #[arg(
        long = "preferred_batch_size",
        visible_alias = "preferred-batch-size",
        env = "FERROSERVE_PREFERRED_BATCH_SIZE",
        value_delimiter = ','
    )]
    pub preferred_batch_size: Vec<u32>,

    /// Default dynamic batching: most waiting requests per model (0: unbounded); more get 429.
    #[arg(
        long = "max_queue_size",
        visible_alias = "max-queue-size",
        env = "FERROSERVE_MAX_QUEUE_SIZE",
        default_value_t = 0
    )]
    pub max_queue_size: u32,

    /// Default dynamic batching: queue timeout in microseconds (0: none); expired requests get 504.
    #[arg(
        long = "default_timeout_microseconds",
        visible_alias = "default-timeout-microseconds",
        env = "FERROSERVE_DEFAULT_TIMEOUT_MICROSECONDS",
        default_value_t = 0
    )]
    pub default_timeout_microseconds: u64,

    /// Default parallel executions per model (Triton's instance_group count).
    #[arg(
        long = "instance_count",
        visible_alias = "instance-count",
        env = "FERROSERVE_INSTANCE_COUNT"
    )]
    pub instance_count: Option<u32>,

    /// Default most in-flight requests per model (KServe containerConcurrency); the rest queue.
    #[arg(
        long = "container_concurrency",
        visible_alias = "container-concurrency",
        env = "FERROSERVE_CONTAINER_CONCURRENCY"
    )]
    pub container_concurrency: Option<u32>,

    /// Record request metrics and serve them at /metrics (Prometheus text format).
    #[arg(long, env = "FERROSERVE_METRICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub metrics: bool,

    /// Also serve /metrics on this port (0: any free port).
    #[arg(
        long = "metrics_port",
        visible_alias = "metrics-port",
        env = "FERROSERVE_METRICS_PORT"
    )]
    pub metrics_port: Option<u16>,

    /// Turn on authentication, authorization and rate limits (HTTP and gRPC)
    /// with this YAML file; plain API keys may also come from FERROSERVE_API_KEYS.
    /// A `jwt.jwks_url` is fetched at start-up (allowed by --egress_allow) and refreshed.
    #[arg(
        long = "auth_config",
        visible_alias = "auth-config",
        env = "FERROSERVE_AUTH_CONFIG"
    )]
    pub auth_config: Option<PathBuf>,

    /// Answer CORS requests from this origin (repeatable, e.g. `https://app.example.com`).
    #[arg(
        long = "cors_allow_origin",
        visible_alias = "cors-allow-origin",
        env = "FERROSERVE_CORS_ALLOW_ORIGIN",
        value_delimiter = ','
    )]
    pub cors_allow_origin: Vec<String>,

    /// Log inference requests and responses to this sink: `http(s)://host:port/path`
    /// (CloudEvents, binary mode, as KServe's logger) or `file:///path/log.jsonl`
    /// (one CloudEvents JSON object per line).
    #[arg(
        long = "logger_url",
        visible_alias = "logger-url",
        env = "FERROSERVE_LOGGER_URL"
    )]
    pub logger_url: Option<String>,

    /// What the logger records: all, request or response (default all).
    #[arg(long = "logger_mode", visible_alias = "logger-mode", env = "FERROSERVE_LOGGER_MODE", value_parser = ["all", "request", "response"])]
    pub logger_mode: Option<String>,

    /// Logger: `ce-source` of the events (default http://localhost:<http port>/).
    #[arg(
        long = "logger_source_uri",
        visible_alias = "logger-source-uri",
        env = "FERROSERVE_LOGGER_SOURCE_URI"
    )]
    pub logger_source_uri: Option<String>,

    /// Logger: `ce-inferenceservicename` of the events.
    #[arg(
        long = "logger_inference_service",
        visible_alias = "logger-inference-service",
        env = "FERROSERVE_LOGGER_INFERENCE_SERVICE",
        default_value = ""
    )]
    pub logger_inference_service: String,

    /// Logger: `ce-namespace` of the events.
    #[arg(
        long = "logger_namespace",
        visible_alias = "logger-namespace",
        env = "FERROSERVE_LOGGER_NAMESPACE",
        default_value = ""
    )]
    pub logger_namespace: String,

    /// Logger: `ce-component` of the events (predictor, transformer, explainer).
    #[arg(
        long = "logger_component",
        visible_alias = "logger-component",
        env = "FERROSERVE_LOGGER_COMPONENT",
        default_value = "predictor"
    )]
    pub logger_component: String,

    /// Logger: `ce-endpoint` of the events (e.g. default, canary).
    #[arg(
        long = "logger_endpoint",
        visible_alias = "logger-endpoint",
        env = "FERROSERVE_LOGGER_ENDPOINT",
        default_value = ""
    )]
    pub logger_endpoint: String,

    /// Logger: most events waiting for delivery; more are dropped and counted.
    #[arg(
        long = "logger_queue_size",
        visible_alias = "logger-queue-size",
        env = "FERROSERVE_LOGGER_QUEUE_SIZE",
        default_value_t = 1024
    )]
    pub logger_queue_size: usize,

    /// Logger: most body bytes waiting for delivery (bounds memory when the
    /// sink is slow and bodies are large); more are dropped and counted.
    #[arg(
        long = "logger_queue_bytes",
        visible_alias = "logger-queue-bytes",
        env = "FERROSERVE_LOGGER_QUEUE_BYTES",
        default_value_t = 256 << 20
    )]
    pub logger_queue_bytes: usize,

    /// Logger: retries of a failed delivery (exponential backoff from 100 ms).
    #[arg(
        long = "logger_max_retries",
        visible_alias = "logger-max-retries",
        env = "FERROSERVE_LOGGER_MAX_RETRIES",
        default_value_t = 3
    )]
    pub logger_max_retries: u32,

    /// Logger: seconds one delivery attempt may take.
    #[arg(
        long = "logger_timeout",
        visible_alias = "logger-timeout",
        env = "FERROSERVE_LOGGER_TIMEOUT",
        default_value_t = 5.0
    )]
    pub logger_timeout: f64,

    /// Logger: concurrent deliveries to an HTTP sink.
    #[arg(
        long = "logger_workers",
        visible_alias = "logger-workers",
        env = "FERROSERVE_LOGGER_WORKERS",
        default_value_t = 4
    )]
    pub logger_workers: usize,

    /// Logger: CA bundle (PEM) trusted for an https:// sink (default: SSL_CERT_FILE, else the system bundle).
    #[arg(
        long = "logger_ca_cert_file",
        visible_alias = "logger-ca-cert-file",
        env = "FERROSERVE_LOGGER_CA_CERT_FILE"
    )]
    pub logger_ca_cert_file: Option<PathBuf>,

    /// Hosts the server may contact (repeatable): `host`, `host:port`,
    /// `scheme://host[:port]`, `scheme://`, `*.domain`. When given, only these
    /// (logger sink, OTLP endpoint, JWKS URL); otherwise every configured
    /// destination. Local files are always allowed.
    #[arg(
        long = "egress_allow",
        visible_alias = "egress-allow",
        env = "FERROSERVE_EGRESS_ALLOW",
        value_delimiter = ','
    )]
    pub egress_allow: Vec<String>,

    /// Largest total request header size in bytes (HTTP answers 431).
    #[arg(
        long = "max_header_bytes",
        visible_alias = "max-header-bytes",
        env = "FERROSERVE_MAX_HEADER_BYTES"
    )]
    pub max_header_bytes: Option<usize>,

    /// Most open client connections (HTTP and gRPC together); more wait to be accepted.
    #[arg(
        long = "max_connections",
        visible_alias = "max-connections",
        env = "FERROSERVE_MAX_CONNECTIONS"
    )]
    pub max_connections: Option<usize>,

    /// Seconds a request may take until its answer starts (HTTP 504, gRPC DEADLINE_EXCEEDED).
    #[arg(
        long = "request_timeout",
        visible_alias = "request-timeout",
        env = "FERROSERVE_REQUEST_TIMEOUT"
    )]
    pub request_timeout: Option<f64>,

    /// Export OpenTelemetry traces over OTLP (configured by the standard
    /// OTEL_* variables). Also on when OTEL_EXPORTER_OTLP_ENDPOINT (or
    /// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set; OTEL_TRACES_EXPORTER=none
    /// or OTEL_SDK_DISABLED=true turns it off.
    #[arg(long, env = "FERROSERVE_TRACING")]
    pub tracing: bool,

    /// Serve HTTP and gRPC over TLS with this PEM certificate chain (with
    /// --tls_key_file); SIGHUP reloads both files.
    #[arg(
        long = "tls_cert_file",
        visible_alias = "tls-cert-file",
        env = "FERROSERVE_TLS_CERT_FILE"
    )]
    pub tls_cert_file: Option<PathBuf>,

    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls_cert_file.
    #[arg(
        long = "tls_key_file",
        visible_alias = "tls-key-file",
        env = "FERROSERVE_TLS_KEY_FILE"
    )]
    pub tls_key_file: Option<PathBuf>,

    /// Mutual TLS: require client certificates signed by a CA in this PEM bundle.
    #[arg(
        long = "tls_client_ca_file",
        visible_alias = "tls-client-ca-file",
        env = "FERROSERVE_TLS_CLIENT_CA_FILE"
    )]
    pub tls_client_ca_file: Option<PathBuf>,

    /// Seconds shutdown (and model unload) waits for in-flight requests.
    #[arg(
        long = "drain_timeout",
        visible_alias = "drain-timeout",
        env = "FERROSERVE_DRAIN_TIMEOUT",
        default_value_t = 30.0
    )]
    pub drain_timeout: f64,

    /// A HuggingFace model id (`org/name`) to serve from the local HuggingFace
    /// cache (`$HF_HOME/hub`, else ~/.cache/huggingface/hub); nothing is downloaded.
    #[arg(
        long = "model_id",
        visible_alias = "model-id",
        env = "FERROSERVE_MODEL_ID"
    )]
    pub model_id: Option<String>,

    /// HuggingFace task (KServe's `--task`): text_generation, text_embedding,
    /// sequence_classification, token_classification, fill_mask (default: from the model's architecture).
    #[arg(long, env = "FERROSERVE_TASK")]
    pub task: Option<String>,

    /// Language models: compute dtype of safetensors weights (auto, float32, bfloat16, float16).
    #[arg(long, env = "FERROSERVE_DTYPE")]
    pub dtype: Option<String>,

    /// Language models: longest prompt plus completion in tokens (default: the model's).
    #[arg(
        long = "max_model_len",
        visible_alias = "max-model-len",
        env = "FERROSERVE_MAX_MODEL_LEN"
    )]
    pub max_model_len: Option<usize>,

    /// Language models: KV-cache memory budget (e.g. `4GiB`; default: a quarter of available memory, at most 4 GiB).
    #[arg(
        long = "kv_cache_memory",
        visible_alias = "kv-cache-memory",
        env = "FERROSERVE_KV_CACHE_MEMORY"
    )]
    pub kv_cache_memory: Option<String>,

    /// Language models: KV-cache budget as a fraction of available memory (0..1).
    #[arg(
        long = "kv_cache_fraction",
        visible_alias = "kv-cache-fraction",
        env = "FERROSERVE_KV_CACHE_FRACTION"
    )]
    pub kv_cache_fraction: Option<f64>,

    /// Language models: most sequences in the running batch (default 32).
    #[arg(
        long = "max_num_seqs",
        visible_alias = "max-num-seqs",
        env = "FERROSERVE_MAX_NUM_SEQS"
    )]
    pub max_num_seqs: Option<usize>,

    /// Language models: most tokens per engine step, prefill chunks included (default 512).
    #[arg(
        long = "max_num_batched_tokens",
        visible_alias = "max-num-batched-tokens",
        env = "FERROSERVE_MAX_NUM_BATCHED_TOKENS"
    )]
    pub max_num_batched_tokens: Option<usize>,

    /// Language models: most waiting requests; more get 429 (default 256).
    #[arg(
        long = "max_waiting_requests",
        visible_alias = "max-waiting-requests",
        env = "FERROSERVE_MAX_WAITING_REQUESTS"
    )]
    pub max_waiting_requests: Option<usize>,

    /// Language models: reuse the KV cache of shared prompt prefixes.
    #[arg(long = "enable_prefix_caching", visible_alias = "enable-prefix-caching", env = "FERROSERVE_ENABLE_PREFIX_CACHING", action = clap::ArgAction::Set)]
    pub enable_prefix_caching: Option<bool>,

    /// Encoder models: longest input in tokens (longer inputs are truncated; default: the model's).
    #[arg(
        long = "max_length",
        visible_alias = "max-length",
        env = "FERROSERVE_MAX_LENGTH"
    )]
    pub max_length: Option<usize>,

    /// Encoder classification models: answer with class probabilities instead of class ids.
    #[arg(
        long = "return_probabilities",
        visible_alias = "return-probabilities",
        env = "FERROSERVE_RETURN_PROBABILITIES"
    )]
    pub return_probabilities: bool,

    /// Encoder classification models: answer with raw logits instead of class ids.
    #[arg(
        long = "return_raw_logits",
        visible_alias = "return-raw-logits",
        env = "FERROSERVE_RETURN_RAW_LOGITS"
    )]
    pub return_raw_logits: bool,

    /// scikit-learn models: answer with `predict_proba` instead of `predict`
    /// where the model has it, as KServe's sklearnserver does with
    /// `PREDICT_PROBA=true` (that variable is read too). A model's own
    /// `method` / `predict_proba` parameter wins; a request parameter
    /// `"method": "predict"` switches one request back.
    #[arg(
        long = "predict_proba",
        visible_alias = "predict-proba",
        env = "FERROSERVE_PREDICT_PROBA"
    )]
    pub predict_proba: bool,
}

/// KServe's sklearnserver environment variable for the same switch as
/// `--predict_proba`; on when its value is `true` in any case, exactly as
/// KServe reads it.
pub const KSERVE_PREDICT_PROBA_ENV: &str = "PREDICT_PROBA";

/// Whether a `PREDICT_PROBA` value turns the switch on (KServe:
/// `os.environ.get("PREDICT_PROBA", "false").lower() == "true"`).
pub fn kserve_predict_proba(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.to_lowercase() == "true")
}

impl ServeArgs {
    /// Whether scikit-learn models answer with `predict_proba` by default:
    /// `--predict_proba` / `FERROSERVE_PREDICT_PROBA`, or KServe's
    /// `PREDICT_PROBA=true`.
    pub fn predict_proba_enabled(&self) -> bool {
        self.predict_proba
            || kserve_predict_proba(std::env::var(KSERVE_PREDICT_PROBA_ENV).ok().as_deref())
    }

    /// Model parameters set by the language-model flags, by parameter name.
    pub fn llm_parameters(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mut put = |k: &'static str, v: Option<String>| {
            if let Some(v) = v {
                out.push((k, v));
            }
        };
        put("task", self.task.clone());
        put("dtype", self.dtype.clone());
        put("max_model_len", self.max_model_len.map(|v| v.to_string()));
        put("kv_cache_memory", self.kv_cache_memory.clone());
        put(
            "kv_cache_fraction",
            self.kv_cache_fraction.map(|v| v.to_string()),
        );
        put("max_num_seqs", self.max_num_seqs.map(|v| v.to_string()));
        put(
            "max_num_batched_tokens",
            self.max_num_batched_tokens.map(|v| v.to_string()),
        );
        put(
            "max_waiting",
            self.max_waiting_requests.map(|v| v.to_string()),
        );
        put(
            "enable_prefix_caching",
            self.enable_prefix_caching.map(|v| v.to_string()),
        );
        put("max_length", self.max_length.map(|v| v.to_string()));
        put(
            "return_probabilities",
            self.return_probabilities.then(|| "true".to_string()),
        );
        put(
            "return_raw_logits",
            self.return_raw_logits.then(|| "true".to_string()),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kserve_predict_proba_values() {
        assert!(kserve_predict_proba(Some("true")));
        assert!(kserve_predict_proba(Some("True")));
        assert!(kserve_predict_proba(Some("TRUE")));
        assert!(!kserve_predict_proba(Some("1")));
        assert!(!kserve_predict_proba(Some("yes")));
        assert!(!kserve_predict_proba(Some("false")));
        assert!(!kserve_predict_proba(Some("")));
        assert!(!kserve_predict_proba(None));
    }

    #[test]
    fn predict_proba_flag() {
        let cli = Cli::try_parse_from(["ferroserve", "serve", "--predict_proba"]).unwrap();
        let Command::Serve(args) = cli.command;
        assert!(args.predict_proba);
        let cli = Cli::try_parse_from(["ferroserve", "serve"]).unwrap();
        let Command::Serve(args) = cli.command;
        assert!(!args.predict_proba);
    }
}

//! Request/response logger with KServe's logger semantics
//! (`--logger_url`, `--logger_mode all|request|response`).
//!
//! Every logged inference yields CloudEvents: `org.kubeflow.serving.inference.request`
//! and, for `200` answers, `org.kubeflow.serving.inference.response`, both with
//! the same `ce-id` (the request's `Ce-Id` header when it has one, else a new
//! UUID). An `http://` or `https://` sink receives each event as a POST in CloudEvents'
//! binary mode with KServe's headers (`ce-specversion`, `ce-id`, `ce-type`,
//! `ce-source`, `ce-time`, `ce-recordedtime`, `ce-inferenceservicename`,
//! `ce-namespace`, `ce-component`, `ce-endpoint`, `ce-metadata`) and the body
//! as received or sent; a `file://` sink (or a plain path) gets one
//! CloudEvents JSON object per line.
//!
//! Delivery is asynchronous: handlers only `try_send` into a bounded queue,
//! so inference latency never depends on the sink. Workers deliver with
//! retries and exponential backoff; an event that finds the queue full is
//! dropped, one whose retries run out fails, and both are counted in
//! `ferroserve_logger_events_total{outcome="dropped"|"failed"}` (and
//! warned about in the log), never lost silently.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::Full;
use tokio::sync::mpsc;

use crate::egress::{EgressError, Policy};

/// Most events a file sink writes with one system call.
const FILE_BATCH: usize = 256;

/// CloudEvents type of a logged request.
pub const CE_INFERENCE_REQUEST: &str = "org.kubeflow.serving.inference.request";
/// CloudEvents type of a logged response.
pub const CE_INFERENCE_RESPONSE: &str = "org.kubeflow.serving.inference.response";
/// Content type of a logged gRPC `ModelInferRequest` (protobuf bytes).
pub const GRPC_REQUEST_CONTENT_TYPE: &str =
    "application/x-protobuf; messageType=\"inference.ModelInferRequest\"";
/// Content type of a logged gRPC `ModelInferResponse` (protobuf bytes).
pub const GRPC_RESPONSE_CONTENT_TYPE: &str =
    "application/x-protobuf; messageType=\"inference.ModelInferResponse\"";

/// Errors configuring the logger (all reported at start-up).
#[derive(Debug, thiserror::Error)]
pub enum LoggerError {
    /// `--logger_mode` is not `all`, `request` or `response`.
    #[error("invalid --logger_mode {0:?}: expected all, request or response")]
    Mode(String),
    /// The sink URL cannot be used.
    #[error("invalid --logger_url {url:?}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The sink is not on the egress allow-list.
    #[error(transparent)]
    Egress(#[from] EgressError),
    /// The file sink cannot be opened.
    #[error("cannot open logger file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The CA bundle for an `https://` sink cannot be loaded.
    #[error("cannot load CA certificates for the logger sink from {path}: {reason}")]
    Tls {
        /// The bundle.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A CloudEvents attribute is not a valid header value.
    #[error("invalid logger attribute {name} = {value:?} (must be visible ASCII)")]
    Attribute {
        /// The attribute.
        name: &'static str,
        /// Its value.
        value: String,
    },
}

/// Which events are logged (KServe's `logger.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoggerMode {
    /// Requests and responses.
    #[default]
    All,
    /// Requests only.
    Request,
    /// Responses only.
    Response,
}

impl std::str::FromStr for LoggerMode {
    type Err = LoggerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "all" => Ok(LoggerMode::All),
            "request" => Ok(LoggerMode::Request),
            "response" => Ok(LoggerMode::Response),
            _ => Err(LoggerError::Mode(s.to_string())),
        }
    }
}

/// Logger settings (from the `--logger_*` flags).
#[derive(Debug, Clone)]
pub struct LoggerConfig {
    /// Sink: `http(s)://host:port/path` (CloudEvents, binary mode) or
    /// `file:///path/log.jsonl` / a plain path (JSON lines).
    pub url: String,
    /// Which events to log.
    pub mode: LoggerMode,
    /// `ce-source`; default `http://localhost:<http port>/` as KServe's agent.
    pub source_uri: Option<String>,
    /// `ce-inferenceservicename`.
    pub inference_service: String,
    /// `ce-namespace`.
    pub namespace: String,
    /// `ce-component` (predictor, transformer, explainer).
    pub component: String,
    /// `ce-endpoint` (e.g. default or canary).
    pub endpoint: String,
    /// Events waiting for delivery at most; more are dropped and counted.
    pub queue_size: usize,
    /// Concurrent deliveries (HTTP sinks; a file sink writes one at a time).
    pub workers: usize,
    /// Retries of a failed delivery before it counts as failed.
    pub max_retries: u32,
    /// First retry delay; doubles per retry up to 5 s.
    pub retry_backoff: Duration,
    /// Longest one delivery attempt may take.
    pub timeout: Duration,
    /// CA bundle (PEM) trusted for an `https://` sink; default: `SSL_CERT_FILE`,
    /// else the system bundle (`/etc/ssl/certs/ca-certificates.crt`).
    pub ca_cert_file: Option<PathBuf>,
}

impl LoggerConfig {
    /// Settings for `url` with the defaults.
    pub fn new(url: impl Into<String>) -> Self {
        LoggerConfig {
            url: url.into(),
            mode: LoggerMode::All,
            source_uri: None,
            inference_service: String::new(),
            namespace: String::new(),
            component: String::new(),
            endpoint: String::new(),
            queue_size: 1024,
            workers: 4,
            max_retries: 3,
            retry_backoff: Duration::from_millis(100),
            timeout: Duration::from_secs(5),
            ca_cert_file: None,
        }
    }

    /// Parses the sink and checks it against the egress policy (start-up
    /// validation; nothing is contacted).
    pub fn validate(&self, egress: &Policy) -> Result<(), LoggerError> {
        parse_sink(&self.url)?;
        egress.check_url("logger", &self.url)?;
        Ok(())
    }
}

/// Where events go.
#[derive(Debug, Clone)]
enum SinkSpec {
    Http(http::Uri),
    Https(http::Uri),
    File(PathBuf),
}

fn parse_sink(url: &str) -> Result<SinkSpec, LoggerError> {
    let bad = |reason: &str| LoggerError::Url {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    if url.trim().is_empty() {
        return Err(bad("empty"));
    }
    match url.split_once("://") {
        None => Ok(SinkSpec::File(PathBuf::from(url))),
        Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
            "file" => {
                // file:///abs/path or file://localhost/abs/path
                let path = rest.strip_prefix("localhost").unwrap_or(rest);
                if !path.starts_with('/') {
                    return Err(bad(
                        "a file URL needs an absolute path (file:///path/log.jsonl)",
                    ));
                }
                Ok(SinkSpec::File(PathBuf::from(path)))
            }
            "http" | "https" => {
                let uri: http::Uri = url.parse().map_err(|e| bad(&format!("{e}")))?;
                if uri.host().is_none() {
                    return Err(bad("no host"));
                }
                if uri.scheme_str() == Some("https") {
                    Ok(SinkSpec::Https(uri))
                } else {
                    Ok(SinkSpec::Http(uri))
                }
            }
            other => Err(bad(&format!(
                "unsupported scheme {other:?} (use http://, https:// or file://)"
            ))),
        },
    }
}

/// Request or response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// An inference request.
    Request,
    /// An inference response.
    Response,
}

impl EventKind {
    fn ce_type(self) -> &'static str {
        match self {
            EventKind::Request => CE_INFERENCE_REQUEST,
            EventKind::Response => CE_INFERENCE_RESPONSE,
        }
    }
}

/// One event waiting for delivery.
#[derive(Debug, Clone)]
struct Event {
    kind: EventKind,
    id: String,
    time: SystemTime,
    content_type: String,
    body: Bytes,
}

/// Delivery counters (exported as Prometheus metrics).
#[derive(Debug, Default)]
pub struct LoggerStats {
    /// Events delivered.
    pub sent: AtomicU64,
    /// Events dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Events whose retries ran out.
    pub failed: AtomicU64,
    /// Delivery retries.
    pub retries: AtomicU64,
}

/// The attributes every event carries.
#[derive(Debug)]
struct Attributes {
    source: HeaderValue,
    inference_service: HeaderValue,
    namespace: HeaderValue,
    component: HeaderValue,
    endpoint: HeaderValue,
}

fn header_value(name: &'static str, value: &str) -> Result<HeaderValue, LoggerError> {
    HeaderValue::from_str(value).map_err(|_| LoggerError::Attribute {
        name,
        value: value.to_string(),
    })
}

enum Sink {
    Http {
        uri: http::Uri,
        client: hyper_util::client::legacy::Client<
            hyper_util::client::legacy::connect::HttpConnector,
            Full<Bytes>,
        >,
    },
    Https {
        uri: http::Uri,
        client: hyper_util::client::legacy::Client<crate::logger_tls::HttpsConnector, Full<Bytes>>,
    },
    File(Arc<parking_lot::Mutex<std::fs::File>>),
    #[cfg(test)]
    Test(Arc<tests::TestSink>),
}

struct Shared {
    sink: Sink,
    attrs: Attributes,
    stats: Arc<LoggerStats>,
    max_retries: u32,
    retry_backoff: Duration,
    timeout: Duration,
    started: Instant,
    last_warn_ms: AtomicU64,
}

/// The running logger: handlers hand it events, workers deliver them.
pub struct Logger {
    tx: mpsc::Sender<Event>,
    capacity: usize,
    mode: LoggerMode,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Logger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logger")
            .field("mode", &self.mode)
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl Logger {
    /// Validates `config` against `egress`, opens the sink and starts the
    /// delivery workers (needs a tokio runtime). `default_source` is the
    /// `ce-source` used when the config has none.
    pub fn start(
        config: &LoggerConfig,
        egress: &Policy,
        default_source: &str,
    ) -> Result<Arc<Logger>, LoggerError> {
        config.validate(egress)?;
        let sink = match parse_sink(&config.url)? {
            SinkSpec::Http(uri) => Sink::Http {
                uri,
                client: hyper_util::client::legacy::Client::builder(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .pool_idle_timeout(Duration::from_secs(30))
                .build_http(),
            },
            SinkSpec::Https(uri) => Sink::Https {
                uri,
                client: hyper_util::client::legacy::Client::builder(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .pool_idle_timeout(Duration::from_secs(30))
                .build(crate::logger_tls::HttpsConnector::new(
                    config.ca_cert_file.as_deref(),
                )?),
            },
            SinkSpec::File(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|source| LoggerError::File { path, source })?;
                Sink::File(Arc::new(parking_lot::Mutex::new(file)))
            }
        };
        Self::with_sink(config, default_source, sink)
    }

    fn with_sink(
        config: &LoggerConfig,
        default_source: &str,
        sink: Sink,
    ) -> Result<Arc<Logger>, LoggerError> {
        let attrs = Attributes {
            source: header_value(
                "source",
                config.source_uri.as_deref().unwrap_or(default_source),
            )?,
            inference_service: header_value("inferenceservicename", &config.inference_service)?,
            namespace: header_value("namespace", &config.namespace)?,
            component: header_value("component", &config.component)?,
            endpoint: header_value("endpoint", &config.endpoint)?,
        };
        let workers = match sink {
            Sink::File(_) => 1,
            _ => config.workers.max(1),
        };
        let capacity = config.queue_size.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let shared = Arc::new(Shared {
            sink,
            attrs,
            stats: Arc::new(LoggerStats::default()),
            max_retries: config.max_retries,
            retry_backoff: config.retry_backoff,
            timeout: config.timeout,
            started: Instant::now(),
            last_warn_ms: AtomicU64::new(0),
        });
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..workers {
            let rx = Arc::clone(&rx);
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                let batches = matches!(shared.sink, Sink::File(_));
                loop {
                    // A file sink takes every event already queued (up to
                    // FILE_BATCH) and writes them with one system call.
                    let batch = {
                        let mut queue = rx.lock().await;
                        let Some(first) = queue.recv().await else {
                            break;
                        };
                        let mut batch = vec![first];
                        while batches && batch.len() < FILE_BATCH {
                            match queue.try_recv() {
                                Ok(ev) => batch.push(ev),
                                Err(_) => break,
                            }
                        }
                        batch
                    };
                    if batches {
                        shared.deliver_lines(batch).await;
                    } else {
                        for ev in batch {
                            shared.deliver(ev).await;
                        }
                    }
                }
            });
        }
        Ok(Arc::new(Logger {
            tx,
            capacity,
            mode: config.mode,
            shared,
        }))
    }

    /// Whether requests are logged.
    pub fn logs_request(&self) -> bool {
        matches!(self.mode, LoggerMode::All | LoggerMode::Request)
    }

    /// Whether responses are logged.
    pub fn logs_response(&self) -> bool {
        matches!(self.mode, LoggerMode::All | LoggerMode::Response)
    }

    /// The delivery counters.
    pub fn stats(&self) -> &LoggerStats {
        &self.shared.stats
    }

    /// Events waiting in the queue now.
    pub fn queued(&self) -> usize {
        self.capacity.saturating_sub(self.tx.capacity())
    }

    /// The event id for a request: its `Ce-Id` header when present and
    /// sensible (as KServe), else a new UUID.
    pub fn id_from_headers(&self, headers: &HeaderMap) -> String {
        headers
            .get("ce-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 256)
            .map(str::to_string)
            .unwrap_or_else(new_uuid)
    }

    /// Queues one event; never waits. A full queue drops the event and
    /// counts it.
    pub fn log(&self, kind: EventKind, id: &str, content_type: &str, body: Bytes) {
        let ev = Event {
            kind,
            id: id.to_string(),
            time: SystemTime::now(),
            content_type: content_type.to_string(),
            body,
        };
        if self.tx.try_send(ev).is_err() {
            let n = self.shared.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            self.shared.warn(|| {
                tracing::warn!(
                    dropped_total = n,
                    queue_size = self.capacity,
                    "request logger queue full: event dropped (sink slow or down)"
                )
            });
        }
    }

    /// Logs a gRPC request message (protobuf bytes) when requests are
    /// logged, and returns the event id for its response.
    pub fn grpc_request<M: prost::Message>(&self, req: &tonic::Request<M>) -> String {
        let id = req
            .metadata()
            .get("ce-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 256)
            .map(str::to_string)
            .unwrap_or_else(new_uuid);
        if self.logs_request() {
            self.log(
                EventKind::Request,
                &id,
                GRPC_REQUEST_CONTENT_TYPE,
                Bytes::from(req.get_ref().encode_to_vec()),
            );
        }
        id
    }

    /// Logs a gRPC response message (protobuf bytes) when responses are
    /// logged.
    pub fn grpc_response<M: prost::Message>(&self, id: &str, msg: &M) {
        if self.logs_response() {
            self.log(
                EventKind::Response,
                id,
                GRPC_RESPONSE_CONTENT_TYPE,
                Bytes::from(msg.encode_to_vec()),
            );
        }
    }

    /// Writes the logger's Prometheus metrics (text format) to `out`.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let s = &self.shared.stats;
        let _ = writeln!(
            out,
            "# HELP ferroserve_logger_events_total request logger events by outcome \
             (sent, dropped: queue full, failed: retries exhausted)\n\
             # TYPE ferroserve_logger_events_total counter"
        );
        for (outcome, v) in [
            ("sent", &s.sent),
            ("dropped", &s.dropped),
            ("failed", &s.failed),
        ] {
            let _ = writeln!(
                out,
                "ferroserve_logger_events_total{{outcome=\"{outcome}\"}} {}",
                v.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP ferroserve_logger_retries_total request logger delivery retries\n\
             # TYPE ferroserve_logger_retries_total counter\n\
             ferroserve_logger_retries_total {}",
            s.retries.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP ferroserve_logger_queue_size request logger events waiting for delivery\n\
             # TYPE ferroserve_logger_queue_size gauge\n\
             ferroserve_logger_queue_size {}",
            self.queued()
        );
    }

    /// At shutdown: waits up to `timeout` for the queue to empty; events
    /// still queued then are counted as dropped and warned about.
    pub async fn shutdown(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.queued() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let left = self.queued() as u64;
        if left > 0 {
            self.shared.stats.dropped.fetch_add(left, Ordering::Relaxed);
            tracing::warn!(
                dropped = left,
                "request logger: events still queued at shutdown were dropped"
            );
        }
    }
}

impl Shared {
    /// Runs `f` at most once per 5 seconds.
    fn warn(&self, f: impl FnOnce()) {
        let now = self.started.elapsed().as_millis() as u64 + 5_001;
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) > 5_000
            && self
                .last_warn_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            f();
        }
    }

    /// Writes `batch` to the file sink as JSON lines in one write, retrying
    /// like [`Self::deliver`]; counts every event.
    async fn deliver_lines(&self, batch: Vec<Event>) {
        let Sink::File(file) = &self.sink else {
            for ev in batch {
                self.deliver(ev).await;
            }
            return;
        };
        let n = batch.len() as u64;
        let mut buf = Vec::with_capacity(batch.len() * 256);
        for ev in &batch {
            if serde_json::to_writer(&mut buf, &self.json_event(ev)).is_ok() {
                buf.push(b'\n');
            }
        }
        let buf = Arc::new(buf);
        let mut attempt = 0u32;
        loop {
            let (file, lines) = (Arc::clone(file), Arc::clone(&buf));
            // A local write, kept off the async threads.
            let result = tokio::task::spawn_blocking(move || {
                use std::io::Write;
                let mut f = file.lock();
                f.write_all(&lines).and_then(|()| f.flush())
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
            match result {
                Ok(()) => {
                    self.stats.sent.fetch_add(n, Ordering::Relaxed);
                    return;
                }
                Err(e) if attempt >= self.max_retries => {
                    let total = self.stats.failed.fetch_add(n, Ordering::Relaxed) + n;
                    self.warn(|| {
                        tracing::warn!(error = %e, failed_total = total, "request logger: events not written")
                    });
                    return;
                }
                Err(_) => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(backoff(self.retry_backoff, attempt)).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn deliver(&self, ev: Event) {
        let mut attempt = 0u32;
        loop {
            let result = match tokio::time::timeout(self.timeout, self.send_once(&ev)).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {:?}", self.timeout)),
            };
            match result {
                Ok(()) => {
                    self.stats.sent.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(e) if attempt >= self.max_retries => {
                    let n = self.stats.failed.fetch_add(1, Ordering::Relaxed) + 1;
                    self.warn(|| {
                        tracing::warn!(
                            error = %e,
                            attempts = attempt + 1,
                            failed_total = n,
                            "request logger: event not delivered"
                        )
                    });
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, attempt, "request logger: delivery failed, retrying");
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(backoff(self.retry_backoff, attempt)).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn send_once(&self, ev: &Event) -> Result<(), String> {
        match &self.sink {
            Sink::Http { uri, client } => self.post(client, uri, ev).await,
            Sink::Https { uri, client } => self.post(client, uri, ev).await,
            Sink::File(file) => {
                let mut line =
                    serde_json::to_vec(&self.json_event(ev)).map_err(|e| e.to_string())?;
                line.push(b'\n');
                let file = Arc::clone(file);
                // A small local write, kept off the async threads anyway.
                tokio::task::spawn_blocking(move || {
                    use std::io::Write;
                    let mut f = file.lock();
                    f.write_all(&line).and_then(|()| f.flush())
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())
            }
            #[cfg(test)]
            Sink::Test(t) => t.accept(ev, self.ce_headers(ev)).await,
        }
    }

    async fn post<C>(
        &self,
        client: &hyper_util::client::legacy::Client<C, Full<Bytes>>,
        uri: &http::Uri,
        ev: &Event,
    ) -> Result<(), String>
    where
        C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
    {
        let mut req = http::Request::post(uri.clone())
            .body(Full::new(ev.body.clone()))
            .map_err(|e| e.to_string())?;
        for (k, v) in self.ce_headers(ev) {
            req.headers_mut().insert(k, v);
        }
        let resp = client.request(req).await.map_err(|e| {
            // The cause (refused, TLS) is in the source chain.
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(": ");
                msg.push_str(&s.to_string());
                src = s.source();
            }
            msg
        })?;
        let status = resp.status();
        // Read the answer so the connection can be reused.
        let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("sink answered {status}"))
        }
    }

    /// CloudEvents binary-mode headers of `ev` (KServe's set).
    fn ce_headers(&self, ev: &Event) -> Vec<(&'static str, HeaderValue)> {
        let a = &self.attrs;
        let text = |s: &str| HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static(""));
        vec![
            ("ce-specversion", HeaderValue::from_static("1.0")),
            ("ce-id", text(&ev.id)),
            ("ce-type", HeaderValue::from_static(ev.kind.ce_type())),
            ("ce-source", a.source.clone()),
            ("ce-time", text(&rfc3339(ev.time))),
            ("ce-recordedtime", text(&rfc3339(SystemTime::now()))),
            ("ce-inferenceservicename", a.inference_service.clone()),
            ("ce-namespace", a.namespace.clone()),
            ("ce-component", a.component.clone()),
            ("ce-endpoint", a.endpoint.clone()),
            ("ce-metadata", HeaderValue::from_static("{}")),
            (header::CONTENT_TYPE.as_str(), text(&ev.content_type)),
        ]
    }

    /// The event in CloudEvents' JSON format (one line of the file sink).
    fn json_event(&self, ev: &Event) -> serde_json::Value {
        let a = &self.attrs;
        let s = |v: &HeaderValue| v.to_str().unwrap_or("").to_string();
        let mut m = serde_json::Map::new();
        m.insert("specversion".into(), "1.0".into());
        m.insert("id".into(), ev.id.clone().into());
        m.insert("type".into(), ev.kind.ce_type().into());
        m.insert("source".into(), s(&a.source).into());
        m.insert("time".into(), rfc3339(ev.time).into());
        m.insert("recordedtime".into(), rfc3339(SystemTime::now()).into());
        m.insert(
            "inferenceservicename".into(),
            s(&a.inference_service).into(),
        );
        m.insert("namespace".into(), s(&a.namespace).into());
        m.insert("component".into(), s(&a.component).into());
        m.insert("endpoint".into(), s(&a.endpoint).into());
        m.insert("datacontenttype".into(), ev.content_type.clone().into());
        let json = ev
            .content_type
            .contains("json")
            .then(|| serde_json::from_slice::<serde_json::Value>(&ev.body).ok())
            .flatten();
        match json {
            Some(v) => m.insert("data".into(), v),
            None => m.insert("data_base64".into(), base64(&ev.body).into()),
        };
        serde_json::Value::Object(m)
    }
}

/// Delay before retry `attempt` (0-based): `base * 2^attempt`, at most 5 s.
fn backoff(base: Duration, attempt: u32) -> Duration {
    base.saturating_mul(1u32 << attempt.min(16))
        .min(Duration::from_secs(5))
}

/// A random (version 4) UUID.
fn new_uuid() -> String {
    let mut x: u128 = rand::random();
    x = (x & !(0xF_u128 << 76)) | (0x4_u128 << 76);
    x = (x & !(0x3_u128 << 62)) | (0x2_u128 << 62);
    let h = format!("{x:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// RFC 3339 UTC time with microseconds.
fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        d.subsec_micros()
    )
}

/// Standard base64 with padding.
fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The routes whose POSTs are inference calls (logged).
const LOGGED_ROUTES: &[&str] = &[
    "/v2/models/{m}/infer",
    "/v2/models/{m}/versions/{v}/infer",
    "/v1/models/{m}",
    "/openai/v1/completions",
    "/openai/v1/chat/completions",
    "/openai/v1/embeddings",
    "/v1/completions",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/invocations",
];

/// State of [`http_middleware`].
#[derive(Clone)]
pub struct HttpLogging {
    /// The logger.
    pub logger: Arc<Logger>,
    /// Largest request body accepted (the body is read here when logged).
    pub max_body_bytes: usize,
}

/// Axum middleware logging the bodies of inference POSTs (request as
/// received, response as sent; streamed `text/event-stream` answers are
/// not logged, non-200 answers neither, as KServe).
pub async fn http_middleware(State(s): State<HttpLogging>, req: Request, next: Next) -> Response {
    let logged = req.method() == Method::POST
        && req
            .extensions()
            .get::<MatchedPath>()
            .is_some_and(|p| LOGGED_ROUTES.contains(&p.as_str()));
    if !logged {
        return next.run(req).await;
    }
    let logger = &s.logger;
    let id = logger.id_from_headers(req.headers());
    let req = if logger.logs_request() {
        let (parts, body) = req.into_parts();
        let bytes = match read_limited(&parts.headers, body, s.max_body_bytes).await {
            Ok(b) => b,
            Err(e) => return crate::http::error::ApiError(e).into_response(),
        };
        let ct = content_type(&parts.headers).unwrap_or("application/json");
        logger.log(EventKind::Request, &id, ct, bytes.clone());
        Request::from_parts(parts, Body::from(bytes))
    } else {
        req
    };
    let resp = next.run(req).await;
    if !logger.logs_response() || resp.status() != StatusCode::OK {
        return resp;
    }
    let ct = content_type(resp.headers())
        .unwrap_or("application/json")
        .to_string();
    if ct.starts_with("text/event-stream") {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => {
            logger.log(EventKind::Response, &id, &ct, bytes.clone());
            Response::from_parts(parts, Body::from(bytes))
        }
        Err(e) => crate::http::error::ApiError(ferroserve_core::Error::Internal(format!(
            "failed to read the response body: {e}"
        )))
        .into_response(),
    }
}

fn content_type(h: &HeaderMap) -> Option<&str> {
    h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok())
}

async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ferroserve_core::Error> {
    let too_large = || {
        ferroserve_core::Error::PayloadTooLarge(format!(
            "request body exceeds the limit of {limit} bytes (see --max_request_bytes)"
        ))
    };
    if headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > limit as u64)
    {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = source {
            if s.is::<http_body_util::LengthLimitError>() {
                return too_large();
            }
            source = s.source();
        }
        ferroserve_core::Error::invalid(format!("failed to read request body: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    /// A sink for tests: fails the first `fail_first` attempts (or all when
    /// `always_fail`), hangs when `hang`, records what it accepts.
    #[derive(Default)]
    pub(super) struct TestSink {
        pub fail_first: AtomicU64,
        pub always_fail: bool,
        pub hang: bool,
        pub attempts: AtomicU64,
        pub got: Mutex<Vec<(String, Vec<(&'static str, HeaderValue)>)>>,
    }

    impl TestSink {
        pub async fn accept(
            &self,
            ev: &Event,
            headers: Vec<(&'static str, HeaderValue)>,
        ) -> Result<(), String> {
            self.attempts.fetch_add(1, Ordering::Relaxed);
            if self.hang {
                std::future::pending::<()>().await;
            }
            if self.always_fail {
                return Err("down".into());
            }
            if self
                .fail_first
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err("500".into());
            }
            self.got.lock().push((ev.id.clone(), headers));
            Ok(())
        }
    }

    fn config() -> LoggerConfig {
        let mut c = LoggerConfig::new("http://127.0.0.1:1/");
        c.retry_backoff = Duration::from_millis(1);
        c.inference_service = "isvc".into();
        c.namespace = "ns".into();
        c.component = "predictor".into();
        c.endpoint = "default".into();
        c
    }

    fn start(c: &LoggerConfig, t: &Arc<TestSink>) -> Arc<Logger> {
        Logger::with_sink(c, "http://localhost:8080/", Sink::Test(Arc::clone(t))).unwrap()
    }

    async fn settle(l: &Logger, n: u64) {
        let s = l.stats();
        for _ in 0..2000 {
            let done = s.sent.load(Ordering::Relaxed)
                + s.failed.load(Ordering::Relaxed)
                + s.dropped.load(Ordering::Relaxed);
            if done >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    #[tokio::test]
    async fn healthy_sink_gets_every_event_with_kserve_headers() {
        let t = Arc::new(TestSink::default());
        let l = start(&config(), &t);
        for i in 0..200 {
            let id = format!("id-{i}");
            l.log(
                EventKind::Request,
                &id,
                "application/json",
                Bytes::from_static(b"{}"),
            );
            l.log(
                EventKind::Response,
                &id,
                "application/json",
                Bytes::from_static(b"{}"),
            );
        }
        settle(&l, 400).await;
        assert_eq!(l.stats().sent.load(Ordering::Relaxed), 400);
        assert_eq!(l.stats().dropped.load(Ordering::Relaxed), 0);
        let got = t.got.lock();
        assert_eq!(got.len(), 400);
        let (_, h) = &got[0];
        let get = |k: &str| h.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
        assert_eq!(get("ce-specversion").unwrap(), "1.0");
        assert_eq!(get("ce-inferenceservicename").unwrap(), "isvc");
        assert_eq!(get("ce-namespace").unwrap(), "ns");
        assert_eq!(get("ce-component").unwrap(), "predictor");
        assert_eq!(get("ce-endpoint").unwrap(), "default");
        assert_eq!(get("ce-source").unwrap(), "http://localhost:8080/");
        assert!(get("ce-time").is_some());
        let types: Vec<_> = got
            .iter()
            .filter(|(id, _)| id == "id-7")
            .map(|(_, h)| {
                h.iter()
                    .find(|(n, _)| *n == "ce-type")
                    .map(|(_, v)| v.to_str().unwrap_or("").to_string())
            })
            .collect();
        assert_eq!(types.len(), 2);
        assert!(types.contains(&Some(CE_INFERENCE_REQUEST.into())));
        assert!(types.contains(&Some(CE_INFERENCE_RESPONSE.into())));
    }

    #[tokio::test]
    async fn failures_are_retried_then_counted() {
        let t = Arc::new(TestSink {
            fail_first: AtomicU64::new(2),
            ..Default::default()
        });
        let l = start(&config(), &t);
        l.log(EventKind::Request, "a", "application/json", Bytes::new());
        settle(&l, 1).await;
        assert_eq!(l.stats().sent.load(Ordering::Relaxed), 1);
        assert_eq!(l.stats().retries.load(Ordering::Relaxed), 2);

        let t = Arc::new(TestSink {
            always_fail: true,
            ..Default::default()
        });
        let mut c = config();
        c.max_retries = 2;
        let l = start(&c, &t);
        l.log(EventKind::Request, "a", "application/json", Bytes::new());
        settle(&l, 1).await;
        assert_eq!(l.stats().failed.load(Ordering::Relaxed), 1);
        assert_eq!(l.stats().sent.load(Ordering::Relaxed), 0);
        assert_eq!(t.attempts.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn hanging_sink_never_blocks_and_drops_are_counted() {
        let t = Arc::new(TestSink {
            hang: true,
            ..Default::default()
        });
        let mut c = config();
        c.queue_size = 4;
        c.workers = 1;
        c.timeout = Duration::from_secs(60);
        let l = start(&c, &t);
        let began = Instant::now();
        for _ in 0..100 {
            l.log(EventKind::Request, "x", "application/json", Bytes::new());
        }
        assert!(began.elapsed() < Duration::from_millis(500));
        let dropped = l.stats().dropped.load(Ordering::Relaxed);
        // 4 in the queue, at most 1 being delivered.
        assert!((95..=96).contains(&dropped), "{dropped}");
        let mut m = String::new();
        l.render_metrics(&mut m);
        assert!(m.contains(&format!(
            "ferroserve_logger_events_total{{outcome=\"dropped\"}} {dropped}"
        )));
    }

    #[tokio::test]
    async fn timeouts_count_as_failures() {
        let t = Arc::new(TestSink {
            hang: true,
            ..Default::default()
        });
        let mut c = config();
        c.timeout = Duration::from_millis(5);
        c.max_retries = 1;
        let l = start(&c, &t);
        l.log(EventKind::Request, "x", "application/json", Bytes::new());
        settle(&l, 1).await;
        assert_eq!(l.stats().failed.load(Ordering::Relaxed), 1);
        assert_eq!(t.attempts.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn helpers() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_micros(1_709_251_199_123_456)),
            "2024-02-29T23:59:59.123456Z"
        );
        let u = new_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, new_uuid());
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(
            backoff(Duration::from_millis(100), 0),
            Duration::from_millis(100)
        );
        assert_eq!(
            backoff(Duration::from_millis(100), 3),
            Duration::from_millis(800)
        );
        assert_eq!(
            backoff(Duration::from_millis(100), 30),
            Duration::from_secs(5)
        );
        assert!("ALL".parse::<LoggerMode>().is_ok());
        assert!("x".parse::<LoggerMode>().is_err());
    }

    #[test]
    fn sinks_parse_and_egress_applies() {
        assert!(matches!(
            parse_sink("file:///tmp/x.jsonl"),
            Ok(SinkSpec::File(_))
        ));
        assert!(matches!(parse_sink("/tmp/x.jsonl"), Ok(SinkSpec::File(_))));
        assert!(matches!(parse_sink("http://h:1/p"), Ok(SinkSpec::Http(_))));
        assert!(matches!(parse_sink("https://h/p"), Ok(SinkSpec::Https(_))));
        assert!(parse_sink("file://relative").is_err());
        assert!(parse_sink("ftp://h/").is_err());
        let p = Policy::from_rules(&["127.0.0.1"]).unwrap();
        assert!(LoggerConfig::new("http://127.0.0.1:9/")
            .validate(&p)
            .is_ok());
        let e = LoggerConfig::new("http://10.0.0.1:9/")
            .validate(&p)
            .unwrap_err();
        assert!(matches!(e, LoggerError::Egress(_)));
        assert!(LoggerConfig::new("file:///tmp/l.jsonl")
            .validate(&p)
            .is_ok());
    }
}

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
//! Delivery is asynchronous: handlers only put events into a bounded queue
//! (for an HTTP sink an event holding reference-counted body and id; for
//! the file sink the event with its body copied into the thread's own
//! batch; nothing is formatted on the request path), so inference latency
//! never depends on the sink. Workers deliver with
//! retries and exponential backoff; an event that finds the queue full is
//! dropped, one whose retries run out fails, and both are counted in
//! `ferroserve_logger_events_total{outcome="dropped"|"failed"}` (and
//! warned about in the log), never lost silently.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::egress::{EgressError, Policy};
use crate::telemetry::{TRACEPARENT, TRACESTATE};

mod deliver;
mod event;
mod file;
mod middleware;
mod queue;
#[cfg(test)]
mod tests;

pub use event::Correlation;
pub use middleware::{Answer, Exchange, HttpLogging, Started};

use deliver::{Remote, Shared};
use event::{Attributes, Entry, Event, EventId, TraceHeaders};
use queue::Queue;

/// Bodies up to this size are copied when queued for an HTTP sink: a
/// request body is a slice of the connection's read buffer, and an event
/// holding it for the milliseconds until delivery would make the connection
/// allocate a new buffer for every request. (The file sink copies every
/// body into its thread's batch.)
const COPY_BELOW: usize = 16 << 10;

/// The `Ce-Id` header, read for every logged request (see
/// [`RequestHeaders`]).
const CE_ID: HeaderName = HeaderName::from_static("ce-id");

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
    /// The sink is not on the egress allow-list (boxed: the error is large).
    #[error(transparent)]
    Egress(Box<EgressError>),
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

impl From<EgressError> for LoggerError {
    fn from(e: EgressError) -> Self {
        LoggerError::Egress(Box::new(e))
    }
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
    /// Body bytes waiting for delivery at most (queued and being delivered);
    /// an event that would pass it is dropped and counted.
    pub queue_bytes: usize,
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
            queue_bytes: 256 << 20,
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
    pub(crate) fn ce_type(self) -> &'static str {
        match self {
            EventKind::Request => CE_INFERENCE_REQUEST,
            EventKind::Response => CE_INFERENCE_RESPONSE,
        }
    }
}

/// Delivery counters (exported as Prometheus metrics).
#[derive(Debug, Default)]
pub struct LoggerStats {
    /// Events delivered.
    pub sent: AtomicU64,
    /// Events dropped: the queue was full, or a streamed answer was larger
    /// than the recording limit.
    pub dropped: AtomicU64,
    /// Events whose retries ran out.
    pub failed: AtomicU64,
    /// Delivery retries.
    pub retries: AtomicU64,
}

/// The running logger: handlers hand it events, a writer thread (file
/// sink) or sender tasks (HTTP sinks) deliver them.
pub struct Logger {
    queue: Queue,
    capacity: usize,
    max_bytes: u64,
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

impl Drop for Logger {
    fn drop(&mut self) {
        // The file writer drains what is queued and ends (an HTTP sink's
        // senders end when the channel's sender goes with the logger).
        if let Queue::File(q) = &self.queue {
            q.close();
        }
    }
}

/// Where [`Logger::with_sink`] delivers.
enum Sink {
    Remote(Box<Remote>),
    File(std::fs::File),
}

impl Logger {
    /// Validates `config` against `egress`, opens the sink and starts the
    /// delivery (HTTP sinks need a tokio runtime). `default_source` is the
    /// `ce-source` used when the config has none.
    pub fn start(
        config: &LoggerConfig,
        egress: &Policy,
        default_source: &str,
    ) -> Result<Arc<Logger>, LoggerError> {
        config.validate(egress)?;
        let client = || {
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .clone()
        };
        let sink = match parse_sink(&config.url)? {
            SinkSpec::Http(uri) => Sink::Remote(Box::new(Remote::Http {
                uri,
                client: client().build_http(),
            })),
            SinkSpec::Https(uri) => Sink::Remote(Box::new(Remote::Https {
                uri,
                client: client().build(crate::https_client::HttpsConnector::new(
                    config.ca_cert_file.as_deref(),
                )?),
            })),
            SinkSpec::File(path) => Sink::File(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|source| LoggerError::File { path, source })?,
            ),
        };
        Self::with_sink(config, default_source, sink)
    }

    fn with_sink(
        config: &LoggerConfig,
        default_source: &str,
        sink: Sink,
    ) -> Result<Arc<Logger>, LoggerError> {
        let capacity = config.queue_size.max(1);
        let shared = Arc::new(Shared {
            attrs: Attributes::new(config, default_source)?,
            stats: Arc::new(LoggerStats::default()),
            in_flight: AtomicU64::new(0),
            pending_bytes: AtomicU64::new(0),
            max_retries: config.max_retries,
            retry_backoff: config.retry_backoff,
            timeout: config.timeout,
            started: Instant::now(),
            last_warn_ms: AtomicU64::new(0),
        });
        let queue = match sink {
            Sink::File(file) => Queue::File(
                file::start(file, Arc::clone(&shared), capacity, config.queue_bytes).map_err(
                    |source| LoggerError::File {
                        path: PathBuf::from(&config.url),
                        source,
                    },
                )?,
            ),
            Sink::Remote(remote) => {
                let (tx, rx) = mpsc::channel(capacity);
                deliver::spawn_senders(*remote, rx, Arc::clone(&shared), config.workers);
                Queue::Channel { tx, capacity }
            }
        };
        Ok(Arc::new(Logger {
            queue,
            capacity,
            max_bytes: config.queue_bytes as u64,
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
        self.queue.len()
    }

    /// The correlation of a request's events, from its headers (HTTP, or
    /// gRPC metadata): the event id is its `Ce-Id` when
    /// present and sensible (as KServe), else a new UUID; the trace context
    /// is this server's span when tracing is on, else the caller's
    /// `traceparent`/`tracestate` passed on unchanged.
    pub fn begin(&self, headers: &HeaderMap) -> Correlation {
        self.begin_with(&RequestHeaders::of(headers))
    }

    /// [`Self::begin`] from headers already picked out.
    pub(crate) fn begin_with(&self, headers: &RequestHeaders<'_>) -> Correlation {
        let id = match headers
            .ce_id
            .map(HeaderValue::as_bytes)
            .and_then(|v| std::str::from_utf8(v).ok())
            .filter(|v| !v.is_empty() && v.len() <= 256)
        {
            Some(v) => EventId::Given(Arc::from(v)),
            None => EventId::random(),
        };
        Correlation {
            id,
            trace: trace_context(headers),
        }
    }

    /// Queues one event (happening now); never waits. A full queue
    /// (events or bytes) drops the event and counts it.
    pub fn log(&self, kind: EventKind, corr: &Correlation, content_type: HeaderValue, body: Bytes) {
        self.log_all(
            corr,
            &[Entry {
                kind,
                time: SystemTime::now(),
                content_type: &content_type,
                body: &body,
            }],
        );
    }

    /// Queues the events of one exchange (a request and its answer, say:
    /// one step for the file sink); never waits. Events that find the queue
    /// full are dropped and counted.
    pub(crate) fn log_all(&self, corr: &Correlation, entries: &[Entry<'_>]) {
        match &self.queue {
            Queue::File(q) => {
                if q.push(corr, entries).is_err() {
                    self.count_dropped(entries.len() as u64);
                }
            }
            Queue::Channel { tx, .. } => {
                for e in entries {
                    let size = e.body.len() as u64;
                    let pending = &self.shared.pending_bytes;
                    if pending.fetch_add(size, Ordering::AcqRel) + size > self.max_bytes {
                        pending.fetch_sub(size, Ordering::AcqRel);
                        self.count_dropped(1);
                        continue;
                    }
                    let ev = Event {
                        kind: e.kind,
                        corr: corr.clone(),
                        time: e.time,
                        content_type: e.content_type.clone(),
                        body: if e.body.len() < COPY_BELOW {
                            Bytes::copy_from_slice(e.body)
                        } else {
                            e.body.clone()
                        },
                    };
                    if tx.try_send(ev).is_err() {
                        pending.fetch_sub(size, Ordering::AcqRel);
                        self.count_dropped(1);
                    }
                }
            }
        }
    }

    fn count_dropped(&self, events: u64) {
        let n = self
            .shared
            .stats
            .dropped
            .fetch_add(events, Ordering::Relaxed)
            + events;
        self.shared.warn(|| {
            tracing::warn!(
                dropped_total = n,
                queue_size = self.capacity,
                queue_bytes = self.max_bytes,
                "request logger queue full: event dropped (sink slow or down)"
            )
        });
    }

    /// Counts a streamed answer too large to record (over `cap` bytes).
    pub(crate) fn count_unlogged_stream(&self, cap: usize) {
        let n = self.shared.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        self.shared.warn(|| {
            tracing::warn!(
                dropped_total = n,
                limit_bytes = cap,
                "request logger: streamed response larger than the limit was not logged"
            )
        });
    }

    /// Logs a gRPC request message (protobuf bytes) when requests are
    /// logged, and returns the correlation for its response. `metadata` is
    /// the call's (the `ce-id` and trace context come from it).
    pub fn grpc_request<M: prost::Message>(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        msg: &M,
    ) -> Correlation {
        let corr = self.begin(metadata.as_ref());
        if self.logs_request() {
            self.log(
                EventKind::Request,
                &corr,
                HeaderValue::from_static(GRPC_REQUEST_CONTENT_TYPE),
                Bytes::from(msg.encode_to_vec()),
            );
        }
        corr
    }

    /// Logs a gRPC response message (protobuf bytes) when responses are
    /// logged.
    pub fn grpc_response<M: prost::Message>(&self, corr: &Correlation, msg: &M) {
        if self.logs_response() {
            self.log(
                EventKind::Response,
                corr,
                HeaderValue::from_static(GRPC_RESPONSE_CONTENT_TYPE),
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
             (sent, dropped: queue full or stream over the limit, failed: retries exhausted)\n\
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
        let _ = writeln!(
            out,
            "# HELP ferroserve_logger_queue_bytes request logger body bytes waiting for or in delivery\n\
             # TYPE ferroserve_logger_queue_bytes gauge\n\
             ferroserve_logger_queue_bytes {}",
            match &self.queue {
                Queue::File(q) => q.bytes(),
                Queue::Channel { .. } => self.shared.pending_bytes.load(Ordering::Relaxed),
            }
        );
    }

    /// Whether every queued event has been delivered (or given up on).
    fn idle(&self) -> bool {
        self.queued() == 0 && self.shared.in_flight.load(Ordering::Acquire) == 0
    }

    /// At shutdown: waits up to `timeout` for the queue to empty and the
    /// deliveries under way to end; events still queued then are counted
    /// as dropped and warned about.
    pub async fn shutdown(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        // Twice in a row: an event is briefly neither queued nor counted
        // in flight while a worker takes it.
        let mut quiet = 0;
        while quiet < 2 && Instant::now() < deadline {
            quiet = if self.idle() { quiet + 1 } else { 0 };
            tokio::time::sleep(Duration::from_millis(5)).await;
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

/// The request headers the logger reads, picked out in one pass over the
/// headers: a lookup by name hashes the name, and a request has a handful
/// of headers (the first value of each, as `HeaderMap::get`).
#[derive(Default)]
pub(crate) struct RequestHeaders<'a> {
    pub(crate) ce_id: Option<&'a HeaderValue>,
    pub(crate) traceparent: Option<&'a HeaderValue>,
    pub(crate) tracestate: Option<&'a HeaderValue>,
    pub(crate) content_type: Option<&'a HeaderValue>,
}

impl<'a> RequestHeaders<'a> {
    /// Picks the logger's headers out of `headers`.
    pub(crate) fn of(headers: &'a HeaderMap) -> Self {
        let mut picked = RequestHeaders::default();
        for (name, value) in headers {
            let slot = if name == axum::http::header::CONTENT_TYPE {
                &mut picked.content_type
            } else if name == CE_ID {
                &mut picked.ce_id
            } else if name == TRACEPARENT {
                &mut picked.traceparent
            } else if name == TRACESTATE {
                &mut picked.tracestate
            } else {
                continue;
            };
            slot.get_or_insert(value);
        }
        picked
    }
}

/// The trace context to forward with a request's events (see
/// [`Logger::begin`]).
fn trace_context(headers: &RequestHeaders<'_>) -> Option<Arc<TraceHeaders>> {
    // Only a sampled request has a server span to name (a flag read;
    // looking the current span up costs more).
    if ferroserve_core::trace::in_traced_request() {
        let mut h = axum::http::HeaderMap::new();
        crate::telemetry::inject_current(&mut h);
        if let Some(tp) = h.get(&TRACEPARENT) {
            return Some(Arc::new(TraceHeaders {
                traceparent: tp.clone(),
                tracestate: h.get(&TRACESTATE).filter(|v| !v.is_empty()).cloned(),
            }));
        }
    }
    // Copied: the caller's value shares the connection's read buffer.
    let copy = |v: Option<&HeaderValue>| v.and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok());
    copy(headers.traceparent).map(|traceparent| {
        Arc::new(TraceHeaders {
            traceparent,
            tracestate: copy(headers.tracestate).filter(|v| !v.is_empty()),
        })
    })
}

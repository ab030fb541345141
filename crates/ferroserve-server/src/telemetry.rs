//! OpenTelemetry tracing: one server span per HTTP request or gRPC call
//! (W3C `traceparent`/`tracestate` honoured: a caller's span is its parent),
//! with children for the stages of an inference (`receive`, `decode`,
//! `queue`, `batch`, `compute`, `encode`), exported over OTLP (gRPC or
//! HTTP/protobuf) with a batch exporter configured by the standard `OTEL_*`
//! environment variables.
//!
//! Spans are `tracing` spans at INFO level under
//! [`ferroserve_core::trace::TARGET`], kept out of the logs by
//! [`exclude_from_logs`]; [`layer`] turns them into OpenTelemetry spans.
//! Whether a request is traced is decided once, before any span exists
//! ([`SamplerConfig`]), so unsampled requests build none. With tracing off
//! no layer is installed, the HTTP and gRPC tracing layers are not added,
//! and the stage spans are rejected at their callsites (cached).
//!
//! `https://` endpoints work over both protocols (rustls, ring), with the
//! standard `OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE`, `…CLIENT_CERTIFICATE`
//! and `…CLIENT_KEY` variables (see [`otlp_tls`]).

pub mod otlp_tls;

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::Request;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub use ferroserve_core::trace::TARGET;

static ENABLED: AtomicBool = AtomicBool::new(false);
static SAMPLER: OnceLock<SamplerConfig> = OnceLock::new();

/// The W3C trace context headers, by constant name (a name given as `&str`
/// is parsed on each lookup).
pub(crate) const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
/// See [`TRACEPARENT`].
pub(crate) const TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");

/// Whether tracing is on (set once by [`layer`]).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Errors setting tracing up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `OTEL_TRACES_EXPORTER` names an exporter this build does not have.
    #[error("OTEL_TRACES_EXPORTER={0:?} is not supported (use otlp or none)")]
    UnsupportedExporter(String),
    /// The OTLP exporter could not be built (bad endpoint, protocol, …).
    #[error("cannot build the OTLP span exporter: {0}")]
    Exporter(String),
    /// `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` is not understood.
    #[error("{0}")]
    Sampler(String),
    /// The OTLP TLS files (`OTEL_EXPORTER_OTLP_*CERTIFICATE`, `*CLIENT_KEY`)
    /// cannot be used.
    #[error("OTLP exporter TLS: {0}")]
    Tls(String),
}

/// The OTLP transport named by `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` /
/// `OTEL_EXPORTER_OTLP_PROTOCOL` (as opentelemetry-otlp resolves it:
/// `grpc`, else HTTP/protobuf).
fn grpc_protocol(var: &impl Fn(&str) -> Option<String>) -> bool {
    let set = |k: &str| {
        var(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .is_some_and(|p| p == "grpc")
}

/// Whether the trace endpoint is `https://`.
fn https_endpoint(var: &impl Fn(&str) -> Option<String>) -> bool {
    let set = |k: &str| {
        var(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"))
        .is_some_and(|e| {
            e.get(..8)
                .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
        })
}

/// `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT` / `OTEL_EXPORTER_OTLP_TIMEOUT` in
/// milliseconds (default 10 s).
fn export_timeout(var: &impl Fn(&str) -> Option<String>) -> Duration {
    [
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
    ]
    .iter()
    .find_map(|k| var(k).and_then(|v| v.trim().parse::<u64>().ok()))
    .map_or(Duration::from_secs(10), Duration::from_millis)
}

/// The OTLP span exporter: gRPC (tonic) or HTTP/protobuf, with TLS from
/// [`otlp_tls::OtlpTlsFiles`] for an `https://` endpoint.
fn span_exporter(
    var: impl Fn(&str) -> Option<String>,
) -> Result<opentelemetry_otlp::SpanExporter, TelemetryError> {
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
    let tls = otlp_tls::OtlpTlsFiles::from_env(&var);
    let https = https_endpoint(&var);
    if tls.any() && !https {
        tracing::warn!(
            "OTEL_EXPORTER_OTLP_*CERTIFICATE/KEY are ignored: the OTLP endpoint is not https://"
        );
    }
    let built = if grpc_protocol(&var) {
        let mut b = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_protocol(opentelemetry_otlp::Protocol::Grpc);
        if https {
            b = b.with_tls_config(tls.tonic()?);
        }
        b.build()
    } else {
        let mut b = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary);
        if https {
            b = b.with_http_client(tls.http_client(export_timeout(&var))?);
        }
        b.build()
    };
    built.map_err(|e| TelemetryError::Exporter(e.to_string()))
}

/// How a trace without a (honoured) parent is sampled.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Root {
    AlwaysOn,
    AlwaysOff,
    /// Keep this fraction (0..=1).
    Ratio(f64),
}

/// The sampler named by `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`.
/// The decision is taken once per request, before any span exists, so an
/// unsampled request costs no span at all (the SDK then samples every span
/// it is given).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerConfig {
    root: Root,
    /// Follow the caller's sampled flag when a `traceparent` is sent.
    parent_based: bool,
}

impl SamplerConfig {
    /// Reads `OTEL_TRACES_SAMPLER` (`always_on`, `always_off`,
    /// `traceidratio`, `parentbased_always_on` (the default),
    /// `parentbased_always_off`, `parentbased_traceidratio`) and
    /// `OTEL_TRACES_SAMPLER_ARG` (the ratio, default 1.0).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, TelemetryError> {
        let name = var("OTEL_TRACES_SAMPLER")
            .map(|v| v.trim().to_ascii_lowercase())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "parentbased_always_on".into());
        let ratio = || -> Result<f64, TelemetryError> {
            match var("OTEL_TRACES_SAMPLER_ARG").map(|v| v.trim().to_string()) {
                None => Ok(1.0),
                Some(v) if v.is_empty() => Ok(1.0),
                Some(v) => match v.parse::<f64>() {
                    Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
                    _ => Err(TelemetryError::Sampler(format!(
                        "OTEL_TRACES_SAMPLER_ARG={v:?} is not a ratio from 0 to 1"
                    ))),
                },
            }
        };
        let (root, parent_based) = match name.as_str() {
            "always_on" => (Root::AlwaysOn, false),
            "always_off" => (Root::AlwaysOff, false),
            "traceidratio" => (Root::Ratio(ratio()?), false),
            "parentbased_always_on" => (Root::AlwaysOn, true),
            "parentbased_always_off" => (Root::AlwaysOff, true),
            "parentbased_traceidratio" => (Root::Ratio(ratio()?), true),
            other => {
                return Err(TelemetryError::Sampler(format!(
                    "OTEL_TRACES_SAMPLER={other:?} is not supported (always_on, always_off, \
                     traceidratio, parentbased_always_on, parentbased_always_off, \
                     parentbased_traceidratio)"
                )))
            }
        };
        Ok(SamplerConfig { root, parent_based })
    }

    /// Whether a request whose caller sent `parent` (if any) is traced.
    fn sample(&self, parent: Option<&SpanContext>) -> bool {
        let parent = parent.filter(|p| p.is_valid());
        if let (true, Some(p)) = (self.parent_based, parent) {
            return p.is_sampled();
        }
        match self.root {
            Root::AlwaysOn => true,
            Root::AlwaysOff => false,
            Root::Ratio(r) => {
                // With a trace id (a caller's), decide on it as every
                // service of the trace does; else draw.
                let x = match parent {
                    Some(p) => {
                        let id = p.trace_id().to_bytes();
                        let mut low = [0u8; 8];
                        low.copy_from_slice(&id[8..]);
                        u64::from_be_bytes(low) >> 11
                    }
                    None => next_random() >> 11,
                };
                (x as f64) < r * (1u64 << 53) as f64
            }
        }
    }
}

thread_local! {
    static RNG: Cell<u64> = Cell::new({
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x9e37_79b9_7f4a_7c15);
        h.finish() | 1
    });
}

/// xorshift64*: a cheap per-thread draw for ratio sampling.
fn next_random() -> u64 {
    RNG.with(|c| {
        let mut x = c.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        c.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

/// Decides whether a request is traced, from its headers (`traceparent`,
/// `tracestate`); returns the remote parent context to adopt when it is.
fn decide(headers: &http::HeaderMap) -> Option<opentelemetry::Context> {
    let sampler = SAMPLER.get()?;
    let remote = headers
        .contains_key(TRACEPARENT)
        .then(|| TraceContextPropagator::new().extract(&HeaderExtractor(headers)));
    let parent = remote.as_ref().map(|cx| cx.span().span_context().clone());
    if !sampler.sample(parent.as_ref()) {
        return None;
    }
    Some(remote.unwrap_or_default())
}

/// Decides whether tracing is on, from the `--tracing` flag and the
/// environment (`var` reads one variable): on with the flag or when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is
/// set; off whatever else is set when `OTEL_SDK_DISABLED=true` or
/// `OTEL_TRACES_EXPORTER=none`.
pub fn wanted(flag: bool, var: impl Fn(&str) -> Option<String>) -> Result<bool, TelemetryError> {
    let set = |k: &str| {
        var(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(false);
    }
    if let Some(exporter) = set("OTEL_TRACES_EXPORTER") {
        let names: Vec<String> = exporter
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .collect();
        if names.iter().any(|n| n == "none") {
            return Ok(false);
        }
        if let Some(bad) = names.iter().find(|n| n.as_str() != "otlp") {
            return Err(TelemetryError::UnsupportedExporter(bad.clone()));
        }
    }
    Ok(flag
        || set("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
        || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some())
}

/// Flushes and stops the exporter when dropped (or on [`Self::shutdown`]).
pub struct TracingGuard {
    provider: Option<SdkTracerProvider>,
}

impl TracingGuard {
    /// Exports the spans still buffered and stops the exporter.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(p) = self.provider.take() {
            if let Err(e) = p.shutdown() {
                tracing::warn!("tracing exporter shutdown: {e}");
            }
        }
    }
}

impl Drop for TracingGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for TracingGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracingGuard").finish_non_exhaustive()
    }
}

/// Builds the OpenTelemetry layer (install it with a per-layer filter that
/// keeps only [`TARGET`], see [`filter`]) and marks tracing on. The OTLP
/// exporter, its protocol (`OTEL_EXPORTER_OTLP_PROTOCOL`: `grpc` or
/// `http/protobuf`, the default), endpoint, headers and timeout come from
/// the `OTEL_EXPORTER_OTLP_*` variables; the sampler from
/// `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` (default: parent-based
/// always-on); the batch processor from `OTEL_BSP_*`; the service name from
/// `OTEL_SERVICE_NAME` (default `ferroserve`) and `OTEL_RESOURCE_ATTRIBUTES`;
/// TLS for `https://` endpoints from `OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE`,
/// `…CLIENT_CERTIFICATE` and `…CLIENT_KEY`.
/// Call it inside a tokio runtime (the exporters need one).
pub fn layer<S>() -> Result<(impl tracing_subscriber::Layer<S>, TracingGuard), TelemetryError>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let sampler = SamplerConfig::from_env(|k| std::env::var(k).ok())?;
    let exporter = span_exporter(|k| std::env::var(k).ok())?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").map_or(true, |v| v.trim().is_empty()) {
        resource = resource.with_service_name("ferroserve");
    }
    let resource = resource
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            crate::state::SERVER_VERSION,
        ))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        // The decision was taken before the span existed (see
        // `SamplerConfig`): export whatever reaches the SDK.
        .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOn)
        .with_resource(resource)
        .build();
    let _ = SAMPLER.set(sampler);
    ferroserve_core::trace::set_enabled(true);
    let tracer = provider.tracer("ferroserve");
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    ENABLED.store(true, Ordering::Relaxed);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_level(false)
        .with_tracked_inactivity(false);
    Ok((
        layer,
        TracingGuard {
            provider: Some(provider),
        },
    ))
}

/// The per-layer filter for [`layer`]: the server spans of sampled requests
/// and the stage spans inside them (a stage span outside a traced request,
/// or in an unsampled one, is never built).
pub fn filter<S>() -> impl tracing_subscriber::layer::Filter<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::filter::DynFilterFn::new(
        |meta: &tracing::Metadata<'_>, cx: &tracing_subscriber::layer::Context<'_, S>| {
            meta.is_span()
                && meta.target() == TARGET
                && (meta.name() == SERVER_SPAN || cx.lookup_current().is_some())
        },
    )
    .with_max_level_hint(tracing::level_filters::LevelFilter::INFO)
    .with_callsite_filter(|meta| {
        if meta.is_span() && meta.target() == TARGET {
            tracing::subscriber::Interest::sometimes()
        } else {
            tracing::subscriber::Interest::never()
        }
    })
}

/// Turns the span target off in the log filter, so that request spans
/// never show up in (or cost anything for) the logs; the process-wide level
/// stays that of the logs (no `log` records from engines are built for
/// nothing).
pub fn exclude_from_logs(filter: tracing_subscriber::EnvFilter) -> tracing_subscriber::EnvFilter {
    match format!("{TARGET}=off").parse() {
        Ok(d) => filter.add_directive(d),
        Err(_) => filter,
    }
}

/// Name (in `tracing`) of the server spans; their OpenTelemetry name is set
/// through `otel.name`.
const SERVER_SPAN: &str = "request";

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(k, v);
        }
    }
}

/// Makes `span` a child of the caller's context from [`decide`] (when the
/// caller sent one).
fn adopt_remote_parent(span: &tracing::Span, remote: opentelemetry::Context) {
    if remote.has_active_span() {
        let _ = span.set_parent(remote);
    }
}

/// Writes the current span's W3C trace context (`traceparent`,
/// `tracestate`) into `headers`, for a request this server makes on behalf
/// of the one it is serving (a logger sink, a predictor). Nothing when
/// tracing is off.
pub fn inject_current(headers: &mut http::HeaderMap) {
    if !enabled() {
        return;
    }
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
}

/// The protocol an HTTP route belongs to (`ferroserve.protocol`).
fn protocol_of(route: &str) -> &'static str {
    if route.starts_with("/v2") {
        "v2"
    } else if route.starts_with("/openai/")
        || route.starts_with("/v1/completions")
        || route.starts_with("/v1/chat/")
        || route.starts_with("/v1/embeddings")
    {
        "openai"
    } else if route.starts_with("/v1/") {
        "v1"
    } else if route == "/invocations" || route == "/ping" {
        "mlflow"
    } else {
        "http"
    }
}

/// The server span of an HTTP request that matched `route` (its pattern)
/// when it is traced (see [`decide`]), else `None`: named `METHOD route`
/// (`POST /v2/models/{m}/infer`), child of the caller's `traceparent` when
/// sent, with the method, route, path and protocol (the model name and
/// version are recorded when the request resolves a model, the status by
/// [`record_http_status`]).
pub fn http_server_span(req: &Request, route: &str) -> Option<tracing::Span> {
    let remote = decide(req.headers())?;
    let method = req.method().as_str();
    let span = tracing::info_span!(
        target: "ferroserve::trace",
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        http.route = %route,
        url.path = %req.uri().path(),
        http.response.status_code = Empty,
        ferroserve.protocol = protocol_of(route),
        ferroserve.model.name = Empty,
        ferroserve.model.version = Empty,
    );
    adopt_remote_parent(&span, remote);
    Some(span)
}

/// Records an HTTP answer's status on its server span (a `5xx` marks the
/// span as an error).
pub fn record_http_status(span: &tracing::Span, status: http::StatusCode) {
    let status = status.as_u16();
    span.record("http.response.status_code", i64::from(status));
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
}

/// A tower layer for the tonic server: one server span per gRPC call, named
/// `package.Service/Method`, child of the caller's `traceparent` metadata.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcTraceLayer;

impl GrpcTraceLayer {
    /// The layer when tracing is on, else `None` (for `option_layer`).
    pub fn if_enabled() -> Option<Self> {
        enabled().then_some(GrpcTraceLayer)
    }
}

impl<S> tower::Layer<S> for GrpcTraceLayer {
    type Service = GrpcTraceService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcTraceService { inner }
    }
}

/// Service made by [`GrpcTraceLayer`].
#[derive(Debug, Clone)]
pub struct GrpcTraceService<S> {
    inner: S,
}

impl<S, B, RB> tower::Service<http::Request<B>> for GrpcTraceService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let Some(remote) = decide(req.headers()) else {
            return Box::pin(self.inner.call(req));
        };
        let path = req.uri().path().trim_start_matches('/');
        let (service, method) = path.split_once('/').unwrap_or((path, ""));
        let span = tracing::info_span!(
            target: "ferroserve::trace",
            "request",
            otel.name = %path,
            otel.kind = "server",
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = Empty,
            ferroserve.protocol = "v2-grpc",
            ferroserve.model.name = Empty,
            ferroserve.model.version = Empty,
        );
        adopt_remote_parent(&span, remote);
        let fut = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        Box::pin(ferroserve_core::trace::traced_in(
            async move {
                let r = fut.await;
                if let Ok(resp) = &r {
                    // Errors from handlers are trailers-only responses: the
                    // status is in the headers; a missing one means OK.
                    let code = resp
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u16>().ok())
                        .unwrap_or(0);
                    let span = tracing::Span::current();
                    span.record("rpc.grpc.status_code", i64::from(code));
                    // Server-side error codes per the OTel gRPC conventions.
                    if matches!(code, 2 | 4 | 12 | 13 | 14 | 15) {
                        span.record("otel.status_code", "ERROR");
                    }
                }
                r
            },
            span,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn tracing_switch() {
        assert!(!wanted(false, env(&[])).unwrap());
        assert!(wanted(true, env(&[])).unwrap());
        assert!(wanted(
            false,
            env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")])
        )
        .unwrap());
        assert!(wanted(
            false,
            env(&[(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://c:4318/v1/traces"
            )])
        )
        .unwrap());
        assert!(!wanted(true, env(&[("OTEL_TRACES_EXPORTER", "none")])).unwrap());
        assert!(!wanted(true, env(&[("OTEL_SDK_DISABLED", "TRUE")])).unwrap());
        assert!(wanted(true, env(&[("OTEL_TRACES_EXPORTER", "otlp")])).unwrap());
        assert!(wanted(true, env(&[("OTEL_TRACES_EXPORTER", "zipkin")])).is_err());
    }

    #[test]
    fn samplers() {
        use opentelemetry::trace::{SpanId, TraceFlags, TraceId, TraceState};
        let parent = |sampled: bool| {
            SpanContext::new(
                TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
                SpanId::from_hex("00f067aa0ba902b7").unwrap(),
                if sampled {
                    TraceFlags::SAMPLED
                } else {
                    TraceFlags::default()
                },
                true,
                TraceState::default(),
            )
        };
        let d = SamplerConfig::from_env(env(&[])).unwrap();
        assert!(d.sample(None) && d.sample(Some(&parent(true))));
        assert!(!d.sample(Some(&parent(false))));
        let off = SamplerConfig::from_env(env(&[("OTEL_TRACES_SAMPLER", "always_off")])).unwrap();
        assert!(!off.sample(Some(&parent(true))));
        let on = SamplerConfig::from_env(env(&[("OTEL_TRACES_SAMPLER", "always_on")])).unwrap();
        assert!(on.sample(Some(&parent(false))));
        let pct = SamplerConfig::from_env(env(&[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.01"),
        ]))
        .unwrap();
        let kept = (0..100_000).filter(|_| pct.sample(None)).count();
        assert!((500..1500).contains(&kept), "{kept}");
        assert!(pct.sample(Some(&parent(true))));
        let zero = SamplerConfig::from_env(env(&[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0"),
        ]))
        .unwrap();
        assert!(!zero.sample(Some(&parent(true))) && !zero.sample(None));
        assert!(SamplerConfig::from_env(env(&[("OTEL_TRACES_SAMPLER", "jaeger_remote")])).is_err());
        assert!(SamplerConfig::from_env(env(&[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "2")
        ]))
        .is_err());
    }

    #[test]
    fn protocols() {
        assert_eq!(protocol_of("/v2/models/{m}/infer"), "v2");
        assert_eq!(protocol_of("/v1/models/{m}"), "v1");
        assert_eq!(protocol_of("/v1/chat/completions"), "openai");
        assert_eq!(protocol_of("/openai/v1/embeddings"), "openai");
        assert_eq!(protocol_of("/invocations"), "mlflow");
    }
}

//! Prometheus metrics at `/metrics`: KServe's request histograms and
//! Triton-style per-model/version counters (read from the core statistics at
//! scrape time, so inference pays nothing extra for them), HTTP and gRPC
//! requests by route and status, model load time and state, and process
//! figures (RSS, CPU, open file descriptors).
//!
//! The text exposition format is written by hand: every value already lives
//! in our own atomics, so a metrics registry crate would only duplicate them.
//! Label values are escaped; label sets are bounded (routes come from the
//! route table, gRPC methods from a fixed list, models from the registry).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferroserve_core::stats::{LatencyCounts, LATENCY_BUCKETS_S};
use ferroserve_core::Registry;

use crate::shard::Sharded;

/// Route (or gRPC method), method, status.
type Key = (&'static str, &'static str, u16);

/// One thread's label sets and their counts.
type Series = Vec<(Key, LatencyCounts)>;

/// Request counts and latencies of one front end, by route/method/status,
/// counted per thread ([`crate::shard`]): recording locks the calling
/// thread's shard (uncontended), finds the label set among the few that
/// thread has seen and adds to plain integers; a scrape sums the shards.
#[derive(Default)]
pub struct RequestMetrics {
    shards: Sharded<Series>,
}

impl RequestMetrics {
    /// Records one request.
    pub fn record(&self, route: &'static str, method: &'static str, status: u16, took: Duration) {
        let mut series = self.shards.mine();
        let key = (route, method, status);
        match series.iter_mut().find(|(k, _)| *k == key) {
            Some((_, counts)) => counts.record(took),
            None => {
                let mut counts = LatencyCounts::default();
                counts.record(took);
                series.push((key, counts));
            }
        }
    }

    /// Every label set's counts, summed over the shards, in label order.
    fn snapshot(&self) -> BTreeMap<Key, LatencyCounts> {
        let mut all = BTreeMap::<Key, LatencyCounts>::new();
        for shard in self.shards.all() {
            for (key, counts) in shard.lock().iter() {
                all.entry(*key).or_default().merge(counts);
            }
        }
        all
    }
}

/// All front-end metrics.
#[derive(Default)]
pub struct Metrics {
    /// HTTP requests by matched route, method, status.
    pub http: RequestMetrics,
    /// gRPC requests by method and gRPC status code.
    pub grpc: RequestMetrics,
    /// The request logger, whose delivery counters are exported.
    pub logger: Option<Arc<crate::logger::Logger>>,
    /// The authenticator, whose JWKS fetches are exported.
    pub auth: Option<Arc<crate::auth::Auth>>,
}

/// The gRPC methods recorded by name; any other path counts as `other`.
const GRPC_METHODS: &[&str] = &[
    "ServerLive",
    "ServerReady",
    "ModelReady",
    "ServerMetadata",
    "ModelMetadata",
    "ModelInfer",
    "ModelStreamInfer",
    "ModelConfig",
    "ModelStatistics",
    "RepositoryIndex",
    "RepositoryModelLoad",
    "RepositoryModelUnload",
];

/// The bounded label for a gRPC request path.
pub fn grpc_method_label(path: &str) -> &'static str {
    if let Some(m) = path.strip_prefix("/inference.GRPCInferenceService/") {
        if let Some(known) = GRPC_METHODS.iter().find(|k| **k == m) {
            return known;
        }
    } else if path.starts_with("/grpc.health.v1.Health/") {
        return "health";
    } else if path.starts_with("/grpc.reflection.") {
        return "reflection";
    }
    "other"
}

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, v: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {v}");
        } else {
            let _ = writeln!(self.0, "{name}{{{labels}}} {v}");
        }
    }

    /// A histogram in seconds from a duration statistic.
    fn histogram(&mut self, name: &str, labels: &str, d: &LatencyCounts) {
        let LatencyCounts { count, ns, buckets } = *d;
        let mut cumulative = 0u64;
        let sep = if labels.is_empty() { "" } else { "," };
        for (le, n) in LATENCY_BUCKETS_S.iter().zip(buckets) {
            cumulative += n;
            self.sample(
                &format!("{name}_bucket"),
                &format!("{labels}{sep}le=\"{le}\""),
                cumulative,
            );
        }
        self.sample(
            &format!("{name}_bucket"),
            &format!("{labels}{sep}le=\"+Inf\""),
            count,
        );
        self.sample(&format!("{name}_sum"), labels, ns as f64 / 1e9);
        self.sample(&format!("{name}_count"), labels, count);
    }
}

/// Renders every metric in the Prometheus text format.
pub fn render(registry: &Registry, metrics: &Metrics, started: Instant) -> String {
    let mut o = Out(String::with_capacity(16 * 1024));
    let models = registry.loaded();
    let label = |m: &ferroserve_core::ServedModel| {
        format!(
            "model=\"{}\",version=\"{}\"",
            esc(&m.name),
            esc(&m.version_str)
        )
    };
    let kserve_label =
        |m: &ferroserve_core::ServedModel| format!("model_name=\"{}\"", esc(&m.name));

    // KServe's names.
    for (name, help, pick) in [
        (
            "request_preprocess_seconds",
            "pre-processing latency (decode and validate inputs)",
            0,
        ),
        (
            "request_predict_seconds",
            "prediction latency (model execution)",
            1,
        ),
        (
            "request_postprocess_seconds",
            "post-processing latency (output selection)",
            2,
        ),
    ] {
        o.head(name, "histogram", help);
        for m in &models {
            let d = match pick {
                0 => &m.stats.compute_input,
                1 => &m.stats.compute_infer,
                _ => &m.stats.compute_output,
            };
            o.histogram(name, &kserve_label(m), &d.counts());
        }
    }
    o.head(
        "request_explain_seconds",
        "histogram",
        "explanation latency (no explainers are served)",
    );

    // Triton-style per model/version.
    let counters: [(&str, &str); 4] = [
        (
            "nv_inference_request_success",
            "successful inference requests",
        ),
        ("nv_inference_request_failure", "failed inference requests"),
        ("nv_inference_count", "inferences performed (batch rows)"),
        ("nv_inference_exec_count", "model executions (batches)"),
    ];
    for (i, (name, help)) in counters.iter().enumerate() {
        o.head(name, "counter", help);
        for m in &models {
            let s = m.stats.snapshot();
            let v = [s.success.0, s.fail.0, s.inference_count, s.execution_count][i];
            o.sample(name, &label(m), v);
        }
    }
    for (name, help, pick) in [
        (
            "ferroserve_request_duration_seconds",
            "successful request time inside the server",
            0,
        ),
        (
            "ferroserve_queue_duration_seconds",
            "time requests wait in the queue",
            1,
        ),
        (
            "ferroserve_compute_infer_duration_seconds",
            "model execution time per execution",
            2,
        ),
    ] {
        o.head(name, "histogram", help);
        for m in &models {
            let d = match pick {
                0 => &m.stats.success,
                1 => &m.stats.queue,
                _ => &m.stats.compute_infer,
            };
            o.histogram(name, &label(m), &d.counts());
        }
    }
    o.head(
        "ferroserve_batch_size",
        "histogram",
        "rows per model execution",
    );
    for m in &models {
        let s = m.stats.snapshot();
        let bounds = [1u64, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];
        let (mut total, mut sum) = (0u64, 0u64);
        for &le in &bounds {
            let n: u64 = s
                .batches
                .iter()
                .filter(|(size, _)| *size <= le)
                .map(|(_, b)| b.count)
                .sum();
            o.sample(
                "ferroserve_batch_size_bucket",
                &format!("{},le=\"{le}\"", label(m)),
                n,
            );
        }
        for (size, b) in &s.batches {
            total += b.count;
            sum += size * b.count;
        }
        o.sample(
            "ferroserve_batch_size_bucket",
            &format!("{},le=\"+Inf\"", label(m)),
            total,
        );
        o.sample("ferroserve_batch_size_sum", &label(m), sum);
        o.sample("ferroserve_batch_size_count", &label(m), total);
    }
    o.head(
        "ferroserve_queue_size",
        "gauge",
        "requests waiting in the model's queue now",
    );
    for m in &models {
        o.sample(
            "ferroserve_queue_size",
            &label(m),
            m.scheduler.as_ref().map_or(0, |s| s.queued()),
        );
    }
    o.head(
        "ferroserve_model_load_seconds",
        "gauge",
        "time the runtime took to load the model version",
    );
    for m in &models {
        o.sample(
            "ferroserve_model_load_seconds",
            &label(m),
            m.load_duration.as_secs_f64(),
        );
    }
    o.head(
        "ferroserve_model_state",
        "gauge",
        "1 for the model's current state",
    );
    for e in registry.index(false) {
        let _ = writeln!(
            o.0,
            "ferroserve_model_state{{model=\"{}\",version=\"{}\",state=\"{}\"}} 1",
            esc(&e.name),
            esc(e.version.as_deref().unwrap_or("")),
            e.state.as_str()
        );
    }
    o.head("ferroserve_ready", "gauge", "1 when the server is ready");
    o.sample("ferroserve_ready", "", u8::from(registry.is_ready()));

    // Front ends.
    o.head(
        "ferroserve_http_request_duration_seconds",
        "histogram",
        "HTTP requests by route, method and status",
    );
    for ((route, method, status), h) in metrics.http.snapshot() {
        let l = format!(
            "route=\"{}\",method=\"{method}\",status=\"{status}\"",
            esc(route)
        );
        o.histogram("ferroserve_http_request_duration_seconds", &l, &h);
    }
    o.head(
        "ferroserve_grpc_request_duration_seconds",
        "histogram",
        "gRPC requests by method and gRPC status code",
    );
    for ((method, _, status), h) in metrics.grpc.snapshot() {
        let l = format!("method=\"{}\",grpc_status=\"{status}\"", esc(method));
        o.histogram("ferroserve_grpc_request_duration_seconds", &l, &h);
    }

    // Language models (vLLM's metric names, so its dashboards work).
    llm_metrics(&mut o, &models);

    if let Some(l) = &metrics.logger {
        l.render_metrics(&mut o.0);
    }
    if let Some(a) = &metrics.auth {
        a.render_metrics(&mut o.0);
    }

    // Process.
    process_metrics(&mut o, started);
    o.0
}

/// Engine metrics of every loaded text generator, under vLLM's names.
fn llm_metrics(o: &mut Out, models: &[Arc<ferroserve_core::ServedModel>]) {
    let snapshots: Vec<(String, ferroserve_core::generate::GeneratorMetrics)> = models
        .iter()
        .filter_map(|m| {
            let g = m.model.as_generator()?.metrics()?;
            Some((format!("model_name=\"{}\"", esc(&m.name)), g))
        })
        .collect();
    if snapshots.is_empty() {
        return;
    }
    type Pick = fn(&ferroserve_core::generate::GeneratorMetrics) -> f64;
    let scalars: [(&str, &str, &str, Pick); 8] = [
        (
            "vllm:num_requests_running",
            "gauge",
            "sequences in the running batch",
            |g| g.running as f64,
        ),
        (
            "vllm:num_requests_waiting",
            "gauge",
            "requests waiting to be scheduled",
            |g| g.waiting as f64,
        ),
        (
            "vllm:kv_cache_usage_perc",
            "gauge",
            "fraction of the KV-cache budget in use (1 = full)",
            |g| g.kv_cache_usage,
        ),
        (
            "vllm:prompt_tokens_total",
            "counter",
            "prompt tokens processed",
            |g| g.prompt_tokens_total as f64,
        ),
        (
            "vllm:generation_tokens_total",
            "counter",
            "tokens generated",
            |g| g.generation_tokens_total as f64,
        ),
        (
            "vllm:num_preemptions_total",
            "counter",
            "sequences preempted (KV cache full) and recomputed later",
            |g| g.preemptions_total as f64,
        ),
        (
            "vllm:prefix_cache_queries_total",
            "counter",
            "prompt tokens looked up in the prefix cache",
            |g| g.prefix_cache_queries_total as f64,
        ),
        (
            "vllm:prefix_cache_hits_total",
            "counter",
            "prompt tokens found in the prefix cache",
            |g| g.prefix_cache_hits_total as f64,
        ),
    ];
    for (name, kind, help, pick) in scalars {
        o.head(name, kind, help);
        for (l, g) in &snapshots {
            o.sample(name, l, pick(g));
        }
    }
    o.head(
        "vllm:request_success_total",
        "counter",
        "finished requests by reason (stop, length, abort)",
    );
    for (l, g) in &snapshots {
        for (reason, n) in &g.finished_total {
            o.sample(
                "vllm:request_success_total",
                &format!("{l},finished_reason=\"{reason}\""),
                n,
            );
        }
    }
    type Hist = fn(
        &ferroserve_core::generate::GeneratorMetrics,
    ) -> &ferroserve_core::generate::LatencyHistogram;
    let hists: [(&str, &str, Hist); 3] = [
        (
            "vllm:time_to_first_token_seconds",
            "time from arrival to the first generated token",
            |g| &g.time_to_first_token,
        ),
        (
            "vllm:inter_token_latency_seconds",
            "time between consecutive generated tokens",
            |g| &g.inter_token_latency,
        ),
        (
            "vllm:e2e_request_latency_seconds",
            "time from arrival to the end of the request",
            |g| &g.e2e_latency,
        ),
    ];
    for (name, help, pick) in hists {
        o.head(name, "histogram", help);
        for (l, g) in &snapshots {
            let h = pick(g);
            let mut cumulative = 0u64;
            for (le, n) in h.bounds.iter().zip(&h.counts) {
                cumulative += n;
                o.sample(
                    &format!("{name}_bucket"),
                    &format!("{l},le=\"{le}\""),
                    cumulative,
                );
            }
            o.sample(
                &format!("{name}_bucket"),
                &format!("{l},le=\"+Inf\""),
                h.count(),
            );
            o.sample(&format!("{name}_sum"), l, h.sum);
            o.sample(&format!("{name}_count"), l, h.count());
        }
    }
}

fn process_metrics(o: &mut Out, started: Instant) {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        for line in status.lines() {
            if let Some(kb) = line.strip_prefix("VmRSS:") {
                if let Some(v) = kb
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                {
                    o.head(
                        "process_resident_memory_bytes",
                        "gauge",
                        "resident set size",
                    );
                    o.sample("process_resident_memory_bytes", "", v * 1024);
                }
            }
        }
    }
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the parenthesised command name; utime and stime are 14 and 15.
        if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            let hz = clock_ticks_per_second();
            o.head(
                "process_cpu_seconds_total",
                "counter",
                "user and system CPU time",
            );
            o.sample(
                "process_cpu_seconds_total",
                "",
                (ticks(11) + ticks(12)) / hz,
            );
        }
    }
    if let Ok(rd) = std::fs::read_dir("/proc/self/fd") {
        o.head("process_open_fds", "gauge", "open file descriptors");
        o.sample("process_open_fds", "", rd.count());
    }
    o.head("process_uptime_seconds", "gauge", "seconds since start");
    o.sample(
        "process_uptime_seconds",
        "",
        started.elapsed().as_secs_f64(),
    );
}

fn clock_ticks_per_second() -> f64 {
    // Linux reports CPU times in USER_HZ, which is 100 on every mainstream
    // architecture; reading it would need libc's sysconf for no gain.
    100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded_and_escaped() {
        assert_eq!(
            grpc_method_label("/inference.GRPCInferenceService/ModelInfer"),
            "ModelInfer"
        );
        assert_eq!(
            grpc_method_label("/inference.GRPCInferenceService/Whatever123"),
            "other"
        );
        assert_eq!(grpc_method_label("/x.Y/Z"), "other");
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn request_metrics_of_every_thread_are_summed() {
        let m = Arc::new(RequestMetrics::default());
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let m = Arc::clone(&m);
                std::thread::spawn(move || {
                    for _ in 0..10 {
                        m.record("/a", "POST", 200, Duration::from_micros(20));
                    }
                    m.record("/b", "GET", 404, Duration::from_millis(3));
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let snap = m.snapshot();
        let keys: Vec<_> = snap.keys().copied().collect();
        assert_eq!(keys, [("/a", "POST", 200), ("/b", "GET", 404)]);
        let a = snap[&("/a", "POST", 200)];
        assert_eq!((a.count, a.buckets[0]), (30, 30));
        assert_eq!(a.ns, 30 * 20_000);
        assert_eq!(snap[&("/b", "GET", 404)].count, 3);
    }

    #[test]
    fn histogram_is_cumulative() {
        let d = ferroserve_core::stats::Duration64::default();
        d.record(Duration::from_micros(20));
        d.record(Duration::from_millis(3));
        d.record(Duration::from_secs(20));
        let mut o = Out(String::new());
        o.histogram("h", "m=\"x\"", &d.counts());
        assert!(o.0.contains("h_bucket{m=\"x\",le=\"0.00005\"} 1\n"));
        assert!(o.0.contains("h_bucket{m=\"x\",le=\"0.005\"} 2\n"));
        assert!(o.0.contains("h_bucket{m=\"x\",le=\"10\"} 2\n"));
        assert!(o.0.contains("h_bucket{m=\"x\",le=\"+Inf\"} 3\n"));
        assert!(o.0.contains("h_count{m=\"x\"} 3\n"));
    }
}

/// Tower layer recording gRPC requests (method label from a fixed list,
/// status from the `grpc-status` header of trailers-only answers, else OK).
#[derive(Clone)]
pub struct GrpcMetricsLayer(pub Arc<Metrics>);

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService {
            inner,
            metrics: Arc::clone(&self.0),
        }
    }
}

/// Service made by [`GrpcMetricsLayer`].
#[derive(Clone)]
pub struct GrpcMetricsService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B, RB> tower::Service<http::Request<B>> for GrpcMetricsService<S>
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
        let method = grpc_method_label(req.uri().path());
        let start = Instant::now();
        let fut = self.inner.call(req);
        let metrics = Arc::clone(&self.metrics);
        Box::pin(async move {
            let r = fut.await;
            if let Ok(resp) = &r {
                let code = resp
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u16>().ok())
                    .unwrap_or(0);
                metrics.grpc.record(method, "", code, start.elapsed());
            }
            r
        })
    }
}

/// The `method` label of an HTTP request.
pub(crate) fn method_label(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

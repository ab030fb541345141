//! The engine's counters and latency histograms (vLLM's metric set).

use ferroserve_core::generate::{GeneratorMetrics, LatencyHistogram};

/// Bucket bounds (seconds) of the time-to-first-token histogram (vLLM's).
const TTFT_BOUNDS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0,
];
/// Bucket bounds of the inter-token latency histogram (vLLM's).
const ITL_BOUNDS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];
/// Bucket bounds of the end-to-end latency histogram (vLLM's).
const E2E_BOUNDS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];

/// Mutable metrics state, updated by the engine thread.
pub struct EngineMetrics {
    pub running: usize,
    pub waiting: usize,
    pub kv_usage: f64,
    pub prompt_tokens: u64,
    pub generation_tokens: u64,
    pub preemptions: u64,
    pub prefix_queries: u64,
    pub prefix_hits: u64,
    pub steps: u64,
    pub step_time: f64,
    finished: [(&'static str, u64); 3],
    pub ttft: LatencyHistogram,
    pub itl: LatencyHistogram,
    pub e2e: LatencyHistogram,
}

impl Default for EngineMetrics {
    fn default() -> Self {
        EngineMetrics {
            running: 0,
            waiting: 0,
            kv_usage: 0.0,
            prompt_tokens: 0,
            generation_tokens: 0,
            preemptions: 0,
            prefix_queries: 0,
            prefix_hits: 0,
            steps: 0,
            step_time: 0.0,
            finished: [("stop", 0), ("length", 0), ("abort", 0)],
            ttft: LatencyHistogram::new(TTFT_BOUNDS),
            itl: LatencyHistogram::new(ITL_BOUNDS),
            e2e: LatencyHistogram::new(E2E_BOUNDS),
        }
    }
}

impl EngineMetrics {
    /// Counts `n` requests that ended for `reason` (`stop`, `length`, `abort`).
    pub fn finished(&mut self, reason: &str, n: usize) {
        if let Some(e) = self.finished.iter_mut().find(|(r, _)| *r == reason) {
            e.1 += n as u64;
        }
    }

    /// A copy for the metrics endpoint.
    pub fn snapshot(&self) -> GeneratorMetrics {
        GeneratorMetrics {
            running: self.running,
            waiting: self.waiting,
            kv_cache_usage: self.kv_usage,
            prompt_tokens_total: self.prompt_tokens,
            generation_tokens_total: self.generation_tokens,
            preemptions_total: self.preemptions,
            prefix_cache_queries_total: self.prefix_queries,
            prefix_cache_hits_total: self.prefix_hits,
            finished_total: self.finished.to_vec(),
            time_to_first_token: self.ttft.clone(),
            inter_token_latency: self.itl.clone(),
            e2e_latency: self.e2e.clone(),
        }
    }
}

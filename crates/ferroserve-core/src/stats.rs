//! Per-model-version inference statistics, in the shape of Triton's
//! statistics extension (counts and cumulative nanoseconds).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

/// Upper bounds (seconds) of the latency histogram buckets kept for every
/// duration statistic (Prometheus' `le` labels; `+Inf` is implicit).
pub const LATENCY_BUCKETS_S: [f64; 17] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// A count, total duration and latency histogram in plain integers: a
/// [`Duration64`]'s values read at once, or counted by one thread.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LatencyCounts {
    /// Occurrences.
    pub count: u64,
    /// Their total, in nanoseconds.
    pub ns: u64,
    /// Non-cumulative counts per bucket of [`LATENCY_BUCKETS_S`] (values
    /// above the last bound are only in `count`).
    pub buckets: [u64; 17],
}

impl LatencyCounts {
    /// Adds one occurrence of `d`.
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.count += 1;
        self.ns = self.ns.saturating_add(ns);
        if let Some(i) = bucket_of(ns) {
            self.buckets[i] += 1;
        }
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &LatencyCounts) {
        self.count += other.count;
        self.ns = self.ns.saturating_add(other.ns);
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a += b;
        }
    }
}

/// The bucket of [`LATENCY_BUCKETS_S`] a duration of `ns` falls in.
fn bucket_of(ns: u64) -> Option<usize> {
    let secs = ns as f64 / 1e9;
    LATENCY_BUCKETS_S.iter().position(|&b| secs <= b)
}

/// A cumulative count and duration, with a latency histogram.
#[derive(Debug, Default)]
pub struct Duration64 {
    count: AtomicU64,
    ns: AtomicU64,
    buckets: [AtomicU64; 17],
}

impl Duration64 {
    /// Adds one occurrence of `d`.
    pub fn record(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.ns.fetch_add(ns, Ordering::Relaxed);
        if let Some(i) = bucket_of(ns) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The values now.
    pub fn counts(&self) -> LatencyCounts {
        let (count, ns) = self.get();
        LatencyCounts {
            count,
            ns,
            buckets: self.buckets(),
        }
    }

    /// Non-cumulative counts per bucket of [`LATENCY_BUCKETS_S`] (values
    /// above the last bound are only in the total count).
    pub fn buckets(&self) -> [u64; 17] {
        std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed))
    }

    /// `(count, total nanoseconds)`.
    pub fn get(&self) -> (u64, u64) {
        (
            self.count.load(Ordering::Relaxed),
            self.ns.load(Ordering::Relaxed),
        )
    }
}

/// Per-batch-size compute statistics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchStat {
    /// Executions with this batch size.
    pub count: u64,
    /// Nanoseconds preparing inputs.
    pub input_ns: u64,
    /// Nanoseconds running the model.
    pub infer_ns: u64,
    /// Nanoseconds extracting outputs.
    pub output_ns: u64,
}

/// Statistics of one model version.
#[derive(Debug, Default)]
pub struct ModelStats {
    /// Successful requests, end to end inside the server.
    pub success: Duration64,
    /// Failed requests.
    pub fail: Duration64,
    /// Time waiting for a compute slot.
    pub queue: Duration64,
    /// Time preparing inputs (validation, conversion).
    pub compute_input: Duration64,
    /// Time running the model.
    pub compute_infer: Duration64,
    /// Time extracting outputs.
    pub compute_output: Duration64,
    inference_count: AtomicU64,
    execution_count: AtomicU64,
    last_inference_ms: AtomicU64,
    batches: Mutex<BTreeMap<u64, BatchStat>>,
}

/// A consistent copy of [`ModelStats`] for reporting.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StatsSnapshot {
    /// Milliseconds since the epoch of the last inference (0: never).
    pub last_inference_ms: u64,
    /// Inferences (batch rows) done.
    pub inference_count: u64,
    /// Model executions done.
    pub execution_count: u64,
    /// `(count, ns)` of successful requests.
    pub success: (u64, u64),
    /// `(count, ns)` of failed requests.
    pub fail: (u64, u64),
    /// `(count, ns)` of queueing.
    pub queue: (u64, u64),
    /// `(count, ns)` of input preparation.
    pub compute_input: (u64, u64),
    /// `(count, ns)` of execution.
    pub compute_infer: (u64, u64),
    /// `(count, ns)` of output extraction.
    pub compute_output: (u64, u64),
    /// Per batch size.
    pub batches: Vec<(u64, BatchStat)>,
}

impl ModelStats {
    /// Records one model execution of `batch_size` rows.
    pub fn record_execution(
        &self,
        batch_size: u64,
        input: Duration,
        infer: Duration,
        output: Duration,
    ) {
        self.compute_input.record(input);
        self.compute_infer.record(infer);
        self.compute_output.record(output);
        self.inference_count
            .fetch_add(batch_size, Ordering::Relaxed);
        self.execution_count.fetch_add(1, Ordering::Relaxed);
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.last_inference_ms.store(now_ms, Ordering::Relaxed);
        let mut b = self.batches.lock();
        let e = b.entry(batch_size).or_default();
        e.count += 1;
        e.input_ns += input.as_nanos() as u64;
        e.infer_ns += infer.as_nanos() as u64;
        e.output_ns += output.as_nanos() as u64;
    }

    /// Copies the current values.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            last_inference_ms: self.last_inference_ms.load(Ordering::Relaxed),
            inference_count: self.inference_count.load(Ordering::Relaxed),
            execution_count: self.execution_count.load(Ordering::Relaxed),
            success: self.success.get(),
            fail: self.fail.get(),
            queue: self.queue.get(),
            compute_input: self.compute_input.get(),
            compute_infer: self.compute_infer.get(),
            compute_output: self.compute_output.get(),
            batches: self.batches.lock().iter().map(|(k, v)| (*k, *v)).collect(),
        }
    }
}

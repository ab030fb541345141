//! Per-model scheduling: one queue with priority levels, queue timeouts, a
//! size limit and cancellation, served by `instances` workers. A worker runs
//! either one request at a time or, with dynamic batching, merges compatible
//! requests along dimension 0, runs them once and splits the outputs back.
//!
//! Dispatch rule: a worker takes the head request (highest priority, then
//! oldest) plus every queued request with the same batch key (same input
//! datatypes and non-batch shapes, same requested outputs, same request
//! parameters) that fits under the batch cap. It dispatches at once when the
//! batch is full or reaches a preferred size, when the oldest request has
//! waited `max_queue_delay`, or (unless disabled) when no batch is running:
//! a request that finds the model idle never waits for company.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::sync::{oneshot, Notify};

use crate::config::{ModelConfig, QueuePolicy, TimeoutAction};
use crate::error::Error;
use crate::executor::select_outputs;
use crate::model::{InferContext, Model};
use crate::parameters::ParamValue;
use crate::request::{InferRequest, InferResponse};
use crate::stats::ModelStats;
use crate::tensor::{Tensor, TensorData};

/// Resolved scheduling settings of one model version.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerConfig {
    /// Merge requests into batches (dynamic batching).
    pub merge: bool,
    /// Most rows in a merged batch.
    pub max_batch_rows: usize,
    /// Most requests in a merged batch (KServe containerConcurrency).
    pub max_batch_requests: usize,
    /// Preferred batch sizes (rows).
    pub preferred: Vec<usize>,
    /// Longest a request waits for company.
    pub max_delay: Duration,
    /// Run at once when no batch is running.
    pub dispatch_when_idle: bool,
    /// Deliver responses in arrival order.
    pub preserve_ordering: bool,
    /// Priority levels (at least 1; level 1 is the highest).
    pub priority_levels: usize,
    /// Level of requests without a `priority` parameter.
    pub default_priority: usize,
    /// Queue limits and timeouts.
    pub queue: QueuePolicy,
    /// Parallel workers.
    pub instances: usize,
}

/// Server-wide defaults for models whose own configuration is silent.
#[derive(Debug, Clone, Default)]
pub struct SchedulingDefaults {
    /// Dynamic batching for every batchable model.
    pub dynamic_batching: Option<crate::config::DynamicBatching>,
    /// Parallel executions per model.
    pub instance_count: Option<u32>,
    /// In-flight requests per model.
    pub container_concurrency: Option<u32>,
}

impl SchedulerConfig {
    /// Resolves the scheduling of a model from its configuration, the
    /// server defaults and its effective `max_batch_size`. `None`: requests
    /// run directly, unqueued.
    pub fn resolve(
        config: &ModelConfig,
        defaults: &SchedulingDefaults,
        max_batch_size: u32,
    ) -> Option<SchedulerConfig> {
        let kserve = config
            .batcher
            .as_ref()
            .map(|b| crate::config::DynamicBatching {
                max_queue_delay_microseconds: b.max_latency_ms.unwrap_or(0) * 1000,
                default_queue_policy: QueuePolicy {
                    default_timeout_microseconds: b.timeout_s.unwrap_or(0) * 1_000_000,
                    ..Default::default()
                },
                ..Default::default()
            });
        let batching = config.dynamic_batching.clone().or(kserve).or_else(|| {
            defaults
                .dynamic_batching
                .clone()
                .filter(|_| max_batch_size > 0)
        });
        let instances = config
            .instance_group
            .map(|g| g.count)
            .or(defaults.instance_count);
        let cc = config
            .container_concurrency
            .or(defaults.container_concurrency);
        if batching.is_none() && instances.is_none() && cc.is_none() {
            return None;
        }
        let merge = batching.is_some() && max_batch_size > 0;
        let b = batching.unwrap_or_default();
        let max_rows = (max_batch_size as usize).max(1);
        let preferred: Vec<usize> = b
            .preferred_batch_size
            .iter()
            .map(|&p| p as usize)
            .filter(|&p| p > 0 && p <= max_rows)
            .collect();
        let levels = (b.priority_levels as usize).max(1);
        let default_priority = match b.default_priority_level as usize {
            0 => levels,
            n => n.min(levels),
        };
        let mut workers = instances.map(|n| n.max(1) as usize).unwrap_or(1);
        if !merge {
            if let Some(cc) = cc {
                workers = if instances.is_some() {
                    workers.min(cc.max(1) as usize)
                } else {
                    cc.max(1) as usize
                };
            }
        }
        Some(SchedulerConfig {
            merge,
            max_batch_rows: max_rows,
            max_batch_requests: if merge {
                cc.map(|c| c.max(1) as usize).unwrap_or(usize::MAX)
            } else {
                1
            },
            preferred,
            max_delay: Duration::from_micros(b.max_queue_delay_microseconds),
            dispatch_when_idle: b.dispatch_when_idle.unwrap_or(true),
            preserve_ordering: b.preserve_ordering,
            priority_levels: levels,
            default_priority,
            queue: b.default_queue_policy,
            instances: workers,
        })
    }
}

const QUEUED: u8 = 0;
const TAKEN: u8 = 1;
const ABANDONED: u8 = 2;

struct Entry {
    rows: usize,
    key: String,
    req: InferRequest,
    enqueued: Instant,
    deadline: Option<Instant>,
    state: Arc<AtomicU8>,
    tx: oneshot::Sender<Result<InferResponse, Error>>,
    /// Stage spans of a traced request; `None` (no allocation) when tracing
    /// is off.
    trace: Option<Box<EntryTrace>>,
}

/// The spans of one traced request while the scheduler holds it.
struct EntryTrace {
    /// The request's span: parent of its `queue`, `batch` and `compute` spans.
    parent: tracing::Span,
    /// Open from enqueue until a batch takes the request.
    queue: tracing::Span,
}

impl EntryTrace {
    /// Starts the `queue` span of a request entering the queue, as a child of
    /// the current span; `None` when tracing is off.
    fn start(priority: usize) -> Option<Box<Self>> {
        let queue = crate::stage_span!("queue", ferroserve.priority = priority as i64);
        if queue.is_disabled() {
            return None;
        }
        Some(Box::new(EntryTrace {
            parent: tracing::Span::current(),
            queue,
        }))
    }
}

impl Entry {
    /// Ends the `queue` span: a batch took the request.
    fn dequeued(&mut self) {
        if let Some(t) = &mut self.trace {
            t.queue = tracing::Span::none();
        }
    }
}

/// One `batch` span per traced member of a batch (empty, no allocation,
/// when tracing is off).
fn batch_spans(batch: &[Entry]) -> Vec<tracing::Span> {
    if batch.iter().all(|e| e.trace.is_none()) {
        return Vec::new();
    }
    let rows: usize = batch.iter().map(|e| e.rows).sum();
    batch
        .iter()
        .map(|e| match &e.trace {
            // Created inside the request's span (the exporter keeps only
            // stage spans inside a traced request).
            Some(t) => crate::stage_span!(
                in &t.parent,
                "batch",
                ferroserve.batch.requests = batch.len() as i64,
                ferroserve.batch.rows = rows as i64
            ),
            None => tracing::Span::none(),
        })
        .collect()
}

impl Entry {
    fn expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| now >= d)
    }
}

#[derive(Default)]
struct Queue {
    levels: Vec<VecDeque<Entry>>,
    len: usize,
    running: usize,
    closed: bool,
    next_ticket: u64,
}

/// Delivery order for `preserve_ordering`.
#[derive(Default)]
struct OrderGate {
    next: Mutex<u64>,
    notify: Notify,
}

/// The scheduler of one model version.
pub struct Scheduler {
    cfg: SchedulerConfig,
    model: Arc<dyn Model>,
    stats: Arc<ModelStats>,
    model_name: String,
    version: String,
    queue: Mutex<Queue>,
    notify: Notify,
    gate: OrderGate,
    started: std::sync::Once,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// Marks a queued request abandoned when its caller goes away.
struct AbandonOnDrop(Arc<AtomicU8>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        let _ = self
            .0
            .compare_exchange(QUEUED, ABANDONED, Ordering::AcqRel, Ordering::Acquire);
    }
}

fn batch_key(req: &InferRequest) -> String {
    use std::fmt::Write;
    let mut k = String::new();
    for t in &req.inputs {
        let _ = write!(
            k,
            "{}:{}:{:?};",
            t.name,
            t.datatype,
            t.shape.get(1..).unwrap_or(&[])
        );
    }
    k.push('|');
    for o in &req.outputs {
        let _ = write!(k, "{}{:?};", o.name, o.parameters);
    }
    k.push('|');
    for (name, v) in &req.parameters {
        if !matches!(
            name.as_str(),
            "priority" | "timeout" | "binary_data_output" | "headers"
        ) {
            let _ = write!(k, "{name}={v:?};");
        }
    }
    k
}

impl Scheduler {
    /// A scheduler for `model`; its workers start with the first request.
    pub fn new(
        cfg: SchedulerConfig,
        model: Arc<dyn Model>,
        stats: Arc<ModelStats>,
        model_name: String,
        version: String,
    ) -> Self {
        let levels = (0..cfg.priority_levels).map(|_| VecDeque::new()).collect();
        Scheduler {
            cfg,
            model,
            stats,
            model_name,
            version,
            queue: Mutex::new(Queue {
                levels,
                ..Default::default()
            }),
            notify: Notify::new(),
            gate: OrderGate::default(),
            started: std::sync::Once::new(),
        }
    }

    /// The resolved settings.
    pub fn config(&self) -> &SchedulerConfig {
        &self.cfg
    }

    /// Requests waiting now.
    pub fn queued(&self) -> usize {
        self.queue.lock().len
    }

    /// Stops the workers once the queue is empty.
    pub fn close(&self) {
        self.queue.lock().closed = true;
        self.notify.notify_waiters();
    }

    fn start(self: &Arc<Self>) {
        self.started.call_once(|| {
            for _ in 0..self.cfg.instances {
                let me = Arc::clone(self);
                tokio::spawn(async move { me.worker().await });
            }
        });
    }

    /// Queues a validated request (inputs in signature order) of `rows` rows
    /// and waits for its response.
    pub async fn submit(
        self: &Arc<Self>,
        req: InferRequest,
        rows: usize,
    ) -> Result<InferResponse, Error> {
        let priority = match req.parameters.get("priority") {
            None => self.cfg.default_priority,
            Some(v) => match v.as_u64() {
                Some(0) => self.cfg.default_priority,
                Some(p) if (p as usize) <= self.cfg.priority_levels => p as usize,
                _ => {
                    return Err(Error::invalid(format!(
                        "priority must be an integer from 0 to {} for model '{}'",
                        self.cfg.priority_levels, self.model_name
                    )))
                }
            },
        };
        let timeout_us = match req.parameters.get("timeout").and_then(ParamValue::as_u64) {
            Some(t) if self.cfg.queue.allow_timeout_override => t,
            _ => self.cfg.queue.default_timeout_microseconds,
        };
        let enqueued = Instant::now();
        let deadline = (timeout_us > 0).then(|| enqueued + Duration::from_micros(timeout_us));
        let state = Arc::new(AtomicU8::new(QUEUED));
        let (tx, mut rx) = oneshot::channel();
        let entry = {
            let mut q = self.queue.lock();
            let max = self.cfg.queue.max_queue_size as usize;
            if max > 0 && q.len >= max {
                return Err(Error::ResourceExhausted(format!(
                    "queue of model '{}' is full ({max} requests waiting)",
                    self.model_name
                )));
            }
            let entry = Entry {
                rows,
                key: batch_key(&req),
                req,
                enqueued,
                deadline,
                state: Arc::clone(&state),
                tx,
                trace: EntryTrace::start(priority),
            };
            // Fast path: nothing queued, nothing running, and the model may
            // run at once when idle: run here, without waking a worker.
            if q.len == 0
                && q.running == 0
                && self.cfg.dispatch_when_idle
                && !self.cfg.preserve_ordering
            {
                q.running += 1;
                state.store(TAKEN, Ordering::Release);
                Some(entry)
            } else {
                q.levels[priority - 1].push_back(entry);
                q.len += 1;
                None
            }
        };
        if let Some(mut entry) = entry {
            self.stats.queue.record(enqueued.elapsed());
            entry.dequeued();
            let bytes: usize = entry.req.inputs.iter().map(Tensor::binary_size).sum();
            let result = if crate::executor::is_tiny(&self.stats, bytes) {
                Ok(self.execute(std::slice::from_ref(&entry)).pop())
            } else {
                let me = Arc::clone(self);
                tokio::task::spawn_blocking(move || {
                    let batch = [entry];
                    me.execute(&batch).pop()
                })
                .await
            };
            self.queue.lock().running -= 1;
            self.start();
            self.notify.notify_one();
            return match result {
                Ok(Some(r)) => r,
                _ => Err(Error::internal("inference task failed")),
            };
        }
        self.start();
        self.notify.notify_one();
        let guard = AbandonOnDrop(Arc::clone(&state));
        let reject_at = deadline.filter(|_| self.cfg.queue.timeout_action == TimeoutAction::REJECT);
        let received = match reject_at {
            Some(at) => {
                tokio::select! {
                    r = &mut rx => r,
                    _ = tokio::time::sleep_until(at.into()) => {
                        if state.compare_exchange(QUEUED, ABANDONED, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                            self.notify.notify_one();
                            return Err(Error::DeadlineExceeded(format!(
                                "request timed out after {timeout_us} µs in the queue of model '{}'",
                                self.model_name
                            )));
                        }
                        rx.await
                    }
                }
            }
            None => rx.await,
        };
        drop(guard);
        received.unwrap_or_else(|_| Err(Error::internal("scheduler dropped the request")))
    }

    async fn worker(self: Arc<Self>) {
        while let Some((batch, ticket)) = self.next_batch().await {
            let bytes: usize = batch
                .iter()
                .flat_map(|e| e.req.inputs.iter())
                .map(Tensor::binary_size)
                .sum();
            let outcome = if crate::executor::is_tiny(&self.stats, bytes) {
                let results = self.execute(&batch);
                Ok((batch, results))
            } else {
                let me = Arc::clone(&self);
                tokio::task::spawn_blocking(move || {
                    let results = me.execute(&batch);
                    (batch, results)
                })
                .await
            };
            match outcome {
                Ok((batch, results)) => {
                    if self.cfg.preserve_ordering {
                        self.wait_turn(ticket).await;
                    }
                    for (e, r) in batch.into_iter().zip(results) {
                        let _ = e.tx.send(r);
                    }
                }
                Err(e) => tracing::error!(model = %self.model_name, "batch task failed: {e}"),
            }
            if self.cfg.preserve_ordering {
                *self.gate.next.lock() += 1;
                self.gate.notify.notify_waiters();
            }
            self.queue.lock().running -= 1;
            self.notify.notify_one();
        }
    }

    async fn wait_turn(&self, ticket: u64) {
        loop {
            let notified = self.gate.notify.notified();
            if *self.gate.next.lock() == ticket {
                return;
            }
            notified.await;
        }
    }

    /// Waits until a batch should be dispatched and takes it off the queue.
    async fn next_batch(&self) -> Option<(Vec<Entry>, u64)> {
        loop {
            let notified = self.notify.notified();
            let wake_at = {
                let mut q = self.queue.lock();
                let now = Instant::now();
                purge_abandoned(&mut q);
                if q.len == 0 {
                    if q.closed {
                        return None;
                    }
                    None
                } else if q.running >= self.cfg.instances {
                    // Every instance is busy (a request may be running on the
                    // submitter's fast path): wait for one to finish.
                    None
                } else {
                    let (picked, rows, oldest) = self.pick(&q, now);
                    let cap = self.row_cap();
                    let full = !self.cfg.merge
                        || rows >= cap
                        || picked.len() >= self.cfg.max_batch_requests
                        || self.cfg.preferred.contains(&rows);
                    let waited = now.saturating_duration_since(oldest);
                    if full
                        || waited >= self.cfg.max_delay
                        || (self.cfg.dispatch_when_idle && q.running == 0)
                        || q.closed
                    {
                        let mut batch = take(&mut q, &picked);
                        for e in &mut batch {
                            self.stats
                                .queue
                                .record(now.saturating_duration_since(e.enqueued));
                            e.dequeued();
                        }
                        q.running += 1;
                        let ticket = q.next_ticket;
                        q.next_ticket += 1;
                        if q.len > 0 {
                            self.notify.notify_one();
                        }
                        return Some((batch, ticket));
                    }
                    Some(oldest + self.cfg.max_delay)
                }
            };
            match wake_at {
                None => notified.await,
                Some(at) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(at.into()) => {}
                    }
                }
            }
        }
    }

    fn row_cap(&self) -> usize {
        match self.cfg.preferred.iter().max() {
            Some(&p) if self.cfg.merge => p.min(self.cfg.max_batch_rows),
            _ => self.cfg.max_batch_rows,
        }
    }

    /// Chooses the next batch: (level, index) pairs, total rows, and the
    /// enqueue time of its oldest member. Requests whose queue timeout
    /// expired under the DELAY action come after all others.
    fn pick(&self, q: &Queue, now: Instant) -> (Vec<(usize, usize)>, usize, Instant) {
        let mut picked = Vec::new();
        let mut rows = 0usize;
        let mut key: Option<&str> = None;
        let mut oldest = now;
        let cap = self.row_cap();
        for pass_expired in [false, true] {
            for (li, level) in q.levels.iter().enumerate() {
                for (i, e) in level.iter().enumerate() {
                    if e.expired(now) != pass_expired || e.state.load(Ordering::Acquire) != QUEUED {
                        continue;
                    }
                    match key {
                        None => key = Some(&e.key),
                        Some(k) if !self.cfg.merge || k != e.key => continue,
                        Some(_) => {}
                    }
                    if !picked.is_empty()
                        && (rows + e.rows > cap || picked.len() >= self.cfg.max_batch_requests)
                    {
                        continue;
                    }
                    picked.push((li, i));
                    rows += e.rows;
                    oldest = oldest.min(e.enqueued);
                    if !self.cfg.merge {
                        return (picked, rows, oldest);
                    }
                }
            }
        }
        (picked, rows, oldest)
    }

    /// Runs a batch (on a compute thread) and returns one result per member.
    fn execute(&self, batch: &[Entry]) -> Vec<Result<InferResponse, Error>> {
        let spans = batch_spans(batch);
        if batch.len() == 1 {
            return vec![self.run_one(&batch[0], spans.first())];
        }
        match self.run_merged(batch, &spans) {
            Ok(results) => results.into_iter().map(Ok).collect(),
            Err(e) => {
                // Isolate the failure: rerun each member alone, so only the
                // requests that fail by themselves get an error.
                tracing::warn!(model = %self.model_name, size = batch.len(), "merged batch failed ({e}); retrying its requests one by one");
                batch
                    .iter()
                    .enumerate()
                    .map(|(i, e)| self.run_one(e, spans.get(i)))
                    .collect()
            }
        }
    }

    fn respond(&self, e: &Entry, outputs: Vec<Tensor>) -> Result<InferResponse, Error> {
        Ok(InferResponse {
            model_name: self.model_name.clone(),
            model_version: self.version.clone(),
            id: e.req.id.clone(),
            parameters: Default::default(),
            outputs: select_outputs(self.model.signature(), &e.req.outputs, outputs)?,
        })
    }

    /// One `compute` span under each `batch` span (none when tracing is off).
    fn compute_spans(&self, batch_spans: &[tracing::Span]) -> Vec<tracing::Span> {
        batch_spans
            .iter()
            .map(|b| {
                if b.is_none() {
                    return tracing::Span::none();
                }
                crate::stage_span!(
                    in b,
                    "compute",
                    ferroserve.model.name = %self.model_name,
                    ferroserve.model.version = %self.version
                )
            })
            .collect()
    }

    fn run_one(&self, e: &Entry, span: Option<&tracing::Span>) -> Result<InferResponse, Error> {
        let t1 = Instant::now();
        let ctx = InferContext::new(&e.req.parameters, &e.req.outputs);
        let compute = self.compute_spans(span.map(std::slice::from_ref).unwrap_or_default());
        let outputs = self.model.infer_with(e.req.inputs.clone(), &ctx);
        drop(compute);
        let outputs = outputs?;
        let t2 = Instant::now();
        let resp = self.respond(e, outputs);
        self.stats
            .record_execution(e.rows as u64, Duration::ZERO, t2 - t1, t2.elapsed());
        resp
    }

    fn run_merged(
        &self,
        batch: &[Entry],
        spans: &[tracing::Span],
    ) -> Result<Vec<InferResponse>, Error> {
        let t0 = Instant::now();
        let total: usize = batch.iter().map(|e| e.rows).sum();
        let n_inputs = batch[0].req.inputs.len();
        let mut merged = Vec::with_capacity(n_inputs);
        for i in 0..n_inputs {
            let parts: Vec<&Tensor> = batch.iter().filter_map(|e| e.req.inputs.get(i)).collect();
            merged.push(concat(&parts, total)?);
        }
        let t1 = Instant::now();
        // Merged requests have equal parameters and requested outputs (the
        // batch key), so the first one's describe them all.
        let ctx = InferContext::new(&batch[0].req.parameters, &batch[0].req.outputs);
        let compute = self.compute_spans(spans);
        let outputs = self.model.infer_with(merged, &ctx);
        drop(compute);
        let outputs = outputs?;
        let t2 = Instant::now();
        let mut per_request: Vec<Vec<Tensor>> = batch.iter().map(|_| Vec::new()).collect();
        for out in outputs {
            for (slot, piece) in per_request.iter_mut().zip(split(&out, batch, total)?) {
                slot.push(piece);
            }
        }
        let responses = batch
            .iter()
            .zip(per_request)
            .map(|(e, outs)| self.respond(e, outs))
            .collect::<Result<Vec<_>, _>>()?;
        self.stats
            .record_execution(total as u64, t1 - t0, t2 - t1, t2.elapsed());
        Ok(responses)
    }
}

fn purge_abandoned(q: &mut Queue) {
    let mut removed = 0;
    for level in &mut q.levels {
        let before = level.len();
        level.retain(|e| e.state.load(Ordering::Acquire) == QUEUED);
        removed += before - level.len();
    }
    q.len -= removed;
}

/// Removes the picked entries (claiming each) and returns them in pick order.
fn take(q: &mut Queue, picked: &[(usize, usize)]) -> Vec<Entry> {
    let mut order: Vec<(usize, (usize, usize))> = picked.iter().copied().enumerate().collect();
    order.sort_by_key(|e| std::cmp::Reverse(e.1));
    let mut out: Vec<(usize, Entry)> = Vec::with_capacity(picked.len());
    for (pos, (li, i)) in order {
        if let Some(e) = q.levels[li].remove(i) {
            q.len -= 1;
            if e.state
                .compare_exchange(QUEUED, TAKEN, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                out.push((pos, e));
            }
        }
    }
    out.sort_by_key(|(pos, _)| *pos);
    out.into_iter().map(|(_, e)| e).collect()
}

/// Concatenates request tensors along dimension 0.
fn concat(parts: &[&Tensor], total_rows: usize) -> Result<Tensor, Error> {
    let first = parts
        .first()
        .ok_or_else(|| Error::internal("empty batch"))?;
    let mut shape = first.shape.clone();
    if let Some(d0) = shape.first_mut() {
        *d0 = total_rows;
    }
    let data = match &first.data {
        TensorData::Raw(_) => {
            let len: usize = parts.iter().map(|t| t.raw().map_or(0, Bytes::len)).sum();
            let mut buf = BytesMut::with_capacity(len);
            for t in parts {
                buf.extend_from_slice(
                    t.raw()
                        .ok_or_else(|| Error::internal("mixed tensor kinds in a batch"))?,
                );
            }
            TensorData::Raw(buf.freeze())
        }
        TensorData::Strings(_) => {
            let mut v = Vec::new();
            for t in parts {
                v.extend_from_slice(
                    t.strings()
                        .ok_or_else(|| Error::internal("mixed tensor kinds in a batch"))?,
                );
            }
            TensorData::Strings(v)
        }
    };
    Ok(Tensor::new(
        first.name.clone(),
        first.datatype,
        shape,
        data,
    )?)
}

/// Splits a batch output back into per-request pieces along dimension 0.
fn split(out: &Tensor, batch: &[Entry], total_rows: usize) -> Result<Vec<Tensor>, Error> {
    if out.shape.first() != Some(&total_rows) {
        return Err(Error::internal(format!(
            "output '{}' has shape {:?}, not {total_rows} rows: the model's outputs are not batch-major",
            out.name, out.shape
        )));
    }
    let per_row = out.len().checked_div(total_rows).unwrap_or(0);
    let mut pieces = Vec::with_capacity(batch.len());
    let mut row = 0usize;
    for e in batch {
        let mut shape = out.shape.clone();
        shape[0] = e.rows;
        let data = match &out.data {
            TensorData::Raw(b) => {
                let size = out.datatype.size().unwrap_or(1);
                let (a, z) = (row * per_row * size, (row + e.rows) * per_row * size);
                TensorData::Raw(b.slice(a..z))
            }
            TensorData::Strings(v) => {
                TensorData::Strings(v[row * per_row..(row + e.rows) * per_row].to_vec())
            }
        };
        let mut t = Tensor::new(out.name.clone(), out.datatype, shape, data)?;
        t.parameters = out.parameters.clone();
        pieces.push(t);
        row += e.rows;
    }
    Ok(pieces)
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;

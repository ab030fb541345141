//! The continuous-batching engine: one thread owns the model and every
//! sequence's KV cache and runs iteration-level scheduling. Between two
//! model steps, finished and cancelled sequences leave the batch and waiting
//! ones join it; each step feeds every running sequence at once — one token
//! for those decoding, a chunk of prompt for those in prefill (chunked
//! prefill keeps a long prompt from stalling the others) — under limits on
//! running sequences, tokens per step and KV-cache blocks. When the cache
//! budget runs out the newest sequence is preempted (its cache dropped, its
//! tokens recomputed when it is scheduled again).

mod kv;
mod metrics;
mod sequence;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use ferroserve_core::generate::{FinishReason, GenerateRequest, GenerateStream, GeneratorMetrics};
use ferroserve_core::Error;
use ferroserve_llm_text::TextTokenizer;
use parking_lot::Mutex;

use crate::model::{DecoderModel, SeqInput};
use kv::{KvBudget, PrefixCache};
use metrics::EngineMetrics;
use sequence::{Sequence, Step};

/// Limits of the engine.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Most sequences in the running batch.
    pub max_num_seqs: usize,
    /// Most tokens fed through the model in one step (prefill chunks included).
    pub max_num_batched_tokens: usize,
    /// Positions per KV-cache block.
    pub block_size: usize,
    /// KV-cache memory budget in bytes.
    pub kv_cache_bytes: usize,
    /// Most requests waiting to be scheduled; more are refused (429).
    pub max_waiting: usize,
    /// Longest prompt plus completion.
    pub max_model_len: usize,
    /// Most cached prompt prefixes (0: prefix caching off).
    pub prefix_cache_entries: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_num_seqs: 32,
            max_num_batched_tokens: 512,
            block_size: 16,
            kv_cache_bytes: 2 << 30,
            max_waiting: 256,
            max_model_len: 4096,
            prefix_cache_entries: 64,
        }
    }
}

enum Command {
    Add(Box<Sequence>),
}

/// State shared between the engine thread and request submitters.
struct Shared {
    waiting: AtomicUsize,
    metrics: Mutex<EngineMetrics>,
}

/// Handle to a running engine. Dropping it stops the engine thread once the
/// sequences in flight are cancelled.
pub struct Engine {
    tx: Mutex<Option<mpsc::Sender<Command>>>,
    shared: Arc<Shared>,
    options: EngineOptions,
    vocab_size: usize,
    tokenizer: Arc<TextTokenizer>,
    eos: Arc<[u32]>,
    total_blocks: usize,
    block_size: usize,
}

impl Engine {
    /// Starts the engine thread for `model`.
    pub fn start(
        model: Arc<DecoderModel>,
        tokenizer: Arc<TextTokenizer>,
        eos: Vec<u32>,
        options: EngineOptions,
    ) -> Result<Self, Error> {
        let per_token = model.kv_bytes_per_token().max(1);
        let block_bytes = per_token * options.block_size.max(1);
        let total_blocks = options.kv_cache_bytes / block_bytes;
        let block_size = options.block_size.max(1);
        if total_blocks * block_size < options.max_model_len.min(block_size * 4) {
            return Err(Error::Load(format!(
                "KV cache budget of {} bytes holds only {} positions ({} bytes each); raise --kv_cache_memory",
                options.kv_cache_bytes,
                total_blocks * block_size,
                per_token
            )));
        }
        let vocab_size = model.config().vocab_size;
        let shared = Arc::new(Shared {
            waiting: AtomicUsize::new(0),
            metrics: Mutex::new(EngineMetrics::default()),
        });
        let (tx, rx) = mpsc::channel();
        let eos: Arc<[u32]> = eos.into();
        let worker = Worker {
            model,
            tokenizer: Arc::clone(&tokenizer),
            rx,
            shared: Arc::clone(&shared),
            budget: KvBudget::new(block_size, total_blocks),
            prefix: PrefixCache::new(options.prefix_cache_entries),
            waiting: VecDeque::new(),
            running: Vec::new(),
            options: options.clone(),
        };
        std::thread::Builder::new()
            .name("ferroserve-llm-engine".into())
            .spawn(move || worker.run())
            .map_err(|e| Error::Load(format!("cannot start the engine thread: {e}")))?;
        Ok(Engine {
            tx: Mutex::new(Some(tx)),
            shared,
            options,
            vocab_size,
            tokenizer,
            eos,
            total_blocks,
            block_size,
        })
    }

    /// The limits the engine runs with.
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// Queues a request; its events arrive on the returned stream.
    pub fn submit(&self, request: GenerateRequest) -> Result<GenerateStream, Error> {
        let prompt_len = request.prompt.len();
        if prompt_len == 0 {
            return Err(Error::invalid("the prompt is empty"));
        }
        if let Some(bad) = request
            .prompt
            .iter()
            .find(|&&t| t as usize >= self.vocab_size)
        {
            return Err(Error::invalid(format!(
                "token id {bad} is outside the vocabulary (size {})",
                self.vocab_size
            )));
        }
        let max_len = self.options.max_model_len;
        if prompt_len >= max_len {
            return Err(Error::invalid(format!(
                "the prompt has {prompt_len} tokens; this model's context is {max_len} tokens, which leaves no room to generate"
            )));
        }
        let room = max_len - prompt_len;
        let max_tokens = match request.params.max_tokens {
            Some(n) if n > room => {
                return Err(Error::invalid(format!(
                    "this model's maximum context length is {max_len} tokens; the prompt has {prompt_len} tokens and max_tokens asks for {n} more"
                )))
            }
            Some(n) => n,
            None => room,
        };
        let need_blocks = (prompt_len + max_tokens).div_ceil(self.block_size);
        if need_blocks > self.total_blocks {
            return Err(Error::invalid(format!(
                "the request needs {} KV-cache positions but the whole cache holds {}",
                prompt_len + max_tokens,
                self.total_blocks * self.block_size
            )));
        }
        // Reserve a waiting slot; refuse when the queue is full.
        let admitted = self
            .shared
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                (w < self.options.max_waiting).then_some(w + 1)
            })
            .is_ok();
        if !admitted {
            return Err(Error::ResourceExhausted(format!(
                "{} requests are already waiting; try again later",
                self.options.max_waiting
            )));
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let seq = Sequence::new(
            request.request_id,
            request.prompt,
            request.params,
            max_tokens,
            self.vocab_size,
            &self.tokenizer,
            Arc::clone(&self.eos),
            tx,
        );
        let sent = self
            .tx
            .lock()
            .as_ref()
            .map(|t| t.send(Command::Add(Box::new(seq))).is_ok())
            .unwrap_or(false);
        if !sent {
            self.shared.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::Unavailable("the model's engine has stopped".into()));
        }
        Ok(rx)
    }

    /// A snapshot of the engine's metrics.
    pub fn metrics(&self) -> GeneratorMetrics {
        self.shared.metrics.lock().snapshot()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Closing the channel ends the worker once its batch is empty.
        self.tx.lock().take();
    }
}

/// The engine thread's state.
struct Worker {
    model: Arc<DecoderModel>,
    tokenizer: Arc<TextTokenizer>,
    rx: mpsc::Receiver<Command>,
    shared: Arc<Shared>,
    budget: KvBudget,
    prefix: PrefixCache,
    waiting: VecDeque<Box<Sequence>>,
    running: Vec<Box<Sequence>>,
    options: EngineOptions,
}

/// One sequence's share of a step: `len` tokens from position `computed`.
struct Slot {
    index: usize,
    len: usize,
}

impl Worker {
    fn run(mut self) {
        loop {
            if self.running.is_empty() && self.waiting.is_empty() {
                match self.rx.recv() {
                    Ok(cmd) => self.accept(cmd),
                    Err(_) => break,
                }
            }
            while let Ok(cmd) = self.rx.try_recv() {
                self.accept(cmd);
            }
            self.drop_cancelled();
            let plan = self.schedule();
            if plan.is_empty() {
                if self.running.is_empty() && !self.waiting.is_empty() {
                    // Nothing fits even with an empty batch: should not
                    // happen (submit checks the budget); fail the head.
                    if let Some(seq) = self.waiting.pop_front() {
                        self.left_waiting(1);
                        seq.fail(Error::ResourceExhausted(
                            "the KV cache cannot hold this request".into(),
                        ));
                    }
                }
                continue;
            }
            self.step(plan);
            self.publish();
        }
    }

    fn accept(&mut self, cmd: Command) {
        match cmd {
            Command::Add(seq) => self.waiting.push_back(seq),
        }
    }

    fn left_waiting(&self, n: usize) {
        self.shared.waiting.fetch_sub(n, Ordering::AcqRel);
    }

    fn release(&mut self, seq: &mut Sequence) {
        self.budget.release(seq.blocks);
        seq.blocks = 0;
    }

    fn drop_cancelled(&mut self) {
        let mut aborted = 0;
        let mut i = 0;
        while i < self.running.len() {
            if self.running[i].is_cancelled() {
                let mut seq = self.running.swap_remove(i);
                self.release(&mut seq);
                aborted += 1;
            } else {
                i += 1;
            }
        }
        let before = self.waiting.len();
        self.waiting.retain(|s| !s.is_cancelled());
        let gone = before - self.waiting.len();
        if gone > 0 {
            self.left_waiting(gone);
        }
        if aborted + gone > 0 {
            self.shared.metrics.lock().finished("abort", aborted + gone);
        }
        // Keep arrival order for fairness (swap_remove shuffles).
        self.running.sort_by_key(|s| s.arrived);
    }

    /// Grows `running[index]`'s reservation to cover `len` more positions,
    /// evicting cached prefixes and then preempting the newest other
    /// sequences as needed. False when even that is not enough.
    fn reserve(&mut self, index: usize, len: usize) -> bool {
        loop {
            let Some(seq) = self.running.get(index) else {
                return false;
            };
            let need = self
                .budget
                .blocks_for(seq.computed + len)
                .saturating_sub(seq.blocks);
            if self.budget.try_alloc(need) {
                if let Some(seq) = self.running.get_mut(index) {
                    seq.blocks += need;
                }
                return true;
            }
            if self.prefix.evict_one(&mut self.budget) {
                continue;
            }
            // Preempt the newest sequence (this one itself when it is the
            // newest: it goes back to the queue and frees its blocks).
            let preempting_self = self.running.len() <= index + 1;
            let Some(mut victim) = self.running.pop() else {
                return false;
            };
            self.release(&mut victim);
            victim.cache = None;
            victim.computed = 0;
            victim.cached_tokens = 0;
            self.shared.metrics.lock().preemptions += 1;
            tracing::debug!(request = %victim.request_id, "preempted (KV cache full); will recompute");
            self.shared.waiting.fetch_add(1, Ordering::AcqRel);
            self.waiting.push_front(victim);
            if preempting_self {
                return false;
            }
        }
    }

    fn schedule(&mut self) -> Vec<Slot> {
        let mut budget = self.options.max_num_batched_tokens.max(1);
        let mut plan = Vec::new();
        // Decoding sequences first (one token each), then prefills, oldest first.
        let mut order: Vec<usize> = (0..self.running.len()).collect();
        order.sort_by_key(|&i| (self.running[i].pending() > 1, self.running[i].arrived));
        for i in order {
            if budget == 0 || i >= self.running.len() {
                break;
            }
            let len = self.running[i].pending().min(budget);
            if len == 0 {
                continue;
            }
            if !self.reserve(i, len) {
                continue;
            }
            budget -= len;
            plan.push(Slot { index: i, len });
        }
        plan.retain(|s| s.index < self.running.len());
        // Admit waiting sequences while room remains.
        while budget > 0 && self.running.len() < self.options.max_num_seqs {
            let Some(mut seq) = self.waiting.pop_front() else {
                break;
            };
            if seq.cache.is_none() {
                let mut cache = None;
                if self.prefix.enabled() && seq.computed == 0 {
                    let query = seq.prompt_len as u64;
                    if let Some((c, n)) = self.prefix.lookup(&seq.tokens, self.budget.block_size())
                    {
                        let blocks = self.budget.blocks_for(n);
                        if self.budget.try_alloc(blocks) {
                            seq.blocks = blocks;
                            seq.computed = n;
                            seq.cached_tokens = n;
                            cache = Some(c);
                        }
                    }
                    let mut m = self.shared.metrics.lock();
                    m.prefix_queries += query;
                    m.prefix_hits += seq.cached_tokens as u64;
                }
                seq.cache = Some(cache.unwrap_or_else(|| self.model.new_cache()));
            }
            let len = seq.pending().min(budget);
            self.running.push(seq);
            let index = self.running.len() - 1;
            // A new sequence never preempts running ones: reserve only
            // from free blocks and cached prefixes.
            let fits = loop {
                let seq = &self.running[index];
                let need = self
                    .budget
                    .blocks_for(seq.computed + len)
                    .saturating_sub(seq.blocks);
                if self.budget.try_alloc(need) {
                    self.running[index].blocks += need;
                    break true;
                }
                if !self.prefix.evict_one(&mut self.budget) {
                    break false;
                }
            };
            if !fits {
                if let Some(mut seq) = self.running.pop() {
                    self.release(&mut seq);
                    seq.cache = None;
                    seq.computed = 0;
                    seq.cached_tokens = 0;
                    self.waiting.push_front(seq);
                }
                break;
            }
            self.left_waiting(1);
            budget -= len;
            plan.push(Slot { index, len });
        }
        plan
    }

    fn step(&mut self, plan: Vec<Slot>) {
        let started = Instant::now();
        let mut wants = Vec::with_capacity(plan.len());
        let result = {
            let mut inputs = Vec::with_capacity(plan.len());
            // Borrow each planned sequence's cache and tokens mutably at once.
            let mut slots: Vec<Option<&mut Box<Sequence>>> =
                self.running.iter_mut().map(Some).collect();
            for slot in &plan {
                let Some(seq) = slots.get_mut(slot.index).and_then(Option::take) else {
                    continue;
                };
                let want_logits = seq.computed + slot.len == seq.tokens.len();
                wants.push((slot.index, slot.len, want_logits));
                let Sequence {
                    cache,
                    tokens,
                    computed,
                    ..
                } = &mut **seq;
                let Some(cache) = cache.as_mut() else {
                    continue;
                };
                inputs.push(SeqInput {
                    cache,
                    tokens: &tokens[*computed..*computed + slot.len],
                    want_logits,
                });
            }
            // A panic inside the model (a kernel's assertion) fails this
            // step's sequences instead of killing the engine thread.
            let model = &self.model;
            ferroserve_core::contain::contain(|| model.forward(&mut inputs)).unwrap_or_else(
                |panic| {
                    Err(crate::model::ModelError::Candle(candle_core::Error::Msg(
                        format!("the model panicked during this step: {panic}"),
                    )))
                },
            )
        };
        let logits =
            match result.and_then(|t| t.to_vec2::<f32>().map_err(crate::model::ModelError::from)) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, "model step failed; failing the sequences in it");
                    let mut failed: Vec<usize> = wants.iter().map(|w| w.0).collect();
                    failed.sort_unstable_by(|a, b| b.cmp(a));
                    for i in failed {
                        if i < self.running.len() {
                            let mut seq = self.running.swap_remove(i);
                            self.release(&mut seq);
                            seq.fail(Error::internal(format!("generation failed: {e}")));
                        }
                    }
                    self.running.sort_by_key(|s| s.arrived);
                    return;
                }
            };
        let mut rows = logits.into_iter();
        let mut finished = Vec::new();
        let mut prompt_tokens = 0u64;
        let mut generated = 0u64;
        let max_len = self.options.max_model_len;
        let now = Instant::now();
        let mut m = self.shared.metrics.lock();
        for (index, len, want) in wants {
            let Some(seq) = self.running.get_mut(index) else {
                continue;
            };
            let prompt_part = seq.prompt_len.saturating_sub(seq.computed).min(len);
            prompt_tokens += prompt_part as u64;
            seq.computed += len;
            if !want {
                continue;
            }
            let Some(mut row) = rows.next() else {
                continue;
            };
            match seq.last_token_at {
                Some(t) => m.itl.observe(now.duration_since(t).as_secs_f64()),
                None => m
                    .ttft
                    .observe(now.duration_since(seq.arrived).as_secs_f64()),
            }
            generated += 1;
            if let Step::Finished(reason) = seq.advance(&mut row, &self.tokenizer, max_len) {
                m.e2e.observe(seq.arrived.elapsed().as_secs_f64());
                m.finished(
                    match reason {
                        FinishReason::Stop => "stop",
                        FinishReason::Length => "length",
                    },
                    1,
                );
                finished.push(index);
            }
        }
        m.prompt_tokens += prompt_tokens;
        m.generation_tokens += generated;
        m.steps += 1;
        m.step_time += started.elapsed().as_secs_f64();
        drop(m);
        finished.sort_unstable_by(|a, b| b.cmp(a));
        for i in finished {
            if i >= self.running.len() {
                continue;
            }
            let mut seq = self.running.swap_remove(i);
            self.release(&mut seq);
            if let Some(cache) = seq.cache.take() {
                let prompt = &seq.tokens[..seq.prompt_len.min(seq.computed)];
                self.prefix.insert(prompt, cache, &mut self.budget);
            }
        }
        self.running.sort_by_key(|s| s.arrived);
    }

    fn publish(&self) {
        let mut m = self.shared.metrics.lock();
        m.running = self.running.len();
        m.waiting = self.waiting.len();
        m.kv_usage = self.budget.usage();
    }
}

//! The loaded encoder model: tokenisation, batching, the task's
//! post-processing (KServe's huggingfaceserver shapes), [`Model`] and
//! [`Embedder`].

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use candle_core::{DType, Device, Tensor as CTensor};
use ferroserve_core::generate::{EmbedInput, Embedder, Embeddings};
use ferroserve_core::{DataType, Error, Model, Signature, Tensor, TensorSpec};
use serde_json::Value;

use crate::config::{EncoderConfig, Task};
use crate::encoder::{BatchInput, Encoder};
use crate::error::{read_json, HfError, Result};
use crate::st::{l2_normalize, pool, Dense, SentenceConfig};
use crate::tokenize::{Encoded, TextTokenizer};
use crate::weights::{find_checkpoint, Weights};

/// Name of the text input (KServe's examples use `input-0`).
pub const INPUT_NAME: &str = "input-0";
/// Name of the main output, as KServe names it.
pub const OUTPUT_NAME: &str = "output-0";
/// Optional output: class probabilities (classification tasks).
pub const PROBABILITIES_NAME: &str = "probabilities";
/// Optional output: raw class logits (classification tasks).
pub const LOGITS_NAME: &str = "logits";
/// Optional output of fill-mask: the input with each mask replaced by its
/// top prediction, special tokens dropped (the pipeline's `sequence`).
pub const SEQUENCE_NAME: &str = "sequence";

/// What `output-0` of a classification task holds (KServe's
/// `--return_probabilities` / `--return_raw_logits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// Predicted class ids (the default).
    Ids,
    /// Softmax probabilities.
    Probabilities,
    /// Raw logits.
    Logits,
}

/// Settings read from the model's parameters (`model.yaml` → `parameters:`).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadOptions {
    /// `task`: KServe's task name; inferred from the architecture when absent.
    pub task: Option<Task>,
    /// `max_length` (or `max_model_len`): longest input in tokens.
    pub max_length: Option<usize>,
    /// `return_probabilities` / `return_raw_logits`.
    pub mode: OutputMode,
    /// `dtype`: float32 (default), bfloat16, float16.
    pub dtype: DType,
    /// `max_batch_tokens`: padded tokens per forward pass (default 8192).
    pub max_batch_tokens: usize,
    /// Threads one inference may use (0: rayon's global pool, i.e. all cores).
    pub intra_op_threads: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            task: None,
            max_length: None,
            mode: OutputMode::Ids,
            dtype: DType::F32,
            max_batch_tokens: 8192,
            intra_op_threads: 0,
        }
    }
}

fn parse_bool(key: &str, v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        _ => Err(HfError::config(format!(
            "parameter `{key}`: '{v}' is not a boolean"
        ))),
    }
}

fn parse_usize(key: &str, v: &str) -> Result<usize> {
    v.trim()
        .parse::<usize>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            HfError::config(format!(
                "parameter `{key}`: '{v}' is not a positive integer"
            ))
        })
}

impl LoadOptions {
    /// Reads the options from a model's `parameters` map.
    pub fn from_parameters(p: &BTreeMap<String, String>) -> Result<LoadOptions> {
        let mut o = LoadOptions::default();
        if let Some(t) = p.get("task") {
            o.task = Some(Task::parse(t).ok_or_else(|| {
                HfError::config(format!(
                    "parameter `task`: '{t}' is not an encoder task (text_embedding, \
                     sequence_classification, token_classification, fill_mask)"
                ))
            })?);
        }
        for key in ["max_length", "max_model_len"] {
            if let Some(v) = p.get(key) {
                o.max_length = Some(parse_usize(key, v)?);
            }
        }
        let probs = match p.get("return_probabilities") {
            Some(v) => parse_bool("return_probabilities", v)?,
            None => false,
        };
        let logits = match p.get("return_raw_logits") {
            Some(v) => parse_bool("return_raw_logits", v)?,
            None => false,
        };
        o.mode = match (probs, logits) {
            (_, true) => OutputMode::Logits,
            (true, false) => OutputMode::Probabilities,
            _ => OutputMode::Ids,
        };
        if let Some(d) = p.get("dtype") {
            o.dtype = match d.trim().to_ascii_lowercase().as_str() {
                "float32" | "f32" | "fp32" | "auto" => DType::F32,
                "bfloat16" | "bf16" => DType::BF16,
                "float16" | "f16" | "fp16" | "half" => DType::F16,
                other => {
                    return Err(HfError::config(format!(
                        "parameter `dtype`: '{other}' (float32, bfloat16, float16)"
                    )))
                }
            };
        }
        if let Some(v) = p.get("max_batch_tokens") {
            o.max_batch_tokens = parse_usize("max_batch_tokens", v)?;
        }
        Ok(o)
    }
}

/// A loaded BERT-family encoder serving one task.
pub struct HfEncoderModel {
    signature: Signature,
    task: Task,
    encoder: Encoder,
    tokenizer: TextTokenizer,
    sentence: SentenceConfig,
    dense: Vec<Dense>,
    mode: OutputMode,
    max_batch_tokens: usize,
    dimensions: usize,
    pool: Option<rayon::ThreadPool>,
}

impl std::fmt::Debug for HfEncoderModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfEncoderModel")
            .field("task", &self.task)
            .field("model_type", &self.encoder.config().model_type)
            .field("max_length", &self.tokenizer.max_len())
            .finish()
    }
}

impl HfEncoderModel {
    /// Loads the encoder in `dir` (a transformers folder or a
    /// sentence-transformers folder).
    pub fn load(dir: &Path, options: &LoadOptions) -> Result<HfEncoderModel> {
        let sentence = SentenceConfig::load(dir)?;
        let mdir = sentence.transformer_dir.clone();
        let cfg_json = read_json(&mdir.join("config.json"))?;
        let cfg = EncoderConfig::from_json(&cfg_json)?;
        let task = match options.task {
            Some(t) => t,
            None if sentence.is_sentence_transformers => Task::TextEmbedding,
            None => cfg
                .architecture
                .as_deref()
                .and_then(Task::from_architecture)
                .ok_or_else(|| {
                    HfError::config(format!(
                        "cannot infer the task from architecture {:?}; set parameter `task` \
                         (text_embedding, sequence_classification, token_classification, fill_mask)",
                        cfg.architecture
                    ))
                })?,
        };
        if task == Task::FillMask && options.mode != OutputMode::Ids {
            return Err(HfError::config(
                "return_probabilities / return_raw_logits are not supported for fill_mask",
            ));
        }
        let max_length = resolve_max_length(&cfg, &sentence, &mdir, options.max_length)?;
        let checkpoint = find_checkpoint(&mdir).ok_or_else(|| {
            HfError::config(format!(
                "{}: no model.safetensors (or index, or single *.safetensors)",
                mdir.display()
            ))
        })?;
        let device = Device::Cpu;
        let weights = Weights::load(&mdir, &checkpoint, options.dtype, &device)?;
        let encoder = Encoder::load(&cfg, &weights, task, options.dtype, &device)?;
        drop(weights);
        let tokenizer = TextTokenizer::load(&mdir, max_length, cfg.pad_token_id)?;
        if task == Task::FillMask && tokenizer.mask_id().is_none() {
            return Err(HfError::config(
                "fill_mask: the tokenizer has no mask token",
            ));
        }
        let dense = sentence
            .dense
            .iter()
            .map(Dense::load)
            .collect::<Result<Vec<_>>>()?;
        let dimensions = dense.last().map_or(
            cfg.hidden_size * sentence.pooling.len(),
            Dense::out_features,
        );
        let model_file = mdir
            .strip_prefix(dir)
            .ok()
            .map(|rel| rel.join(&checkpoint))
            .unwrap_or_else(|| checkpoint.clone().into())
            .to_string_lossy()
            .into_owned();
        let signature = signature(task, options.mode, &cfg, dimensions, model_file);
        let pool = match options.intra_op_threads {
            0 => None,
            n => Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .thread_name(|i| format!("hf-encoder-{i}"))
                    .build()
                    .map_err(|e| HfError::config(format!("thread pool: {e}")))?,
            ),
        };
        Ok(HfEncoderModel {
            pool,
            signature,
            task,
            encoder,
            tokenizer,
            sentence,
            dense,
            mode: options.mode,
            max_batch_tokens: options.max_batch_tokens,
            dimensions,
        })
    }

    /// Runs `f` on the model's own thread pool when `intra_op_threads` set one.
    fn in_pool<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        match &self.pool {
            Some(pool) => pool.install(f),
            None => f(),
        }
    }

    /// The task the model serves.
    pub fn task(&self) -> Task {
        self.task
    }

    /// Tokenises texts (truncated to the model's length).
    pub fn tokenize(&self, texts: &[String]) -> Result<Vec<Encoded>> {
        self.tokenizer.encode(texts)
    }

    /// Runs the encoder over `encs` in length-sorted chunks of at most
    /// `max_batch_tokens` padded tokens (each chunk padded to `fixed_len`
    /// when given, else to its longest row) and hands each chunk's indices
    /// (into `encs`), batch and `f32` hidden states `[rows·seq, hidden]` to `f`.
    fn run_chunks(
        &self,
        encs: &[Encoded],
        fixed_len: Option<usize>,
        mut f: impl FnMut(&[usize], &BatchInput, &CTensor) -> Result<()>,
    ) -> Result<()> {
        let mut order: Vec<usize> = (0..encs.len()).collect();
        order.sort_by_key(|&i| encs.get(i).map_or(0, |e| e.ids.len()));
        let len_of = |i: usize| encs.get(i).map_or(0, |e| e.ids.len()).max(1);
        let mut start = 0;
        while start < order.len() {
            let mut end = start;
            let mut seq = fixed_len.unwrap_or(0);
            while let Some(&i) = order.get(end) {
                let t = fixed_len.unwrap_or_else(|| seq.max(len_of(i)));
                if end > start && (end - start + 1) * t > self.max_batch_tokens {
                    break;
                }
                seq = t;
                end += 1;
            }
            let idx = order.get(start..end).unwrap_or(&[]);
            let batch = self.pad_batch(encs, idx, seq);
            let hidden = self.encoder.hidden_states(&batch)?;
            f(idx, &batch, &hidden)?;
            start = end;
        }
        Ok(())
    }

    fn pad_batch(&self, encs: &[Encoded], idx: &[usize], seq: usize) -> BatchInput {
        let pad = self.tokenizer.pad_id();
        let mut b = BatchInput {
            ids: Vec::with_capacity(idx.len() * seq),
            type_ids: Vec::with_capacity(idx.len() * seq),
            mask: Vec::with_capacity(idx.len() * seq),
            batch: idx.len(),
            seq,
        };
        for &i in idx {
            let (ids, types): (&[u32], &[u32]) = match encs.get(i) {
                Some(e) => (&e.ids, &e.type_ids),
                None => (&[], &[]),
            };
            for t in 0..seq {
                match ids.get(t) {
                    Some(&id) => {
                        b.ids.push(id);
                        b.type_ids.push(types.get(t).copied().unwrap_or(0));
                        b.mask.push(1);
                    }
                    None => {
                        b.ids.push(pad);
                        b.type_ids.push(0);
                        b.mask.push(0);
                    }
                }
            }
        }
        b
    }

    /// Sentence embeddings of tokenised inputs, in input order.
    pub fn embed_encoded(&self, encs: &[Encoded]) -> Result<Vec<Vec<f32>>> {
        let h = self.encoder.config().hidden_size;
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); encs.len()];
        self.run_chunks(encs, None, |idx, batch, hidden| {
            let flat = hidden
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            let row_len = batch.seq * h;
            for (r, &i) in idx.iter().enumerate() {
                let states = flat.get(r * row_len..(r + 1) * row_len).unwrap_or(&[]);
                let mask = batch
                    .mask
                    .get(r * batch.seq..(r + 1) * batch.seq)
                    .unwrap_or(&[]);
                let mut v = pool(states, mask, h, &self.sentence.pooling, false);
                for layer in &self.dense {
                    v = layer.apply(&v)?;
                }
                if self.sentence.normalize {
                    l2_normalize(&mut v);
                }
                if let Some(slot) = out.get_mut(i) {
                    *slot = v;
                }
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Sequence-classification logits `[N][labels]`, in input order.
    pub fn sequence_logits(&self, encs: &[Encoded]) -> Result<Vec<Vec<f32>>> {
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); encs.len()];
        self.run_chunks(encs, None, |idx, batch, hidden| {
            let logits = self
                .encoder
                .sequence_logits(hidden, batch.batch, batch.seq)?
                .to_vec2::<f32>()?;
            for (row, &i) in logits.into_iter().zip(idx) {
                if let Some(slot) = out.get_mut(i) {
                    *slot = row;
                }
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Token-classification logits `[N][T][labels]`, every row padded to
    /// the longest input (as KServe pads a request), in input order.
    pub fn token_logits(&self, encs: &[Encoded]) -> Result<(Vec<Vec<Vec<f32>>>, usize)> {
        let seq = encs.iter().map(|e| e.ids.len()).max().unwrap_or(0).max(1);
        let mut out: Vec<Vec<Vec<f32>>> = vec![Vec::new(); encs.len()];
        self.run_chunks(encs, Some(seq), |idx, _batch, hidden| {
            let rows = self.encoder.token_logits(hidden)?.to_vec2::<f32>()?;
            for (r, &i) in idx.iter().enumerate() {
                if let Some(slot) = out.get_mut(i) {
                    *slot = rows.get(r * seq..(r + 1) * seq).unwrap_or(&[]).to_vec();
                }
            }
            Ok(())
        })?;
        Ok((out, seq))
    }

    /// Fill-mask: for each input, the vocabulary logits at its mask
    /// positions (`[masks][vocab]`, possibly empty), in input order.
    pub fn mask_logits(&self, encs: &[Encoded]) -> Result<Vec<Vec<Vec<f32>>>> {
        let mask_id = self
            .tokenizer
            .mask_id()
            .ok_or_else(|| HfError::config("the tokenizer has no mask token"))?;
        let mut out: Vec<Vec<Vec<f32>>> = vec![Vec::new(); encs.len()];
        self.run_chunks(encs, None, |idx, batch, hidden| {
            let mut rows = Vec::new();
            let mut owners = Vec::new();
            for (r, &i) in idx.iter().enumerate() {
                let ids = encs.get(i).map(|e| e.ids.as_slice()).unwrap_or(&[]);
                for (t, &id) in ids.iter().enumerate() {
                    if id == mask_id {
                        rows.push((r * batch.seq + t) as u32);
                        owners.push(i);
                    }
                }
            }
            if rows.is_empty() {
                return Ok(());
            }
            let n = rows.len();
            let sel = CTensor::from_vec(rows, n, self.encoder.device())?;
            let logits = self
                .encoder
                .mlm_logits(&hidden.index_select(&sel, 0)?)?
                .to_vec2::<f32>()?;
            for (row, i) in logits.into_iter().zip(owners) {
                if let Some(slot) = out.get_mut(i) {
                    slot.push(row);
                }
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Fill-mask as KServe answers it: the decoded top token(s) at the mask
    /// position(s) of each input (`""` without a mask), and the input with
    /// the masks replaced (special tokens skipped).
    pub fn fill_mask(&self, encs: &[Encoded]) -> Result<(Vec<String>, Vec<String>)> {
        let logits = self.mask_logits(encs)?;
        let mask_id = self.tokenizer.mask_id();
        let mut tops = Vec::with_capacity(encs.len());
        let mut seqs = Vec::with_capacity(encs.len());
        for (enc, masks) in encs.iter().zip(&logits) {
            let best: Vec<u32> = masks.iter().map(|row| argmax(row) as u32).collect();
            tops.push(self.tokenizer.decode(&best, false)?);
            let mut fill = best.iter();
            let filled: Vec<u32> = enc
                .ids
                .iter()
                .map(|&id| {
                    if Some(id) == mask_id {
                        fill.next().copied().unwrap_or(id)
                    } else {
                        id
                    }
                })
                .collect();
            seqs.push(self.tokenizer.decode(&filled, true)?);
        }
        Ok((tops, seqs))
    }

    fn texts_from(&self, input: &Tensor) -> Result<Vec<String>> {
        let strings = input.strings().ok_or_else(|| {
            HfError::invalid(format!(
                "input '{}' must be a BYTES tensor of texts",
                input.name
            ))
        })?;
        if strings.is_empty() {
            return Err(HfError::invalid(format!(
                "input '{}' holds no texts",
                input.name
            )));
        }
        strings
            .iter()
            .enumerate()
            .map(|(i, b)| {
                std::str::from_utf8(b).map(str::to_string).map_err(|e| {
                    HfError::invalid(format!(
                        "text {i} of input '{}' is not UTF-8: {e}",
                        input.name
                    ))
                })
            })
            .collect()
    }

    fn infer_inner(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let input = inputs
            .into_iter()
            .next()
            .ok_or_else(|| HfError::invalid(format!("missing input '{INPUT_NAME}'")))?;
        let texts = self.texts_from(&input)?;
        let encs = self.tokenizer.encode(&texts)?;
        let n = encs.len();
        let t = |r: std::result::Result<Tensor, ferroserve_core::TensorError>| {
            r.map_err(|e| HfError::Config(e.to_string()))
        };
        match self.task {
            Task::TextEmbedding => {
                let vectors = self.embed_encoded(&encs)?;
                let flat: Vec<f32> = vectors.into_iter().flatten().collect();
                Ok(vec![t(Tensor::from_vec(
                    OUTPUT_NAME,
                    vec![n, self.dimensions],
                    flat,
                ))?])
            }
            Task::SequenceClassification => {
                let logits = self.sequence_logits(&encs)?;
                let c = self.encoder.config().num_labels();
                let probs: Vec<Vec<f32>> = logits.iter().map(|r| softmax(r)).collect();
                let flat = |v: &[Vec<f32>]| v.iter().flatten().copied().collect::<Vec<f32>>();
                let main = match self.mode {
                    OutputMode::Ids => Tensor::from_vec(
                        OUTPUT_NAME,
                        vec![n],
                        logits.iter().map(|r| argmax(r) as i64).collect(),
                    ),
                    OutputMode::Probabilities => {
                        Tensor::from_vec(OUTPUT_NAME, vec![n, c], flat(&probs))
                    }
                    OutputMode::Logits => Tensor::from_vec(OUTPUT_NAME, vec![n, c], flat(&logits)),
                };
                Ok(vec![
                    t(main)?,
                    t(Tensor::from_vec(
                        PROBABILITIES_NAME,
                        vec![n, c],
                        flat(&probs),
                    ))?,
                    t(Tensor::from_vec(LOGITS_NAME, vec![n, c], flat(&logits)))?,
                ])
            }
            Task::TokenClassification => {
                let (logits, seq) = self.token_logits(&encs)?;
                let c = self.encoder.config().num_labels();
                let flat_logits: Vec<f32> = logits.iter().flatten().flatten().copied().collect();
                let flat_probs: Vec<f32> =
                    logits.iter().flatten().flat_map(|r| softmax(r)).collect();
                let main = match self.mode {
                    OutputMode::Ids => Tensor::from_vec(
                        OUTPUT_NAME,
                        vec![n, 1, seq],
                        logits.iter().flatten().map(|r| argmax(r) as i64).collect(),
                    ),
                    OutputMode::Probabilities => {
                        Tensor::from_vec(OUTPUT_NAME, vec![n, seq, c], flat_probs.clone())
                    }
                    OutputMode::Logits => {
                        Tensor::from_vec(OUTPUT_NAME, vec![n, seq, c], flat_logits.clone())
                    }
                };
                Ok(vec![
                    t(main)?,
                    t(Tensor::from_vec(
                        PROBABILITIES_NAME,
                        vec![n, seq, c],
                        flat_probs,
                    ))?,
                    t(Tensor::from_vec(LOGITS_NAME, vec![n, seq, c], flat_logits))?,
                ])
            }
            Task::FillMask => {
                let (tops, seqs) = self.fill_mask(&encs)?;
                let bytes = |v: Vec<String>| v.into_iter().map(Bytes::from).collect::<Vec<_>>();
                Ok(vec![
                    t(Tensor::from_strings(OUTPUT_NAME, vec![n], bytes(tops)))?,
                    t(Tensor::from_strings(SEQUENCE_NAME, vec![n], bytes(seqs)))?,
                ])
            }
        }
    }

    fn embed_inner(&self, inputs: Vec<EmbedInput>) -> Result<Embeddings> {
        if inputs.is_empty() {
            return Err(HfError::invalid("no inputs to embed"));
        }
        let max = self.tokenizer.max_len();
        let mut encs: Vec<Option<Encoded>> = vec![None; inputs.len()];
        let mut texts = Vec::new();
        let mut text_slots = Vec::new();
        for (i, input) in inputs.into_iter().enumerate() {
            match input {
                EmbedInput::Text(s) => {
                    texts.push(s);
                    text_slots.push(i);
                }
                EmbedInput::Tokens(ids) => {
                    if ids.is_empty() {
                        return Err(HfError::invalid(format!("input {i} has no tokens")));
                    }
                    if ids.len() > max {
                        return Err(HfError::invalid(format!(
                            "input {i} has {} tokens; the model takes at most {max}",
                            ids.len()
                        )));
                    }
                    let type_ids = vec![0; ids.len()];
                    if let Some(slot) = encs.get_mut(i) {
                        *slot = Some(Encoded { ids, type_ids });
                    }
                }
            }
        }
        if !texts.is_empty() {
            for (e, i) in self.tokenizer.encode(&texts)?.into_iter().zip(text_slots) {
                if let Some(slot) = encs.get_mut(i) {
                    *slot = Some(e);
                }
            }
        }
        let encs: Vec<Encoded> = encs.into_iter().flatten().collect();
        let prompt_tokens = encs.iter().map(|e| e.ids.len()).sum();
        Ok(Embeddings {
            vectors: self.embed_encoded(&encs)?,
            prompt_tokens,
        })
    }
}

/// Index of the first largest value (torch's `argmax` tie rule).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if v.get(best).is_some_and(|&b| x > b) {
            best = i;
        }
    }
    best
}

/// Softmax of one row.
pub fn softmax(v: &[f32]) -> Vec<f32> {
    let m = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = v.iter().map(|&x| (x - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}

fn resolve_max_length(
    cfg: &EncoderConfig,
    sentence: &SentenceConfig,
    mdir: &Path,
    asked: Option<usize>,
) -> Result<usize> {
    let limit = cfg.max_positions();
    if let Some(n) = asked {
        if n > limit {
            return Err(HfError::config(format!(
                "max_length {n} exceeds the model's {limit} positions"
            )));
        }
        return Ok(n);
    }
    if let Some(n) = sentence.max_seq_length {
        return Ok(n.min(limit));
    }
    let tc = mdir.join("tokenizer_config.json");
    if tc.is_file() {
        let from_tok = read_json(&tc)?
            .get("model_max_length")
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok());
        if let Some(n) = from_tok.filter(|&n| n > 0) {
            return Ok(n.min(limit));
        }
    }
    Ok(limit)
}

fn signature(
    task: Task,
    mode: OutputMode,
    cfg: &EncoderConfig,
    dimensions: usize,
    model_file: String,
) -> Signature {
    let c = cfg.num_labels() as i64;
    let optional = |name: &str, dt: DataType, shape: Vec<i64>| TensorSpec {
        optional: true,
        ..TensorSpec::new(name, dt, shape)
    };
    let outputs = match task {
        Task::TextEmbedding => vec![TensorSpec::new(
            OUTPUT_NAME,
            DataType::F32,
            vec![-1, dimensions as i64],
        )],
        Task::SequenceClassification => vec![
            match mode {
                OutputMode::Ids => TensorSpec::new(OUTPUT_NAME, DataType::I64, vec![-1]),
                _ => TensorSpec::new(OUTPUT_NAME, DataType::F32, vec![-1, c]),
            },
            optional(PROBABILITIES_NAME, DataType::F32, vec![-1, c]),
            optional(LOGITS_NAME, DataType::F32, vec![-1, c]),
        ],
        Task::TokenClassification => vec![
            match mode {
                OutputMode::Ids => TensorSpec::new(OUTPUT_NAME, DataType::I64, vec![-1, 1, -1]),
                _ => TensorSpec::new(OUTPUT_NAME, DataType::F32, vec![-1, -1, c]),
            },
            optional(PROBABILITIES_NAME, DataType::F32, vec![-1, -1, c]),
            optional(LOGITS_NAME, DataType::F32, vec![-1, -1, c]),
        ],
        Task::FillMask => vec![
            TensorSpec::new(OUTPUT_NAME, DataType::Bytes, vec![-1]),
            optional(SEQUENCE_NAME, DataType::Bytes, vec![-1]),
        ],
    };
    Signature {
        platform: "huggingface".into(),
        backend: "huggingface".into(),
        model_file,
        inputs: vec![TensorSpec::new(INPUT_NAME, DataType::Bytes, vec![-1])],
        outputs,
    }
}

impl Model for HfEncoderModel {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn infer(&self, inputs: Vec<Tensor>) -> std::result::Result<Vec<Tensor>, Error> {
        Ok(self.in_pool(|| self.infer_inner(inputs))?)
    }

    fn metadata_parameters(&self) -> serde_json::Map<String, Value> {
        let cfg = self.encoder.config();
        let mut m = serde_json::Map::new();
        m.insert("task".into(), self.task.as_str().into());
        m.insert("model_type".into(), cfg.model_type.clone().into());
        if let Some(a) = &cfg.architecture {
            m.insert("architecture".into(), a.clone().into());
        }
        m.insert("max_length".into(), self.tokenizer.max_len().into());
        match self.task {
            Task::TextEmbedding => {
                m.insert("dimensions".into(), self.dimensions.into());
                let modes: Vec<Value> = self
                    .sentence
                    .pooling
                    .iter()
                    .map(|p| p.as_str().into())
                    .collect();
                m.insert("pooling".into(), modes.into());
                m.insert("normalize".into(), self.sentence.normalize.into());
            }
            Task::SequenceClassification | Task::TokenClassification => {
                let labels: Vec<Value> = cfg.labels.iter().map(|l| l.clone().into()).collect();
                m.insert("labels".into(), labels.into());
            }
            Task::FillMask => {}
        }
        m
    }

    fn as_embedder(&self) -> Option<&dyn Embedder> {
        (self.task == Task::TextEmbedding).then_some(self as &dyn Embedder)
    }
}

impl Embedder for HfEncoderModel {
    fn embed(&self, inputs: Vec<EmbedInput>) -> std::result::Result<Embeddings, Error> {
        Ok(self.in_pool(|| self.embed_inner(inputs))?)
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    fn max_input_tokens(&self) -> usize {
        self.tokenizer.max_len()
    }
}

//! The HuggingFace encoder runtime of ferroserve: BERT-family encoders
//! (BERT / MiniLM, RoBERTa / XLM-RoBERTa / CamemBERT, DistilBERT, MPNet)
//! from a transformers or sentence-transformers folder, run with candle on
//! the CPU, serving KServe huggingfaceserver's encoder tasks.
//!
//! - Folder: `config.json` whose `model_type` is an encoder family,
//!   `model.safetensors` (or `model.safetensors.index.json` with shards, or
//!   the only `*.safetensors`), `tokenizer.json` (+ `tokenizer_config.json`).
//!   A sentence-transformers folder adds `modules.json`, `1_Pooling/config.json`
//!   (any of cls / mean / max / mean_sqrt_len_tokens / weightedmean / lasttoken),
//!   optional `Dense` modules (safetensors, no residual) and a `Normalize`
//!   module, and `max_seq_length` (`sentence_bert_config.json`, or
//!   `tokenizer_config.json` for sentence-transformers 6); its transformer may
//!   live in a sub-folder (`0_Transformer/`).
//! - Task (`parameters: {task: …}`, KServe's `--task` names):
//!   `text_embedding`, `sequence_classification`, `token_classification`,
//!   `fill_mask`. Default: from `architectures[0]` (`…ForSequenceClassification`,
//!   `…ForTokenClassification`, `…ForMaskedLM`, `…Model` → embeddings);
//!   sentence-transformers folders embed.
//! - Input `input-0`: BYTES `[-1]`, one text per element (v1 `instances`
//!   of strings arrive as this tensor). Texts are tokenised with
//!   `tokenizer.json`, truncated to the model's length and padded per batch.
//! - Outputs (`output-0`, as KServe names it): embeddings FP32 `[N, D]`
//!   (pooling and normalisation from the sentence-transformers config; a
//!   plain folder gets KServe's mean pooling + L2 normalisation);
//!   sequence classification INT64 `[N]` class ids; token classification
//!   INT64 `[N, 1, T]` class ids per (padded) token — KServe's shape;
//!   fill-mask BYTES `[N]`, the decoded top token(s) at the mask
//!   position(s). Optional outputs by name: `probabilities` and `logits`
//!   (classification), `sequence` (fill-mask: the text with masks filled).
//! - Parameters: `task`, `max_length` / `max_model_len`,
//!   `return_probabilities` / `return_raw_logits` (then `output-0` is FP32
//!   probabilities / logits `[N, C]` or `[N, T, C]`), `dtype`
//!   (float32 / bfloat16 / float16), `max_batch_tokens` (padded tokens per
//!   forward pass, default 8192). The server's `intra_op_threads` gives the
//!   model a rayon pool of that many threads (0: the global pool).
//! - Embedding models also implement [`ferroserve_core::generate::Embedder`]
//!   (the OpenAI embeddings endpoint).

#![warn(missing_docs)]

pub mod config;
pub mod encoder;
pub mod error;
pub mod model;
pub mod st;
pub mod tokenize;
pub mod weights;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferroserve_core::{Error, LoadContext, Model, Runtime};

pub use config::{EncoderConfig, Family, Task};
pub use error::HfError;
pub use model::{HfEncoderModel, LoadOptions, OutputMode};

/// Format name of this runtime.
pub const FORMAT: &str = "huggingface";

/// The HuggingFace encoder [`Runtime`] (format name `huggingface`).
#[derive(Debug, Clone, Default)]
pub struct HfEncoderRuntime;

impl HfEncoderRuntime {
    /// A new runtime.
    pub fn new() -> Self {
        HfEncoderRuntime
    }

    /// Loads the model in `dir` with its concrete type.
    pub fn load_model(&self, dir: &Path, ctx: &LoadContext) -> Result<HfEncoderModel, Error> {
        let mut options = LoadOptions::from_parameters(&ctx.config.parameters)
            .map_err(|e| Error::Load(format!("{}: {e}", dir.display())))?;
        options.intra_op_threads = ctx.intra_op_threads;
        let model = HfEncoderModel::load(dir, &options)
            .map_err(|e| Error::Load(format!("{}: {e}", dir.display())))?;
        tracing::info!(
            model = %dir.display(),
            task = model.task().as_str(),
            "loaded HuggingFace encoder"
        );
        Ok(model)
    }
}

/// The folder holding the transformer of `dir`: `dir` itself, or the
/// `Transformer` module's sub-folder named in `modules.json`.
fn transformer_dir(dir: &Path) -> PathBuf {
    st::SentenceConfig::load(dir)
        .map(|s| s.transformer_dir)
        .unwrap_or_else(|_| dir.to_path_buf())
}

/// The checkpoint this runtime would load from `dir` (relative to `dir`),
/// when `dir` holds an encoder it implements.
pub fn detect(dir: &Path) -> Option<String> {
    let mdir = transformer_dir(dir);
    let cfg = error::read_json(&mdir.join("config.json")).ok()?;
    EncoderConfig::family_of(&cfg)?;
    if !mdir.join("tokenizer.json").is_file() {
        return None;
    }
    let file = weights::find_checkpoint(&mdir)?;
    let rel = mdir.strip_prefix(dir).ok()?.join(file);
    Some(rel.to_string_lossy().into_owned())
}

impl Runtime for HfEncoderRuntime {
    fn format(&self) -> &'static str {
        FORMAT
    }

    fn detect(&self, dir: &Path) -> Option<String> {
        detect(dir)
    }

    fn load(&self, dir: &Path, ctx: &LoadContext) -> Result<Arc<dyn Model>, Error> {
        Ok(Arc::new(self.load_model(dir, ctx)?))
    }
}

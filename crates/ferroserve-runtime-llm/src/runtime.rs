//! The `Runtime` of language models: recognises a HuggingFace decoder
//! folder or a GGUF file and starts an engine for it.

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device};
use ferroserve_core::model::detect_model_file;
use ferroserve_core::{Error, LoadContext, Model, Runtime};
use ferroserve_llm_text::{ChatTemplate, GenerationDefaults, TextTokenizer};
use serde_json::{json, Map, Value};

use crate::engine::{Engine, EngineOptions};
use crate::generator::LlmModel;
use crate::model::{DecoderModel, SUPPORTED_ARCHITECTURES};
use crate::options::LlmOptions;

/// Language models: HuggingFace decoder folders (safetensors) and GGUF files.
#[derive(Debug, Default)]
pub struct LlmRuntime;

impl LlmRuntime {
    /// The runtime.
    pub fn new() -> Self {
        LlmRuntime
    }
}

/// True when `dir/config.json` describes a decoder-only language model.
fn is_decoder_config(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("config.json")) else {
        return false;
    };
    let Ok(v) = serde_json::from_str::<Value>(&text) else {
        return false;
    };
    let causal = v
        .get("architectures")
        .and_then(Value::as_array)
        .is_some_and(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .any(|s| s.ends_with("ForCausalLM") || s == "Gemma3ForConditionalGeneration")
        });
    let known = v
        .get("model_type")
        .and_then(Value::as_str)
        .is_some_and(|t| SUPPORTED_ARCHITECTURES.contains(&t));
    causal || (known && v.get("architectures").is_none())
}

fn is_gguf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"GGUF"
}

fn safetensors_file(dir: &Path) -> Option<String> {
    ["model.safetensors.index.json", "model.safetensors"]
        .iter()
        .find(|n| dir.join(n).is_file())
        .map(|n| n.to_string())
        .or_else(|| detect_model_file(dir, &[], &["safetensors"], |_| true))
}

/// A load error: every failure while reading model files (weights,
/// tokenizer, chat template) fails the load, whatever the error's kind
/// would be at request time.
fn load_error(e: impl std::fmt::Display) -> Error {
    Error::Load(e.to_string())
}

impl Runtime for LlmRuntime {
    fn format(&self) -> &'static str {
        "huggingface"
    }

    fn detect(&self, dir: &Path) -> Option<String> {
        if dir.join("config.json").is_file() {
            return if is_decoder_config(dir) {
                safetensors_file(dir)
            } else {
                None
            };
        }
        detect_model_file(dir, &[], &["gguf"], is_gguf)
    }

    fn load(&self, dir: &Path, ctx: &LoadContext) -> Result<Arc<dyn Model>, Error> {
        let file = self.detect(dir).ok_or_else(|| {
            Error::Load(format!(
                "{}: no language model found (a HuggingFace folder with config.json and *.safetensors of a decoder model, or one .gguf file)",
                dir.display()
            ))
        })?;
        self.load_file(dir, &file, ctx)
    }

    fn load_file(
        &self,
        dir: &Path,
        file: &str,
        ctx: &LoadContext,
    ) -> Result<Arc<dyn Model>, Error> {
        let options = LlmOptions::from_parameters(&ctx.config.parameters)?;
        let device = Device::Cpu;
        let path = dir.join(file);
        let (model, tokenizer, template, defaults) = if is_gguf(&path) {
            let (model, content) = DecoderModel::load_gguf(&path, &device).map_err(load_error)?;
            let tokenizer = TextTokenizer::from_gguf(&content).map_err(load_error)?;
            let template = ChatTemplate::from_gguf(&content).map_err(load_error)?;
            (model, tokenizer, template, GenerationDefaults::default())
        } else {
            let dtype = match options.dtype.as_deref() {
                None | Some("auto") | Some("float32") | Some("f32") => DType::F32,
                Some("bfloat16") | Some("bf16") => DType::BF16,
                Some("float16") | Some("f16") | Some("half") => DType::F16,
                Some(other) => {
                    return Err(Error::Load(format!(
                        "dtype '{other}' is not one of auto, float32, bfloat16, float16"
                    )))
                }
            };
            let model = DecoderModel::load_hf(dir, dtype, &device).map_err(load_error)?;
            let tokenizer = TextTokenizer::from_hf_dir(dir).map_err(load_error)?;
            let template = ChatTemplate::from_hf_dir(dir).map_err(load_error)?;
            let defaults = if dir.join("generation_config.json").is_file() {
                GenerationDefaults::from_hf_dir(dir).map_err(load_error)?
            } else {
                GenerationDefaults::default()
            };
            (model, tokenizer, template, defaults)
        };
        let cfg = model.config().clone();
        let max_model_len = match options.max_model_len {
            Some(n) if n > cfg.max_position_embeddings => {
                return Err(Error::Load(format!(
                    "max_model_len {n} is larger than the model's max_position_embeddings {}",
                    cfg.max_position_embeddings
                )))
            }
            Some(n) => n,
            None => cfg.max_position_embeddings,
        };
        // End-of-sequence ids: the model config's, generation_config.json's and the tokenizer's.
        let mut eos = cfg.eos_token_ids.clone();
        for id in defaults
            .eos_token_ids
            .iter()
            .chain(tokenizer.eos_token_ids().iter())
        {
            if !eos.contains(id) {
                eos.push(*id);
            }
        }
        let kv_bytes = options.kv_cache_bytes(model.kv_bytes_per_token(), max_model_len)?;
        let engine_options = EngineOptions {
            max_num_seqs: options.max_num_seqs,
            max_num_batched_tokens: options.max_num_batched_tokens,
            block_size: options.block_size,
            kv_cache_bytes: kv_bytes,
            max_waiting: options.max_waiting,
            max_model_len,
            prefix_cache_entries: if options.prefix_caching { 64 } else { 0 },
        };
        let mut facts = Map::new();
        facts.insert("architecture".into(), json!(cfg.architecture));
        facts.insert("max_model_len".into(), json!(max_model_len));
        facts.insert("vocab_size".into(), json!(cfg.vocab_size));
        facts.insert("dtype".into(), json!(format!("{:?}", model.dtype())));
        facts.insert("kv_cache_bytes".into(), json!(kv_bytes));
        facts.insert("max_num_seqs".into(), json!(options.max_num_seqs));
        let tokenizer = Arc::new(tokenizer);
        let engine = Engine::start(Arc::new(model), Arc::clone(&tokenizer), eos, engine_options)?;
        tracing::info!(
            model = %dir.display(),
            architecture = %cfg.architecture,
            max_model_len,
            kv_cache_bytes = kv_bytes,
            "language model ready"
        );
        Ok(Arc::new(LlmModel::new(
            file.to_string(),
            engine,
            tokenizer,
            template,
            defaults,
            facts,
        )))
    }
}

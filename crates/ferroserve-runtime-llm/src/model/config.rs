//! Decoder configuration: the shape of the network and the per-architecture
//! options, read from a HuggingFace `config.json` or from GGUF metadata.

use serde_json::Value;

use super::error::ModelError;

/// Activation of the gated feed-forward block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// SiLU (SwiGLU): Llama, Mistral, Qwen, Phi-3.
    Silu,
    /// GELU, tanh approximation (GeGLU): Gemma.
    GeluTanh,
    /// GELU, exact (erf).
    Gelu,
}

impl Activation {
    fn from_name(name: &str) -> Result<Self, ModelError> {
        match name {
            "silu" | "swish" => Ok(Activation::Silu),
            "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Ok(Activation::GeluTanh),
            "gelu" => Ok(Activation::Gelu),
            other => Err(ModelError::bad_config(
                "hidden_act",
                format!("unsupported activation `{other}`"),
            )),
        }
    }
}

/// Rotary-embedding frequency scaling.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    None,
    /// Positions divided by `factor` (HF `rope_type: linear`).
    Linear {
        /// The factor.
        factor: f64,
    },
    /// Llama 3.1 frequency-dependent scaling (HF `rope_type: llama3`).
    Llama3 {
        /// `factor`.
        factor: f64,
        /// `low_freq_factor`.
        low_freq_factor: f64,
        /// `high_freq_factor`.
        high_freq_factor: f64,
        /// `original_max_position_embeddings`.
        original_max_position_embeddings: f64,
    },
    /// Per-frequency divisors (GGUF `rope_freqs.weight`, llama.cpp's form of llama3 scaling).
    Factors(Vec<f32>),
}

/// The shape and options of a decoder-only transformer.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderConfig {
    /// Architecture name (normalised: llama, mistral, qwen2, qwen3, phi3, gemma2, gemma3).
    pub architecture: String,
    /// Vocabulary size (rows of the embedding table, columns of the logits).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the feed-forward block.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `num_heads`).
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Longest context the model was trained for.
    pub max_position_embeddings: usize,
    /// Sliding-window size of the layers that use one (see `layer_sliding`).
    pub sliding_window: Option<usize>,
    /// End-of-sequence token ids named by the model config.
    pub eos_token_ids: Vec<u32>,
    /// Beginning-of-sequence token id.
    pub bos_token_id: Option<u32>,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base of the global-attention layers.
    pub rope_theta: f64,
    /// RoPE base of the sliding-window layers when it differs (Gemma 3).
    pub rope_local_theta: Option<f64>,
    /// RoPE scaling of the global layers.
    pub rope_scaling: RopeScaling,
    /// Interleaved (GPT-J) rotary pairs instead of half-split (NeoX): llama-architecture GGUF files.
    pub rope_interleaved: bool,
    /// Per layer: whether it uses the sliding window.
    pub layer_sliding: Vec<bool>,
    /// Feed-forward activation.
    pub activation: Activation,
    /// RMSNorm multiplies by `1 + weight` (Gemma's HF checkpoints).
    pub norm_weight_plus_one: bool,
    /// Embeddings are multiplied by this (Gemma: sqrt(hidden_size)).
    pub embedding_scale: Option<f64>,
    /// Per-head RMSNorm of queries and keys before RoPE (Qwen3, Gemma 3).
    pub qk_norm: bool,
    /// Norms after attention and after the feed-forward block too (Gemma 2/3).
    pub sandwich_norms: bool,
    /// Attention scores soft-capped as `cap * tanh(s / cap)` (Gemma 2).
    pub attn_logit_softcapping: Option<f64>,
    /// Final logits soft-capped likewise (Gemma 2).
    pub final_logit_softcapping: Option<f64>,
    /// Multiplier of the attention scores (1/sqrt(head_dim), or 1/sqrt(query_pre_attn_scalar)).
    pub attention_scale: f64,
    /// The output projection is the embedding table.
    pub tie_word_embeddings: bool,
}

/// The most decoder layers a model file may declare. Far above any real
/// model (the largest have a few hundred); a larger count can only come from
/// a corrupt file, and per-layer tables are sized by it before any weight is
/// read.
pub const MAX_LAYERS: usize = 1 << 14;

/// The largest size (vocabulary, hidden, intermediate, head counts and
/// dimensions) a model file may declare; keeps the products of sizes far
/// from overflowing.
pub const MAX_SIZE: usize = 1 << 26;

/// Checks a declared layer count against [`MAX_LAYERS`].
pub(crate) fn check_layers(field: &str, n: usize) -> Result<usize, ModelError> {
    if n > MAX_LAYERS {
        return Err(ModelError::bad_config(
            field,
            format!("{n} layers is more than {MAX_LAYERS}; the file is corrupt"),
        ));
    }
    Ok(n)
}

impl DecoderConfig {
    /// Checks the relations between the sizes.
    pub(crate) fn validate(&self) -> Result<(), ModelError> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_layers),
            ("num_attention_heads", self.num_heads),
            ("num_key_value_heads", self.num_kv_heads),
            ("head_dim", self.head_dim),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(ModelError::bad_config(field, "must be positive"));
            }
            if value > MAX_SIZE {
                return Err(ModelError::bad_config(
                    field,
                    format!("{value} is more than {MAX_SIZE}; the file is corrupt"),
                ));
            }
        }
        check_layers("num_hidden_layers", self.num_layers)?;
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(ModelError::bad_config(
                "num_key_value_heads",
                format!(
                    "{} does not divide num_attention_heads {}",
                    self.num_kv_heads, self.num_heads
                ),
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(ModelError::bad_config("head_dim", "must be even for RoPE"));
        }
        if self.layer_sliding.len() != self.num_layers {
            return Err(ModelError::bad_config(
                "layer_types",
                format!(
                    "{} entries for {} layers",
                    self.layer_sliding.len(),
                    self.num_layers
                ),
            ));
        }
        if self.layer_sliding.iter().any(|s| *s) && self.sliding_window.is_none() {
            return Err(ModelError::bad_config(
                "sliding_window",
                "sliding layers without a window size",
            ));
        }
        Ok(())
    }

    /// Reads a HuggingFace `config.json` document (Gemma 3's multimodal
    /// config is read through its `text_config`).
    pub fn from_hf_json(root: &Value) -> Result<Self, ModelError> {
        let model_type = str_field(root, "model_type")?;
        let (cfg, arch) = match model_type.as_str() {
            "gemma3" => match root.get("text_config") {
                Some(tc) => (tc, "gemma3"),
                None => (root, "gemma3"),
            },
            "gemma3_text" => (root, "gemma3"),
            "llama" | "mistral" | "qwen2" | "qwen3" | "phi3" | "gemma2" => {
                (root, model_type.as_str())
            }
            other => {
                return Err(ModelError::UnsupportedArchitecture {
                    found: other.to_string(),
                })
            }
        };
        let legacy = legacy_rope_keys(cfg);
        let cfg = &legacy;
        let gemma = arch.starts_with("gemma");
        let hidden_size = usize_field(cfg, "hidden_size")?;
        let num_heads = usize_field(cfg, "num_attention_heads")?;
        let num_kv_heads = opt_usize(cfg, "num_key_value_heads")?.unwrap_or(num_heads);
        let head_dim = match opt_usize(cfg, "head_dim")? {
            Some(d) => d,
            None => {
                if num_heads == 0 || hidden_size % num_heads != 0 {
                    return Err(ModelError::bad_config(
                        "num_attention_heads",
                        "does not divide hidden_size and no head_dim given",
                    ));
                }
                hidden_size / num_heads
            }
        };
        let num_layers = check_layers("num_hidden_layers", usize_field(cfg, "num_hidden_layers")?)?;
        if let Some(f) = cfg.get("partial_rotary_factor").and_then(Value::as_f64) {
            if f != 1.0 {
                return Err(ModelError::bad_config(
                    "partial_rotary_factor",
                    format!("{f} is not supported (only 1.0)"),
                ));
            }
        }
        let act_name = cfg
            .get("hidden_activation")
            .and_then(Value::as_str)
            .or_else(|| cfg.get("hidden_act").and_then(Value::as_str))
            .unwrap_or(if gemma { "gelu_pytorch_tanh" } else { "silu" });
        // gemma's HF code uses the tanh approximation whatever `hidden_act` says
        let activation = if gemma && act_name == "gelu" {
            Activation::GeluTanh
        } else {
            Activation::from_name(act_name)?
        };
        let sliding_value = opt_usize(cfg, "sliding_window")?;
        let layer_sliding = layer_sliding(cfg, arch, num_layers, sliding_value)?;
        let sliding_window = if layer_sliding.iter().any(|s| *s) {
            sliding_value
        } else {
            None
        };
        let default_theta = if arch == "gemma3" {
            1_000_000.0
        } else {
            10_000.0
        };
        let rope_theta = opt_f64(cfg, "rope_theta")?.unwrap_or(default_theta);
        let rope_local_theta = if arch == "gemma3" {
            Some(opt_f64(cfg, "rope_local_base_freq")?.unwrap_or(10_000.0))
        } else {
            None
        };
        let rope_scaling = rope_scaling(cfg)?;
        let attention_scale = match opt_f64(cfg, "query_pre_attn_scalar")? {
            Some(s) if gemma => {
                if s <= 0.0 {
                    return Err(ModelError::bad_config(
                        "query_pre_attn_scalar",
                        "must be positive",
                    ));
                }
                1.0 / s.sqrt()
            }
            _ => 1.0 / (head_dim as f64).sqrt(),
        };
        let softcap = |name: &str| -> Result<Option<f64>, ModelError> {
            Ok(opt_f64(cfg, name)?.filter(|v| *v > 0.0))
        };
        let (attn_logit_softcapping, final_logit_softcapping) = if gemma {
            (
                softcap("attn_logit_softcapping")?,
                softcap("final_logit_softcapping")?,
            )
        } else {
            (None, None)
        };
        let tie_default = gemma;
        let tie_word_embeddings = cfg
            .get("tie_word_embeddings")
            .or_else(|| root.get("tie_word_embeddings"))
            .and_then(Value::as_bool)
            .unwrap_or(tie_default);
        let eos_source = cfg.get("eos_token_id").or_else(|| root.get("eos_token_id"));
        let eos_token_ids = match eos_source {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_u64)
                .filter_map(|v| u32::try_from(v).ok())
                .collect(),
            Some(v) => v
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .into_iter()
                .collect(),
            None => Vec::new(),
        };
        let bos_token_id = cfg
            .get("bos_token_id")
            .or_else(|| root.get("bos_token_id"))
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok());
        let config = DecoderConfig {
            architecture: arch.to_string(),
            vocab_size: usize_field(cfg, "vocab_size")?,
            hidden_size,
            intermediate_size: usize_field(cfg, "intermediate_size")?,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            max_position_embeddings: opt_usize(cfg, "max_position_embeddings")?.unwrap_or(4096),
            sliding_window,
            eos_token_ids,
            bos_token_id,
            rms_norm_eps: opt_f64(cfg, "rms_norm_eps")?.unwrap_or(1e-6),
            rope_theta,
            rope_local_theta,
            rope_scaling,
            rope_interleaved: false,
            layer_sliding,
            activation,
            norm_weight_plus_one: gemma,
            embedding_scale: if gemma {
                Some((hidden_size as f64).sqrt())
            } else {
                None
            },
            qk_norm: matches!(arch, "qwen3" | "gemma3"),
            sandwich_norms: gemma,
            attn_logit_softcapping,
            final_logit_softcapping,
            attention_scale,
            tie_word_embeddings,
        };
        config.validate()?;
        Ok(config)
    }
}

/// transformers 5 writes `rope_parameters` (one object, or one per layer
/// type) instead of `rope_theta` / `rope_scaling` / `rope_local_base_freq`:
/// a copy of `cfg` with the classic keys filled in from it.
fn legacy_rope_keys(cfg: &Value) -> Value {
    let mut out = cfg.clone();
    let Some(rp) = cfg.get("rope_parameters").and_then(Value::as_object) else {
        return out;
    };
    let Some(obj) = out.as_object_mut() else {
        return out;
    };
    let (full, local) = if rp.contains_key("rope_theta") || rp.contains_key("rope_type") {
        (Some(rp), None)
    } else {
        (
            rp.get("full_attention").and_then(Value::as_object),
            rp.get("sliding_attention").and_then(Value::as_object),
        )
    };
    if let Some(full) = full {
        if let Some(theta) = full.get("rope_theta") {
            obj.entry("rope_theta").or_insert_with(|| theta.clone());
        }
        if let Some(f) = full.get("partial_rotary_factor") {
            obj.entry("partial_rotary_factor")
                .or_insert_with(|| f.clone());
        }
        let kind = full
            .get("rope_type")
            .and_then(Value::as_str)
            .unwrap_or("default");
        if kind != "default" && obj.get("rope_scaling").is_none_or(Value::is_null) {
            obj.insert("rope_scaling".into(), Value::Object(full.clone()));
        }
    }
    if let Some(theta) = local.and_then(|l| l.get("rope_theta")) {
        obj.entry("rope_local_base_freq")
            .or_insert_with(|| theta.clone());
    }
    out
}

/// Which layers use the sliding window, as transformers decides.
fn layer_sliding(
    cfg: &Value,
    arch: &str,
    num_layers: usize,
    window: Option<usize>,
) -> Result<Vec<bool>, ModelError> {
    if let Some(types) = cfg.get("layer_types").and_then(Value::as_array) {
        let out: Vec<bool> = types
            .iter()
            .map(|t| t.as_str() == Some("sliding_attention"))
            .collect();
        if out.len() != num_layers {
            return Err(ModelError::bad_config(
                "layer_types",
                format!("{} entries for {num_layers} layers", out.len()),
            ));
        }
        // transformers ignores the layer type when there is no window
        return Ok(out.into_iter().map(|s| s && window.is_some()).collect());
    }
    if window.is_none() {
        return Ok(vec![false; num_layers]);
    }
    let out = match arch {
        "mistral" | "phi3" => vec![true; num_layers],
        "qwen2" | "qwen3" => {
            let enabled = cfg
                .get("use_sliding_window")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let max_window_layers = opt_usize(cfg, "max_window_layers")?.unwrap_or(num_layers);
            (0..num_layers)
                .map(|i| enabled && i >= max_window_layers)
                .collect()
        }
        "gemma2" => (0..num_layers).map(|i| i % 2 == 0).collect(),
        "gemma3" => {
            let pattern = opt_usize(cfg, "sliding_window_pattern")?
                .unwrap_or(6)
                .max(1);
            (0..num_layers).map(|i| (i + 1) % pattern != 0).collect()
        }
        _ => vec![false; num_layers],
    };
    Ok(out)
}

fn rope_scaling(cfg: &Value) -> Result<RopeScaling, ModelError> {
    let Some(rs) = cfg.get("rope_scaling").filter(|v| !v.is_null()) else {
        return Ok(RopeScaling::None);
    };
    let kind = rs
        .get("rope_type")
        .or_else(|| rs.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let num = |name: &str| -> Result<f64, ModelError> {
        rs.get(name).and_then(Value::as_f64).ok_or_else(|| {
            ModelError::bad_config(format!("rope_scaling.{name}"), "missing or not a number")
        })
    };
    match kind {
        "default" => Ok(RopeScaling::None),
        "linear" => Ok(RopeScaling::Linear {
            factor: num("factor")?,
        }),
        "llama3" => Ok(RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position_embeddings: num("original_max_position_embeddings")?,
        }),
        other => Err(ModelError::bad_config(
            "rope_scaling.rope_type",
            format!("`{other}` is not supported (default, linear, llama3)"),
        )),
    }
}

fn str_field(cfg: &Value, name: &str) -> Result<String, ModelError> {
    cfg.get(name)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| ModelError::bad_config(name, "missing or not a string"))
}

fn usize_field(cfg: &Value, name: &str) -> Result<usize, ModelError> {
    opt_usize(cfg, name)?.ok_or_else(|| ModelError::bad_config(name, "missing"))
}

fn opt_usize(cfg: &Value, name: &str) -> Result<Option<usize>, ModelError> {
    match cfg.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|v| usize::try_from(v).ok())
            .map(Some)
            .ok_or_else(|| ModelError::bad_config(name, "not a non-negative integer")),
    }
}

fn opt_f64(cfg: &Value, name: &str) -> Result<Option<f64>, ModelError> {
    match cfg.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| ModelError::bad_config(name, "not a number")),
    }
}

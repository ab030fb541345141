//! Loading a GGUF file (llama.cpp's format): metadata to [`DecoderConfig`],
//! tensors to quantized linear layers.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::{gguf_file, QTensor};
use candle_core::{DType, Device, Tensor};

use super::config::{Activation, DecoderConfig, RopeScaling};
use super::error::ModelError;
use super::linear::{Linear, MultiLinear};
use super::{DecoderModel, Embedding, Layer};

/// Metadata and tensors of an open GGUF file.
struct Gguf<'a> {
    ct: &'a gguf_file::Content,
    file: File,
    device: Device,
}

impl Gguf<'_> {
    fn has(&self, name: &str) -> bool {
        self.ct.tensor_infos.contains_key(name)
    }

    fn qtensor(&mut self, name: &str) -> Result<QTensor, ModelError> {
        if !self.has(name) {
            return Err(ModelError::MissingTensor(name.to_string()));
        }
        Ok(self.ct.tensor(&mut self.file, name, &self.device)?)
    }

    fn qtensor_2d(&mut self, name: &str, out: usize, inp: usize) -> Result<QTensor, ModelError> {
        let q = self.qtensor(name)?;
        if q.shape().dims() != [out, inp] {
            return Err(ModelError::BadTensorShape {
                name: name.to_string(),
                found: q.shape().dims().to_vec(),
                expected: vec![out, inp],
            });
        }
        Ok(q)
    }

    /// A small tensor (norm weight, bias) dequantized to F32.
    fn vector(&mut self, name: &str, len: usize) -> Result<Tensor, ModelError> {
        let t = self.qtensor(name)?.dequantize(&self.device)?;
        if t.dims() != [len] {
            return Err(ModelError::BadTensorShape {
                name: name.to_string(),
                found: t.dims().to_vec(),
                expected: vec![len],
            });
        }
        Ok(t)
    }

    fn opt_vector(&mut self, name: &str, len: usize) -> Result<Option<Tensor>, ModelError> {
        if self.has(name) {
            self.vector(name, len).map(Some)
        } else {
            Ok(None)
        }
    }
}

fn md_usize(ct: &gguf_file::Content, key: &str) -> Result<Option<usize>, ModelError> {
    use gguf_file::Value as V;
    let Some(v) = ct.metadata.get(key) else {
        return Ok(None);
    };
    let n: Option<u64> = match v {
        V::U8(x) => Some(u64::from(*x)),
        V::U16(x) => Some(u64::from(*x)),
        V::U32(x) => Some(u64::from(*x)),
        V::U64(x) => Some(*x),
        V::I8(x) => u64::try_from(*x).ok(),
        V::I16(x) => u64::try_from(*x).ok(),
        V::I32(x) => u64::try_from(*x).ok(),
        V::I64(x) => u64::try_from(*x).ok(),
        _ => None,
    };
    match n.and_then(|n| usize::try_from(n).ok()) {
        Some(n) => Ok(Some(n)),
        None => Err(ModelError::bad_config(key, "not a non-negative integer")),
    }
}

fn md_req(ct: &gguf_file::Content, key: &str) -> Result<usize, ModelError> {
    md_usize(ct, key)?.ok_or_else(|| ModelError::bad_config(key, "missing from GGUF metadata"))
}

fn md_f64(ct: &gguf_file::Content, key: &str) -> Result<Option<f64>, ModelError> {
    use gguf_file::Value as V;
    match ct.metadata.get(key) {
        None => Ok(None),
        Some(V::F32(x)) => Ok(Some(f64::from(*x))),
        Some(V::F64(x)) => Ok(Some(*x)),
        Some(_) => Err(ModelError::bad_config(key, "not a float")),
    }
}

fn md_str<'a>(ct: &'a gguf_file::Content, key: &str) -> Option<&'a str> {
    ct.metadata
        .get(key)
        .and_then(|v| v.to_string().ok())
        .map(String::as_str)
}

/// Which layers use the sliding window, as llama.cpp decides: the
/// `sliding_window_pattern` key (a bool per layer, or n: every n-th layer is
/// global, 0: none is), else the family's default (gemma2: 2, gemma3: 6;
/// llama.cpp disables Phi-3's window, so it is off here too).
fn swa_layers(
    ct: &gguf_file::Content,
    pattern_key: &str,
    family: &str,
    num_layers: usize,
) -> Result<Vec<bool>, ModelError> {
    if let Some(gguf_file::Value::Array(items)) = ct.metadata.get(pattern_key) {
        let flags: Vec<bool> = items.iter().filter_map(|v| v.to_bool().ok()).collect();
        if flags.len() != num_layers {
            return Err(ModelError::bad_config(
                pattern_key,
                format!("{} flags for {num_layers} layers", flags.len()),
            ));
        }
        return Ok(flags);
    }
    let default = match family {
        "gemma2" => 2,
        "gemma3" => 6,
        _ => return Ok(vec![false; num_layers]),
    };
    let n = md_usize(ct, pattern_key)?.unwrap_or(default);
    Ok((0..num_layers).map(|i| n == 0 || i % n < n - 1).collect())
}

/// The configuration a GGUF file's metadata describes.
fn config_from_gguf(
    ct: &gguf_file::Content,
    vocab_size: usize,
) -> Result<DecoderConfig, ModelError> {
    let arch = md_str(ct, "general.architecture")
        .ok_or_else(|| ModelError::bad_config("general.architecture", "missing"))?
        .to_string();
    let family = match arch.as_str() {
        "llama" | "mistral" => "llama",
        "qwen2" | "qwen3" | "phi3" | "gemma2" | "gemma3" => arch.as_str(),
        _ => return Err(ModelError::UnsupportedArchitecture { found: arch }),
    };
    let key = |k: &str| format!("{arch}.{k}");
    let gemma = family.starts_with("gemma");
    let hidden_size = md_req(ct, &key("embedding_length"))?;
    let num_layers = super::config::check_layers("block_count", md_req(ct, &key("block_count"))?)?;
    let num_heads = md_req(ct, &key("attention.head_count"))?;
    let num_kv_heads = md_usize(ct, &key("attention.head_count_kv"))?.unwrap_or(num_heads);
    if num_heads == 0 {
        return Err(ModelError::bad_config(
            key("attention.head_count"),
            "must be positive",
        ));
    }
    let head_dim = md_usize(ct, &key("attention.key_length"))?.unwrap_or(hidden_size / num_heads);
    if let Some(rope_dim) = md_usize(ct, &key("rope.dimension_count"))? {
        if rope_dim != head_dim {
            return Err(ModelError::bad_config(
                key("rope.dimension_count"),
                format!("partial rotary ({rope_dim} of {head_dim}) is not supported"),
            ));
        }
    }
    // gemma2's llama.cpp default window is 4096
    let window = match md_usize(ct, &key("attention.sliding_window"))? {
        None if family == "gemma2" => Some(4096),
        w => w.filter(|w| *w > 0),
    };
    let layer_sliding = match window {
        None => vec![false; num_layers],
        Some(_) => swa_layers(
            ct,
            &key("attention.sliding_window_pattern"),
            family,
            num_layers,
        )?,
    };
    let sliding_window = if layer_sliding.iter().any(|s| *s) {
        window
    } else {
        None
    };
    let rope_scaling = match md_str(ct, &key("rope.scaling.type")) {
        Some("linear") => match md_f64(ct, &key("rope.scaling.factor"))? {
            Some(f) if f > 0.0 && f != 1.0 => RopeScaling::Linear { factor: f },
            _ => RopeScaling::None,
        },
        Some("none") | None => RopeScaling::None,
        Some(other) => {
            return Err(ModelError::bad_config(
                key("rope.scaling.type"),
                format!("`{other}` is not supported"),
            ))
        }
    };
    // llama.cpp: the 27B Gemmas scale by hidden / heads (their query_pre_attn_scalar)
    let is_27b =
        (family == "gemma2" && num_layers == 46) || (family == "gemma3" && num_layers == 62);
    let attention_scale = if is_27b {
        1.0 / ((hidden_size / num_heads) as f64).sqrt()
    } else {
        1.0 / (head_dim as f64).sqrt()
    };
    let mut eos_token_ids = Vec::new();
    for k in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"] {
        if let Some(id) = md_usize(ct, k)?.and_then(|v| u32::try_from(v).ok()) {
            if !eos_token_ids.contains(&id) {
                eos_token_ids.push(id);
            }
        }
    }
    let softcap = |k: &str| -> Result<Option<f64>, ModelError> {
        Ok(md_f64(ct, &key(k))?.filter(|v| *v > 0.0 && gemma))
    };
    let config = DecoderConfig {
        architecture: family.to_string(),
        vocab_size,
        hidden_size,
        intermediate_size: md_req(ct, &key("feed_forward_length"))?,
        num_layers,
        num_heads,
        num_kv_heads,
        head_dim,
        max_position_embeddings: md_usize(ct, &key("context_length"))?.unwrap_or(4096),
        sliding_window,
        eos_token_ids,
        bos_token_id: md_usize(ct, "tokenizer.ggml.bos_token_id")?
            .and_then(|v| u32::try_from(v).ok()),
        rms_norm_eps: md_f64(ct, &key("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5),
        rope_theta: md_f64(ct, &key("rope.freq_base"))?.unwrap_or(10_000.0),
        rope_local_theta: if family == "gemma3" {
            Some(md_f64(ct, &key("rope.freq_base_swa"))?.unwrap_or(10_000.0))
        } else {
            None
        },
        rope_scaling,
        // llama.cpp permutes Q/K of llama-architecture models for interleaved RoPE
        rope_interleaved: family == "llama",
        layer_sliding,
        activation: if gemma {
            Activation::GeluTanh
        } else {
            Activation::Silu
        },
        // llama.cpp's converter stores Gemma norms as 1 + w already
        norm_weight_plus_one: false,
        embedding_scale: if gemma {
            Some((hidden_size as f64).sqrt())
        } else {
            None
        },
        qk_norm: matches!(family, "qwen3" | "gemma3"),
        sandwich_norms: gemma,
        attn_logit_softcapping: softcap("attn_logit_softcapping")?,
        final_logit_softcapping: softcap("final_logit_softcapping")?,
        attention_scale,
        tie_word_embeddings: !ct.tensor_infos.contains_key("output.weight"),
    };
    config.validate()?;
    Ok(config)
}

impl DecoderModel {
    /// Loads a GGUF file (llama, mistral, qwen2, qwen3, phi3, gemma2, gemma3;
    /// F32/F16/Q8_0/Q4_0/Q4_K/Q6_K…); returns the parsed content too (its
    /// metadata feeds the tokenizer and chat template). Computes in F32.
    pub fn load_gguf(
        path: &Path,
        device: &Device,
    ) -> Result<(Self, gguf_file::Content), ModelError> {
        let io_err = |source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();
        super::gguf_header::check(&mut file, len)?;
        let ct = gguf_file::Content::read(&mut file)?;
        let model = {
            let mut g = Gguf {
                ct: &ct,
                file,
                device: device.clone(),
            };
            let embed = Arc::new(g.qtensor("token_embd.weight")?);
            let (vocab_size, _) = embed.shape().dims2()?;
            let mut config = config_from_gguf(&ct, vocab_size)?;
            if g.has("rope_freqs.weight") {
                let f = g.vector("rope_freqs.weight", config.head_dim / 2)?;
                config.rope_scaling = RopeScaling::Factors(f.to_vec1::<f32>()?);
            }
            Self::from_gguf_tensors(config, &mut g, embed)?
        };
        Ok((model, ct))
    }

    fn from_gguf_tensors(
        config: DecoderConfig,
        g: &mut Gguf<'_>,
        embed: Arc<QTensor>,
    ) -> Result<Self, ModelError> {
        let (hidden, inter) = (config.hidden_size, config.intermediate_size);
        let (nh, nkv, hd) = (config.num_heads, config.num_kv_heads, config.head_dim);
        let (ed, eh) = embed.shape().dims2()?;
        if eh != hidden {
            return Err(ModelError::BadTensorShape {
                name: "token_embd.weight".into(),
                found: vec![ed, eh],
                expected: vec![config.vocab_size, hidden],
            });
        }
        let mut layers = Vec::with_capacity(config.num_layers);
        for i in 0..config.num_layers {
            let p = format!("blk.{i}");
            let qkv = if g.has(&format!("{p}.attn_qkv.weight")) {
                let q =
                    g.qtensor_2d(&format!("{p}.attn_qkv.weight"), (nh + 2 * nkv) * hd, hidden)?;
                let b = g.opt_vector(&format!("{p}.attn_qkv.bias"), (nh + 2 * nkv) * hd)?;
                MultiLinear::Fused {
                    linear: Linear::from_qtensor(Arc::new(q), b)?,
                    sizes: vec![nh * hd, nkv * hd, nkv * hd],
                }
            } else {
                let mut parts = Vec::with_capacity(3);
                for (name, rows) in [
                    ("attn_q", nh * hd),
                    ("attn_k", nkv * hd),
                    ("attn_v", nkv * hd),
                ] {
                    let q = g.qtensor_2d(&format!("{p}.{name}.weight"), rows, hidden)?;
                    let b = g.opt_vector(&format!("{p}.{name}.bias"), rows)?;
                    parts.push((q, b));
                }
                MultiLinear::fuse_quant(parts)?
            };
            let gate_up = if g.has(&format!("{p}.ffn_gate.weight")) {
                let gate = g.qtensor_2d(&format!("{p}.ffn_gate.weight"), inter, hidden)?;
                let up = g.qtensor_2d(&format!("{p}.ffn_up.weight"), inter, hidden)?;
                MultiLinear::fuse_quant(vec![(gate, None), (up, None)])?
            } else {
                // Phi-3: ffn_up holds gate and up stacked
                let q = g.qtensor_2d(&format!("{p}.ffn_up.weight"), 2 * inter, hidden)?;
                MultiLinear::Fused {
                    linear: Linear::from_qtensor(Arc::new(q), None)?,
                    sizes: vec![inter, inter],
                }
            };
            let (q_norm, k_norm) = if config.qk_norm {
                (
                    Some(g.vector(&format!("{p}.attn_q_norm.weight"), hd)?),
                    Some(g.vector(&format!("{p}.attn_k_norm.weight"), hd)?),
                )
            } else {
                (None, None)
            };
            let (post_attn_norm, post_ffn_norm) = if config.sandwich_norms {
                (
                    Some(g.vector(&format!("{p}.post_attention_norm.weight"), hidden)?),
                    Some(g.vector(&format!("{p}.post_ffw_norm.weight"), hidden)?),
                )
            } else {
                (None, None)
            };
            let o = g.qtensor_2d(&format!("{p}.attn_output.weight"), hidden, nh * hd)?;
            let o_bias = g.opt_vector(&format!("{p}.attn_output.bias"), hidden)?;
            let down = g.qtensor_2d(&format!("{p}.ffn_down.weight"), hidden, inter)?;
            layers.push(Layer {
                input_norm: g.vector(&format!("{p}.attn_norm.weight"), hidden)?,
                qkv,
                q_norm,
                k_norm,
                o_proj: Linear::from_qtensor(Arc::new(o), o_bias)?,
                post_attn_norm,
                pre_ffn_norm: g.vector(&format!("{p}.ffn_norm.weight"), hidden)?,
                gate_up,
                down: Linear::from_qtensor(Arc::new(down), None)?,
                post_ffn_norm,
            });
        }
        let final_norm = g.vector("output_norm.weight", hidden)?;
        let lm_head = if g.has("output.weight") {
            let q = g.qtensor_2d("output.weight", config.vocab_size, hidden)?;
            Linear::from_qtensor(Arc::new(q), None)?
        } else {
            Linear::from_qtensor(embed.clone(), None)?
        };
        let ropes = Self::make_ropes(&config);
        Ok(DecoderModel {
            config,
            embed: Embedding::Quant(embed),
            layers,
            final_norm,
            lm_head,
            ropes,
            dtype: DType::F32,
            device: g.device.clone(),
        })
    }
}

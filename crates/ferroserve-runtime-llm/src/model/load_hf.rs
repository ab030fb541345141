//! Loading a HuggingFace model folder: `config.json` and safetensors
//! (single file or shards listed in `model.safetensors.index.json`), memory-mapped.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde_json::Value;

use super::config::DecoderConfig;
use super::error::ModelError;
use super::linear::{Linear, MultiLinear};
use super::{DecoderModel, Embedding, Layer};

fn read_json(path: &Path) -> Result<Value, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| ModelError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// The safetensors files of a folder: the index's shards, `model.safetensors`,
/// or every `*.safetensors` file.
fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let json = read_json(&index)?;
        let Some(map) = json.get("weight_map").and_then(Value::as_object) else {
            return Err(ModelError::bad_config(
                "weight_map",
                "missing from model.safetensors.index.json",
            ));
        };
        let mut files: Vec<String> = map
            .values()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        files.sort();
        files.dedup();
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let entries = std::fs::read_dir(dir).map_err(|source| ModelError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ModelError::MissingTensor(format!(
            "no safetensors file in {}",
            dir.display()
        )));
    }
    Ok(files)
}

/// Tensor access with errors that name the tensor.
struct Weights<'a> {
    vb: VarBuilder<'a>,
    dtype: DType,
    plus_one: bool,
}

impl Weights<'_> {
    fn has(&self, name: &str) -> bool {
        self.vb.contains_tensor(name)
    }

    fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor, ModelError> {
        self.get_dtype(name, shape, self.dtype)
    }

    fn get_dtype(&self, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor, ModelError> {
        if !self.has(name) {
            return Err(ModelError::MissingTensor(name.to_string()));
        }
        let t = self.vb.get_unchecked_dtype(name, dtype)?;
        if t.dims() != shape {
            return Err(ModelError::BadTensorShape {
                name: name.to_string(),
                found: t.dims().to_vec(),
                expected: shape.to_vec(),
            });
        }
        Ok(t)
    }

    fn opt(&self, name: &str, shape: &[usize]) -> Result<Option<Tensor>, ModelError> {
        if self.has(name) {
            self.get(name, shape).map(Some)
        } else {
            Ok(None)
        }
    }

    /// An RMSNorm weight (Gemma: `1 + w`, computed in f32).
    fn norm(&self, name: &str, dim: usize) -> Result<Tensor, ModelError> {
        if self.plus_one {
            let w = self.get_dtype(name, &[dim], DType::F32)?;
            Ok((w + 1.0)?.to_dtype(self.dtype)?)
        } else {
            self.get(name, &[dim])
        }
    }

    fn linear(&self, prefix: &str, out: usize, inp: usize) -> Result<Linear, ModelError> {
        Ok(Linear::Dense {
            weight: self.get(&format!("{prefix}.weight"), &[out, inp])?,
            bias: self.opt(&format!("{prefix}.bias"), &[out])?,
        })
    }

    fn part(
        &self,
        prefix: &str,
        out: usize,
        inp: usize,
    ) -> Result<(Tensor, Option<Tensor>), ModelError> {
        Ok((
            self.get(&format!("{prefix}.weight"), &[out, inp])?,
            self.opt(&format!("{prefix}.bias"), &[out])?,
        ))
    }
}

impl DecoderModel {
    /// Loads a HuggingFace folder: `config.json` plus `model.safetensors` or
    /// the shards of `model.safetensors.index.json`. Weights are converted to
    /// `dtype`, which is also the compute dtype.
    pub fn load_hf(dir: &Path, dtype: DType, device: &Device) -> Result<Self, ModelError> {
        let json = read_json(&dir.join("config.json"))?;
        let config = DecoderConfig::from_hf_json(&json)?;
        let files = safetensors_files(dir)?;
        for f in &files {
            if !f.is_file() {
                return Err(ModelError::Io {
                    path: f.clone(),
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "shard not found"),
                });
            }
        }
        // SAFETY: the files are memory-mapped read-only; they must not be
        // modified while the model loads (tensors are copied out of the map).
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, dtype, device)? };
        let w = Weights {
            vb,
            dtype,
            plus_one: config.norm_weight_plus_one,
        };
        Self::from_hf_weights(config, &w, dtype, device)
    }

    fn from_hf_weights(
        config: DecoderConfig,
        w: &Weights<'_>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let prefix = ["model", "model.language_model", "language_model.model"]
            .into_iter()
            .find(|p| w.has(&format!("{p}.embed_tokens.weight")))
            .ok_or_else(|| ModelError::MissingTensor("model.embed_tokens.weight".into()))?;
        let (hidden, inter) = (config.hidden_size, config.intermediate_size);
        let (nh, nkv, hd) = (config.num_heads, config.num_kv_heads, config.head_dim);
        let embed = w.get(
            &format!("{prefix}.embed_tokens.weight"),
            &[config.vocab_size, hidden],
        )?;
        let mut layers = Vec::with_capacity(config.num_layers);
        for i in 0..config.num_layers {
            let p = format!("{prefix}.layers.{i}");
            let attn = format!("{p}.self_attn");
            let mlp = format!("{p}.mlp");
            let sizes = vec![nh * hd, nkv * hd, nkv * hd];
            let qkv = if w.has(&format!("{attn}.qkv_proj.weight")) {
                MultiLinear::Fused {
                    linear: w.linear(&format!("{attn}.qkv_proj"), (nh + 2 * nkv) * hd, hidden)?,
                    sizes,
                }
            } else {
                MultiLinear::fuse_dense(vec![
                    w.part(&format!("{attn}.q_proj"), nh * hd, hidden)?,
                    w.part(&format!("{attn}.k_proj"), nkv * hd, hidden)?,
                    w.part(&format!("{attn}.v_proj"), nkv * hd, hidden)?,
                ])?
            };
            let gate_up = if w.has(&format!("{mlp}.gate_up_proj.weight")) {
                MultiLinear::Fused {
                    linear: w.linear(&format!("{mlp}.gate_up_proj"), 2 * inter, hidden)?,
                    sizes: vec![inter, inter],
                }
            } else {
                MultiLinear::fuse_dense(vec![
                    w.part(&format!("{mlp}.gate_proj"), inter, hidden)?,
                    w.part(&format!("{mlp}.up_proj"), inter, hidden)?,
                ])?
            };
            let (q_norm, k_norm) = if config.qk_norm {
                (
                    Some(w.norm(&format!("{attn}.q_norm.weight"), hd)?),
                    Some(w.norm(&format!("{attn}.k_norm.weight"), hd)?),
                )
            } else {
                (None, None)
            };
            let (post_attn_norm, pre_ffn_norm, post_ffn_norm) = if config.sandwich_norms {
                (
                    Some(w.norm(&format!("{p}.post_attention_layernorm.weight"), hidden)?),
                    w.norm(&format!("{p}.pre_feedforward_layernorm.weight"), hidden)?,
                    Some(w.norm(&format!("{p}.post_feedforward_layernorm.weight"), hidden)?),
                )
            } else {
                (
                    None,
                    w.norm(&format!("{p}.post_attention_layernorm.weight"), hidden)?,
                    None,
                )
            };
            layers.push(Layer {
                input_norm: w.norm(&format!("{p}.input_layernorm.weight"), hidden)?,
                qkv,
                q_norm,
                k_norm,
                o_proj: w.linear(&format!("{attn}.o_proj"), hidden, nh * hd)?,
                post_attn_norm,
                pre_ffn_norm,
                gate_up,
                down: w.linear(&format!("{mlp}.down_proj"), hidden, inter)?,
                post_ffn_norm,
            });
        }
        let final_norm = w.norm(&format!("{prefix}.norm.weight"), hidden)?;
        let head_name = ["lm_head.weight", "language_model.lm_head.weight"]
            .into_iter()
            .find(|n| w.has(n));
        let lm_head = match head_name {
            Some(name) if !config.tie_word_embeddings => Linear::Dense {
                weight: w.get(name, &[config.vocab_size, hidden])?,
                bias: None,
            },
            _ => Linear::Dense {
                weight: embed.clone(),
                bias: None,
            },
        };
        let ropes = Self::make_ropes(&config);
        Ok(DecoderModel {
            config,
            embed: Embedding::Dense(embed),
            layers,
            final_norm,
            lm_head,
            ropes,
            dtype,
            device: device.clone(),
        })
    }
}

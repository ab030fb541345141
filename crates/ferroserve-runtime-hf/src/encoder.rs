//! The forward pass of BERT-family encoders (BERT, RoBERTa / XLM-RoBERTa,
//! DistilBERT, MPNet) and their task heads, on candle tensors. Every
//! family is a post-LayerNorm transformer; they differ in weight names,
//! position ids, token types and MPNet's relative attention bias.

use candle_core::{DType, Device, Tensor, D};
use candle_nn::{LayerNorm, Module};

use crate::config::{Activation, EncoderConfig, Family, Task};
use crate::error::{HfError, Result};
use crate::weights::Weights;

/// A dense layer `y = x Wᵀ + b` over rows `x: [N, in]`.
struct Linear {
    /// `[out, in]`, as stored.
    w: Tensor,
    b: Option<Tensor>,
}

impl Linear {
    fn load(w: &Weights, prefix: &str, inp: usize, out: usize) -> Result<Linear> {
        Ok(Linear {
            w: w.get(&format!("{prefix}.weight"), &[out, inp])?,
            b: Some(w.get(&format!("{prefix}.bias"), &[out])?),
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = x.matmul(&self.w.t()?)?;
        match &self.b {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

fn layer_norm(w: &Weights, prefix: &str, size: usize, eps: f64) -> Result<LayerNorm> {
    let weight = w.get_any(
        &[&format!("{prefix}.weight"), &format!("{prefix}.gamma")],
        &[size],
    )?;
    let bias = w.get_any(
        &[&format!("{prefix}.bias"), &format!("{prefix}.beta")],
        &[size],
    )?;
    Ok(LayerNorm::new(weight, bias, eps))
}

/// One transformer layer with fused query/key/value projections.
struct Layer {
    qkv: Linear,
    out: Linear,
    ln_attn: LayerNorm,
    ff_in: Linear,
    ff_out: Linear,
    ln_ff: LayerNorm,
}

impl Layer {
    fn load(w: &Weights, cfg: &EncoderConfig, p: &str) -> Result<Layer> {
        let h = cfg.hidden_size;
        let i = cfg.intermediate_size;
        let eps = cfg.layer_norm_eps;
        let names: [&str; 8] = match cfg.family {
            Family::Bert | Family::Roberta => [
                "attention.self.query",
                "attention.self.key",
                "attention.self.value",
                "attention.output.dense",
                "attention.output.LayerNorm",
                "intermediate.dense",
                "output.dense",
                "output.LayerNorm",
            ],
            Family::DistilBert => [
                "attention.q_lin",
                "attention.k_lin",
                "attention.v_lin",
                "attention.out_lin",
                "sa_layer_norm",
                "ffn.lin1",
                "ffn.lin2",
                "output_layer_norm",
            ],
            Family::MpNet => [
                "attention.attn.q",
                "attention.attn.k",
                "attention.attn.v",
                "attention.attn.o",
                "attention.LayerNorm",
                "intermediate.dense",
                "output.dense",
                "output.LayerNorm",
            ],
        };
        let [q, k, v, o, ln1, f1, f2, ln2] = names;
        let q = Linear::load(w, &format!("{p}.{q}"), h, h)?;
        let k = Linear::load(w, &format!("{p}.{k}"), h, h)?;
        let v = Linear::load(w, &format!("{p}.{v}"), h, h)?;
        let bias = match (&q.b, &k.b, &v.b) {
            (Some(a), Some(b), Some(c)) => Some(Tensor::cat(&[a, b, c], 0)?),
            _ => None,
        };
        Ok(Layer {
            qkv: Linear {
                w: Tensor::cat(&[&q.w, &k.w, &v.w], 0)?,
                b: bias,
            },
            out: Linear::load(w, &format!("{p}.{o}"), h, h)?,
            ln_attn: layer_norm(w, &format!("{p}.{ln1}"), h, eps)?,
            ff_in: Linear::load(w, &format!("{p}.{f1}"), h, i)?,
            ff_out: Linear::load(w, &format!("{p}.{f2}"), i, h)?,
            ln_ff: layer_norm(w, &format!("{p}.{ln2}"), h, eps)?,
        })
    }

    /// `x: [B·T, H]`; `bias`: additive attention bias broadcastable to
    /// `[B, heads, T, T]`.
    fn forward(
        &self,
        x: &Tensor,
        bias: &Tensor,
        rel: Option<&Tensor>,
        shape: (usize, usize, usize, usize),
        act: Activation,
    ) -> candle_core::Result<Tensor> {
        let (b, t, heads, hd) = shape;
        let h = heads * hd;
        let qkv = self.qkv.forward(x)?;
        let split = |i: usize| -> candle_core::Result<Tensor> {
            qkv.narrow(1, i * h, h)?
                .reshape((b, t, heads, hd))?
                .transpose(1, 2)?
                .contiguous()
        };
        let (q, k, v) = (split(0)?, split(1)?, split(2)?);
        let scale = 1.0 / (hd as f64).sqrt();
        let mut scores = q.matmul(&k.t()?)?.affine(scale, 0.0)?;
        if let Some(rel) = rel {
            scores = scores.broadcast_add(rel)?;
        }
        scores = scores.broadcast_add(bias)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let ctx = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b * t, h))?;
        let x = self.ln_attn.forward(&(self.out.forward(&ctx)? + x)?)?;
        let ff = self.ff_out.forward(&act.apply(&self.ff_in.forward(&x)?)?)?;
        self.ln_ff.forward(&(ff + x)?)
    }
}

/// A task head on top of the encoder.
enum Head {
    /// Hidden states only (embeddings).
    None,
    /// First-token classification: optional dense + activation, then the classifier.
    Sequence {
        pre: Option<(Linear, Activation)>,
        out: Linear,
    },
    /// A classifier on every token.
    Token { out: Linear },
    /// Masked-language-model head: dense, activation, LayerNorm, decoder.
    MaskedLm {
        dense: Linear,
        act: Activation,
        ln: LayerNorm,
        decoder: Linear,
    },
}

/// A token batch: `batch` rows of `seq` tokens, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchInput {
    /// Token ids (padded).
    pub ids: Vec<u32>,
    /// Token type ids (zeros when the tokenizer gives none).
    pub type_ids: Vec<u32>,
    /// 1 for real tokens, 0 for padding.
    pub mask: Vec<u32>,
    /// Number of rows.
    pub batch: usize,
    /// Tokens per row.
    pub seq: usize,
}

/// A loaded encoder with the head of its task.
pub struct Encoder {
    cfg: EncoderConfig,
    device: Device,
    dtype: DType,
    word: Tensor,
    position: Tensor,
    token_type: Option<Tensor>,
    ln_emb: LayerNorm,
    layers: Vec<Layer>,
    rel_bias: Option<Tensor>,
    head: Head,
}

impl Encoder {
    /// Builds the encoder and the head for `task` from `weights`.
    pub fn load(
        cfg: &EncoderConfig,
        w: &Weights,
        task: Task,
        dtype: DType,
        device: &Device,
    ) -> Result<Encoder> {
        let h = cfg.hidden_size;
        let base = cfg.family.base_prefix(&cfg.model_type);
        let p = if w.contains(&format!("{base}.embeddings.word_embeddings.weight")) {
            format!("{base}.")
        } else {
            String::new()
        };
        let word = w.get(
            &format!("{p}embeddings.word_embeddings.weight"),
            &[cfg.vocab_size, h],
        )?;
        let position = w.get(
            &format!("{p}embeddings.position_embeddings.weight"),
            &[cfg.max_position_embeddings, h],
        )?;
        let token_type = if cfg.type_vocab_size > 0 {
            Some(w.get(
                &format!("{p}embeddings.token_type_embeddings.weight"),
                &[cfg.type_vocab_size, h],
            )?)
        } else {
            None
        };
        let ln_emb = layer_norm(
            w,
            &format!("{p}embeddings.LayerNorm"),
            h,
            cfg.layer_norm_eps,
        )?;
        let stack = match cfg.family {
            Family::DistilBert => "transformer.layer",
            _ => "encoder.layer",
        };
        let layers = (0..cfg.num_layers)
            .map(|i| Layer::load(w, cfg, &format!("{p}{stack}.{i}")))
            .collect::<Result<Vec<_>>>()?;
        let rel_bias = match cfg.family {
            Family::MpNet => Some(w.get(
                &format!("{p}encoder.relative_attention_bias.weight"),
                &[cfg.relative_attention_num_buckets, cfg.num_heads],
            )?),
            _ => None,
        };
        let head = load_head(cfg, w, task, &p, &word)?;
        Ok(Encoder {
            cfg: cfg.clone(),
            device: device.clone(),
            dtype,
            word,
            position,
            token_type,
            ln_emb,
            layers,
            rel_bias,
            head,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &EncoderConfig {
        &self.cfg
    }

    /// Last hidden states, `[batch·seq, hidden]`, in the compute dtype.
    pub fn hidden_states(&self, input: &BatchInput) -> Result<Tensor> {
        let (b, t) = (input.batch, input.seq);
        let n = b * t;
        if input.ids.len() != n || input.mask.len() != n || input.type_ids.len() != n {
            return Err(HfError::invalid("token batch has inconsistent lengths"));
        }
        if t == 0 || b == 0 {
            return Err(HfError::invalid("empty token batch"));
        }
        if let Some(&bad) = input
            .ids
            .iter()
            .find(|&&id| id as usize >= self.cfg.vocab_size)
        {
            return Err(HfError::invalid(format!(
                "token id {bad} is outside the vocabulary (size {})",
                self.cfg.vocab_size
            )));
        }
        let positions = self.position_ids(input);
        if let Some(&bad) = positions
            .iter()
            .find(|&&p| p as usize >= self.cfg.max_position_embeddings)
        {
            return Err(HfError::invalid(format!(
                "input too long: position {bad} exceeds the model's {} positions",
                self.cfg.max_positions()
            )));
        }
        let dev = &self.device;
        let ids = Tensor::from_vec(input.ids.clone(), n, dev)?;
        let pos = Tensor::from_vec(positions, n, dev)?;
        let mut x = (self.word.index_select(&ids, 0)? + self.position.index_select(&pos, 0)?)?;
        if let Some(tt) = &self.token_type {
            if let Some(&bad) = input
                .type_ids
                .iter()
                .find(|&&id| id as usize >= self.cfg.type_vocab_size)
            {
                return Err(HfError::invalid(format!(
                    "token type id {bad} out of range"
                )));
            }
            let types = Tensor::from_vec(input.type_ids.clone(), n, dev)?;
            x = (x + tt.index_select(&types, 0)?)?;
        }
        let mut x = self.ln_emb.forward(&x)?;
        let bias: Vec<f32> = input
            .mask
            .iter()
            .map(|&m| if m == 0 { f32::MIN } else { 0.0 })
            .collect();
        let bias = Tensor::from_vec(bias, (b, 1, 1, t), dev)?.to_dtype(self.dtype)?;
        let rel = match &self.rel_bias {
            Some(table) => Some(self.relative_bias(table, t)?),
            None => None,
        };
        let heads = self.cfg.num_heads;
        let shape = (b, t, heads, self.cfg.hidden_size / heads);
        for layer in &self.layers {
            x = layer.forward(&x, &bias, rel.as_ref(), shape, self.cfg.activation)?;
        }
        Ok(x)
    }

    /// Position ids: `0..T` for BERT and DistilBERT; for RoBERTa and MPNet
    /// `pad + 1 + k` for the k-th real token and `pad` for padding tokens
    /// (transformers' `create_position_ids_from_input_ids`).
    fn position_ids(&self, input: &BatchInput) -> Vec<u32> {
        let t = input.seq;
        if !self.cfg.family.offset_positions() {
            return (0..input.batch).flat_map(|_| 0..t as u32).collect();
        }
        let pad = self.cfg.pad_token_id;
        input
            .ids
            .chunks(t)
            .flat_map(|row| {
                let mut count = 0u32;
                row.iter()
                    .map(|&id| {
                        if id == pad {
                            pad
                        } else {
                            count += 1;
                            pad + count
                        }
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// MPNet's bidirectional relative-position bias, `[1, heads, T, T]`.
    fn relative_bias(&self, table: &Tensor, t: usize) -> Result<Tensor> {
        let buckets = self.cfg.relative_attention_num_buckets;
        let idx: Vec<u32> = (0..t)
            .flat_map(|i| (0..t).map(move |j| (i, j)))
            .map(|(i, j)| relative_bucket(j as i64 - i as i64, buckets, 128) as u32)
            .collect();
        let idx = Tensor::from_vec(idx, t * t, &self.device)?;
        let heads = self.cfg.num_heads;
        Ok(table
            .index_select(&idx, 0)?
            .reshape((t, t, heads))?
            .permute((2, 0, 1))?
            .unsqueeze(0)?
            .contiguous()?)
    }

    /// Classification logits of the first token of each row, `[batch, labels]`.
    pub fn sequence_logits(&self, hidden: &Tensor, batch: usize, seq: usize) -> Result<Tensor> {
        let Head::Sequence { pre, out } = &self.head else {
            return Err(HfError::config("model has no sequence-classification head"));
        };
        let first: Vec<u32> = (0..batch).map(|i| (i * seq) as u32).collect();
        let first = Tensor::from_vec(first, batch, &self.device)?;
        let mut x = hidden.index_select(&first, 0)?;
        if let Some((dense, act)) = pre {
            x = act.apply(&dense.forward(&x)?)?;
        }
        Ok(out.forward(&x)?.to_dtype(DType::F32)?)
    }

    /// Per-token classification logits, `[rows, labels]`.
    pub fn token_logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let Head::Token { out } = &self.head else {
            return Err(HfError::config("model has no token-classification head"));
        };
        Ok(out.forward(hidden)?.to_dtype(DType::F32)?)
    }

    /// Vocabulary logits of the given hidden rows, `[rows, vocab]`.
    pub fn mlm_logits(&self, rows: &Tensor) -> Result<Tensor> {
        let Head::MaskedLm {
            dense,
            act,
            ln,
            decoder,
        } = &self.head
        else {
            return Err(HfError::config("model has no masked-language-model head"));
        };
        let x = ln.forward(&act.apply(&dense.forward(rows)?)?)?;
        Ok(decoder.forward(&x)?.to_dtype(DType::F32)?)
    }

    /// The device tensors live on.
    pub fn device(&self) -> &Device {
        &self.device
    }
}

/// transformers' `relative_position_bucket` (MPNet / T5, bidirectional),
/// computed in `f32` as torch does.
pub fn relative_bucket(relative_position: i64, num_buckets: usize, max_distance: usize) -> usize {
    let half = (num_buckets / 2) as i64;
    let n = -relative_position;
    let mut ret = if n < 0 { half } else { 0 };
    let n = n.abs();
    let max_exact = half / 2;
    if n < max_exact {
        ret += n;
    } else {
        let ratio =
            (n as f32 / max_exact as f32).ln() / ((max_distance as f32) / (max_exact as f32)).ln();
        let large = max_exact + (ratio * (half - max_exact) as f32) as i64;
        ret += large.min(half - 1);
    }
    ret.max(0) as usize
}

fn load_head(cfg: &EncoderConfig, w: &Weights, task: Task, p: &str, word: &Tensor) -> Result<Head> {
    let h = cfg.hidden_size;
    let labels = cfg.num_labels();
    Ok(match task {
        Task::TextEmbedding => Head::None,
        Task::TokenClassification => Head::Token {
            out: Linear::load(w, "classifier", h, labels)?,
        },
        Task::SequenceClassification => match cfg.family {
            Family::Bert => Head::Sequence {
                pre: Some((
                    Linear::load(w, &format!("{p}pooler.dense"), h, h)?,
                    Activation::Tanh,
                )),
                out: Linear::load(w, "classifier", h, labels)?,
            },
            Family::Roberta | Family::MpNet => Head::Sequence {
                pre: Some((Linear::load(w, "classifier.dense", h, h)?, Activation::Tanh)),
                out: Linear::load(w, "classifier.out_proj", h, labels)?,
            },
            Family::DistilBert => Head::Sequence {
                pre: Some((Linear::load(w, "pre_classifier", h, h)?, Activation::Relu)),
                out: Linear::load(w, "classifier", h, labels)?,
            },
        },
        Task::FillMask => {
            let v = cfg.vocab_size;
            let (dense, act, ln, ln_eps, dec, bias) = match cfg.family {
                Family::Bert => (
                    "cls.predictions.transform.dense",
                    cfg.activation,
                    "cls.predictions.transform.LayerNorm",
                    cfg.layer_norm_eps,
                    "cls.predictions.decoder",
                    ["cls.predictions.bias", "cls.predictions.decoder.bias"],
                ),
                Family::Roberta | Family::MpNet => (
                    "lm_head.dense",
                    Activation::GeluErf,
                    "lm_head.layer_norm",
                    cfg.layer_norm_eps,
                    "lm_head.decoder",
                    ["lm_head.bias", "lm_head.decoder.bias"],
                ),
                Family::DistilBert => (
                    "vocab_transform",
                    cfg.activation,
                    "vocab_layer_norm",
                    1e-12,
                    "vocab_projector",
                    ["vocab_projector.bias", "vocab_projector.bias"],
                ),
            };
            let dec_name = format!("{dec}.weight");
            // Tied to the input embeddings: often left out of the checkpoint.
            let dec_w = if w.contains(&dec_name) {
                w.get(&dec_name, &[v, h])?
            } else {
                word.clone()
            };
            Head::MaskedLm {
                dense: Linear::load(w, dense, h, h)?,
                act,
                ln: layer_norm(w, ln, h, ln_eps)?,
                decoder: Linear {
                    w: dec_w,
                    b: Some(w.get_any(&bias, &[v])?),
                },
            }
        }
    })
}

/// Softmax over the last dimension of `[rows, classes]` logits.
pub fn softmax_rows(logits: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::ops::softmax(logits, D::Minus1)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_match_transformers() {
        // Values from transformers' MPNet relative_position_bucket(32, 128).
        let got: Vec<usize> = [-200i64, -20, -8, -7, -1, 0, 1, 7, 8, 20, 200]
            .iter()
            .map(|&r| relative_bucket(r, 32, 128))
            .collect();
        assert_eq!(got, vec![15, 10, 8, 7, 1, 0, 17, 23, 24, 26, 31]);
    }
}

//! Decoder-only transformer forward pass on candle, batched over sequences.
//!
//! One generic decoder covers Llama 2/3, Mistral, Qwen2, Qwen3, Phi-3 and
//! Gemma 2/3 through per-architecture options in [`DecoderConfig`]; weights
//! come from HuggingFace safetensors ([`DecoderModel::load_hf`]) or GGUF
//! ([`DecoderModel::load_gguf`]).
//!
//! [`DecoderModel::forward`] runs one engine step over several sequences:
//! every token of the step goes through the projections and the MLP as one
//! matmul; only attention runs per sequence, against its own [`SeqCache`].

mod attention;
mod cache;
mod config;
mod error;
mod gguf_header;
mod linear;
mod load_gguf;
mod load_hf;
mod rope;

use std::sync::Arc;

use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Tensor};

pub use cache::SeqCache;
pub use candle_core::quantized::gguf_file;
pub use config::{Activation, DecoderConfig, RopeScaling};
pub use error::{ModelError, SUPPORTED_ARCHITECTURES};

use attention::AttnPlan;
use cache::CacheSpec;
use linear::{Linear, MultiLinear};
use rope::Rope;

/// One sequence's part of an engine step.
pub struct SeqInput<'a> {
    /// The sequence's cache; the tokens are appended at position `cache.len()`.
    pub cache: &'a mut SeqCache,
    /// Tokens to run (a prefill chunk, or one token when decoding). Not empty.
    pub tokens: &'a [u32],
    /// Return the logits of the last token.
    pub want_logits: bool,
}

/// The token embedding table.
#[derive(Debug, Clone)]
enum Embedding {
    /// `[vocab, hidden]` in the compute dtype.
    Dense(Tensor),
    /// GGUF table: rows dequantized on lookup.
    Quant(Arc<QTensor>),
}

/// The weights of one decoder layer.
#[derive(Debug, Clone)]
struct Layer {
    input_norm: Tensor,
    /// Q, K, V.
    qkv: MultiLinear,
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    o_proj: Linear,
    post_attn_norm: Option<Tensor>,
    pre_ffn_norm: Tensor,
    /// Gate, up.
    gate_up: MultiLinear,
    down: Linear,
    post_ffn_norm: Option<Tensor>,
}

/// A decoder-only transformer ready to run.
#[derive(Debug, Clone)]
pub struct DecoderModel {
    config: DecoderConfig,
    embed: Embedding,
    layers: Vec<Layer>,
    final_norm: Tensor,
    lm_head: Linear,
    /// RoPE of the global layers, then (when different) of the sliding layers.
    ropes: Vec<Rope>,
    dtype: DType,
    device: Device,
}

/// Where one input's rows lie in the step.
#[derive(Debug, Clone, Copy)]
struct Span {
    row: usize,
    len: usize,
    pos: usize,
}

impl DecoderModel {
    /// The model's configuration.
    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// The compute dtype (also the cache's).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// One sequence's KV cache, all layers, empty.
    pub fn new_cache(&self) -> SeqCache {
        SeqCache::new(self.cache_spec())
    }

    fn cache_spec(&self) -> CacheSpec {
        CacheSpec {
            num_layers: self.config.num_layers,
            num_kv_heads: self.config.num_kv_heads,
            head_dim: self.config.head_dim,
            dtype: self.dtype,
            device: self.device.clone(),
        }
    }

    /// Bytes of keys and values one cached position takes, all layers.
    pub fn kv_bytes_per_token(&self) -> usize {
        2 * self.config.num_layers
            * self.config.num_kv_heads
            * self.config.head_dim
            * self.dtype.size_in_bytes()
    }

    /// One engine step: each input appends its `tokens` at position
    /// `cache.len()`. Returns F32 logits on the CPU, `[n, vocab]` where `n` is
    /// the number of inputs with `want_logits`, in input order (the last
    /// position of each). On error no cache length changes.
    pub fn forward(&self, batch: &mut [SeqInput<'_>]) -> Result<Tensor, ModelError> {
        let cfg = &self.config;
        let mut ids = Vec::new();
        let mut positions = Vec::new();
        let mut spans = Vec::with_capacity(batch.len());
        for (i, input) in batch.iter().enumerate() {
            if input.tokens.is_empty() {
                return Err(ModelError::InvalidInput(format!("input {i} has no tokens")));
            }
            if let Some(bad) = input.tokens.iter().find(|t| **t as usize >= cfg.vocab_size) {
                return Err(ModelError::InvalidInput(format!(
                    "token id {bad} is outside the vocabulary of {}",
                    cfg.vocab_size
                )));
            }
            let pos = input.cache.len();
            let end = pos + input.tokens.len();
            if u32::try_from(end).is_err() {
                return Err(ModelError::InvalidInput("sequence too long".into()));
            }
            spans.push(Span {
                row: ids.len(),
                len: input.tokens.len(),
                pos,
            });
            ids.extend_from_slice(input.tokens);
            positions.extend(pos as u32..end as u32);
        }
        if batch.is_empty() {
            return Ok(Tensor::zeros(
                (0, cfg.vocab_size),
                DType::F32,
                &Device::Cpu,
            )?);
        }
        for (input, span) in batch.iter_mut().zip(&spans) {
            input.cache.reserve(span.pos + span.len)?;
        }
        let total = ids.len();
        let ids = Tensor::from_vec(ids, total, &self.device)?;
        let mut h = self.embed(&ids)?;

        let rope_tables = self
            .ropes
            .iter()
            .map(|r| r.cos_sin(&positions, self.dtype, &self.device))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let plans = AttnPlan::for_step(cfg, &spans_info(&spans), self.dtype, &self.device)?;

        for (li, layer) in self.layers.iter().enumerate() {
            let sliding = cfg.layer_sliding.get(li).copied().unwrap_or(false);
            let rope_idx = if sliding && self.ropes.len() > 1 {
                1
            } else {
                0
            };
            let Some((cos, sin)) = rope_tables.get(rope_idx) else {
                return Err(ModelError::InvalidInput("missing rope table".into()));
            };
            h = self.layer_forward(layer, li, sliding, h, cos, sin, batch, &spans, &plans)?;
        }
        for (input, span) in batch.iter_mut().zip(&spans) {
            input.cache.set_len(span.pos + span.len);
        }

        let rows: Vec<u32> = batch
            .iter()
            .zip(&spans)
            .filter(|(input, _)| input.want_logits)
            .map(|(_, s)| (s.row + s.len - 1) as u32)
            .collect();
        if rows.is_empty() {
            return Ok(Tensor::zeros(
                (0, cfg.vocab_size),
                DType::F32,
                &Device::Cpu,
            )?);
        }
        let selected = if rows.len() == total {
            h
        } else {
            let n = rows.len();
            h.index_select(&Tensor::from_vec(rows, n, &self.device)?, 0)?
        };
        let x = self.norm(&selected, &self.final_norm)?;
        let mut logits = self.lm_head.forward(&x)?.to_dtype(DType::F32)?;
        if let Some(cap) = cfg.final_logit_softcapping {
            logits = ((logits / cap)?.tanh()? * cap)?;
        }
        Ok(logits.to_device(&Device::Cpu)?)
    }

    fn embed(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        let h = match &self.embed {
            Embedding::Dense(w) => w.index_select(ids, 0)?,
            Embedding::Quant(q) => q.embedding(ids)?.to_dtype(self.dtype)?,
        };
        match self.config.embedding_scale {
            // transformers multiplies by the scale rounded to the model dtype
            Some(s) => {
                let s = Tensor::new(s as f32, &Device::Cpu)?
                    .to_dtype(self.dtype)?
                    .to_dtype(DType::F64)?
                    .to_scalar::<f64>()?;
                h.affine(s, 0.0)
            }
            None => Ok(h),
        }
    }

    fn norm(&self, x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::rms_norm(&x.contiguous()?, w, self.config.rms_norm_eps as f32)
    }

    #[allow(clippy::too_many_arguments)]
    fn layer_forward(
        &self,
        layer: &Layer,
        li: usize,
        sliding: bool,
        h: Tensor,
        cos: &Tensor,
        sin: &Tensor,
        batch: &[SeqInput<'_>],
        spans: &[Span],
        plans: &[AttnPlan],
    ) -> Result<Tensor, ModelError> {
        let cfg = &self.config;
        let (t, nh, nkv, hd) = (h.dim(0)?, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        let x = self.norm(&h, &layer.input_norm)?;
        let parts = layer.qkv.forward(&x)?;
        let [q, k, v] = parts.as_slice() else {
            return Err(ModelError::InvalidInput("qkv projection parts".into()));
        };
        let mut q = q.contiguous()?.reshape((t, nh, hd))?;
        let mut k = k.contiguous()?.reshape((t, nkv, hd))?;
        let v = v.contiguous()?.reshape((t, nkv, hd))?;
        if let Some(w) = &layer.q_norm {
            q = self.norm(&q, w)?;
        }
        if let Some(w) = &layer.k_norm {
            k = self.norm(&k, w)?;
        }
        let q = self.rope(&q.reshape((t, nh, 1, hd))?, cos, sin)?;
        let q = q.reshape((t, nh, hd))?.affine(cfg.attention_scale, 0.0)?;
        let k = self
            .rope(&k.reshape((t, nkv, 1, hd))?, cos, sin)?
            .reshape((t, nkv, hd))?;

        let mut outs = Vec::with_capacity(batch.len());
        for ((input, span), plan) in batch.iter().zip(spans).zip(plans) {
            let (from, mask) = plan.get(sliding);
            let qi = q.narrow(0, span.row, span.len)?;
            let ki = k
                .narrow(0, span.row, span.len)?
                .transpose(0, 1)?
                .contiguous()?;
            let vi = v
                .narrow(0, span.row, span.len)?
                .transpose(0, 1)?
                .contiguous()?;
            let (kc, vc) = input.cache.write_and_view(li, span.pos, from, &ki, &vi)?;
            outs.push(attention::attend(cfg, &qi, &kc, &vc, mask)?);
        }
        // a batch of one needs no concatenation
        let y = match outs.pop() {
            Some(only) if outs.is_empty() => only,
            Some(last) => {
                outs.push(last);
                Tensor::cat(&outs, 0)?
            }
            None => return Err(ModelError::InvalidInput("empty batch".into())),
        };
        let mut a = layer.o_proj.forward(&y)?;
        if let Some(w) = &layer.post_attn_norm {
            a = self.norm(&a, w)?;
        }
        let h = (h + a)?;
        let x = self.norm(&h, &layer.pre_ffn_norm)?;
        let parts = layer.gate_up.forward(&x)?;
        let [gate, up] = parts.as_slice() else {
            return Err(ModelError::InvalidInput("gate/up projection parts".into()));
        };
        let act = match cfg.activation {
            Activation::Silu => gate.silu()?,
            Activation::GeluTanh => gate.gelu()?,
            Activation::Gelu => gate.gelu_erf()?,
        };
        let m = (act * up)?;
        let mut m = layer.down.forward(&m.contiguous()?)?;
        if let Some(w) = &layer.post_ffn_norm {
            m = self.norm(&m, w)?;
        }
        Ok((h + m)?)
    }

    fn rope(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
        if self.config.rope_interleaved {
            candle_nn::rotary_emb::rope_i(x, cos, sin)
        } else {
            candle_nn::rotary_emb::rope(x, cos, sin)
        }
    }

    /// Builds the RoPE variants the config needs.
    fn make_ropes(config: &DecoderConfig) -> Vec<Rope> {
        let mut ropes = vec![Rope::new(
            config.head_dim,
            config.rope_theta,
            &config.rope_scaling,
        )];
        if let Some(local) = config.rope_local_theta {
            ropes.push(Rope::new(config.head_dim, local, &RopeScaling::None));
        }
        ropes
    }
}

fn spans_info(spans: &[Span]) -> Vec<(usize, usize)> {
    spans.iter().map(|s| (s.pos, s.len)).collect()
}

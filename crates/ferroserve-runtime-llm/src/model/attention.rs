//! Per-sequence causal attention against the sequence's cache, with
//! grouped-query heads (no key/value repetition), optional sliding window
//! and soft-capping.

use candle_core::{DType, Device, Tensor};

use super::config::DecoderConfig;

/// The key range and mask of one sequence in one step, for full and for
/// sliding-window layers.
#[derive(Debug)]
pub(crate) struct AttnPlan {
    full: (usize, Option<Tensor>),
    sliding: (usize, Option<Tensor>),
}

impl AttnPlan {
    /// Plans for every input `(position, length)` of a step.
    pub(crate) fn for_step(
        cfg: &DecoderConfig,
        inputs: &[(usize, usize)],
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Vec<AttnPlan>> {
        let any_full = cfg.layer_sliding.iter().any(|s| !*s);
        let window = cfg
            .sliding_window
            .filter(|_| cfg.layer_sliding.iter().any(|s| *s));
        inputs
            .iter()
            .map(|&(pos, len)| {
                let full = if any_full {
                    range_and_mask(pos, len, None, dtype, device)?
                } else {
                    (0, None)
                };
                let sliding = match window {
                    Some(w) => range_and_mask(pos, len, Some(w), dtype, device)?,
                    None => (0, None),
                };
                Ok(AttnPlan { full, sliding })
            })
            .collect()
    }

    /// First key position and mask for a layer.
    pub(crate) fn get(&self, sliding: bool) -> (usize, Option<&Tensor>) {
        let (from, mask) = if sliding { &self.sliding } else { &self.full };
        (*from, mask.as_ref())
    }
}

/// Keys from the returned position on are visible to some query of the
/// chunk `pos..pos + len`; the mask `[len, keys]` (only when `len > 1`)
/// hides future keys and keys out of the window (`q - k >= window`).
fn range_and_mask(
    pos: usize,
    len: usize,
    window: Option<usize>,
    dtype: DType,
    device: &Device,
) -> candle_core::Result<(usize, Option<Tensor>)> {
    let from = match window {
        Some(w) => (pos + 1).saturating_sub(w),
        None => 0,
    };
    if len <= 1 {
        return Ok((from, None));
    }
    let keys = pos + len - from;
    let mut mask = Vec::with_capacity(len * keys);
    for i in 0..len {
        let q = pos + i;
        for j in 0..keys {
            let k = from + j;
            let visible = k <= q && window.is_none_or(|w| k + w > q);
            mask.push(if visible { 0.0f32 } else { f32::NEG_INFINITY });
        }
    }
    let mask = Tensor::from_vec(mask, (len, keys), device)?.to_dtype(dtype)?;
    Ok((from, Some(mask)))
}

/// Attention of queries `q [L, heads, head_dim]` (already scaled and
/// rotated) over keys/values `[kv_heads, S, head_dim]`; returns `[L, heads * head_dim]`.
pub(crate) fn attend(
    cfg: &DecoderConfig,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    let (l, nh, hd) = q.dims3()?;
    let nkv = cfg.num_kv_heads;
    let group = nh / nkv;
    let s = k.dim(1)?;
    // heads of one kv group are adjacent: [nh, L, hd] -> [nkv, group * L, hd]
    let q = q
        .transpose(0, 1)?
        .contiguous()?
        .reshape((nkv, group * l, hd))?;
    let mut att = q.matmul(&k.t()?)?;
    if let Some(cap) = cfg.attn_logit_softcapping {
        att = ((att / cap)?.tanh()? * cap)?;
    }
    if let Some(mask) = mask {
        att = att
            .reshape((nh, l, s))?
            .broadcast_add(mask)?
            .reshape((nkv, group * l, s))?;
    }
    let att = candle_nn::ops::softmax_last_dim(&att)?;
    let y = att.matmul(v)?;
    y.reshape((nh, l, hd))?
        .transpose(0, 1)?
        .contiguous()?
        .reshape((l, nh * hd))
}

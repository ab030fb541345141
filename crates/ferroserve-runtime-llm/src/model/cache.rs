//! One sequence's key/value cache: per layer, keys and values in
//! preallocated `[kv_heads, capacity, head_dim]` buffers that grow in chunks
//! (appends write in place with `slice_set`; nothing already cached is
//! copied per step).

use candle_core::{DType, Device, Tensor};

use super::error::ModelError;

/// Capacity grows in multiples of this many positions.
const CHUNK: usize = 64;

/// Shape of every layer's buffers.
#[derive(Debug, Clone)]
pub(crate) struct CacheSpec {
    pub(crate) num_layers: usize,
    pub(crate) num_kv_heads: usize,
    pub(crate) head_dim: usize,
    pub(crate) dtype: DType,
    pub(crate) device: Device,
}

/// Keys and values of one layer.
#[derive(Debug)]
pub(crate) struct LayerKv {
    pub(crate) k: Tensor,
    pub(crate) v: Tensor,
}

/// The key/value cache of one sequence, all layers.
#[derive(Debug)]
pub struct SeqCache {
    spec: CacheSpec,
    layers: Vec<LayerKv>,
    len: usize,
    capacity: usize,
}

impl SeqCache {
    pub(crate) fn new(spec: CacheSpec) -> Self {
        SeqCache {
            spec,
            layers: Vec::new(),
            len: 0,
            capacity: 0,
        }
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every position from `len` on (no-op when `len >= self.len()`).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Bytes held by the buffers (allocated capacity, keys and values, all layers).
    pub fn bytes(&self) -> usize {
        2 * self.spec.num_layers
            * self.spec.num_kv_heads
            * self.spec.head_dim
            * self.capacity
            * self.spec.dtype.size_in_bytes()
    }

    /// A new cache holding a copy of the first `len` positions (prefix caching).
    pub fn fork_prefix(&self, len: usize) -> Result<SeqCache, ModelError> {
        if len > self.len {
            return Err(ModelError::InvalidInput(format!(
                "cannot fork {len} positions of a cache holding {}",
                self.len
            )));
        }
        let mut out = SeqCache::new(self.spec.clone());
        if len == 0 {
            return Ok(out);
        }
        out.reserve(len)?;
        for (src, dst) in self.layers.iter().zip(&out.layers) {
            dst.k
                .slice_set(&src.k.narrow(1, 0, len)?.contiguous()?, 1, 0)?;
            dst.v
                .slice_set(&src.v.narrow(1, 0, len)?.contiguous()?, 1, 0)?;
        }
        out.len = len;
        Ok(out)
    }

    /// Makes room for `total` positions, keeping the cached ones.
    pub(crate) fn reserve(&mut self, total: usize) -> candle_core::Result<()> {
        if total <= self.capacity {
            return Ok(());
        }
        let grown = self.capacity + self.capacity / 2;
        let capacity = total.max(grown).div_ceil(CHUNK) * CHUNK;
        let shape = (self.spec.num_kv_heads, capacity, self.spec.head_dim);
        let mut layers = Vec::with_capacity(self.spec.num_layers);
        for i in 0..self.spec.num_layers {
            let k = Tensor::zeros(shape, self.spec.dtype, &self.spec.device)?;
            let v = Tensor::zeros(shape, self.spec.dtype, &self.spec.device)?;
            if let Some(old) = self.layers.get(i) {
                if self.len > 0 {
                    k.slice_set(&old.k, 1, 0)?;
                    v.slice_set(&old.v, 1, 0)?;
                }
            }
            layers.push(LayerKv { k, v });
        }
        self.layers = layers;
        self.capacity = capacity;
        Ok(())
    }

    /// Writes `k`, `v` (`[kv_heads, L, head_dim]`, contiguous) of `layer` at
    /// position `at` (room must have been reserved) and returns views of
    /// positions `from..at + L`.
    pub(crate) fn write_and_view(
        &self,
        layer: usize,
        at: usize,
        from: usize,
        k: &Tensor,
        v: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let Some(kv) = self.layers.get(layer) else {
            candle_core::bail!("cache has no layer {layer}")
        };
        let l = k.dim(1)?;
        kv.k.slice_set(k, 1, at)?;
        kv.v.slice_set(v, 1, at)?;
        let end = at + l;
        Ok((
            kv.k.narrow(1, from, end - from)?,
            kv.v.narrow(1, from, end - from)?,
        ))
    }

    /// Marks positions up to `len` as cached.
    pub(crate) fn set_len(&mut self, len: usize) {
        self.len = len;
    }
}

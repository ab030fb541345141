//! Linear layers over dense tensors or GGUF quantized tensors, and the
//! fused projections (Q/K/V, gate/up) built from them.

use candle_core::quantized::{QMatMul, QStorage, QTensor};
use candle_core::{Module, Tensor};
use std::sync::Arc;

use super::error::ModelError;

/// A weight matrix `[out, in]` (plus an optional bias) applied to rows `[T, in]`.
#[derive(Debug, Clone)]
pub(crate) enum Linear {
    /// Dense weights in the compute dtype.
    Dense {
        /// `[out, in]`.
        weight: Tensor,
        /// `[out]`.
        bias: Option<Tensor>,
    },
    /// GGUF weights (quantized kernels; F32/F16 are dequantized by candle).
    Quant {
        /// The matrix.
        weight: QMatMul,
        /// `[out]`, F32.
        bias: Option<Tensor>,
    },
}

impl Linear {
    /// `x [T, in]` (contiguous) to `[T, out]`.
    pub(crate) fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = match self {
            Linear::Dense { weight, .. } => x.matmul(&weight.t()?)?,
            Linear::Quant { weight, .. } => weight.forward(x)?,
        };
        match self.bias() {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }

    fn bias(&self) -> Option<&Tensor> {
        match self {
            Linear::Dense { bias, .. } | Linear::Quant { bias, .. } => bias.as_ref(),
        }
    }

    /// A quantized linear layer from a GGUF tensor.
    pub(crate) fn from_qtensor(q: Arc<QTensor>, bias: Option<Tensor>) -> Result<Self, ModelError> {
        Ok(Linear::Quant {
            weight: QMatMul::from_arc(q)?,
            bias,
        })
    }
}

/// Several projections of the same input: one fused matmul when the weights
/// could be concatenated, else one matmul each.
#[derive(Debug, Clone)]
pub(crate) enum MultiLinear {
    /// One matrix whose output columns split into `sizes`.
    Fused {
        /// The concatenated matrix.
        linear: Linear,
        /// Output widths of the parts, in order.
        sizes: Vec<usize>,
    },
    /// Separate matrices (GGUF parts of different quantization types).
    Split(Vec<Linear>),
}

impl MultiLinear {
    /// The parts' outputs for `x [T, in]` (possibly strided views).
    pub(crate) fn forward(&self, x: &Tensor) -> candle_core::Result<Vec<Tensor>> {
        match self {
            MultiLinear::Fused { linear, sizes } => {
                let y = linear.forward(x)?;
                let mut out = Vec::with_capacity(sizes.len());
                let mut start = 0;
                for &n in sizes {
                    out.push(y.narrow(1, start, n)?);
                    start += n;
                }
                Ok(out)
            }
            MultiLinear::Split(parts) => parts.iter().map(|l| l.forward(x)).collect(),
        }
    }

    /// Dense parts concatenated into one matrix (missing biases become zeros).
    pub(crate) fn fuse_dense(mut parts: Vec<(Tensor, Option<Tensor>)>) -> Result<Self, ModelError> {
        let mut sizes = Vec::with_capacity(parts.len());
        for (w, _) in &parts {
            sizes.push(w.dim(0)?);
        }
        if parts.len() == 1 {
            if let Some((weight, bias)) = parts.pop() {
                return Ok(MultiLinear::Fused {
                    linear: Linear::Dense { weight, bias },
                    sizes,
                });
            }
        }
        let any_bias = parts.iter().any(|(_, b)| b.is_some());
        let weights: Vec<&Tensor> = parts.iter().map(|(w, _)| w).collect();
        let weight = Tensor::cat(&weights, 0)?;
        let bias = if any_bias {
            let mut biases = Vec::with_capacity(parts.len());
            for (w, b) in &parts {
                biases.push(match b {
                    Some(b) => b.clone(),
                    None => Tensor::zeros(w.dim(0)?, w.dtype(), w.device())?,
                });
            }
            Some(Tensor::cat(&biases, 0)?)
        } else {
            None
        };
        Ok(MultiLinear::Fused {
            linear: Linear::Dense { weight, bias },
            sizes,
        })
    }

    /// Quantized parts: rows concatenated byte-wise when they share a
    /// quantization type (a row of blocks is self-contained), else separate.
    pub(crate) fn fuse_quant(parts: Vec<(QTensor, Option<Tensor>)>) -> Result<Self, ModelError> {
        let Some(first) = parts.first() else {
            return Err(ModelError::InvalidInput("no projection to fuse".into()));
        };
        let dtype = first.0.dtype();
        let device = first.0.device();
        let same_type = parts.windows(2).all(|w| w[0].0.dtype() == w[1].0.dtype());
        let mut in_dims = Vec::with_capacity(parts.len());
        let mut sizes = Vec::with_capacity(parts.len());
        for (q, _) in &parts {
            let (out, inp) = q.shape().dims2()?;
            sizes.push(out);
            in_dims.push(inp);
        }
        let same_in = in_dims.windows(2).all(|w| w[0] == w[1]);
        let first_in = in_dims.first().copied().unwrap_or(0);
        if parts.len() == 1 || !same_type || !same_in || !device.is_cpu() {
            let mut linears = parts
                .into_iter()
                .map(|(q, b)| Linear::from_qtensor(Arc::new(q), b))
                .collect::<Result<Vec<_>, _>>()?;
            if linears.len() == 1 {
                if let Some(linear) = linears.pop() {
                    return Ok(MultiLinear::Fused { linear, sizes });
                }
            }
            return Ok(MultiLinear::Split(linears));
        }
        let mut bytes = Vec::new();
        for (q, _) in &parts {
            bytes.extend_from_slice(&q.data()?);
        }
        let total: usize = sizes.iter().sum();
        let storage = QStorage::from_data(std::borrow::Cow::Owned(bytes), &device, dtype)?;
        let fused = QTensor::new(storage, (total, first_in))?;
        let any_bias = parts.iter().any(|(_, b)| b.is_some());
        let bias = if any_bias {
            let mut biases = Vec::with_capacity(parts.len());
            for ((_, b), n) in parts.iter().zip(&sizes) {
                biases.push(match b {
                    Some(b) => b.clone(),
                    None => Tensor::zeros(*n, candle_core::DType::F32, &device)?,
                });
            }
            Some(Tensor::cat(&biases, 0)?)
        } else {
            None
        };
        Ok(MultiLinear::Fused {
            linear: Linear::from_qtensor(Arc::new(fused), bias)?,
            sizes,
        })
    }
}

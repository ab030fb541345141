//! sentence-transformers folders: `modules.json` (Transformer → Pooling →
//! Normalize), `1_Pooling/config.json`, `sentence_bert_config.json`, and
//! the pooling itself.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{read_json, HfError, Result};

/// One pooling mode of sentence-transformers' `Pooling` module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The first token (`[CLS]`).
    Cls,
    /// Element-wise maximum over real tokens.
    Max,
    /// Mean over real tokens.
    Mean,
    /// Sum over real tokens divided by the square root of their count.
    MeanSqrtLen,
    /// Mean weighted by position (1, 2, …).
    WeightedMean,
    /// The last real token.
    LastToken,
}

impl Pooling {
    /// The name used in metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            Pooling::Cls => "cls",
            Pooling::Max => "max",
            Pooling::Mean => "mean",
            Pooling::MeanSqrtLen => "mean_sqrt_len_tokens",
            Pooling::WeightedMean => "weightedmean",
            Pooling::LastToken => "lasttoken",
        }
    }
}

/// How a model turns token states into one vector.
#[derive(Debug, Clone, PartialEq)]
pub struct SentenceConfig {
    /// Folder of the transformer (the model folder itself, or `0_Transformer/`).
    pub transformer_dir: PathBuf,
    /// Pooling modes, concatenated in sentence-transformers' order.
    pub pooling: Vec<Pooling>,
    /// Dense layers applied after pooling, in order.
    pub dense: Vec<DenseSpec>,
    /// L2-normalise the final vector.
    pub normalize: bool,
    /// `max_seq_length` of `sentence_bert_config.json`.
    pub max_seq_length: Option<usize>,
    /// Whether the folder is a sentence-transformers model.
    pub is_sentence_transformers: bool,
}

impl SentenceConfig {
    /// KServe's behaviour for a plain transformers folder: mean pooling,
    /// then L2 normalisation.
    pub fn plain(dir: &Path) -> SentenceConfig {
        SentenceConfig {
            transformer_dir: dir.to_path_buf(),
            pooling: vec![Pooling::Mean],
            dense: Vec::new(),
            normalize: true,
            max_seq_length: None,
            is_sentence_transformers: false,
        }
    }

    /// Reads `modules.json` in `dir`, or the plain defaults without it.
    pub fn load(dir: &Path) -> Result<SentenceConfig> {
        let modules_path = dir.join("modules.json");
        if !modules_path.is_file() {
            return Ok(SentenceConfig::plain(dir));
        }
        let modules = read_json(&modules_path)?;
        let list = modules
            .as_array()
            .ok_or_else(|| HfError::config("modules.json: expected a list"))?;
        let mut out = SentenceConfig {
            transformer_dir: dir.to_path_buf(),
            pooling: vec![Pooling::Mean],
            dense: Vec::new(),
            normalize: false,
            max_seq_length: None,
            is_sentence_transformers: true,
        };
        for m in list {
            let ty = m.get("type").and_then(Value::as_str).unwrap_or_default();
            let path = m.get("path").and_then(Value::as_str).unwrap_or_default();
            let kind = ty.rsplit('.').next().unwrap_or_default();
            match kind {
                "Transformer" => out.transformer_dir = dir.join(path),
                "Pooling" => out.pooling = read_pooling(&dir.join(path).join("config.json"))?,
                "Normalize" => out.normalize = true,
                "Dense" => out.dense.push(DenseSpec::read(&dir.join(path))?),
                other => {
                    return Err(HfError::config(format!(
                        "modules.json: sentence-transformers module '{other}' ({ty}) is not \
                         supported (Transformer, Pooling, Dense, Normalize are)"
                    )))
                }
            }
        }
        for cfg_dir in [&out.transformer_dir, &dir.to_path_buf()] {
            let p = cfg_dir.join("sentence_bert_config.json");
            if p.is_file() {
                out.max_seq_length = read_json(&p)?
                    .get("max_seq_length")
                    .and_then(Value::as_u64)
                    .and_then(|n| usize::try_from(n).ok());
                break;
            }
        }
        Ok(out)
    }
}

/// The pooling modes of a Pooling module's `config.json`: sentence-transformers
/// 6's `pooling_mode` (a name or a list of names) or the older
/// `pooling_mode_*_tokens` booleans.
fn read_pooling(path: &Path) -> Result<Vec<Pooling>> {
    if !path.is_file() {
        return Ok(vec![Pooling::Mean]);
    }
    let v = read_json(path)?;
    const MODES: [(&str, &str, Pooling); 6] = [
        ("pooling_mode_cls_token", "cls", Pooling::Cls),
        ("pooling_mode_max_tokens", "max", Pooling::Max),
        ("pooling_mode_mean_tokens", "mean", Pooling::Mean),
        (
            "pooling_mode_mean_sqrt_len_tokens",
            "mean_sqrt_len_tokens",
            Pooling::MeanSqrtLen,
        ),
        (
            "pooling_mode_weightedmean_tokens",
            "weightedmean",
            Pooling::WeightedMean,
        ),
        ("pooling_mode_lasttoken", "lasttoken", Pooling::LastToken),
    ];
    let by_name = |name: &str| -> Result<Pooling> {
        MODES
            .iter()
            .find(|(_, n, _)| *n == name)
            .map(|(_, _, p)| *p)
            .ok_or_else(|| {
                HfError::config(format!("{}: unknown pooling mode '{name}'", path.display()))
            })
    };
    let modes: Vec<Pooling> = match v.get("pooling_mode") {
        Some(Value::String(s)) => vec![by_name(s)?],
        Some(Value::Array(list)) => list
            .iter()
            .map(|m| by_name(m.as_str().unwrap_or_default()))
            .collect::<Result<_>>()?,
        _ => MODES
            .iter()
            .filter(|(k, _, _)| v.get(*k).and_then(Value::as_bool).unwrap_or(false))
            .map(|(_, _, p)| *p)
            .collect(),
    };
    if modes.is_empty() {
        return Err(HfError::config(format!(
            "{}: no pooling mode is switched on",
            path.display()
        )));
    }
    Ok(modes)
}

/// Activation of a sentence-transformers `Dense` module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenseActivation {
    /// `torch.nn.Identity`.
    Identity,
    /// `torch.nn.Tanh` (the module's default).
    Tanh,
    /// `torch.nn.ReLU`.
    Relu,
    /// `torch.nn.Sigmoid`.
    Sigmoid,
    /// `torch.nn.GELU` (exact).
    Gelu,
}

impl DenseActivation {
    fn apply(self, x: f32) -> f32 {
        match self {
            DenseActivation::Identity => x,
            DenseActivation::Tanh => x.tanh(),
            DenseActivation::Relu => x.max(0.0),
            DenseActivation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            DenseActivation::Gelu => {
                let x = x as f64;
                (0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))) as f32
            }
        }
    }
}

/// A sentence-transformers `Dense` module as configured (weights not yet read).
#[derive(Debug, Clone, PartialEq)]
pub struct DenseSpec {
    /// The module's folder (`2_Dense/`).
    pub dir: PathBuf,
    /// Input size.
    pub in_features: usize,
    /// Output size.
    pub out_features: usize,
    /// Whether the layer has a bias.
    pub bias: bool,
    /// Activation after the linear map.
    pub activation: DenseActivation,
}

impl DenseSpec {
    fn read(dir: &Path) -> Result<DenseSpec> {
        let path = dir.join("config.json");
        let v = read_json(&path)?;
        let size = |k: &str| {
            v.get(k)
                .and_then(Value::as_u64)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| HfError::config(format!("{}: missing '{k}'", path.display())))
        };
        if v.get("use_residual").and_then(Value::as_bool) == Some(true) {
            return Err(HfError::config(format!(
                "{}: Dense with use_residual is not supported",
                path.display()
            )));
        }
        let act = v
            .get("activation_function")
            .and_then(Value::as_str)
            .unwrap_or("torch.nn.modules.activation.Tanh");
        let activation = match act.rsplit('.').next().unwrap_or_default() {
            "Identity" => DenseActivation::Identity,
            "Tanh" => DenseActivation::Tanh,
            "ReLU" => DenseActivation::Relu,
            "Sigmoid" => DenseActivation::Sigmoid,
            "GELU" => DenseActivation::Gelu,
            _ => {
                return Err(HfError::config(format!(
                    "{}: Dense activation '{act}' is not supported",
                    path.display()
                )))
            }
        };
        Ok(DenseSpec {
            dir: dir.to_path_buf(),
            in_features: size("in_features")?,
            out_features: size("out_features")?,
            bias: v.get("bias").and_then(Value::as_bool).unwrap_or(true),
            activation,
        })
    }
}

/// A loaded `Dense` module: `y = act(W x + b)` on pooled vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    spec: DenseSpec,
    /// `[out, in]`, row-major.
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl Dense {
    /// Reads the module's `model.safetensors` (`linear.weight`, `linear.bias`).
    pub fn load(spec: &DenseSpec) -> Result<Dense> {
        let path = spec.dir.join("model.safetensors");
        let bytes = std::fs::read(&path).map_err(|source| HfError::Io {
            path: path.clone(),
            source,
        })?;
        let map = candle_core::safetensors::load_buffer(&bytes, &candle_core::Device::Cpu)
            .map_err(|e| HfError::config(format!("{}: {e}", path.display())))?;
        let read = |name: &str, dims: &[usize]| -> Result<Vec<f32>> {
            let t = map.get(name).ok_or_else(|| HfError::Weight {
                name: format!("{}:{name}", path.display()),
                msg: "missing".into(),
            })?;
            if t.dims() != dims {
                return Err(HfError::Weight {
                    name: name.into(),
                    msg: format!("shape {:?}, config implies {dims:?}", t.dims()),
                });
            }
            Ok(t.to_dtype(candle_core::DType::F32)?
                .flatten_all()?
                .to_vec1()?)
        };
        let weight = read("linear.weight", &[spec.out_features, spec.in_features])?;
        let bias = if spec.bias {
            read("linear.bias", &[spec.out_features])?
        } else {
            vec![0.0; spec.out_features]
        };
        Ok(Dense {
            spec: spec.clone(),
            weight,
            bias,
        })
    }

    /// Output size.
    pub fn out_features(&self) -> usize {
        self.spec.out_features
    }

    /// Applies the layer to one vector (of `in_features` values).
    pub fn apply(&self, x: &[f32]) -> Result<Vec<f32>> {
        if x.len() != self.spec.in_features {
            return Err(HfError::config(format!(
                "Dense expects {} inputs, the pooled vector has {}",
                self.spec.in_features,
                x.len()
            )));
        }
        Ok(self
            .weight
            .chunks(self.spec.in_features)
            .zip(&self.bias)
            .map(|(row, b)| {
                let dot: f64 = row.iter().zip(x).map(|(w, v)| *w as f64 * *v as f64).sum();
                self.spec.activation.apply((dot + *b as f64) as f32)
            })
            .collect())
    }
}

/// L2-normalises `v` in place as `F.normalize` does (eps 1e-12).
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v
        .iter()
        .map(|&x| (x as f64) * (x as f64))
        .sum::<f64>()
        .sqrt();
    let norm = norm.max(1e-12);
    for x in v {
        *x = (*x as f64 / norm) as f32;
    }
}

/// Pools the token states `h` (`[T, H]`, row-major) of one sequence whose
/// real tokens are those with `mask[t] != 0`, concatenating the modes, and
/// L2-normalises the result when asked (as `F.normalize`, eps 1e-12).
pub fn pool(
    h: &[f32],
    mask: &[u32],
    hidden: usize,
    modes: &[Pooling],
    normalize: bool,
) -> Vec<f32> {
    let rows: Vec<&[f32]> = h.chunks(hidden).collect();
    let real: Vec<usize> = (0..rows.len())
        .filter(|&t| mask.get(t).is_some_and(|&m| m != 0))
        .collect();
    let mut out = Vec::with_capacity(hidden * modes.len());
    for mode in modes {
        let weighted_sum = |weight: &dyn Fn(usize) -> f64| -> (Vec<f64>, f64) {
            let mut acc = vec![0f64; hidden];
            let mut total = 0f64;
            for &t in &real {
                let w = weight(t);
                total += w;
                if let Some(row) = rows.get(t) {
                    for (a, &x) in acc.iter_mut().zip(row.iter()) {
                        *a += w * x as f64;
                    }
                }
            }
            (acc, total)
        };
        match mode {
            Pooling::Cls => {
                let first = real.first().and_then(|&t| rows.get(t)).copied();
                out.extend_from_slice(first.unwrap_or(&[]));
            }
            Pooling::LastToken => {
                let last = real.last().and_then(|&t| rows.get(t)).copied();
                out.extend_from_slice(last.unwrap_or(&[]));
            }
            Pooling::Max => {
                let mut m = vec![-1e9f32; hidden];
                for &t in &real {
                    if let Some(row) = rows.get(t) {
                        for (a, &x) in m.iter_mut().zip(row.iter()) {
                            *a = a.max(x);
                        }
                    }
                }
                out.extend(m);
            }
            Pooling::Mean | Pooling::MeanSqrtLen | Pooling::WeightedMean => {
                let (acc, total) = if *mode == Pooling::WeightedMean {
                    weighted_sum(&|t| (t + 1) as f64)
                } else {
                    weighted_sum(&|_| 1.0)
                };
                let denom = match mode {
                    Pooling::MeanSqrtLen => total.sqrt(),
                    _ => total,
                }
                .max(1e-9);
                out.extend(acc.iter().map(|a| (a / denom) as f32));
            }
        }
    }
    if normalize {
        let norm = out
            .iter()
            .map(|&x| (x as f64) * (x as f64))
            .sum::<f64>()
            .sqrt();
        let norm = norm.max(1e-12);
        for x in &mut out {
            *x = (*x as f64 / norm) as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_modes() {
        // Two real tokens, one padding token.
        let h = [1.0, 2.0, 3.0, 4.0, 100.0, 100.0];
        let mask = [1, 1, 0];
        assert_eq!(pool(&h, &mask, 2, &[Pooling::Mean], false), vec![2.0, 3.0]);
        assert_eq!(pool(&h, &mask, 2, &[Pooling::Max], false), vec![3.0, 4.0]);
        assert_eq!(pool(&h, &mask, 2, &[Pooling::Cls], false), vec![1.0, 2.0]);
        assert_eq!(
            pool(&h, &mask, 2, &[Pooling::LastToken], false),
            vec![3.0, 4.0]
        );
        let w = pool(&h, &mask, 2, &[Pooling::WeightedMean], false);
        assert!((w[0] - 7.0 / 3.0).abs() < 1e-6);
        let n = pool(&h, &mask, 2, &[Pooling::Mean, Pooling::Cls], true);
        let len: f32 = n.iter().map(|x| x * x).sum();
        assert!((len - 1.0).abs() < 1e-6);
        assert_eq!(n.len(), 4);
    }
}

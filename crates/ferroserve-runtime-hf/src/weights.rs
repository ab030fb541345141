//! Safetensors weights: one file or an index of shards, read into memory
//! (no memory mapping, so no `unsafe`), converted to the compute dtype.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::error::{read_json, HfError, Result};

/// Name of a single-file checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";
/// Name of a sharded checkpoint's index.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// The safetensors file (or index) of a model folder: `model.safetensors`,
/// `model.safetensors.index.json`, or the folder's only `*.safetensors`.
pub fn find_checkpoint(dir: &Path) -> Option<String> {
    for name in [SINGLE_FILE, INDEX_FILE] {
        if dir.join(name).is_file() {
            return Some(name.to_string());
        }
    }
    let mut found = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".safetensors"));
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

/// Every tensor of a checkpoint by name.
pub struct Weights {
    tensors: HashMap<String, Tensor>,
    dtype: DType,
}

impl Weights {
    /// Reads the checkpoint `file` (relative to `dir`; an index file pulls
    /// in all its shards).
    pub fn load(dir: &Path, file: &str, dtype: DType, device: &Device) -> Result<Weights> {
        let files: Vec<PathBuf> = if file.ends_with(".index.json") {
            let index = read_json(&dir.join(file))?;
            let map = index
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| HfError::config(format!("{file}: no 'weight_map'")))?;
            let mut shards: Vec<String> = map
                .values()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            shards.sort();
            shards.dedup();
            shards.into_iter().map(|s| dir.join(s)).collect()
        } else {
            vec![dir.join(file)]
        };
        let mut tensors = HashMap::new();
        for path in files {
            let bytes = std::fs::read(&path).map_err(|source| HfError::Io {
                path: path.clone(),
                source,
            })?;
            let map = candle_core::safetensors::load_buffer(&bytes, device)
                .map_err(|e| HfError::config(format!("{}: {e}", path.display())))?;
            tensors.extend(map);
        }
        Ok(Weights { tensors, dtype })
    }

    /// Builds weights from tensors already in memory (tests).
    pub fn from_map(tensors: HashMap<String, Tensor>, dtype: DType) -> Weights {
        Weights { tensors, dtype }
    }

    /// Whether a tensor of that name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The tensor `name`, checked against `dims`, in the compute dtype.
    pub fn get(&self, name: &str, dims: &[usize]) -> Result<Tensor> {
        let t = self.tensors.get(name).ok_or_else(|| HfError::Weight {
            name: name.to_string(),
            msg: "missing from the checkpoint".into(),
        })?;
        if t.dims() != dims {
            return Err(HfError::Weight {
                name: name.to_string(),
                msg: format!("shape {:?}, config.json implies {dims:?}", t.dims()),
            });
        }
        Ok(t.to_dtype(self.dtype)?)
    }

    /// The first of `names` that exists (tied or renamed weights).
    pub fn get_any(&self, names: &[&str], dims: &[usize]) -> Result<Tensor> {
        match names.iter().find(|n| self.contains(n)) {
            Some(n) => self.get(n, dims),
            None => Err(HfError::Weight {
                name: names.join(" | "),
                msg: "missing from the checkpoint".into(),
            }),
        }
    }
}

//! Per-model configuration: `model.yaml` beside the model, merged with
//! command-line defaults.

use std::path::Path;

use serde::Deserialize;

use crate::error::Error;

/// File name of the per-model configuration.
pub const MODEL_YAML: &str = "model.yaml";

/// Which versions of a model are served (Triton's version policy). In
/// `model.yaml`: `all`, `latest`, `{latest: 2}`, `{specific: [1, 3]}`, or
/// Triton's spellings `{latest: {num_versions: 2}}`, `{specific: {versions: [1]}}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawVersionPolicy")]
pub enum VersionPolicy {
    /// The newest `n` versions (Triton's default is 1).
    Latest(u32),
    /// Every version found.
    All,
    /// Exactly these versions.
    Specific(Vec<u64>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Count {
    N(u32),
    Triton { num_versions: u32 },
}

#[derive(Deserialize)]
#[serde(untagged)]
enum List {
    V(Vec<u64>),
    Triton { versions: Vec<u64> },
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawVersionPolicy {
    Name(String),
    Latest {
        latest: Count,
    },
    Specific {
        specific: List,
    },
    All {
        #[allow(dead_code)]
        all: serde_yaml::Value,
    },
}

impl TryFrom<RawVersionPolicy> for VersionPolicy {
    type Error = String;

    fn try_from(raw: RawVersionPolicy) -> Result<Self, String> {
        Ok(match raw {
            RawVersionPolicy::Name(n) => match n.as_str() {
                "all" => VersionPolicy::All,
                "latest" => VersionPolicy::Latest(1),
                other => return Err(format!("unknown version_policy '{other}' (all, latest, {{latest: N}}, {{specific: [..]}})")),
            },
            RawVersionPolicy::Latest { latest: Count::N(n) }
            | RawVersionPolicy::Latest { latest: Count::Triton { num_versions: n } } => VersionPolicy::Latest(n),
            RawVersionPolicy::Specific { specific: List::V(v) }
            | RawVersionPolicy::Specific { specific: List::Triton { versions: v } } => VersionPolicy::Specific(v),
            RawVersionPolicy::All { .. } => VersionPolicy::All,
        })
    }
}

impl Default for VersionPolicy {
    fn default() -> Self {
        VersionPolicy::Latest(1)
    }
}

impl VersionPolicy {
    /// Picks the versions to serve out of those found (sorted ascending).
    pub fn select(&self, found: &[u64]) -> Vec<u64> {
        match self {
            VersionPolicy::All => found.to_vec(),
            VersionPolicy::Latest(n) => {
                let skip = found.len().saturating_sub(*n as usize);
                found[skip..].to_vec()
            }
            VersionPolicy::Specific(want) => {
                found.iter().copied().filter(|v| want.contains(v)).collect()
            }
        }
    }
}

/// Per-model settings. Every field is optional in `model.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Model format (`onnx`, …); detected from the files when absent.
    pub format: Option<String>,
    /// Largest batch (dimension 0) a request may carry; 0 disables batching
    /// semantics. Absent: the server default for batchable models.
    pub max_batch_size: Option<u32>,
    /// Which versions to serve.
    pub version_policy: VersionPolicy,
    /// Runtime-specific options (for ONNX: `engine: ort|tract|auto`).
    pub parameters: std::collections::BTreeMap<String, String>,
}

impl ModelConfig {
    /// Reads `model.yaml` from `dir`, or returns the defaults when there is none.
    pub fn from_dir(dir: &Path) -> Result<Self, Error> {
        let path = dir.join(MODEL_YAML);
        match std::fs::read_to_string(&path) {
            Ok(text) if text.trim().is_empty() => Ok(ModelConfig::default()),
            Ok(text) => serde_yaml::from_str(&text)
                .map_err(|e| Error::Load(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ModelConfig::default()),
            Err(e) => Err(Error::Load(format!("{}: {e}", path.display()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_policy_selects() {
        let found = [1, 2, 5];
        assert_eq!(VersionPolicy::default().select(&found), vec![5]);
        assert_eq!(VersionPolicy::Latest(2).select(&found), vec![2, 5]);
        assert_eq!(VersionPolicy::All.select(&found), vec![1, 2, 5]);
        assert_eq!(VersionPolicy::Specific(vec![2, 9]).select(&found), vec![2]);
    }

    #[test]
    fn yaml_parses() {
        let c: ModelConfig = serde_yaml::from_str(
            "format: onnx\nmax_batch_size: 8\nversion_policy: all\nparameters: {engine: tract}\n",
        )
        .unwrap();
        assert_eq!(c.max_batch_size, Some(8));
        assert_eq!(c.version_policy, VersionPolicy::All);
        let c: ModelConfig = serde_yaml::from_str("version_policy: {latest: 2}").unwrap();
        assert_eq!(c.version_policy, VersionPolicy::Latest(2));
        let c: ModelConfig =
            serde_yaml::from_str("version_policy: {latest: {num_versions: 3}}").unwrap();
        assert_eq!(c.version_policy, VersionPolicy::Latest(3));
        let c: ModelConfig = serde_yaml::from_str("version_policy: {specific: [1, 3]}").unwrap();
        assert_eq!(c.version_policy, VersionPolicy::Specific(vec![1, 3]));
        assert!(serde_yaml::from_str::<ModelConfig>("version_policy: newest").is_err());
        assert!(serde_yaml::from_str::<ModelConfig>("bogus: 1").is_err());
    }
}

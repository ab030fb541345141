//! Per-model configuration: `model.yaml` beside the model, merged with
//! command-line defaults.

use std::path::Path;

use serde::Deserialize;

use crate::error::Error;

/// File name of the per-model configuration.
pub const MODEL_YAML: &str = "model.yaml";

/// File name of a Triton model configuration, read for the same fields.
pub const CONFIG_PBTXT: &str = "config.pbtxt";

/// What happens to a request whose queue timeout expires.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum TimeoutAction {
    /// Answer 504 / DEADLINE_EXCEEDED; the request never runs.
    #[default]
    #[serde(alias = "reject")]
    REJECT,
    /// Keep the request, behind every request that has not timed out.
    #[serde(alias = "delay")]
    DELAY,
}

/// Triton's queue policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueuePolicy {
    /// What to do when a request's timeout expires in the queue.
    pub timeout_action: TimeoutAction,
    /// Queue timeout in microseconds (0: none).
    pub default_timeout_microseconds: u64,
    /// Whether a request's `timeout` parameter may override the default.
    pub allow_timeout_override: bool,
    /// Most requests waiting (0: unbounded); more are refused with 429.
    pub max_queue_size: u32,
}

/// Triton's dynamic batcher settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DynamicBatching {
    /// Batch sizes to aim for; a batch that reaches one is dispatched at once.
    pub preferred_batch_size: Vec<u32>,
    /// Longest a request waits for more to batch with, in microseconds.
    pub max_queue_delay_microseconds: u64,
    /// Deliver responses in the order requests arrived.
    pub preserve_ordering: bool,
    /// Number of priority levels (0 or 1: none). Level 1 is the highest.
    pub priority_levels: u32,
    /// Priority of requests that give none (0: the lowest level).
    pub default_priority_level: u32,
    /// Queue limits and timeouts.
    pub default_queue_policy: QueuePolicy,
    /// ferroserve's addition: a request that finds the model idle runs at
    /// once instead of waiting `max_queue_delay` for company (default true:
    /// batching then never adds latency when there is nothing to batch).
    /// Set false for Triton's exact waiting behaviour.
    pub dispatch_when_idle: Option<bool>,
}

/// How many executions of a model may run at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct InstanceGroup {
    /// Parallel executions (batches) of the model.
    pub count: u32,
}

/// Either `{count: 2}` or Triton's list `[{count: 2, kind: KIND_CPU}]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum InstanceGroupSpec {
    One(InstanceGroup),
    Many(Vec<InstanceGroupEntry>),
}

#[derive(Debug, Clone, Deserialize)]
struct InstanceGroupEntry {
    #[serde(default)]
    count: u32,
    #[serde(default)]
    #[allow(dead_code)]
    kind: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    name: Option<String>,
}

fn instance_group<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<InstanceGroup>, D::Error> {
    let spec = Option::<InstanceGroupSpec>::deserialize(d)?;
    Ok(spec.map(|s| match s {
        InstanceGroupSpec::One(g) => g,
        InstanceGroupSpec::Many(v) => InstanceGroup {
            count: v.iter().map(|e| e.count.max(1)).sum(),
        },
    }))
}

/// KServe's `batcher` block of an InferenceService predictor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KserveBatcher {
    /// Largest batch.
    #[serde(rename = "maxBatchSize", alias = "max_batch_size")]
    pub max_batch_size: Option<u32>,
    /// Longest wait for a batch to fill, in milliseconds.
    #[serde(rename = "maxLatency", alias = "max_latency")]
    pub max_latency_ms: Option<u64>,
    /// Queue timeout, in seconds.
    #[serde(rename = "timeout")]
    pub timeout_s: Option<u64>,
}

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
    /// Dynamic batching (Triton's block).
    pub dynamic_batching: Option<DynamicBatching>,
    /// Parallel executions of the model.
    #[serde(deserialize_with = "instance_group")]
    pub instance_group: Option<InstanceGroup>,
    /// KServe's batcher (mapped onto dynamic batching).
    pub batcher: Option<KserveBatcher>,
    /// KServe's `containerConcurrency`: most requests in flight at once;
    /// the rest wait in the queue.
    #[serde(alias = "containerConcurrency")]
    pub container_concurrency: Option<u32>,
}

impl ModelConfig {
    /// Reads `model.yaml`, or else Triton's `config.pbtxt`, from `dir`;
    /// the defaults when there is neither. Both at once is an error.
    pub fn from_dir(dir: &Path) -> Result<Self, Error> {
        let pbtxt = dir.join(CONFIG_PBTXT);
        let yaml = dir.join(MODEL_YAML);
        if pbtxt.exists() {
            if yaml.exists() {
                return Err(Error::Load(format!(
                    "{} has both {MODEL_YAML} and {CONFIG_PBTXT}; keep one",
                    dir.display()
                )));
            }
            let text = std::fs::read_to_string(&pbtxt)
                .map_err(|e| Error::Load(format!("{}: {e}", pbtxt.display())))?;
            return Self::from_pbtxt(&text)
                .map_err(|e| Error::Load(format!("{}: {e}", pbtxt.display())));
        }
        Self::from_yaml_file(&yaml)
    }

    /// Reads the fields ferroserve uses from a Triton `config.pbtxt`.
    pub fn from_pbtxt(text: &str) -> Result<Self, String> {
        use crate::pbtxt::{parse, PbValue};
        fn num<T: std::str::FromStr>(v: Option<&str>, what: &str) -> Result<Option<T>, String> {
            v.map(|s| {
                s.parse::<T>()
                    .map_err(|_| format!("{what}: '{s}' is not a number"))
            })
            .transpose()
        }
        fn nums<T: std::str::FromStr>(v: Vec<&PbValue>, what: &str) -> Result<Vec<T>, String> {
            v.into_iter()
                .map(|x| match x {
                    PbValue::Scalar(s) => s
                        .parse::<T>()
                        .map_err(|_| format!("{what}: '{s}' is not a number")),
                    _ => Err(format!("{what}: expected numbers")),
                })
                .collect()
        }
        let doc = parse(text).map_err(|e| e.to_string())?;
        let mut c = ModelConfig {
            max_batch_size: num(doc.scalar("max_batch_size"), "max_batch_size")?,
            ..Default::default()
        };
        match doc.scalar("backend").or(doc.scalar("platform")) {
            Some("onnxruntime" | "onnxruntime_onnx") => c.format = Some("onnx".into()),
            Some(other @ ("xgboost" | "lightgbm" | "python" | "pmml" | "sklearn")) => {
                c.format = Some(other.into())
            }
            _ => {}
        }
        if let Some(db) = doc.get("dynamic_batching") {
            let mut d = DynamicBatching {
                preferred_batch_size: nums(db.all("preferred_batch_size"), "preferred_batch_size")?,
                max_queue_delay_microseconds: num(
                    db.scalar("max_queue_delay_microseconds"),
                    "max_queue_delay_microseconds",
                )?
                .unwrap_or(0),
                preserve_ordering: db.scalar("preserve_ordering") == Some("true"),
                priority_levels: num(db.scalar("priority_levels"), "priority_levels")?.unwrap_or(0),
                default_priority_level: num(
                    db.scalar("default_priority_level"),
                    "default_priority_level",
                )?
                .unwrap_or(0),
                ..Default::default()
            };
            if let Some(q) = db.get("default_queue_policy") {
                d.default_queue_policy = QueuePolicy {
                    timeout_action: if q.scalar("timeout_action") == Some("DELAY") {
                        TimeoutAction::DELAY
                    } else {
                        TimeoutAction::REJECT
                    },
                    default_timeout_microseconds: num(
                        q.scalar("default_timeout_microseconds"),
                        "default_timeout_microseconds",
                    )?
                    .unwrap_or(0),
                    allow_timeout_override: q.scalar("allow_timeout_override") == Some("true"),
                    max_queue_size: num(q.scalar("max_queue_size"), "max_queue_size")?.unwrap_or(0),
                };
            }
            c.dynamic_batching = Some(d);
        }
        let groups = doc.all("instance_group");
        if !groups.is_empty() {
            let mut count = 0u32;
            for g in groups {
                count += num::<u32>(g.scalar("count"), "instance_group.count")?.unwrap_or(1);
            }
            c.instance_group = Some(InstanceGroup { count });
        }
        if let Some(vp) = doc.get("version_policy") {
            if vp.get("all").is_some() {
                c.version_policy = VersionPolicy::All;
            } else if let Some(l) = vp.get("latest") {
                c.version_policy = VersionPolicy::Latest(
                    num(l.scalar("num_versions"), "num_versions")?.unwrap_or(1),
                );
            } else if let Some(sp) = vp.get("specific") {
                c.version_policy = VersionPolicy::Specific(nums(sp.all("versions"), "versions")?);
            }
        }
        for p in doc.all("parameters") {
            if let (Some(k), Some(v)) = (
                p.scalar("key"),
                p.get("value").and_then(|v| v.scalar("string_value")),
            ) {
                c.parameters.insert(k.to_string(), v.to_string());
            }
        }
        Ok(c)
    }

    fn from_yaml_file(path: &Path) -> Result<Self, Error> {
        match std::fs::read_to_string(path) {
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
    fn batching_yaml_and_pbtxt_agree() {
        let y: ModelConfig = serde_yaml::from_str(
            "max_batch_size: 8\ndynamic_batching:\n  preferred_batch_size: [4, 8]\n  max_queue_delay_microseconds: 100\n  default_queue_policy: {timeout_action: REJECT, default_timeout_microseconds: 5000, max_queue_size: 3}\ninstance_group: [{count: 2, kind: KIND_CPU}]\n",
        )
        .unwrap();
        let p = ModelConfig::from_pbtxt(
            "max_batch_size: 8\ndynamic_batching { preferred_batch_size: [ 4, 8 ] max_queue_delay_microseconds: 100 default_queue_policy { timeout_action: REJECT default_timeout_microseconds: 5000 max_queue_size: 3 } }\ninstance_group [ { count: 2 kind: KIND_CPU } ]\noptimization { execution_accelerators { } }\n",
        )
        .unwrap();
        assert_eq!(y.max_batch_size, p.max_batch_size);
        assert_eq!(y.dynamic_batching, p.dynamic_batching);
        assert_eq!(y.instance_group, p.instance_group);
        assert_eq!(y.instance_group.unwrap().count, 2);
        let k: ModelConfig = serde_yaml::from_str(
            "batcher: {maxBatchSize: 32, maxLatency: 5, timeout: 60}\ncontainerConcurrency: 4\n",
        )
        .unwrap();
        assert_eq!(k.batcher.as_ref().unwrap().max_latency_ms, Some(5));
        assert_eq!(k.container_concurrency, Some(4));
        let one: ModelConfig = serde_yaml::from_str("instance_group: {count: 3}").unwrap();
        assert_eq!(one.instance_group.unwrap().count, 3);
    }

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

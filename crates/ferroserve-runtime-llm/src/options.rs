//! Language-model settings read from the model's `parameters` (model.yaml,
//! or the command line: `--max_model_len`, `--dtype`, `--kv_cache_memory`…).

use std::collections::BTreeMap;

use ferroserve_core::Error;

/// Settings of one language model.
#[derive(Debug, Clone)]
pub struct LlmOptions {
    /// `dtype`: auto, float32, bfloat16, float16 (safetensors models).
    pub dtype: Option<String>,
    /// `max_model_len`: longest prompt plus completion (default: the model's).
    pub max_model_len: Option<usize>,
    /// `kv_cache_memory`: KV-cache budget, bytes with an optional unit (`4GiB`, `512MB`).
    pub kv_cache_memory: Option<usize>,
    /// `kv_cache_fraction`: KV-cache budget as a fraction of available memory.
    pub kv_cache_fraction: Option<f64>,
    /// `max_num_seqs`: most sequences in the running batch.
    pub max_num_seqs: usize,
    /// `max_num_batched_tokens`: most tokens per engine step.
    pub max_num_batched_tokens: usize,
    /// `block_size`: KV-cache block size in positions.
    pub block_size: usize,
    /// `max_waiting`: most queued requests before 429s.
    pub max_waiting: usize,
    /// `enable_prefix_caching`: reuse the KV cache of shared prompt prefixes.
    pub prefix_caching: bool,
}

/// Share of available memory used for the KV cache when nothing is set.
const DEFAULT_KV_FRACTION: f64 = 0.25;
/// Ceiling of the default KV-cache budget.
const DEFAULT_KV_MAX: usize = 4 << 30;

fn parse_usize(params: &BTreeMap<String, String>, key: &str) -> Result<Option<usize>, Error> {
    params
        .get(key)
        .map(|v| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| Error::Load(format!("{key}: '{v}' is not a whole number")))
        })
        .transpose()
}

/// Parses a byte size such as `4GiB`, `512MB`, `1e9` or `2147483648`.
pub fn parse_bytes(text: &str) -> Option<usize> {
    let t = text.trim();
    // The unit is the trailing run of letters (`1e9` has none).
    let split = t.len()
        - t.chars()
            .rev()
            .take_while(|c| c.is_ascii_alphabetic())
            .count();
    let (num, unit) = t.split_at(split);
    let n: f64 = num.trim().parse().ok()?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = n * mult;
    (bytes.is_finite() && bytes >= 0.0).then_some(bytes as usize)
}

/// Available memory in bytes (`MemAvailable` of /proc/meminfo), if known.
fn available_memory() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

impl LlmOptions {
    /// Reads the settings from a model's parameters.
    pub fn from_parameters(params: &BTreeMap<String, String>) -> Result<Self, Error> {
        let kv_cache_memory = params
            .get("kv_cache_memory")
            .map(|v| {
                parse_bytes(v).ok_or_else(|| {
                    Error::Load(format!("kv_cache_memory: '{v}' is not a size like 4GiB"))
                })
            })
            .transpose()?;
        let kv_cache_fraction = params
            .get("kv_cache_fraction")
            .map(|v| {
                v.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|f| *f > 0.0 && *f <= 1.0)
                    .ok_or_else(|| {
                        Error::Load(format!("kv_cache_fraction: '{v}' is not in (0, 1]"))
                    })
            })
            .transpose()?;
        let prefix_caching = match params.get("enable_prefix_caching").map(|s| s.trim()) {
            None | Some("true") | Some("1") | Some("True") => true,
            Some("false") | Some("0") | Some("False") => false,
            Some(v) => {
                return Err(Error::Load(format!(
                    "enable_prefix_caching: '{v}' is not true or false"
                )))
            }
        };
        let positive = |key: &str, default: usize| -> Result<usize, Error> {
            match parse_usize(params, key)? {
                Some(0) => Err(Error::Load(format!("{key} must be at least 1"))),
                Some(n) => Ok(n),
                None => Ok(default),
            }
        };
        Ok(LlmOptions {
            dtype: params.get("dtype").map(|s| s.trim().to_ascii_lowercase()),
            max_model_len: parse_usize(params, "max_model_len")?,
            kv_cache_memory,
            kv_cache_fraction,
            max_num_seqs: positive("max_num_seqs", 32)?,
            max_num_batched_tokens: positive("max_num_batched_tokens", 512)?,
            block_size: positive("block_size", 16)?,
            max_waiting: positive("max_waiting", 256)?,
            prefix_caching,
        })
    }

    /// The KV-cache budget in bytes: `kv_cache_memory`, else
    /// `kv_cache_fraction` of available memory, else a quarter of it (at
    /// most 4 GiB) — never more than every sequence at full length needs.
    pub fn kv_cache_bytes(&self, per_token: usize, max_model_len: usize) -> Result<usize, Error> {
        let most_needed = per_token
            .saturating_mul(max_model_len)
            .saturating_mul(self.max_num_seqs);
        if let Some(b) = self.kv_cache_memory {
            return Ok(b);
        }
        let avail = available_memory().unwrap_or(8 << 30);
        let budget = match self.kv_cache_fraction {
            Some(f) => (avail as f64 * f) as usize,
            None => ((avail as f64 * DEFAULT_KV_FRACTION) as usize).min(DEFAULT_KV_MAX),
        };
        Ok(budget.min(most_needed.max(per_token * self.block_size)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("4GiB"), Some(4 << 30));
        assert_eq!(parse_bytes("512MB"), Some(512_000_000));
        assert_eq!(parse_bytes("1e9"), Some(1_000_000_000));
        assert_eq!(parse_bytes(" 2048 "), Some(2048));
        assert_eq!(parse_bytes("2 kib"), Some(2048));
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(parse_bytes("-1GB"), None);
    }

    #[test]
    fn options_are_validated() {
        let mut p = BTreeMap::new();
        p.insert("max_num_seqs".to_string(), "0".to_string());
        assert!(LlmOptions::from_parameters(&p).is_err());
        p.insert("max_num_seqs".to_string(), "8".to_string());
        p.insert("kv_cache_memory".to_string(), "1GiB".to_string());
        let o = LlmOptions::from_parameters(&p).unwrap();
        assert_eq!(o.max_num_seqs, 8);
        assert_eq!(o.kv_cache_bytes(1000, 100).unwrap(), 1 << 30);
        p.insert("enable_prefix_caching".to_string(), "maybe".to_string());
        assert!(LlmOptions::from_parameters(&p).is_err());
    }
}

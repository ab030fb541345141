//! [`GenerationDefaults`]: a model's `generation_config.json`.

use std::path::Path;

use serde_json::Value;

use crate::error::{read_json_opt, TextError};
use crate::tokenizer::id_list;

/// Defaults from `generation_config.json` (fields absent there are `None`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerationDefaults {
    /// `eos_token_id` (an int or a list in the file).
    pub eos_token_ids: Vec<u32>,
    /// `bos_token_id`.
    pub bos_token_id: Option<u32>,
    /// `temperature`.
    pub temperature: Option<f32>,
    /// `top_p`.
    pub top_p: Option<f32>,
    /// `top_k`.
    pub top_k: Option<usize>,
    /// `min_p`.
    pub min_p: Option<f32>,
    /// `repetition_penalty`.
    pub repetition_penalty: Option<f32>,
    /// `max_new_tokens`.
    pub max_new_tokens: Option<usize>,
    /// `do_sample` (`false` means greedy in transformers).
    pub do_sample: Option<bool>,
}

impl GenerationDefaults {
    /// Parses a generation_config.json document.
    pub fn from_json(v: &Value) -> Self {
        let f = |k: &str| v.get(k).and_then(Value::as_f64).map(|x| x as f32);
        let u = |k: &str| {
            v.get(k)
                .and_then(Value::as_u64)
                .and_then(|x| usize::try_from(x).ok())
        };
        GenerationDefaults {
            eos_token_ids: id_list(v.get("eos_token_id")),
            bos_token_id: v
                .get("bos_token_id")
                .and_then(Value::as_u64)
                .and_then(|x| u32::try_from(x).ok()),
            temperature: f("temperature"),
            top_p: f("top_p"),
            top_k: u("top_k"),
            min_p: f("min_p"),
            repetition_penalty: f("repetition_penalty"),
            max_new_tokens: u("max_new_tokens"),
            do_sample: v.get("do_sample").and_then(Value::as_bool),
        }
    }

    /// Reads `generation_config.json` from a model folder (defaults when absent).
    pub fn from_hf_dir(dir: &Path) -> Result<Self, TextError> {
        Ok(read_json_opt(&dir.join("generation_config.json"))?
            .map(|v| Self::from_json(&v))
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_int_or_list_eos() {
        let d = GenerationDefaults::from_json(&json!({
            "eos_token_id": [128001, 128009], "temperature": 0.6, "top_p": 0.9, "top_k": 20,
            "do_sample": true, "bos_token_id": 128000
        }));
        assert_eq!(d.eos_token_ids, vec![128001, 128009]);
        assert_eq!(d.temperature, Some(0.6));
        assert_eq!(d.top_k, Some(20));
        assert_eq!(d.bos_token_id, Some(128000));
        assert_eq!(d.repetition_penalty, None);
        let d = GenerationDefaults::from_json(&json!({"eos_token_id": 2}));
        assert_eq!(d.eos_token_ids, vec![2]);
    }
}

//! Tokenisation with the model's `tokenizer.json` (HuggingFace `tokenizers`,
//! so ids are identical to transformers' fast tokenizers): truncation to
//! the model's length, special tokens, padding id, mask token, decoding.

use std::path::Path;

use serde_json::Value;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::{read_json, HfError, Result};

/// One tokenised text.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// Token ids, special tokens included, truncated.
    pub ids: Vec<u32>,
    /// Token type ids.
    pub type_ids: Vec<u32>,
}

/// The model's tokenizer with the settings the encoder needs.
pub struct TextTokenizer {
    tok: Tokenizer,
    pad_id: u32,
    mask_id: Option<u32>,
    cleanup: bool,
    max_len: usize,
}

/// A special token of `tokenizer_config.json`: a string or `{content: …}`.
fn special(cfg: &Value, key: &str) -> Option<String> {
    match cfg.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

impl TextTokenizer {
    /// Loads `tokenizer.json` (and `tokenizer_config.json` when present)
    /// from `dir`; inputs are truncated to `max_len` tokens.
    pub fn load(dir: &Path, max_len: usize, fallback_pad: u32) -> Result<TextTokenizer> {
        let path = dir.join("tokenizer.json");
        // The tokenizers crate panics on some malformed files (a truncated
        // `decoder`, a BPE merge longer than every token): a corrupt file
        // must fail the load, not take the server down.
        let mut tok = ferroserve_core::contain::contain(|| Tokenizer::from_file(&path))
            .map_err(|panic| {
                HfError::Tokenizer(format!(
                    "{}: malformed tokenizer file (the tokenizers library panicked reading it: \
                     {panic})",
                    path.display()
                ))
            })?
            .map_err(|e| HfError::Tokenizer(format!("{}: {e}", path.display())))?;
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg = if cfg_path.is_file() {
            read_json(&cfg_path)?
        } else {
            Value::Null
        };
        let pad_id = tok
            .get_padding()
            .map(|p| p.pad_id)
            .or_else(|| special(&cfg, "pad_token").and_then(|t| tok.token_to_id(&t)))
            .unwrap_or(fallback_pad);
        let mask_id = special(&cfg, "mask_token")
            .and_then(|t| tok.token_to_id(&t))
            .or_else(|| tok.token_to_id("[MASK]"))
            .or_else(|| tok.token_to_id("<mask>"));
        let cleanup = cfg
            .get("clean_up_tokenization_spaces")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        tok.with_padding(None);
        tok.with_truncation(Some(TruncationParams {
            direction: TruncationDirection::Right,
            max_length: max_len,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
        }))
        .map_err(|e| HfError::Tokenizer(e.to_string()))?;
        Ok(TextTokenizer {
            tok,
            pad_id,
            mask_id,
            cleanup,
            max_len,
        })
    }

    /// Tokenises texts with special tokens, truncated to the model's length.
    pub fn encode(&self, texts: &[String]) -> Result<Vec<Encoded>> {
        let inputs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let encs = self
            .tok
            .encode_batch(inputs, true)
            .map_err(|e| HfError::Tokenizer(e.to_string()))?;
        Ok(encs
            .into_iter()
            .map(|e| Encoded {
                ids: e.get_ids().to_vec(),
                type_ids: e.get_type_ids().to_vec(),
            })
            .collect())
    }

    /// Decodes ids as transformers' `tokenizer.decode` does (including its
    /// `clean_up_tokenization_spaces` step when the tokenizer asks for it).
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        let text = self
            .tok
            .decode(ids, skip_special_tokens)
            .map_err(|e| HfError::Tokenizer(e.to_string()))?;
        Ok(if self.cleanup {
            clean_up_tokenization(&text)
        } else {
            text
        })
    }

    /// The padding token id.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The mask token id, if the tokenizer has one.
    pub fn mask_id(&self) -> Option<u32> {
        self.mask_id
    }

    /// Longest tokenised input.
    pub fn max_len(&self) -> usize {
        self.max_len
    }
}

/// transformers' `PreTrainedTokenizerBase.clean_up_tokenization`.
pub fn clean_up_tokenization(s: &str) -> String {
    s.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
}

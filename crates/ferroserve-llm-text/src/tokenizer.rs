//! [`TextTokenizer`]: a HuggingFace `tokenizer.json` (with the settings of
//! `tokenizer_config.json`, `generation_config.json` and `config.json`), or a
//! vocabulary embedded in GGUF metadata tokenised exactly as llama.cpp does.

use std::path::Path;

use candle_core::quantized::gguf_file::Content;
use serde_json::Value;
use tokenizers::{AddedToken, Tokenizer};

use crate::bytes::byte_level_decode;
use crate::error::{read_json_opt, TextError};
use crate::gguf_vocab::{parse_byte_token, token_type, GgufVocab};

const FLAG_SPECIAL: u8 = 1;
const FLAG_BYTE_FALLBACK: u8 = 2;

enum Backend {
    Hf {
        tokenizer: Box<Tokenizer>,
        /// Special tokens added by hand (Llama/Gemma tokenizer classes with
        /// `add_bos_token`/`add_eos_token`) instead of the post-processor.
        manual: Option<(Option<u32>, Option<u32>)>,
    },
    Gguf(Box<GgufVocab>),
}

/// A tokenizer for a language model: encoding, decoding and per-token bytes.
pub struct TextTokenizer {
    backend: Backend,
    token_bytes: Vec<Vec<u8>>,
    flags: Vec<u8>,
    eos_ids: Vec<u32>,
    bos_token: Option<String>,
    eos_token: Option<String>,
    bos_id: Option<u32>,
    clean_up_tokenization_spaces: bool,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("vocab_size", &self.token_bytes.len())
            .field("eos_ids", &self.eos_ids)
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish()
    }
}

/// `"<s>"` or `{"content": "<s>", ...}` (an AddedToken dict) → the string.
fn token_string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// `eos_token_id`: an int or a list of ints.
pub(crate) fn id_list(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|x| u32::try_from(x).ok())
            .into_iter()
            .collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_u64().and_then(|x| u32::try_from(x).ok()))
            .collect(),
        _ => Vec::new(),
    }
}

fn push_unique(v: &mut Vec<u32>, id: u32) {
    if !v.contains(&id) {
        v.push(id);
    }
}

impl TextTokenizer {
    /// Loads `tokenizer.json` from a HuggingFace model folder, with
    /// `tokenizer_config.json` (special tokens, `add_bos_token`/`add_eos_token`,
    /// added tokens) and end-of-sequence ids from `generation_config.json` and `config.json`.
    pub fn from_hf_dir(dir: &Path) -> Result<Self, TextError> {
        let tj_path = dir.join("tokenizer.json");
        let tj = read_json_opt(&tj_path)?
            .ok_or_else(|| TextError::Tokenizer(format!("{} not found", tj_path.display())))?;
        // The tokenizers crate panics on some malformed files (a truncated
        // `decoder`, a BPE merge longer than every token): a corrupt file
        // must fail the load, not take the server down.
        let mut tokenizer = ferroserve_core::contain::contain(|| Tokenizer::from_file(&tj_path))
            .map_err(|panic| {
                TextError::Tokenizer(format!(
                    "{}: malformed tokenizer file (the tokenizers library panicked reading it: \
                     {panic})",
                    tj_path.display()
                ))
            })?
            .map_err(|e| TextError::Tokenizer(format!("{}: {e}", tj_path.display())))?;
        let tc = read_json_opt(&dir.join("tokenizer_config.json"))?.unwrap_or(Value::Null);
        let gc = read_json_opt(&dir.join("generation_config.json"))?.unwrap_or(Value::Null);
        let cfg = read_json_opt(&dir.join("config.json"))?.unwrap_or(Value::Null);

        // Added tokens declared only in tokenizer_config.json.
        if let Some(Value::Object(added)) = tc.get("added_tokens_decoder") {
            let mut missing = Vec::new();
            for v in added.values() {
                let Some(content) = v.get("content").and_then(Value::as_str) else {
                    continue;
                };
                if tokenizer.token_to_id(content).is_none() {
                    let special = v.get("special").and_then(Value::as_bool).unwrap_or(false);
                    missing.push(AddedToken::from(content.to_string(), special));
                }
            }
            if !missing.is_empty() {
                tokenizer
                    .add_tokens(missing)
                    .map_err(|e| TextError::Tokenizer(e.to_string()))?;
            }
        }

        let bos_token = token_string(tc.get("bos_token"));
        let eos_token = token_string(tc.get("eos_token"));
        let bos_id = bos_token.as_deref().and_then(|t| tokenizer.token_to_id(t));
        let eos_tok_id = eos_token.as_deref().and_then(|t| tokenizer.token_to_id(t));

        let class = tc
            .get("tokenizer_class")
            .and_then(Value::as_str)
            .unwrap_or("");
        let add_bos = tc.get("add_bos_token").and_then(Value::as_bool);
        let add_eos = tc.get("add_eos_token").and_then(Value::as_bool);
        let rebuilds_post_processor = matches!(
            class,
            "LlamaTokenizer"
                | "LlamaTokenizerFast"
                | "GemmaTokenizer"
                | "GemmaTokenizerFast"
                | "CodeLlamaTokenizer"
                | "CodeLlamaTokenizerFast"
        );
        let manual = if rebuilds_post_processor && (add_bos.is_some() || add_eos.is_some()) {
            Some((
                bos_id.filter(|_| add_bos.unwrap_or(true)),
                eos_tok_id.filter(|_| add_eos.unwrap_or(false)),
            ))
        } else {
            None
        };

        let mut eos_ids = Vec::new();
        for id in id_list(gc.get("eos_token_id")) {
            push_unique(&mut eos_ids, id);
        }
        if eos_ids.is_empty() {
            for id in id_list(cfg.get("eos_token_id")) {
                push_unique(&mut eos_ids, id);
            }
        }
        if let Some(id) = eos_tok_id {
            push_unique(&mut eos_ids, id);
        }

        // Per-token bytes.
        let decoder_types = decoder_types(tj.get("decoder"));
        let byte_level = decoder_types.iter().any(|t| t == "ByteLevel");
        let metaspace = decoder_types
            .iter()
            .any(|t| t == "Metaspace" || t == "Replace");
        let byte_fallback = tj
            .pointer("/model/byte_fallback")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let added = tokenizer.get_added_tokens_decoder();
        let max_added = added.keys().copied().max().map_or(0, |m| m as usize + 1);
        let size = tokenizer.get_vocab_size(true).max(max_added);
        let mut token_bytes = Vec::with_capacity(size);
        let mut flags = vec![0u8; size];
        for id in 0..size as u32 {
            let bytes = if let Some(a) = added.get(&id) {
                if a.special {
                    flags[id as usize] |= FLAG_SPECIAL;
                }
                a.content.as_bytes().to_vec()
            } else if let Some(tok) = tokenizer.id_to_token(id) {
                match parse_byte_token(&tok).filter(|_| byte_fallback) {
                    Some(b) => {
                        flags[id as usize] |= FLAG_BYTE_FALLBACK;
                        vec![b]
                    }
                    None if byte_level => byte_level_decode(&tok),
                    None if metaspace => tok.replace('\u{2581}', " ").into_bytes(),
                    None => tok.into_bytes(),
                }
            } else {
                Vec::new()
            };
            token_bytes.push(bytes);
        }
        let clean_up_tokenization_spaces = tc
            .get("clean_up_tokenization_spaces")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(TextTokenizer {
            backend: Backend::Hf {
                tokenizer: Box::new(tokenizer),
                manual,
            },
            token_bytes,
            flags,
            eos_ids,
            bos_token,
            eos_token,
            bos_id,
            clean_up_tokenization_spaces,
        })
    }

    /// Rebuilds the tokenizer embedded in GGUF metadata (`tokenizer.ggml.*`);
    /// encoding is identical to llama.cpp's `llama_tokenize` with special-token parsing.
    pub fn from_gguf(content: &Content) -> Result<Self, TextError> {
        let vocab = GgufVocab::from_content(content)?;
        let n = vocab.tokens.len();
        let mut token_bytes = Vec::with_capacity(n);
        let mut flags = vec![0u8; n];
        for id in 0..n as u32 {
            token_bytes.push(vocab.token_bytes(id));
            match vocab.types.get(id as usize).copied() {
                // llama.cpp renders control and unknown tokens only with `special`.
                Some(token_type::CONTROL | token_type::UNKNOWN) => {
                    flags[id as usize] |= FLAG_SPECIAL
                }
                Some(token_type::BYTE) => flags[id as usize] |= FLAG_BYTE_FALLBACK,
                _ => {}
            }
        }
        // EOS first, then the rest of llama.cpp's end-of-generation set.
        let mut eos_ids = Vec::new();
        for id in vocab
            .eos_id
            .into_iter()
            .chain(vocab.eog_ids.iter().copied())
        {
            push_unique(&mut eos_ids, id);
        }
        let name = |id: Option<u32>| id.and_then(|i| vocab.tokens.get(i as usize).cloned());
        Ok(TextTokenizer {
            bos_token: name(vocab.bos_id),
            eos_token: name(vocab.eos_id),
            bos_id: vocab.bos_id,
            eos_ids,
            token_bytes,
            flags,
            clean_up_tokenization_spaces: false,
            backend: Backend::Gguf(Box::new(vocab)),
        })
    }

    /// Tokenises `text`. Special tokens written in the text are recognised;
    /// `add_special_tokens` adds BOS/EOS as the model's tokenizer does.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TextError> {
        match &self.backend {
            Backend::Hf { tokenizer, manual } => {
                let post = add_special_tokens && manual.is_none();
                let enc = tokenizer
                    .encode_fast(text, post)
                    .map_err(|e| TextError::Tokenizer(e.to_string()))?;
                match manual {
                    Some((bos, eos)) if add_special_tokens => {
                        let mut ids = Vec::with_capacity(enc.len() + 2);
                        ids.extend(*bos);
                        ids.extend_from_slice(enc.get_ids());
                        ids.extend(*eos);
                        Ok(ids)
                    }
                    _ => Ok(enc.get_ids().to_vec()),
                }
            }
            Backend::Gguf(v) => v.encode(text, add_special_tokens, true),
        }
    }

    /// Like [`TextTokenizer::encode`]; for GGUF vocabularies `parse_special =
    /// false` treats control-token text as plain text (llama.cpp's `special=false`).
    /// HuggingFace tokenizers always recognise their special tokens.
    pub fn encode_with(
        &self,
        text: &str,
        add_special_tokens: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, TextError> {
        match &self.backend {
            Backend::Gguf(v) => v.encode(text, add_special_tokens, parse_special),
            Backend::Hf { .. } => self.encode(text, add_special_tokens),
        }
    }

    /// Decodes token ids to text (ids outside the vocabulary are ignored).
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TextError> {
        match &self.backend {
            Backend::Hf { tokenizer, .. } => tokenizer
                .decode(ids, skip_special_tokens)
                .map_err(|e| TextError::Tokenizer(e.to_string())),
            Backend::Gguf(v) => {
                let mut bytes = Vec::new();
                let mut first = true;
                for &id in ids {
                    if skip_special_tokens && self.is_special(id) {
                        continue;
                    }
                    let Some(b) = self.token_bytes.get(id as usize) else {
                        continue;
                    };
                    let b = if first && v.strips_leading_space() {
                        b.strip_prefix(b" ").unwrap_or(b)
                    } else {
                        b
                    };
                    first = false;
                    bytes.extend_from_slice(b);
                }
                Ok(String::from_utf8_lossy(&bytes).into_owned())
            }
        }
    }

    /// The raw bytes one token stands for (byte-level tokens mapped back
    /// through the GPT-2 byte table, SentencePiece `▁` as a space, `<0xNN>` as
    /// its byte, added tokens as their text). Empty for an unknown id.
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.token_bytes.get(id as usize).map_or(&[], Vec::as_slice)
    }

    /// One token's text on its own (lossy where the token is part of a character).
    pub fn token_text(&self, id: u32) -> String {
        String::from_utf8_lossy(self.token_bytes(id)).into_owned()
    }

    /// Number of token ids (added tokens included).
    pub fn vocab_size(&self) -> usize {
        self.token_bytes.len()
    }

    /// Ids that end generation (end-of-sequence, end-of-turn).
    pub fn eos_token_ids(&self) -> Vec<u32> {
        self.eos_ids.clone()
    }

    /// The BOS token's text (a chat-template variable).
    pub fn bos_token(&self) -> Option<String> {
        self.bos_token.clone()
    }

    /// The EOS token's text (a chat-template variable).
    pub fn eos_token(&self) -> Option<String> {
        self.eos_token.clone()
    }

    /// The BOS token's id.
    pub fn bos_token_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// Whether `id` is a special (control) token, dropped by `skip_special_tokens`.
    pub fn is_special(&self, id: u32) -> bool {
        self.flags
            .get(id as usize)
            .is_some_and(|f| f & FLAG_SPECIAL != 0)
    }

    /// Whether `id` is a byte-fallback token `<0xNN>`.
    pub fn is_byte_fallback(&self, id: u32) -> bool {
        self.flags
            .get(id as usize)
            .is_some_and(|f| f & FLAG_BYTE_FALLBACK != 0)
    }

    /// The id of a token string, if it is in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        match &self.backend {
            Backend::Hf { tokenizer, .. } => tokenizer.token_to_id(token),
            Backend::Gguf(v) => v.token_to_id.get(token).copied(),
        }
    }

    /// `clean_up_tokenization_spaces` from tokenizer_config.json (transformers
    /// applies it in `decode`; streaming servers, like vLLM, do not: neither does [`TextTokenizer::decode`]).
    pub fn clean_up_tokenization_spaces(&self) -> bool {
        self.clean_up_tokenization_spaces
    }
}

/// The `type`s of a tokenizer.json decoder (flattening a `Sequence`).
fn decoder_types(v: Option<&Value>) -> Vec<String> {
    let Some(v) = v else { return Vec::new() };
    let mut out = Vec::new();
    if let Some(t) = v.get("type").and_then(Value::as_str) {
        out.push(t.to_string());
    }
    if let Some(Value::Array(ds)) = v.get("decoders") {
        for d in ds {
            out.extend(decoder_types(Some(d)));
        }
    }
    out
}

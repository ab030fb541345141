//! Vocabulary embedded in GGUF metadata (`tokenizer.ggml.*`), tokenised the
//! way llama.cpp does it: special-token partitioning (longest token first),
//! SentencePiece-style score merging with byte fallback for `llama`
//! vocabularies, byte-level BPE with the pre-tokenizer regexes llama.cpp picks
//! from `tokenizer.ggml.pre` for `gpt2` vocabularies.

use std::collections::{BinaryHeap, HashMap};

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::Split;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{SplitDelimiterBehavior, Tokenizer};

use crate::error::TextError;

/// llama.cpp token types (`tokenizer.ggml.token_type`).
pub(crate) mod token_type {
    /// An ordinary token.
    pub const NORMAL: i32 = 1;
    /// The unknown token.
    pub const UNKNOWN: i32 = 2;
    /// A control token (BOS, EOS, chat markers).
    pub const CONTROL: i32 = 3;
    /// A token the model's authors added; matched in text even when special parsing is off.
    pub const USER_DEFINED: i32 = 4;
    /// A byte-fallback token `<0xNN>`.
    pub const BYTE: i32 = 6;
}

/// Token texts llama.cpp treats as end-of-generation (and as control tokens).
pub(crate) const EOG_NAMES: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
];

/// Which tokenisation algorithm a GGUF vocabulary uses.
pub(crate) enum GgufModel {
    /// `llama`: SentencePiece vocabulary merged by score.
    Spm {
        /// Add a space before the text (and after each special token).
        add_space_prefix: bool,
        /// Byte tokens `<0xNN>` by byte value.
        byte_ids: Box<[Option<u32>; 256]>,
    },
    /// `gpt2`: byte-level BPE (boxed: a whole tokenizer).
    Bpe(Box<Tokenizer>),
}

/// A vocabulary read from GGUF metadata.
pub(crate) struct GgufVocab {
    /// Token strings by id.
    pub tokens: Vec<String>,
    /// Token scores by id (SentencePiece merge priority).
    pub scores: Vec<f32>,
    /// Token types by id.
    pub types: Vec<i32>,
    /// Token text to id (the last id wins on duplicates, as in llama.cpp).
    pub token_to_id: HashMap<String, u32>,
    /// Tokens matched in text as a whole before tokenising, longest text first.
    pub partition_tokens: Vec<u32>,
    /// The algorithm.
    pub model: GgufModel,
    /// BOS id.
    pub bos_id: Option<u32>,
    /// EOS id.
    pub eos_id: Option<u32>,
    /// Every id that ends generation, as llama.cpp's end-of-generation set:
    /// EOS, EOT, EOM and the tokens named in [`EOG_NAMES`].
    pub eog_ids: Vec<u32>,
    /// Unknown-token id.
    pub unk_id: Option<u32>,
    /// Prepend BOS when special tokens are added.
    pub add_bos: bool,
    /// Append EOS when special tokens are added.
    pub add_eos: bool,
}

fn meta<'a>(content: &'a Content, key: &str) -> Option<&'a Value> {
    content.metadata.get(key)
}

fn meta_u32(content: &Content, key: &str) -> Option<u32> {
    let v = meta(content, key)?;
    match v {
        Value::U8(x) => Some(u32::from(*x)),
        Value::U16(x) => Some(u32::from(*x)),
        Value::U32(x) => Some(*x),
        Value::U64(x) => u32::try_from(*x).ok(),
        Value::I8(x) => u32::try_from(*x).ok(),
        Value::I16(x) => u32::try_from(*x).ok(),
        Value::I32(x) => u32::try_from(*x).ok(),
        Value::I64(x) => u32::try_from(*x).ok(),
        _ => None,
    }
}

fn meta_bool(content: &Content, key: &str) -> Option<bool> {
    match meta(content, key)? {
        Value::Bool(b) => Some(*b),
        _ => None,
    }
}

/// A string from GGUF metadata.
pub(crate) fn meta_str<'a>(content: &'a Content, key: &str) -> Option<&'a str> {
    match meta(content, key)? {
        Value::String(s) => Some(s.as_str()),
        _ => None,
    }
}

fn meta_array<'a>(content: &'a Content, key: &str) -> Result<&'a Vec<Value>, TextError> {
    match meta(content, key) {
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(TextError::Gguf(format!("{key} is not an array"))),
        None => Err(TextError::Gguf(format!("{key} is missing"))),
    }
}

fn as_i32(v: &Value) -> Option<i32> {
    match v {
        Value::I32(x) => Some(*x),
        Value::U32(x) => i32::try_from(*x).ok(),
        Value::I64(x) => i32::try_from(*x).ok(),
        Value::U8(x) => Some(i32::from(*x)),
        Value::I8(x) => Some(i32::from(*x)),
        Value::U16(x) => Some(i32::from(*x)),
        Value::I16(x) => Some(i32::from(*x)),
        _ => None,
    }
}

/// The pre-tokenizer regexes llama.cpp applies, in turn, for a `tokenizer.ggml.pre` value.
fn bpe_regexes(pre: &str) -> Vec<&'static str> {
    const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
    match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "pixtral" => vec![LLAMA3],
        "qwen2" | "deepseek-r1-qwen" | "megrez" => vec![QWEN2],
        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de"
        | "jina-v2-code" | "roberta-bpe" => vec![GPT2],
        // llama.cpp's default for unknown / "default" pre-tokenizers.
        _ => vec![r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"],
    }
}

impl GgufVocab {
    /// Reads the vocabulary from GGUF metadata.
    pub(crate) fn from_content(content: &Content) -> Result<Self, TextError> {
        let model_name = meta_str(content, "tokenizer.ggml.model")
            .ok_or_else(|| TextError::Gguf("tokenizer.ggml.model is missing".into()))?;
        let tokens: Vec<String> = meta_array(content, "tokenizer.ggml.tokens")?
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(TextError::Gguf(
                    "tokenizer.ggml.tokens holds a non-string".into(),
                )),
            })
            .collect::<Result<_, _>>()?;
        let n = tokens.len();
        let scores: Vec<f32> = match meta(content, "tokenizer.ggml.scores") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| match v {
                    Value::F32(x) => *x,
                    Value::F64(x) => *x as f32,
                    _ => 0.0,
                })
                .collect(),
            _ => vec![0.0; n],
        };
        let mut types: Vec<i32> = match meta(content, "tokenizer.ggml.token_type") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| as_i32(v).unwrap_or(token_type::NORMAL))
                .collect(),
            _ => vec![token_type::NORMAL; n],
        };
        if scores.len() != n || types.len() != n {
            return Err(TextError::Gguf(
                "tokens, scores and token_type differ in length".into(),
            ));
        }
        let mut token_to_id = HashMap::with_capacity(n);
        for (i, t) in tokens.iter().enumerate() {
            token_to_id.insert(t.clone(), i as u32);
        }
        let valid = |id: Option<u32>| id.filter(|&i| (i as usize) < n);
        let bos_id = valid(meta_u32(content, "tokenizer.ggml.bos_token_id"));
        let eos_id = valid(meta_u32(content, "tokenizer.ggml.eos_token_id"));
        let eot_id = valid(meta_u32(content, "tokenizer.ggml.eot_token_id"));
        let unk_id = valid(meta_u32(content, "tokenizer.ggml.unknown_token_id"));
        let eom_id = valid(meta_u32(content, "tokenizer.ggml.eom_token_id"));
        let mut eog_ids: Vec<u32> = Vec::new();
        for name in EOG_NAMES {
            if let Some(&id) = token_to_id.get(*name) {
                if let Some(t) = types.get_mut(id as usize) {
                    *t = token_type::CONTROL;
                }
                eog_ids.push(id);
            }
        }
        for id in [eos_id, eot_id, eom_id].into_iter().flatten() {
            if !eog_ids.contains(&id) {
                eog_ids.push(id);
            }
        }
        eog_ids.sort_unstable();

        let (model, default_add_bos) = match model_name {
            "llama" => {
                let mut byte_ids: Box<[Option<u32>; 256]> = Box::new([None; 256]);
                for (b, slot) in byte_ids.iter_mut().enumerate() {
                    let name = format!("<0x{b:02X}>");
                    *slot = token_to_id.get(&name).copied().or_else(|| {
                        // llama.cpp falls back to the byte as a one-character token.
                        let s = [b as u8];
                        std::str::from_utf8(&s)
                            .ok()
                            .and_then(|s| token_to_id.get(s).copied())
                    });
                }
                let add_space_prefix =
                    meta_bool(content, "tokenizer.ggml.add_space_prefix").unwrap_or(true);
                (
                    GgufModel::Spm {
                        add_space_prefix,
                        byte_ids,
                    },
                    true,
                )
            }
            "gpt2" => {
                let merges = match meta(content, "tokenizer.ggml.merges") {
                    Some(Value::Array(a)) => a
                        .iter()
                        .filter_map(|v| match v {
                            Value::String(s) => {
                                let (a, b) = s.split_once(' ')?;
                                Some((a.to_string(), b.to_string()))
                            }
                            _ => None,
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                // The BPE builder indexes a buffer as long as the longest
                // token with each merge's concatenation, and panics when a
                // merge is longer; a merge whose result is not a token is an
                // error either way, so refuse it first.
                if let Some((a, b)) = merges
                    .iter()
                    .find(|(a, b)| !token_to_id.contains_key(&format!("{a}{b}")))
                {
                    return Err(TextError::Gguf(format!(
                        "building BPE: merge {a:?} + {b:?} makes a token not in the vocabulary"
                    )));
                }
                let pre = meta_str(content, "tokenizer.ggml.pre").unwrap_or("default");
                let ignore_merges = matches!(pre, "llama3" | "llama-v3" | "llama-bpe");
                let vocab: tokenizers::models::bpe::Vocab =
                    token_to_id.iter().map(|(k, v)| (k.clone(), *v)).collect();
                let bpe = BPE::builder()
                    .vocab_and_merges(vocab, merges)
                    .ignore_merges(ignore_merges)
                    .build()
                    .map_err(|e| TextError::Gguf(format!("building BPE: {e}")))?;
                let mut pres: Vec<PreTokenizerWrapper> = Vec::new();
                for re in bpe_regexes(pre) {
                    let split = Split::new(
                        tokenizers::pre_tokenizers::split::SplitPattern::Regex(re.to_string()),
                        SplitDelimiterBehavior::Isolated,
                        false,
                    )
                    .map_err(|e| TextError::Gguf(format!("pre-tokenizer regex: {e}")))?;
                    pres.push(split.into());
                }
                pres.push(ByteLevel::new(false, false, false).into());
                let mut tok = Tokenizer::new(bpe);
                tok.with_pre_tokenizer(Some(Sequence::new(pres)));
                tok.with_decoder(Some(ByteLevel::new(false, false, false)));
                (GgufModel::Bpe(Box::new(tok)), false)
            }
            other => {
                return Err(TextError::Gguf(format!(
                    "tokenizer model {other:?} is not supported (only llama and gpt2)"
                )))
            }
        };
        let add_bos = meta_bool(content, "tokenizer.ggml.add_bos_token").unwrap_or(default_add_bos);
        let add_eos = meta_bool(content, "tokenizer.ggml.add_eos_token").unwrap_or(false);

        let mut partition_tokens: Vec<u32> = (0..n as u32)
            .filter(|&i| {
                matches!(
                    types.get(i as usize).copied(),
                    Some(token_type::CONTROL | token_type::USER_DEFINED | token_type::UNKNOWN)
                )
            })
            .filter(|&i| tokens.get(i as usize).is_some_and(|t| !t.is_empty()))
            .collect();
        // Stable sort by text length, longest first, as llama.cpp does.
        partition_tokens.sort_by_key(|&i| std::cmp::Reverse(tokens[i as usize].len()));

        Ok(GgufVocab {
            tokens,
            scores,
            types,
            token_to_id,
            partition_tokens,
            model,
            bos_id,
            eos_id,
            eog_ids,
            unk_id,
            add_bos,
            add_eos,
        })
    }

    /// Tokenises `text` as llama.cpp's `llama_tokenize(text, add_special, parse_special)`.
    pub(crate) fn encode(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, TextError> {
        let fragments = self.partition(text, parse_special);
        let mut out = Vec::new();
        if add_special && self.add_bos {
            if let Some(b) = self.bos_id {
                out.push(b);
            }
        }
        match &self.model {
            GgufModel::Spm {
                add_space_prefix,
                byte_ids,
            } => {
                let mut prev_special = true;
                for frag in fragments {
                    match frag {
                        Fragment::Text(t) => {
                            let mut s = String::with_capacity(t.len() + 3);
                            if *add_space_prefix && prev_special {
                                s.push(' ');
                            }
                            s.push_str(t);
                            let escaped = s.replace(' ', "\u{2581}");
                            self.spm_tokenize(&escaped, byte_ids, &mut out);
                            prev_special = false;
                        }
                        Fragment::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                    }
                }
            }
            GgufModel::Bpe(tok) => {
                for frag in fragments {
                    match frag {
                        Fragment::Text(t) => {
                            let enc = tok
                                .encode_fast(t, false)
                                .map_err(|e| TextError::Tokenizer(e.to_string()))?;
                            out.extend_from_slice(enc.get_ids());
                        }
                        Fragment::Token(id) => out.push(id),
                    }
                }
            }
        }
        if add_special && self.add_eos {
            if let Some(e) = self.eos_id {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Splits text on special tokens: for each token (longest first), every
    /// occurrence in the remaining raw-text fragments becomes its own fragment.
    fn partition<'t>(&self, text: &'t str, parse_special: bool) -> Vec<Fragment<'t>> {
        let mut frags = vec![Fragment::Text(text)];
        if text.is_empty() {
            return Vec::new();
        }
        for &id in &self.partition_tokens {
            let ty = self.types.get(id as usize).copied().unwrap_or(0);
            if !parse_special && (ty == token_type::CONTROL || ty == token_type::UNKNOWN) {
                continue;
            }
            let Some(tok) = self.tokens.get(id as usize) else {
                continue;
            };
            if !frags
                .iter()
                .any(|f| matches!(f, Fragment::Text(t) if t.contains(tok.as_str())))
            {
                continue;
            }
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                match f {
                    Fragment::Text(t) => {
                        let mut rest = t;
                        while let Some(pos) = rest.find(tok.as_str()) {
                            if pos > 0 {
                                next.push(Fragment::Text(&rest[..pos]));
                            }
                            next.push(Fragment::Token(id));
                            rest = &rest[pos + tok.len()..];
                        }
                        if !rest.is_empty() {
                            next.push(Fragment::Text(rest));
                        }
                    }
                    tokf => next.push(tokf),
                }
            }
            frags = next;
        }
        frags
    }

    /// llama.cpp's SentencePiece session: merge adjacent symbols by the score
    /// of the merged token (highest first, leftmost on ties), then emit each
    /// symbol as its token or as byte tokens.
    fn spm_tokenize(&self, text: &str, byte_ids: &[Option<u32>; 256], out: &mut Vec<u32>) {
        struct Sym {
            start: usize,
            len: usize,
            prev: isize,
            next: isize,
        }
        #[derive(PartialEq)]
        struct Bigram {
            score: f32,
            left: usize,
            right: usize,
            size: usize,
        }
        impl Eq for Bigram {}
        impl PartialOrd for Bigram {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }
        impl Ord for Bigram {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                // Max-heap: higher score first, then lower left index first.
                self.score
                    .total_cmp(&other.score)
                    .then_with(|| other.left.cmp(&self.left))
            }
        }
        let bytes = text.as_bytes();
        let mut syms: Vec<Sym> = Vec::new();
        for (i, (start, ch)) in text.char_indices().enumerate() {
            let len = ch.len_utf8();
            let next = if start + len == bytes.len() {
                -1
            } else {
                i as isize + 1
            };
            syms.push(Sym {
                start,
                len,
                prev: i as isize - 1,
                next,
            });
        }
        let mut heap = BinaryHeap::new();
        let try_add = |syms: &Vec<Sym>, heap: &mut BinaryHeap<Bigram>, l: isize, r: isize| {
            if l < 0 || r < 0 {
                return;
            }
            let (l, r) = (l as usize, r as usize);
            let (Some(a), Some(b)) = (syms.get(l), syms.get(r)) else {
                return;
            };
            let Some(s) = text.get(a.start..a.start + a.len + b.len) else {
                return;
            };
            if let Some(&id) = self.token_to_id.get(s) {
                heap.push(Bigram {
                    score: self.scores.get(id as usize).copied().unwrap_or(0.0),
                    left: l,
                    right: r,
                    size: s.len(),
                });
            }
        };
        for i in 1..syms.len() {
            try_add(&syms, &mut heap, i as isize - 1, i as isize);
        }
        while let Some(bg) = heap.pop() {
            let (ln, rn) = (syms[bg.left].len, syms[bg.right].len);
            if ln == 0 || rn == 0 || ln + rn != bg.size {
                continue;
            }
            syms[bg.left].len += rn;
            syms[bg.right].len = 0;
            let rnext = syms[bg.right].next;
            syms[bg.left].next = rnext;
            if rnext >= 0 {
                syms[rnext as usize].prev = bg.left as isize;
            }
            let lprev = syms[bg.left].prev;
            try_add(&syms, &mut heap, lprev, bg.left as isize);
            try_add(&syms, &mut heap, bg.left as isize, rnext);
        }
        let mut i: isize = if syms.is_empty() { -1 } else { 0 };
        while i >= 0 {
            let s = &syms[i as usize];
            let piece = &text[s.start..s.start + s.len];
            if let Some(&id) = self.token_to_id.get(piece) {
                out.push(id);
            } else {
                for &b in piece.as_bytes() {
                    if let Some(id) = byte_ids[b as usize].or(self.unk_id) {
                        out.push(id);
                    }
                }
            }
            i = s.next;
        }
    }

    /// The raw bytes a token stands for (as llama.cpp's `token_to_piece`
    /// with special tokens rendered).
    pub(crate) fn token_bytes(&self, id: u32) -> Vec<u8> {
        let Some(tok) = self.tokens.get(id as usize) else {
            return Vec::new();
        };
        let ty = self
            .types
            .get(id as usize)
            .copied()
            .unwrap_or(token_type::NORMAL);
        match &self.model {
            GgufModel::Spm { .. } => {
                if ty == token_type::BYTE {
                    if let Some(b) = parse_byte_token(tok) {
                        return vec![b];
                    }
                }
                if matches!(
                    ty,
                    token_type::CONTROL | token_type::USER_DEFINED | token_type::UNKNOWN
                ) {
                    return tok.as_bytes().to_vec();
                }
                tok.replace('\u{2581}', " ").into_bytes()
            }
            GgufModel::Bpe(_) => {
                if matches!(
                    ty,
                    token_type::CONTROL | token_type::USER_DEFINED | token_type::UNKNOWN
                ) {
                    tok.as_bytes().to_vec()
                } else {
                    crate::bytes::byte_level_decode(tok)
                }
            }
        }
    }

    /// Whether the first decoded token loses one leading space (SentencePiece with a space prefix).
    pub(crate) fn strips_leading_space(&self) -> bool {
        matches!(
            self.model,
            GgufModel::Spm {
                add_space_prefix: true,
                ..
            }
        )
    }
}

/// `<0xNN>` → the byte.
pub(crate) fn parse_byte_token(tok: &str) -> Option<u8> {
    let hex = tok.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

enum Fragment<'t> {
    Text(&'t str),
    Token(u32),
}

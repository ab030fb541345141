//! GGUF vocabularies rebuilt from the HF fixture tokenizers (as llama.cpp's
//! converter writes them) must tokenise like the HF originals where llama.cpp
//! and HF agree, and show llama.cpp's own behaviour where they differ.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value as G, VersionedMagic};
use ferroserve_llm_text::{IncrementalDecoder, TextTokenizer};
use proptest::prelude::*;
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/llm")
}

fn read_json(p: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(p).ok()?;
    serde_json::from_str(&text).ok()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn content(meta: Vec<(&str, G)>) -> Content {
    Content {
        magic: VersionedMagic::GgufV3,
        metadata: meta.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        tensor_infos: HashMap::new(),
        tensor_data_offset: 0,
    }
}

fn strings(v: impl IntoIterator<Item = String>) -> G {
    G::Array(v.into_iter().map(G::String).collect())
}

/// The tokens, scores and types llama.cpp's converter writes for a tokenizer.json.
fn vocab_of(tj: &Value) -> (Vec<String>, Vec<i32>) {
    let mut by_id: HashMap<u32, (String, i32)> = HashMap::new();
    for (t, id) in tj["model"]["vocab"].as_object().unwrap() {
        let id = id.as_u64().unwrap() as u32;
        let ty = if t.len() == 6 && t.starts_with("<0x") && tj["model"]["byte_fallback"] == true {
            6
        } else {
            1
        };
        by_id.insert(id, (t.clone(), ty));
    }
    for a in tj["added_tokens"].as_array().unwrap() {
        let ty = if a["special"].as_bool().unwrap() {
            3
        } else {
            4
        };
        by_id.insert(
            a["id"].as_u64().unwrap() as u32,
            (a["content"].as_str().unwrap().to_string(), ty),
        );
    }
    let n = by_id.keys().max().map_or(0, |m| m + 1);
    (0..n)
        .map(|i| by_id.remove(&i).unwrap_or((format!("[PAD{i}]"), 5)))
        .unzip()
}

fn bpe_gguf(
    family: &str,
    pre: &str,
    add_bos: bool,
) -> Option<(TextTokenizer, TextTokenizer, Value)> {
    let dir = fixtures().join(family);
    let tj = read_json(&dir.join("tokenizer.json"))?;
    let reference = read_json(&dir.join("reference.json"))?;
    let (tokens, types) = vocab_of(&tj);
    let merges: Vec<String> = tj["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match m {
            Value::String(s) => s.clone(),
            Value::Array(p) => format!("{} {}", p[0].as_str().unwrap(), p[1].as_str().unwrap()),
            _ => panic!("merge"),
        })
        .collect();
    let id = |t: &str| tokens.iter().position(|x| x == t).map(|i| i as u32);
    let mut meta = vec![
        ("tokenizer.ggml.model", G::String("gpt2".into())),
        ("tokenizer.ggml.pre", G::String(pre.into())),
        ("tokenizer.ggml.tokens", strings(tokens.clone())),
        (
            "tokenizer.ggml.token_type",
            G::Array(types.into_iter().map(G::I32).collect()),
        ),
        ("tokenizer.ggml.merges", strings(merges)),
        ("tokenizer.ggml.add_bos_token", G::Bool(add_bos)),
    ];
    if let Some(b) = reference["bos_token_id"].as_u64() {
        meta.push(("tokenizer.ggml.bos_token_id", G::U32(b as u32)));
    }
    if let Some(e) = id("<|eot_id|>").or(id("<|im_end|>")) {
        meta.push(("tokenizer.ggml.eos_token_id", G::U32(e)));
    }
    let gguf = TextTokenizer::from_gguf(&content(meta)).unwrap();
    let hf = TextTokenizer::from_hf_dir(&dir).unwrap();
    Some((gguf, hf, reference))
}

#[test]
fn byte_level_bpe_from_gguf_matches_hf() {
    for (family, pre, add_bos) in [
        ("llama", "llama-bpe", true),
        ("qwen2", "qwen2", false),
        ("qwen3", "qwen2", false),
    ] {
        let Some((gguf, hf, reference)) = bpe_gguf(family, pre, add_bos) else {
            eprintln!("no {family} fixture");
            continue;
        };
        assert_eq!(gguf.vocab_size(), hf.vocab_size(), "{family}");
        let mut texts: Vec<String> = reference["cases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["prompt"].as_str().unwrap().to_string())
            .collect();
        texts.extend(
            reference["tokenizer_cases"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["text"].as_str().unwrap().to_string()),
        );
        for text in &texts {
            // llama.cpp does not apply Qwen2's NFC normalizer.
            if family != "llama" && text.chars().any(|c| ('\u{300}'..='\u{36f}').contains(&c)) {
                continue;
            }
            assert_eq!(
                gguf.encode(text, true).unwrap(),
                hf.encode(text, true).unwrap(),
                "{family}: {text:?}"
            );
            let ids = hf.encode(text, true).unwrap();
            assert_eq!(
                gguf.decode(&ids, false).unwrap(),
                hf.decode(&ids, false).unwrap(),
                "{family}: {text:?}"
            );
            assert_eq!(
                gguf.decode(&ids, true).unwrap(),
                hf.decode(&ids, true).unwrap(),
                "{family}: {text:?}"
            );
        }
        for case in reference["cases"].as_array().unwrap() {
            let g = ids(&case["greedy_ids"]);
            assert_eq!(
                gguf.decode(&g, true).unwrap(),
                case["greedy_text"].as_str().unwrap(),
                "{family}"
            );
        }
        for id in 0..hf.vocab_size() as u32 {
            assert_eq!(
                gguf.token_bytes(id),
                hf.token_bytes(id),
                "{family} token {id}"
            );
        }
        // parse_special = false: control-token text is plain text.
        let plain = gguf.encode_with("<|im_end|>", false, false).unwrap();
        assert!(plain.len() > 1, "{family}: {plain:?}");
    }
}

fn spm_vocab() -> Vec<(&'static str, f32, i32)> {
    vec![
        ("<unk>", 0.0, 2),
        ("<s>", 0.0, 3),
        ("</s>", 0.0, 3),
        ("<0x0A>", 0.0, 6),
        ("<0xE2>", 0.0, 6),
        ("<0x82>", 0.0, 6),
        ("<0xAC>", 0.0, 6),
        ("<0xF0>", 0.0, 6),
        ("<0x9F>", 0.0, 6),
        ("<0x99>", 0.0, 6),
        ("<0x82>", 0.0, 6),
        ("▁", -1.0, 1),
        ("h", -2.0, 1),
        ("e", -2.0, 1),
        ("l", -2.0, 1),
        ("o", -2.0, 1),
        ("w", -2.0, 1),
        ("r", -2.0, 1),
        ("d", -2.0, 1),
        ("▁h", -3.0, 1),
        ("ll", -4.0, 1),
        ("▁he", -5.0, 1),
        ("hell", -6.0, 1),
        ("▁hell", -7.0, 1),
        ("▁hello", -8.0, 1),
        ("lo", -9.0, 1),
        ("▁w", -10.0, 1),
        ("or", -11.0, 1),
        ("▁wor", -12.0, 1),
        ("▁world", -13.0, 1),
        ("ld", -14.0, 1),
        ("<|user|>", 0.0, 3),
        ("[tool]", 0.0, 4),
    ]
}

fn spm(add_space_prefix: bool) -> TextTokenizer {
    let v = spm_vocab();
    let meta = vec![
        ("tokenizer.ggml.model", G::String("llama".into())),
        (
            "tokenizer.ggml.tokens",
            strings(v.iter().map(|t| t.0.to_string())),
        ),
        (
            "tokenizer.ggml.scores",
            G::Array(v.iter().map(|t| G::F32(t.1)).collect()),
        ),
        (
            "tokenizer.ggml.token_type",
            G::Array(v.iter().map(|t| G::I32(t.2)).collect()),
        ),
        ("tokenizer.ggml.bos_token_id", G::U32(1)),
        ("tokenizer.ggml.eos_token_id", G::U32(2)),
        ("tokenizer.ggml.unknown_token_id", G::U32(0)),
        ("tokenizer.ggml.add_space_prefix", G::Bool(add_space_prefix)),
    ];
    TextTokenizer::from_gguf(&content(meta)).unwrap()
}

fn names(ids: &[u32]) -> Vec<&'static str> {
    let v = spm_vocab();
    ids.iter().map(|&i| v[i as usize].0).collect()
}

#[test]
fn spm_merges_by_score_with_one_space_prefix() {
    let tok = spm(true);
    let ids = tok.encode("hello world", true).unwrap();
    assert_eq!(names(&ids), ["<s>", "▁hello", "▁world"]);
    // No spurious lone "▁" token at the start.
    let ids = tok.encode("hello", false).unwrap();
    assert_eq!(names(&ids), ["▁hello"]);
    assert_eq!(tok.decode(&ids, true).unwrap(), "hello");
    // llama.cpp adds the space prefix again after a special token.
    let ids = tok.encode("<|user|>hello", true).unwrap();
    assert_eq!(names(&ids), ["<s>", "<|user|>", "▁hello"]);
    // User-defined tokens split the text too, and are followed by a space prefix as well.
    let ids = tok.encode("hello[tool]world", false).unwrap();
    assert_eq!(names(&ids), ["▁hello", "[tool]", "▁world"]);
    // Byte fallback for characters outside the vocabulary.
    let ids = tok.encode("h€\n", false).unwrap();
    assert_eq!(names(&ids), ["▁h", "<0xE2>", "<0x82>", "<0xAC>", "<0x0A>"]);
    assert_eq!(tok.decode(&ids, false).unwrap(), "h€\n");
    // Empty text: only BOS.
    assert_eq!(tok.encode("", true).unwrap(), vec![1]);
    assert_eq!(tok.encode("", false).unwrap(), Vec::<u32>::new());
    // Without parse_special, control-token text is plain text.
    let ids = tok.encode_with("<|user|>", false, false).unwrap();
    assert!(!ids.contains(&31), "{ids:?}");
    // Decoding: specials skipped, first token's space removed once.
    let ids = tok.encode("hello world", true).unwrap();
    assert_eq!(tok.decode(&ids, true).unwrap(), "hello world");
    assert_eq!(tok.decode(&ids, false).unwrap(), "<s> hello world");
    assert_eq!(tok.token_bytes(23), b" hell");
    assert!(tok.is_special(1) && !tok.is_special(23));
    assert_eq!(tok.bos_token().as_deref(), Some("<s>"));
    assert_eq!(tok.eos_token_ids(), vec![2]);

    let tok = spm(false);
    assert_eq!(
        names(&tok.encode("hello", false).unwrap()),
        ["h", "e", "ll", "o"]
    );
}

fn stream(tok: &TextTokenizer, ids: &[u32], skip: bool) -> String {
    let mut d = IncrementalDecoder::new(skip);
    let mut out = String::new();
    for &id in ids {
        out.push_str(&d.push(tok, id).unwrap());
    }
    out.push_str(&d.finish(tok).unwrap());
    out
}

fn hf(family: &str) -> Option<TextTokenizer> {
    let dir = fixtures().join(family);
    dir.join("tokenizer.json")
        .is_file()
        .then(|| TextTokenizer::from_hf_dir(&dir).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn streaming_equals_full_decode_for_random_ids(
        seq in proptest::collection::vec(0u32..700, 0..40),
        skip in any::<bool>(),
    ) {
        let mut toks: Vec<TextTokenizer> = ["llama", "qwen2", "mistral", "phi3", "gemma2"]
            .iter()
            .filter_map(|f| hf(f))
            .collect();
        toks.push(spm(true));
        for tok in &toks {
            let n = tok.vocab_size() as u32;
            let ids: Vec<u32> = seq.iter().map(|&i| i % n).collect();
            prop_assert_eq!(stream(tok, &ids, skip), tok.decode(&ids, skip).unwrap(), "{:?}", ids);
            // With the first ids as the prompt: the continuation of the prompt's tail.
            let (prompt, gen) = ids.split_at(ids.len() / 2);
            let mut d = IncrementalDecoder::with_prompt(tok, prompt, skip).unwrap();
            let mut got = String::new();
            for &id in gen {
                got.push_str(&d.push(tok, id).unwrap());
            }
            got.push_str(&d.finish(tok).unwrap());
            let tail = &prompt[prompt.len().saturating_sub(5)..];
            let full = tok.decode(&[tail, gen].concat(), skip).unwrap();
            let ctx = tok.decode(tail, skip).unwrap();
            if let Some(want) = full.strip_prefix(ctx.as_str()) {
                prop_assert_eq!(got.as_str(), want, "{:?} | {:?}", prompt, gen);
            }
        }
    }
}

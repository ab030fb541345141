//! Property-driven fuzzing of the tokenizer and chat template that
//! ferroserve rebuilds from GGUF metadata ([`TextTokenizer::from_gguf`],
//! `gguf_vocab.rs`; [`ChatTemplate::from_gguf`]): random `tokenizer.ggml.*`
//! metadata (model kind, tokens including byte tokens and malformed
//! `<0x..>` ones, scores and token types of mismatched lengths or wrong
//! value types, merges with too few or too many parts, pre-tokenizer names,
//! special ids past the vocabulary, flags of the wrong type) and random
//! templates. Whatever loads is then used: random texts encoded, random ids
//! (in and out of the vocabulary) decoded at once and incrementally.
//! Nothing may panic, and no call may ask the allocator for more than
//! [`ferroserve_fuzz::ALLOC_LIMIT`] bytes at once (a counting allocator in this test binary
//! records the largest request of each case).
//!
//! The GGUF file reader in front of this (header validation, candle) is
//! fuzzed by `ferroserve-runtime-llm`'s `tests/fuzz.rs`.
//!
//! Runs in CI with a bounded number of cases per property (see [`cases`]);
//! `PROPTEST_CASES=20000 cargo test --release -p ferroserve-llm-text --test
//! fuzz` runs longer.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::{Content, Value as G, VersionedMagic};
use ferroserve_fuzz::{bounded, cases};
use ferroserve_llm_text::{ChatTemplate, IncrementalDecoder, TextTokenizer};
use proptest::prelude::*;

#[global_allocator]
static GUARD: ferroserve_fuzz::Guard = ferroserve_fuzz::Guard;

fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "<0x41>",
            "<0xFF>",
            "<0x00>",
            "<0xZZ>",
            "<0x",
            "<0x4>",
            "<s>",
            "</s>",
            "<unk>",
            "<|im_end|>",
            "<|eot_id|>",
            "▁",
            "▁a",
            "Ġ",
            "Ġa",
            "Ċ",
            "a",
            "b",
            "ab",
            "abc",
            " ",
            "",
            "\u{0}",
            "\u{FFFD}",
            "é",
            "日本",
        ])
        .prop_map(str::to_string),
        "[a-c▁Ġ ]{1,4}",
        ".{0,6}",
    ]
}

fn merge() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "a b", "ab c", "Ġ a", "▁ a", "a", "", "a b c", " ", "a  b"
        ])
        .prop_map(str::to_string),
        "[a-cĠ▁ ]{0,6}",
    ]
}

/// A metadata value: usually of the expected kind, sometimes not.
fn wrong_kind() -> impl Strategy<Value = G> {
    prop_oneof![
        Just(G::U8(1)),
        Just(G::I32(-1)),
        Just(G::F32(f32::NAN)),
        Just(G::Bool(true)),
        Just(G::String("x".into())),
        Just(G::Array(vec![])),
        Just(G::Array(vec![G::U32(1), G::String("a".into())])),
    ]
}

fn id() -> impl Strategy<Value = G> {
    prop_oneof![
        4 => (0u32..48).prop_map(G::U32),
        1 => Just(G::U32(u32::MAX)),
        1 => Just(G::U64(u64::MAX)),
        1 => Just(G::I32(-1)),
        1 => wrong_kind(),
    ]
}

fn template() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}",
            "{{ bos_token }}{% for m in messages %}{{ m.content | trim }}{% endfor %}",
            "{% if %}",
            "{{",
            "{% for i in range(1000000000) %}{% endfor %}",
            "{{ raise_exception('no') }}",
            "",
        ])
        .prop_map(str::to_string),
        ".{0,40}",
    ]
}

prop_compose! {
    fn metadata()(
        model in prop::option::weighted(0.97, prop::sample::select(
            vec!["llama", "llama", "llama", "gpt2", "gpt2", "gpt2", "bert", ""])),
        entries in prop::collection::vec((token(), any::<f32>(), prop_oneof![
            6 => Just(1i32), 1 => Just(3i32), 1 => Just(6i32), 1 => -2i32..9]), 0..48),
        non_string in prop::option::weighted(0.05, (any::<prop::sample::Index>(), wrong_kind())),
        // Scores and types: present or not, of the tokens' length mostly.
        lengths in (prop::option::weighted(0.7, prop_oneof![9 => Just(None), 1 => (0usize..50).prop_map(Some)]),
                    prop::option::weighted(0.7, prop_oneof![9 => Just(None), 1 => (0usize..50).prop_map(Some)])),
        merges in prop::option::of(prop::collection::vec(merge(), 0..30)),
        pre in prop::option::of(prop::sample::select(vec![
            "default", "llama-bpe", "llama3", "qwen2", "gpt-2", "deepseek-llm",
            "deepseek-coder", "tekken", "smollm", "falcon", "starcoder", "nope", ""])),
        specials in prop::collection::vec(prop::option::of(id()), 5),
        flags in prop::collection::vec(prop::option::weighted(0.5,
            prop_oneof![any::<bool>().prop_map(G::Bool), wrong_kind()]), 3),
        wrong_arrays in prop::option::weighted(0.05, (0usize..4, wrong_kind())),
        template in prop::option::of(template()),
    ) -> Content {
        let mut meta: Vec<(&str, G)> = Vec::new();
        if let Some(m) = model {
            meta.push(("tokenizer.ggml.model", G::String(m.to_string())));
        }
        let n = entries.len();
        let resize = |mut v: Vec<G>, len: Option<usize>, fill: G| {
            v.resize(len.unwrap_or(n), fill);
            G::Array(v)
        };
        let scores = lengths.0.map(|len| {
            resize(entries.iter().map(|e| G::F32(e.1)).collect(), len, G::F32(0.0))
        });
        let types = lengths.1.map(|len| {
            resize(entries.iter().map(|e| G::I32(e.2)).collect(), len, G::I32(1))
        });
        let mut toks: Vec<G> = entries.into_iter().map(|e| G::String(e.0)).collect();
        if let Some((at, v)) = non_string {
            if !toks.is_empty() {
                let i = at.index(toks.len());
                toks[i] = v;
            }
        }
        meta.push(("tokenizer.ggml.tokens", G::Array(toks)));
        if let Some(s) = scores {
            meta.push(("tokenizer.ggml.scores", s));
        }
        if let Some(t) = types {
            meta.push(("tokenizer.ggml.token_type", t));
        }
        if let Some(m) = merges {
            meta.push(("tokenizer.ggml.merges", G::Array(m.into_iter().map(G::String).collect())));
        }
        if let Some(p) = pre {
            meta.push(("tokenizer.ggml.pre", G::String(p.to_string())));
        }
        let special_keys = [
            "tokenizer.ggml.bos_token_id",
            "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.eot_token_id",
            "tokenizer.ggml.unknown_token_id",
            "tokenizer.ggml.eom_token_id",
        ];
        for (k, v) in special_keys.iter().zip(specials) {
            if let Some(v) = v {
                meta.push((k, v));
            }
        }
        let flag_keys = [
            "tokenizer.ggml.add_bos_token",
            "tokenizer.ggml.add_eos_token",
            "tokenizer.ggml.add_space_prefix",
        ];
        for (k, v) in flag_keys.iter().zip(flags) {
            if let Some(v) = v {
                meta.push((k, v));
            }
        }
        if let Some((which, v)) = wrong_arrays {
            let k = ["tokenizer.ggml.tokens", "tokenizer.ggml.scores",
                     "tokenizer.ggml.token_type", "tokenizer.ggml.merges"][which];
            meta.retain(|(key, _)| *key != k);
            meta.push((k, v));
        }
        if let Some(t) = template {
            meta.push(("tokenizer.chat_template", G::String(t)));
        }
        Content {
            magic: VersionedMagic::GgufV3,
            metadata: meta.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<HashMap<_, _>>(),
            tensor_infos: HashMap::new(),
            tensor_data_offset: 0,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(4096), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn gguf_tokenizers_never_panic(
        content in metadata(),
        text in ".{0,40}",
        ids in prop::collection::vec(prop_oneof![4 => 0u32..60, 1 => any::<u32>()], 0..24),
        add_special in any::<bool>(),
        skip in any::<bool>(),
    ) {
        bounded("from_gguf", || {
            let _ = ChatTemplate::from_gguf(&content);
            let Ok(tok) = TextTokenizer::from_gguf(&content) else {
                return;
            };
            let _ = tok.encode(&text, add_special);
            let _ = tok.decode(&ids, skip);
            let mut d = IncrementalDecoder::new(skip);
            for &i in &ids {
                let _ = d.push(&tok, i);
            }
            let _ = d.finish(&tok);
            for &i in &ids {
                let _ = tok.token_text(i);
                let _ = tok.is_special(i);
            }
        })?;
    }
}

#[test]
fn merges_longer_than_any_token_fail_cleanly() {
    // Found by this harness: a merge whose two halves are tokens but whose
    // concatenation is longer than every token made the BPE builder of the
    // tokenizers crate index past its buffer and panic.
    let content = Content {
        magic: VersionedMagic::GgufV3,
        metadata: [
            ("tokenizer.ggml.model", G::String("gpt2".into())),
            (
                "tokenizer.ggml.tokens",
                G::Array(vec![G::String(" ".into()), G::String("▁".into())]),
            ),
            (
                "tokenizer.ggml.merges",
                G::Array(vec![G::String("▁  ".into())]),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
        tensor_infos: HashMap::new(),
        tensor_data_offset: 0,
    };
    assert!(TextTokenizer::from_gguf(&content).is_err());
}

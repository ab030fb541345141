//! Tokenisation of GGUF-embedded vocabularies identical to llama.cpp's, on the
//! fixtures of tests/fixtures/llm/gguf (references computed by llama.cpp through
//! llama-cpp-python; see make_gguf.py there).

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::Content;
use ferroserve_llm_text::{ChatTemplate, IncrementalDecoder, TextTokenizer};
use serde_json::Value;

fn gguf_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/llm/gguf")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn load(path: &Path) -> Content {
    let mut f = std::fs::File::open(path).unwrap();
    Content::read(&mut f).unwrap()
}

#[test]
fn gguf_tokenization_matches_llama_cpp() {
    let mut refs: Vec<PathBuf> = std::fs::read_dir(gguf_dir())
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.to_string_lossy().ends_with(".reference.json"))
                .collect()
        })
        .unwrap_or_default();
    refs.sort();
    if refs.is_empty() {
        eprintln!("no GGUF fixtures");
        return;
    }
    let mut checked = 0;
    for r in refs {
        let reference: Value = serde_json::from_str(&std::fs::read_to_string(&r).unwrap()).unwrap();
        let name = reference["gguf"].as_str().unwrap().to_string();
        let content = load(&gguf_dir().join(&name));
        let tok = TextTokenizer::from_gguf(&content).unwrap();
        assert_eq!(
            tok.vocab_size() as u64,
            reference["n_vocab"].as_u64().unwrap(),
            "{name}"
        );
        for t in reference["tokenize"].as_array().unwrap() {
            let text = t["text"].as_str().unwrap();
            let add = t["add_bos"].as_bool().unwrap();
            let special = t["special"].as_bool().unwrap();
            assert_eq!(
                tok.encode_with(text, add, special).unwrap(),
                ids(&t["ids"]),
                "{name}: {text:?} add_bos={add} special={special}"
            );
            checked += 1;
        }
        for case in reference["cases"].as_array().unwrap() {
            let prompt = case["prompt"].as_str().unwrap();
            let input = ids(&case["input_ids"]);
            assert_eq!(
                tok.encode_with(prompt, true, false).unwrap(),
                input,
                "{name}: {prompt:?}"
            );
            let greedy = ids(&case["greedy_ids"]);
            for (skip, key) in [(true, "greedy_text"), (false, "greedy_text_special")] {
                let want = case[key].as_str().unwrap();
                // Streamed after the prompt: llama.cpp's pieces, verbatim.
                let mut d = IncrementalDecoder::with_prompt(&tok, &input, skip).unwrap();
                let mut got = String::new();
                for &id in &greedy {
                    got.push_str(&d.push(&tok, id).unwrap());
                }
                got.push_str(&d.finish(&tok).unwrap());
                assert_eq!(got, want, "{name} {key} streamed");
                assert_eq!(d.token_ids(), greedy.as_slice());
                // Decoded alone: the same, but for the first token's leading space.
                let alone = tok.decode(&greedy, skip).unwrap();
                assert!(
                    alone == want || want.strip_prefix(' ') == Some(alone.as_str()),
                    "{name} {key}: {alone:?} vs {want:?}"
                );
            }
            checked += 1;
        }
        // The embedded chat template, when present, compiles.
        if let Some(t) = ChatTemplate::from_gguf(&content).unwrap() {
            assert!(!t.source().is_empty());
        }
    }
    assert!(checked > 0);
}

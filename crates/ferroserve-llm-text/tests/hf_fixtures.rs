//! Parity with PyPI `tokenizers`/`transformers` on the fixtures in
//! tests/fixtures/llm (made by tests/fixtures/llm/make_fixtures.py).

use std::path::{Path, PathBuf};

use ferroserve_core::generate::ChatTemplateOptions;
use ferroserve_llm_text::{
    special_token_vars, ChatTemplate, GenerationDefaults, IncrementalDecoder, TextTokenizer,
};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/llm")
}

fn read_json(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn families() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.join("reference.json").is_file() && p.join("tokenizer.json").is_file()
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
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

#[test]
fn hf_tokenizers_match_transformers() {
    let fams = families();
    if fams.is_empty() {
        eprintln!("no HF fixtures under {}", fixtures().display());
        return;
    }
    let mut checked = 0;
    for dir in fams {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let tok = TextTokenizer::from_hf_dir(&dir).unwrap();
        let reference = read_json(&dir.join("reference.json"));
        for case in reference["cases"].as_array().unwrap() {
            let prompt = case["prompt"].as_str().unwrap();
            assert_eq!(
                tok.encode(prompt, true).unwrap(),
                ids(&case["input_ids"]),
                "{name}: {prompt:?}"
            );
            let greedy = ids(&case["greedy_ids"]);
            let text = case["greedy_text"].as_str().unwrap();
            let with_special = case["greedy_text_with_special"].as_str().unwrap();
            assert_eq!(tok.decode(&greedy, true).unwrap(), text, "{name} decode");
            assert_eq!(
                tok.decode(&greedy, false).unwrap(),
                with_special,
                "{name} decode specials"
            );
            assert_eq!(stream(&tok, &greedy, true), text, "{name} streamed");
            assert_eq!(
                stream(&tok, &greedy, false),
                with_special,
                "{name} streamed specials"
            );
            // Streamed after the prompt (the engine's way): the continuation of the prompt's text.
            let pids = ids(&case["input_ids"]);
            for skip in [true, false] {
                let mut d = IncrementalDecoder::with_prompt(&tok, &pids, skip).unwrap();
                let mut got = String::new();
                for &id in &greedy {
                    got.push_str(&d.push(&tok, id).unwrap());
                }
                got.push_str(&d.finish(&tok).unwrap());
                let all: Vec<u32> = pids.iter().chain(&greedy).copied().collect();
                let tail = &pids[pids.len().saturating_sub(5)..];
                let full = tok.decode(&[tail, &greedy[..]].concat(), skip).unwrap();
                let ctx = tok.decode(tail, skip).unwrap();
                assert_eq!(
                    Some(got.as_str()),
                    full.strip_prefix(ctx.as_str()),
                    "{name} with prompt"
                );
                // Same as decoding the whole sequence minus the prompt, when the prompt ends cleanly.
                let whole = tok.decode(&all, skip).unwrap();
                let p = tok.decode(&pids, skip).unwrap();
                if !p.ends_with('\u{FFFD}') {
                    assert_eq!(
                        whole.strip_prefix(p.as_str()),
                        Some(got.as_str()),
                        "{name} vs whole"
                    );
                }
            }
            // The prompt's own ids, streamed, give the decoded prompt.
            let pids = ids(&case["input_ids"]);
            assert_eq!(
                stream(&tok, &pids, true),
                tok.decode(&pids, true).unwrap(),
                "{name}"
            );
            checked += 1;
        }
        for case in reference["tokenizer_cases"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let with = ids(&case["ids"]);
            assert_eq!(tok.encode(text, true).unwrap(), with, "{name}: {text:?}");
            assert_eq!(
                tok.encode(text, false).unwrap(),
                ids(&case["ids_no_special"]),
                "{name}: {text:?}"
            );
            assert_eq!(
                tok.decode(&with, false).unwrap(),
                case["decoded"].as_str().unwrap(),
                "{name}: {text:?}"
            );
            assert_eq!(
                tok.decode(&with, true).unwrap(),
                case["decoded_skip_special"].as_str().unwrap(),
                "{name}: {text:?}"
            );
            assert_eq!(
                stream(&tok, &with, false),
                case["decoded"].as_str().unwrap(),
                "{name}: {text:?}"
            );
            checked += 1;
        }
        // End-of-sequence ids: generation_config.json's, all recognised.
        let want = ids(&reference["eos_token_ids"]);
        let got = tok.eos_token_ids();
        for id in &want {
            assert!(got.contains(id), "{name}: eos {id} missing from {got:?}");
        }
        assert_eq!(
            GenerationDefaults::from_hf_dir(&dir).unwrap().eos_token_ids,
            want,
            "{name}"
        );
        let bos = reference["bos_token_id"].as_u64().map(|x| x as u32);
        assert_eq!(tok.bos_token_id(), bos, "{name}");
        // Token bytes concatenate to the decoded text for plain prompts.
        let case0 = &reference["cases"][0];
        let pids = ids(&case0["input_ids"]);
        let joined: Vec<u8> = pids
            .iter()
            .filter(|&&i| !tok.is_special(i))
            .flat_map(|&i| tok.token_bytes(i).to_vec())
            .collect();
        let decoded = tok.decode(&pids, true).unwrap();
        let joined = String::from_utf8_lossy(&joined);
        assert!(
            joined == decoded || joined.strip_prefix(' ') == Some(decoded.as_str()),
            "{name}: {joined:?} vs {decoded:?}"
        );
    }
    assert!(checked > 0);
}

#[test]
fn chat_templates_match_transformers() {
    let path = fixtures().join("chat_templates/renders.json");
    if !path.is_file() {
        eprintln!("no chat template fixtures");
        return;
    }
    let renders = read_json(&path);
    let mut checked = 0;
    for (name, t) in renders["templates"].as_object().unwrap() {
        let src = std::fs::read_to_string(
            fixtures()
                .join("chat_templates")
                .join(t["template_file"].as_str().unwrap()),
        )
        .unwrap();
        let template = ChatTemplate::new(&src).unwrap();
        let folder = fixtures().join(t["tokenizer_folder"].as_str().unwrap());
        let from_dir = ChatTemplate::from_hf_dir(&folder)
            .unwrap()
            .expect("folder has a template");
        let tok = TextTokenizer::from_hf_dir(&folder).unwrap();
        let vars = special_token_vars(
            t["bos_token"].as_str().map(str::to_string),
            t["eos_token"].as_str().map(str::to_string),
        );
        assert_eq!(
            vars,
            special_token_vars(tok.bos_token(), tok.eos_token()),
            "{name}"
        );
        for case in t["cases"].as_array().unwrap() {
            let conv = case["conversation"].as_str().unwrap();
            let messages = case["messages"].as_array().unwrap();
            let options = ChatTemplateOptions {
                add_generation_prompt: case["add_generation_prompt"].as_bool().unwrap(),
                extra: case["extra_context"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
                ..Default::default()
            };
            let got = template.render(messages, &options, &vars);
            let got2 = from_dir.render(messages, &options, &vars);
            match case.get("rendered").and_then(Value::as_str) {
                Some(want) => {
                    let got = got.unwrap_or_else(|e| panic!("{name}/{conv}: {e}"));
                    assert_eq!(got, want, "{name}/{conv}");
                    assert_eq!(got2.unwrap(), want, "{name}/{conv} (from folder)");
                    assert_eq!(
                        tok.encode(&got, false).unwrap(),
                        ids(&case["token_ids"]),
                        "{name}/{conv} token ids"
                    );
                }
                None => {
                    let err = got.expect_err(&format!("{name}/{conv} should fail"));
                    let want = case["error"].as_str().unwrap();
                    assert!(
                        err.to_string().contains(want),
                        "{name}/{conv}: {err} vs {want}"
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 100, "{checked}");
}

//! GGUF files converted and quantized by llama.cpp (tests/fixtures/llm/gguf/,
//! made by make_gguf.py) against llama.cpp's own logits and greedy tokens.

use std::path::{Path, PathBuf};

use candle_core::Device;
use ferroserve_runtime_llm::model::{DecoderModel, SeqInput};
use serde_json::Value;

fn gguf_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/llm/gguf")
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
}

fn u32s(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

struct Outcome {
    worst_logit_diff: f32,
    /// Over all cases: greedy tokens equal to llama.cpp's before the first difference.
    greedy_prefix: Vec<(usize, usize)>,
}

fn run(name: &str) -> Option<Outcome> {
    let gguf = gguf_dir().join(format!("{name}.gguf"));
    let refp = gguf_dir().join(format!("{name}.reference.json"));
    if !gguf.is_file() || !refp.is_file() {
        eprintln!("{name}: fixture not present, skipped");
        return None;
    }
    let reference: Value = serde_json::from_str(&std::fs::read_to_string(&refp).unwrap()).unwrap();
    let (model, _) =
        DecoderModel::load_gguf(&gguf, &Device::Cpu).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        model.config().vocab_size as u64,
        reference["n_vocab"].as_u64().unwrap()
    );
    let mut worst = 0.0f32;
    let mut greedy_prefix = Vec::new();
    for case in reference["cases"].as_array().unwrap() {
        let prompt = u32s(&case["input_ids"]);
        let want_logits: Vec<f32> = case["last_logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let want_greedy = u32s(&case["greedy_ids"]);
        let mut cache = model.new_cache();
        let mut tokens = prompt.clone();
        let mut got = Vec::new();
        for i in 0..want_greedy.len() {
            let mut batch = [SeqInput {
                cache: &mut cache,
                tokens: &tokens,
                want_logits: true,
            }];
            let logits = model
                .forward(&mut batch)
                .unwrap()
                .get(0)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            if i == 0 {
                let d = logits
                    .iter()
                    .zip(&want_logits)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max);
                worst = worst.max(d);
            }
            let next = argmax(&logits);
            got.push(next);
            tokens = vec![next];
        }
        let same = got
            .iter()
            .zip(&want_greedy)
            .take_while(|(a, b)| a == b)
            .count();
        greedy_prefix.push((same, want_greedy.len()));
    }
    eprintln!("{name}: worst |last logits diff| vs llama.cpp {worst:.3e}; greedy tokens equal before first difference: {greedy_prefix:?}");
    Some(Outcome {
        worst_logit_diff: worst,
        greedy_prefix,
    })
}

/// llama.cpp keeps its KV cache in F16 by default, so even F32 files differ
/// from it by ~1e-3; the transformers comparison below is the tight one.
#[test]
fn float_gguf_match_llama_cpp() {
    for (name, tol) in [
        ("llama-f32", 1e-2f32),
        ("qwen2-f32", 1e-2),
        ("mistral-f32", 1e-2),
        ("llama-f16", 3e-2),
    ] {
        let Some(out) = run(name) else { continue };
        assert!(
            out.worst_logit_diff <= tol,
            "{name}: {}",
            out.worst_logit_diff
        );
        if name.ends_with("f32") {
            for (same, n) in out.greedy_prefix {
                assert_eq!(same, n, "{name}: greedy tokens differ");
            }
        }
    }
}

/// Quantized files: candle's kernels quantize the activations like llama.cpp
/// does only on the AVX2 path; with AVX512-VNNI (this machine) candle's
/// repacked Q8_0/Q4_K kernels quantize activations per 256 values (Q8_K)
/// instead of per 32, and this tiny random model amplifies that noise. The
/// bounds below hold on both paths (measured numbers in the test output and
/// in /work/llm-shared/model.md); greedy decoding must agree on the first
/// tokens.
#[test]
fn quantized_gguf_close_to_llama_cpp() {
    let mut failures = Vec::new();
    for name in [
        "llama256-q8_0",
        "llama256-q6_k",
        "llama256-q4_k_m",
        "llama256-q4_0",
    ] {
        let Some(out) = run(name) else { continue };
        if out.worst_logit_diff > 2.0 {
            failures.push(format!("{name}: logits differ by {}", out.worst_logit_diff));
        }
        if out.greedy_prefix.iter().all(|(same, _)| *same == 0) {
            failures.push(format!("{name}: first greedy token differs in every case"));
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
}

/// The F32 files written by llama.cpp's own converter from the HF fixtures
/// (Q/K permuted for llama/mistral, llama3 rope factors, Qwen2 biases, tied
/// output) reproduce transformers' logits and greedy tokens.
#[test]
fn llama_cpp_converted_f32_gguf_match_transformers() {
    let hf = gguf_dir().join("..");
    for family in ["llama", "qwen2", "mistral"] {
        let gguf = gguf_dir().join(format!("{family}-f32.gguf"));
        if !gguf.is_file() {
            eprintln!("{family}-f32.gguf not present, skipped");
            continue;
        }
        let (model, _) = DecoderModel::load_gguf(&gguf, &Device::Cpu).unwrap();
        let reference: Value = serde_json::from_str(
            &std::fs::read_to_string(hf.join(family).join("reference.json")).unwrap(),
        )
        .unwrap();
        let mut worst = 0.0f32;
        for case in reference["cases"].as_array().unwrap() {
            let prompt = u32s(&case["input_ids"]);
            let want: Vec<f32> = case["last_logits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            let want_greedy = u32s(&case["greedy_ids"]);
            let mut cache = model.new_cache();
            let mut tokens = prompt.clone();
            let mut got = Vec::new();
            for i in 0..want_greedy.len() {
                let mut batch = [SeqInput {
                    cache: &mut cache,
                    tokens: &tokens,
                    want_logits: true,
                }];
                let logits = model
                    .forward(&mut batch)
                    .unwrap()
                    .get(0)
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                if i == 0 {
                    worst = worst.max(
                        logits
                            .iter()
                            .zip(&want)
                            .map(|(a, b)| (a - b).abs())
                            .fold(0.0, f32::max),
                    );
                }
                let next = argmax(&logits);
                got.push(next);
                tokens = vec![next];
            }
            assert_eq!(
                got, want_greedy,
                "{family}: greedy tokens differ from transformers"
            );
        }
        eprintln!("{family}-f32.gguf vs transformers: worst |last logits diff| {worst:.3e}, greedy identical");
        assert!(worst <= 1e-4, "{family}: {worst}");
    }
}

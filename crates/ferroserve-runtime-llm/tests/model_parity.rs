//! Parity of the candle decoder with transformers on the tiny random models
//! under tests/fixtures/llm/<arch>/ (reference.json made by make_fixtures.py),
//! and invariances of the batched forward pass (batching, chunked prefill,
//! prefix forks).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use ferroserve_runtime_llm::model::{DecoderModel, ModelError, SeqCache, SeqInput};
use serde_json::Value;

const ARCHS: &[&str] = &[
    "llama", "mistral", "qwen2", "qwen3", "phi3", "gemma2", "gemma3",
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/llm")
}

fn reference(arch: &str) -> Value {
    let path = fixtures().join(arch).join("reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("reference.json parses")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("id array")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("float array")
        .iter()
        .map(|x| x.as_f64().expect("float") as f32)
        .collect()
}

fn load(arch: &str) -> DecoderModel {
    DecoderModel::load_hf(&fixtures().join(arch), DType::F32, &Device::Cpu)
        .unwrap_or_else(|e| panic!("loading {arch}: {e}"))
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
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

/// Runs one step for one sequence and returns its last-position logits.
fn step(model: &DecoderModel, cache: &mut SeqCache, tokens: &[u32]) -> Vec<f32> {
    let mut batch = [SeqInput {
        cache,
        tokens,
        want_logits: true,
    }];
    let logits = model.forward(&mut batch).expect("forward");
    assert_eq!(logits.dims(), &[1, model.config().vocab_size]);
    logits.get(0).unwrap().to_vec1::<f32>().unwrap()
}

/// Prefill then greedy decoding one token at a time.
fn greedy(model: &DecoderModel, prompt: &[u32], n: usize) -> (Vec<f32>, Vec<u32>) {
    let mut cache = model.new_cache();
    let first = step(model, &mut cache, prompt);
    let mut out = vec![argmax(&first)];
    while out.len() < n {
        let last = *out.last().unwrap();
        let logits = step(model, &mut cache, &[last]);
        out.push(argmax(&logits));
    }
    assert_eq!(cache.len(), prompt.len() + n - 1);
    (first, out)
}

fn check_arch(arch: &str) -> (f32, f32) {
    let model = load(arch);
    let reference = reference(arch);
    let cases = reference["cases"].as_array().expect("cases");
    let mut worst_last = 0.0f32;
    let mut worst_all = 0.0f32;
    for (ci, case) in cases.iter().enumerate() {
        let prompt = ids(&case["input_ids"]);
        let expected_greedy = ids(&case["greedy_ids"]);
        let (last, got_greedy) = greedy(&model, &prompt, expected_greedy.len());
        let d = max_abs_diff(&last, &floats(&case["last_logits"]));
        worst_last = worst_last.max(d);
        assert!(d <= 1e-4, "{arch} case {ci}: last logits differ by {d}");
        assert_eq!(
            got_greedy, expected_greedy,
            "{arch} case {ci}: greedy tokens"
        );
        if let Some(all) = case.get("all_logits").and_then(Value::as_array) {
            // token by token through the cache: every position's logits
            let mut cache = model.new_cache();
            for (pos, row) in all.iter().enumerate() {
                let got = step(&model, &mut cache, &prompt[pos..pos + 1]);
                let d = max_abs_diff(&got, &floats(row));
                worst_all = worst_all.max(d);
                assert!(
                    d <= 1e-4,
                    "{arch} case {ci} position {pos}: logits differ by {d}"
                );
            }
        }
    }
    eprintln!("{arch}: worst |last logits diff| {worst_last:.3e}, worst |per-position diff| {worst_all:.3e}, {} cases, greedy identical", cases.len());
    (worst_last, worst_all)
}

#[test]
fn parity_with_transformers_every_architecture() {
    let mut ran = 0;
    for arch in ARCHS {
        if fixtures().join(arch).join("reference.json").is_file() {
            check_arch(arch);
            ran += 1;
        }
    }
    assert!(ran >= 3, "only {ran} architecture fixtures found");
}

#[test]
fn sharded_safetensors_load_and_match() {
    let dir = fixtures().join("llama_sharded");
    let sharded = DecoderModel::load_hf(&dir, DType::F32, &Device::Cpu).expect("sharded load");
    let single = load("llama");
    let reference = reference("llama");
    let prompt = ids(&reference["cases"][0]["input_ids"]);
    let a = step(&sharded, &mut sharded.new_cache(), &prompt);
    let b = step(&single, &mut single.new_cache(), &prompt);
    assert_eq!(a, b);
}

/// Prompts of different lengths (longer than the 16-token sliding window of
/// the Gemma fixtures).
fn prompts(model: &DecoderModel) -> Vec<Vec<u32>> {
    let v = model.config().vocab_size as u32;
    let make = |n: usize, seed: u32| -> Vec<u32> {
        (0..n as u32)
            .map(|i| (i * 37 + seed * 101 + 3) % v)
            .collect()
    };
    vec![make(23, 1), make(5, 2), make(40, 3)]
}

#[test]
fn batched_forward_equals_each_alone() {
    for arch in ["llama", "qwen2", "gemma2", "gemma3", "phi3"] {
        let model = load(arch);
        let prompts = prompts(&model);
        // alone: prefill then two decode steps
        let mut alone = Vec::new();
        for p in &prompts {
            let mut cache = model.new_cache();
            let a = step(&model, &mut cache, p);
            let b = step(&model, &mut cache, &[7]);
            let c = step(&model, &mut cache, &[argmax(&b)]);
            alone.push((a, b, c));
        }
        // together: one prefill step of all three, then decode steps of all three
        let mut caches: Vec<SeqCache> = prompts.iter().map(|_| model.new_cache()).collect();
        let mut batch: Vec<SeqInput> = caches
            .iter_mut()
            .zip(&prompts)
            .map(|(cache, p)| SeqInput {
                cache,
                tokens: p,
                want_logits: true,
            })
            .collect();
        let first = model.forward(&mut batch).unwrap();
        let sevens = [7u32];
        let mut batch: Vec<SeqInput> = caches
            .iter_mut()
            .map(|cache| SeqInput {
                cache,
                tokens: &sevens,
                want_logits: true,
            })
            .collect();
        let second = model.forward(&mut batch).unwrap();
        let next: Vec<[u32; 1]> = (0..3)
            .map(|i| [argmax(&second.get(i).unwrap().to_vec1::<f32>().unwrap())])
            .collect();
        let mut batch: Vec<SeqInput> = caches
            .iter_mut()
            .zip(&next)
            .map(|(cache, t)| SeqInput {
                cache,
                tokens: t,
                want_logits: true,
            })
            .collect();
        let third = model.forward(&mut batch).unwrap();
        for (i, (a, b, c)) in alone.iter().enumerate() {
            let row = |t: &Tensor| t.get(i).unwrap().to_vec1::<f32>().unwrap();
            for (what, got, want) in [
                ("prefill", row(&first), a),
                ("decode 1", row(&second), b),
                ("decode 2", row(&third), c),
            ] {
                let d = max_abs_diff(&got, want);
                assert!(d <= 1e-4, "{arch} seq {i} {what}: batched differs by {d}");
            }
        }
    }
}

#[test]
fn mixed_prefill_and_decode_step_and_want_logits() {
    let model = load("llama");
    let prompts = prompts(&model);
    // sequence 0 is decoding while sequence 1 prefills and sequence 2 prefills without logits
    let mut c0 = model.new_cache();
    let _ = step(&model, &mut c0, &prompts[0]);
    let mut c0_alone = c0.fork_prefix(c0.len()).unwrap();
    let want0 = step(&model, &mut c0_alone, &[11]);
    let want1 = step(&model, &mut model.new_cache(), &prompts[1]);
    let mut c1 = model.new_cache();
    let mut c2 = model.new_cache();
    let eleven = [11u32];
    let mut batch = [
        SeqInput {
            cache: &mut c0,
            tokens: &eleven,
            want_logits: true,
        },
        SeqInput {
            cache: &mut c2,
            tokens: &prompts[2],
            want_logits: false,
        },
        SeqInput {
            cache: &mut c1,
            tokens: &prompts[1],
            want_logits: true,
        },
    ];
    let logits = model.forward(&mut batch).unwrap();
    assert_eq!(logits.dims(), &[2, model.config().vocab_size]);
    assert_eq!(logits.dtype(), DType::F32);
    assert!(max_abs_diff(&logits.get(0).unwrap().to_vec1().unwrap(), &want0) <= 1e-4);
    assert!(max_abs_diff(&logits.get(1).unwrap().to_vec1().unwrap(), &want1) <= 1e-4);
    assert_eq!(c2.len(), prompts[2].len());
    // no logits wanted at all
    let mut batch = [SeqInput {
        cache: &mut c2,
        tokens: &eleven,
        want_logits: false,
    }];
    let none = model.forward(&mut batch).unwrap();
    assert_eq!(none.dims(), &[0, model.config().vocab_size]);
}

#[test]
fn chunked_prefill_equals_one_shot() {
    for arch in ["llama", "gemma2", "gemma3", "qwen3"] {
        let model = load(arch);
        let prompt = &prompts(&model)[2]; // 40 tokens, beyond the 16-token window
        let one = step(&model, &mut model.new_cache(), prompt);
        let mut cache = model.new_cache();
        let mut last = Vec::new();
        for chunk in [&prompt[..7], &prompt[7..20], &prompt[20..21], &prompt[21..]] {
            last = step(&model, &mut cache, chunk);
        }
        let d = max_abs_diff(&one, &last);
        assert!(d <= 1e-4, "{arch}: chunked prefill differs by {d}");
    }
}

#[test]
fn fork_prefix_and_truncate_continue_like_the_original() {
    let model = load("gemma2");
    let prompt = &prompts(&model)[2];
    let mut full = model.new_cache();
    let want = step(&model, &mut full, prompt);
    let bytes = full.bytes();
    assert!(bytes >= prompt.len() * model.kv_bytes_per_token());

    let mut base = model.new_cache();
    let _ = step(&model, &mut base, &prompt[..30]);
    let mut fork = base.fork_prefix(25).unwrap();
    assert_eq!(fork.len(), 25);
    let got = step(&model, &mut fork, &prompt[25..]);
    assert!(max_abs_diff(&got, &want) <= 1e-4);
    // the original is untouched by the fork's writes
    let got = step(&model, &mut base, &prompt[30..]);
    assert!(max_abs_diff(&got, &want) <= 1e-4);
    // truncate then recompute
    base.truncate(12);
    assert_eq!(base.len(), 12);
    let got = step(&model, &mut base, &prompt[12..]);
    assert!(max_abs_diff(&got, &want) <= 1e-4);
    assert!(base.fork_prefix(1000).is_err());
}

#[test]
fn invalid_inputs_are_errors_and_leave_caches_alone() {
    let model = load("llama");
    let mut cache = model.new_cache();
    let _ = step(&model, &mut cache, &[1, 2, 3]);
    let too_big = [model.config().vocab_size as u32];
    let mut batch = [SeqInput {
        cache: &mut cache,
        tokens: &too_big,
        want_logits: true,
    }];
    assert!(matches!(
        model.forward(&mut batch),
        Err(ModelError::InvalidInput(_))
    ));
    let mut batch = [SeqInput {
        cache: &mut cache,
        tokens: &[],
        want_logits: true,
    }];
    assert!(matches!(
        model.forward(&mut batch),
        Err(ModelError::InvalidInput(_))
    ));
    assert_eq!(cache.len(), 3);
    let empty = model.forward(&mut []).unwrap();
    assert_eq!(empty.dims(), &[0, model.config().vocab_size]);
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ferroserve-model-test-{}-{name}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn load_errors_name_the_problem() {
    let src = fixtures().join("llama");
    // unsupported architecture
    let dir = scratch("arch");
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    cfg["model_type"] = Value::from("mamba");
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    std::fs::copy(src.join("model.safetensors"), dir.join("model.safetensors")).unwrap();
    let err = DecoderModel::load_hf(&dir, DType::F32, &Device::Cpu).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("mamba") && msg.contains("qwen2") && msg.contains("gemma2"),
        "{msg}"
    );
    // bad config field
    cfg["model_type"] = Value::from("llama");
    cfg["num_key_value_heads"] = Value::from(3);
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let msg = DecoderModel::load_hf(&dir, DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("num_key_value_heads"), "{msg}");
    cfg["num_key_value_heads"] = Value::from("two");
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let msg = DecoderModel::load_hf(&dir, DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("num_key_value_heads"), "{msg}");
    // a layer more than the weights hold: the missing tensor is named
    cfg["num_key_value_heads"] = Value::from(2);
    cfg["num_hidden_layers"] = Value::from(3);
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let err = DecoderModel::load_hf(&dir, DType::F32, &Device::Cpu).unwrap_err();
    assert!(
        matches!(&err, ModelError::MissingTensor(n) if n.starts_with("model.layers.2.")),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn half_precision_runs_close_to_f32() {
    for (dtype, tol) in [(DType::BF16, 0.25f32), (DType::F16, 0.05)] {
        let model = DecoderModel::load_hf(&fixtures().join("qwen2"), dtype, &Device::Cpu).unwrap();
        // K and V, 2 layers, 2 kv heads, head_dim 16, 2 bytes
        assert_eq!(model.kv_bytes_per_token(), 2 * 2 * 2 * 16 * 2);
        let reference = reference("qwen2");
        let case = &reference["cases"][0];
        let got = step(&model, &mut model.new_cache(), &ids(&case["input_ids"]));
        let d = max_abs_diff(&got, &floats(&case["last_logits"]));
        eprintln!("qwen2 {dtype:?}: max |diff| vs f32 transformers {d:.3e}");
        assert!(d <= tol, "{dtype:?}: differs by {d}");
    }
}

#[test]
fn transformers5_rope_parameters_config_is_read() {
    let src = fixtures().join("gemma3");
    let dir = scratch("rope-params");
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    let obj = cfg.as_object_mut().unwrap();
    let theta = obj.remove("rope_theta").unwrap();
    let local = obj.remove("rope_local_base_freq").unwrap();
    let mut full = obj.remove("rope_scaling").unwrap();
    full["rope_theta"] = theta;
    obj.insert(
        "rope_parameters".into(),
        serde_json::json!({"full_attention": full, "sliding_attention": {"rope_type": "default", "rope_theta": local}}),
    );
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    std::fs::copy(src.join("model.safetensors"), dir.join("model.safetensors")).unwrap();
    let v5 = DecoderModel::load_hf(&dir, DType::F32, &Device::Cpu).unwrap();
    let classic = load("gemma3");
    assert_eq!(v5.config(), classic.config());
    std::fs::remove_dir_all(&dir).ok();
}

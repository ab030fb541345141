//! Parity with transformers / sentence-transformers on the tiny fixtures of
//! `tests/fixtures/hf` (written by `make_fixtures.py`), the real
//! all-MiniLM-L6-v2 when `FERROSERVE_MINILM_DIR` is set, and bad inputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use ferroserve_core::generate::EmbedInput;
use ferroserve_core::{DataType, Error, LoadContext, Model, ModelConfig, Runtime, Tensor};
use ferroserve_runtime_hf::{HfEncoderModel, HfEncoderRuntime, Task};
use serde_json::Value;

const TOL: f32 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/hf")
}

fn reference(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("reference.json")).expect("reference.json");
    serde_json::from_str(&text).expect("reference JSON")
}

fn ctx(params: &[(&str, &str)]) -> LoadContext {
    let parameters: BTreeMap<String, String> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    LoadContext {
        config: ModelConfig {
            parameters,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn load(name: &str, params: &[(&str, &str)]) -> HfEncoderModel {
    HfEncoderRuntime::new()
        .load_model(&fixtures().join(name), &ctx(params))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn texts(r: &Value) -> Vec<String> {
    r["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

fn text_tensor(texts: &[String]) -> Tensor {
    Tensor::from_strings(
        "input-0",
        vec![texts.len()],
        texts.iter().map(|t| Bytes::from(t.clone())).collect(),
    )
    .unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    match v {
        Value::Array(a) => a.iter().flat_map(floats).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap() as f32],
        other => panic!("not a number: {other}"),
    }
}

fn ints(v: &Value) -> Vec<i64> {
    match v {
        Value::Array(a) => a.iter().flat_map(ints).collect(),
        Value::Number(n) => vec![n.as_i64().unwrap()],
        other => panic!("not an integer: {other}"),
    }
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst <= TOL, "{what}: max abs diff {worst} > {TOL}");
}

fn output<'a>(outs: &'a [Tensor], name: &str) -> &'a Tensor {
    outs.iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no output {name}"))
}

fn strings(t: &Tensor) -> Vec<String> {
    t.strings()
        .unwrap()
        .iter()
        .map(|b| String::from_utf8(b.to_vec()).unwrap())
        .collect()
}

/// Words in the longest text (a lower bound on its token count).
fn t_len_max(r: &Value) -> usize {
    texts(r)
        .iter()
        .map(|t| t.split_whitespace().count())
        .max()
        .unwrap_or(0)
}

/// Token ids equal the tokenizer's (truncation included).
fn check_tokens(name: &str, model: &HfEncoderModel, r: &Value) {
    let encs = model.tokenize(&texts(r)).unwrap();
    let want: Vec<Vec<u32>> = r["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| ints(row).into_iter().map(|i| i as u32).collect())
        .collect();
    let got: Vec<Vec<u32>> = encs.into_iter().map(|e| e.ids).collect();
    assert_eq!(got, want, "{name}: token ids");
    let max = r["max_length"].as_u64().unwrap() as usize;
    let long = t_len_max(r);
    if long > max {
        assert!(
            got.iter().any(|ids| ids.len() == max),
            "{name}: a text is truncated to {max}"
        );
    }
}

fn check_classification(name: &str, token_level: bool, params: &[(&str, &str)]) {
    let dir = fixtures().join(name);
    let r = reference(&dir);
    let model = load(name, params);
    let task = if token_level {
        Task::TokenClassification
    } else {
        Task::SequenceClassification
    };
    assert_eq!(model.task(), task, "{name}: task from the architecture");
    check_tokens(name, &model, &r);
    let t = texts(&r);
    let outs = model.infer(vec![text_tensor(&t)]).unwrap();
    let logits = output(&outs, "logits");
    assert_close(
        &format!("{name} logits"),
        &logits.to_vec::<f32>().unwrap(),
        &floats(&r["logits"]),
    );
    let main = output(&outs, "output-0");
    assert_eq!(main.datatype, DataType::I64);
    assert_eq!(
        main.to_vec::<i64>().unwrap(),
        ints(&r["kserve_output"]),
        "{name}: class ids"
    );
    if token_level {
        let seq = r["logits"][0].as_array().unwrap().len();
        assert_eq!(
            main.shape,
            vec![t.len(), 1, seq],
            "{name}: KServe's [N, 1, T]"
        );
    } else {
        assert_eq!(main.shape, vec![t.len()]);
    }
    let probs = output(&outs, "probabilities").to_vec::<f32>().unwrap();
    let classes = *logits.shape.last().unwrap();
    for row in probs.chunks(classes) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
}

#[test]
fn bert_sequence_classification() {
    check_classification("bert_seq_cls", false, &[]);
}

#[test]
fn distilbert_sequence_classification() {
    check_classification("distilbert_seq_cls", false, &[]);
}

#[test]
fn bert_token_classification() {
    check_classification("bert_token_cls", true, &[]);
}

#[test]
fn xlm_roberta_token_classification() {
    check_classification("xlm_roberta_token_cls", true, &[]);
}

#[test]
fn chunked_batches_match() {
    // Tiny forward passes: the request is split into several length-sorted chunks.
    check_classification("bert_seq_cls", false, &[("max_batch_tokens", "20")]);
    check_classification("xlm_roberta_token_cls", true, &[("max_batch_tokens", "30")]);
}

fn check_fill_mask(name: &str) {
    let dir = fixtures().join(name);
    let r = reference(&dir);
    let model = load(name, &[]);
    assert_eq!(model.task(), Task::FillMask);
    check_tokens(name, &model, &r);
    let t = texts(&r);
    let encs = model.tokenize(&t).unwrap();
    let logits = model.mask_logits(&encs).unwrap();
    for (i, (got, want)) in logits
        .iter()
        .zip(r["mask_logits"].as_array().unwrap())
        .enumerate()
    {
        let got: Vec<f32> = got.iter().flatten().copied().collect();
        assert_close(&format!("{name} mask logits {i}"), &got, &floats(want));
    }
    let outs = model.infer(vec![text_tensor(&t)]).unwrap();
    let want: Vec<String> = r["kserve_output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        strings(output(&outs, "output-0")),
        want,
        "{name}: KServe fill-mask output"
    );
    let want: Vec<String> = r["sequence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        strings(output(&outs, "sequence")),
        want,
        "{name}: filled sequences"
    );
}

#[test]
fn bert_fill_mask() {
    check_fill_mask("bert_mlm");
}

#[test]
fn roberta_fill_mask() {
    check_fill_mask("roberta_mlm");
}

fn check_embeddings(name: &str, params: &[(&str, &str)]) {
    let dir = fixtures().join(name);
    let r = reference(&dir);
    let model = load(name, params);
    assert_eq!(model.task(), Task::TextEmbedding);
    check_tokens(name, &model, &r);
    let t = texts(&r);
    let want = floats(&r["embeddings"]);
    let outs = model.infer(vec![text_tensor(&t)]).unwrap();
    let main = output(&outs, "output-0");
    assert_eq!(main.shape, vec![t.len(), want.len() / t.len()]);
    assert_close(
        &format!("{name} embeddings"),
        &main.to_vec::<f32>().unwrap(),
        &want,
    );
    let embedder = model.as_embedder().expect("an embedder");
    let got = embedder
        .embed(t.iter().cloned().map(EmbedInput::Text).collect())
        .unwrap();
    let flat: Vec<f32> = got.vectors.iter().flatten().copied().collect();
    assert_close(&format!("{name} Embedder"), &flat, &want);
    let tokens: usize = r["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_array().unwrap().len())
        .sum();
    assert_eq!(got.prompt_tokens, tokens);
    assert_eq!(embedder.dimensions(), want.len() / t.len());
    assert_eq!(
        embedder.max_input_tokens() as u64,
        r["max_length"].as_u64().unwrap()
    );
    // Token-id inputs give the same vectors as the texts they came from.
    let ids: Vec<EmbedInput> = r["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| EmbedInput::Tokens(ints(row).into_iter().map(|i| i as u32).collect()))
        .collect();
    let by_ids = embedder.embed(ids).unwrap();
    let flat: Vec<f32> = by_ids.vectors.iter().flatten().copied().collect();
    assert_close(&format!("{name} Embedder token ids"), &flat, &want);
}

#[test]
fn xlm_roberta_kserve_embeddings() {
    check_embeddings("xlm_roberta", &[]);
    check_embeddings("xlm_roberta", &[("max_batch_tokens", "20")]);
}

#[test]
fn sentence_transformers_bert_mean_normalize() {
    check_embeddings("st_bert", &[]);
}

#[test]
fn sentence_transformers_mpnet_cls() {
    check_embeddings("st_mpnet", &[]);
}

#[test]
fn minilm_matches_sentence_transformers() {
    let Some(dir) = std::env::var_os("FERROSERVE_MINILM_DIR") else {
        eprintln!(
            "note: FERROSERVE_MINILM_DIR is unset; skipping the all-MiniLM-L6-v2 check \
             (export FERROSERVE_MINILM_DIR=$(python tests/fixtures/hf/find_minilm.py))"
        );
        return;
    };
    let dir = PathBuf::from(dir);
    let r = reference(&fixtures().join("minilm"));
    assert_eq!(
        HfEncoderRuntime::new().detect(&dir).as_deref(),
        Some("model.safetensors")
    );
    let model = HfEncoderRuntime::new().load_model(&dir, &ctx(&[])).unwrap();
    check_tokens("minilm", &model, &r);
    let t = texts(&r);
    let got = model
        .as_embedder()
        .unwrap()
        .embed(t.iter().cloned().map(EmbedInput::Text).collect())
        .unwrap();
    assert_eq!(got.vectors.len(), t.len());
    for (i, (g, w)) in got
        .vectors
        .iter()
        .zip(r["embeddings"].as_array().unwrap())
        .enumerate()
    {
        let w = floats(w);
        assert_eq!(g.len(), 384);
        let dot: f64 = g.iter().zip(&w).map(|(a, b)| *a as f64 * *b as f64).sum();
        let na: f64 = g.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
        let nb: f64 = w.iter().map(|b| (*b as f64).powi(2)).sum::<f64>().sqrt();
        let cos = dot / (na * nb);
        assert!(cos >= 1.0 - 1e-4, "sentence {i}: cosine {cos}");
        assert_close(&format!("minilm sentence {i}"), g, &w);
    }
}

#[test]
fn detects_encoder_folders_only() {
    let rt = HfEncoderRuntime::new();
    for name in [
        "bert_seq_cls",
        "xlm_roberta",
        "st_bert",
        "st_mpnet",
        "roberta_mlm",
    ] {
        assert_eq!(
            rt.detect(&fixtures().join(name)).as_deref(),
            Some("model.safetensors"),
            "{name}"
        );
    }
    // A decoder folder (the LLM fixtures) and a folder without config.json are not ours.
    let llm = fixtures().join("../llm/llama");
    if llm.is_dir() {
        assert_eq!(rt.detect(&llm), None);
    }
    assert_eq!(rt.detect(&fixtures()), None);
    assert_eq!(rt.format(), "huggingface");
}

#[test]
fn signature_and_metadata() {
    let m = load("bert_token_cls", &[]);
    let sig = m.signature();
    assert_eq!(sig.inputs.len(), 1);
    assert_eq!(sig.inputs[0].name, "input-0");
    assert_eq!(sig.inputs[0].datatype, DataType::Bytes);
    assert_eq!(sig.outputs[0].shape, vec![-1, 1, -1]);
    assert!(sig.outputs[1].optional);
    let meta = m.metadata_parameters();
    assert_eq!(meta["task"], "token_classification");
    assert_eq!(meta["labels"][3], "B-LOC");
    assert!(m.as_embedder().is_none());
    let e = load("st_bert", &[]);
    assert_eq!(e.signature().outputs[0].shape, vec![-1, 32]);
    assert_eq!(e.metadata_parameters()["normalize"], true);
}

#[test]
fn return_probabilities_and_logits_parameters() {
    let r = reference(&fixtures().join("bert_seq_cls"));
    let t = texts(&r);
    let m = load("bert_seq_cls", &[("return_probabilities", "true")]);
    let outs = m.infer(vec![text_tensor(&t)]).unwrap();
    assert_eq!(outs[0].datatype, DataType::F32);
    assert_eq!(outs[0].shape, vec![t.len(), 3]);
    assert_eq!(
        outs[0],
        Tensor {
            name: "output-0".into(),
            ..outs[1].clone()
        }
    );
    let m = load("bert_seq_cls", &[("return_raw_logits", "1")]);
    let outs = m.infer(vec![text_tensor(&t)]).unwrap();
    assert_close(
        "raw logits",
        &outs[0].to_vec::<f32>().unwrap(),
        &floats(&r["logits"]),
    );
}

#[test]
fn task_parameter_overrides_architecture() {
    // A classifier folder served as an embedder: the base model's states.
    let m = load("bert_seq_cls", &[("task", "text_embedding")]);
    assert_eq!(m.task(), Task::TextEmbedding);
    let v = m
        .as_embedder()
        .unwrap()
        .embed(vec![EmbedInput::Text("a dog".into())])
        .unwrap();
    assert_eq!(v.vectors[0].len(), 32);
    // A head the checkpoint lacks is a load error, not a panic.
    let err = HfEncoderRuntime::new()
        .load_model(
            &fixtures().join("st_bert"),
            &ctx(&[("task", "sequence_classification")]),
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::Load(ref m) if m.contains("classifier")),
        "{err}"
    );
    for bad in [
        ("task", "text_generation"),
        ("max_length", "100000"),
        ("dtype", "int8"),
        ("return_probabilities", "maybe"),
    ] {
        let err = HfEncoderRuntime::new()
            .load_model(&fixtures().join("bert_seq_cls"), &ctx(&[bad]))
            .unwrap_err();
        assert!(matches!(err, Error::Load(_)), "{bad:?}: {err}");
    }
    let short = load("bert_seq_cls", &[("max_length", "5")]);
    let encs = short
        .tokenize(&["the cat sleeps near the river".into()])
        .unwrap();
    assert_eq!(encs[0].ids.len(), 5);
}

#[test]
fn bad_inputs_are_errors() {
    let m = load("bert_seq_cls", &[]);
    let empty = Tensor::from_strings("input-0", vec![0], vec![]).unwrap();
    assert!(matches!(
        m.infer(vec![empty]),
        Err(Error::InvalidArgument(_))
    ));
    let bad_utf8 = Tensor::from_strings(
        "input-0",
        vec![2],
        vec![
            Bytes::from_static(b"fine"),
            Bytes::from_static(&[0xff, 0xfe, b'a']),
        ],
    )
    .unwrap();
    let err = m.infer(vec![bad_utf8]).unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument(ref s) if s.contains("UTF-8")),
        "{err}"
    );
    let numbers = Tensor::from_vec("input-0", vec![2], vec![1.0f32, 2.0]).unwrap();
    assert!(matches!(
        m.infer(vec![numbers]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(m.infer(vec![]), Err(Error::InvalidArgument(_))));

    let e = load("st_bert", &[]);
    let emb = e.as_embedder().unwrap();
    assert!(matches!(emb.embed(vec![]), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        emb.embed(vec![EmbedInput::Tokens(vec![])]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        emb.embed(vec![EmbedInput::Tokens(vec![2, 100_000, 3])]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        emb.embed(vec![EmbedInput::Tokens(vec![5; 17])]),
        Err(Error::InvalidArgument(_))
    ));
    // Over-long text is truncated, not refused.
    let long = emb
        .embed(vec![EmbedInput::Text("red ".repeat(5000))])
        .unwrap();
    assert_eq!(long.prompt_tokens, 16);
    // Odd but valid text: control characters, only spaces, emoji.
    let odd = emb
        .embed(vec![
            EmbedInput::Text("\u{0}\u{1}\t\n".into()),
            EmbedInput::Text("     ".into()),
            EmbedInput::Text("🦀🦀 ferroserve".into()),
        ])
        .unwrap();
    assert!(odd.vectors.iter().all(|v| v.iter().all(|x| x.is_finite())));
}

#[test]
fn half_precision_dtypes_stay_close() {
    let r = reference(&fixtures().join("st_bert"));
    let t = texts(&r);
    let want = floats(&r["embeddings"]);
    for dtype in ["bfloat16", "float16"] {
        let m = load("st_bert", &[("dtype", dtype)]);
        let outs = m.infer(vec![text_tensor(&t)]).unwrap();
        let got = outs[0].to_vec::<f32>().unwrap();
        let d = want.len() / t.len();
        for (g, w) in got.chunks(d).zip(want.chunks(d)) {
            let cos: f32 = g.iter().zip(w).map(|(a, b)| a * b).sum();
            assert!(cos > 0.99, "{dtype}: cosine {cos}");
        }
    }
}

/// Timing of all-MiniLM-L6-v2 on this machine (not a pass/fail check):
/// `cargo test --release -p ferroserve-runtime-hf --test parity minilm_timing -- --ignored --nocapture`.
#[test]
#[ignore]
fn minilm_timing() {
    let Some(dir) = std::env::var_os("FERROSERVE_MINILM_DIR") else {
        eprintln!("note: FERROSERVE_MINILM_DIR is unset");
        return;
    };
    let model = HfEncoderRuntime::new()
        .load_model(Path::new(&dir), &ctx(&[]))
        .unwrap();
    let emb = model.as_embedder().unwrap();
    let short: Vec<EmbedInput> = (0..64)
        .map(|i| {
            EmbedInput::Text(format!(
                "sentence number {i} about serving embeddings quickly"
            ))
        })
        .collect();
    let long: Vec<EmbedInput> = (0..8)
        .map(|i| EmbedInput::Text(format!("{i} long document ").repeat(100)))
        .collect();
    for (what, inputs) in [("64 short", short), ("8 x 256 tokens", long)] {
        emb.embed(inputs.clone()).unwrap();
        let start = std::time::Instant::now();
        let reps = 3;
        let mut tokens = 0;
        for _ in 0..reps {
            tokens = emb.embed(inputs.clone()).unwrap().prompt_tokens;
        }
        let s = start.elapsed().as_secs_f64() / reps as f64;
        eprintln!(
            "{what}: {:.1} ms per batch, {:.0} tokens/s",
            s * 1e3,
            tokens as f64 / s
        );
    }
}

/// An older sentence-transformers layout: the transformer in `0_Transformer/`,
/// legacy `pooling_mode_*_tokens` flags and `max_seq_length` in
/// `sentence_bert_config.json`.
#[test]
fn legacy_sentence_transformers_layout() {
    let src = fixtures().join("st_bert");
    let tmp = std::env::temp_dir().join(format!("ferroserve-hf-legacy-{}", std::process::id()));
    let sub = tmp.join("0_Transformer");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::create_dir_all(tmp.join("1_Pooling")).unwrap();
    std::fs::create_dir_all(tmp.join("2_Normalize")).unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(src.join(f), sub.join(f)).unwrap();
    }
    std::fs::write(
        tmp.join("modules.json"),
        r#"[{"idx":0,"name":"0","path":"0_Transformer","type":"sentence_transformers.models.Transformer"},
            {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
            {"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]"#,
    )
    .unwrap();
    std::fs::write(
        tmp.join("1_Pooling/config.json"),
        r#"{"word_embedding_dimension":32,"pooling_mode_cls_token":false,"pooling_mode_mean_tokens":true,
            "pooling_mode_max_tokens":false,"pooling_mode_mean_sqrt_len_tokens":false}"#,
    )
    .unwrap();
    std::fs::write(
        sub.join("sentence_bert_config.json"),
        r#"{"max_seq_length": 16, "do_lower_case": false}"#,
    )
    .unwrap();
    let rt = HfEncoderRuntime::new();
    assert_eq!(
        rt.detect(&tmp).as_deref(),
        Some("0_Transformer/model.safetensors")
    );
    let model = rt.load_model(&tmp, &ctx(&[])).unwrap();
    assert_eq!(
        model.signature().model_file,
        "0_Transformer/model.safetensors"
    );
    let r = reference(&src);
    let t = texts(&r);
    let outs = model.infer(vec![text_tensor(&t)]).unwrap();
    assert_close(
        "legacy layout",
        &outs[0].to_vec::<f32>().unwrap(),
        &floats(&r["embeddings"]),
    );
    std::fs::remove_dir_all(&tmp).ok();
}

#[test]
fn own_thread_pool_gives_the_same_answer() {
    let r = reference(&fixtures().join("st_bert"));
    let t = texts(&r);
    let mut c = ctx(&[]);
    c.intra_op_threads = 1;
    let m = HfEncoderRuntime::new()
        .load_model(&fixtures().join("st_bert"), &c)
        .unwrap();
    let outs = m.infer(vec![text_tensor(&t)]).unwrap();
    assert_close(
        "one thread",
        &outs[0].to_vec::<f32>().unwrap(),
        &floats(&r["embeddings"]),
    );
}

#[test]
fn sentence_transformers_max_pooling_dense_normalize() {
    check_embeddings("st_dense", &[]);
    let m = load("st_dense", &[]);
    assert_eq!(m.as_embedder().unwrap().dimensions(), 16);
    assert_eq!(m.signature().outputs[0].shape, vec![-1, 16]);
}

//! The continuous-batching engine against transformers' greedy
//! continuations (tests/fixtures/llm): one sequence alone, many at once,
//! with prefix caching, under KV-cache pressure (preemption), cancellation,
//! stop strings and queue limits.

use std::path::PathBuf;
use std::sync::Arc;

use candle_core::{DType, Device};
use ferroserve_core::generate::{
    FinishReason, GenerateEvent, GenerateRequest, GenerateStream, SamplingParams, StopReason,
};
use ferroserve_core::Error;
use ferroserve_llm_text::TextTokenizer;
use ferroserve_runtime_llm::engine::{Engine, EngineOptions};
use ferroserve_runtime_llm::model::DecoderModel;
use serde_json::Value;

fn fixture(arch: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/llm")
        .join(arch)
}

struct Case {
    prompt: String,
    ids: Vec<u32>,
    greedy: Vec<u32>,
}

fn cases(arch: &str) -> Vec<Case> {
    let text = std::fs::read_to_string(fixture(arch).join("reference.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let ids = |x: &Value| -> Vec<u32> {
        x.as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap() as u32)
            .collect()
    };
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            prompt: c["prompt"].as_str().unwrap().to_string(),
            ids: ids(&c["input_ids"]),
            greedy: ids(&c["greedy_ids"]),
        })
        .collect()
}

fn start(arch: &str, options: EngineOptions) -> (Engine, Arc<TextTokenizer>) {
    let dir = fixture(arch);
    let model = DecoderModel::load_hf(&dir, DType::F32, &Device::Cpu).unwrap();
    let tok = Arc::new(TextTokenizer::from_hf_dir(&dir).unwrap());
    let eos = tok.eos_token_ids();
    let engine = Engine::start(Arc::new(model), Arc::clone(&tok), eos, options).unwrap();
    (engine, tok)
}

fn greedy(max_tokens: usize) -> SamplingParams {
    SamplingParams {
        temperature: 0.0,
        ignore_eos: true,
        max_tokens: Some(max_tokens),
        skip_special_tokens: false,
        ..SamplingParams::default()
    }
}

struct Outcome {
    ids: Vec<u32>,
    text: String,
    finish: FinishReason,
    stop: Option<StopReason>,
    cached: usize,
}

fn collect(mut rx: GenerateStream) -> Result<Outcome, Error> {
    let mut ids = Vec::new();
    let mut text = String::new();
    while let Some(ev) = rx.blocking_recv() {
        match ev? {
            GenerateEvent::Delta {
                text: t, token_ids, ..
            } => {
                text.push_str(&t);
                ids.extend(token_ids);
            }
            GenerateEvent::Done {
                finish_reason,
                stop_reason,
                usage,
            } => {
                assert_eq!(usage.completion_tokens, ids.len());
                return Ok(Outcome {
                    ids,
                    text,
                    finish: finish_reason,
                    stop: stop_reason,
                    cached: usage.cached_tokens,
                });
            }
        }
    }
    Err(Error::internal("stream ended without Done"))
}

fn submit(engine: &Engine, prompt: &[u32], params: SamplingParams) -> GenerateStream {
    engine
        .submit(GenerateRequest {
            request_id: "t".into(),
            prompt: prompt.to_vec(),
            params,
        })
        .unwrap()
}

#[test]
fn greedy_matches_transformers_one_at_a_time() {
    let (engine, _) = start("llama", EngineOptions::default());
    for case in cases("llama") {
        let out = collect(submit(&engine, &case.ids, greedy(case.greedy.len()))).unwrap();
        assert_eq!(out.ids, case.greedy, "prompt {:?}", case.prompt);
        assert_eq!(out.finish, FinishReason::Length);
    }
}

#[test]
fn concurrent_sequences_match_their_solo_runs() {
    // Small steps force chunked prefill beside running decodes.
    let options = EngineOptions {
        max_num_batched_tokens: 24,
        max_num_seqs: 8,
        ..EngineOptions::default()
    };
    for arch in ["llama", "qwen2", "gemma2"] {
        let (engine, _) = start(arch, options.clone());
        let all = cases(arch);
        let streams: Vec<_> = all
            .iter()
            .chain(all.iter())
            .map(|c| submit(&engine, &c.ids, greedy(c.greedy.len())))
            .collect();
        for (i, rx) in streams.into_iter().enumerate() {
            let case = &all[i % all.len()];
            let out = collect(rx).unwrap();
            assert_eq!(out.ids, case.greedy, "{arch}: prompt {:?}", case.prompt);
        }
    }
}

#[test]
fn prefix_cache_reuses_a_shared_prompt() {
    let (engine, _) = start("llama", EngineOptions::default());
    let case = cases("llama")
        .into_iter()
        .max_by_key(|c| c.ids.len())
        .unwrap();
    let first = collect(submit(&engine, &case.ids, greedy(8))).unwrap();
    assert_eq!(first.cached, 0);
    let second = collect(submit(&engine, &case.ids, greedy(8))).unwrap();
    assert!(second.cached >= 16, "cached {}", second.cached);
    assert_eq!(first.ids, second.ids);
    assert_eq!(second.ids, case.greedy[..8]);
    let m = engine.metrics();
    assert!(m.prefix_cache_hits_total >= 16);
}

#[test]
fn preemption_under_a_small_kv_budget_keeps_outputs_exact() {
    let dir = fixture("llama");
    let model = DecoderModel::load_hf(&dir, DType::F32, &Device::Cpu).unwrap();
    let per_token = model.kv_bytes_per_token();
    // Room for 112 positions: the 4 cases need 11+30+25+30 (+20 each) at once.
    let options = EngineOptions {
        kv_cache_bytes: per_token * 112,
        block_size: 16,
        prefix_cache_entries: 0,
        ..EngineOptions::default()
    };
    let tok = Arc::new(TextTokenizer::from_hf_dir(&dir).unwrap());
    let engine = Engine::start(Arc::new(model), tok, vec![], options).unwrap();
    let all: Vec<Case> = cases("llama")
        .into_iter()
        .filter(|c| c.ids.len() + c.greedy.len() <= 112)
        .collect();
    let streams: Vec<_> = all
        .iter()
        .map(|c| submit(&engine, &c.ids, greedy(c.greedy.len())))
        .collect();
    for (case, rx) in all.iter().zip(streams) {
        assert_eq!(collect(rx).unwrap().ids, case.greedy);
    }
    assert!(engine.metrics().preemptions_total > 0);
}

#[test]
fn streamed_text_concatenates_to_the_full_decode() {
    let (engine, tok) = start("llama", EngineOptions::default());
    for case in cases("llama") {
        let mut params = greedy(case.greedy.len());
        params.skip_special_tokens = true;
        let out = collect(submit(&engine, &case.ids, params)).unwrap();
        assert_eq!(out.text, tok.decode(&out.ids, true).unwrap());
    }
}

#[test]
fn stop_strings_end_generation_before_the_string() {
    let (engine, tok) = start("llama", EngineOptions::default());
    let case = &cases("llama")[0];
    let full = tok.decode(&case.greedy, true).unwrap();
    // A stop string taken from the middle of the greedy text.
    let chars: Vec<char> = full.chars().collect();
    let start = chars.len() / 2;
    let stop: String = chars[start..(start + 3).min(chars.len())].iter().collect();
    let mut params = greedy(case.greedy.len());
    params.skip_special_tokens = true;
    params.stop = vec![stop.clone()];
    let out = collect(submit(&engine, &case.ids, params)).unwrap();
    let cut = full.find(&stop).unwrap();
    assert_eq!(out.text, full[..cut]);
    assert_eq!(out.finish, FinishReason::Stop);
    assert_eq!(out.stop, Some(StopReason::String(stop)));
}

#[test]
fn eos_stops_unless_ignored_and_seeded_sampling_repeats() {
    let (engine, _) = start("llama", EngineOptions::default());
    let case = &cases("llama")[1];
    let eos = case.greedy[3];
    // Treat the 4th greedy token as a stop token id.
    let mut params = greedy(case.greedy.len());
    params.stop_token_ids = vec![eos];
    let out = collect(submit(&engine, &case.ids, params)).unwrap();
    assert_eq!(
        out.ids,
        case.greedy[..=case.greedy.iter().position(|&t| t == eos).unwrap()]
    );
    assert_eq!(out.stop, Some(StopReason::Token(eos)));
    let sampled = || SamplingParams {
        temperature: 1.0,
        seed: Some(7),
        max_tokens: Some(12),
        ignore_eos: true,
        ..SamplingParams::default()
    };
    let a = collect(submit(&engine, &case.ids, sampled())).unwrap();
    let b = collect(submit(&engine, &case.ids, sampled())).unwrap();
    assert_eq!(a.ids, b.ids);
}

#[test]
fn cancelled_requests_leave_and_limits_are_enforced() {
    let options = EngineOptions {
        max_waiting: 4,
        max_num_seqs: 1,
        ..EngineOptions::default()
    };
    let (engine, _) = start("llama", options);
    let case = &cases("llama")[0];
    // A dropped receiver is cancelled; later requests still complete.
    for _ in 0..3 {
        drop(submit(&engine, &case.ids, greedy(200)));
    }
    let out = collect(submit(&engine, &case.ids, greedy(5))).unwrap();
    assert_eq!(out.ids, case.greedy[..5]);
    let m = engine.metrics();
    let aborted = m
        .finished_total
        .iter()
        .find(|(r, _)| *r == "abort")
        .unwrap()
        .1;
    assert!(aborted >= 1, "aborted {aborted}");
    // Too long for the context.
    let err = engine
        .submit(GenerateRequest {
            request_id: "x".into(),
            prompt: case.ids.clone(),
            params: greedy(100_000),
        })
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    // Out-of-vocabulary token id.
    let err = engine
        .submit(GenerateRequest {
            request_id: "x".into(),
            prompt: vec![u32::MAX],
            params: greedy(1),
        })
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    // The waiting queue is bounded: with one running slot, flood it.
    let mut kept = Vec::new();
    let mut refused = 0;
    for _ in 0..20 {
        match engine.submit(GenerateRequest {
            request_id: "f".into(),
            prompt: case.ids.clone(),
            params: greedy(50),
        }) {
            Ok(rx) => kept.push(rx),
            Err(Error::ResourceExhausted(_)) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(refused > 0);
    for rx in kept {
        collect(rx).unwrap();
    }
}

//! The OpenAI API over the HTTP router, with scripted test doubles of the
//! core's `TextGenerator` and `Embedder` (no engine): body shapes, SSE
//! chunks byte for byte, validation errors, `/v1/models` in both shapes,
//! base64 embeddings, auth, and cancellation when the client goes away.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ferroserve_core::generate::{
    ChatTemplateOptions, EmbedInput, Embedder, Embeddings, FinishReason, GenerateEvent,
    GenerateRequest, GenerateStream, GeneratedLogprobs, GeneratorInfo, StopReason, TextGenerator,
    TokenLogprob, Usage,
};
use ferroserve_core::{
    Error, LoadContext, Model, Registry, RegistryOptions, Runtime, Signature, Tensor,
};
use ferroserve_server::AppState;
use http_body_util::BodyExt;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

/// What the fake generator emits: these pieces, one token each.
const PIECES: [&str; 5] = ["Hello", ",", " wor", "ld", "!"];
const VOCAB: usize = 300;
const MAX_LEN: usize = 64;

/// A scripted text generator. Prompts are bytes (token id = byte value).
/// A prompt containing `HANG` emits one piece and then waits until the
/// receiver is dropped (counting the cancellation); `FAIL` emits one piece
/// and then an error; `BUSY` is refused at once.
#[derive(Default)]
struct FakeGen {
    requests: Mutex<Vec<GenerateRequest>>,
    chats: Mutex<Vec<(Vec<Value>, ChatTemplateOptions)>>,
    cancelled: Arc<AtomicUsize>,
}

fn lp(id: u32, text: &str, logprob: f32) -> TokenLogprob {
    TokenLogprob {
        id,
        text: text.into(),
        bytes: text.as_bytes().to_vec(),
        logprob,
    }
}

impl TextGenerator for FakeGen {
    fn info(&self) -> GeneratorInfo {
        GeneratorInfo {
            max_model_len: MAX_LEN,
            vocab_size: VOCAB,
            has_chat_template: true,
            sampling_defaults: Default::default(),
        }
    }

    fn tokenize(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, Error> {
        let mut ids: Vec<u32> = Vec::new();
        if add_special_tokens {
            ids.push(256);
        }
        ids.extend(text.bytes().map(u32::from));
        Ok(ids)
    }

    fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, Error> {
        let mut out = String::new();
        for &id in ids {
            match u8::try_from(id) {
                Ok(b) => out.push(char::from(b)),
                Err(_) if skip_special_tokens => {}
                Err(_) => out.push_str("<s>"),
            }
        }
        Ok(out)
    }

    fn render_chat(
        &self,
        messages: &[Value],
        options: &ChatTemplateOptions,
    ) -> Result<String, Error> {
        self.chats.lock().push((messages.to_vec(), options.clone()));
        let mut s = String::new();
        for m in messages {
            s.push_str(m["role"].as_str().unwrap_or("?"));
            s.push_str(": ");
            s.push_str(m["content"].as_str().unwrap_or(""));
            s.push('\n');
        }
        if options.add_generation_prompt {
            s.push_str("assistant:");
        }
        Ok(s)
    }

    fn generate(&self, request: GenerateRequest) -> Result<GenerateStream, Error> {
        let prompt = self.decode(&request.prompt, true)?;
        if prompt.contains("BUSY") {
            return Err(Error::ResourceExhausted("queue full".into()));
        }
        self.requests.lock().push(request.clone());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let cancelled = Arc::clone(&self.cancelled);
        let p = request.params;
        let delta = |i: usize| {
            let piece = PIECES[i % PIECES.len()];
            let id = i as u32 + 1;
            let logprobs = match p.logprobs {
                Some(k) => vec![GeneratedLogprobs {
                    chosen: lp(id, piece, -0.5),
                    top: [lp(id, piece, -0.5), lp(99, "x", -1.5), lp(98, "y", -2.5)]
                        .into_iter()
                        .take(k)
                        .collect(),
                }],
                None => Vec::new(),
            };
            GenerateEvent::Delta {
                text: piece.to_string(),
                token_ids: vec![id],
                logprobs,
            }
        };
        if prompt.contains("HANG") || prompt.contains("FAIL") {
            let fail = prompt.contains("FAIL");
            let first = delta(0);
            tokio::spawn(async move {
                let _ = tx.send(Ok(first));
                if fail {
                    let _ = tx.send(Err(Error::internal("engine exploded")));
                    return;
                }
                tx.closed().await;
                cancelled.fetch_add(1, Ordering::SeqCst);
            });
            return Ok(rx);
        }
        let max = p.max_tokens.unwrap_or(MAX_LEN);
        let count = max.min(PIECES.len());
        for i in 0..count {
            let _ = tx.send(Ok(delta(i)));
        }
        let finished = count == PIECES.len();
        let _ = tx.send(Ok(GenerateEvent::Done {
            finish_reason: if finished {
                FinishReason::Stop
            } else {
                FinishReason::Length
            },
            stop_reason: finished.then_some(StopReason::Token(7)),
            usage: Usage {
                prompt_tokens: request.prompt.len(),
                completion_tokens: count,
                cached_tokens: 0,
            },
        }));
        Ok(rx)
    }
}

/// A scripted embedder: input `i` of `len` tokens → `[len, 0.5, -1.25, i]`.
struct FakeEmbedder;

impl Embedder for FakeEmbedder {
    fn embed(&self, inputs: Vec<EmbedInput>) -> Result<Embeddings, Error> {
        let mut total = 0;
        let vectors = inputs
            .iter()
            .enumerate()
            .map(|(i, input)| {
                let len = match input {
                    EmbedInput::Text(t) => t.len(),
                    EmbedInput::Tokens(t) => t.len(),
                };
                total += len;
                vec![len as f32, 0.5, -1.25, i as f32]
            })
            .collect();
        Ok(Embeddings {
            vectors,
            prompt_tokens: total,
        })
    }

    fn dimensions(&self) -> usize {
        4
    }

    fn max_input_tokens(&self) -> usize {
        8
    }
}

struct FakeModel {
    sig: Signature,
    gen: Option<Arc<FakeGen>>,
    emb: Option<FakeEmbedder>,
}

impl Model for FakeModel {
    fn signature(&self) -> &Signature {
        &self.sig
    }
    fn infer(&self, _: Vec<Tensor>) -> Result<Vec<Tensor>, Error> {
        Err(Error::Unimplemented("fake".into()))
    }
    fn as_generator(&self) -> Option<&dyn TextGenerator> {
        self.gen.as_deref().map(|g| g as &dyn TextGenerator)
    }
    fn as_embedder(&self) -> Option<&dyn Embedder> {
        self.emb.as_ref().map(|e| e as &dyn Embedder)
    }
}

/// Loads folders holding `fake.txt` whose content names the kind.
struct FakeRuntime {
    gen: Arc<FakeGen>,
}

impl Runtime for FakeRuntime {
    fn format(&self) -> &'static str {
        "fake"
    }
    fn detect(&self, dir: &Path) -> Option<String> {
        dir.join("fake.txt").exists().then(|| "fake.txt".into())
    }
    fn load(&self, dir: &Path, _: &LoadContext) -> Result<Arc<dyn Model>, Error> {
        let kind = std::fs::read_to_string(dir.join("fake.txt"))
            .map_err(|e| Error::Load(e.to_string()))?;
        let sig = Signature {
            platform: "fake".into(),
            backend: "fake".into(),
            model_file: "fake.txt".into(),
            inputs: vec![],
            outputs: vec![],
        };
        Ok(Arc::new(FakeModel {
            sig,
            gen: (kind == "gen").then(|| Arc::clone(&self.gen)),
            emb: (kind == "emb").then_some(FakeEmbedder),
        }))
    }
}

struct Harness {
    gen: Arc<FakeGen>,
    state: AppState,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn harness_with(auth: Option<Arc<ferroserve_server::auth::Auth>>) -> Harness {
    static N: AtomicUsize = AtomicUsize::new(0);
    let root = std::env::temp_dir().join(format!(
        "ferroserve-openai-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let mut explicit = Vec::new();
    for (name, kind) in [("gpt", "gen"), ("emb", "emb"), ("plain", "none")] {
        let d = root.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("fake.txt"), kind).unwrap();
        explicit.push((name.to_string(), d));
    }
    let gen = Arc::new(FakeGen::default());
    let registry = Arc::new(Registry::new(
        RegistryOptions {
            explicit,
            drain_timeout: Duration::from_secs(5),
            ..Default::default()
        },
        vec![Arc::new(FakeRuntime {
            gen: Arc::clone(&gen),
        })],
    ));
    registry.load_startup_models().await.unwrap();
    registry.set_ready(true);
    let state = AppState::new(ferroserve_server::state::Shared {
        registry,
        max_body_bytes: 1 << 20,
        metrics: Some(Arc::new(ferroserve_server::metrics::Metrics::default())),
        started: Instant::now(),
        auth,
        cors_allow_origins: Arc::from(Vec::<String>::new()),
        logger: None,
        limits: Default::default(),
    });
    Harness {
        gen,
        state,
        _dir: TempDir(root),
    }
}

async fn harness() -> Harness {
    harness_with(None).await
}

impl Harness {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, String) {
        self.call_with(method, path, body, None).await
    }

    async fn call_with(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> (StatusCode, String) {
        let app = ferroserve_server::http::app(self.state.clone());
        let mut req = Request::builder().method(method).uri(path);
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let resp = app.oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    async fn json(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let (s, text) = self.call("POST", path, Some(body)).await;
        (
            s,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// The `data:` payloads of an SSE body, checking the framing on the way.
fn sse_data(body: &str) -> Vec<String> {
    assert!(
        body.ends_with("\n\n"),
        "SSE body must end with a blank line: {body:?}"
    );
    body.trim_end_matches("\n\n")
        .split("\n\n")
        .map(|ev| {
            ev.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data event: {ev:?}"))
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn completion_non_streaming() {
    let h = harness().await;
    let (s, v) = h
        .json(
            "/v1/completions",
            json!({"model": "gpt", "prompt": "Hi", "max_tokens": 3, "stop": ["wor"], "temperature": 0}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let id = v["id"].as_str().unwrap();
    assert!(id.starts_with("cmpl-") && id.len() == 5 + 32, "{id}");
    assert!(v["created"].as_u64().unwrap() > 1_700_000_000);
    let mut v2 = v.clone();
    v2["id"] = json!("X");
    v2["created"] = json!(0);
    assert_eq!(
        v2,
        json!({"id": "X", "object": "text_completion", "created": 0, "model": "gpt",
            "choices": [{"index": 0, "text": "Hello, wor", "logprobs": null, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}})
    );
    // Parameters reach the engine as the core's SamplingParams.
    let reqs = h.gen.requests.lock().clone();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].prompt, vec![256, u32::from(b'H'), u32::from(b'i')]);
    assert_eq!(reqs[0].params.stop, vec!["wor".to_string()]);
    assert_eq!(reqs[0].params.max_tokens, Some(3));
    assert_eq!(reqs[0].params.temperature, 0.0);
    assert!(reqs[0].request_id.starts_with(id));
}

#[tokio::test]
async fn completion_prompt_forms_n_and_echo() {
    let h = harness().await;
    // Two prompts (a string list) × n=2, seeded: choices prompt*n+i, seeds seed+i.
    let (s, v) = h
        .json(
            "/openai/v1/completions",
            json!({"model": "gpt", "prompt": ["ab", "c"], "n": 2, "seed": 10, "echo": true,
                   "add_special_tokens": false}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 4);
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], json!(i));
        let echo = if i < 2 { "ab" } else { "c" };
        assert_eq!(c["text"], json!(format!("{echo}Hello, world!")));
        assert_eq!(c["finish_reason"], json!("stop"));
        assert_eq!(c["stop_reason"], json!(7));
    }
    // Prompt tokens count once per prompt; completion tokens over all choices.
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 3, "completion_tokens": 20, "total_tokens": 23})
    );
    let seeds: Vec<Option<u64>> = h
        .gen
        .requests
        .lock()
        .iter()
        .map(|r| r.params.seed)
        .collect();
    assert_eq!(seeds, vec![Some(10), Some(11), Some(10), Some(11)]);

    // Token ids and lists of them; echo decodes the ids.
    let (s, v) = h
        .json(
            "/v1/completions",
            json!({"model": "gpt", "prompt": [[104, 105], [106]], "echo": true, "max_tokens": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["choices"][0]["text"], json!("hiHello"));
    assert_eq!(v["choices"][1]["text"], json!("jHello"));
    let (s, v) = h
        .json(
            "/v1/completions",
            json!({"model": "gpt", "prompt": [104, 105], "max_tokens": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["usage"]["prompt_tokens"], json!(2));
}

#[tokio::test]
async fn completion_logprobs_legacy_format() {
    let h = harness().await;
    let (s, v) = h
        .json(
            "/v1/completions",
            json!({"model": "gpt", "prompt": "x", "max_tokens": 2, "logprobs": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["choices"][0]["logprobs"],
        json!({"tokens": ["Hello", ","], "token_logprobs": [-0.5, -0.5],
               "top_logprobs": [{"Hello": -0.5}, {",": -0.5}], "text_offset": [0, 5]})
    );
    assert_eq!(h.gen.requests.lock()[0].params.logprobs, Some(1));
}

#[tokio::test]
async fn completion_stream_byte_exact() {
    let h = harness().await;
    let (s, body) = h
        .call(
            "POST",
            "/v1/completions",
            Some(
                json!({"model": "gpt", "prompt": "Hi", "max_tokens": 2, "stream": true,
                        "stream_options": {"include_usage": true}}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let data = sse_data(&body);
    let first: Value = serde_json::from_str(&data[0]).unwrap();
    let (id, created) = (
        first["id"].as_str().unwrap(),
        first["created"].as_u64().unwrap(),
    );
    let head = format!(
        r#"{{"id":"{id}","object":"text_completion","created":{created},"model":"gpt","choices":"#
    );
    let expected = [
        format!(
            r#"{head}[{{"index":0,"text":"Hello","logprobs":null,"finish_reason":null}}],"usage":null}}"#
        ),
        format!(
            r#"{head}[{{"index":0,"text":",","logprobs":null,"finish_reason":null}}],"usage":null}}"#
        ),
        format!(
            r#"{head}[{{"index":0,"text":"","logprobs":null,"finish_reason":"length"}}],"usage":null}}"#
        ),
        format!(
            r#"{head}[],"usage":{{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}}}"#
        ),
        "[DONE]".to_string(),
    ];
    assert_eq!(data, expected);
    let raw: String = expected.iter().map(|d| format!("data: {d}\n\n")).collect();
    assert_eq!(body, raw);
}

#[tokio::test]
async fn chat_non_streaming_and_template_options() {
    let h = harness().await;
    let (s, v) = h
        .json(
            "/v1/chat/completions",
            json!({"model": "gpt", "max_completion_tokens": 2,
                   "messages": [
                       {"role": "system", "content": "Be brief."},
                       {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
                   "tools": [{"type": "function", "function": {"name": "f"}}],
                   "chat_template_kwargs": {"enable_thinking": false}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let mut v2 = v.clone();
    v2["id"] = json!("X");
    v2["created"] = json!(0);
    let prompt = "system: Be brief.\nuser: a\nb\nassistant:";
    assert_eq!(
        v2,
        json!({"id": "X", "object": "chat.completion", "created": 0, "model": "gpt",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello,"},
                         "logprobs": null, "finish_reason": "length"}],
            "usage": {"prompt_tokens": prompt.len(), "completion_tokens": 2, "total_tokens": prompt.len() + 2}})
    );
    let (msgs, opts) = h.gen.chats.lock()[0].clone();
    assert_eq!(msgs[1]["content"], json!("a\nb"));
    assert!(opts.add_generation_prompt && !opts.continue_final_message);
    assert_eq!(
        opts.tools,
        Some(json!([{"type": "function", "function": {"name": "f"}}]))
    );
    assert_eq!(opts.extra.get("enable_thinking"), Some(&json!(false)));
    // Chat prompts are tokenised without special tokens (the template has them).
    let req = h.gen.requests.lock()[0].clone();
    assert_eq!(req.prompt.len(), prompt.len());
    assert_eq!(req.params.max_tokens, Some(2));

    let (s, _) = h
        .json(
            "/v1/chat/completions",
            json!({"model": "gpt", "add_generation_prompt": false, "continue_final_message": true,
                   "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "The"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, opts) = h.gen.chats.lock()[1].clone();
    assert!(!opts.add_generation_prompt && opts.continue_final_message);
    // No max_tokens: the rest of the context.
    let rendered = "user: q\nassistant: The\n";
    let req = h.gen.requests.lock()[1].clone();
    assert_eq!(req.params.max_tokens, Some(MAX_LEN - rendered.len()));
}

#[tokio::test]
async fn chat_logprobs() {
    let h = harness().await;
    let (s, v) = h
        .json(
            "/v1/chat/completions",
            json!({"model": "gpt", "max_tokens": 1, "logprobs": true, "top_logprobs": 2,
                   "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["choices"][0]["logprobs"],
        json!({"content": [{"token": "Hello", "logprob": -0.5, "bytes": [72, 101, 108, 108, 111],
            "top_logprobs": [{"token": "Hello", "logprob": -0.5, "bytes": [72, 101, 108, 108, 111]},
                             {"token": "x", "logprob": -1.5, "bytes": [120]}]}]})
    );
    assert_eq!(h.gen.requests.lock()[0].params.logprobs, Some(2));
}

#[tokio::test]
async fn chat_stream_byte_exact_without_usage() {
    let h = harness().await;
    let (s, body) = h
        .call(
            "POST",
            "/openai/v1/chat/completions",
            Some(json!({"model": "gpt", "max_tokens": 5, "stream": true,
                        "messages": [{"role": "user", "content": "Hi"}]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let data = sse_data(&body);
    let first: Value = serde_json::from_str(&data[0]).unwrap();
    let (id, created) = (
        first["id"].as_str().unwrap(),
        first["created"].as_u64().unwrap(),
    );
    let head = format!(
        r#"{{"id":"{id}","object":"chat.completion.chunk","created":{created},"model":"gpt","choices":"#
    );
    let mut expected = vec![format!(
        r#"{head}[{{"index":0,"delta":{{"role":"assistant","content":""}},"logprobs":null,"finish_reason":null}}]}}"#
    )];
    for p in PIECES {
        expected.push(format!(
            r#"{head}[{{"index":0,"delta":{{"content":"{p}"}},"logprobs":null,"finish_reason":null}}]}}"#
        ));
    }
    expected.push(format!(
        r#"{head}[{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"stop","stop_reason":7}}]}}"#
    ));
    expected.push("[DONE]".into());
    assert_eq!(data, expected);
}

#[tokio::test]
async fn chat_stream_n_interleaved_with_usage() {
    let h = harness().await;
    let (s, body) = h
        .call(
            "POST",
            "/v1/chat/completions",
            Some(
                json!({"model": "gpt", "max_tokens": 2, "n": 3, "stream": true, "logprobs": true,
                        "stream_options": {"include_usage": true},
                        "messages": [{"role": "user", "content": "Hi"}]}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let data = sse_data(&body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let mut text = vec![String::new(); 3];
    let mut roles = vec![0; 3];
    let mut finishes = vec![0; 3];
    for c in &chunks[..chunks.len() - 1] {
        assert_eq!(c["object"], json!("chat.completion.chunk"));
        assert_eq!(c["usage"], Value::Null);
        assert!(c.as_object().unwrap().contains_key("usage"));
        let choices = c["choices"].as_array().unwrap();
        assert_eq!(choices.len(), 1);
        let ch = &choices[0];
        let i = ch["index"].as_u64().unwrap() as usize;
        if ch["delta"]["role"] == json!("assistant") {
            roles[i] += 1;
            assert_eq!(finishes[i], 0);
        }
        if let Some(t) = ch["delta"]["content"].as_str() {
            assert_eq!(roles[i], 1, "content before the role chunk");
            text[i].push_str(t);
            if !t.is_empty() {
                assert_eq!(ch["logprobs"]["content"][0]["token"], json!(t));
            }
        }
        if ch["finish_reason"] == json!("length") {
            finishes[i] += 1;
        }
    }
    assert_eq!(roles, vec![1, 1, 1]);
    assert_eq!(finishes, vec![1, 1, 1]);
    assert_eq!(text, vec!["Hello,"; 3]);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    let prompt = "user: Hi\nassistant:".len();
    assert_eq!(
        last["usage"],
        json!({"prompt_tokens": prompt, "completion_tokens": 6, "total_tokens": prompt + 6})
    );
}

#[tokio::test]
async fn stream_failure_sends_error_event() {
    let h = harness().await;
    let (s, body) = h
        .call(
            "POST",
            "/v1/completions",
            Some(json!({"model": "gpt", "prompt": "FAIL", "stream": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let data = sse_data(&body);
    assert_eq!(data.len(), 2, "{body}");
    let err: Value = serde_json::from_str(&data[1]).unwrap();
    assert_eq!(
        err,
        json!({"error": {"message": "engine exploded", "type": "server_error", "param": null, "code": null}})
    );
    // Non-streaming: the same failure is a 500 in OpenAI's shape.
    let (s, v) = h
        .json("/v1/completions", json!({"model": "gpt", "prompt": "FAIL"}))
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(v["error"]["type"], json!("server_error"));
    // A full queue is a 429.
    let (s, v) = h
        .json("/v1/completions", json!({"model": "gpt", "prompt": "BUSY"}))
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["error"]["code"], json!("rate_limit_exceeded"));
}

#[tokio::test]
async fn validation_errors_name_the_parameter() {
    let h = harness().await;
    let msgs = json!([{"role": "user", "content": "hi"}]);
    let cases: Vec<(&str, Value, u16, Option<&str>)> = vec![
        (
            "/v1/completions",
            json!({"prompt": "x"}),
            400,
            Some("model"),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt"}),
            400,
            Some("prompt"),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt", "prompt": []}),
            400,
            Some("prompt"),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt", "prompt": [1, "a"]}),
            400,
            Some("prompt"),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt", "prompt": [1000]}),
            400,
            Some("prompt"),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt", "prompt": "x", "temperature": 2.5}),
            400,
            Some("temperature"),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt", "prompt": "x", "temperature": "hot"}),
            400,
            Some("temperature"),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt", "prompt": "x", "top_p": 0}),
            400,
            Some("top_p"),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt", "prompt": "x", "top_p": 1.5}),
            400,
            Some("top_p"),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt", "prompt": "x", "n": 0}),
            400,
            Some("n"),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt", "prompt": "x", "n": 129}),
            400,
            Some("n"),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt", "prompt": "x", "presence_penalty": -2.5}),
            400,
            Some("presence_penalty"),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt", "prompt": "x", "frequency_penalty": 3}),
            400,
            Some("frequency_penalty"),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt", "prompt": "x", "logprobs": 6}),
            400,
            Some("logprobs"),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt", "prompt": "x", "max_tokens": 0}),
            400,
            Some("max_tokens"),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt", "prompt": "x", "max_tokens": 100}),
            400,
            Some("prompt"),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt", "prompt": "x", "logit_bias": {"5": 101}}),
            400,
            Some("logit_bias"),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt", "prompt": "x", "logit_bias": {"abc": 1}}),
            400,
            Some("logit_bias"),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt", "prompt": "x", "logit_bias": {"300": 1}}),
            400,
            Some("logit_bias"),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt", "prompt": "x", "stop": ["a", "b", "c", "d", "e"]}),
            400,
            Some("stop"),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt", "prompt": "x", "stop": [""]}),
            400,
            Some("stop"),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt", "prompt": "x", "stop": 5}),
            400,
            Some("stop"),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt", "prompt": "x", "top_k": -2}),
            400,
            Some("top_k"),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt", "prompt": "x", "min_p": 1.5}),
            400,
            Some("min_p"),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt", "prompt": "x", "repetition_penalty": 0}),
            400,
            Some("repetition_penalty"),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt", "prompt": "x", "min_tokens": 20}),
            400,
            Some("min_tokens"),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt", "prompt": "x", "stop_token_ids": [400]}),
            400,
            Some("stop_token_ids"),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt", "prompt": "x", "seed": 1.5}),
            400,
            Some("seed"),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt", "prompt": "x", "suffix": "end"}),
            400,
            Some("suffix"),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt", "prompt": "x", "best_of": 2}),
            400,
            Some("best_of"),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt", "prompt": "x", "n": 2, "best_of": 1}),
            400,
            Some("best_of"),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt", "prompt": "x", "echo": true, "logprobs": 1}),
            400,
            Some("echo"),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt", "prompt": "x", "stream_options": {"include_usage": true}}),
            400,
            Some("stream_options"),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt", "prompt": "x", "use_beam_search": true}),
            400,
            Some("use_beam_search"),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt", "prompt": "x", "no_such_field": 1}),
            400,
            Some("no_such_field"),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "gpt"}),
            400,
            Some("messages"),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "gpt", "messages": []}),
            400,
            Some("messages"),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "gpt", "messages": [{"role": "wizard", "content": "x"}]}),
            400,
            Some("messages"),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "gpt", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
            400,
            Some("messages"),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "gpt", "messages": msgs, "top_logprobs": 21, "logprobs": true}),
            400,
            Some("top_logprobs"),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "gpt", "messages": msgs, "top_logprobs": 2}),
            400,
            Some("top_logprobs"),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "gpt", "messages": msgs, "max_completion_tokens": 0}),
            400,
            Some("max_completion_tokens"),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "gpt", "messages": msgs, "max_tokens": 60}),
            400,
            Some("messages"),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "gpt", "messages": msgs, "response_format": {"type": "json_schema", "json_schema": {}}}),
            400,
            Some("response_format"),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "gpt", "messages": msgs, "tools": [], "tool_choice": "required"}),
            400,
            Some("tool_choice"),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "gpt", "messages": msgs, "tools": [{"type": "function"}], "tool_choice": "auto"}),
            400,
            Some("tool_choice"),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "gpt", "messages": msgs, "continue_final_message": true}),
            400,
            Some("continue_final_message"),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "gpt", "messages": msgs, "add_generation_prompt": false, "continue_final_message": true}),
            400,
            Some("continue_final_message"),
        ),
        (
            "/v1/embeddings",
            json!({"model": "emb"}),
            400,
            Some("input"),
        ),
        (
            "/v1/embeddings",
            json!({"model": "emb", "input": ""}),
            400,
            Some("input"),
        ),
        (
            "/v1/embeddings",
            json!({"model": "emb", "input": "x", "encoding_format": "int8"}),
            400,
            Some("encoding_format"),
        ),
        (
            "/v1/embeddings",
            json!({"model": "emb", "input": "x", "dimensions": 3}),
            400,
            Some("dimensions"),
        ),
        (
            "/v1/embeddings",
            json!({"model": "emb", "input": [1, 2, 3, 4, 5, 6, 7, 8, 9]}),
            400,
            Some("input"),
        ),
        (
            "/v1/completions",
            json!({"model": "nope", "prompt": "x"}),
            404,
            Some("model"),
        ),
        (
            "/v1/completions",
            json!({"model": "emb", "prompt": "x"}),
            404,
            Some("model"),
        ),
        (
            "/v1/completions",
            json!({"model": "plain", "prompt": "x"}),
            404,
            Some("model"),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "nope", "messages": msgs}),
            404,
            Some("model"),
        ),
        (
            "/v1/embeddings",
            json!({"model": "gpt", "input": "x"}),
            404,
            Some("model"),
        ),
    ];
    for (path, body, status, param) in cases {
        let (s, v) = h.json(path, body.clone()).await;
        assert_eq!(s.as_u16(), status, "{path} {body}: {v}");
        let e = &v["error"];
        let want_type = "invalid_request_error";
        assert_eq!(e["type"], json!(want_type), "{body}: {v}");
        assert_eq!(e["param"].as_str(), param, "{body}: {v}");
        assert!(!e["message"].as_str().unwrap().is_empty());
        if status == 404 {
            assert_eq!(e["code"], json!("model_not_found"), "{v}");
        }
    }
    assert!(
        h.gen.requests.lock().is_empty(),
        "an invalid request reached the engine"
    );
    // Malformed JSON and a non-object body.
    let (s, text) = h.call("POST", "/v1/completions", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{text}");
    let (s, v) = h.json("/v1/chat/completions", json!([1])).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["type"], json!("invalid_request_error"));
}

#[tokio::test]
async fn harmless_extras_are_accepted() {
    let h = harness().await;
    let (s, v) = h
        .json(
            "/v1/chat/completions",
            json!({"model": "gpt", "messages": [{"role": "user", "content": "x"}], "user": "u1",
                   "top_k": -1, "min_p": 0.1, "repetition_penalty": 1.1, "ignore_eos": true,
                   "skip_special_tokens": false, "stop_token_ids": [3], "logit_bias": {"5": -100},
                   "response_format": {"type": "text"}, "tool_choice": "none", "seed": -1,
                   "presence_penalty": 0.5, "frequency_penalty": -0.5, "min_tokens": 1,
                   "parallel_tool_calls": true, "stream": false, "max_tokens": 2}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let p = h.gen.requests.lock()[0].params.clone();
    assert_eq!(p.top_k, 0);
    assert_eq!(p.min_p, 0.1);
    assert_eq!(p.repetition_penalty, 1.1);
    assert!(p.ignore_eos && !p.skip_special_tokens);
    assert_eq!(p.stop_token_ids, vec![3]);
    assert_eq!(p.logit_bias, vec![(5, -100.0)]);
    assert_eq!(p.seed, Some(u64::MAX));
    assert_eq!(
        (p.presence_penalty, p.frequency_penalty, p.min_tokens),
        (0.5, -0.5, 1)
    );
}

#[tokio::test]
async fn models_lists_in_both_shapes() {
    let h = harness().await;
    let (s, text) = h.call("GET", "/v1/models", None).await;
    assert_eq!(s, StatusCode::OK);
    let v: Value = serde_json::from_str(&text).unwrap();
    // KServe v1: every ready model.
    assert_eq!(v["models"], json!(["emb", "gpt", "plain"]));
    // OpenAI: the models that generate or embed.
    assert_eq!(v["object"], json!("list"));
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["emb", "gpt"]);
    let gpt = &v["data"][1];
    assert_eq!(gpt["object"], json!("model"));
    assert_eq!(gpt["owned_by"], json!("ferroserve"));
    assert_eq!(gpt["max_model_len"], json!(MAX_LEN));
    assert!(gpt["created"].as_u64().unwrap() > 0);
    let (s, text) = h.call("GET", "/openai/v1/models", None).await;
    assert_eq!(s, StatusCode::OK);
    let o: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(o["object"], json!("list"));
    assert_eq!(o["data"].as_array().unwrap().len(), 2);
    assert!(o.get("models").is_none());
    let (s, text) = h.call("GET", "/openai/v1/models/gpt", None).await;
    assert_eq!(s, StatusCode::OK);
    let card: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (&card["id"], &card["object"]),
        (&json!("gpt"), &json!("model"))
    );
    let (s, text) = h.call("GET", "/openai/v1/models/plain", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["code"], json!("model_not_found"));
}

fn decode_base64(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("bad base64 {c}"),
        }
    };
    let mut out = Vec::new();
    for chunk in s.as_bytes().chunks(4) {
        let pad = chunk.iter().filter(|&&c| c == b'=').count();
        let n = chunk
            .iter()
            .map(|&c| if c == b'=' { 0 } else { val(c) })
            .fold(0u32, |acc, v| (acc << 6) | v);
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    out
}

#[tokio::test]
async fn embeddings_float_and_base64() {
    let h = harness().await;
    let (s, v) = h
        .json(
            "/v1/embeddings",
            json!({"model": "emb", "input": ["abc", "de"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!({"object": "list", "model": "emb",
               "data": [{"object": "embedding", "index": 0, "embedding": [3.0, 0.5, -1.25, 0.0]},
                        {"object": "embedding", "index": 1, "embedding": [2.0, 0.5, -1.25, 1.0]}],
               "usage": {"prompt_tokens": 5, "total_tokens": 5}})
    );
    let (s, v) = h
        .json(
            "/openai/v1/embeddings",
            json!({"model": "emb", "input": [[1, 2, 3, 4, 5, 6, 7]], "encoding_format": "base64"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let b64 = v["data"][0]["embedding"].as_str().unwrap();
    let bytes = decode_base64(b64);
    let floats: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(floats, vec![7.0, 0.5, -1.25, 0.0]);
    assert_eq!(v["usage"]["prompt_tokens"], json!(7));
    // Single string and a single list of token ids.
    let (s, v) = h
        .json("/v1/embeddings", json!({"model": "emb", "input": "hello"}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    let (s, v) = h
        .json("/v1/embeddings", json!({"model": "emb", "input": [5, 6]}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["data"][0]["embedding"][0], json!(2.0));
}

async fn wait_cancelled(h: &Harness, want: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.gen.cancelled.load(Ordering::SeqCst) < want {
        assert!(
            Instant::now() < deadline,
            "the generation was not cancelled"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn dropping_the_stream_body_cancels_generation() {
    let h = harness().await;
    let app = ferroserve_server::http::app(h.state.clone());
    let req = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"model": "gpt", "n": 2, "stream": true, "messages": [{"role": "user", "content": "HANG"}]})
                .to_string(),
        ))
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let frame = body.frame().await.unwrap().unwrap();
    assert!(frame.data_ref().unwrap().starts_with(b"data: "));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(h.gen.cancelled.load(Ordering::SeqCst), 0);
    drop(body);
    wait_cancelled(&h, 2).await;
}

async fn serve(h: &Harness) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = ferroserve_server::http::app(h.state.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

fn http_post(path: &str, body: &Value) -> String {
    let b = body.to_string();
    format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{b}",
        b.len()
    )
}

#[tokio::test]
async fn client_disconnect_cancels_a_stream() {
    let h = harness().await;
    let addr = serve(&h).await;
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = http_post(
        "/v1/completions",
        &json!({"model": "gpt", "prompt": "HANG", "stream": true}),
    );
    sock.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("Hello") {
        let n = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed early");
        got.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&got).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{head}"
    );
    drop(sock);
    wait_cancelled(&h, 1).await;
}

#[tokio::test]
async fn client_disconnect_cancels_a_non_streaming_request() {
    let h = harness().await;
    let addr = serve(&h).await;
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = http_post(
        "/v1/chat/completions",
        &json!({"model": "gpt", "messages": [{"role": "user", "content": "HANG"}]}),
    );
    sock.write_all(req.as_bytes()).await.unwrap();
    // Wait until the generation runs, then hang up.
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.gen.requests.lock().is_empty() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(sock);
    wait_cancelled(&h, 1).await;
}

#[tokio::test]
async fn requests_are_counted_in_http_metrics() {
    let h = harness().await;
    let (s, _) = h
        .json(
            "/v1/completions",
            json!({"model": "gpt", "prompt": "x", "max_tokens": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, _) = h
        .json("/openai/v1/chat/completions", json!({"model": "nope"}))
        .await;
    let (_, text) = h.call("GET", "/metrics", None).await;
    assert!(
        text.contains(r#"route="/v1/completions",method="POST",status="200""#),
        "{text}"
    );
    assert!(
        text.contains(r#"route="/openai/v1/chat/completions",method="POST",status="400""#),
        "{text}"
    );
}

#[tokio::test]
async fn auth_checks_the_model_named_in_the_body() {
    let yaml = format!(
        "api_keys:\n  - name: alice\n    sha256: {}\n    models: [gpt]\n",
        ferroserve_server::auth::hash_key("alice-key")
    );
    let cfg: ferroserve_server::auth::AuthConfig = serde_yaml::from_str(&yaml).unwrap();
    let auth = Arc::new(ferroserve_server::auth::Auth::new(cfg, None, None).unwrap());
    let h = harness_with(Some(auth)).await;
    let chat =
        json!({"model": "gpt", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]});
    let (s, _) = h
        .call_with("POST", "/v1/chat/completions", Some(chat.clone()), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, text) = h
        .call_with(
            "POST",
            "/v1/chat/completions",
            Some(chat),
            Some("alice-key"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{text}");
    let (s, text) = h
        .call_with(
            "POST",
            "/openai/v1/embeddings",
            Some(json!({"model": "emb", "input": "x"})),
            Some("alice-key"),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["code"], json!("permission_denied"));
    // An unknown model is refused the same way: existence does not leak.
    let (s, _) = h
        .call_with(
            "POST",
            "/v1/completions",
            Some(json!({"model": "nope", "prompt": "x"})),
            Some("alice-key"),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // The OpenAI model list shows only the models the caller may use.
    let (s, text) = h
        .call_with("GET", "/openai/v1/models", None, Some("alice-key"))
        .await;
    assert_eq!(s, StatusCode::OK);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    assert_eq!(v["data"][0]["id"], json!("gpt"));
}

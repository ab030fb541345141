//! The OpenAI API over the core's `TextGenerator` and `Embedder` traits:
//! `GET models`, `POST completions`, `POST chat/completions`, `POST
//! embeddings`, served under `/openai/v1/` (as KServe does) and `/v1/`.
//!
//! Authorization: the auth middleware lets these routes through for any
//! valid principal (the model is named in the body, not the path); each
//! handler then authorizes the body's `model` for that principal, as the
//! gRPC service does, and the model list shows only the models it may use.

mod format;
mod gen;
mod stream;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use ferroserve_core::generate::{Embedder, GeneratorInfo, TextGenerator};
use ferroserve_core::{Error, ServedModel};
use ferroserve_protocol::openai::{
    random_id, unix_now, ChatRequest, CompletionRequest, EmbeddingRequest, EmbeddingResponse,
    EncodingFormat, ModelCard, ModelList, OpenAiError, PromptInput, StreamFields,
};

use super::body::read_limited;
use crate::auth::{Action, Principal};
use crate::state::AppState;
use format::{ChatFormat, CompletionFormat};
use gen::{collect_all, start_all, Job};

/// An error answered in OpenAI's shape.
#[derive(Debug)]
pub struct OaiError(pub OpenAiError);

impl From<OpenAiError> for OaiError {
    fn from(e: OpenAiError) -> Self {
        OaiError(e)
    }
}

impl From<Error> for OaiError {
    fn from(e: Error) -> Self {
        OaiError(OpenAiError::from_core(&e))
    }
}

impl IntoResponse for OaiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.0.body())).into_response()
    }
}

type OaiResult<T> = Result<T, OaiError>;

/// The principal the auth middleware stored, when auth is on.
type Caller = Option<Extension<Arc<Principal>>>;

fn authorize(st: &AppState, caller: &Caller, model: &str) -> OaiResult<()> {
    let Some(auth) = &st.auth else {
        return Ok(());
    };
    let Some(Extension(p)) = caller else {
        return Err(OaiError(OpenAiError {
            status: 401,
            kind: "authentication_error",
            message: "missing credentials".into(),
            param: None,
            code: Some("invalid_api_key"),
        }));
    };
    auth.authorize(p, &Action::Model(model.into()))
        .map_err(|_| {
            OaiError(OpenAiError {
                status: 403,
                kind: "permission_error",
                message: format!("'{}' is not allowed to use model '{model}'", p.name),
                param: Some("model".into()),
                code: Some("permission_denied"),
            })
        })
}

/// What a request needs the model to be.
#[derive(Clone, Copy)]
enum Needs {
    Generator,
    Embedder,
}

fn lookup(st: &AppState, caller: &Caller, name: &str, needs: Needs) -> OaiResult<Arc<ServedModel>> {
    authorize(st, caller, name)?;
    let served = st.registry.get(name, None).map_err(|e| match e {
        Error::NotFound(_) => OaiError(OpenAiError::model_not_found(format!(
            "The model `{name}` does not exist."
        ))),
        other => OaiError::from(other),
    })?;
    let (ok, what) = match needs {
        Needs::Generator => (served.model.as_generator().is_some(), "generate text"),
        Needs::Embedder => (served.model.as_embedder().is_some(), "compute embeddings"),
    };
    if !ok {
        return Err(OaiError(OpenAiError::model_not_found(format!(
            "The model `{name}` does not {what}."
        ))));
    }
    Ok(served)
}

fn generator(m: &ServedModel) -> Result<&dyn TextGenerator, Error> {
    m.model
        .as_generator()
        .ok_or_else(|| Error::internal("model is not a generator"))
}

fn embedder(m: &ServedModel) -> Result<&dyn Embedder, Error> {
    m.model
        .as_embedder()
        .ok_or_else(|| Error::internal("model is not an embedder"))
}

/// Runs `f` on the model on a blocking thread (tokenising, rendering and
/// embedding are CPU work).
async fn blocking<T: Send + 'static>(
    model: &Arc<ServedModel>,
    f: impl FnOnce(&ServedModel) -> Result<T, OaiError> + Send + 'static,
) -> OaiResult<T> {
    let m = Arc::clone(model);
    tokio::task::spawn_blocking(move || f(&m))
        .await
        .map_err(|e| OaiError::from(Error::internal(format!("worker failed: {e}"))))?
}

/// The OpenAI model cards of the served models that generate or embed
/// (only those `caller` may use, when one is given).
pub(crate) fn model_cards(st: &AppState, caller: Option<&Principal>) -> Vec<ModelCard> {
    if st.auth.is_some() && caller.is_none() {
        // Auth is on but no principal was stored: show nothing rather
        // than everything (the edge stores it for these routes).
        return Vec::new();
    }
    let created = unix_now();
    let mut cards: Vec<ModelCard> = Vec::new();
    for m in st.registry.loaded() {
        if cards.last().is_some_and(|c| c.id == m.name) {
            continue;
        }
        if caller.is_some_and(|p| !p.perms.allows_model(&m.name)) {
            continue;
        }
        let gen = m.model.as_generator().map(|g| g.info());
        if gen.is_none() && m.model.as_embedder().is_none() {
            continue;
        }
        cards.push(ModelCard {
            id: m.name.clone(),
            object: "model".into(),
            created,
            owned_by: "ferroserve".into(),
            max_model_len: gen.map(|i| i.max_model_len),
        });
    }
    cards
}

/// `GET /openai/v1/models`.
pub async fn models(State(st): State<AppState>, caller: Caller) -> Response {
    let data = model_cards(&st, caller.as_ref().map(|Extension(p)| &**p));
    Json(ModelList {
        object: "list".into(),
        data,
    })
    .into_response()
}

/// `GET /openai/v1/models/{m}`: one model card (OpenAI's "retrieve model").
pub async fn model(
    State(st): State<AppState>,
    caller: Caller,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Response {
    if let Err(e) = authorize(&st, &caller, &name) {
        return e.into_response();
    }
    let principal = caller.as_ref().map(|Extension(p)| &**p);
    match model_cards(&st, principal)
        .into_iter()
        .find(|c| c.id == name)
    {
        Some(card) => Json(card).into_response(),
        None => OaiError(OpenAiError::model_not_found(format!(
            "The model `{name}` does not exist."
        )))
        .into_response(),
    }
}

fn context_error(info: &GeneratorInfo, prompt: usize, max_tokens: usize, param: &str) -> OaiError {
    OaiError(
        OpenAiError::invalid(
            param,
            format!(
                "This model's maximum context length is {} tokens. However, you requested {} tokens \
                 ({prompt} in the {param}, {max_tokens} in the completion). Please reduce the length \
                 of the {param} or completion.",
                info.max_model_len,
                prompt + max_tokens
            ),
        )
        .with_code("context_length_exceeded"),
    )
}

/// A tokenised completion prompt and the text `echo` repeats.
struct Prompt {
    tokens: Vec<u32>,
    echo: Option<String>,
}

/// `POST /openai/v1/completions` and `/v1/completions`.
pub async fn completions(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> OaiResult<Response> {
    let bytes = read_limited(&headers, body, st.max_body_bytes).await?;
    let req =
        ferroserve_core::stage_span!("decode").in_scope(|| CompletionRequest::from_json(&bytes))?;
    let served = lookup(&st, &caller, &req.model, Needs::Generator)?;
    let prompts = req.prompts.clone();
    let (echo, special) = (req.echo, req.add_special_tokens);
    let (info, prompts) = blocking(&served, move |m| {
        let g = generator(m)?;
        let prompts = prompts
            .into_iter()
            .map(|p| {
                Ok(match p {
                    PromptInput::Text(t) => Prompt {
                        tokens: g.tokenize(&t, special)?,
                        echo: echo.then_some(t),
                    },
                    PromptInput::Tokens(ids) => Prompt {
                        echo: if echo {
                            Some(g.decode(&ids, false)?)
                        } else {
                            None
                        },
                        tokens: ids,
                    },
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok((g.info(), prompts))
    })
    .await?;
    let mut jobs = Vec::with_capacity(prompts.len() * req.n);
    for (p, prompt) in prompts.iter().enumerate() {
        if prompt.tokens.is_empty() {
            return Err(OpenAiError::invalid("prompt", "the prompt is empty").into());
        }
        if let Some(id) = prompt
            .tokens
            .iter()
            .find(|&&id| id as usize >= info.vocab_size)
        {
            return Err(OpenAiError::invalid(
                "prompt",
                format!(
                    "token id {id} is out of the vocabulary (size {})",
                    info.vocab_size
                ),
            )
            .into());
        }
        if prompt.tokens.len() + req.max_tokens > info.max_model_len {
            return Err(context_error(
                &info,
                prompt.tokens.len(),
                req.max_tokens,
                "prompt",
            ));
        }
        for i in 0..req.n {
            jobs.push(Job {
                index: p * req.n + i,
                prompt: p,
                tokens: prompt.tokens.clone(),
                params: req.sampling.to_params(
                    &info.sampling_defaults,
                    info.vocab_size,
                    req.logprobs,
                    req.max_tokens,
                    i,
                )?,
            });
        }
    }
    let id = random_id("cmpl-");
    let running = start_all(generator(&served)?, &id, jobs)?;
    let prompt_lens: Vec<usize> = prompts.iter().map(|p| p.tokens.len()).collect();
    let echoes: Vec<Option<String>> = prompts.into_iter().map(|p| p.echo).collect();
    let format = CompletionFormat::new(
        id,
        req.model.clone(),
        req.logprobs,
        echoes,
        req.stream.include_usage,
    );
    respond(format, running, prompt_lens, req.stream, served).await
}

/// Streams the running choices as server-sent events, or collects them
/// into one answer, in `format`'s shape.
async fn respond<F: stream::ChunkFormat>(
    format: F,
    running: Vec<gen::Running>,
    prompt_lens: Vec<usize>,
    streaming: StreamFields,
    served: Arc<ServedModel>,
) -> OaiResult<Response> {
    if streaming.stream {
        return Ok(stream::sse(
            format,
            running,
            prompt_lens,
            streaming.include_usage,
            served,
        ));
    }
    let finished = ferroserve_core::trace::traced_in(
        collect_all(running),
        ferroserve_core::stage_span!("compute"),
    )
    .await?;
    let full =
        ferroserve_core::stage_span!("encode").in_scope(|| format.full(&finished, &prompt_lens));
    Ok(Json(full).into_response())
}

/// `POST /openai/v1/chat/completions` and `/v1/chat/completions`.
pub async fn chat_completions(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> OaiResult<Response> {
    let bytes = read_limited(&headers, body, st.max_body_bytes).await?;
    let req = ferroserve_core::stage_span!("decode").in_scope(|| ChatRequest::from_json(&bytes))?;
    let served = lookup(&st, &caller, &req.model, Needs::Generator)?;
    let messages = req.messages.clone();
    let options = req.template.clone();
    let special = req.add_special_tokens;
    let (info, tokens) = blocking(&served, move |m| {
        let g = generator(m)?;
        let info = g.info();
        if !info.has_chat_template && options.template.is_none() {
            return Err(OpenAiError::invalid(
                "chat_template",
                "this model has no chat template; pass one as 'chat_template' or use /v1/completions",
            )
            .into());
        }
        let prompt = g.render_chat(&messages, &options)?;
        Ok((info, g.tokenize(&prompt, special)?))
    })
    .await?;
    if tokens.is_empty() {
        return Err(OpenAiError::invalid("messages", "the rendered prompt is empty").into());
    }
    let room = info.max_model_len.saturating_sub(tokens.len());
    let max_tokens = match req.max_tokens {
        Some(m) if m <= room => m,
        Some(m) => return Err(context_error(&info, tokens.len(), m, "messages")),
        None if room == 0 => return Err(context_error(&info, tokens.len(), 1, "messages")),
        None => room,
    };
    let mut jobs = Vec::with_capacity(req.n);
    for i in 0..req.n {
        jobs.push(Job {
            index: i,
            prompt: 0,
            tokens: tokens.clone(),
            params: req.sampling.to_params(
                &info.sampling_defaults,
                info.vocab_size,
                req.logprobs,
                max_tokens,
                i,
            )?,
        });
    }
    let id = random_id("chatcmpl-");
    let running = start_all(generator(&served)?, &id, jobs)?;
    let prompt_lens = vec![tokens.len()];
    let format = ChatFormat::new(
        id,
        req.model.clone(),
        req.logprobs,
        req.stream.include_usage,
    );
    respond(format, running, prompt_lens, req.stream, served).await
}

/// `POST /openai/v1/embeddings` and `/v1/embeddings`.
pub async fn embeddings(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> OaiResult<Response> {
    let bytes = read_limited(&headers, body, st.max_body_bytes).await?;
    let req =
        ferroserve_core::stage_span!("decode").in_scope(|| EmbeddingRequest::from_json(&bytes))?;
    let served = lookup(&st, &caller, &req.model, Needs::Embedder)?;
    let inputs = req.inputs;
    let want_dims = req.dimensions;
    let out = blocking(&served, move |m| {
        let e = embedder(m)?;
        if let Some(d) = want_dims.filter(|d| *d != e.dimensions()) {
            return Err(OpenAiError::invalid(
                "dimensions",
                format!(
                    "this model's embeddings have {} dimensions; 'dimensions' = {d} is not supported",
                    e.dimensions()
                ),
            )
            .into());
        }
        let max = e.max_input_tokens();
        for (i, input) in inputs.iter().enumerate() {
            if let ferroserve_core::generate::EmbedInput::Tokens(t) = input {
                if t.len() > max {
                    return Err(OpenAiError::invalid(
                        "input",
                        format!("input {i} has {} tokens; this model takes at most {max}", t.len()),
                    )
                    .into());
                }
            }
        }
        Ok(e.embed(inputs)?)
    })
    .await?;
    let resp = EmbeddingResponse::new(
        req.model,
        out.vectors,
        req.encoding == EncodingFormat::Base64,
        out.prompt_tokens,
    );
    Ok(Json(resp).into_response())
}

//! Requests of the OpenAI API, read and range-checked: completions, chat
//! completions and embeddings.

use ferroserve_core::generate::{
    ChatTemplateOptions, EmbedInput, SamplingDefaults, SamplingParams,
};
use serde_json::{Map, Value};

use super::error::OpenAiError;
use super::fields::{
    any, check_count, check_range, is_empty, is_false, is_true, never, Fields, Harmless,
};

/// `max_tokens` of a completion request that leaves it out (OpenAI's default).
pub const DEFAULT_COMPLETION_MAX_TOKENS: usize = 16;
/// Most stop strings per request.
pub const MAX_STOP: usize = 4;
/// Most choices per prompt (`n`).
pub const MAX_N: i64 = 128;
/// Most alternatives per token for completions (`logprobs`).
pub const MAX_COMPLETION_LOGPROBS: i64 = 5;
/// Most alternatives per token for chat (`top_logprobs`).
pub const MAX_TOP_LOGPROBS: i64 = 20;

fn length_penalty_one(v: &Value) -> bool {
    v.as_f64() == Some(1.0)
}

fn text_format(v: &Value) -> bool {
    v.get("type").and_then(Value::as_str) == Some("text")
        && v.as_object().is_some_and(|o| o.len() == 1)
}

fn tool_choice_none(v: &Value) -> bool {
    v.as_str() == Some("none")
}

fn text_modality(v: &Value) -> bool {
    v.as_array()
        .is_some_and(|a| a.iter().all(|m| m.as_str() == Some("text")))
}

/// Fields of OpenAI and vLLM that both generation endpoints tolerate
/// without implementing them, with the values that are harmless.
const GENERATION_RULES: &[(&str, Harmless)] = &[
    ("user", any),
    ("metadata", any),
    ("store", any),
    ("service_tier", any),
    ("priority", any),
    ("request_id", any),
    ("cache_salt", any),
    ("safety_identifier", any),
    ("prompt_cache_key", any),
    ("mm_processor_kwargs", any),
    ("use_beam_search", is_false),
    ("include_stop_str_in_output", is_false),
    ("return_tokens_as_token_ids", is_false),
    ("return_token_ids", is_false),
    ("spaces_between_special_tokens", is_true),
    ("bad_words", is_empty),
    ("length_penalty", length_penalty_one),
    ("response_format", text_format),
    ("prompt_logprobs", never),
    ("allowed_token_ids", never),
    ("truncate_prompt_tokens", never),
    ("guided_json", never),
    ("guided_regex", never),
    ("guided_choice", never),
    ("guided_grammar", never),
    ("guided_decoding_backend", never),
    ("guided_whitespace_pattern", never),
    ("structured_outputs", never),
    ("logits_processors", never),
    ("vllm_xargs", never),
    ("kv_transfer_params", never),
];

/// Extra rules of `/completions`.
const COMPLETION_RULES: &[(&str, Harmless)] = &[("suffix", is_empty)];

/// Extra rules of `/chat/completions`.
const CHAT_RULES: &[(&str, Harmless)] = &[
    ("function_call", tool_choice_none),
    ("functions", never),
    ("parallel_tool_calls", any),
    ("modalities", text_modality),
    ("audio", never),
    ("prediction", never),
    ("reasoning_effort", never),
    ("verbosity", never),
    ("web_search_options", never),
    ("echo", is_false),
];

/// Rules of `/embeddings`.
const EMBEDDING_RULES: &[(&str, Harmless)] = &[
    ("user", any),
    ("priority", any),
    ("request_id", any),
    ("add_special_tokens", is_true),
    ("truncate_prompt_tokens", never),
    ("normalize", never),
    ("embed_dtype", never),
];

fn all_rules<'a>(
    a: &'a [(&'a str, Harmless)],
    b: &'a [(&'a str, Harmless)],
) -> Vec<(&'a str, Harmless)> {
    a.iter().chain(b).copied().collect()
}

/// Sampling and stopping fields shared by completions and chat.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SamplingFields {
    /// `temperature` (0..=2).
    pub temperature: Option<f32>,
    /// `top_p` (0, 1].
    pub top_p: Option<f32>,
    /// `top_k` (vLLM; -1 and 0 mean off).
    pub top_k: Option<usize>,
    /// `min_p` (vLLM) in [0, 1].
    pub min_p: Option<f32>,
    /// `seed` (negative seeds are taken as their two's-complement bits).
    pub seed: Option<u64>,
    /// `presence_penalty` in [-2, 2].
    pub presence_penalty: f32,
    /// `frequency_penalty` in [-2, 2].
    pub frequency_penalty: f32,
    /// `repetition_penalty` (vLLM) in (0, 2].
    pub repetition_penalty: Option<f32>,
    /// `logit_bias`: token id → bias in [-100, 100].
    pub logit_bias: Vec<(u32, f32)>,
    /// `ignore_eos` (vLLM).
    pub ignore_eos: bool,
    /// `min_tokens` (vLLM).
    pub min_tokens: usize,
    /// `stop` (at most four non-empty strings).
    pub stop: Vec<String>,
    /// `stop_token_ids` (vLLM).
    pub stop_token_ids: Vec<u32>,
    /// `skip_special_tokens` (vLLM; default true).
    pub skip_special_tokens: bool,
}

impl SamplingFields {
    fn read(f: &mut Fields) -> Result<Self, OpenAiError> {
        let temperature = f
            .get::<f32>("temperature")?
            .map(|v| check_range("temperature", v, 0.0, 2.0, false))
            .transpose()?;
        let top_p = f
            .get::<f32>("top_p")?
            .map(|v| check_range("top_p", v, 0.0, 1.0, true))
            .transpose()?;
        let top_k = match f.get::<i64>("top_k")? {
            None => None,
            Some(-1) | Some(0) => Some(0),
            Some(k) => Some(check_count("top_k", k, 1, i64::MAX).map_err(|_| {
                OpenAiError::invalid(
                    "top_k",
                    format!("'top_k' must be -1 (off) or at least 1, got {k}"),
                )
            })?),
        };
        let min_p = f
            .get::<f32>("min_p")?
            .map(|v| check_range("min_p", v, 0.0, 1.0, false))
            .transpose()?;
        let seed = match f.raw("seed") {
            None => None,
            Some(v) => Some(
                v.as_u64()
                    .or_else(|| v.as_i64().map(|s| s as u64))
                    .ok_or_else(|| {
                        OpenAiError::invalid(
                            "seed",
                            format!("'seed' must be a 64-bit integer, got {v}"),
                        )
                    })?,
            ),
        };
        let pen = |f: &mut Fields, name: &str| -> Result<f32, OpenAiError> {
            Ok(f.get::<f32>(name)?
                .map(|v| check_range(name, v, -2.0, 2.0, false))
                .transpose()?
                .unwrap_or(0.0))
        };
        let presence_penalty = pen(f, "presence_penalty")?;
        let frequency_penalty = pen(f, "frequency_penalty")?;
        let repetition_penalty = f
            .get::<f32>("repetition_penalty")?
            .map(|v| check_range("repetition_penalty", v, 0.0, 2.0, true))
            .transpose()?;
        let mut logit_bias = Vec::new();
        if let Some(map) = f.get::<Map<String, Value>>("logit_bias")? {
            for (k, v) in map {
                let id: u32 = k.trim().parse().map_err(|_| {
                    OpenAiError::invalid(
                        "logit_bias",
                        format!("'logit_bias' key '{k}' is not a token id"),
                    )
                })?;
                let bias = v.as_f64().ok_or_else(|| {
                    OpenAiError::invalid(
                        "logit_bias",
                        format!("'logit_bias' value for '{k}' is not a number"),
                    )
                })?;
                if !(-100.0..=100.0).contains(&bias) {
                    return Err(OpenAiError::invalid(
                        "logit_bias",
                        format!("'logit_bias' value for '{k}' must be in [-100, 100], got {bias}"),
                    ));
                }
                logit_bias.push((id, bias as f32));
            }
        }
        let ignore_eos = f.get::<bool>("ignore_eos")?.unwrap_or(false);
        let min_tokens = match f.get::<i64>("min_tokens")? {
            None => 0,
            Some(v) => check_count("min_tokens", v, 0, i64::MAX)?,
        };
        let stop = match f.raw("stop") {
            None => Vec::new(),
            Some(Value::String(s)) => vec![s],
            Some(Value::Array(a)) => a
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    other => Err(OpenAiError::invalid(
                        "stop",
                        format!("'stop' must hold strings, got {other}"),
                    )),
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(OpenAiError::invalid(
                    "stop",
                    format!("'stop' must be a string or a list of strings, got {other}"),
                ))
            }
        };
        if stop.len() > MAX_STOP {
            return Err(OpenAiError::invalid(
                "stop",
                format!(
                    "'stop' holds {} strings; at most {MAX_STOP} are allowed",
                    stop.len()
                ),
            ));
        }
        if stop.iter().any(String::is_empty) {
            return Err(OpenAiError::invalid(
                "stop",
                "'stop' strings must not be empty",
            ));
        }
        let stop_token_ids = f.get::<Vec<u32>>("stop_token_ids")?.unwrap_or_default();
        let skip_special_tokens = f.get::<bool>("skip_special_tokens")?.unwrap_or(true);
        Ok(SamplingFields {
            temperature,
            top_p,
            top_k,
            min_p,
            seed,
            presence_penalty,
            frequency_penalty,
            repetition_penalty,
            logit_bias,
            ignore_eos,
            min_tokens,
            stop,
            stop_token_ids,
            skip_special_tokens,
        })
    }

    /// The core's sampling parameters for choice `index` of a request
    /// (its seed is `seed + index`), checking token ids against
    /// `vocab_size` and `min_tokens` against `max_tokens`.
    pub fn to_params(
        &self,
        defaults: &SamplingDefaults,
        vocab_size: usize,
        logprobs: Option<usize>,
        max_tokens: usize,
        index: usize,
    ) -> Result<SamplingParams, OpenAiError> {
        if let Some((id, _)) = self
            .logit_bias
            .iter()
            .find(|(id, _)| *id as usize >= vocab_size)
        {
            return Err(OpenAiError::invalid(
                "logit_bias",
                format!("'logit_bias' token id {id} is out of the vocabulary (size {vocab_size})"),
            ));
        }
        if let Some(id) = self
            .stop_token_ids
            .iter()
            .find(|id| **id as usize >= vocab_size)
        {
            return Err(OpenAiError::invalid(
                "stop_token_ids",
                format!(
                    "'stop_token_ids' token id {id} is out of the vocabulary (size {vocab_size})"
                ),
            ));
        }
        if self.min_tokens > max_tokens {
            return Err(OpenAiError::invalid(
                "min_tokens",
                format!(
                    "'min_tokens' ({}) must not exceed 'max_tokens' ({max_tokens})",
                    self.min_tokens
                ),
            ));
        }
        Ok(SamplingParams {
            temperature: self.temperature.or(defaults.temperature).unwrap_or(1.0),
            top_p: self.top_p.or(defaults.top_p).unwrap_or(1.0),
            top_k: self.top_k.or(defaults.top_k).unwrap_or(0),
            min_p: self.min_p.or(defaults.min_p).unwrap_or(0.0),
            seed: self.seed.map(|s| s.wrapping_add(index as u64)),
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            repetition_penalty: self
                .repetition_penalty
                .or(defaults.repetition_penalty)
                .unwrap_or(1.0),
            logit_bias: self.logit_bias.clone(),
            logprobs,
            ignore_eos: self.ignore_eos,
            max_tokens: Some(max_tokens),
            min_tokens: self.min_tokens,
            stop: self.stop.clone(),
            stop_token_ids: self.stop_token_ids.clone(),
            skip_special_tokens: self.skip_special_tokens,
        })
    }
}

/// Fields about choices and streaming shared by completions and chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamFields {
    /// `stream`.
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
}

impl StreamFields {
    fn read(f: &mut Fields) -> Result<Self, OpenAiError> {
        let stream = f.get::<bool>("stream")?.unwrap_or(false);
        let mut include_usage = false;
        if let Some(opts) = f.get::<Map<String, Value>>("stream_options")? {
            if !stream {
                return Err(OpenAiError::invalid(
                    "stream_options",
                    "'stream_options' is only allowed when 'stream' is true",
                ));
            }
            for (k, v) in opts {
                match (k.as_str(), &v) {
                    (_, Value::Null) => {}
                    ("include_usage", Value::Bool(b)) => include_usage = *b,
                    ("continuous_usage_stats", Value::Bool(false)) => {}
                    ("include_obfuscation", Value::Bool(_)) => {}
                    _ => {
                        return Err(OpenAiError::invalid(
                            "stream_options",
                            format!("'stream_options.{k}' = {v} is not supported"),
                        ))
                    }
                }
            }
        }
        Ok(StreamFields {
            stream,
            include_usage,
        })
    }
}

fn read_n(f: &mut Fields) -> Result<usize, OpenAiError> {
    let n = match f.get::<i64>("n")? {
        None => 1,
        Some(v) => check_count("n", v, 1, MAX_N)?,
    };
    if let Some(b) = f.get::<i64>("best_of")? {
        if b < n as i64 {
            return Err(OpenAiError::invalid(
                "best_of",
                format!("'best_of' ({b}) must be at least 'n' ({n})"),
            ));
        }
        if b > n as i64 {
            return Err(OpenAiError::invalid(
                "best_of",
                format!("'best_of' > 'n' is not supported by this server (best_of {b}, n {n})"),
            ));
        }
    }
    Ok(n)
}

fn read_max_tokens(f: &mut Fields, name: &str) -> Result<Option<usize>, OpenAiError> {
    f.get::<i64>(name)?
        .map(|v| check_count(name, v, 1, i64::MAX))
        .transpose()
}

fn read_model(f: &mut Fields) -> Result<String, OpenAiError> {
    match f.get::<String>("model")? {
        Some(m) if !m.is_empty() => Ok(m),
        _ => Err(OpenAiError::invalid(
            "model",
            "you must provide a 'model' parameter",
        )),
    }
}

/// One prompt of a completion request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptInput {
    /// Text, tokenised by the model's tokenizer.
    Text(String),
    /// Token ids, used as given.
    Tokens(Vec<u32>),
}

/// Reads `prompt` / `input`: a string, a list of strings, a list of
/// token ids or a list of such lists.
fn read_prompts(value: Value, param: &str) -> Result<Vec<PromptInput>, OpenAiError> {
    let bad = |msg: String| OpenAiError::invalid(param, msg);
    let token = |v: &Value| -> Option<u32> { v.as_u64().and_then(|x| u32::try_from(x).ok()) };
    let tokens = |a: &[Value]| -> Result<Vec<u32>, OpenAiError> {
        if a.is_empty() {
            return Err(bad(format!(
                "'{param}' must not hold an empty list of token ids"
            )));
        }
        a.iter()
            .map(|v| token(v).ok_or_else(|| bad(format!("'{param}': {v} is not a token id"))))
            .collect()
    };
    match value {
        Value::String(s) => Ok(vec![PromptInput::Text(s)]),
        Value::Array(a) if a.is_empty() => Err(bad(format!("'{param}' must not be empty"))),
        Value::Array(a) => match a.first() {
            Some(Value::String(_)) => a
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(PromptInput::Text(s)),
                    other => Err(bad(format!("'{param}' mixes strings with {other}"))),
                })
                .collect(),
            Some(Value::Number(_)) => Ok(vec![PromptInput::Tokens(tokens(&a)?)]),
            Some(Value::Array(_)) => a
                .iter()
                .map(|v| match v {
                    Value::Array(inner) => tokens(inner).map(PromptInput::Tokens),
                    other => Err(bad(format!("'{param}' mixes lists with {other}"))),
                })
                .collect(),
            _ => Err(bad(format!(
                "'{param}' must be a string, a list of strings, a list of token ids or a list of such lists"
            ))),
        },
        other => Err(bad(format!(
            "'{param}' must be a string or a list, got {other}"
        ))),
    }
}

/// `POST /v1/completions`.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionRequest {
    /// `model`.
    pub model: String,
    /// `prompt`, one entry per prompt (each gets `n` choices).
    pub prompts: Vec<PromptInput>,
    /// `n`.
    pub n: usize,
    /// `max_tokens` (default 16).
    pub max_tokens: usize,
    /// `echo`: the prompt text starts each choice.
    pub echo: bool,
    /// `logprobs` (0..=5 alternatives per token).
    pub logprobs: Option<usize>,
    /// `stream` and `stream_options`.
    pub stream: StreamFields,
    /// `add_special_tokens` (vLLM; default true: BOS is added to text prompts).
    pub add_special_tokens: bool,
    /// Sampling and stopping.
    pub sampling: SamplingFields,
}

impl CompletionRequest {
    /// Reads and checks a request body.
    pub fn from_json(body: &[u8]) -> Result<Self, OpenAiError> {
        let mut f = Fields::parse(body)?;
        let model = read_model(&mut f)?;
        let prompts = match f.raw("prompt") {
            Some(v) => read_prompts(v, "prompt")?,
            None => return Err(OpenAiError::invalid("prompt", "'prompt' is required")),
        };
        let n = read_n(&mut f)?;
        let max_tokens =
            read_max_tokens(&mut f, "max_tokens")?.unwrap_or(DEFAULT_COMPLETION_MAX_TOKENS);
        let echo = f.get::<bool>("echo")?.unwrap_or(false);
        let logprobs = f
            .get::<i64>("logprobs")?
            .map(|v| check_count("logprobs", v, 0, MAX_COMPLETION_LOGPROBS))
            .transpose()?;
        if echo && logprobs.is_some() {
            return Err(OpenAiError::invalid(
                "echo",
                "'echo' together with 'logprobs' is not supported (prompt log-probabilities are not computed)",
            ));
        }
        let stream = StreamFields::read(&mut f)?;
        let add_special_tokens = f.get::<bool>("add_special_tokens")?.unwrap_or(true);
        let sampling = SamplingFields::read(&mut f)?;
        f.finish(&all_rules(GENERATION_RULES, COMPLETION_RULES))?;
        Ok(CompletionRequest {
            model,
            prompts,
            n,
            max_tokens,
            echo,
            logprobs,
            stream,
            add_special_tokens,
            sampling,
        })
    }
}

/// The roles a chat message may have.
pub const CHAT_ROLES: &[&str] = &[
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

/// Checks one message and joins its text content parts (with `\n`, as
/// vLLM does for string-content templates); other fields pass as they are.
fn normalize_message(i: usize, v: Value) -> Result<Value, OpenAiError> {
    let bad = |msg: String| OpenAiError::invalid("messages", format!("messages[{i}]: {msg}"));
    let Value::Object(mut m) = v else {
        return Err(bad("a message must be an object".into()));
    };
    let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
    if !CHAT_ROLES.contains(&role) {
        return Err(bad(format!(
            "'role' must be one of {}",
            CHAT_ROLES.join(", ")
        )));
    }
    let is_assistant = role == "assistant";
    match m.remove("content") {
        None | Some(Value::Null) if is_assistant => {
            m.insert("content".into(), Value::Null);
        }
        None | Some(Value::Null) => return Err(bad("'content' is required".into())),
        Some(Value::String(s)) => {
            m.insert("content".into(), Value::String(s));
        }
        Some(Value::Array(parts)) => {
            let mut texts = Vec::with_capacity(parts.len());
            for (j, p) in parts.iter().enumerate() {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => match p.get("text").and_then(Value::as_str) {
                        Some(t) => texts.push(t),
                        None => return Err(bad(format!("content[{j}]: a text part needs 'text'"))),
                    },
                    Some(other) => {
                        return Err(bad(format!(
                            "content[{j}]: content parts of type '{other}' are not supported (text only)"
                        )))
                    }
                    None => return Err(bad(format!("content[{j}]: a content part needs 'type'"))),
                }
            }
            m.insert("content".into(), Value::String(texts.join("\n")));
        }
        Some(other) => {
            return Err(bad(format!(
                "'content' must be a string or a list of content parts, got {other}"
            )))
        }
    }
    Ok(Value::Object(m))
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// `model`.
    pub model: String,
    /// `messages`, checked, with text parts joined.
    pub messages: Vec<Value>,
    /// `n`.
    pub n: usize,
    /// `max_completion_tokens` or `max_tokens` (`None`: up to the context length).
    pub max_tokens: Option<usize>,
    /// Alternatives per token when `logprobs` is true (`top_logprobs`, default 0).
    pub logprobs: Option<usize>,
    /// `stream` and `stream_options`.
    pub stream: StreamFields,
    /// `add_special_tokens` (vLLM; default false: the template adds them).
    pub add_special_tokens: bool,
    /// Template options: `add_generation_prompt` (default true),
    /// `continue_final_message`, `tools`, `chat_template_kwargs` (+
    /// `documents`), `chat_template`.
    pub template: ChatTemplateOptions,
    /// Sampling and stopping.
    pub sampling: SamplingFields,
}

impl ChatRequest {
    /// Reads and checks a request body.
    pub fn from_json(body: &[u8]) -> Result<Self, OpenAiError> {
        let mut f = Fields::parse(body)?;
        let model = read_model(&mut f)?;
        let messages = match f.raw("messages") {
            Some(Value::Array(a)) if !a.is_empty() => a
                .into_iter()
                .enumerate()
                .map(|(i, m)| normalize_message(i, m))
                .collect::<Result<Vec<_>, _>>()?,
            Some(Value::Array(_)) => {
                return Err(OpenAiError::invalid(
                    "messages",
                    "'messages' must not be empty",
                ))
            }
            Some(_) => {
                return Err(OpenAiError::invalid(
                    "messages",
                    "'messages' must be a list",
                ))
            }
            None => return Err(OpenAiError::invalid("messages", "'messages' is required")),
        };
        let n = read_n(&mut f)?;
        let max_completion = read_max_tokens(&mut f, "max_completion_tokens")?;
        let max_tokens = read_max_tokens(&mut f, "max_tokens")?;
        let want_logprobs = f.get::<bool>("logprobs")?.unwrap_or(false);
        let top = f
            .get::<i64>("top_logprobs")?
            .map(|v| check_count("top_logprobs", v, 0, MAX_TOP_LOGPROBS))
            .transpose()?;
        if top.is_some_and(|t| t > 0) && !want_logprobs {
            return Err(OpenAiError::invalid(
                "top_logprobs",
                "when using 'top_logprobs', 'logprobs' must be set to true",
            ));
        }
        let stream = StreamFields::read(&mut f)?;
        let add_special_tokens = f.get::<bool>("add_special_tokens")?.unwrap_or(false);
        let add_generation_prompt = f.get::<bool>("add_generation_prompt")?.unwrap_or(true);
        let continue_final_message = f.get::<bool>("continue_final_message")?.unwrap_or(false);
        if add_generation_prompt && continue_final_message {
            return Err(OpenAiError::invalid(
                "continue_final_message",
                "cannot set both 'continue_final_message' and 'add_generation_prompt' to true",
            ));
        }
        if continue_final_message
            && messages
                .last()
                .and_then(|m| m.get("role"))
                .and_then(Value::as_str)
                != Some("assistant")
        {
            return Err(OpenAiError::invalid(
                "continue_final_message",
                "'continue_final_message' needs an assistant message last",
            ));
        }
        let tools = match f.raw("tools") {
            None => None,
            Some(Value::Array(a)) => Some(Value::Array(a)),
            Some(_) => return Err(OpenAiError::invalid("tools", "'tools' must be a list")),
        };
        match f.raw("tool_choice") {
            None => {}
            Some(v) if tool_choice_none(&v) => {}
            Some(v) if v.as_str() == Some("auto") && tools.is_none() => {}
            Some(v) => {
                return Err(OpenAiError::invalid(
                    "tool_choice",
                    format!(
                    "'tool_choice' = {v} needs tool-call parsing, which this server does not do; \
                         use \"none\" (the tools are still given to the chat template)"
                ),
                ))
            }
        }
        let mut extra = f
            .get::<Map<String, Value>>("chat_template_kwargs")?
            .unwrap_or_default();
        if let Some(docs) = f.raw("documents") {
            extra.insert("documents".into(), docs);
        }
        let template = f.get::<String>("chat_template")?;
        let sampling = SamplingFields::read(&mut f)?;
        f.finish(&all_rules(GENERATION_RULES, CHAT_RULES))?;
        Ok(ChatRequest {
            model,
            messages,
            n,
            max_tokens: max_completion.or(max_tokens),
            logprobs: want_logprobs.then_some(top.unwrap_or(0)),
            stream,
            add_special_tokens,
            template: ChatTemplateOptions {
                add_generation_prompt,
                continue_final_message,
                tools,
                extra,
                template,
            },
            sampling,
        })
    }
}

/// `encoding_format` of an embedding request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodingFormat {
    /// A JSON list of numbers.
    Float,
    /// Base64 of the little-endian `f32` bytes.
    Base64,
}

/// `POST /v1/embeddings`.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingRequest {
    /// `model`.
    pub model: String,
    /// `input`, one entry per vector.
    pub inputs: Vec<EmbedInput>,
    /// `encoding_format` (default float).
    pub encoding: EncodingFormat,
    /// `dimensions`, when given (must equal the model's).
    pub dimensions: Option<usize>,
}

impl EmbeddingRequest {
    /// Reads and checks a request body.
    pub fn from_json(body: &[u8]) -> Result<Self, OpenAiError> {
        let mut f = Fields::parse(body)?;
        let model = read_model(&mut f)?;
        let inputs = match f.raw("input") {
            Some(v) => read_prompts(v, "input")?,
            None => return Err(OpenAiError::invalid("input", "'input' is required")),
        };
        let inputs = inputs
            .into_iter()
            .map(|p| match p {
                PromptInput::Text(s) if s.is_empty() => Err(OpenAiError::invalid(
                    "input",
                    "'input' must not hold empty strings",
                )),
                PromptInput::Text(s) => Ok(EmbedInput::Text(s)),
                PromptInput::Tokens(t) => Ok(EmbedInput::Tokens(t)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let encoding = match f.get::<String>("encoding_format")?.as_deref() {
            None | Some("float") => EncodingFormat::Float,
            Some("base64") => EncodingFormat::Base64,
            Some(other) => {
                return Err(OpenAiError::invalid(
                    "encoding_format",
                    format!("'encoding_format' must be 'float' or 'base64', got '{other}'"),
                ))
            }
        };
        let dimensions = f
            .get::<i64>("dimensions")?
            .map(|v| check_count("dimensions", v, 1, i64::MAX))
            .transpose()?;
        f.finish(EMBEDDING_RULES)?;
        Ok(EmbeddingRequest {
            model,
            inputs,
            encoding,
            dimensions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn completion(v: Value) -> Result<CompletionRequest, OpenAiError> {
        CompletionRequest::from_json(v.to_string().as_bytes())
    }

    fn chat(v: Value) -> Result<ChatRequest, OpenAiError> {
        ChatRequest::from_json(v.to_string().as_bytes())
    }

    #[test]
    fn prompt_forms() {
        let p =
            |prompt: Value| completion(json!({"model": "m", "prompt": prompt})).map(|r| r.prompts);
        assert_eq!(p(json!("a")).unwrap(), vec![PromptInput::Text("a".into())]);
        assert_eq!(
            p(json!(["a", "b"])).unwrap(),
            vec![PromptInput::Text("a".into()), PromptInput::Text("b".into())]
        );
        assert_eq!(
            p(json!([1, 2])).unwrap(),
            vec![PromptInput::Tokens(vec![1, 2])]
        );
        assert_eq!(
            p(json!([[1], [2, 3]])).unwrap(),
            vec![
                PromptInput::Tokens(vec![1]),
                PromptInput::Tokens(vec![2, 3])
            ]
        );
        for bad in [
            json!([]),
            json!([[]]),
            json!([-1]),
            json!([1, [2]]),
            json!(["a", 1]),
            json!(5),
            json!([4294967296u64]),
        ] {
            assert_eq!(
                p(bad.clone()).unwrap_err().param.as_deref(),
                Some("prompt"),
                "{bad}"
            );
        }
    }

    #[test]
    fn completion_defaults() {
        let r = completion(json!({"model": "m", "prompt": "x"})).unwrap();
        assert_eq!(r.max_tokens, DEFAULT_COMPLETION_MAX_TOKENS);
        assert_eq!(
            (r.n, r.echo, r.logprobs, r.add_special_tokens),
            (1, false, None, true)
        );
        assert!(!r.stream.stream && !r.stream.include_usage);
        let p = r
            .sampling
            .to_params(&SamplingDefaults::default(), 10, None, 16, 3)
            .unwrap();
        assert_eq!(p.temperature, 1.0);
        assert_eq!(p.top_p, 1.0);
        assert_eq!(p.seed, None);
        assert!(p.skip_special_tokens);
        let r = completion(json!({"model": "m", "prompt": "x", "seed": -2, "suffix": ""})).unwrap();
        assert_eq!(
            r.sampling
                .to_params(&SamplingDefaults::default(), 10, None, 16, 3)
                .unwrap()
                .seed,
            Some(1)
        );
    }

    #[test]
    fn model_defaults_fill_only_absent_fields() {
        let defaults = SamplingDefaults {
            temperature: Some(0.6),
            top_p: Some(0.9),
            top_k: Some(20),
            min_p: None,
            repetition_penalty: Some(1.1),
        };
        let r = completion(json!({"model": "m", "prompt": "x"})).unwrap();
        let p = r.sampling.to_params(&defaults, 10, None, 16, 0).unwrap();
        assert_eq!((p.temperature, p.top_p, p.top_k), (0.6, 0.9, 20));
        assert_eq!((p.min_p, p.repetition_penalty), (0.0, 1.1));
        let r = completion(
            json!({"model": "m", "prompt": "x", "temperature": 0, "top_k": -1,
                                  "repetition_penalty": 1.0}),
        )
        .unwrap();
        let p = r.sampling.to_params(&defaults, 10, None, 16, 0).unwrap();
        assert_eq!((p.temperature, p.top_p, p.top_k), (0.0, 0.9, 0));
        assert_eq!(p.repetition_penalty, 1.0);
    }

    #[test]
    fn stream_options() {
        let r = completion(json!({"model": "m", "prompt": "x", "stream": true,
            "stream_options": {"include_usage": true, "continuous_usage_stats": false}}))
        .unwrap();
        assert!(r.stream.include_usage);
        let e = completion(json!({"model": "m", "prompt": "x", "stream": true,
            "stream_options": {"continuous_usage_stats": true}}))
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("stream_options"));
    }

    #[test]
    fn chat_messages_and_options() {
        let r = chat(json!({"model": "m", "messages": [
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], "name": "x"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "1"}]}],
            "tool_choice": "auto", "max_tokens": 5, "max_completion_tokens": 7,
            "logprobs": true, "documents": [{"t": 1}]}))
        .unwrap();
        assert_eq!(
            r.messages[0],
            json!({"role": "user", "content": "a\nb", "name": "x"})
        );
        assert_eq!(
            r.messages[1],
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": "1"}]})
        );
        assert_eq!(r.max_tokens, Some(7));
        assert_eq!(r.logprobs, Some(0));
        assert!(r.template.add_generation_prompt);
        assert_eq!(r.template.extra.get("documents"), Some(&json!([{"t": 1}])));
        assert!(!r.add_special_tokens);
        let e = chat(json!({"model": "m", "messages": [{"role": "user"}]})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages"));
        let e = chat(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "echo": true}),
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("echo"));
    }

    #[test]
    fn embeddings() {
        let r = EmbeddingRequest::from_json(
            json!({"model": "m", "input": [[1, 2]], "encoding_format": "base64", "user": "u"})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(r.inputs, vec![EmbedInput::Tokens(vec![1, 2])]);
        assert_eq!(r.encoding, EncodingFormat::Base64);
        let e = EmbeddingRequest::from_json(br#"{"model": "m", "input": "x", "normalize": false}"#)
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("normalize"));
    }
}

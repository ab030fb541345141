//! Responses of the OpenAI API: completions, chat completions, their
//! streaming chunks, embeddings, the model list, and usage.

use ferroserve_core::generate::{StopReason, Usage as CoreUsage};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::logprobs::{ChatLogprobs, CompletionLogprobs};

/// Token counts as OpenAI reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt(s).
    pub prompt_tokens: usize,
    /// Tokens generated over every choice.
    pub completion_tokens: usize,
    /// Their sum.
    pub total_tokens: usize,
    /// Prompt tokens served from the prefix cache, when any were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    /// Prompt tokens whose computation was reused.
    pub cached_tokens: usize,
}

impl Usage {
    /// Usage from counts (details only when some tokens were cached).
    pub fn new(prompt_tokens: usize, completion_tokens: usize, cached_tokens: usize) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            prompt_tokens_details: (cached_tokens > 0)
                .then_some(PromptTokensDetails { cached_tokens }),
        }
    }
}

/// Adds up the usage of a request's generations: `prompt_lens` holds the
/// length of each prompt (counted once however many choices it has) and
/// `done` the core usage of each finished generation with its prompt's index.
pub fn total_usage(prompt_lens: &[usize], done: &[(usize, CoreUsage)]) -> Usage {
    let prompt: usize = prompt_lens.iter().sum();
    let completion: usize = done.iter().map(|(_, u)| u.completion_tokens).sum();
    let mut cached = vec![0usize; prompt_lens.len()];
    for (p, u) in done {
        if let Some(c) = cached.get_mut(*p) {
            *c = (*c).max(u.cached_tokens);
        }
    }
    Usage::new(prompt, completion, cached.iter().sum())
}

/// vLLM's `stop_reason`: the stop string, or the token id, that ended a choice.
pub fn stop_reason_value(r: &Option<StopReason>) -> Option<Value> {
    match r {
        Some(StopReason::String(s)) => Some(Value::String(s.clone())),
        Some(StopReason::Token(t)) => Some(Value::from(*t)),
        None => None,
    }
}

/// One choice of a completion (also the shape of a streamed chunk's choice).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionChoice {
    /// Choice index (`prompt index * n + i`).
    pub index: usize,
    /// Generated text (with the prompt first when `echo`).
    pub text: String,
    /// Log-probabilities, when asked for.
    pub logprobs: Option<CompletionLogprobs>,
    /// `stop` or `length`; null in chunks before the last.
    pub finish_reason: Option<String>,
    /// The stop string or token id that ended the choice (vLLM), when any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<Value>,
}

/// `POST /v1/completions` answer, and its streamed chunks (same shape,
/// `usage` only where stated).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionResponse {
    /// `cmpl-…`.
    pub id: String,
    /// Always `text_completion`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model name as requested.
    pub model: String,
    /// Choices.
    pub choices: Vec<CompletionChoice>,
    /// Usage: always on a full answer; in a stream only when
    /// `include_usage` (null on every chunk but the last).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<Usage>>,
    /// Not reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
}

/// The assistant message of a chat choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Always `assistant`.
    pub role: String,
    /// The generated text.
    pub content: Option<String>,
}

/// One choice of a chat completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatChoice {
    /// Choice index.
    pub index: usize,
    /// The answer.
    pub message: ChatMessage,
    /// Log-probabilities, when asked for.
    pub logprobs: Option<ChatLogprobs>,
    /// `stop` or `length`.
    pub finish_reason: Option<String>,
    /// The stop string or token id that ended the choice (vLLM), when any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<Value>,
}

/// `POST /v1/chat/completions` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// `chatcmpl-…`.
    pub id: String,
    /// Always `chat.completion`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model name as requested.
    pub model: String,
    /// Choices.
    pub choices: Vec<ChatChoice>,
    /// Token counts.
    pub usage: Usage,
    /// Not reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
}

/// The `delta` of a streamed chat choice.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChatDelta {
    /// `assistant` on each choice's first chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// New text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// One choice of a streamed chat chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatChunkChoice {
    /// Choice index.
    pub index: usize,
    /// What is new.
    pub delta: ChatDelta,
    /// Log-probabilities of this chunk's tokens, when asked for.
    pub logprobs: Option<ChatLogprobs>,
    /// Set on the choice's last chunk.
    pub finish_reason: Option<String>,
    /// The stop string or token id that ended the choice (vLLM), when any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<Value>,
}

/// A streamed chat chunk (`chat.completion.chunk`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatChunk {
    /// `chatcmpl-…`, the same on every chunk.
    pub id: String,
    /// Always `chat.completion.chunk`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model name as requested.
    pub model: String,
    /// Choices with something new (empty on the usage chunk).
    pub choices: Vec<ChatChunkChoice>,
    /// With `include_usage`: null on every chunk but the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<Usage>>,
    /// Not reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
}

/// One vector of an embedding answer: numbers, or base64 of little-endian `f32`s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingVector {
    /// `encoding_format: float`.
    Float(Vec<f32>),
    /// `encoding_format: base64`.
    Base64(String),
}

/// One entry of an embedding answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingData {
    /// Always `embedding`.
    pub object: String,
    /// Input index.
    pub index: usize,
    /// The vector.
    pub embedding: EmbeddingVector,
}

/// `usage` of an embedding answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddingUsage {
    /// Tokens consumed.
    pub prompt_tokens: usize,
    /// The same.
    pub total_tokens: usize,
}

/// `POST /v1/embeddings` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingResponse {
    /// Always `list`.
    pub object: String,
    /// One entry per input.
    pub data: Vec<EmbeddingData>,
    /// The model name as requested.
    pub model: String,
    /// Token counts.
    pub usage: EmbeddingUsage,
}

impl EmbeddingResponse {
    /// The answer for `vectors`, encoded as asked.
    pub fn new(model: String, vectors: Vec<Vec<f32>>, base64: bool, prompt_tokens: usize) -> Self {
        let data = vectors
            .into_iter()
            .enumerate()
            .map(|(index, v)| EmbeddingData {
                object: "embedding".into(),
                index,
                embedding: if base64 {
                    EmbeddingVector::Base64(base64_f32_le(&v))
                } else {
                    EmbeddingVector::Float(v)
                },
            })
            .collect();
        EmbeddingResponse {
            object: "list".into(),
            data,
            model,
            usage: EmbeddingUsage {
                prompt_tokens,
                total_tokens: prompt_tokens,
            },
        }
    }
}

/// One model of `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    /// The model name.
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// Always `ferroserve`.
    pub owned_by: String,
    /// Longest prompt plus completion, for generators (vLLM reports it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_model_len: Option<usize>,
}

/// `GET /v1/models` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    /// The models.
    pub data: Vec<ModelCard>,
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 (with padding) of `bytes`.
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sym = |shift: u32| char::from(B64[((n >> shift) & 63) as usize]);
        out.push(sym(18));
        out.push(sym(12));
        out.push(if chunk.len() > 1 { sym(6) } else { '=' });
        out.push(if chunk.len() > 2 { sym(0) } else { '=' });
    }
    out
}

/// Base64 of the little-endian bytes of `v` (OpenAI's `encoding_format: base64`).
pub fn base64_f32_le(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64_encode(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(plain.as_bytes()), enc);
        }
        // 1.0f32 is 00 00 80 3f little-endian.
        assert_eq!(base64_f32_le(&[1.0]), "AACAPw==");
    }

    #[test]
    fn usage_counts_prompts_once() {
        let u = |c, k| CoreUsage {
            prompt_tokens: 3,
            completion_tokens: c,
            cached_tokens: k,
        };
        let t = total_usage(&[3, 5], &[(0, u(2, 0)), (0, u(4, 2)), (1, u(1, 1))]);
        assert_eq!(t.prompt_tokens, 8);
        assert_eq!(t.completion_tokens, 7);
        assert_eq!(t.total_tokens, 15);
        assert_eq!(t.prompt_tokens_details.unwrap().cached_tokens, 3);
        let none = total_usage(&[3], &[(0, u(1, 0))]);
        let json = serde_json::to_value(none).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4})
        );
    }
}

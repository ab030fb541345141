//! The OpenAI API (completions, chat completions, embeddings, models) as
//! KServe's HuggingFace server and vLLM speak it: request parsing with
//! OpenAI's ranges and errors that name the parameter at fault, and the
//! response and streaming-chunk shapes.

mod error;
mod fields;
mod logprobs;
mod request;
mod response;

pub use error::{ErrorDetail, ErrorResponse, OpenAiError};
pub use logprobs::{
    finite_logprob, ChatLogprobs, ChatTokenLogprob, ChatTopLogprob, CompletionLogprobs, TopLogprobs,
};
pub use request::{
    ChatRequest, CompletionRequest, EmbeddingRequest, EncodingFormat, PromptInput, SamplingFields,
    StreamFields, CHAT_ROLES, DEFAULT_COMPLETION_MAX_TOKENS, MAX_COMPLETION_LOGPROBS, MAX_N,
    MAX_STOP, MAX_TOP_LOGPROBS,
};
pub use response::{
    base64_encode, base64_f32_le, stop_reason_value, total_usage, ChatChoice, ChatChunk,
    ChatChunkChoice, ChatDelta, ChatMessage, ChatResponse, CompletionChoice, CompletionResponse,
    EmbeddingData, EmbeddingResponse, EmbeddingUsage, EmbeddingVector, ModelCard, ModelList,
    PromptTokensDetails, Usage,
};

/// Unix seconds now (OpenAI's `created`).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A fresh id: `prefix` followed by 32 random hex digits.
pub fn random_id(prefix: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let half = |salt: u64| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(n);
        h.write_u128(nanos);
        h.write_u64(salt);
        h.finish()
    };
    format!("{prefix}{:016x}{:016x}", half(1), half(2))
}

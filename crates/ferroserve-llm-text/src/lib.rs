//! Text side of ferroserve language models: tokenizers (HuggingFace
//! `tokenizer.json` and GGUF-embedded vocabularies tokenised as llama.cpp
//! does), incremental detokenisation, stop strings, chat templates rendered
//! as transformers renders them, and sampling. No model math.

mod bytes;
pub mod chat_template;
pub mod detokenize;
mod error;
pub mod generation_defaults;
mod gguf_vocab;
mod pyjson;
pub mod sampling;
pub mod stop;
mod strftime;
pub mod tokenizer;

pub use chat_template::{special_token_vars, ChatTemplate};
pub use detokenize::IncrementalDecoder;
pub use error::TextError;
pub use generation_defaults::GenerationDefaults;
pub use sampling::{Sampled, Sampler};
pub use stop::StopMatcher;
pub use tokenizer::TextTokenizer;

#[cfg(test)]
mod thread_safety {
    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn shared_types_are_send_and_sync() {
        send_sync::<crate::TextTokenizer>();
        send_sync::<crate::ChatTemplate>();
        send_sync::<crate::Sampler>();
        send_sync::<crate::IncrementalDecoder>();
        send_sync::<crate::StopMatcher>();
    }
}

//! Language-model runtime of ferroserve: decoder-only transformers (Llama,
//! Mistral, Qwen2/3, Phi-3, Gemma 2/3) from HuggingFace safetensors folders
//! or GGUF files, run with candle by a continuous-batching engine.

pub mod engine;
pub mod generator;
pub mod model;
pub mod options;
pub mod runtime;

pub use generator::LlmModel;
pub use runtime::LlmRuntime;

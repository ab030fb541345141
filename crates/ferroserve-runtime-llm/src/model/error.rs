//! Errors of the decoder model: loading and running.

use std::path::PathBuf;

/// Names of the architectures [`super::DecoderModel`] runs (HF `model_type` / GGUF `general.architecture`).
pub const SUPPORTED_ARCHITECTURES: &[&str] = &[
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "phi3",
    "gemma2",
    "gemma3",
    "gemma3_text",
];

/// What can go wrong loading or running a decoder model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A tensor operation failed in candle.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// A model file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A JSON file (config.json, the safetensors index) is not valid JSON.
    #[error("cannot parse {path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// The weights lack a tensor the architecture needs.
    #[error("missing tensor `{0}`")]
    MissingTensor(String),
    /// A tensor has a shape the configuration does not allow.
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    BadTensorShape {
        /// The tensor.
        name: String,
        /// Its shape.
        found: Vec<usize>,
        /// The shape the configuration implies.
        expected: Vec<usize>,
    },
    /// The model's architecture is not one this runtime implements.
    #[error("unsupported architecture `{found}` (supported: {})", SUPPORTED_ARCHITECTURES.join(", "))]
    UnsupportedArchitecture {
        /// The architecture named by the model.
        found: String,
    },
    /// A configuration field (config.json or GGUF metadata) is missing or invalid.
    #[error("bad config field `{field}`: {reason}")]
    BadConfig {
        /// The field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A GGUF file's header is inconsistent (lengths past the end of the
    /// file, overflowing sizes, unknown types…).
    #[error("not a valid GGUF file: {0}")]
    BadGguf(String),
    /// A forward call's input is invalid (empty token list, token id out of range…).
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

impl ModelError {
    /// A [`ModelError::BadConfig`] for `field`.
    pub(crate) fn bad_config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ModelError::BadConfig {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

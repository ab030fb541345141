//! The error type of the HuggingFace encoder runtime.

use std::path::PathBuf;

/// What went wrong loading or running an encoder model.
#[derive(Debug, thiserror::Error)]
pub enum HfError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSON file is malformed.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// The model folder or its configuration is not one this runtime serves.
    #[error("{0}")]
    Config(String),
    /// A weight is missing or has the wrong shape.
    #[error("weight '{name}': {msg}")]
    Weight {
        /// Tensor name in the safetensors file.
        name: String,
        /// What is wrong with it.
        msg: String,
    },
    /// The tokenizer failed to load or to encode.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The request does not fit the model.
    #[error("{0}")]
    InvalidInput(String),
    /// A tensor operation failed.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

impl HfError {
    /// Shorthand for an [`HfError::Config`].
    pub fn config(msg: impl Into<String>) -> Self {
        HfError::Config(msg.into())
    }

    /// Shorthand for an [`HfError::InvalidInput`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        HfError::InvalidInput(msg.into())
    }

    /// This error as a load failure of the serving core.
    pub fn into_load(self) -> ferroserve_core::Error {
        ferroserve_core::Error::Load(self.to_string())
    }
}

impl From<HfError> for ferroserve_core::Error {
    /// Errors met while serving a request: bad input is the client's fault,
    /// anything else is internal.
    fn from(e: HfError) -> Self {
        match e {
            HfError::InvalidInput(m) => ferroserve_core::Error::InvalidArgument(m),
            other => ferroserve_core::Error::Internal(other.to_string()),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = HfError> = std::result::Result<T, E>;

/// Reads and parses a JSON file.
pub(crate) fn read_json(path: &std::path::Path) -> Result<serde_json::Value> {
    let text = std::fs::read(path).map_err(|source| HfError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&text).map_err(|source| HfError::Json {
        path: path.to_path_buf(),
        source,
    })
}

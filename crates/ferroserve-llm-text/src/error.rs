//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in the text side of a language model.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A JSON file could not be parsed.
    #[error("parsing {path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// The tokenizer could not be built or failed on an input.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// GGUF tokenizer metadata is missing or malformed.
    #[error("GGUF tokenizer metadata: {0}")]
    Gguf(String),
    /// The model has no chat template.
    #[error("the model has no chat template")]
    NoChatTemplate,
    /// The chat template failed to compile or render (including its own `raise_exception`).
    #[error("chat template: {0}")]
    Template(String),
    /// A configuration file holds an unusable value.
    #[error("config: {0}")]
    Config(String),
}

impl From<TextError> for ferroserve_core::Error {
    fn from(e: TextError) -> Self {
        match e {
            TextError::Template(_) | TextError::NoChatTemplate => {
                ferroserve_core::Error::InvalidArgument(e.to_string())
            }
            TextError::Tokenizer(_) => ferroserve_core::Error::InvalidArgument(e.to_string()),
            _ => ferroserve_core::Error::Load(e.to_string()),
        }
    }
}

/// Reads a file to a string, naming the file in the error.
pub(crate) fn read_to_string(path: &std::path::Path) -> Result<String, TextError> {
    std::fs::read_to_string(path).map_err(|source| TextError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads and parses a JSON file; `Ok(None)` when it does not exist.
pub(crate) fn read_json_opt(
    path: &std::path::Path,
) -> Result<Option<serde_json::Value>, TextError> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = read_to_string(path)?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|source| TextError::Json {
            path: path.to_path_buf(),
            source,
        })
}

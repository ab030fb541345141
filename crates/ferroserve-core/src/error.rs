//! The error type of the serving core. Each protocol maps its variants onto
//! status codes in exactly one place.

use crate::datatype::UnknownDataType;
use crate::tensor::TensorError;

/// What went wrong while serving a request or managing models.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// No model (or version) of that name is known.
    #[error("{0}")]
    NotFound(String),
    /// The model exists but is not ready (loading, unloading, failed).
    #[error("{0}")]
    Unavailable(String),
    /// The request is malformed or does not fit the model.
    #[error("{0}")]
    InvalidArgument(String),
    /// The request asks for something this server does not implement.
    #[error("{0}")]
    Unimplemented(String),
    /// The request body exceeds a configured limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A limit on queued or concurrent work was hit.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The request waited longer than allowed.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// A model failed to load.
    #[error("{0}")]
    Load(String),
    /// The runtime failed while executing a model.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// Shorthand for an [`Error::InvalidArgument`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }

    /// Shorthand for an [`Error::Internal`].
    pub fn internal(msg: impl Into<String>) -> Self {
        Error::Internal(msg.into())
    }

    /// The error for an unknown model or version.
    pub fn model_not_found(name: &str, version: Option<&str>) -> Self {
        match version {
            Some(v) => Error::NotFound(format!("model '{name}' version '{v}' not found")),
            None => Error::NotFound(format!("model '{name}' not found")),
        }
    }
}

impl From<TensorError> for Error {
    fn from(e: TensorError) -> Self {
        Error::InvalidArgument(e.to_string())
    }
}

impl From<UnknownDataType> for Error {
    fn from(e: UnknownDataType) -> Self {
        Error::InvalidArgument(e.to_string())
    }
}

/// Result alias for the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

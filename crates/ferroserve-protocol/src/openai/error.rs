//! OpenAI's error body, `{"error": {"message", "type", "param", "code"}}`,
//! and the mapping of core errors onto it.

use ferroserve_core::Error;
use serde::{Deserialize, Serialize};

/// An error answered in OpenAI's shape, with its HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct OpenAiError {
    /// HTTP status code.
    pub status: u16,
    /// OpenAI's `type` (`invalid_request_error`, `server_error`, …).
    pub kind: &'static str,
    /// Human-readable message.
    pub message: String,
    /// The request parameter at fault, if any.
    pub param: Option<String>,
    /// A machine-readable code (`model_not_found`, …), if any.
    pub code: Option<&'static str>,
}

impl OpenAiError {
    /// A 400 `invalid_request_error` naming the parameter at fault.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        OpenAiError {
            status: 400,
            kind: "invalid_request_error",
            message: message.into(),
            param: Some(param.into()),
            code: None,
        }
    }

    /// A 400 `invalid_request_error` about the request as a whole.
    pub fn bad_request(message: impl Into<String>) -> Self {
        OpenAiError {
            status: 400,
            kind: "invalid_request_error",
            message: message.into(),
            param: None,
            code: None,
        }
    }

    /// The 404 for a model that is not served (or cannot do what is asked).
    pub fn model_not_found(message: impl Into<String>) -> Self {
        OpenAiError {
            status: 404,
            kind: "invalid_request_error",
            message: message.into(),
            param: Some("model".into()),
            code: Some("model_not_found"),
        }
    }

    /// The same error with a `code`.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// A core error in OpenAI's shape: `InvalidArgument` → 400,
    /// `NotFound` → 404, `ResourceExhausted` → 429, `Unavailable` → 503,
    /// `PayloadTooLarge` → 413, `Unimplemented` → 501, `DeadlineExceeded`
    /// → 504, anything else → 500.
    pub fn from_core(e: &Error) -> Self {
        let (status, kind, code) = match e {
            Error::InvalidArgument(_) => (400, "invalid_request_error", None),
            Error::NotFound(_) => (404, "invalid_request_error", Some("model_not_found")),
            Error::ResourceExhausted(_) => (429, "rate_limit_error", Some("rate_limit_exceeded")),
            Error::Unavailable(_) => (503, "server_error", Some("service_unavailable")),
            Error::PayloadTooLarge(_) => (413, "invalid_request_error", None),
            Error::Unimplemented(_) => (501, "invalid_request_error", Some("unsupported")),
            Error::DeadlineExceeded(_) => (504, "server_error", Some("timeout")),
            Error::Load(_) | Error::Internal(_) => (500, "server_error", None),
        };
        OpenAiError {
            status,
            kind,
            message: e.to_string(),
            param: None,
            code,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorResponse {
        ErrorResponse {
            error: ErrorDetail {
                message: self.message.clone(),
                kind: self.kind.to_string(),
                param: self.param.clone(),
                code: self.code.map(str::to_string),
            },
        }
    }
}

impl From<Error> for OpenAiError {
    fn from(e: Error) -> Self {
        OpenAiError::from_core(&e)
    }
}

/// `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// The error.
    pub error: ErrorDetail,
}

/// The fields of an OpenAI error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Human-readable message.
    pub message: String,
    /// Error type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Parameter at fault, or null.
    pub param: Option<String>,
    /// Machine-readable code, or null.
    pub code: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_errors_map_to_statuses() {
        let s = |e: Error| OpenAiError::from_core(&e).status;
        assert_eq!(s(Error::invalid("x")), 400);
        assert_eq!(s(Error::NotFound("x".into())), 404);
        assert_eq!(s(Error::ResourceExhausted("x".into())), 429);
        assert_eq!(s(Error::Unavailable("x".into())), 503);
        assert_eq!(s(Error::internal("x")), 500);
        let body = serde_json::to_value(OpenAiError::invalid("n", "bad n").body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": {"message": "bad n", "type": "invalid_request_error",
                "param": "n", "code": null}})
        );
    }
}

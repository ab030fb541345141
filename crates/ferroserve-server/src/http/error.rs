//! The one place core errors become HTTP status codes. v1 and v2 REST both
//! answer errors as `{"error": "<message>"}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ferroserve_core::Error;

/// An error answered over HTTP.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

/// HTTP status for a core error.
pub fn status_of(e: &Error) -> StatusCode {
    match e {
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::InvalidArgument(_) => StatusCode::BAD_REQUEST,
        Error::Unimplemented(_) => StatusCode::NOT_IMPLEMENTED,
        Error::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        Error::ResourceExhausted(_) => StatusCode::TOO_MANY_REQUESTS,
        Error::DeadlineExceeded(_) => StatusCode::GATEWAY_TIMEOUT,
        Error::Load(_) => StatusCode::BAD_REQUEST,
        Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.0.to_string() });
        (status_of(&self.0), axum::Json(body)).into_response()
    }
}

/// Result type of HTTP handlers.
pub type ApiResult<T> = Result<T, ApiError>;

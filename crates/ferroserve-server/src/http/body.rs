//! Reading request bodies under the configured size limit, answering
//! oversize bodies with 413 in the protocol's error shape.

use axum::body::Body;
use axum::http::HeaderMap;
use bytes::Bytes;
use ferroserve_core::Error;

/// Reads the whole body, refusing more than `limit` bytes (checked against
/// `Content-Length` first, then while streaming), in a `receive` span.
pub async fn read_limited(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Error> {
    use tracing::Instrument;
    read_body(headers, body, limit)
        .instrument(ferroserve_core::stage_span!("receive"))
        .await
}

async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Error> {
    let too_large = || {
        Error::PayloadTooLarge(format!(
            "request body exceeds the limit of {limit} bytes (see --max_request_bytes)"
        ))
    };
    if let Some(len) = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit as u64 {
            return Err(too_large());
        }
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = source {
            if s.is::<http_body_util::LengthLimitError>() {
                return too_large();
            }
            source = s.source();
        }
        Error::invalid(format!("failed to read request body: {e}"))
    })
}

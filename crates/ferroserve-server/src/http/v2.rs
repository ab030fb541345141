//! Open Inference Protocol v2 REST handlers, with Triton's model
//! configuration and statistics extensions.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ferroserve_core::{executor, Error};
use ferroserve_protocol::v2;
use serde_json::json;

use super::body::read_limited;
use super::error::{ApiError, ApiResult};
use crate::documents;
use crate::state::{AppState, EXTENSIONS, SERVER_NAME, SERVER_VERSION};

/// `GET /v2/health/live`.
pub async fn live() -> impl IntoResponse {
    Json(json!({"live": true}))
}

/// `GET /v2/health/ready`: 200 when ready, 503 while starting or draining.
pub async fn ready(State(st): State<AppState>) -> Response {
    let ready = st.registry.is_ready();
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(json!({"ready": ready}))).into_response()
}

/// `GET /v2`: server metadata.
pub async fn server_metadata() -> impl IntoResponse {
    Json(json!({"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": EXTENSIONS}))
}

/// `GET /v2/models/{m}`.
pub async fn metadata(State(st): State<AppState>, Path(name): Path<String>) -> ApiResult<Response> {
    metadata_of(&st, &name, None)
}

/// `GET /v2/models/{m}/versions/{v}`.
pub async fn metadata_version(
    State(st): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Response> {
    metadata_of(&st, &name, Some(&version))
}

fn metadata_of(st: &AppState, name: &str, version: Option<&str>) -> ApiResult<Response> {
    let m = st.registry.get(name, version)?;
    let versions = st.registry.versions(name);
    Ok(Json(documents::metadata_json(&m, versions)).into_response())
}

/// `GET /v2/models/{m}/ready`.
pub async fn model_ready(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    ready_of(&st, &name, None)
}

/// `GET /v2/models/{m}/versions/{v}/ready`.
pub async fn model_ready_version(
    State(st): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Response> {
    ready_of(&st, &name, Some(&version))
}

fn ready_of(st: &AppState, name: &str, version: Option<&str>) -> ApiResult<Response> {
    st.registry.get(name, version)?;
    Ok(Json(json!({"name": name, "ready": true})).into_response())
}

/// `GET /v2/models/{m}/config`.
pub async fn config(State(st): State<AppState>, Path(name): Path<String>) -> ApiResult<Response> {
    let m = st.registry.get(&name, None)?;
    Ok(Json(documents::config_json(&m)).into_response())
}

/// `GET /v2/models/{m}/versions/{v}/config`.
pub async fn config_version(
    State(st): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Response> {
    let m = st.registry.get(&name, Some(&version))?;
    Ok(Json(documents::config_json(&m)).into_response())
}

/// `GET /v2/models/stats`: every loaded model.
pub async fn stats_all(State(st): State<AppState>) -> ApiResult<Response> {
    let all: Vec<_> = st
        .registry
        .loaded()
        .iter()
        .map(|m| documents::stats_json(m))
        .collect();
    Ok(Json(json!({"model_stats": all})).into_response())
}

/// `GET /v2/models/{m}/stats`: every loaded version of one model.
pub async fn stats(State(st): State<AppState>, Path(name): Path<String>) -> ApiResult<Response> {
    st.registry.get(&name, None)?;
    let all: Vec<_> = st
        .registry
        .loaded()
        .iter()
        .filter(|m| m.name == name)
        .map(|m| documents::stats_json(m))
        .collect();
    Ok(Json(json!({"model_stats": all})).into_response())
}

/// `GET /v2/models/{m}/versions/{v}/stats`.
pub async fn stats_version(
    State(st): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Response> {
    let m = st.registry.get(&name, Some(&version))?;
    Ok(Json(json!({"model_stats": [documents::stats_json(&m)]})).into_response())
}

/// `POST /v2/models/{m}/infer`.
pub async fn infer(
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    infer_on(st, name, None, headers, body).await
}

/// `POST /v2/models/{m}/versions/{v}/infer`.
pub async fn infer_version(
    State(st): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    infer_on(st, name, Some(version), headers, body).await
}

async fn infer_on(
    st: AppState,
    name: String,
    version: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let model = st.registry.get(&name, version.as_deref())?;
    let bytes = read_limited(&headers, body, st.max_body_bytes).await?;
    let header_len = headers
        .get(v2::HEADER_CONTENT_LENGTH)
        .map(|v| {
            v.to_str()
                .map_err(|_| Error::invalid("invalid Inference-Header-Content-Length"))
        })
        .transpose()?;
    let req = ferroserve_core::stage_span!("decode")
        .in_scope(|| v2::decode_request(&bytes, header_len))?;
    let params = req.parameters.clone();
    let resp = executor::infer(model, req).await?;
    let enc =
        ferroserve_core::stage_span!("encode").in_scope(|| v2::encode_response(&resp, &params));
    let mut out = Response::new(Body::from(enc.body));
    let h = out.headers_mut();
    match enc.json_len {
        Some(n) => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(v2::HEADER_CONTENT_LENGTH, HeaderValue::from(n));
        }
        None => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
    }
    Ok(out)
}

/// Fallback for unknown routes, in the v2 error shape.
pub async fn not_found() -> ApiError {
    ApiError(Error::NotFound("no such endpoint".into()))
}

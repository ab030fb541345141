//! The model repository extension over REST: index, load, unload.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ferroserve_core::registry::ModelState;
use ferroserve_core::Error;
use serde_json::{json, Value};

use super::body::read_limited;
use super::error::ApiResult;
use crate::state::AppState;

async fn optional_json(st: &AppState, headers: &HeaderMap, body: Body) -> Result<Value, Error> {
    let bytes = read_limited(headers, body, st.max_body_bytes).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::invalid(format!("malformed request JSON: {e}")))
}

/// `POST /v2/repository/index` (body `{"ready": bool}` optional).
pub async fn index(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let req = optional_json(&st, &headers, body).await?;
    let ready_only = req.get("ready").and_then(Value::as_bool).unwrap_or(false);
    let rows: Vec<Value> = st
        .registry
        .index(ready_only)
        .into_iter()
        .map(|e| {
            let mut row = json!({"name": e.name, "state": e.state.as_str()});
            if let Some(v) = e.version {
                row["version"] = json!(v);
            }
            if let ModelState::Unavailable(reason) = &e.state {
                row["reason"] = json!(reason);
            }
            row
        })
        .collect();
    Ok(Json(rows).into_response())
}

/// `POST /v2/repository/models/{m}/load`.
pub async fn load(
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let req = optional_json(&st, &headers, body).await?;
    if req
        .get("parameters")
        .and_then(|p| p.get("config"))
        .is_some_and(|c| !c.is_null())
    {
        return Err(Error::Unimplemented(
            "loading with an override 'config' parameter is not supported".into(),
        )
        .into());
    }
    st.registry.load(&name).await?;
    Ok(Json(json!({})).into_response())
}

/// `POST /v2/repository/models/{m}/unload`.
pub async fn unload(
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    optional_json(&st, &headers, body).await?;
    st.registry.unload(&name).await?;
    Ok(Json(json!({})).into_response())
}

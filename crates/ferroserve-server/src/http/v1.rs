//! KServe v1 REST handlers.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ferroserve_core::{executor, Error};
use ferroserve_protocol::v1;
use serde_json::json;

use super::body::read_limited;
use super::error::ApiResult;
use crate::state::AppState;

/// `GET /v1/models`: names of the ready models (KServe's `models`), and in
/// the same body OpenAI's model list (`object`, `data`: the models that
/// generate or embed text), so that clients of either protocol work.
///
/// With auth on, any authenticated caller may list; the list holds only the
/// models that caller may use (admins see every model).
pub async fn list(
    State(st): State<AppState>,
    caller: Option<axum::Extension<std::sync::Arc<crate::auth::Principal>>>,
) -> impl IntoResponse {
    let principal = caller.as_ref().map(|axum::Extension(p)| p.as_ref());
    let mut names: Vec<String> = st
        .registry
        .loaded()
        .iter()
        .filter(|m| match principal {
            Some(p) => p.perms.allows_model(&m.name),
            // With auth on, no principal stored means nothing to show.
            None => st.auth.is_none(),
        })
        .map(|m| m.name.clone())
        .collect();
    names.dedup();
    let data = super::openai::model_cards(&st, principal);
    Json(json!({"models": names, "object": "list", "data": data}))
}

/// `GET /v1/models/{m}`: readiness of one model.
pub async fn status(State(st): State<AppState>, Path(name): Path<String>) -> ApiResult<Response> {
    st.registry.get(&name, None)?;
    Ok(Json(json!({"name": name, "ready": true})).into_response())
}

/// `POST /v1/models/{m}:predict` and `:explain` (axum captures `m:verb`).
pub async fn verb(
    State(st): State<AppState>,
    Path(name_verb): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let Some((name, verb)) = name_verb.rsplit_once(':') else {
        return Err(Error::NotFound(format!(
            "unknown endpoint /v1/models/{name_verb}: use /v1/models/<name>:predict"
        ))
        .into());
    };
    let model = st.registry.get(name, None)?;
    match verb {
        "predict" => {}
        "explain" => {
            return Err(Error::Unimplemented(format!("model '{name}' has no explainer")).into())
        }
        other => {
            return Err(Error::NotFound(format!(
                "unknown verb ':{other}' (supported: :predict, :explain)"
            ))
            .into())
        }
    }
    let bytes = read_limited(&headers, body, st.max_body_bytes).await?;
    let req = ferroserve_core::stage_span!("decode")
        .in_scope(|| v1::decode_request(&bytes, model.signature()))?;
    let records = model.model.v1_records();
    let resp = executor::infer(model, req).await?;
    let body = ferroserve_core::stage_span!("encode")
        .in_scope(|| v1::encode_response_with(&resp, records))?;
    let mut out = Response::new(Body::from(body));
    out.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(out)
}

//! The HTTP front end: KServe v1, Open Inference Protocol v2 REST,
//! MLflow's scoring protocol (`/invocations`), and the OpenAI API
//! (`/openai/v1/...` and `/v1/...`).

pub(crate) mod body;
mod edge;
pub mod error;
mod mlflow;
mod openai;
mod repository;
mod v1;
mod v2;

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::state::AppState;

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(st): State<AppState>) -> Response {
    match &st.metrics {
        Some(m) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )],
            crate::metrics::render(&st.registry, m, st.started),
        )
            .into_response(),
        None => error::ApiError(ferroserve_core::Error::NotFound(
            "metrics are off (--metrics=false)".into(),
        ))
        .into_response(),
    }
}

/// The HTTP authenticator when auth is on.
fn http_auth(state: &AppState) -> Option<crate::auth::HttpAuth> {
    state.auth.as_ref().map(|auth| crate::auth::HttpAuth {
        auth: Arc::clone(auth),
        registry: Arc::clone(&state.registry),
    })
}

/// Adds `edge` to every route of `router` (nothing when all is off).
fn with_edge(router: Router, edge: edge::Edge) -> Router {
    if edge.is_empty() {
        router
    } else {
        router.layer(edge::EdgeLayer(Arc::new(edge)))
    }
}

/// Adds the CORS layer when origins are configured (nothing otherwise).
fn with_cors(router: Router, origins: &[String]) -> Router {
    use axum::http::{header, HeaderName, HeaderValue, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return router;
    }
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(list))
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static("x-api-key"),
            HeaderName::from_static("inference-header-content-length"),
        ])
        .expose_headers([
            header::RETRY_AFTER,
            header::WWW_AUTHENTICATE,
            HeaderName::from_static("inference-header-content-length"),
        ])
        .max_age(std::time::Duration::from_secs(600));
    router.layer(cors)
}

/// A router serving only `/metrics` (for `--metrics_port`).
pub fn metrics_router(state: AppState) -> Router {
    let edge = edge::Edge {
        auth: http_auth(&state),
        ..Default::default()
    };
    let router = Router::new()
        .route("/metrics", get(metrics))
        .with_state(state);
    with_edge(router, edge)
}

/// Builds the HTTP router with every REST endpoint.
pub fn router(state: AppState) -> Router {
    let outer = state.clone();
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/v2/health/live", get(v2::live))
        .route("/v2/health/ready", get(v2::ready))
        .route("/v2", get(v2::server_metadata))
        .route("/v2/", get(v2::server_metadata))
        .route("/v2/models/stats", get(v2::stats_all))
        .route("/v2/models/{m}", get(v2::metadata))
        .route("/v2/models/{m}/ready", get(v2::model_ready))
        .route("/v2/models/{m}/config", get(v2::config))
        .route("/v2/models/{m}/stats", get(v2::stats))
        .route("/v2/models/{m}/infer", post(v2::infer))
        .route("/v2/models/{m}/versions/{v}", get(v2::metadata_version))
        .route(
            "/v2/models/{m}/versions/{v}/ready",
            get(v2::model_ready_version),
        )
        .route(
            "/v2/models/{m}/versions/{v}/config",
            get(v2::config_version),
        )
        .route("/v2/models/{m}/versions/{v}/stats", get(v2::stats_version))
        .route("/v2/models/{m}/versions/{v}/infer", post(v2::infer_version))
        .route("/v2/repository/index", post(repository::index))
        .route("/v2/repository/models/{m}/load", post(repository::load))
        .route("/v2/repository/models/{m}/unload", post(repository::unload))
        .route("/v1/models", get(v1::list))
        .route("/openai/v1/models", get(openai::models))
        .route("/openai/v1/models/{m}", get(openai::model))
        .route("/openai/v1/completions", post(openai::completions))
        .route(
            "/openai/v1/chat/completions",
            post(openai::chat_completions),
        )
        .route("/openai/v1/embeddings", post(openai::embeddings))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/v1/models/{m}", get(v1::status).post(v1::verb))
        .route("/invocations", post(mlflow::invocations))
        .route("/ping", get(mlflow::ping))
        .route("/health", get(mlflow::ping))
        .route("/version", get(mlflow::version))
        .fallback(v2::not_found)
        .with_state(state);
    // Tracing, metrics (refusals are counted), limits, auth, then the
    // request logger (authorized requests only): see `edge`. CORS outermost
    // (preflights carry no credentials).
    let edge = edge::Edge {
        tracing: crate::telemetry::enabled(),
        metrics: outer.metrics.clone(),
        max_header_bytes: outer.limits.max_header_bytes,
        request_timeout: outer.limits.request_timeout,
        auth: http_auth(&outer),
        logger: outer.logger.as_ref().map(|l| crate::logger::HttpLogging {
            logger: Arc::clone(l),
            max_body_bytes: outer.max_body_bytes,
        }),
    };
    with_cors(with_edge(router, edge), &outer.cors_allow_origins)
}

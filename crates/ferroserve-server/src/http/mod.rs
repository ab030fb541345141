//! The HTTP front end: KServe v1, Open Inference Protocol v2 REST,
//! MLflow's scoring protocol (`/invocations`), and the OpenAI API
//! (`/openai/v1/...` and `/v1/...`).

pub(crate) mod body;
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

/// Adds the auth middleware when auth is on (nothing otherwise).
fn with_auth(router: Router, state: &AppState) -> Router {
    match &state.auth {
        Some(auth) => router.layer(axum::middleware::from_fn_with_state(
            crate::auth::HttpAuth {
                auth: Arc::clone(auth),
                registry: Arc::clone(&state.registry),
            },
            crate::auth::http_middleware,
        )),
        None => router,
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

/// Adds the request timeout and header size limit layers when set.
fn with_limits(router: Router, limits: &crate::limits::Limits) -> Router {
    let router = match limits.request_timeout {
        Some(d) => router.layer(axum::middleware::from_fn_with_state(
            d,
            crate::limits::http_timeout,
        )),
        None => router,
    };
    match limits.max_header_bytes {
        Some(n) => router.layer(axum::middleware::from_fn_with_state(
            n,
            crate::limits::http_header_limit,
        )),
        None => router,
    }
}

/// A router serving only `/metrics` (for `--metrics_port`).
pub fn metrics_router(state: AppState) -> Router {
    let auth_state = state.clone();
    let router = Router::new()
        .route("/metrics", get(metrics))
        .with_state(state);
    with_auth(router, &auth_state)
}

/// Builds the HTTP router with every REST endpoint.
pub fn router(state: AppState) -> Router {
    let tracked = state.metrics.clone();
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
    // Innermost first: the request logger (authorized requests only), auth,
    // the request timeout, the header size limit, then metrics (so refusals
    // are counted), then CORS outermost (preflights carry no credentials).
    let router = match &outer.logger {
        Some(l) => router.layer(axum::middleware::from_fn_with_state(
            crate::logger::HttpLogging {
                logger: Arc::clone(l),
                max_body_bytes: outer.max_body_bytes,
            },
            crate::logger::http_middleware,
        )),
        None => router,
    };
    let router = with_auth(router, &outer);
    let router = with_limits(router, &outer.limits);
    let router = match tracked {
        Some(m) => router.layer(crate::metrics::HttpMetricsLayer(m)),
        None => router,
    };
    let router = with_cors(router, &outer.cors_allow_origins);
    // Outermost: the tracing server span (only when tracing is on).
    crate::telemetry::with_http_tracing(router)
}

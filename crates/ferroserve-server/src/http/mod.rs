//! The HTTP front end: KServe v1, Open Inference Protocol v2 REST,
//! MLflow's scoring protocol (`/invocations`), and the OpenAI API
//! (`/openai/v1/...` and `/v1/...`).

mod app;
pub(crate) mod body;
mod edge;
pub mod error;
mod mlflow;
mod openai;
mod repository;
mod routes;
mod v1;
mod v2;

pub use app::{App, AppFuture};

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
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

/// Routes `routes` (pattern, handlers), answers unmatched paths with the
/// v2 `404`, puts `edge` around the router and CORS around that when
/// `cors_origins` is not empty.
fn assemble(
    routes: Vec<(&'static str, MethodRouter<AppState>)>,
    state: AppState,
    mut edge: edge::Edge,
    cors_origins: &[String],
) -> App {
    let mut router = Router::new();
    for (pattern, handlers) in routes {
        router = router.route(pattern, handlers);
        // axum has accepted the pattern, so the same matcher accepts it.
        if let Err(e) = edge.routes.add(pattern) {
            tracing::error!(pattern, error = %e, "route pattern not labelled");
        }
    }
    let app = App::new(router.fallback(v2::not_found).with_state(state), edge);
    match cors(cors_origins) {
        Some(cors) => app.with_cors(cors),
        None => app,
    }
}

/// The CORS layer when origins are configured.
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{header, HeaderName, HeaderValue, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
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
    Some(cors)
}

/// The app serving only `/metrics` (for `--metrics_port`).
pub fn metrics_app(state: AppState) -> App {
    let edge = edge::Edge {
        auth: http_auth(&state),
        ..Default::default()
    };
    assemble(vec![("/metrics", get(metrics))], state, edge, &[])
}

/// The REST front end: every endpoint, with the edge features configured
/// in `state`.
pub fn app(state: AppState) -> App {
    let routes: Vec<(&'static str, MethodRouter<AppState>)> = vec![
        ("/metrics", get(metrics)),
        ("/v2/health/live", get(v2::live)),
        ("/v2/health/ready", get(v2::ready)),
        ("/v2", get(v2::server_metadata)),
        ("/v2/", get(v2::server_metadata)),
        ("/v2/models/stats", get(v2::stats_all)),
        ("/v2/models/{m}", get(v2::metadata)),
        ("/v2/models/{m}/ready", get(v2::model_ready)),
        ("/v2/models/{m}/config", get(v2::config)),
        ("/v2/models/{m}/stats", get(v2::stats)),
        ("/v2/models/{m}/infer", post(v2::infer)),
        ("/v2/models/{m}/versions/{v}", get(v2::metadata_version)),
        (
            "/v2/models/{m}/versions/{v}/ready",
            get(v2::model_ready_version),
        ),
        (
            "/v2/models/{m}/versions/{v}/config",
            get(v2::config_version),
        ),
        ("/v2/models/{m}/versions/{v}/stats", get(v2::stats_version)),
        ("/v2/models/{m}/versions/{v}/infer", post(v2::infer_version)),
        ("/v2/repository/index", post(repository::index)),
        ("/v2/repository/models/{m}/load", post(repository::load)),
        ("/v2/repository/models/{m}/unload", post(repository::unload)),
        ("/v1/models", get(v1::list)),
        ("/openai/v1/models", get(openai::models)),
        ("/openai/v1/models/{m}", get(openai::model)),
        ("/openai/v1/completions", post(openai::completions)),
        (
            "/openai/v1/chat/completions",
            post(openai::chat_completions),
        ),
        ("/openai/v1/embeddings", post(openai::embeddings)),
        ("/v1/completions", post(openai::completions)),
        ("/v1/chat/completions", post(openai::chat_completions)),
        ("/v1/embeddings", post(openai::embeddings)),
        ("/v1/models/{m}", get(v1::status).post(v1::verb)),
        ("/invocations", post(mlflow::invocations)),
        ("/ping", get(mlflow::ping)),
        ("/health", get(mlflow::ping)),
        ("/version", get(mlflow::version)),
    ];
    // Tracing, metrics (refusals are counted), limits, auth, then the
    // request logger (authorized requests only): see `edge`. CORS outermost
    // (preflights carry no credentials).
    let edge = edge::Edge {
        tracing: crate::telemetry::enabled(),
        metrics: state.metrics.clone(),
        max_header_bytes: state.limits.max_header_bytes,
        request_timeout: state.limits.request_timeout,
        auth: http_auth(&state),
        logger: state.logger.as_ref().map(|l| crate::logger::HttpLogging {
            logger: Arc::clone(l),
            max_body_bytes: state.max_body_bytes,
        }),
        routes: routes::RouteTable::default(),
    };
    let origins = Arc::clone(&state.cors_allow_origins);
    assemble(routes, state, edge, &origins)
}

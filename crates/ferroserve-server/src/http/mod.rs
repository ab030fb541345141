//! The HTTP front end: KServe v1 and Open Inference Protocol v2 REST.

mod body;
pub mod error;
mod repository;
mod v1;
mod v2;

use axum::routing::{get, post};
use axum::Router;

use crate::state::AppState;

/// Builds the HTTP router with every REST endpoint.
pub fn router(state: AppState) -> Router {
    Router::new()
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
        .route("/v1/models/{m}", get(v1::status).post(v1::verb))
        .fallback(v2::not_found)
        .with_state(state)
}

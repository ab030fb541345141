//! State shared by every handler of both front ends.

use std::sync::Arc;

use ferroserve_core::Registry;

/// Extensions of the Open Inference Protocol (and Triton's) this server implements.
pub const EXTENSIONS: &[&str] = &[
    "binary_tensor_data",
    "parameters",
    "model_repository",
    "model_configuration",
    "statistics",
];

/// Server name reported in the server metadata.
pub const SERVER_NAME: &str = "ferroserve";

/// Server version reported in the server metadata.
pub const SERVER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the handlers share: one reference-counted pointer, because axum
/// clones the state for every request and each `Arc` inside it would be
/// one more atomic increment and decrement on a cache line that both
/// worker threads write (measured in bench/overhead).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// State sharing `parts`.
    pub fn new(parts: Shared) -> Self {
        AppState(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of an [`AppState`].
pub struct Shared {
    /// The model registry.
    pub registry: Arc<Registry>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Request metrics; `None` when metrics are off.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// When the server started (for uptime).
    pub started: std::time::Instant,
    /// Authentication and authorization; `None` when off.
    pub auth: Option<Arc<crate::auth::Auth>>,
    /// Origins allowed by CORS; empty when CORS is off.
    pub cors_allow_origins: Arc<[String]>,
    /// Request/response logger (`--logger_url`); `None` when off.
    pub logger: Option<Arc<crate::logger::Logger>>,
    /// Ingress limits (header size, connections, request timeout).
    pub limits: crate::limits::Limits,
}

//! The front end of ferroserve: HTTP (axum: KServe v1, Open Inference
//! Protocol v2 REST) and gRPC (tonic: v2 gRPC, health, reflection), sharing
//! one model registry, with graceful shutdown.

pub mod auth;
pub mod documents;
pub mod egress;
pub mod grpc;
pub mod http;
mod http_serve;
mod https_client;
pub mod limits;
pub mod logger;
pub mod metrics;
pub mod ratelimit;
mod shard;
pub mod state;
pub mod telemetry;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferroserve_core::Registry;
use ferroserve_protocol::grpc::{pb, FILE_DESCRIPTOR_SET};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use state::AppState;

/// Errors starting or running the servers.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The HTTP server failed.
    #[error("HTTP server failed: {0}")]
    Http(std::io::Error),
    /// The gRPC server failed.
    #[error("gRPC server failed: {0}")]
    Grpc(tonic::transport::Error),
    /// A `--cors_allow_origin` value is not a valid header value.
    #[error("invalid CORS origin {0:?}")]
    CorsOrigin(String),
    /// Building the reflection service failed.
    #[error("gRPC reflection: {0}")]
    Reflection(String),
    /// The request logger cannot start (bad sink, refused by the egress
    /// allow-list, file not writable).
    #[error(transparent)]
    Logger(#[from] logger::LoggerError),
}

/// Where and how to listen.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Address to bind (e.g. `0.0.0.0`).
    pub host: String,
    /// HTTP port (0: any free port).
    pub http_port: u16,
    /// gRPC port (0: any free port); `None` disables gRPC.
    pub grpc_port: Option<u16>,
    /// Largest request body or gRPC message accepted, in bytes.
    pub max_body_bytes: usize,
    /// How long shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
    /// Record and serve Prometheus metrics.
    pub metrics: bool,
    /// Serve `/metrics` on this port too (0: any free port).
    pub metrics_port: Option<u16>,
    /// Authentication, authorization and rate limits (`--auth_config`);
    /// `None`: no auth layer is installed.
    pub auth: Option<Arc<auth::Auth>>,
    /// Origins allowed by CORS (`--cors_allow_origin`); empty: no CORS layer.
    pub cors_allow_origins: Vec<String>,
    /// Request/response logger (`--logger_url`); `None`: off.
    pub logger: Option<logger::LoggerConfig>,
    /// Hosts and schemes the server may contact (`--egress_allow`).
    pub egress: egress::Policy,
    /// Header size, connection and request-time limits.
    pub limits: limits::Limits,
    /// TLS (and mutual TLS) for the HTTP and gRPC listeners; `None`: plain.
    pub tls: Option<Arc<tls::Tls>>,
}

/// The bound servers, before they run.
pub struct Bound {
    /// Address the HTTP server listens on.
    pub http_addr: SocketAddr,
    /// Address the gRPC server listens on.
    pub grpc_addr: Option<SocketAddr>,
    /// Address of the separate metrics listener.
    pub metrics_addr: Option<SocketAddr>,
    http: TcpListener,
    grpc: Option<TcpListener>,
    metrics: Option<TcpListener>,
    logger: Option<Arc<logger::Logger>>,
    options: ServerOptions,
}

async fn bind(host: &str, port: u16) -> Result<TcpListener, ServerError> {
    let addr = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    TcpListener::bind(&addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

/// Opens the listening sockets.
pub async fn bind_all(options: ServerOptions) -> Result<Bound, ServerError> {
    if let Some(bad) = options
        .cors_allow_origins
        .iter()
        .find(|o| o.is_empty() || o.ends_with('/') || ::http::HeaderValue::from_str(o).is_err())
    {
        return Err(ServerError::CorsOrigin(bad.clone()));
    }
    if let Some(l) = &options.logger {
        l.validate(&options.egress)?;
    }
    let http = bind(&options.host, options.http_port).await?;
    let grpc = match options.grpc_port {
        Some(p) => Some(bind(&options.host, p).await?),
        None => None,
    };
    let metrics = match options.metrics_port.filter(|_| options.metrics) {
        Some(p) => Some(bind(&options.host, p).await?),
        None => None,
    };
    let local = |l: &TcpListener| {
        l.local_addr().map_err(|source| ServerError::Bind {
            addr: options.host.clone(),
            source,
        })
    };
    let http_addr = local(&http)?;
    let logger = match &options.logger {
        Some(cfg) => Some(logger::Logger::start(
            cfg,
            &options.egress,
            &format!("http://localhost:{}/", http_addr.port()),
        )?),
        None => None,
    };
    Ok(Bound {
        http_addr,
        grpc_addr: grpc.as_ref().map(local).transpose()?,
        metrics_addr: metrics.as_ref().map(local).transpose()?,
        http,
        grpc,
        metrics,
        logger,
        options,
    })
}

impl Bound {
    /// Serves until `shutdown` completes (the caller marks the registry ready
    /// once its models have loaded), then stops accepting, marks the server
    /// not ready, and waits up to the drain timeout for in-flight
    /// requests.
    pub async fn run(
        self,
        registry: Arc<Registry>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let metrics = self.options.metrics.then(|| {
            Arc::new(metrics::Metrics {
                logger: self.logger.clone(),
                auth: self.options.auth.clone(),
                ..Default::default()
            })
        });
        let budget = limits::connection_budget(&self.options.limits);
        let state = AppState::new(state::Shared {
            registry: Arc::clone(&registry),
            max_body_bytes: self.options.max_body_bytes,
            metrics: metrics.clone(),
            started: std::time::Instant::now(),
            auth: self.options.auth.clone(),
            cors_allow_origins: self.options.cors_allow_origins.clone().into(),
            logger: self.logger.clone(),
            limits: self.options.limits.clone(),
        });
        if let Some(listener) = self.metrics {
            let mut rx = stop_rx.clone();
            let app = http::metrics_app(state.clone());
            tokio::spawn(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = rx.wait_for(|s| *s).await;
                    })
                    .await;
            });
        }
        let drain = self.options.drain_timeout;

        let http_listener = limits::LimitedListener::new(self.http, budget.clone());
        let mut rx = stop_rx.clone();
        let stopped = async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let max_header_bytes = self.options.limits.max_header_bytes;
        let app = http::app(state);
        if let Some(tls) = &self.options.tls {
            tls.reload_on_sighup();
        }
        let http_task = match &self.options.tls {
            Some(tls) => {
                let listener = tls
                    .http_listener(http_listener)
                    .map_err(ServerError::Http)?;
                let http = http_serve::serve(listener, app, max_header_bytes, stopped);
                tokio::spawn(async move { http.await.map_err(ServerError::Http) })
            }
            None => {
                let http = http_serve::serve(http_listener, app, max_header_bytes, stopped);
                tokio::spawn(async move { http.await.map_err(ServerError::Http) })
            }
        };

        let grpc_task = match self.grpc {
            Some(listener) => {
                let (health, health_svc) = tonic_health::server::health_reporter();
                health
                    .set_serving::<pb::grpc_inference_service_server::GrpcInferenceServiceServer<
                        grpc::InferenceService,
                    >>()
                    .await;
                health
                    .set_service_status("", tonic_health::ServingStatus::Serving)
                    .await;
                let reflection = tonic_reflection::server::Builder::configure()
                    .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
                    .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                    .build_v1()
                    .map_err(|e| ServerError::Reflection(e.to_string()))?;
                let reflection_alpha = tonic_reflection::server::Builder::configure()
                    .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
                    .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                    .build_v1alpha()
                    .map_err(|e| ServerError::Reflection(e.to_string()))?;
                let svc = pb::grpc_inference_service_server::GrpcInferenceServiceServer::new(
                    grpc::InferenceService::new(Arc::clone(&registry))
                        .with_auth(self.options.auth.clone())
                        .with_logger(self.logger.clone()),
                )
                .max_decoding_message_size(self.options.max_body_bytes)
                .max_encoding_message_size(usize::MAX);
                let mut rx = stop_rx.clone();
                let grpc_metrics = metrics.clone().map(metrics::GrpcMetricsLayer);
                let router = tonic::transport::Server::builder()
                    .tcp_nodelay(true)
                    .layer(tower::util::option_layer(
                        telemetry::GrpcTraceLayer::if_enabled(),
                    ))
                    .http2_max_header_list_size(
                        self.options
                            .limits
                            .max_header_bytes
                            .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
                    )
                    .layer(tower::util::option_layer(grpc_metrics))
                    .layer(limits::GrpcTimeoutLayer(
                        self.options.limits.request_timeout,
                    ))
                    .layer(tower::util::option_layer(
                        self.options.auth.clone().map(auth::GrpcAuthLayer),
                    ))
                    .layer(tower::util::MapResponseLayer::new(
                        grpc::oversize_is_resource_exhausted,
                    ))
                    .add_service(health_svc)
                    .add_service(reflection)
                    .add_service(reflection_alpha)
                    .add_service(svc);
                let health_on_stop = health.clone();
                let stopped = async move {
                    let _ = rx.wait_for(|s| *s).await;
                    health_on_stop
                        .set_service_status("", tonic_health::ServingStatus::NotServing)
                        .await;
                };
                Some(match &self.options.tls {
                    Some(tls) => {
                        let incoming = tls
                            .grpc_incoming(limits::LimitedListener::new(listener, budget.clone()))
                            .map_err(ServerError::Http)?;
                        tokio::spawn(async move {
                            router
                                .serve_with_incoming_shutdown(incoming, stopped)
                                .await
                                .map_err(ServerError::Grpc)
                        })
                    }
                    None => {
                        let incoming = limits::limited_incoming(listener, budget.clone());
                        tokio::spawn(async move {
                            router
                                .serve_with_incoming_shutdown(incoming, stopped)
                                .await
                                .map_err(ServerError::Grpc)
                        })
                    }
                })
            }
            None => None,
        };

        shutdown.await;
        tracing::info!(
            drain_secs = drain.as_secs_f64(),
            "shutting down: draining in-flight requests"
        );
        registry.set_ready(false);
        let _ = stop_tx.send(true);
        let wait_all = async {
            let h = http_task.await;
            let g = match grpc_task {
                Some(t) => Some(t.await),
                None => None,
            };
            (h, g)
        };
        match tokio::time::timeout(drain, wait_all).await {
            Ok((h, g)) => {
                if let Ok(Err(e)) = h {
                    return Err(e);
                }
                if let Some(Ok(Err(e))) = g {
                    return Err(e);
                }
                tracing::info!("shutdown complete");
            }
            Err(_) => {
                tracing::warn!("drain timeout reached; exiting with requests still in flight")
            }
        }
        if let Some(l) = &self.logger {
            l.shutdown(drain.min(Duration::from_secs(5))).await;
        }
        Ok(())
    }
}

//! The gRPC front end: `inference.GRPCInferenceService` (Open Inference
//! Protocol v2, Triton-compatible field numbers), plus the standard health
//! and reflection services.

use std::pin::Pin;
use std::sync::Arc;

use ferroserve_core::registry::ModelState;
use ferroserve_core::{executor, Error, Registry};
use ferroserve_protocol::grpc::{pb, request_from_pb, response_to_pb};
use futures::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{Action, Auth};
use crate::documents;
use crate::state::{EXTENSIONS, SERVER_NAME, SERVER_VERSION};

/// The one place core errors become gRPC status codes.
pub fn status_of(e: Error) -> Status {
    let msg = e.to_string();
    match e {
        Error::NotFound(_) => Status::not_found(msg),
        Error::Unavailable(_) => Status::unavailable(msg),
        Error::InvalidArgument(_) | Error::Load(_) => Status::invalid_argument(msg),
        Error::Unimplemented(_) => Status::unimplemented(msg),
        Error::PayloadTooLarge(_) | Error::ResourceExhausted(_) => Status::resource_exhausted(msg),
        Error::DeadlineExceeded(_) => Status::deadline_exceeded(msg),
        Error::Internal(_) => Status::internal(msg),
    }
}

/// tonic answers a message over `max_decoding_message_size` with
/// OUT_OF_RANGE; gRPC's convention (and grpc-core's behaviour) is
/// RESOURCE_EXHAUSTED. The error is a trailers-only response, so the status
/// sits in the headers and can be rewritten here.
pub fn oversize_is_resource_exhausted<B>(mut resp: http::Response<B>) -> http::Response<B> {
    let h = resp.headers_mut();
    let out_of_range = h.get("grpc-status").is_some_and(|v| v == "11");
    let oversize = h
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|m| {
            m.contains("message%20length%20too%20large") || m.contains("message length too large")
        });
    if out_of_range && oversize {
        h.insert("grpc-status", http::HeaderValue::from_static("8"));
    }
    resp
}

/// Implementation of `inference.GRPCInferenceService`.
#[derive(Clone)]
pub struct InferenceService {
    registry: Arc<Registry>,
    auth: Option<Arc<Auth>>,
    logger: Option<Arc<crate::logger::Logger>>,
}

impl InferenceService {
    /// A service over `registry`.
    pub fn new(registry: Arc<Registry>) -> Self {
        InferenceService {
            registry,
            auth: None,
            logger: None,
        }
    }

    /// Logs `ModelInfer` requests and responses with `logger`.
    pub fn with_logger(mut self, logger: Option<Arc<crate::logger::Logger>>) -> Self {
        self.logger = logger;
        self
    }

    /// Authorizes every call with `auth` (the [`crate::auth::GrpcAuthLayer`]
    /// must be installed in front to authenticate).
    pub fn with_auth(mut self, auth: Option<Arc<Auth>>) -> Self {
        self.auth = auth;
        self
    }

    /// The one place gRPC calls are authorized: `action` comes from the
    /// method and the decoded request. Free when auth is off.
    fn check<T>(&self, req: &Request<T>, action: Action<'_>) -> Result<(), Status> {
        match &self.auth {
            None => Ok(()),
            Some(a) => a.check_grpc(req.extensions(), &action),
        }
    }
}

fn model_action(name: &str) -> Action<'_> {
    Action::Model(std::borrow::Cow::Borrowed(name))
}

fn version_opt(v: &str) -> Option<&str> {
    Some(v).filter(|s| !s.is_empty())
}

async fn infer_one(
    registry: &Registry,
    req: pb::ModelInferRequest,
) -> Result<pb::ModelInferResponse, Status> {
    let model = registry
        .get(&req.model_name, version_opt(&req.model_version))
        .map_err(status_of)?;
    let core_req = ferroserve_core::stage_span!("decode")
        .in_scope(|| request_from_pb(req))
        .map_err(status_of)?;
    let resp = executor::infer(model, core_req).await.map_err(status_of)?;
    // tonic encodes the protobuf after the handler returns; this is the
    // conversion into it.
    Ok(ferroserve_core::stage_span!("encode").in_scope(|| response_to_pb(resp)))
}

type InferStream = Pin<Box<dyn Stream<Item = Result<pb::ModelStreamInferResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::grpc_inference_service_server::GrpcInferenceService for InferenceService {
    async fn server_live(
        &self,
        _: Request<pb::ServerLiveRequest>,
    ) -> Result<Response<pb::ServerLiveResponse>, Status> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<pb::ServerReadyRequest>,
    ) -> Result<Response<pb::ServerReadyResponse>, Status> {
        Ok(Response::new(pb::ServerReadyResponse {
            ready: self.registry.is_ready(),
        }))
    }

    async fn model_ready(
        &self,
        req: Request<pb::ModelReadyRequest>,
    ) -> Result<Response<pb::ModelReadyResponse>, Status> {
        self.check(&req, model_action(&req.get_ref().name))?;
        let r = req.into_inner();
        match self.registry.get(&r.name, version_opt(&r.version)) {
            Ok(_) => Ok(Response::new(pb::ModelReadyResponse { ready: true })),
            Err(Error::Unavailable(_)) => {
                Ok(Response::new(pb::ModelReadyResponse { ready: false }))
            }
            Err(e) => Err(status_of(e)),
        }
    }

    async fn server_metadata(
        &self,
        _: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        Ok(Response::new(pb::ServerMetadataResponse {
            name: SERVER_NAME.into(),
            version: SERVER_VERSION.into(),
            extensions: EXTENSIONS.iter().map(|s| s.to_string()).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        req: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        self.check(&req, model_action(&req.get_ref().name))?;
        let r = req.into_inner();
        let m = self
            .registry
            .get(&r.name, version_opt(&r.version))
            .map_err(status_of)?;
        Ok(Response::new(documents::metadata_pb(
            &m,
            self.registry.versions(&r.name),
        )))
    }

    async fn model_infer(
        &self,
        req: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        self.check(&req, model_action(&req.get_ref().model_name))?;
        let logged = self
            .logger
            .as_ref()
            .map(|l| (l, l.grpc_request(req.metadata(), req.get_ref())));
        let resp = infer_one(&self.registry, req.into_inner()).await?;
        if let Some((l, corr)) = logged {
            l.grpc_response(&corr, &resp);
        }
        Ok(Response::new(resp))
    }

    type ModelStreamInferStream = InferStream;

    async fn model_stream_infer(
        &self,
        req: Request<Streaming<pb::ModelInferRequest>>,
    ) -> Result<Response<Self::ModelStreamInferStream>, Status> {
        // Each message names its model: authorize them one by one.
        let principal = req
            .extensions()
            .get::<Arc<crate::auth::Principal>>()
            .cloned();
        let auth = self.auth.clone();
        if auth.is_some() && principal.is_none() {
            return Err(Status::unauthenticated("missing credentials"));
        }
        // Logged per message: each request message and its response share
        // a new event id (the call's `ce-id` would repeat); the trace
        // context is the call's.
        let logger = self.logger.clone();
        let mut metadata = req.metadata().clone();
        metadata.remove("ce-id");
        let mut incoming = req.into_inner();
        let registry = Arc::clone(&self.registry);
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        // The call's span (when tracing) parents every message's stages.
        let span = tracing::Span::current();
        tokio::spawn(ferroserve_core::trace::traced_in(
            async move {
                use futures::StreamExt;
                while let Some(item) = incoming.next().await {
                    let out = match item {
                        Ok(r) => {
                            let logged =
                                logger.as_ref().map(|l| (l, l.grpc_request(&metadata, &r)));
                            let out = match async {
                                if let (Some(a), Some(p)) = (&auth, &principal) {
                                    a.authorize(p, &model_action(&r.model_name))
                                        .map_err(crate::auth::Denied::into_status)?;
                                }
                                infer_one(&registry, r).await
                            }
                            .await
                            {
                                Ok(resp) => pb::ModelStreamInferResponse {
                                    error_message: String::new(),
                                    infer_response: Some(resp),
                                },
                                Err(s) => pb::ModelStreamInferResponse {
                                    error_message: s.message().to_string(),
                                    infer_response: None,
                                },
                            };
                            if let (Some((l, corr)), Some(resp)) = (&logged, &out.infer_response) {
                                l.grpc_response(corr, resp);
                            }
                            out
                        }
                        Err(_) => break,
                    };
                    if tx.send(Ok(out)).await.is_err() {
                        break;
                    }
                }
            },
            span,
        ));
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn model_config(
        &self,
        req: Request<pb::ModelConfigRequest>,
    ) -> Result<Response<pb::ModelConfigResponse>, Status> {
        self.check(&req, model_action(&req.get_ref().name))?;
        let r = req.into_inner();
        let m = self
            .registry
            .get(&r.name, version_opt(&r.version))
            .map_err(status_of)?;
        Ok(Response::new(pb::ModelConfigResponse {
            config: Some(documents::config_pb(&m)),
        }))
    }

    async fn model_statistics(
        &self,
        req: Request<pb::ModelStatisticsRequest>,
    ) -> Result<Response<pb::ModelStatisticsResponse>, Status> {
        let action = if req.get_ref().name.is_empty() {
            Action::Admin
        } else {
            model_action(&req.get_ref().name)
        };
        self.check(&req, action)?;
        let r = req.into_inner();
        let stats = if r.name.is_empty() {
            self.registry
                .loaded()
                .iter()
                .map(|m| documents::stats_pb(m))
                .collect()
        } else if let Some(v) = version_opt(&r.version) {
            let m = self.registry.get(&r.name, Some(v)).map_err(status_of)?;
            vec![documents::stats_pb(&m)]
        } else {
            self.registry.get(&r.name, None).map_err(status_of)?;
            self.registry
                .loaded()
                .iter()
                .filter(|m| m.name == r.name)
                .map(|m| documents::stats_pb(m))
                .collect()
        };
        Ok(Response::new(pb::ModelStatisticsResponse {
            model_stats: stats,
        }))
    }

    async fn repository_index(
        &self,
        req: Request<pb::RepositoryIndexRequest>,
    ) -> Result<Response<pb::RepositoryIndexResponse>, Status> {
        self.check(&req, Action::Admin)?;
        use pb::repository_index_response::ModelIndex;
        let r = req.into_inner();
        let models = self
            .registry
            .index(r.ready)
            .into_iter()
            .map(|e| ModelIndex {
                name: e.name,
                version: e.version.unwrap_or_default(),
                state: e.state.as_str().to_string(),
                reason: match e.state {
                    ModelState::Unavailable(reason) => reason,
                    _ => String::new(),
                },
            })
            .collect();
        Ok(Response::new(pb::RepositoryIndexResponse { models }))
    }

    async fn repository_model_load(
        &self,
        req: Request<pb::RepositoryModelLoadRequest>,
    ) -> Result<Response<pb::RepositoryModelLoadResponse>, Status> {
        self.check(&req, Action::Admin)?;
        let r = req.into_inner();
        if r.parameters.contains_key("config") {
            return Err(Status::unimplemented(
                "loading with an override 'config' parameter is not supported",
            ));
        }
        self.registry.load(&r.model_name).await.map_err(status_of)?;
        Ok(Response::new(pb::RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        req: Request<pb::RepositoryModelUnloadRequest>,
    ) -> Result<Response<pb::RepositoryModelUnloadResponse>, Status> {
        self.check(&req, Action::Admin)?;
        let r = req.into_inner();
        self.registry
            .unload(&r.model_name)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::RepositoryModelUnloadResponse {}))
    }
}

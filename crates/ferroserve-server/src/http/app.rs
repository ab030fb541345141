//! The REST front end as one service: the router, with the HTTP edge
//! ([`super::edge`]) around it when any of its features is on, and CORS
//! around that when configured. Served by hyper directly (no clone of the
//! service per request) and by `axum::serve`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::future::RouteFuture;
use axum::Router;
use tower::util::BoxCloneSyncService;
use tower::{Service as _, ServiceExt as _};

use super::edge::{BoxFuture, Edge, Routed};

/// The future of an [`App`]: the router's own when the edge is off, the
/// edge's unboxed one on its fast path, else a boxed one.
pub enum AppFuture {
    /// The router's, the edge being off.
    Router(RouteFuture<Infallible>),
    /// The edge's fast path (`edge::Routed`).
    Edge(Routed),
    /// Any other (a sampled trace, a timeout, a refusal, CORS).
    Boxed(BoxFuture),
}

impl Future for AppFuture {
    type Output = Result<Response, Infallible>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Every variant is `Unpin`.
        match self.get_mut() {
            AppFuture::Router(f) => Pin::new(f).poll(cx),
            AppFuture::Edge(f) => Pin::new(f).poll(cx),
            AppFuture::Boxed(f) => f.as_mut().poll(cx),
        }
    }
}

/// The REST front end as one service: the router, with the [`Edge`] around
/// all of it when any feature is on, and CORS around that when configured.
/// Cloning it is cheap (reference counts).
#[derive(Clone)]
pub struct App(Front);

#[derive(Clone)]
enum Front {
    /// The router, with the edge when any of its features is on.
    Routed {
        router: Router,
        edge: Option<Arc<Edge>>,
    },
    /// CORS around the rest: boxed, it is rarely on.
    Cors(BoxCloneSyncService<Request, Response, Infallible>),
}

impl App {
    /// `router` with `edge` around it (nothing when all of it is off).
    pub(crate) fn new(router: Router, edge: Edge) -> Self {
        let edge = (!edge.is_empty()).then(|| Arc::new(edge));
        App(Front::Routed { router, edge })
    }

    /// This app with `cors` around it.
    pub(crate) fn with_cors(self, cors: tower_http::cors::CorsLayer) -> Self {
        let service = tower::ServiceBuilder::new().layer(cors).service(self);
        App(Front::Cors(BoxCloneSyncService::new(service)))
    }

    /// Answers `req`.
    pub fn serve(&self, req: Request) -> AppFuture {
        match &self.0 {
            Front::Routed { router, edge: None } => AppFuture::Router(router.clone().call(req)),
            Front::Routed {
                router,
                edge: Some(edge),
            } => super::edge::serve(edge, router, req),
            Front::Cors(service) => AppFuture::Boxed(Box::pin(service.clone().oneshot(req))),
        }
    }
}

impl<B> tower::Service<axum::http::Request<B>> for App
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = AppFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Routers (and so this) are always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: axum::http::Request<B>) -> AppFuture {
        self.serve(req.map(Body::new))
    }
}

/// Served by hyper directly: no clone of the app per request, as
/// `TowerToHyperService` would make.
impl hyper::service::Service<axum::http::Request<hyper::body::Incoming>> for App {
    type Response = Response;
    type Error = Infallible;
    type Future = AppFuture;

    fn call(&self, req: axum::http::Request<hyper::body::Incoming>) -> AppFuture {
        self.serve(req.map(Body::new))
    }
}

/// Lets `axum::serve` serve an [`App`] as it serves a `Router`.
impl<L: axum::serve::Listener> tower::Service<axum::serve::IncomingStream<'_, L>> for App {
    type Response = App;
    type Error = Infallible;
    type Future = std::future::Ready<Result<App, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _stream: axum::serve::IncomingStream<'_, L>) -> Self::Future {
        std::future::ready(Ok(self.clone()))
    }
}

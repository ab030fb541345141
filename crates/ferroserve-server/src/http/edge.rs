//! The HTTP edge: every per-request feature of the REST front end in one
//! tower layer, in this order (outermost first): the tracing server span,
//! request metrics, the header size limit, the request timeout,
//! authentication and authorization, and the request logger (authorized
//! requests only). CORS, when configured, sits outside it (preflights carry
//! no credentials).
//!
//! One layer rather than one per feature because of how axum applies
//! layers: each `Router::layer` wraps every route in a boxed service that is
//! cloned for each request together with everything beneath it, so k
//! stacked middlewares cost O(k²) clones and k boxed futures per request —
//! measurable next to a model that answers in ~30 µs (bench/overhead). Here
//! a request with nothing to wait for before its handler (no timeout, auth
//! decided without fetching keys; the logger records the body as the
//! handler reads it) calls the route at once and keeps only the route's
//! future, the metrics' start and the logger's exchange; any other costs
//! one clone of the route and one boxed future. A feature that is off costs
//! a branch.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use tower::ServiceExt as _;

use crate::auth::HttpAuth;
use crate::logger::HttpLogging;
use crate::metrics::Metrics;

/// The features of the edge; `None`/`false` ones are off.
#[derive(Default)]
pub struct Edge {
    /// Server spans (when tracing is on).
    pub tracing: bool,
    /// HTTP request metrics by route, method and status.
    pub metrics: Option<Arc<Metrics>>,
    /// Largest total request header size (`431` past it).
    pub max_header_bytes: Option<usize>,
    /// Longest time until an answer starts (`504` past it).
    pub request_timeout: Option<Duration>,
    /// Authentication and authorization.
    pub auth: Option<HttpAuth>,
    /// The request logger.
    pub logger: Option<HttpLogging>,
}

impl Edge {
    /// Whether every feature is off (the layer is then not added at all).
    pub fn is_empty(&self) -> bool {
        !self.tracing
            && self.metrics.is_none()
            && self.max_header_bytes.is_none()
            && self.request_timeout.is_none()
            && self.auth.is_none()
            && self.logger.is_none()
    }

    /// Request metrics around the header limit, the timeout and
    /// [`Self::guarded`] (one function: each nested `async fn` would hold
    /// its own copy of the request in the future).
    async fn metered<S>(&self, req: Request, route: S) -> Response
    where
        S: tower::Service<Request, Response = Response, Error = Infallible> + Send,
        S::Future: Send,
    {
        let probe = self.probe(&req);
        let refusal = self
            .max_header_bytes
            .and_then(|max| crate::limits::header_limit_refusal(req.headers(), max));
        let resp = match (refusal, self.request_timeout) {
            (Some(refusal), _) => refusal,
            // Boxed: a timer makes the future ~2 KB larger, and most
            // servers run without a timeout.
            (None, Some(limit)) => {
                Box::pin(crate::limits::with_timeout(limit, self.guarded(req, route))).await
            }
            (None, None) => self.guarded(req, route).await,
        };
        self.record(probe, &resp);
        resp
    }

    /// What request metrics need from `req` (nothing when they are off).
    fn probe(&self, req: &Request) -> Option<Probe> {
        self.metrics.as_ref()?;
        Some(Probe {
            // MatchedPath is an Arc<str> inside: cloning it allocates nothing.
            matched: req.extensions().get::<MatchedPath>().cloned(),
            method: crate::metrics::method_label(req.method()),
            start: Instant::now(),
        })
    }

    /// Records `resp` in the request metrics.
    fn record(&self, probe: Option<Probe>, resp: &Response) {
        if let (Some(m), Some(p)) = (&self.metrics, probe) {
            m.http.record(
                p.matched.as_ref().map_or("unmatched", |p| p.as_str()),
                p.method,
                resp.status().as_u16(),
                p.start.elapsed(),
            );
        }
    }

    /// Authentication and authorization, then the request logger around
    /// the route.
    async fn guarded<S>(&self, mut req: Request, route: S) -> Response
    where
        S: tower::Service<Request, Response = Response, Error = Infallible> + Send,
        S::Future: Send,
    {
        if let Some(auth) = &self.auth {
            if let Err(denied) = auth.check(&mut req).await {
                return denied.into_http();
            }
        }
        match self.logger.as_ref().filter(|l| l.wants(&req)) {
            Some(logging) => {
                let exchange = logging.begin(&mut req);
                exchange.answer(call(route, req).await).await
            }
            None => call(route, req).await,
        }
    }
}

/// A request's labels and start time for the request metrics.
struct Probe {
    matched: Option<MatchedPath>,
    method: &'static str,
    start: Instant,
}

/// Calls the route (axum routes are always ready and never fail).
async fn call<S>(route: S, req: Request) -> Response
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    match route.oneshot(req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    }
}

/// The future of an [`EdgeService`].
pub type BoxFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

/// Tower layer applying an [`Edge`] to every route of a router.
#[derive(Clone)]
pub struct EdgeLayer(pub Arc<Edge>);

impl<S> tower::Layer<S> for EdgeLayer {
    type Service = EdgeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EdgeService {
            edge: Arc::clone(&self.0),
            inner,
        }
    }
}

/// Service made by [`EdgeLayer`].
#[derive(Clone)]
pub struct EdgeService<S> {
    edge: Arc<Edge>,
    inner: S,
}

impl<S> tower::Service<Request> for EdgeService<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // For the fast path, which calls the route itself (axum routes are
        // always ready).
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let edge = Arc::clone(&self.edge);
        // A sampled request runs inside its server span (`traced_in` boxes
        // the future it wraps); deciding here keeps the span out of every
        // other request's future.
        if edge.tracing {
            if let Some(span) = crate::telemetry::http_server_span(&req) {
                let route = self.inner.clone();
                return Box::pin(async move {
                    let served = async move { edge.metered(req, route).await };
                    let resp = ferroserve_core::trace::traced_in(served, span.clone()).await;
                    crate::telemetry::record_http_status(&span, resp.status());
                    Ok(resp)
                });
            }
        }
        // Fast path: nothing to wait for before the route (no timeout, auth
        // decided without fetching keys): call the route here and keep only
        // its future, the metrics' start and the logged exchange.
        if edge.request_timeout.is_none() {
            let probe = edge.probe(&req);
            let refusal = match edge
                .max_header_bytes
                .and_then(|max| crate::limits::header_limit_refusal(req.headers(), max))
            {
                Some(refusal) => Some(refusal),
                None => match edge.auth.as_ref().map(|a| a.check_now(&mut req)) {
                    None | Some(Some(Ok(()))) => None,
                    Some(Some(Err(denied))) => Some(denied.into_http()),
                    // A JWT whose key must be fetched first: the slow path.
                    Some(None) => return self.slow(edge, req),
                },
            };
            if let Some(refusal) = refusal {
                edge.record(probe, &refusal);
                return Box::pin(std::future::ready(Ok(refusal)));
            }
            let exchange = match &edge.logger {
                Some(l) if l.wants(&req) => Some(l.begin(&mut req)),
                _ => None,
            };
            let fut = self.inner.call(req);
            return Box::pin(async move {
                let Ok(mut resp) = fut.await;
                if let Some(exchange) = exchange {
                    resp = exchange.answer(resp).await;
                }
                edge.record(probe, &resp);
                Ok(resp)
            });
        }
        self.slow(edge, req)
    }
}

impl<S> EdgeService<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    /// Serves `req` with a clone of the route in one future holding every
    /// step.
    fn slow(&self, edge: Arc<Edge>, req: Request) -> BoxFuture {
        let route = self.inner.clone();
        Box::pin(async move { Ok(edge.metered(req, route).await) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every request's future is moved into a box once: keep it small
    /// (nested `async fn`s, a timer or a rarely taken path held inline
    /// once made it 5 KB).
    #[test]
    fn request_future_stays_small() {
        let edge = Edge::default();
        let route = tower::service_fn(|_r: Request| async {
            Ok::<_, Infallible>(Response::new(axum::body::Body::empty()))
        });
        let fut = edge.metered(Request::new(axum::body::Body::empty()), route);
        let size = std::mem::size_of_val(&fut);
        assert!(size <= 3 * 1024, "edge future is {size} bytes");
    }
}

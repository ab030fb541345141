//! The HTTP edge: every per-request feature of the REST front end in one
//! step around the whole router, in this order (outermost first): the
//! tracing server span, request metrics, the header size limit, the
//! request timeout, authentication and authorization, and the request
//! logger (authorized requests only). CORS, when configured, sits outside
//! it (preflights carry no credentials); [`super::App`] puts them together.
//!
//! Around the router rather than as a `Router::layer`, because axum wraps
//! every route in a boxed service for a layer and clones it (with the
//! state beneath it) for each request: measurable next to a model that
//! answers in ~30 µs (bench/overhead). The route a request matched, which
//! metrics, spans and the logger need before the router has run, comes
//! from a [`RouteTable`] built from the same patterns as the router. A
//! request with nothing to wait for before its handler (no timeout, auth
//! decided without fetching keys; the logger records the body as the
//! handler reads it) calls the router at once and keeps only the router's
//! future, the metrics' start and the logger's exchange; any other costs
//! one boxed future. A feature that is off costs a branch; with all of
//! them off, requests go straight to the router.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::response::Response;
use axum::Router;
use tower::{Service as _, ServiceExt as _};

use super::routes::RouteTable;
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
    /// The router's route patterns (for the labels of metrics and spans,
    /// and which routes the logger logs).
    pub routes: RouteTable,
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
    async fn metered(&self, req: Request, matched: &'static str, router: Router) -> Response {
        let probe = self.probe(&req, matched);
        let refusal = self
            .max_header_bytes
            .and_then(|max| crate::limits::header_limit_refusal(req.headers(), max));
        let resp = match (refusal, self.request_timeout) {
            (Some(refusal), _) => refusal,
            // Boxed: a timer makes the future ~2 KB larger, and most
            // servers run without a timeout.
            (None, Some(limit)) => {
                Box::pin(crate::limits::with_timeout(
                    limit,
                    self.guarded(req, matched, router),
                ))
                .await
            }
            (None, None) => self.guarded(req, matched, router).await,
        };
        self.record(probe, &resp);
        resp
    }

    /// What request metrics need from `req` (nothing when they are off).
    fn probe(&self, req: &Request, matched: &'static str) -> Option<Probe> {
        self.metrics.as_ref()?;
        Some(Probe {
            matched,
            method: crate::metrics::method_label(req.method()),
            start: Instant::now(),
        })
    }

    /// Records `resp` in the request metrics.
    fn record(&self, probe: Option<Probe>, resp: &Response) {
        if let (Some(m), Some(p)) = (&self.metrics, probe) {
            m.http.record(
                p.matched,
                p.method,
                resp.status().as_u16(),
                p.start.elapsed(),
            );
        }
    }

    /// Authentication and authorization, then the request logger around
    /// the route.
    async fn guarded(&self, mut req: Request, matched: &'static str, router: Router) -> Response {
        if let Some(auth) = &self.auth {
            if let Err(denied) = auth.check(&mut req).await {
                return denied.into_http();
            }
        }
        match self.logger.as_ref().filter(|l| l.wants(&req, matched)) {
            Some(logging) => {
                let exchange = logging.begin(&mut req).bind(logging);
                exchange.answer(call(router, req).await).await
            }
            None => call(router, req).await,
        }
    }
}

/// A request's labels and start time for the request metrics.
struct Probe {
    matched: &'static str,
    method: &'static str,
    start: Instant,
}

/// Calls the router (which is always ready and never fails).
async fn call(router: Router, req: Request) -> Response {
    match router.oneshot(req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    }
}

/// A boxed future answering one request.
pub type BoxFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

/// Serves `req` through `edge` and `router`.
pub(super) fn serve(edge: &Arc<Edge>, router: &Router, mut req: Request) -> BoxFuture {
    let matched = edge.routes.matched(req.uri().path());
    // A sampled request runs inside its server span (`traced_in` boxes the
    // future it wraps); deciding here keeps the span out of every other
    // request's future.
    if edge.tracing {
        if let Some(span) = crate::telemetry::http_server_span(&req, matched) {
            let (edge, router) = (Arc::clone(edge), router.clone());
            return Box::pin(async move {
                let served = async move { edge.metered(req, matched, router).await };
                let resp = ferroserve_core::trace::traced_in(served, span.clone()).await;
                crate::telemetry::record_http_status(&span, resp.status());
                Ok(resp)
            });
        }
    }
    // Fast path: nothing to wait for before the router (no timeout, auth
    // decided without fetching keys): call it here and keep only its future,
    // the metrics' start and the logged exchange.
    if edge.request_timeout.is_none() {
        let probe = edge.probe(&req, matched);
        let refusal = match edge
            .max_header_bytes
            .and_then(|max| crate::limits::header_limit_refusal(req.headers(), max))
        {
            Some(refusal) => Some(refusal),
            None => match edge.auth.as_ref().map(|a| a.check_now(&mut req)) {
                None | Some(Some(Ok(()))) => None,
                Some(Some(Err(denied))) => Some(denied.into_http()),
                // A JWT whose key must be fetched first: the slow path.
                Some(None) => return slow(edge, router, req, matched),
            },
        };
        if let Some(refusal) = refusal {
            edge.record(probe, &refusal);
            return Box::pin(std::future::ready(Ok(refusal)));
        }
        let started = match &edge.logger {
            Some(l) if l.wants(&req, matched) => Some(l.begin(&mut req)),
            _ => None,
        };
        let fut = router.clone().call(req);
        let edge = Arc::clone(edge);
        return Box::pin(async move {
            // Tied to the logger before the handler runs: an exchange given
            // up (dropped) still logs its request.
            let exchange = started.zip(edge.logger.as_ref()).map(|(s, l)| s.bind(l));
            let Ok(mut resp) = fut.await;
            if let Some(exchange) = exchange {
                resp = exchange.answer(resp).await;
            }
            edge.record(probe, &resp);
            Ok(resp)
        });
    }
    slow(edge, router, req, matched)
}

/// Serves `req` in one future holding every step.
fn slow(edge: &Arc<Edge>, router: &Router, req: Request, matched: &'static str) -> BoxFuture {
    let (edge, router) = (Arc::clone(edge), router.clone());
    Box::pin(async move { Ok(edge.metered(req, matched, router).await) })
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
        let fut = edge.metered(
            Request::new(axum::body::Body::empty()),
            crate::http::routes::UNMATCHED,
            Router::new(),
        );
        let size = std::mem::size_of_val(&fut);
        assert!(size <= 3 * 1024, "edge future is {size} bytes");
    }
}

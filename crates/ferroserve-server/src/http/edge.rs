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
//! future, the metrics' start and the logger's exchange, in a future
//! written out by hand ([`Routed`]) and not boxed; any other costs one
//! boxed future. A feature that is off costs a branch; with all of them
//! off, requests go straight to the router.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::response::Response;
use axum::routing::future::RouteFuture;
use axum::Router;
use tower::Service as _;

use super::app::AppFuture;
use super::routes::RouteTable;
use crate::auth::HttpAuth;
use crate::logger::{Answer, HttpLogging, Started};
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
    async fn metered(
        self: &Arc<Self>,
        req: Request,
        matched: &'static str,
        router: Router,
    ) -> Response {
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
    async fn guarded(
        self: &Arc<Self>,
        mut req: Request,
        matched: &'static str,
        mut router: Router,
    ) -> Response {
        if let Some(auth) = &self.auth {
            if let Err(denied) = auth.check(&mut req).await {
                return denied.into_http();
            }
        }
        let started = self.begin_logging(&mut req, matched);
        let Ok(resp) = Routed::new(router.call(req), Arc::clone(self), None, started).await;
        resp
    }

    /// Starts logging `req` when the logger is on and logs such requests
    /// (inference POSTs).
    fn begin_logging(&self, req: &mut Request, matched: &'static str) -> Option<Started> {
        match &self.logger {
            Some(l) if l.wants(req, matched) => Some(l.begin(req)),
            _ => None,
        }
    }
}

/// A request's labels and start time for the request metrics.
struct Probe {
    matched: &'static str,
    method: &'static str,
    start: Instant,
}

/// A boxed future answering one request.
pub type BoxFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

/// Serves `req` through `edge` and `router`.
pub(super) fn serve(edge: &Arc<Edge>, router: &Router, mut req: Request) -> AppFuture {
    let matched = edge.routes.matched(req.uri().path());
    // A sampled request runs inside its server span (`traced_in` boxes the
    // future it wraps); deciding here keeps the span out of every other
    // request's future.
    if edge.tracing {
        if let Some(span) = crate::telemetry::http_server_span(&req, matched) {
            let (edge, router) = (Arc::clone(edge), router.clone());
            return AppFuture::Boxed(Box::pin(async move {
                let served = async move { edge.metered(req, matched, router).await };
                let resp = ferroserve_core::trace::traced_in(served, span.clone()).await;
                crate::telemetry::record_http_status(&span, resp.status());
                Ok(resp)
            }));
        }
    }
    // Fast path: nothing to wait for before the router (no timeout, auth
    // decided without fetching keys): call it here; what is left to do once
    // it answers is in [`Routed`], not boxed.
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
            return AppFuture::Boxed(Box::pin(std::future::ready(Ok(refusal))));
        }
        let started = edge.begin_logging(&mut req, matched);
        let route = router.clone().call(req);
        return AppFuture::Edge(Routed::new(route, Arc::clone(edge), probe, started));
    }
    slow(edge, router, req, matched)
}

/// Serves `req` in one future holding every step.
fn slow(edge: &Arc<Edge>, router: &Router, req: Request, matched: &'static str) -> AppFuture {
    let (edge, router) = (Arc::clone(edge), router.clone());
    AppFuture::Boxed(Box::pin(async move {
        Ok(edge.metered(req, matched, router).await)
    }))
}

/// The router's future, then what the edge does with its answer: the
/// request logger's exchange and the request metrics. Written out rather
/// than an `async` block so that the usual request needs no box (only a
/// body not yet read whole, or an answer that is not, takes the logger's
/// boxed [`Answer::Later`]). Dropped before the answer (the client went
/// away), it still logs the request (see [`crate::logger::Exchange`]).
pub struct Routed {
    route: RouteFuture<Infallible>,
    edge: Arc<Edge>,
    probe: Option<Probe>,
    /// The logged exchange until the router answers.
    started: Option<Started>,
    /// The logger finishing the answer, when it could not at once.
    later: Option<Pin<Box<dyn Future<Output = Response> + Send>>>,
}

impl Routed {
    fn new(
        route: RouteFuture<Infallible>,
        edge: Arc<Edge>,
        probe: Option<Probe>,
        started: Option<Started>,
    ) -> Self {
        Routed {
            route,
            edge,
            probe,
            started,
            later: None,
        }
    }
}

impl Future for Routed {
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let later = match &mut this.later {
            Some(later) => later,
            None => {
                let Ok(resp) = ready!(Pin::new(&mut this.route).poll(cx));
                let answer = match this.started.take().zip(this.edge.logger.as_ref()) {
                    Some((started, logging)) => started.bind(logging).answer_now(resp, cx),
                    None => Answer::Ready(resp),
                };
                match answer {
                    Answer::Ready(resp) => return Poll::Ready(Ok(this.finish(resp))),
                    Answer::Later(later) => this.later.insert(later),
                }
            }
        };
        let resp = ready!(later.as_mut().poll(cx));
        this.later = None;
        Poll::Ready(Ok(this.finish(resp)))
    }
}

impl Routed {
    /// Records `resp` in the request metrics and hands it on.
    fn finish(&mut self, resp: Response) -> Response {
        self.edge.record(self.probe.take(), &resp);
        resp
    }
}

impl Drop for Routed {
    fn drop(&mut self) {
        // Given up before the answer: the exchange logs a request it read.
        if let Some((started, logging)) = self.started.take().zip(self.edge.logger.as_ref()) {
            drop(started.bind(logging));
        }
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
        let edge = Arc::new(Edge::default());
        let fut = edge.metered(
            Request::new(axum::body::Body::empty()),
            crate::http::routes::UNMATCHED,
            Router::new(),
        );
        let size = std::mem::size_of_val(&fut);
        assert!(size <= 3 * 1024, "edge future is {size} bytes");
    }

    /// The edge's unboxed future logs an answered exchange, and the request
    /// of one given up (dropped) after its handler read the body.
    #[tokio::test]
    async fn the_fast_path_logs_answered_and_given_up_exchanges() {
        use crate::logger::{Logger, LoggerConfig};
        let dir = std::env::temp_dir().join(format!("ferro-edge-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.jsonl");
        let _ = std::fs::remove_file(&path);
        let config = LoggerConfig::new(format!("file://{}", path.display()));
        let logger =
            Logger::start(&config, &crate::egress::Policy::open(), "http://localhost/").unwrap();
        let pattern = "/v2/models/{m}/infer";
        let mut routes = RouteTable::default();
        routes.add(pattern).unwrap();
        let router = Router::new().route(
            pattern,
            axum::routing::post(|body: String| async move {
                if body == "hang" {
                    std::future::pending::<()>().await;
                }
                format!("answer to {body}")
            }),
        );
        let edge = Arc::new(Edge {
            logger: Some(HttpLogging {
                logger: Arc::clone(&logger),
                max_body_bytes: 1 << 20,
            }),
            routes,
            ..Edge::default()
        });
        let post = |id: &str, body: &'static str| {
            Request::post("/v2/models/m/infer")
                .header("ce-id", id)
                .body(axum::body::Body::from(body))
                .unwrap()
        };
        let fut = serve(&edge, &router, post("answered", "x"));
        assert!(
            matches!(fut, AppFuture::Edge(_)),
            "the fast path is not boxed"
        );
        let resp = fut.await.unwrap();
        let got = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(&got[..], b"answer to x");
        let mut fut = serve(&edge, &router, post("gone", "hang"));
        let waited = tokio::time::timeout(Duration::from_millis(50), &mut fut).await;
        assert!(waited.is_err(), "the handler hangs");
        drop(fut);
        logger.shutdown(Duration::from_secs(10)).await;
        let lines: Vec<(String, String, String)> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
                // Bodies that are not JSON come in base64.
                use base64::Engine as _;
                let data = base64::engine::general_purpose::STANDARD
                    .decode(s("data_base64"))
                    .unwrap();
                (s("id"), s("type"), String::from_utf8(data).unwrap())
            })
            .collect();
        let _ = std::fs::remove_dir_all(&dir);
        let want = |id: &str, kind: &str, data: &str| {
            let t = format!("org.kubeflow.serving.inference.{kind}");
            (id.to_string(), t, data.to_string())
        };
        assert_eq!(
            lines,
            [
                want("answered", "request", "x"),
                want("answered", "response", "answer to x"),
                want("gone", "request", "hang"),
            ]
        );
    }
}

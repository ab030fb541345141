//! The HTTP side of the request logger: the step of the HTTP edge that hands the
//! bodies of inference POSTs to the logger, and a body wrapper that records
//! a streamed (`text/event-stream`) answer as it is sent and logs it once
//! the stream ends or the client goes away.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http_body::Frame;

use super::{Correlation, EventKind, Logger};

/// The routes whose POSTs are inference calls (logged).
const LOGGED_ROUTES: &[&str] = &[
    "/v2/models/{m}/infer",
    "/v2/models/{m}/versions/{v}/infer",
    "/v1/models/{m}",
    "/openai/v1/completions",
    "/openai/v1/chat/completions",
    "/openai/v1/embeddings",
    "/v1/completions",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/invocations",
];

/// The HTTP request logger (see [`HttpLogging::around`]).
#[derive(Clone)]
pub struct HttpLogging {
    /// The logger.
    pub logger: Arc<Logger>,
    /// Largest request body accepted (the body is read here when logged),
    /// and largest streamed answer recorded.
    pub max_body_bytes: usize,
}

impl HttpLogging {
    /// Whether `req` is logged: a POST to an inference route (`req` has
    /// passed the router, which records the route matched).
    pub fn wants(&self, req: &Request) -> bool {
        req.method() == Method::POST
            && req
                .extensions()
                .get::<MatchedPath>()
                .is_some_and(|p| LOGGED_ROUTES.contains(&p.as_str()))
    }

    /// Serves `req` with `next`, logging the request as received and a
    /// `200` answer as sent (a streamed one once it ends). Other answers
    /// are not logged, as KServe.
    pub async fn around<F, Fut>(&self, req: Request, next: F) -> Response
    where
        F: FnOnce(Request) -> Fut,
        Fut: Future<Output = Response>,
    {
        let logger = &self.logger;
        let corr = logger.begin(|name| req.headers().get(name).map(HeaderValue::as_bytes));
        let req = if logger.logs_request() {
            let (parts, body) = req.into_parts();
            let bytes =
                match crate::http::body::read_body(&parts.headers, body, self.max_body_bytes).await
                {
                    Ok(b) => b,
                    Err(e) => return crate::http::error::ApiError(e).into_response(),
                };
            logger.log(
                EventKind::Request,
                &corr,
                content_type(&parts.headers),
                bytes.clone(),
            );
            Request::from_parts(parts, Body::from(bytes))
        } else {
            req
        };
        let resp = next(req).await;
        if !logger.logs_response() || resp.status() != StatusCode::OK {
            return resp;
        }
        let ct = content_type(resp.headers());
        let (parts, body) = resp.into_parts();
        if ct.as_bytes().starts_with(b"text/event-stream") {
            let tee = Recorded {
                inner: body,
                seen: BytesMut::new(),
                cap: self.max_body_bytes,
                over: false,
                log: Some((Arc::clone(logger), corr, ct)),
            };
            return Response::from_parts(parts, Body::new(tee));
        }
        match axum::body::to_bytes(body, usize::MAX).await {
            Ok(bytes) => {
                logger.log(EventKind::Response, &corr, ct, bytes.clone());
                Response::from_parts(parts, Body::from(bytes))
            }
            Err(e) => crate::http::error::ApiError(ferroserve_core::Error::Internal(format!(
                "failed to read the response body: {e}"
            )))
            .into_response(),
        }
    }
}

fn content_type(h: &HeaderMap) -> HeaderValue {
    h.get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or(HeaderValue::from_static("application/json"))
}

/// A streamed answer passing through, recorded up to `cap` bytes and
/// logged as one response event when it ends or is dropped (a client that
/// disconnects gets what it was sent logged). An answer over `cap` is not
/// logged; it is counted as dropped and warned about.
struct Recorded {
    inner: Body,
    seen: BytesMut,
    cap: usize,
    over: bool,
    log: Option<(Arc<Logger>, Correlation, HeaderValue)>,
}

impl Recorded {
    fn finish(&mut self) {
        let Some((logger, corr, ct)) = self.log.take() else {
            return;
        };
        if self.over {
            logger.count_unlogged_stream(self.cap);
        } else {
            let body = std::mem::take(&mut self.seen).freeze();
            logger.log(EventKind::Response, &corr, ct, body);
        }
    }
}

impl http_body::Body for Recorded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if this.seen.len() + data.len() > this.cap {
                        this.over = true;
                        this.seen = BytesMut::new();
                    } else if !this.over {
                        this.seen.extend_from_slice(data);
                    }
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => this.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Recorded {
    fn drop(&mut self) {
        self.finish();
    }
}

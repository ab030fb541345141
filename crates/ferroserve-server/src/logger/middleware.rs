//! The HTTP side of the request logger: the step of the HTTP edge that logs
//! the bodies of inference POSTs.
//!
//! The request body is recorded as the handler reads it ([`RequestTee`]) and
//! logged once read to its end, so logging adds no wait before the handler
//! (and no second buffering of the body). A body the handler leaves unread
//! (an unknown model, say) is read and logged before the answer goes out.
//! A `200` answer is logged as it is; a streamed (`text/event-stream`) one
//! is recorded as it is sent and logged once the stream ends or the client
//! goes away ([`Recorded`]).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http_body::{Body as _, Frame};
use http_body_util::BodyExt as _;
use parking_lot::Mutex;

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

/// Request bodies up to this size are copied out of the connection's read
/// buffer when logged: an event holding a slice of it for the milliseconds
/// until delivery would make the connection allocate a new buffer for every
/// request.
const COPY_BELOW: usize = 16 << 10;

/// The HTTP request logger (see [`HttpLogging::begin`]).
#[derive(Clone)]
pub struct HttpLogging {
    /// The logger.
    pub logger: Arc<Logger>,
    /// Largest request body logged (larger ones are refused by the
    /// handlers), and largest streamed answer recorded.
    pub max_body_bytes: usize,
}

impl HttpLogging {
    /// Whether `req`, which matched `route` (its pattern), is logged: a
    /// POST to an inference route.
    pub fn wants(&self, req: &Request, route: &str) -> bool {
        req.method() == Method::POST && LOGGED_ROUTES.contains(&route)
    }

    /// Starts logging `req`: its body (when requests are logged) is
    /// recorded as the handler reads it and logged as the request event
    /// once read to the end. The answer goes through [`Exchange::answer`].
    pub fn begin(&self, req: &mut Request) -> Exchange {
        let logger = &self.logger;
        let shared = Arc::new(Shared {
            corr: logger.begin(req.headers()),
            logger: Arc::clone(logger),
            cap: self.max_body_bytes,
            unread: Mutex::new(None),
        });
        if logger.logs_request() {
            let inner = std::mem::replace(req.body_mut(), Body::empty());
            *req.body_mut() = Body::new(RequestTee {
                inner,
                seen: Vec::new(),
                size: 0,
                content_type: content_type(req.headers()),
                reading: true,
                shared: Arc::clone(&shared),
            });
        }
        Exchange(shared)
    }
}

/// What a logged request's body and its answer share.
struct Shared {
    logger: Arc<Logger>,
    corr: Correlation,
    cap: usize,
    /// A request body the handler dropped before its end, handed back by
    /// the tee to be read by [`Exchange::answer`].
    unread: Mutex<Option<Unread>>,
}

/// The rest of a request body the handler did not read.
struct Unread {
    rest: Body,
    seen: Vec<Bytes>,
    size: usize,
    content_type: HeaderValue,
}

impl Shared {
    /// Logs the request body made of `chunks` (`size` bytes in all).
    fn log_request(&self, content_type: HeaderValue, chunks: Vec<Bytes>, size: usize) {
        let body = match <[Bytes; 1]>::try_from(chunks) {
            Ok([one]) if one.len() >= COPY_BELOW => one,
            Ok([one]) => Bytes::copy_from_slice(&one),
            Err(chunks) => {
                let mut all = BytesMut::with_capacity(size);
                for c in &chunks {
                    all.extend_from_slice(c);
                }
                all.freeze()
            }
        };
        self.logger
            .log(EventKind::Request, &self.corr, content_type, body);
    }
}

/// A logged request on its way through the handler (see
/// [`HttpLogging::begin`]).
pub struct Exchange(Arc<Shared>);

impl Exchange {
    /// Logs the request body the handler left unread (reading it now, as
    /// the request logger always reads the whole request) and, when
    /// responses are logged, a `200` answer: a streamed one once it ends,
    /// any other now. Other answers are not logged, as KServe.
    pub async fn answer(self, resp: Response) -> Response {
        let shared = &self.0;
        let unread = shared.unread.lock().take();
        if let Some(u) = unread {
            let room = shared.cap.saturating_sub(u.size);
            // Past the limit or cut short: not logged (the handler refused
            // it or the client went away).
            if let Ok(rest) = http_body_util::Limited::new(u.rest, room).collect().await {
                let rest = rest.to_bytes();
                let (mut seen, size) = (u.seen, u.size + rest.len());
                if !rest.is_empty() {
                    seen.push(rest);
                }
                shared.log_request(u.content_type, seen, size);
            }
        }
        let logger = &shared.logger;
        if !logger.logs_response() || resp.status() != StatusCode::OK {
            return resp;
        }
        let ct = content_type(resp.headers());
        let (parts, body) = resp.into_parts();
        if ct.as_bytes().starts_with(b"text/event-stream") {
            let tee = Recorded {
                inner: body,
                seen: BytesMut::new(),
                cap: shared.cap,
                over: false,
                log: Some((Arc::clone(logger), shared.corr.clone(), ct)),
            };
            return Response::from_parts(parts, Body::new(tee));
        }
        match axum::body::to_bytes(body, usize::MAX).await {
            Ok(bytes) => {
                logger.log(EventKind::Response, &shared.corr, ct, bytes.clone());
                Response::from_parts(parts, Body::from(bytes))
            }
            Err(e) => crate::http::error::ApiError(ferroserve_core::Error::Internal(format!(
                "failed to read the response body: {e}"
            )))
            .into_response(),
        }
    }
}

/// The content type of a logged body (`application/json` when none is
/// given). Never a clone of the request's header, which shares the
/// connection's read buffer (see [`COPY_BELOW`]): the usual types are
/// static, others copied.
fn content_type(h: &HeaderMap) -> HeaderValue {
    const KNOWN: &[&str] = &[
        "application/json",
        "application/octet-stream",
        "text/event-stream",
        "text/csv",
    ];
    let Some(v) = h.get(header::CONTENT_TYPE) else {
        return HeaderValue::from_static("application/json");
    };
    match KNOWN.iter().find(|k| k.as_bytes() == v.as_bytes()) {
        Some(k) => HeaderValue::from_static(k),
        None => HeaderValue::from_bytes(v.as_bytes()).unwrap_or_else(|_| v.clone()),
    }
}

/// A request body passing to the handler, recorded (as reference-counted
/// chunks) and logged once read to its end. A body past the limit, or one
/// whose reading fails, is not logged (the handler refuses it); one dropped
/// before its end is handed back to [`Exchange::answer`].
struct RequestTee {
    inner: Body,
    seen: Vec<Bytes>,
    size: usize,
    content_type: HeaderValue,
    /// Neither logged nor given up yet.
    reading: bool,
    shared: Arc<Shared>,
}

impl RequestTee {
    fn finish(&mut self) {
        if std::mem::take(&mut self.reading) {
            let chunks = std::mem::take(&mut self.seen);
            let ct = std::mem::replace(&mut self.content_type, HeaderValue::from_static(""));
            self.shared.log_request(ct, chunks, self.size);
        }
    }
}

impl http_body::Body for RequestTee {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) if this.reading => {
                if let Some(data) = frame.data_ref() {
                    this.size += data.len();
                    if this.size > this.shared.cap {
                        this.reading = false;
                        this.seen = Vec::new();
                    } else if !data.is_empty() {
                        this.seen.push(data.clone());
                    }
                }
                if this.inner.is_end_stream() {
                    this.finish();
                }
            }
            Poll::Ready(None) => this.finish(),
            Poll::Ready(Some(Err(_))) => this.reading = false,
            _ => {}
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

impl Drop for RequestTee {
    fn drop(&mut self) {
        if !self.reading {
            return;
        }
        if self.inner.is_end_stream() {
            self.finish();
        } else if self.size as u64 + self.inner.size_hint().lower() <= self.shared.cap as u64 {
            *self.shared.unread.lock() = Some(Unread {
                rest: std::mem::replace(&mut self.inner, Body::empty()),
                seen: std::mem::take(&mut self.seen),
                size: self.size,
                content_type: std::mem::replace(
                    &mut self.content_type,
                    HeaderValue::from_static(""),
                ),
            });
        }
    }
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

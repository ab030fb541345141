//! The HTTP side of the request logger: the step of the HTTP edge that logs
//! the bodies of inference POSTs.
//!
//! The request body is recorded as the handler reads it ([`RequestTee`]),
//! so logging adds no wait before the handler (and no second buffering of
//! the body); a body the handler leaves unread (an unknown model, say) is
//! read before the answer goes out. The request is logged with its answer,
//! in one step ([`Exchange::answer_now`]), at the time it was read to its end;
//! an exchange given up before its answer (the client went away) logs the
//! request when it is dropped. A `200` answer is logged as it is; a streamed
//! (`text/event-stream`) one is recorded as it is sent and logged once the
//! stream ends or the client goes away ([`Recorded`]).

use std::borrow::Borrow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http_body::{Body as _, Frame};
use http_body_util::BodyExt as _;
use parking_lot::Mutex;

use super::event::Entry;
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
    /// recorded as the handler reads it. [`Started::bind`] then ties the
    /// exchange to this logger for its answer.
    pub fn begin(&self, req: &mut Request) -> Started {
        let headers = super::RequestHeaders::of(req.headers());
        let corr = self.logger.begin_with(&headers);
        let content_type = self.logger.logs_request().then(|| {
            headers
                .content_type
                .map_or_else(json_content_type, known_content_type)
        });
        let capture = content_type.map(|content_type| {
            let capture = Arc::new(Mutex::new(Capture::Reading));
            let inner = std::mem::replace(req.body_mut(), Body::empty());
            *req.body_mut() = Body::new(RequestTee {
                inner,
                seen: Chunks::default(),
                cap: self.max_body_bytes,
                reading: true,
                capture: Arc::clone(&capture),
            });
            (capture, content_type)
        });
        Started { corr, capture }
    }
}

/// A request body as the tee leaves it for the exchange.
enum Capture {
    /// Still being read (or given up: over the limit, or reading failed).
    Reading,
    /// Read to its end at `time`.
    Read { chunks: Chunks, time: SystemTime },
    /// Dropped by the handler before its end.
    Unread { rest: Body, seen: Chunks },
}

/// The chunks of a body read so far (reference-counted, not copied): the
/// first held inline, as most bodies come in one.
#[derive(Default)]
struct Chunks {
    first: Option<Bytes>,
    more: Vec<Bytes>,
    /// Bytes in all.
    size: usize,
}

impl Chunks {
    fn push(&mut self, chunk: Bytes) {
        self.size += chunk.len();
        if chunk.is_empty() {
            return;
        }
        match self.first {
            None => self.first = Some(chunk),
            Some(_) => self.more.push(chunk),
        }
    }

    /// The first chunk as it is when it is all, else every chunk joined.
    fn joined(self) -> Bytes {
        match self.first {
            None => Bytes::new(),
            Some(first) if self.more.is_empty() => first,
            Some(first) => {
                let mut all = BytesMut::with_capacity(self.size);
                all.extend_from_slice(&first);
                for c in &self.more {
                    all.extend_from_slice(c);
                }
                all.freeze()
            }
        }
    }
}

/// A logged request on its way to the handler, not yet tied to its logger
/// (see [`HttpLogging::begin`]).
pub struct Started {
    corr: Correlation,
    /// The recorded request body and its content type, when requests are
    /// logged.
    capture: Option<(Arc<Mutex<Capture>>, HeaderValue)>,
}

impl Started {
    /// Ties the exchange to `logging` (the one that began it: borrowed, or
    /// a handle of its own) until its answer.
    pub fn bind<L: Borrow<HttpLogging>>(self, logging: L) -> Exchange<L> {
        Exchange {
            logging,
            corr: self.corr,
            capture: self.capture,
        }
    }
}

/// A logged request in the handler: [`Exchange::answer_now`] logs it with
/// its answer; dropped before, it logs the request if it was read.
pub struct Exchange<L: Borrow<HttpLogging>> {
    logging: L,
    corr: Correlation,
    capture: Option<(Arc<Mutex<Capture>>, HeaderValue)>,
}

/// A request body as an exchange logs it: the body, when it was read and
/// its content type.
type LoggedRequest = (Bytes, SystemTime, HeaderValue);

/// The rest of a request body the handler left unread, being read.
type ReadingRest = Pin<Box<dyn Future<Output = Option<LoggedRequest>> + Send>>;

/// The answer of a logged exchange: at once, as most are, or once the rest
/// of a body is read (a boxed future: the rare path stays out of every
/// request's future).
pub enum Answer {
    /// The answer, logged.
    Ready(Response),
    /// The answer once the rest of the request or the answer is read.
    Later(Pin<Box<dyn Future<Output = Response> + Send>>),
}

impl<L: Borrow<HttpLogging>> Exchange<L> {
    fn logging(&self) -> &HttpLogging {
        self.logging.borrow()
    }

    /// This exchange with a handle of its own to the logger, for a boxed
    /// future (this one, left without its capture, logs nothing).
    fn owned(&mut self) -> Exchange<HttpLogging> {
        Exchange {
            logging: self.logging().clone(),
            corr: self.corr.clone(),
            capture: self.capture.take(),
        }
    }

    /// The request body the handler read and when it was read (`Ok(None)`
    /// when requests are not logged, or the body was over the limit or cut
    /// short: the handler refused it or the client went away); or, when the
    /// handler left it unread, a future reading the rest (as the request
    /// logger always reads the whole request).
    fn take_request(&mut self) -> Result<Option<LoggedRequest>, ReadingRest> {
        let Some((capture, ct)) = self.capture.take() else {
            return Ok(None);
        };
        let taken = std::mem::replace(&mut *capture.lock(), Capture::Reading);
        match taken {
            Capture::Reading => Ok(None),
            Capture::Read { chunks, time } => Ok(Some((chunks.joined(), time, ct))),
            Capture::Unread { rest, seen } => {
                let room = self.logging().max_body_bytes.saturating_sub(seen.size);
                Err(Box::pin(async move {
                    let body = read_rest(rest, seen, room).await.ok()?;
                    Some((body, SystemTime::now(), ct))
                }))
            }
        }
    }

    /// Logs the request and, when responses are logged, a `200` answer: a
    /// streamed one once it ends, any other with the request. Other answers
    /// are not logged, as KServe. The answer's body is polled once here
    /// (with `cx`, the task's context); an answer whose body is not all
    /// ready, or a request the handler left unread, is finished by
    /// [`Answer::Later`]. (The request is taken from the capture only once
    /// the answer is read: given up before, the exchange still logs it when
    /// dropped.)
    pub fn answer_now(mut self, resp: Response, cx: &mut Context<'_>) -> Answer {
        let logged_ok = self.logging().logger.logs_response() && resp.status() == StatusCode::OK;
        let ct = content_type(resp.headers());
        if !logged_ok || ct.as_bytes().starts_with(b"text/event-stream") {
            return self.with_request(Finish::Pass {
                resp,
                logged_ok,
                ct,
            });
        }
        let (parts, mut body) = resp.into_parts();
        let read = match Pin::new(&mut body).poll_frame(cx) {
            Poll::Ready(None) => Ok(Bytes::new()),
            Poll::Ready(Some(Err(e))) => Err(e),
            Poll::Ready(Some(Ok(frame))) if body.is_end_stream() => {
                Ok(frame.into_data().unwrap_or_default())
            }
            // More to come: read the rest, then the request.
            polled => {
                let mut first = Chunks::default();
                if let Poll::Ready(Some(Ok(frame))) = polled {
                    first.push(frame.into_data().unwrap_or_default());
                }
                let mut exchange = self.owned();
                return Answer::Later(Box::pin(async move {
                    let read = read_rest(body, first, usize::MAX).await;
                    let request = exchange.request().await;
                    exchange.finish(request, Finish::Whole { parts, ct, read })
                }));
            }
        };
        self.with_request(Finish::Whole { parts, ct, read })
    }

    /// `finish` with the request taken: at once, or in a boxed future once
    /// the rest of a body the handler left unread is read.
    fn with_request(mut self, finish: Finish) -> Answer {
        match self.take_request() {
            Ok(request) => Answer::Ready(self.finish(request, finish)),
            Err(reading) => {
                let exchange = self.owned();
                Answer::Later(Box::pin(async move {
                    let request = reading.await;
                    exchange.finish(request, finish)
                }))
            }
        }
    }

    /// Logs `request` with what `finish` says and returns the answer.
    fn finish(&self, request: Option<LoggedRequest>, finish: Finish) -> Response {
        match finish {
            Finish::Pass {
                resp,
                logged_ok,
                ct,
            } => self.pass(request, resp, logged_ok, ct),
            Finish::Whole { parts, ct, read } => self.whole(request, parts, ct, read),
        }
    }

    /// [`Self::take_request`], waiting for the rest when it is unread.
    async fn request(&mut self) -> Option<LoggedRequest> {
        match self.take_request() {
            Ok(request) => request,
            Err(reading) => reading.await,
        }
    }

    /// Logs `request`; passes `resp` on, recorded as it is sent when it is
    /// a `200` (`logged_ok`, a stream of content type `ct`).
    fn pass(
        &self,
        request: Option<LoggedRequest>,
        resp: Response,
        logged_ok: bool,
        ct: HeaderValue,
    ) -> Response {
        self.log(request, None);
        if !logged_ok {
            return resp;
        }
        let (parts, body) = resp.into_parts();
        let tee = Recorded {
            inner: body,
            seen: BytesMut::new(),
            cap: self.logging().max_body_bytes,
            over: false,
            log: Some((Arc::clone(&self.logging().logger), self.corr.clone(), ct)),
        };
        Response::from_parts(parts, Body::new(tee))
    }

    /// Logs `request` and the answer (`parts`, whose body of type `ct` was
    /// `read` whole) in one step; the answer goes on with the body read.
    fn whole(
        &self,
        request: Option<LoggedRequest>,
        parts: axum::http::response::Parts,
        ct: HeaderValue,
        read: Result<Bytes, axum::Error>,
    ) -> Response {
        match read {
            Ok(bytes) => {
                let response = Entry {
                    kind: EventKind::Response,
                    time: SystemTime::now(),
                    content_type: &ct,
                    body: &bytes,
                };
                self.log(request, Some(response));
                Response::from_parts(parts, Body::from(bytes))
            }
            Err(e) => {
                self.log(request, None);
                crate::http::error::ApiError(ferroserve_core::Error::Internal(format!(
                    "failed to read the response body: {e}"
                )))
                .into_response()
            }
        }
    }

    /// Logs `request` (when it is logged and was read) and `response`, in
    /// one step.
    fn log(&self, request: Option<LoggedRequest>, response: Option<Entry<'_>>) {
        let request = request.as_ref().map(|(body, time, ct)| Entry {
            kind: EventKind::Request,
            time: *time,
            content_type: ct,
            body,
        });
        let entries: &[Entry<'_>] = match (request, response) {
            (Some(q), Some(a)) => &[q, a],
            (Some(one), None) | (None, Some(one)) => &[one],
            (None, None) => return,
        };
        self.logging().logger.log_all(&self.corr, entries);
    }
}

/// What an exchange does with its answer once it has the request.
enum Finish {
    /// Passes `resp` on (see [`Exchange::pass`]).
    Pass {
        resp: Response,
        logged_ok: bool,
        ct: HeaderValue,
    },
    /// Logs the answer read whole with the request (see [`Exchange::whole`]).
    Whole {
        parts: axum::http::response::Parts,
        ct: HeaderValue,
        read: Result<Bytes, axum::Error>,
    },
}

/// The chunks of a body read so far and the rest of it (at most `room`
/// more bytes), joined; an error when the rest is over `room` or cannot be
/// read.
async fn read_rest(rest: Body, mut seen: Chunks, room: usize) -> Result<Bytes, axum::Error> {
    let rest = http_body_util::Limited::new(rest, room)
        .collect()
        .await
        .map_err(axum::Error::new)?
        .to_bytes();
    seen.push(rest);
    Ok(seen.joined())
}

impl<L: Borrow<HttpLogging>> Drop for Exchange<L> {
    /// Given up before its answer: logs the request if it was read.
    fn drop(&mut self) {
        // A body left unread cannot be read here: not logged.
        if let Ok(Some(request)) = self.take_request() {
            self.log(Some(request), None);
        }
    }
}

/// The content type of a logged body (`application/json` when none is
/// given). Never a clone of the request's header, which shares the
/// connection's read buffer (see [`super::COPY_BELOW`]): the usual types
/// are static, others copied.
fn content_type(h: &HeaderMap) -> HeaderValue {
    h.get(header::CONTENT_TYPE)
        .map(known_content_type)
        .unwrap_or_else(json_content_type)
}

/// The usual content types, built once (`from_static` checks every byte
/// when called at run time); the first is the default.
static KNOWN_CONTENT_TYPES: [HeaderValue; 4] = [
    HeaderValue::from_static("application/json"),
    HeaderValue::from_static("application/octet-stream"),
    HeaderValue::from_static("text/event-stream"),
    HeaderValue::from_static("text/csv"),
];

/// `application/json`.
fn json_content_type() -> HeaderValue {
    KNOWN_CONTENT_TYPES[0].clone()
}

/// `v` as a static value when it is a usual content type, else a copy.
fn known_content_type(v: &HeaderValue) -> HeaderValue {
    match KNOWN_CONTENT_TYPES
        .iter()
        .find(|k| k.as_bytes() == v.as_bytes())
    {
        Some(k) => k.clone(),
        None => HeaderValue::from_bytes(v.as_bytes()).unwrap_or_else(|_| v.clone()),
    }
}

/// A request body passing to the handler, recorded (as reference-counted
/// chunks) and left for the exchange once read to its end. A body past the
/// limit, or one whose reading fails, is not logged (the handler refuses
/// it); one dropped before its end is left to [`Exchange::answer_now`] to read.
struct RequestTee {
    inner: Body,
    seen: Chunks,
    cap: usize,
    /// Neither left for the exchange nor given up yet.
    reading: bool,
    capture: Arc<Mutex<Capture>>,
}

impl RequestTee {
    fn finish(&mut self) {
        if std::mem::take(&mut self.reading) {
            *self.capture.lock() = Capture::Read {
                chunks: std::mem::take(&mut self.seen),
                time: SystemTime::now(),
            };
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
                    if this.seen.size + data.len() > this.cap {
                        this.reading = false;
                        this.seen = Chunks::default();
                    } else {
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
        } else if self.seen.size as u64 + self.inner.size_hint().lower() <= self.cap as u64 {
            *self.capture.lock() = Capture::Unread {
                rest: std::mem::replace(&mut self.inner, Body::empty()),
                seen: std::mem::take(&mut self.seen),
            };
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

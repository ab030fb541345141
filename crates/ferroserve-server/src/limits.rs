//! Ingress limits beyond the body size: request header size
//! (`--max_header_bytes`), concurrent connections (`--max_connections`) and
//! a per-request timeout (`--request_timeout`).
//!
//! - Header size: the sum over request headers of name + value + 4 bytes
//!   (`": "` and CRLF, their size on an HTTP/1 wire). HTTP answers `431`;
//!   gRPC's HTTP/2 advertises the limit as `SETTINGS_MAX_HEADER_LIST_SIZE`.
//! - Connections: HTTP and gRPC share one budget; past it, a listener holds
//!   the connection it just accepted (unserved) and accepts no more, so the
//!   rest wait in the kernel's accept backlog until a connection closes.
//! - Timeout: from the request's arrival until its answer starts (a stream
//!   already flowing is not cut): HTTP `504`, gRPC `DEADLINE_EXCEEDED`. A
//!   gRPC client's own `grpc-timeout` is honoured too, with the same status.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Ingress limits; `None` fields are off.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// Largest total request header size, in bytes.
    pub max_header_bytes: Option<usize>,
    /// Most open client connections (HTTP and gRPC together).
    pub max_connections: Option<usize>,
    /// Longest time until a request's answer starts.
    pub request_timeout: Option<Duration>,
}

/// Total size of a header map as counted by `--max_header_bytes`.
pub fn header_bytes(h: &http::HeaderMap) -> usize {
    h.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum()
}

/// The `431` answer to a request whose headers exceed `max` bytes; `None`
/// when they fit.
pub fn header_limit_refusal(headers: &http::HeaderMap, max: usize) -> Option<Response> {
    let size = header_bytes(headers);
    (size > max).then(|| {
        let body = serde_json::json!({
            "error": format!(
                "request headers are {size} bytes, over the limit of {max} (see --max_header_bytes)"
            )
        });
        (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            axum::Json(body),
        )
            .into_response()
    })
}

/// Runs `fut` (a request's handling) answering `504` when it has not
/// answered within `limit`.
pub async fn with_timeout(limit: Duration, fut: impl Future<Output = Response>) -> Response {
    match tokio::time::timeout(limit, fut).await {
        Ok(resp) => resp,
        Err(_) => crate::http::error::ApiError(ferroserve_core::Error::DeadlineExceeded(format!(
            "request took longer than {:.3} s (see --request_timeout)",
            limit.as_secs_f64()
        )))
        .into_response(),
    }
}

/// Tower layer giving each gRPC call `DEADLINE_EXCEEDED` when it has not
/// answered within the configured duration or the client's `grpc-timeout`,
/// whichever is shorter. (tonic also enforces `grpc-timeout`, but answers
/// `CANCELLED`; this layer ends such calls [`GRPC_DEADLINE_MARGIN`] earlier
/// so that the status is the one gRPC specifies.)
#[derive(Debug, Clone, Copy)]
pub struct GrpcTimeoutLayer(pub Option<Duration>);

/// How much earlier than the client's `grpc-timeout` a call is ended.
pub const GRPC_DEADLINE_MARGIN: Duration = Duration::from_millis(1);

/// Parses a `grpc-timeout` value (1 to 8 digits and a unit: H, M, S, m, u, n).
pub fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

impl<S> tower::Layer<S> for GrpcTimeoutLayer {
    type Service = GrpcTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcTimeout {
            inner,
            limit: self.0,
        }
    }
}

/// Service made by [`GrpcTimeoutLayer`].
#[derive(Debug, Clone)]
pub struct GrpcTimeout<S> {
    inner: S,
    limit: Option<Duration>,
}

impl<S, B, RB> tower::Service<http::Request<B>> for GrpcTimeout<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let client = req
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout)
            .map(|d| d.saturating_sub(GRPC_DEADLINE_MARGIN));
        let (limit, why) = match (self.limit, client) {
            (Some(l), Some(c)) if c < l => (Some(c), "the client's grpc-timeout"),
            (Some(l), _) => (Some(l), "--request_timeout"),
            (None, Some(c)) => (Some(c), "the client's grpc-timeout"),
            (None, None) => (None, ""),
        };
        let fut = self.inner.call(req);
        Box::pin(async move {
            let Some(limit) = limit else {
                return fut.await;
            };
            match tokio::time::timeout(limit, fut).await {
                Ok(r) => r,
                Err(_) => Ok(tonic::Status::deadline_exceeded(format!(
                    "request took longer than {:.3} s (see {why})",
                    limit.as_secs_f64()
                ))
                .into_http()),
            }
        })
    }
}

/// A connection holding its share of the `--max_connections` budget until
/// it closes.
#[derive(Debug)]
pub struct LimitedIo<T> {
    io: T,
    _permit: Option<OwnedSemaphorePermit>,
}

impl<T: AsyncRead + Unpin> AsyncRead for LimitedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for LimitedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for LimitedIo<TcpStream> {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

/// The shared connection budget (`None`: unlimited).
pub fn connection_budget(limits: &Limits) -> Option<Arc<Semaphore>> {
    limits
        .max_connections
        .map(|n| Arc::new(Semaphore::new(n.max(1))))
}

async fn accept_limited(
    listener: &TcpListener,
    budget: &Option<Arc<Semaphore>>,
) -> (LimitedIo<TcpStream>, SocketAddr) {
    // Accept first, then wait for a slot: a listener never holds a slot
    // while idle (the listeners share the budget), and while it waits it
    // accepts nothing more, so further clients queue in the kernel's backlog.
    let (io, addr) = loop {
        match listener.accept().await {
            Ok(c) => break c,
            Err(e) => {
                // EMFILE and friends: wait instead of spinning or dying.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let _ = io.set_nodelay(true);
    let permit = match budget {
        Some(s) => Arc::clone(s).acquire_owned().await.ok(),
        None => None,
    };
    (
        LimitedIo {
            io,
            _permit: permit,
        },
        addr,
    )
}

/// An axum listener that holds a connection budget permit per connection
/// (and sets `TCP_NODELAY`).
#[derive(Debug)]
pub struct LimitedListener {
    inner: TcpListener,
    budget: Option<Arc<Semaphore>>,
}

impl LimitedListener {
    /// Wraps `inner`; `budget` `None` means unlimited.
    pub fn new(inner: TcpListener, budget: Option<Arc<Semaphore>>) -> Self {
        LimitedListener { inner, budget }
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = LimitedIo<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        accept_limited(&self.inner, &self.budget).await
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// The gRPC server's incoming connections under the same budget.
pub fn limited_incoming(
    listener: TcpListener,
    budget: Option<Arc<Semaphore>>,
) -> impl futures::Stream<Item = Result<LimitedIo<TcpStream>, io::Error>> + Send + 'static {
    futures::stream::unfold((listener, budget), |(l, b)| async move {
        let (io, _) = accept_limited(&l, &b).await;
        Some((Ok(io), (l, b)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_values() {
        assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("5u"), Some(Duration::from_micros(5)));
        assert_eq!(
            parse_grpc_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in ["", "m", "123456789S", "1x", "-1S", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }

    #[test]
    fn header_size_counts_names_and_values() {
        let mut h = http::HeaderMap::new();
        h.insert("x-a", http::HeaderValue::from_static("12345"));
        assert_eq!(header_bytes(&h), 3 + 5 + 4);
    }

    #[tokio::test]
    async fn budget_holds_connections_until_closed() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let budget = Some(Arc::new(Semaphore::new(1)));
        let mut listener = LimitedListener::new(l, budget.clone());
        let _c1 = TcpStream::connect(addr).await.unwrap();
        let _c2 = TcpStream::connect(addr).await.unwrap();
        let (first, _) = axum::serve::Listener::accept(&mut listener).await;
        // The second waits for a slot while the first is open...
        let mut second = tokio::spawn(async move {
            let (io, _) = axum::serve::Listener::accept(&mut listener).await;
            io
        });
        assert!(
            tokio::time::timeout(Duration::from_millis(100), &mut second)
                .await
                .is_err()
        );
        // ...and gets it once the first closes.
        drop(first);
        assert!(tokio::time::timeout(Duration::from_secs(2), second)
            .await
            .is_ok());
    }
}

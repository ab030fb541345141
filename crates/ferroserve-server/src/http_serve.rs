//! The HTTP accept loop: `axum::serve`'s job, done here because it offers
//! no way to bound hyper's HTTP/1 read buffer. With `--max_header_bytes`,
//! a request head larger than the limit (plus slack for the request line)
//! is refused by hyper with `431` before it is buffered whole, instead of
//! after hyper's default ~400 KiB; the header middleware
//! ([`crate::limits`]) still answers the exact limit. HTTP/2 gets the same
//! bound as its header-list size.

use std::future::Future;
use std::io;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;

use crate::http::App;

/// Room for the request line and hyper's bookkeeping above the header
/// limit, so the middleware (not hyper) answers a head just over it.
const HEAD_SLACK: usize = 16 * 1024;

/// hyper's smallest allowed HTTP/1 buffer.
const MIN_BUF: usize = 8192;

/// Serves `app` on `listener` until `shutdown` resolves, then waits for
/// the open connections to finish their requests.
pub async fn serve<L>(
    mut listener: L,
    app: App,
    max_header_bytes: Option<usize>,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()>
where
    L: axum::serve::Listener,
{
    let mut builder = Builder::new(TokioExecutor::new());
    if let Some(limit) = max_header_bytes {
        let cap = limit.saturating_add(HEAD_SLACK).max(MIN_BUF);
        builder.http1().max_buf_size(cap);
        builder
            .http2()
            .max_header_list_size(u32::try_from(cap).unwrap_or(u32::MAX));
    }
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            (io, _addr) = listener.accept() => {
                let service = app.clone();
                let conn = builder
                    .serve_connection_with_upgrades(TokioIo::new(io), service)
                    .into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::trace!(error = %e, "HTTP connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

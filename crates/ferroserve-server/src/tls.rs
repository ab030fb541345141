//! TLS for the HTTP and gRPC listeners (rustls, ring): a certificate and key
//! from PEM files, optional mutual TLS (client certificates required and
//! verified against a CA bundle), and reload on SIGHUP without closing the
//! listeners: each new connection takes the configuration current at its
//! handshake, connections already open keep theirs.
//!
//! Handshakes run on their own tasks (with a timeout), so a slow or silent
//! client never holds up the accept loop; finished connections are handed to
//! axum (as an [`axum::serve::Listener`]) or tonic (as a stream).

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::serve::Listener;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Longest a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the certificate, key and (for mutual TLS) client CA come from.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// PEM certificate chain, leaf first (`--tls_cert_file`).
    pub cert_file: PathBuf,
    /// PEM private key: PKCS#8, PKCS#1 or SEC1 (`--tls_key_file`).
    pub key_file: PathBuf,
    /// PEM CA bundle; when set, clients must present a certificate it
    /// signed (`--tls_client_ca_file`).
    pub client_ca_file: Option<PathBuf>,
}

/// Errors loading the TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("cannot read {what} from {path}: {reason}")]
    Pem {
        /// What was being read (certificate, key, client CA).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A PEM file holds no item of the expected kind.
    #[error("{path} holds no {what}")]
    Empty {
        /// What was expected.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// rustls refused the certificate, key or CA (mismatched key, bad
    /// certificate, …).
    #[error("invalid TLS configuration: {0}")]
    Config(String),
}

fn pem_err(what: &'static str, path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::Pem {
        what,
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_err(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(what, path, e))?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The TLS configurations of both listeners, swappable at run time.
pub struct Tls {
    options: TlsOptions,
    http: ArcSwap<ServerConfig>,
    grpc: ArcSwap<ServerConfig>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Which listener a configuration is for: ALPN differs (gRPC is HTTP/2
/// only, and gRPC clients insist on `h2` being negotiated).
#[derive(Debug, Clone, Copy)]
enum Alpn {
    Http,
    Grpc,
}

fn build(options: &TlsOptions, alpn: Alpn) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = read_certs("certificate", &options.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&options.key_file).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            what: "private key",
            path: options.key_file.clone(),
        },
        e => pem_err("private key", &options.key_file, e),
    })?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &options.client_ca_file {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs("client CA certificate", ca)? {
                roots
                    .add(c)
                    .map_err(|e| pem_err("client CA certificate", ca, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = match alpn {
        Alpn::Http => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        Alpn::Grpc => vec![b"h2".to_vec()],
    };
    Ok(config)
}

impl Tls {
    /// Reads the files and builds both configurations.
    pub fn load(options: TlsOptions) -> Result<Arc<Self>, TlsError> {
        // Other rustls users in the process (none today) would otherwise
        // panic at first use when more than one provider is compiled in.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = build(&options, Alpn::Http)?;
        let grpc = build(&options, Alpn::Grpc)?;
        Ok(Arc::new(Tls {
            options,
            http: ArcSwap::from_pointee(http),
            grpc: ArcSwap::from_pointee(grpc),
        }))
    }

    /// Re-reads the files; new connections use the new configuration. On
    /// error the old configuration stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let http = build(&self.options, Alpn::Http)?;
        let grpc = build(&self.options, Alpn::Grpc)?;
        self.http.store(Arc::new(http));
        self.grpc.store(Arc::new(grpc));
        Ok(())
    }

    /// Whether clients must present a certificate.
    pub fn mutual(&self) -> bool {
        self.options.client_ca_file.is_some()
    }

    /// Serves TLS over the connections of `inner` (a TCP listener, or one
    /// wrapped by the connection limits) for the HTTP server.
    pub fn http_listener<L>(self: &Arc<Self>, inner: L) -> io::Result<TlsListener<L::Io>>
    where
        L: Listener<Addr = SocketAddr>,
    {
        let local = inner.local_addr()?;
        Ok(TlsListener {
            rx: spawn_acceptor(inner, Arc::clone(self), Alpn::Http),
            local,
        })
    }

    /// Serves TLS over the connections of `inner` for the gRPC server: a
    /// stream for tonic's `serve_with_incoming*`.
    pub fn grpc_incoming<L>(
        self: &Arc<Self>,
        inner: L,
    ) -> io::Result<impl futures::Stream<Item = Result<TlsConn<L::Io>, io::Error>> + Send + 'static>
    where
        L: Listener<Addr = SocketAddr>,
    {
        let local = inner.local_addr()?;
        let rx = spawn_acceptor(inner, Arc::clone(self), Alpn::Grpc);
        Ok(futures::StreamExt::map(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            move |(stream, remote)| {
                Ok(TlsConn {
                    stream,
                    local,
                    remote,
                })
            },
        ))
    }

    /// Reloads the configuration on every SIGHUP, for as long as the process
    /// runs (Unix only; elsewhere nothing).
    pub fn reload_on_sighup(self: &Arc<Self>) {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let tls = Arc::clone(self);
            match signal(SignalKind::hangup()) {
                Ok(mut hup) => {
                    tokio::spawn(async move {
                        while hup.recv().await.is_some() {
                            match tls.reload() {
                                Ok(()) => tracing::info!(
                                    cert = %tls.options.cert_file.display(),
                                    "SIGHUP: TLS certificate reloaded"
                                ),
                                Err(e) => tracing::error!(
                                    "SIGHUP: TLS reload failed, keeping the previous certificate: {e}"
                                ),
                            }
                        }
                    });
                }
                Err(e) => tracing::warn!("cannot listen for SIGHUP (TLS reload off): {e}"),
            }
        }
    }
}

type Accepted<Io> = (TlsStream<Io>, SocketAddr);

/// Accepts connections from `inner` and runs each handshake on its own
/// task; finished connections come out of the returned channel. Stops when
/// the receiver is dropped.
fn spawn_acceptor<L>(mut inner: L, tls: Arc<Tls>, alpn: Alpn) -> mpsc::Receiver<Accepted<L::Io>>
where
    L: Listener<Addr = SocketAddr>,
{
    let (tx, rx) = mpsc::channel::<Accepted<L::Io>>(64);
    tokio::spawn(async move {
        loop {
            // The inner listener retries its own accept errors.
            let (sock, remote) = tokio::select! {
                a = inner.accept() => a,
                _ = tx.closed() => break,
            };
            let config = match alpn {
                Alpn::Http => tls.http.load_full(),
                Alpn::Grpc => tls.grpc.load_full(),
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(
                    HANDSHAKE_TIMEOUT,
                    TlsAcceptor::from(config).accept(sock),
                )
                .await
                {
                    Ok(Ok(stream)) => {
                        let _ = tx.send((stream, remote)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%remote, "TLS handshake failed: {e}"),
                    Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                }
            });
        }
    });
    rx
}

/// An [`axum::serve::Listener`] yielding connections whose TLS handshake has
/// completed.
pub struct TlsListener<Io> {
    rx: mpsc::Receiver<Accepted<Io>>,
    local: SocketAddr,
}

impl<Io> Listener for TlsListener<Io>
where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Io = TlsStream<Io>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The acceptor task is gone (it never ends while we hold the
            // receiver); accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// A server-side TLS connection for tonic.
pub struct TlsConn<Io> {
    stream: TlsStream<Io>,
    local: SocketAddr,
    remote: SocketAddr,
}

impl<Io> TlsConn<Io> {
    /// The client's certificate chain (mutual TLS), leaf first.
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.stream.get_ref().1.peer_certificates()
    }
}

impl<Io: Send + 'static> tonic::transport::server::Connected for TlsConn<Io> {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        tonic::transport::server::TcpConnectInfo {
            local_addr: Some(self.local),
            remote_addr: Some(self.remote),
        }
    }
}

impl<Io: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsConn<Io> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<Io: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsConn<Io> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(dir: &Path) -> TlsOptions {
        TlsOptions {
            cert_file: dir.join("tls.crt"),
            key_file: dir.join("tls.key"),
            client_ca_file: None,
        }
    }

    #[test]
    fn missing_and_empty_files_are_clear_errors() {
        let dir = std::env::temp_dir().join(format!("ferroserve-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = Tls::load(options(&dir)).unwrap_err();
        assert!(
            matches!(
                err,
                TlsError::Pem {
                    what: "certificate",
                    ..
                }
            ),
            "{err}"
        );
        std::fs::write(dir.join("tls.crt"), "not a pem file\n").unwrap();
        let err = Tls::load(options(&dir)).unwrap_err();
        assert!(
            matches!(
                err,
                TlsError::Empty {
                    what: "certificate",
                    ..
                }
            ),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! The HTTPS connector shared by the server's outgoing HTTP clients (the
//! request logger's `https://` sinks, JWKS fetches, the OTLP/HTTP exporter):
//! TCP from hyper-util's connector, then TLS (rustls, ring) against a PEM CA
//! bundle, optionally with a client certificate (mutual TLS).

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::logger::LoggerError;

/// Where the system's CA bundle lives on Debian-like systems.
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A TLS file (CA bundle, client certificate or key) that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("TLS file {path}: {reason}")]
pub struct TlsFileError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

impl From<TlsFileError> for LoggerError {
    fn from(e: TlsFileError) -> Self {
        LoggerError::Tls {
            path: e.path,
            reason: e.reason,
        }
    }
}

/// The CA bundle used when none is configured: `SSL_CERT_FILE`, else the
/// system bundle.
pub fn default_ca_bundle() -> PathBuf {
    std::env::var_os("SSL_CERT_FILE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(SYSTEM_BUNDLE))
}

/// The certificates of a PEM CA bundle (`None`: [`default_ca_bundle`]).
pub fn root_store(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, TlsFileError> {
    let path = ca_file.map_or_else(default_ca_bundle, Path::to_path_buf);
    let bad = |reason: String| TlsFileError {
        path: path.clone(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(bad("no usable CA certificate in the file".into()));
    }
    Ok(roots)
}

/// A client certificate chain and its private key (PEM files), for mutual
/// TLS.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    /// The certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// A rustls client configuration (ring provider) trusting `ca_file` (see
/// [`root_store`]), presenting `identity` when given, offering `alpn`.
pub fn client_config(
    ca_file: Option<&Path>,
    identity: Option<&ClientIdentity>,
    alpn: &[&[u8]],
) -> Result<rustls::ClientConfig, TlsFileError> {
    let roots = root_store(ca_file)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsFileError {
            path: ca_file.map_or_else(default_ca_bundle, Path::to_path_buf),
            reason: e.to_string(),
        })?
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(id) => {
            let bad = |path: &Path, reason: String| TlsFileError {
                path: path.to_path_buf(),
                reason,
            };
            let chain = CertificateDer::pem_file_iter(&id.cert_file)
                .map_err(|e| bad(&id.cert_file, e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(&id.cert_file, e.to_string()))?;
            if chain.is_empty() {
                return Err(bad(&id.cert_file, "no certificate in the file".into()));
            }
            let key = PrivateKeyDer::from_pem_file(&id.key_file)
                .map_err(|e| bad(&id.key_file, e.to_string()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad(&id.key_file, e.to_string()))?
        }
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A TLS connection to the sink.
#[derive(Debug)]
pub struct TlsConn(tokio_rustls::client::TlsStream<TcpStream>);

impl Connection for TlsConn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Connects to `https://` URIs (HTTP/1.1 over TLS).
#[derive(Clone)]
pub struct HttpsConnector {
    http: HttpConnector,
    tls: tokio_rustls::TlsConnector,
}

impl HttpsConnector {
    /// A connector trusting the CAs in `ca_file`, else in `SSL_CERT_FILE`,
    /// else in the system bundle (the request logger's sinks).
    pub fn new(ca_file: Option<&Path>) -> Result<Self, LoggerError> {
        Ok(Self::with_tls(ca_file, None)?)
    }

    /// A connector trusting the CAs in `ca_file` (see [`root_store`]),
    /// presenting `identity` when given (HTTP/1.1 over TLS).
    pub fn with_tls(
        ca_file: Option<&Path>,
        identity: Option<&ClientIdentity>,
    ) -> Result<Self, TlsFileError> {
        let config = client_config(ca_file, identity, &[b"http/1.1"])?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        Ok(HttpsConnector {
            http,
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<http::Uri> for HttpsConnector {
    type Response = TokioIo<TlsConn>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let host = uri
            .host()
            .unwrap_or("")
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let connecting = self.http.call(uri);
        let tls = self.tls.clone();
        Box::pin(async move {
            let name = ServerName::try_from(host)?;
            let tcp = connecting.await?.into_inner();
            let stream = tls.connect(name, tcp).await?;
            Ok(TokioIo::new(TlsConn(stream)))
        })
    }
}

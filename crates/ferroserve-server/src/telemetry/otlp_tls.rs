//! TLS for the OTLP exporters, from the standard variables:
//! `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE` / `OTEL_EXPORTER_OTLP_CERTIFICATE`
//! (PEM CA bundle; default `SSL_CERT_FILE`, else the system bundle) and
//! `…_CLIENT_CERTIFICATE` / `…_CLIENT_KEY` (PEM client certificate chain and
//! key, for mutual TLS). The trace-specific variable wins over the general
//! one. rustls with the ring provider throughout: tonic's own TLS for gRPC,
//! and for HTTP/protobuf a hyper-util client over the server's shared HTTPS
//! connector (the bundled reqwest client has no TLS in this build).

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use opentelemetry_http::{HttpClient, HttpError};

use super::TelemetryError;
use crate::https_client::{client_config, default_ca_bundle, ClientIdentity, HttpsConnector};

/// Largest OTLP/HTTP answer read (the collector's `ExportTraceServiceResponse`).
const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// The TLS files named by the `OTEL_EXPORTER_OTLP_*CERTIFICATE`/`*KEY`
/// variables.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OtlpTlsFiles {
    /// CA bundle (`None`: `SSL_CERT_FILE`, else the system bundle).
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM).
    pub client_cert: Option<PathBuf>,
    /// Client private key (PEM).
    pub client_key: Option<PathBuf>,
}

impl OtlpTlsFiles {
    /// Reads the variables through `var` (trace-specific first).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Self {
        let get = |suffix: &str| {
            var(&format!("OTEL_EXPORTER_OTLP_TRACES_{suffix}"))
                .or_else(|| var(&format!("OTEL_EXPORTER_OTLP_{suffix}")))
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        OtlpTlsFiles {
            ca_file: get("CERTIFICATE"),
            client_cert: get("CLIENT_CERTIFICATE"),
            client_key: get("CLIENT_KEY"),
        }
    }

    /// Whether any variable is set.
    pub fn any(&self) -> bool {
        self.ca_file.is_some() || self.client_cert.is_some() || self.client_key.is_some()
    }

    /// The client identity; certificate and key must come together.
    pub fn identity(&self) -> Result<Option<ClientIdentity>, TelemetryError> {
        match (&self.client_cert, &self.client_key) {
            (Some(c), Some(k)) => Ok(Some(ClientIdentity {
                cert_file: c.clone(),
                key_file: k.clone(),
            })),
            (None, None) => Ok(None),
            _ => Err(TelemetryError::Tls(
                "OTEL_EXPORTER_OTLP_[TRACES_]CLIENT_CERTIFICATE and \
                 OTEL_EXPORTER_OTLP_[TRACES_]CLIENT_KEY must be set together"
                    .into(),
            )),
        }
    }

    /// Checks that the files load (a clear start-up error rather than
    /// failed exports later).
    fn validate(&self) -> Result<Option<ClientIdentity>, TelemetryError> {
        let identity = self.identity()?;
        client_config(self.ca_file.as_deref(), identity.as_ref(), &[])
            .map_err(|e| TelemetryError::Tls(e.to_string()))?;
        Ok(identity)
    }

    /// tonic's TLS settings for a `https://` gRPC endpoint.
    pub fn tonic(&self) -> Result<tonic::transport::ClientTlsConfig, TelemetryError> {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        let identity = self.validate()?;
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| TelemetryError::Tls(format!("{}: {e}", p.display())))
        };
        let ca = self.ca_file.clone().unwrap_or_else(default_ca_bundle);
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(&ca)?));
        if let Some(id) = identity {
            tls = tls.identity(Identity::from_pem(
                read(&id.cert_file)?,
                read(&id.key_file)?,
            ));
        }
        Ok(tls)
    }

    /// An HTTP client for a `https://` OTLP/HTTP endpoint; requests run on
    /// the current tokio runtime (call inside it) whatever thread exports.
    pub fn http_client(&self, timeout: Duration) -> Result<HyperOtlpClient, TelemetryError> {
        let identity = self.validate()?;
        let connector = HttpsConnector::with_tls(self.ca_file.as_deref(), identity.as_ref())
            .map_err(|e| TelemetryError::Tls(e.to_string()))?;
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            TelemetryError::Exporter("the OTLP/HTTP exporter needs a tokio runtime".into())
        })?;
        Ok(HyperOtlpClient {
            client: Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
            handle,
            timeout,
        })
    }
}

/// The OTLP/HTTP client over TLS: hyper-util's pooled client with the
/// shared rustls connector, driven on the server's runtime (the batch span
/// processor exports from a thread of its own).
pub struct HyperOtlpClient {
    client: Client<HttpsConnector, Full<Bytes>>,
    handle: tokio::runtime::Handle,
    timeout: Duration,
}

impl std::fmt::Debug for HyperOtlpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HyperOtlpClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl HttpClient for HyperOtlpClient {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let request = http::Request::from_parts(parts, Full::new(body));
        let client = self.client.clone();
        let timeout = self.timeout;
        let task = self.handle.spawn(async move {
            let exchange = async {
                let resp = client.request(request).await?;
                let (parts, body) = resp.into_parts();
                let body = Limited::new(body, MAX_RESPONSE_BYTES)
                    .collect()
                    .await?
                    .to_bytes();
                Ok::<_, HttpError>(http::Response::from_parts(parts, body))
            };
            match tokio::time::timeout(timeout, exchange).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {} ms", timeout.as_millis()).into()),
            }
        });
        task.await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_variables_trace_specific_first() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let f = OtlpTlsFiles::from_env(env(&[
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/general/ca.pem"),
            ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "/traces/ca.pem"),
            ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/c.pem"),
            ("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "/k.pem"),
        ]));
        assert_eq!(f.ca_file.as_deref(), Some(Path::new("/traces/ca.pem")));
        assert!(f.identity().unwrap().is_some());
        let half = OtlpTlsFiles::from_env(env(&[("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/k.pem")]));
        assert!(half.identity().is_err());
        assert!(!OtlpTlsFiles::from_env(env(&[])).any());
        // Missing files are start-up errors.
        let missing = OtlpTlsFiles {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        assert!(missing.tonic().is_err());
    }
}

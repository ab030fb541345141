//! Delivery to HTTP sinks: sender tasks with retries, the state the
//! delivery side shares (the file sink's too, see [`super::file`]) and the
//! counters every outcome lands in.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use tokio::sync::mpsc;

use super::event::{Attributes, Event};
use super::LoggerStats;

/// An HTTP(S) sink (CloudEvents binary mode).
pub(crate) enum Remote {
    Http {
        uri: http::Uri,
        client: hyper_util::client::legacy::Client<
            hyper_util::client::legacy::connect::HttpConnector,
            Full<Bytes>,
        >,
    },
    Https {
        uri: http::Uri,
        client:
            hyper_util::client::legacy::Client<crate::https_client::HttpsConnector, Full<Bytes>>,
    },
    #[cfg(test)]
    Test(Arc<super::tests::TestSink>),
}

/// State the delivery side shares.
pub(crate) struct Shared {
    pub(crate) attrs: Attributes,
    pub(crate) stats: Arc<LoggerStats>,
    /// Events taken off the queue whose delivery has not ended yet (HTTP
    /// sinks; the file queue counts the events being written as queued).
    pub(crate) in_flight: AtomicU64,
    /// Body bytes of the events queued or being delivered (HTTP sinks; the
    /// file queue bounds its own bytes).
    pub(crate) pending_bytes: AtomicU64,
    pub(crate) max_retries: u32,
    pub(crate) retry_backoff: Duration,
    pub(crate) timeout: Duration,
    pub(crate) started: Instant,
    pub(crate) last_warn_ms: AtomicU64,
}

impl Shared {
    /// Runs `f` at most once per 5 seconds.
    pub(crate) fn warn(&self, f: impl FnOnce()) {
        let now = self.started.elapsed().as_millis() as u64 + 5_001;
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) > 5_000
            && self
                .last_warn_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            f();
        }
    }
}

/// Delay before retry `attempt` (0-based): `base * 2^attempt`, at most 5 s.
pub(crate) fn backoff(base: Duration, attempt: u32) -> Duration {
    base.saturating_mul(1u32 << attempt.min(16))
        .min(Duration::from_secs(5))
}

/// Starts `workers` tasks posting `rx`'s events to `remote`.
pub(crate) fn spawn_senders(
    remote: Remote,
    rx: mpsc::Receiver<Event>,
    shared: Arc<Shared>,
    workers: usize,
) {
    let remote = Arc::new(remote);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    for _ in 0..workers.max(1) {
        let (rx, remote, shared) = (Arc::clone(&rx), Arc::clone(&remote), Arc::clone(&shared));
        tokio::spawn(async move {
            loop {
                let Some(ev) = rx.lock().await.recv().await else {
                    break;
                };
                shared.in_flight.fetch_add(1, Ordering::AcqRel);
                deliver(&remote, &shared, &ev).await;
                shared
                    .pending_bytes
                    .fetch_sub(ev.body.len() as u64, Ordering::AcqRel);
                shared.in_flight.fetch_sub(1, Ordering::AcqRel);
            }
        });
    }
}

/// Delivers one event with retries and backoff; counts the outcome.
async fn deliver(remote: &Remote, shared: &Shared, ev: &Event) {
    let mut attempt = 0u32;
    loop {
        let result = match tokio::time::timeout(shared.timeout, send_once(remote, shared, ev)).await
        {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {:?}", shared.timeout)),
        };
        match result {
            Ok(()) => {
                shared.stats.sent.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(e) if attempt >= shared.max_retries => {
                let n = shared.stats.failed.fetch_add(1, Ordering::Relaxed) + 1;
                shared.warn(|| {
                    tracing::warn!(
                        error = %e,
                        attempts = attempt + 1,
                        failed_total = n,
                        "request logger: event not delivered"
                    )
                });
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, attempt, "request logger: delivery failed, retrying");
                shared.stats.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(backoff(shared.retry_backoff, attempt)).await;
                attempt += 1;
            }
        }
    }
}

async fn send_once(remote: &Remote, shared: &Shared, ev: &Event) -> Result<(), String> {
    let headers = shared.attrs.ce_headers(ev, SystemTime::now());
    match remote {
        Remote::Http { uri, client } => post(client, uri, ev, headers).await,
        Remote::Https { uri, client } => post(client, uri, ev, headers).await,
        #[cfg(test)]
        Remote::Test(t) => t.accept(ev, headers).await,
    }
}

async fn post<C>(
    client: &hyper_util::client::legacy::Client<C, Full<Bytes>>,
    uri: &http::Uri,
    ev: &Event,
    headers: Vec<(&'static str, http::HeaderValue)>,
) -> Result<(), String>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let mut req = http::Request::post(uri.clone())
        .body(Full::new(ev.body.clone()))
        .map_err(|e| e.to_string())?;
    for (k, v) in headers {
        req.headers_mut().insert(k, v);
    }
    let resp = client.request(req).await.map_err(|e| {
        // The cause (refused, TLS) is in the source chain.
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            src = s.source();
        }
        msg
    })?;
    let status = resp.status();
    // Read the answer so the connection can be reused.
    let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("sink answered {status}"))
    }
}

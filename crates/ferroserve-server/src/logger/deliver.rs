//! Delivery: a file sink's writer thread and an HTTP sink's sender tasks,
//! both with retries, and the counters every outcome lands in.
//!
//! The file writer is a plain thread that wakes at most once per
//! [`FILE_FLUSH_INTERVAL`] while events keep coming (sooner when they come
//! fast enough to fill a quarter of the queue) and writes everything queued
//! with one system call: under load the request path never wakes it
//! (a `try_send` into a queue nobody waits on is a few atomic operations),
//! so logging costs the server little more than rendering the lines.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use tokio::sync::mpsc;

use super::event::{write_rfc3339, Attributes, Event};
use super::queue::BatchQueue;
use super::LoggerStats;

/// Longest the file writer lets events gather between writes under load.
pub(crate) const FILE_FLUSH_INTERVAL: Duration = Duration::from_millis(10);

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
    /// Events taken off the queue whose delivery has not ended yet.
    pub(crate) in_flight: AtomicU64,
    /// Body bytes of the events queued or being delivered.
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

/// Starts the thread writing `queue`'s events to `file` as JSON lines.
/// `capacity` is the queue's: a batch of a quarter of it is written at once
/// without waiting for more.
pub(crate) fn spawn_file_writer(
    mut file: std::fs::File,
    queue: Arc<BatchQueue>,
    shared: Arc<Shared>,
    capacity: usize,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("ferroserve-logger".into())
        .spawn(move || {
            let mut batch: Vec<Event> = Vec::new();
            let mut buf: Vec<u8> = Vec::new();
            // Wait long enough for a quarter of the queue to fill at the
            // rate events came last time, at most FILE_FLUSH_INTERVAL: few
            // wake-ups, and the queue stays far from full at any rate.
            let quarter = capacity.div_ceil(4) as u32;
            // Idle: sleep until an event arrives (the request path wakes us).
            while queue.wait() {
                let mut wait = FILE_FLUSH_INTERVAL;
                // Busy: let events gather, write them, until the queue is dry.
                loop {
                    let began = Instant::now();
                    std::thread::sleep(wait);
                    queue.take(&mut batch);
                    if batch.is_empty() {
                        break;
                    }
                    let per_event = began.elapsed() / (batch.len() as u32);
                    wait = per_event.saturating_mul(quarter).min(FILE_FLUSH_INTERVAL);
                    shared
                        .in_flight
                        .store(batch.len() as u64, Ordering::Release);
                    write_lines(&mut file, &batch, &mut buf, &shared);
                    let bytes: u64 = batch.iter().map(|ev| ev.body.len() as u64).sum();
                    shared.pending_bytes.fetch_sub(bytes, Ordering::AcqRel);
                    batch.clear();
                    shared.in_flight.store(0, Ordering::Release);
                }
                // Give back memory a burst of large bodies took.
                if buf.capacity() > 4 << 20 {
                    buf = Vec::new();
                }
            }
        })
        .map(|_| ())
}

/// Renders `batch` into `buf` and writes it with one call, retrying with
/// backoff; counts every event as sent or failed.
fn write_lines(file: &mut std::fs::File, batch: &[Event], buf: &mut Vec<u8>, shared: &Shared) {
    use std::io::Write;
    buf.clear();
    let mut recorded = Vec::with_capacity(32);
    recorded.push(b'"');
    write_rfc3339(&mut recorded, SystemTime::now());
    recorded.push(b'"');
    for ev in batch {
        shared.attrs.write_json_line(ev, &recorded, buf);
    }
    let n = batch.len() as u64;
    let mut attempt = 0u32;
    loop {
        match file.write_all(buf).and_then(|()| file.flush()) {
            Ok(()) => {
                shared.stats.sent.fetch_add(n, Ordering::Relaxed);
                return;
            }
            Err(e) if attempt >= shared.max_retries => {
                let total = shared.stats.failed.fetch_add(n, Ordering::Relaxed) + n;
                shared.warn(|| {
                    tracing::warn!(error = %e, failed_total = total, "request logger: events not written")
                });
                return;
            }
            Err(_) => {
                shared.stats.retries.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(backoff(shared.retry_backoff, attempt));
                attempt += 1;
            }
        }
    }
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

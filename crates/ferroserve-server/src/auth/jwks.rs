//! JWKS key sets for JWT verification: parsed from a file, or fetched from
//! an `http(s)://` URL (through the egress allow-list) at start-up and
//! refreshed in the background.
//!
//! The current [`KeySet`] sits in an [`ArcSwap`]: the request path loads it
//! without a lock, and a refresh swaps a whole new set in at once. A failed
//! refresh keeps the last good set. A token naming a `kid` the set lacks may
//! trigger one extra fetch ([`JwksStore::refetch_for_unknown_kid`]), at most
//! once per `min_refetch` interval whatever the kids sent, so forged kids
//! cannot make the server hammer the identity provider.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::egress::{EgressError, Policy};
use crate::https_client::{HttpsConnector, TlsFileError};

/// Largest JWKS document accepted from a URL.
pub const MAX_JWKS_BYTES: usize = 1 << 20;

/// How long one fetch (connect, answer and body) may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors reading or fetching a JWKS.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// The document is not a JWKS, or one of its keys is malformed.
    #[error("JWKS {origin}: {reason}")]
    Invalid {
        /// The file or URL.
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// No key of a supported type.
    #[error(
        "JWKS {origin} has no usable key (only RS256, ES256 (P-256) and EdDSA (Ed25519) keys \
         are used)"
    )]
    NoUsableKey {
        /// The file or URL.
        origin: String,
    },
    /// `jwks_url` is not an `http://` or `https://` URL with a host.
    #[error("invalid jwks_url {url:?}: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The URL is refused by `--egress_allow`.
    #[error(transparent)]
    Egress(Box<EgressError>),
    /// `jwks_ca_file` (or the default CA bundle) cannot be used.
    #[error("jwks_ca_file: {0}")]
    Tls(TlsFileError),
    /// Connecting or reading failed.
    #[error("cannot fetch JWKS {url}: {reason}")]
    Fetch {
        /// The URL.
        url: String,
        /// The cause.
        reason: String,
    },
    /// The server answered with a non-200 status (redirects are not
    /// followed).
    #[error("JWKS {url} answered HTTP {status} (expected 200)")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// The document is larger than [`MAX_JWKS_BYTES`].
    #[error("JWKS {url} is larger than {limit} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit.
        limit: usize,
    },
    /// No complete answer within the timeout.
    #[error("JWKS {url}: no complete answer within {secs} s")]
    Timeout {
        /// The URL.
        url: String,
        /// The timeout.
        secs: u64,
    },
}

impl From<TlsFileError> for JwksError {
    fn from(e: TlsFileError) -> Self {
        JwksError::Tls(e)
    }
}

impl From<EgressError> for JwksError {
    fn from(e: EgressError) -> Self {
        JwksError::Egress(Box::new(e))
    }
}

/// One verification key.
struct VerifyKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// The usable keys of one JWKS document.
pub struct KeySet {
    keys: Vec<VerifyKey>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| (&k.kid, k.alg)))
            .finish()
    }
}

fn alg_of(jwk: &jsonwebtoken::jwk::Jwk) -> Option<Algorithm> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, KeyAlgorithm};
    match (&jwk.algorithm, jwk.common.key_algorithm) {
        (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Some(Algorithm::RS256),
        (AlgorithmParameters::EllipticCurve(p), None | Some(KeyAlgorithm::ES256))
            if p.curve == EllipticCurve::P256 =>
        {
            Some(Algorithm::ES256)
        }
        (AlgorithmParameters::OctetKeyPair(p), None | Some(KeyAlgorithm::EdDSA))
            if p.curve == EllipticCurve::Ed25519 =>
        {
            Some(Algorithm::EdDSA)
        }
        _ => None,
    }
}

impl KeySet {
    /// Parses a JWKS document; `origin` (file or URL) names it in errors.
    /// Keys of other types are skipped with a warning; a set without any
    /// usable key is an error.
    pub fn parse(doc: &[u8], origin: &str) -> Result<Self, JwksError> {
        let set: JwkSet = serde_json::from_slice(doc).map_err(|e| JwksError::Invalid {
            origin: origin.to_string(),
            reason: e.to_string(),
        })?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            let Some(alg) = alg_of(jwk) else {
                tracing::warn!(kid = ?jwk.common.key_id, jwks = origin, "JWKS key skipped: only RS256, ES256 (P-256) and EdDSA (Ed25519) keys are used");
                continue;
            };
            let key = DecodingKey::from_jwk(jwk).map_err(|e| JwksError::Invalid {
                origin: origin.to_string(),
                reason: format!("key {:?}: {e}", jwk.common.key_id),
            })?;
            keys.push(VerifyKey {
                kid: jwk.common.key_id.clone(),
                alg,
                key,
            });
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey {
                origin: origin.to_string(),
            });
        }
        Ok(KeySet { keys })
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set is empty (never, for a parsed set).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether some key has this `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// The key for a token's `alg` and `kid` (a token without `kid`: the
    /// first key of that algorithm).
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&DecodingKey> {
        self.keys
            .iter()
            .find(|k| k.alg == alg && (kid.is_none() || k.kid.as_deref() == kid))
            .map(|k| &k.key)
    }
}

/// Where and how often to fetch a remote JWKS.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// `http://` or `https://` URL.
    pub url: String,
    /// Background refresh interval (an upper bound; a shorter
    /// `Cache-Control: max-age` is honoured).
    pub refresh: Duration,
    /// Least time between two fetches caused by unknown `kid`s (and the
    /// floor of a `max-age`-driven refresh).
    pub min_refetch: Duration,
    /// CA bundle for `https://` (default: `SSL_CERT_FILE`, else the system
    /// bundle).
    pub ca_file: Option<PathBuf>,
    /// Timeout of one fetch.
    pub timeout: Duration,
    /// Largest document accepted.
    pub max_bytes: usize,
}

impl RemoteOptions {
    /// Options with the defaults: refresh every 300 s, unknown-kid refetch
    /// at most every 30 s, [`FETCH_TIMEOUT`], [`MAX_JWKS_BYTES`].
    pub fn new(url: impl Into<String>) -> Self {
        RemoteOptions {
            url: url.into(),
            refresh: Duration::from_secs(300),
            min_refetch: Duration::from_secs(30),
            ca_file: None,
            timeout: FETCH_TIMEOUT,
            max_bytes: MAX_JWKS_BYTES,
        }
    }
}

enum Fetcher {
    Http(Client<HttpConnector, Empty<Bytes>>),
    Https(Client<HttpsConnector, Empty<Bytes>>),
}

struct Remote {
    uri: http::Uri,
    opts: RemoteOptions,
    fetcher: Fetcher,
    /// When the last unknown-kid refetch started.
    last_kid_miss: parking_lot::Mutex<Option<Instant>>,
    /// Serializes on-demand refetches.
    refetching: tokio::sync::Mutex<()>,
    /// Completed fetch attempts (successful or not).
    attempts: AtomicU64,
    /// Failed fetch attempts.
    failures: AtomicU64,
    /// When the last fetch succeeded (Unix time, milliseconds).
    last_success_ms: AtomicU64,
    /// `max-age` of the start-up fetch (sets the first refresh).
    first_max_age: Option<Duration>,
}

impl Remote {
    /// The wait before the next refresh after an answer with `max_age`.
    fn next_delay(&self, max_age: Option<Duration>) -> Duration {
        let (refresh, floor) = (self.opts.refresh, self.opts.min_refetch);
        max_age.map_or(refresh, |a| a.clamp(floor.min(refresh), refresh))
    }
}

/// The current key set, and how to renew it.
pub struct JwksStore {
    current: ArcSwap<KeySet>,
    remote: Option<Remote>,
}

impl std::fmt::Debug for JwksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksStore")
            .field("keys", &self.current.load().len())
            .field("url", &self.remote.as_ref().map(|r| r.opts.url.as_str()))
            .finish()
    }
}

/// Aborts the background refresh task when dropped.
#[derive(Debug)]
pub struct RefreshTask(tokio::task::JoinHandle<()>);

impl Drop for RefreshTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl JwksStore {
    /// A store holding a fixed set (from a file).
    pub fn fixed(keys: KeySet) -> Self {
        JwksStore {
            current: ArcSwap::from_pointee(keys),
            remote: None,
        }
    }

    /// Checks `opts.url` (scheme, host, `egress`), fetches it once and
    /// returns the store; an unreachable or invalid JWKS is an error. Call
    /// [`Self::spawn_refresh`] to keep it fresh.
    pub async fn fetch(opts: RemoteOptions, egress: &Policy) -> Result<Self, JwksError> {
        let bad = |reason: &str| JwksError::BadUrl {
            url: opts.url.clone(),
            reason: reason.to_string(),
        };
        let uri: http::Uri = opts.url.trim().parse().map_err(|_| bad("not a URL"))?;
        let scheme = uri.scheme_str().map(str::to_ascii_lowercase);
        if uri.host().is_none_or(str::is_empty) {
            return Err(bad("no host"));
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(bad("user info is not allowed"));
        }
        egress.check_url("JWKS (jwt.jwks_url)", &opts.url)?;
        let fetcher = match scheme.as_deref() {
            Some("http") => {
                if opts.ca_file.is_some() {
                    return Err(bad("jwks_ca_file is only for https:// URLs"));
                }
                Fetcher::Http(
                    Client::builder(hyper_util::rt::TokioExecutor::new())
                        .pool_idle_timeout(Duration::from_secs(30))
                        .build_http(),
                )
            }
            Some("https") => Fetcher::Https(
                Client::builder(hyper_util::rt::TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(30))
                    .build(HttpsConnector::with_tls(opts.ca_file.as_deref(), None)?),
            ),
            _ => return Err(bad("the scheme must be http or https")),
        };
        let mut remote = Remote {
            uri,
            opts,
            fetcher,
            last_kid_miss: parking_lot::Mutex::new(None),
            refetching: tokio::sync::Mutex::new(()),
            attempts: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_success_ms: AtomicU64::new(0),
            first_max_age: None,
        };
        let (keys, age) = remote.get().await?;
        remote.first_max_age = age;
        tracing::info!(url = %remote.opts.url, keys = keys.len(), "JWKS fetched");
        Ok(JwksStore {
            current: ArcSwap::from_pointee(keys),
            remote: Some(remote),
        })
    }

    /// The current key set (lock-free).
    pub fn keys(&self) -> arc_swap::Guard<Arc<KeySet>> {
        self.current.load()
    }

    /// Whether keys come from a URL (and can be refetched).
    pub fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// Completed fetch attempts after the first one (for tests and logs).
    pub fn refetch_attempts(&self) -> u64 {
        self.remote
            .as_ref()
            .map_or(0, |r| r.attempts.load(Ordering::Relaxed).saturating_sub(1))
    }

    /// Writes the store's Prometheus metrics (text format) to `out`: keys
    /// in the current set, and for a URL, fetches by outcome and the time
    /// of the last success (so an alert can catch an identity provider
    /// that stopped answering while the last good set is still served).
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = writeln!(
            out,
            "# HELP ferroserve_jwks_keys keys in the JWT verification key set\n\
             # TYPE ferroserve_jwks_keys gauge\n\
             ferroserve_jwks_keys {}",
            self.keys().len()
        );
        let Some(r) = &self.remote else {
            return;
        };
        let attempts = r.attempts.load(Ordering::Acquire);
        let failures = r.failures.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP ferroserve_jwks_fetches_total fetches of the JWKS URL by outcome\n\
             # TYPE ferroserve_jwks_fetches_total counter\n\
             ferroserve_jwks_fetches_total{{outcome=\"success\"}} {}\n\
             ferroserve_jwks_fetches_total{{outcome=\"failure\"}} {failures}",
            attempts.saturating_sub(failures)
        );
        let _ = writeln!(
            out,
            "# HELP ferroserve_jwks_last_success_timestamp_seconds when the JWKS URL last answered with a usable key set\n\
             # TYPE ferroserve_jwks_last_success_timestamp_seconds gauge\n\
             ferroserve_jwks_last_success_timestamp_seconds {:.3}",
            r.last_success_ms.load(Ordering::Relaxed) as f64 / 1000.0
        );
    }

    /// Fetches the URL again and swaps the new set in; on failure the last
    /// good set stays and the error is returned (the caller logs it).
    /// Returns the `Cache-Control: max-age` of the answer, if any. A store
    /// without URL does nothing.
    pub async fn refresh(&self) -> Result<Option<Duration>, JwksError> {
        let Some(r) = &self.remote else {
            return Ok(None);
        };
        let (keys, max_age) = r.get().await?;
        let n = keys.len();
        self.current.store(Arc::new(keys));
        tracing::debug!(url = %r.opts.url, keys = n, "JWKS refreshed");
        Ok(max_age)
    }

    /// Called when a token names a `kid` the current set lacks: refetches
    /// the JWKS unless an unknown-kid refetch ran less than `min_refetch`
    /// ago (concurrent callers share one fetch). Returns whether the set now
    /// has `kid`.
    pub async fn refetch_for_unknown_kid(&self, kid: &str) -> bool {
        let Some(r) = &self.remote else {
            return false;
        };
        let seen = r.attempts.load(Ordering::Acquire);
        let _one_at_a_time = r.refetching.lock().await;
        if r.attempts.load(Ordering::Acquire) != seen {
            // Another caller fetched while we waited.
            return self.keys().has_kid(kid);
        }
        {
            let mut last = r.last_kid_miss.lock();
            if last.is_some_and(|t| t.elapsed() < r.opts.min_refetch) {
                return false;
            }
            *last = Some(Instant::now());
        }
        match self.refresh().await {
            Ok(_) => {
                let found = self.keys().has_kid(kid);
                tracing::info!(url = %r.opts.url, kid, found, "JWKS refetched for an unknown key id");
                found
            }
            Err(e) => {
                tracing::warn!("JWKS refetch failed, keeping the last good key set: {e}");
                false
            }
        }
    }

    /// Starts the background refresh (every `refresh`, sooner when the
    /// answer's `max-age` says so but not more often than `min_refetch`;
    /// after a failure, again after `min(refresh, min_refetch)`). `None` for
    /// a fixed store. The task stops when the returned handle or the store
    /// is dropped.
    pub fn spawn_refresh(self: &Arc<Self>) -> Option<RefreshTask> {
        let r = self.remote.as_ref()?;
        let retry = r.opts.refresh.min(r.opts.min_refetch);
        let mut delay = r.next_delay(r.first_max_age);
        let weak: Weak<JwksStore> = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(delay).await;
                let Some(store) = weak.upgrade() else {
                    return;
                };
                delay = match store.refresh().await {
                    Ok(age) => match &store.remote {
                        Some(r) => r.next_delay(age),
                        None => return,
                    },
                    Err(e) => {
                        tracing::warn!("JWKS refresh failed, keeping the last good key set: {e}");
                        retry
                    }
                };
            }
        });
        Some(RefreshTask(task))
    }
}

/// `max-age` of a `Cache-Control` header.
fn max_age(headers: &http::HeaderMap) -> Option<Duration> {
    let v = headers.get(http::header::CACHE_CONTROL)?.to_str().ok()?;
    v.split(',').find_map(|d| {
        let (k, val) = d.trim().split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("max-age") {
            return None;
        }
        val.trim()
            .trim_matches('"')
            .parse::<u64>()
            .ok()
            .map(Duration::from_secs)
    })
}

impl Remote {
    /// One GET with timeout and size cap; counts the attempt.
    async fn get(&self) -> Result<(KeySet, Option<Duration>), JwksError> {
        let r = match tokio::time::timeout(self.opts.timeout, self.get_once()).await {
            Ok(r) => r,
            Err(_) => Err(JwksError::Timeout {
                url: self.opts.url.clone(),
                secs: self.opts.timeout.as_secs(),
            }),
        };
        match &r {
            Ok(_) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                self.last_success_ms.store(now, Ordering::Relaxed);
            }
            Err(_) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.attempts.fetch_add(1, Ordering::AcqRel);
        r
    }

    async fn get_once(&self) -> Result<(KeySet, Option<Duration>), JwksError> {
        let url = &self.opts.url;
        let fetch_err = |e: &dyn std::fmt::Display| JwksError::Fetch {
            url: url.clone(),
            reason: e.to_string(),
        };
        let req = http::Request::get(self.uri.clone())
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, "ferroserve")
            .body(Empty::<Bytes>::new())
            .map_err(|e| fetch_err(&e))?;
        let resp = match &self.fetcher {
            Fetcher::Http(c) => c.request(req).await,
            Fetcher::Https(c) => c.request(req).await,
        }
        .map_err(|e| fetch_err(&ErrorChain(&e)))?;
        let status = resp.status();
        if status != http::StatusCode::OK {
            return Err(JwksError::Status {
                url: url.clone(),
                status: status.as_u16(),
            });
        }
        let age = max_age(resp.headers());
        let too_large = || JwksError::TooLarge {
            url: url.clone(),
            limit: self.opts.max_bytes,
        };
        if resp
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > self.opts.max_bytes as u64)
        {
            return Err(too_large());
        }
        let body = Limited::new(resp.into_body(), self.opts.max_bytes)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    too_large()
                } else {
                    fetch_err(&e)
                }
            })?
            .to_bytes();
        Ok((KeySet::parse(&body, url)?, age))
    }
}

/// Displays an error with its sources (hyper-util's errors say little
/// alone).
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut src = self.0.source();
        while let Some(s) = src {
            write!(f, ": {s}")?;
            src = s.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

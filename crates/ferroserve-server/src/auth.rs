//! Authentication and authorization for both front ends, on only when
//! `--auth_config FILE` is given (otherwise no layer is installed at all).
//!
//! * Credentials: `Authorization: Bearer <token>` or `x-api-key: <key>` (HTTP
//!   headers, or the same gRPC metadata). A bearer token shaped like a JWT
//!   (`a.b.c`) is checked as a JWT when `jwt` is configured; anything else is
//!   an API key. API keys are stored as SHA-256 hex digests; plain keys from
//!   `FERROSERVE_API_KEYS` are hashed at start-up.
//! * JWTs: RS256, ES256 or EdDSA, key chosen by `kid` from a JWKS file or
//!   a JWKS URL (fetched at start-up through the egress allow-list, then
//!   refreshed in the background and on an unknown `kid`, see [`jwks`]),
//!   signature, `exp` (required), `nbf`, issuer and audience checked with a
//!   clock-skew leeway. Roles come from a claim (default `roles`).
//! * Authorization: [`Action`] says what a request does; it is decided in one
//!   place per protocol ([`http_action`] from the REST route, and
//!   [`crate::grpc`] from the method and the decoded request). A principal
//!   may infer on (and read metadata/readiness/config/stats of) the models
//!   listed in its grant (`"*"`: all); `admin` allows the repository
//!   extension and listings of every model. A model outside the grant is
//!   refused with 403 whether or not it exists, so existence never leaks.
//! * Health (`/v2/health/*`, `/ping`, `/health`, gRPC health, ServerLive,
//!   ServerReady) is open unless `open_health: false`. `/metrics` needs any
//!   valid credential unless `open_metrics: true`; server metadata needs any
//!   valid credential.
//! * Rate limits: a token bucket per key (or per JWT subject) with a
//!   `rate_limit`; over it: 429 + `Retry-After` / RESOURCE_EXHAUSTED.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasherDefault;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ferroserve_core::Registry;
use jsonwebtoken::{Algorithm, Validation};
use parking_lot::Mutex;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::egress::Policy;
use crate::ratelimit::{retry_after_secs, RateLimit, TokenBucket};

pub mod jwks;

use jwks::{JwksStore, KeySet, RefreshTask, RemoteOptions};

/// Errors reading the auth configuration.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// The configuration is invalid.
    #[error("auth config: {0}")]
    Invalid(String),
    /// The JWKS (file or URL) cannot be read, fetched or used.
    #[error("auth config: {0}")]
    Jwks(jwks::JwksError),
}

// Not `#[from]`: that would make the JWKS error the source too, and
// `{:#}` would print it twice.
impl From<jwks::JwksError> for AuthConfigError {
    fn from(e: jwks::JwksError) -> Self {
        AuthConfigError::Jwks(e)
    }
}

fn cfg_err(e: impl std::fmt::Display) -> AuthConfigError {
    AuthConfigError::Invalid(e.to_string())
}

fn yes() -> bool {
    true
}

/// The `--auth_config` YAML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Health endpoints need no credentials (default true).
    #[serde(default = "yes")]
    pub open_health: bool,
    /// `/metrics` needs no credentials (default false).
    #[serde(default)]
    pub open_metrics: bool,
    /// Named roles that keys and JWTs refer to.
    #[serde(default)]
    pub roles: HashMap<String, Role>,
    /// API keys, stored hashed.
    #[serde(default)]
    pub api_keys: Vec<ApiKey>,
    /// What the plain keys of `FERROSERVE_API_KEYS` may do (default: every
    /// model, not admin).
    #[serde(default)]
    pub env_keys: Option<Grant>,
    /// JWT bearer tokens.
    #[serde(default)]
    pub jwt: Option<JwtConfig>,
}

/// What a role allows.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// Models it may use (`"*"`: all).
    #[serde(default)]
    pub models: Vec<String>,
    /// Repository load/unload/index and model listings.
    #[serde(default)]
    pub admin: bool,
}

/// Permissions given directly, plus roles.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Roles (names under `roles:`).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Models (`"*"`: all).
    #[serde(default)]
    pub models: Vec<String>,
    /// Admin rights.
    #[serde(default)]
    pub admin: bool,
    /// Token bucket for each key.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
}

/// One API key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// Name reported in logs (never the key).
    pub name: String,
    /// `sha256` hex digest of the key (`printf %s KEY | sha256sum`).
    pub sha256: String,
    /// Roles.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Models (`"*"`: all).
    #[serde(default)]
    pub models: Vec<String>,
    /// Admin rights.
    #[serde(default)]
    pub admin: bool,
    /// Token bucket for this key.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
}

fn default_leeway() -> u64 {
    60
}

fn default_roles_claim() -> String {
    "roles".into()
}

fn default_jwks_refresh() -> u64 {
    300
}

fn default_jwks_min_refetch() -> u64 {
    30
}

/// `jwt:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// JWKS file with the public keys (relative paths: to the config file).
    /// Exactly one of `jwks_file` and `jwks_url`.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// `http://` or `https://` URL of the JWKS, fetched at start-up (start-up
    /// fails when it cannot be) through the egress allow-list, then refreshed.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Seconds between background refreshes of `jwks_url` (default 300; a
    /// shorter `Cache-Control: max-age` is honoured).
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh_seconds: u64,
    /// Least seconds between two refetches caused by tokens with an unknown
    /// `kid` (default 30).
    #[serde(default = "default_jwks_min_refetch")]
    pub jwks_min_refetch_seconds: u64,
    /// CA bundle (PEM) for an `https://` `jwks_url` (default: `SSL_CERT_FILE`,
    /// else the system bundle; relative paths: to the config file).
    #[serde(default)]
    pub jwks_ca_file: Option<PathBuf>,
    /// Accepted `iss` values (empty: not checked).
    #[serde(default)]
    pub issuer: Vec<String>,
    /// Accepted `aud` values (empty: not checked).
    #[serde(default)]
    pub audience: Vec<String>,
    /// Clock skew allowed on `exp`/`nbf`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    /// Claim holding role names (a list or one string).
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// Grant every valid token gets, besides its roles.
    #[serde(default)]
    pub default: Grant,
}

/// Hex SHA-256 of an API key, as stored in the config.
pub fn hash_key(key: &str) -> String {
    let d = Sha256::digest(key.as_bytes());
    let mut s = String::with_capacity(64);
    for b in d {
        use std::fmt::Write;
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// What a principal may do.
#[derive(Debug, Clone, Default)]
pub struct Permissions {
    all_models: bool,
    models: HashSet<String>,
    admin: bool,
}

impl Permissions {
    fn add(&mut self, models: &[String], admin: bool) {
        for m in models {
            if m == "*" {
                self.all_models = true;
            } else {
                self.models.insert(m.clone());
            }
        }
        self.admin |= admin;
    }

    /// Whether the principal may use `model`.
    pub fn allows_model(&self, model: &str) -> bool {
        self.all_models || self.models.contains(model)
    }

    /// Whether the principal is admin.
    pub fn is_admin(&self) -> bool {
        self.admin
    }
}

/// An authenticated caller.
#[derive(Debug)]
pub struct Principal {
    /// Key name or JWT subject.
    pub name: String,
    /// What it may do.
    pub perms: Permissions,
    limiter: Option<Arc<TokenBucket>>,
}

/// What a request does, for authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<'a> {
    /// Liveness/readiness probes.
    Health,
    /// `/metrics`.
    Metrics,
    /// Server metadata, reflection, unknown routes: any valid principal.
    Server,
    /// Inference, metadata, readiness, config or statistics of one model.
    Model(Cow<'a, str>),
    /// `/invocations`: the single loaded model, resolved from the registry.
    SingleModel,
    /// Repository load/unload/index, listings of all models.
    Admin,
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No or invalid credentials (401 / UNAUTHENTICATED).
    Unauthenticated(String),
    /// Valid principal without the permission (403 / PERMISSION_DENIED).
    Forbidden(String),
    /// Over the principal's rate limit (429 / RESOURCE_EXHAUSTED).
    RateLimited {
        /// Seconds until a token is available.
        retry_after: u64,
    },
}

impl Denied {
    fn message(&self) -> String {
        match self {
            Denied::Unauthenticated(m) | Denied::Forbidden(m) => m.clone(),
            Denied::RateLimited { retry_after } => {
                format!("rate limit exceeded; retry after {retry_after} s")
            }
        }
    }

    /// The REST answer: `{"error": ...}` with 401 (+ `WWW-Authenticate`),
    /// 403 or 429 (+ `Retry-After`).
    pub fn into_http(self) -> Response {
        let body = axum::Json(serde_json::json!({ "error": self.message() }));
        match self {
            Denied::Unauthenticated(_) => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
                body,
            )
                .into_response(),
            Denied::Forbidden(_) => (StatusCode::FORBIDDEN, body).into_response(),
            Denied::RateLimited { retry_after } => (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, HeaderValue::from(retry_after))],
                body,
            )
                .into_response(),
        }
    }

    /// The gRPC answer.
    pub fn into_status(self) -> tonic::Status {
        let msg = self.message();
        match self {
            Denied::Unauthenticated(_) => tonic::Status::unauthenticated(msg),
            Denied::Forbidden(_) => tonic::Status::permission_denied(msg),
            Denied::RateLimited { .. } => tonic::Status::resource_exhausted(msg),
        }
    }
}

struct JwtVerifier {
    store: Arc<JwksStore>,
    /// Stops the background refresh when the authenticator goes.
    _refresh: Option<RefreshTask>,
    validation: Validation,
    roles_claim: String,
    default: Grant,
    buckets: Mutex<HashMap<String, Arc<TokenBucket>>>,
}

/// The API key header (a constant: looking it up by `&str` parses the name
/// on every request).
const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

const JWT_ALGORITHMS: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];
const MAX_JWT_BUCKETS: usize = 10_000;

/// Hashes a SHA-256 digest by its first bytes. By hand because no general
/// hasher knows its keys are already uniformly random: SipHash of the
/// digest was measurable per request, and a caller cannot steer digests
/// into collisions (that would take SHA-256 preimages).
#[derive(Default)]
struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
    }
}

/// The authenticator built from an [`AuthConfig`].
pub struct Auth {
    open_health: bool,
    open_metrics: bool,
    keys: HashMap<[u8; 32], Arc<Principal>, BuildHasherDefault<DigestHasher>>,
    roles: HashMap<String, Role>,
    jwt: Option<JwtVerifier>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("open_health", &self.open_health)
            .field("open_metrics", &self.open_metrics)
            .field("keys", &self.keys.len())
            .field("jwt", &self.jwt.is_some())
            .finish()
    }
}

/// Where the keys come from: `(Some(file), None)` or `(None, Some(url))`,
/// relative paths resolved against `base`.
fn jwks_source(
    j: &JwtConfig,
    base: Option<&Path>,
) -> Result<(Option<PathBuf>, Option<String>), AuthConfigError> {
    let resolve = |p: &PathBuf| match base {
        Some(b) if p.is_relative() => b.join(p),
        _ => p.clone(),
    };
    let url = j
        .jwks_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty());
    match (&j.jwks_file, url) {
        (Some(f), None) => {
            if j.jwks_ca_file.is_some() {
                return Err(cfg_err("jwt.jwks_ca_file is only used with jwt.jwks_url"));
            }
            Ok((Some(resolve(f)), None))
        }
        (None, Some(u)) => Ok((None, Some(u.to_string()))),
        (Some(_), Some(_)) => Err(cfg_err(
            "jwt: give either jwks_file or jwks_url, not both",
        )),
        (None, None) => Err(cfg_err(
            "jwt: jwks_file (a local JWKS) or jwks_url (http(s)://… of the identity provider's JWKS) is required",
        )),
    }
}

fn read_jwks_file(path: &Path) -> Result<KeySet, AuthConfigError> {
    let doc = std::fs::read(path)
        .map_err(|e| cfg_err(format!("cannot read JWKS {}: {e}", path.display())))?;
    Ok(KeySet::parse(&doc, &path.display().to_string())?)
}

/// The key store of a `jwt:` section: a file read now, or a URL fetched now.
async fn jwks_store(
    j: &JwtConfig,
    base: Option<&Path>,
    egress: &Policy,
) -> Result<JwksStore, AuthConfigError> {
    match jwks_source(j, base)? {
        (Some(file), _) => Ok(JwksStore::fixed(read_jwks_file(&file)?)),
        (None, Some(url)) => {
            if j.jwks_refresh_seconds == 0 || j.jwks_min_refetch_seconds == 0 {
                return Err(cfg_err(
                    "jwt.jwks_refresh_seconds and jwt.jwks_min_refetch_seconds must be at least 1",
                ));
            }
            let mut opts = RemoteOptions::new(url);
            opts.refresh = Duration::from_secs(j.jwks_refresh_seconds);
            opts.min_refetch = Duration::from_secs(j.jwks_min_refetch_seconds);
            opts.ca_file = j.jwks_ca_file.as_ref().map(|p| match base {
                Some(b) if p.is_relative() => b.join(p),
                _ => p.clone(),
            });
            Ok(JwksStore::fetch(opts, egress).await?)
        }
        (None, None) => Err(cfg_err("jwt: no JWKS source")),
    }
}

/// Why a credential check did not produce a principal.
enum Miss {
    /// Refused.
    Denied(Denied),
    /// A JWT whose `kid` is not in the current key set (which comes from a
    /// URL and may be refetched).
    UnknownKid(String),
}

impl From<Denied> for Miss {
    fn from(d: Denied) -> Self {
        Miss::Denied(d)
    }
}

const NO_MATCHING_KEY: &str = "invalid token: no matching key";

impl Auth {
    fn read_config(path: &Path) -> Result<AuthConfig, AuthConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| cfg_err(format!("cannot read {}: {e}", path.display())))?;
        serde_yaml::from_str(&text).map_err(|e| cfg_err(format!("{}: {e}", path.display())))
    }

    /// Reads `path` and adds the plain keys of `env_keys` (the
    /// `FERROSERVE_API_KEYS` comma list). A `jwks_url` needs [`Self::load`].
    pub fn from_file(path: &Path, env_keys: Option<&str>) -> Result<Self, AuthConfigError> {
        Self::new(Self::read_config(path)?, env_keys, path.parent())
    }

    /// Like [`Self::from_file`], and fetches a `jwks_url` (checked against
    /// `egress`) and starts its background refresh (needs a tokio runtime).
    pub async fn load(
        path: &Path,
        env_keys: Option<&str>,
        egress: &Policy,
    ) -> Result<Self, AuthConfigError> {
        Self::new_with_egress(Self::read_config(path)?, env_keys, path.parent(), egress).await
    }

    /// Builds the authenticator, fetching a `jwks_url` (checked against
    /// `egress`) and starting its background refresh; `base` resolves
    /// relative paths.
    pub async fn new_with_egress(
        cfg: AuthConfig,
        env_keys: Option<&str>,
        base: Option<&Path>,
        egress: &Policy,
    ) -> Result<Self, AuthConfigError> {
        let store = match &cfg.jwt {
            Some(j) => Some(Arc::new(jwks_store(j, base, egress).await?)),
            None => None,
        };
        Self::build(cfg, env_keys, store)
    }

    /// Builds the authenticator; `base` resolves a relative `jwks_file`. A
    /// `jwks_url` needs [`Self::new_with_egress`].
    pub fn new(
        cfg: AuthConfig,
        env_keys: Option<&str>,
        base: Option<&Path>,
    ) -> Result<Self, AuthConfigError> {
        let store = match &cfg.jwt {
            Some(j) => {
                let (file, _) = jwks_source(j, base)?;
                let Some(file) = file else {
                    return Err(cfg_err(
                        "jwt.jwks_url needs the asynchronous loader (Auth::load)",
                    ));
                };
                Some(Arc::new(JwksStore::fixed(read_jwks_file(&file)?)))
            }
            None => None,
        };
        Self::build(cfg, env_keys, store)
    }

    fn build(
        cfg: AuthConfig,
        env_keys: Option<&str>,
        store: Option<Arc<JwksStore>>,
    ) -> Result<Self, AuthConfigError> {
        let mut auth = Auth {
            open_health: cfg.open_health,
            open_metrics: cfg.open_metrics,
            keys: HashMap::default(),
            roles: cfg.roles,
            jwt: None,
        };
        for k in &cfg.api_keys {
            let digest = parse_hex32(&k.sha256).ok_or_else(|| {
                cfg_err(format!(
                    "api key '{}': sha256 must be 64 hex digits",
                    k.name
                ))
            })?;
            let grant = Grant {
                roles: k.roles.clone(),
                models: k.models.clone(),
                admin: k.admin,
                rate_limit: k.rate_limit,
            };
            let p = auth.principal(k.name.clone(), &grant)?;
            if auth.keys.insert(digest, Arc::new(p)).is_some() {
                return Err(cfg_err(format!("api key '{}' is listed twice", k.name)));
            }
        }
        let env_grant = cfg.env_keys.clone().unwrap_or(Grant {
            models: vec!["*".into()],
            ..Default::default()
        });
        for (i, key) in env_keys
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .enumerate()
        {
            let p = auth.principal(format!("env-key-{}", i + 1), &env_grant)?;
            let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
            auth.keys.insert(digest, Arc::new(p));
        }
        if let (Some(j), Some(store)) = (cfg.jwt, store) {
            auth.jwt = Some(auth.jwt_verifier(j, store)?);
        }
        if auth.keys.is_empty() && auth.jwt.is_none() {
            return Err(cfg_err(
                "no credentials configured: add api_keys, jwt, or set FERROSERVE_API_KEYS",
            ));
        }
        Ok(auth)
    }

    fn perms(&self, grant: &Grant) -> Result<Permissions, AuthConfigError> {
        let mut p = Permissions::default();
        p.add(&grant.models, grant.admin);
        for r in &grant.roles {
            let role = self
                .roles
                .get(r)
                .ok_or_else(|| cfg_err(format!("unknown role '{r}'")))?;
            p.add(&role.models, role.admin);
        }
        Ok(p)
    }

    fn principal(&self, name: String, grant: &Grant) -> Result<Principal, AuthConfigError> {
        let limiter = match grant.rate_limit {
            Some(rl) => {
                rl.validate().map_err(|e| cfg_err(format!("{name}: {e}")))?;
                Some(Arc::new(TokenBucket::new(rl)))
            }
            None => None,
        };
        Ok(Principal {
            perms: self.perms(grant)?,
            name,
            limiter,
        })
    }

    fn jwt_verifier(
        &self,
        j: JwtConfig,
        store: Arc<JwksStore>,
    ) -> Result<JwtVerifier, AuthConfigError> {
        if let Some(rl) = j.default.rate_limit {
            rl.validate().map_err(|e| cfg_err(format!("jwt: {e}")))?;
        }
        self.perms(&j.default)?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.algorithms = JWT_ALGORITHMS.to_vec();
        validation.leeway = j.leeway_seconds;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        if j.issuer.is_empty() {
            validation.iss = None;
        } else {
            validation.set_issuer(&j.issuer);
        }
        if j.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&j.audience);
        }
        let refresh = store.spawn_refresh();
        Ok(JwtVerifier {
            store,
            _refresh: refresh,
            validation,
            roles_claim: j.roles_claim,
            default: j.default,
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Writes the authenticator's Prometheus metrics (the JWKS store's,
    /// when JWTs are accepted) to `out`.
    pub fn render_metrics(&self, out: &mut String) {
        if let Some(j) = &self.jwt {
            j.store.render_metrics(out);
        }
    }

    /// Whether `action` needs credentials at all.
    pub fn needs_credentials(&self, action: &Action<'_>) -> bool {
        match action {
            Action::Health => !self.open_health,
            Action::Metrics => !self.open_metrics,
            _ => true,
        }
    }

    /// Checks the credentials in `headers` (HTTP headers or gRPC metadata)
    /// and takes a token from the principal's rate limit. A JWT with a `kid`
    /// missing from a URL-fetched key set is refused, and starts a refetch
    /// in the background (see [`Self::authenticate_async`], which waits for
    /// it instead).
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<Principal>, Denied> {
        match self.identify(headers) {
            Ok(p) => Self::take_token(p).map(Cow::into_owned),
            Err(Miss::Denied(d)) => Err(d),
            Err(Miss::UnknownKid(kid)) => {
                if let (Some(j), Ok(rt)) = (&self.jwt, tokio::runtime::Handle::try_current()) {
                    let store = Arc::clone(&j.store);
                    rt.spawn(async move { store.refetch_for_unknown_kid(&kid).await });
                }
                Err(Denied::Unauthenticated(NO_MATCHING_KEY.into()))
            }
        }
    }

    /// Like [`Self::authenticate`], but a JWT whose `kid` is missing from a
    /// URL-fetched key set waits for one refetch of the JWKS (rate-limited,
    /// see [`JwksStore::refetch_for_unknown_kid`]) and is checked again.
    pub async fn authenticate_async(&self, headers: &HeaderMap) -> Result<Arc<Principal>, Denied> {
        match self.identify(headers) {
            Ok(p) => Self::take_token(p).map(Cow::into_owned),
            Err(Miss::Denied(d)) => Err(d),
            Err(Miss::UnknownKid(kid)) => {
                // Boxed: a rare path whose future (an HTTPS fetch) would
                // otherwise enlarge every request's future.
                let refreshed = match &self.jwt {
                    Some(j) => Box::pin(j.store.refetch_for_unknown_kid(&kid)).await,
                    None => false,
                };
                if !refreshed {
                    return Err(Denied::Unauthenticated(NO_MATCHING_KEY.into()));
                }
                match self.identify(headers) {
                    Ok(p) => Self::take_token(p).map(Cow::into_owned),
                    Err(Miss::Denied(d)) => Err(d),
                    Err(Miss::UnknownKid(_)) => {
                        Err(Denied::Unauthenticated(NO_MATCHING_KEY.into()))
                    }
                }
            }
        }
    }

    fn take_token(principal: Cow<'_, Arc<Principal>>) -> Result<Cow<'_, Arc<Principal>>, Denied> {
        if let Some(l) = &principal.limiter {
            l.try_acquire().map_err(|wait| Denied::RateLimited {
                retry_after: retry_after_secs(wait),
            })?;
        }
        Ok(principal)
    }

    /// Finds the principal of the credentials in `headers` (an API key's
    /// borrowed: cloning the `Arc` would make every request of that key
    /// write its reference count, from whichever core serves it).
    fn identify(&self, headers: &HeaderMap) -> Result<Cow<'_, Arc<Principal>>, Miss> {
        let api_key = headers.get(X_API_KEY).map(|v| v.to_str());
        // Looked up only without an API key (which takes precedence).
        let bearer = match api_key {
            Some(_) => None,
            None => headers.get(header::AUTHORIZATION).map(|v| {
                v.to_str().map(|s| {
                    let s = s.trim();
                    match s.split_once(' ') {
                        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => {
                            rest.trim()
                        }
                        _ => "",
                    }
                })
            }),
        };
        match (api_key, bearer) {
            (Some(Ok(k)), _) => Ok(Cow::Borrowed(self.check_key(k.trim())?)),
            (None, Some(Ok(t))) if !t.is_empty() => {
                if self.jwt.is_some() && t.bytes().filter(|b| *b == b'.').count() == 2 {
                    self.check_jwt(t).map(Cow::Owned)
                } else {
                    Ok(Cow::Borrowed(self.check_key(t)?))
                }
            }
            (None, None) => Err(Denied::Unauthenticated(
                "missing credentials: send 'Authorization: Bearer <token>' or 'x-api-key: <key>'"
                    .into(),
            )
            .into()),
            _ => Err(Denied::Unauthenticated(
                "malformed credentials: expected 'Authorization: Bearer <token>' or 'x-api-key: <key>'"
                    .into(),
            )
            .into()),
        }
    }

    fn check_key(&self, key: &str) -> Result<&Arc<Principal>, Denied> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        self.keys
            .get(&digest)
            .ok_or_else(|| Denied::Unauthenticated("invalid API key".into()))
    }

    fn check_jwt(&self, token: &str) -> Result<Arc<Principal>, Miss> {
        let Some(j) = &self.jwt else {
            return Err(Denied::Unauthenticated("invalid token".into()).into());
        };
        let bad =
            |e: jsonwebtoken::errors::Error| Denied::Unauthenticated(format!("invalid token: {e}"));
        let head = jsonwebtoken::decode_header(token).map_err(bad)?;
        if !JWT_ALGORITHMS.contains(&head.alg) {
            return Err(Denied::Unauthenticated(format!(
                "invalid token: algorithm {:?} is not accepted",
                head.alg
            ))
            .into());
        }
        let keys = j.store.keys();
        let Some(key) = keys.find(head.kid.as_deref(), head.alg) else {
            return Err(match head.kid {
                Some(kid) if j.store.is_remote() && !keys.has_kid(&kid) => Miss::UnknownKid(kid),
                _ => Denied::Unauthenticated(NO_MATCHING_KEY.into()).into(),
            });
        };
        let mut validation = j.validation.clone();
        validation.algorithms = vec![head.alg];
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            key,
            &validation,
        )
        .map_err(bad)?;
        drop(keys);
        let claims = data.claims;
        let sub = claims
            .get("sub")
            .and_then(|v| v.as_str())
            .unwrap_or("jwt")
            .to_string();
        let mut perms = self
            .perms(&j.default)
            .map_err(|e| Denied::Unauthenticated(e.to_string()))?;
        let roles: Vec<&str> = match claims.get(&j.roles_claim) {
            Some(serde_json::Value::String(s)) => s.split_whitespace().collect(),
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str()).collect(),
            _ => Vec::new(),
        };
        for r in roles {
            // Unknown role names in a token grant nothing.
            if let Some(role) = self.roles.get(r) {
                perms.add(&role.models, role.admin);
            }
        }
        let limiter = j.default.rate_limit.map(|rl| {
            let mut b = j.buckets.lock();
            if b.len() >= MAX_JWT_BUCKETS {
                b.retain(|_, v| !v.is_full());
            }
            Arc::clone(
                b.entry(sub.clone())
                    .or_insert_with(|| Arc::new(TokenBucket::new(rl))),
            )
        });
        Ok(Arc::new(Principal {
            name: sub,
            perms,
            limiter,
        }))
    }

    /// Whether `principal` may do `action` (`SingleModel` must be resolved
    /// to `Model` first; unresolved it needs access to every model).
    pub fn authorize(&self, principal: &Principal, action: &Action<'_>) -> Result<(), Denied> {
        match action {
            Action::Health | Action::Metrics | Action::Server => Ok(()),
            Action::Model(m) if principal.perms.allows_model(m) => Ok(()),
            Action::SingleModel if principal.perms.all_models => Ok(()),
            Action::Admin if principal.perms.admin => Ok(()),
            Action::Admin => Err(Denied::Forbidden(format!(
                "'{}' is not allowed to manage the model repository or list models",
                principal.name
            ))),
            Action::Model(m) => Err(Denied::Forbidden(format!(
                "'{}' is not allowed to use model '{m}'",
                principal.name
            ))),
            Action::SingleModel => Err(Denied::Forbidden(format!(
                "'{}' is not allowed to use this model",
                principal.name
            ))),
        }
    }

    /// Checks a gRPC request against `action`, using the principal the
    /// [`GrpcAuthLayer`] stored in its extensions.
    pub fn check_grpc(
        &self,
        extensions: &http::Extensions,
        action: &Action<'_>,
    ) -> Result<(), tonic::Status> {
        let p = principal_of(extensions)
            .ok_or_else(|| Denied::Unauthenticated("missing credentials".into()).into_status())?;
        self.authorize(p, action).map_err(Denied::into_status)
    }
}

/// The principal stored in a request's extensions by the auth layers.
pub fn principal_of(extensions: &http::Extensions) -> Option<&Principal> {
    extensions.get::<Arc<Principal>>().map(|p| &**p)
}

fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.as_bytes().contains(&b'%') {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(d) => Cow::Owned(d),
        Err(_) => Cow::Borrowed(s),
    }
}

/// The first six `/`-separated segments of `path` (as `str::split`, by
/// bytes: this runs for every request, and a path has a few short segments).
fn first_segments(path: &str) -> [Option<&str>; 6] {
    let mut seg = [None; 6];
    let mut rest = Some(path);
    for s in seg.iter_mut() {
        let Some(r) = rest else { break };
        // `/` is ASCII: both slices are at character boundaries.
        match r.bytes().position(|b| b == b'/') {
            Some(i) => {
                *s = Some(&r[..i]);
                rest = Some(&r[i + 1..]);
            }
            None => {
                *s = Some(r);
                rest = None;
            }
        }
    }
    seg
}

/// The action of a REST request, from its path (the one place that maps
/// routes to actions: v1, v2, repository, MLflow).
pub fn http_action(path: &str) -> Action<'_> {
    let leading = path.bytes().take_while(|&b| b == b'/').count();
    let seg = first_segments(&path[leading..]);
    match seg {
        [Some("v2"), Some("health"), ..] | [Some("ping" | "health"), None, ..] => Action::Health,
        [Some("metrics"), None, ..] => Action::Metrics,
        [Some("invocations"), None, ..] => Action::SingleModel,
        [Some("v2"), Some("models"), Some("stats"), None, ..] => Action::Admin,
        [Some("v2"), Some("models"), Some(m), ..] if !m.is_empty() => {
            Action::Model(percent_decode(m))
        }
        [Some("v2"), Some("repository"), ..] => Action::Admin,
        // The model list: any caller; the handler lists only their models.
        [Some("v1"), Some("models"), None | Some(""), ..] => Action::Server,
        [Some("v1"), Some("models"), Some(m), ..] => {
            let m = percent_decode(m);
            match m {
                Cow::Borrowed(b) => {
                    Action::Model(Cow::Borrowed(b.rsplit_once(':').map_or(b, |(n, _)| n)))
                }
                Cow::Owned(o) => Action::Model(Cow::Owned(
                    o.rsplit_once(':')
                        .map_or(o.as_str(), |(n, _)| n)
                        .to_string(),
                )),
            }
        }
        _ => Action::Server,
    }
}

/// Whether the handler of an HTTP request with `action` authorizes it
/// further, and so needs the caller's principal in the request extensions:
/// only for [`Action::Server`] (the model lists, which list only the
/// caller's models, and the OpenAI routes, whose model is in the body).
/// Every other action is fully authorized here; storing the principal for
/// each of those requests was an allocation and two writes of a shared
/// reference count for nothing.
fn handler_authorizes(action: &Action<'_>) -> bool {
    matches!(action, Action::Server)
}

/// HTTP authentication and authorization (see [`HttpAuth::check`]).
#[derive(Clone)]
pub struct HttpAuth {
    /// The authenticator.
    pub auth: Arc<Auth>,
    /// The registry (to resolve `/invocations`' single model).
    pub registry: Arc<Registry>,
}

impl HttpAuth {
    /// Authenticates, rate-limits and authorizes `req` (a request for an
    /// open health or metrics endpoint passes as it is). The principal is
    /// stored in the request's extensions; a refusal becomes `401`, `403`
    /// or `429` ([`Denied::into_http`]).
    pub async fn check(&self, req: &mut Request) -> Result<(), Denied> {
        if !self.auth.needs_credentials(&http_action(req.uri().path())) {
            return Ok(());
        }
        let principal = self.auth.authenticate_async(req.headers()).await?;
        let action = http_action(req.uri().path());
        self.authorize(&action, &principal)?;
        if handler_authorizes(&action) {
            req.extensions_mut().insert(principal);
        }
        Ok(())
    }

    /// [`Self::check`] without waiting: `None` when the request bears a
    /// JWT whose key must first be fetched (then call [`Self::check`]).
    pub fn check_now(&self, req: &mut Request) -> Option<Result<(), Denied>> {
        let action = http_action(req.uri().path());
        if !self.auth.needs_credentials(&action) {
            return Some(Ok(()));
        }
        let principal = match self.auth.identify(req.headers()) {
            Ok(p) => Auth::take_token(p),
            Err(Miss::Denied(d)) => Err(d),
            Err(Miss::UnknownKid(_)) => return None,
        };
        let admitted = principal.and_then(|p| self.authorize(&action, &p).map(|()| p));
        let store = handler_authorizes(&action);
        Some(admitted.map(|p| {
            if store {
                req.extensions_mut().insert(p.into_owned());
            }
        }))
    }

    /// Authorizes `principal` for `action` (`/invocations` is its model's
    /// action when one model is loaded).
    fn authorize(&self, action: &Action<'_>, principal: &Principal) -> Result<(), Denied> {
        match action {
            Action::SingleModel => match self.registry.loaded_names().as_slice() {
                [one] => self
                    .auth
                    .authorize(principal, &Action::Model(Cow::Borrowed(one))),
                _ => self.auth.authorize(principal, &Action::SingleModel),
            },
            a => self.auth.authorize(principal, a),
        }
    }
}

/// The action of a gRPC request decided from its path alone (health,
/// reflection and server metadata); `None` for methods whose action depends
/// on the request message (decided in [`crate::grpc`]).
pub fn grpc_path_action(path: &str) -> Option<Action<'static>> {
    if path.starts_with("/grpc.health.v1.Health/") {
        return Some(Action::Health);
    }
    match path.strip_prefix("/inference.GRPCInferenceService/") {
        Some("ServerLive" | "ServerReady") => Some(Action::Health),
        Some("ServerMetadata") => Some(Action::Server),
        Some(_) => None,
        None => Some(Action::Server),
    }
}

/// Tower layer authenticating gRPC calls (metadata `authorization: Bearer
/// …` or `x-api-key`) and storing the principal in the request extensions;
/// the service authorizes per method and model.
#[derive(Clone)]
pub struct GrpcAuthLayer(pub Arc<Auth>);

impl<S> tower::Layer<S> for GrpcAuthLayer {
    type Service = GrpcAuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcAuthService {
            inner,
            auth: Arc::clone(&self.0),
        }
    }
}

/// Service made by [`GrpcAuthLayer`].
#[derive(Clone)]
pub struct GrpcAuthService<S> {
    inner: S,
    auth: Arc<Auth>,
}

impl<S, B, RB> tower::Service<http::Request<B>> for GrpcAuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let needs = match grpc_path_action(req.uri().path()) {
            Some(a) => self.auth.needs_credentials(&a),
            None => true,
        };
        if needs {
            let denied = |d: Denied| d.into_status().into_http::<RB>();
            match self.auth.identify(req.headers()) {
                Ok(p) => match Auth::take_token(p) {
                    Ok(p) => {
                        req.extensions_mut().insert(p.into_owned());
                    }
                    Err(d) => {
                        let resp = denied(d);
                        return Box::pin(async move { Ok(resp) });
                    }
                },
                Err(Miss::Denied(d)) => {
                    let resp = denied(d);
                    return Box::pin(async move { Ok(resp) });
                }
                Err(Miss::UnknownKid(_)) => {
                    // Wait for a JWKS refetch: take the ready inner service
                    // along (leaving a clone to be made ready next time).
                    let clone = self.inner.clone();
                    let mut inner = std::mem::replace(&mut self.inner, clone);
                    let auth = Arc::clone(&self.auth);
                    return Box::pin(async move {
                        match auth.authenticate_async(req.headers()).await {
                            Ok(p) => {
                                req.extensions_mut().insert(p);
                                inner.call(req).await
                            }
                            Err(d) => Ok(denied(d)),
                        }
                    });
                }
            }
        }
        Box::pin(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/auth");

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn auth() -> Auth {
        let yaml = format!(
            r#"
roles:
  reader: {{ models: [iris] }}
  ops: {{ models: ["*"], admin: true }}
api_keys:
  - name: alice
    sha256: {}
    roles: [reader]
    rate_limit: {{ requests_per_second: 1, burst: 2 }}
  - name: root
    sha256: {}
    roles: [ops]
jwt:
  jwks_file: {FIXTURES}/jwks.json
  issuer: [https://issuer.test]
  audience: [ferroserve]
  leeway_seconds: 5
"#,
            hash_key("alice-key"),
            hash_key("root-key")
        );
        let cfg: AuthConfig = serde_yaml::from_str(&yaml).unwrap();
        Auth::new(cfg, Some("env-one, env-two"), None).unwrap()
    }

    fn headers(name: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    fn token(kid: &str, alg: Algorithm, pem: &str, claims: serde_json::Value) -> String {
        let pem = std::fs::read(format!("{FIXTURES}/{pem}")).unwrap();
        let key = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem).unwrap(),
            Algorithm::ES256 => EncodingKey::from_ec_pem(&pem).unwrap(),
            _ => EncodingKey::from_ed_pem(&pem).unwrap(),
        };
        let mut h = Header::new(alg);
        h.kid = Some(kid.into());
        encode(&h, &claims, &key).unwrap()
    }

    fn claims(extra: serde_json::Value) -> serde_json::Value {
        let mut c = serde_json::json!({
            "sub": "bob", "iss": "https://issuer.test", "aud": "ferroserve",
            "exp": now() + 300, "roles": ["reader"],
        });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

    #[test]
    fn hashes_keys_like_sha256sum() {
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(parse_hex32(&hash_key("x")).is_some());
        assert!(parse_hex32("abc").is_none());
        assert!(parse_hex32(&"zz".repeat(32)).is_none());
    }

    #[test]
    fn api_keys_and_env_keys() {
        let a = auth();
        let p = a.authenticate(&headers("x-api-key", "alice-key")).unwrap();
        assert_eq!(p.name, "alice");
        assert!(p.perms.allows_model("iris") && !p.perms.allows_model("other"));
        let p = a
            .authenticate(&headers("authorization", "Bearer root-key"))
            .unwrap();
        assert!(p.perms.is_admin() && p.perms.allows_model("anything"));
        let p = a.authenticate(&headers("x-api-key", "env-two")).unwrap();
        assert!(p.perms.allows_model("x") && !p.perms.is_admin());
        assert!(matches!(
            a.authenticate(&headers("x-api-key", "nope")),
            Err(Denied::Unauthenticated(_))
        ));
        assert!(matches!(
            a.authenticate(&HeaderMap::new()),
            Err(Denied::Unauthenticated(_))
        ));
        assert!(matches!(
            a.authenticate(&headers("authorization", "Basic cm9vdC1rZXk=")),
            Err(Denied::Unauthenticated(_))
        ));
    }

    #[test]
    fn rate_limit_per_key() {
        let a = auth();
        let h = headers("x-api-key", "alice-key");
        assert!(a.authenticate(&h).is_ok());
        assert!(a.authenticate(&h).is_ok());
        assert!(matches!(
            a.authenticate(&h),
            Err(Denied::RateLimited { retry_after: 1 })
        ));
        // Other keys have their own (here: no) limit.
        for _ in 0..10 {
            assert!(a.authenticate(&headers("x-api-key", "root-key")).is_ok());
        }
    }

    #[test]
    fn jwt_validation() {
        let a = auth();
        let bearer = |t: String| headers("authorization", &format!("Bearer {t}"));
        for (kid, alg, pem) in [
            ("rsa-1", Algorithm::RS256, "rsa-1.pem"),
            ("ec-1", Algorithm::ES256, "ec-1.pem"),
            ("ed-1", Algorithm::EdDSA, "ed-1.pem"),
        ] {
            let p = a
                .authenticate(&bearer(token(kid, alg, pem, claims(serde_json::json!({})))))
                .unwrap_or_else(|e| panic!("{kid}: {e:?}"));
            assert_eq!(p.name, "bob");
            assert!(p.perms.allows_model("iris") && !p.perms.allows_model("x"));
        }
        let refused = |t: String| {
            assert!(
                matches!(a.authenticate(&bearer(t)), Err(Denied::Unauthenticated(_))),
                "accepted"
            )
        };
        // Signed by a key not in the JWKS, claiming the RSA key's kid.
        refused(token(
            "rsa-1",
            Algorithm::RS256,
            "rogue-rsa.pem",
            claims(serde_json::json!({})),
        ));
        // Expired (beyond the leeway), not yet valid, wrong audience/issuer, no exp.
        refused(token(
            "rsa-1",
            Algorithm::RS256,
            "rsa-1.pem",
            claims(serde_json::json!({"exp": now() - 60})),
        ));
        refused(token(
            "ed-1",
            Algorithm::EdDSA,
            "ed-1.pem",
            claims(serde_json::json!({"nbf": now() + 60})),
        ));
        refused(token(
            "ed-1",
            Algorithm::EdDSA,
            "ed-1.pem",
            claims(serde_json::json!({"aud": "other"})),
        ));
        refused(token(
            "ed-1",
            Algorithm::EdDSA,
            "ed-1.pem",
            claims(serde_json::json!({"iss": "evil"})),
        ));
        let mut no_exp = claims(serde_json::json!({}));
        no_exp.as_object_mut().unwrap().remove("exp");
        refused(token("ed-1", Algorithm::EdDSA, "ed-1.pem", no_exp));
        // Within the leeway is fine.
        assert!(a
            .authenticate(&bearer(token(
                "ed-1",
                Algorithm::EdDSA,
                "ed-1.pem",
                claims(serde_json::json!({"exp": now() - 2}))
            )))
            .is_ok());
        // A kid naming a key of another type.
        refused(token(
            "rsa-1",
            Algorithm::EdDSA,
            "ed-1.pem",
            claims(serde_json::json!({})),
        ));
        // HS256 with the RSA public key as secret (algorithm confusion).
        let hs = encode(
            &Header::new(Algorithm::HS256),
            &claims(serde_json::json!({})),
            &EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        refused(hs);
        refused("a.b.c".into());
    }

    #[test]
    fn authorization_hides_existence() {
        let a = auth();
        let alice = a.authenticate(&headers("x-api-key", "alice-key")).unwrap();
        assert!(a
            .authorize(&alice, &http_action("/v2/models/iris/infer"))
            .is_ok());
        let other = a.authorize(&alice, &http_action("/v2/models/mlp/infer"));
        let unknown = a.authorize(&alice, &http_action("/v2/models/nope/infer"));
        assert!(matches!(other, Err(Denied::Forbidden(_))));
        assert!(matches!(unknown, Err(Denied::Forbidden(_))));
        assert!(matches!(
            a.authorize(&alice, &http_action("/v2/repository/models/iris/load")),
            Err(Denied::Forbidden(_))
        ));
        assert!(a.authorize(&alice, &http_action("/v2")).is_ok());
    }

    #[test]
    fn routes_to_actions() {
        use Action::*;
        let m = |s: &str| Model(Cow::Owned(s.to_string()));
        assert_eq!(http_action("/v2/health/live"), Health);
        assert_eq!(http_action("/ping"), Health);
        assert_eq!(http_action("/health"), Health);
        assert_eq!(http_action("/metrics"), Metrics);
        assert_eq!(http_action("/v2"), Server);
        assert_eq!(http_action("/v2/"), Server);
        assert_eq!(http_action("/version"), Server);
        assert_eq!(http_action("/v2/models/stats"), Admin);
        assert_eq!(http_action("/v2/models/iris"), m("iris"));
        assert_eq!(http_action("/v2/models/iris/versions/2/infer"), m("iris"));
        assert_eq!(http_action("/v2/models/a%20b/ready"), m("a b"));
        assert_eq!(http_action("/v2/repository/index"), Admin);
        assert_eq!(http_action("/v2/repository/models/iris/load"), Admin);
        assert_eq!(http_action("/v1/models"), Server);
        assert_eq!(http_action("/v1/models/iris"), m("iris"));
        assert_eq!(http_action("/v1/models/iris:predict"), m("iris"));
        assert_eq!(http_action("/v1/models/iris%3Aexplain"), m("iris"));
        assert_eq!(http_action("/invocations"), SingleModel);
        assert_eq!(http_action("/elsewhere"), Server);
        assert_eq!(
            grpc_path_action("/grpc.health.v1.Health/Check"),
            Some(Health)
        );
        assert_eq!(
            grpc_path_action("/inference.GRPCInferenceService/ServerReady"),
            Some(Health)
        );
        assert_eq!(
            grpc_path_action("/inference.GRPCInferenceService/ModelInfer"),
            None
        );
    }

    #[test]
    fn segments_as_split() {
        for path in [
            "",
            "/",
            "a",
            "a/",
            "/a",
            "a//b",
            "v2/models/iris/versions/2/infer",
            "a/b/c/d/e/f/g/h",
            "v1/models/é/x",
            "//",
            "a/b/c/d/e/f",
        ] {
            let mut want = [None; 6];
            for (w, s) in want.iter_mut().zip(path.split('/')) {
                *w = Some(s);
            }
            assert_eq!(first_segments(path), want, "{path:?}");
        }
    }

    #[test]
    fn config_errors() {
        let bad = |y: &str| {
            let cfg: Result<AuthConfig, _> = serde_yaml::from_str(y);
            match cfg {
                Ok(c) => Auth::new(c, None, None).is_err(),
                Err(_) => true,
            }
        };
        assert!(bad("open_health: true\n"));
        assert!(bad("api_keys: [{name: a, sha256: xyz}]\n"));
        assert!(bad(&format!(
            "api_keys: [{{name: a, sha256: {}, roles: [nope]}}]\n",
            hash_key("k")
        )));
        assert!(bad("unknown_field: 1\n"));
        assert!(!bad(&format!(
            "api_keys: [{{name: a, sha256: {}}}]\n",
            hash_key("k")
        )));
    }
}

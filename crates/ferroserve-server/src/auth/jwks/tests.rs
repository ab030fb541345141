//! JWKS fetching against a local HTTP server: start-up errors, rotation
//! through the unknown-kid refetch and the background refresh, rate limits,
//! an unreachable identity provider, the egress allow-list.

use std::sync::atomic::AtomicUsize;

use axum::http::{header, HeaderMap, HeaderValue};
use jsonwebtoken::{encode, EncodingKey, Header};

use super::*;
use crate::auth::{Auth, AuthConfig, Denied};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/auth");

/// The fixture JWKS keeping only the keys whose `kid` is in `kids`.
fn jwks_with(kids: &[&str]) -> String {
    let text = std::fs::read_to_string(format!("{FIXTURES}/jwks.json")).unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let keys = doc["keys"].as_array_mut().unwrap();
    keys.retain(|k| kids.contains(&k["kid"].as_str().unwrap_or("")));
    doc.to_string()
}

/// A tiny identity provider: serves `doc` at `/jwks.json`, counts hits;
/// `status` 0 means "answer 200".
#[derive(Clone, Default)]
struct Idp {
    doc: Arc<parking_lot::Mutex<String>>,
    status: Arc<parking_lot::Mutex<u16>>,
    cache_control: Arc<parking_lot::Mutex<Option<String>>>,
    hits: Arc<AtomicUsize>,
}

impl Idp {
    async fn start(doc: String) -> (Idp, String, tokio::task::JoinHandle<()>) {
        let idp = Idp::default();
        *idp.doc.lock() = doc;
        let st = idp.clone();
        let app = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let st = st.clone();
                async move {
                    st.hits.fetch_add(1, Ordering::SeqCst);
                    let status = *st.status.lock();
                    let mut h = HeaderMap::new();
                    if let Some(cc) = st.cache_control.lock().clone() {
                        h.insert(header::CACHE_CONTROL, HeaderValue::from_str(&cc).unwrap());
                    }
                    let code = if status == 0 {
                        axum::http::StatusCode::OK
                    } else {
                        axum::http::StatusCode::from_u16(status).unwrap()
                    };
                    (code, h, st.doc.lock().clone())
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", l.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        (idp, url, task)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn bearer(kid: &str, alg: Algorithm, pem: &str) -> HeaderMap {
    let pem = std::fs::read(format!("{FIXTURES}/{pem}")).unwrap();
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem).unwrap(),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem).unwrap(),
        _ => EncodingKey::from_ed_pem(&pem).unwrap(),
    };
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    let claims = serde_json::json!({"sub": "bob", "exp": now() + 300, "roles": ["reader"]});
    let t = encode(&h, &claims, &key).unwrap();
    let mut m = HeaderMap::new();
    m.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
    );
    m
}

fn rsa() -> HeaderMap {
    bearer("rsa-1", Algorithm::RS256, "rsa-1.pem")
}

fn ec() -> HeaderMap {
    bearer("ec-1", Algorithm::ES256, "ec-1.pem")
}

async fn auth_for(url: &str, extra: &str, egress: &Policy) -> Result<Auth, AuthConfigError> {
    let yaml = format!("roles:\n  reader: {{ models: [iris] }}\njwt:\n  jwks_url: {url}\n{extra}");
    let cfg: AuthConfig = serde_yaml::from_str(&yaml).unwrap();
    Auth::new_with_egress(cfg, None, None, egress).await
}

use crate::auth::AuthConfigError;

#[tokio::test]
async fn rotation_through_unknown_kid_refetch() {
    let (idp, url, _srv) = Idp::start(jwks_with(&["rsa-1"])).await;
    let a = auth_for(&url, "", &Policy::open()).await.unwrap();
    assert_eq!(idp.hits(), 1);
    assert_eq!(a.authenticate_async(&rsa()).await.unwrap().name, "bob");
    // Key B (ec-1) is published: the first token signed with it refetches.
    *idp.doc.lock() = jwks_with(&["rsa-1", "ec-1"]);
    let p = a.authenticate_async(&ec()).await.unwrap();
    assert!(p.perms.allows_model("iris"));
    assert_eq!(idp.hits(), 2);
    // Known kids never fetch.
    for _ in 0..5 {
        a.authenticate_async(&ec()).await.unwrap();
        a.authenticate_async(&rsa()).await.unwrap();
    }
    assert_eq!(idp.hits(), 2);
}

#[tokio::test]
async fn forged_kids_are_rate_limited() {
    let (idp, url, _srv) = Idp::start(jwks_with(&["rsa-1"])).await;
    let a = auth_for(&url, "", &Policy::open()).await.unwrap();
    // A kid-miss refetch at most once per 30 s, however many kids are sent.
    for i in 0..20 {
        let h = bearer(&format!("forged-{i}"), Algorithm::RS256, "rogue-rsa.pem");
        assert!(matches!(
            a.authenticate_async(&h).await,
            Err(Denied::Unauthenticated(_))
        ));
    }
    assert_eq!(idp.hits(), 2, "one start-up fetch and one refetch");
    // A known kid signed by another key is plainly refused (no refetch).
    let forged = bearer("rsa-1", Algorithm::RS256, "rogue-rsa.pem");
    assert!(a.authenticate_async(&forged).await.is_err());
    assert_eq!(idp.hits(), 2);
    // Within the window even a genuinely new key waits for the refresh.
    *idp.doc.lock() = jwks_with(&["rsa-1", "ec-1"]);
    assert!(a.authenticate_async(&ec()).await.is_err());
    assert_eq!(idp.hits(), 2);
}

#[tokio::test]
async fn background_refresh_and_idp_down() {
    let (idp, url, srv) = Idp::start(jwks_with(&["rsa-1"])).await;
    let a = auth_for(
        &url,
        "  jwks_refresh_seconds: 1\n  jwks_min_refetch_seconds: 1\n",
        &Policy::open(),
    )
    .await
    .unwrap();
    let metrics = |a: &Auth| {
        let mut m = String::new();
        a.render_metrics(&mut m);
        m
    };
    let m = metrics(&a);
    assert!(
        m.contains("ferroserve_jwks_fetches_total{outcome=\"success\"} 1\n"),
        "{m}"
    );
    assert!(
        m.contains("ferroserve_jwks_fetches_total{outcome=\"failure\"} 0\n"),
        "{m}"
    );
    assert!(m.contains("ferroserve_jwks_keys 1\n"), "{m}");
    let stamp = |m: &str| -> f64 {
        m.lines()
            .find_map(|l| l.strip_prefix("ferroserve_jwks_last_success_timestamp_seconds "))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    assert!((stamp(&m) - now() as f64).abs() < 60.0, "{m}");
    // Rotation: ec-1 in, rsa-1 out; the background refresh picks it up.
    *idp.doc.lock() = jwks_with(&["ec-1"]);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert!(idp.hits() >= 2);
    assert!(a.authenticate(&ec()).is_ok(), "refreshed set has ec-1");
    assert!(a.authenticate(&rsa()).is_err(), "rsa-1 was rotated out");
    // The IdP answers errors, then garbage, then goes away: the last good
    // set stays.
    *idp.status.lock() = 503;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(a.authenticate(&ec()).is_ok());
    *idp.status.lock() = 0;
    *idp.doc.lock() = "not json".into();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(a.authenticate(&ec()).is_ok());
    // The failures are counted; the last success stays where it was.
    let m = metrics(&a);
    let failed: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("ferroserve_jwks_fetches_total{outcome=\"failure\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(failed >= 2, "{m}");
    let last = stamp(&m);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(stamp(&metrics(&a)), last, "no success while the IdP fails");
    srv.abort();
    let _ = srv.await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(a.authenticate_async(&ec()).await.is_ok());
    // An unknown kid while the IdP is down: refused, keys kept.
    assert!(a
        .authenticate_async(&bearer("new", Algorithm::RS256, "rsa-1.pem"))
        .await
        .is_err());
    assert!(a.authenticate_async(&ec()).await.is_ok());
}

#[tokio::test]
async fn max_age_shortens_the_refresh() {
    let (idp, url, _srv) = Idp::start(jwks_with(&["rsa-1"])).await;
    *idp.cache_control.lock() = Some("public, max-age=1".into());
    let mut opts = RemoteOptions::new(&url);
    opts.refresh = Duration::from_secs(300);
    opts.min_refetch = Duration::from_secs(1);
    let store = Arc::new(JwksStore::fetch(opts, &Policy::open()).await.unwrap());
    assert_eq!(store.refresh().await.unwrap(), Some(Duration::from_secs(1)));
    let _task = store.spawn_refresh();
    let before = idp.hits();
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert!(idp.hits() > before, "max-age=1 refreshes well before 300 s");
}

#[tokio::test]
async fn start_up_errors() {
    let (idp, url, _srv) = Idp::start("{\"keys\": []}".into()).await;
    // No usable key.
    let e = auth_for(&url, "", &Policy::open()).await.unwrap_err();
    assert!(e.to_string().contains("no usable key"), "{e}");
    // Not a JWKS.
    *idp.doc.lock() = "<html>".into();
    let e = auth_for(&url, "", &Policy::open()).await.unwrap_err();
    assert!(
        matches!(e, AuthConfigError::Jwks(JwksError::Invalid { .. })),
        "{e}"
    );
    // HTTP error.
    *idp.status.lock() = 404;
    let e = auth_for(&url, "", &Policy::open()).await.unwrap_err();
    assert!(e.to_string().contains("HTTP 404"), "{e}");
    // Too large.
    *idp.status.lock() = 0;
    *idp.doc.lock() = format!(
        "{{\"keys\": [], \"pad\": \"{}\"}}",
        "x".repeat(MAX_JWKS_BYTES)
    );
    let e = auth_for(&url, "", &Policy::open()).await.unwrap_err();
    assert!(
        matches!(e, AuthConfigError::Jwks(JwksError::TooLarge { .. })),
        "{e}"
    );
    // Unreachable.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/jwks.json", l.local_addr().unwrap());
    drop(l);
    let e = auth_for(&dead, "", &Policy::open()).await.unwrap_err();
    assert!(
        matches!(e, AuthConfigError::Jwks(JwksError::Fetch { .. })),
        "{e}"
    );
    // Bad URLs and sources.
    for bad in ["ftp://x/jwks", "not a url", "http:///jwks"] {
        assert!(auth_for(bad, "", &Policy::open()).await.is_err(), "{bad}");
    }
    let both: AuthConfig = serde_yaml::from_str(&format!(
        "jwt: {{ jwks_url: {url}, jwks_file: {FIXTURES}/jwks.json }}\n"
    ))
    .unwrap();
    let e = Auth::new_with_egress(both, None, None, &Policy::open())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not both"), "{e}");
    let none: AuthConfig = serde_yaml::from_str("jwt: { issuer: [x] }\n").unwrap();
    assert!(Auth::new(none, None, None).is_err());
    // The synchronous constructor cannot fetch.
    let url_cfg: AuthConfig =
        serde_yaml::from_str(&format!("jwt: {{ jwks_url: {url} }}\n")).unwrap();
    assert!(Auth::new(url_cfg, None, None).is_err());
}

#[tokio::test]
async fn egress_allow_list_is_enforced() {
    let (idp, url, _srv) = Idp::start(jwks_with(&["rsa-1"])).await;
    let port = url
        .trim_start_matches("http://127.0.0.1:")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let closed = Policy::from_rules(&["idp.example.com"]).unwrap();
    let e = auth_for(&url, "", &closed).await.unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("--egress_allow") && msg.contains("jwks_url"),
        "{msg}"
    );
    assert_eq!(idp.hits(), 0, "refused before any connection");
    let open = Policy::from_rules(&[format!("http://127.0.0.1:{port}")]).unwrap();
    assert!(auth_for(&url, "", &open).await.is_ok());
}

#[test]
fn cache_control_max_age() {
    let h = |v: &str| {
        let mut m = HeaderMap::new();
        m.insert(header::CACHE_CONTROL, HeaderValue::from_str(v).unwrap());
        m
    };
    assert_eq!(
        max_age(&h("public, max-age=600")),
        Some(Duration::from_secs(600))
    );
    assert_eq!(max_age(&h("no-store")), None);
    assert_eq!(max_age(&h("max-age=abc")), None);
    assert_eq!(max_age(&HeaderMap::new()), None);
}

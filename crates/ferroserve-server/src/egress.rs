//! Egress allow-list (`--egress_allow`): the hosts and schemes the server
//! may contact (the request logger's sink today; OTLP exporters and model
//! storage URIs call the same [`Policy`]).
//!
//! Semantics: with no rule, the policy is *open*: every destination the
//! operator configured is allowed (KServe users expect a configured sink to
//! just work). With one or more rules, only destinations matching a rule are
//! allowed. Local files (`file://` URIs and plain paths) are not network
//! egress and are always allowed.
//!
//! A rule is `host`, `host:port`, `scheme://host`, `scheme://host:port` or
//! `scheme://` (any host over that scheme). A host may start with `*.` to
//! match every subdomain (`*.example.com`). IPv6 hosts are written in
//! brackets (`[::1]:9000`). Hosts compare case-insensitively; no name is
//! resolved, so a rule for `localhost` does not allow `127.0.0.1`.

use std::fmt;

/// Errors of the egress policy.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// A `--egress_allow` rule could not be parsed.
    #[error("invalid --egress_allow rule {rule:?}: {reason}")]
    BadRule {
        /// The rule as given.
        rule: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A destination URL could not be parsed.
    #[error("invalid {what} URL {url:?}: {reason}")]
    BadUrl {
        /// What the URL is for (e.g. "logger").
        what: String,
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The destination is not on the allow-list.
    #[error(
        "{what} URL {url} is refused by the egress allow-list ({scheme}://{host}:{port} \
         matches none of: {allowed}); add it with --egress_allow"
    )]
    Denied {
        /// What the URL is for.
        what: String,
        /// The URL.
        url: String,
        /// Its scheme.
        scheme: String,
        /// Its host.
        host: String,
        /// Its port (explicit or the scheme's default).
        port: u16,
        /// The rules, for the message.
        allowed: String,
    },
}

/// One allow-list rule.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    scheme: Option<String>,
    /// Lower-case host; empty: any host; leading `*.`: any subdomain.
    host: String,
    port: Option<u16>,
    text: String,
}

impl Rule {
    fn parse(text: &str) -> Result<Rule, EgressError> {
        let bad = |reason: &str| EgressError::BadRule {
            rule: text.to_string(),
            reason: reason.to_string(),
        };
        let t = text.trim();
        if t.is_empty() {
            return Err(bad("empty rule"));
        }
        let (scheme, rest) = match t.split_once("://") {
            Some((s, r)) => {
                if s.is_empty()
                    || !s
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                {
                    return Err(bad("invalid scheme"));
                }
                (Some(s.to_ascii_lowercase()), r)
            }
            None => (None, t),
        };
        // Ignore a path after the authority.
        let authority = rest.split('/').next().unwrap_or("");
        if authority.contains('@') {
            return Err(bad("user info is not allowed"));
        }
        if authority.is_empty() {
            if scheme.is_none() {
                return Err(bad("no host"));
            }
            return Ok(Rule {
                scheme,
                host: String::new(),
                port: None,
                text: t.to_string(),
            });
        }
        let (host, port) = split_host_port(authority).map_err(|r| bad(&r))?;
        Ok(Rule {
            scheme,
            host,
            port,
            text: t.to_string(),
        })
    }

    fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        if self.scheme.as_deref().is_some_and(|s| s != scheme) {
            return false;
        }
        if let Some(p) = self.port {
            if p != port {
                return false;
            }
        }
        if self.host.is_empty() {
            return true;
        }
        match self.host.strip_prefix("*.") {
            Some(suffix) => host
                .strip_suffix(suffix)
                .is_some_and(|head| head.ends_with('.') && head.len() > 1),
            None => self.host == host,
        }
    }
}

/// Splits `host[:port]` (IPv6 in brackets); the host comes back lower-case
/// and without brackets.
fn split_host_port(authority: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or("unclosed '[' in host")?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("junk after ']'")?),
        };
        (h, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            Some(_) => return Err("IPv6 hosts must be in brackets".into()),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    let port = port
        .map(|p| p.parse::<u16>().map_err(|_| format!("invalid port {p:?}")))
        .transpose()?;
    Ok((host.to_ascii_lowercase(), port))
}

/// The default port of a URL scheme.
fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        "grpc" => Some(80),
        "grpcs" => Some(443),
        "s3" | "gs" | "az" | "abfs" | "abfss" | "hf" => Some(443),
        _ => None,
    }
}

/// The hosts and schemes the server may contact.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    rules: Vec<Rule>,
}

impl Policy {
    /// An open policy: everything is allowed (no `--egress_allow` given).
    pub fn open() -> Self {
        Policy::default()
    }

    /// A policy from `--egress_allow` rules; an empty list is open.
    pub fn from_rules<S: AsRef<str>>(rules: &[S]) -> Result<Self, EgressError> {
        let rules = rules
            .iter()
            .map(|r| Rule::parse(r.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Policy { rules })
    }

    /// Whether any rule is set (otherwise everything is allowed).
    pub fn is_restricted(&self) -> bool {
        !self.rules.is_empty()
    }

    /// Checks a destination given as parts (`scheme` lower-case).
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        if !self.is_restricted() || scheme == "file" {
            return true;
        }
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        self.rules.iter().any(|r| r.matches(scheme, &host, port))
    }

    /// Checks a destination URL; `what` names its use in the error (e.g.
    /// `"logger"`, `"OTLP"`, `"storage"`). Plain paths and `file://` URIs
    /// are always allowed.
    pub fn check_url(&self, what: &str, url: &str) -> Result<(), EgressError> {
        let bad = |reason: &str| EgressError::BadUrl {
            what: what.to_string(),
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            // A plain path: local.
            return Ok(());
        };
        let scheme = scheme.to_ascii_lowercase();
        if scheme == "file" {
            return Ok(());
        }
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let authority = authority.rsplit('@').next().unwrap_or("");
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        let (host, port) = split_host_port(authority).map_err(|r| bad(&r))?;
        let port = match port.or_else(|| default_port(&scheme)) {
            Some(p) => p,
            None => return Err(bad("no port and no default port for this scheme")),
        };
        if self.allows(&scheme, &host, port) {
            Ok(())
        } else {
            Err(EgressError::Denied {
                what: what.to_string(),
                url: url.to_string(),
                scheme,
                host,
                port,
                allowed: self.to_string(),
            })
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.rules.is_empty() {
            return f.write_str("(open: everything allowed)");
        }
        let list: Vec<&str> = self.rules.iter().map(|r| r.text.as_str()).collect();
        f.write_str(&list.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_policy_allows_everything() {
        let p = Policy::open();
        assert!(p.check_url("logger", "http://10.0.0.1:9000/x").is_ok());
        assert!(p.check_url("logger", "https://example.com").is_ok());
    }

    #[test]
    fn rules_match_host_port_and_scheme() {
        let p = Policy::from_rules(&[
            "sink.example.com",
            "127.0.0.1:9000",
            "https://*.corp.example",
            "[::1]:8000",
            "grpc://",
        ])
        .unwrap();
        assert!(p.is_restricted());
        assert!(p
            .check_url("logger", "http://sink.example.com/events")
            .is_ok());
        assert!(p
            .check_url("logger", "https://SINK.example.com:8443")
            .is_ok());
        assert!(p.check_url("logger", "http://127.0.0.1:9000/").is_ok());
        assert!(p.check_url("logger", "http://127.0.0.1:9001/").is_err());
        assert!(p.check_url("logger", "https://a.b.corp.example/x").is_ok());
        assert!(p.check_url("logger", "http://a.corp.example/x").is_err());
        assert!(p.check_url("logger", "https://corp.example/x").is_err());
        assert!(p.check_url("logger", "http://[::1]:8000/x").is_ok());
        assert!(p.check_url("otlp", "grpc://anything:4317").is_ok());
        assert!(p.check_url("logger", "http://evil.example.com").is_err());
        assert!(p
            .check_url("logger", "http://user@169.254.169.254/")
            .is_err());
        // Local files are not egress.
        assert!(p.check_url("logger", "file:///tmp/log.jsonl").is_ok());
        assert!(p.check_url("logger", "/tmp/log.jsonl").is_ok());
    }

    #[test]
    fn denial_message_names_the_flag() {
        let p = Policy::from_rules(&["localhost"]).unwrap();
        let e = p
            .check_url("logger", "http://10.1.2.3:80/")
            .unwrap_err()
            .to_string();
        assert!(e.contains("--egress_allow"), "{e}");
        assert!(e.contains("10.1.2.3"), "{e}");
    }

    #[test]
    fn bad_rules_are_refused() {
        for r in ["", "://x", "host:notaport", "::1", "a@b", "[::1"] {
            assert!(Policy::from_rules(&[r]).is_err(), "{r}");
        }
    }
}

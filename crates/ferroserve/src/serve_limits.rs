//! Turns the request-logger, egress and ingress-limit flags into the
//! server's options.

use std::time::Duration;

use anyhow::{bail, Context};
use ferroserve_server::egress::Policy;
use ferroserve_server::limits::Limits;
use ferroserve_server::logger::{LoggerConfig, LoggerMode};

use crate::cli::ServeArgs;

/// The egress allow-list (`--egress_allow`).
pub fn egress_of(args: &ServeArgs) -> anyhow::Result<Policy> {
    let rules: Vec<&String> = args
        .egress_allow
        .iter()
        .filter(|r| !r.trim().is_empty())
        .collect();
    Ok(Policy::from_rules(&rules)?)
}

/// The request logger (`--logger_*`); `None` without `--logger_url`.
pub fn logger_of(args: &ServeArgs) -> anyhow::Result<Option<LoggerConfig>> {
    let url = match args.logger_url.as_deref().map(str::trim) {
        Some(u) if !u.is_empty() => u,
        _ => {
            if args.logger_mode.is_some() {
                bail!(
                    "--logger_mode needs --logger_url (http://host:port/path, or \
                     file:///path/log.jsonl for a local JSON-lines file)"
                );
            }
            return Ok(None);
        }
    };
    let mut c = LoggerConfig::new(url);
    if let Some(m) = &args.logger_mode {
        c.mode = m.parse::<LoggerMode>()?;
    }
    c.source_uri = args.logger_source_uri.clone();
    c.inference_service = args.logger_inference_service.clone();
    c.namespace = args.logger_namespace.clone();
    c.component = args.logger_component.clone();
    c.endpoint = args.logger_endpoint.clone();
    c.queue_size = args.logger_queue_size;
    c.queue_bytes = args.logger_queue_bytes;
    c.max_retries = args.logger_max_retries;
    c.workers = args.logger_workers;
    c.ca_cert_file = args.logger_ca_cert_file.clone();
    c.timeout = seconds("--logger_timeout", args.logger_timeout)?;
    Ok(Some(c))
}

/// Ingress limits (`--max_header_bytes`, `--max_connections`, `--request_timeout`).
pub fn limits_of(args: &ServeArgs) -> anyhow::Result<Limits> {
    if args.max_connections == Some(0) {
        bail!("--max_connections must be at least 1");
    }
    Ok(Limits {
        max_header_bytes: args.max_header_bytes,
        max_connections: args.max_connections,
        request_timeout: args
            .request_timeout
            .map(|s| seconds("--request_timeout", s))
            .transpose()?,
    })
}

fn seconds(flag: &str, s: f64) -> anyhow::Result<Duration> {
    if !(s.is_finite() && s > 0.0) {
        bail!("{flag} must be a positive number of seconds, not {s}");
    }
    Duration::try_from_secs_f64(s).with_context(|| format!("{flag} {s} is too large"))
}

/// Checks the OTLP endpoint tracing will export to against `--egress_allow`
/// (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else `OTEL_EXPORTER_OTLP_ENDPOINT`,
/// else the OTLP default for the configured protocol).
pub fn check_otlp_egress(args: &ServeArgs) -> anyhow::Result<()> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let endpoint = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"))
        .unwrap_or_else(|| {
            let http = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
                .is_some_and(|p| p.starts_with("http"));
            if http {
                "http://localhost:4318".to_string()
            } else {
                "http://localhost:4317".to_string()
            }
        });
    egress_of(args)?.check_url("the OpenTelemetry OTLP endpoint", &endpoint)?;
    Ok(())
}

//! One logged event and its two renderings: CloudEvents binary-mode headers
//! (HTTP sinks) and one CloudEvents JSON line (file sink).
//!
//! Events are built cheaply on the request path (id, body and header values
//! reference-counted or, for the file sink, copied into its thread's
//! batch; no formatting) and rendered by the delivery side: the JSON line is
//! written straight into the sink's buffer, with the attributes every event
//! shares rendered once at start-up.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng as _;

use axum::http::{header, HeaderValue};
use bytes::Bytes;

use super::{EventKind, LoggerConfig, LoggerError};

/// W3C trace context forwarded to the sink with an event.
#[derive(Debug)]
pub(crate) struct TraceHeaders {
    pub(crate) traceparent: HeaderValue,
    pub(crate) tracestate: Option<HeaderValue>,
}

/// A CloudEvents id: a random UUID drawn on the request path as a number
/// (rendered by the delivery side), or the one the caller sent.
#[derive(Debug, Clone)]
pub(crate) enum EventId {
    /// A version 4 UUID (its 128 bits, version and variant set).
    Random(u128),
    /// The caller's `Ce-Id`.
    Given(Arc<str>),
}

impl EventId {
    /// A new random (version 4) UUID.
    pub(crate) fn random() -> Self {
        let mut x: u128 = ID_RNG.with(|r| r.borrow_mut().random());
        x = (x & !(0xF_u128 << 76)) | (0x4_u128 << 76);
        x = (x & !(0x3_u128 << 62)) | (0x2_u128 << 62);
        EventId::Random(x)
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EventId::Random(x) => {
                let mut b = [0u8; 36];
                uuid_text(*x, &mut b);
                // uuid_text writes ASCII hex digits and dashes only.
                f.write_str(std::str::from_utf8(&b).map_err(|_| std::fmt::Error)?)
            }
            EventId::Given(s) => f.write_str(s),
        }
    }
}

thread_local! {
    /// Draws event ids: a small generator per thread, seeded from the
    /// thread's cryptographic one (ids need to be unique, not secret; a
    /// draw from `rand::random` costs several times more, on every logged
    /// request).
    static ID_RNG: std::cell::RefCell<rand::rngs::SmallRng> =
        std::cell::RefCell::new(rand::SeedableRng::from_rng(&mut rand::rng()));
}

/// Writes `x` as a UUID (`8-4-4-4-12` lower-case hex digits) into `out`,
/// a byte (two digits, from a table) at a time.
pub(crate) fn uuid_text(x: u128, out: &mut [u8; 36]) {
    /// Each byte's two hex digits.
    const PAIRS: [[u8; 2]; 256] = {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut t = [[0u8; 2]; 256];
        let mut i = 0;
        while i < 256 {
            t[i] = [HEX[i >> 4], HEX[i & 0xF]];
            i += 1;
        }
        t
    };
    // Where each byte's two digits go (dashes at 8, 13, 18 and 23).
    const AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    for (byte, at) in x.to_be_bytes().into_iter().zip(AT) {
        out[at..at + 2].copy_from_slice(&PAIRS[usize::from(byte)]);
    }
    for dash in [8, 13, 18, 23] {
        out[dash] = b'-';
    }
}

/// What the events of one inference share: the CloudEvents id (the same
/// for a request and its response) and the trace context.
#[derive(Debug, Clone)]
pub struct Correlation {
    pub(crate) id: EventId,
    pub(crate) trace: Option<Arc<TraceHeaders>>,
}

impl Correlation {
    /// A correlation with `id` and no trace context.
    pub fn with_id(id: &str) -> Self {
        Correlation {
            id: EventId::Given(Arc::from(id)),
            trace: None,
        }
    }

    /// The event id (`ce-id`).
    pub fn id(&self) -> String {
        self.id.to_string()
    }
}

/// One event waiting for delivery.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub(crate) kind: EventKind,
    pub(crate) corr: Correlation,
    pub(crate) time: SystemTime,
    pub(crate) content_type: HeaderValue,
    pub(crate) body: Bytes,
}

/// One event of an exchange as the logger takes it (the request or the
/// answer, borrowed; its body as [`Bytes`]) and as the file writer renders
/// it from its batch (body `[u8]`).
#[derive(Debug)]
pub(crate) struct Entry<'a, B: ?Sized = Bytes> {
    pub(crate) kind: EventKind,
    /// When it happened (`time`).
    pub(crate) time: SystemTime,
    pub(crate) content_type: &'a HeaderValue,
    pub(crate) body: &'a B,
}

/// The attributes every event carries, as header values and pre-rendered
/// as a JSON fragment (`,"source":…,"endpoint":…`).
#[derive(Debug)]
pub(crate) struct Attributes {
    source: HeaderValue,
    inference_service: HeaderValue,
    namespace: HeaderValue,
    component: HeaderValue,
    endpoint: HeaderValue,
    json: Vec<u8>,
}

fn header_value(name: &'static str, value: &str) -> Result<HeaderValue, LoggerError> {
    HeaderValue::from_str(value).map_err(|_| LoggerError::Attribute {
        name,
        value: value.to_string(),
    })
}

impl Attributes {
    /// The attributes of `config`; `default_source` when it names no source.
    pub(crate) fn new(config: &LoggerConfig, default_source: &str) -> Result<Self, LoggerError> {
        let source = config.source_uri.as_deref().unwrap_or(default_source);
        let pairs = [
            ("source", source),
            ("inferenceservicename", config.inference_service.as_str()),
            ("namespace", config.namespace.as_str()),
            ("component", config.component.as_str()),
            ("endpoint", config.endpoint.as_str()),
        ];
        let mut json = Vec::new();
        for (name, value) in pairs {
            json.extend_from_slice(b",\"");
            json.extend_from_slice(name.as_bytes());
            json.extend_from_slice(b"\":");
            json_str(&mut json, value);
        }
        Ok(Attributes {
            source: header_value("source", source)?,
            inference_service: header_value("inferenceservicename", &config.inference_service)?,
            namespace: header_value("namespace", &config.namespace)?,
            component: header_value("component", &config.component)?,
            endpoint: header_value("endpoint", &config.endpoint)?,
            json,
        })
    }

    /// CloudEvents binary-mode headers of `ev` (KServe's set, plus the
    /// trace context when the event has one); `recorded` is `ce-recordedtime`.
    pub(crate) fn ce_headers(
        &self,
        ev: &Event,
        recorded: SystemTime,
    ) -> Vec<(&'static str, HeaderValue)> {
        let text = |s: &str| HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static(""));
        let mut h = vec![
            ("ce-specversion", HeaderValue::from_static("1.0")),
            ("ce-id", text(&ev.corr.id.to_string())),
            ("ce-type", HeaderValue::from_static(ev.kind.ce_type())),
            ("ce-source", self.source.clone()),
            ("ce-time", text(&rfc3339(ev.time))),
            ("ce-recordedtime", text(&rfc3339(recorded))),
            ("ce-inferenceservicename", self.inference_service.clone()),
            ("ce-namespace", self.namespace.clone()),
            ("ce-component", self.component.clone()),
            ("ce-endpoint", self.endpoint.clone()),
            ("ce-metadata", HeaderValue::from_static("{}")),
            (header::CONTENT_TYPE.as_str(), ev.content_type.clone()),
        ];
        if let Some(t) = &ev.corr.trace {
            h.push(("traceparent", t.traceparent.clone()));
            if let Some(s) = &t.tracestate {
                h.push(("tracestate", s.clone()));
            }
        }
        h
    }

    /// Appends `ev` of `corr` as one CloudEvents JSON object and a newline
    /// to `out`. `recorded` is the `recordedtime` already rendered (quotes
    /// included); `memo` keeps the last content type rendered. A JSON body
    /// is embedded as `data` as received (its line breaks, which valid JSON
    /// has only between tokens, become spaces); any other body is
    /// `data_base64`.
    pub(crate) fn write_json_line(
        &self,
        corr: &Correlation,
        ev: &Entry<'_, [u8]>,
        recorded: &[u8],
        memo: &mut ContentTypeMemo,
        out: &mut Vec<u8>,
    ) {
        out.extend_from_slice(b"{\"specversion\":\"1.0\",\"id\":");
        match &corr.id {
            EventId::Random(x) => {
                let mut b = [0u8; 36];
                uuid_text(*x, &mut b);
                out.push(b'"');
                out.extend_from_slice(&b);
                out.push(b'"');
            }
            EventId::Given(s) => json_str(out, s),
        }
        out.extend_from_slice(b",\"type\":\"");
        out.extend_from_slice(ev.kind.ce_type().as_bytes());
        out.extend_from_slice(b"\",\"time\":\"");
        write_rfc3339(out, ev.time);
        out.extend_from_slice(b"\",\"recordedtime\":");
        out.extend_from_slice(recorded);
        out.extend_from_slice(&self.json);
        if let Some(t) = &corr.trace {
            out.extend_from_slice(b",\"traceparent\":");
            json_bytes(out, t.traceparent.as_bytes());
            if let Some(s) = &t.tracestate {
                out.extend_from_slice(b",\"tracestate\":");
                json_bytes(out, s.as_bytes());
            }
        }
        let (ct, names_json) = memo.rendered(ev.content_type.as_bytes());
        out.extend_from_slice(ct);
        let is_json =
            names_json && serde_json::from_slice::<serde::de::IgnoredAny>(ev.body).is_ok();
        if is_json {
            out.extend_from_slice(b",\"data\":");
            out.extend(ev.body.iter().map(|&b| match b {
                b'\n' | b'\r' => b' ',
                b => b,
            }));
        } else {
            out.extend_from_slice(b",\"data_base64\":\"");
            base64_into(out, ev.body);
            out.push(b'"');
        }
        out.extend_from_slice(b"}\n");
    }
}

/// The `datacontenttype` attribute of the content type rendered last:
/// most events of a server share one or two content types, so a line
/// usually reuses it instead of checking its bytes again.
#[derive(Default)]
pub(crate) struct ContentTypeMemo {
    content_type: Vec<u8>,
    /// `,"datacontenttype":"…"` (empty until the first line).
    json: Vec<u8>,
    /// Whether it names JSON (a body then is embedded as `data` when it
    /// parses).
    is_json: bool,
}

impl ContentTypeMemo {
    /// `ct` as a line's attribute, and whether it names JSON (from the memo
    /// when it is the last one).
    fn rendered(&mut self, ct: &[u8]) -> (&[u8], bool) {
        if self.json.is_empty() || self.content_type != ct {
            self.content_type.clear();
            self.content_type.extend_from_slice(ct);
            self.json.clear();
            self.json.extend_from_slice(b",\"datacontenttype\":");
            json_bytes(&mut self.json, ct);
            self.is_json = ct.windows(4).any(|w| w.eq_ignore_ascii_case(b"json"));
        }
        (&self.json, self.is_json)
    }
}

/// Appends header bytes as a JSON string: copied as they are when they are
/// printable ASCII needing no escape (the usual case), else escaped (bytes
/// that are not UTF-8 become U+FFFD).
fn json_bytes(out: &mut Vec<u8>, b: &[u8]) {
    if b.iter()
        .all(|&c| (0x20..0x7f).contains(&c) && c != b'"' && c != b'\\')
    {
        out.push(b'"');
        out.extend_from_slice(b);
        out.push(b'"');
    } else {
        json_str(out, &String::from_utf8_lossy(b));
    }
}

/// Appends `s` as a JSON string (escaped, quoted).
fn json_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// RFC 3339 UTC time with microseconds.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let mut out = Vec::with_capacity(27);
    write_rfc3339(&mut out, t);
    String::from_utf8_lossy(&out).into_owned()
}

thread_local! {
    /// The last second [`write_rfc3339`] rendered on this thread and its
    /// `YYYY-MM-DDTHH:MM:SS`: events come many per second, so most need
    /// only their microseconds rendered.
    static LAST_SECOND: std::cell::Cell<(u64, [u8; 19])> =
        const { std::cell::Cell::new((u64::MAX, [0; 19])) };
}

/// Appends `t` as RFC 3339 UTC with microseconds (no quotes).
pub(crate) fn write_rfc3339(out: &mut Vec<u8>, t: SystemTime) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (secs, micros) = (d.as_secs(), d.subsec_micros());
    let head = LAST_SECOND.with(|last| match last.get() {
        (s, head) if s == secs => head,
        _ => {
            let head = render_second(secs);
            last.set((secs, head));
            head
        }
    });
    let mut tail = *b".000000Z";
    let mut v = micros;
    for b in tail[1..7].iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.extend_from_slice(&head);
    out.extend_from_slice(&tail);
}

/// `secs` since the Unix epoch as `YYYY-MM-DDTHH:MM:SS` (UTC).
fn render_second(secs: u64) -> [u8; 19] {
    let secs = secs as i64;
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, sec) = (sod / 3600, sod % 3600 / 60, sod % 60);
    // By hand rather than `write!`: this runs for every logged event.
    let mut b = *b"0000-00-00T00:00:00";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year.clamp(0, 9999) as u64);
    put(5, 2, month as u64);
    put(8, 2, day as u64);
    put(11, 2, h as u64);
    put(14, 2, m as u64);
    put(17, 2, sec as u64);
    b
}

/// Appends `data` in standard base64 with padding (SIMD where the CPU
/// has it: bodies are most of what the file sink writes).
pub(crate) fn base64_into(out: &mut Vec<u8>, data: &[u8]) {
    base64_simd::STANDARD.encode_append(data, out);
}

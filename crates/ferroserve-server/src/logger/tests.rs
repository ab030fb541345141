//! Unit tests of the request logger.

use super::deliver::backoff;
use super::event::{base64_into, rfc3339};
use super::*;
use axum::http::HeaderMap;
use parking_lot::Mutex;
use std::task::Poll;
use std::time::UNIX_EPOCH;

/// One accepted event: its id and CloudEvents headers.
type Accepted = (String, Vec<(&'static str, HeaderValue)>);

/// A sink for tests: fails the first `fail_first` attempts (or all when
/// `always_fail`), hangs when `hang`, records what it accepts.
#[derive(Default)]
pub(super) struct TestSink {
    pub fail_first: AtomicU64,
    pub always_fail: bool,
    pub hang: bool,
    pub attempts: AtomicU64,
    pub got: Mutex<Vec<Accepted>>,
    /// The kind and body of each accepted event, by id.
    pub bodies: Mutex<Vec<(String, EventKind, Bytes)>>,
}

impl TestSink {
    pub async fn accept(
        &self,
        ev: &Event,
        headers: Vec<(&'static str, HeaderValue)>,
    ) -> Result<(), String> {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        if self.hang {
            std::future::pending::<()>().await;
        }
        if self.always_fail {
            return Err("down".into());
        }
        if self
            .fail_first
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err("500".into());
        }
        self.got.lock().push((ev.corr.id.to_string(), headers));
        self.bodies
            .lock()
            .push((ev.corr.id.to_string(), ev.kind, ev.body.clone()));
        Ok(())
    }
}

fn config() -> LoggerConfig {
    let mut c = LoggerConfig::new("http://127.0.0.1:1/");
    c.retry_backoff = Duration::from_millis(1);
    c.inference_service = "isvc".into();
    c.namespace = "ns".into();
    c.component = "predictor".into();
    c.endpoint = "default".into();
    c
}

fn start(c: &LoggerConfig, t: &Arc<TestSink>) -> Arc<Logger> {
    Logger::with_sink(
        c,
        "http://localhost:8080/",
        Sink::Remote(Box::new(Remote::Test(Arc::clone(t)))),
    )
    .unwrap()
}

async fn settle(l: &Logger, n: u64) {
    let s = l.stats();
    for _ in 0..2000 {
        let done = s.sent.load(Ordering::Relaxed)
            + s.failed.load(Ordering::Relaxed)
            + s.dropped.load(Ordering::Relaxed);
        if done >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn healthy_sink_gets_every_event_with_kserve_headers() {
    let t = Arc::new(TestSink::default());
    let l = start(&config(), &t);
    for i in 0..200 {
        let id = format!("id-{i}");
        let c = Correlation::with_id(&id);
        l.log(EventKind::Request, &c, json(), Bytes::from_static(b"{}"));
        l.log(EventKind::Response, &c, json(), Bytes::from_static(b"{}"));
    }
    settle(&l, 400).await;
    assert_eq!(l.stats().sent.load(Ordering::Relaxed), 400);
    assert_eq!(l.stats().dropped.load(Ordering::Relaxed), 0);
    let got = t.got.lock();
    assert_eq!(got.len(), 400);
    let (_, h) = &got[0];
    let get = |k: &str| h.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    assert_eq!(get("ce-specversion").unwrap(), "1.0");
    assert_eq!(get("ce-inferenceservicename").unwrap(), "isvc");
    assert_eq!(get("ce-namespace").unwrap(), "ns");
    assert_eq!(get("ce-component").unwrap(), "predictor");
    assert_eq!(get("ce-endpoint").unwrap(), "default");
    assert_eq!(get("ce-source").unwrap(), "http://localhost:8080/");
    assert!(get("ce-time").is_some());
    let types: Vec<_> = got
        .iter()
        .filter(|(id, _)| id == "id-7")
        .map(|(_, h)| {
            h.iter()
                .find(|(n, _)| *n == "ce-type")
                .map(|(_, v)| v.to_str().unwrap_or("").to_string())
        })
        .collect();
    assert_eq!(types.len(), 2);
    assert!(types.contains(&Some(CE_INFERENCE_REQUEST.into())));
    assert!(types.contains(&Some(CE_INFERENCE_RESPONSE.into())));
}

#[tokio::test]
async fn failures_are_retried_then_counted() {
    let t = Arc::new(TestSink {
        fail_first: AtomicU64::new(2),
        ..Default::default()
    });
    let l = start(&config(), &t);
    l.log(
        EventKind::Request,
        &Correlation::with_id("a"),
        json(),
        Bytes::new(),
    );
    settle(&l, 1).await;
    assert_eq!(l.stats().sent.load(Ordering::Relaxed), 1);
    assert_eq!(l.stats().retries.load(Ordering::Relaxed), 2);

    let t = Arc::new(TestSink {
        always_fail: true,
        ..Default::default()
    });
    let mut c = config();
    c.max_retries = 2;
    let l = start(&c, &t);
    l.log(
        EventKind::Request,
        &Correlation::with_id("a"),
        json(),
        Bytes::new(),
    );
    settle(&l, 1).await;
    assert_eq!(l.stats().failed.load(Ordering::Relaxed), 1);
    assert_eq!(l.stats().sent.load(Ordering::Relaxed), 0);
    assert_eq!(t.attempts.load(Ordering::Relaxed), 3);
}

#[tokio::test]
async fn hanging_sink_never_blocks_and_drops_are_counted() {
    let t = Arc::new(TestSink {
        hang: true,
        ..Default::default()
    });
    let mut c = config();
    c.queue_size = 4;
    c.workers = 1;
    c.timeout = Duration::from_secs(60);
    let l = start(&c, &t);
    let began = Instant::now();
    for _ in 0..100 {
        l.log(
            EventKind::Request,
            &Correlation::with_id("x"),
            json(),
            Bytes::new(),
        );
    }
    assert!(began.elapsed() < Duration::from_millis(500));
    let dropped = l.stats().dropped.load(Ordering::Relaxed);
    // 4 in the queue, at most 1 being delivered.
    assert!((95..=96).contains(&dropped), "{dropped}");
    let mut m = String::new();
    l.render_metrics(&mut m);
    assert!(m.contains(&format!(
        "ferroserve_logger_events_total{{outcome=\"dropped\"}} {dropped}"
    )));
}

#[tokio::test]
async fn timeouts_count_as_failures() {
    let t = Arc::new(TestSink {
        hang: true,
        ..Default::default()
    });
    let mut c = config();
    c.timeout = Duration::from_millis(5);
    c.max_retries = 1;
    let l = start(&c, &t);
    l.log(
        EventKind::Request,
        &Correlation::with_id("x"),
        json(),
        Bytes::new(),
    );
    settle(&l, 1).await;
    assert_eq!(l.stats().failed.load(Ordering::Relaxed), 1);
    assert_eq!(t.attempts.load(Ordering::Relaxed), 2);
}

#[test]
fn helpers() {
    assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
    assert_eq!(
        rfc3339(UNIX_EPOCH + Duration::from_micros(1_709_251_199_123_456)),
        "2024-02-29T23:59:59.123456Z"
    );
    // The same second again (from the per-thread cache), then the next.
    assert_eq!(
        rfc3339(UNIX_EPOCH + Duration::from_micros(1_709_251_199_000_007)),
        "2024-02-29T23:59:59.000007Z"
    );
    assert_eq!(
        rfc3339(UNIX_EPOCH + Duration::from_micros(1_709_251_200_999_999)),
        "2024-03-01T00:00:00.999999Z"
    );
    let u = event::EventId::random().to_string();
    assert_eq!(u.len(), 36);
    assert_eq!(&u[14..15], "4");
    assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"));
    assert_eq!(u.matches('-').count(), 4);
    assert_eq!(&u[8..9], "-");
    assert_ne!(u, event::EventId::random().to_string());
    let b64 = |d: &[u8]| {
        let mut v = Vec::new();
        base64_into(&mut v, d);
        String::from_utf8(v).unwrap()
    };
    assert_eq!(b64(b""), "");
    assert_eq!(b64(b"f"), "Zg==");
    assert_eq!(b64(b"fo"), "Zm8=");
    assert_eq!(b64(b"foobar"), "Zm9vYmFy");
    // Long enough for the SIMD paths, every tail length: as the base64 crate.
    use base64::Engine as _;
    let data: Vec<u8> = (0..300u32).map(|i| (i * 37 % 256) as u8).collect();
    for n in 0..data.len() {
        let want = base64::engine::general_purpose::STANDARD.encode(&data[..n]);
        assert_eq!(b64(&data[..n]), want, "{n} bytes");
    }
    let mut text = [0u8; 36];
    event::uuid_text(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210, &mut text);
    assert_eq!(&text, b"01234567-89ab-cdef-fedc-ba9876543210");
    assert_eq!(
        backoff(Duration::from_millis(100), 0),
        Duration::from_millis(100)
    );
    assert_eq!(
        backoff(Duration::from_millis(100), 3),
        Duration::from_millis(800)
    );
    assert_eq!(
        backoff(Duration::from_millis(100), 30),
        Duration::from_secs(5)
    );
    assert!("ALL".parse::<LoggerMode>().is_ok());
    assert!("x".parse::<LoggerMode>().is_err());
}

#[test]
fn sinks_parse_and_egress_applies() {
    assert!(matches!(
        parse_sink("file:///tmp/x.jsonl"),
        Ok(SinkSpec::File(_))
    ));
    assert!(matches!(parse_sink("/tmp/x.jsonl"), Ok(SinkSpec::File(_))));
    assert!(matches!(parse_sink("http://h:1/p"), Ok(SinkSpec::Http(_))));
    assert!(matches!(parse_sink("https://h/p"), Ok(SinkSpec::Https(_))));
    assert!(parse_sink("file://relative").is_err());
    assert!(parse_sink("ftp://h/").is_err());
    let p = Policy::from_rules(&["127.0.0.1"]).unwrap();
    assert!(LoggerConfig::new("http://127.0.0.1:9/")
        .validate(&p)
        .is_ok());
    let e = LoggerConfig::new("http://10.0.0.1:9/")
        .validate(&p)
        .unwrap_err();
    assert!(matches!(e, LoggerError::Egress(_)));
    assert!(LoggerConfig::new("file:///tmp/l.jsonl")
        .validate(&p)
        .is_ok());
}

fn json() -> HeaderValue {
    HeaderValue::from_static("application/json")
}

#[test]
fn request_headers_picked_in_one_pass() {
    let mut h = HeaderMap::new();
    let none = super::RequestHeaders::of(&h);
    assert!(none.ce_id.is_none() && none.traceparent.is_none() && none.content_type.is_none());
    h.insert("x-other", HeaderValue::from_static("1"));
    h.append("ce-id", HeaderValue::from_static("first"));
    h.append("ce-id", HeaderValue::from_static("second"));
    h.insert("Content-Type", HeaderValue::from_static("text/csv"));
    h.insert("tracestate", HeaderValue::from_static("k=v"));
    let p = super::RequestHeaders::of(&h);
    // The first value of each, as HeaderMap::get.
    assert_eq!(p.ce_id, h.get("ce-id"));
    assert_eq!(p.ce_id.unwrap(), "first");
    assert_eq!(p.content_type.unwrap(), "text/csv");
    assert_eq!(p.tracestate.unwrap(), "k=v");
    assert!(p.traceparent.is_none());
}

#[test]
fn correlation_from_headers() {
    let t = Arc::new(TestSink::default());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _g = rt.enter();
    let l = start(&config(), &t);
    let mut h = HeaderMap::new();
    let begin = |h: &HeaderMap| l.begin(h);
    let c = begin(&h);
    assert_eq!(c.id().len(), 36);
    assert!(c.trace.is_none());
    h.insert("ce-id", HeaderValue::from_static("abc"));
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    h.insert("traceparent", HeaderValue::from_static(tp));
    h.insert("tracestate", HeaderValue::from_static("k=v"));
    let c = begin(&h);
    assert_eq!(c.id(), "abc");
    let tr = c.trace.as_ref().unwrap();
    assert_eq!(tr.traceparent, tp);
    assert_eq!(tr.tracestate.as_ref().unwrap(), "k=v");
    // Sent on as headers of the CloudEvent.
    let ev = Event {
        kind: EventKind::Request,
        corr: c,
        time: UNIX_EPOCH,
        content_type: json(),
        body: Bytes::new(),
    };
    let hs = l.shared.attrs.ce_headers(&ev, UNIX_EPOCH);
    let find = |k: &str| hs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    assert_eq!(find("traceparent").unwrap(), tp);
    assert_eq!(find("tracestate").unwrap(), "k=v");
    assert_eq!(find("ce-id").unwrap(), "abc");
}

#[test]
fn json_lines_embed_json_and_base64_other_bodies() {
    let mut c = config();
    c.source_uri = Some("http://src/".into());
    c.namespace = "n\"s".into();
    let attrs = Attributes::new(&c, "unused").unwrap();
    let tp = HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    let mut corr = Correlation::with_id("id\"1");
    corr.trace = Some(Arc::new(event::TraceHeaders {
        traceparent: tp,
        tracestate: None,
    }));
    let (json, binary) = (json(), HeaderValue::from_static("application/octet-stream"));
    let line = |content_type, body: &'static [u8]| event::Entry::<[u8]> {
        kind: EventKind::Response,
        time: UNIX_EPOCH + Duration::from_micros(1_709_251_199_123_456),
        content_type,
        body,
    };
    let (mut out, mut memo) = (Vec::new(), event::ContentTypeMemo::default());
    let recorded = b"\"2024-01-01T00:00:00.000000Z\"";
    for l in [
        line(&json, b"{\n  \"a\": [1,\r\n 2],\n \"s\": \"x\\ny\"\n}"),
        line(&json, b"{not json"),
        line(&binary, b"\x00\x01"),
    ] {
        attrs.write_json_line(&corr, &l, recorded, &mut memo, &mut out);
    }
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.split_terminator('\n').collect();
    assert_eq!(lines.len(), 3, "{text}");
    let v: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(v[0]["data"], serde_json::json!({"a": [1, 2], "s": "x\ny"}));
    assert_eq!(v[0]["id"], "id\"1");
    assert_eq!(v[0]["type"], CE_INFERENCE_RESPONSE);
    assert_eq!(v[0]["specversion"], "1.0");
    assert_eq!(v[0]["time"], "2024-02-29T23:59:59.123456Z");
    assert_eq!(v[0]["recordedtime"], "2024-01-01T00:00:00.000000Z");
    assert_eq!(v[0]["source"], "http://src/");
    assert_eq!(v[0]["namespace"], "n\"s");
    assert_eq!(v[0]["inferenceservicename"], "isvc");
    assert_eq!(v[0]["component"], "predictor");
    assert_eq!(v[0]["endpoint"], "default");
    assert_eq!(v[0]["datacontenttype"], "application/json");
    assert_eq!(
        v[0]["traceparent"],
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    );
    assert!(v[0].get("data_base64").is_none());
    assert_eq!(v[1]["data_base64"], "e25vdCBqc29u");
    assert_eq!(v[2]["data_base64"], "AAE=");
    assert_eq!(v[2]["datacontenttype"], "application/octet-stream");
}

#[test]
fn file_sink_writes_every_event_and_shutdown_waits() {
    let dir = std::env::temp_dir().join(format!("ferro-logger-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("events.jsonl");
    let _ = std::fs::remove_file(&path);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = LoggerConfig::new(format!("file://{}", path.display()));
        c.queue_size = 100_000;
        let l = Logger::start(&c, &Policy::open(), "http://localhost/").unwrap();
        for i in 0..5000 {
            let corr = Correlation::with_id(&format!("e{i}"));
            l.log(
                EventKind::Request,
                &corr,
                json(),
                Bytes::from_static(b"[1]"),
            );
        }
        l.shutdown(Duration::from_secs(10)).await;
        assert_eq!(l.stats().sent.load(Ordering::Relaxed), 5000);
        assert_eq!(l.stats().dropped.load(Ordering::Relaxed), 0);
    });
    let text = std::fs::read_to_string(&path).unwrap();
    let ids: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].to_string())
        .collect();
    assert_eq!(ids.len(), 5000);
    assert_eq!(ids[0], "\"e0\"");
    assert_eq!(ids[4999], "\"e4999\"");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn body_bytes_bound_the_queue() {
    let t = Arc::new(TestSink {
        hang: true,
        ..Default::default()
    });
    let mut c = config();
    c.queue_bytes = 1000;
    c.workers = 1;
    c.timeout = Duration::from_secs(60);
    let l = start(&c, &t);
    let body = Bytes::from(vec![b'x'; 300]);
    for _ in 0..10 {
        l.log(
            EventKind::Request,
            &Correlation::with_id("b"),
            json(),
            body.clone(),
        );
    }
    // 3 × 300 bytes fit (one of them being delivered, hanging), the rest is dropped.
    assert_eq!(l.stats().dropped.load(Ordering::Relaxed), 7);
    let mut m = String::new();
    l.render_metrics(&mut m);
    assert!(m.contains("ferroserve_logger_queue_bytes 900"), "{m}");
    // An event larger than the whole budget never fits.
    let l2 = start(&c, &Arc::new(TestSink::default()));
    l2.log(
        EventKind::Request,
        &Correlation::with_id("big"),
        json(),
        Bytes::from(vec![0; 1001]),
    );
    assert_eq!(l2.stats().dropped.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn delivered_bytes_leave_the_budget() {
    let t = Arc::new(TestSink::default());
    let mut c = config();
    c.queue_bytes = 1000;
    let l = start(&c, &t);
    for _ in 0..20 {
        l.log(
            EventKind::Request,
            &Correlation::with_id("d"),
            json(),
            Bytes::from(vec![b'y'; 300]),
        );
        settle(&l, 1).await;
        l.shutdown(Duration::from_secs(5)).await;
    }
    assert_eq!(l.stats().sent.load(Ordering::Relaxed), 20);
    assert_eq!(l.stats().dropped.load(Ordering::Relaxed), 0);
}

/// An HTTP request logger delivering to a test sink.
fn http_logging() -> (Arc<TestSink>, Arc<Logger>, HttpLogging) {
    let t = Arc::new(TestSink::default());
    let l = start(&config(), &t);
    let logging = HttpLogging {
        logger: Arc::clone(&l),
        max_body_bytes: 1 << 20,
    };
    (t, l, logging)
}

/// A logged POST whose body the handler reads to its end.
async fn read_request(logging: &HttpLogging, id: &str) -> middleware::Started {
    let mut req = axum::extract::Request::post("/v2/models/m/infer")
        .header("ce-id", id)
        .body(axum::body::Body::from("{\"inputs\":[]}"))
        .unwrap();
    let started = logging.begin(&mut req);
    assert_body(
        req.into_body(),
        b"{\"inputs\":[]}",
        "the handler reads the body as sent",
    )
    .await;
    started
}

/// Reads `body` to its end and checks it is `want`.
async fn assert_body(body: axum::body::Body, want: &[u8], what: &str) {
    let got = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    assert_eq!(&got[..], want, "{what}");
}

/// The `ce-type`s of what the sink accepted with `id`.
fn types_of(t: &TestSink, id: &str) -> Vec<String> {
    let mut types: Vec<String> = t
        .got
        .lock()
        .iter()
        .filter(|(got, _)| got == id)
        .flat_map(|(_, h)| h.iter().filter(|(k, _)| *k == "ce-type"))
        .map(|(_, v)| v.to_str().unwrap().to_string())
        .collect();
    types.sort();
    types
}

#[tokio::test]
async fn an_answered_exchange_logs_its_request_and_answer() {
    let (t, l, logging) = http_logging();
    let exchange = read_request(&logging, "answered").await.bind(&logging);
    let resp = answer(
        exchange,
        axum::response::Response::new(axum::body::Body::from("{\"outputs\":[]}")),
    )
    .await;
    assert_body(
        resp.into_body(),
        b"{\"outputs\":[]}",
        "the answer passes unchanged",
    )
    .await;
    settle(&l, 2).await;
    assert_eq!(
        types_of(&t, "answered"),
        [CE_INFERENCE_REQUEST, CE_INFERENCE_RESPONSE]
    );
}

#[tokio::test]
async fn an_exchange_given_up_before_its_answer_logs_the_request() {
    let (t, l, logging) = http_logging();
    let exchange = read_request(&logging, "gone").await.bind(&logging);
    // The client went away: the edge's future, holding the exchange, is dropped.
    drop(exchange);
    settle(&l, 1).await;
    assert_eq!(types_of(&t, "gone"), [CE_INFERENCE_REQUEST]);
}

/// The answer of `exchange` to `resp`, as the HTTP edge's future gets it:
/// at once, or from the boxed future finishing it.
async fn answer(
    exchange: Exchange<&HttpLogging>,
    resp: axum::response::Response,
) -> axum::response::Response {
    let mut args = Some((exchange, resp));
    let now = std::future::poll_fn(|cx| {
        let (exchange, resp) = args.take().expect("polled once");
        Poll::Ready(exchange.answer_now(resp, cx))
    })
    .await;
    match now {
        Answer::Ready(resp) => resp,
        Answer::Later(later) => later.await,
    }
}

/// The body `t` accepted for event `id` of `kind`.
fn body_of(t: &TestSink, id: &str, kind: EventKind) -> Option<Bytes> {
    t.bodies
        .lock()
        .iter()
        .find(|(got, k, _)| got == id && *k == kind)
        .map(|(_, _, b)| b.clone())
}

#[tokio::test]
async fn an_answer_in_several_frames_is_logged_whole() {
    let (t, l, logging) = http_logging();
    let exchange = read_request(&logging, "frames").await.bind(&logging);
    // Two frames, the second not ready at the first poll: the boxed path.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, std::io::Error>>(2);
    tx.send(Ok(http_body::Frame::data(Bytes::from_static(
        b"{\"outputs\":",
    ))))
    .await
    .unwrap();
    let body = axum::body::Body::new(http_body_util::StreamBody::new(
        tokio_stream::wrappers::ReceiverStream::new(rx),
    ));
    let sender = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"[]}"))))
            .await
            .unwrap();
    });
    let resp = answer(exchange, axum::response::Response::new(body)).await;
    sender.await.unwrap();
    assert_body(
        resp.into_body(),
        b"{\"outputs\":[]}",
        "the answer passes whole",
    )
    .await;
    settle(&l, 2).await;
    assert_eq!(
        body_of(&t, "frames", EventKind::Response).as_deref(),
        Some(&b"{\"outputs\":[]}"[..])
    );
    assert_eq!(
        body_of(&t, "frames", EventKind::Request).as_deref(),
        Some(&b"{\"inputs\":[]}"[..])
    );
}

#[tokio::test]
async fn a_request_the_handler_left_unread_is_read_and_logged() {
    let (t, l, logging) = http_logging();
    let mut req = axum::extract::Request::post("/v2/models/m/infer")
        .header("ce-id", "unread")
        .body(axum::body::Body::from("{\"inputs\":[1]}"))
        .unwrap();
    let exchange = logging.begin(&mut req).bind(&logging);
    // The handler answers without reading the body (an unknown model).
    drop(req);
    let resp = axum::response::Response::builder()
        .status(404)
        .body(axum::body::Body::from("{\"error\":\"no\"}"))
        .unwrap();
    let resp = answer(exchange, resp).await;
    assert_eq!(resp.status(), 404);
    settle(&l, 1).await;
    assert_eq!(types_of(&t, "unread"), [CE_INFERENCE_REQUEST]);
    assert_eq!(
        body_of(&t, "unread", EventKind::Request).as_deref(),
        Some(&b"{\"inputs\":[1]}"[..])
    );
}

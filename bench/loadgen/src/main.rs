//! `loadgen`: a closed-loop load generator for Open Inference Protocol v2 infer requests,
//! over REST JSON (hyper, HTTP/1.1 keep-alive) or gRPC (tonic, HTTP/2).
//!
//! Each of `--concurrency` workers owns one connection and sends its next request as soon as
//! the previous answer arrives. After `--warmup` seconds the measured window of `--duration`
//! seconds starts; only requests that start and finish inside it are counted. The result is
//! one JSON line on stdout.
//!
//! With `--server-pid`, the CPU time (user + system) of that process and all its descendants
//! is read from /proc at both ends of the window: `server_cpu_us_per_req` = delta / requests.

mod json_to_pb;
mod procstat;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use ferroserve_protocol::grpc::pb;
use ferroserve_protocol::grpc::pb::grpc_inference_service_client::GrpcInferenceServiceClient;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Protocol {
    Http,
    Grpc,
}

#[derive(Parser, Debug, Clone)]
#[command(about = "Closed-loop load generator for Open Inference Protocol v2 (REST JSON / gRPC)")]
struct Args {
    /// Server address, e.g. http://127.0.0.1:8080 (HTTP port or gRPC port, per --protocol).
    #[arg(long)]
    url: String,
    #[arg(long, value_enum, default_value = "http")]
    protocol: Protocol,
    /// Model name; the HTTP path is /v2/models/{model}/infer unless --path is given.
    #[arg(long, default_value = "iris")]
    model: String,
    /// HTTP path to POST to (overrides the one derived from --model).
    #[arg(long)]
    path: Option<String>,
    /// Concurrent workers, one connection each.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Measured window, seconds.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Warm-up before the measured window, seconds.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// v2 JSON infer request: sent as is over HTTP, converted to typed contents for gRPC.
    #[arg(long)]
    body_file: PathBuf,
    /// Server pid: its process tree's CPU time is measured over the window.
    #[arg(long)]
    server_pid: Option<i32>,
    /// Free-form label copied into the output.
    #[arg(long)]
    label: Option<String>,
    /// Per-request timeout, milliseconds.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// gRPC: send the tensors as little-endian `raw_input_contents` (as perf_analyzer does)
    /// instead of typed `contents`.
    #[arg(long)]
    grpc_raw: bool,
    /// Tokio worker threads of the load generator (default: number of CPUs).
    #[arg(long)]
    threads: Option<usize>,
}

/// What one worker saw.
#[derive(Default)]
struct WorkerOut {
    lat_ns: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

impl WorkerOut {
    fn error(&mut self, measured: bool, e: String) {
        if measured {
            self.errors += 1;
        }
        self.first_error.get_or_insert(e);
    }
}

#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(t) = args.threads {
        rt.worker_threads(t.max(1));
    }
    rt.build()?.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let body = std::fs::read(&args.body_file)
        .with_context(|| format!("reading {}", args.body_file.display()))?;
    let body_json: Value = serde_json::from_slice(&body).context("--body-file is not JSON")?;
    let timeout = Duration::from_millis(args.timeout_ms);

    // Connect every worker first, so connection set-up is outside both phases.
    let mut tasks = Vec::new();
    let t0;
    let window;
    match args.protocol {
        Protocol::Http => {
            let uri: hyper::Uri = if args.url.contains("://") {
                args.url.parse()?
            } else {
                format!("http://{}", args.url).parse()?
            };
            let authority = uri
                .authority()
                .context("--url needs host:port")?
                .to_string();
            let addr = if uri.port().is_some() {
                authority.clone()
            } else {
                format!("{authority}:80")
            };
            let path = args
                .path
                .clone()
                .unwrap_or_else(|| format!("/v2/models/{}/infer", args.model));
            let mut conns = Vec::new();
            for _ in 0..args.concurrency {
                conns.push(
                    http_connect(&addr)
                        .await
                        .with_context(|| format!("connecting to {addr}"))?,
                );
            }
            t0 = Instant::now();
            window = window_from(t0, &args);
            let body = Bytes::from(body);
            for sender in conns {
                let ctx = HttpCtx {
                    addr: addr.clone(),
                    authority: authority.clone(),
                    path: path.clone(),
                    body: body.clone(),
                    timeout,
                };
                tasks.push(tokio::spawn(http_worker(ctx, sender, window)));
            }
        }
        Protocol::Grpc => {
            let url = if args.url.contains("://") {
                args.url.clone()
            } else {
                format!("http://{}", args.url)
            };
            let mut req = json_to_pb::infer_request(&args.model, &body_json)?;
            if args.grpc_raw {
                json_to_pb::to_raw(&mut req)?;
            }
            let mut clients = Vec::new();
            for _ in 0..args.concurrency {
                // One Endpoint::connect = one HTTP/2 connection per worker.
                let ch = tonic::transport::Endpoint::from_shared(url.clone())?
                    .tcp_nodelay(true)
                    .connect()
                    .await
                    .with_context(|| format!("connecting to {url}"))?;
                clients.push(
                    GrpcInferenceServiceClient::new(ch)
                        .max_decoding_message_size(256 << 20)
                        .max_encoding_message_size(256 << 20),
                );
            }
            t0 = Instant::now();
            window = window_from(t0, &args);
            for client in clients {
                tasks.push(tokio::spawn(grpc_worker(
                    client,
                    req.clone(),
                    timeout,
                    window,
                )));
            }
        }
    }

    // CPU samples at both ends of the window.
    tokio::time::sleep_until(window.start.into()).await;
    let server0 = args.server_pid.and_then(procstat::tree_cpu_seconds);
    let self0 = procstat::self_cpu_seconds();
    let all0 = procstat::all_cpu_ticks();
    let machine0 = procstat::machine_busy_seconds();
    let s0 = Instant::now();
    tokio::time::sleep_until(window.end.into()).await;
    let server1 = args.server_pid.and_then(procstat::tree_cpu_seconds);
    let self1 = procstat::self_cpu_seconds();
    let all1 = procstat::all_cpu_ticks();
    let machine1 = procstat::machine_busy_seconds();
    let measured_s = s0.elapsed().as_secs_f64();

    let mut lat = Vec::new();
    let mut errors = 0u64;
    let mut first_error = None;
    for t in tasks {
        let w = t.await?;
        lat.extend(w.lat_ns);
        errors += w.errors;
        if first_error.is_none() {
            first_error = w.first_error;
        }
    }
    lat.sort_unstable();
    let n = lat.len();
    let us = |ns: u64| (ns as f64 / 100.0).round() / 10.0;
    let pct = |q: f64| -> Value {
        if n == 0 {
            return Value::Null;
        }
        let i = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
        json!(us(lat[i]))
    };
    let mean = if n > 0 {
        json!(us(lat.iter().sum::<u64>() / n as u64))
    } else {
        Value::Null
    };
    let per_req = |cpu_s: f64| -> Value {
        if n == 0 {
            Value::Null
        } else {
            json!((cpu_s * 1e6 / n as f64 * 10.0).round() / 10.0)
        }
    };
    let (server_cpu_us_per_req, server_cpu_cores, server_procs) = match (server0, server1) {
        (Some((a, _)), Some((b, procs))) => (
            per_req(b - a),
            json!(((b - a) / measured_s * 1000.0).round() / 1000.0),
            json!(procs),
        ),
        _ => (Value::Null, Value::Null, Value::Null),
    };
    // CPU used by every other process during the window: a noisy-neighbour check.
    let mut exclude = args
        .server_pid
        .map(procstat::process_tree)
        .unwrap_or_default();
    exclude.push(std::process::id() as i32);
    // Two estimates, each blind in its own way: per-process deltas miss processes that exited
    // during the window (short compiler runs); machine busy time less ours is tick-sampled and reads
    // up to ~0.2 cores low under a ping-pong load. Take the larger.
    let mut others = procstat::others_cpu_seconds(&all0, &all1, &exclude);
    if let (Some(m0), Some(m1)) = (machine0, machine1) {
        let server = match (server0, server1) {
            (Some((x, _)), Some((y, _))) => y - x,
            _ => 0.0,
        };
        others = others.max((m1 - m0) - server - (self1 - self0));
    }
    let others = others.max(0.0);
    let other_cpu_cores = json!((others / measured_s * 1000.0).round() / 1000.0);
    let out = json!({
        "label": args.label,
        "protocol": match args.protocol { Protocol::Http => "http", Protocol::Grpc => "grpc" },
        "grpc_raw": args.grpc_raw,
        "url": args.url,
        "model": args.model,
        "concurrency": args.concurrency,
        "warmup_s": args.warmup,
        "duration_s": args.duration,
        "requests": n,
        "errors": errors,
        "first_error": first_error,
        "throughput_rps": ((n as f64 / args.duration) * 10.0).round() / 10.0,
        "latency_us": { "mean": mean, "p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "max": pct(1.0) },
        "server_pid": args.server_pid,
        "server_processes": server_procs,
        "server_cpu_us_per_req": server_cpu_us_per_req,
        "server_cpu_cores": server_cpu_cores,
        "loadgen_cpu_us_per_req": per_req(self1 - self0),
        "loadgen_cpu_cores": ((self1 - self0) / measured_s * 1000.0).round() / 1000.0,
        "other_cpu_cores": other_cpu_cores,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    });
    println!("{out}");
    Ok(())
}

fn window_from(t0: Instant, args: &Args) -> Window {
    let start = t0 + Duration::from_secs_f64(args.warmup.max(0.0));
    Window {
        start,
        end: start + Duration::from_secs_f64(args.duration.max(0.001)),
    }
}

// ---------------------------------------------------------------- HTTP/1.1

struct HttpCtx {
    addr: String,
    authority: String,
    path: String,
    body: Bytes,
    timeout: Duration,
}

async fn http_connect(addr: &str) -> Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn http_once(ctx: &HttpCtx, sender: &mut SendRequest<Full<Bytes>>) -> Result<Bytes> {
    let req = hyper::Request::post(ctx.path.as_str())
        .header(hyper::header::HOST, ctx.authority.as_str())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(ctx.body.clone()))?;
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
    }
    Ok(body)
}

async fn http_worker(ctx: HttpCtx, sender: SendRequest<Full<Bytes>>, w: Window) -> WorkerOut {
    let mut out = WorkerOut::default();
    let mut sender = Some(sender);
    let mut checked = false;
    loop {
        let start = Instant::now();
        if start >= w.end {
            break;
        }
        let measured = start >= w.start;
        let s = match sender.as_mut() {
            Some(s) => s,
            None => match http_connect(&ctx.addr).await {
                Ok(s) => sender.insert(s),
                Err(e) => {
                    out.error(measured, format!("connect: {e:#}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let r = tokio::time::timeout(ctx.timeout, http_once(&ctx, s)).await;
        let end = Instant::now();
        let in_window = measured && end <= w.end;
        match r {
            Ok(Ok(body)) => {
                if !checked {
                    checked = true;
                    // The first answer must look like a v2 infer response.
                    let ok = serde_json::from_slice::<Value>(&body)
                        .ok()
                        .and_then(|v| {
                            v.get("outputs")
                                .and_then(Value::as_array)
                                .map(|a| !a.is_empty())
                        })
                        .unwrap_or(false);
                    if !ok {
                        out.error(
                            true,
                            format!("not a v2 response: {}", String::from_utf8_lossy(&body)),
                        );
                    }
                }
                if in_window {
                    out.lat_ns.push((end - start).as_nanos() as u64);
                }
            }
            Ok(Err(e)) => {
                out.error(in_window, format!("{e:#}"));
                if s.is_closed() {
                    sender = None;
                }
            }
            Err(_) => {
                out.error(in_window, "timeout".into());
                sender = None; // the connection is in an unknown state
            }
        }
    }
    out
}

// ---------------------------------------------------------------- gRPC

async fn grpc_worker(
    mut client: GrpcInferenceServiceClient<tonic::transport::Channel>,
    req: pb::ModelInferRequest,
    timeout: Duration,
    w: Window,
) -> WorkerOut {
    let mut out = WorkerOut::default();
    let mut checked = false;
    loop {
        let start = Instant::now();
        if start >= w.end {
            break;
        }
        let measured = start >= w.start;
        let r = tokio::time::timeout(
            timeout,
            client.model_infer(tonic::Request::new(req.clone())),
        )
        .await;
        let end = Instant::now();
        let in_window = measured && end <= w.end;
        match r {
            Ok(Ok(resp)) => {
                if !checked {
                    checked = true;
                    if resp.get_ref().outputs.is_empty() {
                        out.error(
                            true,
                            format!("response without outputs: {:?}", resp.get_ref()),
                        );
                    }
                }
                if in_window {
                    out.lat_ns.push((end - start).as_nanos() as u64);
                }
            }
            Ok(Err(status)) => out.error(
                in_window,
                format!("gRPC {:?}: {}", status.code(), status.message()),
            ),
            Err(_) => out.error(in_window, "timeout".into()),
        }
    }
    out
}

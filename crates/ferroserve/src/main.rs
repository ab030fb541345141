//! The `ferroserve` binary: parses the command line, registers the model
//! runtimes, loads the models and runs the HTTP and gRPC servers.

mod cli;
mod hf_cache;
mod serve_limits;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use ferroserve_core::config::{DynamicBatching, QueuePolicy};
use ferroserve_core::scheduler::SchedulingDefaults;
use ferroserve_core::{Registry, RegistryOptions, Runtime};
use ferroserve_server::ServerOptions;

use cli::{Cli, Command, LogFormat, OnnxEngine, ServeArgs};

/// mimalloc instead of the system allocator: request bodies and events are
/// allocated on the tokio workers and freed elsewhere (the request logger's
/// thread, the blocking pool), where glibc's arenas contend; mimalloc frees
/// them without a shared lock (bench/overhead).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The one place that names the engines: every runtime this binary serves.
fn runtimes() -> Vec<Arc<dyn Runtime>> {
    let mut engines: Vec<Arc<dyn Runtime>> = vec![
        Arc::new(ferroserve_runtime_onnx::OnnxRuntime::default()),
        Arc::new(ferroserve_runtime_xgboost::XgboostRuntime::new()),
        Arc::new(ferroserve_runtime_lightgbm::LightgbmRuntime::new()),
        Arc::new(ferroserve_runtime_sklearn::SklearnRuntime::new()),
        Arc::new(ferroserve_runtime_pmml::PmmlRuntime::new()),
        Arc::new(ferroserve_runtime_llm::LlmRuntime::new()),
        Arc::new(ferroserve_runtime_hf::HfEncoderRuntime::new()),
    ];
    // MLflow folders are loaded by the engines above, chosen by flavor.
    let mlflow = ferroserve_runtime_mlflow::MlflowRuntime::new(engines.clone());
    engines.push(Arc::new(mlflow));
    engines
}

/// Sets up logging and, when `tracing` is on, OpenTelemetry span export
/// (call inside the tokio runtime: the gRPC exporter needs it). With
/// tracing off this is the plain log subscriber and nothing else.
fn init_logging(
    format: LogFormat,
    tracing: bool,
) -> anyhow::Result<Option<ferroserve_server::telemetry::TracingGuard>> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let filter = ferroserve_server::telemetry::exclude_from_logs(filter);
    if !tracing {
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        match format {
            LogFormat::Json => builder.json().init(),
            LogFormat::Text => builder.init(),
        }
        return Ok(None);
    }
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Json => fmt.json().with_filter(filter).boxed(),
        LogFormat::Text => fmt.with_filter(filter).boxed(),
    };
    let (otel, guard) = ferroserve_server::telemetry::layer()?;
    tracing_subscriber::registry()
        .with(fmt)
        .with(otel.with_filter(ferroserve_server::telemetry::filter()))
        .init();
    Ok(Some(guard))
}

/// `--tls_*` flags: the TLS configuration, or `None` for plain listeners.
fn tls_of(args: &ServeArgs) -> anyhow::Result<Option<Arc<ferroserve_server::tls::Tls>>> {
    match (&args.tls_cert_file, &args.tls_key_file) {
        (Some(cert), Some(key)) => {
            let tls = ferroserve_server::tls::Tls::load(ferroserve_server::tls::TlsOptions {
                cert_file: cert.clone(),
                key_file: key.clone(),
                client_ca_file: args.tls_client_ca_file.clone(),
            })?;
            tracing::info!(
                cert = %cert.display(),
                mutual = tls.mutual(),
                "TLS on (HTTP and gRPC; SIGHUP reloads the certificate)"
            );
            Ok(Some(tls))
        }
        (None, None) if args.tls_client_ca_file.is_some() => {
            bail!("--tls_client_ca_file needs --tls_cert_file and --tls_key_file")
        }
        (None, None) => Ok(None),
        _ => bail!("--tls_cert_file and --tls_key_file must be given together"),
    }
}

fn model_name_of(dir: &Path) -> anyhow::Result<String> {
    let canonical = dir
        .canonicalize()
        .with_context(|| format!("model folder {} does not exist", dir.display()))?;
    canonical
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .context("cannot derive a model name from the folder; pass --model_name")
}

fn registry_options(args: &ServeArgs) -> anyhow::Result<RegistryOptions> {
    let mut model_dirs = args.model_dir.clone();
    let mut model_names = args.model_name.clone();
    if let Some(id) = &args.model_id {
        let dir = hf_cache::resolve(id)?;
        if model_names.len() < model_dirs.len() {
            bail!("--model_id needs every --model_dir before it to have a --model_name");
        }
        if model_names.len() == model_dirs.len() {
            model_names.push(id.rsplit('/').next().unwrap_or(id).to_string());
        }
        model_dirs.push(dir);
    }
    if model_dirs.is_empty() && args.model_repository.is_empty() {
        bail!(
            "nothing to serve: pass --model_dir DIR, --model_id ORG/NAME or --model_repository DIR"
        );
    }
    if model_names.len() > model_dirs.len() {
        bail!("more --model_name values than --model_dir values");
    }
    let mut explicit = Vec::new();
    for (i, dir) in model_dirs.iter().enumerate() {
        let name = match model_names.get(i) {
            Some(n) => n.clone(),
            None => model_name_of(dir)?,
        };
        if !dir.is_dir() {
            bail!("--model_dir {} is not a folder", dir.display());
        }
        if explicit.iter().any(|(n, _): &(String, _)| *n == name) {
            bail!("model name '{name}' given twice");
        }
        explicit.push((name, dir.clone()));
    }
    for repo in &args.model_repository {
        if !repo.is_dir() {
            bail!("--model_repository {} is not a folder", repo.display());
        }
    }
    let mut default_parameters = BTreeMap::new();
    let engine = match args.onnx_engine {
        OnnxEngine::Auto => "auto",
        OnnxEngine::Ort => "ort",
        OnnxEngine::Tract => "tract",
    };
    default_parameters.insert("engine".to_string(), engine.to_string());
    for (k, v) in args.llm_parameters() {
        default_parameters.insert(k.to_string(), v);
    }
    if args.predict_proba_enabled() {
        // Read by the scikit-learn runtime (also behind MLflow's sklearn
        // flavor); a model's own parameters win.
        default_parameters.insert(
            ferroserve_runtime_sklearn::PREDICT_PROBA_PARAMETER.to_string(),
            "true".to_string(),
        );
    }
    Ok(RegistryOptions {
        repositories: args.model_repository.clone(),
        explicit,
        format_override: args.model_format.clone(),
        default_max_batch_size: args.max_batch_size,
        intra_op_threads: args.intra_op_threads,
        concurrency: if args.workers == 0 {
            num_cpus()
        } else {
            args.workers
        },
        default_parameters,
        drain_timeout: Duration::from_secs_f64(args.drain_timeout.max(0.0)),
        scheduling: SchedulingDefaults {
            dynamic_batching: args.dynamic_batching.then(|| DynamicBatching {
                preferred_batch_size: args.preferred_batch_size.clone(),
                max_queue_delay_microseconds: args.max_queue_delay_microseconds,
                default_queue_policy: QueuePolicy {
                    default_timeout_microseconds: args.default_timeout_microseconds,
                    max_queue_size: args.max_queue_size,
                    ..Default::default()
                },
                ..Default::default()
            }),
            instance_count: args.instance_count,
            container_concurrency: args.container_concurrency,
        },
    })
}

fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let registry = Arc::new(Registry::new(registry_options(&args)?, runtimes()));
    let env_keys = std::env::var("FERROSERVE_API_KEYS").ok();
    let auth = match &args.auth_config {
        Some(path) => Some(Arc::new(
            ferroserve_server::auth::Auth::load(
                path,
                env_keys.as_deref(),
                &serve_limits::egress_of(&args)?,
            )
            .await?,
        )),
        None if env_keys.as_deref().is_some_and(|k| !k.trim().is_empty()) => {
            bail!(
                "FERROSERVE_API_KEYS is set but auth is off: pass --auth_config FILE to turn it on"
            )
        }
        None => None,
    };
    if let Some(a) = &auth {
        tracing::info!(auth = ?a, "authentication on");
    }
    let bound = ferroserve_server::bind_all(ServerOptions {
        host: args.host.clone(),
        http_port: args.http_port,
        grpc_port: (!args.no_grpc).then_some(args.grpc_port),
        max_body_bytes: args.max_request_bytes,
        drain_timeout: Duration::from_secs_f64(args.drain_timeout.max(0.0)),
        metrics: args.metrics,
        metrics_port: args.metrics_port,
        auth,
        cors_allow_origins: args.cors_allow_origin.clone(),
        logger: serve_limits::logger_of(&args)?,
        egress: serve_limits::egress_of(&args)?,
        limits: serve_limits::limits_of(&args)?,
        tls: tls_of(&args)?,
    })
    .await?;
    let http_addr = bound.http_addr;
    let grpc_addr = bound.grpc_addr;
    let metrics_addr = bound.metrics_addr;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(bound.run(Arc::clone(&registry), async move {
        tokio::select! {
            _ = shutdown_signal() => {}
            _ = stop_rx => {}
        }
    }));
    if let Err(e) = registry.load_startup_models().await {
        let _ = stop_tx.send(());
        let _ = server.await;
        return Err(e.into());
    }
    registry.set_ready(true);
    tracing::info!(
        http = %http_addr,
        grpc = %grpc_addr.map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
        metrics = %metrics_addr.map(|a| a.to_string()).unwrap_or_else(|| "http".into()),
        models = registry.loaded().len(),
        startup_ms = started.elapsed().as_secs_f64() * 1e3,
        "ferroserve ready"
    );
    server.await.context("server task failed")??;
    drop(stop_tx);
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Panics contained in model libraries (corrupt files, kernel
    // assertions) are reported as warnings, not as crash reports.
    ferroserve_core::contain::quiet_hook();
    match cli.command {
        Command::Serve(args) => {
            let workers = if args.workers == 0 {
                num_cpus()
            } else {
                args.workers
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .max_blocking_threads(workers.max(1) + 4)
                .build();
            let runtime = match runtime {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let tracing_on =
                match ferroserve_server::telemetry::wanted(args.tracing, |k| std::env::var(k).ok())
                {
                    Ok(on) => on,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::FAILURE;
                    }
                };
            if tracing_on {
                if let Err(e) = serve_limits::check_otlp_egress(&args) {
                    eprintln!("error: {e:#}");
                    return ExitCode::FAILURE;
                }
            }
            let guard = {
                let _in_runtime = runtime.enter();
                match init_logging(args.log_format, tracing_on) {
                    Ok(g) => g,
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        return ExitCode::FAILURE;
                    }
                }
            };
            if tracing_on {
                tracing::info!("OpenTelemetry tracing on (OTLP, configured by OTEL_* variables)");
            }
            let code = match runtime.block_on(serve(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            };
            // Export the spans still buffered before the runtime goes.
            if let Some(g) = guard {
                let _in_runtime = runtime.enter();
                g.shutdown();
            }
            code
        }
    }
}

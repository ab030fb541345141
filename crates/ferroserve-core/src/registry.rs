//! The model registry: which models exist, which versions are loaded, and
//! the model repository operations (index, load, unload).
//!
//! Lookups on the request path take a short read lock and clone an `Arc`;
//! loading and unloading run under a per-model async lock so that concurrent
//! load/unload calls of one model are serialised while other models keep
//! serving. A request holds its version's `Arc` for as long as it runs, so a
//! reload swaps versions without dropping traffic and an unload can wait for
//! in-flight requests by watching the reference count.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use crate::config::ModelConfig;
use crate::error::Error;
use crate::model::{LoadContext, Model, Runtime, Signature};
use crate::scheduler::{Scheduler, SchedulerConfig, SchedulingDefaults};
use crate::stats::ModelStats;

/// Largest batch accepted by batchable models without a configured limit.
pub const DEFAULT_MAX_BATCH_SIZE: u32 = 1024;

/// One loaded, servable version of a model.
pub struct ServedModel {
    /// Model name.
    pub name: String,
    /// Version number.
    pub version: u64,
    /// Version as the protocols spell it.
    pub version_str: String,
    /// The model format that loaded it (`onnx`, …).
    pub format: &'static str,
    /// The runtime's model.
    pub model: Arc<dyn Model>,
    /// The per-model configuration in effect.
    pub config: ModelConfig,
    /// Largest batch a request may carry (0: the model does not batch).
    pub max_batch_size: u32,
    /// Statistics of this version.
    pub stats: Arc<ModelStats>,
    /// How long the runtime took to load this version.
    pub load_duration: Duration,
    /// The queue/batcher, when the model's configuration asks for one;
    /// `None`: requests run directly.
    pub scheduler: Option<Arc<Scheduler>>,
}

impl Drop for ServedModel {
    fn drop(&mut self) {
        if let Some(s) = &self.scheduler {
            s.close();
        }
    }
}

impl ServedModel {
    /// The model's signature.
    pub fn signature(&self) -> &Signature {
        self.model.signature()
    }
}

impl std::fmt::Debug for ServedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedModel")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

/// Lifecycle state of a model, as the repository index reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelState {
    /// Being loaded for the first time.
    Loading,
    /// At least one version serves.
    Ready,
    /// Waiting for in-flight requests before unloading.
    Unloading,
    /// Not loaded; the reason says why (`unloaded`, a load error, …).
    Unavailable(String),
}

impl ModelState {
    /// Triton's state name.
    pub fn as_str(&self) -> &'static str {
        match self {
            ModelState::Loading => "LOADING",
            ModelState::Ready => "READY",
            ModelState::Unloading => "UNLOADING",
            ModelState::Unavailable(_) => "UNAVAILABLE",
        }
    }
}

/// One row of the repository index.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexEntry {
    /// Model name.
    pub name: String,
    /// Version, when the row is about one loaded version.
    pub version: Option<String>,
    /// State.
    pub state: ModelState,
}

struct Entry {
    state: ModelState,
    versions: BTreeMap<u64, Arc<ServedModel>>,
}

/// How the registry finds and loads models.
#[derive(Clone, Default)]
pub struct RegistryOptions {
    /// Folders holding one subfolder per model.
    pub repositories: Vec<PathBuf>,
    /// Models given one by one: name → folder.
    pub explicit: Vec<(String, PathBuf)>,
    /// Format forced for every model (`--model_format`).
    pub format_override: Option<String>,
    /// Max batch size for batchable models without one configured.
    pub default_max_batch_size: Option<u32>,
    /// Threads a runtime may use inside one inference.
    pub intra_op_threads: usize,
    /// Inferences that may run at once per model.
    pub concurrency: usize,
    /// Runtime parameters applied to every model unless its `model.yaml` sets them.
    pub default_parameters: BTreeMap<String, String>,
    /// How long an unload waits for in-flight requests.
    pub drain_timeout: Duration,
    /// Batching/concurrency defaults for models whose configuration is silent.
    pub scheduling: SchedulingDefaults,
}

/// The registry of models. Cheap to share behind an `Arc`.
pub struct Registry {
    options: RegistryOptions,
    runtimes: Vec<Arc<dyn Runtime>>,
    entries: RwLock<HashMap<String, Entry>>,
    op_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    ready: AtomicBool,
}

impl Registry {
    /// A registry that loads with `runtimes`.
    pub fn new(options: RegistryOptions, runtimes: Vec<Arc<dyn Runtime>>) -> Self {
        Registry {
            options,
            runtimes,
            entries: RwLock::new(HashMap::new()),
            op_locks: Mutex::new(HashMap::new()),
            ready: AtomicBool::new(false),
        }
    }

    /// Formats this registry can load.
    pub fn formats(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for r in &self.runtimes {
            if !out.contains(&r.format()) {
                out.push(r.format());
            }
        }
        out
    }

    /// Marks the server ready (after start-up loading) or not (shutting down).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// True when start-up is complete, the server is not draining, and every
    /// model that was asked for at start-up is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Looks a model up for inference. `version` of `None` or `""` picks the
    /// newest loaded version.
    pub fn get(&self, name: &str, version: Option<&str>) -> Result<Arc<ServedModel>, Error> {
        let version = version.filter(|v| !v.is_empty());
        let entries = self.entries.read();
        let Some(entry) = entries.get(name) else {
            return Err(Error::model_not_found(name, None));
        };
        match &entry.state {
            ModelState::Ready => {}
            ModelState::Loading => {
                return Err(Error::Unavailable(format!("model '{name}' is loading")))
            }
            ModelState::Unloading => {
                return Err(Error::Unavailable(format!("model '{name}' is unloading")))
            }
            ModelState::Unavailable(reason) => {
                return Err(Error::Unavailable(format!(
                    "model '{name}' is not ready: {reason}"
                )))
            }
        }
        let found = match version {
            None => entry.versions.values().next_back(),
            Some(v) => v.parse::<u64>().ok().and_then(|n| entry.versions.get(&n)),
        };
        let found = found
            .cloned()
            .ok_or_else(|| Error::model_not_found(name, version))?;
        crate::trace::record_model(&found.name, &found.version_str);
        Ok(found)
    }

    /// Every loaded version, sorted by name then version.
    pub fn loaded(&self) -> Vec<Arc<ServedModel>> {
        let entries = self.entries.read();
        let mut out: Vec<Arc<ServedModel>> = entries
            .values()
            .filter(|e| e.state == ModelState::Ready)
            .flat_map(|e| e.versions.values().cloned())
            .collect();
        out.sort_by(|a, b| (&a.name, a.version).cmp(&(&b.name, b.version)));
        out
    }

    /// Names of the loaded models, sorted, each once (whatever its
    /// number of loaded versions).
    pub fn loaded_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.loaded().iter().map(|m| m.name.clone()).collect();
        names.dedup();
        names
    }

    /// Versions of `name` that are loaded, as strings.
    pub fn versions(&self, name: &str) -> Vec<String> {
        let entries = self.entries.read();
        entries
            .get(name)
            .map(|e| e.versions.keys().map(|v| v.to_string()).collect())
            .unwrap_or_default()
    }

    /// Names of every model known to the repositories or loaded.
    pub fn known_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.entries.read().keys().cloned().collect();
        names.extend(self.options.explicit.iter().map(|(n, _)| n.clone()));
        for repo in &self.options.repositories {
            if let Ok(rd) = std::fs::read_dir(repo) {
                for e in rd.flatten() {
                    if e.path().is_dir() {
                        if let Some(n) = e.file_name().to_str() {
                            if !n.starts_with('.') {
                                names.push(n.to_string());
                            }
                        }
                    }
                }
            }
        }
        names.sort();
        names.dedup();
        names
    }

    /// The repository index: one row per loaded version, one per model that
    /// is known but not loaded.
    pub fn index(&self, ready_only: bool) -> Vec<IndexEntry> {
        let names = self.known_names();
        let entries = self.entries.read();
        let mut out = Vec::new();
        for name in names {
            match entries.get(&name) {
                Some(e) if !e.versions.is_empty() => {
                    for v in e.versions.keys() {
                        out.push(IndexEntry {
                            name: name.clone(),
                            version: Some(v.to_string()),
                            state: e.state.clone(),
                        });
                    }
                }
                Some(e) => out.push(IndexEntry {
                    name,
                    version: None,
                    state: e.state.clone(),
                }),
                None => out.push(IndexEntry {
                    name,
                    version: None,
                    state: ModelState::Unavailable("unloaded".into()),
                }),
            }
        }
        if ready_only {
            out.retain(|e| e.state == ModelState::Ready);
        }
        out
    }

    fn op_lock(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.op_locks
            .lock()
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
            .clone()
    }

    /// The folder a model name loads from.
    fn source_of(&self, name: &str) -> Result<PathBuf, Error> {
        if let Some((_, p)) = self.options.explicit.iter().find(|(n, _)| n == name) {
            return Ok(p.clone());
        }
        let valid = !name.is_empty() && !name.contains(['/', '\\']) && name != "." && name != "..";
        if valid {
            for repo in &self.options.repositories {
                let p = repo.join(name);
                if p.is_dir() {
                    return Ok(p);
                }
            }
        }
        Err(Error::NotFound(format!(
            "model '{name}' not found in any model repository"
        )))
    }

    /// Loads (or reloads) `name` from its folder. While a reload runs the
    /// old versions keep serving; they are swapped out only once every new
    /// version has loaded. A failed reload leaves the old versions in place.
    pub async fn load(self: &Arc<Self>, name: &str) -> Result<(), Error> {
        let lock = self.op_lock(name);
        let _guard = lock.lock().await;
        let dir = self.source_of(name)?;
        {
            let mut entries = self.entries.write();
            let e = entries.entry(name.to_string()).or_insert_with(|| Entry {
                state: ModelState::Loading,
                versions: BTreeMap::new(),
            });
            if e.versions.is_empty() {
                e.state = ModelState::Loading;
            }
        }
        let this = Arc::clone(self);
        let owned = name.to_string();
        let result = tokio::task::spawn_blocking(move || this.load_versions(&owned, &dir))
            .await
            .unwrap_or_else(|e| Err(Error::Load(format!("loader task failed: {e}"))));
        let mut entries = self.entries.write();
        let entry = entries.entry(name.to_string()).or_insert_with(|| Entry {
            state: ModelState::Loading,
            versions: BTreeMap::new(),
        });
        match result {
            Ok(versions) => {
                entry.versions = versions;
                entry.state = ModelState::Ready;
                Ok(())
            }
            Err(e) => {
                if entry.versions.is_empty() {
                    entry.state = ModelState::Unavailable(e.to_string());
                }
                Err(e)
            }
        }
    }

    /// Unloads every version of `name`, waiting (up to the drain timeout) for
    /// requests that are still running on it.
    pub async fn unload(&self, name: &str) -> Result<(), Error> {
        let lock = self.op_lock(name);
        let _guard = lock.lock().await;
        let old = {
            let mut entries = self.entries.write();
            let Some(entry) = entries.get_mut(name) else {
                // Known but never loaded: nothing to do, as Triton does.
                return if self.source_of(name).is_ok() {
                    Ok(())
                } else {
                    Err(Error::model_not_found(name, None))
                };
            };
            entry.state = ModelState::Unloading;
            std::mem::take(&mut entry.versions)
        };
        let deadline = Instant::now() + self.options.drain_timeout;
        for v in old.values() {
            while Arc::strong_count(v) > 1 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        drop(old);
        if let Some(entry) = self.entries.write().get_mut(name) {
            entry.state = ModelState::Unavailable("unloaded".into());
        }
        Ok(())
    }

    /// Loads every model given at start-up (explicit folders and every
    /// subfolder of the repositories). Fails on the first model that does
    /// not load, naming it.
    pub async fn load_startup_models(self: &Arc<Self>) -> Result<(), Error> {
        for name in self.known_names() {
            self.load(&name)
                .await
                .map_err(|e| Error::Load(format!("model '{name}': {e}")))?;
        }
        Ok(())
    }

    fn load_versions(
        &self,
        name: &str,
        dir: &Path,
    ) -> Result<BTreeMap<u64, Arc<ServedModel>>, Error> {
        if !dir.is_dir() {
            return Err(Error::Load(format!("{} is not a folder", dir.display())));
        }
        let mut config = ModelConfig::from_dir(dir)?;
        for (k, v) in &self.options.default_parameters {
            config
                .parameters
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
        let found = numeric_subdirs(dir)?;
        let plan: Vec<(u64, PathBuf)> = if found.is_empty() {
            vec![(1, dir.to_path_buf())]
        } else {
            let selected = config.version_policy.select(&found);
            if selected.is_empty() {
                return Err(Error::Load(format!(
                    "no version of '{name}' matches its version policy (found {found:?})"
                )));
            }
            selected
                .into_iter()
                .map(|v| (v, dir.join(v.to_string())))
                .collect()
        };
        let mut out = BTreeMap::new();
        for (version, vdir) in plan {
            let runtime = self.pick_runtime(&vdir, &config)?;
            let ctx = LoadContext {
                intra_op_threads: self.options.intra_op_threads,
                concurrency: self.options.concurrency.max(1),
                config: config.clone(),
            };
            let started = Instant::now();
            let model = runtime.load(&vdir, &ctx).map_err(|e| match e {
                Error::Load(m) => Error::Load(format!("{}: {m}", vdir.display())),
                other => other,
            })?;
            let kserve_max = config.batcher.as_ref().and_then(|b| b.max_batch_size);
            let max_batch_size = match config.max_batch_size.or(kserve_max) {
                Some(n) => n,
                None if model.signature().is_batchable() => self
                    .options
                    .default_max_batch_size
                    .unwrap_or(DEFAULT_MAX_BATCH_SIZE),
                None => 0,
            };
            tracing::info!(
                model = name,
                version,
                format = runtime.format(),
                elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                "model loaded"
            );
            let stats = Arc::new(ModelStats::default());
            let scheduler =
                SchedulerConfig::resolve(&config, &self.options.scheduling, max_batch_size).map(
                    |cfg| {
                        tracing::info!(model = name, version, ?cfg, "scheduler");
                        Arc::new(Scheduler::new(
                            cfg,
                            Arc::clone(&model),
                            Arc::clone(&stats),
                            name.to_string(),
                            version.to_string(),
                        ))
                    },
                );
            out.insert(
                version,
                Arc::new(ServedModel {
                    name: name.to_string(),
                    version,
                    version_str: version.to_string(),
                    format: runtime.format(),
                    model,
                    config: config.clone(),
                    max_batch_size,
                    stats,
                    load_duration: started.elapsed(),
                    scheduler,
                }),
            );
        }
        Ok(out)
    }

    fn pick_runtime(&self, dir: &Path, config: &ModelConfig) -> Result<Arc<dyn Runtime>, Error> {
        let forced = config
            .format
            .as_ref()
            .or(self.options.format_override.as_ref());
        if let Some(fmt) = forced {
            // Several runtimes may share a format name (`huggingface`:
            // decoders and encoders); the one that recognises the folder wins.
            let named: Vec<&Arc<dyn Runtime>> = self
                .runtimes
                .iter()
                .filter(|r| r.format().eq_ignore_ascii_case(fmt))
                .collect();
            return named
                .iter()
                .find(|r| r.detect(dir).is_some())
                .or_else(|| named.first())
                .map(|r| Arc::clone(r))
                .ok_or_else(|| {
                    Error::Load(format!(
                        "unknown model format '{fmt}' (this server knows: {})",
                        self.formats().join(", ")
                    ))
                });
        }
        let hits: Vec<(Arc<dyn Runtime>, String)> = self
            .runtimes
            .iter()
            .filter_map(|r| r.detect(dir).map(|f| (Arc::clone(r), f)))
            .collect();
        let top = hits.iter().map(|(r, _)| r.detect_priority()).max();
        let hits: Vec<_> = hits
            .into_iter()
            .filter(|(r, _)| Some(r.detect_priority()) == top)
            .collect();
        if hits.len() > 1 {
            return Err(Error::Load(format!(
                "ambiguous model folder {}: it holds {}; pick one with --model_format or `format:` in model.yaml",
                dir.display(),
                hits.iter()
                    .map(|(r, f)| format!("{} ({})", f, r.format()))
                    .collect::<Vec<_>>()
                    .join(" and ")
            )));
        }
        hits.into_iter().next().map(|(r, _)| r).ok_or_else(|| {
            Error::Load(format!(
                "no model found in {}: files present: [{}]; known formats: {}",
                dir.display(),
                list_files(dir).join(", "),
                self.formats().join(", ")
            ))
        })
    }
}

fn numeric_subdirs(dir: &Path) -> Result<Vec<u64>, Error> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::Load(format!("{}: {e}", dir.display())))?;
    let mut out: Vec<u64> = rd
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u64>().ok()))
        .collect();
    out.sort_unstable();
    Ok(out)
}

fn list_files(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datatype::DataType;
    use crate::model::TensorSpec;
    use crate::request::InferRequest;
    use crate::tensor::Tensor;

    /// A model that doubles its input, optionally slowly.
    struct Doubler {
        sig: Signature,
        delay: Duration,
    }

    impl Model for Doubler {
        fn signature(&self) -> &Signature {
            &self.sig
        }
        fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, Error> {
            std::thread::sleep(self.delay);
            let x = inputs[0].to_vec::<f32>()?;
            let y: Vec<f32> = x.iter().map(|v| v * 2.0).collect();
            Ok(vec![Tensor::from_vec("y", inputs[0].shape.clone(), y)?])
        }
    }

    struct FakeRuntime;

    impl Runtime for FakeRuntime {
        fn format(&self) -> &'static str {
            "fake"
        }
        fn detect(&self, dir: &Path) -> Option<String> {
            dir.join("model.fake")
                .exists()
                .then(|| "model.fake".to_string())
        }
        fn load(&self, dir: &Path, _: &LoadContext) -> Result<Arc<dyn Model>, Error> {
            let text = std::fs::read_to_string(dir.join("model.fake"))
                .map_err(|e| Error::Load(e.to_string()))?;
            let delay_ms: u64 = text
                .trim()
                .parse()
                .map_err(|_| Error::Load("bad fake model".into()))?;
            Ok(Arc::new(Doubler {
                sig: Signature {
                    platform: "fake".into(),
                    backend: "fake".into(),
                    model_file: "model.fake".into(),
                    inputs: vec![TensorSpec::new("x", DataType::F32, vec![-1])],
                    outputs: vec![TensorSpec::new("y", DataType::F32, vec![-1])],
                },
                delay: Duration::from_millis(delay_ms),
            }))
        }
    }

    fn repo(versions: &[(&str, u64)]) -> PathBuf {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "ferroserve-registry-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        for (v, delay) in versions {
            let d = root.join("m").join(v);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("model.fake"), delay.to_string()).unwrap();
        }
        root
    }

    fn registry(root: PathBuf) -> Arc<Registry> {
        Arc::new(Registry::new(
            RegistryOptions {
                repositories: vec![root],
                drain_timeout: Duration::from_secs(10),
                ..Default::default()
            },
            vec![Arc::new(FakeRuntime)],
        ))
    }

    fn request() -> InferRequest {
        InferRequest {
            inputs: vec![Tensor::from_vec("x", vec![2], vec![1.0f32, 2.0]).unwrap()],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn latest_version_served_and_reload_swaps() {
        let root = repo(&[("1", 0), ("2", 0)]);
        let reg = registry(root.clone());
        reg.load_startup_models().await.unwrap();
        assert_eq!(reg.versions("m"), vec!["2"]);
        assert!(reg.get("m", Some("1")).is_err());
        std::fs::create_dir_all(root.join("m/3")).unwrap();
        std::fs::write(root.join("m/3/model.fake"), "0").unwrap();
        reg.load("m").await.unwrap();
        assert_eq!(reg.get("m", None).unwrap().version, 3);
        // A broken new version keeps the old one serving.
        std::fs::create_dir_all(root.join("m/4")).unwrap();
        std::fs::write(root.join("m/4/model.fake"), "nonsense").unwrap();
        assert!(reg.load("m").await.is_err());
        assert_eq!(reg.get("m", None).unwrap().version, 3);
        std::fs::remove_dir_all(root).ok();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unload_waits_for_in_flight_requests() {
        let root = repo(&[("1", 300)]);
        let reg = registry(root.clone());
        reg.load_startup_models().await.unwrap();
        let model = reg.get("m", None).unwrap();
        let running = tokio::spawn(crate::executor::infer(model, request()));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let t0 = Instant::now();
        reg.unload("m").await.unwrap();
        assert!(
            t0.elapsed() >= Duration::from_millis(200),
            "unload returned before the request finished"
        );
        let resp = running.await.unwrap().unwrap();
        assert_eq!(resp.outputs[0].to_vec::<f32>().unwrap(), vec![2.0, 4.0]);
        assert!(matches!(reg.get("m", None), Err(Error::Unavailable(_))));
        assert_eq!(
            reg.index(false)[0].state,
            ModelState::Unavailable("unloaded".into())
        );
        std::fs::remove_dir_all(root).ok();
    }

    #[tokio::test]
    async fn unknown_and_invalid_names() {
        let reg = registry(repo(&[("1", 0)]));
        assert!(matches!(reg.load("nope").await, Err(Error::NotFound(_))));
        assert!(matches!(reg.load("../m").await, Err(Error::NotFound(_))));
        assert!(matches!(reg.get("m", None), Err(Error::NotFound(_))));
        assert!(matches!(reg.unload("nope").await, Err(Error::NotFound(_))));
    }

    #[tokio::test]
    async fn validation_errors() {
        let reg = registry(repo(&[("1", 0)]));
        reg.load("m").await.unwrap();
        let m = reg.get("m", None).unwrap();
        let mut bad = request();
        bad.inputs[0] = Tensor::from_vec("x", vec![2], vec![1i32, 2]).unwrap();
        assert!(crate::executor::infer(Arc::clone(&m), bad).await.is_err());
        let mut missing = request();
        missing.inputs.clear();
        let e = crate::executor::infer(Arc::clone(&m), missing)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("missing input 'x'"));
        let mut unknown_out = request();
        unknown_out.outputs.push(crate::request::RequestedOutput {
            name: "z".into(),
            ..Default::default()
        });
        assert!(crate::executor::infer(Arc::clone(&m), unknown_out)
            .await
            .is_err());
        let s = m.stats.snapshot();
        assert_eq!(s.fail.0, 3);
        assert_eq!(s.success.0, 0);
    }
}

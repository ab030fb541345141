//! The ONNX runtime of ferroserve, with two engines behind one [`Runtime`]:
//!
//! - **ort**: ONNX Runtime, loaded at run time from `libonnxruntime.so` (see
//!   [`ort_library`] for where it is looked for). Runs everything ONNX Runtime
//!   runs, including the `ai.onnx.ml` operators of scikit-learn exports.
//! - **tract**: pure Rust, always available; most of the standard operators,
//!   few of `ai.onnx.ml`, no bfloat16.
//!
//! The per-model parameter `engine` (in `model.yaml` under `parameters:`)
//! picks one: `auto` (default: ort when its library is found and loads, else
//! tract), `ort` or `tract`.

pub mod ort_library;

mod ort_engine;
mod proto;
mod tract_engine;

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use ferroserve_core::{Error, LoadContext, Model, Runtime, Signature, Tensor, TensorSpec};

/// The model file looked for first.
pub const DEFAULT_MODEL_FILE: &str = "model.onnx";

/// Name of the per-model parameter that picks the engine.
pub const ENGINE_PARAMETER: &str = "engine";

/// Name of the output parameter holding a ZipMap output's column keys (a JSON array).
pub const ZIPMAP_KEYS_PARAMETER: &str = "zipmap_keys";

/// Which engine runs a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// ONNX Runtime when it is available, else tract.
    #[default]
    Auto,
    /// ONNX Runtime (`libonnxruntime`, loaded at run time).
    Ort,
    /// tract, the pure-Rust engine.
    Tract,
}

impl Engine {
    /// The name used in configuration (`auto`, `ort`, `tract`).
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Auto => "auto",
            Engine::Ort => "ort",
            Engine::Tract => "tract",
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Engine {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(Engine::Auto),
            "ort" | "onnxruntime" => Ok(Engine::Ort),
            "tract" => Ok(Engine::Tract),
            other => Err(Error::Load(format!(
                "unknown ONNX engine '{other}' (parameter `{ENGINE_PARAMETER}`: expected auto, ort or tract)"
            ))),
        }
    }
}

/// The ONNX [`Runtime`]: recognises `model.onnx` (or a folder's only `*.onnx`)
/// and loads it with the engine the model's configuration asks for.
#[derive(Debug, Clone, Default)]
pub struct OnnxRuntime {
    ort_library: Option<PathBuf>,
}

impl OnnxRuntime {
    /// A runtime that finds ONNX Runtime through `ORT_DYLIB_PATH` or the
    /// search of [`ort_library::find_onnxruntime`].
    pub fn new() -> Self {
        OnnxRuntime::default()
    }

    /// A runtime that loads ONNX Runtime from `path` (a library file or a
    /// folder holding one) instead of looking for it. ONNX Runtime is loaded
    /// once per process: the first library that loads is the one used.
    pub fn with_ort_library(path: impl Into<PathBuf>) -> Self {
        OnnxRuntime {
            ort_library: Some(path.into()),
        }
    }

    /// Whether the ort engine can be used, loading ONNX Runtime if needed;
    /// `Err` says why not.
    pub fn ort_available(&self) -> Result<(), String> {
        ort_engine::available(self.ort_library.as_deref())
    }

    /// Loads the model in `dir` and returns it with its concrete type, which
    /// tells which engine runs it. [`Runtime::load`] wraps this.
    pub fn load_model(&self, dir: &Path, ctx: &LoadContext) -> Result<OnnxModel, Error> {
        let file_name = self.detect(dir).ok_or_else(|| {
            Error::Load(format!(
                "{}: no ONNX model found (expected {DEFAULT_MODEL_FILE} or a single *.onnx file)",
                dir.display()
            ))
        })?;
        let path = dir.join(&file_name);
        let engine: Engine = match ctx.config.parameters.get(ENGINE_PARAMETER) {
            Some(v) => v.parse()?,
            None => Engine::Auto,
        };
        let sessions = ctx.concurrency.max(1);
        let ort_lib = self.ort_library.as_deref();
        let load_ort = || {
            ort_engine::load(&path, &file_name, ort_lib, sessions, ctx.intra_op_threads)
                .map(|(m, s)| (Inner::Ort(m), s))
        };
        let load_tract =
            || tract_engine::load(&path, &file_name).map(|(m, s)| (Inner::Tract(m), s));
        let (inner, signature) = match engine {
            Engine::Ort => load_ort()?,
            Engine::Tract => load_tract()?,
            Engine::Auto => match ort_engine::available(ort_lib) {
                Ok(()) => match load_ort() {
                    Ok(loaded) => loaded,
                    Err(ort_err) => {
                        tracing::warn!(model = %path.display(), error = %ort_err, "ONNX Runtime could not load the model; trying tract");
                        load_tract().map_err(|tract_err| {
                            Error::Load(format!("neither engine could load the model. ort: {ort_err} | tract: {tract_err}"))
                        })?
                    }
                },
                Err(why) => {
                    tracing::debug!(reason = %why, "ONNX Runtime not available; using tract");
                    load_tract()?
                }
            },
        };
        let model = OnnxModel { inner, signature };
        match &model.inner {
            Inner::Ort(m) => tracing::info!(
                model = %path.display(),
                engine = "ort",
                sessions = m.sessions(),
                intra_op_threads = ctx.intra_op_threads,
                "loaded ONNX model"
            ),
            Inner::Tract(_) => {
                tracing::info!(model = %path.display(), engine = "tract", "loaded ONNX model")
            }
        }
        Ok(model)
    }
}

impl Runtime for OnnxRuntime {
    fn format(&self) -> &'static str {
        "onnx"
    }

    fn detect(&self, dir: &Path) -> Option<String> {
        if dir.join(DEFAULT_MODEL_FILE).is_file() {
            return Some(DEFAULT_MODEL_FILE.to_string());
        }
        let mut found = fs::read_dir(dir)
            .ok()?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let is_onnx = Path::new(&name)
                    .extension()
                    .is_some_and(|x| x.eq_ignore_ascii_case("onnx"));
                (is_onnx && e.path().is_file()).then_some(name)
            });
        let first = found.next()?;
        found.next().is_none().then_some(first)
    }

    fn load(&self, dir: &Path, ctx: &LoadContext) -> Result<Arc<dyn Model>, Error> {
        Ok(Arc::new(self.load_model(dir, ctx)?))
    }
}

enum Inner {
    Ort(ort_engine::OrtModel),
    Tract(tract_engine::TractModel),
}

/// A loaded ONNX model, run by one of the two engines.
pub struct OnnxModel {
    inner: Inner,
    signature: Signature,
}

impl OnnxModel {
    /// The engine running this model ([`Engine::Ort`] or [`Engine::Tract`]).
    pub fn engine(&self) -> Engine {
        match self.inner {
            Inner::Ort(_) => Engine::Ort,
            Inner::Tract(_) => Engine::Tract,
        }
    }

    /// The name of the engine running this model (`ort` or `tract`).
    pub fn engine_name(&self) -> &'static str {
        self.engine().as_str()
    }
}

impl fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnnxModel")
            .field("engine", &self.engine())
            .field("signature", &self.signature)
            .finish()
    }
}

impl Model for OnnxModel {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, Error> {
        match &self.inner {
            Inner::Ort(m) => m.infer(&self.signature, inputs),
            Inner::Tract(m) => m.infer(&self.signature, inputs),
        }
    }
}

/// The signature both engines report.
pub(crate) fn make_signature(
    file_name: &str,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
) -> Signature {
    Signature {
        platform: "onnxruntime_onnx".to_string(),
        backend: "onnxruntime".to_string(),
        model_file: file_name.to_string(),
        inputs,
        outputs,
    }
}

//! The scikit-learn runtime of ferroserve: loads fitted estimators and
//! pipelines from joblib, pickle and skops files **without executing
//! anything**, and evaluates them in pure Rust.
//!
//! - **Files**: `model.joblib`, `model.pkl`, `model.pickle`, or a folder's
//!   single `*.joblib` / `*.pkl` / `*.pickle` / `*.skops` file, recognised by
//!   content (a pickle stream, possibly zlib/gzip/bz2/xz/lzma/lz4-compressed
//!   as joblib writes them; a zip for skops).
//! - **Safety**: the pickle reader ([`pickle`]) is a virtual machine that
//!   never imports or calls anything. Every GLOBAL must be on an allow-list
//!   of scikit-learn and numpy classes ([`allow`]); anything else (e.g.
//!   `os.system`, `builtins.eval`, `subprocess.Popen`) fails the load with an
//!   error naming it. Lengths are checked against the file size, and
//!   decompression is bounded.
//! - **Signature**: `input-0`, FP64 `[-1, F]` (FP32 accepted); for models
//!   whose first step encodes string columns of a pandas DataFrame, one input
//!   per column instead (`[-1]`, BYTES for string columns, FP64 otherwise).
//!   `output-0` is `predict` (class labels as INT64, or BYTES for string
//!   labels; regression FP64), or `transform` for transformers. Other methods
//!   (`predict_proba`, `decision_function`, `transform`, `score_samples`) are
//!   optional outputs of the same names.
//! - **Parameters** (`model.yaml` `parameters:`): `method` picks what
//!   `output-0` holds (`predict_proba`, …); `predict_proba: true` (what
//!   `--predict_proba` / KServe's `PREDICT_PROBA` set) picks `predict_proba`
//!   where the model has it. A request parameter `method` switches one
//!   request (see [`SklearnModel::request_method`]).

#![warn(missing_docs)]

pub mod allow;
pub mod compose;
pub mod container;
pub mod data;
pub mod ensemble;
pub mod extract;
pub mod linear;
pub mod model;
pub mod neural;
pub mod numpy;
pub mod other;
pub mod pickle;
pub mod prep;
pub mod skops;
pub mod tree;
pub mod value;

use std::fs;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use ferroserve_core::{Error, LoadContext, Model, Runtime};

pub use model::{SklearnModel, INPUT_NAME, METHOD_PARAMETER, OUTPUT_NAME, PREDICT_PROBA_PARAMETER};

/// File names looked for first, in order.
pub const MODEL_FILES: [&str; 3] = ["model.joblib", "model.pkl", "model.pickle"];
/// Extensions of model files found by content when the names above are absent.
pub const EXTENSIONS: [&str; 4] = ["joblib", "pkl", "pickle", "skops"];

/// The scikit-learn [`Runtime`] (format name `sklearn`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SklearnRuntime;

impl SklearnRuntime {
    /// A scikit-learn runtime.
    pub fn new() -> Self {
        SklearnRuntime
    }

    /// Loads the model in `dir` with its concrete type. [`Runtime::load`] wraps this.
    pub fn load_model(&self, dir: &Path, ctx: &LoadContext) -> Result<SklearnModel, Error> {
        let file = self.detect(dir).ok_or_else(|| {
            Error::Load(format!(
                "{}: no scikit-learn model found (expected model.joblib, model.pkl or model.pickle, or a single \
                 *.joblib/*.pkl/*.pickle/*.skops file written by joblib.dump, pickle.dump or skops.io.dump)",
                dir.display()
            ))
        })?;
        let path = dir.join(&file);
        let m = SklearnModel::from_file(&path, &file, ctx)?;
        model::log_loaded(&path, &m);
        Ok(m)
    }
}

fn head(path: &Path) -> Option<Vec<u8>> {
    let mut f = fs::File::open(path).ok()?;
    let mut buf = [0u8; 64];
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(m) => n += m,
            Err(_) => return None,
        }
    }
    Some(buf[..n].to_vec())
}

/// True when `path` is a skops file (a zip).
pub fn is_skops_file(path: &Path) -> bool {
    head(path).is_some_and(|h| skops::looks_like_zip(&h))
}

/// True when `path` is a (possibly joblib-compressed) pickle or a skops zip.
pub fn is_sklearn_file(path: &Path) -> bool {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match head(path) {
        Some(h) if ext == "skops" => skops::looks_like_zip(&h),
        Some(h) => container::looks_like_joblib(&h),
        None => false,
    }
}

impl Runtime for SklearnRuntime {
    fn format(&self) -> &'static str {
        "sklearn"
    }

    fn detect(&self, dir: &Path) -> Option<String> {
        ferroserve_core::model::detect_model_file(dir, &MODEL_FILES, &EXTENSIONS, is_sklearn_file)
    }

    fn load(&self, dir: &Path, ctx: &LoadContext) -> Result<Arc<dyn Model>, Error> {
        Ok(Arc::new(self.load_model(dir, ctx)?))
    }

    fn load_file(
        &self,
        dir: &Path,
        file: &str,
        ctx: &LoadContext,
    ) -> Result<Arc<dyn Model>, Error> {
        let path = dir.join(file);
        let m = SklearnModel::from_file(&path, file, ctx)?;
        model::log_loaded(&path, &m);
        Ok(Arc::new(m))
    }
}

//! The LightGBM runtime of ferroserve: a pure-Rust loader and evaluator for
//! the text models LightGBM 3.x and 4.x write (`Booster.save_model`, the CLI's
//! `output_model`). Nothing to install.
//!
//! - **Files**: `model.bst` (KServe lgbserver's name), `model.txt`, or a
//!   folder's single `*.txt`/`*.bst` whose content is a LightGBM model (the
//!   first line is `tree`). XGBoost files named `model.bst` are left alone.
//! - **Signature**: input `input-0`, FP32 `[-1, F]` (FP64 accepted too, and
//!   compared in double precision as LightGBM does); output `output-0`, FP64,
//!   what `predict()` returns (`[-1]`, or `[-1, K]` for multi-class); optional
//!   output `margin`, FP64, `predict(raw_score=True)`.
//! - **Parameters** (`model.yaml` `parameters:`): `missing` (a value that also
//!   counts as missing), `num_iteration` (use only the first N iterations).
//!
//! Evaluation follows LightGBM's own code: numerical splits with missing
//! types None/Zero/NaN and default directions, categorical bitset splits,
//! linear leaves (plain leaf value when a leaf feature is NaN), random-forest
//! averaging, and every objective's output transform; see [`objective`].

pub mod objective;

mod forest;
mod model;
mod parse;

use std::fs;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use ferroserve_core::{Error, LoadContext, Model, Runtime};

pub use model::{
    LightgbmModel, LoadOptions, Output, Rows, INPUT_NAME, MARGIN_NAME, MISSING_PARAMETER,
    NUM_ITERATION_PARAMETER, OUTPUT_NAME, PARALLEL_MIN_ROWS,
};
pub use parse::looks_like_lightgbm;

/// File names looked for first, in order.
pub const MODEL_FILES: [&str; 2] = ["model.bst", "model.txt"];

/// The LightGBM [`Runtime`] (format name `lightgbm`).
#[derive(Debug, Clone, Copy, Default)]
pub struct LightgbmRuntime;

impl LightgbmRuntime {
    /// A LightGBM runtime.
    pub fn new() -> Self {
        LightgbmRuntime
    }

    /// Loads the model in `dir` with its concrete type (for feature names and
    /// other model details). [`Runtime::load`] wraps this.
    pub fn load_model(&self, dir: &Path, ctx: &LoadContext) -> Result<LightgbmModel, Error> {
        let file = self.detect(dir).ok_or_else(|| {
            Error::Load(format!(
                "{}: no LightGBM model found (expected model.bst or model.txt, or a single *.txt/*.bst file, \
                 saved with Booster.save_model: a text file whose first line is `tree`)",
                dir.display()
            ))
        })?;
        let path = dir.join(&file);
        let opts = LoadOptions::from_context(&file, ctx)?;
        let model = LightgbmModel::from_file(&path, &opts)?;
        model::log_loaded(&path, &model);
        Ok(model)
    }
}

/// True when the file at `path` starts like a LightGBM text model.
fn is_lightgbm_file(path: &Path) -> bool {
    let Ok(mut f) = fs::File::open(path) else {
        return false;
    };
    let mut head = [0u8; 16];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(m) => n += m,
            Err(_) => return false,
        }
    }
    looks_like_lightgbm(&head[..n])
}

impl Runtime for LightgbmRuntime {
    fn format(&self) -> &'static str {
        "lightgbm"
    }

    fn detect(&self, dir: &Path) -> Option<String> {
        ferroserve_core::model::detect_model_file(
            dir,
            &MODEL_FILES,
            &["txt", "bst"],
            is_lightgbm_file,
        )
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
        let opts = LoadOptions::from_context(file, ctx)?;
        let model = LightgbmModel::from_file(&path, &opts)?;
        model::log_loaded(&path, &model);
        Ok(Arc::new(model))
    }
}

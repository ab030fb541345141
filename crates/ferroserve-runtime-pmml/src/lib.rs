//! The PMML runtime of ferroserve: a pure-Rust evaluator for PMML 3.x/4.x
//! documents (no JVM). No maintained Rust PMML evaluator exists, so the
//! evaluator is ours; XML parsing is `roxmltree`'s. Semantics follow the
//! PMML specification and, where it leaves room, JPMML-Evaluator (the
//! reference the golden fixtures come from).
//!
//! - **Files**: `model.pmml`, or a folder's single `*.pmml`; detected by
//!   content (a `<PMML` root element near the start).
//! - **Models**: `TreeModel`, `RegressionModel`, `MiningModel`
//!   (segmentations: sum, average, weightedAverage, weightedSum, median,
//!   weightedMedian, max, majorityVote, weightedMajorityVote, modelChain,
//!   selectFirst), `GeneralRegressionModel`, `NaiveBayesModel`,
//!   `Scorecard`, `NeuralNetwork`; functionName regression or
//!   classification.
//! - **Signature**: one input per active `MiningField` of the model, named
//!   after the field, shape `[-1]`, all optional (an absent field is
//!   missing for every row): FP64 for numeric fields (FP32, INT64, INT32,
//!   BOOL, BYTES accepted; NaN is missing), BYTES for string fields
//!   (INT64/INT32 accepted; an empty string is missing), BOOL for boolean
//!   fields. Outputs, shaped as KServe's pmmlserver answers: one per
//!   field, `[-1]` — the target field under its own name (regression: FP64;
//!   classification: the label as BYTES, INT64, BOOL or FP64 following the
//!   target DataField's dataType), then every final PMML `OutputField`
//!   under its own name (FP64, INT64, BOOL or BYTES by its dataType;
//!   NaN/"" missing; an INT64/BOOL column with a missing row turns FP64).
//!   [`PmmlModel`] asks KServe v1 for records (one object per row keyed by
//!   field name). On request only: `output-0` (the predicted value) and
//!   `probabilities` `[-1, C]` FP64 with columns in the order of the
//!   target DataField's `Value`s (then labels first seen in the model).
//! - **Parameters** (`model.yaml`, or per request the v2 parameter
//!   `method`): `method: predict_proba` makes the answer `output-0` alone,
//!   the `[N, C]` probabilities.
//!
//! Values keep their PMML data type: a `float` field is compared with
//! thresholds parsed as `float`, as JPMML does, so rows on split
//! thresholds go the same way.

#![warn(missing_docs)]

pub mod document;
pub mod expr;
pub mod model;
pub mod predicate;
pub mod program;
pub mod serving;
pub mod stats;
pub mod value;
pub mod xml;

use std::fs;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use ferroserve_core::{Error, LoadContext, Model, Runtime};

pub use serving::{
    LoadOptions, Method, PmmlModel, RowResult, METHOD_PARAMETER, OUTPUT_NAME, PROBABILITIES_NAME,
};

/// The file name looked for first.
pub const MODEL_FILE: &str = "model.pmml";

/// True when `head` (the start of a file) looks like a PMML document.
pub fn looks_like_pmml(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head);
    let t = text.trim_start_matches('\u{feff}').trim_start();
    t.starts_with('<') && (t.contains("<PMML") || t.contains(":PMML"))
}

fn is_pmml_file(path: &Path) -> bool {
    let Ok(mut f) = fs::File::open(path) else {
        return false;
    };
    let mut head = vec![0u8; 4096];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(m) => n += m,
            Err(_) => return false,
        }
    }
    looks_like_pmml(&head[..n])
}

/// The PMML [`Runtime`] (format name `pmml`).
#[derive(Debug, Clone, Copy, Default)]
pub struct PmmlRuntime;

impl PmmlRuntime {
    /// A PMML runtime.
    pub fn new() -> Self {
        PmmlRuntime
    }

    /// Loads the model in `dir` with its concrete type.
    pub fn load_model(&self, dir: &Path, ctx: &LoadContext) -> Result<PmmlModel, Error> {
        let file = self.detect(dir).ok_or_else(|| {
            Error::Load(format!(
                "{}: no PMML model found (expected model.pmml or a single *.pmml file whose root element is <PMML>)",
                dir.display()
            ))
        })?;
        let opts = LoadOptions::from_context(&file, ctx)?;
        let model = PmmlModel::from_file(&dir.join(&file), &opts)?;
        let doc = model.document();
        tracing::info!(
            file = %dir.join(&file).display(),
            version = %doc.version,
            model = %doc.model.element,
            function = ?doc.model.function,
            application = doc.application.as_deref().unwrap_or(""),
            inputs = %doc.inputs.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", "),
            classes = %model.classes().join(", "),
            "loaded PMML model"
        );
        Ok(model)
    }
}

impl Runtime for PmmlRuntime {
    fn format(&self) -> &'static str {
        "pmml"
    }

    fn detect(&self, dir: &Path) -> Option<String> {
        ferroserve_core::model::detect_model_file(dir, &[MODEL_FILE], &["pmml"], is_pmml_file)
    }

    fn load(&self, dir: &Path, ctx: &LoadContext) -> Result<Arc<dyn Model>, Error> {
        Ok(Arc::new(self.load_model(dir, ctx)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniff() {
        assert!(looks_like_pmml(
            b"<?xml version=\"1.0\"?>\n<PMML xmlns=\"x\" version=\"4.4\">"
        ));
        assert!(looks_like_pmml(b"\xef\xbb\xbf<PMML version=\"4.1\">"));
        assert!(!looks_like_pmml(b"tree\nversion=v4"));
        assert!(!looks_like_pmml(b"{\"learner\": 1}"));
    }
}

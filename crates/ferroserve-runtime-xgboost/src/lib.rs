//! The XGBoost runtime of ferroserve: a pure-Rust reader of XGBoost models
//! (JSON and UBJSON, as saved by XGBoost 1.0–3.x `save_model`) and a fast
//! evaluator whose predictions match `Booster.predict()`.
//!
//! - Files: `model.json`, `model.ubj`, `model.bst` (KServe's names), or a
//!   folder's only `*.json` / `*.ubj` / `*.bst`; the encoding is told from
//!   the content. The pre-1.0 binary format gets an error saying how to
//!   re-save the model.
//! - Boosters: gbtree, dart (tree weights applied), gblinear; one output
//!   per tree or vector-leaf (`multi_strategy="multi_output_tree"`) trees;
//!   numerical and categorical splits; missing values follow each split's
//!   default direction. Every built-in objective's output transform and
//!   `base_score` link (see [`Transform`]); custom objectives are refused.
//! - Predictions match `Booster.predict()` bit for bit on the golden
//!   fixtures of XGBoost 1.3, 1.7, 2.1 and 3.2 (`tests/parity.rs`): sums and
//!   transforms are computed in `f32` in XGBoost's order. Like
//!   `Booster.predict()`, every tree is used (`best_iteration` is reported,
//!   not applied).
//! - Signature: input `input-0` FP32 `[-1, num_features]` (FP64 accepted and
//!   cast to `f32`, as XGBoost does); output `output-0`, the prediction, and
//!   the optional output `margin`, the raw score. Both are FP32.
//! - Parameters (`model.yaml` → `parameters:`): `missing` — a value that
//!   counts as missing besides NaN (XGBoost's `missing=`).

#![warn(missing_docs)]

mod detect;
mod forest;
mod json;
mod linear;
mod objective;
mod predict;
mod schema;
mod ubjson;
mod value;

use std::path::Path;
use std::sync::Arc;

use ferroserve_core::{
    DataType, Error, LoadContext, Model, Runtime, Signature, Tensor, TensorSpec,
};

pub use detect::{sniff, Encoding, MODEL_FILE_NAMES};
pub use objective::Transform;
pub use predict::Prediction;

use schema::{Booster, Parsed};

/// Name of the only input.
pub const INPUT_NAME: &str = "input-0";
/// Name of the prediction output.
pub const OUTPUT_NAME: &str = "output-0";
/// Name of the optional raw-score output.
pub const MARGIN_NAME: &str = "margin";
/// Per-model parameter naming an extra missing value (e.g. `"-999"`).
pub const MISSING_PARAMETER: &str = "missing";

/// The XGBoost [`Runtime`] (format name `xgboost`).
#[derive(Debug, Clone, Default)]
pub struct XgboostRuntime;

impl XgboostRuntime {
    /// A new runtime.
    pub fn new() -> Self {
        XgboostRuntime
    }

    /// Loads the model in `dir` and returns it with its concrete type.
    pub fn load_model(&self, dir: &Path, ctx: &LoadContext) -> Result<XgboostModel, Error> {
        let file_name = detect::find_model_file(dir).ok_or_else(|| {
            Error::Load(format!(
                "{}: no XGBoost model found (expected model.json, model.ubj or model.bst, or a single \
                 *.json / *.ubj / *.bst file saved by XGBoost)",
                dir.display()
            ))
        })?;
        let path = dir.join(&file_name);
        let bytes =
            std::fs::read(&path).map_err(|e| Error::Load(format!("{}: {e}", path.display())))?;
        let options = LoadOptions::from_context(ctx)?;
        let model =
            XgboostModel::from_bytes(&bytes, &file_name, &options).map_err(|e| match e {
                Error::Load(m) => Error::Load(format!("{}: {m}", path.display())),
                other => other,
            })?;
        model.log_loaded(&path);
        Ok(model)
    }
}

impl Runtime for XgboostRuntime {
    fn format(&self) -> &'static str {
        "xgboost"
    }

    fn detect(&self, dir: &Path) -> Option<String> {
        detect::find_model_file(dir)
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
        let bytes =
            std::fs::read(&path).map_err(|e| Error::Load(format!("{}: {e}", path.display())))?;
        let options = LoadOptions::from_context(ctx)?;
        let model = XgboostModel::from_bytes(&bytes, file, &options).map_err(|e| match e {
            Error::Load(m) => Error::Load(format!("{}: {m}", path.display())),
            other => other,
        })?;
        model.log_loaded(&path);
        Ok(Arc::new(model))
    }
}

/// Settings for loading a model.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// A value that counts as missing besides NaN.
    pub missing: Option<f32>,
    /// Threads one inference may use (0: all cores through rayon's global
    /// pool; 1: the calling thread only).
    pub intra_op_threads: usize,
}

impl LoadOptions {
    /// Reads `missing` from the model's parameters and the thread cap.
    pub fn from_context(ctx: &LoadContext) -> Result<Self, Error> {
        let missing = match ctx.config.parameters.get(MISSING_PARAMETER) {
            None => None,
            Some(s) => {
                let v: f32 = s.trim().parse().map_err(|_| {
                    Error::Load(format!(
                        "parameter `{MISSING_PARAMETER}`: '{s}' is not a number"
                    ))
                })?;
                (!v.is_nan()).then_some(v)
            }
        };
        Ok(LoadOptions {
            missing,
            intra_op_threads: ctx.intra_op_threads,
        })
    }
}

/// A loaded XGBoost model.
pub struct XgboostModel {
    signature: Signature,
    parsed: Parsed,
    missing: Option<f32>,
    runner: predict::Runner,
}

impl std::fmt::Debug for XgboostModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XgboostModel")
            .field("file", &self.signature.model_file)
            .field("objective", &self.objective())
            .field("booster", &self.booster())
            .field("num_features", &self.num_features())
            .field("num_outputs", &self.num_outputs())
            .finish()
    }
}

impl XgboostModel {
    /// Parses a model from the bytes of a file named `file_name`.
    pub fn from_bytes(
        bytes: &[u8],
        file_name: &str,
        options: &LoadOptions,
    ) -> Result<XgboostModel, Error> {
        let head = &bytes[..bytes.len().min(detect::SNIFF_BYTES)];
        let doc = match sniff(head) {
            Some(Encoding::Json) => json::parse(bytes),
            Some(Encoding::Ubjson) => ubjson::parse(bytes),
            Some(Encoding::LegacyBinary) => {
                return Err(Error::Load(format!(
                "{file_name} is in XGBoost's old binary format, which ferroserve does not read. \
                     Re-save it as JSON with XGBoost >= 1.0 (1.0 to 3.0 still read this format): \
                     `import xgboost; bst = xgboost.Booster(model_file=\"{file_name}\"); \
                     bst.save_model(\"model.json\")`"
            )))
            }
            None => {
                return Err(Error::Load(format!(
                    "{file_name} is not an XGBoost model saved as JSON or UBJSON"
                )))
            }
        }
        .map_err(|e| Error::Load(format!("{file_name}: {e} (is the file truncated?)")))?;
        let parsed =
            schema::interpret(&doc).map_err(|e| Error::Load(format!("{file_name}: {e}")))?;
        let runner = predict::Runner::new(options.intra_op_threads)?;
        let outputs = vec![
            TensorSpec::new(OUTPUT_NAME, DataType::F32, output_shape(&parsed, false)),
            TensorSpec {
                optional: true,
                ..TensorSpec::new(MARGIN_NAME, DataType::F32, output_shape(&parsed, true))
            },
        ];
        let signature = Signature {
            platform: "xgboost".into(),
            backend: "xgboost".into(),
            model_file: file_name.to_string(),
            inputs: vec![TensorSpec {
                alt_datatypes: vec![DataType::F64],
                ..TensorSpec::new(
                    INPUT_NAME,
                    DataType::F32,
                    vec![-1, parsed.num_features as i64],
                )
            }],
            outputs,
        };
        Ok(XgboostModel {
            signature,
            parsed,
            missing: options.missing,
            runner,
        })
    }

    fn log_loaded(&self, path: &Path) {
        let p = &self.parsed;
        let (trees, nodes, depth, categorical) = match &p.booster {
            Booster::Trees(f) => (
                f.num_trees(),
                f.num_nodes(),
                f.max_depth(),
                f.has_categorical(),
            ),
            Booster::Linear(_) => (0, 0, 0, false),
        };
        tracing::info!(
            model = %path.display(),
            xgboost_version = %p.version.map(|v| format!("{}.{}.{}", v[0], v[1], v[2])).unwrap_or_else(|| "unknown".into()),
            objective = p.objective.name(),
            booster = %p.booster_name,
            features = p.num_features,
            outputs = p.num_outputs,
            trees,
            nodes,
            max_depth = depth,
            categorical_splits = categorical,
            best_iteration = ?p.best_iteration,
            feature_names = %summarize(&p.feature_names),
            feature_types = %summarize(&p.feature_types),
            "loaded XGBoost model"
        );
    }

    /// Feature names stored in the model (empty when it has none).
    pub fn feature_names(&self) -> &[String] {
        &self.parsed.feature_names
    }

    /// Feature types stored in the model (`q` numerical, `c` categorical,
    /// `int`, `float`, `i`; empty when it has none).
    pub fn feature_types(&self) -> &[String] {
        &self.parsed.feature_types
    }

    /// The objective's name (`binary:logistic`, …).
    pub fn objective(&self) -> &str {
        self.parsed.objective.name()
    }

    /// The booster: `gbtree`, `dart` or `gblinear`.
    pub fn booster(&self) -> &str {
        &self.parsed.booster_name
    }

    /// Number of input features.
    pub fn num_features(&self) -> usize {
        self.parsed.num_features
    }

    /// Number of margins per row (classes, targets or quantiles; 1 otherwise).
    pub fn num_outputs(&self) -> usize {
        self.parsed.num_outputs
    }

    /// The XGBoost version that saved the model, when recorded.
    pub fn xgboost_version(&self) -> Option<[u32; 3]> {
        self.parsed.version
    }

    /// The `best_iteration` attribute left by early stopping, if any. It is
    /// reported only: like `Booster.predict()`, predictions use every tree.
    pub fn best_iteration(&self) -> Option<u64> {
        self.parsed.best_iteration
    }

    /// Predicts `rows` (row-major `f32`, `num_features` per row; NaN and the
    /// configured missing value count as missing).
    pub fn predict(&self, rows: &[f32]) -> Result<Prediction, Error> {
        let f = self.parsed.num_features;
        if rows.len() / f * f != rows.len() {
            return Err(Error::invalid(format!(
                "{} values are not a whole number of rows of {f} features",
                rows.len()
            )));
        }
        let mut owned;
        let rows = match self.missing {
            Some(m) if rows.contains(&m) => {
                owned = rows.to_vec();
                mark_missing(&mut owned, m);
                &owned[..]
            }
            _ => rows,
        };
        self.runner.run(&self.parsed, rows)
    }

    fn input_rows(&self, t: &Tensor) -> Result<Vec<f32>, Error> {
        let mut rows: Vec<f32> = match t.datatype {
            DataType::F32 => t.to_vec::<f32>()?,
            DataType::F64 => t.to_vec::<f64>()?.into_iter().map(|x| x as f32).collect(),
            other => {
                return Err(Error::invalid(format!(
                    "input '{}' has datatype {other}; expected FP32 or FP64",
                    t.name
                )))
            }
        };
        if let Some(m) = self.missing {
            mark_missing(&mut rows, m);
        }
        Ok(rows)
    }
}

fn mark_missing(rows: &mut [f32], missing: f32) {
    for x in rows.iter_mut() {
        if *x == missing {
            *x = f32::NAN;
        }
    }
}

/// Declared shape of `output-0` (`margin` = false) or `margin`.
fn output_shape(p: &Parsed, margin: bool) -> Vec<i64> {
    let k = p.num_outputs;
    if k == 1 || (!margin && p.objective.transform() == Transform::Argmax) {
        vec![-1]
    } else {
        vec![-1, k as i64]
    }
}

fn summarize(names: &[String]) -> String {
    const SHOWN: usize = 32;
    if names.is_empty() {
        return "none".into();
    }
    let mut s = names
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(",");
    if names.len() > SHOWN {
        s.push_str(&format!(",… ({} in all)", names.len()));
    }
    s
}

impl Model for XgboostModel {
    fn metadata_parameters(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        if !self.feature_names().is_empty() {
            m.insert("feature_names".into(), self.feature_names().into());
        }
        if !self.feature_types().is_empty() {
            m.insert("feature_types".into(), self.feature_types().into());
        }
        m.insert("objective".into(), self.objective().to_string().into());
        m
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, Error> {
        let input = inputs
            .first()
            .ok_or_else(|| Error::invalid(format!("missing input '{INPUT_NAME}'")))?;
        let f = self.parsed.num_features;
        if input.shape.len() != 2 || input.shape[1] != f {
            return Err(Error::invalid(format!(
                "input '{INPUT_NAME}' must have shape [rows, {f}], got {:?}",
                input.shape
            )));
        }
        let n = input.shape[0];
        let rows = self.input_rows(input)?;
        let pred = self.runner.run(&self.parsed, &rows)?;
        let out_shape = shape_for(n, &self.signature.outputs[0].shape);
        let margin_shape = shape_for(n, &self.signature.outputs[1].shape);
        Ok(vec![
            Tensor::from_vec(OUTPUT_NAME, out_shape, pred.output)?,
            Tensor::from_vec(MARGIN_NAME, margin_shape, pred.margin)?,
        ])
    }
}

fn shape_for(n: usize, declared: &[i64]) -> Vec<usize> {
    std::iter::once(n)
        .chain(declared.iter().skip(1).map(|&d| d.max(0) as usize))
        .collect()
}

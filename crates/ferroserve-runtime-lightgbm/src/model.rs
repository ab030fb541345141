//! A loaded LightGBM model: load options, prediction (batched, across cores
//! for large batches) and the [`Model`] implementation.

use std::path::Path;

use ferroserve_core::{DataType, Error, LoadContext, Model, Signature, Tensor, TensorSpec};
use rayon::prelude::*;

use crate::forest::Forest;
use crate::objective::{Objective, Transform};
use crate::parse::{parse_model, ParsedModel};

/// Name of the single input tensor.
pub const INPUT_NAME: &str = "input-0";
/// Name of the default output: what LightGBM's `predict()` returns.
pub const OUTPUT_NAME: &str = "output-0";
/// Name of the optional raw-score output (`predict(raw_score=True)`).
pub const MARGIN_NAME: &str = "margin";
/// Per-model parameter: a feature value that also counts as missing (NaN).
pub const MISSING_PARAMETER: &str = "missing";
/// Per-model parameter: use only the first N boosting iterations (≤ 0: all).
pub const NUM_ITERATION_PARAMETER: &str = "num_iteration";

/// Batches with at least this many rows are split across cores.
pub const PARALLEL_MIN_ROWS: usize = 512;
/// Feature values LightGBM's predictor treats as zero (|x| ≤ 1e-35f).
const ZERO_THRESHOLD: f64 = 1e-35f32 as f64;
/// Target size of one block of converted rows (fits in L1/L2 cache).
const BLOCK_BYTES: usize = 16 * 1024;
/// Largest `num_class` accepted (bounds allocations for malformed files).
const MAX_CLASSES: usize = 100_000;
/// Most rows converted and evaluated together.
const MAX_BLOCK_ROWS: usize = 64;

/// How to load a model; [`LoadOptions::from_context`] reads them from a
/// model's configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadOptions {
    /// File name reported in the signature.
    pub model_file: String,
    /// Use only the first N iterations (`None`: every iteration in the file,
    /// which is what `Booster(model_file=…).predict()` does).
    pub num_iteration: Option<usize>,
    /// A value that counts as missing besides NaN.
    pub missing: Option<f64>,
    /// Most threads one inference may use (0: all of rayon's).
    pub threads: usize,
}

impl LoadOptions {
    /// Reads `missing` and `num_iteration` from `ctx.config.parameters` and
    /// the thread cap from `ctx.intra_op_threads`.
    pub fn from_context(model_file: &str, ctx: &LoadContext) -> Result<LoadOptions, Error> {
        let mut opts = LoadOptions {
            model_file: model_file.to_string(),
            threads: ctx.intra_op_threads,
            ..LoadOptions::default()
        };
        for (key, value) in &ctx.config.parameters {
            match key.as_str() {
                MISSING_PARAMETER => {
                    let v: f64 = value.trim().parse().map_err(|_| {
                        Error::Load(format!(
                            "parameter `{MISSING_PARAMETER}`: `{value}` is not a number"
                        ))
                    })?;
                    opts.missing = (!v.is_nan()).then_some(v);
                }
                NUM_ITERATION_PARAMETER => {
                    let v: i64 = value.trim().parse().map_err(|_| {
                        Error::Load(format!(
                            "parameter `{NUM_ITERATION_PARAMETER}`: `{value}` is not an integer"
                        ))
                    })?;
                    opts.num_iteration = usize::try_from(v).ok().filter(|&n| n > 0);
                }
                other => tracing::warn!(
                    parameter = other,
                    "unknown LightGBM model parameter ignored (known: missing, num_iteration)"
                ),
            }
        }
        Ok(opts)
    }
}

/// Feature rows handed to [`LightgbmModel::predict`], row-major with
/// [`LightgbmModel::num_features`] values per row.
#[derive(Debug, Clone, Copy)]
pub enum Rows<'a> {
    /// 32-bit floats.
    F32(&'a [f32]),
    /// 64-bit floats.
    F64(&'a [f64]),
    /// Little-endian 32-bit floats as raw bytes (any alignment).
    F32Le(&'a [u8]),
    /// Little-endian 64-bit floats as raw bytes (any alignment).
    F64Le(&'a [u8]),
}

impl Rows<'_> {
    fn values(&self) -> usize {
        match self {
            Rows::F32(v) => v.len(),
            Rows::F64(v) => v.len(),
            Rows::F32Le(b) => b.len() / 4,
            Rows::F64Le(b) => b.len() / 8,
        }
    }

    fn whole(&self) -> bool {
        match self {
            Rows::F32Le(b) => b.len() % 4 == 0,
            Rows::F64Le(b) => b.len() % 8 == 0,
            _ => true,
        }
    }

    /// Converts values `start..start + dst.len()` into `dst` the way
    /// LightGBM's predictor sees them: as doubles, the configured missing
    /// value (compared in the input's own precision) as NaN, and |x| ≤ 1e-35
    /// as 0.0.
    fn load(&self, start: usize, dst: &mut [f64], missing: Option<f64>) {
        let n = dst.len();
        let fix = |v: f64| if v.abs() <= ZERO_THRESHOLD { 0.0 } else { v };
        match *self {
            Rows::F32(src) => {
                let miss = missing.map(|m| m as f32);
                for (d, &v) in dst.iter_mut().zip(&src[start..start + n]) {
                    *d = if Some(v) == miss {
                        f64::NAN
                    } else {
                        fix(f64::from(v))
                    };
                }
            }
            Rows::F64(src) => {
                for (d, &v) in dst.iter_mut().zip(&src[start..start + n]) {
                    *d = if Some(v) == missing { f64::NAN } else { fix(v) };
                }
            }
            Rows::F32Le(src) => {
                let miss = missing.map(|m| m as f32);
                for (d, c) in dst
                    .iter_mut()
                    .zip(src[start * 4..(start + n) * 4].chunks_exact(4))
                {
                    let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    *d = if Some(v) == miss {
                        f64::NAN
                    } else {
                        fix(f64::from(v))
                    };
                }
            }
            Rows::F64Le(src) => {
                for (d, c) in dst
                    .iter_mut()
                    .zip(src[start * 8..(start + n) * 8].chunks_exact(8))
                {
                    let v = f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
                    *d = if Some(v) == missing { f64::NAN } else { fix(v) };
                }
            }
        }
    }
}

/// Which values [`LightgbmModel::predict`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// `predict()`: raw scores through the objective's transform (and
    /// averaged over iterations for random forests).
    Transformed,
    /// `predict(raw_score=True)`.
    Raw,
}

/// A LightGBM model ready to predict.
#[derive(Debug)]
pub struct LightgbmModel {
    signature: Signature,
    forest: Forest,
    objective: Objective,
    objective_line: Option<String>,
    version: Option<String>,
    num_features: usize,
    num_outputs: usize,
    iterations: usize,
    total_iterations: usize,
    average_output: bool,
    feature_names: Vec<String>,
    pandas_categorical: Option<serde_json::Value>,
    parameters: Vec<(String, String)>,
    missing: Option<f64>,
    threads: usize,
}

impl LightgbmModel {
    /// Loads a model file.
    pub fn from_file(path: &Path, opts: &LoadOptions) -> Result<LightgbmModel, Error> {
        let bytes =
            std::fs::read(path).map_err(|e| Error::Load(format!("{}: {e}", path.display())))?;
        let text = String::from_utf8_lossy(&bytes);
        Self::from_text(&text, opts).map_err(|e| match e {
            Error::Load(m) => Error::Load(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Loads a model from the text `save_model` writes.
    pub fn from_text(text: &str, opts: &LoadOptions) -> Result<LightgbmModel, Error> {
        let parsed =
            parse_model(text).map_err(|e| Error::Load(format!("invalid LightGBM model: {e}")))?;
        Self::from_parsed(parsed, opts)
    }

    fn from_parsed(p: ParsedModel, opts: &LoadOptions) -> Result<LightgbmModel, Error> {
        let load = |m: String| Error::Load(format!("invalid LightGBM model: {m}"));
        let objective = Objective::parse(p.objective.as_deref())
            .map_err(|m| Error::Load(format!("unsupported LightGBM model: {m}")))?;
        if p.num_tree_per_iteration != p.num_class {
            return Err(Error::Load(format!(
                "unsupported LightGBM model: num_tree_per_iteration ({}) differs from num_class ({})",
                p.num_tree_per_iteration, p.num_class
            )));
        }
        if let Some(n) = objective.num_class {
            if n != p.num_class {
                return Err(load(format!(
                    "objective says num_class:{n} but the header says num_class={}",
                    p.num_class
                )));
            }
        }
        let k = p.num_class;
        if k > MAX_CLASSES {
            return Err(load(format!(
                "num_class={k} is larger than the supported {MAX_CLASSES}"
            )));
        }
        let per_class = matches!(
            objective.transform,
            Transform::Softmax | Transform::SigmoidPerClass(_)
        );
        if k > 1 && !per_class && objective.transform != Transform::Identity {
            return Err(Error::Load(format!(
                "unsupported LightGBM model: objective `{}` with num_class={k}",
                objective.name
            )));
        }
        let forest = Forest::build(&p.trees, p.num_features).map_err(load)?;
        // GBDT::InitPredict: whole iterations only; num_iteration caps them.
        let total_iterations = forest.len() / k;
        if forest.len() % k != 0 {
            tracing::warn!(trees = forest.len(), trees_per_iteration = k, "the model's tree count is not a multiple of its trees per iteration; the trailing trees are ignored, as LightGBM does");
        }
        let iterations = match opts.num_iteration {
            Some(n) => n.min(total_iterations),
            None => total_iterations,
        };
        if let Some(e) = &p.pandas_categorical_error {
            tracing::warn!(error = %e, "the pandas_categorical line is not valid JSON; ignored");
        }
        let out_shape = if k == 1 { vec![-1] } else { vec![-1, k as i64] };
        let mut input = TensorSpec::new(INPUT_NAME, DataType::F32, vec![-1, p.num_features as i64]);
        input.alt_datatypes = vec![DataType::F64];
        let mut margin = TensorSpec::new(MARGIN_NAME, DataType::F64, out_shape.clone());
        margin.optional = true;
        let signature = Signature {
            platform: "lightgbm".into(),
            backend: "lightgbm".into(),
            model_file: opts.model_file.clone(),
            inputs: vec![input],
            outputs: vec![
                TensorSpec::new(OUTPUT_NAME, DataType::F64, out_shape),
                margin,
            ],
        };
        Ok(LightgbmModel {
            signature,
            forest,
            objective,
            objective_line: p.objective,
            version: p.version,
            num_features: p.num_features,
            num_outputs: k,
            iterations,
            total_iterations,
            average_output: p.average_output,
            feature_names: p.feature_names,
            pandas_categorical: p.pandas_categorical,
            parameters: p.parameters,
            missing: opts.missing,
            threads: opts.threads,
        })
    }

    /// Feature names from the file's `feature_names=` line (`Column_0`, … when
    /// the model was trained without names), one per input column.
    pub fn feature_names(&self) -> &[String] {
        &self.feature_names
    }

    /// The categories of the pandas `category` columns the model was trained
    /// on (the trailing `pandas_categorical:` line), one list per categorical
    /// column in column order. Clients send a category's position in its list
    /// as the feature value (NaN for unknown categories), as LightGBM's
    /// `predict(DataFrame)` does.
    pub fn pandas_categorical(&self) -> Option<&serde_json::Value> {
        self.pandas_categorical.as_ref()
    }

    /// Number of input features per row.
    pub fn num_features(&self) -> usize {
        self.num_features
    }

    /// Number of values per row in each output (1, or the number of classes).
    pub fn num_outputs(&self) -> usize {
        self.num_outputs
    }

    /// Boosting iterations used for prediction.
    pub fn num_iterations(&self) -> usize {
        self.iterations
    }

    /// Boosting iterations in the file.
    pub fn total_iterations(&self) -> usize {
        self.total_iterations
    }

    /// The objective (canonical name and output transform).
    pub fn objective(&self) -> &Objective {
        &self.objective
    }

    /// The `objective=` line as written, if any.
    pub fn objective_line(&self) -> Option<&str> {
        self.objective_line.as_deref()
    }

    /// The `version=` line (`v3`, `v4`, …), if any.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// Training parameters from the file's `parameters:` section.
    pub fn parameters(&self) -> &[(String, String)] {
        &self.parameters
    }

    /// Predicts `rows` (a whole number of rows of [`Self::num_features`]
    /// values). Returns `rows × num_outputs` values, row-major.
    pub fn predict(&self, rows: Rows<'_>, output: Output) -> Result<Vec<f64>, Error> {
        let mut raw = self.predict_raw(rows)?;
        if output == Output::Transformed {
            self.transform_in_place(&mut raw);
        }
        Ok(raw)
    }

    #[allow(clippy::manual_is_multiple_of)] // is_multiple_of needs Rust 1.87; the workspace allows 1.85
    fn row_count(&self, rows: &Rows<'_>) -> Result<usize, Error> {
        let values = rows.values();
        if !rows.whole() || values % self.num_features != 0 {
            return Err(Error::invalid(format!(
                "input has {values} values, not a whole number of rows of {} features",
                self.num_features
            )));
        }
        Ok(values / self.num_features)
    }

    /// Raw scores for every row; large batches run across cores.
    fn predict_raw(&self, rows: Rows<'_>) -> Result<Vec<f64>, Error> {
        let n = self.row_count(&rows)?;
        let k = self.num_outputs;
        let len = n
            .checked_mul(k)
            .ok_or_else(|| Error::invalid(format!("{n} rows × {k} outputs is too large")))?;
        let mut raw = vec![0.0; len];
        let pool = rayon::current_num_threads();
        let threads = if self.threads == 0 {
            pool
        } else {
            self.threads.min(pool)
        };
        if n < PARALLEL_MIN_ROWS || threads <= 1 {
            self.raw_rows(&rows, 0, &mut raw);
        } else {
            let tasks = threads.min(n.div_ceil(PARALLEL_MIN_ROWS / 2));
            let chunk = n.div_ceil(tasks);
            raw.par_chunks_mut(chunk * k)
                .enumerate()
                .for_each(|(i, out)| self.raw_rows(&rows, i * chunk, out));
        }
        Ok(raw)
    }

    /// Raw scores of rows `first..first + out.len() / k`, block by block.
    fn raw_rows(&self, rows: &Rows<'_>, first: usize, out: &mut [f64]) {
        let f = self.num_features;
        let k = self.num_outputs;
        let block = (BLOCK_BYTES / (8 * f)).clamp(1, MAX_BLOCK_ROWS);
        let mut buf = vec![0.0f64; block.min(out.len() / k) * f];
        for (b, out_block) in out.chunks_mut(block * k).enumerate() {
            let nrows = out_block.len() / k;
            let x = &mut buf[..nrows * f];
            rows.load((first + b * block) * f, x, self.missing);
            self.forest
                .accumulate(x, f, nrows, self.iterations * k, k, out_block);
        }
    }

    /// Raw scores → `predict()` values, row by row.
    fn transform_in_place(&self, raw: &mut [f64]) {
        let k = self.num_outputs;
        let avg = self.average_output.then_some(self.iterations as f64);
        let mut tmp = vec![0.0; k];
        for row in raw.chunks_exact_mut(k) {
            if let Some(it) = avg {
                for v in row.iter_mut() {
                    *v /= it;
                }
            }
            if self.objective.transform != Transform::Identity {
                tmp.copy_from_slice(row);
                self.objective.transform.apply(&tmp, row);
            }
        }
    }
}

impl Model for LightgbmModel {
    fn metadata_parameters(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        if !self.feature_names().is_empty() {
            m.insert("feature_names".into(), self.feature_names().into());
        }
        // pandas `category` columns: the k-th index of `categorical_feature`
        // takes the k-th list of `pandas_categorical`; a value's code is its
        // position in that list (what LightGBM's `predict(DataFrame)` does).
        let cat_idx: Vec<usize> = self
            .parameters()
            .iter()
            .find(|(k, _)| k == "categorical_feature")
            .map(|(_, v)| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
            .unwrap_or_default();
        if let Some(serde_json::Value::Array(lists)) = self.pandas_categorical() {
            let mut cats = serde_json::Map::new();
            for (idx, list) in cat_idx.iter().zip(lists) {
                if let Some(name) = self.feature_names().get(*idx) {
                    cats.insert(name.clone(), list.clone());
                }
            }
            if !cats.is_empty() {
                m.insert("categorical_values".into(), serde_json::Value::Object(cats));
            }
        }
        m
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, Error> {
        let input = inputs
            .iter()
            .find(|t| t.name == INPUT_NAME)
            .ok_or_else(|| Error::invalid(format!("missing input '{INPUT_NAME}'")))?;
        let bytes = input
            .raw()
            .ok_or_else(|| Error::invalid(format!("input '{INPUT_NAME}' must be FP32 or FP64")))?;
        let rows = match input.datatype {
            DataType::F32 => Rows::F32Le(bytes),
            DataType::F64 => Rows::F64Le(bytes),
            other => {
                return Err(Error::invalid(format!(
                    "input '{INPUT_NAME}' has datatype {other}; LightGBM models take FP32 or FP64"
                )))
            }
        };
        let n = match input.shape.as_slice() {
            [n, f] if *f == self.num_features => *n,
            other => {
                return Err(Error::invalid(format!(
                    "input '{INPUT_NAME}' has shape {other:?}; the model expects [N, {}]",
                    self.num_features
                )))
            }
        };
        let raw = self.predict_raw(rows)?;
        let mut pred = raw.clone();
        self.transform_in_place(&mut pred);
        let shape = if self.num_outputs == 1 {
            vec![n]
        } else {
            vec![n, self.num_outputs]
        };
        Ok(vec![
            Tensor::from_vec(OUTPUT_NAME, shape.clone(), pred)?,
            Tensor::from_vec(MARGIN_NAME, shape, raw)?,
        ])
    }
}

/// Logs what was loaded.
pub(crate) fn log_loaded(path: &Path, m: &LightgbmModel) {
    const SHOWN: usize = 64;
    let names = &m.feature_names;
    let mut shown = names
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    if names.len() > SHOWN {
        shown.push_str(&format!(" … ({} more)", names.len() - SHOWN));
    }
    let boosting = m
        .parameters
        .iter()
        .find(|(k, _)| k == "boosting")
        .map(|(_, v)| v.as_str())
        .unwrap_or("gbdt");
    tracing::info!(
        model = %path.display(),
        version = m.version.as_deref().unwrap_or("?"),
        objective = m.objective_line.as_deref().unwrap_or("custom (raw scores)"),
        boosting,
        trees = m.forest.len(),
        iterations = m.iterations,
        total_iterations = m.total_iterations,
        features = m.num_features,
        outputs = m.num_outputs,
        feature_names = %shown,
        pandas_categorical = m.pandas_categorical.is_some(),
        "loaded LightGBM model"
    );
}

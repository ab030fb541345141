//! What flows between pipeline steps: a dense row-major float matrix, or a
//! table of numeric and string columns (before encoders turn strings into
//! numbers), and the traits every step implements.

use std::fmt::Debug;

use crate::extract::Labels;

/// Row-major float64 matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// `rows * cols` values, row-major.
    pub data: Vec<f64>,
}

impl Matrix {
    /// A matrix of zeros.
    pub fn zeros(rows: usize, cols: usize) -> Matrix {
        Matrix {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// Column `j` as a vector.
    pub fn column(&self, j: usize) -> Vec<f64> {
        (0..self.rows)
            .map(|i| self.data[i * self.cols + j])
            .collect()
    }

    /// Checks the column count against what the estimator was fitted on.
    pub fn check_cols(&self, want: usize, who: &str) -> Result<(), String> {
        if self.cols != want {
            return Err(format!("{who} expects {want} features, got {}", self.cols));
        }
        Ok(())
    }
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// Numbers.
    Num(Vec<f64>),
    /// Strings.
    Str(Vec<String>),
}

impl Column {
    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            Column::Num(v) => v.len(),
            Column::Str(v) => v.len(),
        }
    }

    /// True when the column has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Input or intermediate data of a pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// All numeric.
    Dense(Matrix),
    /// Columns of mixed kinds, `rows` rows each.
    Table {
        /// Number of rows.
        rows: usize,
        /// The columns.
        columns: Vec<Column>,
    },
}

impl Data {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        match self {
            Data::Dense(m) => m.rows,
            Data::Table { rows, .. } => *rows,
        }
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        match self {
            Data::Dense(m) => m.cols,
            Data::Table { columns, .. } => columns.len(),
        }
    }

    /// The data as a dense matrix; fails on string columns.
    pub fn into_dense(self, who: &str) -> Result<Matrix, String> {
        match self {
            Data::Dense(m) => Ok(m),
            Data::Table { rows, columns } => {
                let cols = columns.len();
                let mut m = Matrix::zeros(rows, cols);
                for (j, c) in columns.iter().enumerate() {
                    match c {
                        Column::Num(v) => {
                            for (i, x) in v.iter().enumerate().take(rows) {
                                m.data[i * cols + j] = *x;
                            }
                        }
                        Column::Str(v) => {
                            // numeric strings are accepted, as numpy's float conversion would
                            for (i, s) in v.iter().enumerate().take(rows) {
                                m.data[i * cols + j] = s.trim().parse::<f64>().map_err(|_| {
                                    format!(
                                        "{who} needs numbers, column {j} holds the string '{s}'"
                                    )
                                })?;
                            }
                        }
                    }
                }
                Ok(m)
            }
        }
    }

    /// Column `j` (a copy).
    pub fn column(&self, j: usize) -> Column {
        match self {
            Data::Dense(m) => Column::Num(m.column(j)),
            Data::Table { columns, .. } => columns[j].clone(),
        }
    }
}

/// A fitted transformer (a pipeline step that is not the last).
pub trait Transform: Send + Sync + Debug {
    /// Transforms `x`.
    fn transform(&self, x: Data) -> Result<Data, String>;
    /// Number of input columns, when known.
    fn n_features_in(&self) -> Option<usize>;
    /// Number of output columns, when known.
    fn n_features_out(&self) -> Option<usize> {
        None
    }
    /// For each input column: whether it holds strings.
    fn string_inputs(&self) -> Vec<bool> {
        vec![
            false;
            self.n_features_in()
                .unwrap_or(0)
                .min(crate::extract::MAX_FEATURES)
        ]
    }
    /// The class name, for logs and errors.
    fn name(&self) -> &'static str;
}

/// What an estimator can compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `predict`.
    Predict,
    /// `predict_proba`.
    PredictProba,
    /// `decision_function`.
    DecisionFunction,
    /// `transform`.
    Transform,
    /// `score_samples`.
    ScoreSamples,
}

impl Method {
    /// The scikit-learn method name (also the optional output's name).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Predict => "predict",
            Method::PredictProba => "predict_proba",
            Method::DecisionFunction => "decision_function",
            Method::Transform => "transform",
            Method::ScoreSamples => "score_samples",
        }
    }

    /// Parses a method name.
    pub fn parse(s: &str) -> Option<Method> {
        [
            Method::Predict,
            Method::PredictProba,
            Method::DecisionFunction,
            Method::Transform,
            Method::ScoreSamples,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
    }
}

/// What `predict` returns.
#[derive(Debug, Clone, PartialEq)]
pub enum PredictKind {
    /// Class indices into these labels.
    Classes(Labels),
    /// Integers (cluster ids, inlier flags).
    Int,
    /// Floats.
    Float,
}

impl PredictKind {
    /// What `predict` returns for an estimator that is a classifier when
    /// it has `classes`, else a regressor.
    pub fn classes_or_float(classes: &Option<Labels>) -> Self {
        match classes {
            Some(c) => PredictKind::Classes(c.clone()),
            None => PredictKind::Float,
        }
    }
}

/// The [`Estimator`] answers shared by models that are a classifier (with
/// `classes`: `predict` and `predict_proba`, one column per class) or a
/// regressor with `outputs` targets (`predict` only): forests, k-neighbors,
/// multi-layer perceptrons.
pub struct ProbaOrRegression<'a> {
    /// The classes of a classifier; `None` for a regressor.
    pub classes: &'a Option<Labels>,
    /// Targets of a regressor.
    pub outputs: usize,
}

impl ProbaOrRegression<'_> {
    /// See [`Estimator::methods`].
    pub fn methods(&self) -> Vec<Method> {
        if self.classes.is_some() {
            vec![Method::Predict, Method::PredictProba]
        } else {
            vec![Method::Predict]
        }
    }

    /// See [`Estimator::width`].
    pub fn width(&self, m: Method) -> Option<usize> {
        match (self.classes, m) {
            (Some(c), Method::PredictProba) => Some(c.len()),
            (None, _) if self.outputs > 1 => Some(self.outputs),
            _ => None,
        }
    }
}

/// A fitted final estimator.
pub trait Estimator: Send + Sync + Debug {
    /// The class name.
    fn name(&self) -> &'static str;
    /// Number of input features.
    fn n_features(&self) -> usize;
    /// The methods it supports; the first is its default output.
    fn methods(&self) -> Vec<Method>;
    /// What `predict` returns.
    fn predict_kind(&self) -> PredictKind {
        PredictKind::Float
    }
    /// Output columns of method `m` (`None`: a 1-d output).
    fn width(&self, m: Method) -> Option<usize>;
    /// Runs method `m` on `x`, returning `rows * width` values row-major
    /// (class indices as floats for a classifier's `predict`).
    fn run(&self, x: &Matrix, m: Method) -> Result<Vec<f64>, String>;
}

/// Index of the largest value (the first on ties, as numpy's argmax).
pub fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] || (v[best].is_nan() && !x.is_nan() && i == 0) {
            best = i;
        }
    }
    best
}

/// The logistic sigmoid as scipy's `expit`.
pub fn expit(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Row-wise softmax in place (scikit-learn's: subtract the max, exp, divide).
pub fn softmax_rows(v: &mut [f64], k: usize) {
    if k == 0 {
        return;
    }
    for row in v.chunks_exact_mut(k) {
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mut sum = 0.0;
        for x in row.iter_mut() {
            *x = (*x - max).exp();
            sum += *x;
        }
        for x in row.iter_mut() {
            *x /= sum;
        }
    }
}

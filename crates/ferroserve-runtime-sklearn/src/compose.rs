//! Composition: Pipeline steps, ColumnTransformer, OneVsRestClassifier, and
//! the dispatch from a rebuilt object's class to the step that evaluates it.

use crate::data::{argmax, Column, Data, Estimator, Matrix, Method, PredictKind, Transform};
use crate::ensemble::{Forest, GradientBoosting, HistGradientBoosting, IsolationForest};
use crate::extract::{BResult, Labels, Obj};
use crate::linear::{LinearClassifier, LinearRegressor, Proba};
use crate::neural::Mlp;
use crate::other::{GaussianNb, KMeans, KNeighbors, Projection, Svm};
use crate::prep::{Affine, Identity, Imputer, Normalizer, OneHot, Ordinal, Polynomial};
use crate::tree::{TreeClassifier, TreeRegressor};
use crate::value::Value;

/// Deepest nesting of pipelines / column transformers accepted.
const MAX_DEPTH: usize = 16;

/// One fitted step.
#[derive(Debug)]
pub enum Step {
    /// A transformer.
    Transform(Box<dyn Transform>),
    /// A final estimator.
    Estimator(Box<dyn Estimator>),
    /// `'passthrough'` / `None`.
    Passthrough,
}

/// Supported classes, for error messages.
pub const SUPPORTED: &str = "LogisticRegression, LinearRegression, Ridge, RidgeClassifier, Lasso, ElasticNet, \
SGDRegressor, SGDClassifier, LinearSVC, LinearSVR, DecisionTree{Classifier,Regressor}, ExtraTree{Classifier,Regressor}, \
RandomForest{Classifier,Regressor}, ExtraTrees{Classifier,Regressor}, GradientBoosting{Classifier,Regressor}, \
HistGradientBoosting{Classifier,Regressor}, KNeighbors{Classifier,Regressor}, GaussianNB, SVC, SVR, MLPClassifier, MLPRegressor, \
IsolationForest, KMeans, PCA, TruncatedSVD, StandardScaler, MinMaxScaler, MaxAbsScaler, RobustScaler, Normalizer, OneHotEncoder, \
OrdinalEncoder, SimpleImputer, PolynomialFeatures, FunctionTransformer (identity), ColumnTransformer, Pipeline, \
OneVsRestClassifier";

/// Builds the step for a rebuilt value.
pub fn build_step(v: &Value, depth: usize) -> BResult<Step> {
    if depth > MAX_DEPTH {
        return Err("estimators nested too deeply".into());
    }
    match v {
        Value::None => return Ok(Step::Passthrough),
        Value::Str(s) if &**s == "passthrough" => return Ok(Step::Passthrough),
        _ => {}
    }
    let o = Obj::from_value(v, "model")?;
    let t = |x: BResult<Box<dyn Transform>>| x.map(Step::Transform);
    let e = |x: BResult<Box<dyn Estimator>>| x.map(Step::Estimator);
    match o.class.as_str() {
        "LogisticRegression" => e(LinearClassifier::logistic(&o).map(|m| Box::new(m) as _)),
        "RidgeClassifier" | "LinearSVC" => {
            e(LinearClassifier::from_obj(&o, Proba::None).map(|m| Box::new(m) as _))
        }
        "SGDClassifier" => e(LinearClassifier::sgd(&o).map(|m| Box::new(m) as _)),
        "LinearRegression" | "Ridge" | "Lasso" | "ElasticNet" | "SGDRegressor" | "LinearSVR" => {
            e(LinearRegressor::from_obj(&o).map(|m| Box::new(m) as _))
        }
        "DecisionTreeClassifier" | "ExtraTreeClassifier" => {
            e(TreeClassifier::from_obj(&o).map(|m| Box::new(m) as _))
        }
        "DecisionTreeRegressor" | "ExtraTreeRegressor" => {
            e(TreeRegressor::from_obj(&o).map(|m| Box::new(m) as _))
        }
        "RandomForestClassifier" | "ExtraTreesClassifier" => {
            e(Forest::from_obj(&o, true).map(|m| Box::new(m) as _))
        }
        "RandomForestRegressor" | "ExtraTreesRegressor" => {
            e(Forest::from_obj(&o, false).map(|m| Box::new(m) as _))
        }
        "GradientBoostingClassifier" => {
            e(GradientBoosting::from_obj(&o, true).map(|m| Box::new(m) as _))
        }
        "GradientBoostingRegressor" => {
            e(GradientBoosting::from_obj(&o, false).map(|m| Box::new(m) as _))
        }
        "HistGradientBoostingClassifier" => {
            e(HistGradientBoosting::from_obj(&o, true).map(|m| Box::new(m) as _))
        }
        "HistGradientBoostingRegressor" => {
            e(HistGradientBoosting::from_obj(&o, false).map(|m| Box::new(m) as _))
        }
        "KNeighborsClassifier" => e(KNeighbors::from_obj(&o, true).map(|m| Box::new(m) as _)),
        "KNeighborsRegressor" => e(KNeighbors::from_obj(&o, false).map(|m| Box::new(m) as _)),
        "GaussianNB" => e(GaussianNb::from_obj(&o).map(|m| Box::new(m) as _)),
        "SVC" => e(Svm::from_obj(&o, true).map(|m| Box::new(m) as _)),
        "SVR" => e(Svm::from_obj(&o, false).map(|m| Box::new(m) as _)),
        "IsolationForest" => e(IsolationForest::from_obj(&o).map(|m| Box::new(m) as _)),
        "KMeans" => e(KMeans::from_obj(&o).map(|m| Box::new(m) as _)),
        "MLPClassifier" => e(Mlp::from_obj(&o, true).map(|m| Box::new(m) as _)),
        "MLPRegressor" => e(Mlp::from_obj(&o, false).map(|m| Box::new(m) as _)),
        "OneVsRestClassifier" => e(OneVsRest::from_obj(&o, depth).map(|m| Box::new(m) as _)),
        "PCA" => t(Projection::pca(&o).map(|m| Box::new(m) as _)),
        "TruncatedSVD" => t(Projection::svd(&o).map(|m| Box::new(m) as _)),
        "StandardScaler" | "MinMaxScaler" | "MaxAbsScaler" | "RobustScaler" => {
            t(Affine::from_obj(&o).map(|m| Box::new(m) as _))
        }
        "Normalizer" => t(Normalizer::from_obj(&o).map(|m| Box::new(m) as _)),
        "OneHotEncoder" => t(OneHot::from_obj(&o).map(|m| Box::new(m) as _)),
        "OrdinalEncoder" => t(Ordinal::from_obj(&o).map(|m| Box::new(m) as _)),
        "SimpleImputer" => t(Imputer::from_obj(&o).map(|m| Box::new(m) as _)),
        "PolynomialFeatures" => t(Polynomial::from_obj(&o).map(|m| Box::new(m) as _)),
        "FunctionTransformer" => t(Identity::from_obj(&o).map(|m| Box::new(m) as _)),
        "ColumnTransformer" => t(ColumnTransformer::from_obj(&o, depth).map(|m| Box::new(m) as _)),
        "Pipeline" => {
            let p = Pipeline::from_obj(&o, depth)?;
            match p.last {
                Last::Transform(_) | Last::None => Ok(Step::Transform(Box::new(p))),
                Last::Estimator(_) => {
                    Err("a Pipeline ending in an estimator can only be the outermost model".into())
                }
            }
        }
        other => Err(format!(
            "unsupported scikit-learn class '{other}' (supported: {SUPPORTED})"
        )),
    }
    .map_err(|err| {
        if err.starts_with(&o.class) {
            err
        } else {
            format!("{}: {err}", o.class)
        }
    })
}

/// A pipeline's last step.
#[derive(Debug)]
pub enum Last {
    /// An estimator (predict, predict_proba, …).
    Estimator(Box<dyn Estimator>),
    /// A transformer (its transform is the output).
    Transform(Box<dyn Transform>),
    /// Nothing (all passthrough).
    None,
}

/// Pipeline (or a single estimator, as a one-step pipeline).
#[derive(Debug)]
pub struct Pipeline {
    /// Transformers before the last step.
    pub steps: Vec<Box<dyn Transform>>,
    /// The last step.
    pub last: Last,
    /// `feature_names_in_` of the first step, when fitted on a DataFrame.
    pub feature_names: Option<Vec<String>>,
}

impl Pipeline {
    /// Builds from a Pipeline object.
    pub fn from_obj(o: &Obj, depth: usize) -> BResult<Pipeline> {
        let steps = o
            .req("steps")?
            .as_seq()
            .ok_or("Pipeline.steps is not a list")?;
        let mut values = Vec::with_capacity(steps.len());
        for s in steps {
            let pair = s
                .as_seq()
                .ok_or("Pipeline step is not a (name, estimator) pair")?;
            values.push(
                pair.get(1)
                    .cloned()
                    .ok_or("Pipeline step is not a (name, estimator) pair")?,
            );
        }
        Pipeline::from_steps(&values, depth + 1)
    }

    /// Builds from the step values (the last may be an estimator).
    pub fn from_steps(values: &[Value], depth: usize) -> BResult<Pipeline> {
        let mut steps = Vec::new();
        let mut last = Last::None;
        let mut feature_names = None;
        let mut first = true;
        for (i, v) in values.iter().enumerate() {
            if first {
                if let Ok(o) = Obj::from_value(v, "step") {
                    feature_names = o.feature_names();
                    first = false;
                }
            }
            if let Some(pre) = hgb_preprocessor(v) {
                match build_step(&pre, depth + 1)? {
                    Step::Transform(t) => steps.push(t),
                    _ => {
                        return Err("HistGradientBoosting._preprocessor is not a transformer".into())
                    }
                }
            }
            match build_step(v, depth)? {
                Step::Passthrough => {}
                Step::Transform(t) if i + 1 == values.len() => last = Last::Transform(t),
                Step::Transform(t) => steps.push(t),
                Step::Estimator(e) if i + 1 == values.len() => last = Last::Estimator(e),
                Step::Estimator(e) => {
                    return Err(format!(
                        "{} can only be the last step of a pipeline",
                        e.name()
                    ))
                }
            }
        }
        Ok(Pipeline {
            steps,
            last,
            feature_names,
        })
    }

    /// Runs the transformers (and a final transformer).
    pub fn transform_all(&self, mut x: Data) -> Result<Data, String> {
        for s in &self.steps {
            x = s.transform(x)?;
        }
        if let Last::Transform(t) = &self.last {
            x = t.transform(x)?;
        }
        Ok(x)
    }

    /// Number of input columns.
    pub fn n_features_in(&self) -> Option<usize> {
        match (self.steps.first(), &self.last) {
            (Some(s), _) => s.n_features_in(),
            (None, Last::Transform(t)) => t.n_features_in(),
            (None, Last::Estimator(e)) => Some(e.n_features()),
            (None, Last::None) => None,
        }
    }

    /// Which input columns hold strings.
    pub fn string_inputs(&self) -> Vec<bool> {
        match (self.steps.first(), &self.last) {
            (Some(s), _) => s.string_inputs(),
            (None, Last::Transform(t)) => t.string_inputs(),
            _ => vec![
                false;
                self.n_features_in()
                    .unwrap_or(0)
                    .min(crate::extract::MAX_FEATURES)
            ],
        }
    }
}

impl Transform for Pipeline {
    fn transform(&self, x: Data) -> Result<Data, String> {
        self.transform_all(x)
    }
    fn n_features_in(&self) -> Option<usize> {
        Pipeline::n_features_in(self)
    }
    fn n_features_out(&self) -> Option<usize> {
        match &self.last {
            Last::Transform(t) => t.n_features_out(),
            _ => self.steps.last().and_then(|s| s.n_features_out()),
        }
    }
    fn string_inputs(&self) -> Vec<bool> {
        Pipeline::string_inputs(self)
    }
    fn name(&self) -> &'static str {
        "Pipeline"
    }
}

/// HistGradientBoosting's fitted `_preprocessor` (categorical features), if any.
fn hgb_preprocessor(v: &Value) -> Option<Value> {
    let o = Obj::from_value(v, "step").ok()?;
    if !o.class.starts_with("HistGradientBoosting") {
        return None;
    }
    o.get("_preprocessor").filter(|p| !p.is_none())
}

/// One ColumnTransformer entry.
#[derive(Debug)]
struct Part {
    cols: Vec<usize>,
    step: Step,
}

/// ColumnTransformer (columns by index, name, slice or boolean mask).
#[derive(Debug)]
pub struct ColumnTransformer {
    parts: Vec<Part>,
    n_in: usize,
}

fn select_columns(v: &Value, names: Option<&[String]>, n_in: usize) -> BResult<Vec<usize>> {
    let by_name = |s: &str| -> BResult<usize> {
        names
            .and_then(|n| n.iter().position(|x| x == s))
            .ok_or_else(|| format!("ColumnTransformer column '{s}' is not among feature_names_in_"))
    };
    let idx = |i: i64| -> BResult<usize> {
        let i = if i < 0 {
            i.checked_add(i64::try_from(n_in).unwrap_or(i64::MAX))
                .unwrap_or(-1)
        } else {
            i
        };
        usize::try_from(i)
            .ok()
            .filter(|&i| i < n_in)
            .ok_or_else(|| format!("ColumnTransformer column index {i} out of range"))
    };
    if let Value::Str(s) = v {
        return Ok(vec![by_name(s)?]);
    }
    if let Some(i) = v.as_i64().filter(|_| !matches!(v, Value::Bool(_))) {
        if v.as_array().is_none() {
            return Ok(vec![idx(i)?]);
        }
    }
    if let Value::Object(o) = v {
        let b = o.borrow();
        if b.class.ends_with("slice") {
            let g = |k: usize| b.args.get(k).and_then(Value::as_i64);
            let (start, stop, step) = (
                g(0).unwrap_or(0),
                g(1).unwrap_or(n_in as i64),
                g(2).unwrap_or(1),
            );
            if step <= 0 {
                return Err("ColumnTransformer slice with a non-positive step".into());
            }
            let clamp = |x: i64| {
                if x < 0 {
                    (x + n_in as i64).max(0)
                } else {
                    x.min(n_in as i64)
                }
            };
            let (start, stop) = (clamp(start), clamp(stop));
            return Ok((start..stop)
                .step_by(step as usize)
                .map(|i| i as usize)
                .collect());
        }
    }
    if let Some(a) = v.as_array() {
        if a.dtype.kind == 'b' {
            return Ok(a
                .to_i64()?
                .iter()
                .enumerate()
                .filter(|(_, b)| **b != 0)
                .map(|(i, _)| i)
                .collect());
        }
        if a.is_strings() {
            return a
                .to_strings()
                .unwrap_or_default()
                .iter()
                .map(|s| by_name(s))
                .collect();
        }
        if a.dtype.kind != 'O' {
            return a.to_i64()?.into_iter().map(idx).collect();
        }
    }
    let items = v.as_seq().ok_or_else(|| {
        format!(
            "ColumnTransformer columns given as {} are not supported",
            v.kind()
        )
    })?;
    if !items.is_empty() && items.iter().all(|x| matches!(x, Value::Bool(_))) {
        return Ok(items
            .iter()
            .enumerate()
            .filter(|(_, b)| b.as_bool() == Some(true))
            .map(|(i, _)| i)
            .collect());
    }
    items
        .iter()
        .map(|x| match x {
            Value::Str(s) => by_name(s),
            other => idx(other
                .as_i64()
                .ok_or("ColumnTransformer column is neither a name nor an index")?),
        })
        .collect()
}

impl ColumnTransformer {
    /// Builds from its object.
    pub fn from_obj(o: &Obj, depth: usize) -> BResult<ColumnTransformer> {
        let names = o.feature_names();
        let n_in = o
            .n_features_in()
            .or(names.as_ref().map(Vec::len))
            .ok_or("ColumnTransformer lacks n_features_in_")?;
        let list = o
            .req("transformers_")?
            .as_seq()
            .ok_or("ColumnTransformer.transformers_ is not a list")?;
        let mut parts = Vec::new();
        for entry in list {
            let e = entry
                .as_seq()
                .ok_or("ColumnTransformer entry is not a tuple")?;
            if e.len() < 3 {
                return Err(
                    "ColumnTransformer entry is not a (name, transformer, columns) tuple".into(),
                );
            }
            let cols = select_columns(&e[2], names.as_deref(), n_in)?;
            // Names and boolean masks can point past n_features_in_ in a
            // corrupt file.
            if let Some(c) = cols.iter().find(|&&c| c >= n_in) {
                return Err(format!(
                    "ColumnTransformer column {c} is out of range for {n_in} input features"
                ));
            }
            if cols.is_empty() {
                continue;
            }
            let step = match &e[1] {
                Value::Str(s) if &**s == "drop" => continue,
                v => build_step(v, depth + 1)?,
            };
            if let Step::Estimator(est) = &step {
                return Err(format!(
                    "{} cannot be a ColumnTransformer transformer",
                    est.name()
                ));
            }
            parts.push(Part { cols, step });
        }
        Ok(ColumnTransformer { parts, n_in })
    }
}

impl Transform for ColumnTransformer {
    fn transform(&self, x: Data) -> Result<Data, String> {
        if x.cols() != self.n_in {
            return Err(format!(
                "ColumnTransformer expects {} columns, got {}",
                self.n_in,
                x.cols()
            ));
        }
        let rows = x.rows();
        let mut out: Vec<Column> = Vec::new();
        for p in &self.parts {
            let sub = Data::Table {
                rows,
                columns: p.cols.iter().map(|&c| x.column(c)).collect(),
            };
            let sub = match &sub {
                Data::Table { columns, .. }
                    if columns.iter().all(|c| matches!(c, Column::Num(_))) =>
                {
                    Data::Dense(sub.into_dense("ColumnTransformer")?)
                }
                _ => sub,
            };
            let r = match &p.step {
                Step::Transform(t) => t.transform(sub)?,
                _ => sub,
            };
            for j in 0..r.cols() {
                out.push(r.column(j));
            }
        }
        let t = Data::Table { rows, columns: out };
        Ok(match &t {
            Data::Table { columns, .. } if columns.iter().all(|c| matches!(c, Column::Num(_))) => {
                Data::Dense(t.into_dense("ColumnTransformer")?)
            }
            _ => t,
        })
    }
    fn n_features_in(&self) -> Option<usize> {
        Some(self.n_in)
    }
    fn string_inputs(&self) -> Vec<bool> {
        let mut s = vec![false; self.n_in];
        for p in &self.parts {
            if let Step::Transform(t) = &p.step {
                for (c, is_str) in p.cols.iter().zip(t.string_inputs()) {
                    s[*c] |= is_str;
                }
            }
        }
        s
    }
    fn name(&self) -> &'static str {
        "ColumnTransformer"
    }
}

/// OneVsRestClassifier over binary classifiers.
#[derive(Debug)]
pub struct OneVsRest {
    estimators: Vec<Box<dyn Estimator>>,
    classes: Labels,
    n_features: usize,
}

impl OneVsRest {
    /// Builds from its object.
    pub fn from_obj(o: &Obj, depth: usize) -> BResult<OneVsRest> {
        let classes = o.labels("classes_")?;
        let list = o
            .req("estimators_")?
            .as_seq()
            .ok_or("OneVsRestClassifier.estimators_ is not a list")?;
        let mut estimators = Vec::new();
        for v in list {
            match build_step(&v, depth + 1)? {
                Step::Estimator(e)
                    if e.methods().contains(&Method::DecisionFunction)
                        || e.methods().contains(&Method::PredictProba) =>
                {
                    estimators.push(e)
                }
                _ => return Err("OneVsRestClassifier sub-estimators must be classifiers".into()),
            }
        }
        let want = if classes.len() == 2 { 1 } else { classes.len() };
        if estimators.len() != want || o.bool_or("multilabel_", false) {
            return Err(
                "OneVsRestClassifier: multi-label or mismatched estimators are not supported"
                    .into(),
            );
        }
        let n_features = estimators[0].n_features();
        if estimators.iter().any(|e| e.n_features() != n_features) {
            return Err("OneVsRestClassifier: sub-estimators disagree on features".into());
        }
        Ok(OneVsRest {
            estimators,
            classes,
            n_features,
        })
    }

    fn binary_scores(&self, e: &dyn Estimator, x: &Matrix, m: Method) -> Result<Vec<f64>, String> {
        let use_dec = m == Method::DecisionFunction
            || (m == Method::Predict && e.methods().contains(&Method::DecisionFunction));
        if use_dec {
            e.run(x, Method::DecisionFunction)
        } else {
            let p = e.run(x, Method::PredictProba)?;
            Ok(p.chunks_exact(2).map(|r| r[1]).collect())
        }
    }
}

impl Estimator for OneVsRest {
    fn name(&self) -> &'static str {
        "OneVsRestClassifier"
    }
    fn n_features(&self) -> usize {
        self.n_features
    }
    fn methods(&self) -> Vec<Method> {
        let mut m = vec![Method::Predict];
        if self
            .estimators
            .iter()
            .all(|e| e.methods().contains(&Method::PredictProba))
        {
            m.push(Method::PredictProba);
        }
        if self
            .estimators
            .iter()
            .all(|e| e.methods().contains(&Method::DecisionFunction))
        {
            m.push(Method::DecisionFunction);
        }
        m
    }
    fn predict_kind(&self) -> PredictKind {
        PredictKind::Classes(self.classes.clone())
    }
    fn width(&self, m: Method) -> Option<usize> {
        match m {
            Method::Predict => None,
            Method::DecisionFunction if self.estimators.len() == 1 => None,
            _ => Some(self.classes.len()),
        }
    }
    fn run(&self, x: &Matrix, m: Method) -> Result<Vec<f64>, String> {
        let cols: Vec<Vec<f64>> = self
            .estimators
            .iter()
            .map(|e| self.binary_scores(e.as_ref(), x, m))
            .collect::<Result<_, _>>()?;
        let k = cols.len();
        let n = x.rows;
        match m {
            Method::DecisionFunction => Ok((0..n)
                .flat_map(|i| cols.iter().map(move |c| c[i]))
                .collect()),
            Method::PredictProba => Ok(if k == 1 {
                (0..n)
                    .flat_map(|i| [1.0 - cols[0][i], cols[0][i]])
                    .collect()
            } else {
                (0..n)
                    .flat_map(|i| {
                        let s: f64 = cols.iter().map(|c| c[i]).sum();
                        cols.iter().map(move |c| c[i] / s)
                    })
                    .collect()
            }),
            _ => Ok(if k == 1 {
                // decision_function thresholds at 0, probabilities at 0.5
                let t = if self.estimators[0]
                    .methods()
                    .contains(&Method::DecisionFunction)
                {
                    0.0
                } else {
                    0.5
                };
                cols[0]
                    .iter()
                    .map(|&d| if d > t { 1.0 } else { 0.0 })
                    .collect()
            } else {
                (0..n)
                    .map(|i| {
                        // the last estimator reaching the maximum wins, as scikit-learn's loop
                        let row: Vec<f64> = cols.iter().map(|c| c[i]).collect();
                        let mut best = 0;
                        for (j, &v) in row.iter().enumerate() {
                            if v >= row[best] {
                                best = j;
                            }
                        }
                        let _ = argmax;
                        best as f64
                    })
                    .collect()
            }),
        }
    }
}

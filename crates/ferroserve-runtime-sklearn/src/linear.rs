//! Linear models: `X @ coef_.T + intercept_`, with scikit-learn's
//! classification rules on top (LogisticRegression, RidgeClassifier,
//! SGDClassifier, LinearSVC) or as the prediction (LinearRegression, Ridge,
//! Lasso, ElasticNet, SGDRegressor, LinearSVR).

use crate::data::{argmax, expit, softmax_rows, Estimator, Matrix, Method, PredictKind};
use crate::extract::{BResult, Labels, Obj};

/// `coef_` (k × F) and `intercept_` (k).
#[derive(Debug, Clone)]
pub struct Linear {
    /// Coefficients, k rows of F.
    pub coef: Vec<f64>,
    /// Intercepts, one per row of `coef`.
    pub intercept: Vec<f64>,
    /// Rows of `coef`.
    pub k: usize,
    /// Features.
    pub f: usize,
    /// Whether `coef_` was 1-d (the output is then 1-d).
    pub one_d: bool,
}

impl Linear {
    /// Reads `coef_` and `intercept_`.
    pub fn from_obj(o: &Obj) -> BResult<Linear> {
        let coef = o.arr("coef_")?;
        let (k, f) = coef.dims2();
        let one_d = coef.shape.len() == 1;
        let intercept = match o.opt_arr("intercept_")? {
            Some(a) if a.data.len() == k => a.data,
            Some(a) if a.data.len() == 1 => vec![a.data[0]; k],
            Some(a) => {
                return Err(format!(
                    "{}: intercept_ has {} values for {k} coefficient rows",
                    o.class,
                    a.data.len()
                ))
            }
            None => vec![0.0; k],
        };
        Ok(Linear {
            coef: coef.data,
            intercept,
            k,
            f,
            one_d,
        })
    }

    /// `X @ coef.T + intercept`, n × k.
    pub fn scores(&self, x: &Matrix) -> Vec<f64> {
        let mut out = Vec::with_capacity(x.rows * self.k);
        for i in 0..x.rows {
            let row = x.row(i);
            for j in 0..self.k {
                let w = &self.coef[j * self.f..(j + 1) * self.f];
                let dot: f64 = row.iter().zip(w).map(|(a, b)| a * b).sum();
                out.push(dot + self.intercept[j]);
            }
        }
        out
    }
}

/// A linear regressor.
#[derive(Debug, Clone)]
pub struct LinearRegressor {
    lin: Linear,
}

impl LinearRegressor {
    /// Builds from any regressor with `coef_` / `intercept_`.
    pub fn from_obj(o: &Obj) -> BResult<LinearRegressor> {
        Ok(LinearRegressor {
            lin: Linear::from_obj(o)?,
        })
    }
}

impl Estimator for LinearRegressor {
    fn name(&self) -> &'static str {
        "LinearRegressor"
    }
    fn n_features(&self) -> usize {
        self.lin.f
    }
    fn methods(&self) -> Vec<Method> {
        vec![Method::Predict]
    }
    fn width(&self, _: Method) -> Option<usize> {
        (!self.lin.one_d).then_some(self.lin.k)
    }
    fn run(&self, x: &Matrix, _: Method) -> Result<Vec<f64>, String> {
        x.check_cols(self.lin.f, "linear model")?;
        Ok(self.lin.scores(x))
    }
}

/// How a linear classifier turns scores into probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proba {
    /// No `predict_proba`.
    None,
    /// Logistic per class, normalised (one-vs-rest; binary: `[1-p, p]`).
    Ovr,
    /// Softmax over classes (binary: over `[-d, d]`).
    Multinomial,
    /// SGDClassifier's modified Huber rule.
    ModifiedHuber,
}

/// A linear classifier.
#[derive(Debug, Clone)]
pub struct LinearClassifier {
    lin: Linear,
    classes: Labels,
    proba: Proba,
}

impl LinearClassifier {
    /// Builds a classifier; `proba` says how probabilities are made.
    pub fn from_obj(o: &Obj, proba: Proba) -> BResult<LinearClassifier> {
        let lin = Linear::from_obj(o)?;
        let classes = classifier_labels(o)?;
        let n = classes.len();
        if !((n == 2 && lin.k == 1) || (n > 2 && lin.k == n)) {
            return Err(format!(
                "{}: {} classes with {} coefficient rows (multi-label models are not supported)",
                o.class, n, lin.k
            ));
        }
        Ok(LinearClassifier {
            lin,
            classes,
            proba,
        })
    }

    /// `LogisticRegression`: one-vs-rest or multinomial, by version.
    pub fn logistic(o: &Obj) -> BResult<LinearClassifier> {
        let multi_class = o.str_opt("multi_class").unwrap_or_else(|| "auto".into());
        let solver = o.str_opt("solver").unwrap_or_default();
        let n = classifier_labels(o)?.len();
        // scikit-learn < 1.5 had ovr; 1.5-1.7 deprecated it; 1.8 removed it.
        let ovr = match multi_class.as_str() {
            "ovr" | "warn" => true,
            "multinomial" => false,
            _ => n <= 2 || solver == "liblinear",
        };
        let proba = if ovr { Proba::Ovr } else { Proba::Multinomial };
        LinearClassifier::from_obj(o, proba)
    }

    /// `SGDClassifier`: probabilities for log and modified Huber losses.
    pub fn sgd(o: &Obj) -> BResult<LinearClassifier> {
        let proba = match o.str_opt("loss").as_deref() {
            Some("log_loss" | "log") => Proba::Ovr,
            Some("modified_huber") => Proba::ModifiedHuber,
            _ => Proba::None,
        };
        LinearClassifier::from_obj(o, proba)
    }

    fn binary(&self) -> bool {
        self.lin.k == 1
    }
}

impl Estimator for LinearClassifier {
    fn name(&self) -> &'static str {
        "LinearClassifier"
    }
    fn n_features(&self) -> usize {
        self.lin.f
    }
    fn methods(&self) -> Vec<Method> {
        let mut m = vec![Method::Predict];
        if self.proba != Proba::None {
            m.push(Method::PredictProba);
        }
        m.push(Method::DecisionFunction);
        m
    }
    fn predict_kind(&self) -> PredictKind {
        PredictKind::Classes(self.classes.clone())
    }
    fn width(&self, m: Method) -> Option<usize> {
        match m {
            Method::Predict => None,
            Method::DecisionFunction if self.binary() => None,
            Method::DecisionFunction => Some(self.lin.k),
            _ => Some(self.classes.len()),
        }
    }
    fn run(&self, x: &Matrix, m: Method) -> Result<Vec<f64>, String> {
        x.check_cols(self.lin.f, "linear classifier")?;
        let d = self.lin.scores(x);
        let k = self.lin.k;
        match m {
            Method::DecisionFunction => Ok(d),
            Method::Predict => Ok(if self.binary() {
                d.iter().map(|&s| if s > 0.0 { 1.0 } else { 0.0 }).collect()
            } else {
                d.chunks_exact(k).map(|r| argmax(r) as f64).collect()
            }),
            Method::PredictProba => Ok(match (self.proba, self.binary()) {
                (Proba::Ovr, true) => d
                    .iter()
                    .flat_map(|&s| {
                        let p = expit(s);
                        [1.0 - p, p]
                    })
                    .collect(),
                (Proba::Ovr, false) => {
                    let mut p: Vec<f64> = d.iter().map(|&s| expit(s)).collect();
                    for row in p.chunks_exact_mut(k) {
                        let s: f64 = row.iter().sum();
                        row.iter_mut().for_each(|v| *v /= s);
                    }
                    p
                }
                (Proba::Multinomial, true) => {
                    let mut p: Vec<f64> = d.iter().flat_map(|&s| [-s, s]).collect();
                    softmax_rows(&mut p, 2);
                    p
                }
                (Proba::Multinomial, false) => {
                    let mut p = d;
                    softmax_rows(&mut p, k);
                    p
                }
                (Proba::ModifiedHuber, true) => d
                    .iter()
                    .flat_map(|&s| {
                        let p = (s.clamp(-1.0, 1.0) + 1.0) / 2.0;
                        [1.0 - p, p]
                    })
                    .collect(),
                (Proba::ModifiedHuber, false) => {
                    let mut p: Vec<f64> = d
                        .iter()
                        .map(|&s| (s.clamp(-1.0, 1.0) + 1.0) / 2.0)
                        .collect();
                    for row in p.chunks_exact_mut(k) {
                        let s: f64 = row.iter().sum();
                        if s == 0.0 {
                            row.iter_mut().for_each(|v| *v = 1.0 / k as f64);
                        } else {
                            row.iter_mut().for_each(|v| *v /= s);
                        }
                    }
                    p
                }
                (Proba::None, _) => return Err("this classifier has no predict_proba".into()),
            }),
            other => Err(format!("linear classifiers have no {}", other.as_str())),
        }
    }
}

/// `classes_`, or (RidgeClassifier before 1.4) `_label_binarizer.classes_`.
fn classifier_labels(o: &Obj) -> BResult<Labels> {
    if o.get("classes_").is_none() {
        if let Some(lb) = o.get("_label_binarizer") {
            return Obj::from_value(&lb, "_label_binarizer")?.labels("classes_");
        }
    }
    o.labels("classes_")
}

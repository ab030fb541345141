//! Multi-layer perceptrons: `MLPClassifier` and `MLPRegressor`, evaluated as
//! scikit-learn's `_forward_pass_fast` does (`coefs_` / `intercepts_` per
//! layer, the hidden `activation` between layers, `out_activation_` last).

use crate::data::{
    argmax, expit, softmax_rows, Estimator, Matrix, Method, PredictKind, ProbaOrRegression,
};
use crate::extract::{value_arr, BResult, Labels, Obj};

/// An activation function of scikit-learn's `ACTIVATIONS` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `identity`: unchanged.
    Identity,
    /// `logistic`: scipy's `expit`.
    Logistic,
    /// `tanh`.
    Tanh,
    /// `relu`: `max(x, 0)`.
    Relu,
    /// `softmax` over each row (output layer only).
    Softmax,
}

impl Activation {
    /// Parses scikit-learn's name for it.
    pub fn parse(name: &str) -> Option<Activation> {
        Some(match name {
            "identity" => Activation::Identity,
            "logistic" => Activation::Logistic,
            "tanh" => Activation::Tanh,
            "relu" => Activation::Relu,
            "softmax" => Activation::Softmax,
            _ => return None,
        })
    }

    /// Applies the activation in place to `v`, `width` values per row.
    fn apply(self, v: &mut [f64], width: usize) {
        match self {
            Activation::Identity => {}
            Activation::Logistic => v.iter_mut().for_each(|x| *x = expit(*x)),
            Activation::Tanh => v.iter_mut().for_each(|x| *x = x.tanh()),
            // np.maximum(x, 0) propagates NaN.
            Activation::Relu => v.iter_mut().for_each(|x| {
                if *x < 0.0 {
                    *x = 0.0
                }
            }),
            Activation::Softmax => softmax_rows(v, width),
        }
    }
}

/// One dense layer: `weights` is `n_in × n_out` row-major (`coefs_[i]`).
#[derive(Debug, Clone)]
struct Layer {
    weights: Vec<f64>,
    bias: Vec<f64>,
    n_in: usize,
    n_out: usize,
}

/// A fitted multi-layer perceptron (classifier or regressor).
#[derive(Debug, Clone)]
pub struct Mlp {
    layers: Vec<Layer>,
    hidden: Activation,
    output: Activation,
    /// Class labels for a classifier; `None` for a regressor.
    classes: Option<Labels>,
}

fn activation(o: &Obj, name: &str) -> BResult<Activation> {
    let s = o
        .str_opt(name)
        .ok_or_else(|| format!("{} lacks attribute '{name}' (is it fitted?)", o.class))?;
    Activation::parse(&s).ok_or_else(|| {
        format!(
            "{}.{name} = '{s}' is not an activation this runtime knows (identity, logistic, tanh, relu, softmax)",
            o.class
        )
    })
}

impl Mlp {
    /// Builds from a fitted `MLPClassifier` (`classifier`) or `MLPRegressor`.
    pub fn from_obj(o: &Obj, classifier: bool) -> BResult<Mlp> {
        let coefs = o.req("coefs_")?;
        let intercepts = o.req("intercepts_")?;
        let coefs = coefs
            .as_seq()
            .ok_or_else(|| format!("{}.coefs_ is {}, not a list", o.class, coefs.kind()))?;
        let intercepts = intercepts.as_seq().ok_or_else(|| {
            format!(
                "{}.intercepts_ is {}, not a list",
                o.class,
                intercepts.kind()
            )
        })?;
        if coefs.is_empty() || coefs.len() != intercepts.len() {
            return Err(format!(
                "{}: {} weight matrices and {} bias vectors",
                o.class,
                coefs.len(),
                intercepts.len()
            ));
        }
        let mut layers = Vec::with_capacity(coefs.len());
        for (i, (w, b)) in coefs.iter().zip(intercepts.iter()).enumerate() {
            let w = value_arr(w).map_err(|e| format!("{}.coefs_[{i}]: {e}", o.class))?;
            let b = value_arr(b).map_err(|e| format!("{}.intercepts_[{i}]: {e}", o.class))?;
            let [n_in, n_out] = w.shape[..] else {
                return Err(format!(
                    "{}.coefs_[{i}] has shape {:?}, not 2-d",
                    o.class, w.shape
                ));
            };
            if b.data.len() != n_out {
                return Err(format!(
                    "{}.intercepts_[{i}] has {} values for {n_out} units",
                    o.class,
                    b.data.len()
                ));
            }
            if let Some(prev) = layers.last().map(|l: &Layer| l.n_out) {
                if prev != n_in {
                    return Err(format!(
                        "{}.coefs_[{i}] takes {n_in} inputs but the layer before gives {prev}",
                        o.class
                    ));
                }
            }
            layers.push(Layer {
                weights: w.data,
                bias: b.data,
                n_in,
                n_out,
            });
        }
        let hidden = activation(o, "activation")?;
        let output = activation(o, "out_activation_")?;
        if hidden == Activation::Softmax {
            return Err(format!(
                "{}: softmax is not a hidden-layer activation",
                o.class
            ));
        }
        let n_out = layers.last().map_or(0, |l| l.n_out);
        let classes = if classifier {
            let lb = o
                .get("_label_binarizer")
                .map(|v| Obj::from_value(&v, "_label_binarizer"))
                .transpose()?;
            if let Some(kind) = lb.as_ref().and_then(|lb| lb.str_opt("y_type_")) {
                if kind.starts_with("multilabel") {
                    return Err(format!(
                        "{}: multi-label classifiers are not supported",
                        o.class
                    ));
                }
            }
            let labels = match (o.get("classes_"), &lb) {
                (None, Some(lb)) => lb.labels("classes_")?,
                _ => o.labels("classes_")?,
            };
            let expected = if labels.len() == 2 { 1 } else { labels.len() };
            if n_out != expected {
                return Err(format!(
                    "{}: {} output units for {} classes",
                    o.class,
                    n_out,
                    labels.len()
                ));
            }
            Some(labels)
        } else {
            None
        };
        Ok(Mlp {
            layers,
            hidden,
            output,
            classes,
        })
    }

    fn n_outputs(&self) -> usize {
        self.layers.last().map_or(0, |l| l.n_out)
    }

    /// The forward pass: `rows × n_outputs` values after the output
    /// activation.
    pub fn forward(&self, x: &Matrix) -> Vec<f64> {
        let last = self.layers.len().saturating_sub(1);
        let mut a = x.data.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            let mut z = Vec::with_capacity(x.rows * layer.n_out);
            for row in a.chunks_exact(layer.n_in.max(1)).take(x.rows) {
                let start = z.len();
                z.extend_from_slice(&layer.bias);
                let out = &mut z[start..];
                for (k, &v) in row.iter().enumerate() {
                    let w = &layer.weights[k * layer.n_out..(k + 1) * layer.n_out];
                    for (o, &wk) in out.iter_mut().zip(w) {
                        *o += v * wk;
                    }
                }
            }
            if i == last {
                self.output.apply(&mut z, layer.n_out);
            } else {
                self.hidden.apply(&mut z, layer.n_out);
            }
            a = z;
        }
        a
    }
}

impl Mlp {
    fn head(&self) -> ProbaOrRegression<'_> {
        ProbaOrRegression {
            classes: &self.classes,
            outputs: self.n_outputs(),
        }
    }
}

impl Estimator for Mlp {
    fn name(&self) -> &'static str {
        if self.classes.is_some() {
            "MLPClassifier"
        } else {
            "MLPRegressor"
        }
    }
    fn n_features(&self) -> usize {
        self.layers.first().map_or(0, |l| l.n_in)
    }
    fn methods(&self) -> Vec<Method> {
        self.head().methods()
    }
    fn predict_kind(&self) -> PredictKind {
        PredictKind::classes_or_float(&self.classes)
    }
    fn width(&self, m: Method) -> Option<usize> {
        self.head().width(m)
    }
    fn run(&self, x: &Matrix, m: Method) -> Result<Vec<f64>, String> {
        x.check_cols(self.n_features(), self.name())?;
        let y = self.forward(x);
        let k = self.n_outputs();
        match (&self.classes, m) {
            (None, Method::Predict) => Ok(y),
            // LabelBinarizer.inverse_transform: binary thresholds at 0.5
            // (strictly above: the positive class), else argmax.
            (Some(_), Method::Predict) if k == 1 => {
                Ok(y.iter().map(|&p| if p > 0.5 { 1.0 } else { 0.0 }).collect())
            }
            (Some(_), Method::Predict) => Ok(y.chunks_exact(k).map(|r| argmax(r) as f64).collect()),
            (Some(_), Method::PredictProba) if k == 1 => {
                Ok(y.iter().flat_map(|&p| [1.0 - p, p]).collect())
            }
            (Some(_), Method::PredictProba) => Ok(y),
            (_, other) => Err(format!("{} has no {}", self.name(), other.as_str())),
        }
    }
}

//! Objectives and the output transform each applies in `predict()`, written
//! as LightGBM's `ObjectiveFunction::ConvertOutput` computes them (double
//! precision, same operation order).

/// The output transform of a model's objective.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transform {
    /// Raw score unchanged: `regression`, `regression_l1`, `huber`, `fair`,
    /// `quantile`, `mape`, `lambdarank`, `rank_xendcg`, custom objectives.
    Identity,
    /// `sign(x)·x²`: a regression objective trained with `reg_sqrt`.
    SignedSquare,
    /// `exp(x)`: `poisson`, `gamma`, `tweedie`.
    Exp,
    /// `1 / (1 + exp(-σ·x))`: `binary` with its `sigmoid` parameter σ.
    Sigmoid(f64),
    /// Softmax over the classes: `multiclass`.
    Softmax,
    /// `1 / (1 + exp(-σ·x))` per class: `multiclassova`.
    SigmoidPerClass(f64),
    /// `1 / (1 + exp(-x))`: `cross_entropy` (xentropy).
    Logistic,
    /// `log(1 + exp(x))`: `cross_entropy_lambda` (xentlambda).
    Log1pExp,
}

/// A parsed `objective=` line.
#[derive(Debug, Clone, PartialEq)]
pub struct Objective {
    /// Canonical objective name (`regression`, `binary`, …; `custom` when the
    /// file has no objective line).
    pub name: String,
    /// The transform `predict()` applies to raw scores.
    pub transform: Transform,
    /// `num_class:` from the objective line (multiclass objectives only).
    pub num_class: Option<usize>,
}

/// LightGBM's `ParseObjectiveAlias`.
fn canonical(name: &str) -> &str {
    match name {
        "regression"
        | "regression_l2"
        | "mean_squared_error"
        | "mse"
        | "l2"
        | "l2_root"
        | "root_mean_squared_error"
        | "rmse" => "regression",
        "regression_l1" | "mean_absolute_error" | "l1" | "mae" => "regression_l1",
        "multiclass" | "softmax" => "multiclass",
        "multiclassova" | "multiclass_ova" | "ova" | "ovr" => "multiclassova",
        "xentropy" | "cross_entropy" => "cross_entropy",
        "xentlambda" | "cross_entropy_lambda" => "cross_entropy_lambda",
        "mean_absolute_percentage_error" | "mape" => "mape",
        "rank_xendcg" | "xendcg" | "xe_ndcg" | "xe_ndcg_mart" | "xendcg_mart" => "rank_xendcg",
        "none" | "null" | "custom" | "na" => "custom",
        other => other,
    }
}

impl Objective {
    /// Parses the value of an `objective=` line (`None`: the line is absent,
    /// as for models trained with a custom objective function).
    pub fn parse(line: Option<&str>) -> Result<Objective, String> {
        let Some(line) = line else {
            return Ok(Objective {
                name: "custom".into(),
                transform: Transform::Identity,
                num_class: None,
            });
        };
        let mut tokens = line.split(' ').filter(|t| !t.is_empty());
        let name = canonical(tokens.next().unwrap_or("custom")).to_string();
        let mut sqrt = false;
        let mut sigmoid: Option<f64> = None;
        let mut num_class: Option<usize> = None;
        for tok in tokens {
            if tok == "sqrt" {
                sqrt = true;
            } else if let Some((k, v)) = tok.split_once(':') {
                match k {
                    "sigmoid" => {
                        sigmoid = Some(
                            v.parse()
                                .map_err(|_| format!("objective `{line}`: bad sigmoid `{v}`"))?,
                        )
                    }
                    "num_class" => {
                        num_class = Some(
                            v.parse()
                                .map_err(|_| format!("objective `{line}`: bad num_class `{v}`"))?,
                        )
                    }
                    _ => {}
                }
            }
        }
        let need_sigmoid = || match sigmoid {
            Some(s) if s > 0.0 => Ok(s),
            Some(s) => Err(format!(
                "objective `{line}`: sigmoid {s} must be greater than zero"
            )),
            None => Err(format!("objective `{line}` has no sigmoid:<value>")),
        };
        let need_classes = || match num_class {
            Some(n) if n > 0 => Ok(()),
            _ => Err(format!("objective `{line}` has no num_class:<n>")),
        };
        let transform = match name.as_str() {
            // Huber drops `sqrt`; the other L2-derived regressions keep it.
            "regression" | "regression_l1" | "fair" | "quantile" | "mape" if sqrt => Transform::SignedSquare,
            "regression" | "regression_l1" | "fair" | "quantile" | "mape" | "huber" => Transform::Identity,
            "poisson" | "gamma" | "tweedie" => Transform::Exp,
            "binary" => Transform::Sigmoid(need_sigmoid()?),
            "multiclass" => {
                need_classes()?;
                Transform::Softmax
            }
            "multiclassova" => {
                need_classes()?;
                Transform::SigmoidPerClass(need_sigmoid()?)
            }
            "cross_entropy" => Transform::Logistic,
            "cross_entropy_lambda" => Transform::Log1pExp,
            "lambdarank" | "rank_xendcg" | "custom" => Transform::Identity,
            other => {
                return Err(format!(
                    "unsupported objective `{other}` (supported: regression, regression_l1, huber, fair, \
                     quantile, mape, poisson, gamma, tweedie, binary, multiclass, multiclassova, \
                     cross_entropy, cross_entropy_lambda, lambdarank, rank_xendcg, custom)"
                ))
            }
        };
        Ok(Objective {
            name,
            transform,
            num_class,
        })
    }
}

impl Transform {
    /// Converts one row's raw scores (`raw.len()` = number of outputs) into
    /// `out`, exactly as LightGBM's `ConvertOutput`.
    #[inline]
    pub fn apply(self, raw: &[f64], out: &mut [f64]) {
        match self {
            Transform::Identity => out.copy_from_slice(raw),
            Transform::SignedSquare => {
                for (o, &x) in out.iter_mut().zip(raw) {
                    *o = sign(x) * x * x;
                }
            }
            Transform::Exp => {
                for (o, &x) in out.iter_mut().zip(raw) {
                    *o = x.exp();
                }
            }
            Transform::Sigmoid(s) | Transform::SigmoidPerClass(s) => {
                for (o, &x) in out.iter_mut().zip(raw) {
                    *o = 1.0 / (1.0 + (-s * x).exp());
                }
            }
            Transform::Logistic => {
                for (o, &x) in out.iter_mut().zip(raw) {
                    *o = 1.0 / (1.0 + (-x).exp());
                }
            }
            Transform::Log1pExp => {
                for (o, &x) in out.iter_mut().zip(raw) {
                    *o = x.exp().ln_1p();
                }
            }
            Transform::Softmax => softmax(raw, out),
        }
    }
}

/// `Common::Sign`: 1, -1 or 0 (also for NaN).
#[inline]
fn sign(x: f64) -> f64 {
    f64::from(i8::from(x > 0.0) - i8::from(x < 0.0))
}

/// `Common::Softmax`, including `std::max`'s NaN behaviour.
fn softmax(raw: &[f64], out: &mut [f64]) {
    let Some(&first) = raw.first() else { return };
    let mut wmax = first;
    for &x in &raw[1..] {
        // std::max(x, wmax) returns wmax only when x < wmax
        wmax = if x < wmax { wmax } else { x };
    }
    let mut wsum = 0.0;
    for (o, &x) in out.iter_mut().zip(raw) {
        *o = (x - wmax).exp();
        wsum += *o;
    }
    for o in out.iter_mut() {
        *o /= wsum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_objective_lines() {
        let o = Objective::parse(Some("binary sigmoid:0.7")).unwrap();
        assert_eq!(o.transform, Transform::Sigmoid(0.7));
        let o = Objective::parse(Some("multiclass num_class:4")).unwrap();
        assert_eq!((o.transform, o.num_class), (Transform::Softmax, Some(4)));
        let o = Objective::parse(Some("multiclassova num_class:3 sigmoid:1.5")).unwrap();
        assert_eq!(o.transform, Transform::SigmoidPerClass(1.5));
        assert_eq!(
            Objective::parse(Some("regression sqrt")).unwrap().transform,
            Transform::SignedSquare
        );
        assert_eq!(
            Objective::parse(Some("huber sqrt")).unwrap().transform,
            Transform::Identity
        );
        assert_eq!(
            Objective::parse(Some("tweedie")).unwrap().transform,
            Transform::Exp
        );
        assert_eq!(
            Objective::parse(Some("xentlambda")).unwrap().transform,
            Transform::Log1pExp
        );
        assert_eq!(Objective::parse(None).unwrap().name, "custom");
        assert!(Objective::parse(Some("binary")).is_err());
        assert!(Objective::parse(Some("binary sigmoid:-1")).is_err());
        assert!(Objective::parse(Some("multiclass")).is_err());
        assert!(Objective::parse(Some("survival"))
            .unwrap_err()
            .contains("unsupported objective"));
    }

    #[test]
    fn transforms() {
        let mut out = [0.0; 3];
        Transform::Softmax.apply(&[1.0, 2.0, 3.0], &mut out);
        assert!((out.iter().sum::<f64>() - 1.0).abs() < 1e-15);
        let mut o = [0.0];
        Transform::SignedSquare.apply(&[-3.0], &mut o);
        assert_eq!(o[0], -9.0);
        Transform::SignedSquare.apply(&[f64::NAN], &mut o);
        assert!(o[0].is_nan());
        Transform::Sigmoid(1.0).apply(&[0.0], &mut o);
        assert_eq!(o[0], 0.5);
    }
}

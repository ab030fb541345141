//! XGBoost objectives as prediction needs them: how the stored `base_score`
//! becomes a margin (`ProbToMargin`) and how a row's margins become the
//! values `Booster.predict()` returns (`PredTransform`). The arithmetic is
//! `f32`, as in XGBoost, so results match it bit for bit.
//!
//! Where XGBoost changed a transform, the version that saved the model
//! decides (`reg:quantileerror` sorts each row's quantiles from 3.4 on).

/// How `predict()` turns a row's margins into predictions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// The margin itself.
    Identity,
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
    /// `exp(x)`.
    Exp,
    /// `1` if `x > 0`, else `0` (binary:hinge).
    Hinge,
    /// Softmax across the classes of a row (multi:softprob).
    Softmax,
    /// The index of the largest class margin, as a float (multi:softmax).
    Argmax,
    /// The row's values sorted ascending (reg:quantileerror, XGBoost ≥ 3.4).
    Sort,
    /// `p0 = m0`, `pj = p(j-1) + 1e-6 + softplus(mj)` (reg:expectileerror).
    CumulativeSoftplus,
}

/// How the stored `base_score` becomes the starting margin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BaseToMargin {
    Identity,
    Logit,
    Log,
    /// The inverse of [`Transform::CumulativeSoftplus`].
    SoftplusGaps,
}

/// A known objective.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Objective {
    name: String,
    transform: Transform,
    base: BaseToMargin,
}

/// XGBoost's `kRtEps`.
const RT_EPS: f32 = 1e-6;

/// Objectives whose predictions are the margins.
const IDENTITY: &[&str] = &[
    "reg:squarederror",
    "reg:linear",
    "reg:squaredlogerror",
    "reg:pseudohubererror",
    "reg:absoluteerror",
    "reg:quantileerror",
    "binary:logitraw",
    "rank:pairwise",
    "rank:ndcg",
    "rank:map",
];

/// Objectives predicting `exp(margin)` with `log(base_score)` as base margin.
const EXP: &[&str] = &[
    "count:poisson",
    "reg:gamma",
    "reg:tweedie",
    "survival:cox",
    "survival:aft",
];

/// The other objectives.
const OTHERS: &[&str] = &[
    "reg:logistic",
    "binary:logistic",
    "binary:hinge",
    "multi:softprob",
    "multi:softmax",
    "reg:expectileerror",
];

impl Objective {
    /// Looks up an objective by its XGBoost name, as the XGBoost `version`
    /// that saved the model applies it (unknown version: the oldest
    /// behaviour).
    pub fn new(name: &str, version: Option<[u32; 3]>) -> Option<Objective> {
        let (transform, base) = if name == "reg:quantileerror"
            && version.is_some_and(|v| (v[0], v[1]) >= (3, 4))
        {
            (Transform::Sort, BaseToMargin::Identity)
        } else if IDENTITY.contains(&name) {
            (Transform::Identity, BaseToMargin::Identity)
        } else if EXP.contains(&name) {
            (Transform::Exp, BaseToMargin::Log)
        } else {
            match name {
                "reg:logistic" | "binary:logistic" => (Transform::Sigmoid, BaseToMargin::Logit),
                "binary:hinge" => (Transform::Hinge, BaseToMargin::Identity),
                "multi:softprob" => (Transform::Softmax, BaseToMargin::Identity),
                "multi:softmax" => (Transform::Argmax, BaseToMargin::Identity),
                "reg:expectileerror" => (Transform::CumulativeSoftplus, BaseToMargin::SoftplusGaps),
                _ => return None,
            }
        };
        Some(Objective {
            name: name.to_string(),
            transform,
            base,
        })
    }

    /// Every objective name this runtime knows.
    pub fn supported_names() -> Vec<&'static str> {
        IDENTITY.iter().chain(EXP).chain(OTHERS).copied().collect()
    }

    /// The objective's XGBoost name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The output transform.
    pub fn transform(&self) -> Transform {
        self.transform
    }

    /// The margins the stored `base_score` values (one per output) stand for.
    pub fn base_margins(&self, stored: &[f32]) -> Result<Vec<f32>, String> {
        match self.base {
            BaseToMargin::Identity => Ok(stored.to_vec()),
            BaseToMargin::Logit => stored
                .iter()
                .map(|&b| {
                    // XGBoost ≥ 3.1 clamps into [1e-6, 1 - 1e-6]; older
                    // versions refuse values outside (0, 1), which a model
                    // they saved cannot hold.
                    let p = b.clamp(RT_EPS, 1.0 - RT_EPS);
                    if p.is_nan() {
                        return Err("base_score is NaN".to_string());
                    }
                    Ok(-(1.0f32 / p - 1.0f32).ln())
                })
                .collect(),
            BaseToMargin::Log => stored
                .iter()
                .map(|&b| {
                    if b > 0.0 {
                        Ok(b.ln())
                    } else {
                        Err(format!(
                            "base_score {b} must be positive for objective {}",
                            self.name
                        ))
                    }
                })
                .collect(),
            BaseToMargin::SoftplusGaps => {
                // ExpectileRegression::ProbToMargin: from the last output
                // down, each becomes the softplus-inverse of its gap to the
                // (still untransformed) previous one.
                let mut m = stored.to_vec();
                for j in (1..m.len()).rev() {
                    let gap = m[j] - m[j - 1];
                    m[j] = softplus_inv(gap - RT_EPS);
                }
                Ok(m)
            }
        }
    }
}

/// XGBoost's `common::Sigmoid` for `f32`.
#[inline]
pub fn sigmoid(x: f32) -> f32 {
    let x = (-x).min(88.7f32);
    let denom = x.exp() + 1.0f32 + 1e-16f32;
    1.0f32 / denom
}

/// XGBoost's `common::SoftPlus` for `f32`.
#[inline]
fn softplus(x: f32) -> f32 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// XGBoost's `common::SoftPlusInv` for `f32`.
#[inline]
fn softplus_inv(x: f32) -> f32 {
    let x = x.max(RT_EPS);
    x + (-(-x).exp_m1()).ln()
}

/// Applies `transform` to the margins of one row (`row.len()` outputs),
/// writing the predictions to `out` (one value for `Argmax`, else as many
/// as `row`).
#[inline]
pub fn apply(transform: Transform, row: &[f32], out: &mut [f32]) {
    match transform {
        Transform::Identity => out.copy_from_slice(row),
        Transform::Sigmoid => {
            for (o, &m) in out.iter_mut().zip(row) {
                *o = sigmoid(m);
            }
        }
        Transform::Exp => {
            for (o, &m) in out.iter_mut().zip(row) {
                *o = m.exp();
            }
        }
        Transform::Hinge => {
            for (o, &m) in out.iter_mut().zip(row) {
                *o = if m > 0.0 { 1.0 } else { 0.0 };
            }
        }
        Transform::Softmax => {
            // common::Softmax: f32 max, f32 exps, f64 sum, f32 divide.
            let Some(&first) = row.first() else { return };
            let wmax = row.iter().fold(first, |a, &b| b.max(a));
            let mut wsum = 0.0f64;
            for (o, &m) in out.iter_mut().zip(row) {
                *o = (m - wmax).exp();
                wsum += f64::from(*o);
            }
            let s = wsum as f32;
            for o in out.iter_mut() {
                *o /= s;
            }
        }
        Transform::Argmax => {
            // common::FindMaxIndex: the first index holding the maximum.
            let mut best = 0usize;
            for (i, &m) in row.iter().enumerate() {
                if m > row[best] {
                    best = i;
                }
            }
            if let Some(o) = out.first_mut() {
                *o = best as f32;
            }
        }
        Transform::Sort => {
            // QuantileRegression::PredTransform's insertion sort, verbatim,
            // so that NaNs end up where XGBoost puts them.
            out.copy_from_slice(row);
            for i in 1..out.len() {
                let value = out[i];
                let mut pos = i;
                while pos > 0 && out[pos - 1] > value {
                    out[pos] = out[pos - 1];
                    pos -= 1;
                }
                out[pos] = value;
            }
        }
        Transform::CumulativeSoftplus => {
            out.copy_from_slice(row);
            let Some(&first) = row.first() else { return };
            let mut pred = first;
            for o in out.iter_mut().skip(1) {
                pred += RT_EPS + softplus(*o);
                *o = pred;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transforms() {
        let mut out = [0.0f32; 3];
        apply(Transform::Softmax, &[1.0, 2.0, 3.0], &mut out);
        assert!((out.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        apply(Transform::Argmax, &[1.0, 3.0, 3.0], &mut out);
        assert_eq!(out[0], 1.0);
        apply(Transform::Sort, &[3.0, 1.0, 2.0], &mut out);
        assert_eq!(out, [1.0, 2.0, 3.0]);
        assert_eq!(sigmoid(0.0), 0.5);
        assert_eq!(sigmoid(-1000.0), 1.0 / ((88.7f32).exp() + 1.0));
        let o = Objective::new("binary:logistic", None).unwrap();
        assert_eq!(o.base_margins(&[0.5]).unwrap(), vec![0.0]);
        assert!(Objective::new("reg:gamma", None)
            .unwrap()
            .base_margins(&[0.0])
            .is_err());
        assert!(Objective::new("my:custom", None).is_none());
        let q = |v| {
            Objective::new("reg:quantileerror", Some(v))
                .unwrap()
                .transform()
        };
        assert_eq!(q([3, 2, 0]), Transform::Identity);
        assert_eq!(q([3, 4, 1]), Transform::Sort);
    }

    #[test]
    fn expectile_base_round_trips() {
        // The cumulative softplus transform undoes the base-score inversion.
        let o = Objective::new("reg:expectileerror", Some([3, 4, 0])).unwrap();
        let stored = [-1.0f32, 0.5, 2.0];
        let m = o.base_margins(&stored).unwrap();
        assert_eq!(m[0], -1.0);
        let mut p = [0.0f32; 3];
        apply(o.transform(), &m, &mut p);
        for (a, b) in p.iter().zip(stored) {
            assert!((a - b).abs() < 1e-5, "{p:?}");
        }
    }
}

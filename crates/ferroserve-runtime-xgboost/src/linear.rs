//! The gblinear booster: one weight per feature and output plus a bias.
//!
//! As in XGBoost's `GBLinear::Pred`, a row's margin for output `g` is
//! `(bias[g] + base)` plus `x[f] * w[f][g]` for each present feature, summed
//! in `f32` in feature order; missing features are skipped. XGBoost adds the
//! first output's base margin to every output, and so does this.

/// A loaded gblinear model.
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    /// `weights[f * k + g]`, then the biases `weights[num_features * k + g]`.
    weights: Vec<f32>,
    num_features: usize,
    num_outputs: usize,
}

impl Linear {
    /// Checks the weight count against the model's shape.
    pub(crate) fn new(
        weights: Vec<f32>,
        num_features: usize,
        num_outputs: usize,
    ) -> Result<Linear, String> {
        let want = (num_features + 1) * num_outputs;
        if weights.len() != want {
            return Err(format!(
                "gblinear has {} weights; {num_features} features and {num_outputs} outputs need {want}",
                weights.len()
            ));
        }
        Ok(Linear {
            weights,
            num_features,
            num_outputs,
        })
    }

    /// Writes the margins of `rows` (row-major, NaN = missing) into
    /// `margins`, given the base margin of output 0.
    pub(crate) fn predict(&self, rows: &[f32], base: f32, margins: &mut [f32]) {
        let (f, k) = (self.num_features.max(1), self.num_outputs);
        let bias = &self.weights[self.num_features * k..];
        for (row, out) in rows.chunks_exact(f).zip(margins.chunks_exact_mut(k)) {
            for (g, o) in out.iter_mut().enumerate() {
                let mut psum = bias[g] + base;
                for (j, &x) in row.iter().enumerate() {
                    if !x.is_nan() {
                        psum += x * self.weights[j * k + g];
                    }
                }
                *o = psum;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_margins() {
        // 2 features, 2 outputs.
        let l = Linear::new(vec![1.0, 10.0, 2.0, 20.0, 0.5, -0.5], 2, 2).unwrap();
        let mut m = [0.0f32; 4];
        l.predict(&[1.0, 2.0, f32::NAN, 1.0], 1.0, &mut m);
        assert_eq!(m, [6.5, 50.5, 3.5, 20.5]);
        assert!(Linear::new(vec![0.0; 5], 2, 2).is_err());
    }
}

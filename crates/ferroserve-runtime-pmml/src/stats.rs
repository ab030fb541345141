//! Link functions and distributions PMML's models use, computed the way
//! JPMML (via Apache Commons Math) computes them.

/// The logistic function, 1 / (1 + e^-x).
pub fn logistic(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The standard normal CDF (inverse probit link).
pub fn probit(x: f64) -> f64 {
    if x.abs() > 40.0 {
        return if x < 0.0 { 0.0 } else { 1.0 };
    }
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

/// Inverse complementary log-log link.
pub fn cloglog(x: f64) -> f64 {
    1.0 - (-(x.exp())).exp()
}

/// Inverse log-log link.
pub fn loglog(x: f64) -> f64 {
    (-((-x).exp())).exp()
}

/// Inverse Cauchit link.
pub fn cauchit(x: f64) -> f64 {
    0.5 + (1.0 / std::f64::consts::PI) * x.atan()
}

/// Density of N(mean, variance) at `x`.
pub fn normal_density(mean: f64, variance: f64, x: f64) -> f64 {
    let sd = variance.sqrt();
    let x1 = (x - mean) / sd;
    (-0.5 * x1 * x1 - (sd.ln() + 0.5 * (2.0 * std::f64::consts::PI).ln())).exp()
}

/// Poisson probability of `k` events with rate `mean`.
pub fn poisson(mean: f64, k: f64) -> f64 {
    if k < 0.0 || k != k.trunc() {
        return 0.0;
    }
    (k * mean.ln() - mean - libm::lgamma(k + 1.0)).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        assert!((probit(0.0) - 0.5).abs() < 1e-15);
        assert!((probit(1.96) - 0.9750021048517795).abs() < 1e-14);
        assert!((normal_density(0.0, 1.0, 0.0) - 0.3989422804014327).abs() < 1e-15);
        assert!((poisson(2.0, 3.0) - 0.18044704431548356).abs() < 1e-14);
        assert!((logistic(0.0) - 0.5).abs() < 1e-15);
    }
}

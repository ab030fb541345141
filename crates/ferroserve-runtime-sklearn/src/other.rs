//! Neighbours, naive Bayes, kernel SVMs, k-means and the linear
//! decompositions (PCA, TruncatedSVD).

use crate::data::{
    argmax, Data, Estimator, Matrix, Method, PredictKind, ProbaOrRegression, Transform,
};
use crate::extract::{BResult, Labels, Obj};

/// KNeighborsClassifier / KNeighborsRegressor (brute-force search).
#[derive(Debug, Clone)]
pub struct KNeighbors {
    fit_x: Vec<f64>,
    n_fit: usize,
    f: usize,
    y: Vec<f64>,
    outputs: usize,
    k: usize,
    distance_weights: bool,
    metric: Metric,
    classes: Option<Labels>,
}

#[derive(Debug, Clone, Copy)]
enum Metric {
    Euclidean,
    Manhattan,
    Chebyshev,
    Minkowski(f64),
}

impl Metric {
    fn dist(self, a: &[f64], b: &[f64]) -> f64 {
        match self {
            Metric::Euclidean => a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y) * (x - y))
                .sum::<f64>()
                .sqrt(),
            Metric::Manhattan => a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum(),
            Metric::Chebyshev => a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max),
            Metric::Minkowski(p) => a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs().powf(p))
                .sum::<f64>()
                .powf(1.0 / p),
        }
    }
}

impl KNeighbors {
    /// Builds from the estimator object.
    pub fn from_obj(o: &Obj, classifier: bool) -> BResult<KNeighbors> {
        let fit = o.arr("_fit_X")?;
        let (n_fit, f) = match fit.shape.as_slice() {
            [n, f] => (*n, *f),
            s => return Err(format!("{}._fit_X has shape {s:?}", o.class)),
        };
        let y = o.arr("_y")?;
        let outputs = match y.shape.as_slice() {
            [n] if *n == n_fit => 1,
            [n, k] if *n == n_fit => *k,
            s => return Err(format!("{}._y has shape {s:?}", o.class)),
        };
        let weights = o.str_opt("weights").unwrap_or_else(|| "uniform".into());
        let distance_weights = match weights.as_str() {
            "uniform" => false,
            "distance" => true,
            w => {
                return Err(format!(
                    "{}: weights='{w}' is not supported (uniform, distance)",
                    o.class
                ))
            }
        };
        let metric_name = o
            .str_opt("effective_metric_")
            .or_else(|| o.str_opt("metric"))
            .unwrap_or_else(|| "minkowski".into());
        let p = o
            .get("effective_metric_params_")
            .and_then(|d| match d {
                crate::value::Value::Dict(d) => d
                    .borrow()
                    .iter()
                    .find(|(k, _)| k.as_str() == Some("p"))
                    .and_then(|(_, v)| v.as_f64()),
                _ => None,
            })
            .or_else(|| o.get("p").and_then(|v| v.as_f64()))
            .unwrap_or(2.0);
        let metric = match metric_name.as_str() {
            "euclidean" | "l2" => Metric::Euclidean,
            "manhattan" | "cityblock" | "l1" => Metric::Manhattan,
            "chebyshev" | "infinity" => Metric::Chebyshev,
            "minkowski" if p == 2.0 => Metric::Euclidean,
            "minkowski" if p == 1.0 => Metric::Manhattan,
            "minkowski" if p.is_infinite() => Metric::Chebyshev,
            "minkowski" if p > 0.0 => Metric::Minkowski(p),
            m => {
                return Err(format!(
                "{}: metric '{m}' is not supported (euclidean, manhattan, chebyshev, minkowski)",
                o.class
            ))
            }
        };
        let classes = if classifier {
            let c = o.labels("classes_")?;
            if outputs != 1 {
                return Err(format!(
                    "{}: multi-output classification is not supported",
                    o.class
                ));
            }
            if y.data.iter().any(|&v| v < 0.0 || v as usize >= c.len()) {
                return Err(format!("{}._y holds class indices out of range", o.class));
            }
            Some(c)
        } else {
            None
        };
        let k = o.usize("n_neighbors")?;
        if k == 0 || k > n_fit {
            return Err(format!(
                "{}: n_neighbors={k} with {n_fit} fitted samples",
                o.class
            ));
        }
        Ok(KNeighbors {
            fit_x: fit.data,
            n_fit,
            f,
            y: y.data,
            outputs,
            k,
            distance_weights,
            metric,
            classes,
        })
    }

    /// Indices and distances of the k nearest fitted samples, nearest first.
    fn neighbors(&self, row: &[f64], buf: &mut Vec<(f64, usize)>) {
        buf.clear();
        for j in 0..self.n_fit {
            let d = self
                .metric
                .dist(row, &self.fit_x[j * self.f..(j + 1) * self.f]);
            buf.push((d, j));
        }
        let k = self.k;
        buf.select_nth_unstable_by(k - 1, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        buf.truncate(k);
        buf.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    }

    fn weights(&self, nb: &[(f64, usize)]) -> Vec<f64> {
        if !self.distance_weights {
            return vec![1.0; nb.len()];
        }
        if nb.iter().any(|(d, _)| *d == 0.0) {
            return nb
                .iter()
                .map(|(d, _)| if *d == 0.0 { 1.0 } else { 0.0 })
                .collect();
        }
        nb.iter().map(|(d, _)| 1.0 / d).collect()
    }
}

impl KNeighbors {
    fn head(&self) -> ProbaOrRegression<'_> {
        ProbaOrRegression {
            classes: &self.classes,
            outputs: self.outputs,
        }
    }
}

impl Estimator for KNeighbors {
    fn name(&self) -> &'static str {
        "KNeighbors"
    }
    fn n_features(&self) -> usize {
        self.f
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
        x.check_cols(self.f, "k-neighbors")?;
        let mut buf = Vec::with_capacity(self.n_fit);
        let mut out = Vec::new();
        for i in 0..x.rows {
            self.neighbors(x.row(i), &mut buf);
            let w = self.weights(&buf);
            match &self.classes {
                Some(c) => {
                    let mut counts = vec![0.0; c.len()];
                    for ((_, j), wj) in buf.iter().zip(&w) {
                        counts[self.y[*j] as usize] += wj;
                    }
                    if m == Method::PredictProba {
                        let s: f64 = counts.iter().sum();
                        let s = if s == 0.0 { 1.0 } else { s };
                        out.extend(counts.iter().map(|v| v / s));
                    } else {
                        out.push(argmax(&counts) as f64);
                    }
                }
                None => {
                    let sw: f64 = w.iter().sum();
                    for o in 0..self.outputs {
                        let s: f64 = buf
                            .iter()
                            .zip(&w)
                            .map(|((_, j), wj)| self.y[j * self.outputs + o] * wj)
                            .sum();
                        out.push(if self.distance_weights {
                            s / sw
                        } else {
                            s / self.k as f64
                        });
                    }
                }
            }
        }
        Ok(out)
    }
}

/// GaussianNB.
#[derive(Debug, Clone)]
pub struct GaussianNb {
    theta: Vec<f64>,
    var: Vec<f64>,
    log_prior: Vec<f64>,
    classes: Labels,
    f: usize,
}

impl GaussianNb {
    /// Builds from the estimator object.
    pub fn from_obj(o: &Obj) -> BResult<GaussianNb> {
        let theta = o.arr("theta_")?;
        let var = o.opt_arr("var_")?.map_or_else(|| o.arr("sigma_"), Ok)?;
        let prior = o.arr("class_prior_")?;
        let classes = o.labels("classes_")?;
        let (k, f) = theta.dims2();
        if var.data.len() != k * f || prior.data.len() != k || classes.len() != k {
            return Err("GaussianNB: theta_, var_, class_prior_ and classes_ disagree".into());
        }
        Ok(GaussianNb {
            theta: theta.data,
            var: var.data,
            log_prior: prior.data.iter().map(|p| p.ln()).collect(),
            classes,
            f,
        })
    }

    fn jll(&self, row: &[f64]) -> Vec<f64> {
        let k = self.classes.len();
        (0..k)
            .map(|c| {
                let v = &self.var[c * self.f..(c + 1) * self.f];
                let t = &self.theta[c * self.f..(c + 1) * self.f];
                let mut n: f64 = -0.5
                    * v.iter()
                        .map(|s| (2.0 * std::f64::consts::PI * s).ln())
                        .sum::<f64>();
                n -= 0.5
                    * row
                        .iter()
                        .zip(t)
                        .zip(v)
                        .map(|((x, m), s)| (x - m) * (x - m) / s)
                        .sum::<f64>();
                self.log_prior[c] + n
            })
            .collect()
    }
}

impl Estimator for GaussianNb {
    fn name(&self) -> &'static str {
        "GaussianNB"
    }
    fn n_features(&self) -> usize {
        self.f
    }
    fn methods(&self) -> Vec<Method> {
        vec![Method::Predict, Method::PredictProba]
    }
    fn predict_kind(&self) -> PredictKind {
        PredictKind::Classes(self.classes.clone())
    }
    fn width(&self, m: Method) -> Option<usize> {
        (m == Method::PredictProba).then_some(self.classes.len())
    }
    fn run(&self, x: &Matrix, m: Method) -> Result<Vec<f64>, String> {
        x.check_cols(self.f, "GaussianNB")?;
        let mut out = Vec::new();
        for i in 0..x.rows {
            let j = self.jll(x.row(i));
            if m == Method::PredictProba {
                let max = j.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let lse = max + j.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
                out.extend(j.iter().map(|v| (v - lse).exp()));
            } else {
                out.push(argmax(&j) as f64);
            }
        }
        Ok(out)
    }
}

#[derive(Debug, Clone, Copy)]
enum Kernel {
    Linear,
    Poly { gamma: f64, coef0: f64, degree: i32 },
    Rbf { gamma: f64 },
    Sigmoid { gamma: f64, coef0: f64 },
}

impl Kernel {
    fn eval(self, a: &[f64], b: &[f64]) -> f64 {
        let dot = || a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        match self {
            Kernel::Linear => dot(),
            Kernel::Poly {
                gamma,
                coef0,
                degree,
            } => (gamma * dot() + coef0).powi(degree),
            Kernel::Rbf { gamma } => {
                (-gamma * a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>()).exp()
            }
            Kernel::Sigmoid { gamma, coef0 } => (gamma * dot() + coef0).tanh(),
        }
    }
}

/// SVC / SVR (libsvm models).
#[derive(Debug, Clone)]
pub struct Svm {
    sv: Vec<f64>,
    n_sv: usize,
    f: usize,
    dual: Vec<f64>,
    intercept: Vec<f64>,
    n_support: Vec<usize>,
    kernel: Kernel,
    classes: Option<Labels>,
    ovr_shape: bool,
    /// Platt scaling per class pair (`probability=True`).
    platt: Option<(Vec<f64>, Vec<f64>)>,
}

/// libsvm's `sigmoid_predict`.
fn sigmoid_predict(dec: f64, a: f64, b: f64) -> f64 {
    let f = dec * a + b;
    if f >= 0.0 {
        (-f).exp() / (1.0 + (-f).exp())
    } else {
        1.0 / (1.0 + f.exp())
    }
}

/// libsvm's `multiclass_probability`: pairwise coupling (Wu, Lin and Weng).
fn multiclass_probability(k: usize, r: &[Vec<f64>]) -> Vec<f64> {
    let mut p = vec![1.0 / k as f64; k];
    let mut q = vec![vec![0.0; k]; k];
    for t in 0..k {
        for j in 0..t {
            q[t][t] += r[j][t] * r[j][t];
            q[t][j] = q[j][t];
        }
        for j in t + 1..k {
            q[t][t] += r[j][t] * r[j][t];
            q[t][j] = -r[j][t] * r[t][j];
        }
    }
    let eps = 0.005 / k as f64;
    let mut qp = vec![0.0; k];
    for _ in 0..k.max(100) {
        let mut pqp = 0.0;
        for t in 0..k {
            qp[t] = (0..k).map(|j| q[t][j] * p[j]).sum();
            pqp += p[t] * qp[t];
        }
        let max_error = qp.iter().map(|v| (v - pqp).abs()).fold(0.0, f64::max);
        if max_error < eps {
            break;
        }
        for t in 0..k {
            let diff = (-qp[t] + pqp) / q[t][t];
            p[t] += diff;
            pqp = (pqp + diff * (diff * q[t][t] + 2.0 * qp[t])) / (1.0 + diff) / (1.0 + diff);
            for j in 0..k {
                qp[j] = (qp[j] + diff * q[t][j]) / (1.0 + diff);
                p[j] /= 1.0 + diff;
            }
        }
    }
    p
}

impl Svm {
    /// Builds from the estimator object.
    pub fn from_obj(o: &Obj, classifier: bool) -> BResult<Svm> {
        if o.bool_or("_sparse", false) {
            return Err(format!(
                "{} fitted on sparse data is not supported",
                o.class
            ));
        }
        let sv = o.arr("support_vectors_")?;
        let (n_sv, f) = match sv.shape.as_slice() {
            [n, f] => (*n, *f),
            s => return Err(format!("{}.support_vectors_ has shape {s:?}", o.class)),
        };
        let dual = o.arr("_dual_coef_")?;
        let intercept = o.arr("_intercept_")?.data;
        let gamma = o.get("_gamma").and_then(|v| v.as_f64()).unwrap_or(0.0);
        let coef0 = o.get("coef0").and_then(|v| v.as_f64()).unwrap_or(0.0);
        let degree = o.get("degree").and_then(|v| v.as_i64()).unwrap_or(3);
        let kernel = match o.str_opt("kernel").as_deref().unwrap_or("rbf") {
            "linear" => Kernel::Linear,
            "poly" => Kernel::Poly {
                gamma,
                coef0,
                degree: i32::try_from(degree).map_err(|_| "bad degree")?,
            },
            "rbf" => Kernel::Rbf { gamma },
            "sigmoid" => Kernel::Sigmoid { gamma, coef0 },
            k => {
                return Err(format!(
                    "{}: kernel '{k}' is not supported (linear, poly, rbf, sigmoid)",
                    o.class
                ))
            }
        };
        let (classes, n_support) = if classifier {
            let c = o.labels("classes_")?;
            if c.len() < 2 {
                return Err(format!("{} needs at least two classes", o.class));
            }
            let ns = o
                .opt_arr("_n_support")?
                .map_or_else(|| o.arr("n_support_"), Ok)?;
            let ns: Vec<usize> = ns.data.iter().map(|&v| v.max(0.0) as usize).collect();
            if ns.len() != c.len() || ns.iter().sum::<usize>() != n_sv {
                return Err(format!(
                    "{}: n_support does not match the support vectors",
                    o.class
                ));
            }
            if dual.data.len() != (c.len() - 1) * n_sv
                || intercept.len() != c.len() * (c.len() - 1) / 2
            {
                return Err(format!(
                    "{}: dual_coef_/intercept_ sizes do not match the classes",
                    o.class
                ));
            }
            (Some(c), ns)
        } else {
            if dual.data.len() != n_sv || intercept.len() != 1 {
                return Err(format!(
                    "{}: dual_coef_/intercept_ sizes do not match",
                    o.class
                ));
            }
            (None, vec![n_sv])
        };
        let ovr_shape = o.str_opt("decision_function_shape").as_deref() != Some("ovo");
        let platt = match (&classes, o.opt_arr("_probA")?, o.opt_arr("_probB")?) {
            (Some(_), Some(a), Some(b)) if !a.data.is_empty() => {
                if a.data.len() != intercept.len() || b.data.len() != intercept.len() {
                    return Err(format!(
                        "{}: probA_/probB_ sizes do not match the class pairs",
                        o.class
                    ));
                }
                Some((a.data, b.data))
            }
            _ => None,
        };
        Ok(Svm {
            sv: sv.data,
            n_sv,
            f,
            dual: dual.data,
            intercept,
            n_support,
            kernel,
            classes,
            ovr_shape,
            platt,
        })
    }

    /// libsvm decision values: one per class pair (or one for SVR).
    fn decisions(&self, row: &[f64], kv: &mut Vec<f64>) -> Vec<f64> {
        kv.clear();
        kv.extend((0..self.n_sv).map(|s| {
            self.kernel
                .eval(row, &self.sv[s * self.f..(s + 1) * self.f])
        }));
        let Some(c) = &self.classes else {
            let s: f64 = kv.iter().zip(&self.dual).map(|(k, d)| k * d).sum();
            return vec![s + self.intercept[0]];
        };
        let nc = c.len();
        let mut start = vec![0usize; nc];
        for i in 1..nc {
            start[i] = start[i - 1] + self.n_support[i - 1];
        }
        let mut out = Vec::with_capacity(nc * (nc - 1) / 2);
        let mut p = 0;
        for i in 0..nc {
            for j in i + 1..nc {
                let mut sum = 0.0;
                let (si, ci) = (start[i], self.n_support[i]);
                let (sj, cj) = (start[j], self.n_support[j]);
                let coef1 = &self.dual[(j - 1) * self.n_sv..j * self.n_sv];
                let coef2 = &self.dual[i * self.n_sv..(i + 1) * self.n_sv];
                for k in 0..ci {
                    sum += coef1[si + k] * kv[si + k];
                }
                for k in 0..cj {
                    sum += coef2[sj + k] * kv[sj + k];
                }
                out.push(sum + self.intercept[p]);
                p += 1;
            }
        }
        out
    }
}

impl Estimator for Svm {
    fn name(&self) -> &'static str {
        "SVM"
    }
    fn n_features(&self) -> usize {
        self.f
    }
    fn methods(&self) -> Vec<Method> {
        if self.classes.is_some() && self.platt.is_some() {
            vec![
                Method::Predict,
                Method::PredictProba,
                Method::DecisionFunction,
            ]
        } else if self.classes.is_some() {
            vec![Method::Predict, Method::DecisionFunction]
        } else {
            vec![Method::Predict]
        }
    }
    fn predict_kind(&self) -> PredictKind {
        PredictKind::classes_or_float(&self.classes)
    }
    fn width(&self, m: Method) -> Option<usize> {
        let nc = self.classes.as_ref()?.len();
        match m {
            Method::PredictProba => Some(nc),
            Method::DecisionFunction if nc > 2 => Some(if self.ovr_shape {
                nc
            } else {
                nc * (nc - 1) / 2
            }),
            _ => None,
        }
    }
    fn run(&self, x: &Matrix, m: Method) -> Result<Vec<f64>, String> {
        x.check_cols(self.f, "SVM")?;
        let mut kv = Vec::with_capacity(self.n_sv);
        let mut out = Vec::new();
        let nc = self.classes.as_ref().map_or(0, Labels::len);
        for i in 0..x.rows {
            let d = self.decisions(x.row(i), &mut kv);
            if self.classes.is_none() {
                out.push(d[0]);
                continue;
            }
            match m {
                Method::PredictProba => {
                    let (a, b) = self
                        .platt
                        .as_ref()
                        .ok_or("this SVC was fitted without probability=True")?;
                    let min_prob = 1e-7;
                    let mut r = vec![vec![0.0; nc]; nc];
                    let mut p = 0;
                    for i in 0..nc {
                        for j in i + 1..nc {
                            r[i][j] =
                                sigmoid_predict(d[p], a[p], b[p]).clamp(min_prob, 1.0 - min_prob);
                            r[j][i] = 1.0 - r[i][j];
                            p += 1;
                        }
                    }
                    // scikit-learn's libsvm couples pairs for two classes as well
                    out.extend(multiclass_probability(nc, &r));
                }
                Method::DecisionFunction if nc == 2 => out.push(-d[0]),
                Method::DecisionFunction if !self.ovr_shape => out.extend(d),
                Method::DecisionFunction => {
                    // scikit-learn's _ovr_decision_function(dec < 0, -dec, n_classes)
                    let mut votes = vec![0.0; nc];
                    let mut conf = vec![0.0; nc];
                    let mut p = 0;
                    for a in 0..nc {
                        for b in a + 1..nc {
                            conf[a] -= -d[p];
                            conf[b] += -d[p];
                            if d[p] < 0.0 {
                                votes[b] += 1.0;
                            } else {
                                votes[a] += 1.0;
                            }
                            p += 1;
                        }
                    }
                    out.extend(
                        votes
                            .iter()
                            .zip(&conf)
                            .map(|(v, c)| v + c / (3.0 * (c.abs() + 1.0))),
                    );
                }
                _ => {
                    let mut votes = vec![0usize; nc];
                    let mut p = 0;
                    for a in 0..nc {
                        for b in a + 1..nc {
                            if d[p] > 0.0 {
                                votes[a] += 1;
                            } else {
                                votes[b] += 1;
                            }
                            p += 1;
                        }
                    }
                    let mut best = 0;
                    for (c, &v) in votes.iter().enumerate() {
                        if v > votes[best] {
                            best = c;
                        }
                    }
                    out.push(best as f64);
                }
            }
        }
        Ok(out)
    }
}

/// KMeans (predict: nearest centre; transform: distances to centres).
#[derive(Debug, Clone)]
pub struct KMeans {
    centers: Vec<f64>,
    k: usize,
    f: usize,
}

impl KMeans {
    /// Builds from the estimator object.
    pub fn from_obj(o: &Obj) -> BResult<KMeans> {
        let c = o.arr("cluster_centers_")?;
        let (k, f) = c.dims2();
        if k == 0 || f == 0 {
            return Err("KMeans without clusters".into());
        }
        Ok(KMeans {
            centers: c.data,
            k,
            f,
        })
    }
}

impl Estimator for KMeans {
    fn name(&self) -> &'static str {
        "KMeans"
    }
    fn n_features(&self) -> usize {
        self.f
    }
    fn methods(&self) -> Vec<Method> {
        vec![Method::Predict, Method::Transform]
    }
    fn predict_kind(&self) -> PredictKind {
        PredictKind::Int
    }
    fn width(&self, m: Method) -> Option<usize> {
        (m == Method::Transform).then_some(self.k)
    }
    fn run(&self, x: &Matrix, m: Method) -> Result<Vec<f64>, String> {
        x.check_cols(self.f, "KMeans")?;
        let mut out = Vec::new();
        let cc: Vec<f64> = self
            .centers
            .chunks_exact(self.f)
            .map(|c| c.iter().map(|v| v * v).sum())
            .collect();
        for i in 0..x.rows {
            let row = x.row(i);
            if m == Method::Transform {
                // euclidean_distances: sqrt(max(|x|² - 2 x·c + |c|², 0))
                let xx: f64 = row.iter().map(|v| v * v).sum();
                for (c, ccj) in self.centers.chunks_exact(self.f).zip(&cc) {
                    let dot: f64 = row.iter().zip(c).map(|(a, b)| a * b).sum();
                    out.push((-2.0 * dot + xx + ccj).max(0.0).sqrt());
                }
            } else {
                let mut best = (f64::INFINITY, 0usize);
                for (j, c) in self.centers.chunks_exact(self.f).enumerate() {
                    let d: f64 = row.iter().zip(c).map(|(a, b)| (a - b) * (a - b)).sum();
                    if d < best.0 {
                        best = (d, j);
                    }
                }
                out.push(best.1 as f64);
            }
        }
        Ok(out)
    }
}

/// PCA / TruncatedSVD: a linear projection.
#[derive(Debug, Clone)]
pub struct Projection {
    components: Vec<f64>,
    k: usize,
    f: usize,
    mean_proj: Vec<f64>,
    scale: Option<Vec<f64>>,
}

impl Projection {
    /// PCA: `(X @ C.T - mean @ C.T) / sqrt(explained_variance)` when whitening.
    pub fn pca(o: &Obj) -> BResult<Projection> {
        let c = o.arr("components_")?;
        let (k, f) = c.dims2();
        let mean = o
            .opt_arr("mean_")?
            .map(|m| m.data)
            .unwrap_or_else(|| vec![0.0; f]);
        if mean.len() != f {
            return Err("PCA.mean_ does not match components_".into());
        }
        let mean_proj = (0..k)
            .map(|j| {
                mean.iter()
                    .zip(&c.data[j * f..(j + 1) * f])
                    .map(|(a, b)| a * b)
                    .sum()
            })
            .collect();
        let scale = if o.bool_or("whiten", false) {
            let ev = o.arr("explained_variance_")?.data;
            if ev.len() != k {
                return Err("PCA.explained_variance_ does not match components_".into());
            }
            Some(ev.iter().map(|v| v.sqrt().max(f64::EPSILON)).collect())
        } else {
            None
        };
        Ok(Projection {
            components: c.data,
            k,
            f,
            mean_proj,
            scale,
        })
    }

    /// TruncatedSVD: `X @ C.T`.
    pub fn svd(o: &Obj) -> BResult<Projection> {
        let c = o.arr("components_")?;
        let (k, f) = c.dims2();
        Ok(Projection {
            components: c.data,
            k,
            f,
            mean_proj: vec![0.0; k],
            scale: None,
        })
    }

    fn apply(&self, x: &Matrix) -> Result<Matrix, String> {
        x.check_cols(self.f, "projection")?;
        let mut out = Matrix::zeros(x.rows, self.k);
        for i in 0..x.rows {
            let row = x.row(i);
            for j in 0..self.k {
                let c = &self.components[j * self.f..(j + 1) * self.f];
                let mut v = row.iter().zip(c).map(|(a, b)| a * b).sum::<f64>() - self.mean_proj[j];
                if let Some(s) = &self.scale {
                    v /= s[j];
                }
                out.data[i * self.k + j] = v;
            }
        }
        Ok(out)
    }
}

impl Transform for Projection {
    fn transform(&self, x: Data) -> Result<Data, String> {
        Ok(Data::Dense(self.apply(&x.into_dense("projection")?)?))
    }
    fn n_features_in(&self) -> Option<usize> {
        Some(self.f)
    }
    fn n_features_out(&self) -> Option<usize> {
        Some(self.k)
    }
    fn name(&self) -> &'static str {
        "PCA"
    }
}

//! Tree ensembles: random forests and extra trees (averaging), gradient
//! boosting (init + learning_rate × trees, float32 inputs like its trees),
//! histogram gradient boosting (float64 inputs, its own node records) and
//! isolation forests.

use crate::data::{
    argmax, expit, softmax_rows, Estimator, Matrix, Method, PredictKind, ProbaOrRegression,
};
use crate::extract::{BResult, Labels, Obj};
use crate::tree::{leaf_proba, to_f32_rows, Tree, TreeRegressor};
use crate::value::Value;

fn sub_estimators(o: &Obj, name: &str) -> BResult<Vec<Obj>> {
    let v = o.req(name)?;
    let items = v
        .as_seq()
        .ok_or_else(|| format!("{}.{name} is {}, not a list", o.class, v.kind()))?;
    items
        .iter()
        .map(|e| Obj::from_value(e, &format!("{}.{name}[..]", o.class)))
        .collect()
}

fn trees_of(o: &Obj) -> BResult<Vec<Tree>> {
    let trees = sub_estimators(o, "estimators_")?
        .iter()
        .map(|e| Tree::from_value(&e.req("tree_")?))
        .collect::<BResult<Vec<_>>>()?;
    if trees.is_empty() {
        return Err(format!("{} has no estimators", o.class));
    }
    Ok(trees)
}

/// RandomForest / ExtraTrees (classifier or regressor).
#[derive(Debug, Clone)]
pub struct Forest {
    trees: Vec<Tree>,
    classes: Option<Labels>,
    n_features: usize,
    n_outputs: usize,
}

impl Forest {
    /// Builds a forest; `classifier` selects averaging of probabilities.
    pub fn from_obj(o: &Obj, classifier: bool) -> BResult<Forest> {
        let trees = trees_of(o)?;
        let n_features = trees[0].n_features;
        let n_outputs = trees[0].n_outputs;
        let classes = if classifier {
            Some(o.labels("classes_")?)
        } else {
            None
        };
        for t in &trees {
            if t.n_features != n_features || t.n_outputs != n_outputs {
                return Err(format!("{}: trees disagree on features/outputs", o.class));
            }
            if let Some(c) = &classes {
                if n_outputs != 1 || t.max_classes < c.len() {
                    return Err(format!(
                        "{}: multi-output forests are not supported",
                        o.class
                    ));
                }
            }
        }
        Ok(Forest {
            trees,
            classes,
            n_features,
            n_outputs,
        })
    }
}

impl Forest {
    fn head(&self) -> ProbaOrRegression<'_> {
        ProbaOrRegression {
            classes: &self.classes,
            outputs: self.n_outputs,
        }
    }
}

impl Estimator for Forest {
    fn name(&self) -> &'static str {
        if self.classes.is_some() {
            "ForestClassifier"
        } else {
            "ForestRegressor"
        }
    }
    fn n_features(&self) -> usize {
        self.n_features
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
        x.check_cols(self.n_features, "forest")?;
        let xs = to_f32_rows(x);
        let n = self.trees.len() as f64;
        match &self.classes {
            Some(c) => {
                let k = c.len();
                let mut acc = vec![0.0; x.rows * k];
                let mut p = vec![0.0; k];
                for t in &self.trees {
                    for (i, a) in acc.chunks_exact_mut(k).enumerate() {
                        let leaf = t.apply(&xs[i * x.cols..(i + 1) * x.cols]);
                        leaf_proba(t, leaf, k, &mut p);
                        a.iter_mut().zip(&p).for_each(|(a, p)| *a += p);
                    }
                }
                acc.iter_mut().for_each(|v| *v /= n);
                if m == Method::PredictProba {
                    Ok(acc)
                } else {
                    Ok(acc.chunks_exact(k).map(|r| argmax(r) as f64).collect())
                }
            }
            None => {
                let k = self.n_outputs;
                let mut acc = vec![0.0; x.rows * k];
                for t in &self.trees {
                    for (i, a) in acc.chunks_exact_mut(k).enumerate() {
                        let leaf = t.apply(&xs[i * x.cols..(i + 1) * x.cols]);
                        let v = t.node_value(leaf);
                        for (j, aj) in a.iter_mut().enumerate() {
                            *aj += v[j * t.max_classes];
                        }
                    }
                }
                acc.iter_mut().for_each(|v| *v /= n);
                Ok(acc)
            }
        }
    }
}

/// How gradient boosting turns raw scores into outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Identity,
    Logit,
    HalfLogit,
    Softmax,
    Log,
}

/// GradientBoostingClassifier / GradientBoostingRegressor.
#[derive(Debug, Clone)]
pub struct GradientBoosting {
    stages: Vec<TreeRegressor>,
    k: usize,
    init: Vec<f64>,
    lr: f64,
    link: Link,
    classes: Option<Labels>,
    n_features: usize,
    /// GradientBoostingClassifier predicts class 1 on raw ≥ 0.
    ge_zero: bool,
}

impl GradientBoosting {
    /// Builds from the estimator object.
    pub fn from_obj(o: &Obj, classifier: bool) -> BResult<GradientBoosting> {
        let est = o.req("estimators_")?;
        let arr = est
            .as_array()
            .ok_or("GradientBoosting.estimators_ is not an array")?;
        let k = match arr.shape.as_slice() {
            [_, k] => *k,
            s => return Err(format!("GradientBoosting.estimators_ has shape {s:?}")),
        };
        let stages = arr
            .objects()
            .ok_or("GradientBoosting.estimators_ is not an object array")?
            .iter()
            .map(|e| TreeRegressor::from_obj(&Obj::from_value(e, "GradientBoosting stage")?))
            .collect::<BResult<Vec<_>>>()?;
        if stages.is_empty() || k == 0 {
            return Err(format!("{} has no stages", o.class));
        }
        let n_features = stages[0].tree.n_features;
        if stages
            .iter()
            .any(|s| s.tree.n_features != n_features || s.tree.n_outputs != 1)
        {
            return Err(format!(
                "{}: stages disagree on features or have several outputs",
                o.class
            ));
        }
        let lr = o.f64("learning_rate")?;
        let loss_param = o.str_opt("loss").unwrap_or_default();
        let loss_obj = o.get("_loss").or_else(|| o.get("loss_"));
        let (loss_class, old) = match loss_obj
            .as_ref()
            .and_then(|v| Obj::from_value(v, "_loss").ok())
        {
            Some(l) => (l.class.clone(), l.qualified().contains("_gb_losses")),
            None => (String::new(), false),
        };
        let exponential = loss_param == "exponential" || loss_class.contains("Exponential");
        let classes = if classifier {
            Some(o.labels("classes_")?)
        } else {
            None
        };
        let n_classes = classes.as_ref().map_or(0, Labels::len);
        if classifier && k != if n_classes == 2 { 1 } else { n_classes } {
            return Err(format!(
                "{}: {k} trees per stage for {n_classes} classes",
                o.class
            ));
        }
        let link = match (classifier, n_classes > 2, exponential) {
            (false, _, _) => Link::Identity,
            (true, true, _) => Link::Softmax,
            (true, false, true) => Link::HalfLogit,
            (true, false, false) => Link::Logit,
        };
        // initial raw predictions
        let init_v = o.req("init_")?;
        let init = match &init_v {
            Value::Str(s) if &**s == "zero" => vec![0.0; k],
            v => {
                let e = Obj::from_value(v, "GradientBoosting.init_")?;
                match e.class.as_str() {
                    "DummyRegressor" => {
                        let c = e.arr("constant_")?;
                        if c.data.len() != k {
                            return Err("GradientBoosting init constant has the wrong size".into());
                        }
                        c.data
                    }
                    "DummyClassifier" => {
                        let strategy = e.str_opt("strategy").unwrap_or_else(|| "prior".into());
                        if strategy != "prior" {
                            return Err(format!("GradientBoosting init DummyClassifier(strategy='{strategy}') is not supported (only 'prior')"));
                        }
                        let prior = e.arr("class_prior_")?.data;
                        let eps = if old { f64::from(f32::EPSILON) } else { f64::EPSILON };
                        let clip = |p: f64| p.clamp(eps, 1.0 - eps);
                        match link {
                            Link::Softmax => {
                                let logs: Vec<f64> = prior.iter().map(|&p| clip(p).ln()).collect();
                                if old {
                                    logs
                                } else {
                                    let mean = logs.iter().sum::<f64>() / logs.len() as f64;
                                    logs.iter().map(|l| l - mean).collect()
                                }
                            }
                            _ => {
                                let p = clip(*prior.get(1).ok_or("class_prior_ too short")?);
                                let logit = (p / (1.0 - p)).ln();
                                vec![if link == Link::HalfLogit { 0.5 * logit } else { logit }]
                            }
                        }
                    }
                    other => {
                        return Err(format!(
                            "GradientBoosting with init={other} is not supported (supported: default init, 'zero')"
                        ))
                    }
                }
            }
        };
        if init.len() != k {
            return Err(format!(
                "{}: init gives {} values for {k} trees per stage",
                o.class,
                init.len()
            ));
        }
        Ok(GradientBoosting {
            stages,
            k,
            init,
            lr,
            link,
            classes,
            n_features,
            ge_zero: true,
        })
    }

    fn raw(&self, x: &Matrix) -> Vec<f64> {
        let xs = to_f32_rows(x);
        let k = self.k;
        let mut raw: Vec<f64> = (0..x.rows)
            .flat_map(|_| self.init.iter().copied())
            .collect();
        let mut col = vec![0.0; x.rows];
        for stage in self.stages.chunks_exact(k) {
            for (j, tree) in stage.iter().enumerate() {
                col.iter_mut()
                    .enumerate()
                    .for_each(|(i, c)| *c = raw[i * k + j]);
                tree.add_predictions(&xs, x.cols, self.lr, &mut col);
                col.iter()
                    .enumerate()
                    .for_each(|(i, c)| raw[i * k + j] = *c);
            }
        }
        raw
    }
}

fn raw_to_output(
    raw: Vec<f64>,
    k: usize,
    link: Link,
    classes: &Option<Labels>,
    m: Method,
    ge_zero: bool,
) -> Result<Vec<f64>, String> {
    match (classes, m) {
        (None, _) => Ok(match link {
            Link::Log => raw.into_iter().map(f64::exp).collect(),
            _ => raw,
        }),
        (Some(_), Method::DecisionFunction) => Ok(raw),
        (Some(_), Method::Predict) => Ok(if k == 1 {
            raw.iter()
                .map(|&r| {
                    if (ge_zero && r >= 0.0) || r > 0.0 {
                        1.0
                    } else {
                        0.0
                    }
                })
                .collect()
        } else {
            raw.chunks_exact(k).map(|r| argmax(r) as f64).collect()
        }),
        (Some(_), Method::PredictProba) => Ok(if k == 1 {
            raw.iter()
                .flat_map(|&r| {
                    let p = if link == Link::HalfLogit {
                        expit(2.0 * r)
                    } else {
                        expit(r)
                    };
                    [1.0 - p, p]
                })
                .collect()
        } else {
            let mut p = raw;
            softmax_rows(&mut p, k);
            p
        }),
        (Some(_), other) => Err(format!("boosting classifiers have no {}", other.as_str())),
    }
}

impl Estimator for GradientBoosting {
    fn name(&self) -> &'static str {
        "GradientBoosting"
    }
    fn n_features(&self) -> usize {
        self.n_features
    }
    fn methods(&self) -> Vec<Method> {
        if self.classes.is_some() {
            vec![
                Method::Predict,
                Method::PredictProba,
                Method::DecisionFunction,
            ]
        } else {
            vec![Method::Predict]
        }
    }
    fn predict_kind(&self) -> PredictKind {
        PredictKind::classes_or_float(&self.classes)
    }
    fn width(&self, m: Method) -> Option<usize> {
        match (&self.classes, m) {
            (Some(c), Method::PredictProba) => Some(c.len()),
            (Some(_), Method::DecisionFunction) if self.k > 1 => Some(self.k),
            _ => None,
        }
    }
    fn run(&self, x: &Matrix, m: Method) -> Result<Vec<f64>, String> {
        x.check_cols(self.n_features, "gradient boosting")?;
        let raw = self.raw(x);
        raw_to_output(raw, self.k, self.link, &self.classes, m, self.ge_zero)
    }
}

/// One node of a [`HistTree`], packed so that a step touches one cache line.
#[derive(Debug, Clone, Copy)]
struct HistNode {
    /// Split threshold, or the leaf value for leaves.
    threshold: f64,
    feature: u32,
    left: u32,
    right: u32,
    /// Index into `left_bitsets` for categorical splits, else `NO_CAT`.
    cat: u32,
    missing_left: bool,
    leaf: bool,
}

const NO_CAT: u32 = u32::MAX;

/// One HistGradientBoosting tree (`TreePredictor.nodes`).
#[derive(Debug, Clone)]
struct HistTree {
    nodes: Vec<HistNode>,
    /// `raw_left_cat_bitsets`: 8 × u32 per bitset.
    left_bitsets: Vec<[u32; 8]>,
}

/// Bitsets of 256 categories, as scikit-learn's `_bitset.pyx`.
fn in_bitset(b: &[u32; 8], x: f64) -> bool {
    // the value is cast to uint8 (X_BINNED_DTYPE) first; larger codes are not categories
    if !(0.0..256.0).contains(&x) {
        return false;
    }
    let v = x as usize;
    (b[v / 32] >> (v % 32)) & 1 == 1
}

fn bitsets(v: &Value, what: &str) -> BResult<Vec<[u32; 8]>> {
    let a = v
        .as_array()
        .ok_or_else(|| format!("{what} is not an array"))?;
    let data = a.to_i64()?;
    if data.len() % 8 != 0 {
        return Err(format!("{what} does not hold 8 words per bitset"));
    }
    Ok(data
        .chunks_exact(8)
        .map(|c| {
            let mut b = [0u32; 8];
            for (o, v) in b.iter_mut().zip(c) {
                *o = *v as u32;
            }
            b
        })
        .collect())
}

impl HistTree {
    fn from_value(v: &Value, n_features: usize) -> BResult<HistTree> {
        let o = Obj::from_value(v, "TreePredictor")?;
        let nodes = o.req("nodes")?;
        let nodes = nodes
            .as_array()
            .ok_or("TreePredictor.nodes is not an array")?;
        let n = nodes.len();
        if n == 0 {
            return Err("TreePredictor without nodes".into());
        }
        let is_cat = nodes
            .field_i64("is_categorical")
            .unwrap_or_else(|_| vec![0; n]);
        let left_bitsets = match o.get("raw_left_cat_bitsets") {
            Some(v) if is_cat.iter().any(|&c| c != 0) => {
                bitsets(&v, "TreePredictor.raw_left_cat_bitsets")?
            }
            _ => Vec::new(),
        };
        let bitset_idx = if is_cat.iter().any(|&c| c != 0) {
            nodes.field_i64("bitset_idx")?
        } else {
            vec![0; n]
        };
        let mut cat = Vec::with_capacity(n);
        for i in 0..n {
            cat.push(if is_cat[i] != 0 {
                let b = usize::try_from(bitset_idx[i])
                    .ok()
                    .filter(|&b| b < left_bitsets.len() && b < NO_CAT as usize);
                Some(
                    b.ok_or_else(|| format!("TreePredictor node {i} has an invalid bitset index"))?,
                )
            } else {
                None
            });
        }
        let leaf = nodes.field_i64("is_leaf")?;
        let left = nodes.field_i64("left")?;
        let right = nodes.field_i64("right")?;
        let feature = nodes.field_i64("feature_idx")?;
        let value = nodes.field_f64("value")?;
        let threshold = nodes.field_f64("num_threshold")?;
        let missing_left = nodes.field_i64("missing_go_to_left")?;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            if leaf[i] != 0 {
                out.push(HistNode {
                    threshold: value[i],
                    feature: 0,
                    left: 0,
                    right: 0,
                    cat: NO_CAT,
                    missing_left: false,
                    leaf: true,
                });
                continue;
            }
            let ok = |c: i64| {
                usize::try_from(c)
                    .ok()
                    .filter(|&c| c > i && c < n)
                    .and_then(|c| u32::try_from(c).ok())
            };
            let (Some(l), Some(r)) = (ok(left[i]), ok(right[i])) else {
                return Err(format!("TreePredictor node {i} has invalid children"));
            };
            let f = usize::try_from(feature[i])
                .ok()
                .filter(|&f| f < n_features)
                .and_then(|f| u32::try_from(f).ok());
            let f = f.ok_or_else(|| {
                format!("TreePredictor node {i} splits on feature {}", feature[i])
            })?;
            out.push(HistNode {
                threshold: threshold[i],
                feature: f,
                left: l,
                right: r,
                cat: cat[i].map_or(NO_CAT, |b| b as u32),
                missing_left: missing_left[i] != 0,
                leaf: false,
            });
        }
        Ok(HistTree {
            nodes: out,
            left_bitsets,
        })
    }

    #[inline]
    fn predict(&self, row: &[f64], known: &[Option<[u32; 8]>]) -> f64 {
        let mut node = &self.nodes[0];
        while !node.leaf {
            let f = node.feature as usize;
            let x = row[f];
            let go_left = if node.cat == NO_CAT {
                // NaN compares false: it takes the missing-value branch
                x <= node.threshold || (x.is_nan() && node.missing_left)
            } else if x.is_nan() || x < 0.0 {
                node.missing_left
            } else if in_bitset(&self.left_bitsets[node.cat as usize], x) {
                true
            } else if known
                .get(f)
                .and_then(Option::as_ref)
                .is_some_and(|k| in_bitset(k, x))
            {
                false
            } else {
                // unknown categories are treated as missing
                node.missing_left
            };
            node = &self.nodes[if go_left { node.left } else { node.right } as usize];
        }
        node.threshold
    }
}

/// HistGradientBoostingClassifier / HistGradientBoostingRegressor.
#[derive(Debug, Clone)]
pub struct HistGradientBoosting {
    iterations: Vec<Vec<HistTree>>,
    k: usize,
    baseline: Vec<f64>,
    link: Link,
    classes: Option<Labels>,
    n_features: usize,
    /// Known categories per (transformed) feature, for categorical features.
    known: Vec<Option<[u32; 8]>>,
}

impl HistGradientBoosting {
    /// Builds from the estimator object.
    pub fn from_obj(o: &Obj, classifier: bool) -> BResult<HistGradientBoosting> {
        // A `_preprocessor` (categorical features, scikit-learn >= 1.4) runs
        // as a pipeline step before this estimator; see Pipeline::from_steps.
        let n_features = o
            .n_features_in()
            .ok_or("HistGradientBoosting lacks n_features_in_")?;
        let k = o.usize("n_trees_per_iteration_")?;
        let baseline = o.arr("_baseline_prediction")?.data;
        if baseline.len() != k || k == 0 {
            return Err(
                "HistGradientBoosting baseline does not match n_trees_per_iteration_".into(),
            );
        }
        let preds = o
            .req("_predictors")?
            .as_seq()
            .ok_or("_predictors is not a list")?;
        let mut iterations = Vec::with_capacity(preds.len());
        for it in preds {
            let trees = it
                .as_seq()
                .ok_or("_predictors item is not a list")?
                .iter()
                .map(|t| HistTree::from_value(t, n_features))
                .collect::<BResult<Vec<_>>>()?;
            if trees.len() != k {
                return Err("HistGradientBoosting iteration with the wrong number of trees".into());
            }
            iterations.push(trees);
        }
        let loss = o
            .get("_loss")
            .and_then(|l| Obj::from_value(&l, "_loss").ok())
            .map(|l| l.class)
            .unwrap_or_default();
        let mut known = vec![None; n_features];
        if let Some(bm) = o.get("_bin_mapper").filter(|v| !v.is_none()) {
            let bm = Obj::from_value(&bm, "_bin_mapper")?;
            if let Some(is_cat) = bm.opt_arr("is_categorical_")? {
                let thresholds = bm
                    .get("bin_thresholds_")
                    .and_then(|v| v.as_seq())
                    .unwrap_or_default();
                for (f, c) in is_cat.data.iter().enumerate().take(n_features) {
                    if *c != 0.0 {
                        let cats = thresholds
                            .get(f)
                            .map(crate::extract::value_arr)
                            .transpose()?
                            .map(|a| a.data)
                            .unwrap_or_default();
                        let mut b = [0u32; 8];
                        for v in cats {
                            if (0.0..256.0).contains(&v) {
                                let v = v as usize;
                                b[v / 32] |= 1 << (v % 32);
                            }
                        }
                        known[f] = Some(b);
                    }
                }
            }
        }
        let classes = if classifier {
            Some(o.labels("classes_")?)
        } else {
            None
        };
        if let Some(c) = &classes {
            if k != if c.len() == 2 { 1 } else { c.len() } {
                return Err(format!(
                    "{}: {k} trees per iteration for {} classes",
                    o.class,
                    c.len()
                ));
            }
        }
        let link = match loss.as_str() {
            "HalfBinomialLoss" => Link::Logit,
            "HalfMultinomialLoss" => Link::Softmax,
            "HalfPoissonLoss" | "HalfGammaLoss" | "HalfTweedieLoss" | "HalfTweedieLossIdentity" => {
                Link::Log
            }
            "HalfSquaredError" | "AbsoluteError" | "PinballLoss" | "" if !classifier => {
                Link::Identity
            }
            _ if classifier => {
                if k > 1 {
                    Link::Softmax
                } else {
                    Link::Logit
                }
            }
            other => {
                return Err(format!(
                    "HistGradientBoosting loss {other} is not supported"
                ))
            }
        };
        Ok(HistGradientBoosting {
            iterations,
            k,
            baseline,
            link,
            classes,
            n_features,
            known,
        })
    }

    fn raw(&self, x: &Matrix) -> Vec<f64> {
        let k = self.k;
        let mut raw: Vec<f64> = (0..x.rows * k).map(|i| self.baseline[i % k]).collect();
        // trees outside, rows inside (in blocks): a tree's nodes stay in
        // cache while the block's rows walk it, as scikit-learn does
        const BLOCK: usize = 128;
        for start in (0..x.rows).step_by(BLOCK) {
            let end = (start + BLOCK).min(x.rows);
            for it in &self.iterations {
                for (j, t) in it.iter().enumerate() {
                    for i in start..end {
                        raw[i * k + j] += t.predict(x.row(i), &self.known);
                    }
                }
            }
        }
        raw
    }
}

impl Estimator for HistGradientBoosting {
    fn name(&self) -> &'static str {
        "HistGradientBoosting"
    }
    fn n_features(&self) -> usize {
        self.n_features
    }
    fn methods(&self) -> Vec<Method> {
        if self.classes.is_some() {
            vec![
                Method::Predict,
                Method::PredictProba,
                Method::DecisionFunction,
            ]
        } else {
            vec![Method::Predict]
        }
    }
    fn predict_kind(&self) -> PredictKind {
        PredictKind::classes_or_float(&self.classes)
    }
    fn width(&self, m: Method) -> Option<usize> {
        match (&self.classes, m) {
            (Some(c), Method::PredictProba) => Some(c.len()),
            (Some(_), Method::DecisionFunction) if self.k > 1 => Some(self.k),
            _ => None,
        }
    }
    fn run(&self, x: &Matrix, m: Method) -> Result<Vec<f64>, String> {
        x.check_cols(self.n_features, "hist gradient boosting")?;
        let raw = self.raw(x);
        raw_to_output(raw, self.k, self.link, &self.classes, m, false)
    }
}

/// `_average_path_length` of scikit-learn's isolation forest.
fn average_path_length(n: f64) -> f64 {
    if n <= 1.0 {
        0.0
    } else if n <= 2.0 {
        1.0
    } else {
        2.0 * ((n - 1.0).ln() + 0.577_215_664_901_532_9) - 2.0 * (n - 1.0) / n
    }
}

/// IsolationForest.
#[derive(Debug, Clone)]
pub struct IsolationForest {
    trees: Vec<(Tree, Vec<usize>, Vec<f64>)>,
    max_samples: f64,
    offset: f64,
    n_features: usize,
}

impl IsolationForest {
    /// Builds from the estimator object.
    pub fn from_obj(o: &Obj) -> BResult<IsolationForest> {
        let trees = trees_of(o)?;
        let n_features = o
            .n_features_in()
            .ok_or("IsolationForest lacks n_features_in_")?;
        let feats = o
            .req("estimators_features_")?
            .as_seq()
            .ok_or("estimators_features_ is not a list")?;
        if feats.len() != trees.len() {
            return Err("IsolationForest: estimators_features_ does not match estimators_".into());
        }
        let mut out = Vec::with_capacity(trees.len());
        for (t, f) in trees.into_iter().zip(feats) {
            let idx = crate::extract::value_arr(&f)?
                .data
                .iter()
                .map(|&v| {
                    if v >= 0.0 && (v as usize) < n_features {
                        Some(v as usize)
                    } else {
                        None
                    }
                })
                .collect::<Option<Vec<usize>>>()
                .ok_or("IsolationForest feature index out of range")?;
            if idx.len() != t.n_features {
                return Err("IsolationForest tree features do not match its feature subset".into());
            }
            let depths = t.node_depths();
            let extra: Vec<f64> = depths
                .iter()
                .zip(&t.n_node_samples)
                .map(|(d, &n)| d + average_path_length(n) - 1.0)
                .collect();
            out.push((t, idx, extra));
        }
        let max_samples = o
            .get("_max_samples")
            .or_else(|| o.get("max_samples_"))
            .and_then(|v| v.as_f64())
            .ok_or("IsolationForest lacks max_samples_")?;
        Ok(IsolationForest {
            trees: out,
            max_samples,
            offset: o.f64("offset_")?,
            n_features,
        })
    }

    fn score_samples(&self, x: &Matrix) -> Vec<f64> {
        let mut depths = vec![0.0; x.rows];
        let xs = to_f32_rows(x);
        let mut sub = Vec::new();
        for (t, idx, extra) in &self.trees {
            for (i, d) in depths.iter_mut().enumerate() {
                let row = &xs[i * x.cols..(i + 1) * x.cols];
                sub.clear();
                sub.extend(idx.iter().map(|&j| row[j]));
                let leaf = t.apply(&sub);
                *d += extra[leaf];
            }
        }
        let denom = self.trees.len() as f64 * average_path_length(self.max_samples);
        depths
            .iter()
            .map(|&d| {
                let r = if denom != 0.0 { d / denom } else { 1.0 };
                -(2f64.powf(-r))
            })
            .collect()
    }
}

impl Estimator for IsolationForest {
    fn name(&self) -> &'static str {
        "IsolationForest"
    }
    fn n_features(&self) -> usize {
        self.n_features
    }
    fn methods(&self) -> Vec<Method> {
        vec![
            Method::Predict,
            Method::DecisionFunction,
            Method::ScoreSamples,
        ]
    }
    fn predict_kind(&self) -> PredictKind {
        PredictKind::Int
    }
    fn width(&self, _: Method) -> Option<usize> {
        None
    }
    fn run(&self, x: &Matrix, m: Method) -> Result<Vec<f64>, String> {
        x.check_cols(self.n_features, "isolation forest")?;
        let s = self.score_samples(x);
        Ok(match m {
            Method::ScoreSamples => s,
            Method::DecisionFunction => s.iter().map(|v| v - self.offset).collect(),
            _ => s
                .iter()
                .map(|v| if v - self.offset < 0.0 { -1.0 } else { 1.0 })
                .collect(),
        })
    }
}

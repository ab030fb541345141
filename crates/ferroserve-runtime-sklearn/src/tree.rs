//! scikit-learn's `sklearn.tree._tree.Tree` and the single-tree estimators.
//!
//! Like scikit-learn, inputs are cast to float32 before they are compared
//! with the (float64) thresholds: `X` is validated with `dtype=np.float32`
//! in `DecisionTree*.predict`, so a float64 value one ulp above a threshold
//! may still go left. NaN follows `missing_go_to_left` (scikit-learn ≥ 1.3;
//! older trees send NaN right, as their `<=` comparison does).

use crate::data::{argmax, Estimator, Matrix, Method, PredictKind};
use crate::extract::{BResult, Labels, Obj};
use crate::value::Value;

/// A fitted tree structure.
#[derive(Debug, Clone)]
pub struct Tree {
    /// Left child per node (-1 for leaves).
    pub left: Vec<i64>,
    /// Right child per node.
    pub right: Vec<i64>,
    /// Split feature per node.
    pub feature: Vec<usize>,
    /// Split threshold per node.
    pub threshold: Vec<f64>,
    /// Whether NaN goes left, per node.
    pub missing_left: Vec<bool>,
    /// Training samples reaching each node.
    pub n_node_samples: Vec<f64>,
    /// `value` array: node × outputs × classes.
    pub value: Vec<f64>,
    /// Outputs.
    pub n_outputs: usize,
    /// Largest class count over outputs (1 for regression).
    pub max_classes: usize,
    /// Features the tree was fitted on.
    pub n_features: usize,
}

impl Tree {
    /// Reads a `Tree` object (pickle or skops).
    pub fn from_value(v: &Value) -> BResult<Tree> {
        let o = Obj::from_value(v, "tree_")?;
        if o.class != "Tree" {
            return Err(format!(
                "tree_ is a {}, expected sklearn.tree._tree.Tree",
                o.class
            ));
        }
        let args = o.args();
        let n_features = args
            .first()
            .and_then(Value::as_i64)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or("Tree without n_features")?;
        let n_outputs = args
            .get(2)
            .and_then(Value::as_i64)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or("Tree without n_outputs")?;
        let nodes = o.req("nodes")?;
        let nodes = nodes.as_array().ok_or("Tree.nodes is not an array")?;
        let node_count = o.usize("node_count").unwrap_or(nodes.len());
        if nodes.len() != node_count || node_count == 0 {
            return Err(format!(
                "Tree has {} nodes, node_count says {node_count}",
                nodes.len()
            ));
        }
        let left = nodes.field_i64("left_child")?;
        let right = nodes.field_i64("right_child")?;
        let feature = nodes.field_i64("feature")?;
        let threshold = nodes.field_f64("threshold")?;
        let n_node_samples = nodes.field_f64("n_node_samples")?;
        let missing_left = if nodes.has_field("missing_go_to_left") {
            nodes
                .field_i64("missing_go_to_left")?
                .into_iter()
                .map(|v| v != 0)
                .collect()
        } else {
            vec![false; node_count]
        };
        let values = o.arr("values")?;
        let max_classes = match values.shape.as_slice() {
            [n, outs, c] if *n == node_count && *outs == n_outputs && *c > 0 && n_outputs > 0 => *c,
            s => {
                return Err(format!(
                    "Tree.values has shape {s:?}, expected ({node_count}, {n_outputs}, C)"
                ))
            }
        };
        let mut feat = Vec::with_capacity(node_count);
        for i in 0..node_count {
            let (l, r) = (left[i], right[i]);
            if l < 0 {
                feat.push(0);
                continue;
            }
            // children must exist and lie after their parent (no cycles)
            let ok = |c: i64| usize::try_from(c).is_ok_and(|c| c > i && c < node_count);
            if !ok(l) || !ok(r) {
                return Err(format!("Tree node {i} has invalid children ({l}, {r})"));
            }
            let f = usize::try_from(feature[i]).ok().filter(|&f| f < n_features);
            feat.push(f.ok_or_else(|| format!("Tree node {i} splits on feature {}", feature[i]))?);
        }
        Ok(Tree {
            left,
            right,
            feature: feat,
            threshold,
            missing_left,
            n_node_samples,
            value: values.data,
            n_outputs,
            max_classes,
            n_features,
        })
    }

    /// The leaf `row` lands in (`row` already as float32 values).
    pub fn apply(&self, row: &[f64]) -> usize {
        let mut n = 0usize;
        while self.left[n] >= 0 {
            let x = row[self.feature[n]];
            let go_left = if x.is_nan() {
                self.missing_left[n]
            } else {
                x <= self.threshold[n]
            };
            n = if go_left {
                self.left[n] as usize
            } else {
                self.right[n] as usize
            };
        }
        n
    }

    /// Depth of every node (root = 1, as `compute_node_depths`).
    pub fn node_depths(&self) -> Vec<f64> {
        let mut d = vec![0.0; self.left.len()];
        d[0] = 1.0;
        for i in 0..self.left.len() {
            if self.left[i] >= 0 {
                d[self.left[i] as usize] = d[i] + 1.0;
                d[self.right[i] as usize] = d[i] + 1.0;
            }
        }
        d
    }

    /// The node's value block (outputs × classes).
    pub fn node_value(&self, node: usize) -> &[f64] {
        let w = self.n_outputs * self.max_classes;
        &self.value[node * w..(node + 1) * w]
    }
}

/// `X` as the tree sees it: float32-rounded values.
pub fn to_f32_rows(x: &Matrix) -> Vec<f64> {
    x.data.iter().map(|&v| f64::from(v as f32)).collect()
}

/// A tree's class probabilities for one leaf (single output), normalised.
pub fn leaf_proba(t: &Tree, leaf: usize, n_classes: usize, out: &mut [f64]) {
    let v = &t.node_value(leaf)[..n_classes];
    let s: f64 = v.iter().sum();
    let s = if s == 0.0 { 1.0 } else { s };
    for (o, x) in out.iter_mut().zip(v) {
        *o = x / s;
    }
}

/// DecisionTreeClassifier / ExtraTreeClassifier.
#[derive(Debug, Clone)]
pub struct TreeClassifier {
    tree: Tree,
    classes: Labels,
}

impl TreeClassifier {
    /// Builds from the estimator object.
    pub fn from_obj(o: &Obj) -> BResult<TreeClassifier> {
        let tree = Tree::from_value(&o.req("tree_")?)?;
        let classes = o.labels("classes_")?;
        if tree.n_outputs != 1 {
            return Err(format!(
                "{}: multi-output classification trees are not supported",
                o.class
            ));
        }
        if classes.len() > tree.max_classes {
            return Err(format!(
                "{}: {} classes but tree values hold {}",
                o.class,
                classes.len(),
                tree.max_classes
            ));
        }
        Ok(TreeClassifier { tree, classes })
    }
}

impl Estimator for TreeClassifier {
    fn name(&self) -> &'static str {
        "DecisionTreeClassifier"
    }
    fn n_features(&self) -> usize {
        self.tree.n_features
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
        x.check_cols(self.tree.n_features, "decision tree")?;
        let k = self.classes.len();
        let xs = to_f32_rows(x);
        let mut p = vec![0.0; x.rows * k];
        for (i, out) in p.chunks_exact_mut(k).enumerate() {
            let leaf = self.tree.apply(&xs[i * x.cols..(i + 1) * x.cols]);
            leaf_proba(&self.tree, leaf, k, out);
        }
        match m {
            Method::PredictProba => Ok(p),
            _ => Ok(p.chunks_exact(k).map(|r| argmax(r) as f64).collect()),
        }
    }
}

/// DecisionTreeRegressor / ExtraTreeRegressor.
#[derive(Debug, Clone)]
pub struct TreeRegressor {
    /// The tree.
    pub tree: Tree,
}

impl TreeRegressor {
    /// Builds from the estimator object.
    pub fn from_obj(o: &Obj) -> BResult<TreeRegressor> {
        Ok(TreeRegressor {
            tree: Tree::from_value(&o.req("tree_")?)?,
        })
    }

    /// Adds `scale * prediction` of every row to `out` (n × outputs), rows
    /// already float32-rounded.
    pub fn add_predictions(&self, xs: &[f64], cols: usize, scale: f64, out: &mut [f64]) {
        let k = self.tree.n_outputs;
        for (i, o) in out.chunks_exact_mut(k).enumerate() {
            let leaf = self.tree.apply(&xs[i * cols..(i + 1) * cols]);
            let v = self.tree.node_value(leaf);
            for (j, oj) in o.iter_mut().enumerate() {
                *oj += scale * v[j * self.tree.max_classes];
            }
        }
    }
}

impl Estimator for TreeRegressor {
    fn name(&self) -> &'static str {
        "DecisionTreeRegressor"
    }
    fn n_features(&self) -> usize {
        self.tree.n_features
    }
    fn methods(&self) -> Vec<Method> {
        vec![Method::Predict]
    }
    fn width(&self, _: Method) -> Option<usize> {
        (self.tree.n_outputs > 1).then_some(self.tree.n_outputs)
    }
    fn run(&self, x: &Matrix, _: Method) -> Result<Vec<f64>, String> {
        x.check_cols(self.tree.n_features, "decision tree")?;
        let xs = to_f32_rows(x);
        let mut out = vec![0.0; x.rows * self.tree.n_outputs];
        let k = self.tree.n_outputs;
        for (i, o) in out.chunks_exact_mut(k).enumerate() {
            let leaf = self.tree.apply(&xs[i * x.cols..(i + 1) * x.cols]);
            let v = self.tree.node_value(leaf);
            for (j, oj) in o.iter_mut().enumerate() {
                *oj = v[j * self.tree.max_classes];
            }
        }
        Ok(out)
    }
}

//! The trees, checked and flattened into contiguous arrays, and their
//! evaluation on rows of `f64` features.
//!
//! Decisions follow LightGBM's `Tree::NumericalDecision`,
//! `Tree::CategoricalDecision` and `Tree::Predict` (linear leaves included)
//! exactly; see the comments on [`Node`] for how each node's missing-value
//! handling is folded into flags at load time.

use crate::parse::RawTree;

/// `decision_type` bit: categorical split.
const DT_CATEGORICAL: i64 = 1;
/// `decision_type` bit: missing values go left.
const DT_DEFAULT_LEFT: i64 = 2;
/// `decision_type` bits 2–3: missing type (0 none, 1 zero, 2 NaN).
const DT_MISSING_SHIFT: i64 = 2;
const MISSING_ZERO: i64 = 1;
const MISSING_NAN: i64 = 2;

/// Node flag: categorical split (bitset lookup).
const F_CATEGORICAL: u32 = 1;
/// Node flag: where a NaN feature value goes (already resolved per missing type).
const F_NAN_LEFT: u32 = 2;
/// Node flag: missing type Zero: a 0.0 value takes the default direction.
const F_ZERO_MISSING: u32 = 4;
/// Node flag: the default direction is left.
const F_DEFAULT_LEFT: u32 = 8;
/// Categorical nodes keep their bitset slot above this shift.
const CAT_SHIFT: u32 = 8;
/// Rows walked through a tree together.
const LANES: usize = 4;
/// Largest tree depth accepted (LightGBM trees are far shallower; this only
/// bounds malformed files).
const MAX_DEPTH: usize = 10_000;

/// One split. Children `>= 0` index [`Forest::nodes`]; children `< 0` are
/// `!leaf` with `leaf` indexing [`Forest::leaf_values`].
///
/// Numerical nodes: LightGBM first maps NaN to 0.0 unless the missing type
/// is NaN, then sends "missing" values (NaN for type NaN, |x| ≤ 1e-35 for
/// type Zero) the default way, then compares `x <= threshold`. Inputs are
/// already rounded to 0.0 when |x| ≤ 1e-35 (as LightGBM's predictor does),
/// so this reduces to: NaN → `F_NAN_LEFT` (type None: `0.0 <= threshold`;
/// types Zero and NaN: the default direction); 0.0 with type Zero → default
/// direction; else `x <= threshold`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Node {
    threshold: f64,
    /// Left then right child (indexed by "goes right").
    children: [i32; 2],
    feature: u32,
    flags: u32,
}

/// A tree's root and kind.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TreeRef {
    /// Root node, or `!leaf` for a single-leaf tree.
    root: i32,
    /// Whether the leaves hold linear models.
    linear: bool,
}

/// Every tree of a model in flat arrays.
#[derive(Debug, Clone, Default)]
pub(crate) struct Forest {
    nodes: Vec<Node>,
    leaf_values: Vec<f64>,
    trees: Vec<TreeRef>,
    /// Categorical bitsets: `(first word, word count)` per slot.
    cat_ranges: Vec<(u32, u32)>,
    cat_words: Vec<u32>,
    /// Linear leaves (indexed by global leaf; empty when no tree is linear).
    leaf_const: Vec<f64>,
    /// `linear_start[leaf]..linear_start[leaf + 1]` indexes the two arrays below.
    linear_start: Vec<u32>,
    linear_feature: Vec<u32>,
    linear_coeff: Vec<f64>,
}

impl Forest {
    /// Checks `trees` against `num_features` and flattens them. Errors name
    /// the tree and what is wrong.
    pub(crate) fn build(trees: &[RawTree], num_features: usize) -> Result<Forest, String> {
        let mut f = Forest::default();
        let any_linear = trees.iter().any(|t| t.is_linear);
        if any_linear {
            f.linear_start.push(0);
        }
        for t in trees {
            f.add_tree(t, num_features, any_linear)
                .map_err(|e| format!("tree {}: {e}", t.index))?;
        }
        for len in [
            f.nodes.len(),
            f.leaf_values.len(),
            f.cat_words.len(),
            f.linear_feature.len(),
        ] {
            if i32::try_from(len).is_err() {
                return Err("the model is too large (more than 2^31 nodes or leaves)".into());
            }
        }
        Ok(f)
    }

    /// Number of trees.
    pub(crate) fn len(&self) -> usize {
        self.trees.len()
    }

    fn add_tree(
        &mut self,
        t: &RawTree,
        num_features: usize,
        any_linear: bool,
    ) -> Result<(), String> {
        let leaf_base = self.leaf_values.len();
        let node_base = self.nodes.len();
        let leaf_ref = |leaf: usize| -> Result<i32, String> {
            i32::try_from(leaf_base + leaf)
                .map(|g| !g)
                .map_err(|_| "too many leaves".to_string())
        };
        let root = if t.num_leaves > 1 {
            i32::try_from(node_base).map_err(|_| "too many nodes")?
        } else {
            leaf_ref(0)?
        };

        // Categorical bitsets of this tree.
        let cat_slot_base = self.cat_ranges.len();
        if t.num_cat > 0 {
            let b = &t.cat_boundaries;
            if b.first() != Some(&0) {
                return Err("cat_boundaries must start at 0".into());
            }
            for w in b.windows(2) {
                if w[1] < w[0] {
                    return Err("cat_boundaries must not decrease".into());
                }
                let start = self.cat_words.len() as u64 + w[0] as u64;
                let len = (w[1] - w[0]) as u64;
                let (Ok(start), Ok(len)) = (u32::try_from(start), u32::try_from(len)) else {
                    return Err("categorical bitsets are too large".into());
                };
                self.cat_ranges.push((start, len));
            }
            self.cat_words.extend_from_slice(&t.cat_threshold);
        }

        // Internal nodes.
        let internal = t.num_leaves - 1;
        let child = |c: i64| -> Result<i32, String> {
            if c >= 0 {
                let c = c as u64;
                if c >= internal as u64 {
                    return Err(format!(
                        "child node {c} does not exist ({internal} internal nodes)"
                    ));
                }
                i32::try_from(node_base as u64 + c).map_err(|_| "too many nodes".to_string())
            } else {
                let leaf = !c as u64;
                if leaf >= t.num_leaves as u64 {
                    return Err(format!(
                        "child leaf {leaf} does not exist ({} leaves)",
                        t.num_leaves
                    ));
                }
                leaf_ref(leaf as usize)
            }
        };
        for i in 0..internal {
            let feature = t.split_feature[i];
            if feature < 0 || feature as u64 >= num_features as u64 {
                return Err(format!("split feature {feature} is out of range (the model has {num_features} features)"));
            }
            let dt = t.decision_type[i];
            if !(-128..=127).contains(&dt) {
                return Err(format!("decision_type {dt} is out of range"));
            }
            let threshold = t.threshold[i];
            let default_left = dt & DT_DEFAULT_LEFT != 0;
            let mut flags = if default_left { F_DEFAULT_LEFT } else { 0 };
            // LightGBM only looks at the categorical bit when the tree has num_cat > 0.
            if dt & DT_CATEGORICAL != 0 && t.num_cat > 0 {
                // static_cast<int>(threshold) names the bitset
                let slot = threshold as i64;
                if threshold.is_nan() || threshold < 0.0 || slot as u64 >= t.num_cat as u64 {
                    return Err(format!(
                        "categorical split refers to bitset {threshold} of {}",
                        t.num_cat
                    ));
                }
                let global = (cat_slot_base as u64) + slot as u64;
                if global >= (1u64 << (32 - CAT_SHIFT)) {
                    return Err("too many categorical splits".into());
                }
                flags |= F_CATEGORICAL | ((global as u32) << CAT_SHIFT);
            } else {
                match (dt >> DT_MISSING_SHIFT) & 3 {
                    MISSING_ZERO => {
                        flags |= F_ZERO_MISSING;
                        if default_left {
                            flags |= F_NAN_LEFT;
                        }
                    }
                    MISSING_NAN => {
                        if default_left {
                            flags |= F_NAN_LEFT;
                        }
                    }
                    // None (and the unused value 3): NaN is compared as 0.0
                    _ => {
                        if 0.0 <= threshold {
                            flags |= F_NAN_LEFT;
                        }
                    }
                }
            }
            self.nodes.push(Node {
                threshold,
                children: [child(t.left_child[i])?, child(t.right_child[i])?],
                feature: feature as u32,
                flags,
            });
        }
        if internal > 0 {
            check_acyclic(&self.nodes[node_base..], node_base)?;
        }
        self.leaf_values.extend_from_slice(&t.leaf_value);

        // Linear leaves: the tables run over every leaf of every tree once any tree is linear.
        if any_linear {
            let mut pos = 0usize;
            for leaf in 0..t.num_leaves {
                let (c, n) = if t.is_linear {
                    let n = usize::try_from(t.leaf_num_features[leaf])
                        .map_err(|_| "negative feature count")?;
                    (t.leaf_const[leaf], n)
                } else {
                    (0.0, 0)
                };
                self.leaf_const.push(c);
                for j in pos..pos + n {
                    let feat = t.leaf_features[j];
                    if feat < 0 || feat as u64 >= num_features as u64 {
                        return Err(format!(
                            "linear leaf {leaf} uses feature {feat}, out of range"
                        ));
                    }
                    self.linear_feature.push(feat as u32);
                    self.linear_coeff.push(t.leaf_coeff[j]);
                }
                pos += n;
                let end = u32::try_from(self.linear_feature.len())
                    .map_err(|_| "too many linear terms")?;
                self.linear_start.push(end);
            }
        }
        self.trees.push(TreeRef {
            root,
            linear: t.is_linear,
        });
        Ok(())
    }

    /// Adds every tree's contribution to `out`: for `rows` rows of
    /// `num_features` features in `x`, `out[row * k + class]` receives trees
    /// `0..num_trees` in order, tree `t` going to class `t % k` (LightGBM's
    /// iteration-major layout). Summation order per output equals LightGBM's.
    pub(crate) fn accumulate(
        &self,
        x: &[f64],
        num_features: usize,
        rows: usize,
        num_trees: usize,
        k: usize,
        out: &mut [f64],
    ) {
        for (t, tree) in self.trees[..num_trees].iter().enumerate() {
            let class = t % k;
            if tree.linear {
                for r in 0..rows {
                    let row = &x[r * num_features..(r + 1) * num_features];
                    out[r * k + class] += self.linear_value(tree.root, row);
                }
            } else {
                // Walk LANES rows through the tree together: their node loads
                // are independent, so the CPU overlaps them.
                let mut r = 0;
                while r + LANES <= rows {
                    let leaves = self.leaves::<LANES>(
                        tree.root,
                        &x[r * num_features..(r + LANES) * num_features],
                        num_features,
                    );
                    for (j, leaf) in leaves.into_iter().enumerate() {
                        out[(r + j) * k + class] += self.leaf_values[leaf];
                    }
                    r += LANES;
                }
                for r in r..rows {
                    let row = &x[r * num_features..(r + 1) * num_features];
                    out[r * k + class] += self.leaf_values[self.leaf(tree.root, row)];
                }
            }
        }
    }

    /// Walks one tree for `L` consecutive rows of `x` at once.
    #[inline]
    fn leaves<const L: usize>(&self, root: i32, x: &[f64], num_features: usize) -> [usize; L] {
        let mut n = [root; L];
        loop {
            let mut active = false;
            for (j, nj) in n.iter_mut().enumerate() {
                if *nj >= 0 {
                    let node = &self.nodes[*nj as usize];
                    let v = x[j * num_features + node.feature as usize];
                    *nj = node.children[usize::from(!self.goes_left(node, v))];
                    active = true;
                }
            }
            if !active {
                break;
            }
        }
        n.map(|v| !v as usize)
    }

    /// Walks one tree; returns the global leaf index.
    #[inline]
    fn leaf(&self, root: i32, row: &[f64]) -> usize {
        let mut n = root;
        while n >= 0 {
            let node = &self.nodes[n as usize];
            let v = row[node.feature as usize];
            // branch-free child choice: split outcomes are unpredictable
            n = node.children[usize::from(!self.goes_left(node, v))];
        }
        !n as usize
    }

    #[inline(always)]
    fn goes_left(&self, node: &Node, v: f64) -> bool {
        if node.flags & (F_CATEGORICAL | F_ZERO_MISSING) == 0 {
            (v <= node.threshold) | (v.is_nan() & (node.flags & F_NAN_LEFT != 0))
        } else if node.flags & F_CATEGORICAL == 0 {
            if v.is_nan() || v == 0.0 {
                node.flags & F_DEFAULT_LEFT != 0
            } else {
                v <= node.threshold
            }
        } else {
            self.category_left(node, v)
        }
    }

    /// `Tree::CategoricalDecision`: NaN and negatives go right; otherwise the
    /// truncated integer is looked up in the node's bitset.
    #[inline]
    fn category_left(&self, node: &Node, v: f64) -> bool {
        if v.is_nan() {
            return false;
        }
        // C++ static_cast<int>: truncation; out-of-range values become
        // INT_MIN on x86 (negative: right). Rust saturates to i32::MAX,
        // which is beyond any bitset: also right.
        let c = v as i32;
        if c < 0 {
            return false;
        }
        let (start, len) = self.cat_ranges[(node.flags >> CAT_SHIFT) as usize];
        let word = (c / 32) as u32;
        if word >= len {
            return false;
        }
        (self.cat_words[(start + word) as usize] >> (c % 32)) & 1 == 1
    }

    /// `Tree::Predict` for a linear tree: the leaf's constant plus its
    /// coefficients times the features, or the plain leaf value when any of
    /// those features is NaN.
    #[inline]
    fn linear_value(&self, root: i32, row: &[f64]) -> f64 {
        let leaf = self.leaf(root, row);
        let mut out = self.leaf_const[leaf];
        let (a, b) = (
            self.linear_start[leaf] as usize,
            self.linear_start[leaf + 1] as usize,
        );
        for j in a..b {
            let v = row[self.linear_feature[j] as usize];
            if v.is_nan() {
                return self.leaf_values[leaf];
            }
            out += self.linear_coeff[j] * v;
        }
        out
    }
}

/// Every internal node reachable from the root (local index 0) exactly once:
/// no cycles (which would loop forever) and no shared subtrees.
fn check_acyclic(nodes: &[Node], base: usize) -> Result<(), String> {
    let mut seen = vec![false; nodes.len()];
    let mut stack = vec![(0usize, 0usize)];
    while let Some((i, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err("the tree is deeper than 10000 levels".into());
        }
        if std::mem::replace(&mut seen[i], true) {
            return Err(format!(
                "node {i} is reached twice (the child links form a cycle or share a subtree)"
            ));
        }
        for c in nodes[i].children {
            if c >= 0 {
                stack.push((c as usize - base, depth + 1));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stump(dt: i64, threshold: f64) -> RawTree {
        RawTree {
            num_leaves: 2,
            split_feature: vec![0],
            threshold: vec![threshold],
            decision_type: vec![dt],
            left_child: vec![-1],
            right_child: vec![-2],
            leaf_value: vec![1.0, 2.0],
            ..RawTree::default()
        }
    }

    fn eval(f: &Forest, v: f64) -> f64 {
        let mut out = [0.0];
        f.accumulate(&[v], 1, 1, 1, 1, &mut out);
        out[0]
    }

    #[test]
    fn missing_types() {
        // type None, default right: NaN compares as 0.0
        let f = Forest::build(&[stump(0, 0.5)], 1).unwrap();
        assert_eq!(eval(&f, f64::NAN), 1.0);
        let f = Forest::build(&[stump(0, -0.5)], 1).unwrap();
        assert_eq!(eval(&f, f64::NAN), 2.0);
        let f = Forest::build(&[stump(0, 0.0)], 1).unwrap();
        assert_eq!(eval(&f, f64::NAN), 1.0);
        // type Zero (4), default left (2): zero and NaN go left even above the threshold
        let f = Forest::build(&[stump(4 | 2, -1.0)], 1).unwrap();
        assert_eq!(eval(&f, 0.0), 1.0);
        assert_eq!(eval(&f, f64::NAN), 1.0);
        assert_eq!(eval(&f, 3.0), 2.0);
        // type NaN (8), default right
        let f = Forest::build(&[stump(8, 10.0)], 1).unwrap();
        assert_eq!(eval(&f, f64::NAN), 2.0);
        assert_eq!(eval(&f, 0.0), 1.0);
        assert_eq!(eval(&f, 10.0), 1.0);
        assert_eq!(eval(&f, f64::INFINITY), 2.0);
    }

    #[test]
    fn categorical_bitsets() {
        let mut t = stump(1, 0.0);
        t.num_cat = 1;
        t.cat_boundaries = vec![0, 2];
        t.cat_threshold = vec![0b1010, 1]; // categories 1, 3, 32
        let f = Forest::build(&[t], 1).unwrap();
        for (v, want) in [
            (1.0, 1.0),
            (3.0, 1.0),
            (32.0, 1.0),
            (2.0, 2.0),
            (0.0, 2.0),
            (-1.0, 2.0),
            (f64::NAN, 2.0),
            (1e10, 2.0),
            (64.0, 2.0),
            (1.7, 1.0),
            (f64::INFINITY, 2.0),
        ] {
            assert_eq!(eval(&f, v), want, "category {v}");
        }
    }

    #[test]
    fn malformed_trees_are_rejected() {
        let mut t = stump(0, 0.0);
        t.split_feature = vec![3];
        assert!(Forest::build(&[t], 1).unwrap_err().contains("out of range"));
        let mut t = stump(0, 0.0);
        t.left_child = vec![0]; // points at itself
        assert!(Forest::build(std::slice::from_ref(&t), 1)
            .unwrap_err()
            .contains("twice"));
        t.left_child = vec![5];
        assert!(Forest::build(std::slice::from_ref(&t), 1)
            .unwrap_err()
            .contains("does not exist"));
        t.left_child = vec![-3];
        assert!(Forest::build(&[t], 1)
            .unwrap_err()
            .contains("does not exist"));
        let mut t = RawTree {
            num_leaves: 3,
            split_feature: vec![0, 0],
            threshold: vec![0.0, 0.0],
            decision_type: vec![0, 0],
            left_child: vec![1, 0],
            right_child: vec![-1, -2],
            leaf_value: vec![0.0; 3],
            ..RawTree::default()
        };
        assert!(Forest::build(std::slice::from_ref(&t), 1)
            .unwrap_err()
            .contains("twice"));
        t.left_child = vec![1, -3];
        assert!(Forest::build(&[t], 1).is_ok());
    }
}

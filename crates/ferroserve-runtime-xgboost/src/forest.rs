//! Tree ensembles (gbtree and dart boosters) flattened for fast evaluation.
//!
//! Every tree is re-laid out breadth-first into one contiguous node array
//! with the two children of a split stored side by side, so a step down the
//! tree is `left + go_right`. A node is 16 bytes: feature, threshold or leaf
//! value, left child, and flags (default direction, categorical split, leaf,
//! and the index of a category set or of a leaf's value vector).
//!
//! Rows are evaluated in blocks: each block is copied into a buffer with one
//! extra column holding +inf, and every leaf "splits" on that column with
//! itself as right child (`left = self - 1`), so a step from a leaf stays
//! put. All rows of a block then walk a tree in lock step, `depth` branch-free
//! steps each, which lets the CPU overlap the rows' memory loads. Very deep
//! trees are walked row by row instead. Evaluation follows XGBoost's CPU predictor:
//! features and thresholds are `f32`, `x < threshold` goes left, a missing
//! value follows the split's default direction, and each tree's leaf value
//! is added to the row's `f32` margin in tree order (times the tree's weight
//! for dart), so sums round exactly as XGBoost's do.

use std::collections::VecDeque;

use crate::value::Value;

/// `info` bit: a missing value goes left.
const DEFAULT_LEFT: u32 = 1;
/// `info` bit: categorical split (`info >> PAYLOAD` is the category set).
const CATEGORICAL: u32 = 2;
/// `info` bit: leaf (`info >> PAYLOAD` is the offset of a vector leaf's values).
const IS_LEAF: u32 = 4;
/// Shift of the payload in `info`.
const PAYLOAD: u32 = 3;
/// Rows evaluated together.
const BLOCK: usize = 128;
/// Trees deeper than this are walked row by row, not in lock step.
const LOCKSTEP_MAX_DEPTH: u32 = 12;
/// Categories at or above this are invalid in XGBoost (2^24, the last
/// integer an `f32` holds exactly); such values go left.
const MAX_CATEGORY: f32 = 16_777_216.0;

/// One flattened tree node.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
struct Node {
    /// Split feature; for a leaf, the +inf padding column.
    feature: u32,
    /// Split threshold, or the leaf value of a scalar tree.
    value: f32,
    /// Index of the left child (the right one follows it); for a leaf, its
    /// own index − 1 (wrapping), so that stepping right stays on the leaf.
    left: u32,
    /// [`DEFAULT_LEFT`] | [`CATEGORICAL`] | [`IS_LEAF`] | payload << [`PAYLOAD`].
    info: u32,
}

/// The categories that send a value right at one categorical split.
#[derive(Debug, Clone, Copy)]
enum CatSet {
    /// Bit `c` of `words[offset..offset + len]` (bit `c % 32` of word `c / 32`).
    Bits { offset: u32, len: u32 },
    /// A sorted run `list[offset..offset + len]`, for sparse high categories.
    Sorted { offset: u32, len: u32 },
}

/// Per-tree facts.
#[derive(Debug, Clone, Copy)]
struct TreeMeta {
    root: u32,
    /// Output the tree adds to (scalar trees).
    group: u32,
    /// Dart weight (1 for gbtree).
    weight: f32,
    /// True when leaves hold one value per output (multi_output_tree).
    vector_leaf: bool,
    /// Depth of the deepest leaf.
    depth: u32,
}

/// A tree ensemble ready to evaluate.
#[derive(Debug, Clone)]
pub(crate) struct Forest {
    nodes: Vec<Node>,
    trees: Vec<TreeMeta>,
    leaf_vectors: Vec<f32>,
    cat_sets: Vec<CatSet>,
    cat_words: Vec<u32>,
    cat_list: Vec<u32>,
    has_categorical: bool,
    num_features: usize,
    num_outputs: usize,
    max_depth: usize,
}

/// What [`Forest::build`] needs to know besides the trees.
pub(crate) struct ForestSpec<'a> {
    pub trees: &'a [Value],
    pub tree_info: Vec<i64>,
    pub weights: Option<Vec<f32>>,
    pub num_features: usize,
    pub num_outputs: usize,
}

fn field<'v>(tree: &'v Value, key: &str) -> Result<&'v Value, String> {
    tree.get(key)
        .ok_or_else(|| format!("missing field '{key}'"))
}

fn ints(tree: &Value, key: &str, n: usize) -> Result<Vec<i64>, String> {
    let v = field(tree, key)?
        .to_i64_vec()
        .ok_or_else(|| format!("'{key}' is not an array of integers"))?;
    if v.len() != n {
        return Err(format!("'{key}' has {} entries, num_nodes is {n}", v.len()));
    }
    Ok(v)
}

fn floats(tree: &Value, key: &str) -> Result<Vec<f32>, String> {
    field(tree, key)?
        .to_f32_vec()
        .ok_or_else(|| format!("'{key}' is not an array of numbers"))
}

/// An integer-valued string or integer field of `tree_param`.
fn param_int(param: &Value, key: &str) -> Result<Option<i64>, String> {
    match param.get(key) {
        None => Ok(None),
        Some(Value::Str(s)) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| format!("tree_param.{key} '{s}' is not an integer")),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| format!("tree_param.{key} is {}", v.kind())),
    }
}

impl Forest {
    /// Flattens and validates the trees of a gbtree/dart model.
    pub(crate) fn build(spec: ForestSpec<'_>) -> Result<Forest, String> {
        let n_trees = spec.trees.len();
        if spec.tree_info.len() != n_trees {
            return Err(format!(
                "tree_info has {} entries for {n_trees} trees",
                spec.tree_info.len()
            ));
        }
        let mut weights = spec.weights;
        if let Some(w) = &mut weights {
            // Trees past the end of weight_drop have weight 1 (XGBoost pads so).
            if w.len() > n_trees {
                return Err(format!(
                    "weight_drop has {} entries for {n_trees} trees",
                    w.len()
                ));
            }
            w.resize(n_trees, 1.0);
        }
        let mut forest = Forest {
            nodes: Vec::new(),
            trees: Vec::with_capacity(n_trees),
            leaf_vectors: Vec::new(),
            cat_sets: Vec::new(),
            cat_words: Vec::new(),
            cat_list: Vec::new(),
            has_categorical: false,
            num_features: spec.num_features,
            num_outputs: spec.num_outputs,
            max_depth: 0,
        };
        for (i, tree) in spec.trees.iter().enumerate() {
            let group = spec.tree_info[i];
            let weight = weights.as_ref().map_or(1.0, |w| w[i]);
            forest
                .add_tree(tree, group, weight)
                .map_err(|e| format!("tree {i}: {e}"))?;
        }
        if forest.nodes.len() >= (u32::MAX as usize) {
            return Err("too many tree nodes".into());
        }
        forest.check_layout()?;
        Ok(forest)
    }

    fn add_tree(&mut self, tree: &Value, group: i64, weight: f32) -> Result<(), String> {
        let param = field(tree, "tree_param")?;
        let n = param_int(param, "num_nodes")?.ok_or("missing tree_param.num_nodes")?;
        let n = usize::try_from(n)
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| format!("invalid num_nodes {n}"))?;
        let leaf_size = param_int(param, "size_leaf_vector")?.unwrap_or(0);
        let vector_leaf = leaf_size > 1;
        if vector_leaf && leaf_size as usize != self.num_outputs {
            return Err(format!(
                "leaves hold {leaf_size} values, the model has {} outputs",
                self.num_outputs
            ));
        }
        if !vector_leaf && !(0..self.num_outputs as i64).contains(&group) {
            return Err(format!(
                "tree_info {group} is not an output of a {}-output model",
                self.num_outputs
            ));
        }
        let lefts = ints(tree, "left_children", n)?;
        let rights = ints(tree, "right_children", n)?;
        let features = ints(tree, "split_indices", n)?;
        let default_left = ints(tree, "default_left", n)?;
        let conds = floats(tree, "split_conditions")?;
        if conds.len() != n {
            return Err(format!(
                "'split_conditions' has {} entries, num_nodes is {n}",
                conds.len()
            ));
        }
        let cats = self.categorical_splits(tree, n)?;

        // Leaf values of vector-leaf trees: XGBoost ≥ 3.2 writes
        // `leaf_weights` (indexed by the leaf's right_children entry); older
        // versions keep them in `base_weights`, num_targets per node.
        let leaf_weights = if vector_leaf {
            match tree.get("leaf_weights") {
                Some(_) => Some((true, floats(tree, "leaf_weights")?)),
                None => {
                    let w = floats(tree, "base_weights")?;
                    if w.len() != n * leaf_size as usize {
                        return Err(format!(
                            "'base_weights' has {} entries, expected {}",
                            w.len(),
                            n * leaf_size as usize
                        ));
                    }
                    Some((false, w))
                }
            }
        } else {
            None
        };

        let base = self.nodes.len();
        let root = u32::try_from(base).map_err(|_| "too many tree nodes")?;
        self.nodes.push(PLACEHOLDER);
        let mut tree_depth = 0usize;
        let mut seen = vec![false; n];
        // (source node, destination slot, depth)
        let mut queue = VecDeque::from([(0usize, base, 0usize)]);
        seen[0] = true;
        while let Some((src, dst, depth)) = queue.pop_front() {
            tree_depth = tree_depth.max(depth);
            let left = lefts[src];
            let pad = self.num_features as u32;
            let self_minus_one = (dst as u32).wrapping_sub(1);
            let node = if left == -1 {
                match &leaf_weights {
                    None => Node {
                        feature: pad,
                        value: conds[src],
                        left: self_minus_one,
                        info: IS_LEAF,
                    },
                    Some((indexed, w)) => {
                        let k = leaf_size as usize;
                        let start = if *indexed {
                            usize::try_from(rights[src])
                                .ok()
                                .and_then(|i| i.checked_mul(k))
                                .ok_or_else(|| format!("node {src}: bad leaf index"))?
                        } else {
                            src * k
                        };
                        let vals = w
                            .get(start..start.saturating_add(k))
                            .ok_or_else(|| format!("node {src}: leaf values out of range"))?;
                        let offset = u32::try_from(self.leaf_vectors.len())
                            .ok()
                            .filter(|&o| o < 1 << (32 - PAYLOAD))
                            .ok_or("too many leaf values")?;
                        self.leaf_vectors.extend_from_slice(vals);
                        Node {
                            feature: pad,
                            value: 0.0,
                            left: self_minus_one,
                            info: IS_LEAF | (offset << PAYLOAD),
                        }
                    }
                }
            } else {
                let right = rights[src];
                let child = |c: i64| -> Result<usize, String> {
                    usize::try_from(c)
                        .ok()
                        .filter(|&c| c < n)
                        .ok_or_else(|| format!("node {src}: child {c} out of range"))
                };
                let (l, r) = (child(left)?, child(right)?);
                if l == r || seen[l] || seen[r] {
                    return Err(format!(
                        "node {src}: children {l}/{r} are shared (not a tree)"
                    ));
                }
                seen[l] = true;
                seen[r] = true;
                let feature = u32::try_from(features[src])
                    .ok()
                    .filter(|&f| (f as usize) < self.num_features)
                    .ok_or_else(|| {
                        format!(
                            "node {src} splits on feature {} but the model has {} features",
                            features[src], self.num_features
                        )
                    })?;
                let slot = self.nodes.len();
                let slot32 = u32::try_from(slot).map_err(|_| "too many tree nodes")?;
                self.nodes.extend([PLACEHOLDER; 2]);
                queue.push_back((l, slot, depth + 1));
                queue.push_back((r, slot + 1, depth + 1));
                let mut info = if default_left[src] != 0 {
                    DEFAULT_LEFT
                } else {
                    0
                };
                if let Some(set) = cats.get(src).copied().flatten() {
                    info |= CATEGORICAL | (set << PAYLOAD);
                    self.has_categorical = true;
                }
                Node {
                    feature,
                    value: conds[src],
                    left: slot32,
                    info,
                }
            };
            self.nodes[dst] = node;
        }
        self.max_depth = self.max_depth.max(tree_depth);
        self.trees.push(TreeMeta {
            root,
            group: if vector_leaf { 0 } else { group as u32 },
            weight,
            vector_leaf,
            depth: tree_depth as u32,
        });
        Ok(())
    }

    /// Reads the categorical splits of a tree: for each node, the index of
    /// its category set in `cat_sets` (None for numerical splits).
    fn categorical_splits(&mut self, tree: &Value, n: usize) -> Result<Vec<Option<u32>>, String> {
        let Some(split_type) = tree.get("split_type") else {
            return Ok(Vec::new());
        };
        let split_type = split_type
            .to_i64_vec()
            .ok_or("'split_type' is not an array of integers")?;
        if split_type.len() != n {
            return Err(format!(
                "'split_type' has {} entries, num_nodes is {n}",
                split_type.len()
            ));
        }
        let cat_nodes = field(tree, "categories_nodes")?.to_i64_vec();
        let segments = field(tree, "categories_segments")?.to_i64_vec();
        let sizes = field(tree, "categories_sizes")?.to_i64_vec();
        let categories = field(tree, "categories")?.to_i64_vec();
        let (Some(cat_nodes), Some(segments), Some(sizes), Some(categories)) =
            (cat_nodes, segments, sizes, categories)
        else {
            return Err("categorical split fields are not integer arrays".into());
        };
        if segments.len() != cat_nodes.len() || sizes.len() != cat_nodes.len() {
            return Err(
                "categories_nodes, categories_segments and categories_sizes differ in length"
                    .into(),
            );
        }
        let mut out = vec![None; n];
        for (j, &node) in cat_nodes.iter().enumerate() {
            let node = usize::try_from(node)
                .ok()
                .filter(|&i| i < n)
                .ok_or_else(|| format!("categories_nodes entry {node} out of range"))?;
            if split_type[node] != 1 {
                continue;
            }
            let (start, len) = (segments[j], sizes[j]);
            let run = usize::try_from(start)
                .ok()
                .zip(usize::try_from(len).ok())
                .and_then(|(s, l)| categories.get(s..s.checked_add(l)?))
                .ok_or_else(|| format!("node {node}: category segment out of range"))?;
            if run.is_empty() {
                return Err(format!("node {node}: categorical split without categories"));
            }
            let mut cats: Vec<u32> = run
                .iter()
                .map(|&c| {
                    u32::try_from(c)
                        .ok()
                        .filter(|&c| (c as f32) < MAX_CATEGORY)
                        .ok_or_else(|| format!("node {node}: invalid category {c}"))
                })
                .collect::<Result<_, _>>()?;
            cats.sort_unstable();
            cats.dedup();
            out[node] = Some(self.add_cat_set(&cats)?);
        }
        // A categorical node without categories sends every valid value
        // left, as XGBoost's empty bit field does.
        for (i, &t) in split_type.iter().enumerate() {
            if t == 1 && out[i].is_none() {
                out[i] = Some(self.add_cat_set(&[])?);
            }
        }
        Ok(out)
    }

    fn add_cat_set(&mut self, sorted: &[u32]) -> Result<u32, String> {
        let max = sorted.last().copied().unwrap_or(0);
        let words = max as usize / 32 + 1;
        let set = if words <= 4 * sorted.len() + 8 {
            let offset = self.cat_words.len();
            self.cat_words.resize(offset + words, 0);
            for &c in sorted {
                self.cat_words[offset + c as usize / 32] |= 1 << (c % 32);
            }
            CatSet::Bits {
                offset: offset as u32,
                len: words as u32,
            }
        } else {
            let offset = self.cat_list.len();
            self.cat_list.extend_from_slice(sorted);
            CatSet::Sorted {
                offset: offset as u32,
                len: sorted.len() as u32,
            }
        };
        let idx = u32::try_from(self.cat_sets.len())
            .ok()
            .filter(|&i| i < (1 << (32 - PAYLOAD)))
            .ok_or("too many categorical splits")?;
        self.cat_sets.push(set);
        Ok(idx)
    }

    /// Number of trees.
    pub(crate) fn num_trees(&self) -> usize {
        self.trees.len()
    }

    /// Number of flattened nodes (reachable ones only).
    pub(crate) fn num_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Depth of the deepest leaf.
    pub(crate) fn max_depth(&self) -> usize {
        self.max_depth
    }

    /// Whether any split is categorical.
    pub(crate) fn has_categorical(&self) -> bool {
        self.has_categorical
    }

    /// True when a categorical split sends category value `x` right:
    /// XGBoost's `common::Decision` negated (invalid categories go left).
    #[inline]
    fn category_goes_right(&self, set: u32, x: f32) -> bool {
        if !(0.0..MAX_CATEGORY).contains(&x) {
            return false;
        }
        let c = x as u32;
        match self.cat_sets.get(set as usize) {
            Some(&CatSet::Bits { offset, len }) => {
                let w = c / 32;
                w < len
                    && self
                        .cat_words
                        .get((offset + w) as usize)
                        .is_some_and(|word| word >> (c % 32) & 1 == 1)
            }
            Some(&CatSet::Sorted { offset, len }) => self
                .cat_list
                .get(offset as usize..(offset + len) as usize)
                .is_some_and(|l| l.binary_search(&c).is_ok()),
            None => false,
        }
    }

    /// One step down from node `n` for feature value `x`: the next node.
    // `!(x < v)` on purpose: it is true for NaN, unlike `x >= v`.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    #[inline(always)]
    fn step<const CATS: bool>(&self, n: Node, x: f32) -> usize {
        let right = if CATS && n.info & CATEGORICAL != 0 {
            if x.is_nan() {
                n.info & DEFAULT_LEFT == 0
            } else {
                self.category_goes_right(n.info >> PAYLOAD, x)
            }
        } else {
            // NaN goes right unless the default is left.
            !(x < n.value) & !(x.is_nan() & (n.info & DEFAULT_LEFT != 0))
        };
        n.left.wrapping_add(u32::from(right)) as usize
    }

    /// [`Forest::step`] from node `i` for a padded row (`num_features + 1`
    /// values), without bounds checks: the hot loop of batch prediction.
    #[inline(always)]
    fn lockstep<const CATS: bool>(&self, i: usize, row: &[f32]) -> usize {
        debug_assert!(i < self.nodes.len() && row.len() > self.num_features);
        // SAFETY: `i` is a tree root or a value `step` returned, and
        // `check_layout` (run by `build`, the only constructor) proved that
        // every root and every `left`/`left + 1` of every node is an index
        // of `nodes`, and that every node's `feature` is at most
        // `num_features`, an index of the padded row (whose length callers
        // make `num_features + 1`; checked above in debug builds).
        let n = unsafe { *self.nodes.get_unchecked(i) };
        let x = unsafe { *row.get_unchecked(n.feature as usize) };
        self.step::<CATS>(n, x)
    }

    /// Proves the invariants [`Forest::lockstep`] relies on.
    fn check_layout(&self) -> Result<(), String> {
        let len = self.nodes.len();
        let ok_node = |n: &Node| {
            let l = n
                .left
                .wrapping_add(if n.info & IS_LEAF != 0 { 1 } else { 0 })
                as usize;
            (n.feature as usize) <= self.num_features
                && l < len
                && (n.info & IS_LEAF != 0 || l + 1 < len)
        };
        if !self.nodes.iter().all(ok_node) || self.trees.iter().any(|t| t.root as usize >= len) {
            return Err("internal error: inconsistent tree layout".into());
        }
        Ok(())
    }

    /// The leaf a row reaches in the tree rooted at `root`.
    #[inline(always)]
    fn leaf<const CATS: bool>(&self, root: u32, row: &[f32]) -> Node {
        let mut i = root as usize;
        loop {
            let n = self.nodes[i];
            if n.info & IS_LEAF != 0 {
                return n;
            }
            i = self.step::<CATS>(n, row[n.feature as usize]);
        }
    }

    /// Adds every tree's output to `margins` (`rows.len() / num_features`
    /// rows × `num_outputs`, pre-filled with the base margins). Missing
    /// values in `rows` are NaN.
    pub(crate) fn accumulate(&self, rows: &[f32], margins: &mut [f32]) {
        if self.has_categorical {
            self.accumulate_impl::<true>(rows, margins);
        } else {
            self.accumulate_impl::<false>(rows, margins);
        }
    }

    fn accumulate_impl<const CATS: bool>(&self, rows: &[f32], margins: &mut [f32]) {
        let f = self.num_features;
        let k = self.num_outputs;
        if f == 0 || k == 0 {
            return;
        }
        let n_rows = (rows.len() / f).min(margins.len() / k);
        // The block's rows, each followed by the +inf column leaves split on.
        let fp = f + 1;
        let mut buf = vec![f32::INFINITY; BLOCK.min(n_rows) * fp];
        let mut idx = [0usize; BLOCK];
        let mut start = 0;
        while start < n_rows {
            let b = BLOCK.min(n_rows - start);
            for (dst, src) in buf
                .chunks_exact_mut(fp)
                .zip(rows[start * f..].chunks_exact(f).take(b))
            {
                dst[..f].copy_from_slice(src);
            }
            let block_margins = &mut margins[start * k..(start + b) * k];
            for t in &self.trees {
                let idx = &mut idx[..b];
                if t.depth <= LOCKSTEP_MAX_DEPTH && b >= 8 {
                    idx.fill(t.root as usize);
                    for _ in 0..t.depth {
                        for (i, row) in idx.iter_mut().zip(buf.chunks_exact(fp)) {
                            *i = self.lockstep::<CATS>(*i, row);
                        }
                    }
                } else {
                    for (i, row) in idx.iter_mut().zip(buf.chunks_exact(fp)) {
                        let n = self.leaf::<CATS>(t.root, row);
                        *i = n.left.wrapping_add(1) as usize;
                    }
                }
                if t.vector_leaf {
                    for (&i, m) in idx.iter().zip(block_margins.chunks_exact_mut(k)) {
                        let off = (self.nodes[i].info >> PAYLOAD) as usize;
                        for (m, &v) in m.iter_mut().zip(&self.leaf_vectors[off..off + k]) {
                            *m += v * t.weight;
                        }
                    }
                } else {
                    let g = t.group as usize;
                    for (&i, m) in idx.iter().zip(block_margins.chunks_exact_mut(k)) {
                        m[g] += self.nodes[i].value * t.weight;
                    }
                }
            }
            start += b;
        }
    }
}

/// A slot filled in later.
const PLACEHOLDER: Node = Node {
    feature: 0,
    value: 0.0,
    left: 0,
    info: IS_LEAF,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    fn tree(s: &str) -> Value {
        json::parse(s.as_bytes()).unwrap()
    }

    const STUMP: &str = r#"{"tree_param": {"num_nodes": "3", "size_leaf_vector": "1"},
        "left_children": [1, -1, -1], "right_children": [2, -1, -1],
        "split_indices": [0, 0, 0], "split_conditions": [0.5, -1.0, 2.0],
        "default_left": [1, 0, 0]}"#;

    fn build(trees: &[Value], f: usize) -> Result<Forest, String> {
        Forest::build(ForestSpec {
            trees,
            tree_info: vec![0; trees.len()],
            weights: None,
            num_features: f,
            num_outputs: 1,
        })
    }

    #[test]
    fn stump_splits_and_missing() {
        let forest = build(&[tree(STUMP)], 1).unwrap();
        let rows = [0.0f32, 0.5, f32::NAN, 1.0];
        let mut m = [10.0f32; 4];
        forest.accumulate(&rows, &mut m);
        assert_eq!(m, [9.0, 12.0, 9.0, 12.0]);
    }

    #[test]
    fn categorical_split() {
        let t = tree(
            r#"{"tree_param": {"num_nodes": "3"},
            "left_children": [1, -1, -1], "right_children": [2, -1, -1],
            "split_indices": [0, 0, 0], "split_conditions": [0, -1.0, 2.0],
            "default_left": [0, 0, 0], "split_type": [1, 0, 0],
            "categories_nodes": [0], "categories_segments": [0], "categories_sizes": [2],
            "categories": [1, 40]}"#,
        );
        let forest = build(&[t], 1).unwrap();
        let rows = [0.0f32, 1.0, 1.7, 40.0, 41.0, -1.0, f32::NAN, 3e7];
        let mut m = [0.0f32; 8];
        forest.accumulate(&rows, &mut m);
        assert_eq!(m, [-1.0, 2.0, 2.0, 2.0, -1.0, -1.0, 2.0, -1.0]);
    }

    #[test]
    fn rejects_malformed() {
        let bad = [
            STUMP.replace("[1, -1, -1], \"right", "[3, -1, -1], \"right"),
            STUMP.replace("[2, -1, -1]", "[1, -1, -1]"),
            STUMP.replace(
                "\"split_indices\": [0, 0, 0]",
                "\"split_indices\": [5, 0, 0]",
            ),
            STUMP.replace("[0.5, -1.0, 2.0]", "[0.5, -1.0]"),
            STUMP.replace("\"3\"", "\"0\""),
        ];
        for b in bad {
            assert!(build(&[tree(&b)], 1).is_err(), "{b}");
        }
        // A cycle back to the root.
        let cyc = STUMP
            .replace("[1, -1, -1], \"right", "[1, 0, -1], \"right")
            .replace(
                "\"right_children\": [2, -1, -1]",
                "\"right_children\": [2, 2, -1]",
            );
        assert!(build(&[tree(&cyc)], 1).is_err());
    }
}

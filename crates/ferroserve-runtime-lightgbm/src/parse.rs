//! Reading the LightGBM text model format (what `Booster.save_model` and the
//! CLI write, versions v2–v4) into plain Rust values. Nothing here evaluates;
//! [`crate::forest`] checks the trees and flattens them.
//!
//! The layout, as written by `GBDT::SaveModelToString`:
//! ```text
//! tree
//! version=v4
//! num_class=1
//! num_tree_per_iteration=1
//! label_index=0
//! max_feature_idx=9
//! objective=binary sigmoid:1
//! [average_output]
//! feature_names=a b c …
//! feature_infos=…
//! tree_sizes=…
//!
//! Tree=0
//! num_leaves=…            (key=value lines, one block per tree, blank line after)
//! …
//! end of trees
//!
//! feature_importances: …
//! parameters:
//! [boosting: gbdt]
//! end of parameters
//!
//! pandas_categorical:[…]   (appended by the Python package)
//! ```

use std::collections::HashMap;
use std::str::FromStr;

/// A model file's header and trees, as written.
#[derive(Debug, Clone)]
pub(crate) struct ParsedModel {
    /// `version=` value (`v2`, `v3`, `v4`), if present.
    pub version: Option<String>,
    /// `num_class=`.
    pub num_class: usize,
    /// `num_tree_per_iteration=` (defaults to `num_class`).
    pub num_tree_per_iteration: usize,
    /// `max_feature_idx + 1`.
    pub num_features: usize,
    /// The `objective=` value, if present (absent for custom objectives).
    pub objective: Option<String>,
    /// True when the `average_output` flag line is present (random forest).
    pub average_output: bool,
    /// `feature_names=`, one per feature.
    pub feature_names: Vec<String>,
    /// The trees in file order.
    pub trees: Vec<RawTree>,
    /// `[key: value]` lines of the `parameters:` section.
    pub parameters: Vec<(String, String)>,
    /// The JSON of the trailing `pandas_categorical:` line, unless `null`.
    pub pandas_categorical: Option<serde_json::Value>,
    /// Why the `pandas_categorical:` line was ignored, if it could not be read.
    pub pandas_categorical_error: Option<String>,
}

/// One `Tree=N` block, fields as written (arrays already split and parsed).
#[derive(Debug, Clone, Default)]
pub(crate) struct RawTree {
    /// Index in the file (the `N` of `Tree=N` is not trusted; this is the position).
    pub index: usize,
    pub num_leaves: usize,
    pub num_cat: usize,
    pub split_feature: Vec<i64>,
    pub threshold: Vec<f64>,
    pub decision_type: Vec<i64>,
    pub left_child: Vec<i64>,
    pub right_child: Vec<i64>,
    pub leaf_value: Vec<f64>,
    pub cat_boundaries: Vec<i64>,
    pub cat_threshold: Vec<u32>,
    pub is_linear: bool,
    pub leaf_const: Vec<f64>,
    /// Per leaf: how many features its linear model uses.
    pub leaf_num_features: Vec<i64>,
    pub leaf_features: Vec<i64>,
    pub leaf_coeff: Vec<f64>,
}

/// True when `head` (the first bytes of a file) looks like a LightGBM text
/// model: its first line is `tree`.
pub fn looks_like_lightgbm(head: &[u8]) -> bool {
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    head.starts_with(b"tree\n") || head.starts_with(b"tree\r\n")
}

/// Parses a whole model file. Errors are plain messages; the caller adds the
/// file name.
pub(crate) fn parse_model(text: &str) -> Result<ParsedModel, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .peekable();

    // Header: everything up to the first `Tree=` line (or `end of trees`).
    let first = lines.by_ref().find(|l| !l.trim().is_empty());
    if first.map(str::trim) != Some("tree") {
        return Err("not a LightGBM text model: the first line is not `tree` \
                    (save the model with Booster.save_model, not dump_model or pickle)"
            .into());
    }
    let mut header: HashMap<&str, &str> = HashMap::new();
    let mut flags: Vec<&str> = Vec::new();
    while let Some(&line) = lines.peek() {
        if line.starts_with("Tree=") || line == "end of trees" {
            break;
        }
        lines.next();
        if line.is_empty() {
            continue;
        }
        match line.split_once('=') {
            Some((k, v)) => {
                header.insert(k, v);
            }
            None => flags.push(line),
        }
    }

    let version = header.get("version").map(|v| v.to_string());
    let num_class = header_usize(&header, "num_class")?;
    if num_class == 0 {
        return Err("num_class must be at least 1".into());
    }
    let num_tree_per_iteration = match header.get("num_tree_per_iteration") {
        Some(_) => header_usize(&header, "num_tree_per_iteration")?,
        None => num_class,
    };
    if num_tree_per_iteration == 0 {
        return Err("num_tree_per_iteration must be at least 1".into());
    }
    let max_feature_idx: i64 = header
        .get("max_feature_idx")
        .ok_or("the header has no max_feature_idx line")?
        .trim()
        .parse()
        .map_err(|_| "max_feature_idx is not an integer")?;
    if max_feature_idx < 0 {
        return Err(format!(
            "max_feature_idx is {max_feature_idx}: the model has no features"
        ));
    }
    let num_features = usize::try_from(max_feature_idx)
        .ok()
        .and_then(|m| m.checked_add(1))
        .ok_or("max_feature_idx is too large")?;
    let feature_names: Vec<String> = header
        .get("feature_names")
        .ok_or("the header has no feature_names line")?
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if feature_names.len() != num_features {
        return Err(format!(
            "feature_names lists {} names but max_feature_idx says {num_features} features",
            feature_names.len()
        ));
    }
    let objective = header.get("objective").map(|s| s.trim().to_string());
    let average_output = flags.contains(&"average_output");
    let expected_trees = header
        .get("tree_sizes")
        .map(|s| s.split(' ').filter(|t| !t.is_empty()).count());

    // Trees.
    let mut trees = Vec::new();
    let mut saw_end = false;
    while let Some(line) = lines.next() {
        if line == "end of trees" {
            saw_end = true;
            break;
        }
        if line.is_empty() {
            continue;
        }
        if !line.starts_with("Tree=") {
            return Err(format!(
                "expected `Tree=N` or `end of trees` after tree {}, found `{}`",
                trees.len(),
                snippet(line)
            ));
        }
        let mut fields: HashMap<&str, &str> = HashMap::new();
        while let Some(&l) = lines.peek() {
            if l.is_empty() || l.starts_with("Tree=") || l == "end of trees" {
                break;
            }
            lines.next();
            let (k, v) = l.split_once('=').ok_or_else(|| {
                format!(
                    "tree {}: line `{}` is not key=value",
                    trees.len(),
                    snippet(l)
                )
            })?;
            fields.insert(k, v);
        }
        let index = trees.len();
        trees.push(parse_tree(index, &fields).map_err(|e| format!("tree {index}: {e}"))?);
    }
    if !saw_end {
        return Err(format!(
            "the file ends after {} trees without `end of trees` (truncated?)",
            trees.len()
        ));
    }
    if let Some(n) = expected_trees {
        if n != trees.len() {
            return Err(format!(
                "tree_sizes lists {n} trees but the file holds {}",
                trees.len()
            ));
        }
    }

    // Trailer: parameters and the pandas_categorical line.
    let mut parameters = Vec::new();
    let mut in_params = false;
    let mut pandas_line = None;
    for line in lines {
        if line == "parameters:" {
            in_params = true;
        } else if line == "end of parameters" {
            in_params = false;
        } else if in_params {
            if let Some(inner) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                if let Some((k, v)) = inner.split_once(": ") {
                    parameters.push((k.to_string(), v.to_string()));
                }
            }
        } else if let Some(rest) = line.strip_prefix("pandas_categorical:") {
            pandas_line = Some(rest);
        }
    }
    let (pandas_categorical, pandas_categorical_error) = match pandas_line {
        None => (None, None),
        Some(json) => match serde_json::from_str::<serde_json::Value>(json.trim()) {
            Ok(serde_json::Value::Null) => (None, None),
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(e.to_string())),
        },
    };

    Ok(ParsedModel {
        version,
        num_class,
        num_tree_per_iteration,
        num_features,
        objective,
        average_output,
        feature_names,
        trees,
        parameters,
        pandas_categorical,
        pandas_categorical_error,
    })
}

fn parse_tree(index: usize, f: &HashMap<&str, &str>) -> Result<RawTree, String> {
    let num_leaves: usize = scalar(f, "num_leaves")?;
    if num_leaves == 0 {
        return Err("num_leaves is 0".into());
    }
    let num_cat: usize = scalar(f, "num_cat")?;
    let is_linear = match f.get("is_linear") {
        Some(v) => {
            v.trim()
                .parse::<i64>()
                .map_err(|_| "is_linear is not an integer")?
                != 0
        }
        None => false,
    };
    let mut t = RawTree {
        index,
        num_leaves,
        num_cat,
        is_linear,
        leaf_value: array(f, "leaf_value", num_leaves)?,
        ..RawTree::default()
    };
    if num_leaves <= 1 && !is_linear {
        return Ok(t);
    }
    let n = num_leaves - 1;
    t.left_child = array(f, "left_child", n)?;
    t.right_child = array(f, "right_child", n)?;
    t.split_feature = array(f, "split_feature", n)?;
    t.threshold = array(f, "threshold", n)?;
    t.decision_type = match f.get("decision_type") {
        Some(_) => array(f, "decision_type", n)?,
        None => vec![0; n],
    };
    if is_linear {
        t.leaf_const = match f.get("leaf_const") {
            Some(_) => array(f, "leaf_const", num_leaves)?,
            None => vec![0.0; num_leaves],
        };
        if f.contains_key("num_features") {
            t.leaf_num_features = array(f, "num_features", num_leaves)?;
            let mut total: usize = 0;
            for &c in &t.leaf_num_features {
                let c = usize::try_from(c)
                    .map_err(|_| format!("num_features has a negative count {c}"))?;
                total = total.checked_add(c).ok_or("num_features overflows")?;
            }
            if total > 0 {
                if !f.contains_key("leaf_features") || !f.contains_key("leaf_coeff") {
                    return Err(
                        "a linear tree with num_features > 0 needs leaf_features and leaf_coeff"
                            .into(),
                    );
                }
                t.leaf_features = array(f, "leaf_features", total)?;
                t.leaf_coeff = array(f, "leaf_coeff", total)?;
            }
        } else {
            t.leaf_num_features = vec![0; num_leaves];
        }
    }
    if num_cat > 0 {
        let bounds_len = num_cat.checked_add(1).ok_or("num_cat is too large")?;
        t.cat_boundaries = array(f, "cat_boundaries", bounds_len)?;
        let words = t.cat_boundaries.last().copied().unwrap_or(0);
        let words =
            usize::try_from(words).map_err(|_| format!("cat_boundaries ends with {words}"))?;
        t.cat_threshold = array(f, "cat_threshold", words)?;
    }
    Ok(t)
}

/// A required scalar field of a tree.
fn scalar<T: FromStr>(f: &HashMap<&str, &str>, key: &str) -> Result<T, String> {
    let v = f.get(key).ok_or_else(|| format!("missing field {key}"))?;
    v.trim()
        .parse()
        .map_err(|_| format!("field {key} = `{}` is not a valid number", snippet(v)))
}

/// A required array field with exactly `n` space-separated values. As in
/// LightGBM, an expected length of 0 ignores the field.
fn array<T: FromStr>(f: &HashMap<&str, &str>, key: &str, n: usize) -> Result<Vec<T>, String> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let v = f.get(key).ok_or_else(|| format!("missing field {key}"))?;
    let mut out = Vec::with_capacity(n.min(v.len() / 2 + 1));
    for tok in v.split(' ').filter(|t| !t.is_empty()) {
        if out.len() == n {
            return Err(format!("field {key} has more than the expected {n} values"));
        }
        out.push(
            tok.parse()
                .map_err(|_| format!("field {key}: `{}` is not a valid number", snippet(tok)))?,
        );
    }
    if out.len() != n {
        return Err(format!(
            "field {key} has {} values, expected {n}",
            out.len()
        ));
    }
    Ok(out)
}

fn header_usize(h: &HashMap<&str, &str>, key: &str) -> Result<usize, String> {
    let v = h
        .get(key)
        .ok_or_else(|| format!("the header has no {key} line"))?;
    v.trim()
        .parse()
        .map_err(|_| format!("{key} = `{}` is not a non-negative integer", snippet(v)))
}

/// The start of a line, for error messages.
fn snippet(s: &str) -> String {
    const MAX: usize = 60;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: &str = "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\n\
max_feature_idx=1\nobjective=regression\nfeature_names=a b\nfeature_infos=none none\ntree_sizes=10\n\n\
Tree=0\nnum_leaves=2\nnum_cat=0\nsplit_feature=1\nsplit_gain=1\nthreshold=0.5\ndecision_type=2\n\
left_child=-1\nright_child=-2\nleaf_value=1 2\nleaf_weight=1 1\nleaf_count=1 1\ninternal_value=0\n\
internal_weight=0\ninternal_count=2\nis_linear=0\nshrinkage=1\n\n\nend of trees\n\n\
feature_importances:\nb=1\n\nparameters:\n[boosting: gbdt]\n[linear_tree: 0]\nend of parameters\n\n\
pandas_categorical:[[\"x\", \"y\"]]\n";

    #[test]
    fn parses_a_small_model() {
        let m = parse_model(TINY).unwrap();
        assert_eq!(m.num_features, 2);
        assert_eq!(m.feature_names, vec!["a", "b"]);
        assert_eq!(m.trees.len(), 1);
        assert_eq!(m.trees[0].threshold, vec![0.5]);
        assert_eq!(m.trees[0].leaf_value, vec![1.0, 2.0]);
        assert_eq!(
            m.parameters[0],
            ("boosting".to_string(), "gbdt".to_string())
        );
        assert_eq!(m.pandas_categorical, Some(serde_json::json!([["x", "y"]])));
        assert!(looks_like_lightgbm(TINY.as_bytes()));
        assert!(!looks_like_lightgbm(b"{\"learner\":"));
    }

    #[test]
    fn crlf_is_accepted() {
        let m = parse_model(&TINY.replace('\n', "\r\n")).unwrap();
        assert_eq!(m.trees[0].leaf_value, vec![1.0, 2.0]);
    }

    #[test]
    fn wrong_counts_are_errors() {
        let bad = TINY.replace("leaf_value=1 2", "leaf_value=1");
        assert!(parse_model(&bad).unwrap_err().contains("leaf_value"));
        let bad = TINY.replace("leaf_value=1 2", "leaf_value=1 2 3");
        assert!(parse_model(&bad).unwrap_err().contains("leaf_value"));
        let bad = TINY.replace("tree_sizes=10", "tree_sizes=10 11");
        assert!(parse_model(&bad).unwrap_err().contains("tree_sizes"));
        let bad = TINY.replace("end of trees", "");
        assert!(parse_model(&bad).unwrap_err().contains("end of trees"));
    }
}

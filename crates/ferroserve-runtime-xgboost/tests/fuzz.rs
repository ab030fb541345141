//! Property and fuzz tests:
//! - random models (random tree shapes and node numbering, categorical
//!   splits, vector leaves, dart weights, gblinear) written as JSON and as
//!   UBJSON predict exactly what a naive reference evaluator predicts, on
//!   random inputs full of NaN, infinities, negative and huge values;
//! - truncated and corrupted model files give load errors, never panics.

use std::path::{Path, PathBuf};

use ferroserve_runtime_xgboost::{LoadOptions, XgboostModel};
use serde_json::{json, Value};

/// SplitMix64: a small deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn chance(&mut self, p: f32) -> bool {
        self.unit() < p
    }
    fn normal(&mut self) -> f32 {
        (0..6).map(|_| self.unit()).sum::<f32>() - 3.0
    }
}

/// One node of a generated tree, in the generator's own numbering.
#[derive(Clone)]
enum GenNode {
    Leaf(Vec<f32>),
    Split {
        feature: usize,
        threshold: f32,
        default_left: bool,
        /// Categories sending a value right, for a categorical split.
        cats: Option<Vec<i64>>,
        left: usize,
        right: usize,
    },
}

struct GenTree {
    nodes: Vec<GenNode>,
    group: usize,
}

struct GenModel {
    features: usize,
    outputs: usize,
    objective: &'static str,
    trees: Vec<GenTree>,
    vector_leaf: bool,
    weights: Option<Vec<f32>>,
    linear: Option<Vec<f32>>,
    base_score: Vec<f32>,
}

fn gen_tree(rng: &mut Rng, features: usize, leaf_len: usize, cats: bool) -> Vec<GenNode> {
    // Grow in generator order, then shuffle the numbering.
    let mut nodes: Vec<Option<GenNode>> = vec![None];
    let mut stack = vec![(0usize, 0usize)];
    let max_depth = 1 + rng.below(8) as usize;
    while let Some((id, depth)) = stack.pop() {
        if depth >= max_depth || (depth > 0 && rng.chance(0.25)) {
            let v = (0..leaf_len).map(|_| rng.normal()).collect();
            nodes[id] = Some(GenNode::Leaf(v));
            continue;
        }
        let (l, r) = (nodes.len(), nodes.len() + 1);
        nodes.push(None);
        nodes.push(None);
        let categorical = cats && rng.chance(0.3);
        nodes[id] = Some(GenNode::Split {
            feature: rng.below(features as u64) as usize,
            threshold: if rng.chance(0.2) {
                rng.below(10) as f32
            } else {
                rng.normal() * 3.0
            },
            default_left: rng.chance(0.5),
            cats: categorical.then(|| {
                let n = 1 + rng.below(6);
                (0..n)
                    .map(|_| {
                        if rng.chance(0.1) {
                            300 + rng.below(5000) as i64
                        } else {
                            rng.below(40) as i64
                        }
                    })
                    .collect()
            }),
            left: l,
            right: r,
        });
        stack.push((l, depth + 1));
        stack.push((r, depth + 1));
    }
    let nodes: Vec<GenNode> = nodes.into_iter().map(|n| n.expect("grown")).collect();
    // Random permutation keeping the root at 0.
    let mut perm: Vec<usize> = (0..nodes.len()).collect();
    for i in (2..perm.len()).rev() {
        let j = 1 + rng.below(i as u64) as usize;
        perm.swap(i, j);
    }
    let mut out = vec![GenNode::Leaf(vec![]); nodes.len()];
    for (old, node) in nodes.into_iter().enumerate() {
        out[perm[old]] = match node {
            GenNode::Split {
                feature,
                threshold,
                default_left,
                cats,
                left,
                right,
            } => GenNode::Split {
                feature,
                threshold,
                default_left,
                cats,
                left: perm[left],
                right: perm[right],
            },
            leaf => leaf,
        };
    }
    out
}

fn gen_model(rng: &mut Rng) -> GenModel {
    let features = 1 + rng.below(12) as usize;
    let (objective, outputs) = match rng.below(8) {
        0 => ("binary:logistic", 1),
        1 => ("multi:softprob", 2 + rng.below(4) as usize),
        2 => ("multi:softmax", 2 + rng.below(4) as usize),
        3 => ("count:poisson", 1),
        4 => ("reg:squarederror", 1 + rng.below(3) as usize),
        5 => ("binary:hinge", 1),
        6 => ("reg:quantileerror", 1 + rng.below(3) as usize),
        _ => ("reg:tweedie", 1),
    };
    let vector_leaf = outputs > 1 && objective.starts_with("reg:") && rng.chance(0.5);
    let linear = rng.chance(0.15);
    let n_trees = rng.below(10) as usize;
    let cats = rng.chance(0.5);
    let base_score = if rng.chance(0.5) {
        vec![0.2 + 0.6 * rng.unit()]
    } else {
        (0..outputs).map(|_| 0.2 + 0.6 * rng.unit()).collect()
    };
    let trees = if linear {
        Vec::new()
    } else {
        (0..n_trees)
            .map(|i| GenTree {
                nodes: gen_tree(rng, features, if vector_leaf { outputs } else { 1 }, cats),
                group: if vector_leaf { 0 } else { i % outputs },
            })
            .collect()
    };
    GenModel {
        features,
        outputs,
        objective,
        weights: (!linear && rng.chance(0.3)).then(|| (0..n_trees).map(|_| rng.unit()).collect()),
        linear: linear.then(|| {
            (0..(features + 1) * outputs)
                .map(|_| rng.normal())
                .collect()
        }),
        trees,
        vector_leaf,
        base_score,
    }
}

fn tree_json(t: &GenTree, vector: usize) -> Value {
    let n = t.nodes.len();
    let (mut lefts, mut rights, mut feats, mut conds, mut dl, mut st) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut cat_nodes, mut segs, mut sizes, mut cats) = (vec![], vec![], vec![], vec![]);
    let mut base_weights = vec![];
    for (i, node) in t.nodes.iter().enumerate() {
        match node {
            GenNode::Leaf(v) => {
                lefts.push(-1i64);
                rights.push(-1i64);
                feats.push(0usize);
                conds.push(if vector > 1 { 0.0 } else { v[0] });
                dl.push(0);
                st.push(0);
                base_weights.extend(v.iter().copied());
            }
            GenNode::Split {
                feature,
                threshold,
                default_left,
                cats: c,
                left,
                right,
            } => {
                lefts.push(*left as i64);
                rights.push(*right as i64);
                feats.push(*feature);
                conds.push(*threshold);
                dl.push(u8::from(*default_left));
                st.push(u8::from(c.is_some()));
                base_weights.extend(std::iter::repeat_n(0.0f32, vector.max(1)));
                if let Some(c) = c {
                    let mut c = c.clone();
                    c.sort_unstable();
                    c.dedup();
                    cat_nodes.push(i);
                    segs.push(cats.len());
                    sizes.push(c.len());
                    cats.extend(c);
                }
            }
        }
    }
    json!({
        "tree_param": {"num_nodes": n.to_string(), "size_leaf_vector": vector.max(1).to_string(),
                       "num_feature": "0", "num_deleted": "0"},
        "left_children": lefts, "right_children": rights, "parents": vec![0; n],
        "split_indices": feats, "split_conditions": conds, "default_left": dl,
        "split_type": st, "categories_nodes": cat_nodes, "categories_segments": segs,
        "categories_sizes": sizes, "categories": cats, "base_weights": base_weights,
        "loss_changes": vec![0.0; n], "sum_hessian": vec![0.0; n],
    })
}

fn model_json(m: &GenModel) -> Value {
    let booster = if let Some(w) = &m.linear {
        json!({"name": "gblinear", "model": {"weights": w}})
    } else {
        let vector = if m.vector_leaf { m.outputs } else { 1 };
        let model = json!({
            "gbtree_model_param": {"num_trees": m.trees.len().to_string()},
            "trees": m.trees.iter().map(|t| tree_json(t, vector)).collect::<Vec<_>>(),
            "tree_info": m.trees.iter().map(|t| t.group).collect::<Vec<_>>(),
        });
        match &m.weights {
            // XGBoost ≥ 3.4 writes tree weights into a gbtree model.
            Some(w) if m.trees.len() & 1 == 0 => {
                let mut model = model;
                model["weight_drop"] = json!(w);
                json!({"name": "gbtree", "model": model})
            }
            Some(w) => {
                json!({"name": "dart", "gbtree": {"name": "gbtree", "model": model}, "weight_drop": w})
            }
            None => json!({"name": "gbtree", "model": model}),
        }
    };
    let base = m
        .base_score
        .iter()
        .map(|b| format!("{b:E}"))
        .collect::<Vec<_>>()
        .join(",");
    let is_class = m.objective.starts_with("multi:");
    json!({
        "learner": {
            "attributes": {},
            "feature_names": [], "feature_types": [],
            "gradient_booster": booster,
            "learner_model_param": {
                "base_score": format!("[{base}]"),
                "num_feature": m.features.to_string(),
                "num_class": if is_class { m.outputs.to_string() } else { "0".into() },
                "num_target": if is_class { "1".into() } else { m.outputs.to_string() },
            },
            "objective": {"name": m.objective},
        },
        "version": [3, 2, 0],
    })
}

/// XGBoost-style UBJSON: 'L' lengths, typed arrays for numeric arrays.
fn ubj(v: &Value, out: &mut Vec<u8>) {
    fn len(n: usize, out: &mut Vec<u8>) {
        out.push(b'L');
        out.extend_from_slice(&(n as i64).to_be_bytes());
    }
    match v {
        Value::Null => out.push(b'Z'),
        Value::Bool(b) => out.push(if *b { b'T' } else { b'F' }),
        Value::Number(n) => match n.as_i64() {
            Some(i) => {
                out.push(b'L');
                out.extend_from_slice(&i.to_be_bytes());
            }
            None => {
                out.push(b'd');
                out.extend_from_slice(&(n.as_f64().unwrap() as f32).to_be_bytes());
            }
        },
        Value::String(s) => {
            out.push(b'S');
            len(s.len(), out);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_i64) => {
            out.extend_from_slice(b"[$l#");
            len(a.len(), out);
            for x in a {
                out.extend_from_slice(&(x.as_i64().unwrap() as i32).to_be_bytes());
            }
        }
        Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_number) => {
            out.extend_from_slice(b"[$d#");
            len(a.len(), out);
            for x in a {
                out.extend_from_slice(&(x.as_f64().unwrap() as f32).to_be_bytes());
            }
        }
        Value::Array(a) => {
            out.extend_from_slice(b"[#");
            len(a.len(), out);
            for x in a {
                ubj(x, out);
            }
        }
        Value::Object(o) => {
            out.push(b'{');
            for (k, x) in o {
                len(k.len(), out);
                out.extend_from_slice(k.as_bytes());
                ubj(x, out);
            }
            out.push(b'}');
        }
    }
}

/// The reference: a direct reading of XGBoost's predictor on the generator's tree.
fn reference_leaf<'a>(nodes: &'a [GenNode], row: &[f32]) -> &'a [f32] {
    let mut i = 0;
    loop {
        match &nodes[i] {
            GenNode::Leaf(v) => return v,
            GenNode::Split {
                feature,
                threshold,
                default_left,
                cats,
                left,
                right,
            } => {
                let x = row[*feature];
                let go_left = if x.is_nan() {
                    *default_left
                } else if let Some(c) = cats {
                    // common::Decision: invalid or absent categories go left.
                    !(0.0..16_777_216.0).contains(&x) || !c.contains(&((x as i32) as i64))
                } else {
                    x < *threshold
                };
                i = if go_left { *left } else { *right };
            }
        }
    }
}

fn reference_margins(m: &GenModel, rows: &[f32]) -> Vec<f32> {
    let k = m.outputs;
    let margin_of = |b: f32| match m.objective {
        "binary:logistic" => -(1.0f32 / b - 1.0).ln(),
        "count:poisson" | "reg:tweedie" => b.ln(),
        _ => b,
    };
    let base: Vec<f32> = if m.base_score.len() == 1 {
        vec![margin_of(m.base_score[0]); k]
    } else {
        m.base_score.iter().map(|&b| margin_of(b)).collect()
    };
    let mut out = Vec::new();
    for row in rows.chunks_exact(m.features) {
        let mut acc = base.clone();
        if let Some(w) = &m.linear {
            for (g, a) in acc.iter_mut().enumerate() {
                let mut s = w[m.features * k + g] + base[0];
                for (j, &x) in row.iter().enumerate() {
                    if !x.is_nan() {
                        s += x * w[j * k + g];
                    }
                }
                *a = s;
            }
        }
        for (t, tree) in m.trees.iter().enumerate() {
            let leaf = reference_leaf(&tree.nodes, row);
            let wt = m.weights.as_ref().map_or(1.0, |w| w[t]);
            if m.vector_leaf {
                for (a, &v) in acc.iter_mut().zip(leaf) {
                    *a += v * wt;
                }
            } else {
                acc[tree.group] += leaf[0] * wt;
            }
        }
        out.extend(acc);
    }
    out
}

fn random_rows(rng: &mut Rng, features: usize, n: usize) -> Vec<f32> {
    (0..n * features)
        .map(|_| match rng.below(12) {
            0 => f32::NAN,
            1 => f32::INFINITY,
            2 => f32::NEG_INFINITY,
            3 => -(rng.below(5) as f32),
            4 => 1e30,
            5 => 16_777_216.0,
            6 | 7 => rng.below(45) as f32,
            8 => rng.below(40) as f32 + 0.5,
            _ => rng.normal() * 3.0,
        })
        .collect()
}

#[test]
fn random_models_match_the_reference() {
    let mut rng = Rng(0x5eed);
    let opts = LoadOptions::default();
    for case in 0..400 {
        let m = gen_model(&mut rng);
        let doc = model_json(&m);
        let text = serde_json::to_vec(&doc).unwrap();
        let mut bin = Vec::new();
        ubj(&doc, &mut bin);
        let from_json = XgboostModel::from_bytes(&text, "model.json", &opts)
            .unwrap_or_else(|e| panic!("case {case}: {e}\n{}", String::from_utf8_lossy(&text)));
        let from_ubj = XgboostModel::from_bytes(&bin, "model.ubj", &opts)
            .unwrap_or_else(|e| panic!("case {case} (ubj): {e}"));
        let n_rows = 1 + rng.below(700) as usize;
        let rows = random_rows(&mut rng, m.features, n_rows);
        let want = reference_margins(&m, &rows);
        let a = from_json.predict(&rows).unwrap();
        let b = from_ubj.predict(&rows).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&a.margin),
            bits(&b.margin),
            "case {case}: JSON and UBJSON differ"
        );
        assert_eq!(
            bits(&a.output),
            bits(&b.output),
            "case {case}: JSON and UBJSON differ"
        );
        assert_eq!(a.margin.len(), want.len());
        for (i, (g, w)) in a.margin.iter().zip(&want).enumerate() {
            assert!(
                g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                "case {case} ({}), margin {i}: got {g}, want {w}",
                m.objective
            );
        }
    }
}

fn fixture_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/xgboost");
    [
        "v3_categorical_partition/model.json",
        "v3_multi_softprob/model.ubj",
        "v3_multi_output_tree/model.json",
        "v3_multi_output_tree_ubj/model.ubj",
        "v2_multi_output_tree/model.json",
        "v3_dart_binary/model.json",
        "v3_gblinear_softprob/model.json",
        "v2_binary_logistic/model.bst",
        "v1_3_reg_squarederror/model.json",
    ]
    .iter()
    .map(|f| dir.join(f))
    .collect()
}

/// Loads `bytes`; if it loads, predicts a few rows. Must never panic.
fn try_model(bytes: &[u8], name: &str, rng: &mut Rng) -> bool {
    match XgboostModel::from_bytes(bytes, name, &LoadOptions::default()) {
        Ok(m) => {
            if m.num_features() <= 4096 {
                let rows = random_rows(rng, m.num_features(), 20);
                m.predict(&rows).expect("predict on a loaded model");
            }
            true
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            false
        }
    }
}

#[test]
fn truncated_files_fail_to_load() {
    let mut rng = Rng(7);
    for path in fixture_files() {
        let bytes = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        assert!(
            try_model(&bytes, &name, &mut rng),
            "{} loads",
            path.display()
        );
        let step = (bytes.len() / 300).max(1);
        let cuts = (0..bytes.len().min(400)).chain((0..bytes.len()).step_by(step));
        for cut in cuts {
            // A JSON cut inside trailing whitespace would still be whole.
            let whole = bytes[cut..].iter().all(|b| b.is_ascii_whitespace());
            assert!(
                !try_model(&bytes[..cut], &name, &mut rng) || whole,
                "{} cut at {cut} of {} loaded",
                path.display(),
                bytes.len()
            );
        }
    }
}

#[test]
fn corrupted_files_never_panic() {
    let mut rng = Rng(99);
    for path in fixture_files() {
        let bytes = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        for _ in 0..600 {
            let mut b = bytes.clone();
            for _ in 0..1 + rng.below(6) {
                let i = rng.below(b.len() as u64) as usize;
                b[i] = match rng.below(4) {
                    0 => rng.next() as u8,
                    1 => b[i] ^ (1 << rng.below(8)),
                    2 => b"0123456789-.,[]{}\"eE"[rng.below(20) as usize],
                    _ => 0xFF,
                };
            }
            try_model(&b, &name, &mut rng);
        }
    }
}

#[test]
fn garbage_never_panics() {
    let mut rng = Rng(3);
    for i in 0..3000 {
        let n = rng.below(300) as usize;
        let mut b: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
        if i % 3 == 0 {
            b.splice(0..0, *b"{L\0\0\0\0\0\0\0\x07learner");
        } else if i % 3 == 1 {
            b.splice(0..0, *b"{\"learner\": ");
        }
        try_model(&b, "model.bst", &mut rng);
    }
}

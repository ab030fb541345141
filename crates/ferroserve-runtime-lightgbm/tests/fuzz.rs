//! Property and fuzz tests:
//! - random LightGBM models (numerical splits of every missing type,
//!   categorical bitsets, linear leaves, every objective) on random inputs
//!   full of NaN, ±inf, zeros, tiny and huge values: the runtime never panics
//!   and agrees bit for bit with a literal transcription of LightGBM's C++
//!   (`Tree::NumericalDecision`, `CategoricalDecision`, `Predict`,
//!   `ConvertOutput`) written independently here;
//! - truncated model files are load errors; randomly corrupted files load or
//!   fail cleanly, and whatever loads predicts without panicking.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ferroserve_runtime_lightgbm::{LightgbmModel, LoadOptions, Output, Rows};

/// SplitMix64: small, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

const K_ZERO: f64 = 1e-35f32 as f64;

/// Values thresholds and inputs are drawn from, so that equality, zero and
/// near-zero cases happen often.
const GRID: [f64; 14] = [
    -2.0, -1.0, -0.5, -1e-36, 0.0, 1e-36, 1e-30, 0.5, 1.0, 1.5, 2.0, 3.0, 31.0, 64.0,
];

#[derive(Clone)]
struct Tree {
    num_leaves: usize,
    split_feature: Vec<usize>,
    threshold: Vec<f64>,
    decision_type: Vec<i32>,
    left: Vec<i32>,
    right: Vec<i32>,
    leaf_value: Vec<f64>,
    cat_boundaries: Vec<usize>,
    cat_threshold: Vec<u32>,
    linear: bool,
    leaf_const: Vec<f64>,
    leaf_features: Vec<Vec<usize>>,
    leaf_coeff: Vec<Vec<f64>>,
}

fn random_tree(rng: &mut Rng, nf: usize, allow_cat: bool, linear: bool) -> Tree {
    let num_leaves = 1 + rng.below(12);
    let mut t = Tree {
        num_leaves,
        split_feature: vec![],
        threshold: vec![],
        decision_type: vec![],
        left: vec![],
        right: vec![],
        leaf_value: (0..num_leaves).map(|_| (rng.unit() - 0.5) * 4.0).collect(),
        cat_boundaries: vec![0],
        cat_threshold: vec![],
        linear,
        leaf_const: vec![],
        leaf_features: vec![],
        leaf_coeff: vec![],
    };
    // Grow like LightGBM's Tree::Split: the split leaf keeps its id on the
    // left, the new leaf (id = current leaf count) goes right.
    let mut leaf_parent: Vec<Option<(usize, bool)>> = vec![None];
    for new_leaf in 1..num_leaves {
        let leaf = rng.below(new_leaf);
        let node = t.left.len();
        if let Some((p, is_left)) = leaf_parent[leaf] {
            if is_left {
                t.left[p] = node as i32
            } else {
                t.right[p] = node as i32
            }
        }
        t.left.push(!(leaf as i32));
        t.right.push(!(new_leaf as i32));
        leaf_parent[leaf] = Some((node, true));
        leaf_parent.push(Some((node, false)));
        t.split_feature.push(rng.below(nf));
        if allow_cat && rng.below(3) == 0 {
            let words = rng.below(4);
            t.threshold.push((t.cat_boundaries.len() - 1) as f64);
            for _ in 0..words {
                t.cat_threshold.push(rng.next() as u32 & rng.next() as u32);
            }
            t.cat_boundaries.push(t.cat_threshold.len());
            t.decision_type.push(1 | (rng.below(8) as i32) << 1);
        } else {
            t.threshold.push(rng.pick(&GRID));
            t.decision_type
                .push((rng.below(3) as i32) << 2 | (rng.below(2) as i32) << 1);
        }
    }
    if linear {
        for _ in 0..num_leaves {
            t.leaf_const.push((rng.unit() - 0.5) * 2.0);
            let n = rng.below(4);
            t.leaf_features
                .push((0..n).map(|_| rng.below(nf)).collect());
            t.leaf_coeff
                .push((0..n).map(|_| (rng.unit() - 0.5) * 0.1).collect());
        }
    }
    t
}

fn join<T: std::fmt::Debug>(v: &[T]) -> String {
    v.iter()
        .map(|x| format!("{x:?}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn tree_text(t: &Tree) -> String {
    let mut s = String::new();
    let num_cat = t.cat_boundaries.len() - 1;
    let _ = writeln!(s, "num_leaves={}\nnum_cat={num_cat}", t.num_leaves);
    let _ = writeln!(s, "split_feature={}", join(&t.split_feature));
    let _ = writeln!(s, "split_gain={}", vec!["1"; t.num_leaves - 1].join(" "));
    let _ = writeln!(s, "threshold={}", join(&t.threshold));
    let _ = writeln!(s, "decision_type={}", join(&t.decision_type));
    let _ = writeln!(
        s,
        "left_child={}\nright_child={}",
        join(&t.left),
        join(&t.right)
    );
    let _ = writeln!(s, "leaf_value={}", join(&t.leaf_value));
    let _ = writeln!(s, "leaf_count={}", vec!["1"; t.num_leaves].join(" "));
    if num_cat > 0 {
        let _ = writeln!(
            s,
            "cat_boundaries={}\ncat_threshold={}",
            join(&t.cat_boundaries),
            join(&t.cat_threshold)
        );
    }
    let _ = writeln!(s, "is_linear={}", i32::from(t.linear));
    if t.linear {
        let _ = writeln!(s, "leaf_const={}", join(&t.leaf_const));
        let counts: Vec<usize> = t.leaf_features.iter().map(Vec::len).collect();
        let _ = writeln!(s, "num_features={}", join(&counts));
        let feats: Vec<String> = t.leaf_features.iter().map(|f| join(f)).collect();
        let coefs: Vec<String> = t.leaf_coeff.iter().map(|c| join(c)).collect();
        let _ = writeln!(s, "leaf_features= {} ", feats.join("  "));
        let _ = writeln!(s, "leaf_coeff= {} ", coefs.join("  "));
    }
    s.push_str("shrinkage=1\n\n");
    s
}

fn model_text(
    trees: &[Tree],
    nf: usize,
    k: usize,
    objective: Option<&str>,
    average: bool,
) -> String {
    let blocks: Vec<String> = trees
        .iter()
        .enumerate()
        .map(|(i, t)| format!("Tree={i}\n{}\n", tree_text(t)))
        .collect();
    let mut s = format!("tree\nversion=v4\nnum_class={k}\nnum_tree_per_iteration={k}\nlabel_index=0\nmax_feature_idx={}\n", nf - 1);
    if let Some(o) = objective {
        let _ = writeln!(s, "objective={o}");
    }
    if average {
        s.push_str("average_output\n");
    }
    let names: Vec<String> = (0..nf).map(|i| format!("f{i}")).collect();
    let _ = writeln!(s, "feature_names={}", names.join(" "));
    let _ = writeln!(s, "feature_infos={}", vec!["none"; nf].join(" "));
    let sizes: Vec<usize> = blocks.iter().map(String::len).collect();
    let _ = writeln!(s, "tree_sizes={}\n", join(&sizes));
    for b in &blocks {
        s.push_str(b);
    }
    s.push_str("end of trees\n\nfeature_importances:\n\nparameters:\n[boosting: gbdt]\nend of parameters\n\npandas_categorical:null\n");
    s
}

// ---- reference: a literal transcription of LightGBM's C++ ----

fn cpp_int(x: f64) -> i32 {
    // x86 cvttsd2si: out of range and NaN give INT_MIN
    if x.is_nan() || x >= 2147483648.0 || x <= -2147483649.0 {
        i32::MIN
    } else {
        x.trunc() as i32
    }
}

#[allow(clippy::manual_range_contains)] // literal transcription of the C++
fn ref_leaf(t: &Tree, x: &[f64]) -> usize {
    let num_cat = t.cat_boundaries.len() - 1;
    let mut node: i32 = 0;
    while node >= 0 {
        let i = node as usize;
        let mut fval = x[t.split_feature[i]];
        let dt = t.decision_type[i];
        let go_left = if num_cat > 0 && dt & 1 != 0 {
            if fval.is_nan() {
                false
            } else {
                let iv = cpp_int(fval);
                if iv < 0 {
                    false
                } else {
                    let cat_idx = t.threshold[i] as usize;
                    let (a, b) = (t.cat_boundaries[cat_idx], t.cat_boundaries[cat_idx + 1]);
                    let (i1, i2) = ((iv / 32) as usize, iv % 32);
                    i1 < b - a && (t.cat_threshold[a + i1] >> i2) & 1 == 1
                }
            }
        } else {
            let missing_type = (dt >> 2) & 3;
            if fval.is_nan() && missing_type != 2 {
                fval = 0.0;
            }
            if (missing_type == 1 && fval >= -K_ZERO && fval <= K_ZERO)
                || (missing_type == 2 && fval.is_nan())
            {
                dt & 2 != 0
            } else {
                fval <= t.threshold[i]
            }
        };
        node = if go_left { t.left[i] } else { t.right[i] };
    }
    !node as usize
}

fn ref_tree(t: &Tree, x: &[f64]) -> f64 {
    let leaf = if t.num_leaves > 1 { ref_leaf(t, x) } else { 0 };
    if t.linear {
        let mut out = t.leaf_const[leaf];
        for (f, c) in t.leaf_features[leaf].iter().zip(&t.leaf_coeff[leaf]) {
            if x[*f].is_nan() {
                return t.leaf_value[leaf];
            }
            out += c * x[*f];
        }
        out
    } else {
        t.leaf_value[leaf]
    }
}

fn ref_predict(
    trees: &[Tree],
    k: usize,
    objective: Option<&str>,
    average: bool,
    row: &[f64],
    raw_only: bool,
) -> Vec<f64> {
    // predictor: values with |x| <= kZeroThreshold (and not NaN) are not stored, i.e. read as 0
    let x: Vec<f64> = row
        .iter()
        .map(|&v| {
            if v.abs() > K_ZERO || v.is_nan() {
                v
            } else {
                0.0
            }
        })
        .collect();
    let iters = trees.len() / k;
    let mut out = vec![0.0; k];
    for i in 0..iters {
        for (c, o) in out.iter_mut().enumerate() {
            *o += ref_tree(&trees[i * k + c], &x);
        }
    }
    if raw_only {
        return out;
    }
    if average {
        for o in out.iter_mut() {
            *o /= iters as f64;
        }
    }
    let obj = objective.unwrap_or("custom");
    let sig = |s: &str| -> f64 {
        s.split(' ')
            .find_map(|t| t.strip_prefix("sigmoid:"))
            .unwrap()
            .parse()
            .unwrap()
    };
    match obj.split(' ').next().unwrap() {
        "binary" | "multiclassova" => {
            let s = sig(obj);
            out.iter().map(|&v| 1.0 / (1.0 + (-s * v).exp())).collect()
        }
        "poisson" | "gamma" | "tweedie" => out.iter().map(|v| v.exp()).collect(),
        "cross_entropy" => out.iter().map(|&v| 1.0 / (1.0 + (-v).exp())).collect(),
        "cross_entropy_lambda" => out.iter().map(|v| v.exp().ln_1p()).collect(),
        "regression" if obj.ends_with("sqrt") => out
            .iter()
            .map(|&v| f64::from((v > 0.0) as i32 - (v < 0.0) as i32) * v * v)
            .collect(),
        "multiclass" => {
            let mut wmax = out[0];
            for &v in &out[1..] {
                wmax = if v < wmax { wmax } else { v };
            }
            let e: Vec<f64> = out.iter().map(|v| (v - wmax).exp()).collect();
            let mut sum = 0.0;
            for v in &e {
                sum += v;
            }
            e.iter().map(|v| v / sum).collect()
        }
        _ => out,
    }
}

fn random_input(rng: &mut Rng, rows: usize, nf: usize) -> Vec<f64> {
    let special = [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        0.0,
        -0.0,
        1e-40,
        -1e-40,
        K_ZERO,
        -K_ZERO,
        1e10,
        -1e10,
        2147483648.0,
        -0.7,
        0.999,
    ];
    (0..rows * nf)
        .map(|_| match rng.below(4) {
            0 => rng.pick(&special),
            1 => rng.pick(&GRID),
            2 => rng.below(70) as f64,
            _ => (rng.unit() - 0.5) * 8.0,
        })
        .collect()
}

fn same(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

#[test]
fn random_models_match_the_reference() {
    let objectives: [(Option<&str>, usize); 12] = [
        (None, 1),
        (Some("regression"), 1),
        (Some("regression sqrt"), 1),
        (Some("huber"), 1),
        (Some("poisson"), 1),
        (Some("tweedie"), 1),
        (Some("binary sigmoid:0.7"), 1),
        (Some("cross_entropy"), 1),
        (Some("cross_entropy_lambda"), 1),
        (Some("lambdarank"), 1),
        (Some("multiclass num_class:3"), 3),
        (Some("multiclassova num_class:3 sigmoid:1.5"), 3),
    ];
    let mut rng = Rng(42);
    let mut checked = 0usize;
    for case in 0..400 {
        let nf = 1 + rng.below(6);
        let (objective, k) = rng.pick(&objectives);
        let allow_cat = rng.below(2) == 0;
        let linear = rng.below(4) == 0;
        let average = rng.below(6) == 0;
        let iters = 1 + rng.below(6);
        let trees: Vec<Tree> = (0..iters * k)
            .map(|_| random_tree(&mut rng, nf, allow_cat, linear))
            .collect();
        let text = model_text(&trees, nf, k, objective, average);
        let model = LightgbmModel::from_text(&text, &LoadOptions::default())
            .unwrap_or_else(|e| panic!("case {case}: {e}\n{text}"));
        let rows = 1 + rng.below(40);
        let x = random_input(&mut rng, rows, nf);
        let pred = model.predict(Rows::F64(&x), Output::Transformed).unwrap();
        let raw = model.predict(Rows::F64(&x), Output::Raw).unwrap();
        for r in 0..rows {
            let row = &x[r * nf..(r + 1) * nf];
            let want = ref_predict(&trees, k, objective, average, row, false);
            let want_raw = ref_predict(&trees, k, objective, average, row, true);
            for c in 0..k {
                assert!(
                    same(pred[r * k + c], want[c]),
                    "case {case} row {r}: {} vs {}\n{row:?}\n{text}",
                    pred[r * k + c],
                    want[c]
                );
                assert!(same(raw[r * k + c], want_raw[c]), "case {case} row {r} raw");
                checked += 1;
            }
        }
        // FP32 input: the same values rounded to f32 first
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let p32 = model.predict(Rows::F32(&x32), Output::Transformed).unwrap();
        for r in 0..rows {
            let row: Vec<f64> = x32[r * nf..(r + 1) * nf]
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            let want = ref_predict(&trees, k, objective, average, &row, false);
            for c in 0..k {
                assert!(same(p32[r * k + c], want[c]), "case {case} row {r} (f32)");
            }
        }
    }
    println!("{checked} random predictions identical to the reference");
}

#[test]
fn large_batches_split_across_threads_match() {
    let mut rng = Rng(7);
    let nf = 5;
    let trees: Vec<Tree> = (0..30)
        .map(|_| random_tree(&mut rng, nf, true, false))
        .collect();
    let text = model_text(&trees, nf, 3, Some("multiclass num_class:3"), false);
    let one = LightgbmModel::from_text(
        &text,
        &LoadOptions {
            threads: 1,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    let many = LightgbmModel::from_text(&text, &LoadOptions::default()).unwrap();
    for rows in [511, 512, 513, 3001] {
        let x = random_input(&mut rng, rows, nf);
        let a = one.predict(Rows::F64(&x), Output::Transformed).unwrap();
        let b = many.predict(Rows::F64(&x), Output::Transformed).unwrap();
        assert_eq!(a.len(), rows * 3);
        assert!(a.iter().zip(&b).all(|(p, q)| same(*p, *q)), "{rows} rows");
    }
    // ragged input is an error, not a panic
    assert!(one.predict(Rows::F64(&[1.0; 7]), Output::Raw).is_err());
    assert!(one.predict(Rows::F32Le(&[0u8; 21]), Output::Raw).is_err());
    assert_eq!(
        one.predict(Rows::F64(&[]), Output::Raw).unwrap(),
        Vec::<f64>::new()
    );
}

fn fixture_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/lightgbm");
    [
        "categorical_binary/model.txt",
        "linear_tree/model.txt",
        "multiclass/model.txt",
        "early_stopping/model.bst",
        "v3_linear_tree/model.txt",
    ]
    .iter()
    .map(|p| root.join(p))
    .collect()
}

fn smoke_predict(model: &LightgbmModel, rng: &mut Rng) {
    let x = random_input(rng, 7, model.num_features());
    let _ = model.predict(Rows::F64(&x), Output::Transformed).unwrap();
}

#[test]
fn truncated_files_are_load_errors() {
    let mut rng = Rng(99);
    for path in fixture_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        let full = LightgbmModel::from_text(&text, &LoadOptions::default()).unwrap();
        let end = text.find("end of trees").unwrap() + "end of trees".len();
        let probe = random_input(&mut rng, 20, full.num_features());
        let want = full
            .predict(Rows::F64(&probe), Output::Transformed)
            .unwrap();
        let mut cuts: Vec<usize> = (0..text.len()).step_by(37).collect();
        cuts.extend((0..200).map(|_| rng.below(text.len())));
        cuts.extend(text.match_indices('\n').map(|(i, _)| i).take(80)); // at line ends
        for cut in cuts {
            if !text.is_char_boundary(cut) {
                continue;
            }
            let result = LightgbmModel::from_text(&text[..cut], &LoadOptions::default());
            if cut < end {
                assert!(result.is_err(), "{}: cut at {cut} loaded", path.display());
            } else if let Ok(m) = result {
                let got = m.predict(Rows::F64(&probe), Output::Transformed).unwrap();
                assert!(
                    got.iter().zip(&want).all(|(a, b)| same(*a, *b)),
                    "{}: cut after the trees changed predictions",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn corrupted_files_never_panic() {
    let mut rng = Rng(2024);
    let tokens = [
        "-1",
        "99999999999",
        "4294967296",
        "nan",
        "inf",
        "1e400",
        "-0",
        "x",
        "",
        " ",
        "=",
        "\n",
        "Tree=",
        "end of trees",
        "2147483647",
    ];
    let (mut loaded, mut failed) = (0, 0);
    for path in fixture_files() {
        let bytes = std::fs::read(&path).unwrap();
        for _ in 0..300 {
            let mut b = bytes.clone();
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(b.len());
                b[i] = match rng.below(3) {
                    0 => rng.next() as u8,
                    1 => rng.pick(b" =\n-0123456789.e"),
                    _ => b[i] ^ (1 << rng.below(8)),
                };
            }
            let text = String::from_utf8_lossy(&b);
            match LightgbmModel::from_text(&text, &LoadOptions::default()) {
                Ok(m) => {
                    loaded += 1;
                    smoke_predict(&m, &mut rng);
                }
                Err(e) => {
                    failed += 1;
                    assert!(!e.to_string().is_empty());
                }
            }
        }
        // token substitutions inside number lists
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let spaces: Vec<usize> = text.match_indices(' ').map(|(i, _)| i).collect();
        for _ in 0..300 {
            let at = rng.pick(&spaces) + 1;
            let stop = text[at..].find([' ', '\n']).map_or(text.len(), |j| at + j);
            let mutated = format!("{}{}{}", &text[..at], rng.pick(&tokens), &text[stop..]);
            match LightgbmModel::from_text(&mutated, &LoadOptions::default()) {
                Ok(m) => {
                    loaded += 1;
                    smoke_predict(&m, &mut rng);
                }
                Err(_) => failed += 1,
            }
        }
    }
    println!("corrupted files: {loaded} loaded (and predicted), {failed} rejected");
    assert!(failed > 0);
}

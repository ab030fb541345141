//! ferroserve side of the scikit-learn benchmark (bench/sklearn, issue 6):
//! loads each model that `bench.py train` saved, times
//! `SklearnModel::infer_outputs` single-threaded at batch 1 and batch N,
//! checks the outputs against scikit-learn's, and prints JSON rows.
//!
//!     cargo run --release -p ferroserve-runtime-sklearn --example sklearn_bench -- /tmp/ferroserve-sklearn-bench [MODEL]

use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use ferroserve_core::{DataType, LoadContext, Model, Tensor};
use ferroserve_runtime_sklearn::SklearnModel;
use serde_json::{json, Value};

fn f64s(p: &Path) -> Vec<f64> {
    std::fs::read(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// The request tensors for rows `start..end`.
fn request(
    model: &SklearnModel,
    dataset: &str,
    x: &[f64],
    f: usize,
    mixed: &Value,
    start: usize,
    end: usize,
) -> Vec<Tensor> {
    let n = end - start;
    if dataset == "x" {
        return vec![
            Tensor::from_vec("input-0", vec![n, f], x[start * f..end * f].to_vec()).unwrap(),
        ];
    }
    model
        .signature()
        .inputs
        .iter()
        .map(|spec| {
            let col = mixed[&spec.name]
                .as_array()
                .unwrap_or_else(|| panic!("no column {}", spec.name));
            if spec.datatype == DataType::Bytes {
                let v: Vec<Bytes> = col[start..end]
                    .iter()
                    .map(|s| Bytes::from(s.as_str().unwrap().to_string()))
                    .collect();
                Tensor::from_strings(spec.name.clone(), vec![n], v).unwrap()
            } else {
                let v: Vec<f64> = col[start..end]
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect();
                Tensor::from_vec(spec.name.clone(), vec![n], v).unwrap()
            }
        })
        .collect()
}

/// Predictions per second and seconds per call: rounds of `calls` calls until `min_s` pass.
fn measure(min_s: f64, calls: usize, rows_per_call: usize, mut f: impl FnMut(usize)) -> (f64, f64) {
    f(0); // warm-up
    let start = Instant::now();
    let mut done = 0usize;
    loop {
        for i in 0..calls {
            f(i);
        }
        done += calls;
        let el = start.elapsed().as_secs_f64();
        if el >= min_s {
            return ((done * rows_per_call) as f64 / el, el / done as f64);
        }
    }
}

fn main() {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "/tmp/ferroserve-sklearn-bench".into()),
    );
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("bench.json")).unwrap()).unwrap();
    let rows = cfg["rows"].as_u64().unwrap() as usize;
    let rows1 = cfg["rows1"].as_u64().unwrap() as usize;
    let min_s = cfg["min_seconds"].as_f64().unwrap();
    let x = f64s(&dir.join("x.f64"));
    let mixed: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("mixed.json")).unwrap()).unwrap();
    let ctx = LoadContext {
        intra_op_threads: 1,
        ..LoadContext::default()
    };
    // optional second argument: only the models whose name contains it
    let only = std::env::args().nth(2).unwrap_or_default();
    let mut out = Vec::new();
    for m in cfg["models"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        if !name.contains(only.as_str()) {
            continue;
        }
        let mdir = PathBuf::from(m["dir"].as_str().unwrap());
        let dataset = m["dataset"].as_str().unwrap();
        let f = m["features"].as_u64().unwrap() as usize;
        let model = SklearnModel::from_file(&mdir.join("model.joblib"), "model.joblib", &ctx)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let singles: Vec<Vec<Tensor>> = (0..rows1)
            .map(|i| request(&model, dataset, &x, f, &mixed, i, i + 1))
            .collect();
        let big = request(&model, dataset, &x, f, &mixed, 0, rows);
        let outputs = &model.signature().outputs;
        let mut max_diff = 0.0f64;
        for meth in cfg["methods"].as_array().unwrap() {
            let meth = meth.as_str().unwrap();
            let idx = outputs
                .iter()
                .position(|o| o.name == meth)
                .or_else(|| (meth == "predict").then_some(0))
                .unwrap_or_else(|| panic!("{name}: no output {meth}"));
            let which = [idx];
            // correctness against scikit-learn's own outputs
            let got = model.infer_outputs(big.clone(), &which).unwrap().remove(0);
            if meth == "predict" {
                let want: Vec<i64> = std::fs::read(mdir.join("predict.i64"))
                    .unwrap()
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                    .collect();
                assert_eq!(
                    got.to_vec::<i64>().unwrap(),
                    want,
                    "{name}: predict differs from scikit-learn"
                );
            } else {
                let want = f64s(&mdir.join("predict_proba.f64"));
                let got = got.to_vec::<f64>().unwrap();
                assert_eq!(got.len(), want.len(), "{name}: predict_proba length");
                for (g, w) in got.iter().zip(&want) {
                    max_diff = max_diff.max((g - w).abs());
                }
                assert!(
                    max_diff < 1e-9,
                    "{name}: predict_proba differs by {max_diff}"
                );
            }
            let (ps, lat) = measure(min_s, 200, 1, |i| {
                let r = model
                    .infer_outputs(singles[i % rows1].clone(), &which)
                    .unwrap();
                std::hint::black_box(r);
            });
            out.push(json!({"model": name, "method": meth, "batch": 1, "preds_per_s": ps, "s_per_call": lat, "max_abs_diff": max_diff}));
            let (ps, lat) = measure(min_s, 1, rows, |_| {
                let r = model.infer_outputs(big.clone(), &which).unwrap();
                std::hint::black_box(r);
            });
            out.push(json!({"model": name, "method": meth, "batch": rows, "preds_per_s": ps, "s_per_call": lat, "max_abs_diff": max_diff}));
            eprintln!("ferroserve {name} {meth}: done");
        }
    }
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}

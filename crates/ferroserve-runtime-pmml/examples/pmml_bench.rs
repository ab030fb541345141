//! Rough throughput of the evaluator on the golden fixtures:
//! `cargo run --release -p ferroserve-runtime-pmml --example pmml_bench [case …]`.

use std::path::Path;
use std::time::Instant;

use ferroserve_core::{Model, Tensor};
use ferroserve_runtime_pmml::{LoadOptions, Method, PmmlModel};

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/pmml");
    let mut cases: Vec<String> = std::env::args().skip(1).collect();
    if cases.is_empty() {
        cases = [
            "dt_iris",
            "rf_iris",
            "gbc_iris",
            "gbr_diabetes",
            "logreg_iris",
            "mlp_iris",
            "hw_transforms",
        ]
        .map(String::from)
        .to_vec();
    }
    for case in cases {
        let opts = LoadOptions {
            model_file: "model.pmml".into(),
            method: Method::PredictProba,
        };
        let opts = LoadOptions {
            method: Method::Predict,
            ..opts
        };
        let t0 = Instant::now();
        let m = PmmlModel::from_file(&dir.join(&case).join("model.pmml"), &opts).expect("load");
        let load = t0.elapsed();
        for &n in &[1usize, 64, 4096] {
            let inputs: Vec<Tensor> = m
                .signature()
                .inputs
                .iter()
                .enumerate()
                .map(|(j, s)| {
                    if s.datatype == ferroserve_core::DataType::Bytes {
                        let v = ["x", "y", "red", "blue"];
                        Tensor::from_strings(
                            &s.name,
                            vec![n],
                            (0..n).map(|i| bytes::Bytes::from(v[(i + j) % 4])).collect(),
                        )
                        .unwrap()
                    } else {
                        Tensor::from_vec(
                            &s.name,
                            vec![n],
                            (0..n)
                                .map(|i| ((i * 7 + j * 3) % 23) as f64 * 0.37)
                                .collect::<Vec<f64>>(),
                        )
                        .unwrap()
                    }
                })
                .collect();
            let reps = (200_000 / n).max(3);
            let t = Instant::now();
            for _ in 0..reps {
                let _ = m.infer(inputs.clone());
            }
            let per = t.elapsed().as_secs_f64() / reps as f64;
            println!(
                "{case:<16} load {:>7.2} ms  batch {n:>5}: {:>9.1} µs/request  {:>8.2} µs/row",
                load.as_secs_f64() * 1e3,
                per * 1e6,
                per * 1e6 / n as f64
            );
        }
    }
}

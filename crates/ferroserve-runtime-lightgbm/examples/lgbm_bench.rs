//! Single-thread prediction speed of the LightGBM evaluator, for
//! `bench/lightgbm/run.sh`.
//!
//! ```sh
//! cargo run --release -p ferroserve-runtime-lightgbm --example lgbm_bench -- MODEL.txt ROWS.f64 FEATURES [SECONDS]
//! ```
//! `ROWS.f64`: row-major little-endian float64 rows. Prints one JSON object:
//! predictions per second at batch 1 (through `predict` and through
//! `Model::infer` with an FP32 tensor, as the server calls it) and at the
//! full batch, and the first predictions (to check against the library).

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferroserve_core::{DataType, Model, Tensor, TensorData};
use ferroserve_runtime_lightgbm::{LightgbmModel, LoadOptions, Output, Rows};

/// Runs `f` (which predicts `rows_per_call` rows) repeatedly for about
/// `secs` seconds; returns predictions per second.
fn rate(secs: f64, rows_per_call: usize, mut f: impl FnMut()) -> f64 {
    // warm up
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_secs_f64(secs / 10.0) {
        f();
    }
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < Duration::from_secs_f64(secs) {
        for _ in 0..16 {
            f();
        }
        calls += 16;
    }
    (calls as f64 * rows_per_call as f64) / start.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: lgbm_bench MODEL.txt ROWS.f64 FEATURES [SECONDS]");
        std::process::exit(2);
    }
    let nf: usize = args[3].parse().expect("FEATURES");
    let secs: f64 = args.get(4).map_or(3.0, |s| s.parse().expect("SECONDS"));
    let opts = LoadOptions {
        threads: 1,
        ..LoadOptions::default()
    };
    let t0 = Instant::now();
    let model = LightgbmModel::from_file(Path::new(&args[1]), &opts).expect("load model");
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let bytes = std::fs::read(&args[2]).expect("rows");
    let x: Vec<f64> = bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let n = x.len() / nf;

    let mut i = 0usize;
    let batch1 = rate(secs, 1, || {
        let row = &x[(i % n) * nf..(i % n + 1) * nf];
        i += 1;
        std::hint::black_box(
            model
                .predict(Rows::F64(std::hint::black_box(row)), Output::Transformed)
                .unwrap(),
        );
    });
    let x32: Vec<u8> = x.iter().flat_map(|&v| (v as f32).to_le_bytes()).collect();
    let x32 = Bytes::from(x32);
    let mut j = 0usize;
    let batch1_infer = rate(secs, 1, || {
        let r = j % n;
        j += 1;
        let t = Tensor::new(
            "input-0",
            DataType::F32,
            vec![1, nf],
            TensorData::Raw(x32.slice(r * nf * 4..(r + 1) * nf * 4)),
        )
        .unwrap();
        std::hint::black_box(model.infer(vec![t]).unwrap());
    });
    let full = rate(secs, n, || {
        std::hint::black_box(
            model
                .predict(Rows::F64(std::hint::black_box(&x)), Output::Transformed)
                .unwrap(),
        );
    });
    let first = model
        .predict(Rows::F64(&x[..5 * nf]), Output::Transformed)
        .unwrap();
    println!(
        "{{\"load_ms\": {load_ms:.2}, \"rows\": {n}, \"batch1_per_s\": {batch1:.1}, \"batch1_infer_per_s\": {batch1_infer:.1}, \"batch_full_per_s\": {full:.1}, \"first\": {first:?}}}"
    );
}

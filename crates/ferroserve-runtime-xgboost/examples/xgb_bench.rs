//! Single-thread prediction speed of the XGBoost evaluator, for
//! `bench/xgboost/run.sh`.
//!
//! ```sh
//! cargo run --release -p ferroserve-runtime-xgboost --example xgb_bench -- MODEL.json ROWS.f64 FEATURES [SECONDS]
//! ```
//! `ROWS.f64`: row-major little-endian float64 rows. Prints one JSON object:
//! predictions per second at batch 1 (through `predict` and through
//! `Model::infer` with an FP32 tensor, as the server calls it) and at the
//! full batch, and the first predictions (to check against the library).

use std::time::{Duration, Instant};

use bytes::Bytes;
use ferroserve_core::{DataType, Model, Tensor, TensorData};
use ferroserve_runtime_xgboost::{LoadOptions, XgboostModel};

/// Runs `f` (which predicts `rows_per_call` rows) repeatedly for about
/// `secs` seconds; returns predictions per second.
fn rate(secs: f64, rows_per_call: usize, mut f: impl FnMut()) -> f64 {
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
        eprintln!("usage: xgb_bench MODEL.json ROWS.f64 FEATURES [SECONDS]");
        std::process::exit(2);
    }
    let nf: usize = args[3].parse().expect("FEATURES");
    let secs: f64 = args.get(4).map_or(3.0, |s| s.parse().expect("SECONDS"));
    let opts = LoadOptions {
        intra_op_threads: 1,
        ..LoadOptions::default()
    };
    let t0 = Instant::now();
    let bytes = std::fs::read(&args[1]).expect("model file");
    let model = XgboostModel::from_bytes(&bytes, &args[1], &opts).expect("load model");
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let raw = std::fs::read(&args[2]).expect("rows");
    let x: Vec<f32> = raw
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
        .collect();
    let n = x.len() / nf;

    let mut i = 0usize;
    let batch1 = rate(secs, 1, || {
        let r = i % n;
        i += 1;
        let row = &x[r * nf..(r + 1) * nf];
        std::hint::black_box(model.predict(std::hint::black_box(row)).unwrap());
    });
    let x32 = Bytes::from(x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>());
    let mut j = 0usize;
    let batch1_infer = rate(secs, 1, || {
        let r = j % n;
        j += 1;
        let data = TensorData::Raw(x32.slice(r * nf * 4..(r + 1) * nf * 4));
        let t = Tensor::new("input-0", DataType::F32, vec![1, nf], data).unwrap();
        std::hint::black_box(model.infer(vec![t]).unwrap());
    });
    let full = rate(secs, n, || {
        std::hint::black_box(model.predict(std::hint::black_box(&x)).unwrap());
    });
    let first = model.predict(&x[..5 * nf]).unwrap().output;
    println!(
        "{{\"load_ms\": {load_ms:.2}, \"rows\": {n}, \"batch1_per_s\": {batch1:.1}, \"batch1_infer_per_s\": {batch1_infer:.1}, \"batch_full_per_s\": {full:.1}, \"first\": {first:?}}}"
    );
}

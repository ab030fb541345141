//! Golden parity: every model under `tests/fixtures/xgboost/` (trained and
//! predicted by the real XGBoost 1.x, 2.x and 3.x, see `gen_xgboost.py`)
//! must give the library's predictions and margins, for FP64 and FP32 input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ferroserve_core::{LoadContext, Model, ModelConfig, Runtime, Tensor};
use ferroserve_runtime_xgboost::{XgboostModel, XgboostRuntime, MARGIN_NAME, OUTPUT_NAME};
use serde_json::Value;

/// Relative tolerance for FP64 input.
const RTOL_F64: f64 = 1e-6;
/// Relative tolerance for FP32 input.
const RTOL_F32: f64 = 1e-5;
/// Absolute floor for values near zero.
const ATOL: f64 = 1e-9;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/xgboost")
}

fn manifest() -> Value {
    let text = std::fs::read_to_string(fixtures().join("manifest.json")).expect("manifest.json");
    serde_json::from_str(&text).expect("manifest parses")
}

fn read_f64(path: &Path) -> Vec<f64> {
    std::fs::read(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn shape(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect()
}

fn load(entry: &Value, threads: usize) -> XgboostModel {
    let file = fixtures().join(entry["file"].as_str().unwrap());
    let mut parameters = BTreeMap::new();
    if let Some(m) = entry.get("missing").and_then(Value::as_f64) {
        parameters.insert("missing".to_string(), m.to_string());
    }
    let ctx = LoadContext {
        intra_op_threads: threads,
        concurrency: 1,
        config: ModelConfig {
            parameters,
            ..ModelConfig::default()
        },
    };
    XgboostRuntime::new()
        .load_model(file.parent().unwrap(), &ctx)
        .unwrap_or_else(|e| panic!("{}: {e}", entry["name"]))
}

/// Worst relative error of `got` against `want` (differences below the
/// absolute floor count as 0); panics on a shape or NaN mismatch.
fn worst(name: &str, what: &str, got: &[f32], want: &[f32]) -> (f64, usize) {
    assert_eq!(got.len(), want.len(), "{name} {what}: length");
    let mut w = (0.0f64, 0usize);
    for (i, (&g, &e)) in got.iter().zip(want).enumerate() {
        let (g, e) = (f64::from(g), f64::from(e));
        if e.is_nan() || g.is_nan() {
            assert!(
                e.is_nan() && g.is_nan(),
                "{name} {what}[{i}]: got {g}, want {e}"
            );
            continue;
        }
        let d = (g - e).abs();
        let rel = if d <= ATOL { 0.0 } else { d / e.abs() };
        if rel > w.0 {
            w = (rel, i);
        }
    }
    w
}

fn check(entry: &Value, model: &XgboostModel, input: Tensor, rtol: f64) -> f64 {
    let name = entry["name"].as_str().unwrap();
    let dt = input.datatype;
    let outs = model.infer(vec![input]).unwrap();
    let out_shape = shape(&entry["output_shape"]);
    let margin_shape = shape(&entry["margin_shape"]);
    let output = outs.iter().find(|t| t.name == OUTPUT_NAME).unwrap();
    let margin = outs.iter().find(|t| t.name == MARGIN_NAME).unwrap();
    assert_eq!(output.shape, out_shape, "{name}: output shape");
    assert_eq!(margin.shape, margin_shape, "{name}: margin shape");
    let want_out = read_f32(&fixtures().join(entry["output_file"].as_str().unwrap()));
    let want_margin = match entry["margin_file"].as_str() {
        Some(f) => read_f32(&fixtures().join(f)),
        None => want_out.clone(),
    };
    let (e_out, i_out) = worst(name, "output", &output.to_vec::<f32>().unwrap(), &want_out);
    let (e_m, i_m) = worst(
        name,
        "margin",
        &margin.to_vec::<f32>().unwrap(),
        &want_margin,
    );
    println!(
        "{name:38} {dt}: worst rel err output {e_out:.2e} (at {i_out}), margin {e_m:.2e} (at {i_m})"
    );
    assert!(
        e_out <= rtol && e_m <= rtol,
        "{name} {dt}: error {e_out:e} / {e_m:e} over {rtol:e}"
    );
    e_out.max(e_m)
}

#[test]
fn golden_parity_every_fixture() {
    let manifest = manifest();
    let models = manifest["models"].as_array().unwrap();
    assert!(models.len() >= 40, "expected the full fixture set");
    let mut versions = std::collections::BTreeSet::new();
    for entry in models {
        let ds = &manifest["datasets"][entry["dataset"].as_str().unwrap()];
        let (rows, cols) = (
            ds["rows"].as_u64().unwrap() as usize,
            ds["cols"].as_u64().unwrap() as usize,
        );
        let x = read_f64(&fixtures().join(ds["file"].as_str().unwrap()));
        assert_eq!(x.len(), rows * cols);
        versions.insert(entry["xgboost_version"].as_str().unwrap().to_string());
        // One thread and the default pool must agree exactly.
        let m1 = load(entry, 1);
        assert_eq!(m1.num_features(), cols);
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let t64 = Tensor::from_vec("input-0", vec![rows, cols], x.clone()).unwrap();
        let t32 = Tensor::from_vec("input-0", vec![rows, cols], x32.clone()).unwrap();
        check(entry, &m1, t64.clone(), RTOL_F64);
        check(entry, &m1, t32, RTOL_F32);
        let m0 = load(entry, 0);
        let a = m0.infer(vec![t64.clone()]).unwrap();
        let b = m1.infer(vec![t64.clone()]).unwrap();
        assert_eq!(a, b, "{}: threaded result differs", entry["name"]);
        if entry["name"].as_str().unwrap().ends_with("multi_softprob") {
            // A dedicated pool (intra_op_threads > 1) too.
            let c = load(entry, 3).infer(vec![t64.clone()]).unwrap();
            assert_eq!(c, b, "{}: pool result differs", entry["name"]);
        }
        // The public predict API agrees with infer.
        let p = m1.predict(&x32).unwrap();
        assert_eq!(p.output, b[0].to_vec::<f32>().unwrap());
        if let Some(best) = entry.get("best_iteration").and_then(Value::as_u64) {
            assert_eq!(m1.best_iteration(), Some(best));
        }
    }
    println!("XGBoost versions covered: {versions:?}");
    assert!(
        versions.len() >= 3,
        "fixtures from XGBoost 1.x, 2.x and 3.x"
    );
}

#[test]
fn legacy_binary_gets_a_clear_error() {
    let dir = fixtures().join("legacy_binary");
    let rt = XgboostRuntime::new();
    assert_eq!(rt.detect(&dir).as_deref(), Some("model.bst"));
    let err = rt
        .load_model(&dir, &LoadContext::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("old binary format") && err.contains("save_model(\"model.json\")"),
        "{err}"
    );
}

#[test]
fn feature_metadata_is_exposed() {
    let manifest = manifest();
    let entry = manifest["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "v3_reg_squarederror")
        .unwrap();
    let m = load(entry, 1);
    let names: Vec<String> = (0..10).map(|i| format!("f{i}")).collect();
    assert_eq!(m.feature_names(), &names[..]);
    assert_eq!(m.objective(), "reg:squarederror");
    assert_eq!(m.booster(), "gbtree");
    assert_eq!(m.xgboost_version().map(|v| v[0]), Some(3));
    let cat = manifest["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "v3_categorical_partition")
        .unwrap();
    let m = load(cat, 1);
    assert_eq!(
        m.feature_types(),
        &["c", "c", "q", "q", "q", "q"].map(String::from)[..]
    );
}

//! Golden parity: every fixture model (tests/fixtures/sklearn, made by the
//! real scikit-learn with gen_sklearn.py) in every file format must give the
//! library's own outputs within 1e-6 relative.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use ferroserve_core::{DataType, LoadContext, Model, Tensor};
use ferroserve_runtime_sklearn::SklearnModel;
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/sklearn")
}

fn f64s(p: &Path) -> Vec<f64> {
    std::fs::read(p)
        .unwrap()
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn i64s(p: &Path) -> Vec<i64> {
    std::fs::read(p)
        .unwrap()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn inputs(dataset: &str, model: &SklearnModel) -> Vec<Tensor> {
    let d = fixtures().join("data");
    if dataset.starts_with("mixed") {
        let num = f64s(&d.join("mixed_num.f64"));
        let strs: Vec<Vec<String>> =
            serde_json::from_str(&std::fs::read_to_string(d.join("mixed_str.json")).unwrap())
                .unwrap();
        let n = strs.len();
        let mut out = Vec::new();
        for (j, name) in ["a", "b", "c"].iter().enumerate() {
            let col: Vec<f64> = (0..n).map(|i| num[i * 3 + j]).collect();
            out.push(Tensor::from_vec(*name, vec![n], col).unwrap());
        }
        for (j, name) in ["color", "size"].iter().enumerate() {
            let col: Vec<Bytes> = strs.iter().map(|r| Bytes::from(r[j].clone())).collect();
            out.push(Tensor::from_strings(*name, vec![n], col).unwrap());
        }
        // keep signature order
        let order: Vec<String> = model
            .signature()
            .inputs
            .iter()
            .map(|s| s.name.clone())
            .collect();
        out.sort_by_key(|t| order.iter().position(|n| *n == t.name).unwrap_or(99));
        return out;
    }
    let x = f64s(&d.join(format!("{dataset}.f64")));
    let f = model.signature().inputs[0].shape[1] as usize;
    vec![Tensor::from_vec("input-0", vec![x.len() / f, f], x).unwrap()]
}

/// Compares; returns the worst relative error.
fn compare(what: &str, got: &Tensor, dir: &Path, name: &str, spec: &Value) -> f64 {
    match spec["datatype"].as_str().unwrap() {
        "FP64" => {
            let want = f64s(&dir.join(format!("{name}.f64")));
            let got: Vec<f64> = got
                .to_vec::<f64>()
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(got.len(), want.len(), "{what}: length");
            let mut worst = 0.0f64;
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                if w.is_nan() {
                    assert!(g.is_nan(), "{what}[{i}]: {g} vs NaN");
                    continue;
                }
                let err = (g - w).abs();
                let rel = err / w.abs().max(1e-300);
                assert!(
                    err <= 1e-6 * w.abs() + 1e-9,
                    "{what}[{i}]: got {g}, want {w}"
                );
                if w.abs() > 1e-6 {
                    worst = worst.max(rel);
                }
            }
            worst
        }
        "INT64" => {
            let want = i64s(&dir.join(format!("{name}.i64")));
            assert_eq!(
                got.to_vec::<i64>()
                    .unwrap_or_else(|e| panic!("{what}: {e}")),
                want,
                "{what}"
            );
            0.0
        }
        _ => {
            let want: Vec<String> = serde_json::from_str(
                &std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap(),
            )
            .unwrap();
            let got: Vec<String> = got
                .strings()
                .unwrap_or_else(|| panic!("{what}: not BYTES"))
                .iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect();
            assert_eq!(got, want, "{what}");
            0.0
        }
    }
}

fn run_version(version: &str) {
    let root = fixtures();
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join(format!("manifest-v{version}.json"))).unwrap(),
    )
    .unwrap();
    let mut report = Vec::new();
    for m in manifest["models"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        let dir = root.join(format!("v{version}")).join(name);
        let mut worst = 0.0f64;
        for f in m["files"].as_array().unwrap() {
            let file = f["file"].as_str().unwrap();
            let what = format!("v{version}/{name}/{file}");
            let model = SklearnModel::from_file(&dir.join(file), file, &LoadContext::default())
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let outs = model
                .infer(inputs(m["dataset"].as_str().unwrap(), &model))
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let names: Vec<String> = model
                .signature()
                .outputs
                .iter()
                .map(|s| s.name.clone())
                .collect();
            for (out_name, spec) in m["outputs"].as_object().unwrap() {
                let i = names
                    .iter()
                    .position(|n| n == out_name)
                    .unwrap_or_else(|| panic!("{what}: no output {out_name} in {names:?}"));
                worst = worst.max(compare(
                    &format!("{what}:{out_name}"),
                    &outs[i],
                    &dir,
                    out_name,
                    spec,
                ));
            }
            if let Some(rows) = m.get("edge_rows").and_then(Value::as_u64) {
                let x = f64s(&dir.join("edge_input.f64"));
                let f = x.len() / rows as usize;
                let outs = model
                    .infer(vec![
                        Tensor::from_vec("input-0", vec![rows as usize, f], x).unwrap()
                    ])
                    .unwrap();
                worst = worst.max(compare(
                    &format!("{what}:edge"),
                    &outs[0],
                    &dir,
                    "edge_output-0",
                    &m["outputs"]["output-0"],
                ));
                if let Some(i) = names.iter().position(|n| n == "predict_proba") {
                    let spec = serde_json::json!({"datatype": "FP64"});
                    worst = worst.max(compare(
                        &format!("{what}:edge_proba"),
                        &outs[i],
                        &dir,
                        "edge_predict_proba",
                        &spec,
                    ));
                }
            }
        }
        report.push(format!("{name}: worst rel err {worst:.2e}"));
    }
    eprintln!("scikit-learn {version} parity:\n  {}", report.join("\n  "));
}

#[test]
fn parity_current() {
    run_version("1.9");
}

#[test]
fn parity_1_3() {
    run_version("1.3");
}

/// skops stores GradientBoosting's `estimators_` (an object array of shape
/// (n_stages, K)) as nested lists; both shapes must stay covered.
#[test]
fn skops_gradient_boosting_is_covered() {
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("manifest-v1.9.json")).unwrap(),
    )
    .unwrap();
    for name in ["gb_reg", "gb_clf_multi"] {
        let m = manifest["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap();
        assert!(
            m["files"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["format"] == "skops"),
            "{name} lacks a skops file"
        );
    }
}

#[test]
fn fp32_input_accepted() {
    let dir = fixtures().join("v1.9/logreg_binary");
    let model = SklearnModel::from_file(
        &dir.join("model.joblib"),
        "model.joblib",
        &LoadContext::default(),
    )
    .unwrap();
    let x: Vec<f32> = f64s(&fixtures().join("data/x.f64"))
        .iter()
        .map(|v| *v as f32)
        .collect();
    let n = x.len() / 6;
    let outs = model
        .infer(vec![Tensor::from_vec("input-0", vec![n, 6], x).unwrap()])
        .unwrap();
    assert_eq!(outs[0].datatype, DataType::I64);
    assert_eq!(
        outs[0].to_vec::<i64>().unwrap(),
        i64s(&dir.join("output-0.i64"))
    );
}

/// KServe's PREDICT_PROBA switch: the `predict_proba` model parameter (what
/// `--predict_proba` sets), and the per-request `method` parameter.
#[test]
fn predict_proba_switches() {
    use ferroserve_core::{InferContext, ParamValue, Parameters, RequestedOutput};
    let dir = fixtures().join("v1.9/mlp_clf");
    let proba = f64s(&dir.join("predict_proba.f64"));
    let labels: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("output-0.json")).unwrap()).unwrap();
    let mut ctx = LoadContext::default();
    ctx.config
        .parameters
        .insert("predict_proba".into(), "true".into());
    let m = SklearnModel::from_file(&dir.join("model.joblib"), "model.joblib", &ctx).unwrap();
    assert_eq!(m.signature().outputs[0].shape, vec![-1, 3]);
    let x = inputs("x", &m);
    let out = m.infer_with(x.clone(), &InferContext::default()).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].shape, vec![60, 3]);
    let got = out[0].to_vec::<f64>().unwrap();
    for (g, w) in got.iter().zip(&proba) {
        assert!((g - w).abs() <= 1e-6 * w.abs() + 1e-9);
    }
    // A per-request method wins over the model's default.
    let mut params = Parameters::new();
    params.insert("method".into(), ParamValue::String("predict".into()));
    let out = m
        .infer_with(x.clone(), &InferContext::new(&params, &[]))
        .unwrap();
    let got: Vec<String> = out[0]
        .strings()
        .unwrap()
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert_eq!(got, labels);
    // An unknown method is a request error naming what is available.
    params.insert("method".into(), ParamValue::String("transform".into()));
    let e = m
        .infer_with(x.clone(), &InferContext::new(&params, &[]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("predict_proba"), "{e}");

    // A regressor has no predict_proba: the switch falls back to predict,
    // as KServe's hasattr check does; per request it is an error.
    let rdir = fixtures().join("v1.9/mlp_reg");
    let r = SklearnModel::from_file(&rdir.join("model.joblib"), "model.joblib", &ctx).unwrap();
    assert_eq!(r.signature().outputs[0].shape, vec![-1]);
    let xr = inputs("x", &r);
    params.insert("method".into(), ParamValue::String("predict_proba".into()));
    assert!(r
        .infer_with(xr.clone(), &InferContext::new(&params, &[]))
        .is_err());

    // Default model, request asks for predict_proba: output-0 holds it,
    // and outputs asked for by name come in the request's order.
    let d = SklearnModel::from_file(
        &dir.join("model.joblib"),
        "model.joblib",
        &LoadContext::default(),
    )
    .unwrap();
    let out = d
        .infer_with(x.clone(), &InferContext::new(&params, &[]))
        .unwrap();
    assert_eq!(out[0].name, "output-0");
    assert_eq!(out[0].shape, vec![60, 3]);
    let asked = [
        RequestedOutput {
            name: "predict_proba".into(),
            ..Default::default()
        },
        RequestedOutput {
            name: "output-0".into(),
            ..Default::default()
        },
    ];
    let none = Parameters::new();
    let out = d.infer_with(x, &InferContext::new(&none, &asked)).unwrap();
    assert_eq!(out[0].name, "predict_proba");
    assert_eq!(out[1].name, "output-0");
    assert_eq!(out[1].datatype, DataType::Bytes);
}

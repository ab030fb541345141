//! Golden parity: every model under `tests/fixtures/lightgbm/` (trained and
//! predicted by the real `lightgbm` package, see `gen_lightgbm.py`) against
//! this crate, through the runtime's `Model::infer` as the server calls it.
//! FP64 inputs must match to 1e-6 relative error and FP32 inputs to 1e-5
//! (absolute floor 1e-9 near zero), on the transformed output and the margin.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use ferroserve_core::{DataType, LoadContext, Model, ModelConfig, Runtime, Tensor, TensorData};
use ferroserve_runtime_lightgbm::{LightgbmRuntime, MARGIN_NAME, OUTPUT_NAME};
use serde_json::Value;

const RTOL_F64: f64 = 1e-6;
const RTOL_F32: f64 = 1e-5;
const FLOOR: f64 = 1e-9;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/lightgbm")
}

fn manifest() -> Value {
    let text = std::fs::read_to_string(fixtures().join("manifest.json")).expect("manifest.json");
    serde_json::from_str(&text).expect("manifest JSON")
}

fn read_f64(path: &Path) -> Vec<f64> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn ctx(params: &Value, threads: usize) -> LoadContext {
    let mut parameters = BTreeMap::new();
    if let Some(map) = params.as_object() {
        for (k, v) in map {
            parameters.insert(k.clone(), v.as_str().expect("string parameter").to_string());
        }
    }
    LoadContext {
        intra_op_threads: threads,
        concurrency: 1,
        config: ModelConfig {
            parameters,
            ..ModelConfig::default()
        },
    }
}

fn tensor_f64(rows: &[f64], f: usize) -> Tensor {
    let bytes: Vec<u8> = rows.iter().flat_map(|v| v.to_le_bytes()).collect();
    Tensor::new(
        "input-0",
        DataType::F64,
        vec![rows.len() / f, f],
        TensorData::Raw(Bytes::from(bytes)),
    )
    .unwrap()
}

fn tensor_f32(rows: &[f64], f: usize) -> Tensor {
    let bytes: Vec<u8> = rows
        .iter()
        .flat_map(|&v| {
            let s = v as f32;
            assert!(
                f64::from(s) == v || v.is_nan(),
                "fixture value {v} is not exactly an f32"
            );
            s.to_le_bytes()
        })
        .collect();
    Tensor::new(
        "input-0",
        DataType::F32,
        vec![rows.len() / f, f],
        TensorData::Raw(Bytes::from(bytes)),
    )
    .unwrap()
}

/// Worst relative error (|a-b| / max(|b|, FLOOR)) and where; NaN/inf must match exactly.
fn worst(got: &[f64], want: &[f64]) -> (f64, usize) {
    assert_eq!(got.len(), want.len(), "output length");
    let mut w = (0.0f64, 0usize);
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        let err = if a.is_nan() || b.is_nan() || a.is_infinite() || b.is_infinite() {
            if a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()) {
                0.0
            } else {
                f64::INFINITY
            }
        } else {
            (a - b).abs() / b.abs().max(FLOOR)
        };
        if err > w.0 {
            w = (err, i);
        }
    }
    w
}

fn outputs(model: &dyn Model, input: Tensor) -> (Vec<f64>, Vec<f64>, Vec<usize>) {
    let out = model.infer(vec![input]).expect("infer");
    let get = |name: &str| {
        out.iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no output {name}"))
    };
    let pred = get(OUTPUT_NAME);
    assert_eq!(pred.datatype, DataType::F64);
    (
        pred.to_vec::<f64>().unwrap(),
        get(MARGIN_NAME).to_vec::<f64>().unwrap(),
        pred.shape.clone(),
    )
}

#[test]
fn every_fixture_matches_lightgbm() {
    let m = manifest();
    let models = m["models"].as_array().expect("models");
    assert!(models.len() >= 30, "expected the full fixture set");
    let mut datasets: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (name, d) in m["datasets"].as_object().unwrap() {
        datasets.insert(
            name.clone(),
            read_f64(&fixtures().join(d["file"].as_str().unwrap())),
        );
    }
    let mut failures = Vec::new();
    println!(
        "{:<24} {:>7} {:>5} {:>11} {:>11} {:>11} {:>11}",
        "model", "rows", "K", "f64 pred", "f64 margin", "f32 pred", "edge pred"
    );
    for e in models {
        let name = e["name"].as_str().unwrap();
        let dir = fixtures().join(name);
        let f = e["features"].as_u64().unwrap() as usize;
        let k = e["outputs"].as_u64().unwrap() as usize;
        let rt = LightgbmRuntime::new();
        assert_eq!(
            rt.detect(&dir).as_deref(),
            Some(e["file"].as_str().unwrap()),
            "{name}: detect"
        );
        let model = rt
            .load_model(&dir, &ctx(&e["parameters"], 1))
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        let names: Vec<String> = e["feature_names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            model.feature_names(),
            names.as_slice(),
            "{name}: feature names"
        );
        assert_eq!(model.num_features(), f);
        assert_eq!(model.num_outputs(), k);

        let rows = &datasets[e["dataset"].as_str().unwrap()];
        let want_pred = read_f64(&dir.join("output.f64"));
        let want_margin = read_f64(&dir.join("margin.f64"));
        let (p64, m64, shape) = outputs(&model, tensor_f64(rows, f));
        let n = rows.len() / f;
        assert_eq!(
            shape,
            if k == 1 { vec![n] } else { vec![n, k] },
            "{name}: output shape"
        );
        let (p32, m32, _) = outputs(&model, tensor_f32(rows, f));
        let edge = read_f64(&dir.join("edge_input.f64"));
        let (pe, me, _) = outputs(&model, tensor_f64(&edge, f));

        let checks = [
            ("f64 output", worst(&p64, &want_pred), RTOL_F64),
            ("f64 margin", worst(&m64, &want_margin), RTOL_F64),
            ("f32 output", worst(&p32, &want_pred), RTOL_F32),
            ("f32 margin", worst(&m32, &want_margin), RTOL_F32),
            (
                "edge output",
                worst(&pe, &read_f64(&dir.join("edge_output.f64"))),
                RTOL_F64,
            ),
            (
                "edge margin",
                worst(&me, &read_f64(&dir.join("edge_margin.f64"))),
                RTOL_F64,
            ),
        ];
        println!(
            "{name:<24} {n:>7} {k:>5} {:>11.3e} {:>11.3e} {:>11.3e} {:>11.3e}",
            checks[0].1 .0, checks[1].1 .0, checks[2].1 .0, checks[4].1 .0
        );
        for (what, (err, at), tol) in checks {
            if err > tol {
                failures.push(format!(
                    "{name}: {what} relative error {err:e} at value {at} (row {})",
                    at / k
                ));
            }
        }

        // Many threads give the same bits as one.
        let par = rt.load_model(&dir, &ctx(&e["parameters"], 0)).unwrap();
        let (pp, mp, _) = outputs(&par, tensor_f64(rows, f));
        assert!(
            pp.iter().zip(&p64).all(|(a, b)| a.to_bits() == b.to_bits()),
            "{name}: parallel output differs"
        );
        assert!(
            mp.iter().zip(&m64).all(|(a, b)| a.to_bits() == b.to_bits()),
            "{name}: parallel margin differs"
        );
    }
    assert!(
        failures.is_empty(),
        "parity failures:\n{}",
        failures.join("\n")
    );
}

#[test]
fn pandas_categorical_and_metadata_are_exposed() {
    let rt = LightgbmRuntime::new();
    let model = rt
        .load_model(
            &fixtures().join("pandas_categorical"),
            &ctx(&Value::Null, 1),
        )
        .unwrap();
    let cats = model.pandas_categorical().expect("pandas_categorical");
    assert_eq!(cats[0][0], "red");
    assert_eq!(cats[1][2], "triangle");
    assert_eq!(model.feature_names(), ["color", "size", "shape", "weight"]);
    let model = rt
        .load_model(&fixtures().join("regression"), &ctx(&Value::Null, 1))
        .unwrap();
    assert!(model.pandas_categorical().is_none());
    assert_eq!(model.objective().name, "regression");
    assert_eq!(model.version(), Some("v4"));
    let sig = model.signature();
    assert_eq!(
        (sig.platform.as_str(), sig.backend.as_str()),
        ("lightgbm", "lightgbm")
    );
    assert_eq!(sig.inputs[0].shape, vec![-1, 10]);
    assert_eq!(sig.inputs[0].alt_datatypes, vec![DataType::F64]);
    assert!(sig.outputs[1].optional && sig.outputs[1].name == "margin");
}

#[test]
fn early_stopping_honours_the_saved_iterations() {
    // save_model() after early stopping writes only the best iteration's
    // trees; a file with every tree plus `num_iteration` gives the same result.
    let rt = LightgbmRuntime::new();
    let m = manifest();
    let all = m["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "early_stopping_all")
        .unwrap();
    let best: usize = all["parameters"]["num_iteration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let a = rt
        .load_model(&fixtures().join("early_stopping"), &ctx(&Value::Null, 1))
        .unwrap();
    let b = rt
        .load_model(
            &fixtures().join("early_stopping_all"),
            &ctx(&all["parameters"], 1),
        )
        .unwrap();
    let c = rt
        .load_model(
            &fixtures().join("early_stopping_all"),
            &ctx(&Value::Null, 1),
        )
        .unwrap();
    assert_eq!(a.num_iterations(), best);
    assert_eq!(b.num_iterations(), best);
    assert!(c.num_iterations() > best);
    let rows = read_f64(&fixtures().join("data/num.f64"));
    let (pa, _, _) = outputs(&a, tensor_f64(&rows, 10));
    let (pb, _, _) = outputs(&b, tensor_f64(&rows, 10));
    assert_eq!(pa, pb);
}

#[test]
fn missing_parameter_counts_as_nan() {
    let rt = LightgbmRuntime::new();
    let dir = fixtures().join("regression");
    let mut rows = read_f64(&fixtures().join("data/num.f64"));
    rows.truncate(10 * 50);
    let mut marked = rows.clone();
    for v in marked.iter_mut() {
        if v.is_nan() {
            *v = -999.0;
        }
    }
    let plain = rt.load_model(&dir, &ctx(&Value::Null, 1)).unwrap();
    let with_missing = rt
        .load_model(&dir, &ctx(&serde_json::json!({"missing": "-999"}), 1))
        .unwrap();
    let (want, _, _) = outputs(&plain, tensor_f64(&rows, 10));
    let (got64, _, _) = outputs(&with_missing, tensor_f64(&marked, 10));
    let (got32, _, _) = outputs(&with_missing, tensor_f32(&marked, 10));
    let (unmarked, _, _) = outputs(&plain, tensor_f64(&marked, 10));
    assert_eq!(got64, want);
    assert_eq!(got32, want);
    assert_ne!(
        unmarked, want,
        "-999 must change predictions when it is not declared missing"
    );
}

/// A fresh empty folder under the system temp dir.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lgbm-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn detection_is_by_content() {
    let rt = LightgbmRuntime::new();
    let model = std::fs::read(fixtures().join("binary/model.txt")).unwrap();

    let d = scratch("xgb-bst");
    std::fs::write(
        d.join("model.bst"),
        br#"{"learner": {}, "version": [2, 1, 0]}"#,
    )
    .unwrap();
    assert_eq!(rt.detect(&d), None, "an XGBoost model.bst is not ours");
    std::fs::write(d.join("model.txt"), &model).unwrap();
    assert_eq!(rt.detect(&d).as_deref(), Some("model.txt"));

    let d = scratch("lgb-bst");
    std::fs::write(d.join("model.bst"), &model).unwrap();
    std::fs::write(d.join("model.txt"), &model).unwrap();
    assert_eq!(
        rt.detect(&d).as_deref(),
        Some("model.bst"),
        "KServe's name first"
    );

    let d = scratch("single");
    std::fs::write(d.join("notes.txt"), b"hello").unwrap();
    std::fs::write(d.join("Booster.TXT"), &model).unwrap();
    assert_eq!(rt.detect(&d).as_deref(), Some("Booster.TXT"));
    std::fs::write(d.join("other.bst"), &model).unwrap();
    assert_eq!(rt.detect(&d), None, "two candidate models: ambiguous");

    let d = scratch("empty");
    assert_eq!(rt.detect(&d), None);
    let err = rt.load_model(&d, &ctx(&Value::Null, 1)).unwrap_err();
    assert!(
        matches!(err, ferroserve_core::Error::Load(ref m) if m.contains("no LightGBM model found")),
        "{err}"
    );

    let d = scratch("broken");
    let text = String::from_utf8(model).unwrap();
    std::fs::write(
        d.join("model.txt"),
        text.replace("objective=binary sigmoid:1", "objective=survival_cox"),
    )
    .unwrap();
    let err = rt
        .load_model(&d, &ctx(&Value::Null, 1))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.txt") && err.contains("unsupported objective `survival_cox`"),
        "{err}"
    );
    std::fs::write(d.join("model.txt"), &text[..text.len() / 2]).unwrap();
    let err = rt
        .load_model(&d, &ctx(&Value::Null, 1))
        .unwrap_err()
        .to_string();
    assert!(err.contains("truncated"), "{err}");
    let bad = ctx(&serde_json::json!({"num_iteration": "many"}), 1);
    std::fs::write(d.join("model.txt"), &text).unwrap();
    assert!(rt
        .load_model(&d, &bad)
        .unwrap_err()
        .to_string()
        .contains("num_iteration"));
}

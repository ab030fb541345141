//! Golden parity tests: every fixture under `tests/fixtures/onnx/` on every
//! engine its `expected.json` lists, plus the load errors users will meet.
//!
//! The ort cases need ONNX Runtime: set `ORT_DYLIB_PATH` (or install
//! `onnxruntime` where the search finds it). Without it they are skipped with
//! a loud message.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use ferroserve_core::{
    DataType, Error, LoadContext, Model, ModelConfig, ParamValue, Runtime, Tensor, TensorData,
};
use ferroserve_runtime_onnx::{ort_library, Engine, OnnxModel, OnnxRuntime};
use serde_json::Value;

const RTOL: f64 = 1e-5;
const ATOL: f64 = 1e-6;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/onnx")
}

fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures folder")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("expected.json").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no ONNX fixtures found");
    names
}

fn ctx(engine: &str, concurrency: usize) -> LoadContext {
    let mut parameters = BTreeMap::new();
    parameters.insert("engine".to_string(), engine.to_string());
    LoadContext {
        intra_op_threads: 1,
        concurrency,
        config: ModelConfig {
            parameters,
            ..ModelConfig::default()
        },
    }
}

/// True when ONNX Runtime can be used here; prints a loud notice otherwise.
fn ort_ready(what: &str) -> bool {
    match OnnxRuntime::new().ort_available() {
        Ok(()) => true,
        Err(why) => {
            assert!(
                std::env::var_os("FERROSERVE_REQUIRE_ORT").is_none(),
                "FERROSERVE_REQUIRE_ORT is set but ONNX Runtime is not available: {why}"
            );
            eprintln!(
                "\n!!!!! SKIPPING ort engine case(s) of {what}: ONNX Runtime is not available ({why}).\n\
                 !!!!! Set ORT_DYLIB_PATH=/path/to/libonnxruntime.so.1.x to run them.\n"
            );
            false
        }
    }
}

fn load(name: &str, engine: &str, concurrency: usize) -> Result<OnnxModel, Error> {
    OnnxRuntime::new().load_model(&fixtures_dir().join(name), &ctx(engine, concurrency))
}

fn json_tensor(v: &Value) -> Tensor {
    let name = v["name"].as_str().unwrap();
    let dt: DataType = v["datatype"].as_str().unwrap().parse().unwrap();
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let data = v["data"].as_array().unwrap();
    let f = |x: &Value| x.as_f64().unwrap();
    let i = |x: &Value| x.as_i64().unwrap();
    let u = |x: &Value| x.as_u64().unwrap();
    match dt {
        DataType::Bool => {
            let b: Vec<bool> = data.iter().map(|x| x.as_bool().unwrap()).collect();
            Tensor::from_bools(name, shape, &b)
        }
        DataType::U8 => Tensor::from_vec(name, shape, data.iter().map(|x| u(x) as u8).collect()),
        DataType::U16 => Tensor::from_vec(name, shape, data.iter().map(|x| u(x) as u16).collect()),
        DataType::U32 => Tensor::from_vec(name, shape, data.iter().map(|x| u(x) as u32).collect()),
        DataType::U64 => Tensor::from_vec(name, shape, data.iter().map(u).collect()),
        DataType::I8 => Tensor::from_vec(name, shape, data.iter().map(|x| i(x) as i8).collect()),
        DataType::I16 => Tensor::from_vec(name, shape, data.iter().map(|x| i(x) as i16).collect()),
        DataType::I32 => Tensor::from_vec(name, shape, data.iter().map(|x| i(x) as i32).collect()),
        DataType::I64 => Tensor::from_vec(name, shape, data.iter().map(i).collect()),
        DataType::F16 => Tensor::from_vec(
            name,
            shape,
            data.iter().map(|x| half::f16::from_f64(f(x))).collect(),
        ),
        DataType::BF16 => Tensor::from_vec(
            name,
            shape,
            data.iter().map(|x| half::bf16::from_f64(f(x))).collect(),
        ),
        DataType::F32 => Tensor::from_vec(name, shape, data.iter().map(|x| f(x) as f32).collect()),
        DataType::F64 => Tensor::from_vec(name, shape, data.iter().map(f).collect()),
        DataType::Bytes => Tensor::from_strings(
            name,
            shape,
            data.iter()
                .map(|x| Bytes::from(x.as_str().unwrap().to_string()))
                .collect(),
        ),
    }
    .unwrap()
}

/// Float elements of a tensor as f64.
fn floats(t: &Tensor) -> Vec<f64> {
    match t.datatype {
        DataType::F16 => t
            .to_vec::<half::f16>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect(),
        DataType::BF16 => t
            .to_vec::<half::bf16>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect(),
        DataType::F32 => t
            .to_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect(),
        DataType::F64 => t.to_vec::<f64>().unwrap(),
        other => panic!("not a float type: {other}"),
    }
}

/// Compares one output; returns the worst relative error (floats) or 0.
fn compare(fixture: &str, engine: &str, got: &Tensor, want: &Tensor) -> f64 {
    let at = format!("{fixture}/{engine}/{}", want.name);
    assert_eq!(got.name, want.name, "{at}: name");
    assert_eq!(got.datatype, want.datatype, "{at}: datatype");
    assert_eq!(got.shape, want.shape, "{at}: shape");
    if !want.datatype.is_float() {
        assert_eq!(got.data, want.data, "{at}: data");
        return 0.0;
    }
    let (g, w) = (floats(got), floats(want));
    let mut worst: f64 = 0.0;
    for (k, (a, e)) in g.iter().zip(&w).enumerate() {
        if a == e || (a.is_nan() && e.is_nan()) {
            continue;
        }
        let diff = (a - e).abs();
        assert!(
            diff <= (RTOL * e.abs()).max(ATOL),
            "{at}[{k}]: got {a}, want {e} (diff {diff:e})"
        );
        if e.abs() > ATOL {
            worst = worst.max(diff / e.abs());
        }
    }
    worst
}

/// Loads `fixture` on `engine`, runs its inputs, compares with its outputs.
fn check_fixture(fixture: &str, engine: &str) -> f64 {
    let text = std::fs::read_to_string(fixtures_dir().join(fixture).join("expected.json")).unwrap();
    let expected: Value = serde_json::from_str(&text).unwrap();
    let model =
        load(fixture, engine, 2).unwrap_or_else(|e| panic!("{fixture}/{engine}: load failed: {e}"));
    assert_eq!(model.engine_name(), engine);
    let sig = model.signature().clone();
    let inputs: Vec<Tensor> = expected["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(json_tensor)
        .collect();
    for (input, spec) in inputs.iter().zip(&sig.inputs) {
        assert_eq!(input.name, spec.name, "{fixture}: input order");
        assert_eq!(input.datatype, spec.datatype, "{fixture}: input datatype");
        assert!(
            spec.accepts_shape(&input.shape),
            "{fixture}: {spec:?} rejects {:?}",
            input.shape
        );
    }
    let outputs = model
        .infer(inputs)
        .unwrap_or_else(|e| panic!("{fixture}/{engine}: infer failed: {e}"));
    let want_outputs = expected["outputs"].as_array().unwrap();
    assert_eq!(
        outputs.len(),
        want_outputs.len(),
        "{fixture}/{engine}: output count"
    );
    assert_eq!(outputs.len(), sig.outputs.len());
    let mut worst: f64 = 0.0;
    for ((got, want_json), spec) in outputs.iter().zip(want_outputs).zip(&sig.outputs) {
        let want = json_tensor(want_json);
        assert_eq!(got.name, spec.name);
        assert!(
            spec.accepts_shape(&got.shape),
            "{fixture}/{engine}: output {:?} does not fit {spec:?}",
            got.shape
        );
        worst = worst.max(compare(fixture, engine, got, &want));
        if let Some(keys) = want_json.get("zipmap_keys") {
            let got_keys = match got.parameters.get("zipmap_keys") {
                Some(ParamValue::String(s)) => serde_json::from_str::<Value>(s).unwrap(),
                other => panic!(
                    "{fixture}/{engine}: zipmap_keys parameter missing or not a string: {other:?}"
                ),
            };
            assert_eq!(&got_keys, keys, "{fixture}/{engine}: zipmap_keys");
        }
    }
    worst
}

fn engines_of(fixture: &str) -> Vec<String> {
    let text = std::fs::read_to_string(fixtures_dir().join(fixture).join("expected.json")).unwrap();
    let expected: Value = serde_json::from_str(&text).unwrap();
    expected["engines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn golden_parity() {
    let ort = ort_ready("golden_parity");
    let mut report = Vec::new();
    for fixture in fixture_names() {
        for engine in engines_of(&fixture) {
            if engine == "ort" && !ort {
                report.push(format!(
                    "{fixture:>14} × {engine:<5}: SKIPPED (no ONNX Runtime)"
                ));
                continue;
            }
            let worst = check_fixture(&fixture, &engine);
            report.push(format!(
                "{fixture:>14} × {engine:<5}: ok, worst relative error {worst:.3e}"
            ));
        }
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
fn engines_report_the_same_signature() {
    if !ort_ready("engines_report_the_same_signature") {
        return;
    }
    for fixture in fixture_names() {
        let engines = engines_of(&fixture);
        if engines.len() < 2 {
            continue;
        }
        let ort = load(&fixture, "ort", 1).unwrap();
        let tract = load(&fixture, "tract", 1).unwrap();
        assert_eq!(ort.signature(), tract.signature(), "{fixture}");
    }
}

#[test]
fn signature_of_zipmap_model() {
    if !ort_ready("signature_of_zipmap_model") {
        return;
    }
    let model = load("rf_zipmap", "ort", 1).unwrap();
    let sig = model.signature();
    assert_eq!(sig.platform, "onnxruntime_onnx");
    assert_eq!(sig.backend, "onnxruntime");
    assert_eq!(sig.model_file, "model.onnx");
    assert_eq!(sig.outputs[0].datatype, DataType::I64);
    assert_eq!(sig.outputs[0].shape, vec![-1]);
    assert_eq!(sig.outputs[1].datatype, DataType::F32);
    assert_eq!(sig.outputs[1].shape, vec![-1, 3]);
    assert!(sig.is_batchable());
}

#[test]
fn concurrent_requests_agree() {
    let mut engines = vec!["tract"];
    if ort_ready("concurrent_requests_agree") {
        engines.push("ort");
    }
    for engine in engines {
        let model: Arc<dyn Model> = Arc::new(load("mlp", engine, 2).unwrap());
        let text = std::fs::read_to_string(fixtures_dir().join("mlp/expected.json")).unwrap();
        let expected: Value = serde_json::from_str(&text).unwrap();
        let inputs: Vec<Tensor> = expected["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(json_tensor)
            .collect();
        let reference = model.infer(inputs.clone()).unwrap();
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let model = Arc::clone(&model);
                let inputs = inputs.clone();
                let reference = reference.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        assert_eq!(model.infer(inputs.clone()).unwrap(), reference);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join()
                .unwrap_or_else(|_| panic!("{engine}: a concurrent request differed"));
        }
    }
}

#[test]
fn unaligned_input_bytes_and_batch_of_one() {
    let mut engines = vec!["tract"];
    if ort_ready("unaligned_input_bytes") {
        engines.push("ort");
    }
    for engine in engines {
        let model = load("linreg", engine, 1).unwrap();
        let values: Vec<f32> = (0..8).map(|i| i as f32 * 0.25 - 1.0).collect();
        let mut raw = vec![0u8];
        raw.extend_from_slice(bytemuck::cast_slice(&values));
        let bytes = Bytes::from(raw).slice(1..);
        let input = Tensor::new(
            "float_input",
            DataType::F32,
            vec![1, 8],
            TensorData::Raw(bytes),
        )
        .unwrap();
        let aligned = Tensor::from_vec("float_input", vec![1, 8], values).unwrap();
        let a = model.infer(vec![input]).unwrap();
        let b = model.infer(vec![aligned]).unwrap();
        assert_eq!(a, b, "{engine}");
        assert_eq!(a[0].shape, vec![1, 1]);
    }
}

#[test]
fn tract_names_missing_ops_and_suggests_ort() {
    for (fixture, op) in [
        ("rf_zipmap", "ZipMap"),
        ("gbr_regressor", "TreeEnsembleRegressor"),
    ] {
        let err = load(fixture, "tract", 1).unwrap_err();
        let Error::Load(msg) = &err else {
            panic!("{fixture}: not a load error: {err:?}")
        };
        eprintln!("{fixture}/tract: {msg}");
        assert!(msg.contains(op), "{fixture}: {msg}");
        assert!(msg.contains("pip install onnxruntime"), "{fixture}: {msg}");
        assert!(msg.contains("ORT_DYLIB_PATH"), "{fixture}: {msg}");
        assert!(msg.contains("engine: ort"), "{fixture}: {msg}");
    }
}

#[test]
fn tract_rejects_bf16_with_a_hint() {
    let err = load("dtypes_bf16", "tract", 1).unwrap_err();
    let Error::Load(msg) = &err else {
        panic!("not a load error: {err:?}")
    };
    eprintln!("dtypes_bf16/tract: {msg}");
    assert!(msg.contains("bfloat16"), "{msg}");
    assert!(msg.contains("pip install onnxruntime"), "{msg}");
}

#[test]
fn ort_with_missing_library_is_a_load_error() {
    let runtime = OnnxRuntime::with_ort_library("/nonexistent/ferroserve/libonnxruntime.so.1.99.0");
    let dir = fixtures_dir().join("mlp");
    let err = runtime.load_model(&dir, &ctx("ort", 1)).unwrap_err();
    let Error::Load(msg) = &err else {
        panic!("not a load error: {err:?}")
    };
    assert!(msg.contains("pip install onnxruntime"), "{msg}");
    assert!(
        msg.contains("ORT_DYLIB_PATH=/path/to/libonnxruntime.so"),
        "{msg}"
    );
    assert!(msg.contains("/nonexistent/ferroserve"), "{msg}");
    eprintln!("missing library/ort: {msg}");
    // `auto` falls back to tract.
    let model = runtime.load_model(&dir, &ctx("auto", 1)).unwrap();
    assert_eq!(model.engine(), Engine::Tract);
}

fn scratch_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferroserve-onnx-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn corrupt_models_are_load_errors() {
    let good = std::fs::read(fixtures_dir().join("cnn/model.onnx")).unwrap();
    let mut engines = vec!["tract"];
    if ort_ready("corrupt_models_are_load_errors") {
        engines.push("ort");
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good[..good.len() / 2].to_vec()),
        (
            "garbage",
            b"this is not an ONNX model \x00\x01\x02\xff".to_vec(),
        ),
        ("empty", Vec::new()),
    ];
    for (tag, bytes) in cases {
        let dir = scratch_dir(tag);
        std::fs::write(dir.join("model.onnx"), &bytes).unwrap();
        for engine in &engines {
            match OnnxRuntime::new().load_model(&dir, &ctx(engine, 1)) {
                Err(Error::Load(msg)) => eprintln!("{tag}/{engine}: {msg}"),
                Err(other) => panic!("{tag}/{engine}: wrong error kind {other:?}"),
                Ok(_) => panic!("{tag}/{engine}: a corrupt model loaded"),
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn unknown_engine_is_a_load_error() {
    let err = load("mlp", "cuda", 1).unwrap_err();
    assert!(
        matches!(&err, Error::Load(m) if m.contains("auto, ort or tract")),
        "{err:?}"
    );
}

#[test]
fn detect_finds_the_model_file() {
    let rt = OnnxRuntime::new();
    assert_eq!(rt.format(), "onnx");
    assert_eq!(
        rt.detect(&fixtures_dir().join("mlp")).as_deref(),
        Some("model.onnx")
    );

    let dir = scratch_dir("detect");
    assert_eq!(rt.detect(&dir), None);
    std::fs::write(dir.join("classifier.onnx"), b"x").unwrap();
    std::fs::write(dir.join("notes.txt"), b"x").unwrap();
    assert_eq!(rt.detect(&dir).as_deref(), Some("classifier.onnx"));
    std::fs::write(dir.join("other.onnx"), b"x").unwrap();
    assert_eq!(rt.detect(&dir), None, "two candidates: ambiguous");
    std::fs::write(dir.join("model.onnx"), b"x").unwrap();
    assert_eq!(rt.detect(&dir).as_deref(), Some("model.onnx"));
    // Never recurses.
    let nested = scratch_dir("detect-nested");
    std::fs::create_dir_all(nested.join("sub")).unwrap();
    std::fs::write(nested.join("sub/model.onnx"), b"x").unwrap();
    assert_eq!(rt.detect(&nested), None);
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&nested).unwrap();
}

#[test]
fn a_non_default_file_name_loads_and_is_reported() {
    let dir = scratch_dir("named");
    std::fs::copy(
        fixtures_dir().join("linreg/model.onnx"),
        dir.join("regressor.onnx"),
    )
    .unwrap();
    let model = OnnxRuntime::new()
        .load_model(&dir, &ctx("tract", 1))
        .unwrap();
    assert_eq!(model.signature().model_file, "regressor.onnx");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn search_reports_what_it_found() {
    // Informational: which library the search picks on this machine.
    match ort_library::resolve_onnxruntime() {
        Ok(p) => eprintln!("ONNX Runtime library: {}", p.display()),
        Err(why) => eprintln!("ONNX Runtime library: none ({why})"),
    }
}

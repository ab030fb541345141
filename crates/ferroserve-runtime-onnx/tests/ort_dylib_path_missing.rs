//! `ORT_DYLIB_PATH` pointing at a missing file: the ort engine gives a load
//! error (never a panic) and `auto` falls back to tract. A test binary of its
//! own, because it sets a process-wide environment variable.

use std::collections::BTreeMap;
use std::path::Path;

use ferroserve_core::{Error, LoadContext, ModelConfig};
use ferroserve_runtime_onnx::{ort_library, Engine, OnnxRuntime};

#[test]
fn missing_ort_dylib_path_is_a_load_error() {
    let missing = "/nonexistent/ferroserve/libonnxruntime.so.1.99.0";
    std::env::set_var(ort_library::ORT_DYLIB_PATH, missing);
    assert_eq!(ort_library::find_onnxruntime(), None);
    let why = ort_library::resolve_onnxruntime().unwrap_err();
    assert!(why.contains(missing), "{why}");

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/onnx/mlp");
    let ctx = |engine: &str| {
        let mut parameters = BTreeMap::new();
        parameters.insert("engine".to_string(), engine.to_string());
        LoadContext {
            intra_op_threads: 0,
            concurrency: 1,
            config: ModelConfig {
                parameters,
                ..Default::default()
            },
        }
    };
    let runtime = OnnxRuntime::new();
    let err = runtime.load_model(&dir, &ctx("ort")).unwrap_err();
    let Error::Load(msg) = &err else {
        panic!("not a load error: {err:?}")
    };
    assert!(msg.contains(missing), "{msg}");
    assert!(msg.contains("pip install onnxruntime"), "{msg}");
    eprintln!("{msg}");

    let model = runtime.load_model(&dir, &ctx("auto")).unwrap();
    assert_eq!(model.engine(), Engine::Tract);

    // A file that is not a library: a load error too, not a panic. (This
    // poisons ONNX Runtime for the rest of this process, hence last.)
    let bogus = std::env::temp_dir().join(format!("ferroserve-bogus-{}", std::process::id()));
    std::fs::create_dir_all(&bogus).unwrap();
    let lib = bogus.join("libonnxruntime.so.1.20.0");
    std::fs::write(&lib, b"not a shared library").unwrap();
    let runtime = OnnxRuntime::with_ort_library(&bogus);
    let err = runtime.load_model(&dir, &ctx("ort")).unwrap_err();
    let Error::Load(msg) = &err else {
        panic!("not a load error: {err:?}")
    };
    assert!(msg.contains("could not load ONNX Runtime"), "{msg}");
    assert!(msg.contains("pip install onnxruntime"), "{msg}");
    eprintln!("{msg}");
    assert!(runtime.ort_available().is_err());
    let model = runtime.load_model(&dir, &ctx("auto")).unwrap();
    assert_eq!(model.engine(), Engine::Tract);
    std::fs::remove_dir_all(&bogus).unwrap();
}

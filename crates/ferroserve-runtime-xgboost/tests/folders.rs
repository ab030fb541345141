//! Finding the model file in a folder (by content, KServe's names first),
//! per-model parameters and request errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ferroserve_core::{Error, LoadContext, Model, ModelConfig, Runtime, Tensor};
use ferroserve_runtime_xgboost::XgboostRuntime;

fn fixture(rel: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/xgboost")
        .join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A fresh folder holding `files`.
fn folder(tag: &str, files: &[(&str, &[u8])]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferroserve-xgb-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    dir
}

const LIGHTGBM: &[u8] = b"tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\n";

#[test]
fn detects_by_content() {
    let json = fixture("v3_reg_squarederror/model.json");
    let ubj = fixture("v3_multi_softprob/model.ubj");
    let rt = XgboostRuntime::new();
    type Case<'a> = (&'a str, Vec<(&'a str, &'a [u8])>, Option<&'a str>);
    let cases: Vec<Case> = vec![
        ("empty", vec![], None),
        ("lightgbm-bst", vec![("model.bst", LIGHTGBM)], None),
        ("ubj-in-bst", vec![("model.bst", &ubj)], Some("model.bst")),
        ("json-in-ubj", vec![("model.ubj", &json)], Some("model.ubj")),
        (
            "kserve-name-first",
            vec![("model.json", &json), ("model.bst", LIGHTGBM)],
            Some("model.json"),
        ),
        (
            "single-other-name",
            vec![("booster.json", &json), ("config.json", b"{\"a\": 1}")],
            Some("booster.json"),
        ),
        (
            "two-candidates",
            vec![("a.json", &json), ("b.ubj", &ubj)],
            None,
        ),
        ("no-recursion", vec![("sub/model.json", &json)], None),
        ("wrong-extension", vec![("model.txt", &json)], None),
    ];
    for (tag, files, want) in cases {
        let dir = folder(tag, &files);
        assert_eq!(rt.detect(&dir).as_deref(), want, "{tag}");
        if let Some(file) = want {
            let m = rt.load_model(&dir, &LoadContext::default()).unwrap();
            assert_eq!(m.signature().model_file, file);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

fn ctx(params: &[(&str, &str)]) -> LoadContext {
    LoadContext {
        config: ModelConfig {
            parameters: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            ..ModelConfig::default()
        },
        ..LoadContext::default()
    }
}

#[test]
fn parameters_and_request_errors() {
    let dir = folder(
        "params",
        &[("model.json", &fixture("v3_binary_logitraw/model.json"))],
    );
    let rt = XgboostRuntime::new();
    let err = rt
        .load_model(&dir, &ctx(&[("missing", "abc")]))
        .unwrap_err();
    assert!(
        matches!(err, Error::Load(ref m) if m.contains("missing")),
        "{err}"
    );

    let m = rt.load_model(&dir, &ctx(&[("missing", "-999")])).unwrap();
    let sig = m.signature();
    assert_eq!(sig.platform, "xgboost");
    assert_eq!(sig.inputs[0].shape, vec![-1, 10]);
    assert!(sig.outputs[1].optional && sig.outputs[1].name == "margin");
    // -999 and NaN are both missing: same prediction.
    let mut a = vec![0.5f32; 10];
    let mut b = a.clone();
    a[3] = -999.0;
    b[3] = f32::NAN;
    let pa = m.predict(&a).unwrap();
    assert_eq!(pa, m.predict(&b).unwrap());
    let out = m
        .infer(vec![
            Tensor::from_vec("input-0", vec![1, 10], a.clone()).unwrap()
        ])
        .unwrap();
    assert_eq!(out[0].to_vec::<f32>().unwrap(), pa.output);
    // Empty batch.
    let out = m
        .infer(vec![Tensor::from_vec(
            "input-0",
            vec![0, 10],
            Vec::<f32>::new(),
        )
        .unwrap()])
        .unwrap();
    assert_eq!(out[0].shape, vec![0]);

    for bad in [
        Tensor::from_vec("input-0", vec![1, 9], vec![0.0f32; 9]).unwrap(),
        Tensor::from_vec("input-0", vec![10], vec![0.0f32; 10]).unwrap(),
        Tensor::from_vec("input-0", vec![1, 10], vec![0i32; 10]).unwrap(),
    ] {
        let e = m.infer(vec![bad]).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    }
    assert!(matches!(
        m.infer(vec![]).unwrap_err(),
        Error::InvalidArgument(_)
    ));
    assert!(matches!(
        m.predict(&[1.0; 7]).unwrap_err(),
        Error::InvalidArgument(_)
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unsupported_models_say_why() {
    let json = String::from_utf8(fixture("v3_reg_squarederror/model.json")).unwrap();
    let custom = json.replace("\"name\":\"reg:squarederror\"", "\"name\":\"my:objective\"");
    assert_ne!(custom, json);
    let dir = folder("custom", &[("model.json", custom.as_bytes())]);
    let err = XgboostRuntime::new()
        .load_model(&dir, &LoadContext::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("my:objective") && err.contains("not supported"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn other_formats_fixture_folders_are_not_claimed() {
    // Every other runtime's fixture folder (LightGBM's model.bst included).
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let rt = XgboostRuntime::new();
    let mut checked = 0;
    for fmt in std::fs::read_dir(&root).unwrap().filter_map(|e| e.ok()) {
        // MLflow folders hold the flavor's own file (model.ubj): the
        // registry prefers the mlflow runtime there (detect_priority).
        if fmt.file_name() == "xgboost" || fmt.file_name() == "mlflow" || !fmt.path().is_dir() {
            continue;
        }
        let dirs = std::fs::read_dir(fmt.path())
            .unwrap()
            .filter_map(|e| e.ok());
        for d in dirs
            .map(|e| e.path())
            .chain([fmt.path()])
            .filter(|p| p.is_dir())
        {
            assert_eq!(rt.detect(&d), None, "{}", d.display());
            checked += 1;
        }
    }
    assert!(checked > 0);
}

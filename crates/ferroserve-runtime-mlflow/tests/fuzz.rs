//! Property-driven fuzzing of the MLflow folder reader: `MLmodel` YAML
//! parsing ([`MlModel::parse`]), flavor choice, the JSON signature inside it
//! ([`MlModel::columns`], [`MlModel::signature_json`]), the saved input
//! examples ([`MlModel::input_examples`]), and the whole load through
//! [`MlflowRuntime::load_model`] with the scikit-learn, XGBoost and LightGBM
//! delegates.
//!
//! Inputs are random bytes and mutations of the committed fixtures in
//! `tests/fixtures/mlflow`: byte edits of `MLmodel`, of the signature's JSON
//! strings and of the input examples (flips, inserts, deletes, truncation,
//! splices), and structured edits of the YAML tree (a scalar replaced by
//! a huge number, a path outside the folder, garbage JSON, an empty value, a
//! nested mapping). Each load must return `Ok` or `Error::Load`, never
//! panic, and never ask the allocator for more than [`ferroserve_fuzz::ALLOC_LIMIT`] bytes at
//! once (a counting allocator in this test binary records the largest
//! request of each case).
//!
//! Runs in CI with a bounded number of cases per property (see [`cases`]);
//! `PROPTEST_CASES=20000 cargo test --release -p ferroserve-runtime-mlflow
//! --test fuzz` runs longer.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use ferroserve_core::{Error, LoadContext, Runtime};
use ferroserve_fuzz::{apply, bounded, cases, edit, run_case, scratch, Artifact};
use ferroserve_runtime_mlflow::{MlModel, MlflowRuntime};
use proptest::prelude::*;

#[global_allocator]
static GUARD: ferroserve_fuzz::Guard = ferroserve_fuzz::Guard;

// ---------------------------------------------------------------------------
// Seeds and mutations

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/mlflow")
}

/// A model folder: (file name, bytes) of its files.
type Folder = Vec<(String, Vec<u8>)>;

/// The fixture folders: (file name, bytes) per folder.
fn seeds() -> &'static [Folder] {
    static S: OnceLock<Vec<Folder>> = OnceLock::new();
    S.get_or_init(|| {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures())
            .expect("mlflow fixtures")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("MLmodel").is_file())
            .collect();
        dirs.sort();
        let out: Vec<Vec<(String, Vec<u8>)>> = dirs
            .iter()
            .map(|d| {
                std::fs::read_dir(d)
                    .expect("fixture folder")
                    .flatten()
                    .filter(|e| e.path().is_file())
                    .map(|e| {
                        let name = e.file_name().to_string_lossy().to_string();
                        (name, std::fs::read(e.path()).expect("fixture file"))
                    })
                    .collect()
            })
            .collect();
        assert!(out.len() >= 4, "mlflow fixtures not found");
        out
    })
}

fn runtime() -> &'static MlflowRuntime {
    static R: OnceLock<MlflowRuntime> = OnceLock::new();
    R.get_or_init(|| {
        MlflowRuntime::new(vec![
            Arc::new(ferroserve_runtime_sklearn::SklearnRuntime::new()),
            Arc::new(ferroserve_runtime_xgboost::XgboostRuntime::new()),
            Arc::new(ferroserve_runtime_lightgbm::LightgbmRuntime::new()),
        ])
    })
}

/// Writes `files` into a scratch folder of this thread, parses its
/// `MLmodel` every way the crate does and loads the folder. With
/// `FUZZ_ARTIFACTS` set, failing inputs are written there.
fn load(files: &[(String, Vec<u8>)]) -> Result<(), TestCaseError> {
    let scratch = scratch("mlflow", files);
    let dir = scratch.path();
    run_case(Artifact::Folder(files), || {
        bounded("load", || {
            let text = files
                .iter()
                .find(|(n, _)| n == "MLmodel")
                .map(|(_, b)| String::from_utf8_lossy(b).to_string())
                .unwrap_or_default();
            if let Ok(m) = MlModel::parse(&text) {
                let _ = m.pick_flavor().map(|f| f.check_file(dir));
                let _ = m.columns();
                let _ = m.signature_json();
                let _ = m.input_examples(dir);
            }
            match runtime().load(dir, &LoadContext::default()) {
                Ok(_) | Err(Error::Load(_)) => Ok(()),
                Err(e) => Err(TestCaseError::fail(format!("untyped load error {e:?}"))),
            }
        })?
    })
}

/// Replacement scalars for the YAML tree.
fn nasty_yaml() -> impl Strategy<Value = serde_yaml::Value> {
    use serde_yaml::Value as Y;
    prop::sample::select(vec![
        Y::Null,
        Y::Bool(true),
        Y::from(-1i64),
        Y::from(u64::MAX),
        Y::from(1e308f64),
        Y::from(""),
        Y::from("../../etc/passwd"),
        Y::from("/etc/passwd"),
        Y::from("model.pkl"),
        Y::from("MLmodel"),
        Y::from("sklearn"),
        Y::from("mlflow.xgboost"),
        Y::from("[{\"type\": \"tensor\", \"tensor-spec\": {\"dtype\": \"float64\", \"shape\": [-1, 99999999999999]}}]"),
        Y::from("[{\"type\": \"double\"}, {\"name\": 7}, 3, null]"),
        Y::from("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["),
        Y::from("{\"a\": 1}"),
        Y::Sequence(vec![Y::from(1i64), Y::Null]),
        Y::Mapping(serde_yaml::Mapping::new()),
    ])
}

/// Replaces the `k`-th scalar (depth-first) of a YAML tree.
fn replace_scalar(v: &mut serde_yaml::Value, k: &mut usize, new: &serde_yaml::Value) -> bool {
    use serde_yaml::Value as Y;
    match v {
        Y::Sequence(s) => s.iter_mut().any(|x| replace_scalar(x, k, new)),
        Y::Mapping(m) => m.iter_mut().any(|(_, x)| replace_scalar(x, k, new)),
        Y::Tagged(t) => replace_scalar(&mut t.value, k, new),
        _ => {
            if *k == 0 {
                *v = new.clone();
                return true;
            }
            *k -= 1;
            false
        }
    }
}

fn count_scalars(v: &serde_yaml::Value) -> usize {
    use serde_yaml::Value as Y;
    match v {
        Y::Sequence(s) => s.iter().map(count_scalars).sum(),
        Y::Mapping(m) => m.iter().map(|(_, x)| count_scalars(x)).sum(),
        Y::Tagged(t) => count_scalars(&t.value),
        _ => 1,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(512), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_mlmodel_never_panics(
        seed in any::<prop::sample::Index>(),
        body in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut files = seeds()[seed.index(seeds().len())].clone();
        for f in files.iter_mut().filter(|(n, _)| n == "MLmodel") {
            f.1 = body.clone();
        }
        load(&files)?;
    }

    #[test]
    fn mutated_files_never_panic(
        seed in any::<prop::sample::Index>(),
        file in prop::sample::select(vec!["MLmodel", "input_example.json", "serving_input_example.json"]),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let mut files = seeds()[seed.index(seeds().len())].clone();
        for f in files.iter_mut().filter(|(n, _)| n == file) {
            f.1 = apply(std::mem::take(&mut f.1), &edits);
        }
        load(&files)?;
    }

    #[test]
    fn mutated_yaml_trees_never_panic(
        seed in any::<prop::sample::Index>(),
        picks in prop::collection::vec((any::<prop::sample::Index>(), nasty_yaml()), 1..4),
    ) {
        let mut files = seeds()[seed.index(seeds().len())].clone();
        for f in files.iter_mut().filter(|(n, _)| n == "MLmodel") {
            let mut v: serde_yaml::Value = serde_yaml::from_slice(&f.1).expect("seed MLmodel");
            let n = count_scalars(&v);
            for (at, new) in &picks {
                let mut k = at.index(n.max(1));
                replace_scalar(&mut v, &mut k, new);
            }
            f.1 = serde_yaml::to_string(&v).expect("yaml").into_bytes();
        }
        load(&files)?;
    }

    #[test]
    fn mutated_signatures_never_panic(
        seed in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let mut files = seeds()[seed.index(seeds().len())].clone();
        for f in files.iter_mut().filter(|(n, _)| n == "MLmodel") {
            let mut v: serde_yaml::Value = serde_yaml::from_slice(&f.1).expect("seed MLmodel");
            if let Some(s) = v.get_mut("signature").and_then(|s| s.get_mut("inputs")) {
                if let Some(text) = s.as_str() {
                    let b = apply(text.as_bytes().to_vec(), &edits);
                    *s = serde_yaml::Value::from(String::from_utf8_lossy(&b).to_string());
                }
            }
            f.1 = serde_yaml::to_string(&v).expect("yaml").into_bytes();
        }
        load(&files)?;
    }
}

#[test]
fn seeds_still_load_or_fail_cleanly() {
    for files in seeds() {
        load(files).expect("seed");
    }
}

#[test]
fn yaml_alias_bombs_fail_cleanly() {
    // "Billion laughs": nested aliases must not expand without bound.
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    text.push_str("flavors: *a11\n");
    let files = vec![("MLmodel".to_string(), text.into_bytes())];
    load(&files).expect("alias bomb");
}

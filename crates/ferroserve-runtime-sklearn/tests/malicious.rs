//! Broken, truncated and malicious files must fail to load with a clear
//! error, never run anything, never panic and never allocate far beyond
//! their size.

use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use ferroserve_core::{DataType, Error, LoadContext, Model, Runtime, Tensor};
use ferroserve_runtime_sklearn::{SklearnModel, SklearnRuntime};

const MARKER: &str = "/tmp/ferroserve-pwned";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/sklearn")
}

fn load_bytes(name: &str, bytes: &[u8]) -> Result<SklearnModel, Error> {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("skl-mal-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    let r = SklearnModel::from_file(&p, name, &LoadContext::default());
    std::fs::remove_dir_all(&dir).ok();
    r
}

fn load_err(path: &Path) -> String {
    match SklearnModel::from_file(path, "model.pkl", &LoadContext::default()) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(Error::Load(m)) => m,
        Err(e) => panic!("{}: wrong error kind {e:?}", path.display()),
    }
}

#[test]
fn code_execution_is_refused_by_name() {
    let _ = std::fs::remove_file(MARKER);
    let dir = fixtures().join("malicious");
    for (file, names) in [
        (
            "os_system.pkl",
            &["posix.system", "os.system", "nt.system"][..],
        ),
        (
            "os_system_p2.pkl",
            &["posix.system", "os.system", "nt.system"][..],
        ),
        ("builtins_eval.pkl", &["builtins.eval"][..]),
        ("subprocess_popen.pkl", &["subprocess.Popen"][..]),
        (
            "inside_model.joblib",
            &["posix.system", "os.system", "nt.system"][..],
        ),
    ] {
        let e = load_err(&dir.join(file));
        assert!(names.iter().any(|n| e.contains(n)), "{file}: {e}");
        assert!(e.contains("refusing"), "{file}: {e}");
    }
    assert!(!Path::new(MARKER).exists(), "a malicious pickle ran code");
}

#[test]
fn truncated_files_fail_cleanly() {
    for f in [
        "v1.9/rf_clf/model.joblib",
        "v1.9/logreg_binary/pickle5/model.pkl",
        "v1.9/hgb_clf/model.joblib",
        "v1.9/logreg_binary/zlib/model.joblib",
        "v1.9/pipe_ct_mixed/pickle4/model.pkl",
        "v1.9/logreg_binary/pickle2/model.pickle",
    ] {
        let data = std::fs::read(fixtures().join(f)).unwrap();
        for cut in [1, 2, 10, data.len() / 3, data.len() / 2, data.len() - 1] {
            let r = load_bytes("model.joblib", &data[..cut]);
            match r {
                Err(Error::Load(m)) => assert!(!m.is_empty()),
                other => panic!("{f} cut at {cut}: {other:?}"),
            }
        }
    }
}

#[test]
fn corrupted_files_never_panic() {
    // deterministic byte flips over several formats
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for f in [
        "v1.9/dtree_clf/model.joblib",
        "v1.9/pipe_ct_mixed/model.joblib",
        "v1.9/gb_clf_multi/model.joblib",
        "v1.9/svc_rbf/model.joblib",
        "v1.3/logreg_binary/pickle2/model.pickle",
        "v1.9/knn_clf/model.joblib",
        "v1.9/hgb_cat_pandas/model.joblib",
        "v1.9/logreg_binary/pickle0/model.pkl",
        "v1.9/iforest/model.joblib",
    ] {
        let data = std::fs::read(fixtures().join(f)).unwrap();
        let iters: usize = std::env::var("SKLEARN_FUZZ_ITERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(150);
        for _ in 0..iters {
            let mut d = data.clone();
            for _ in 0..1 + next() % 4 {
                let i = (next() as usize) % d.len();
                d[i] = next() as u8;
            }
            // ok or error, never a panic; a model that still loads must also run
            if let Ok(m) = load_bytes("model.joblib", &d) {
                let inputs = m
                    .signature()
                    .inputs
                    .iter()
                    .map(|s| {
                        let mut shape: Vec<usize> = s
                            .shape
                            .iter()
                            .map(|&d| if d < 0 { 3 } else { d as usize })
                            .collect();
                        if shape.is_empty() {
                            shape.push(3);
                        }
                        let n: usize = shape.iter().product();
                        if s.datatype == DataType::Bytes {
                            Tensor::from_strings(
                                s.name.clone(),
                                shape,
                                vec![Bytes::from_static(b"red"); n],
                            )
                            .unwrap()
                        } else {
                            Tensor::from_vec(s.name.clone(), shape, vec![0.5f64; n]).unwrap()
                        }
                    })
                    .collect();
                let _ = m.infer(inputs);
            }
        }
    }
}

#[test]
fn not_a_model() {
    // a pickle of a plain dict
    let e = load_bytes(
        "model.pkl",
        b"\x80\x04\x95\x06\x00\x00\x00\x00\x00\x00\x00}\x94.",
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("not a scikit-learn estimator"),
        "{e}"
    );
    let e = load_bytes("model.pkl", b"hello world").unwrap_err();
    assert!(e.to_string().contains("not a pickle"), "{e}");
    let e = load_bytes("model.skops", b"PK\x03\x04garbage").unwrap_err();
    assert!(e.to_string().contains("skops"), "{e}");
}

#[test]
fn unsupported_class_is_named() {
    // protocol 4: STACK_GLOBAL module name, EMPTY_TUPLE, NEWOBJ, EMPTY_DICT, BUILD, STOP
    fn object_pickle(module: &str, class: &str) -> Vec<u8> {
        let mut p = vec![0x80, 4];
        for s in [module, class] {
            p.push(0x8c);
            p.push(s.len() as u8);
            p.extend(s.as_bytes());
        }
        p.extend(b"\x93)\x81}b.");
        p
    }
    let e = load_bytes("model.pkl", &object_pickle("sklearn.svm._classes", "NuSVC"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("sklearn.svm._classes.NuSVC") && e.contains("unsupported"),
        "{e}"
    );
    // a supported class whose state lacks what it needs
    let p = object_pickle("sklearn.linear_model._logistic", "LogisticRegression");
    let e = load_bytes("model.pkl", &p).unwrap_err().to_string();
    assert!(e.contains("LogisticRegression lacks attribute"), "{e}");
}

#[test]
fn decompression_bomb_is_bounded() {
    let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..120 {
        enc.write_all(&zeros).unwrap();
    }
    let bomb = enc.finish().unwrap();
    assert!(bomb.len() < 100_000, "{}", bomb.len());
    let e = load_bytes("model.joblib", &bomb).unwrap_err().to_string();
    assert!(e.contains("refusing"), "{e}");
}

#[test]
fn detection() {
    let rt = SklearnRuntime::new();
    assert_eq!(rt.format(), "sklearn");
    assert_eq!(
        rt.detect(&fixtures().join("v1.9/rf_clf")).as_deref(),
        Some("model.joblib")
    );
    assert_eq!(
        rt.detect(&fixtures().join("v1.9/rf_clf/skops")).as_deref(),
        Some("model.skops")
    );
    assert_eq!(
        rt.detect(&fixtures().join("v1.9/logreg_binary/pickle2"))
            .as_deref(),
        Some("model.pickle")
    );
    assert_eq!(rt.detect(&fixtures().join("data")), None);
    let m = rt
        .load(
            &fixtures().join("v1.9/pipe_ct_mixed"),
            &LoadContext::default(),
        )
        .unwrap();
    let names: Vec<&str> = m
        .signature()
        .inputs
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["a", "b", "c", "color", "size"]);
}

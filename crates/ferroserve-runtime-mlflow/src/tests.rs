use std::sync::Arc;

use ferroserve_core::{DataType, Error, Model, Signature, Tensor, TensorSpec};

use crate::mlmodel::MlModel;
use crate::model::MlflowModel;

const SKLEARN: &str = r#"
artifact_path: model
flavors:
  python_function:
    loader_module: mlflow.sklearn
    model_path: model.pkl
    predict_fn: predict
  sklearn:
    pickled_model: model.pkl
    serialization_format: cloudpickle
    sklearn_version: 1.9.1
mlflow_version: 3.17.2
signature:
  inputs: '[{"type": "double", "name": "a", "required": true}, {"type": "long", "name": "b", "required": true}]'
  outputs: '[{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1]}}]'
  params: null
"#;

#[test]
fn picks_native_flavor_and_columns() {
    let m = MlModel::parse(SKLEARN).unwrap();
    let f = m.pick_flavor().unwrap();
    assert_eq!(
        (f.name.as_str(), f.format, f.file.as_str()),
        ("sklearn", "sklearn", "model.pkl")
    );
    let cols = m.columns().unwrap().unwrap();
    assert_eq!(cols.len(), 2);
    assert_eq!(cols[1].datatype, DataType::I64);
    let sig = m.signature_json().unwrap();
    assert_eq!(sig["inputs"][0]["name"], "a");
}

#[test]
fn pyfunc_only_and_unsupported() {
    let m = MlModel::parse(
        "flavors:\n  python_function:\n    loader_module: mlflow.xgboost\n    data: model.xgb\n",
    )
    .unwrap();
    let f = m.pick_flavor().unwrap();
    assert_eq!((f.format, f.file.as_str()), ("xgboost", "model.xgb"));
    let m = MlModel::parse(
        "flavors:\n  python_function:\n    loader_module: mlflow.pyfunc.model\n    python_model: python_model.pkl\n  pytorch:\n    model_data: data\n",
    )
    .unwrap();
    let e = m.pick_flavor().unwrap_err().to_string();
    assert!(
        e.contains("pytorch")
            && e.contains("custom Python model")
            && e.contains("supported: sklearn"),
        "{e}"
    );
    let m = MlModel::parse("flavors:\n  xgboost:\n    data: ../x.json\n").unwrap();
    assert!(m.pick_flavor().is_err());
}

/// A delegate that returns the sum of each row of its `[N, F]` input.
struct RowSum(Signature);

impl Model for RowSum {
    fn signature(&self) -> &Signature {
        &self.0
    }
    fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, Error> {
        let t = &inputs[0];
        assert_eq!(t.datatype, DataType::F32);
        let f = t.shape[1];
        let v = t.to_vec::<f32>()?;
        let sums: Vec<f64> = v
            .chunks(f)
            .map(|r| r.iter().map(|&x| f64::from(x)).sum())
            .collect();
        Ok(vec![Tensor::from_vec("output-0", vec![t.shape[0]], sums)?])
    }
}

fn row_sum() -> Arc<dyn Model> {
    Arc::new(RowSum(Signature {
        platform: "x".into(),
        backend: "x".into(),
        model_file: "model.xgb".into(),
        inputs: vec![TensorSpec::new("input-0", DataType::F32, vec![-1, 2])],
        outputs: vec![TensorSpec::new("output-0", DataType::F64, vec![-1])],
    }))
}

#[test]
fn columns_assemble_into_matrix() {
    let mlm = MlModel::parse(SKLEARN).unwrap();
    let flavor = mlm.pick_flavor().unwrap();
    let m = MlflowModel::new(row_sum(), &mlm, &flavor).unwrap();
    let names: Vec<&str> = m
        .signature()
        .inputs
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["a", "b", "input-0"]);
    assert_eq!(m.signature().inputs[1].datatype, DataType::I64);
    let a = Tensor::from_vec("a", vec![2], vec![1.5f64, 2.0]).unwrap();
    let b = Tensor::from_vec("b", vec![2], vec![10i64, 20]).unwrap();
    let out = m.infer(vec![a.clone(), b]).unwrap();
    assert_eq!(out[0].to_vec::<f64>().unwrap(), vec![11.5, 22.0]);
    let mat = Tensor::from_vec("input-0", vec![1, 2], vec![1.0f64, 2.0]).unwrap();
    assert_eq!(
        m.infer(vec![mat]).unwrap()[0].to_vec::<f64>().unwrap(),
        vec![3.0]
    );
    let e = m.infer(vec![a]).unwrap_err().to_string();
    assert!(e.contains("missing column 'b'"), "{e}");
    let c = Tensor::from_vec("b", vec![1], vec![1i64]).unwrap();
    let a = Tensor::from_vec("a", vec![2], vec![1.5f64, 2.0]).unwrap();
    assert!(m.infer(vec![a, c]).is_err());
    assert_eq!(m.metadata_parameters()["mlflow_flavor"], "sklearn");
}

#[test]
fn columns_that_do_not_fit_fail_to_load() {
    let text = SKLEARN.replace(
        r#"{"type": "long", "name": "b", "required": true}"#,
        r#"{"type": "long", "name": "b", "required": true}, {"type": "double", "name": "c"}"#,
    );
    let mlm = MlModel::parse(&text).unwrap();
    let flavor = mlm.pick_flavor().unwrap();
    let e = MlflowModel::new(row_sum(), &mlm, &flavor)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("do not fit"), "{e}");
}

/// The fixtures of `tests/fixtures/mlflow` (gen_mlflow.py) load through the
/// real runtimes and predict what `mlflow.pyfunc` predicted.
#[test]
fn fixtures_match_pyfunc() {
    use ferroserve_core::{LoadContext, Runtime};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/mlflow");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("expected.json")).unwrap())
            .unwrap();
    let rt = crate::MlflowRuntime::new(vec![
        Arc::new(ferroserve_runtime_sklearn::SklearnRuntime::new()),
        Arc::new(ferroserve_runtime_xgboost::XgboostRuntime::new()),
        Arc::new(ferroserve_runtime_lightgbm::LightgbmRuntime::new()),
    ]);
    for (name, case) in expected.as_object().unwrap() {
        let dir = root.join(name);
        assert_eq!(rt.detect(&dir).as_deref(), Some("MLmodel"));
        let m = rt.load(&dir, &LoadContext::default()).unwrap();
        let cols: Vec<&str> = case["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        let rows = case["data"].as_array().unwrap();
        let inputs: Vec<Tensor> = cols
            .iter()
            .enumerate()
            .map(|(j, c)| {
                let v: Vec<f64> = rows.iter().map(|r| r[j].as_f64().unwrap()).collect();
                Tensor::from_vec(*c, vec![v.len()], v).unwrap()
            })
            .collect();
        let out = m.infer(inputs).unwrap();
        let got: Vec<f64> = match out[0].datatype {
            DataType::I64 => out[0]
                .to_vec::<i64>()
                .unwrap()
                .into_iter()
                .map(|v| v as f64)
                .collect(),
            DataType::F32 => out[0]
                .to_vec::<f32>()
                .unwrap()
                .into_iter()
                .map(f64::from)
                .collect(),
            _ => out[0].to_vec::<f64>().unwrap(),
        };
        let want: Vec<f64> = case["predictions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(got.len(), want.len(), "{name}");
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                "{name}: {got:?} vs {want:?}"
            );
        }
    }
    let e = rt
        .load(&root.join("unsupported"), &LoadContext::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("pytorch") && e.contains("supported:"), "{e}");
}

/// The saved input examples are read (and shown in the metadata); an
/// `MLmodel` cannot point at files outside its folder.
#[test]
fn input_examples_in_metadata() {
    use ferroserve_core::{LoadContext, Runtime};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/mlflow");
    let rt = crate::MlflowRuntime::new(vec![Arc::new(
        ferroserve_runtime_sklearn::SklearnRuntime::new(),
    )]);
    let m = rt
        .load(&root.join("sklearn_pickle"), &LoadContext::default())
        .unwrap();
    let p = m.metadata_parameters();
    assert_eq!(p["mlflow_input_example"]["columns"][0], "sepal_length");
    assert_eq!(
        p["mlflow_input_example"]["data"].as_array().unwrap().len(),
        2
    );
    assert_eq!(p["mlflow_input_example_info"]["type"], "dataframe");
    assert_eq!(
        p["mlflow_serving_input_example"]["dataframe_split"]["columns"][3],
        "petal_width"
    );

    let dir = std::env::temp_dir().join(format!("ferroserve-mlflow-ex-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("secret.json"), "{\"x\": 1}").unwrap();
    let inner = dir.join("m");
    std::fs::create_dir_all(&inner).unwrap();
    let mlmodel = MlModel::parse(&format!(
        "{SKLEARN}saved_input_example_info:\n  artifact_path: ../secret.json\n  serving_input_path: /etc/hostname\n  type: dataframe\n"
    ))
    .unwrap();
    let ex = mlmodel.input_examples(&inner);
    assert!(ex.input_example.is_none());
    assert!(ex.serving_input_example.is_none());
    assert!(ex.info.is_some());
    let _ = std::fs::remove_dir_all(&dir);
}

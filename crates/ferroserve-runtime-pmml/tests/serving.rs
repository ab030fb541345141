//! The served model: signature, request tensors of every accepted type,
//! absent inputs, outputs shaped as KServe's pmmlserver answers (one per
//! field), the optional outputs and `method: predict_proba` (per model and
//! per request).

use std::path::Path;

use bytes::Bytes;
use ferroserve_core::{
    DataType, Error, InferContext, Model, ParamValue, Parameters, RequestedOutput, Tensor,
};
use ferroserve_runtime_pmml::{LoadOptions, Method, PmmlModel};

fn load(name: &str, method: Method) -> PmmlModel {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/pmml")
        .join(name)
        .join("model.pmml");
    PmmlModel::from_file(
        &p,
        &LoadOptions {
            model_file: "model.pmml".into(),
            method,
        },
    )
    .unwrap()
}

fn by_name<'a>(out: &'a [Tensor], name: &str) -> &'a Tensor {
    out.iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no output {name}"))
}

fn f64s(name: &str, v: &[f64]) -> Tensor {
    Tensor::from_vec(name, vec![v.len()], v.to_vec()).unwrap()
}

fn strs(name: &str, v: &[&str]) -> Tensor {
    Tensor::from_strings(
        name,
        vec![v.len()],
        v.iter().map(|s| Bytes::from(s.to_string())).collect(),
    )
    .unwrap()
}

#[test]
fn iris_signature_and_infer() {
    let m = load("logreg_iris", Method::Predict);
    let sig = m.signature();
    let names: Vec<&str> = sig.inputs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "sepal length (cm)",
            "sepal width (cm)",
            "petal length (cm)",
            "petal width (cm)"
        ]
    );
    assert!(sig
        .inputs
        .iter()
        .all(|s| s.datatype == DataType::F64 && s.shape == [-1] && s.optional));
    let outs: Vec<(&str, DataType, bool)> = sig
        .outputs
        .iter()
        .map(|s| (s.name.as_str(), s.datatype, s.optional))
        .collect();
    // KServe's shape: the target field, then every output field; the
    // label and probability matrix on request.
    assert_eq!(outs[0], ("target", DataType::I64, false));
    assert_eq!(outs[1], ("probability(0)", DataType::F64, false));
    assert_eq!(outs[3], ("probability(2)", DataType::F64, false));
    assert_eq!(outs[4], ("output-0", DataType::I64, true));
    assert_eq!(outs[5], ("probabilities", DataType::F64, true));
    assert_eq!(sig.outputs[5].shape, [-1, 3]);
    assert!(m.v1_records());
    assert_eq!(m.classes(), ["0", "1", "2"]);
    let x = [
        f64s("sepal length (cm)", &[5.1, 6.7]),
        f64s("sepal width (cm)", &[3.5, 3.0]),
        Tensor::from_vec("petal length (cm)", vec![2], vec![1.4f32, 5.2]).unwrap(),
        Tensor::from_vec("petal width (cm)", vec![2], vec![0i64, 2]).unwrap(),
    ];
    let out = m.infer(x.to_vec()).unwrap();
    assert_eq!(
        by_name(&out, "output-0").to_vec::<i64>().unwrap(),
        vec![0, 2]
    );
    assert_eq!(by_name(&out, "target").to_vec::<i64>().unwrap(), vec![0, 2]);
    let probs = by_name(&out, "probabilities");
    let p = probs.to_vec::<f64>().unwrap();
    assert_eq!(probs.shape, vec![2, 3]);
    assert!((p[0..3].iter().sum::<f64>() - 1.0).abs() < 1e-12);
    let p2 = by_name(&out, "probability(2)").to_vec::<f64>().unwrap();
    assert_eq!(p2[1], p[5]);
    // What the server calls: by default one output per field.
    let out = m.infer_with(x.to_vec(), &InferContext::default()).unwrap();
    let names: Vec<&str> = out.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "target",
            "probability(0)",
            "probability(1)",
            "probability(2)"
        ]
    );
    // A row without a prediction: the target column turns FP64 with NaN
    // (as a pandas column does in KServe), the INT64 label fails.
    let out = m
        .infer_with(x[..3].to_vec(), &InferContext::default())
        .unwrap();
    assert_eq!(out[0].datatype, DataType::F64);
    assert!(out[0].to_vec::<f64>().unwrap()[0].is_nan());
    // An absent input is missing: a regression table with a missing
    // numeric input gives no prediction, which INT64 labels cannot carry.
    let err = m.infer(x[..3].to_vec()).unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument(ref e) if e.contains("no prediction")),
        "{err:?}"
    );
    let err = m
        .infer(vec![
            f64s("sepal length (cm)", &[1.0]),
            f64s("sepal width (cm)", &[1.0, 2.0]),
        ])
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument(ref e) if e.contains("different lengths")),
        "{err:?}"
    );
    assert!(m.infer(vec![]).is_err());
}

#[test]
fn predict_proba_method() {
    let m = load("rf_iris", Method::PredictProba);
    let sig = m.signature();
    assert_eq!(sig.outputs[0].name, "output-0");
    assert_eq!(sig.outputs[0].shape, [-1, 3]);
    assert!(!sig.outputs.iter().any(|s| s.name == "probabilities"));
    let out = m
        .infer(vec![
            f64s("sepal length (cm)", &[5.1]),
            f64s("sepal width (cm)", &[3.5]),
            f64s("petal length (cm)", &[1.4]),
            f64s("petal width (cm)", &[0.2]),
        ])
        .unwrap();
    assert_eq!(out[0].shape, vec![1, 3]);
    assert!(!m.v1_records());
    // A request may switch back to the per-field answer.
    let mut params = Parameters::new();
    params.insert("method".into(), ParamValue::String("predict".into()));
    let x = vec![
        f64s("sepal length (cm)", &[5.1]),
        f64s("sepal width (cm)", &[3.5]),
        f64s("petal length (cm)", &[1.4]),
        f64s("petal width (cm)", &[0.2]),
    ];
    let out = m
        .infer_with(x.clone(), &InferContext::new(&params, &[]))
        .unwrap();
    assert_eq!(out[0].name, "target");
    assert_eq!(out[0].to_vec::<i64>().unwrap(), vec![0]);
    assert_eq!(out.len(), 4);
    // And a default model may answer one request with probabilities.
    let d = load("rf_iris", Method::Predict);
    params.insert("method".into(), ParamValue::String("predict_proba".into()));
    let out = d
        .infer_with(x.clone(), &InferContext::new(&params, &[]))
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].name.as_str(), out[0].shape.clone()),
        ("output-0", vec![1, 3])
    );
    let asked = [RequestedOutput {
        name: "probability(1)".into(),
        ..Default::default()
    }];
    let out = d
        .infer_with(x.clone(), &InferContext::new(&Parameters::new(), &asked))
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].name, "probability(1)");
    params.insert("method".into(), ParamValue::String("transform".into()));
    assert!(d.infer_with(x, &InferContext::new(&params, &[])).is_err());
    let reg = PmmlModel::from_file(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/pmml/gbr_diabetes/model.pmml"),
        &LoadOptions {
            model_file: "model.pmml".into(),
            method: Method::PredictProba,
        },
    );
    assert!(matches!(reg, Err(Error::Load(ref e)) if e.contains("predict_proba")));
}

#[test]
fn string_inputs_and_labels() {
    let m = load("cat_tree", Method::Predict);
    let sig = m.signature();
    let color = sig.inputs.iter().find(|s| s.name == "color").unwrap();
    assert_eq!(color.datatype, DataType::Bytes);
    assert_eq!(sig.outputs[0].name, "y");
    assert_eq!(sig.outputs[0].datatype, DataType::Bytes);
    let out = m
        .infer(vec![
            strs("color", &["red", "blue", "", "purple"]),
            f64s("size", &[0.5, -1.0, f64::NAN, 0.3]),
            Tensor::from_vec("w", vec![4], vec![1.0f32, 9.0, 3.0, 2.0]).unwrap(),
        ])
        .unwrap();
    let labels: Vec<String> = out[0]
        .strings()
        .unwrap()
        .iter()
        .map(|b| String::from_utf8(b.to_vec()).unwrap())
        .collect();
    assert_eq!(labels.len(), 4);
    assert_eq!(labels[0], "yes");
    assert_eq!(labels[1], "maybe");
}

#[test]
fn regression_outputs_nan_for_missing() {
    let m = load("hw_transforms", Method::Predict);
    let names: Vec<&str> = m
        .signature()
        .outputs
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["t", "pred", "doubled", "band", "bucket", "output-0"]
    );
    assert!(m.signature().outputs[5].optional);
    let band = &m.signature().outputs[3];
    assert_eq!(band.datatype, DataType::Bytes);
    let out = m
        .infer(vec![
            f64s("a", &[0.5, f64::NAN]),
            f64s("b", &[2.0, 2.0]),
            strs("c", &["x", "y"]),
            Tensor::from_vec("d", vec![2], vec![1i32, 2]).unwrap(),
        ])
        .unwrap();
    let y = out[0].to_vec::<f64>().unwrap();
    assert!(y[0].is_finite() && y[1].is_nan());
    let bucket: Vec<Bytes> = out[4].strings().unwrap().to_vec();
    assert_eq!(bucket[0], Bytes::from("small"));
    assert_eq!(bucket[1], Bytes::from("none"));
}

#[test]
fn large_batches_run_in_parallel_with_the_same_results() {
    let m = load("gbr_diabetes", Method::Predict);
    let n = 3000;
    let inputs: Vec<Tensor> = m
        .signature()
        .inputs
        .iter()
        .enumerate()
        .map(|(j, s)| {
            f64s(
                &s.name,
                &(0..n)
                    .map(|i| ((i * 7 + j * 13) % 97) as f64)
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    let all = m.infer(inputs.clone()).unwrap()[0].to_vec::<f64>().unwrap();
    let first: Vec<Tensor> = inputs
        .iter()
        .map(|t| f64s(&t.name, &t.to_vec::<f64>().unwrap()[..10]))
        .collect();
    let small = m.infer(first).unwrap()[0].to_vec::<f64>().unwrap();
    assert_eq!(&all[..10], &small[..]);
}

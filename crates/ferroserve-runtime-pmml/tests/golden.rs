//! Golden parity: every fixture in tests/fixtures/pmml (made by
//! gen_pmml.py, expected values computed by JPMML-Evaluator) must match
//! within 1e-6 relative, rows on split thresholds included.

use std::path::{Path, PathBuf};

use ferroserve_runtime_pmml::value::Value;
use ferroserve_runtime_pmml::{LoadOptions, Method, PmmlModel, RowResult};
use serde_json::Value as Json;

const RTOL: f64 = 1e-6;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/pmml")
}

fn read_f64(path: &Path) -> Vec<f64> {
    let b = std::fs::read(path).unwrap();
    b.chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// A manifest column: numbers (NaN = missing) or strings (None = missing).
enum Col {
    Num(Vec<f64>),
    Str(Vec<Option<String>>),
}

fn column(spec: &Json, data: &[f64], rows: usize) -> Col {
    match spec["type"].as_str().unwrap() {
        "f64" => {
            let i = spec["index"].as_u64().unwrap() as usize;
            Col::Num(data[i * rows..(i + 1) * rows].to_vec())
        }
        _ => Col::Str(
            spec["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect(),
        ),
    }
}

#[derive(Default)]
struct Worst {
    rel: f64,
    compared: usize,
}

fn close(ours: f64, theirs: f64, worst: &mut Worst) -> bool {
    worst.compared += 1;
    if ours.is_nan() || theirs.is_nan() {
        return ours.is_nan() && theirs.is_nan();
    }
    let diff = (ours - theirs).abs();
    let scale = ours.abs().max(theirs.abs());
    if scale > 1e-12 {
        worst.rel = worst.rel.max(diff / scale);
    }
    diff <= RTOL * scale + 1e-12
}

fn as_num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn check_value(ours: &Value, theirs: &Col, row: usize, worst: &mut Worst) -> Result<(), String> {
    match theirs {
        Col::Num(v) => {
            let t = v[row];
            let o = as_num(ours);
            if close(o, t, worst) {
                Ok(())
            } else {
                Err(format!("ours {o:?} ({ours:?}), JPMML {t:?}"))
            }
        }
        Col::Str(v) => {
            worst.compared += 1;
            let t = v[row].as_deref();
            let o = (!ours.is_missing()).then(|| ours.to_text());
            if o.as_deref() == t {
                Ok(())
            } else {
                Err(format!("ours {o:?}, JPMML {t:?}"))
            }
        }
    }
}

#[test]
fn parity_with_jpmml() {
    let dir = fixtures();
    let manifest: Json =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let mut failures = Vec::new();
    let mut report = Vec::new();
    for m in manifest["models"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        let rows = m["rows"].as_u64().unwrap() as usize;
        let opts = LoadOptions {
            model_file: m["file"].as_str().unwrap().to_string(),
            method: Method::Predict,
        };
        let model = match PmmlModel::from_file(&dir.join(m["file"].as_str().unwrap()), &opts) {
            Ok(model) => model,
            Err(e) => {
                failures.push(format!("{name}: load failed: {e}"));
                continue;
            }
        };
        let doc = model.document();
        let inputs_data = read_f64(&dir.join(name).join("inputs.f64"));
        let expected_data = read_f64(&dir.join(name).join("expected.f64"));
        let in_cols: Vec<(String, Col)> = m["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap().to_string(),
                    column(s, &inputs_data, rows),
                )
            })
            .collect();
        let out_cols: Vec<(String, Col)> = m["expected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap().to_string(),
                    column(s, &expected_data, rows),
                )
            })
            .collect();
        let errors = out_cols.iter().find(|(n, _)| n == "errors").map(|(_, c)| c);
        let classes = model.classes();
        let mut worst = Worst::default();
        let mut jpmml_errors = 0;
        let mut fails = 0;
        for r in 0..rows {
            let row: Vec<Option<Value>> = doc
                .inputs
                .iter()
                .map(|f| match in_cols.iter().find(|(n, _)| *n == f.name) {
                    Some((_, Col::Num(v))) => (!v[r].is_nan()).then(|| Value::Double(v[r])),
                    Some((_, Col::Str(v))) => v[r].as_deref().map(Value::str),
                    None => None,
                })
                .collect();
            let ours = model.evaluate_rows(&[row]);
            let jpmml_error = match errors {
                Some(Col::Str(v)) => v[r].clone(),
                _ => None,
            };
            if let Some(e) = jpmml_error {
                // JPMML failed on this row: we must fail too, or give no
                // prediction (JPMML cannot evaluate an output field that
                // refers to a missing prediction; we make it missing).
                jpmml_errors += 1;
                let ok = match &ours {
                    Err(_) => true,
                    Ok(res) => res[0].predicted.is_missing() && e.contains("is not defined"),
                };
                if !ok {
                    fails += 1;
                    failures.push(format!(
                        "{name} row {r}: JPMML failed ({e}) but we gave {ours:?}"
                    ));
                }
                continue;
            }
            let res: RowResult = match ours {
                Ok(mut v) => v.remove(0),
                Err(e) => {
                    fails += 1;
                    failures.push(format!("{name} row {r}: {e}"));
                    continue;
                }
            };
            for (col, theirs) in &out_cols {
                if col == "errors" {
                    continue;
                }
                let check = if doc.target.name.as_deref() == Some(col.as_str()) {
                    check_value(&res.predicted, theirs, r, &mut worst)
                } else if let Some(j) = doc.outputs.iter().position(|o| &o.name == col) {
                    check_value(&res.outputs[j], theirs, r, &mut worst)
                } else {
                    Err(format!("no output named '{col}'"))
                };
                if let Err(e) = check {
                    fails += 1;
                    if fails <= 5 {
                        failures.push(format!("{name} row {r} column '{col}': {e}"));
                    }
                }
                // probability(x) columns must also match the `probabilities` output.
                if let (Some(label), Col::Num(v)) = (
                    col.strip_prefix("probability(")
                        .and_then(|s| s.strip_suffix(')')),
                    theirs,
                ) {
                    if let Some(k) = classes.iter().position(|c| {
                        c == label
                            || c.parse::<f64>().ok() == label.parse::<f64>().ok()
                                && label.parse::<f64>().is_ok()
                    }) {
                        if !close(res.probabilities[k], v[r], &mut worst) {
                            fails += 1;
                            if fails <= 5 {
                                failures.push(format!(
                                    "{name} row {r}: probabilities[{k}] = {} but JPMML {col} = {}",
                                    res.probabilities[k], v[r]
                                ));
                            }
                        }
                    } else {
                        failures.push(format!("{name}: class '{label}' not among {classes:?}"));
                    }
                }
            }
        }
        report.push(format!(
            "{name:<28} {:<24} rows {rows:>4}  values {:>5}  worst rel {:.2e}  JPMML-error rows {jpmml_errors}  mismatches {fails}",
            doc.model.element, worst.compared, worst.rel
        ));
    }
    eprintln!("{}", report.join("\n"));
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

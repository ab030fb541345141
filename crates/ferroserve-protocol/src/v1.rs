//! KServe v1 (TensorFlow-Serving-style) prediction protocol:
//! `{"instances": [...]}` (row format) or `{"inputs": ...}` (columnar) in,
//! `{"predictions": [...]}` out.
//!
//! With one model input, each instance is that input's row. With several,
//! each instance is an object `{input_name: row}`. `inputs` is either one
//! value (single-input models) or an object `{input_name: batch}`. Element
//! types come from the model's signature. With one output, each prediction
//! is that output's row; with several, each prediction is an object
//! `{output_name: row}`.

use ferroserve_core::{
    DataType, Error, InferRequest, InferResponse, Signature, Tensor, TensorSpec,
};
use serde_json::{Map, Value};

use crate::json_data::{parse_data, FlatData};

/// Decodes a v1 `:predict` body for a model with signature `sig`.
pub fn decode_request(body: &[u8], sig: &Signature) -> Result<InferRequest, Error> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| Error::invalid(format!("malformed request JSON: {e}")))?;
    let Value::Object(mut obj) = v else {
        return Err(Error::invalid("request body must be a JSON object"));
    };
    let columns: Vec<(String, Value)> = if let Some(instances) = obj.remove("instances") {
        let Value::Array(rows) = instances else {
            return Err(Error::invalid("'instances' must be a list"));
        };
        rows_to_columns(rows, sig)?
    } else if let Some(inputs) = obj.remove("inputs") {
        match inputs {
            Value::Object(m) if sig.inputs.len() != 1 || named_single(&m, sig) => {
                m.into_iter().collect()
            }
            other => {
                let spec = single_input(sig)?;
                vec![(spec.name.clone(), other)]
            }
        }
    } else {
        return Err(Error::invalid(
            "request must have 'instances' (a list of rows) or 'inputs'",
        ));
    };
    let mut inputs = Vec::with_capacity(columns.len());
    for (name, value) in columns {
        match sig.inputs.iter().find(|s| s.name == name) {
            Some(spec) => inputs.push(column_tensor(spec, &value)?),
            None => {
                // A column named by feature (e.g. `{"instances": [{"age": 31, ...}]}` for a
                // model with one `[N, F]` input): sent on as a column of its own; the core
                // assembles feature columns into the model's matrix, or refuses the name.
                let is_text =
                    matches!(&value, Value::Array(v) if v.first().is_some_and(Value::is_string));
                let dt = if is_text {
                    DataType::Bytes
                } else {
                    DataType::F64
                };
                inputs.push(column_tensor(&TensorSpec::new(name, dt, vec![-1]), &value)?);
            }
        }
    }
    Ok(InferRequest {
        inputs,
        ..Default::default()
    })
}

fn named_single(m: &Map<String, Value>, sig: &Signature) -> bool {
    m.len() == 1 && sig.inputs.first().is_some_and(|s| m.contains_key(&s.name))
}

fn single_input(sig: &Signature) -> Result<&TensorSpec, Error> {
    match sig.inputs.as_slice() {
        [one] => Ok(one),
        _ => Err(Error::invalid(format!(
            "model has {} inputs; give each instance as an object keyed by input name ({})",
            sig.inputs.len(),
            sig.inputs
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn rows_to_columns(rows: Vec<Value>, sig: &Signature) -> Result<Vec<(String, Value)>, Error> {
    let object_rows = rows.first().is_some_and(Value::is_object);
    if !object_rows {
        let spec = single_input(sig)?;
        return Ok(vec![(spec.name.clone(), Value::Array(rows))]);
    }
    let mut cols: Vec<(String, Vec<Value>)> = Vec::new();
    for (i, row) in rows.into_iter().enumerate() {
        let Value::Object(m) = row else {
            return Err(Error::invalid(format!("instance {i} is not an object")));
        };
        if i == 0 {
            cols = m.keys().map(|k| (k.clone(), Vec::new())).collect();
        }
        if m.len() != cols.len() {
            return Err(Error::invalid(format!(
                "instance {i} has different keys than instance 0"
            )));
        }
        for (k, v) in m {
            let col = cols
                .iter_mut()
                .find(|(n, _)| *n == k)
                .ok_or_else(|| Error::invalid(format!("instance {i} has unexpected key '{k}'")))?;
            col.1.push(v);
        }
    }
    Ok(cols
        .into_iter()
        .map(|(k, v)| (k, Value::Array(v)))
        .collect())
}

/// Shape of a regular nested list; errors on ragged lists.
fn infer_shape(v: &Value, out: &mut Vec<usize>) {
    if let Value::Array(a) = v {
        out.push(a.len());
        if let Some(first) = a.first() {
            infer_shape(first, out);
        }
    }
}

fn column_tensor(spec: &TensorSpec, value: &Value) -> Result<Tensor, Error> {
    let mut shape = Vec::new();
    infer_shape(value, &mut shape);
    // A batch of scalars for a model that wants [N, 1]: add the unit dim.
    if shape.len() + 1 == spec.shape.len() && spec.shape.last() == Some(&1) {
        shape.push(1);
    }
    let text = value.to_string();
    let data = parse_data(spec.datatype, &text)
        .map_err(|e| Error::invalid(format!("input '{}': invalid data: {e}", spec.name)))?;
    Tensor::new(spec.name.clone(), spec.datatype, shape, data).map_err(|_| {
        Error::invalid(format!(
            "input '{}': rows must all have the same shape (ragged lists are not tensors)",
            spec.name
        ))
    })
}

/// Encodes a response as `{"predictions": [...]}`.
pub fn encode_response(resp: &InferResponse) -> Result<Vec<u8>, Error> {
    encode_response_with(resp, false)
}

/// Encodes a response as `{"predictions": [...]}`; with `records`, each
/// prediction is an object keyed by output name even when there is one
/// output (see `Model::v1_records`).
pub fn encode_response_with(resp: &InferResponse, records: bool) -> Result<Vec<u8>, Error> {
    let predictions = match resp.outputs.as_slice() {
        [one] if !records => rows_of(one)?,
        many => {
            let per_output: Vec<(String, Vec<Value>)> = many
                .iter()
                .map(|t| rows_of(t).map(|r| (t.name.clone(), r)))
                .collect::<Result<_, _>>()?;
            let n = per_output.first().map(|(_, r)| r.len()).unwrap_or(0);
            (0..n)
                .map(|i| {
                    let mut m = Map::new();
                    for (name, rows) in &per_output {
                        m.insert(name.clone(), rows.get(i).cloned().unwrap_or(Value::Null));
                    }
                    Value::Object(m)
                })
                .collect()
        }
    };
    let mut out = Map::new();
    out.insert("predictions".into(), Value::Array(predictions));
    serde_json::to_vec(&Value::Object(out)).map_err(|e| Error::internal(e.to_string()))
}

/// Splits a tensor along dimension 0 into JSON rows.
fn rows_of(t: &Tensor) -> Result<Vec<Value>, Error> {
    let flat = serde_json::to_value(FlatData(t)).map_err(|e| Error::internal(e.to_string()))?;
    let Value::Array(flat) = flat else {
        return Err(Error::internal("tensor did not serialize as a list"));
    };
    if t.shape.is_empty() {
        return Ok(flat);
    }
    let mut it = flat.into_iter();
    Ok(nest(&mut it, &t.shape))
}

fn nest(it: &mut impl Iterator<Item = Value>, shape: &[usize]) -> Vec<Value> {
    match shape {
        [] => Vec::new(),
        [n] => it.take(*n).collect(),
        [n, rest @ ..] => (0..*n).map(|_| Value::Array(nest(it, rest))).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(inputs: Vec<TensorSpec>) -> Signature {
        Signature {
            platform: "p".into(),
            backend: "b".into(),
            model_file: "m".into(),
            inputs,
            outputs: vec![],
        }
    }

    #[test]
    fn instances_rows() {
        let s = sig(vec![TensorSpec::new("x", DataType::F32, vec![-1, 2])]);
        let r = decode_request(br#"{"instances": [[1, 2], [3, 4], [5, 6]]}"#, &s).unwrap();
        assert_eq!(r.inputs[0].shape, vec![3, 2]);
        let r = decode_request(br#"{"inputs": [[1, 2]]}"#, &s).unwrap();
        assert_eq!(r.inputs[0].shape, vec![1, 2]);
        assert!(decode_request(br#"{"instances": [[1, 2], [3]]}"#, &s).is_err());
        assert!(decode_request(br#"{"foo": 1}"#, &s).is_err());
    }

    #[test]
    fn named_instances() {
        let s = sig(vec![
            TensorSpec::new("a", DataType::I64, vec![-1]),
            TensorSpec::new("b", DataType::Bytes, vec![-1]),
        ]);
        let r = decode_request(
            br#"{"instances": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]}"#,
            &s,
        )
        .unwrap();
        assert_eq!(r.inputs.len(), 2);
        assert_eq!(r.inputs[1].strings().unwrap().len(), 2);
    }

    #[test]
    fn predictions_rows_and_objects() {
        let y = Tensor::from_vec("y", vec![2, 2], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
        let l = Tensor::from_vec("label", vec![2], vec![1i64, 0]).unwrap();
        let one = InferResponse {
            outputs: vec![y.clone()],
            ..Default::default()
        };
        let v: Value = serde_json::from_slice(&encode_response(&one).unwrap()).unwrap();
        assert_eq!(
            v["predictions"],
            serde_json::json!([[1.0, 2.0], [3.0, 4.0]])
        );
        let two = InferResponse {
            outputs: vec![l, y],
            ..Default::default()
        };
        let v: Value = serde_json::from_slice(&encode_response(&two).unwrap()).unwrap();
        assert_eq!(
            v["predictions"][1],
            serde_json::json!({"label": 0, "y": [3.0, 4.0]})
        );
    }
}

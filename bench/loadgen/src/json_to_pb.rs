//! Turns a v2 REST JSON infer request into the equivalent gRPC `ModelInferRequest`
//! (typed `contents`, as most gRPC clients send them), so both protocols carry the same tensors.

use anyhow::{bail, Context, Result};
use ferroserve_protocol::grpc::pb;
use pb::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use serde_json::Value;

fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| flatten(x, out)),
        other => out.push(other),
    }
}

fn nums<T>(name: &str, vals: &[&Value], f: impl Fn(&Value) -> Option<T>) -> Result<Vec<T>> {
    vals.iter()
        .map(|v| f(v).with_context(|| format!("input '{name}': bad element {v}")))
        .collect()
}

fn contents(name: &str, datatype: &str, data: &Value) -> Result<pb::InferTensorContents> {
    let mut flat = Vec::new();
    flatten(data, &mut flat);
    let mut c = pb::InferTensorContents::default();
    match datatype {
        "BOOL" => c.bool_contents = nums(name, &flat, Value::as_bool)?,
        "INT8" | "INT16" | "INT32" => {
            c.int_contents = nums(name, &flat, |v| v.as_i64().map(|x| x as i32))?
        }
        "INT64" => c.int64_contents = nums(name, &flat, Value::as_i64)?,
        "UINT8" | "UINT16" | "UINT32" => {
            c.uint_contents = nums(name, &flat, |v| v.as_u64().map(|x| x as u32))?
        }
        "UINT64" => c.uint64_contents = nums(name, &flat, Value::as_u64)?,
        "FP32" => c.fp32_contents = nums(name, &flat, |v| v.as_f64().map(|x| x as f32))?,
        "FP64" => c.fp64_contents = nums(name, &flat, Value::as_f64)?,
        "BYTES" => {
            c.bytes_contents = nums(name, &flat, |v| {
                v.as_str()
                    .map(|s| bytes::Bytes::copy_from_slice(s.as_bytes()))
            })?
        }
        other => bail!("input '{name}': datatype {other} has no typed gRPC contents"),
    }
    Ok(c)
}

/// Builds the gRPC request for `model` from a v2 JSON body.
pub fn infer_request(model: &str, body: &Value) -> Result<pb::ModelInferRequest> {
    let mut req = pb::ModelInferRequest {
        model_name: model.to_string(),
        ..Default::default()
    };
    if let Some(id) = body.get("id").and_then(Value::as_str) {
        req.id = id.to_string();
    }
    let inputs = body
        .get("inputs")
        .and_then(Value::as_array)
        .context("body has no \"inputs\" array")?;
    for input in inputs {
        let name = input
            .get("name")
            .and_then(Value::as_str)
            .context("input without name")?;
        let datatype = input
            .get("datatype")
            .and_then(Value::as_str)
            .with_context(|| format!("input '{name}' without datatype"))?;
        let shape = input
            .get("shape")
            .and_then(Value::as_array)
            .with_context(|| format!("input '{name}' without shape"))?
            .iter()
            .map(|d| d.as_i64().context("bad shape"))
            .collect::<Result<Vec<_>>>()?;
        let data = input
            .get("data")
            .with_context(|| format!("input '{name}' without data"))?;
        req.inputs.push(InferInputTensor {
            name: name.to_string(),
            datatype: datatype.to_string(),
            shape,
            contents: Some(contents(name, datatype, data)?),
            ..Default::default()
        });
    }
    if let Some(outputs) = body.get("outputs").and_then(Value::as_array) {
        for o in outputs {
            if let Some(name) = o.get("name").and_then(Value::as_str) {
                req.outputs.push(InferRequestedOutputTensor {
                    name: name.to_string(),
                    ..Default::default()
                });
            }
        }
    }
    Ok(req)
}

/// Moves every input's typed `contents` into `raw_input_contents` (little-endian, BYTES as
/// 4-byte length prefixes), the form perf_analyzer and Triton's clients send.
pub fn to_raw(req: &mut pb::ModelInferRequest) -> Result<()> {
    let mut raws = Vec::new();
    for input in &mut req.inputs {
        let c = input.contents.take().unwrap_or_default();
        let mut b: Vec<u8> = Vec::new();
        match input.datatype.as_str() {
            "BOOL" => b.extend(c.bool_contents.iter().map(|&x| x as u8)),
            "INT8" => b.extend(c.int_contents.iter().map(|&x| x as i8 as u8)),
            "INT16" => c
                .int_contents
                .iter()
                .for_each(|&x| b.extend((x as i16).to_le_bytes())),
            "INT32" => c
                .int_contents
                .iter()
                .for_each(|&x| b.extend(x.to_le_bytes())),
            "INT64" => c
                .int64_contents
                .iter()
                .for_each(|&x| b.extend(x.to_le_bytes())),
            "UINT8" => b.extend(c.uint_contents.iter().map(|&x| x as u8)),
            "UINT16" => c
                .uint_contents
                .iter()
                .for_each(|&x| b.extend((x as u16).to_le_bytes())),
            "UINT32" => c
                .uint_contents
                .iter()
                .for_each(|&x| b.extend(x.to_le_bytes())),
            "UINT64" => c
                .uint64_contents
                .iter()
                .for_each(|&x| b.extend(x.to_le_bytes())),
            "FP32" => c
                .fp32_contents
                .iter()
                .for_each(|&x| b.extend(x.to_le_bytes())),
            "FP64" => c
                .fp64_contents
                .iter()
                .for_each(|&x| b.extend(x.to_le_bytes())),
            "BYTES" => c.bytes_contents.iter().for_each(|x| {
                b.extend((x.len() as u32).to_le_bytes());
                b.extend_from_slice(x);
            }),
            other => bail!("datatype {other} not supported in raw form"),
        }
        raws.push(bytes::Bytes::from(b));
    }
    req.raw_input_contents = raws;
    Ok(())
}

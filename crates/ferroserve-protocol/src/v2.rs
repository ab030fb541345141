//! Open Inference Protocol v2 over REST: JSON bodies and Triton's binary
//! tensor data extension, in both directions.
//!
//! A binary request body is `JSON header || tensor bytes`, where the
//! `Inference-Header-Content-Length` HTTP header gives the JSON length and
//! each input with a `binary_data_size` parameter takes that many bytes, in
//! input order. `BYTES` elements in binary form carry a 4-byte
//! little-endian length prefix each.

use bytes::Bytes;
use ferroserve_core::tensor::concrete_shape;
use ferroserve_core::{
    DataType, Error, InferRequest, InferResponse, ParamValue, Parameters, RequestedOutput, Tensor,
    TensorData,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::json_data::{parse_data, FlatData};

/// HTTP header carrying the JSON length of a binary body.
pub const HEADER_CONTENT_LENGTH: &str = "inference-header-content-length";

#[derive(Deserialize)]
struct JsonRequest<'a> {
    #[serde(default)]
    id: Option<IdValue>,
    #[serde(default)]
    parameters: Option<Parameters>,
    #[serde(borrow)]
    inputs: Vec<JsonInput<'a>>,
    #[serde(default)]
    outputs: Option<Vec<JsonOutput>>,
}

/// Request ids are strings in the protocol; numbers are accepted too.
#[derive(Deserialize)]
#[serde(untagged)]
enum IdValue {
    Str(String),
    Int(i64),
}

#[derive(Deserialize)]
struct JsonInput<'a> {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<Parameters>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct JsonOutput {
    name: String,
    #[serde(default)]
    parameters: Option<Parameters>,
}

/// Splits a possibly binary body into its JSON part and binary remainder.
pub fn split_body(body: &Bytes, header_len: Option<&str>) -> Result<(Bytes, Bytes), Error> {
    match header_len {
        None => Ok((body.clone(), Bytes::new())),
        Some(h) => {
            let n: usize = h.trim().parse().map_err(|_| {
                Error::invalid(format!("invalid Inference-Header-Content-Length '{h}'"))
            })?;
            if n > body.len() {
                return Err(Error::invalid(format!(
                    "Inference-Header-Content-Length is {n} but the body has only {} bytes",
                    body.len()
                )));
            }
            Ok((body.slice(..n), body.slice(n..)))
        }
    }
}

/// Decodes a v2 infer request body. `header_len` is the value of the
/// `Inference-Header-Content-Length` header, if present.
pub fn decode_request(body: &Bytes, header_len: Option<&str>) -> Result<InferRequest, Error> {
    let (json, mut binary) = split_body(body, header_len)?;
    let text = std::str::from_utf8(&json)
        .map_err(|_| Error::invalid("request JSON is not valid UTF-8"))?;
    let req: JsonRequest = serde_json::from_str(text)
        .map_err(|e| Error::invalid(format!("malformed request JSON: {e}")))?;
    let mut inputs = Vec::with_capacity(req.inputs.len());
    for input in req.inputs {
        let dt: DataType =
            input
                .datatype
                .parse()
                .map_err(|e: ferroserve_core::datatype::UnknownDataType| {
                    Error::invalid(e.to_string())
                })?;
        let shape = concrete_shape(&input.name, &input.shape)?;
        let params = input.parameters.unwrap_or_default();
        let binary_size = params.get("binary_data_size");
        let data = match (binary_size, input.data) {
            (Some(size), None) => {
                let size = size.as_u64().ok_or_else(|| {
                    Error::invalid(format!(
                        "input '{}': binary_data_size must be a non-negative integer",
                        input.name
                    ))
                })?;
                let size = usize::try_from(size).unwrap_or(usize::MAX);
                if size > binary.len() {
                    return Err(Error::invalid(format!(
                        "input '{}': binary_data_size is {size} but only {} bytes of binary data remain",
                        input.name,
                        binary.len()
                    )));
                }
                let chunk = binary.split_to(size);
                binary_to_data(&input.name, dt, chunk)?
            }
            (Some(_), Some(_)) => {
                return Err(Error::invalid(format!(
                    "input '{}' has both 'data' and binary_data_size",
                    input.name
                )))
            }
            (None, Some(raw)) => parse_data(dt, raw.get()).map_err(|e| {
                Error::invalid(format!("input '{}': invalid data: {e}", input.name))
            })?,
            (None, None) => {
                return Err(Error::invalid(format!(
                    "input '{}' has neither 'data' nor a binary_data_size parameter",
                    input.name
                )))
            }
        };
        let mut t = Tensor::new(input.name, dt, shape, data)?;
        t.parameters = params;
        inputs.push(t);
    }
    if !binary.is_empty() {
        return Err(Error::invalid(format!(
            "{} bytes of binary data follow the request JSON but no input claims them",
            binary.len()
        )));
    }
    let outputs = req
        .outputs
        .unwrap_or_default()
        .into_iter()
        .map(|o| RequestedOutput {
            name: o.name,
            parameters: o.parameters.unwrap_or_default(),
        })
        .collect();
    Ok(InferRequest {
        id: req.id.map(|id| match id {
            IdValue::Str(s) => s,
            IdValue::Int(i) => i.to_string(),
        }),
        parameters: req.parameters.unwrap_or_default(),
        inputs,
        outputs,
    })
}

/// Turns raw wire bytes of one tensor into tensor data (BYTES elements are
/// length-prefixed).
pub fn binary_to_data(name: &str, dt: DataType, chunk: Bytes) -> Result<TensorData, Error> {
    if dt != DataType::Bytes {
        return Ok(TensorData::Raw(chunk));
    }
    let mut out = Vec::new();
    let mut rest = chunk;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(Error::invalid(format!(
                "input '{name}': truncated BYTES element length"
            )));
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if rest.len() - 4 < len {
            return Err(Error::invalid(format!(
                "input '{name}': BYTES element of {len} bytes runs past the end of its data"
            )));
        }
        out.push(rest.slice(4..4 + len));
        rest = rest.slice(4 + len..);
    }
    Ok(TensorData::Strings(out))
}

/// Appends one tensor's wire bytes (BYTES elements length-prefixed).
pub fn append_binary(out: &mut Vec<u8>, t: &Tensor) {
    match &t.data {
        TensorData::Raw(b) => out.extend_from_slice(b),
        TensorData::Strings(v) => {
            for s in v {
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s);
            }
        }
    }
}

#[derive(Serialize)]
struct JsonResponse<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Parameters::is_empty")]
    parameters: &'a Parameters,
    outputs: Vec<JsonOutputTensor<'a>>,
}

#[derive(Serialize)]
struct JsonOutputTensor<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: Vec<i64>,
    #[serde(skip_serializing_if = "Parameters::is_empty")]
    parameters: Parameters,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<FlatData<'a>>,
}

/// An encoded response body.
#[derive(Debug)]
pub struct EncodedResponse {
    /// The body bytes.
    pub body: Vec<u8>,
    /// JSON length when binary data follows (for `Inference-Header-Content-Length`).
    pub json_len: Option<usize>,
}

/// Whether output `t` goes out as binary: its own `binary_data` parameter
/// (from the requested output) wins, else the request's `binary_data_output`.
fn wants_binary(t: &Tensor, request_params: &Parameters) -> bool {
    t.parameters
        .get("binary_data")
        .and_then(ParamValue::as_bool)
        .or_else(|| {
            request_params
                .get("binary_data_output")
                .and_then(ParamValue::as_bool)
        })
        .unwrap_or(false)
}

/// Encodes a response; outputs asked for as binary follow the JSON.
pub fn encode_response(resp: &InferResponse, request_params: &Parameters) -> EncodedResponse {
    let mut binary = Vec::new();
    let mut outputs = Vec::with_capacity(resp.outputs.len());
    for t in &resp.outputs {
        let mut params: Parameters = t
            .parameters
            .iter()
            .filter(|(k, _)| k.as_str() != "binary_data")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let data = if wants_binary(t, request_params) {
            let before = binary.len();
            append_binary(&mut binary, t);
            params.insert(
                "binary_data_size".into(),
                ParamValue::Int((binary.len() - before) as i64),
            );
            None
        } else {
            Some(FlatData(t))
        };
        outputs.push(JsonOutputTensor {
            name: &t.name,
            datatype: t.datatype.as_str(),
            shape: t.wire_shape(),
            parameters: params,
            data,
        });
    }
    let json = JsonResponse {
        model_name: &resp.model_name,
        model_version: &resp.model_version,
        id: resp.id.as_deref(),
        parameters: &resp.parameters,
        outputs,
    };
    let mut body = serde_json::to_vec(&json).unwrap_or_else(|e| {
        format!("{{\"error\":\"failed to encode response: {e}\"}}").into_bytes()
    });
    if binary.is_empty() {
        EncodedResponse {
            body,
            json_len: None,
        }
    } else {
        let json_len = body.len();
        body.extend_from_slice(&binary);
        EncodedResponse {
            body,
            json_len: Some(json_len),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_request_decodes() {
        let body = Bytes::from_static(
            br#"{"id":"r1","inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,4]]}],"outputs":[{"name":"y","parameters":{"binary_data":true}}]}"#,
        );
        let r = decode_request(&body, None).unwrap();
        assert_eq!(r.id.as_deref(), Some("r1"));
        assert_eq!(
            r.inputs[0].to_vec::<f32>().unwrap(),
            vec![1.0, 2.0, 3.0, 4.0]
        );
        assert_eq!(r.outputs[0].name, "y");
    }

    #[test]
    fn binary_request_decodes_and_checks_lengths() {
        let json = br#"{"inputs":[{"name":"x","shape":[2],"datatype":"INT32","parameters":{"binary_data_size":8}},{"name":"s","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":11}}]}"#;
        let mut body = json.to_vec();
        body.extend_from_slice(&7i32.to_le_bytes());
        body.extend_from_slice(&(-1i32).to_le_bytes());
        body.extend_from_slice(&2u32.to_le_bytes());
        body.extend_from_slice(b"ab");
        body.extend_from_slice(&1u32.to_le_bytes());
        body.extend_from_slice(b"c");
        let hl = json.len().to_string();
        let r = decode_request(&Bytes::from(body.clone()), Some(&hl)).unwrap();
        assert_eq!(r.inputs[0].to_vec::<i32>().unwrap(), vec![7, -1]);
        assert_eq!(
            r.inputs[1].strings().unwrap(),
            &[Bytes::from("ab"), Bytes::from("c")]
        );
        // Too short, too long, header past the end.
        let short = Bytes::from(body[..body.len() - 1].to_vec());
        assert!(decode_request(&short, Some(&hl)).is_err());
        let mut long = body.clone();
        long.push(0);
        assert!(decode_request(&Bytes::from(long), Some(&hl)).is_err());
        assert!(decode_request(&Bytes::from(body), Some("100000")).is_err());
    }

    #[test]
    fn shape_mismatch_rejected() {
        let body = Bytes::from_static(
            br#"{"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[1,2]}]}"#,
        );
        let e = decode_request(&body, None).unwrap_err();
        assert!(e.to_string().contains("needs 12 bytes"), "{e}");
    }

    #[test]
    fn response_binary_and_json() {
        let mut t = Tensor::from_vec("y", vec![2], vec![1.5f32, 2.0]).unwrap();
        t.parameters
            .insert("binary_data".into(), ParamValue::Bool(true));
        let resp = InferResponse {
            model_name: "m".into(),
            model_version: "1".into(),
            id: None,
            parameters: Parameters::new(),
            outputs: vec![t, Tensor::from_vec("z", vec![1], vec![3i64]).unwrap()],
        };
        let enc = encode_response(&resp, &Parameters::new());
        let n = enc.json_len.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&enc.body[..n]).unwrap();
        assert_eq!(v["outputs"][0]["parameters"]["binary_data_size"], 8);
        assert!(v["outputs"][0].get("data").is_none());
        assert_eq!(v["outputs"][1]["data"][0], 3);
        assert!(v.get("id").is_none() && v.get("parameters").is_none());
        assert_eq!(enc.body.len(), n + 8);
    }
}

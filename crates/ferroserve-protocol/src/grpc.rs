//! Open Inference Protocol v2 over gRPC: the generated messages and
//! service, and conversions between them and the core request/response.

use bytes::Bytes;
use ferroserve_core::tensor::concrete_shape;
use ferroserve_core::{
    DataType, Error, InferRequest, InferResponse, ParamValue, Parameters, RequestedOutput, Tensor,
    TensorData,
};

use crate::v2::{append_binary, binary_to_data};

/// Messages and service of `package inference`, generated at build time.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("inference");
}

/// The encoded file descriptor set of the vendored protos (for reflection).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/inference_descriptor.bin"));

use pb::infer_parameter::ParameterChoice;

/// Converts a protobuf parameter map.
pub fn params_from_pb(p: std::collections::HashMap<String, pb::InferParameter>) -> Parameters {
    p.into_iter()
        .filter_map(|(k, v)| {
            let value = match v.parameter_choice? {
                ParameterChoice::BoolParam(b) => ParamValue::Bool(b),
                ParameterChoice::Int64Param(i) => ParamValue::Int(i),
                ParameterChoice::StringParam(s) => ParamValue::String(s),
                ParameterChoice::DoubleParam(d) => ParamValue::Double(d),
                ParameterChoice::Uint64Param(u) => ParamValue::Uint(u),
            };
            Some((k, value))
        })
        .collect()
}

/// Converts parameters into a protobuf parameter map.
pub fn params_to_pb(p: &Parameters) -> std::collections::HashMap<String, pb::InferParameter> {
    p.iter()
        .map(|(k, v)| {
            let choice = match v {
                ParamValue::Bool(b) => ParameterChoice::BoolParam(*b),
                ParamValue::Int(i) => ParameterChoice::Int64Param(*i),
                ParamValue::Uint(u) => ParameterChoice::Uint64Param(*u),
                ParamValue::Double(d) => ParameterChoice::DoubleParam(*d),
                ParamValue::String(s) => ParameterChoice::StringParam(s.clone()),
            };
            (
                k.clone(),
                pb::InferParameter {
                    parameter_choice: Some(choice),
                },
            )
        })
        .collect()
}

fn contents_to_data(
    name: &str,
    dt: DataType,
    c: pb::InferTensorContents,
) -> Result<TensorData, Error> {
    fn pack<T: bytemuck::Pod>(v: Vec<T>) -> TensorData {
        TensorData::Raw(Bytes::from(bytemuck::cast_slice::<T, u8>(&v).to_vec()))
    }
    fn narrow<S: Copy + std::fmt::Display, T: TryFrom<S> + bytemuck::Pod>(
        name: &str,
        dt: DataType,
        v: Vec<S>,
    ) -> Result<TensorData, Error> {
        let out: Result<Vec<T>, Error> = v
            .into_iter()
            .map(|x| {
                T::try_from(x).map_err(|_| {
                    Error::invalid(format!("input '{name}': value {x} out of range for {dt}"))
                })
            })
            .collect();
        Ok(pack(out?))
    }
    Ok(match dt {
        DataType::Bool => TensorData::Raw(c.bool_contents.into_iter().map(u8::from).collect()),
        DataType::U8 => narrow::<u32, u8>(name, dt, c.uint_contents)?,
        DataType::U16 => narrow::<u32, u16>(name, dt, c.uint_contents)?,
        DataType::U32 => pack(c.uint_contents),
        DataType::U64 => pack(c.uint64_contents),
        DataType::I8 => narrow::<i32, i8>(name, dt, c.int_contents)?,
        DataType::I16 => narrow::<i32, i16>(name, dt, c.int_contents)?,
        DataType::I32 => pack(c.int_contents),
        DataType::I64 => pack(c.int64_contents),
        DataType::F32 => pack(c.fp32_contents),
        DataType::F64 => pack(c.fp64_contents),
        DataType::Bytes => TensorData::Strings(c.bytes_contents),
        DataType::F16 | DataType::BF16 => {
            return Err(Error::invalid(format!(
                "input '{name}': {dt} data must be sent as raw_input_contents"
            )))
        }
    })
}

/// Converts a gRPC infer request into the core request.
pub fn request_from_pb(req: pb::ModelInferRequest) -> Result<InferRequest, Error> {
    let raw = req.raw_input_contents;
    if !raw.is_empty() && raw.len() != req.inputs.len() {
        return Err(Error::invalid(format!(
            "raw_input_contents has {} entries for {} inputs",
            raw.len(),
            req.inputs.len()
        )));
    }
    let mut raw = raw.into_iter();
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
        let data = match (raw.next(), input.contents) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid(format!(
                    "input '{}' has both contents and raw_input_contents",
                    input.name
                )))
            }
            (Some(bytes), None) => binary_to_data(&input.name, dt, bytes)?,
            (None, Some(c)) => contents_to_data(&input.name, dt, c)?,
            (None, None) => {
                return Err(Error::invalid(format!(
                    "input '{}' has no data",
                    input.name
                )))
            }
        };
        let mut t = Tensor::new(input.name, dt, shape, data)?;
        t.parameters = params_from_pb(input.parameters);
        inputs.push(t);
    }
    Ok(InferRequest {
        id: Some(req.id).filter(|s| !s.is_empty()),
        parameters: params_from_pb(req.parameters),
        inputs,
        outputs: req
            .outputs
            .into_iter()
            .map(|o| RequestedOutput {
                name: o.name,
                parameters: params_from_pb(o.parameters),
            })
            .collect(),
    })
}

/// Converts a core response into a gRPC response, with every output in
/// `raw_output_contents` (as Triton answers).
pub fn response_to_pb(resp: InferResponse) -> pb::ModelInferResponse {
    let mut outputs = Vec::with_capacity(resp.outputs.len());
    let mut raw = Vec::with_capacity(resp.outputs.len());
    for t in resp.outputs {
        let shape = t.wire_shape();
        let parameters = params_to_pb(&t.parameters);
        let bytes = match t.data {
            TensorData::Raw(b) => b,
            TensorData::Strings(_) => {
                let mut v = Vec::with_capacity(t.binary_size());
                append_binary(&mut v, &t);
                Bytes::from(v)
            }
        };
        outputs.push(pb::model_infer_response::InferOutputTensor {
            name: t.name,
            datatype: t.datatype.as_str().to_string(),
            shape,
            parameters,
            contents: None,
        });
        raw.push(bytes);
    }
    pb::ModelInferResponse {
        model_name: resp.model_name,
        model_version: resp.model_version,
        id: resp.id.unwrap_or_default(),
        parameters: params_to_pb(&resp.parameters),
        outputs,
        raw_output_contents: raw,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::model_infer_request::InferInputTensor;

    #[test]
    fn typed_contents_and_raw() {
        let req = pb::ModelInferRequest {
            model_name: "m".into(),
            inputs: vec![InferInputTensor {
                name: "x".into(),
                datatype: "INT8".into(),
                shape: vec![2],
                contents: Some(pb::InferTensorContents {
                    int_contents: vec![1, -2],
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let r = request_from_pb(req.clone()).unwrap();
        assert_eq!(r.inputs[0].to_vec::<i8>().unwrap(), vec![1, -2]);
        let mut bad = req.clone();
        bad.inputs[0].contents.as_mut().unwrap().int_contents = vec![1, 300];
        assert!(request_from_pb(bad).is_err());
        let mut raw = req;
        raw.inputs[0].contents = None;
        raw.raw_input_contents = vec![Bytes::from_static(&[1, 2, 3])];
        assert!(request_from_pb(raw).is_err(), "3 bytes for 2 INT8 elements");
    }
}

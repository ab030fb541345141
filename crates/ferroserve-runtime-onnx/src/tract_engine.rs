//! The tract engine: pure Rust, always available, but without most of
//! `ai.onnx.ml` and without bfloat16.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use ferroserve_core::{DataType, Error, Signature, Tensor, TensorData};
use tract_onnx::pb;
use tract_onnx::prelude::*;

use crate::ort_library::INSTALL_HINT;
use crate::proto;

/// A model compiled by tract. The plan is immutable and each run makes its own
/// state, so `infer` runs concurrently without locks.
pub(crate) struct TractModel {
    plan: Arc<TypedRunnableModel>,
    /// Per signature input: the tract datum type to build.
    input_types: Vec<DatumType>,
    /// Per signature output: the tract datum type to hand back.
    output_types: Vec<DatumType>,
}

fn datum_of(dt: DataType) -> Option<DatumType> {
    Some(match dt {
        DataType::Bool => DatumType::Bool,
        DataType::U8 => DatumType::U8,
        DataType::U16 => DatumType::U16,
        DataType::U32 => DatumType::U32,
        DataType::U64 => DatumType::U64,
        DataType::I8 => DatumType::I8,
        DataType::I16 => DatumType::I16,
        DataType::I32 => DatumType::I32,
        DataType::I64 => DatumType::I64,
        DataType::F16 => DatumType::F16,
        DataType::F32 => DatumType::F32,
        DataType::F64 => DatumType::F64,
        DataType::Bytes => DatumType::String,
        DataType::BF16 => return None,
    })
}

fn use_ort_hint() -> String {
    format!("to serve it, {INSTALL_HINT}, and set the model parameter `engine: ort` (or leave it at `auto`)")
}

/// Loads `path` with tract. Returns the model and its signature (from the
/// ONNX declarations, the same as the `ort` engine reports).
///
/// tract trusts parts of the graph (e.g. that every declared output is
/// produced by some node) and panics on files that break them; a panic
/// during the load becomes a load error here, so that a corrupt model file
/// cannot take the server down.
pub(crate) fn load(path: &Path, file_name: &str) -> Result<(TractModel, Signature), Error> {
    ferroserve_core::contain::contain(|| load_unguarded(path, file_name)).unwrap_or_else(|panic| {
        Err(Error::Load(format!(
            "{}: tract could not read the model (it is corrupt or uses a construct tract does not \
             handle): {panic}",
            path.display()
        )))
    })
}

fn load_unguarded(path: &Path, file_name: &str) -> Result<(TractModel, Signature), Error> {
    let mut model_proto = proto::read_model(path)?;
    let onnx = tract_onnx::onnx();
    let graph = model_proto
        .graph
        .as_mut()
        .ok_or_else(|| Error::Load(format!("{}: the model holds no graph", path.display())))?;

    let missing = proto::unsupported_ops(graph, &|op| onnx.op_register.0.contains_key(op));
    if !missing.is_empty() {
        return Err(Error::Load(format!(
            "{}: the tract engine does not implement operator(s) {}; {}",
            path.display(),
            missing.join(", "),
            use_ort_hint()
        )));
    }

    let signature = signature(graph, file_name, path)?;
    for spec in signature.inputs.iter().chain(&signature.outputs) {
        if spec.datatype == DataType::BF16 {
            return Err(Error::Load(format!(
                "{}: tensor '{}' is bfloat16, which the tract engine does not support; {}",
                path.display(),
                spec.name,
                use_ort_hint()
            )));
        }
    }
    let datum = |spec: &ferroserve_core::TensorSpec| {
        datum_of(spec.datatype).ok_or_else(|| {
            Error::Load(format!(
                "tensor '{}': datatype {} unsupported by tract",
                spec.name, spec.datatype
            ))
        })
    };
    let input_types = signature
        .inputs
        .iter()
        .map(datum)
        .collect::<Result<Vec<_>, _>>()?;
    let output_types = signature
        .outputs
        .iter()
        .map(datum)
        .collect::<Result<Vec<_>, _>>()?;

    proto::name_unknown_input_dims(graph);
    let dir = path.parent().and_then(Path::to_str);
    let parsed = onnx.parse(&model_proto, dir).map_err(|e| {
        Error::Load(format!(
            "{}: tract could not read the graph: {e:#}",
            path.display()
        ))
    })?;
    if !parsed.unresolved_inputs.is_empty() {
        return Err(Error::Load(format!(
            "{}: the graph uses values no node produces: {:?}",
            path.display(),
            parsed.unresolved_inputs
        )));
    }
    let model = parsed.model;
    if model.inputs.len() != signature.inputs.len()
        || model.outputs.len() != signature.outputs.len()
    {
        return Err(Error::Load(format!(
            "{}: tract sees {} inputs and {} outputs, the graph declares {} and {}",
            path.display(),
            model.inputs.len(),
            model.outputs.len(),
            signature.inputs.len(),
            signature.outputs.len()
        )));
    }
    let plan = model
        .into_optimized()
        .and_then(|m| m.into_runnable())
        .map_err(|e| {
            Error::Load(format!(
                "{}: tract could not compile the graph: {e:#}. If the model is valid, {}",
                path.display(),
                use_ort_hint()
            ))
        })?;
    Ok((
        TractModel {
            plan,
            input_types,
            output_types,
        },
        signature,
    ))
}

fn signature(graph: &pb::GraphProto, file_name: &str, path: &Path) -> Result<Signature, Error> {
    let ctx = |e: Error| match e {
        Error::Load(m) => Error::Load(format!("{}: {m}", path.display())),
        other => other,
    };
    let inputs = proto::real_inputs(graph)
        .map(|vi| proto::tensor_spec(vi, "input"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ctx)?;
    let outputs = graph
        .output
        .iter()
        .map(|vi| {
            proto::tensor_spec(vi, "output").map_err(|e| match e {
                Error::Load(m) => Error::Load(format!(
                    "{m}; the tract engine serves tensors only, {}",
                    use_ort_hint()
                )),
                other => other,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(ctx)?;
    Ok(crate::make_signature(file_name, inputs, outputs))
}

impl TractModel {
    /// Runs the plan on validated inputs (signature order).
    pub(crate) fn infer(
        &self,
        signature: &Signature,
        inputs: Vec<Tensor>,
    ) -> Result<Vec<Tensor>, Error> {
        if inputs.len() != self.input_types.len() {
            return Err(Error::invalid(format!(
                "expected {} inputs, got {}",
                self.input_types.len(),
                inputs.len()
            )));
        }
        let mut values: TVec<TValue> = TVec::with_capacity(inputs.len());
        for (input, &dt) in inputs.iter().zip(&self.input_types) {
            values.push(to_tract(input, dt)?.into_tvalue());
        }
        // A panic inside tract fails this request, not the server.
        let outputs = ferroserve_core::contain::contain(|| self.plan.run(values))
            .map_err(|panic| Error::internal(format!("tract failed to run the model: {panic}")))?
            .map_err(|e| Error::internal(format!("tract failed to run the model: {e:#}")))?;
        if outputs.len() != signature.outputs.len() {
            return Err(Error::internal(format!(
                "tract returned {} outputs, the model declares {}",
                outputs.len(),
                signature.outputs.len()
            )));
        }
        outputs
            .iter()
            .zip(&signature.outputs)
            .zip(&self.output_types)
            .map(|((value, spec), &dt)| from_tract(value, &spec.name, spec.datatype, dt))
            .collect()
    }
}

/// One copy: request bytes (maybe unaligned) into an aligned tract tensor.
fn to_tract(input: &Tensor, dt: DatumType) -> Result<tract_onnx::prelude::Tensor, Error> {
    let err = |e: TractError| Error::internal(format!("input '{}': {e:#}", input.name));
    match &input.data {
        TensorData::Raw(bytes) if dt == DatumType::Bool => {
            let mut t =
                tract_onnx::prelude::Tensor::zero_dt(DatumType::Bool, &input.shape).map_err(err)?;
            let mut plain = t.try_as_plain_ram_mut().map_err(err)?;
            let dst = plain.as_slice_mut::<bool>().map_err(err)?;
            if dst.len() != bytes.len() {
                return Err(Error::invalid(format!(
                    "input '{}': wrong byte size",
                    input.name
                )));
            }
            for (d, &b) in dst.iter_mut().zip(bytes.iter()) {
                *d = b != 0;
            }
            Ok(t)
        }
        TensorData::Raw(bytes) => {
            // SAFETY: `dt` is a plain-old-data type (never String/TDim/Blob
            // here) and `from_raw_dt` checks that the length fits the shape.
            unsafe { tract_onnx::prelude::Tensor::from_raw_dt(dt, &input.shape, bytes) }
                .map_err(err)
        }
        TensorData::Strings(items) => {
            if dt != DatumType::String {
                return Err(Error::invalid(format!(
                    "input '{}': expected {dt:?} data, got strings",
                    input.name
                )));
            }
            let strings = items
                .iter()
                .map(|b| {
                    std::str::from_utf8(b).map(str::to_owned).map_err(|_| {
                        Error::invalid(format!(
                            "input '{}': the tract engine takes UTF-8 strings only",
                            input.name
                        ))
                    })
                })
                .collect::<Result<Vec<String>, Error>>()?;
            let array =
                tract_ndarray::ArrayD::from_shape_vec(tract_ndarray::IxDyn(&input.shape), strings)
                    .map_err(|e| Error::invalid(format!("input '{}': {e}", input.name)))?;
            Ok(array.into())
        }
    }
}

fn from_tract(
    value: &TValue,
    name: &str,
    datatype: DataType,
    dt: DatumType,
) -> Result<Tensor, Error> {
    let err = |e: TractError| Error::internal(format!("output '{name}': {e:#}"));
    let tensor: &tract_onnx::prelude::Tensor = value;
    // tract computes shapes as TDim and may widen or narrow types; bring
    // the value back to the declared type.
    let tensor = if tensor.datum_type() == DatumType::TDim && dt == DatumType::I64 {
        let plain = tensor.try_as_plain_ram().map_err(err)?;
        let dims = plain.as_slice::<TDim>().map_err(err)?;
        let ints = dims
            .iter()
            .map(|d| d.to_i64())
            .collect::<Result<Vec<i64>, _>>()
            .map_err(|e| Error::internal(format!("output '{name}': {e:?}")))?;
        std::borrow::Cow::Owned(
            tract_onnx::prelude::Tensor::from_shape(tensor.shape(), &ints).map_err(err)?,
        )
    } else if tensor.datum_type().unquantized() != dt {
        tensor.cast_to_dt(dt).map_err(err)?
    } else {
        std::borrow::Cow::Borrowed(tensor)
    };
    let shape = tensor.shape().to_vec();
    let plain = tensor.try_as_plain_ram().map_err(err)?;
    let data = if dt == DatumType::String {
        let strings = plain.as_slice::<String>().map_err(err)?;
        TensorData::Strings(
            strings
                .iter()
                .map(|s| Bytes::copy_from_slice(s.as_bytes()))
                .collect(),
        )
    } else {
        TensorData::Raw(Bytes::copy_from_slice(plain.as_bytes()))
    };
    Tensor::new(name, datatype, shape, data)
        .map_err(|e| Error::internal(format!("output '{name}': {e}")))
}

//! Reading what we need straight from the ONNX protobuf: declared inputs and
//! outputs, ZipMap class labels, and the operators a graph uses.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use ferroserve_core::{DataType, Error, TensorSpec};
use tract_onnx::pb;
use tract_onnx::pb::tensor_shape_proto::dimension::Value as DimValue;
use tract_onnx::prelude::Framework;

/// ONNX `TensorProto.DataType` codes.
pub(crate) mod elem {
    pub const FLOAT: i32 = 1;
    pub const UINT8: i32 = 2;
    pub const INT8: i32 = 3;
    pub const UINT16: i32 = 4;
    pub const INT16: i32 = 5;
    pub const INT32: i32 = 6;
    pub const INT64: i32 = 7;
    pub const STRING: i32 = 8;
    pub const BOOL: i32 = 9;
    pub const FLOAT16: i32 = 10;
    pub const DOUBLE: i32 = 11;
    pub const UINT32: i32 = 12;
    pub const UINT64: i32 = 13;
    pub const BFLOAT16: i32 = 16;
}

/// Maps an ONNX element type code onto a protocol datatype.
pub(crate) fn datatype_of_elem(code: i32) -> Option<DataType> {
    Some(match code {
        elem::FLOAT => DataType::F32,
        elem::UINT8 => DataType::U8,
        elem::INT8 => DataType::I8,
        elem::UINT16 => DataType::U16,
        elem::INT16 => DataType::I16,
        elem::INT32 => DataType::I32,
        elem::INT64 => DataType::I64,
        elem::STRING => DataType::Bytes,
        elem::BOOL => DataType::Bool,
        elem::FLOAT16 => DataType::F16,
        elem::DOUBLE => DataType::F64,
        elem::UINT32 => DataType::U32,
        elem::UINT64 => DataType::U64,
        elem::BFLOAT16 => DataType::BF16,
        _ => return None,
    })
}

/// Human name of an ONNX element type code, for messages.
pub(crate) fn elem_name(code: i32) -> String {
    pb::tensor_proto::DataType::try_from(code)
        .map(|d| d.as_str_name().to_string())
        .unwrap_or_else(|_| format!("element type {code}"))
}

/// Decodes `model.onnx` (memory-mapped). A corrupt file gives a load error.
pub(crate) fn read_model(path: &Path) -> Result<pb::ModelProto, Error> {
    let proto = tract_onnx::onnx()
        .proto_model_for_path(path)
        .map_err(|e| Error::Load(format!("{}: not a valid ONNX model: {e:#}", path.display())))?;
    if proto.graph.is_none() {
        return Err(Error::Load(format!(
            "{}: not a valid ONNX model: it holds no graph",
            path.display()
        )));
    }
    Ok(proto)
}

/// The graph inputs that are real inputs (not initializers, which IR ≥ 4 may
/// also list as inputs).
pub(crate) fn real_inputs(graph: &pb::GraphProto) -> impl Iterator<Item = &pb::ValueInfoProto> {
    let inits: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    graph
        .input
        .iter()
        .filter(move |i| !inits.contains(i.name.as_str()))
}

/// Shape with -1 for every dimension that is not a fixed size.
fn spec_shape(t: &pb::type_proto::Tensor) -> Vec<i64> {
    t.shape
        .as_ref()
        .map(|s| {
            s.dim
                .iter()
                .map(|d| match d.value {
                    Some(DimValue::DimValue(v)) if v >= 0 => v,
                    _ => -1,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The spec of a declared tensor input or output.
pub(crate) fn tensor_spec(vi: &pb::ValueInfoProto, what: &str) -> Result<TensorSpec, Error> {
    let Some(pb::type_proto::Value::TensorType(t)) =
        vi.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err(Error::Load(format!(
            "{what} '{}' is not a tensor (a sequence, map or optional value)",
            vi.name
        )));
    };
    let datatype = datatype_of_elem(t.elem_type).ok_or_else(|| {
        Error::Load(format!(
            "{what} '{}' has element type {}, which ferroserve does not serve",
            vi.name,
            elem_name(t.elem_type)
        ))
    })?;
    Ok(TensorSpec::new(vi.name.clone(), datatype, spec_shape(t)))
}

/// The ZipMap class labels behind `output`, when a ZipMap node writes it:
/// sorted ascending and rendered as JSON values (`0`, `"a"`).
pub(crate) fn zipmap_keys(graph: &pb::GraphProto, output: &str) -> Option<ZipMapKeys> {
    let node = graph
        .node
        .iter()
        .find(|n| n.op_type == "ZipMap" && n.output.first().map(String::as_str) == Some(output))?;
    for attr in &node.attribute {
        match attr.name.as_str() {
            "classlabels_int64s" if !attr.ints.is_empty() => {
                let mut keys = attr.ints.clone();
                keys.sort_unstable();
                return Some(ZipMapKeys::Int(keys));
            }
            "classlabels_strings" if !attr.strings.is_empty() => {
                let mut keys: Vec<String> = attr
                    .strings
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect();
                keys.sort_unstable();
                return Some(ZipMapKeys::Str(keys));
            }
            _ => {}
        }
    }
    None
}

/// The sorted keys of a ZipMap output.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ZipMapKeys {
    /// Integer class labels.
    Int(Vec<i64>),
    /// String class labels.
    Str(Vec<String>),
}

impl ZipMapKeys {
    /// Number of classes.
    pub(crate) fn len(&self) -> usize {
        match self {
            ZipMapKeys::Int(v) => v.len(),
            ZipMapKeys::Str(v) => v.len(),
        }
    }

    /// The keys as a JSON array (`[0,1,2]`, `["a","b"]`).
    pub(crate) fn to_json(&self) -> String {
        match self {
            ZipMapKeys::Int(v) => serde_json::to_string(v),
            ZipMapKeys::Str(v) => serde_json::to_string(v),
        }
        .unwrap_or_else(|_| "[]".to_string())
    }
}

/// Operators of `graph` (and of its subgraphs) that `known` does not hold,
/// as `op (node 'name', domain d)` descriptions, deduplicated by op.
pub(crate) fn unsupported_ops(graph: &pb::GraphProto, known: &dyn Fn(&str) -> bool) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    collect_unsupported(graph, known, &mut seen, &mut out);
    out
}

fn collect_unsupported(
    graph: &pb::GraphProto,
    known: &dyn Fn(&str) -> bool,
    seen: &mut BTreeSet<String>,
    out: &mut Vec<String>,
) {
    for node in &graph.node {
        if !known(&node.op_type) && seen.insert(node.op_type.clone()) {
            let domain = if node.domain.is_empty() {
                "ai.onnx"
            } else {
                node.domain.as_str()
            };
            let name = if node.name.is_empty() {
                node.output.first().cloned().unwrap_or_default()
            } else {
                node.name.clone()
            };
            out.push(format!("{domain}.{} (node '{name}')", node.op_type));
        }
        for attr in &node.attribute {
            for g in attr.g.iter().chain(attr.graphs.iter()) {
                collect_unsupported(g, known, seen, out);
            }
        }
    }
}

/// True when `s` is a plain identifier, usable as a tract symbol.
fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Gives every unknown dimension of the real inputs a name, so that tract
/// treats it as a symbol: unnamed dims, `?` and expressions get fresh symbols;
/// named dims keep theirs (shared names stay shared).
pub(crate) fn name_unknown_input_dims(graph: &mut pb::GraphProto) {
    let inits: HashSet<String> = graph.initializer.iter().map(|t| t.name.clone()).collect();
    let mut fresh = 0usize;
    for input in graph.input.iter_mut().filter(|i| !inits.contains(&i.name)) {
        let Some(pb::type_proto::Value::TensorType(t)) =
            input.r#type.as_mut().and_then(|t| t.value.as_mut())
        else {
            continue;
        };
        let Some(shape) = t.shape.as_mut() else {
            continue;
        };
        for dim in &mut shape.dim {
            let named = match &dim.value {
                Some(DimValue::DimValue(v)) => *v >= 0,
                Some(DimValue::DimParam(p)) => is_identifier(p),
                None => false,
            };
            if !named {
                dim.value = Some(DimValue::DimParam(format!("ferroserve_dyn_{fresh}")));
                fresh += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert!(is_identifier("N"));
        assert!(is_identifier("batch_size"));
        assert!(is_identifier("unk__12"));
        assert!(!is_identifier("?"));
        assert!(!is_identifier("s0 + 1"));
        assert!(!is_identifier("2N"));
        assert!(!is_identifier(""));
    }

    #[test]
    fn zipmap_key_json() {
        assert_eq!(ZipMapKeys::Int(vec![0, 1, 2]).to_json(), "[0,1,2]");
        assert_eq!(
            ZipMapKeys::Str(vec!["a".into(), "b\"".into()]).to_json(),
            r#"["a","b\""]"#
        );
    }
}

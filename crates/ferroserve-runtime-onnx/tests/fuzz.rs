//! Property-driven fuzzing of the ONNX loading path of the tract engine:
//! protobuf decoding, the checks and signature reading of this crate
//! (`proto.rs`), tract's graph parse, type analysis and optimisation, through
//! the public [`OnnxRuntime::load_model`] with `engine: tract` (ONNX Runtime
//! is not needed).
//!
//! Inputs are random bytes and mutations of the committed ONNX fixtures
//! (`tests/fixtures/onnx/*/model.onnx`, `examples/iris/model.onnx`): byte
//! edits (flips, inserts, deletes, truncation, splices, interesting integers)
//! and structured edits of the decoded `ModelProto` (initializer dims made
//! huge or negative, tensor data truncated, attribute integers, declared
//! shapes and element types replaced, nodes dropped or retyped, opset
//! versions changed, tensor data moved to "external" files outside the
//! folder, missing, or with offsets and lengths past their end). Each load must return `Ok` or `Error::Load`, never
//! panic (tract panics are caught by the runtime and become load errors),
//! and never ask the allocator for more than [`ferroserve_fuzz::ALLOC_LIMIT`] bytes at once.
//!
//! Runs in CI with a bounded number of cases per property (see [`cases`]);
//! `PROPTEST_CASES=5000 cargo test --release -p ferroserve-runtime-onnx
//! --test fuzz` runs longer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ferroserve_core::{Error, LoadContext, ModelConfig};
use ferroserve_fuzz::{apply, bounded, cases, edit, run_case, scratch, Artifact};
use ferroserve_runtime_onnx::OnnxRuntime;
use proptest::prelude::*;
use prost::Message;
use tract_onnx::pb;

#[global_allocator]
static GUARD: ferroserve_fuzz::Guard = ferroserve_fuzz::Guard;

// ---------------------------------------------------------------------------
// Seeds and mutations

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The fixture models.
fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut paths = vec![root().join("examples/iris/model.onnx")];
        if let Ok(rd) = std::fs::read_dir(root().join("tests/fixtures/onnx")) {
            paths.extend(rd.flatten().map(|e| e.path().join("model.onnx")));
        }
        let mut out: Vec<Vec<u8>> = paths.iter().filter_map(|p| std::fs::read(p).ok()).collect();
        out.sort();
        assert!(out.len() >= 8, "onnx fixtures not found");
        out
    })
}

fn ctx() -> LoadContext {
    let mut parameters = BTreeMap::new();
    parameters.insert("engine".to_string(), "tract".to_string());
    LoadContext {
        config: ModelConfig {
            parameters,
            ..ModelConfig::default()
        },
        ..LoadContext::default()
    }
}

/// Loads `bytes` as `model.onnx` of a scratch folder of this thread, with
/// the tract engine. With `FUZZ_ARTIFACTS` set, inputs that fail are written
/// there (the smallest becomes a file under `tests/fuzz-regressions`).
fn load(bytes: &[u8]) -> Result<(), TestCaseError> {
    let dir = scratch("onnx", &[("model.onnx".to_string(), bytes.to_vec())]);
    run_case(Artifact::File { ext: "onnx", bytes }, || {
        bounded("load_model", || {
            match OnnxRuntime::new().load_model(dir.path(), &ctx()) {
                Ok(_) | Err(Error::Load(_)) => Ok(()),
                Err(e) => Err(TestCaseError::fail(format!("untyped load error {e:?}"))),
            }
        })?
    })
}

/// One structured edit of a decoded model.
#[derive(Debug, Clone)]
enum ProtoEdit {
    /// Sets one dim of an initializer.
    InitDim(prop::sample::Index, prop::sample::Index, usize),
    /// Adds a dim to an initializer.
    InitExtraDim(prop::sample::Index, usize),
    /// Truncates an initializer's data.
    InitTruncate(prop::sample::Index, prop::sample::Index),
    /// Sets an initializer's element type.
    InitType(prop::sample::Index, i32),
    /// Sets a declared input/output dim.
    ValueDim(prop::sample::Index, prop::sample::Index, usize),
    /// Sets a declared input/output element type.
    ValueType(prop::sample::Index, i32),
    /// Sets an attribute's integer(s).
    AttrInt(prop::sample::Index, prop::sample::Index, usize),
    /// Sets an attribute's float.
    AttrFloat(prop::sample::Index, prop::sample::Index, f32),
    /// Drops a node.
    DropNode(prop::sample::Index),
    /// Gives a node the op type of another one (of any seed).
    Retype(prop::sample::Index, prop::sample::Index),
    /// Drops or duplicates a node input.
    NodeInput(prop::sample::Index, prop::sample::Index, bool),
    /// Sets an opset version.
    Opset(i64),
    /// Moves an initializer's data to an external file: (location, offset,
    /// length), each from a list of awkward values.
    External(prop::sample::Index, usize, usize, usize),
}

/// External data locations: outside the folder, absolute, missing, the
/// model itself.
const LOCATIONS: [&str; 7] = [
    "../model.onnx",
    "/etc/hostname",
    "model.onnx",
    "missing.bin",
    "",
    ".",
    "a/../../x",
];

/// External data offsets and lengths.
const EXTENT: [&str; 8] = [
    "0",
    "1",
    "16",
    "-1",
    "abc",
    "18446744073709551615",
    "9223372036854775807",
    "4294967296",
];

/// Signed integers that tend to break shape arithmetic.
const INTERESTING_I64: [i64; 14] = [
    -1,
    -2,
    0,
    1,
    2,
    3,
    255,
    65_536,
    0x7fff_ffff,
    1 << 32,
    1 << 40,
    i64::MAX,
    i64::MIN,
    -(1 << 40),
];

fn proto_edit() -> impl Strategy<Value = ProtoEdit> {
    let idx = any::<prop::sample::Index>;
    let v = 0..INTERESTING_I64.len();
    prop_oneof![
        3 => (idx(), idx(), v.clone()).prop_map(|(a, b, c)| ProtoEdit::InitDim(a, b, c)),
        1 => (idx(), v.clone()).prop_map(|(a, c)| ProtoEdit::InitExtraDim(a, c)),
        2 => (idx(), idx()).prop_map(|(a, b)| ProtoEdit::InitTruncate(a, b)),
        1 => (idx(), -1i32..20).prop_map(|(a, t)| ProtoEdit::InitType(a, t)),
        3 => (idx(), idx(), v.clone()).prop_map(|(a, b, c)| ProtoEdit::ValueDim(a, b, c)),
        1 => (idx(), -1i32..20).prop_map(|(a, t)| ProtoEdit::ValueType(a, t)),
        3 => (idx(), idx(), v.clone()).prop_map(|(a, b, c)| ProtoEdit::AttrInt(a, b, c)),
        1 => (idx(), idx(), any::<f32>()).prop_map(|(a, b, f)| ProtoEdit::AttrFloat(a, b, f)),
        1 => idx().prop_map(ProtoEdit::DropNode),
        2 => (idx(), idx()).prop_map(|(a, b)| ProtoEdit::Retype(a, b)),
        1 => (idx(), idx(), any::<bool>()).prop_map(|(a, b, d)| ProtoEdit::NodeInput(a, b, d)),
        1 => prop::sample::select(vec![-1i64, 0, 1, 6, 9, 13, 17, 21, 99, i64::MAX]).prop_map(ProtoEdit::Opset),
        2 => (idx(), 0..LOCATIONS.len(), 0..EXTENT.len(), 0..EXTENT.len())
            .prop_map(|(a, l, o, n)| ProtoEdit::External(a, l, o, n)),
    ]
}

/// Every op type of the seeds.
fn op_types() -> &'static [String] {
    static OPS: OnceLock<Vec<String>> = OnceLock::new();
    OPS.get_or_init(|| {
        let mut ops: Vec<String> = seeds()
            .iter()
            .filter_map(|b| pb::ModelProto::decode(b.as_slice()).ok())
            .filter_map(|m| m.graph)
            .flat_map(|g| g.node.into_iter().map(|n| n.op_type))
            .collect();
        ops.sort();
        ops.dedup();
        ops
    })
}

fn dims_of(vi: &mut pb::ValueInfoProto) -> Option<&mut Vec<pb::tensor_shape_proto::Dimension>> {
    let pb::type_proto::Value::TensorType(t) = vi.r#type.as_mut()?.value.as_mut()?;
    Some(&mut t.shape.as_mut()?.dim)
}

fn apply_proto(m: &mut pb::ModelProto, edits: &[ProtoEdit]) {
    let ops = op_types();
    for e in edits {
        if let ProtoEdit::Opset(v) = e {
            if let Some(o) = m.opset_import.first_mut() {
                o.version = *v;
            }
            continue;
        }
        let Some(g) = m.graph.as_mut() else { return };
        match e {
            ProtoEdit::InitDim(t, d, v) if !g.initializer.is_empty() => {
                let n = g.initializer.len();
                let t = &mut g.initializer[t.index(n)];
                if !t.dims.is_empty() {
                    let k = d.index(t.dims.len());
                    t.dims[k] = INTERESTING_I64[*v];
                }
            }
            ProtoEdit::InitExtraDim(t, v) if !g.initializer.is_empty() => {
                let n = g.initializer.len();
                g.initializer[t.index(n)].dims.push(INTERESTING_I64[*v]);
            }
            ProtoEdit::InitTruncate(t, at) if !g.initializer.is_empty() => {
                let n = g.initializer.len();
                let t = &mut g.initializer[t.index(n)];
                let cut = |len: usize| at.index(len.max(1));
                t.raw_data.truncate(cut(t.raw_data.len()));
                t.float_data.truncate(cut(t.float_data.len()));
                t.int64_data.truncate(cut(t.int64_data.len()));
                t.int32_data.truncate(cut(t.int32_data.len()));
                t.double_data.truncate(cut(t.double_data.len()));
                t.string_data.truncate(cut(t.string_data.len()));
            }
            ProtoEdit::External(t, l, o, len) if !g.initializer.is_empty() => {
                let n = g.initializer.len();
                let t = &mut g.initializer[t.index(n)];
                t.raw_data.clear();
                t.float_data.clear();
                t.int64_data.clear();
                t.data_location = Some(pb::tensor_proto::DataLocation::External as i32);
                let entry = |key: &str, value: &str| pb::StringStringEntryProto {
                    key: key.into(),
                    value: value.into(),
                };
                t.external_data = vec![
                    entry("location", LOCATIONS[*l]),
                    entry("offset", EXTENT[*o]),
                    entry("length", EXTENT[*len]),
                ];
            }
            ProtoEdit::InitType(t, ty) if !g.initializer.is_empty() => {
                let n = g.initializer.len();
                g.initializer[t.index(n)].data_type = *ty;
            }
            ProtoEdit::ValueDim(i, d, v) => {
                let n = g.input.len() + g.output.len();
                if n == 0 {
                    continue;
                }
                let k = i.index(n);
                let vi = if k < g.input.len() {
                    &mut g.input[k]
                } else {
                    &mut g.output[k - g.input.len()]
                };
                if let Some(dims) = dims_of(vi) {
                    if !dims.is_empty() {
                        let j = d.index(dims.len());
                        dims[j].value = Some(pb::tensor_shape_proto::dimension::Value::DimValue(
                            INTERESTING_I64[*v],
                        ));
                    }
                }
            }
            ProtoEdit::ValueType(i, ty) if !g.input.is_empty() => {
                let n = g.input.len();
                if let Some(pb::type_proto::Value::TensorType(t)) = g.input[i.index(n)]
                    .r#type
                    .as_mut()
                    .and_then(|t| t.value.as_mut())
                {
                    t.elem_type = *ty;
                }
            }
            ProtoEdit::AttrInt(nd, a, v) if !g.node.is_empty() => {
                let n = g.node.len();
                let node = &mut g.node[nd.index(n)];
                if !node.attribute.is_empty() {
                    let k = a.index(node.attribute.len());
                    let at = &mut node.attribute[k];
                    at.i = INTERESTING_I64[*v];
                    if let Some(x) = at.ints.first_mut() {
                        *x = INTERESTING_I64[*v];
                    }
                }
            }
            ProtoEdit::AttrFloat(nd, a, f) if !g.node.is_empty() => {
                let n = g.node.len();
                let node = &mut g.node[nd.index(n)];
                if !node.attribute.is_empty() {
                    let k = a.index(node.attribute.len());
                    node.attribute[k].f = *f;
                    if let Some(x) = node.attribute[k].floats.first_mut() {
                        *x = *f;
                    }
                }
            }
            ProtoEdit::DropNode(nd) if !g.node.is_empty() => {
                let n = g.node.len();
                g.node.remove(nd.index(n));
            }
            ProtoEdit::Retype(nd, op) if !g.node.is_empty() && !ops.is_empty() => {
                let n = g.node.len();
                g.node[nd.index(n)].op_type = ops[op.index(ops.len())].clone();
            }
            ProtoEdit::NodeInput(nd, i, dup) if !g.node.is_empty() => {
                let n = g.node.len();
                let node = &mut g.node[nd.index(n)];
                if !node.input.is_empty() {
                    let k = i.index(node.input.len());
                    if *dup {
                        let x = node.input[k].clone();
                        node.input.push(x);
                    } else {
                        node.input.remove(k);
                    }
                }
            }
            _ => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(512), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        load(&body)?;
    }

    #[test]
    fn mutated_bytes_never_panic(
        seed in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let s = &seeds()[seed.index(seeds().len())];
        load(&apply(s.clone(), &edits))?;
    }

    #[test]
    fn mutated_protos_never_panic(
        seed in any::<prop::sample::Index>(),
        edits in prop::collection::vec(proto_edit(), 1..4),
    ) {
        let s = &seeds()[seed.index(seeds().len())];
        let mut m = pb::ModelProto::decode(s.as_slice()).expect("seed decodes");
        apply_proto(&mut m, &edits);
        load(&m.encode_to_vec())?;
    }
}

#[test]
fn seeds_still_load_or_fail_cleanly() {
    let mut loaded = 0;
    for s in seeds() {
        if load(s).is_ok() {
            loaded += 1;
        }
    }
    assert!(loaded >= 6, "only {loaded} seeds load");
}

#[test]
fn regressions_fail_cleanly() {
    // Inputs the harness once found to panic or over-allocate.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return;
    };
    for e in rd.flatten() {
        let bytes = std::fs::read(e.path()).expect("regression file");
        if let Err(err) = load(&bytes) {
            panic!("{}: {err}", e.path().display());
        }
    }
}

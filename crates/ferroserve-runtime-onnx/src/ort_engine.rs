//! The `ort` engine: ONNX Runtime, loaded at run time from a shared library.
//!
//! `ort` panics when its library cannot be loaded, so this module checks the
//! path first, initialises once per process, and catches panics around every
//! call into `ort` as a second line of defence.

use ferroserve_core::contain::contain;
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use bytes::Bytes;
use ferroserve_core::{DataType, Error, ParamValue, Signature, Tensor, TensorData, TensorSpec};
use ort::environment::Environment;
use ort::memory::Allocator;
use ort::session::{Session, SessionInputValue};
use ort::value::{
    DynMapValueType, DynTensor, DynTensorValueType, DynValue, TensorElementType, Utf8Data,
    ValueType,
};
use parking_lot::Mutex;

use crate::ort_library::{self, INSTALL_HINT};
use crate::proto::{self, ZipMapKeys};

/// The process-wide ONNX Runtime environment.
struct OrtEnv {
    env: Environment,
    path: PathBuf,
}

static ORT_ENV: OnceLock<Result<OrtEnv, String>> = OnceLock::new();

/// The library to use: the runtime's explicit path, or the environment/search.
fn library_path(explicit: Option<&Path>) -> Result<PathBuf, String> {
    match explicit {
        Some(p) => ort_library::check_explicit(p).map_err(|why| format!("{}: {why}", p.display())),
        None => ort_library::resolve_onnxruntime(),
    }
}

/// Loads ONNX Runtime once per process and returns its environment.
fn environment(explicit: Option<&Path>) -> Result<&'static OrtEnv, String> {
    // Check the path on every call, before anything touches `ort`.
    let path = library_path(explicit)?;
    let state = ORT_ENV.get_or_init(|| {
        let init = contain(|| -> Result<Environment, String> {
            let builder = ort::init_from(&path).map_err(|e| e.to_string())?;
            builder
                .with_name("ferroserve")
                .with_telemetry(false)
                .build()
                .map_err(|e| e.to_string())
        });
        match init {
            Ok(Ok(env)) => {
                tracing::info!(library = %path.display(), "loaded ONNX Runtime");
                Ok(OrtEnv {
                    env,
                    path: path.clone(),
                })
            }
            Ok(Err(e)) => Err(format!(
                "could not load ONNX Runtime from {}: {e}",
                path.display()
            )),
            Err(panic) => Err(format!(
                "could not load ONNX Runtime from {}: {panic}",
                path.display()
            )),
        }
    });
    match state {
        Ok(env) => {
            if env.path != path {
                tracing::debug!(
                    wanted = %path.display(),
                    loaded = %env.path.display(),
                    "ONNX Runtime is already loaded in this process; using that library"
                );
            }
            Ok(env)
        }
        Err(e) => Err(e.clone()),
    }
}

/// Why ONNX Runtime is not usable, or `Ok` when it is (loading it if needed).
pub(crate) fn available(explicit: Option<&Path>) -> Result<(), String> {
    environment(explicit).map(|_| ())
}

/// How one output comes back from a run.
#[derive(Debug, Clone)]
enum OutputKind {
    /// A tensor of this element type.
    Tensor(TensorElementType),
    /// A ZipMap: a sequence of maps with these key types, turned into
    /// FP32 `[N, C]`; the keys are known at load when a ZipMap node wrote it.
    ZipMap {
        string_keys: bool,
        keys: Option<ZipMapKeys>,
    },
}

/// A pool of ONNX Runtime sessions over one model: `Session::run` takes
/// `&mut self`, so each run borrows one free session.
pub(crate) struct OrtModel {
    sessions: Vec<Mutex<Session>>,
    next: AtomicUsize,
    input_types: Vec<TensorElementType>,
    outputs: Vec<OutputKind>,
}

fn datatype_of(ty: TensorElementType) -> Option<DataType> {
    Some(match ty {
        TensorElementType::Bool => DataType::Bool,
        TensorElementType::Uint8 => DataType::U8,
        TensorElementType::Uint16 => DataType::U16,
        TensorElementType::Uint32 => DataType::U32,
        TensorElementType::Uint64 => DataType::U64,
        TensorElementType::Int8 => DataType::I8,
        TensorElementType::Int16 => DataType::I16,
        TensorElementType::Int32 => DataType::I32,
        TensorElementType::Int64 => DataType::I64,
        TensorElementType::Float16 => DataType::F16,
        TensorElementType::Bfloat16 => DataType::BF16,
        TensorElementType::Float32 => DataType::F32,
        TensorElementType::Float64 => DataType::F64,
        TensorElementType::String => DataType::Bytes,
        _ => return None,
    })
}

/// A load error for a missing or broken ONNX Runtime.
pub(crate) fn unavailable_error(why: &str) -> Error {
    Error::Load(format!(
        "the ort engine needs ONNX Runtime, which is not available: {why}. To fix it, {INSTALL_HINT}"
    ))
}

/// Loads `path` into `sessions` ONNX Runtime sessions.
pub(crate) fn load(
    path: &Path,
    file_name: &str,
    explicit_library: Option<&Path>,
    sessions: usize,
    intra_op_threads: usize,
) -> Result<(OrtModel, Signature), Error> {
    let env = environment(explicit_library).map_err(|why| unavailable_error(&why))?;
    let make = || -> Result<Session, Error> {
        let result = contain(|| -> Result<Session, String> {
            let mut builder = Session::builder(&env.env).map_err(|e| e.to_string())?;
            if intra_op_threads > 0 {
                builder = builder
                    .with_intra_threads(intra_op_threads)
                    .map_err(|e| e.to_string())?;
            }
            builder.commit_from_file(path).map_err(|e| e.to_string())
        });
        match result {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(Error::Load(format!(
                "{}: ONNX Runtime could not load the model: {e}",
                path.display()
            ))),
            Err(panic) => Err(Error::Load(format!(
                "{}: ONNX Runtime could not load the model (ort panicked: {panic})",
                path.display()
            ))),
        }
    };
    let first = make()?;
    let (signature, input_types, outputs) = describe(&first, path, file_name)?;
    let mut pool = Vec::with_capacity(sessions.max(1));
    pool.push(Mutex::new(first));
    for _ in 1..sessions.max(1) {
        pool.push(Mutex::new(make()?));
    }
    Ok((
        OrtModel {
            sessions: pool,
            next: AtomicUsize::new(0),
            input_types,
            outputs,
        },
        signature,
    ))
}

type Described = (Signature, Vec<TensorElementType>, Vec<OutputKind>);

fn describe(session: &Session, path: &Path, file_name: &str) -> Result<Described, Error> {
    let load_err = |m: String| Error::Load(format!("{}: {m}", path.display()));
    let mut inputs = Vec::new();
    let mut input_types = Vec::new();
    for outlet in session.inputs() {
        match outlet.dtype() {
            ValueType::Tensor { ty, shape, .. } => {
                let datatype = datatype_of(*ty).ok_or_else(|| {
                    load_err(format!(
                        "input '{}' has element type {ty}, which ferroserve does not serve",
                        outlet.name()
                    ))
                })?;
                inputs.push(TensorSpec::new(outlet.name(), datatype, shape.to_vec()));
                input_types.push(*ty);
            }
            other => {
                return Err(load_err(format!(
                    "input '{}' is a {other}, not a tensor; ferroserve serves tensor inputs only",
                    outlet.name()
                )))
            }
        }
    }
    let mut outputs = Vec::new();
    let mut kinds = Vec::new();
    let mut graph: Option<tract_onnx::pb::ModelProto> = None;
    for outlet in session.outputs() {
        match outlet.dtype() {
            ValueType::Tensor { ty, shape, .. } => {
                let datatype = datatype_of(*ty).ok_or_else(|| {
                    load_err(format!("output '{}' has element type {ty}, which ferroserve does not serve", outlet.name()))
                })?;
                outputs.push(TensorSpec::new(outlet.name(), datatype, shape.to_vec()));
                kinds.push(OutputKind::Tensor(*ty));
            }
            ValueType::Sequence(inner)
                if matches!(
                    inner.as_ref(),
                    ValueType::Map { key: TensorElementType::Int64 | TensorElementType::String, value: TensorElementType::Float32 }
                ) =>
            {
                let string_keys =
                    matches!(inner.as_ref(), ValueType::Map { key: TensorElementType::String, .. });
                // Class labels live on the ZipMap node; read the graph once.
                if graph.is_none() {
                    graph = Some(proto::read_model(path)?);
                }
                let keys = graph
                    .as_ref()
                    .and_then(|m| m.graph.as_ref())
                    .and_then(|g| proto::zipmap_keys(g, outlet.name()))
                    .filter(|k| matches!(k, ZipMapKeys::Str(_)) == string_keys);
                let cols = keys.as_ref().map_or(-1, |k| k.len() as i64);
                outputs.push(TensorSpec::new(outlet.name(), DataType::F32, vec![-1, cols]));
                kinds.push(OutputKind::ZipMap { string_keys, keys });
            }
            other => {
                return Err(load_err(format!(
                    "output '{}' is a {other}; ferroserve serves tensors and ZipMap outputs (sequence of map int64|string → float) only",
                    outlet.name()
                )))
            }
        }
    }
    Ok((
        crate::make_signature(file_name, inputs, outputs),
        input_types,
        kinds,
    ))
}

/// A string element for `Tensor::from_string_array` (ONNX strings are bytes).
#[derive(Clone)]
struct OrtBytes(Bytes);

impl Utf8Data for OrtBytes {
    fn as_utf8_bytes(&self) -> &[u8] {
        &self.0
    }
}

fn ort_shape(shape: &[usize]) -> Vec<i64> {
    shape.iter().map(|&d| d as i64).collect()
}

/// Builds one input value with a single copy of the request bytes.
fn to_ort(input: &Tensor, ty: TensorElementType) -> Result<DynValue, Error> {
    let err = |e: ort::Error| Error::internal(format!("input '{}': {e}", input.name));
    match &input.data {
        TensorData::Strings(items) => {
            if ty != TensorElementType::String {
                return Err(Error::invalid(format!(
                    "input '{}': expected {ty} data, got strings",
                    input.name
                )));
            }
            if items.iter().any(|s| s.contains(&0)) {
                return Err(Error::invalid(format!(
                    "input '{}': ONNX Runtime strings cannot hold NUL bytes",
                    input.name
                )));
            }
            let items: Vec<OrtBytes> = items.iter().cloned().map(OrtBytes).collect();
            let value =
                ort::value::Tensor::from_string_array((ort_shape(&input.shape), items.as_slice()))
                    .map_err(err)?;
            Ok(value.into_dyn())
        }
        TensorData::Raw(bytes) => {
            let expected = ty.byte_size(input.len());
            if ty == TensorElementType::String || expected != Some(bytes.len()) {
                return Err(Error::invalid(format!(
                    "input '{}': {} bytes do not make a {ty} tensor of shape {:?}",
                    input.name,
                    bytes.len(),
                    input.shape
                )));
            }
            let mut value =
                DynTensor::new(&Allocator::default(), ty, ort_shape(&input.shape)).map_err(err)?;
            if !bytes.is_empty() {
                let dst = value.data_ptr_mut().cast::<u8>();
                if dst.is_null() {
                    return Err(Error::internal(format!(
                        "input '{}': ONNX Runtime gave no buffer",
                        input.name
                    )));
                }
                // SAFETY: the tensor was just allocated on the CPU with
                // exactly `bytes.len()` bytes (checked above), and nothing
                // else refers to it yet.
                let dst = unsafe { std::slice::from_raw_parts_mut(dst, bytes.len()) };
                if ty == TensorElementType::Bool {
                    for (d, &b) in dst.iter_mut().zip(bytes.iter()) {
                        *d = u8::from(b != 0);
                    }
                } else {
                    dst.copy_from_slice(bytes);
                }
            }
            Ok(value.into_dyn())
        }
    }
}

fn from_ort_tensor(
    value: DynValue,
    spec: &TensorSpec,
    ty: TensorElementType,
) -> Result<Tensor, Error> {
    let name = spec.name.as_str();
    let err = |e: ort::Error| Error::internal(format!("output '{name}': {e}"));
    let (got, dims) = match value.dtype() {
        ValueType::Tensor { ty, shape, .. } => (*ty, shape.to_vec()),
        other => {
            return Err(Error::internal(format!(
                "output '{name}': expected a tensor, got a {other}"
            )))
        }
    };
    if got != ty {
        return Err(Error::internal(format!(
            "output '{name}': expected {ty} data, got {got}"
        )));
    }
    let shape = dims
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|_| Error::internal(format!("output '{name}': invalid shape {dims:?}")))?;
    let data = if ty == TensorElementType::String {
        let (_, strings) = value.try_extract_strings().map_err(err)?;
        TensorData::Strings(strings.into_iter().map(Bytes::from).collect())
    } else {
        let count = ferroserve_core::tensor::element_count(&shape)
            .ok_or_else(|| Error::internal(format!("output '{name}': invalid shape {dims:?}")))?;
        let len = ty.byte_size(count).ok_or_else(|| {
            Error::internal(format!("output '{name}': unsupported element type {ty}"))
        })?;
        let tensor = value.downcast::<DynTensorValueType>().map_err(err)?;
        if !tensor.memory_info().is_cpu_accessible() {
            return Err(Error::internal(format!(
                "output '{name}': data is not in CPU memory"
            )));
        }
        let src = tensor.data_ptr().cast::<u8>();
        if len == 0 {
            TensorData::Raw(Bytes::new())
        } else if src.is_null() {
            return Err(Error::internal(format!(
                "output '{name}': ONNX Runtime gave no data"
            )));
        } else {
            // SAFETY: a CPU tensor of `count` elements of `ty` holds `len`
            // contiguous bytes; `tensor` keeps them alive for this copy.
            let slice = unsafe { std::slice::from_raw_parts(src, len) };
            TensorData::Raw(Bytes::copy_from_slice(slice))
        }
    };
    Tensor::new(name, spec.datatype, shape, data)
        .map_err(|e| Error::internal(format!("output '{name}': {e}")))
}

/// Turns a ZipMap output (one map per row) into FP32 `[N, C]`, columns by key
/// ascending, with the keys as the `zipmap_keys` parameter (a JSON array).
fn from_zipmap(
    value: DynValue,
    name: &str,
    string_keys: bool,
    known: Option<&ZipMapKeys>,
) -> Result<Tensor, Error> {
    let err = |e: ort::Error| Error::internal(format!("output '{name}': {e}"));
    let rows = value
        .try_extract_sequence::<DynMapValueType>()
        .map_err(err)?;
    let mut keys: Option<ZipMapKeys> = known.cloned();
    let mut data: Vec<f32> = Vec::new();
    let mismatch = |row: usize| {
        Error::internal(format!(
            "output '{name}': row {row} of the ZipMap has different keys than the others"
        ))
    };
    for (row, map) in rows.iter().enumerate() {
        let (row_keys, values) = if string_keys {
            let mut kv = map.try_extract_key_values::<String, f32>().map_err(err)?;
            kv.sort_by(|a, b| a.0.cmp(&b.0));
            let (k, v): (Vec<String>, Vec<f32>) = kv.into_iter().unzip();
            (ZipMapKeys::Str(k), v)
        } else {
            let mut kv = map.try_extract_key_values::<i64, f32>().map_err(err)?;
            kv.sort_by_key(|p| p.0);
            let (k, v): (Vec<i64>, Vec<f32>) = kv.into_iter().unzip();
            (ZipMapKeys::Int(k), v)
        };
        match &keys {
            Some(k) if *k != row_keys => return Err(mismatch(row)),
            Some(_) => {}
            None => {
                data.reserve(rows.len() * values.len());
                keys = Some(row_keys);
            }
        }
        data.extend_from_slice(&values);
    }
    let keys = keys.unwrap_or(if string_keys {
        ZipMapKeys::Str(Vec::new())
    } else {
        ZipMapKeys::Int(Vec::new())
    });
    let shape = vec![rows.len(), keys.len()];
    let bytes = Bytes::from(bytemuck::cast_slice::<f32, u8>(&data).to_vec());
    let mut tensor = Tensor::new(name, DataType::F32, shape, TensorData::Raw(bytes))
        .map_err(|e| Error::internal(format!("output '{name}': {e}")))?;
    tensor.parameters.insert(
        "zipmap_keys".to_string(),
        ParamValue::String(keys.to_json()),
    );
    Ok(tensor)
}

impl OrtModel {
    /// Number of sessions in the pool.
    pub(crate) fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Runs one request on a free session (or waits for one).
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
        // Build the input values before taking a session.
        let mut values: Vec<(Cow<'_, str>, SessionInputValue<'_>)> =
            Vec::with_capacity(inputs.len());
        for (input, &ty) in inputs.iter().zip(&self.input_types) {
            let value = contain(|| to_ort(input, ty)).unwrap_or_else(|p| {
                Err(Error::internal(format!(
                    "input '{}': ort panicked: {p}",
                    input.name
                )))
            })?;
            values.push((
                Cow::Borrowed(input.name.as_str()),
                SessionInputValue::Owned(value),
            ));
        }

        let n = self.sessions.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n.max(1);
        let mut guard = None;
        for i in 0..n {
            if let Some(g) = self
                .sessions
                .get((start + i) % n)
                .and_then(|m| m.try_lock())
            {
                guard = Some(g);
                break;
            }
        }
        let mut session = match guard {
            Some(g) => g,
            None => self
                .sessions
                .get(start)
                .ok_or_else(|| Error::internal("the model has no ONNX Runtime session"))?
                .lock(),
        };

        let result = contain(|| -> Result<Vec<Tensor>, Error> {
            let mut outputs = session.run(values).map_err(|e| {
                Error::internal(format!("ONNX Runtime failed to run the model: {e}"))
            })?;
            let mut out = Vec::with_capacity(signature.outputs.len());
            for (spec, kind) in signature.outputs.iter().zip(&self.outputs) {
                let value = outputs.remove(spec.name.as_str()).ok_or_else(|| {
                    Error::internal(format!("ONNX Runtime returned no output '{}'", spec.name))
                })?;
                out.push(match kind {
                    OutputKind::Tensor(ty) => from_ort_tensor(value, spec, *ty)?,
                    OutputKind::ZipMap { string_keys, keys } => {
                        from_zipmap(value, &spec.name, *string_keys, keys.as_ref())?
                    }
                });
            }
            Ok(out)
        });
        drop(session);
        result.unwrap_or_else(|p| {
            Err(Error::internal(format!(
                "ort panicked while running the model: {p}"
            )))
        })
    }
}

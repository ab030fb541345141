//! The `Model` trait every runtime implements, and model signatures.

use std::path::Path;
use std::sync::Arc;

use crate::config::ModelConfig;
use crate::datatype::DataType;
use crate::error::Error;
use crate::tensor::Tensor;

/// Declared input or output of a model. `-1` marks a dynamic dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub datatype: DataType,
    /// Shape with `-1` for dynamic dimensions.
    pub shape: Vec<i64>,
    /// For an input: whether it may be left out. For an output: whether it
    /// is returned only when a request asks for it by name (e.g. a raw
    /// margin beside the default prediction).
    pub optional: bool,
    /// For an input: other datatypes the runtime accepts (and converts
    /// itself), e.g. FP64 features for a model declared FP32.
    pub alt_datatypes: Vec<DataType>,
}

impl TensorSpec {
    /// A required tensor spec.
    pub fn new(name: impl Into<String>, datatype: DataType, shape: Vec<i64>) -> Self {
        TensorSpec {
            name: name.into(),
            datatype,
            shape,
            optional: false,
            alt_datatypes: Vec::new(),
        }
    }

    /// True when an input of datatype `dt` is acceptable for this spec.
    pub fn accepts_datatype(&self, dt: DataType) -> bool {
        self.datatype == dt || self.alt_datatypes.contains(&dt)
    }

    /// True when `shape` fits this spec (same rank, fixed dims equal).
    pub fn accepts_shape(&self, shape: &[usize]) -> bool {
        self.shape.len() == shape.len()
            && self
                .shape
                .iter()
                .zip(shape)
                .all(|(&want, &got)| want < 0 || want as u64 == got as u64)
    }
}

/// What a model takes and returns, and what platform runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    /// Platform name as Triton reports it (`onnxruntime_onnx`, …).
    pub platform: String,
    /// Backend name as Triton reports it (`onnxruntime`, …).
    pub backend: String,
    /// The model file the runtime loaded, relative to its folder.
    pub model_file: String,
    /// Declared inputs, in the order `Model::infer` receives them.
    pub inputs: Vec<TensorSpec>,
    /// Declared outputs, in the order `Model::infer` returns them.
    pub outputs: Vec<TensorSpec>,
}

impl Signature {
    /// True when every input and output has a dynamic leading dimension,
    /// i.e. the model accepts a batch of any size along dimension 0.
    pub fn is_batchable(&self) -> bool {
        let lead = |s: &TensorSpec| s.shape.first().is_some_and(|&d| d < 0);
        !self.inputs.is_empty() && self.inputs.iter().all(lead) && self.outputs.iter().all(lead)
    }
}

/// A loaded model, ready to run. Implementations must be cheap to call from
/// several threads at once.
pub trait Model: Send + Sync + 'static {
    /// The model's signature.
    fn signature(&self) -> &Signature;

    /// Runs the model. The server has already checked the inputs against the
    /// signature: every required input is present, in signature order (an
    /// absent optional input is left out), with the declared datatype (or one
    /// of its `alt_datatypes`) and a fitting shape. Returns outputs in
    /// signature order; the server drops those the request did not ask for.
    fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, Error>;

    /// Extra facts about the model for its metadata (e.g. `feature_names`),
    /// shown under `parameters` in the REST model metadata.
    fn metadata_parameters(&self) -> serde_json::Map<String, serde_json::Value> {
        serde_json::Map::new()
    }

    /// The model as a text generator, when it is a language model.
    fn as_generator(&self) -> Option<&dyn crate::generate::TextGenerator> {
        None
    }

    /// The model as an embedder, when it turns text into vectors.
    fn as_embedder(&self) -> Option<&dyn crate::generate::Embedder> {
        None
    }
}

/// Settings handed to a runtime when it loads a model.
#[derive(Debug, Clone, Default)]
pub struct LoadContext {
    /// Compute threads the runtime may use inside one inference (0: runtime default).
    pub intra_op_threads: usize,
    /// Number of inferences that may run at once on this model.
    pub concurrency: usize,
    /// The per-model configuration (from `model.yaml` and the command line).
    pub config: ModelConfig,
}

/// Finds a runtime's model file in `dir` without recursing: the first of
/// `names` that `is_mine` accepts, else the folder's only file with one of
/// `extensions` (lower-case, no dot) that `is_mine` accepts. Two candidates
/// of the second kind are ambiguous: `None`.
pub fn detect_model_file(
    dir: &Path,
    names: &[&str],
    extensions: &[&str],
    is_mine: impl Fn(&Path) -> bool,
) -> Option<String> {
    for name in names {
        let p = dir.join(name);
        if p.is_file() && is_mine(&p) {
            return Some(name.to_string());
        }
    }
    let mut found = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let ext = Path::new(&name).extension()?.to_str()?.to_ascii_lowercase();
            let path = e.path();
            (extensions.contains(&ext.as_str()) && path.is_file() && is_mine(&path)).then_some(name)
        });
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

/// A model format: it recognises a folder and loads models from it.
pub trait Runtime: Send + Sync + 'static {
    /// Format name used by `--model_format` and `model.yaml` (`onnx`, …).
    fn format(&self) -> &'static str;

    /// The model file this runtime would load from `dir`, if it recognises one.
    fn detect(&self, dir: &Path) -> Option<String>;

    /// Loads the model in `dir`.
    fn load(&self, dir: &Path, ctx: &LoadContext) -> Result<Arc<dyn Model>, Error>;

    /// Loads the model from the file `file` (a name relative to `dir`),
    /// whatever its name: for wrapper formats such as MLflow, whose folders
    /// name files their own way (`model.xgb`, `model.lgb`). The default
    /// loads `dir` when [`Runtime::detect`] picks that same file, and fails
    /// otherwise; runtimes that recognise files by content override it.
    fn load_file(
        &self,
        dir: &Path,
        file: &str,
        ctx: &LoadContext,
    ) -> Result<Arc<dyn Model>, Error> {
        match self.detect(dir) {
            Some(found) if found == file => self.load(dir, ctx),
            _ => Err(Error::Load(format!(
                "{}: the {} runtime cannot load {file} by name",
                dir.display(),
                self.format()
            ))),
        }
    }

    /// Detection priority: when several runtimes recognise a folder, those
    /// with the highest priority win (0 by default). A wrapper format whose
    /// folder also holds another runtime's file (MLflow's `MLmodel` beside a
    /// `model.pkl`) sets it higher, so the folder is not ambiguous.
    fn detect_priority(&self) -> u8 {
        0
    }
}

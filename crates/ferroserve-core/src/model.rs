//! The `Model` trait every runtime implements, and model signatures.

use std::path::Path;
use std::sync::Arc;

use crate::config::ModelConfig;
use crate::datatype::DataType;
use crate::error::Error;
use crate::parameters::{ParamValue, Parameters};
use crate::request::RequestedOutput;
use crate::tensor::Tensor;

/// What a runtime may want to know about the request behind one
/// [`Model::infer_with`] call: its request-level parameters (e.g.
/// `"method": "predict_proba"`) and the outputs it asked for by name.
/// Requests merged into one batch by the dynamic batcher always have equal
/// parameters and requested outputs, so one context describes them all.
#[derive(Debug, Clone, Copy)]
pub struct InferContext<'a> {
    /// Request-level parameters, as the protocol decoded them.
    pub parameters: &'a Parameters,
    /// The outputs the request asked for; empty means "the default ones".
    pub outputs: &'a [RequestedOutput],
}

static NO_PARAMETERS: Parameters = Parameters::new();

impl Default for InferContext<'_> {
    fn default() -> Self {
        InferContext {
            parameters: &NO_PARAMETERS,
            outputs: &[],
        }
    }
}

impl<'a> InferContext<'a> {
    /// A context for a request with `parameters` asking for `outputs`.
    pub fn new(parameters: &'a Parameters, outputs: &'a [RequestedOutput]) -> Self {
        InferContext {
            parameters,
            outputs,
        }
    }

    /// The request parameter `name`, if given.
    pub fn parameter(&self, name: &str) -> Option<&'a ParamValue> {
        self.parameters.get(name)
    }

    /// The names of the outputs the request asked for, in its order.
    pub fn requested_names(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.outputs.iter().map(|o| o.name.as_str())
    }

    /// True when the request asked for outputs by name.
    pub fn has_requested_outputs(&self) -> bool {
        !self.outputs.is_empty()
    }

    /// True when the request asked for the output `name`.
    pub fn is_requested(&self, name: &str) -> bool {
        self.outputs.iter().any(|o| o.name == name)
    }
}

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

    /// Runs the model for a request described by `ctx` (its parameters and
    /// requested outputs); this is what the server calls. Inputs are checked
    /// as for [`Model::infer`]. A runtime may compute only the outputs the
    /// request needs, or let a request parameter change what an output holds
    /// (the scikit-learn runtime's `"method": "predict_proba"`). With no
    /// outputs requested, the server keeps the returned outputs that are not
    /// `optional` (all of them when every returned one is optional). The
    /// default ignores `ctx` and calls [`Model::infer`].
    fn infer_with(
        &self,
        inputs: Vec<Tensor>,
        ctx: &InferContext<'_>,
    ) -> Result<Vec<Tensor>, Error> {
        let _ = ctx;
        self.infer(inputs)
    }

    /// How KServe v1 lays out this model's predictions. `false` (the
    /// default): with one output each prediction is that output's row, with
    /// several an object keyed by output name. `true`: always an object
    /// keyed by output name, one per row, even for one output, as KServe's
    /// pmmlserver answers (a record per row of JPMML's results).
    fn v1_records(&self) -> bool {
        false
    }

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

//! A loaded scikit-learn model: its signature (inputs from the first step,
//! outputs from the last), request decoding and the [`Model`] impl.

use std::path::Path;

use bytes::Bytes;
use ferroserve_core::{
    DataType, Error, InferContext, LoadContext, Model, Signature, Tensor, TensorSpec,
};
use rayon::prelude::*;

use crate::compose::{build_step, Last, Pipeline};
use crate::data::{Column, Data, Matrix, Method, PredictKind};
use crate::extract::Labels;
use crate::value::{Tree, Value};

/// Name of the single feature-matrix input.
pub const INPUT_NAME: &str = "input-0";
/// Name of the default output.
pub const OUTPUT_NAME: &str = "output-0";
/// Per-model parameter choosing what `output-0` holds
/// (`predict`, `predict_proba`, `decision_function`, `transform`, `score_samples`).
pub const METHOD_PARAMETER: &str = "method";
/// Per-model parameter `predict_proba` (`"true"`/`"false"`), what KServe's
/// `PREDICT_PROBA` environment variable and ferroserve's `--predict_proba`
/// set: `output-0` holds `predict_proba` when the model has it, else the
/// default output. An explicit [`METHOD_PARAMETER`] wins.
pub const PREDICT_PROBA_PARAMETER: &str = "predict_proba";
/// Batches with at least this many rows are split across cores.
pub const PARALLEL_MIN_ROWS: usize = 256;

/// How requests give features.
#[derive(Debug, Clone, PartialEq)]
enum Inputs {
    /// `input-0`, FP64 (or FP32) `[-1, F]`.
    Matrix(usize),
    /// `input-0`, BYTES `[-1, F]` (string columns without names); the flags
    /// say which columns are strings (the others are parsed as numbers).
    StringMatrix(Vec<bool>),
    /// One input per named column, `[-1]`: BYTES for string columns.
    Columns(Vec<(String, bool)>),
}

/// A scikit-learn model ready to serve.
#[derive(Debug)]
pub struct SklearnModel {
    pipeline: Pipeline,
    signature: Signature,
    inputs: Inputs,
    /// Methods behind the outputs, in signature order.
    methods: Vec<Method>,
    threads: usize,
    /// The model's top-level class (for logs).
    pub class: String,
}

/// Which method `output-0` holds by default: predict when available.
fn default_method(methods: &[Method]) -> Method {
    methods.first().copied().unwrap_or(Method::Transform)
}

impl SklearnModel {
    /// Builds a model from a rebuilt value tree.
    pub fn from_value(
        root: Tree,
        model_file: &str,
        ctx: &LoadContext,
    ) -> Result<SklearnModel, Error> {
        let class = match &root.0 {
            Value::Object(o) => o.borrow().short_name().to_string(),
            other => {
                return Err(Error::Load(format!(
                    "{model_file}: the pickle holds {}, not a scikit-learn estimator",
                    other.kind()
                )))
            }
        };
        let pipeline = if class == "Pipeline" {
            let o = crate::extract::Obj::from_value(&root.0, "model").map_err(Error::Load)?;
            Pipeline::from_obj(&o, 0)
        } else {
            Pipeline::from_steps(std::slice::from_ref(&root.0), 0)
        }
        .map_err(|e| Error::Load(format!("{model_file}: {e}")))?;
        drop(root);
        let _ = build_step;

        let methods: Vec<Method> = match &pipeline.last {
            Last::Estimator(e) => e.methods(),
            Last::Transform(_) | Last::None => vec![Method::Transform],
        };
        let mut chosen = None;
        let mut predict_proba = false;
        let threads = ctx.intra_op_threads;
        for (key, value) in &ctx.config.parameters {
            match key.as_str() {
                METHOD_PARAMETER => {
                    chosen = Some(Method::parse(value.trim()).filter(|m| methods.contains(m)).ok_or_else(|| {
                        let have: Vec<&str> = methods.iter().map(|m| m.as_str()).collect();
                        Error::Load(format!(
                            "parameter `{METHOD_PARAMETER}`: `{value}` is not available for this model (available: {})",
                            have.join(", ")
                        ))
                    })?);
                }
                PREDICT_PROBA_PARAMETER => {
                    predict_proba = match value.trim().to_ascii_lowercase().as_str() {
                        "true" => true,
                        "false" | "" => false,
                        other => {
                            return Err(Error::Load(format!(
                            "parameter `{PREDICT_PROBA_PARAMETER}`: `{other}` is not true or false"
                        )))
                        }
                    }
                }
                // The server's ONNX engine choice reaches every model.
                "engine" => {}
                other => tracing::warn!(
                    parameter = other,
                    "unknown scikit-learn model parameter ignored (known: method, predict_proba)"
                ),
            }
        }
        // KServe's PREDICT_PROBA: predict_proba where the model has it, else
        // predict; an explicit `method` wins.
        let chosen = match chosen {
            Some(m) => m,
            None if predict_proba && methods.contains(&Method::PredictProba) => {
                Method::PredictProba
            }
            None => {
                if predict_proba {
                    tracing::info!(
                        model = model_file,
                        "predict_proba requested but the model has none: serving its default output"
                    );
                }
                default_method(&methods)
            }
        };
        let mut ordered = vec![chosen];
        ordered.extend(methods.iter().copied().filter(|m| *m != chosen));

        let n_in = pipeline.n_features_in().ok_or_else(|| {
            Error::Load(format!(
                "{model_file}: cannot tell the number of input features"
            ))
        })?;
        if n_in > crate::extract::MAX_FEATURES {
            return Err(Error::Load(format!(
                "{model_file}: the model declares {n_in} input features (more than {}); the file is corrupt",
                crate::extract::MAX_FEATURES
            )));
        }
        let strings = pipeline.string_inputs();
        let strings = if strings.len() == n_in {
            strings
        } else {
            vec![false; n_in]
        };
        let inputs = if strings.iter().any(|s| *s) {
            match &pipeline.feature_names {
                Some(names) if names.len() == n_in => {
                    Inputs::Columns(names.iter().cloned().zip(strings.iter().copied()).collect())
                }
                _ => Inputs::StringMatrix(strings),
            }
        } else {
            Inputs::Matrix(n_in)
        };
        let input_specs = match &inputs {
            Inputs::Matrix(f) => {
                let mut s = TensorSpec::new(INPUT_NAME, DataType::F64, vec![-1, *f as i64]);
                s.alt_datatypes = vec![DataType::F32];
                vec![s]
            }
            Inputs::StringMatrix(s) => vec![TensorSpec::new(
                INPUT_NAME,
                DataType::Bytes,
                vec![-1, s.len() as i64],
            )],
            Inputs::Columns(cols) => cols
                .iter()
                .map(|(name, is_str)| {
                    if *is_str {
                        TensorSpec::new(name.clone(), DataType::Bytes, vec![-1])
                    } else {
                        let mut s = TensorSpec::new(name.clone(), DataType::F64, vec![-1]);
                        s.alt_datatypes = vec![DataType::F32, DataType::I64, DataType::I32];
                        s
                    }
                })
                .collect(),
        };
        let mut outputs = Vec::new();
        for (i, m) in ordered.iter().enumerate() {
            let (dt, width) = output_type(&pipeline, *m);
            let mut shape = vec![-1];
            if let Some(w) = width {
                shape.push(w as i64);
            }
            let name = if i == 0 {
                OUTPUT_NAME.to_string()
            } else {
                m.as_str().to_string()
            };
            let mut spec = TensorSpec::new(name, dt, shape);
            spec.optional = i > 0;
            outputs.push(spec);
        }
        Ok(SklearnModel {
            pipeline,
            signature: Signature {
                platform: "sklearn".into(),
                backend: "sklearn".into(),
                model_file: model_file.to_string(),
                inputs: input_specs,
                outputs,
            },
            inputs,
            methods: ordered,
            threads,
            class,
        })
    }

    /// Loads the model file at `path` (joblib, pickle or skops).
    pub fn from_file(
        path: &Path,
        model_file: &str,
        ctx: &LoadContext,
    ) -> Result<SklearnModel, Error> {
        let is_skops = crate::is_skops_file(path);
        let root = if is_skops {
            crate::skops::read_skops_file(path)
        } else {
            crate::container::read_pickle_file(path)
        }
        .map_err(|e| Error::Load(format!("{}: {e}", path.display())))?;
        SklearnModel::from_value(Tree(root), model_file, ctx)
    }

    /// The methods behind the outputs, in signature order.
    pub fn output_methods(&self) -> &[Method] {
        &self.methods
    }

    /// Runs `methods` on `x` (any number of rows).
    pub fn run(&self, x: Data, methods: &[Method]) -> Result<Vec<Vec<f64>>, String> {
        let x = self.pipeline.transform_all(x)?;
        match &self.pipeline.last {
            Last::Estimator(e) => {
                let m = x.into_dense(e.name())?;
                methods.iter().map(|meth| e.run(&m, *meth)).collect()
            }
            _ => {
                let m = x.into_dense("model output")?;
                Ok(methods.iter().map(|_| m.data.clone()).collect())
            }
        }
    }

    fn decode(&self, inputs: &[Tensor]) -> Result<Data, Error> {
        let find = |name: &str| {
            inputs
                .iter()
                .find(|t| t.name == name)
                .ok_or_else(|| Error::invalid(format!("missing input '{name}'")))
        };
        match &self.inputs {
            Inputs::Matrix(f) => {
                let t = find(INPUT_NAME)?;
                let (rows, cols) = match t.shape.as_slice() {
                    [r, c] if c == f => (*r, *c),
                    s => {
                        return Err(Error::invalid(format!(
                            "input '{INPUT_NAME}' has shape {s:?}; the model expects [N, {f}]"
                        )))
                    }
                };
                let data = numbers(t)?;
                Ok(Data::Dense(Matrix { rows, cols, data }))
            }
            Inputs::StringMatrix(kinds) => {
                let t = find(INPUT_NAME)?;
                let f = kinds.len();
                let rows = match t.shape.as_slice() {
                    [r, c] if *c == f => *r,
                    s => {
                        return Err(Error::invalid(format!(
                            "input '{INPUT_NAME}' has shape {s:?}; the model expects [N, {f}]"
                        )))
                    }
                };
                let s = t
                    .strings()
                    .ok_or_else(|| Error::invalid(format!("input '{INPUT_NAME}' must be BYTES")))?;
                let mut columns = Vec::with_capacity(f);
                for (j, is_str) in kinds.iter().enumerate() {
                    let col: Vec<String> = (0..rows)
                        .map(|i| String::from_utf8_lossy(&s[i * f + j]).into_owned())
                        .collect();
                    columns.push(if *is_str {
                        Column::Str(col)
                    } else {
                        Column::Num(
                            col.iter()
                                .map(|v| {
                                    v.trim().parse::<f64>().map_err(|_| {
                                        Error::invalid(format!(
                                            "column {j} needs numbers, got '{v}'"
                                        ))
                                    })
                                })
                                .collect::<Result<_, _>>()?,
                        )
                    });
                }
                Ok(Data::Table { rows, columns })
            }
            Inputs::Columns(cols) => {
                let mut rows = None;
                let mut columns = Vec::with_capacity(cols.len());
                for (name, is_str) in cols {
                    let t = find(name)?;
                    let n = match t.shape.as_slice() {
                        [n] | [n, 1] => *n,
                        s => {
                            return Err(Error::invalid(format!(
                                "input '{name}' has shape {s:?}; expected [N]"
                            )))
                        }
                    };
                    if rows.is_some_and(|r| r != n) {
                        return Err(Error::invalid("input columns have different lengths"));
                    }
                    rows = Some(n);
                    columns.push(if *is_str {
                        let s = t.strings().ok_or_else(|| {
                            Error::invalid(format!("input '{name}' must be BYTES"))
                        })?;
                        Column::Str(
                            s.iter()
                                .map(|b| String::from_utf8_lossy(b).into_owned())
                                .collect(),
                        )
                    } else {
                        Column::Num(numbers(t)?)
                    });
                }
                Ok(Data::Table {
                    rows: rows.unwrap_or(0),
                    columns,
                })
            }
        }
    }
}

fn numbers(t: &Tensor) -> Result<Vec<f64>, Error> {
    Ok(match t.datatype {
        DataType::F64 => t.to_vec::<f64>()?,
        DataType::F32 => t.to_vec::<f32>()?.into_iter().map(f64::from).collect(),
        DataType::I64 => t.to_vec::<i64>()?.into_iter().map(|v| v as f64).collect(),
        DataType::I32 => t.to_vec::<i32>()?.into_iter().map(f64::from).collect(),
        other => {
            return Err(Error::invalid(format!(
                "input '{}' has datatype {other}; expected FP64 or FP32",
                t.name
            )))
        }
    })
}

fn output_type(p: &Pipeline, m: Method) -> (DataType, Option<usize>) {
    match &p.last {
        Last::Estimator(e) => {
            let width = e.width(m);
            let dt = match (m, e.predict_kind()) {
                (Method::Predict, PredictKind::Classes(Labels::Int(_)))
                | (Method::Predict, PredictKind::Int) => DataType::I64,
                (Method::Predict, PredictKind::Classes(Labels::Str(_))) => DataType::Bytes,
                _ => DataType::F64,
            };
            (dt, width)
        }
        Last::Transform(t) => (
            DataType::F64,
            t.n_features_out().or_else(|| p.n_features_in()),
        ),
        Last::None => (DataType::F64, p.n_features_in()),
    }
}

impl Data {
    /// Rows `start..end` (a copy).
    fn slice_rows(&self, start: usize, end: usize) -> Data {
        match self {
            Data::Dense(m) => Data::Dense(Matrix {
                rows: end - start,
                cols: m.cols,
                data: m.data[start * m.cols..end * m.cols].to_vec(),
            }),
            Data::Table { columns, .. } => Data::Table {
                rows: end - start,
                columns: columns
                    .iter()
                    .map(|c| match c {
                        Column::Num(v) => Column::Num(v[start..end].to_vec()),
                        Column::Str(v) => Column::Str(v[start..end].to_vec()),
                    })
                    .collect(),
            },
        }
    }
}

impl Model for SklearnModel {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, Error> {
        let all: Vec<usize> = (0..self.methods.len()).collect();
        self.infer_outputs(inputs, &all)
    }

    /// Computes only what the request needs: `output-0` (holding the
    /// request's `method` parameter when given) and the outputs it asked for
    /// by name.
    fn infer_with(
        &self,
        inputs: Vec<Tensor>,
        ctx: &InferContext<'_>,
    ) -> Result<Vec<Tensor>, Error> {
        let first = self.request_method(ctx)?;
        if !ctx.has_requested_outputs() {
            return self.compute(inputs, &[(OUTPUT_NAME, first)]);
        }
        let mut wanted = Vec::new();
        for name in ctx.requested_names() {
            let m = if name == OUTPUT_NAME {
                first
            } else {
                self.signature
                    .outputs
                    .iter()
                    .position(|s| s.name == name)
                    .and_then(|i| self.methods.get(i).copied())
                    .ok_or_else(|| Error::invalid(format!("unknown output '{name}'")))?
            };
            if !wanted.iter().any(|(n, _)| *n == name) {
                wanted.push((name, m));
            }
        }
        self.compute(inputs, &wanted)
    }
}

impl SklearnModel {
    /// Like [`Model::infer`], but computes only the outputs at the given
    /// indices of the signature's outputs (returned in that order): a caller
    /// wanting `output-0` alone skips e.g. `predict_proba`.
    pub fn infer_outputs(
        &self,
        inputs: Vec<Tensor>,
        which: &[usize],
    ) -> Result<Vec<Tensor>, Error> {
        let wanted: Vec<(&str, Method)> = which
            .iter()
            .map(
                |&i| match (self.methods.get(i), self.signature.outputs.get(i)) {
                    (Some(m), Some(spec)) => Ok((spec.name.as_str(), *m)),
                    _ => Err(Error::invalid(format!("no output {i}"))),
                },
            )
            .collect::<Result<_, _>>()?;
        self.compute(inputs, &wanted)
    }

    /// The method `output-0` holds for a request: its `method` parameter
    /// when given (any method this model has), else the model's default.
    pub fn request_method(&self, ctx: &InferContext<'_>) -> Result<Method, Error> {
        let Some(v) = ctx.parameter(METHOD_PARAMETER) else {
            return Ok(self.methods.first().copied().unwrap_or(Method::Transform));
        };
        let have = || {
            self.methods
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let name = v.as_str().ok_or_else(|| {
            Error::invalid(format!(
                "request parameter `{METHOD_PARAMETER}` must be a string (one of: {})",
                have()
            ))
        })?;
        Method::parse(name.trim())
            .filter(|m| self.methods.contains(m))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "request parameter `{METHOD_PARAMETER}`: `{name}` is not available for this model (available: {})",
                    have()
                ))
            })
    }

    /// Computes the outputs `wanted` (name, method) in that order.
    fn compute(
        &self,
        inputs: Vec<Tensor>,
        wanted: &[(&str, Method)],
    ) -> Result<Vec<Tensor>, Error> {
        let methods: Vec<Method> = wanted.iter().map(|(_, m)| *m).collect();
        let x = self.decode(&inputs)?;
        drop(inputs);
        let rows = x.rows();
        let results = if rows >= PARALLEL_MIN_ROWS && self.threads != 1 {
            let chunks = rayon::current_num_threads().max(1);
            let per = rows.div_ceil(chunks).max(64);
            let starts: Vec<usize> = (0..rows).step_by(per).collect();
            let parts: Vec<Vec<Vec<f64>>> = starts
                .par_iter()
                .map(|&s| self.run(x.slice_rows(s, (s + per).min(rows)), &methods))
                .collect::<Result<_, _>>()
                .map_err(Error::invalid)?;
            let mut out = vec![Vec::new(); methods.len()];
            for p in parts {
                for (o, v) in out.iter_mut().zip(p) {
                    o.extend(v);
                }
            }
            out
        } else {
            self.run(x, &methods).map_err(Error::invalid)?
        };
        let mut tensors = Vec::with_capacity(results.len());
        for (&(name, m), values) in wanted.iter().zip(results) {
            let mut shape = vec![rows];
            if let (_, Some(width)) = output_type(&self.pipeline, m) {
                shape.push(values.len().checked_div(rows).unwrap_or(width));
            }
            let name = name.to_string();
            let kind = match &self.pipeline.last {
                Last::Estimator(e) if m == Method::Predict => e.predict_kind(),
                _ => PredictKind::Float,
            };
            let t = match kind {
                PredictKind::Classes(labels) => {
                    let idx = |v: f64| -> Result<usize, Error> {
                        let i = v as usize;
                        if v >= 0.0 && i < labels.len() {
                            Ok(i)
                        } else {
                            Err(Error::internal("class index out of range"))
                        }
                    };
                    match &labels {
                        Labels::Int(l) => Tensor::from_vec(
                            name.clone(),
                            shape,
                            values
                                .iter()
                                .map(|&v| idx(v).map(|i| l[i]))
                                .collect::<Result<Vec<i64>, _>>()?,
                        )?,
                        Labels::Float(l) => Tensor::from_vec(
                            name.clone(),
                            shape,
                            values
                                .iter()
                                .map(|&v| idx(v).map(|i| l[i]))
                                .collect::<Result<Vec<f64>, _>>()?,
                        )?,
                        Labels::Str(l) => Tensor::from_strings(
                            name.clone(),
                            shape,
                            values
                                .iter()
                                .map(|&v| idx(v).map(|i| Bytes::from(l[i].clone())))
                                .collect::<Result<Vec<_>, _>>()?,
                        )?,
                    }
                }
                PredictKind::Int => Tensor::from_vec(
                    name.clone(),
                    shape,
                    values.iter().map(|&v| v as i64).collect::<Vec<i64>>(),
                )?,
                PredictKind::Float => Tensor::from_vec(name.clone(), shape, values)?,
            };
            tensors.push(t);
        }
        Ok(tensors)
    }
}

/// Logs what was loaded.
pub(crate) fn log_loaded(path: &Path, m: &SklearnModel) {
    let inputs: Vec<String> = m
        .signature
        .inputs
        .iter()
        .map(|s| format!("{}:{}{:?}", s.name, s.datatype, s.shape))
        .collect();
    let outputs: Vec<String> = m
        .signature
        .outputs
        .iter()
        .map(|s| format!("{}:{}{:?}", s.name, s.datatype, s.shape))
        .collect();
    tracing::info!(
        model = %path.display(),
        class = %m.class,
        inputs = %inputs.join(" "),
        outputs = %outputs.join(" "),
        "loaded scikit-learn model"
    );
}

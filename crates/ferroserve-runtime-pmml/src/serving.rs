//! The served model: the signature derived from a document (one input per
//! active mining field; outputs shaped as KServe's pmmlserver answers: one
//! per field, the target then the PMML output fields, plus `output-0` and
//! `probabilities` on request) and batch inference over request tensors.

use std::path::Path;

use bytes::Bytes;
use ferroserve_core::{
    DataType as Dt, Error, InferContext, LoadContext, Model as ServedModel, Signature, Tensor,
    TensorSpec,
};
use rayon::prelude::*;

use crate::document::Document;
use crate::model::{MiningFunction, Prediction};
use crate::program::Ctx;
use crate::value::{DataType, Value};

/// Name of the default output.
pub const OUTPUT_NAME: &str = "output-0";
/// Name of the optional class-probability output.
pub const PROBABILITIES_NAME: &str = "probabilities";
/// The `model.yaml` parameter that picks what `output-0` holds.
pub const METHOD_PARAMETER: &str = "method";
/// Batches at least this large are split over rayon's threads.
pub const PARALLEL_MIN_ROWS: usize = 256;

/// What `output-0` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The predicted value (`predict`, the default).
    Predict,
    /// Class probabilities `[N, C]` (`predict_proba`, classifiers only).
    PredictProba,
}

/// Options read from the per-model configuration.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The file loaded (relative to the model folder).
    pub model_file: String,
    /// What `output-0` holds.
    pub method: Method,
}

impl LoadOptions {
    /// Reads `parameters:` from the model's configuration.
    pub fn from_context(model_file: &str, ctx: &LoadContext) -> Result<Self, Error> {
        let mut method = Method::Predict;
        for (k, v) in &ctx.config.parameters {
            match k.as_str() {
                METHOD_PARAMETER => {
                    method = match v.as_str() {
                        "predict" => Method::Predict,
                        "predict_proba" => Method::PredictProba,
                        o => {
                            return Err(Error::Load(format!(
                                "{model_file}: parameter method='{o}' is not supported (predict or predict_proba)"
                            )))
                        }
                    }
                }
                // Server-wide defaults that reach every model: the ONNX
                // engine choice and scikit-learn's --predict_proba switch
                // (KServe's pmmlserver has none).
                "engine" | "predict_proba" => {}
                other => tracing::warn!(
                    parameter = other,
                    "unknown PMML model parameter ignored (known: {METHOD_PARAMETER})"
                ),
            }
        }
        Ok(LoadOptions {
            model_file: model_file.to_string(),
            method,
        })
    }
}

/// What one output holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Out {
    /// The predicted value under the target field's name, typed by the
    /// target's `dataType`; a column of INT64/BOOL labels with a row that has
    /// no prediction turns FP64 with NaN (as pandas does in KServe's
    /// pmmlserver).
    Target,
    /// `output-0`: the predicted value; a missing INT64/BOOL label fails
    /// the request.
    Label,
    /// Class probabilities `[N, C]`.
    Probabilities,
    /// The document's output field at this index.
    Field(usize),
}

/// A loaded PMML model, ready to serve.
#[derive(Debug)]
pub struct PmmlModel {
    doc: Document,
    signature: Signature,
    method: Method,
    /// How `output-0` is encoded for classifiers.
    label_type: Dt,
    /// What each signature output holds, in signature order.
    kinds: Vec<Out>,
    /// The outputs (name, kind) a `method: predict` request answers with by
    /// default: the target field, then every output field.
    by_field: Vec<(String, Out)>,
}

/// The tensor type of an output field of PMML type `dt`.
fn field_type(dt: DataType) -> Dt {
    match dt {
        DataType::String => Dt::Bytes,
        DataType::Integer => Dt::I64,
        DataType::Boolean => Dt::Bool,
        _ => Dt::F64,
    }
}

fn input_spec(name: &str, dt: DataType) -> TensorSpec {
    let (main, alts) = match dt {
        DataType::String => (Dt::Bytes, vec![Dt::I64, Dt::I32]),
        DataType::Boolean => (Dt::Bool, vec![Dt::Bytes, Dt::F64, Dt::I64, Dt::I32]),
        _ => (
            Dt::F64,
            vec![Dt::F32, Dt::I64, Dt::I32, Dt::Bool, Dt::Bytes],
        ),
    };
    TensorSpec {
        name: name.to_string(),
        datatype: main,
        shape: vec![-1],
        optional: true,
        alt_datatypes: alts,
    }
}

fn optional(name: &str, dt: Dt, shape: Vec<i64>) -> TensorSpec {
    TensorSpec {
        optional: true,
        ..TensorSpec::new(name, dt, shape)
    }
}

impl PmmlModel {
    /// Parses `text` (the content of `opts.model_file`).
    pub fn from_text(text: &str, opts: &LoadOptions) -> Result<Self, Error> {
        let doc =
            Document::parse(text).map_err(|e| Error::Load(format!("{}: {e}", opts.model_file)))?;
        Self::from_document(doc, opts)
    }

    /// Reads and parses a file.
    pub fn from_file(path: &Path, opts: &LoadOptions) -> Result<Self, Error> {
        let bytes =
            std::fs::read(path).map_err(|e| Error::Load(format!("{}: {e}", path.display())))?;
        let text = String::from_utf8(bytes).map_err(|_| {
            Error::Load(format!("{}: not UTF-8 text (PMML is XML)", path.display()))
        })?;
        Self::from_text(&text, opts)
    }

    fn from_document(doc: Document, opts: &LoadOptions) -> Result<Self, Error> {
        let classification = doc.model.function == MiningFunction::Classification;
        if opts.method == Method::PredictProba && !classification {
            return Err(Error::Load(format!(
                "{}: method=predict_proba needs a classification model; this one is a regression",
                opts.model_file
            )));
        }
        let inputs = doc
            .inputs
            .iter()
            .map(|i| input_spec(&i.name, i.prep.dtype))
            .collect();
        let label_type = match doc.target.dtype {
            DataType::String => Dt::Bytes,
            DataType::Integer => Dt::I64,
            DataType::Boolean => Dt::Bool,
            _ => Dt::F64,
        };
        let n_classes = doc.classes.len() as i64;
        let target_type = if classification { label_type } else { Dt::F64 };
        let target_name = doc
            .target
            .name
            .clone()
            .unwrap_or_else(|| OUTPUT_NAME.to_string());
        // KServe's pmmlserver answers with one column per field of JPMML's
        // result: the target, then the output fields.
        let mut by_field: Vec<(String, Out, Dt)> = vec![(target_name, Out::Target, target_type)];
        for (j, o) in doc.outputs.iter().enumerate() {
            if !by_field.iter().any(|(n, _, _)| *n == o.name) {
                by_field.push((o.name.clone(), Out::Field(j), field_type(o.dtype)));
            }
        }
        let mut outputs: Vec<TensorSpec> = Vec::new();
        let mut kinds = Vec::new();
        let mut push = |spec: TensorSpec, kind: Out| {
            if !outputs.iter().any(|s| s.name == spec.name) {
                outputs.push(spec);
                kinds.push(kind);
            }
        };
        match opts.method {
            Method::Predict => {
                for (name, kind, dt) in &by_field {
                    push(TensorSpec::new(name.clone(), *dt, vec![-1]), *kind);
                }
                push(optional(OUTPUT_NAME, target_type, vec![-1]), Out::Label);
                if classification {
                    push(
                        optional(PROBABILITIES_NAME, Dt::F64, vec![-1, n_classes]),
                        Out::Probabilities,
                    );
                }
            }
            Method::PredictProba => {
                push(
                    TensorSpec::new(OUTPUT_NAME, Dt::F64, vec![-1, n_classes]),
                    Out::Probabilities,
                );
                for (name, kind, dt) in &by_field {
                    push(optional(name, *dt, vec![-1]), *kind);
                }
            }
        }
        let by_field = by_field.into_iter().map(|(n, k, _)| (n, k)).collect();
        let signature = Signature {
            platform: "pmml".into(),
            backend: "pmml".into(),
            model_file: opts.model_file.clone(),
            inputs,
            outputs,
        };
        Ok(PmmlModel {
            doc,
            signature,
            method: opts.method,
            label_type,
            kinds,
            by_field,
        })
    }

    /// The compiled document.
    pub fn document(&self) -> &Document {
        &self.doc
    }

    /// The class labels, in the order of the `probabilities` columns.
    pub fn classes(&self) -> Vec<String> {
        self.doc.classes.iter().map(Value::to_text).collect()
    }

    /// Evaluates rows given as field values (None: missing); for tests
    /// and tools. Returns the outcome per row.
    pub fn evaluate_rows(&self, rows: &[Vec<Option<Value>>]) -> Result<Vec<RowResult>, Error> {
        let cols: Vec<Column> = (0..self.doc.inputs.len())
            .map(|j| Column::Values(rows.iter().map(|r| r.get(j).cloned().flatten()).collect()))
            .collect();
        let inputs: Vec<Option<&Column>> = cols.iter().map(Some).collect();
        self.run(&inputs, rows.len())
    }

    fn run(&self, cols: &[Option<&Column>], n: usize) -> Result<Vec<RowResult>, Error> {
        let chunk = |range: std::ops::Range<usize>| -> Result<Vec<RowResult>, Error> {
            let mut ctx = Ctx::new(&self.doc.prog);
            let mut out = Vec::with_capacity(range.len());
            for row in range {
                ctx.reset();
                out.push(
                    self.row(&mut ctx, cols, row)
                        .map_err(|e| Error::invalid(format!("row {row}: {e}")))?,
                );
            }
            Ok(out)
        };
        let threads = rayon::current_num_threads();
        if n < PARALLEL_MIN_ROWS || threads <= 1 {
            return chunk(0..n);
        }
        let size = n.div_ceil(threads.min(n.div_ceil(PARALLEL_MIN_ROWS / 2)));
        let parts: Vec<Result<Vec<RowResult>, Error>> = (0..n)
            .step_by(size)
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|s| chunk(s..(s + size).min(n)))
            .collect();
        let mut all = Vec::with_capacity(n);
        for p in parts {
            all.extend(p?);
        }
        Ok(all)
    }

    fn row(
        &self,
        ctx: &mut Ctx,
        cols: &[Option<&Column>],
        row: usize,
    ) -> Result<RowResult, String> {
        for (field, col) in self.doc.inputs.iter().zip(cols) {
            let raw = match col {
                Some(c) => c.get(row)?,
                None => Value::Missing,
            };
            let v = field.prep.apply(raw)?;
            ctx.set(field.slot, v);
        }
        let out = self.doc.eval(ctx)?;
        let predicted = self.doc.model.predicted_value(&out, ctx);
        let probabilities = match &out.pred {
            Prediction::Class { probs: Some(_), .. } => (0..self.doc.classes.len())
                .map(|k| out.probability(k).unwrap_or(0.0))
                .collect(),
            _ => vec![f64::NAN; self.doc.classes.len()],
        };
        let mut outputs = Vec::with_capacity(self.doc.outputs.len());
        for o in &self.doc.outputs {
            outputs.push(ctx.get(o.slot)?);
        }
        Ok(RowResult {
            predicted,
            probabilities,
            outputs,
        })
    }
}

/// The results for one row.
#[derive(Debug, Clone, PartialEq)]
pub struct RowResult {
    /// The predicted value (missing when the model gives none).
    pub predicted: Value,
    /// Class probabilities in class order (NaN when the model has none).
    pub probabilities: Vec<f64>,
    /// The top-level output fields, in signature order.
    pub outputs: Vec<Value>,
}

/// A request column.
enum Column<'a> {
    F64(Vec<f64>),
    I64(Vec<i64>),
    Bool(Vec<u8>),
    Str(&'a [Bytes]),
    Values(Vec<Option<Value>>),
}

impl Column<'_> {
    fn get(&self, row: usize) -> Result<Value, String> {
        Ok(match self {
            Column::F64(v) => match v.get(row) {
                Some(x) if x.is_nan() => Value::Missing,
                Some(x) => Value::Double(*x),
                None => Value::Missing,
            },
            Column::I64(v) => v.get(row).map_or(Value::Missing, |x| Value::Int(*x)),
            Column::Bool(v) => v.get(row).map_or(Value::Missing, |x| Value::Bool(*x != 0)),
            Column::Str(v) => match v.get(row) {
                Some(b) if b.is_empty() => Value::Missing,
                Some(b) => Value::str(
                    std::str::from_utf8(b)
                        .map_err(|_| "a BYTES element is not UTF-8".to_string())?,
                ),
                None => Value::Missing,
            },
            Column::Values(v) => v.get(row).cloned().flatten().unwrap_or(Value::Missing),
        })
    }
}

fn column(t: &Tensor) -> Result<Column<'_>, Error> {
    Ok(match t.datatype {
        Dt::F64 => Column::F64(t.to_vec::<f64>()?),
        Dt::F32 => Column::F64(t.to_vec::<f32>()?.into_iter().map(f64::from).collect()),
        Dt::I64 => Column::I64(t.to_vec::<i64>()?),
        Dt::I32 => Column::I64(t.to_vec::<i32>()?.into_iter().map(i64::from).collect()),
        Dt::Bool => Column::Bool(t.raw().map(|b| b.to_vec()).unwrap_or_default()),
        Dt::Bytes => Column::Str(t.strings().unwrap_or(&[])),
        other => {
            return Err(Error::invalid(format!(
                "input '{}': datatype {other} is not accepted",
                t.name
            )))
        }
    })
}

impl ServedModel for PmmlModel {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn metadata_parameters(&self) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::Value as J;
        let mut m = serde_json::Map::new();
        m.insert("pmml_version".into(), J::from(self.doc.version.clone()));
        m.insert("pmml_model".into(), J::from(self.doc.model.element.clone()));
        let function = match self.doc.model.function {
            MiningFunction::Regression => "regression",
            MiningFunction::Classification => "classification",
        };
        m.insert("function".into(), J::from(function));
        if let Some(t) = &self.doc.target.name {
            m.insert("target".into(), J::from(t.clone()));
        }
        if !self.doc.classes.is_empty() {
            m.insert("classes".into(), J::from(self.classes()));
        }
        if let Some(a) = &self.doc.application {
            m.insert("application".into(), J::from(a.clone()));
        }
        m
    }

    fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, Error> {
        let all: Vec<(&str, Out)> = self
            .signature
            .outputs
            .iter()
            .zip(&self.kinds)
            .map(|(s, k)| (s.name.as_str(), *k))
            .collect();
        self.evaluate(inputs, &all)
    }

    /// Answers with what the request needs: by default (method `predict`)
    /// one output per field, the target then every output field, as KServe's
    /// pmmlserver does; with the request parameter (or model parameter)
    /// `method: predict_proba`, `output-0` holding the `[N, C]`
    /// probabilities. Outputs asked for by name are computed alone.
    fn infer_with(
        &self,
        inputs: Vec<Tensor>,
        ctx: &InferContext<'_>,
    ) -> Result<Vec<Tensor>, Error> {
        let method = match ctx.parameter(METHOD_PARAMETER) {
            None => self.method,
            Some(v) => match v.as_str().map(str::trim) {
                Some("predict") => Method::Predict,
                Some("predict_proba")
                    if self.doc.model.function == MiningFunction::Classification =>
                {
                    Method::PredictProba
                }
                Some("predict_proba") => {
                    return Err(Error::invalid(
                        "request parameter `method`: predict_proba needs a classification model; this one is a regression",
                    ))
                }
                _ => {
                    return Err(Error::invalid(format!(
                        "request parameter `{METHOD_PARAMETER}` must be \"predict\" or \"predict_proba\""
                    )))
                }
            },
        };
        let first = if method == Method::PredictProba {
            Out::Probabilities
        } else {
            Out::Label
        };
        let wanted: Vec<(&str, Out)> = if ctx.has_requested_outputs() {
            let mut w = Vec::new();
            for name in ctx.requested_names() {
                let kind = if name == OUTPUT_NAME {
                    first
                } else {
                    self.signature
                        .outputs
                        .iter()
                        .position(|s| s.name == name)
                        .and_then(|i| self.kinds.get(i).copied())
                        .ok_or_else(|| Error::invalid(format!("unknown output '{name}'")))?
                };
                if !w.iter().any(|(n, _)| *n == name) {
                    w.push((name, kind));
                }
            }
            w
        } else if method == Method::PredictProba {
            vec![(OUTPUT_NAME, Out::Probabilities)]
        } else {
            self.by_field
                .iter()
                .map(|(n, k)| (n.as_str(), *k))
                .collect()
        };
        self.evaluate(inputs, &wanted)
    }

    /// KServe v1 answers of a `method: predict` model are records, one per
    /// row, keyed by field name (as KServe's pmmlserver answers).
    fn v1_records(&self) -> bool {
        self.method == Method::Predict
    }
}

impl PmmlModel {
    /// Evaluates the rows of `inputs` and encodes the outputs `wanted`
    /// (name, kind) in that order.
    fn evaluate(&self, inputs: Vec<Tensor>, wanted: &[(&str, Out)]) -> Result<Vec<Tensor>, Error> {
        let mut n: Option<usize> = None;
        for t in &inputs {
            let rows = match t.shape.as_slice() {
                [r] => *r,
                _ => {
                    return Err(Error::invalid(format!(
                        "input '{}' must be one-dimensional [N]",
                        t.name
                    )))
                }
            };
            match n {
                Some(m) if m != rows => {
                    return Err(Error::invalid(format!(
                        "inputs have different lengths ({m} and {rows} for '{}')",
                        t.name
                    )))
                }
                _ => n = Some(rows),
            }
        }
        let Some(n) = n else {
            return Err(Error::invalid(format!(
                "give at least one input (the model's fields: {})",
                self.doc
                    .inputs
                    .iter()
                    .map(|i| i.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let mut owned: Vec<Option<Column>> = Vec::with_capacity(self.doc.inputs.len());
        for f in &self.doc.inputs {
            owned.push(match inputs.iter().find(|t| t.name == f.name) {
                Some(t) => Some(column(t)?),
                None => None,
            });
        }
        let cols: Vec<Option<&Column>> = owned.iter().map(Option::as_ref).collect();
        let rows = self.run(&cols, n)?;
        wanted
            .iter()
            .map(|&(name, kind)| self.encode(&rows, n, name, kind))
            .collect()
    }

    fn encode(&self, rows: &[RowResult], n: usize, name: &str, kind: Out) -> Result<Tensor, Error> {
        let classification = self.doc.model.function == MiningFunction::Classification;
        Ok(match kind {
            Out::Probabilities => {
                let v: Vec<f64> = rows
                    .iter()
                    .flat_map(|r| r.probabilities.iter().copied())
                    .collect();
                Tensor::from_vec(name, vec![n, self.doc.classes.len()], v)?
            }
            Out::Label if classification => {
                let mut t = self.labels(rows, n)?;
                t.name = name.to_string();
                t
            }
            Out::Target if classification => {
                column_tensor(name, self.label_type, rows.iter().map(|r| &r.predicted), n)?
            }
            Out::Label | Out::Target => Tensor::from_vec(
                name,
                vec![n],
                rows.iter()
                    .map(|r| r.predicted.as_f64().unwrap_or(f64::NAN))
                    .collect::<Vec<f64>>(),
            )?,
            Out::Field(j) => {
                let dt = self
                    .doc
                    .outputs
                    .get(j)
                    .map_or(Dt::F64, |o| field_type(o.dtype));
                let values = rows.iter().map(|r| r.outputs.get(j).unwrap_or(&MISSING));
                column_tensor(name, dt, values, n)?
            }
        })
    }

    fn labels(&self, rows: &[RowResult], n: usize) -> Result<Tensor, Error> {
        let missing = |i: usize| {
            Error::invalid(format!(
                "row {i}: the model gives no prediction (a missing value) and output-0 is {}; \
                 give the missing inputs or a MiningField missingValueReplacement",
                self.label_type
            ))
        };
        Ok(match self.label_type {
            Dt::Bytes => Tensor::from_strings(
                OUTPUT_NAME,
                vec![n],
                rows.iter()
                    .map(|r| Bytes::from(r.predicted.to_text()))
                    .collect(),
            )?,
            Dt::I64 => {
                let mut v = Vec::with_capacity(n);
                for (i, r) in rows.iter().enumerate() {
                    match &r.predicted {
                        Value::Int(x) => v.push(*x),
                        other => {
                            v.push(other.as_f64().map(|x| x as i64).ok_or_else(|| missing(i))?)
                        }
                    }
                }
                Tensor::from_vec(OUTPUT_NAME, vec![n], v)?
            }
            Dt::Bool => {
                let mut v = Vec::with_capacity(n);
                for (i, r) in rows.iter().enumerate() {
                    v.push(r.predicted.as_bool().ok_or_else(|| missing(i))?);
                }
                Tensor::from_bools(OUTPUT_NAME, vec![n], &v)?
            }
            _ => Tensor::from_vec(
                OUTPUT_NAME,
                vec![n],
                rows.iter()
                    .map(|r| r.predicted.as_f64().unwrap_or(f64::NAN))
                    .collect(),
            )?,
        })
    }
}

static MISSING: Value = Value::Missing;

/// One value per row as a tensor of `dt`: BYTES (missing: ""), INT64 or
/// BOOL when every row has a value (else FP64 with NaN for the missing
/// ones, as a pandas column turns float), or FP64.
fn column_tensor<'a>(
    name: &str,
    dt: Dt,
    values: impl Iterator<Item = &'a Value> + Clone,
    n: usize,
) -> Result<Tensor, Error> {
    let floats = |values: &mut dyn Iterator<Item = &'a Value>| -> Result<Tensor, Error> {
        Ok(Tensor::from_vec(
            name,
            vec![n],
            values
                .map(|v| v.as_f64().unwrap_or(f64::NAN))
                .collect::<Vec<f64>>(),
        )?)
    };
    Ok(match dt {
        Dt::Bytes => Tensor::from_strings(
            name,
            vec![n],
            values.map(|v| Bytes::from(v.to_text())).collect(),
        )?,
        Dt::I64 => {
            let ints: Option<Vec<i64>> = values
                .clone()
                .map(|v| match v {
                    Value::Int(x) => Some(*x),
                    other => other
                        .as_f64()
                        .filter(|x| x.is_finite() && x.fract() == 0.0)
                        .map(|x| x as i64),
                })
                .collect();
            match ints {
                Some(v) => Tensor::from_vec(name, vec![n], v)?,
                None => floats(&mut values.clone())?,
            }
        }
        Dt::Bool => {
            let bools: Option<Vec<bool>> = values.clone().map(Value::as_bool).collect();
            match bools {
                Some(v) => Tensor::from_bools(name, vec![n], &v)?,
                None => floats(&mut values.clone())?,
            }
        }
        _ => floats(&mut values.clone())?,
    })
}

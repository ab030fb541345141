//! The wrapper model: the delegate's model behind the MLflow signature.

use std::sync::Arc;

use ferroserve_core::{DataType, Error, InferContext, Model, Signature, Tensor, TensorSpec};
use serde_json::{Map, Value};

use crate::mlmodel::{Column, Flavor, InputExamples, MlModel};

/// Name of the single-matrix input accepted beside the columns.
pub const MATRIX_INPUT: &str = "input-0";

/// How requests reach the delegate.
#[derive(Debug, Clone)]
enum Plan {
    /// The delegate's own inputs (no or a tensor-based signature).
    PassThrough,
    /// Columns (or one `input-0` matrix) assembled into the delegate's
    /// `[N, F]` input.
    Matrix {
        columns: Vec<Column>,
        target: TensorSpec,
    },
    /// Columns passed to the delegate's per-column inputs of the same names.
    ByName,
}

/// An MLflow model: a delegate runtime's model, with the MLflow signature's
/// columns as inputs when it is column-based.
///
/// With a column-based signature the inputs are one per column (FP64 for
/// double/float, INT64 for long/integer, BOOL for boolean, BYTES for
/// string/binary; shape `[-1]`), plus an optional `input-0` `[-1, F]` matrix
/// when the delegate takes one: send either every column or the matrix.
/// Outputs are the delegate's. The MLflow signature, flavor and the
/// delegate's own metadata are in [`Model::metadata_parameters`].
pub struct MlflowModel {
    inner: Arc<dyn Model>,
    signature: Signature,
    plan: Plan,
    parameters: Map<String, Value>,
}

fn numeric(dt: DataType) -> bool {
    matches!(
        dt,
        DataType::F64 | DataType::F32 | DataType::I64 | DataType::I32 | DataType::Bool
    )
}

fn column_spec(c: &Column) -> TensorSpec {
    let mut s = TensorSpec::new(c.name.clone(), c.datatype, vec![-1]);
    s.optional = true;
    if numeric(c.datatype) {
        s.alt_datatypes = [
            DataType::F64,
            DataType::F32,
            DataType::I64,
            DataType::I32,
            DataType::Bool,
        ]
        .into_iter()
        .filter(|&d| d != c.datatype)
        .collect();
    }
    s
}

impl MlflowModel {
    /// Wraps `inner`, loaded for `flavor` of `mlmodel`.
    pub fn new(inner: Arc<dyn Model>, mlmodel: &MlModel, flavor: &Flavor) -> Result<Self, Error> {
        Self::with_examples(inner, mlmodel, flavor, InputExamples::default())
    }

    /// Like [`MlflowModel::new`], with the model's saved input examples,
    /// shown in the metadata parameters as `mlflow_input_example`,
    /// `mlflow_input_example_info` and `mlflow_serving_input_example`.
    pub fn with_examples(
        inner: Arc<dyn Model>,
        mlmodel: &MlModel,
        flavor: &Flavor,
        examples: InputExamples,
    ) -> Result<Self, Error> {
        let dsig = inner.signature().clone();
        let columns = mlmodel.columns()?;
        let mut signature = Signature {
            model_file: flavor.file.clone(),
            ..dsig.clone()
        };
        let plan = match columns {
            None => Plan::PassThrough,
            Some(cols)
                if cols
                    .iter()
                    .all(|c| dsig.inputs.iter().any(|s| s.name == c.name))
                    && dsig
                        .inputs
                        .iter()
                        .all(|s| s.optional || cols.iter().any(|c| c.name == s.name)) =>
            {
                signature.inputs = cols.iter().map(column_spec).collect();
                for (spec, c) in signature.inputs.iter_mut().zip(&cols) {
                    let d = dsig.inputs.iter().find(|s| s.name == c.name);
                    spec.optional = d.is_some_and(|d| d.optional);
                }
                Plan::ByName
            }
            Some(cols) => match dsig.inputs.as_slice() {
                [m] if m.shape.len() == 2
                    && (m.shape[1] < 0 || m.shape[1] as usize == cols.len())
                    && numeric(m.datatype)
                    && cols.iter().all(|c| numeric(c.datatype)) =>
                {
                    let mut inputs: Vec<TensorSpec> = cols.iter().map(column_spec).collect();
                    let mut matrix = m.clone();
                    matrix.name = MATRIX_INPUT.to_string();
                    matrix.shape = vec![-1, cols.len() as i64];
                    matrix.optional = true;
                    for d in [DataType::F64, DataType::F32] {
                        if d != matrix.datatype && !matrix.alt_datatypes.contains(&d) {
                            matrix.alt_datatypes.push(d);
                        }
                    }
                    inputs.push(matrix);
                    signature.inputs = inputs;
                    Plan::Matrix {
                        columns: cols,
                        target: m.clone(),
                    }
                }
                _ => {
                    return Err(Error::Load(format!(
                    "the MLflow signature's {} columns ({}) do not fit the {} model's inputs ({})",
                    cols.len(),
                    cols.iter()
                        .map(|c| format!("{}: {}", c.name, c.mlflow_type))
                        .collect::<Vec<_>>()
                        .join(", "),
                    flavor.format,
                    dsig.inputs
                        .iter()
                        .map(|s| format!("{} {} {:?}", s.name, s.datatype.as_str(), s.shape))
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
                }
            },
        };
        let mut parameters = inner.metadata_parameters();
        parameters.insert("mlflow_flavor".into(), Value::String(flavor.name.clone()));
        parameters.insert("mlflow_runtime".into(), Value::String(flavor.format.into()));
        if let Some(v) = &mlmodel.mlflow_version {
            parameters.insert("mlflow_version".into(), Value::String(v.clone()));
        }
        if let Some(s) = mlmodel.signature_json() {
            parameters.insert("mlflow_signature".into(), s);
        }
        if let Some(v) = examples.input_example {
            parameters.insert("mlflow_input_example".into(), v);
        }
        if let Some(v) = examples.info {
            parameters.insert("mlflow_input_example_info".into(), v);
        }
        if let Some(v) = examples.serving_input_example {
            parameters.insert("mlflow_serving_input_example".into(), v);
        }
        Ok(MlflowModel {
            inner,
            signature,
            plan,
            parameters,
        })
    }
}

/// The elements of a numeric tensor as f64.
fn as_f64(t: &Tensor) -> Result<Vec<f64>, Error> {
    Ok(match t.datatype {
        DataType::F64 => t.to_vec::<f64>()?,
        DataType::F32 => t.to_vec::<f32>()?.into_iter().map(f64::from).collect(),
        DataType::I64 => t.to_vec::<i64>()?.into_iter().map(|v| v as f64).collect(),
        DataType::I32 => t.to_vec::<i32>()?.into_iter().map(f64::from).collect(),
        DataType::Bool => t
            .raw()
            .map(|b| b.iter().map(|&x| f64::from(x)).collect())
            .unwrap_or_default(),
        other => {
            return Err(Error::invalid(format!(
                "input '{}' is {}; a number is expected",
                t.name,
                other.as_str()
            )))
        }
    })
}

/// `values` (shape `shape`) as a tensor named `name` of datatype `dt`.
fn typed(name: &str, dt: DataType, shape: Vec<usize>, values: Vec<f64>) -> Result<Tensor, Error> {
    Ok(match dt {
        DataType::F32 => {
            Tensor::from_vec(name, shape, values.into_iter().map(|v| v as f32).collect())?
        }
        DataType::I64 => {
            Tensor::from_vec(name, shape, values.into_iter().map(|v| v as i64).collect())?
        }
        DataType::I32 => {
            Tensor::from_vec(name, shape, values.into_iter().map(|v| v as i32).collect())?
        }
        DataType::Bool => Tensor::from_bools(
            name,
            shape,
            &values.iter().map(|&v| v != 0.0).collect::<Vec<_>>(),
        )?,
        _ => Tensor::from_vec(name, shape, values)?,
    })
}

/// `t` renamed to `name` and converted to `dt` when it is not already.
fn convert(
    mut t: Tensor,
    name: &str,
    dt: DataType,
    accepted: &[DataType],
) -> Result<Tensor, Error> {
    t.name = name.to_string();
    if t.datatype == dt || accepted.contains(&t.datatype) {
        return Ok(t);
    }
    if dt == DataType::Bytes || t.datatype == DataType::Bytes {
        return Err(Error::invalid(format!(
            "input '{name}' is {}; the model takes {}",
            t.datatype.as_str(),
            dt.as_str()
        )));
    }
    let shape = t.shape.clone();
    typed(name, dt, shape, as_f64(&t)?)
}

impl Model for MlflowModel {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, Error> {
        self.infer_with(inputs, &InferContext::default())
    }

    /// Hands the request's context (parameters such as `method`, requested
    /// outputs) on to the delegate.
    fn infer_with(
        &self,
        inputs: Vec<Tensor>,
        ctx: &InferContext<'_>,
    ) -> Result<Vec<Tensor>, Error> {
        match &self.plan {
            Plan::PassThrough => self.inner.infer_with(inputs, ctx),
            Plan::ByName => {
                let d = self.inner.signature();
                let mut out = Vec::with_capacity(inputs.len());
                for spec in &d.inputs {
                    if let Some(t) = inputs.iter().find(|t| t.name == spec.name) {
                        out.push(convert(
                            t.clone(),
                            &spec.name,
                            spec.datatype,
                            &spec.alt_datatypes,
                        )?);
                    }
                }
                self.inner.infer_with(out, ctx)
            }
            Plan::Matrix { columns, target } => {
                let mut inputs = inputs;
                if let Some(i) = inputs.iter().position(|t| t.name == MATRIX_INPUT) {
                    if inputs.len() > 1 {
                        return Err(Error::invalid(format!(
                            "send either the columns or the single '{MATRIX_INPUT}' matrix, not both"
                        )));
                    }
                    let m = inputs.swap_remove(i);
                    let m = convert(m, &target.name, target.datatype, &target.alt_datatypes)?;
                    return self.inner.infer_with(vec![m], ctx);
                }
                let f = columns.len();
                let mut rows = 0;
                let mut data = Vec::new();
                for (j, c) in columns.iter().enumerate() {
                    let t = inputs.iter().find(|t| t.name == c.name).ok_or_else(|| {
                        Error::invalid(format!(
                            "missing column '{}': send every column of the MLflow signature ({}) or one '{MATRIX_INPUT}' [N, {f}] matrix",
                            c.name,
                            columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
                        ))
                    })?;
                    let v = as_f64(t)?;
                    if j == 0 {
                        rows = v.len();
                        data = vec![0.0; rows * f];
                    } else if v.len() != rows {
                        return Err(Error::invalid(format!(
                            "column '{}' has {} rows, column '{}' has {rows}",
                            c.name,
                            v.len(),
                            columns.first().map(|c| c.name.as_str()).unwrap_or("")
                        )));
                    }
                    for (r, x) in v.into_iter().enumerate() {
                        if let Some(slot) = data.get_mut(r * f + j) {
                            *slot = x;
                        }
                    }
                }
                let m = typed(&target.name, target.datatype, vec![rows, f], data)?;
                self.inner.infer_with(vec![m], ctx)
            }
        }
    }

    fn metadata_parameters(&self) -> Map<String, Value> {
        self.parameters.clone()
    }

    fn v1_records(&self) -> bool {
        self.inner.v1_records()
    }
}

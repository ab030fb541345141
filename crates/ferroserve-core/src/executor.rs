//! Running one request on one model version: validation against the
//! signature, execution on the compute pool, output selection, statistics.

use std::sync::Arc;
use std::time::Instant;

use crate::datatype::DataType;
use crate::error::Error;
use crate::model::InferContext;
use crate::registry::ServedModel;
use crate::request::{InferRequest, InferResponse};
use crate::tensor::Tensor;

/// For a model with one `[N, F]` input whose metadata lists `feature_names`:
/// a request that sends one `[N]` (or `[N, 1]`) numeric column per feature,
/// named by feature, is assembled into that matrix (absent features are
/// missing, NaN). Any other request is returned unchanged.
fn assemble_feature_columns(
    model: &ServedModel,
    inputs: Vec<Tensor>,
) -> Result<Vec<Tensor>, Error> {
    let sig = model.signature();
    let [spec] = sig.inputs.as_slice() else {
        return Ok(inputs);
    };
    if spec.shape.len() != 2 || inputs.is_empty() || inputs.iter().any(|t| t.name == spec.name) {
        return Ok(inputs);
    }
    let meta = model.model.metadata_parameters();
    let Some(names) = meta.get("feature_names").and_then(|v| v.as_array()) else {
        return Ok(inputs);
    };
    let names: Vec<&str> = names.iter().filter_map(|v| v.as_str()).collect();
    if names.is_empty() || (spec.shape[1] >= 0 && spec.shape[1] as usize != names.len()) {
        return Ok(inputs);
    }
    let rows = inputs[0].shape.first().copied().unwrap_or(0);
    let f = names.len();
    let mut matrix = vec![f64::NAN; rows.saturating_mul(f)];
    for t in &inputs {
        let Some(col) = names.iter().position(|n| *n == t.name) else {
            return Err(Error::invalid(format!(
                "unexpected input '{}' for model '{}' (expected '{}', or one column per feature: {})",
                t.name,
                model.name,
                spec.name,
                names.join(", ")
            )));
        };
        if !(t.shape == [rows] || t.shape == [rows, 1]) {
            return Err(Error::invalid(format!(
                "feature column '{}' has shape {:?}; every column must be [{rows}] or [{rows}, 1]",
                t.name, t.shape
            )));
        }
        let values: Vec<f64> = match t.datatype {
            DataType::F64 => t.to_vec::<f64>()?,
            DataType::F32 => t.to_vec::<f32>()?.into_iter().map(f64::from).collect(),
            DataType::I64 => t.to_vec::<i64>()?.into_iter().map(|v| v as f64).collect(),
            DataType::I32 => t.to_vec::<i32>()?.into_iter().map(f64::from).collect(),
            DataType::Bytes => {
                // A categorical feature sent by value: its code is the
                // value's position in the model's category list, NaN when
                // unknown.
                let cats = meta
                    .get("categorical_values")
                    .and_then(|c| c.get(t.name.as_str()))
                    .and_then(|c| c.as_array())
                    .ok_or_else(|| {
                        Error::invalid(format!(
                            "feature column '{}' holds strings but is not a categorical feature of model '{}'",
                            t.name, model.name
                        ))
                    })?;
                t.strings()
                    .unwrap_or_default()
                    .iter()
                    .map(|b| {
                        let s = String::from_utf8_lossy(b);
                        cats.iter()
                            .position(|c| c.as_str() == Some(s.as_ref()))
                            .map_or(f64::NAN, |p| p as f64)
                    })
                    .collect()
            }
            other => {
                return Err(Error::invalid(format!(
                    "feature column '{}' has datatype {other}; use FP32, FP64, INT32, INT64 or BYTES (categories)",
                    t.name
                )))
            }
        };
        for (r, v) in values.into_iter().enumerate() {
            matrix[r * f + col] = v;
        }
    }
    let t = if spec.accepts_datatype(DataType::F64) {
        Tensor::from_vec(spec.name.clone(), vec![rows, f], matrix)?
    } else {
        let m32: Vec<f32> = matrix.into_iter().map(|v| v as f32).collect();
        Tensor::from_vec(spec.name.clone(), vec![rows, f], m32)?
    };
    Ok(vec![t])
}

/// Checks the inputs against the model's signature and orders them as the
/// signature does. Every check a runtime relies on happens here.
pub fn validate_inputs(model: &ServedModel, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, Error> {
    let inputs = assemble_feature_columns(model, inputs)?;
    let sig = model.signature();
    let mut slots: Vec<Option<Tensor>> = vec![None; sig.inputs.len()];
    for t in inputs {
        let Some(idx) = sig.inputs.iter().position(|s| s.name == t.name) else {
            let expected: Vec<&str> = sig.inputs.iter().map(|s| s.name.as_str()).collect();
            return Err(Error::invalid(format!(
                "unexpected input '{}' for model '{}' (expected inputs: {})",
                t.name,
                model.name,
                expected.join(", ")
            )));
        };
        let spec = &sig.inputs[idx];
        if !spec.accepts_datatype(t.datatype) {
            return Err(Error::invalid(format!(
                "input '{}' has datatype {}, model '{}' expects {}",
                t.name, t.datatype, model.name, spec.datatype
            )));
        }
        if !spec.accepts_shape(&t.shape) {
            return Err(Error::invalid(format!(
                "input '{}' has shape {:?}, model '{}' expects {:?} (-1: any size)",
                t.name, t.shape, model.name, spec.shape
            )));
        }
        if model.max_batch_size > 0 {
            let batch = t.shape.first().copied().unwrap_or(0);
            if batch as u64 > u64::from(model.max_batch_size) {
                return Err(Error::invalid(format!(
                    "input '{}' has batch size {batch}, model '{}' allows at most {} (max_batch_size)",
                    t.name, model.name, model.max_batch_size
                )));
            }
        }
        if slots[idx].is_some() {
            return Err(Error::invalid(format!("input '{}' given twice", t.name)));
        }
        slots[idx] = Some(t);
    }
    let mut out = Vec::with_capacity(slots.len());
    for (slot, spec) in slots.into_iter().zip(&sig.inputs) {
        match slot {
            Some(t) => out.push(t),
            None if spec.optional => {}
            None => {
                return Err(Error::invalid(format!(
                    "missing input '{}' for model '{}'",
                    spec.name, model.name
                )))
            }
        }
    }
    if model.max_batch_size > 0 {
        let first = out.first().and_then(|t| t.shape.first().copied());
        if out.iter().any(|t| t.shape.first().copied() != first) {
            return Err(Error::invalid(
                "all inputs must have the same batch size (dimension 0)",
            ));
        }
    }
    Ok(out)
}

/// Checks requested output names before any compute happens.
pub fn validate_outputs(model: &ServedModel, req: &InferRequest) -> Result<(), Error> {
    for o in &req.outputs {
        if !model.signature().outputs.iter().any(|s| s.name == o.name) {
            return Err(Error::invalid(format!(
                "unknown output '{}' requested from model '{}'",
                o.name, model.name
            )));
        }
    }
    Ok(())
}

/// Keeps the outputs a request asked for, in its order, with its output
/// parameters attached; with none asked for, every output that is not
/// `optional` (on request only), or every output when the model returned
/// only optional ones.
pub fn select_outputs(
    sig: &crate::model::Signature,
    requested: &[crate::request::RequestedOutput],
    mut outputs: Vec<Tensor>,
) -> Result<Vec<Tensor>, Error> {
    if requested.is_empty() {
        let is_optional = |t: &Tensor| sig.outputs.iter().any(|s| s.optional && s.name == t.name);
        // A runtime that returned only optional outputs for this request
        // (a request parameter switched what it computes) meant them.
        if !outputs.iter().all(is_optional) {
            outputs.retain(|t| !is_optional(t));
        }
        return Ok(outputs);
    }
    let mut selected = Vec::with_capacity(requested.len());
    for r in requested {
        let pos = outputs
            .iter()
            .position(|t| t.name == r.name)
            .ok_or_else(|| {
                Error::internal(format!("runtime did not return output '{}'", r.name))
            })?;
        let mut t = outputs.swap_remove(pos);
        t.parameters.extend(r.parameters.clone());
        selected.push(t);
    }
    Ok(selected)
}

/// Rows (dimension 0) of a validated request for a batching model, else 1.
pub fn batch_rows(model: &ServedModel, inputs: &[Tensor]) -> usize {
    if model.max_batch_size > 0 {
        inputs
            .first()
            .and_then(|t| t.shape.first().copied())
            .unwrap_or(1)
    } else {
        1
    }
}

/// Runs `req` on `model` synchronously (call from a compute thread).
pub fn run_blocking(model: &ServedModel, req: InferRequest) -> Result<InferResponse, Error> {
    let t0 = Instant::now();
    validate_outputs(model, &req)?;
    let inputs = validate_inputs(model, req.inputs)?;
    let batch = batch_rows(model, &inputs) as u64;
    let t1 = Instant::now();
    let ctx = InferContext::new(&req.parameters, &req.outputs);
    let outputs = model.model.infer_with(inputs, &ctx)?;
    let t2 = Instant::now();
    let outputs = select_outputs(model.signature(), &req.outputs, outputs)?;
    let t3 = Instant::now();
    model
        .stats
        .record_execution(batch, t1 - t0, t2 - t1, t3 - t2);
    Ok(InferResponse {
        model_name: model.name.clone(),
        model_version: model.version_str.clone(),
        id: req.id,
        parameters: Default::default(),
        outputs,
    })
}

async fn schedule(
    model: &ServedModel,
    scheduler: &Arc<crate::scheduler::Scheduler>,
    mut req: InferRequest,
) -> Result<InferResponse, Error> {
    validate_outputs(model, &req)?;
    let inputs = validate_inputs(model, std::mem::take(&mut req.inputs))?;
    let rows = batch_rows(model, &inputs);
    req.inputs = inputs;
    scheduler.submit(req, rows).await
}

/// Average model execution below which a small request runs inline on the
/// async thread: handing it to the blocking pool would cost more CPU (two
/// thread wake-ups) than the inference itself.
const INLINE_MAX_AVG_COMPUTE_NS: u64 = 50_000;
/// Requests carrying more input bytes than this always go to the pool.
const INLINE_MAX_INPUT_BYTES: usize = 16 * 1024;
/// Executions observed before the inline decision is trusted.
const INLINE_MIN_SAMPLES: u64 = 16;

/// True when an execution with `input_bytes` of input is known to be so
/// cheap on this model that it should run on the calling (async) thread.
pub(crate) fn is_tiny(stats: &crate::stats::ModelStats, input_bytes: usize) -> bool {
    let (count, ns) = stats.compute_infer.get();
    count >= INLINE_MIN_SAMPLES
        && ns / count.max(1) < INLINE_MAX_AVG_COMPUTE_NS
        && input_bytes <= INLINE_MAX_INPUT_BYTES
}

fn runs_inline(model: &ServedModel, req: &InferRequest) -> bool {
    is_tiny(
        &model.stats,
        req.inputs.iter().map(Tensor::binary_size).sum::<usize>(),
    )
}

/// Runs `req` on `model` and records statistics. Models whose executions
/// are known to be tiny run small requests inline; everything else runs on
/// the blocking pool, never on the async threads.
pub async fn infer(model: Arc<ServedModel>, req: InferRequest) -> Result<InferResponse, Error> {
    let start = Instant::now();
    let result = if let Some(scheduler) = &model.scheduler {
        schedule(&model, scheduler, req).await
    } else if runs_inline(&model, &req) {
        model.stats.queue.record(start.elapsed());
        crate::stage_span!("compute", ferroserve.model.name = %model.name, ferroserve.model.version = %model.version_str)
            .in_scope(|| run_blocking(&model, req))
    } else {
        let m = Arc::clone(&model);
        // Stage spans (free when tracing is off): `queue` until a compute
        // thread picks the request up, then `compute`, both children of the
        // request's span.
        let queue = crate::stage_span!("queue");
        let parent = if queue.is_disabled() {
            tracing::Span::none()
        } else {
            tracing::Span::current()
        };
        tokio::task::spawn_blocking(move || {
            m.stats.queue.record(start.elapsed());
            drop(queue);
            // Created inside the parent (not with `parent:`): the exporter's
            // filter keeps only stage spans inside a traced request.
            crate::stage_span!(in &parent, "compute", ferroserve.model.name = %m.name, ferroserve.model.version = %m.version_str)
                .in_scope(|| run_blocking(&m, req))
        })
        .await
        .unwrap_or_else(|e| Err(Error::internal(format!("inference task failed: {e}"))))
    };
    match &result {
        Ok(_) => model.stats.success.record(start.elapsed()),
        Err(_) => model.stats.fail.record(start.elapsed()),
    }
    result
}

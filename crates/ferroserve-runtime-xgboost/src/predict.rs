//! Running a parsed model on a batch: base margins, the booster, the output
//! transform; large batches split across threads.

use ferroserve_core::Error;
use rayon::prelude::*;

use crate::objective::{self, Transform};
use crate::schema::{Booster, Parsed};

/// Batches at least this large are split across threads.
const PARALLEL_MIN_ROWS: usize = 512;
/// Rows per parallel task (at least).
const TASK_ROWS: usize = 256;

/// Predictions for a batch, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// What `Booster.predict()` returns: `rows × outputs` values, or one per
    /// row for multi:softmax (the class index).
    pub output: Vec<f32>,
    /// Raw scores (`predict(output_margin=True)`): `rows × outputs`.
    pub margin: Vec<f32>,
}

/// Where a batch runs.
pub(crate) enum Runner {
    /// The calling thread only.
    Inline,
    /// rayon's global pool.
    Global,
    /// A pool of the configured size.
    Pool(rayon::ThreadPool),
}

impl Runner {
    pub(crate) fn new(intra_op_threads: usize) -> Result<Runner, Error> {
        Ok(match intra_op_threads {
            0 => Runner::Global,
            1 => Runner::Inline,
            n => Runner::Pool(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .thread_name(|i| format!("xgboost-{i}"))
                    .build()
                    .map_err(|e| Error::Load(format!("cannot start {n} XGBoost threads: {e}")))?,
            ),
        })
    }

    /// Predicts `rows` (NaN = missing, a whole number of rows).
    pub(crate) fn run(&self, model: &Parsed, rows: &[f32]) -> Result<Prediction, Error> {
        let f = model.num_features;
        let k = model.num_outputs;
        let n = rows.len() / f;
        let len = n
            .checked_mul(k)
            .ok_or_else(|| Error::invalid(format!("{n} rows × {k} outputs is too large")))?;
        let mut margin = vec![0.0f32; len];
        let threads = match self {
            Runner::Inline => 1,
            Runner::Global => rayon::current_num_threads(),
            Runner::Pool(p) => p.current_num_threads(),
        };
        if n < PARALLEL_MIN_ROWS || threads <= 1 {
            margins(model, rows, &mut margin);
        } else {
            let chunk = TASK_ROWS.max(n.div_ceil(threads * 4));
            let mut work = || {
                rows.par_chunks(chunk * f)
                    .zip(margin.par_chunks_mut(chunk * k))
                    .for_each(|(r, m)| margins(model, r, m));
            };
            match self {
                Runner::Pool(p) => p.install(work),
                _ => work(),
            }
        }
        let transform = model.objective.transform();
        let output = match transform {
            Transform::Identity => margin.clone(),
            Transform::Argmax => {
                let mut out = vec![0.0f32; n];
                for (o, row) in out.iter_mut().zip(margin.chunks_exact(k)) {
                    objective::apply(transform, row, std::slice::from_mut(o));
                }
                out
            }
            _ => {
                let mut out = vec![0.0f32; n * k];
                for (o, row) in out.chunks_exact_mut(k).zip(margin.chunks_exact(k)) {
                    objective::apply(transform, row, o);
                }
                out
            }
        };
        Ok(Prediction { output, margin })
    }
}

/// Fills `out` with the margins of `rows`.
fn margins(model: &Parsed, rows: &[f32], out: &mut [f32]) {
    match &model.booster {
        Booster::Trees(forest) => {
            for m in out.chunks_exact_mut(model.num_outputs) {
                m.copy_from_slice(&model.base_margins);
            }
            forest.accumulate(rows, out);
        }
        Booster::Linear(linear) => {
            let base = model.base_margins.first().copied().unwrap_or(0.0);
            linear.predict(rows, base, out);
        }
    }
}

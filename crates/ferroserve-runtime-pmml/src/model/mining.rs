//! `MiningModel` with a `Segmentation`: ensembles (sum, average, weighted
//! average, median, max, majority votes) and model chains / select-first,
//! aggregated the way JPMML's `MiningModelEvaluator` does.

use roxmltree::Node;

use super::{
    class_prediction, fadd, fdiv, fmul, InputField, MiningFunction, Model, Outcome, OutputDef,
    Parent, Prediction, TargetInfo,
};
use crate::model::regression::simplemax;
use crate::predicate::{self, Pred};
use crate::program::{Compiler, Ctx, EvalResult};
use crate::xml::{self, attr, children, elements, err, LoadResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Sum,
    Average,
    WeightedAverage,
    WeightedSum,
    Median,
    WeightedMedian,
    Max,
    MajorityVote,
    WeightedMajorityVote,
    ModelChain,
    SelectFirst,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MissingTreatment {
    ReturnMissing,
    SkipSegment,
    Continue,
}

#[derive(Debug)]
struct Segment {
    pred: Pred,
    weight: f64,
    model: Model,
}

/// A compiled segmentation.
#[derive(Debug)]
pub struct Mining {
    method: Method,
    missing: MissingTreatment,
    threshold: f64,
    segments: Vec<Segment>,
}

/// Compiles a `<MiningModel>`.
pub fn compile(
    c: &mut Compiler,
    node: Node,
    function: MiningFunction,
    target: &TargetInfo,
    inputs: &mut Vec<InputField>,
) -> LoadResult<Mining> {
    if xml::child(node, "Regression").is_some() || xml::child(node, "DecisionTree").is_some() {
        return err(
            node,
            "embedded models (PMML 3 style) are not supported; use Segmentation",
        );
    }
    let seg = xml::req_child(node, "Segmentation")?;
    let m = xml::req_attr(seg, "multipleModelMethod")?;
    let method = match m {
        "sum" => Method::Sum,
        "average" => Method::Average,
        "weightedAverage" => Method::WeightedAverage,
        "weightedSum" => Method::WeightedSum,
        "median" => Method::Median,
        "weightedMedian" => Method::WeightedMedian,
        "max" => Method::Max,
        "majorityVote" => Method::MajorityVote,
        "weightedMajorityVote" => Method::WeightedMajorityVote,
        "modelChain" => Method::ModelChain,
        "selectFirst" => Method::SelectFirst,
        o => {
            return err(
                seg,
                format!(
                    "multipleModelMethod '{o}' is not supported (supported: sum, average, weightedAverage, weightedSum, \
                     median, weightedMedian, max, majorityVote, weightedMajorityVote, modelChain, selectFirst)"
                ),
            )
        }
    };
    let valid = match function {
        MiningFunction::Regression => {
            !matches!(method, Method::MajorityVote | Method::WeightedMajorityVote)
        }
        MiningFunction::Classification => !matches!(
            method,
            Method::Sum | Method::WeightedSum | Method::WeightedMedian
        ),
    };
    if !valid {
        return err(
            seg,
            format!("multipleModelMethod '{m}' is not valid for {function:?}"),
        );
    }
    let missing = match attr(seg, "missingPredictionTreatment").unwrap_or("continue") {
        "returnMissing" => MissingTreatment::ReturnMissing,
        "skipSegment" => MissingTreatment::SkipSegment,
        "continue" => MissingTreatment::Continue,
        o => return err(seg, format!("unknown missingPredictionTreatment '{o}'")),
    };
    if xml::child(seg, "LocalTransformations").is_some() {
        return err(
            seg,
            "LocalTransformations inside Segmentation are not supported",
        );
    }
    let parent = Parent {
        target: Some((function, target.clone())),
        chain: matches!(method, Method::ModelChain),
        top: false,
    };
    let mut segments = Vec::new();
    for s in children(seg, "Segment") {
        if xml::child(s, "VariableWeight").is_some() {
            return err(s, "VariableWeight is not supported");
        }
        let pred = predicate::compile_child(c, s)?;
        let mnode = elements(s)
            .find(|e| super::is_model_element(e.tag_name().name()))
            .ok_or_else(|| format!("{}: segment without a model", xml::at(s)))?;
        let model = super::compile(c, mnode, &parent, inputs)?;
        if method != Method::ModelChain && model.function != function {
            return err(
                mnode,
                "a segment's functionName must match its MiningModel's",
            );
        }
        segments.push(Segment {
            pred,
            weight: xml::f64_or(s, "weight", 1.0)?,
            model,
        });
    }
    if segments.is_empty() {
        return err(seg, "no segments");
    }
    Ok(Mining {
        method,
        missing,
        threshold: xml::f64_or(seg, "missingThreshold", 1.0)?,
        segments,
    })
}

impl Mining {
    /// Outputs of the final segments, visible at the top level.
    pub fn nested_outputs(&self) -> Vec<&OutputDef> {
        let seg = match self.method {
            Method::ModelChain => self.segments.last(),
            Method::SelectFirst if self.segments.len() == 1 => self.segments.first(),
            _ => None,
        };
        match seg {
            Some(s) => s.model.visible_outputs(),
            None => Vec::new(),
        }
    }

    /// The target a chain's result refers to.
    pub fn result_target(&self) -> Option<&TargetInfo> {
        match self.method {
            Method::ModelChain | Method::SelectFirst => {
                self.segments.last().map(|s| s.model.result_target())
            }
            _ => None,
        }
    }

    /// Evaluates the ensemble.
    pub fn evaluate(&self, model: &Model, ctx: &mut Ctx) -> EvalResult<Outcome> {
        let chain = matches!(self.method, Method::ModelChain | Method::SelectFirst);
        let mut results: Vec<(f64, Outcome)> = Vec::with_capacity(self.segments.len());
        let total_weight: f64 = self.segments.iter().map(|s| s.weight).sum();
        let mut missing_weight = 0.0;
        for s in &self.segments {
            if predicate::eval(&s.pred, ctx)? != Some(true) {
                continue;
            }
            let out = s.model.evaluate(ctx)?;
            if chain {
                s.model.eval_outputs(ctx, &out)?;
            }
            if out.pred == Prediction::Missing {
                match self.missing {
                    MissingTreatment::ReturnMissing => return Ok(Outcome::missing()),
                    MissingTreatment::SkipSegment if !chain => {
                        missing_weight += s.weight;
                        if total_weight > 0.0 && missing_weight / total_weight > self.threshold {
                            return Ok(Outcome::missing());
                        }
                        continue;
                    }
                    _ => {}
                }
            }
            if self.method == Method::SelectFirst {
                return Ok(out);
            }
            results.push((s.weight, out));
        }
        if results.is_empty() {
            return Ok(Outcome::missing());
        }
        if self.method == Method::ModelChain {
            return Ok(results
                .pop()
                .map(|(_, o)| o)
                .unwrap_or_else(Outcome::missing));
        }
        let float = model.float;
        match model.function {
            MiningFunction::Regression => {
                let mut vals = Vec::with_capacity(results.len());
                for (w, o) in &results {
                    match o.pred {
                        Prediction::Value(v) => vals.push((*w, v)),
                        Prediction::Class { .. } => {
                            return Err("a regression segment returned a class".into())
                        }
                        Prediction::Missing => return Ok(Outcome::missing()),
                    }
                }
                let v = aggregate_values(self.method, &vals, float);
                Ok(Outcome::new(match v {
                    Some(v) => model.target.finish(v, float),
                    None => Prediction::Missing,
                }))
            }
            MiningFunction::Classification => self.classify(&results, model, ctx),
        }
    }

    fn classify(
        &self,
        results: &[(f64, Outcome)],
        model: &Model,
        ctx: &Ctx,
    ) -> EvalResult<Outcome> {
        let float = model.float;
        match self.method {
            Method::MajorityVote | Method::WeightedMajorityVote => {
                let mut votes: Vec<(usize, f64)> = Vec::new();
                for (w, o) in results {
                    let Prediction::Class { label, .. } = o.pred else {
                        continue;
                    };
                    let w = if self.method == Method::MajorityVote {
                        1.0
                    } else {
                        *w
                    };
                    match votes.iter_mut().find(|(k, _)| *k == label) {
                        Some(v) => v.1 = fadd(v.1, w, float),
                        None => votes.push((label, w)),
                    }
                }
                if votes.is_empty() {
                    return Ok(Outcome::missing());
                }
                simplemax(&mut votes, float)?;
                Ok(Outcome::new(class_prediction(votes)))
            }
            _ => {
                let mut dists: Vec<(f64, &Vec<(usize, f64)>)> = Vec::with_capacity(results.len());
                for (w, o) in results {
                    match &o.pred {
                        Prediction::Class { probs: Some(p), .. } => dists.push((*w, p)),
                        Prediction::Missing => return Ok(Outcome::missing()),
                        _ => {
                            return Err(format!(
                                "{:?} of segments needs probability distributions; a segment gave only a class",
                                self.method
                            ))
                        }
                    }
                }
                let n_classes = ctx.prog.classes(&model.target.key).len();
                let probs = match self.method {
                    Method::Average => average(&dists, false, float)?,
                    Method::WeightedAverage => average(&dists, true, float)?,
                    _ => select_average(&dists, self.method == Method::Max, n_classes, float)?,
                };
                Ok(Outcome::new(class_prediction(probs)))
            }
        }
    }
}

/// Keys in first-seen order with per-segment values (0 where absent).
fn gather(dists: &[(f64, &Vec<(usize, f64)>)]) -> Vec<(usize, Vec<f64>)> {
    let mut keys: Vec<(usize, Vec<f64>)> = Vec::new();
    for (i, (_, d)) in dists.iter().enumerate() {
        for &(k, p) in d.iter() {
            match keys.iter_mut().find(|(kk, _)| *kk == k) {
                Some((_, v)) => v[i] = p,
                None => {
                    let mut v = vec![0.0; dists.len()];
                    v[i] = p;
                    keys.push((k, v));
                }
            }
        }
    }
    keys
}

fn average(
    dists: &[(f64, &Vec<(usize, f64)>)],
    weighted: bool,
    float: bool,
) -> EvalResult<Vec<(usize, f64)>> {
    let denom = if weighted {
        dists.iter().fold(0.0, |a, (w, _)| fadd(a, *w, float))
    } else {
        dists.len() as f64
    };
    if denom == 0.0 {
        return Err("segment weights sum to zero".into());
    }
    let mut sums: Vec<(usize, f64)> = Vec::new();
    for (w, d) in dists {
        for &(k, p) in d.iter() {
            let x = if weighted && *w != 1.0 {
                fmul(*w, p, float)
            } else {
                p
            };
            match sums.iter_mut().find(|(kk, _)| *kk == k) {
                Some(s) => s.1 = fadd(s.1, x, float),
                None => sums.push((k, x)),
            }
        }
    }
    Ok(sums
        .into_iter()
        .map(|(k, s)| (k, fdiv(s, denom, float)))
        .collect())
}

/// `max` and `median` of probabilities: the class with the highest max
/// (median) wins; the result averages the segments that reach it.
fn select_average(
    dists: &[(f64, &Vec<(usize, f64)>)],
    max: bool,
    n_classes: usize,
    float: bool,
) -> EvalResult<Vec<(usize, f64)>> {
    let keys = gather(dists);
    let stat = |v: &[f64]| {
        if max {
            v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        } else {
            median(v)
        }
    };
    // The winner is searched in the target's class order (JPMML).
    let mut winner: Option<(usize, f64)> = None;
    let order: Vec<usize> = if n_classes > 0 {
        (0..n_classes).collect()
    } else {
        keys.iter().map(|k| k.0).collect()
    };
    for c in order {
        if let Some((_, v)) = keys.iter().find(|(k, _)| *k == c) {
            let s = stat(v);
            if winner.is_none_or(|(_, b)| b < s) {
                winner = Some((c, s));
            }
        }
    }
    let Some((wk, ws)) = winner else {
        return Ok(Vec::new());
    };
    let Some((_, wv)) = keys.iter().find(|(k, _)| *k == wk) else {
        return Ok(Vec::new());
    };
    let contributors: Vec<usize> = if max {
        (0..wv.len()).filter(|&i| wv[i] == ws).collect()
    } else {
        let mut best = f64::MAX;
        let mut c = Vec::new();
        for (i, &p) in wv.iter().enumerate() {
            let d = (ws - p).abs();
            if d < best {
                c.clear();
                best = d;
            }
            if d <= best {
                c.push(i);
            }
        }
        c
    };
    let n = contributors.len() as f64;
    Ok(keys
        .iter()
        .map(|(k, v)| {
            let s = contributors.iter().fold(0.0, |a, &i| fadd(a, v[i], float));
            (*k, if n == 1.0 { s } else { fdiv(s, n, float) })
        })
        .collect())
}

fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn aggregate_values(method: Method, vals: &[(f64, f64)], float: bool) -> Option<f64> {
    let sum = |weighted: bool| {
        vals.iter().fold(0.0, |a, (w, v)| {
            fadd(a, if weighted { fmul(*w, *v, float) } else { *v }, float)
        })
    };
    Some(match method {
        Method::Sum => sum(false),
        Method::Average => fdiv(sum(false), vals.len() as f64, float),
        Method::WeightedSum => sum(true),
        Method::WeightedAverage => {
            let ws = vals.iter().fold(0.0, |a, (w, _)| fadd(a, *w, float));
            if ws == 0.0 {
                return None;
            }
            fdiv(sum(true), ws, float)
        }
        Method::Median => median(&vals.iter().map(|v| v.1).collect::<Vec<_>>()),
        Method::Max => vals.iter().map(|v| v.1).fold(f64::NEG_INFINITY, f64::max),
        Method::WeightedMedian => {
            let mut s: Vec<(f64, f64)> = vals.iter().map(|(w, v)| (*v, *w)).collect();
            s.sort_by(|a, b| a.0.total_cmp(&b.0));
            let half = s.iter().map(|x| x.1).sum::<f64>() / 2.0;
            let mut acc = 0.0;
            let mut r = s.last()?.0;
            for (v, w) in &s {
                acc += w;
                if acc >= half {
                    r = *v;
                    break;
                }
            }
            r
        }
        _ => return None,
    })
}

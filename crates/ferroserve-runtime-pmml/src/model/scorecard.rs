//! `Scorecard`: the first matching `Attribute` of each `Characteristic`
//! adds its (possibly computed) partial score; reason codes are ranked by
//! points above or below the baseline, as JPMML ranks them.

use std::sync::Arc;

use roxmltree::Node;

use super::{fadd, MiningFunction, Model, Outcome};
use crate::expr::{self, Expr};
use crate::predicate::{self, Pred};
use crate::program::{Compiler, Ctx, EvalResult};
use crate::xml::{self, attr, children, err, LoadResult};

#[derive(Debug)]
enum Partial {
    Fixed(f64),
    Computed(Expr),
}

#[derive(Debug)]
struct Attribute {
    pred: Pred,
    partial: Partial,
    reason: Option<Arc<str>>,
}

#[derive(Debug)]
struct Characteristic {
    name: String,
    attributes: Vec<Attribute>,
    baseline: Option<f64>,
}

/// A compiled scorecard.
#[derive(Debug)]
pub struct Scorecard {
    initial: f64,
    use_reasons: bool,
    points_above: bool,
    baseline: Option<f64>,
    characteristics: Vec<Characteristic>,
}

/// Compiles a `<Scorecard>`.
pub fn compile(c: &mut Compiler, node: Node, function: MiningFunction) -> LoadResult<Scorecard> {
    if function != MiningFunction::Regression {
        return err(node, "a Scorecard must be a regression model");
    }
    let use_reasons = xml::bool_or(node, "useReasonCodes", true)?;
    let points_above = match attr(node, "reasonCodeAlgorithm").unwrap_or("pointsBelow") {
        "pointsAbove" => true,
        "pointsBelow" => false,
        o => return err(node, format!("unknown reasonCodeAlgorithm '{o}'")),
    };
    let baseline = xml::attr_f64(node, "baselineScore")?;
    let mut characteristics = Vec::new();
    for ch in children(xml::req_child(node, "Characteristics")?, "Characteristic") {
        let creason = attr(ch, "reasonCode");
        let cbase = xml::attr_f64(ch, "baselineScore")?;
        let mut attributes = Vec::new();
        for a in children(ch, "Attribute") {
            let partial = match xml::child(a, "ComplexPartialScore") {
                Some(cps) => Partial::Computed(expr::compile(c, expr::expression_child(cps)?)?),
                None => Partial::Fixed(xml::req_f64(a, "partialScore")?),
            };
            let reason = attr(a, "reasonCode").or(creason).map(Arc::from);
            if use_reasons && reason.is_none() {
                return err(
                    a,
                    "no reasonCode on the Attribute or its Characteristic (useReasonCodes=true)",
                );
            }
            attributes.push(Attribute {
                pred: predicate::compile_child(c, a)?,
                partial,
                reason,
            });
        }
        if use_reasons && cbase.is_none() && baseline.is_none() {
            return err(
                ch,
                "no baselineScore on the Characteristic or the Scorecard (useReasonCodes=true)",
            );
        }
        characteristics.push(Characteristic {
            name: attr(ch, "name").unwrap_or("?").to_string(),
            attributes,
            baseline: cbase,
        });
    }
    Ok(Scorecard {
        initial: xml::f64_or(node, "initialScore", 0.0)?,
        use_reasons,
        points_above,
        baseline,
        characteristics,
    })
}

impl Scorecard {
    /// Evaluates the scorecard.
    pub fn evaluate(&self, model: &Model, ctx: &mut Ctx) -> EvalResult<Outcome> {
        let float = model.float;
        let mut score = self.initial;
        let mut points: Vec<(Arc<str>, f64)> = Vec::new();
        for ch in &self.characteristics {
            let mut hit = None;
            for a in &ch.attributes {
                if predicate::eval(&a.pred, ctx)? == Some(true) {
                    hit = Some(a);
                    break;
                }
            }
            let Some(a) = hit else {
                return Err(format!(
                    "Scorecard: no Attribute of characteristic '{}' matches",
                    ch.name
                ));
            };
            let s = match &a.partial {
                Partial::Fixed(s) => *s,
                Partial::Computed(e) => expr::eval(e, ctx, &[])?.as_f64().ok_or_else(|| {
                    format!(
                        "Scorecard: the partial score of characteristic '{}' is missing",
                        ch.name
                    )
                })?,
            };
            score = fadd(score, s, float);
            if self.use_reasons {
                let base = ch.baseline.or(self.baseline).unwrap_or(0.0);
                let diff = if self.points_above {
                    s - base
                } else {
                    base - s
                };
                if let Some(r) = &a.reason {
                    match points.iter_mut().find(|(k, _)| k == r) {
                        Some(p) => p.1 += diff,
                        None => points.push((r.clone(), diff)),
                    }
                }
            }
        }
        points.retain(|(_, p)| *p >= 0.0);
        // Stable sort: equal points keep their first-seen order.
        points.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(Outcome {
            pred: model.target.finish(score, float),
            entity: None,
            reasons: points.into_iter().map(|(r, _)| r).collect(),
        })
    }
}

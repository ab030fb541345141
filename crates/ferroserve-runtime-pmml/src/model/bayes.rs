//! `NaiveBayesModel`: counts (`PairCounts`, optionally discretised by a
//! `DerivedField`) and continuous distributions (`GaussianDistribution`,
//! `PoissonDistribution`), combined in log space and normalised with
//! softmax, as JPMML does.

use roxmltree::Node;

use super::{class_index, class_prediction, MiningFunction, Model, Outcome, TargetInfo};
use crate::expr::{self, Expr};
use crate::model::regression::softmax;
use crate::program::{Compiler, Ctx, EvalResult, SlotId};
use crate::stats::{normal_density, poisson};
use crate::value::{DataType, Literal};
use crate::xml::{self, at, children, err, LoadResult};

#[derive(Debug)]
enum Dist {
    Gaussian { mean: f64, variance: f64 },
    Poisson { mean: f64 },
}

#[derive(Debug)]
enum Input {
    Counts {
        /// (value, [(class, count)]) per PairCounts.
        pairs: Vec<(Literal, Vec<(usize, f64)>)>,
        /// Count sums per class over all pairs.
        sums: Vec<(usize, f64)>,
        /// Optional discretisation.
        derived: Option<(Expr, DataType)>,
    },
    Stats(Vec<(usize, Dist)>),
}

/// A compiled naive Bayes model.
#[derive(Debug)]
pub struct Bayes {
    threshold: f64,
    inputs: Vec<(SlotId, Input)>,
    priors: Vec<(usize, f64)>,
}

fn counts(c: &mut Compiler, target: &TargetInfo, tvc: Node) -> LoadResult<Vec<(usize, f64)>> {
    children(tvc, "TargetValueCount")
        .map(|t| {
            Ok((
                class_index(c, target, t, xml::req_attr(t, "value")?)?,
                xml::req_f64(t, "count")?,
            ))
        })
        .collect()
}

/// Compiles a `<NaiveBayesModel>`.
pub fn compile(
    c: &mut Compiler,
    node: Node,
    function: MiningFunction,
    target: &TargetInfo,
) -> LoadResult<Bayes> {
    if function != MiningFunction::Classification {
        return err(node, "a NaiveBayesModel must be a classification model");
    }
    let threshold = xml::req_f64(node, "threshold")?;
    let output = xml::req_child(node, "BayesOutput")?;
    let priors = counts(c, target, xml::req_child(output, "TargetValueCounts")?)?;
    let mut inputs = Vec::new();
    for bi in children(xml::req_child(node, "BayesInputs")?, "BayesInput") {
        let field = bi
            .attribute("fieldName")
            .or(bi.attribute("field"))
            .ok_or_else(|| format!("{}: missing attribute 'fieldName'", at(bi)))?;
        let slot = c.resolve(bi, field)?;
        if let Some(tvs) = xml::child(bi, "TargetValueStats") {
            let mut stats = Vec::new();
            for s in children(tvs, "TargetValueStat") {
                let k = class_index(c, target, s, xml::req_attr(s, "value")?)?;
                let d = if let Some(g) = xml::child(s, "GaussianDistribution") {
                    let variance = xml::req_f64(g, "variance")?;
                    if variance <= 0.0 {
                        return err(g, "variance must be positive");
                    }
                    Dist::Gaussian {
                        mean: xml::req_f64(g, "mean")?,
                        variance,
                    }
                } else if let Some(p) = xml::child(s, "PoissonDistribution") {
                    Dist::Poisson {
                        mean: xml::req_f64(p, "mean")?,
                    }
                } else {
                    return err(
                        s,
                        "only GaussianDistribution and PoissonDistribution are supported",
                    );
                };
                stats.push((k, d));
            }
            inputs.push((slot, Input::Stats(stats)));
            continue;
        }
        let derived = match xml::child(bi, "DerivedField") {
            Some(df) => {
                let e = expr::expression_child(df)?;
                if e.tag_name().name() != "Discretize" {
                    return err(e, "a BayesInput's DerivedField must hold a Discretize");
                }
                let dt = xml::data_type(df)?.unwrap_or(DataType::String);
                Some((expr::compile(c, e)?, dt))
            }
            None => None,
        };
        let mut pairs = Vec::new();
        let mut sums: Vec<(usize, f64)> = Vec::new();
        for pc in children(bi, "PairCounts") {
            let v = Literal::new(xml::req_attr(pc, "value")?);
            let cs = counts(c, target, xml::req_child(pc, "TargetValueCounts")?)?;
            for &(k, n) in &cs {
                match sums.iter_mut().find(|(kk, _)| *kk == k) {
                    Some(s) => s.1 += n,
                    None => sums.push((k, n)),
                }
            }
            pairs.push((v, cs));
        }
        inputs.push((
            slot,
            Input::Counts {
                pairs,
                sums,
                derived,
            },
        ));
    }
    Ok(Bayes {
        threshold,
        inputs,
        priors,
    })
}

impl Bayes {
    /// Evaluates the model.
    pub fn evaluate(&self, _model: &Model, ctx: &mut Ctx) -> EvalResult<Outcome> {
        let mut logp: Vec<(usize, f64)> = Vec::with_capacity(self.priors.len());
        let mul = |logp: &mut Vec<(usize, f64)>, k: usize, p: f64| match logp
            .iter_mut()
            .find(|(kk, _)| *kk == k)
        {
            Some(v) => v.1 += p.ln(),
            None => logp.push((k, p.ln())),
        };
        for &(k, n) in &self.priors {
            mul(&mut logp, k, n);
        }
        for (slot, input) in &self.inputs {
            let v = ctx.get(*slot)?;
            if v.is_missing() {
                continue;
            }
            match input {
                Input::Stats(stats) => {
                    let x = v.as_f64().ok_or_else(|| {
                        format!("NaiveBayesModel: '{}' is not a number", v.to_text())
                    })?;
                    for (k, d) in stats {
                        let mut p = match d {
                            Dist::Gaussian { mean, variance } => {
                                normal_density(*mean, *variance, x)
                            }
                            Dist::Poisson { mean } => poisson(*mean, x),
                        };
                        if p < self.threshold {
                            p = self.threshold;
                        }
                        mul(&mut logp, *k, p);
                    }
                }
                Input::Counts {
                    pairs,
                    sums,
                    derived,
                } => {
                    let v = match derived {
                        Some((e, dt)) => {
                            let d = expr::eval(e, ctx, &[])?;
                            if d.is_missing() {
                                continue;
                            }
                            d.cast(*dt)?
                        }
                        None => v,
                    };
                    let Some((_, cs)) = pairs.iter().find(|(l, _)| l.matches(&v)) else {
                        continue;
                    };
                    for &(k, n) in cs {
                        let p = if n.abs() < f64::EPSILON {
                            self.threshold
                        } else {
                            let s = sums.iter().find(|(kk, _)| *kk == k).map_or(0.0, |s| s.1);
                            n / s
                        };
                        mul(&mut logp, k, p);
                    }
                }
            }
        }
        softmax(&mut logp, false)?;
        Ok(Outcome::new(class_prediction(logp)))
    }
}

//! `GeneralRegressionModel`: regression, generalLinear, generalizedLinear
//! (link functions, offset, trials), multinomialLogistic and
//! ordinalMultinomial (cumulative links), following JPMML's evaluator.

use std::collections::HashMap;

use roxmltree::Node;

use super::{class_index, class_prediction, MiningFunction, Model, Outcome, TargetInfo};
use crate::model::regression::simplemax;
use crate::program::{Compiler, Ctx, EvalResult, SlotId};
use crate::stats::{cauchit, cloglog, logistic, loglog, probit};
use crate::value::{parse_f64, Literal};
use crate::xml::{self, at, attr, children, err, LoadResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ModelType {
    Regression,
    GeneralLinear,
    GeneralizedLinear,
    MultinomialLogistic,
    OrdinalMultinomial,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Link {
    Identity,
    Log,
    Logc,
    Logit,
    Probit,
    Cloglog,
    Loglog,
    Cauchit,
    Power(f64),
    Oddspower(f64),
    Negbin(f64),
}

impl Link {
    fn inverse(self, v: f64) -> f64 {
        match self {
            Link::Identity => v,
            Link::Log => v.exp(),
            Link::Logc => 1.0 - v.exp(),
            Link::Logit => logistic(v),
            Link::Probit => probit(v),
            Link::Cloglog => cloglog(v),
            Link::Loglog => loglog(v),
            Link::Cauchit => cauchit(v),
            Link::Power(d) if d != 0.0 => v.powf(1.0 / d),
            Link::Power(_) => v.exp(),
            Link::Oddspower(d) if d != 0.0 => 1.0 / (1.0 + (1.0 + d * v).powf(-(1.0 / d))),
            Link::Oddspower(_) => 1.0 / (1.0 + (-v).exp()),
            Link::Negbin(c) => 1.0 / (c * ((-v).exp() - 1.0)),
        }
    }
}

/// One predictor in a parameter's row: a factor level (1 when equal) or a
/// covariate power.
#[derive(Debug)]
enum Term {
    Factor(SlotId, Literal),
    Covariate(SlotId, f64),
}

type Rows = HashMap<String, Vec<Term>>;

/// A compiled general regression model.
#[derive(Debug)]
pub struct General {
    model_type: ModelType,
    link: Option<Link>,
    cumulative: Option<Link>,
    /// PPMatrix rows by target category (None: all categories).
    rows: HashMap<Option<usize>, Rows>,
    /// ParamMatrix cells (parameter, beta) by target category.
    cells: HashMap<Option<usize>, Vec<(String, f64)>>,
    /// Categories in evaluation order (reference last).
    categories: Vec<usize>,
    offset_var: Option<SlotId>,
    offset_value: Option<f64>,
    trials_var: Option<SlotId>,
    trials_value: Option<f64>,
}

/// Compiles a `<GeneralRegressionModel>`.
pub fn compile(
    c: &mut Compiler,
    node: Node,
    function: MiningFunction,
    target: &TargetInfo,
) -> LoadResult<General> {
    let model_type = match xml::req_attr(node, "modelType")? {
        "regression" => ModelType::Regression,
        "generalLinear" => ModelType::GeneralLinear,
        "generalizedLinear" => ModelType::GeneralizedLinear,
        "multinomialLogistic" => ModelType::MultinomialLogistic,
        "ordinalMultinomial" => ModelType::OrdinalMultinomial,
        o => {
            return err(
                node,
                format!(
                    "modelType '{o}' is not supported (supported: regression, generalLinear, generalizedLinear, \
                     multinomialLogistic, ordinalMultinomial)"
                ),
            )
        }
    };
    let classification = matches!(
        model_type,
        ModelType::MultinomialLogistic | ModelType::OrdinalMultinomial
    );
    if classification && function != MiningFunction::Classification {
        return err(
            node,
            format!("modelType {model_type:?} needs functionName=classification"),
        );
    }
    if matches!(model_type, ModelType::Regression | ModelType::GeneralLinear)
        && function != MiningFunction::Regression
    {
        return err(
            node,
            format!("modelType {model_type:?} needs functionName=regression"),
        );
    }
    let link = if model_type == ModelType::GeneralizedLinear {
        let lp = xml::attr_f64(node, "linkParameter")?;
        Some(match xml::req_attr(node, "linkFunction")? {
            "identity" => Link::Identity,
            "log" => Link::Log,
            "logc" => Link::Logc,
            "logit" => Link::Logit,
            "probit" => Link::Probit,
            "cloglog" => Link::Cloglog,
            "loglog" => Link::Loglog,
            "cauchit" => Link::Cauchit,
            "power" => Link::Power(
                lp.ok_or_else(|| format!("{}: power link needs linkParameter", at(node)))?,
            ),
            "oddspower" => Link::Oddspower(
                lp.ok_or_else(|| format!("{}: oddspower link needs linkParameter", at(node)))?,
            ),
            "negbin" => Link::Negbin(xml::req_f64(node, "distParameter")?),
            o => return err(node, format!("unknown linkFunction '{o}'")),
        })
    } else {
        None
    };
    let cumulative = if model_type == ModelType::OrdinalMultinomial {
        Some(match xml::req_attr(node, "cumulativeLink")? {
            "logit" => Link::Logit,
            "probit" => Link::Probit,
            "cloglog" => Link::Cloglog,
            "loglog" => Link::Loglog,
            "cauchit" => Link::Cauchit,
            o => return err(node, format!("cumulativeLink '{o}' is not supported")),
        })
    } else {
        None
    };
    let names = |list: &str| -> Vec<String> {
        xml::child(
            node,
            if list == "f" {
                "FactorList"
            } else {
                "CovariateList"
            },
        )
        .map(|l| {
            children(l, "Predictor")
                .filter_map(|p| attr(p, "name").map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
    };
    let factors = names("f");
    let covariates = names("c");
    let mut rows: HashMap<Option<usize>, Rows> = HashMap::new();
    if let Some(pp) = xml::child(node, "PPMatrix") {
        for cell in children(pp, "PPCell") {
            let pred = xml::req_attr(cell, "predictorName")?;
            let param = xml::req_attr(cell, "parameterName")?.to_string();
            let value = xml::req_attr(cell, "value")?;
            let slot = c.resolve(cell, pred)?;
            let term = if factors.iter().any(|f| f == pred) {
                Term::Factor(slot, Literal::new(value))
            } else if covariates.iter().any(|f| f == pred) {
                Term::Covariate(
                    slot,
                    parse_f64(value).ok_or_else(|| {
                        format!("{}: exponent '{value}' is not a number", at(cell))
                    })?,
                )
            } else {
                return err(
                    cell,
                    format!("predictor '{pred}' is in neither FactorList nor CovariateList"),
                );
            };
            let tc = match attr(cell, "targetCategory") {
                Some(t) => Some(class_index(c, target, cell, t)?),
                None => None,
            };
            rows.entry(tc)
                .or_default()
                .entry(param)
                .or_default()
                .push(term);
        }
    }
    for fl in xml::child(node, "FactorList")
        .into_iter()
        .flat_map(|l| children(l, "Predictor"))
    {
        if xml::child(fl, "Matrix").is_some() {
            return err(fl, "contrast matrices are not supported");
        }
    }
    let mut cells: HashMap<Option<usize>, Vec<(String, f64)>> = HashMap::new();
    let pm = xml::req_child(node, "ParamMatrix")?;
    for cell in children(pm, "PCell") {
        let tc = match attr(cell, "targetCategory") {
            Some(t) => Some(class_index(c, target, cell, t)?),
            None => None,
        };
        cells.entry(tc).or_default().push((
            xml::req_attr(cell, "parameterName")?.to_string(),
            xml::req_f64(cell, "beta")?,
        ));
    }
    let mut categories = Vec::new();
    if function == MiningFunction::Classification {
        let all: Vec<usize> = (0..c.categories.get(&target.key).map_or(0, Vec::len)).collect();
        if all.len() < 2 {
            return err(node, "a classification GeneralRegressionModel needs the target's categories (DataField Values)");
        }
        categories = all.clone();
        let reference = match attr(node, "targetReferenceCategory") {
            Some(r) => Some(class_index(c, target, node, r)?),
            None if matches!(
                model_type,
                ModelType::MultinomialLogistic | ModelType::GeneralizedLinear
            ) =>
            {
                let refs: Vec<usize> = all
                    .iter()
                    .copied()
                    .filter(|k| !cells.contains_key(&Some(*k)))
                    .collect();
                if refs.len() != 1 {
                    return err(
                        node,
                        "cannot tell the reference category (give targetReferenceCategory)",
                    );
                }
                Some(refs[0])
            }
            None => None,
        };
        if let Some(r) = reference {
            categories.retain(|&k| k != r);
            categories.push(r);
        }
    }
    let var = |c: &Compiler, name: &str| -> LoadResult<Option<SlotId>> {
        attr(node, name).map(|v| c.resolve(node, v)).transpose()
    };
    Ok(General {
        model_type,
        link,
        cumulative,
        rows,
        cells,
        categories,
        offset_var: var(c, "offsetVariable")?,
        offset_value: xml::attr_f64(node, "offsetValue")?,
        trials_var: var(c, "trialsVariable")?,
        trials_value: xml::attr_f64(node, "trialsValue")?,
    })
}

impl General {
    fn dot(
        &self,
        ctx: &mut Ctx,
        cells: &[(String, f64)],
        rows: Option<&Rows>,
    ) -> EvalResult<Option<f64>> {
        let mut r = 0.0;
        for (param, beta) in cells {
            match rows.and_then(|rows| rows.get(param)) {
                Some(terms) => {
                    let mut x = 1.0;
                    for t in terms.iter().filter(|t| matches!(t, Term::Factor(..))) {
                        let Term::Factor(slot, lit) = t else { continue };
                        let v = ctx.get(*slot)?;
                        if v.is_missing() {
                            return Ok(None);
                        }
                        if !lit.matches(&v) {
                            x = 0.0;
                        }
                    }
                    if x != 0.0 {
                        for t in terms {
                            let Term::Covariate(slot, e) = t else {
                                continue;
                            };
                            let Some(v) = ctx.get(*slot)?.as_f64() else {
                                return Ok(None);
                            };
                            x *= if *e == 1.0 { v } else { v.powf(*e) };
                        }
                    }
                    r += beta * x;
                }
                None => r += beta,
            }
        }
        Ok(Some(r))
    }

    fn variable(ctx: &mut Ctx, var: Option<SlotId>, value: Option<f64>) -> EvalResult<Option<f64>> {
        match var {
            Some(s) => match ctx.get(s)?.as_f64() {
                Some(v) => Ok(Some(v)),
                None => {
                    Err("GeneralRegressionModel: the offset or trials variable is missing".into())
                }
            },
            None => Ok(value),
        }
    }

    fn link(&self, ctx: &mut Ctx, mut v: f64, link: Link) -> EvalResult<f64> {
        if let Some(o) = Self::variable(ctx, self.offset_var, self.offset_value)? {
            v += o;
        }
        v = link.inverse(v);
        if let Some(t) = Self::variable(ctx, self.trials_var, self.trials_value)? {
            v *= t;
        }
        Ok(v)
    }

    /// Evaluates the model.
    pub fn evaluate(&self, model: &Model, ctx: &mut Ctx) -> EvalResult<Outcome> {
        if model.function == MiningFunction::Regression {
            let cells = self.cells.get(&None).map_or(&[][..], |v| v.as_slice());
            let Some(mut v) = self.dot(ctx, cells, self.rows.get(&None))? else {
                return Ok(Outcome::missing());
            };
            if let Some(l) = self.link {
                v = self.link(ctx, v, l)?;
            }
            return Ok(Outcome::new(model.target.finish(v, model.float)));
        }
        let n = self.categories.len();
        let mut vals: Vec<(usize, f64)> = Vec::with_capacity(n);
        let mut prev_link: Option<f64> = None;
        let mut prev_cum: Option<f64> = None;
        for (i, &cat) in self.categories.iter().enumerate() {
            let mut v;
            if i < n - 1 {
                let rows = self.rows.get(&Some(cat)).or(self.rows.get(&None));
                let cells: Vec<(String, f64)> = match self.model_type {
                    ModelType::OrdinalMultinomial => {
                        let intercept = self.cells.get(&Some(cat)).cloned().unwrap_or_default();
                        if intercept.len() != 1 {
                            return Err(
                                "ordinalMultinomial: each category needs one intercept PCell"
                                    .into(),
                            );
                        }
                        let mut all = self.cells.get(&None).cloned().unwrap_or_default();
                        all.extend(intercept);
                        all
                    }
                    _ => match self.cells.get(&Some(cat)) {
                        Some(c) => c.clone(),
                        None if n == 2 => self.cells.get(&None).cloned().unwrap_or_default(),
                        None => return Err("ParamMatrix has no cells for a category".into()),
                    },
                };
                let Some(d) = self.dot(ctx, &cells, rows)? else {
                    return Ok(Outcome::missing());
                };
                v = match self.model_type {
                    ModelType::GeneralizedLinear => {
                        self.link(ctx, d, self.link.unwrap_or(Link::Identity))?
                    }
                    ModelType::MultinomialLogistic => d.exp(),
                    _ => {
                        let mut d = d;
                        if let Some(o) = Self::variable(ctx, self.offset_var, self.offset_value)? {
                            d += o;
                        }
                        self.cumulative.unwrap_or(Link::Logit).inverse(d)
                    }
                };
            } else {
                v = match self.model_type {
                    ModelType::GeneralizedLinear => 1.0 - prev_link.unwrap_or(0.0),
                    ModelType::MultinomialLogistic => 1.0,
                    _ => 1.0,
                };
            }
            match self.model_type {
                ModelType::GeneralizedLinear => prev_link = Some(v),
                ModelType::OrdinalMultinomial => {
                    let cum = v;
                    if let Some(p) = prev_cum {
                        v -= p;
                    }
                    prev_cum = Some(cum);
                }
                _ => {}
            }
            vals.push((cat, v));
        }
        if self.model_type == ModelType::MultinomialLogistic {
            simplemax(&mut vals, false)?;
        }
        Ok(Outcome::new(class_prediction(vals)))
    }
}

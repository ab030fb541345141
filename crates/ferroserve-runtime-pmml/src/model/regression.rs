//! `RegressionModel`: linear regression and (multinomial, binomial,
//! ordinal) regression classifiers with every normalisation method,
//! following JPMML's `RegressionModelUtil` where PMML leaves room.

use roxmltree::Node;

use super::{
    class_index, class_prediction, fadd, fdiv, fexp, fmul, fr, fsub, MiningFunction, Model,
    Outcome, TargetInfo,
};
use crate::program::{Compiler, Ctx, EvalResult, SlotId};
use crate::stats::{cauchit, cloglog, logistic, loglog, probit};
use crate::value::{Literal, OpType};
use crate::xml::{self, at, attr, children, err, LoadResult};

/// A `normalizationMethod`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Norm {
    None,
    Softmax,
    Logit,
    Exp,
    Probit,
    Cloglog,
    Loglog,
    Cauchit,
    Simplemax,
}

impl Norm {
    fn parse(node: Node) -> LoadResult<Self> {
        Ok(match attr(node, "normalizationMethod").unwrap_or("none") {
            "none" => Norm::None,
            "softmax" => Norm::Softmax,
            "logit" => Norm::Logit,
            "exp" => Norm::Exp,
            "probit" => Norm::Probit,
            "cloglog" => Norm::Cloglog,
            "loglog" => Norm::Loglog,
            "cauchit" => Norm::Cauchit,
            "simplemax" => Norm::Simplemax,
            o => return err(node, format!("unknown normalizationMethod '{o}'")),
        })
    }

    /// The inverse link in the model's precision (JPMML's `FloatValue`
    /// steps for the float math context).
    fn link_in(self, v: f64, float: bool) -> f64 {
        if !float {
            return self.link(v);
        }
        match self {
            Norm::Logit | Norm::Softmax => fdiv(1.0, fadd(1.0, fexp(-v, float), float), float),
            Norm::Exp => fexp(v, float),
            Norm::Cloglog => fsub(1.0, fexp(-fexp(v, float), float), float),
            Norm::Loglog => fexp(-fexp(-v, float), float),
            n => fr(n.link(fr(v, float)), float),
        }
    }

    /// The inverse link of a single score (binomial and ordinal cases).
    fn link(self, v: f64) -> f64 {
        match self {
            Norm::None => v.clamp(0.0, 1.0),
            Norm::Logit | Norm::Softmax => logistic(v),
            Norm::Exp => v.exp(),
            Norm::Probit => probit(v),
            Norm::Cloglog => cloglog(v),
            Norm::Loglog => loglog(v),
            Norm::Cauchit => cauchit(v),
            Norm::Simplemax => v,
        }
    }
}

#[derive(Debug)]
struct Table {
    intercept: f64,
    numeric: Vec<(SlotId, i32, f64)>,
    categorical: Vec<(SlotId, Literal, f64)>,
    terms: Vec<(Vec<SlotId>, f64)>,
    category: Option<usize>,
    is_default: bool,
}

/// A compiled regression model.
#[derive(Debug)]
pub struct Regression {
    tables: Vec<Table>,
    norm: Norm,
    ordinal: bool,
}

fn predictor_field<'a>(n: Node<'a, '_>) -> LoadResult<&'a str> {
    attr(n, "name")
        .or(attr(n, "field"))
        .ok_or_else(|| format!("{}: missing attribute 'name'", at(n)))
}

/// Compiles a `<RegressionModel>`.
pub fn compile(
    c: &mut Compiler,
    node: Node,
    function: MiningFunction,
    target: &TargetInfo,
) -> LoadResult<Regression> {
    let norm = Norm::parse(node)?;
    let mut tables = Vec::new();
    for t in children(node, "RegressionTable") {
        let mut numeric = Vec::new();
        for p in children(t, "NumericPredictor") {
            let f = predictor_field(p)?;
            let exp = attr(p, "exponent").map_or(Ok(1), |e| {
                e.trim()
                    .parse::<i32>()
                    .map_err(|_| format!("{}: bad exponent '{e}'", at(p)))
            })?;
            numeric.push((c.resolve(p, f)?, exp, xml::req_f64(p, "coefficient")?));
        }
        let mut categorical = Vec::new();
        for p in children(t, "CategoricalPredictor") {
            let f = predictor_field(p)?;
            categorical.push((
                c.resolve(p, f)?,
                Literal::new(xml::req_attr(p, "value")?),
                xml::req_f64(p, "coefficient")?,
            ));
        }
        let mut terms = Vec::new();
        for p in children(t, "PredictorTerm") {
            let mut slots = Vec::new();
            for fr in children(p, "FieldRef") {
                slots.push(c.resolve(fr, xml::req_attr(fr, "field")?)?);
            }
            terms.push((slots, xml::req_f64(p, "coefficient")?));
        }
        let category = match (function, attr(t, "targetCategory")) {
            (MiningFunction::Classification, Some(tc)) => Some(class_index(c, target, t, tc)?),
            (MiningFunction::Classification, None) => {
                return err(t, "missing attribute 'targetCategory'")
            }
            _ => None,
        };
        let intercept = xml::f64_or(t, "intercept", 0.0)?;
        tables.push(Table {
            is_default: numeric.is_empty()
                && categorical.is_empty()
                && terms.is_empty()
                && intercept == 0.0,
            intercept,
            numeric,
            categorical,
            terms,
            category,
        });
    }
    match function {
        MiningFunction::Regression if tables.len() != 1 => {
            return err(
                node,
                "a regression RegressionModel needs exactly one RegressionTable",
            )
        }
        MiningFunction::Regression if norm == Norm::Simplemax => {
            return err(
                node,
                "normalizationMethod simplemax is not valid for regression",
            )
        }
        MiningFunction::Classification if tables.len() < 2 => {
            return err(
                node,
                "a classification RegressionModel needs at least two RegressionTables",
            )
        }
        _ => {}
    }
    let ordinal = target.optype == OpType::Ordinal;
    if function == MiningFunction::Classification {
        let ok = match (ordinal, tables.len(), norm) {
            (true, _, Norm::Simplemax | Norm::Softmax | Norm::Exp) => false,
            (true, _, _) => true,
            (false, 2, Norm::Exp) => false,
            (false, 2, _) => true,
            (false, _, Norm::None | Norm::Simplemax | Norm::Softmax | Norm::Logit) => true,
            _ => false,
        };
        if !ok {
            return err(
                node,
                format!("normalizationMethod {norm:?} is not valid for this classification model"),
            );
        }
    }
    Ok(Regression {
        tables,
        norm,
        ordinal,
    })
}

impl Table {
    /// The table's score (None: a numeric input is missing).
    fn score(&self, ctx: &mut Ctx, float: bool) -> EvalResult<Option<f64>> {
        let mut r = 0.0;
        for (slot, exp, coef) in &self.numeric {
            let Some(x) = ctx.get(*slot)?.as_f64() else {
                return Ok(None);
            };
            let x = if *exp != 1 { x.powi(*exp) } else { x };
            r = fadd(r, fmul(*coef, x, float), float);
        }
        let mut matched: Option<SlotId> = None;
        for (slot, lit, coef) in &self.categorical {
            if let Some(m) = matched {
                if m == *slot {
                    continue;
                }
                matched = None;
            }
            let v = ctx.get(*slot)?;
            if v.is_missing() {
                matched = Some(*slot);
                continue;
            }
            if lit.matches(&v) {
                matched = Some(*slot);
                r = fadd(r, *coef, float);
            }
        }
        for (slots, coef) in &self.terms {
            let mut prod = fr(*coef, float);
            for s in slots {
                let Some(x) = ctx.get(*s)?.as_f64() else {
                    return Ok(None);
                };
                prod = fmul(prod, x, float);
            }
            r = fadd(r, prod, float);
        }
        if self.intercept != 0.0 {
            r = fadd(r, self.intercept, float);
        }
        Ok(Some(r))
    }
}

impl Regression {
    /// Evaluates the model.
    pub fn evaluate(&self, model: &Model, ctx: &mut Ctx) -> EvalResult<Outcome> {
        let float = model.float;
        if model.function == MiningFunction::Regression {
            let Some(t) = self.tables.first() else {
                return Ok(Outcome::missing());
            };
            let Some(y) = t.score(ctx, float)? else {
                return Ok(Outcome::missing());
            };
            let y = match self.norm {
                Norm::None => y,
                n => n.link_in(y, float),
            };
            return Ok(Outcome::new(model.target.finish(y, float)));
        }
        let mut vals: Vec<(usize, f64)> = Vec::with_capacity(self.tables.len());
        for t in &self.tables {
            let Some(y) = t.score(ctx, float)? else {
                return Ok(Outcome::missing());
            };
            vals.push((t.category.unwrap_or(0), y));
        }
        if self.ordinal {
            ordinal(self.norm, &mut vals, float);
        } else if vals.len() == 2 {
            match self.norm {
                Norm::Simplemax | Norm::Softmax => {
                    if self.norm == Norm::Softmax && self.tables[1].is_default {
                        binomial(Norm::Logit, &mut vals, float);
                    } else {
                        multinomial(self.norm, &mut vals, float)?;
                    }
                }
                n => binomial(n, &mut vals, float),
            }
        } else {
            multinomial(self.norm, &mut vals, float)?;
        }
        Ok(Outcome::new(class_prediction(vals)))
    }
}

fn binomial(norm: Norm, vals: &mut [(usize, f64)], float: bool) {
    let p = norm.link_in(vals[0].1, float);
    vals[0].1 = p;
    vals[1].1 = fsub(1.0, p, float);
}

fn multinomial(norm: Norm, vals: &mut [(usize, f64)], float: bool) -> EvalResult<()> {
    let n = vals.len();
    match norm {
        Norm::None => {
            let sum = vals[..n - 1].iter().fold(0.0, |a, v| fadd(a, v.1, float));
            vals[n - 1].1 = fsub(1.0, sum, float);
        }
        Norm::Logit | Norm::Simplemax => {
            if norm == Norm::Logit {
                for v in vals.iter_mut() {
                    v.1 = Norm::Logit.link_in(v.1, float);
                }
            }
            simplemax(vals, float)?;
        }
        _ => softmax(vals, float)?,
    }
    Ok(())
}

fn ordinal(norm: Norm, vals: &mut [(usize, f64)], float: bool) {
    let n = vals.len();
    let mut sum: Option<f64> = None;
    for v in vals[..n - 1].iter_mut() {
        let p = norm.link_in(v.1, float);
        v.1 = p;
        match sum {
            None => sum = Some(p),
            Some(s) => {
                v.1 = fsub(p, s, float);
                sum = Some(fadd(s, v.1, float));
            }
        }
    }
    vals[n - 1].1 = fsub(1.0, sum.unwrap_or(0.0), float);
}

/// Divides by the sum (JPMML's `normalizeSimpleMax`).
pub fn simplemax(vals: &mut [(usize, f64)], float: bool) -> EvalResult<()> {
    let sum = vals.iter().fold(0.0, |a, v| fadd(a, v.1, float));
    if sum == 1.0 {
        return Ok(());
    }
    if sum == 0.0 {
        return Err("probabilities sum to zero".into());
    }
    for v in vals.iter_mut() {
        v.1 = fdiv(v.1, sum, float);
    }
    Ok(())
}

/// Softmax with the maximum subtracted first (JPMML's `normalizeSoftMax`).
pub fn softmax(vals: &mut [(usize, f64)], float: bool) -> EvalResult<()> {
    let max = vals.iter().map(|v| v.1).fold(f64::NEG_INFINITY, f64::max);
    for v in vals.iter_mut() {
        v.1 = fexp(fsub(v.1, max, float), float);
    }
    simplemax(vals, float)
}

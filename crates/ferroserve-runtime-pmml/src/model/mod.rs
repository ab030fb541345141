//! The model elements PMML defines, compiled for evaluation, and what they
//! share: the mining schema, the target (with `<Targets>` rescaling and
//! defaults), output fields, and the prediction a model produces.

mod bayes;
mod general;
mod mining;
mod neural;
mod regression;
mod scorecard;
mod tree;

use std::sync::Arc;

use roxmltree::Node;

use crate::expr::{self, Expr};
use crate::program::{
    Compiler, Ctx, EvalResult, FieldPrep, InvalidTreatment, Outliers, SlotId, SlotKind,
};
use crate::value::{java_round, DataType, Literal, OpType, Value};
use crate::xml::{self, at, attr, children, elements, err, LoadResult};

/// Model elements this runtime evaluates.
pub const SUPPORTED_MODELS: [&str; 7] = [
    "TreeModel",
    "RegressionModel",
    "MiningModel",
    "GeneralRegressionModel",
    "NaiveBayesModel",
    "Scorecard",
    "NeuralNetwork",
];

/// Model elements PMML defines that this runtime does not evaluate.
const OTHER_MODELS: [&str; 11] = [
    "AnomalyDetectionModel",
    "AssociationModel",
    "BayesianNetworkModel",
    "BaselineModel",
    "ClusteringModel",
    "GaussianProcessModel",
    "NearestNeighborModel",
    "RuleSetModel",
    "SequenceModel",
    "SupportVectorMachineModel",
    "TextModel",
];

/// True for an element that is a model (supported or not).
pub fn is_model_element(name: &str) -> bool {
    SUPPORTED_MODELS.contains(&name) || OTHER_MODELS.contains(&name) || name == "TimeSeriesModel"
}

/// A model's `functionName`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MiningFunction {
    /// Predicts a number.
    Regression,
    /// Predicts a class (with probabilities where the model has them).
    Classification,
}

/// What a model predicts for one row.
#[derive(Debug, Clone, PartialEq)]
pub enum Prediction {
    /// No prediction (missing).
    Missing,
    /// A regression result (after target processing, in the target's type).
    Value(f64),
    /// A class (index into the target's classes) with its probability
    /// distribution (class index, probability) in the model's order, when
    /// the model has one.
    Class {
        /// Winning class.
        label: usize,
        /// The distribution, if any.
        probs: Option<Vec<(usize, f64)>>,
    },
}

/// A model's result for one row.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The prediction.
    pub pred: Prediction,
    /// The winning entity (a tree node's id), if any.
    pub entity: Option<Arc<str>>,
    /// Scorecard reason codes, best first.
    pub reasons: Vec<Arc<str>>,
}

impl Outcome {
    /// A bare prediction.
    pub fn new(pred: Prediction) -> Self {
        Outcome {
            pred,
            entity: None,
            reasons: Vec::new(),
        }
    }

    /// No prediction.
    pub fn missing() -> Self {
        Outcome::new(Prediction::Missing)
    }

    /// Probability of class `c` (0 when the distribution lacks it).
    pub fn probability(&self, c: usize) -> Option<f64> {
        match &self.pred {
            Prediction::Class { probs: Some(p), .. } => {
                Some(p.iter().find(|(k, _)| *k == c).map_or(0.0, |(_, v)| *v))
            }
            _ => None,
        }
    }
}

/// `<Targets>` settings for the target.
#[derive(Debug, Clone, Default)]
pub struct TargetSpec {
    min: Option<f64>,
    max: Option<f64>,
    rescale_factor: Option<f64>,
    rescale_constant: Option<f64>,
    cast_integer: Option<&'static str>,
    default_value: Option<f64>,
    priors: Vec<(usize, f64)>,
}

/// A model's target field.
#[derive(Debug, Clone)]
pub struct TargetInfo {
    /// Field name (None: synthetic).
    pub name: Option<String>,
    /// Data type of predictions.
    pub dtype: DataType,
    /// Optype.
    pub optype: OpType,
    /// Key of the class list in the compiler.
    pub key: String,
    /// `<Targets>` settings.
    pub spec: TargetSpec,
}

impl TargetInfo {
    /// Applies `<Target>` min/max, rescaling and integer casts (JPMML order).
    pub fn process(&self, mut v: f64, float: bool) -> f64 {
        let s = &self.spec;
        if s.min.is_some() || s.max.is_some() {
            v = v
                .max(s.min.unwrap_or(f64::NEG_INFINITY))
                .min(s.max.unwrap_or(f64::INFINITY));
        }
        if let Some(f) = s.rescale_factor {
            v = fmul(v, f, float);
        }
        if let Some(c) = s.rescale_constant {
            v = fadd(v, c, float);
        }
        match s.cast_integer {
            Some("round") => v = java_round(v),
            Some("ceiling") => v = v.ceil(),
            Some("floor") => v = v.floor(),
            _ => {}
        }
        v
    }

    /// A regression value as the target's data type stores it.
    pub fn finish(&self, v: f64, float: bool) -> Prediction {
        let v = self.process(v, float);
        Prediction::Value(match self.dtype {
            DataType::Float => f64::from(v as f32),
            _ => v,
        })
    }

    /// The prediction when a model cannot predict: `<TargetValue>`
    /// defaults or prior probabilities, else missing.
    pub fn default_prediction(&self, function: MiningFunction) -> Prediction {
        match function {
            MiningFunction::Regression => match self.spec.default_value {
                Some(d) => self.finish(d, false),
                None => Prediction::Missing,
            },
            MiningFunction::Classification => {
                let priors = &self.spec.priors;
                if priors.is_empty() {
                    return Prediction::Missing;
                }
                let sum: f64 = priors.iter().map(|(_, p)| p).sum();
                let probs: Vec<(usize, f64)> = if sum != 1.0 && sum != 0.0 {
                    priors.iter().map(|(k, p)| (*k, p / sum)).collect()
                } else {
                    priors.clone()
                };
                class_prediction(probs)
            }
        }
    }
}

/// The winner of a distribution (first of equal maxima) with the
/// distribution itself.
pub fn class_prediction(probs: Vec<(usize, f64)>) -> Prediction {
    let mut best: Option<(usize, f64)> = None;
    for &(k, p) in &probs {
        if best.is_none_or(|(_, b)| p > b) {
            best = Some((k, p));
        }
    }
    match best {
        Some((label, _)) => Prediction::Class {
            label,
            probs: Some(probs),
        },
        None => Prediction::Missing,
    }
}

/// Rounds to single precision when the model computes in `float`.
pub fn fr(v: f64, float: bool) -> f64 {
    if float {
        f64::from(v as f32)
    } else {
        v
    }
}

/// `a + b` in the model's precision (JPMML's `FloatValue` rounds both
/// operands to `float` first; a double holds the exact f32 result before
/// the one rounding, so this equals single-precision arithmetic).
pub fn fadd(a: f64, b: f64, float: bool) -> f64 {
    fr(fr(a, float) + fr(b, float), float)
}

/// `a - b` in the model's precision.
pub fn fsub(a: f64, b: f64, float: bool) -> f64 {
    fr(fr(a, float) - fr(b, float), float)
}

/// `a * b` in the model's precision.
pub fn fmul(a: f64, b: f64, float: bool) -> f64 {
    fr(fr(a, float) * fr(b, float), float)
}

/// `a / b` in the model's precision.
pub fn fdiv(a: f64, b: f64, float: bool) -> f64 {
    fr(fr(a, float) / fr(b, float), float)
}

/// `e^a` in the model's precision. In `float`, JPMML computes
/// `(float) Math.pow(2.7182817d, x)` (emulating C's `expf`, as XGBoost and
/// LightGBM use it), so this does too.
pub fn fexp(a: f64, float: bool) -> f64 {
    if float {
        fr(2.7182817f64.powf(fr(a, true)), true)
    } else {
        a.exp()
    }
}

/// What an output field computes.
#[derive(Debug)]
enum Feature {
    PredictedValue,
    PredictedDisplayValue,
    Probability(Option<usize>),
    Expression(Expr),
    ReasonCode(usize),
    EntityId,
}

/// A compiled `<OutputField>`.
#[derive(Debug)]
pub struct OutputDef {
    /// Field name.
    pub name: String,
    /// Its slot (set when the model is evaluated).
    pub slot: SlotId,
    /// Declared data type.
    pub dtype: DataType,
    /// Whether it is a final result (`isFinalResult`).
    pub is_final: bool,
    feature: Feature,
}

/// A compiled model element.
#[derive(Debug)]
pub struct Model {
    /// The element name (`TreeModel`, …).
    pub element: String,
    /// `functionName`.
    pub function: MiningFunction,
    /// The target.
    pub target: TargetInfo,
    /// `<Output>` fields in order.
    pub outputs: Vec<OutputDef>,
    /// Whether the model computes in single precision (`mathContext`).
    pub float: bool,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Tree(tree::Tree),
    Regression(regression::Regression),
    Mining(mining::Mining),
    General(general::General),
    Bayes(bayes::Bayes),
    Scorecard(scorecard::Scorecard),
    Neural(neural::Neural),
}

/// The context a model is compiled in.
#[derive(Debug, Clone)]
pub struct Parent {
    /// The parent's function and target (for nested models).
    pub target: Option<(MiningFunction, TargetInfo)>,
    /// Whether this model's outputs are visible to later siblings.
    pub chain: bool,
    /// Whether this is the document's top-level model.
    pub top: bool,
}

/// An active field of the top-level mining schema: a model input.
#[derive(Debug, Clone)]
pub struct InputField {
    /// Field name.
    pub name: String,
    /// Its slot.
    pub slot: SlotId,
    /// Preparation (data field + mining field settings).
    pub prep: FieldPrep,
}

/// Compiles a model element. Top-level active fields are appended to `inputs`.
pub fn compile(
    c: &mut Compiler,
    node: Node,
    parent: &Parent,
    inputs: &mut Vec<InputField>,
) -> LoadResult<Model> {
    let element = node.tag_name().name();
    if !SUPPORTED_MODELS.contains(&element) {
        return err(
            node,
            format!(
                "{element} is not supported (supported models: {})",
                SUPPORTED_MODELS.join(", ")
            ),
        );
    }
    if !xml::bool_or(node, "isScorable", true)? {
        return err(node, "the model says isScorable=false");
    }
    let function = match xml::req_attr(node, "functionName")? {
        "regression" => MiningFunction::Regression,
        "classification" => MiningFunction::Classification,
        other => {
            return err(
                node,
                format!(
                "functionName '{other}' is not supported (supported: regression, classification)"
            ),
            )
        }
    };
    let float = match attr(node, "mathContext").or(attr(node, "x-mathContext")) {
        None | Some("double") => false,
        Some("float") => true,
        Some(o) => return err(node, format!("unknown mathContext '{o}'")),
    };
    c.push_scope();
    let r = compile_in_scope(c, node, element, function, float, parent, inputs);
    c.pop_scope();
    r
}

fn compile_in_scope(
    c: &mut Compiler,
    node: Node,
    element: &str,
    function: MiningFunction,
    float: bool,
    parent: &Parent,
    inputs: &mut Vec<InputField>,
) -> LoadResult<Model> {
    let schema = xml::req_child(node, "MiningSchema")?;
    let target_name = mining_schema(c, schema, parent.top, inputs)?;
    let target = target_info(c, node, function, target_name, parent)?;
    if let Some(lt) = xml::child(node, "LocalTransformations") {
        c.transformations(lt)?;
    }
    let kind = match element {
        "TreeModel" => Kind::Tree(tree::compile(c, node, function, &target, float)?),
        "RegressionModel" => Kind::Regression(regression::compile(c, node, function, &target)?),
        "MiningModel" => Kind::Mining(mining::compile(c, node, function, &target, inputs)?),
        "GeneralRegressionModel" => Kind::General(general::compile(c, node, function, &target)?),
        "NaiveBayesModel" => Kind::Bayes(bayes::compile(c, node, function, &target)?),
        "Scorecard" => Kind::Scorecard(scorecard::compile(c, node, function)?),
        _ => Kind::Neural(neural::compile(c, node, function, &target)?),
    };
    let outputs = match xml::child(node, "Output") {
        Some(o) => compile_outputs(c, o, &target, parent.chain)?,
        None => Vec::new(),
    };
    Ok(Model {
        element: element.to_string(),
        function,
        target,
        outputs,
        float,
        kind,
    })
}

/// Reads a MiningSchema: binds views for nested fields with treatments,
/// records top-level inputs; returns the target field name, if any.
fn mining_schema(
    c: &mut Compiler,
    schema: Node,
    top: bool,
    inputs: &mut Vec<InputField>,
) -> LoadResult<Option<String>> {
    let mut target = None;
    for mf in children(schema, "MiningField") {
        let name = xml::req_attr(mf, "name")?;
        let usage = attr(mf, "usageType").unwrap_or("active");
        match usage {
            "target" | "predicted" => {
                if target.is_some() {
                    return err(
                        mf,
                        "more than one target field (multi-target models are not supported)",
                    );
                }
                target = Some(name.to_string());
                continue;
            }
            "active" => {}
            _ => continue,
        }
        let slot = c.resolve(mf, name)?;
        let base = match c.data_fields.get(name) {
            Some(df) if df.slot == slot => Some(df.prep.clone()),
            _ => None,
        };
        let treatments = has_treatments(mf);
        if top {
            let Some(mut prep) = base else {
                return err(mf, format!("'{name}' is not a DataField"));
            };
            apply_mining_field(mf, &mut prep)?;
            inputs.push(InputField {
                name: name.to_string(),
                slot,
                prep,
            });
        } else if treatments {
            let (dtype, optype) = {
                let s = &c.prog.slots[slot];
                (s.dtype, s.optype)
            };
            let mut prep = base.unwrap_or(FieldPrep {
                name: name.to_string(),
                dtype,
                optype,
                valid: Vec::new(),
                invalid: Vec::new(),
                missing: Vec::new(),
                intervals: Vec::new(),
                check_validity: false,
                invalid_treatment: InvalidTreatment::AsIs,
                replacement: None,
                missing_is_error: false,
                outliers: Outliers::AsIs,
                low: None,
                high: None,
            });
            prep.check_validity = false;
            apply_mining_field(mf, &mut prep)?;
            c.add_slot(name, dtype, optype, SlotKind::View { source: slot, prep });
        }
    }
    Ok(target)
}

fn has_treatments(mf: Node) -> bool {
    [
        "missingValueReplacement",
        "outliers",
        "lowValue",
        "highValue",
        "missingValueTreatment",
    ]
    .iter()
    .any(|a| mf.attribute(*a).is_some())
}

fn apply_mining_field(mf: Node, prep: &mut FieldPrep) -> LoadResult<()> {
    if let Some(r) = attr(mf, "missingValueReplacement") {
        prep.replacement =
            Some(Value::parse_as(prep.dtype, r).map_err(|e| format!("{}: {e}", at(mf)))?);
    }
    if attr(mf, "missingValueTreatment") == Some("returnInvalid") {
        prep.missing_is_error = true;
    }
    let invalid = attr(mf, "invalidValueTreatment").unwrap_or("returnInvalid");
    prep.invalid_treatment = match invalid {
        "returnInvalid" => InvalidTreatment::ReturnInvalid,
        "asIs" => InvalidTreatment::AsIs,
        "asMissing" => InvalidTreatment::AsMissing,
        "asValue" => {
            let r = xml::req_attr(mf, "invalidValueReplacement")?;
            InvalidTreatment::AsValue(
                Value::parse_as(prep.dtype, r).map_err(|e| format!("{}: {e}", at(mf)))?,
            )
        }
        o => return err(mf, format!("unknown invalidValueTreatment '{o}'")),
    };
    prep.outliers = match attr(mf, "outliers").unwrap_or("asIs") {
        "asIs" => Outliers::AsIs,
        "asMissingValues" => Outliers::AsMissing,
        "asExtremeValues" => Outliers::AsExtreme,
        o => return err(mf, format!("unknown outliers '{o}'")),
    };
    prep.low = xml::attr_f64(mf, "lowValue")?;
    prep.high = xml::attr_f64(mf, "highValue")?;
    Ok(())
}

/// Index of class `text` in the class list `key`, appended when new.
pub fn class_index(
    c: &mut Compiler,
    target: &TargetInfo,
    node: Node,
    text: &str,
) -> LoadResult<usize> {
    let v = Value::parse_as(target.dtype, text)
        .map_err(|e| format!("{}: class label: {e}", at(node)))?;
    let list = c.categories.entry(target.key.clone()).or_default();
    if let Some(i) = list.iter().position(|x| x.equals_value(&v)) {
        return Ok(i);
    }
    list.push(v);
    Ok(list.len() - 1)
}

fn target_info(
    c: &mut Compiler,
    node: Node,
    function: MiningFunction,
    name: Option<String>,
    parent: &Parent,
) -> LoadResult<TargetInfo> {
    let mut info = match &name {
        Some(n) => {
            let slot = c.resolve(node, n)?;
            let s = &c.prog.slots[slot];
            TargetInfo {
                name: Some(n.clone()),
                dtype: s.dtype,
                optype: s.optype,
                key: n.clone(),
                spec: TargetSpec::default(),
            }
        }
        None => match &parent.target {
            Some((MiningFunction::Classification, t))
                if function == MiningFunction::Classification =>
            {
                TargetInfo {
                    spec: TargetSpec::default(),
                    ..t.clone()
                }
            }
            _ => TargetInfo {
                name: None,
                dtype: match function {
                    MiningFunction::Regression => DataType::Double,
                    MiningFunction::Classification => DataType::String,
                },
                optype: match function {
                    MiningFunction::Regression => OpType::Continuous,
                    MiningFunction::Classification => OpType::Categorical,
                },
                key: format!("#synthetic{}", c.categories.len()),
                spec: TargetSpec::default(),
            },
        },
    };
    if function == MiningFunction::Classification
        && info.dtype == DataType::Double
        && info.optype == OpType::Continuous
    {
        info.optype = OpType::Categorical;
    }
    if let Some(targets) = xml::child(node, "Targets") {
        let t = children(targets, "Target").find(|t| match (attr(*t, "field"), &info.name) {
            (None, _) => true,
            (Some(f), Some(n)) => f == n,
            (Some(_), None) => children(targets, "Target").count() == 1,
        });
        if let Some(t) = t {
            let mut spec = TargetSpec {
                min: xml::attr_f64(t, "min")?,
                max: xml::attr_f64(t, "max")?,
                rescale_factor: xml::attr_f64(t, "rescaleFactor")?,
                rescale_constant: xml::attr_f64(t, "rescaleConstant")?,
                cast_integer: match attr(t, "castInteger") {
                    None => None,
                    Some("round") => Some("round"),
                    Some("ceiling") => Some("ceiling"),
                    Some("floor") => Some("floor"),
                    Some(o) => return err(t, format!("unknown castInteger '{o}'")),
                },
                default_value: None,
                priors: Vec::new(),
            };
            for tv in children(t, "TargetValue") {
                if function == MiningFunction::Regression {
                    spec.default_value = xml::attr_f64(tv, "defaultValue")?.or(spec.default_value);
                } else if let (Some(v), Some(p)) =
                    (attr(tv, "value"), xml::attr_f64(tv, "priorProbability")?)
                {
                    let k = class_index(c, &info, tv, v)?;
                    spec.priors.push((k, p));
                }
            }
            info.spec = spec;
        }
    }
    Ok(info)
}

fn compile_outputs(
    c: &mut Compiler,
    output: Node,
    target: &TargetInfo,
    chain: bool,
) -> LoadResult<Vec<OutputDef>> {
    let mut out = Vec::new();
    for of in children(output, "OutputField") {
        let name = xml::req_attr(of, "name")?;
        if attr(of, "segmentId").is_some() {
            return err(of, "OutputField with segmentId is not supported");
        }
        let feature = match attr(of, "feature").unwrap_or("predictedValue") {
            "predictedValue" => Feature::PredictedValue,
            "predictedDisplayValue" => Feature::PredictedDisplayValue,
            "probability" => Feature::Probability(match attr(of, "value") {
                Some(v) => Some(class_index(c, target, of, v)?),
                None => None,
            }),
            "transformedValue" | "decision" => {
                let e = elements(of)
                    .find(|e| e.tag_name().name() != "Extension" && e.tag_name().name() != "Decisions");
                match e {
                    Some(e) => Feature::Expression(expr::compile(c, e)?),
                    None => return err(of, "transformedValue output without an expression"),
                }
            }
            "reasonCode" => Feature::ReasonCode(
                attr(of, "rank")
                    .map(|r| r.parse::<usize>().map_err(|_| format!("{}: bad rank '{r}'", at(of))))
                    .transpose()?
                    .unwrap_or(1)
                    .max(1),
            ),
            "entityId" => Feature::EntityId,
            other => {
                return err(
                    of,
                    format!(
                        "OutputField feature '{other}' is not supported (supported: predictedValue, \
                         predictedDisplayValue, probability, transformedValue, decision, reasonCode, entityId)"
                    ),
                )
            }
        };
        let dtype = match xml::data_type(of)? {
            Some(d) => d,
            None => match &feature {
                Feature::PredictedValue => target.dtype,
                Feature::Probability(_) => DataType::Double,
                Feature::Expression(_) => DataType::Double,
                _ => DataType::String,
            },
        };
        let optype = xml::op_type(of)?.unwrap_or(OpType::default_for(dtype));
        let slot = c.add_slot(name, dtype, optype, SlotKind::External);
        if chain {
            c.bind_outer(name, slot);
        }
        out.push(OutputDef {
            name: name.to_string(),
            slot,
            dtype,
            is_final: xml::bool_or(of, "isFinalResult", true)?,
            feature,
        });
    }
    Ok(out)
}

impl Model {
    /// Evaluates the model for the row in `ctx`.
    pub fn evaluate(&self, ctx: &mut Ctx) -> EvalResult<Outcome> {
        let out = match &self.kind {
            Kind::Tree(t) => t.evaluate(self, ctx)?,
            Kind::Regression(r) => r.evaluate(self, ctx)?,
            Kind::Mining(m) => m.evaluate(self, ctx)?,
            Kind::General(g) => g.evaluate(self, ctx)?,
            Kind::Bayes(b) => b.evaluate(self, ctx)?,
            Kind::Scorecard(s) => s.evaluate(self, ctx)?,
            Kind::Neural(n) => n.evaluate(self, ctx)?,
        };
        if out.pred == Prediction::Missing {
            return Ok(Outcome::new(self.target.default_prediction(self.function)));
        }
        Ok(out)
    }

    /// The predicted value as a field value of the target's type.
    pub fn predicted_value(&self, out: &Outcome, ctx: &Ctx) -> Value {
        let classes = ctx.prog.classes(&self.result_target().key);
        match &out.pred {
            Prediction::Missing => Value::Missing,
            Prediction::Value(v) => Value::number(self.target.dtype, *v),
            Prediction::Class { label, .. } => {
                classes.get(*label).cloned().unwrap_or(Value::Missing)
            }
        }
    }

    /// Computes the output fields into their slots.
    pub fn eval_outputs(&self, ctx: &mut Ctx, out: &Outcome) -> EvalResult<()> {
        for o in &self.outputs {
            let v = match &o.feature {
                Feature::PredictedValue => self.predicted_value(out, ctx),
                Feature::PredictedDisplayValue => match self.predicted_value(out, ctx) {
                    Value::Missing => Value::Missing,
                    v => Value::str(&v.to_text()),
                },
                Feature::Probability(k) => {
                    let k = match (k, &out.pred) {
                        (Some(k), _) => Some(*k),
                        (None, Prediction::Class { label, .. }) => Some(*label),
                        _ => None,
                    };
                    match k.and_then(|k| out.probability(k)) {
                        Some(p) => Value::Double(p),
                        None => Value::Missing,
                    }
                }
                Feature::Expression(e) => expr::eval(e, ctx, &[])?,
                Feature::ReasonCode(rank) => match out.reasons.get(rank - 1) {
                    Some(r) => Value::Str(r.clone()),
                    None => Value::Missing,
                },
                Feature::EntityId => match &out.entity {
                    Some(e) => Value::Str(e.clone()),
                    None => Value::Missing,
                },
            };
            let v = v
                .cast(o.dtype)
                .map_err(|e| format!("output field '{}': {e}", o.name))?;
            ctx.set(o.slot, v);
        }
        Ok(())
    }

    /// Output fields visible at the top level: this model's, then (for a
    /// model chain or select-first ensemble) the final segment's.
    pub fn visible_outputs(&self) -> Vec<&OutputDef> {
        let mut v: Vec<&OutputDef> = Vec::new();
        if let Kind::Mining(m) = &self.kind {
            v.extend(m.nested_outputs());
        }
        v.extend(self.outputs.iter());
        v
    }

    /// Every class label a model chain's final classifier uses.
    pub fn target_key(&self) -> &str {
        &self.target.key
    }

    /// The class list key a prediction of this model refers to (the final
    /// segment's for a model chain).
    pub fn result_target(&self) -> &TargetInfo {
        match &self.kind {
            Kind::Mining(m) => m.result_target().unwrap_or(&self.target),
            _ => &self.target,
        }
    }
}

/// A literal compared with a class label.
pub fn literal(node: Node, name: &str) -> LoadResult<Literal> {
    Ok(Literal::new(xml::req_attr(node, name)?))
}

//! `NeuralNetwork`: feed-forward layers with PMML's activation functions
//! (radial basis included) and layer normalisation, outputs mapped back
//! through `NormDiscrete` (classes) or `NormContinuous` (regression).

use std::collections::HashMap;

use roxmltree::Node;

use super::{class_index, MiningFunction, Model, Outcome, Prediction, TargetInfo};
use crate::expr::{self, denorm_continuous, Expr};
use crate::model::regression::{simplemax, softmax};
use crate::program::{Compiler, Ctx, EvalResult, SlotKind};
use crate::stats::logistic;
use crate::value::DataType;
use crate::xml::{self, at, attr, children, err, LoadResult};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Activation {
    Threshold,
    Logistic,
    Tanh,
    Identity,
    Exponential,
    Reciprocal,
    Square,
    Gauss,
    Sine,
    Cosine,
    Elliott,
    Arctan,
    Rectifier,
    RadialBasis,
}

impl Activation {
    fn parse(node: Node, s: &str) -> LoadResult<Self> {
        Ok(match s {
            "threshold" => Activation::Threshold,
            "logistic" => Activation::Logistic,
            "tanh" => Activation::Tanh,
            "identity" => Activation::Identity,
            "exponential" => Activation::Exponential,
            "reciprocal" => Activation::Reciprocal,
            "square" => Activation::Square,
            "Gauss" => Activation::Gauss,
            "sine" => Activation::Sine,
            "cosine" => Activation::Cosine,
            "Elliott" => Activation::Elliott,
            "arctan" => Activation::Arctan,
            "rectifier" => Activation::Rectifier,
            "radialBasis" => Activation::RadialBasis,
            o => return err(node, format!("unknown activationFunction '{o}'")),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LayerNorm {
    None,
    Simplemax,
    Softmax,
}

#[derive(Debug)]
struct Neuron {
    bias: f64,
    width: Option<f64>,
    inputs: Vec<(usize, f64)>,
}

#[derive(Debug)]
struct Layer {
    activation: Activation,
    threshold: f64,
    leakage: Option<f64>,
    altitude: f64,
    width: Option<f64>,
    norm: LayerNorm,
    neurons: Vec<Neuron>,
}

#[derive(Debug)]
enum Out {
    Class(usize, usize),
    Value(usize, Option<Vec<(f64, f64)>>),
}

/// A compiled neural network.
#[derive(Debug)]
pub struct Neural {
    inputs: Vec<(Expr, DataType)>,
    layers: Vec<Layer>,
    outputs: Vec<Out>,
    size: usize,
}

fn layer_norm(node: Node, s: Option<&str>) -> LoadResult<Option<LayerNorm>> {
    Ok(match s {
        None => None,
        Some("none") => Some(LayerNorm::None),
        Some("simplemax") => Some(LayerNorm::Simplemax),
        Some("softmax") => Some(LayerNorm::Softmax),
        Some(o) => return err(node, format!("unknown normalizationMethod '{o}'")),
    })
}

/// Compiles a `<NeuralNetwork>`.
pub fn compile(
    c: &mut Compiler,
    node: Node,
    function: MiningFunction,
    target: &TargetInfo,
) -> LoadResult<Neural> {
    let net_act = Activation::parse(node, xml::req_attr(node, "activationFunction")?)?;
    let net_norm = layer_norm(node, attr(node, "normalizationMethod"))?.unwrap_or(LayerNorm::None);
    let net_threshold = xml::f64_or(node, "threshold", 0.0)?;
    let net_leakage = xml::attr_f64(node, "leakage")?.or(xml::attr_f64(node, "x-leakage")?);
    let net_altitude = xml::f64_or(node, "altitude", 1.0)?;
    let net_width = xml::attr_f64(node, "width")?;
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut inputs = Vec::new();
    for ni in children(xml::req_child(node, "NeuralInputs")?, "NeuralInput") {
        let id = xml::req_attr(ni, "id")?;
        if ids.insert(id.to_string(), ids.len()).is_some() {
            return err(ni, format!("duplicate neuron id '{id}'"));
        }
        inputs.push(c.anonymous_derived(xml::req_child(ni, "DerivedField")?)?);
    }
    let mut layers = Vec::new();
    for l in children(node, "NeuralLayer") {
        let activation = match attr(l, "activationFunction") {
            Some(a) => Activation::parse(l, a)?,
            None => net_act,
        };
        let mut neurons = Vec::new();
        let mut new_ids = Vec::new();
        for n in children(l, "Neuron") {
            let mut ins = Vec::new();
            for con in children(n, "Con") {
                let from = xml::req_attr(con, "from")?;
                let idx = *ids
                    .get(from)
                    .ok_or_else(|| format!("{}: no earlier neuron or input '{from}'", at(con)))?;
                ins.push((idx, xml::req_f64(con, "weight")?));
            }
            new_ids.push((n, xml::req_attr(n, "id")?.to_string()));
            neurons.push(Neuron {
                bias: xml::f64_or(n, "bias", 0.0)?,
                width: xml::attr_f64(n, "width")?,
                inputs: ins,
            });
        }
        // A layer's neurons see only earlier layers.
        for (n, id) in new_ids {
            if ids.contains_key(&id) {
                return err(n, format!("duplicate neuron id '{id}'"));
            }
            ids.insert(id, ids.len());
        }
        layers.push(Layer {
            activation,
            threshold: xml::attr_f64(l, "threshold")?.unwrap_or(net_threshold),
            leakage: xml::attr_f64(l, "leakage")?
                .or(xml::attr_f64(l, "x-leakage")?)
                .or(net_leakage),
            altitude: xml::attr_f64(l, "altitude")?.unwrap_or(net_altitude),
            width: xml::attr_f64(l, "width")?.or(net_width),
            norm: layer_norm(l, attr(l, "normalizationMethod"))?.unwrap_or(net_norm),
            neurons,
        });
        if activation == Activation::RadialBasis
            && layers
                .last()
                .is_some_and(|l| l.width.is_none() && l.neurons.iter().any(|n| n.width.is_none()))
        {
            return err(l, "radialBasis needs a width");
        }
    }
    let mut outputs = Vec::new();
    for no in children(xml::req_child(node, "NeuralOutputs")?, "NeuralOutput") {
        let on = xml::req_attr(no, "outputNeuron")?;
        let idx = *ids
            .get(on)
            .ok_or_else(|| format!("{}: no neuron '{on}'", at(no)))?;
        let e = expr::expression_child(xml::req_child(no, "DerivedField")?)?;
        match (function, e.tag_name().name()) {
            (MiningFunction::Classification, "NormDiscrete") => {
                let k = class_index(c, target, e, xml::req_attr(e, "value")?)?;
                outputs.push(Out::Class(idx, k));
            }
            (MiningFunction::Regression, "FieldRef") => {
                let f = xml::req_attr(e, "field")?;
                let slot = c.resolve(e, f)?;
                let points = match &c.prog.slots[slot].kind {
                    SlotKind::Derived(Expr::NormContinuous { points, .. }) => Some(points.clone()),
                    _ => None,
                };
                outputs.push(Out::Value(idx, points));
            }
            (MiningFunction::Regression, "NormContinuous") => {
                let mut points = Vec::new();
                for ln in children(e, "LinearNorm") {
                    points.push((xml::req_f64(ln, "orig")?, xml::req_f64(ln, "norm")?));
                }
                outputs.push(Out::Value(idx, Some(points)));
            }
            (_, other) => {
                return err(
                    e,
                    format!("<{other}> is not supported in a NeuralOutput here"),
                )
            }
        }
    }
    if outputs.is_empty() {
        return err(node, "no NeuralOutput");
    }
    Ok(Neural {
        inputs,
        layers,
        outputs,
        size: ids.len(),
    })
}

fn activate(l: &Layer, n: &Neuron, sum: f64, fan_in: usize) -> f64 {
    match l.activation {
        Activation::Threshold => {
            if sum > l.threshold {
                1.0
            } else {
                0.0
            }
        }
        Activation::Logistic => logistic(sum),
        Activation::Tanh => sum.tanh(),
        Activation::Identity => sum,
        Activation::Exponential => sum.exp(),
        Activation::Reciprocal => 1.0 / sum,
        Activation::Square => sum * sum,
        Activation::Gauss => (-(sum * sum)).exp(),
        Activation::Sine => sum.sin(),
        Activation::Cosine => sum.cos(),
        Activation::Elliott => sum / (1.0 + sum.abs()),
        Activation::Arctan => sum.atan(),
        Activation::Rectifier => match l.leakage {
            Some(k) if sum <= 0.0 => sum * k,
            _ => sum.max(0.0),
        },
        Activation::RadialBasis => {
            let w = n.width.or(l.width).unwrap_or(1.0);
            let mut v = sum / (w * w * -2.0);
            if l.altitude != 1.0 {
                v += l.altitude.ln() * fan_in as f64;
            }
            v.exp()
        }
    }
}

impl Neural {
    /// Evaluates the network.
    pub fn evaluate(&self, model: &Model, ctx: &mut Ctx) -> EvalResult<Outcome> {
        let mut vals = vec![0.0f64; self.size];
        for (i, (e, dt)) in self.inputs.iter().enumerate() {
            let v = expr::eval(e, ctx, &[])?.cast(*dt)?;
            let Some(x) = v.as_f64() else {
                return Ok(Outcome::missing());
            };
            vals[i] = x;
        }
        let mut next = self.inputs.len();
        for l in &self.layers {
            let start = next;
            for n in &l.neurons {
                let mut s = 0.0;
                if l.activation == Activation::RadialBasis {
                    for &(from, w) in &n.inputs {
                        let d = vals[from] - w;
                        s += d * d;
                    }
                } else {
                    for &(from, w) in &n.inputs {
                        s += w * vals[from];
                    }
                    if n.bias != 0.0 {
                        s += n.bias;
                    }
                }
                vals[next] = activate(l, n, s, n.inputs.len());
                next += 1;
            }
            if l.norm != LayerNorm::None {
                let mut layer: Vec<(usize, f64)> = (start..next).map(|i| (i, vals[i])).collect();
                if l.norm == LayerNorm::Softmax {
                    softmax(&mut layer, false)?;
                } else {
                    simplemax(&mut layer, false)?;
                }
                for (i, v) in layer {
                    vals[i] = v;
                }
            }
        }
        match model.function {
            MiningFunction::Regression => {
                let Some(Out::Value(idx, points)) = self.outputs.first() else {
                    return Ok(Outcome::missing());
                };
                let mut y = vals[*idx];
                if let Some(p) = points {
                    y = denorm_continuous(p, y)
                        .ok_or("NeuralNetwork: output outside the NormContinuous range")?;
                }
                Ok(Outcome::new(model.target.finish(y, model.float)))
            }
            MiningFunction::Classification => {
                let probs: Vec<(usize, f64)> = self
                    .outputs
                    .iter()
                    .filter_map(|o| match o {
                        Out::Class(idx, k) => Some((*k, vals[*idx])),
                        Out::Value(..) => None,
                    })
                    .collect();
                Ok(Outcome::new(match super::class_prediction(probs) {
                    Prediction::Missing => Prediction::Missing,
                    p => p,
                }))
            }
        }
    }
}

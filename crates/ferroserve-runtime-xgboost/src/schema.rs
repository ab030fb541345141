//! Reading XGBoost's model document (the same tree in JSON and UBJSON):
//!
//! ```text
//! {"version": [3, 2, 0],
//!  "learner": {
//!    "learner_model_param": {"base_score": "5E-1" | "[5E-1,…]", "num_feature": "10",
//!                            "num_class": "0", "num_target": "1", …},
//!    "objective": {"name": "binary:logistic", …},
//!    "gradient_booster": {"name": "gbtree", "model": {"trees": […], "tree_info": […]}}
//!                      | {"name": "dart", "gbtree": {"model": …}, "weight_drop": […]}
//!                      | {"name": "gblinear", "model": {"weights": […]}},
//!    "feature_names": […], "feature_types": […], "attributes": {"best_iteration": "…"}}}
//! ```
//!
//! `base_score` is stored as the user-facing value (a probability for
//! logistic objectives, a mean for log-link ones) by every version since
//! 1.0; the objective turns it into a margin at load, as XGBoost does.
//! XGBoost 3.x stores it as a vector, one entry per output.

use crate::forest::{Forest, ForestSpec};
use crate::linear::Linear;
use crate::objective::Objective;
use crate::value::Value;

/// The booster of a model.
#[derive(Debug, Clone)]
pub(crate) enum Booster {
    /// gbtree or dart.
    Trees(Forest),
    /// gblinear.
    Linear(Linear),
}

/// Everything prediction needs, read from a model document.
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    pub version: Option<[u32; 3]>,
    pub num_features: usize,
    pub num_outputs: usize,
    pub objective: Objective,
    pub base_margins: Vec<f32>,
    pub booster_name: String,
    pub booster: Booster,
    pub feature_names: Vec<String>,
    pub feature_types: Vec<String>,
    pub best_iteration: Option<u64>,
}

fn get<'v>(v: &'v Value, path: &str, key: &str) -> Result<&'v Value, String> {
    v.get(key)
        .ok_or_else(|| format!("missing field '{path}{key}'"))
}

/// A count stored as a string ("10") or an integer.
fn count(v: &Value, path: &str, key: &str) -> Result<Option<usize>, String> {
    let n = match v.get(key) {
        None => return Ok(None),
        Some(Value::Str(s)) => s.trim().parse::<i64>().ok(),
        Some(other) => other.as_i64(),
    };
    n.and_then(|n| usize::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| format!("'{path}{key}' is not a non-negative integer"))
}

/// `base_score` as XGBoost writes it: "5E-1", "[5E-1]" or "[1E0,2E0]".
fn base_scores(v: &Value) -> Result<Vec<f32>, String> {
    let bad = || format!("invalid base_score {v:?}");
    match v {
        Value::Str(s) => {
            let s = s.trim();
            let inner = s
                .strip_prefix('[')
                .and_then(|s| s.strip_suffix(']'))
                .unwrap_or(s);
            inner
                .split(',')
                .map(|p| p.trim().parse::<f32>().map_err(|_| bad()))
                .collect()
        }
        Value::Float(_) | Value::Int(_) => v.as_f32().map(|f| vec![f]).ok_or_else(bad),
        _ => v.to_f32_vec().filter(|x| !x.is_empty()).ok_or_else(bad),
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Interprets a parsed model document.
pub(crate) fn interpret(doc: &Value) -> Result<Parsed, String> {
    let version = doc
        .get("version")
        .and_then(Value::to_i64_vec)
        .and_then(|v| {
            let c = |i: usize| v.get(i).and_then(|&x| u32::try_from(x).ok());
            Some([c(0)?, c(1).unwrap_or(0), c(2).unwrap_or(0)])
        });
    let learner = get(doc, "", "learner")?;
    let mparam = get(learner, "learner.", "learner_model_param")?;
    let p = "learner.learner_model_param.";
    let num_features = count(mparam, p, "num_feature")?.ok_or("missing num_feature")?;
    if num_features == 0 {
        return Err("the model has 0 features (was it trained?)".into());
    }
    let num_class = count(mparam, p, "num_class")?.unwrap_or(0);
    let num_target = count(mparam, p, "num_target")?.unwrap_or(1);
    let num_outputs = num_class.max(num_target).max(1);
    if num_outputs > 1 << 16 || num_features > 1 << 28 {
        return Err(format!(
            "implausible model shape: {num_features} features, {num_outputs} outputs"
        ));
    }

    let obj_name = get(learner, "learner.", "objective")?
        .get("name")
        .and_then(Value::as_str)
        .ok_or("missing 'learner.objective.name'")?;
    let objective = Objective::new(obj_name, version).ok_or_else(|| {
        format!(
            "objective '{obj_name}' is not supported (a custom objective cannot be served: \
             its output transform is unknown). Supported: {}",
            Objective::supported_names().join(", ")
        )
    })?;

    let stored = base_scores(get(mparam, p, "base_score")?)?;
    let stored = match stored.len() {
        1 => vec![stored[0]; num_outputs],
        n if n == num_outputs => stored,
        n => {
            return Err(format!(
                "base_score has {n} values for a model with {num_outputs} outputs"
            ))
        }
    };
    let base_margins = objective.base_margins(&stored)?;

    let gb = get(learner, "learner.", "gradient_booster")?;
    let booster_name = gb
        .get("name")
        .and_then(Value::as_str)
        .ok_or("missing 'learner.gradient_booster.name'")?
        .to_string();
    let booster = match booster_name.as_str() {
        "gbtree" => {
            // XGBoost ≥ 3.4 saves dart models as gbtree with tree weights.
            let model = get(gb, "gradient_booster.", "model")?;
            let w = match model.get("weight_drop") {
                Some(w) => Some(
                    w.to_f32_vec()
                        .ok_or("'weight_drop' is not an array of numbers")?,
                ),
                None => None,
            };
            Booster::Trees(trees(model, w, num_features, num_outputs)?)
        }
        "dart" => {
            let inner = get(
                get(gb, "gradient_booster.", "gbtree")?,
                "gradient_booster.gbtree.",
                "model",
            )?;
            let w = get(gb, "gradient_booster.", "weight_drop")?
                .to_f32_vec()
                .ok_or("dart 'weight_drop' is not an array of numbers")?;
            Booster::Trees(trees(inner, Some(w), num_features, num_outputs)?)
        }
        "gblinear" => {
            let w = get(
                get(gb, "gradient_booster.", "model")?,
                "gradient_booster.model.",
                "weights",
            )?
            .to_f32_vec()
            .ok_or("gblinear 'weights' is not an array of numbers")?;
            Booster::Linear(Linear::new(w, num_features, num_outputs)?)
        }
        other => {
            return Err(format!(
                "booster '{other}' is not supported (gbtree, dart, gblinear)"
            ))
        }
    };

    let best_iteration = learner
        .get("attributes")
        .and_then(|a| a.get("best_iteration"))
        .and_then(|v| match v {
            Value::Str(s) => s.trim().parse::<u64>().ok(),
            other => other.as_i64().and_then(|i| u64::try_from(i).ok()),
        });

    Ok(Parsed {
        version,
        num_features,
        num_outputs,
        objective,
        base_margins,
        booster_name,
        booster,
        feature_names: strings(learner.get("feature_names")),
        feature_types: strings(learner.get("feature_types")),
        best_iteration,
    })
}

fn trees(
    model: &Value,
    weights: Option<Vec<f32>>,
    num_features: usize,
    num_outputs: usize,
) -> Result<Forest, String> {
    let trees = get(model, "gbtree.model.", "trees")?
        .as_array()
        .ok_or("'trees' is not an array")?;
    let tree_info = match model.get("tree_info") {
        Some(v) => v
            .to_i64_vec()
            .ok_or("'tree_info' is not an array of integers")?,
        None if trees.is_empty() => Vec::new(),
        None => return Err("missing field 'tree_info'".into()),
    };
    Forest::build(ForestSpec {
        trees,
        tree_info,
        weights,
        num_features,
        num_outputs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_score_forms() {
        assert_eq!(base_scores(&Value::Str("5E-1".into())).unwrap(), vec![0.5]);
        assert_eq!(
            base_scores(&Value::Str("[1E0,-2.5E-1]".into())).unwrap(),
            vec![1.0, -0.25]
        );
        assert!(base_scores(&Value::Str("[]".into())).is_err());
        assert!(base_scores(&Value::Str("abc".into())).is_err());
    }
}

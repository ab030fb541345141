//! `TreeModel`: decision trees with PMML's missing value strategies
//! (`none`, `nullPrediction`, `lastPrediction`, `defaultChild`) and
//! no-true-child strategies, walked without recursion.

use std::sync::Arc;

use roxmltree::Node;

use super::{class_index, fr, MiningFunction, Model, Outcome, Prediction, TargetInfo};
use crate::predicate::{self, Pred};
use crate::program::{Compiler, Ctx, EvalResult};
use crate::value::parse_f64;
use crate::xml::{self, attr, children, err, LoadResult};

#[derive(Debug, Clone, Copy, PartialEq)]
enum MissingStrategy {
    None,
    NullPrediction,
    LastPrediction,
    DefaultChild,
}

#[derive(Debug)]
enum Score {
    Num(f64),
    Class(usize),
}

/// A node's class distribution; `Err` when its counts sum to zero.
type Distribution = Result<Vec<(usize, f64)>, ()>;

#[derive(Debug)]
struct TreeNode {
    pred: Pred,
    score: Option<Score>,
    probs: Option<Distribution>,
    children: Vec<usize>,
    default_child: Option<usize>,
    id: Option<Arc<str>>,
}

/// A compiled tree.
#[derive(Debug)]
pub struct Tree {
    nodes: Vec<TreeNode>,
    missing: MissingStrategy,
    return_last: bool,
}

/// Compiles a `<TreeModel>`.
pub fn compile(
    c: &mut Compiler,
    node: Node,
    function: MiningFunction,
    target: &TargetInfo,
    float: bool,
) -> LoadResult<Tree> {
    let missing = match attr(node, "missingValueStrategy").unwrap_or("none") {
        "none" => MissingStrategy::None,
        "nullPrediction" => MissingStrategy::NullPrediction,
        "lastPrediction" => MissingStrategy::LastPrediction,
        "defaultChild" => MissingStrategy::DefaultChild,
        o => {
            return err(
                node,
                format!("missingValueStrategy '{o}' is not supported (supported: none, nullPrediction, lastPrediction, defaultChild)"),
            )
        }
    };
    let return_last = match attr(node, "noTrueChildStrategy").unwrap_or("returnNullPrediction") {
        "returnNullPrediction" => false,
        "returnLastPrediction" => true,
        o => return err(node, format!("unknown noTrueChildStrategy '{o}'")),
    };
    let root = xml::req_child(node, "Node")?;
    let mut tree = Tree {
        nodes: Vec::new(),
        missing,
        return_last,
    };
    // Iterative pre-order walk: (element, slot in the parent's child list).
    let mut stack: Vec<(Node, Option<(usize, usize)>)> = vec![(root, None)];
    let mut default_ids: Vec<(usize, String)> = Vec::new();
    while let Some((n, parent)) = stack.pop() {
        let idx = tree.nodes.len();
        if let Some((p, pos)) = parent {
            tree.nodes[p].children[pos] = idx;
        }
        if xml::child(n, "Regression").is_some() || xml::child(n, "DecisionTree").is_some() {
            return err(n, "embedded models in tree nodes are not supported");
        }
        let score = match attr(n, "score") {
            None => None,
            Some(s) => Some(match function {
                MiningFunction::Regression => Score::Num(fr(
                    parse_f64(s)
                        .ok_or_else(|| format!("{}: score '{s}' is not a number", xml::at(n)))?,
                    float,
                )),
                MiningFunction::Classification => Score::Class(class_index(c, target, n, s)?),
            }),
        };
        let probs = if function == MiningFunction::Classification {
            distribution(c, target, n)?
        } else {
            None
        };
        let kids: Vec<Node> = children(n, "Node").collect();
        if let Some(d) = attr(n, "defaultChild") {
            default_ids.push((idx, d.to_string()));
        }
        tree.nodes.push(TreeNode {
            pred: predicate::compile_child(c, n)?,
            score,
            probs,
            children: vec![usize::MAX; kids.len()],
            default_child: None,
            id: attr(n, "id").map(Arc::from),
        });
        for (pos, k) in kids.iter().enumerate().rev() {
            stack.push((*k, Some((idx, pos))));
        }
    }
    for (idx, id) in default_ids {
        let found = tree.nodes[idx]
            .children
            .iter()
            .copied()
            .find(|&ch| tree.nodes[ch].id.as_deref() == Some(id.as_str()));
        match found {
            Some(ch) => tree.nodes[idx].default_child = Some(ch),
            None => {
                return Err(format!(
                    "TreeModel: defaultChild '{id}' is not a child of its node"
                ))
            }
        }
    }
    Ok(tree)
}

/// The node's ScoreDistribution as probabilities (JPMML: `probability`
/// attributes when the first has one, else record counts; normalised
/// when they do not sum to 1). `Err` when they sum to zero.
fn distribution(
    c: &mut Compiler,
    target: &TargetInfo,
    n: Node,
) -> LoadResult<Option<Distribution>> {
    let sds: Vec<Node> = children(n, "ScoreDistribution").collect();
    if sds.is_empty() {
        return Ok(None);
    }
    let use_prob = sds[0].attribute("probability").is_some();
    let mut out = Vec::with_capacity(sds.len());
    let mut sum = 0.0;
    for sd in sds {
        let k = class_index(c, target, sd, xml::req_attr(sd, "value")?)?;
        let v = if use_prob {
            xml::req_f64(sd, "probability")?
        } else {
            xml::req_f64(sd, "recordCount")?
        };
        sum += v;
        out.push((k, v));
    }
    if sum == 0.0 {
        return Ok(Some(Err(())));
    }
    if sum != 1.0 {
        for (_, v) in &mut out {
            *v /= sum;
        }
    }
    Ok(Some(Ok(out)))
}

impl Tree {
    fn walk(&self, ctx: &mut Ctx) -> EvalResult<Option<usize>> {
        let Some(root) = self.nodes.first() else {
            return Ok(None);
        };
        if predicate::eval(&root.pred, ctx)? != Some(true) {
            return Ok(None);
        }
        let mut node = 0usize;
        let mut last: usize;
        'outer: loop {
            let n = &self.nodes[node];
            if n.children.is_empty() {
                return Ok(Some(node));
            }
            last = node;
            for &ch in &n.children {
                match predicate::eval(&self.nodes[ch].pred, ctx)? {
                    Some(true) => {
                        node = ch;
                        continue 'outer;
                    }
                    Some(false) => {}
                    None => match self.missing {
                        MissingStrategy::None => {}
                        MissingStrategy::NullPrediction => return Ok(None),
                        MissingStrategy::LastPrediction => return Ok(Some(last)),
                        MissingStrategy::DefaultChild => match n.default_child {
                            Some(d) => {
                                node = d;
                                continue 'outer;
                            }
                            None => {
                                return Err(format!(
                                    "TreeModel: a value is missing and node {} has no defaultChild",
                                    n.id.as_deref().unwrap_or("?")
                                ))
                            }
                        },
                    },
                }
            }
            return Ok(if self.return_last && self.nodes[last].score.is_some() {
                Some(last)
            } else {
                None
            });
        }
    }

    /// Evaluates the tree.
    pub fn evaluate(&self, model: &Model, ctx: &mut Ctx) -> EvalResult<Outcome> {
        let Some(idx) = self.walk(ctx)? else {
            return Ok(Outcome::missing());
        };
        let n = &self.nodes[idx];
        let pred = match (&n.score, model.function) {
            (Some(Score::Num(v)), _) => model.target.finish(*v, model.float),
            (Some(Score::Class(k)), _) => match &n.probs {
                Some(Err(())) => return Err("TreeModel: a ScoreDistribution sums to zero".into()),
                Some(Ok(p)) => Prediction::Class {
                    label: *k,
                    probs: Some(p.clone()),
                },
                None => Prediction::Class {
                    label: *k,
                    probs: None,
                },
            },
            (None, MiningFunction::Classification) => match &n.probs {
                Some(Ok(p)) => super::class_prediction(p.clone()),
                _ => Prediction::Missing,
            },
            (None, MiningFunction::Regression) => Prediction::Missing,
        };
        Ok(Outcome {
            pred,
            entity: n.id.clone(),
            reasons: Vec::new(),
        })
    }
}

//! PMML predicates (`True`, `False`, `SimplePredicate`, `CompoundPredicate`,
//! `SimpleSetPredicate`) with PMML's three-valued logic: a comparison with
//! a missing value is *unknown* (`None`).

use std::cmp::Ordering;

use roxmltree::Node;

use crate::program::{Compiler, Ctx, EvalResult, SlotId};
use crate::value::Literal;
use crate::xml::{self, at, children, elements, err, LoadResult};

/// The names of the predicate elements.
pub const PREDICATES: [&str; 5] = [
    "True",
    "False",
    "SimplePredicate",
    "CompoundPredicate",
    "SimpleSetPredicate",
];

/// A `SimplePredicate` operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum SimpleOp {
    Equal,
    NotEqual,
    LessThan,
    LessOrEqual,
    GreaterThan,
    GreaterOrEqual,
    IsMissing,
    IsNotMissing,
}

/// A `CompoundPredicate` operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum BoolOp {
    And,
    Or,
    Xor,
    Surrogate,
}

/// A compiled predicate.
#[derive(Debug)]
pub enum Pred {
    /// Always true.
    True,
    /// Always false.
    False,
    /// A comparison of a field with a literal (read in the field's type).
    Simple {
        /// The field.
        slot: SlotId,
        /// The operator.
        op: SimpleOp,
        /// The literal (absent for isMissing/isNotMissing).
        lit: Option<Literal>,
    },
    /// A combination of predicates.
    Compound {
        /// The operator.
        op: BoolOp,
        /// The operands.
        children: Vec<Pred>,
    },
    /// Set membership.
    Set {
        /// The field.
        slot: SlotId,
        /// isIn (true) or isNotIn (false).
        is_in: bool,
        /// The set's elements.
        values: Vec<Literal>,
    },
}

/// The predicate child of `node` (a Node, Segment, Attribute…).
pub fn predicate_child<'a, 'i>(node: Node<'a, 'i>) -> LoadResult<Node<'a, 'i>> {
    elements(node)
        .find(|c| PREDICATES.contains(&c.tag_name().name()))
        .ok_or_else(|| format!("{}: no predicate inside", at(node)))
}

/// Compiles a predicate element.
pub fn compile(c: &Compiler, node: Node) -> LoadResult<Pred> {
    Ok(match node.tag_name().name() {
        "True" => Pred::True,
        "False" => Pred::False,
        "SimplePredicate" => {
            let field = xml::req_attr(node, "field")?;
            let op = match xml::req_attr(node, "operator")? {
                "equal" => SimpleOp::Equal,
                "notEqual" => SimpleOp::NotEqual,
                "lessThan" => SimpleOp::LessThan,
                "lessOrEqual" => SimpleOp::LessOrEqual,
                "greaterThan" => SimpleOp::GreaterThan,
                "greaterOrEqual" => SimpleOp::GreaterOrEqual,
                "isMissing" => SimpleOp::IsMissing,
                "isNotMissing" => SimpleOp::IsNotMissing,
                other => return err(node, format!("unknown operator '{other}'")),
            };
            let lit = match op {
                SimpleOp::IsMissing | SimpleOp::IsNotMissing => None,
                _ => Some(Literal::new(xml::req_attr(node, "value")?)),
            };
            Pred::Simple {
                slot: c.resolve(node, field)?,
                op,
                lit,
            }
        }
        "CompoundPredicate" => {
            let op = match xml::req_attr(node, "booleanOperator")? {
                "and" => BoolOp::And,
                "or" => BoolOp::Or,
                "xor" => BoolOp::Xor,
                "surrogate" => BoolOp::Surrogate,
                other => return err(node, format!("unknown booleanOperator '{other}'")),
            };
            let children = elements(node)
                .filter(|e| PREDICATES.contains(&e.tag_name().name()))
                .map(|e| compile(c, e))
                .collect::<LoadResult<Vec<_>>>()?;
            if children.len() < 2 {
                return err(node, "a CompoundPredicate needs at least two predicates");
            }
            Pred::Compound { op, children }
        }
        "SimpleSetPredicate" => {
            let field = xml::req_attr(node, "field")?;
            let is_in = match xml::req_attr(node, "booleanOperator")? {
                "isIn" => true,
                "isNotIn" => false,
                other => return err(node, format!("unknown booleanOperator '{other}'")),
            };
            let array = xml::req_child(node, "Array")?;
            let values = xml::array_tokens(array.text().unwrap_or(""))
                .iter()
                .map(|t| Literal::new(t))
                .collect();
            Pred::Set {
                slot: c.resolve(node, field)?,
                is_in,
                values,
            }
        }
        other => {
            return err(
                node,
                format!(
                    "predicate <{other}> is not supported (supported: {})",
                    PREDICATES.join(", ")
                ),
            )
        }
    })
}

/// Compiles the predicate inside `container`.
pub fn compile_child(c: &Compiler, container: Node) -> LoadResult<Pred> {
    compile(c, predicate_child(container)?)
}

/// Evaluates a predicate: `Some(true)`, `Some(false)` or unknown (`None`).
pub fn eval(p: &Pred, ctx: &mut Ctx) -> EvalResult<Option<bool>> {
    Ok(match p {
        Pred::True => Some(true),
        Pred::False => Some(false),
        Pred::Simple { slot, op, lit } => {
            let v = ctx.get(*slot)?;
            match op {
                SimpleOp::IsMissing => Some(v.is_missing()),
                SimpleOp::IsNotMissing => Some(!v.is_missing()),
                _ => {
                    let Some(lit) = lit else { return Ok(None) };
                    lit.compare(&v).map(|o| match op {
                        SimpleOp::Equal => o == Ordering::Equal,
                        SimpleOp::NotEqual => o != Ordering::Equal,
                        SimpleOp::LessThan => o == Ordering::Less,
                        SimpleOp::LessOrEqual => o != Ordering::Greater,
                        SimpleOp::GreaterThan => o == Ordering::Greater,
                        _ => o != Ordering::Less,
                    })
                }
            }
        }
        Pred::Set {
            slot,
            is_in,
            values,
        } => {
            let v = ctx.get(*slot)?;
            if v.is_missing() {
                None
            } else {
                let found = values.iter().any(|l| l.matches(&v));
                Some(found == *is_in)
            }
        }
        Pred::Compound { op, children } => {
            let mut unknown = false;
            match op {
                BoolOp::And => {
                    for ch in children {
                        match eval(ch, ctx)? {
                            Some(false) => return Ok(Some(false)),
                            None => unknown = true,
                            Some(true) => {}
                        }
                    }
                    (!unknown).then_some(true)
                }
                BoolOp::Or => {
                    for ch in children {
                        match eval(ch, ctx)? {
                            Some(true) => return Ok(Some(true)),
                            None => unknown = true,
                            Some(false) => {}
                        }
                    }
                    (!unknown).then_some(false)
                }
                BoolOp::Xor => {
                    let mut acc = false;
                    for ch in children {
                        match eval(ch, ctx)? {
                            Some(b) => acc ^= b,
                            None => return Ok(None),
                        }
                    }
                    Some(acc)
                }
                BoolOp::Surrogate => {
                    for ch in children {
                        if let Some(b) = eval(ch, ctx)? {
                            return Ok(Some(b));
                        }
                    }
                    None
                }
            }
        }
    })
}

/// Elements named `name` under `node` (re-exported for models).
pub fn named<'a, 'i: 'a>(
    node: Node<'a, 'i>,
    name: &'static str,
) -> impl Iterator<Item = Node<'a, 'i>> {
    children(node, name)
}

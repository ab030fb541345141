//! PMML expressions (`Constant`, `FieldRef`, `NormContinuous`,
//! `NormDiscrete`, `Discretize`, `MapValues`, `Apply` with the built-in
//! functions and `DefineFunction`s): compiled once, evaluated per row with
//! PMML's missing-value rules (JPMML's behaviour where PMML is silent).

use std::cmp::Ordering;

use roxmltree::Node;

use crate::program::{Compiler, Ctx, EvalResult, Interval, Outliers};
use crate::value::{java_round, parse_f64, DataType, Literal, Value};
use crate::xml::{self, at, attr, children, elements, err, LoadResult};

/// Names of the expression elements.
const EXPRESSIONS: [&str; 10] = [
    "Constant",
    "FieldRef",
    "NormContinuous",
    "NormDiscrete",
    "Discretize",
    "MapValues",
    "Apply",
    "TextIndex",
    "Aggregate",
    "Lag",
];

/// The expression child of a container element (`DerivedField`, …).
pub fn expression_child<'a, 'i>(node: Node<'a, 'i>) -> LoadResult<Node<'a, 'i>> {
    elements(node)
        .find(|c| EXPRESSIONS.contains(&c.tag_name().name()))
        .ok_or_else(|| format!("{}: no expression inside", at(node)))
}

/// A function called by `Apply`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Function {
    /// A built-in PMML function.
    Builtin(Builtin),
    /// A `DefineFunction`, by index.
    User(usize),
}

/// The built-in functions supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Builtin {
    Add,
    Sub,
    Mul,
    Div,
    Modulo,
    Min,
    Max,
    Sum,
    Avg,
    Product,
    Log10,
    Ln,
    Ln1p,
    Exp,
    Expm1,
    Sqrt,
    Abs,
    Pow,
    Threshold,
    Floor,
    Ceil,
    Round,
    Rint,
    IsMissing,
    IsNotMissing,
    Equal,
    NotEqual,
    LessThan,
    LessOrEqual,
    GreaterThan,
    GreaterOrEqual,
    And,
    Or,
    Not,
    IsIn,
    IsNotIn,
    If,
    Uppercase,
    Lowercase,
    Substring,
    TrimBlanks,
    Concat,
    StringLength,
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Atan2,
    Sinh,
    Cosh,
    Tanh,
    Hypot,
}

impl Builtin {
    /// Looks up a PMML function name.
    pub fn from_name(name: &str) -> Option<Self> {
        use Builtin::*;
        Some(match name {
            "+" => Add,
            "-" => Sub,
            "*" => Mul,
            "/" => Div,
            "modulo" => Modulo,
            "min" => Min,
            "max" => Max,
            "sum" => Sum,
            "avg" => Avg,
            "product" => Product,
            "log10" => Log10,
            "ln" => Ln,
            "ln1p" => Ln1p,
            "exp" => Exp,
            "expm1" => Expm1,
            "sqrt" => Sqrt,
            "abs" => Abs,
            "pow" => Pow,
            "threshold" => Threshold,
            "floor" => Floor,
            "ceil" => Ceil,
            "round" => Round,
            "rint" => Rint,
            "isMissing" => IsMissing,
            "isNotMissing" => IsNotMissing,
            "equal" => Equal,
            "notEqual" => NotEqual,
            "lessThan" => LessThan,
            "lessOrEqual" => LessOrEqual,
            "greaterThan" => GreaterThan,
            "greaterOrEqual" => GreaterOrEqual,
            "and" => And,
            "or" => Or,
            "not" => Not,
            "isIn" => IsIn,
            "isNotIn" => IsNotIn,
            "if" => If,
            "uppercase" => Uppercase,
            "lowercase" => Lowercase,
            "substring" => Substring,
            "trimBlanks" => TrimBlanks,
            "concat" => Concat,
            "stringLength" => StringLength,
            "sin" => Sin,
            "cos" => Cos,
            "tan" => Tan,
            "asin" => Asin,
            "acos" => Acos,
            "atan" => Atan,
            "atan2" => Atan2,
            "sinh" => Sinh,
            "cosh" => Cosh,
            "tanh" => Tanh,
            "hypot" => Hypot,
            _ => return None,
        })
    }

    /// Functions that see missing arguments instead of returning missing.
    fn missing_tolerant(self) -> bool {
        use Builtin::*;
        matches!(
            self,
            IsMissing | IsNotMissing | Min | Max | Sum | Avg | Product | Concat | If
        )
    }
}

/// A compiled expression.
#[derive(Debug)]
pub enum Expr {
    /// A constant.
    Const(Value),
    /// A field reference.
    Field {
        /// The slot.
        slot: usize,
        /// Value used when the field is missing.
        map_missing_to: Option<Value>,
    },
    /// A `DefineFunction` parameter.
    Param {
        /// Parameter index.
        index: usize,
        /// Value used when the parameter is missing.
        map_missing_to: Option<Value>,
    },
    /// `NormContinuous`: piecewise-linear normalisation.
    NormContinuous {
        /// The field.
        arg: Box<Expr>,
        /// (orig, norm) points, ascending in orig.
        points: Vec<(f64, f64)>,
        /// Outlier treatment.
        outliers: Outliers,
        /// Value for a missing field.
        map_missing_to: Option<f64>,
    },
    /// `NormDiscrete`: 1 when the field equals the value, else 0.
    NormDiscrete {
        /// The field.
        arg: Box<Expr>,
        /// The value.
        value: Literal,
        /// Value for a missing field.
        map_missing_to: Option<f64>,
    },
    /// `Discretize`: the bin whose interval holds the value.
    Discretize {
        /// The field.
        arg: Box<Expr>,
        /// Bins in document order.
        bins: Vec<(Interval, Value)>,
        /// Value for a missing field.
        map_missing_to: Option<Value>,
        /// Value when no bin matches.
        default: Option<Value>,
    },
    /// `MapValues`: a lookup in an inline table.
    MapValues {
        /// The input fields.
        args: Vec<Expr>,
        /// Rows: input cells (one per arg) and the output cell.
        rows: Vec<(Vec<Literal>, Value)>,
        /// Value for a missing field.
        map_missing_to: Option<Value>,
        /// Value when no row matches.
        default: Option<Value>,
    },
    /// `Apply`: a function call.
    Apply {
        /// The function.
        func: Function,
        /// Arguments.
        args: Vec<Expr>,
        /// Value when an argument is missing.
        map_missing_to: Option<Value>,
        /// Value when the result is missing.
        default: Option<Value>,
    },
}

/// Parses an optional attribute as a value: a number when it reads as
/// one, else a string (how JPMML treats `mapMissingTo` and friends).
fn loose_value(node: Node, name: &str) -> Option<Value> {
    attr(node, name).map(loose_text)
}

fn loose_text(s: &str) -> Value {
    if let Ok(i) = s.trim().parse::<i64>() {
        Value::Int(i)
    } else if let Some(d) = parse_f64(s) {
        Value::Double(d)
    } else {
        Value::str(s)
    }
}

fn typed_value(node: Node, name: &str, dt: Option<DataType>) -> LoadResult<Option<Value>> {
    match (attr(node, name), dt) {
        (None, _) => Ok(None),
        (Some(s), Some(dt)) => Value::parse_as(dt, s)
            .map(Some)
            .map_err(|e| format!("{}: {name}: {e}", at(node))),
        (Some(s), None) => Ok(Some(Value::str(s))),
    }
}

/// Compiles a reference to field `name` (a parameter inside a function).
pub fn field_ref(
    c: &Compiler,
    node: Node,
    name: &str,
    map_missing_to: Option<Value>,
) -> LoadResult<Expr> {
    if let Some(params) = &c.params {
        return match params.iter().position(|p| p == name) {
            Some(index) => Ok(Expr::Param {
                index,
                map_missing_to,
            }),
            None => err(
                node,
                format!("field '{name}' is not a parameter of the enclosing DefineFunction"),
            ),
        };
    }
    Ok(Expr::Field {
        slot: c.resolve(node, name)?,
        map_missing_to,
    })
}

/// Compiles one expression element.
pub fn compile(c: &mut Compiler, node: Node) -> LoadResult<Expr> {
    let name = node.tag_name().name();
    match name {
        "Constant" => {
            if xml::bool_or(node, "missing", false)? {
                return Ok(Expr::Const(Value::Missing));
            }
            let text = node.text().unwrap_or("");
            let v = match xml::data_type(node)? {
                Some(DataType::String) => Value::str(text),
                Some(_) if text.trim().is_empty() => Value::Missing,
                Some(dt) => Value::parse_as(dt, text).map_err(|e| format!("{}: {e}", at(node)))?,
                None if text.is_empty() => Value::str(""),
                None => loose_text(text),
            };
            Ok(Expr::Const(v))
        }
        "FieldRef" => {
            let f = xml::req_attr(node, "field")?;
            field_ref(c, node, f, loose_value(node, "mapMissingTo"))
        }
        "NormContinuous" => {
            let f = xml::req_attr(node, "field")?;
            let arg = Box::new(field_ref(c, node, f, None)?);
            let mut points = Vec::new();
            for ln in children(node, "LinearNorm") {
                points.push((xml::req_f64(ln, "orig")?, xml::req_f64(ln, "norm")?));
            }
            if points.len() < 2 {
                return err(node, "needs at least two LinearNorm elements");
            }
            if points.windows(2).any(|w| w[0].0 > w[1].0) {
                return err(node, "LinearNorm elements must be sorted by orig");
            }
            let outliers = match attr(node, "outliers").unwrap_or("asIs") {
                "asIs" => Outliers::AsIs,
                "asMissingValues" => Outliers::AsMissing,
                "asExtremeValues" => Outliers::AsExtreme,
                o => return err(node, format!("unknown outliers '{o}'")),
            };
            Ok(Expr::NormContinuous {
                arg,
                points,
                outliers,
                map_missing_to: xml::attr_f64(node, "mapMissingTo")?,
            })
        }
        "NormDiscrete" => {
            let f = xml::req_attr(node, "field")?;
            if let Some(m) = attr(node, "method") {
                if m != "indicator" {
                    return err(node, format!("method '{m}' is not supported (only indicator)"));
                }
            }
            Ok(Expr::NormDiscrete {
                arg: Box::new(field_ref(c, node, f, None)?),
                value: Literal::new(xml::req_attr(node, "value")?),
                map_missing_to: xml::attr_f64(node, "mapMissingTo")?,
            })
        }
        "Discretize" => {
            let f = xml::req_attr(node, "field")?;
            let dt = xml::data_type(node)?.unwrap_or(DataType::String);
            let mut bins = Vec::new();
            for b in children(node, "DiscretizeBin") {
                let iv = Interval::parse(xml::req_child(b, "Interval")?)?;
                let v = Value::parse_as(dt, xml::req_attr(b, "binValue")?)
                    .map_err(|e| format!("{}: {e}", at(b)))?;
                bins.push((iv, v));
            }
            Ok(Expr::Discretize {
                arg: Box::new(field_ref(c, node, f, None)?),
                bins,
                map_missing_to: typed_value(node, "mapMissingTo", Some(dt))?,
                default: typed_value(node, "defaultValue", Some(dt))?,
            })
        }
        "MapValues" => {
            let dt = xml::data_type(node)?.unwrap_or(DataType::String);
            let out_col = xml::req_attr(node, "outputColumn")?;
            let mut args = Vec::new();
            let mut cols = Vec::new();
            for p in children(node, "FieldColumnPair") {
                let f = xml::req_attr(p, "field")?;
                args.push(field_ref(c, p, f, None)?);
                cols.push(xml::req_attr(p, "column")?);
            }
            let mut rows = Vec::new();
            if let Some(table) = xml::child(node, "InlineTable") {
                for row in children(table, "row") {
                    let cell = |col: &str| {
                        elements(row)
                            .find(|e| e.tag_name().name() == col)
                            .map(|e| e.text().unwrap_or("").to_string())
                    };
                    let mut ins = Vec::new();
                    let mut complete = true;
                    for col in &cols {
                        match cell(col) {
                            Some(t) => ins.push(Literal::new(&t)),
                            None => complete = false,
                        }
                    }
                    let Some(out) = cell(out_col) else { continue };
                    if complete {
                        let v = Value::parse_as(dt, &out).map_err(|e| format!("{}: {e}", at(row)))?;
                        rows.push((ins, v));
                    }
                }
            } else if xml::child(node, "TableLocator").is_some() {
                return err(node, "TableLocator is not supported (use an InlineTable)");
            }
            Ok(Expr::MapValues {
                args,
                rows,
                map_missing_to: typed_value(node, "mapMissingTo", Some(dt))?,
                default: typed_value(node, "defaultValue", Some(dt))?,
            })
        }
        "Apply" => {
            let fname = xml::req_attr(node, "function")?;
            let func = match c.function(fname) {
                Some(i) => Function::User(i),
                None => match Builtin::from_name(fname) {
                    Some(b) => Function::Builtin(b),
                    None => {
                        return err(
                            node,
                            format!(
                                "function '{fname}' is not supported (built-ins: arithmetic, min/max/sum/avg/product, \
                                 log10/ln/exp/sqrt/abs/pow/threshold/floor/ceil/round, comparisons, and/or/not, \
                                 isIn/isNotIn, if, isMissing/isNotMissing, string functions; or a DefineFunction)"
                            ),
                        )
                    }
                },
            };
            if let Some(t) = attr(node, "invalidValueTreatment") {
                if t != "returnInvalid" && t != "asIs" && t != "asMissing" {
                    return err(node, format!("invalidValueTreatment '{t}' is not supported"));
                }
            }
            let mut args = Vec::new();
            for e in elements(node) {
                if EXPRESSIONS.contains(&e.tag_name().name()) {
                    args.push(compile(c, e)?);
                } else if e.tag_name().name() != "Extension" {
                    return err(e, "unexpected element inside Apply");
                }
            }
            check_arity(node, func, args.len())?;
            Ok(Expr::Apply {
                func,
                args,
                map_missing_to: loose_value(node, "mapMissingTo"),
                default: loose_value(node, "defaultValue"),
            })
        }
        other => err(
            node,
            format!("expression <{other}> is not supported (supported: Constant, FieldRef, NormContinuous, NormDiscrete, Discretize, MapValues, Apply)"),
        ),
    }
}

fn check_arity(node: Node, func: Function, n: usize) -> LoadResult<()> {
    use Builtin::*;
    let Function::Builtin(b) = func else {
        return Ok(());
    };
    let ok = match b {
        Add | Sub | Mul | Div | Modulo | Pow | Threshold | Equal | NotEqual | LessThan
        | LessOrEqual | GreaterThan | GreaterOrEqual | Atan2 | Hypot => n == 2,
        Log10 | Ln | Ln1p | Exp | Expm1 | Sqrt | Abs | Floor | Ceil | Round | Rint | IsMissing
        | IsNotMissing | Not | Uppercase | Lowercase | TrimBlanks | StringLength | Sin | Cos
        | Tan | Asin | Acos | Atan | Sinh | Cosh | Tanh => n == 1,
        And | Or => n >= 2,
        Min | Max | Sum | Avg | Product | Concat => n >= 1,
        IsIn | IsNotIn => n >= 2,
        If => n == 2 || n == 3,
        Substring => n == 3,
    };
    if ok {
        Ok(())
    } else {
        err(node, format!("wrong number of arguments ({n}) for {b:?}"))
    }
}

/// Common numeric type of two values (PMML's widening rules).
fn common_type(a: &Value, b: &Value) -> DataType {
    match (a.data_type(), b.data_type()) {
        (Some(DataType::Integer), Some(DataType::Integer)) => DataType::Integer,
        (Some(DataType::Float), Some(DataType::Float | DataType::Integer))
        | (Some(DataType::Integer), Some(DataType::Float)) => DataType::Float,
        _ => DataType::Double,
    }
}

fn num(v: &Value, what: &str) -> EvalResult<f64> {
    v.as_f64()
        .ok_or_else(|| format!("{what}: '{}' is not a number", v.to_text()))
}

/// Evaluates an expression; `params` are the enclosing function's arguments.
/// Every nested evaluation counts towards the context's depth limit, so
/// hostile nesting fails the request instead of exhausting the stack.
pub fn eval(e: &Expr, ctx: &mut Ctx, params: &[Value]) -> EvalResult<Value> {
    if matches!(e, Expr::Const(_) | Expr::Field { .. } | Expr::Param { .. }) {
        return eval_inner(e, ctx, params);
    }
    ctx.enter()?;
    let r = eval_inner(e, ctx, params);
    ctx.depth -= 1;
    r
}

fn eval_inner(e: &Expr, ctx: &mut Ctx, params: &[Value]) -> EvalResult<Value> {
    match e {
        Expr::Const(v) => Ok(v.clone()),
        Expr::Field {
            slot,
            map_missing_to,
        } => {
            let v = ctx.get(*slot)?;
            Ok(match (v, map_missing_to) {
                (Value::Missing, Some(m)) => m.clone(),
                (v, _) => v,
            })
        }
        Expr::Param {
            index,
            map_missing_to,
        } => {
            let v = params.get(*index).cloned().unwrap_or(Value::Missing);
            Ok(match (v, map_missing_to) {
                (Value::Missing, Some(m)) => m.clone(),
                (v, _) => v,
            })
        }
        Expr::NormContinuous {
            arg,
            points,
            outliers,
            map_missing_to,
        } => {
            let v = eval(arg, ctx, params)?;
            if v.is_missing() {
                return Ok(map_missing_to.map_or(Value::Missing, Value::Double));
            }
            let x = num(&v, "NormContinuous")?;
            Ok(norm_continuous(points, *outliers, x).map_or(Value::Missing, Value::Double))
        }
        Expr::NormDiscrete {
            arg,
            value,
            map_missing_to,
        } => {
            let v = eval(arg, ctx, params)?;
            if v.is_missing() {
                return Ok(map_missing_to.map_or(Value::Missing, Value::Double));
            }
            Ok(Value::Double(if value.matches(&v) { 1.0 } else { 0.0 }))
        }
        Expr::Discretize {
            arg,
            bins,
            map_missing_to,
            default,
        } => {
            let v = eval(arg, ctx, params)?;
            if v.is_missing() {
                return Ok(map_missing_to.clone().unwrap_or(Value::Missing));
            }
            let x = num(&v, "Discretize")?;
            Ok(bins
                .iter()
                .find(|(iv, _)| iv.contains(x))
                .map(|(_, b)| b.clone())
                .or_else(|| default.clone())
                .unwrap_or(Value::Missing))
        }
        Expr::MapValues {
            args,
            rows,
            map_missing_to,
            default,
        } => {
            let mut vals = Vec::with_capacity(args.len());
            for a in args {
                let v = eval(a, ctx, params)?;
                if v.is_missing() {
                    return Ok(map_missing_to.clone().unwrap_or(Value::Missing));
                }
                vals.push(v);
            }
            let hit = rows
                .iter()
                .find(|(cells, _)| cells.iter().zip(&vals).all(|(c, v)| c.matches(v)));
            Ok(match hit {
                Some((_, out)) => out.clone(),
                None => default.clone().unwrap_or(Value::Missing),
            })
        }
        Expr::Apply {
            func,
            args,
            map_missing_to,
            default,
        } => {
            let r = apply(*func, args, map_missing_to, ctx, params)?;
            Ok(match (r, default) {
                (Value::Missing, Some(d)) => d.clone(),
                (r, _) => r,
            })
        }
    }
}

/// JPMML's piecewise-linear normalisation (None: missing).
pub fn norm_continuous(points: &[(f64, f64)], outliers: Outliers, x: f64) -> Option<f64> {
    let n = points.len();
    let idx = points
        .windows(2)
        .position(|w| x >= w[0].0 && x <= w[1].0)
        .or_else(|| (points.last().is_some_and(|p| x >= p.0)).then_some(n - 1));
    let (s, e) = match idx {
        Some(i) if i < n - 1 => (points[i], points[i + 1]),
        _ => match outliers {
            Outliers::AsMissing => return None,
            Outliers::AsExtreme => {
                return Some(if idx.is_none() {
                    points[0].1
                } else {
                    points[n - 1].1
                })
            }
            Outliers::AsIs => {
                if idx.is_none() {
                    (points[0], points[1])
                } else {
                    (points[n - 2], points[n - 1])
                }
            }
        },
    };
    Some(s.1 + ((x - s.0) / (e.0 - s.0)) * (e.1 - s.1))
}

/// The inverse of [`norm_continuous`] (neural network outputs).
pub fn denorm_continuous(points: &[(f64, f64)], y: f64) -> Option<f64> {
    let w = points
        .windows(2)
        .find(|w| (y >= w[0].1 && y <= w[1].1) || (y <= w[0].1 && y >= w[1].1))?;
    let (s, e) = (w[0], w[1]);
    Some(((y - s.1) / (e.1 - s.1)) * (e.0 - s.0) + s.0)
}

fn apply(
    func: Function,
    args: &[Expr],
    map_missing_to: &Option<Value>,
    ctx: &mut Ctx,
    params: &[Value],
) -> EvalResult<Value> {
    use Builtin::*;
    // `if` evaluates only the branch it takes.
    if func == Function::Builtin(If) {
        let flag = eval(&args[0], ctx, params)?;
        let Some(flag) = flag.as_bool() else {
            return Ok(map_missing_to.clone().unwrap_or(Value::Missing));
        };
        let branch = if flag { args.get(1) } else { args.get(2) };
        let v = match branch {
            Some(b) => eval(b, ctx, params)?,
            None => Value::Missing,
        };
        return Ok(match (v, map_missing_to) {
            (Value::Missing, Some(m)) => m.clone(),
            (v, _) => v,
        });
    }
    let mut vals = Vec::with_capacity(args.len());
    for a in args {
        let v = eval(a, ctx, params)?;
        if v.is_missing() {
            if let Some(m) = map_missing_to {
                return Ok(m.clone());
            }
        }
        vals.push(v);
    }
    let b = match func {
        Function::User(_) => return ctx.call(&func, vals),
        Function::Builtin(b) => b,
    };
    if !b.missing_tolerant() && vals.iter().any(Value::is_missing) {
        return Ok(Value::Missing);
    }
    builtin(b, vals)
}

fn builtin(b: Builtin, vals: Vec<Value>) -> EvalResult<Value> {
    use Builtin::*;
    let name = format!("{b:?}");
    let arg = |i: usize| vals.get(i).cloned().unwrap_or(Value::Missing);
    let n = |i: usize| num(&vals.get(i).cloned().unwrap_or(Value::Missing), &name);
    let boolean = |b: bool| Value::Bool(b);
    let double = |x: f64| -> EvalResult<Value> { Ok(Value::Double(x)) };
    Ok(match b {
        Add | Sub | Mul | Div | Modulo => {
            let (a, c) = (arg(0), arg(1));
            let dt = common_type(&a, &c);
            let (x, y) = (n(0)?, n(1)?);
            match (b, dt) {
                (Div, DataType::Integer) => {
                    let (x, y) = (x as i64, y as i64);
                    Value::Int(
                        x.checked_div(y)
                            .ok_or("integer division by zero or overflow")?,
                    )
                }
                (Modulo, DataType::Integer) => {
                    let (x, y) = (x as i64, y as i64);
                    let r = x.checked_rem(y).ok_or("modulo by zero or overflow")?;
                    // Java's floorMod: the result has the divisor's sign.
                    Value::Int(if r != 0 && ((r < 0) != (y < 0)) {
                        r + y
                    } else {
                        r
                    })
                }
                _ => {
                    let r = match b {
                        Add => x + y,
                        Sub => x - y,
                        Mul => x * y,
                        Div => x / y,
                        _ => x - (x / y).floor() * y,
                    };
                    Value::number(dt, r)
                }
            }
        }
        Min | Max | Sum | Avg | Product => {
            let present: Vec<&Value> = vals.iter().filter(|v| !v.is_missing()).collect();
            if present.is_empty() {
                return Ok(Value::Missing);
            }
            let mut dt = present[0].data_type().unwrap_or(DataType::Double);
            let mut xs = Vec::with_capacity(present.len());
            for v in &present {
                dt = common_type(&Value::number(dt, 0.0), v);
                xs.push(num(v, &name)?);
            }
            let r = match b {
                Min => xs.iter().copied().fold(f64::INFINITY, f64::min),
                Max => xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                Sum => xs.iter().sum(),
                Product => xs.iter().product(),
                _ => xs.iter().sum::<f64>() / xs.len() as f64,
            };
            let dt = if b == Avg && dt == DataType::Integer {
                DataType::Double
            } else {
                dt
            };
            Value::number(dt, r)
        }
        Log10 => double(n(0)?.log10())?,
        Ln => double(n(0)?.ln())?,
        Ln1p => double(n(0)?.ln_1p())?,
        Exp => double(n(0)?.exp())?,
        Expm1 => double(n(0)?.exp_m1())?,
        Sqrt => double(n(0)?.sqrt())?,
        Sin => double(n(0)?.sin())?,
        Cos => double(n(0)?.cos())?,
        Tan => double(n(0)?.tan())?,
        Asin => double(n(0)?.asin())?,
        Acos => double(n(0)?.acos())?,
        Atan => double(n(0)?.atan())?,
        Sinh => double(n(0)?.sinh())?,
        Cosh => double(n(0)?.cosh())?,
        Tanh => double(n(0)?.tanh())?,
        Atan2 => double(n(0)?.atan2(n(1)?))?,
        Hypot => double(n(0)?.hypot(n(1)?))?,
        Abs => {
            let v = arg(0);
            Value::number(v.data_type().unwrap_or(DataType::Double), n(0)?.abs())
        }
        Rint => {
            let v = arg(0);
            Value::number(
                v.data_type().unwrap_or(DataType::Double),
                n(0)?.round_ties_even(),
            )
        }
        Pow => {
            let dt = common_type(&arg(0), &arg(1));
            Value::number(dt, n(0)?.powf(n(1)?))
        }
        Threshold => {
            let dt = common_type(&arg(0), &arg(1));
            Value::number(dt, if n(0)? > n(1)? { 1.0 } else { 0.0 })
        }
        Floor => int_result(n(0)?.floor())?,
        Ceil => int_result(n(0)?.ceil())?,
        Round => int_result(java_round(n(0)?))?,
        IsMissing => boolean(arg(0).is_missing()),
        IsNotMissing => boolean(!arg(0).is_missing()),
        Equal => boolean(arg(0).equals_value(&arg(1))),
        NotEqual => boolean(!arg(0).equals_value(&arg(1))),
        LessThan | LessOrEqual | GreaterThan | GreaterOrEqual => {
            let o = arg(0)
                .compare_value(&arg(1))
                .ok_or_else(|| format!("{name}: values cannot be compared"))?;
            boolean(match b {
                LessThan => o == Ordering::Less,
                LessOrEqual => o != Ordering::Greater,
                GreaterThan => o == Ordering::Greater,
                _ => o != Ordering::Less,
            })
        }
        And | Or => {
            let mut acc = b == And;
            for v in &vals {
                let x = v
                    .as_bool()
                    .ok_or_else(|| format!("{name}: not a boolean"))?;
                acc = if b == And { acc & x } else { acc | x };
            }
            boolean(acc)
        }
        Not => boolean(
            !arg(0)
                .as_bool()
                .ok_or_else(|| format!("{name}: not a boolean"))?,
        ),
        IsIn | IsNotIn => {
            let v = arg(0);
            let found = vals[1..].iter().any(|c| v.equals_value(c));
            boolean(if b == IsIn { found } else { !found })
        }
        Uppercase => Value::str(&arg(0).to_text().to_uppercase()),
        Lowercase => Value::str(&arg(0).to_text().to_lowercase()),
        TrimBlanks => Value::str(arg(0).to_text().trim()),
        StringLength => Value::Int(arg(0).to_text().chars().count() as i64),
        Concat => Value::str(
            &vals
                .iter()
                .filter(|v| !v.is_missing())
                .map(Value::to_text)
                .collect::<String>(),
        ),
        Substring => {
            let s = arg(0).to_text();
            let start = n(1)?;
            let len = n(2)?;
            if start < 1.0 || len < 0.0 {
                return Err(format!("substring: invalid start {start} or length {len}"));
            }
            Value::str(
                &s.chars()
                    .skip(start as usize - 1)
                    .take(len as usize)
                    .collect::<String>(),
            )
        }
        If => return Err("if is handled by apply".into()),
    })
}

fn int_result(x: f64) -> EvalResult<Value> {
    if x.is_finite() && x.abs() < 9.2e18 {
        Ok(Value::Int(x as i64))
    } else {
        Err(format!("{x} does not fit an integer"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norm_continuous_pieces() {
        let p = [(0.0, 0.0), (10.0, 1.0), (20.0, 3.0)];
        assert_eq!(norm_continuous(&p, Outliers::AsIs, 5.0), Some(0.5));
        assert_eq!(norm_continuous(&p, Outliers::AsIs, 15.0), Some(2.0));
        assert_eq!(norm_continuous(&p, Outliers::AsIs, 30.0), Some(5.0));
        assert_eq!(norm_continuous(&p, Outliers::AsIs, -10.0), Some(-1.0));
        assert_eq!(norm_continuous(&p, Outliers::AsExtreme, 30.0), Some(3.0));
        assert_eq!(norm_continuous(&p, Outliers::AsMissing, -1.0), None);
        assert_eq!(denorm_continuous(&p, 2.0), Some(15.0));
    }

    #[test]
    fn arithmetic_types() {
        let r = builtin(Builtin::Add, vec![Value::Int(1), Value::Int(2)]).unwrap();
        assert_eq!(r, Value::Int(3));
        let r = builtin(Builtin::Div, vec![Value::Int(7), Value::Int(2)]).unwrap();
        assert_eq!(r, Value::Int(3));
        let r = builtin(Builtin::Mul, vec![Value::Float(0.1), Value::Float(3.0)]).unwrap();
        assert_eq!(r, Value::Float((0.1f32 as f64 * 3.0) as f32));
        let r = builtin(
            Builtin::Avg,
            vec![Value::Int(1), Value::Missing, Value::Int(2)],
        )
        .unwrap();
        assert_eq!(r, Value::Double(1.5));
        let r = builtin(Builtin::Round, vec![Value::Double(-2.5)]).unwrap();
        assert_eq!(r, Value::Int(-2));
        let r = builtin(Builtin::Modulo, vec![Value::Int(-7), Value::Int(3)]).unwrap();
        assert_eq!(r, Value::Int(2));
    }
}

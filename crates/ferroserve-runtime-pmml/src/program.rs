//! The compiled form of a document's fields: every field a model can see
//! (data fields, derived fields, nested mining-schema views, output fields)
//! is a numbered slot; names are resolved to slots once, at load time, with
//! PMML's scoping (a nested model sees its parent's fields). Evaluation of a
//! row fills slots lazily, like JPMML's evaluation context.

use std::collections::HashMap;

use roxmltree::Node;

use crate::expr::{self, Expr, Function};
use crate::value::{DataType, Literal, OpType, Value};
use crate::xml::{self, at, attr, children, err, LoadResult};

/// Index of a slot.
pub type SlotId = usize;

/// Most nested derived-field and function evaluations in one row (guards
/// against cyclic definitions and deep recursion).
pub const MAX_EVAL_DEPTH: usize = 600;

/// An evaluation error (becomes an invalid-argument error for the request).
pub type EvalResult<T> = Result<T, String>;

/// How a slot gets its value.
#[derive(Debug)]
pub enum SlotKind {
    /// A data field: filled from the request before evaluation (missing
    /// when the request does not give it).
    Input,
    /// A derived field, computed on first use.
    Derived(Expr),
    /// A nested model's view of an outer field with its own missing-value
    /// replacement and outlier treatment.
    View {
        /// The outer slot.
        source: SlotId,
        /// The treatment applied.
        prep: FieldPrep,
    },
    /// Set by model evaluation (output fields); missing until set.
    External,
}

/// A named, typed field.
#[derive(Debug)]
pub struct Slot {
    /// Field name.
    pub name: String,
    /// Declared data type; values are converted to it.
    pub dtype: DataType,
    /// Declared optype.
    pub optype: OpType,
    /// How the value is found.
    pub kind: SlotKind,
}

/// What to do with an invalid input value.
#[derive(Debug, Clone)]
pub enum InvalidTreatment {
    /// Fail the request (PMML's default).
    ReturnInvalid,
    /// Use the value as it is.
    AsIs,
    /// Treat it as missing.
    AsMissing,
    /// Replace it.
    AsValue(Value),
}

/// Outlier treatment of a continuous field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outliers {
    /// Keep outliers.
    AsIs,
    /// Outliers become missing.
    AsMissing,
    /// Outliers are clamped to lowValue/highValue.
    AsExtreme,
}

/// A numeric interval with closures.
#[derive(Debug, Clone, Copy)]
pub struct Interval {
    /// Left margin (None: unbounded).
    pub left: Option<f64>,
    /// Right margin (None: unbounded).
    pub right: Option<f64>,
    /// Whether the left margin is included.
    pub left_closed: bool,
    /// Whether the right margin is included.
    pub right_closed: bool,
}

impl Interval {
    /// Parses an `<Interval>` element.
    pub fn parse(node: Node) -> LoadResult<Self> {
        let closure = xml::req_attr(node, "closure")?;
        let (left_closed, right_closed) = match closure {
            "openOpen" => (false, false),
            "openClosed" => (false, true),
            "closedOpen" => (true, false),
            "closedClosed" => (true, true),
            other => return err(node, format!("unknown closure '{other}'")),
        };
        Ok(Interval {
            left: xml::attr_f64(node, "leftMargin")?,
            right: xml::attr_f64(node, "rightMargin")?,
            left_closed,
            right_closed,
        })
    }

    /// True when `x` lies in the interval.
    pub fn contains(&self, x: f64) -> bool {
        let left_ok = match self.left {
            None => true,
            Some(l) => x > l || (self.left_closed && x == l),
        };
        let right_ok = match self.right {
            None => true,
            Some(r) => x < r || (self.right_closed && x == r),
        };
        left_ok && right_ok
    }
}

/// Input preparation of one field: type conversion, validity, missing and
/// invalid value treatment, outliers (PMML's MiningField semantics).
#[derive(Debug, Clone)]
pub struct FieldPrep {
    /// Field name (for messages).
    pub name: String,
    /// Field data type.
    pub dtype: DataType,
    /// Field optype.
    pub optype: OpType,
    /// Valid values of a categorical/ordinal field (empty: any).
    pub valid: Vec<Value>,
    /// Values declared invalid.
    pub invalid: Vec<Value>,
    /// Values that mean "missing".
    pub missing: Vec<Value>,
    /// Valid intervals of a continuous field (empty: any).
    pub intervals: Vec<Interval>,
    /// Whether validity is checked at all (top-level inputs only).
    pub check_validity: bool,
    /// Invalid value treatment.
    pub invalid_treatment: InvalidTreatment,
    /// Missing value replacement.
    pub replacement: Option<Value>,
    /// `missingValueTreatment="returnInvalid"`.
    pub missing_is_error: bool,
    /// Outlier treatment.
    pub outliers: Outliers,
    /// lowValue for outliers.
    pub low: Option<f64>,
    /// highValue for outliers.
    pub high: Option<f64>,
}

impl FieldPrep {
    /// Prepares a raw value.
    pub fn apply(&self, raw: Value) -> EvalResult<Value> {
        if raw.is_missing() || matches!(raw, Value::Double(d) if d.is_nan()) {
            return self.missing_value();
        }
        let v = match raw.cast(self.dtype) {
            Ok(v) => v,
            Err(_) if self.check_validity => return self.invalid_value(raw),
            Err(e) => return Err(format!("field '{}': {e}", self.name)),
        };
        if matches!(v, Value::Float(f) if f.is_nan()) {
            return self.missing_value();
        }
        if self.missing.iter().any(|m| m.equals_value(&v)) {
            return self.missing_value();
        }
        if self.check_validity && !self.is_valid(&v) {
            return self.invalid_value(v);
        }
        self.outlier(v)
    }

    fn is_valid(&self, v: &Value) -> bool {
        if self.invalid.iter().any(|m| m.equals_value(v)) {
            return false;
        }
        match self.optype {
            OpType::Continuous => {
                if !self.intervals.is_empty() {
                    let x = v.as_f64().unwrap_or(f64::NAN);
                    self.intervals.iter().any(|i| i.contains(x))
                        || self.valid.iter().any(|m| m.equals_value(v))
                } else {
                    self.valid.is_empty() || self.valid.iter().any(|m| m.equals_value(v))
                }
            }
            _ => self.valid.is_empty() || self.valid.iter().any(|m| m.equals_value(v)),
        }
    }

    fn missing_value(&self) -> EvalResult<Value> {
        if let Some(r) = &self.replacement {
            return Ok(r.clone());
        }
        if self.missing_is_error {
            return Err(format!(
                "field '{}' is missing and its MiningField says missingValueTreatment=returnInvalid",
                self.name
            ));
        }
        Ok(Value::Missing)
    }

    fn invalid_value(&self, v: Value) -> EvalResult<Value> {
        match &self.invalid_treatment {
            InvalidTreatment::ReturnInvalid => Err(format!(
                "field '{}': invalid value '{}' (not a valid value of this field; its MiningField \
                 says invalidValueTreatment=returnInvalid)",
                self.name,
                v.to_text()
            )),
            InvalidTreatment::AsIs => self.outlier(v),
            InvalidTreatment::AsMissing => self.missing_value(),
            InvalidTreatment::AsValue(r) => Ok(r.clone()),
        }
    }

    fn outlier(&self, v: Value) -> EvalResult<Value> {
        if self.outliers == Outliers::AsIs || self.optype != OpType::Continuous {
            return Ok(v);
        }
        let Some(x) = v.as_f64() else { return Ok(v) };
        let low = self.low.filter(|&l| x < l);
        let high = self.high.filter(|&h| x > h);
        match (self.outliers, low, high) {
            (Outliers::AsMissing, Some(_), _) | (Outliers::AsMissing, _, Some(_)) => {
                self.missing_value()
            }
            (Outliers::AsExtreme, Some(l), _) => Ok(Value::number(self.dtype, l)),
            (Outliers::AsExtreme, _, Some(h)) => Ok(Value::number(self.dtype, h)),
            _ => Ok(v),
        }
    }
}

/// A user function from `<DefineFunction>`.
#[derive(Debug)]
pub struct UserFunction {
    /// Function name.
    pub name: String,
    /// Parameter types (None: as given).
    pub params: Vec<Option<DataType>>,
    /// Result type.
    pub dtype: Option<DataType>,
    /// The body (parameters are `Expr::Param`).
    pub body: Expr,
}

/// A data field from the DataDictionary.
#[derive(Debug, Clone)]
pub struct DataFieldInfo {
    /// Its slot.
    pub slot: SlotId,
    /// Field preparation without MiningField settings.
    pub prep: FieldPrep,
    /// Declared values (valid ones, in order).
    pub values: Vec<Value>,
}

/// Everything compiled from one document besides the models.
#[derive(Debug, Default)]
pub struct Program {
    /// All slots.
    pub slots: Vec<Slot>,
    /// User functions.
    pub functions: Vec<UserFunction>,
    /// Class lists by target key.
    pub class_lists: HashMap<String, Vec<Value>>,
}

impl Program {
    /// The classes of target `key` (empty when unknown).
    pub fn classes(&self, key: &str) -> &[Value] {
        self.class_lists.get(key).map_or(&[], |v| v.as_slice())
    }
}

/// Builds a [`Program`] while models are compiled; resolves names.
pub struct Compiler {
    /// The program being built.
    pub prog: Program,
    scopes: Vec<HashMap<String, SlotId>>,
    function_names: HashMap<String, usize>,
    /// Data fields by name.
    pub data_fields: HashMap<String, DataFieldInfo>,
    /// Class lists per target field name (shared by nested models).
    pub categories: HashMap<String, Vec<Value>>,
    /// Parameter names while compiling a function body.
    pub params: Option<Vec<String>>,
}

impl Compiler {
    /// A compiler with an empty global scope.
    pub fn new() -> Self {
        Compiler {
            prog: Program::default(),
            scopes: vec![HashMap::new()],
            function_names: HashMap::new(),
            data_fields: HashMap::new(),
            categories: HashMap::new(),
            params: None,
        }
    }

    /// Adds a slot and binds `name` to it in the innermost scope.
    pub fn add_slot(
        &mut self,
        name: &str,
        dtype: DataType,
        optype: OpType,
        kind: SlotKind,
    ) -> SlotId {
        let id = self.prog.slots.len();
        self.prog.slots.push(Slot {
            name: name.to_string(),
            dtype,
            optype,
            kind,
        });
        self.bind(name, id);
        id
    }

    /// Binds `name` to `slot` in the innermost scope.
    pub fn bind(&mut self, name: &str, slot: SlotId) {
        if let Some(s) = self.scopes.last_mut() {
            s.insert(name.to_string(), slot);
        }
    }

    /// Binds `name` in the scope one level out (a segment's outputs seen
    /// by the following segments of a model chain).
    pub fn bind_outer(&mut self, name: &str, slot: SlotId) {
        let n = self.scopes.len();
        if n >= 2 {
            self.scopes[n - 2].insert(name.to_string(), slot);
        }
    }

    /// Opens a nested scope (a model).
    pub fn push_scope(&mut self) {
        self.scopes.push(HashMap::new());
    }

    /// Closes the innermost scope.
    pub fn pop_scope(&mut self) {
        if self.scopes.len() > 1 {
            self.scopes.pop();
        }
    }

    /// Resolves a field name, innermost scope first.
    pub fn lookup(&self, name: &str) -> Option<SlotId> {
        self.scopes.iter().rev().find_map(|s| s.get(name).copied())
    }

    /// Resolves a field name or fails with a message naming `node`.
    pub fn resolve(&self, node: Node, name: &str) -> LoadResult<SlotId> {
        self.lookup(name)
            .ok_or_else(|| format!("{}: field '{name}' is not defined", at(node)))
    }

    /// Resolves a function name (user functions).
    pub fn function(&self, name: &str) -> Option<usize> {
        self.function_names.get(name).copied()
    }

    /// Reads the DataDictionary.
    pub fn data_dictionary(&mut self, node: Node) -> LoadResult<()> {
        for df in children(node, "DataField") {
            let name = xml::req_attr(df, "name")?;
            let dtype = xml::data_type(df)?
                .ok_or_else(|| format!("{}: DataField '{name}' has no dataType", at(df)))?;
            let optype = xml::op_type(df)?.unwrap_or(OpType::default_for(dtype));
            let mut values = Vec::new();
            let mut invalid = Vec::new();
            let mut missing = Vec::new();
            for v in children(df, "Value") {
                let text = xml::req_attr(v, "value")?;
                let val = Value::parse_as(dtype, text).map_err(|e| format!("{}: {e}", at(v)))?;
                match attr(v, "property").unwrap_or("valid") {
                    "valid" => values.push(val),
                    "invalid" => invalid.push(val),
                    "missing" => missing.push(val),
                    other => return err(v, format!("unknown Value property '{other}'")),
                }
            }
            let intervals = children(df, "Interval")
                .map(Interval::parse)
                .collect::<LoadResult<Vec<_>>>()?;
            let slot = self.add_slot(name, dtype, optype, SlotKind::Input);
            let prep = FieldPrep {
                name: name.to_string(),
                dtype,
                optype,
                valid: values.clone(),
                invalid,
                missing,
                intervals,
                check_validity: true,
                invalid_treatment: InvalidTreatment::ReturnInvalid,
                replacement: None,
                missing_is_error: false,
                outliers: Outliers::AsIs,
                low: None,
                high: None,
            };
            if optype != OpType::Continuous && !values.is_empty() {
                self.categories.insert(name.to_string(), values.clone());
            }
            self.data_fields
                .insert(name.to_string(), DataFieldInfo { slot, prep, values });
        }
        Ok(())
    }

    /// Reads a TransformationDictionary or LocalTransformations: every
    /// derived field's name is bound first, so definitions may refer to
    /// each other in any order.
    pub fn transformations(&mut self, node: Node) -> LoadResult<()> {
        let fields: Vec<Node> = children(node, "DerivedField").collect();
        let functions: Vec<Node> = children(node, "DefineFunction").collect();
        let first_fn = self.prog.functions.len();
        for f in &functions {
            let name = xml::req_attr(*f, "name")?;
            let idx = self.prog.functions.len();
            self.prog.functions.push(UserFunction {
                name: name.to_string(),
                params: Vec::new(),
                dtype: xml::data_type(*f)?,
                body: Expr::Const(Value::Missing),
            });
            self.function_names.insert(name.to_string(), idx);
        }
        for (i, f) in functions.iter().enumerate() {
            let mut names = Vec::new();
            let mut types = Vec::new();
            for p in children(*f, "ParameterField") {
                names.push(xml::req_attr(p, "name")?.to_string());
                types.push(xml::data_type(p)?);
            }
            let body_node = expr::expression_child(*f)?;
            let saved = self.params.replace(names);
            let body = expr::compile(self, body_node);
            self.params = saved;
            let func = &mut self.prog.functions[first_fn + i];
            func.params = types;
            func.body = body?;
        }
        let mut ids = Vec::new();
        for f in &fields {
            let (name, dtype, optype) = derived_header(*f)?;
            ids.push(self.add_slot(name, dtype, optype, SlotKind::External));
        }
        for (f, id) in fields.iter().zip(ids) {
            let e = expr::compile(self, expr::expression_child(*f)?)?;
            self.prog.slots[id].kind = SlotKind::Derived(e);
        }
        Ok(())
    }

    /// Compiles an anonymous `<DerivedField>` (neural inputs) into an
    /// expression cast to its type.
    pub fn anonymous_derived(&mut self, node: Node) -> LoadResult<(Expr, DataType)> {
        let dtype = xml::data_type(node)?.unwrap_or(DataType::Double);
        let e = expr::compile(self, expr::expression_child(node)?)?;
        Ok((e, dtype))
    }

    /// A literal for comparisons.
    pub fn literal(text: &str) -> Literal {
        Literal::new(text)
    }
}

impl Default for Compiler {
    fn default() -> Self {
        Self::new()
    }
}

/// Name, data type and optype of a `<DerivedField>`.
pub fn derived_header<'a>(node: Node<'a, '_>) -> LoadResult<(&'a str, DataType, OpType)> {
    let name = xml::req_attr(node, "name")?;
    let dtype = xml::data_type(node)?
        .ok_or_else(|| format!("{}: DerivedField '{name}' has no dataType", at(node)))?;
    let optype = xml::op_type(node)?.unwrap_or(OpType::default_for(dtype));
    Ok((name, dtype, optype))
}

/// The per-row evaluation state: slot values computed so far.
pub struct Ctx<'p> {
    /// The program.
    pub prog: &'p Program,
    values: Vec<Option<Value>>,
    /// Current nesting of derived-field and function evaluations.
    pub depth: usize,
}

impl<'p> Ctx<'p> {
    /// A fresh context.
    pub fn new(prog: &'p Program) -> Self {
        Ctx {
            prog,
            values: vec![None; prog.slots.len()],
            depth: 0,
        }
    }

    /// Clears every value, for the next row.
    pub fn reset(&mut self) {
        self.values.iter_mut().for_each(|v| *v = None);
        self.depth = 0;
    }

    /// Sets a slot's value.
    pub fn set(&mut self, slot: SlotId, v: Value) {
        if let Some(s) = self.values.get_mut(slot) {
            *s = Some(v);
        }
    }

    /// Forgets a slot's value (a model chain's segment outputs between
    /// evaluations of nested models).
    pub fn clear(&mut self, slot: SlotId) {
        if let Some(s) = self.values.get_mut(slot) {
            *s = None;
        }
    }

    /// The value of a slot, computing it on first use.
    pub fn get(&mut self, slot: SlotId) -> EvalResult<Value> {
        if let Some(Some(v)) = self.values.get(slot) {
            return Ok(v.clone());
        }
        let prog = self.prog;
        let Some(def) = prog.slots.get(slot) else {
            return Ok(Value::Missing);
        };
        let v = match &def.kind {
            SlotKind::Input | SlotKind::External => Value::Missing,
            SlotKind::Derived(e) => {
                self.enter()?;
                let r = expr::eval(e, self, &[]);
                self.depth -= 1;
                r?.cast(def.dtype)
                    .map_err(|e| format!("derived field '{}': {e}", def.name))?
            }
            SlotKind::View { source, prep } => {
                let v = self.get(*source)?;
                prep.apply(v)?
            }
        };
        self.set(slot, v.clone());
        Ok(v)
    }

    /// Counts one nested evaluation; fails when too deep.
    pub fn enter(&mut self) -> EvalResult<()> {
        self.depth += 1;
        if self.depth > MAX_EVAL_DEPTH {
            return Err(format!(
                "derived fields or functions nest deeper than {MAX_EVAL_DEPTH} levels (cyclic definitions?)"
            ));
        }
        Ok(())
    }

    /// Calls a user function.
    pub fn call(&mut self, f: &Function, args: Vec<Value>) -> EvalResult<Value> {
        let Function::User(idx) = f else {
            return Err("not a user function".into());
        };
        let prog = self.prog;
        let Some(func) = prog.functions.get(*idx) else {
            return Err("unknown function".into());
        };
        if args.len() != func.params.len() {
            return Err(format!(
                "function '{}' takes {} arguments, got {}",
                func.name,
                func.params.len(),
                args.len()
            ));
        }
        let args = args
            .into_iter()
            .zip(&func.params)
            .map(|(a, t)| match t {
                Some(t) => a.cast(*t),
                None => Ok(a),
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("function '{}': {e}", func.name))?;
        self.enter()?;
        let r = expr::eval(&func.body, self, &args);
        self.depth -= 1;
        let r = r?;
        match func.dtype {
            Some(t) => r
                .cast(t)
                .map_err(|e| format!("function '{}': {e}", func.name)),
            None => Ok(r),
        }
    }
}

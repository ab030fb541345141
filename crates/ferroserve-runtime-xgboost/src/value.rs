//! The document tree both model encodings (JSON text and UBJSON) parse into.
//!
//! XGBoost stores every float of a model as `f32`, so numbers are kept as
//! `f32` (parsed with correct rounding straight from the decimal text, never
//! through `f64`), integers as `i64`, and UBJSON's typed arrays stay packed.

/// Deepest nesting accepted; XGBoost models nest about six levels.
pub(crate) const MAX_DEPTH: usize = 64;

/// A parsed JSON / UBJSON value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f32),
    Str(String),
    Array(Vec<Value>),
    /// A UBJSON typed array of `f32` (`[$d#…`).
    F32s(Vec<f32>),
    /// A UBJSON typed array of `f64` (`[$D#…`).
    F64s(Vec<f64>),
    /// A UBJSON typed array of integers (`[$i#`, `[$U#`, `[$I#`, `[$l#`, `[$L#`).
    Ints(Vec<i64>),
    Object(Vec<(String, Value)>),
}

impl Value {
    /// The member `key` of an object.
    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// A short name of the value's kind, for error messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Array(_) | Value::F32s(_) | Value::F64s(_) | Value::Ints(_) => "an array",
            Value::Object(_) => "an object",
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// An integer, also from an integral float.
    pub(crate) fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Int(i) => Some(i),
            Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(f as i64),
            Value::Bool(b) => Some(i64::from(b)),
            _ => None,
        }
    }

    /// A number as `f32`.
    pub(crate) fn as_f32(&self) -> Option<f32> {
        match *self {
            Value::Float(f) => Some(f),
            Value::Int(i) => Some(i as f32),
            _ => None,
        }
    }

    /// The elements of a generic array.
    pub(crate) fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(v) => Some(v),
            _ => None,
        }
    }

    /// An array of numbers as `f32` (`None` if any element is not a number).
    pub(crate) fn to_f32_vec(&self) -> Option<Vec<f32>> {
        match self {
            Value::F32s(v) => Some(v.clone()),
            Value::F64s(v) => Some(v.iter().map(|&x| x as f32).collect()),
            Value::Ints(v) => Some(v.iter().map(|&x| x as f32).collect()),
            Value::Array(v) => v.iter().map(Value::as_f32).collect(),
            _ => None,
        }
    }

    /// An array of integers (booleans count as 0/1; integral floats are accepted).
    pub(crate) fn to_i64_vec(&self) -> Option<Vec<i64>> {
        match self {
            Value::Ints(v) => Some(v.clone()),
            Value::F32s(v) => v.iter().map(|&f| Value::Float(f).as_i64()).collect(),
            Value::F64s(v) => v
                .iter()
                .map(|&f| (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64))
                .collect(),
            Value::Array(v) => v.iter().map(Value::as_i64).collect(),
            _ => None,
        }
    }
}

//! Request, input and output parameters of the inference protocols.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One parameter value: the union of what v2 REST (any JSON scalar) and v2
/// gRPC (`InferParameter`) can carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer too large for `i64`.
    Uint(u64),
    /// A floating-point number.
    Double(f64),
    /// A string.
    String(String),
}

impl ParamValue {
    /// The value as a boolean, accepting `"true"`/`"false"` strings and 0/1.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            ParamValue::Bool(b) => Some(*b),
            ParamValue::Int(i) => Some(*i != 0),
            ParamValue::Uint(u) => Some(*u != 0),
            ParamValue::String(s) => match s.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Some(true),
                "false" | "0" | "no" => Some(false),
                _ => None,
            },
            ParamValue::Double(_) => None,
        }
    }

    /// The value as a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            ParamValue::Int(i) => u64::try_from(*i).ok(),
            ParamValue::Uint(u) => Some(*u),
            ParamValue::Double(d) if *d >= 0.0 && d.fract() == 0.0 => Some(*d as u64),
            ParamValue::String(s) => s.parse().ok(),
            _ => None,
        }
    }

    /// The value as a string slice, if it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            ParamValue::String(s) => Some(s),
            _ => None,
        }
    }
}

/// A parameter map; ordered so responses are deterministic.
pub type Parameters = BTreeMap<String, ParamValue>;

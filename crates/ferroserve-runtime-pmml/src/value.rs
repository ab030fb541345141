//! PMML field values and data types, with the conversions and comparisons
//! PMML (and JPMML, the reference evaluator) define: a value keeps its
//! declared data type, so a `float` field is compared in single precision.

use std::cmp::Ordering;
use std::sync::Arc;

/// A PMML `dataType` this runtime supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    /// `string`.
    String,
    /// `integer` (64-bit here).
    Integer,
    /// `float` (IEEE single precision).
    Float,
    /// `double`.
    Double,
    /// `boolean`.
    Boolean,
}

impl DataType {
    /// Parses a PMML `dataType` attribute.
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "string" => DataType::String,
            "integer" => DataType::Integer,
            "float" => DataType::Float,
            "double" => DataType::Double,
            "boolean" => DataType::Boolean,
            other => {
                return Err(format!(
                    "dataType '{other}' is not supported (supported: string, integer, float, double, boolean)"
                ))
            }
        })
    }

    /// True for integer, float and double.
    pub fn is_numeric(self) -> bool {
        matches!(self, DataType::Integer | DataType::Float | DataType::Double)
    }
}

/// A PMML `optype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpType {
    /// `categorical`.
    Categorical,
    /// `ordinal`.
    Ordinal,
    /// `continuous`.
    Continuous,
}

impl OpType {
    /// Parses a PMML `optype` attribute.
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "categorical" => OpType::Categorical,
            "ordinal" => OpType::Ordinal,
            "continuous" => OpType::Continuous,
            other => return Err(format!("unknown optype '{other}'")),
        })
    }

    /// The optype PMML implies for a data type when none is given.
    pub fn default_for(dt: DataType) -> Self {
        match dt {
            DataType::Float | DataType::Double => OpType::Continuous,
            _ => OpType::Categorical,
        }
    }
}

/// One field value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A missing value.
    Missing,
    /// A string.
    Str(Arc<str>),
    /// An integer.
    Int(i64),
    /// A single-precision number.
    Float(f32),
    /// A double-precision number.
    Double(f64),
    /// A boolean.
    Bool(bool),
}

/// Parses a number the way Java's `Double.parseDouble` accepts it (trimmed,
/// `Infinity`/`NaN` spellings, an optional `d`/`f` suffix).
pub fn parse_f64(s: &str) -> Option<f64> {
    let t = s.trim();
    let t = t
        .strip_suffix(['d', 'D', 'f', 'F'])
        .filter(|r| !r.is_empty() && !r.ends_with(['e', 'E']))
        .unwrap_or(t);
    match t {
        "Infinity" | "+Infinity" | "INF" | "inf" => return Some(f64::INFINITY),
        "-Infinity" | "-INF" | "-inf" => return Some(f64::NEG_INFINITY),
        "NaN" => return Some(f64::NAN),
        _ => {}
    }
    if t.is_empty()
        || t.bytes()
            .any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E')
    {
        return None;
    }
    t.parse::<f64>().ok()
}

/// Parses a single-precision number (rounded once from the decimal text).
pub fn parse_f32(s: &str) -> Option<f32> {
    let t = s.trim();
    match parse_f64(t) {
        Some(v) if v.is_nan() || v.is_infinite() => Some(v as f32),
        Some(_) => {
            let t = t.strip_suffix(['d', 'D', 'f', 'F']).unwrap_or(t);
            t.parse::<f32>().ok()
        }
        None => None,
    }
}

/// Formats a double as Java's `Double.toString` would for common values.
pub fn format_f64(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else if v == v.trunc() && v.abs() < 1e7 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

/// Java's `Math.round`: floor(x + 0.5).
pub fn java_round(v: f64) -> f64 {
    (v + 0.5).floor()
}

fn f64_to_int(v: f64) -> Option<i64> {
    (v.is_finite() && v == v.trunc() && v.abs() < 9.2e18).then_some(v as i64)
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim() {
        t if t.eq_ignore_ascii_case("true") || t == "1" => Some(true),
        t if t.eq_ignore_ascii_case("false") || t == "0" => Some(false),
        _ => None,
    }
}

impl Value {
    /// A string value.
    pub fn str(s: &str) -> Self {
        Value::Str(Arc::from(s))
    }

    /// True for [`Value::Missing`].
    pub fn is_missing(&self) -> bool {
        matches!(self, Value::Missing)
    }

    /// The data type of a present value.
    pub fn data_type(&self) -> Option<DataType> {
        Some(match self {
            Value::Missing => return None,
            Value::Str(_) => DataType::String,
            Value::Int(_) => DataType::Integer,
            Value::Float(_) => DataType::Float,
            Value::Double(_) => DataType::Double,
            Value::Bool(_) => DataType::Boolean,
        })
    }

    /// The value as a number (booleans are 0/1; strings are parsed).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Missing => None,
            Value::Str(s) => parse_f64(s),
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(f64::from(*f)),
            Value::Double(d) => Some(*d),
            Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        }
    }

    /// The value as a boolean (numbers: non-zero is true).
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Missing => None,
            Value::Bool(b) => Some(*b),
            Value::Str(s) => parse_bool(s),
            other => other.as_f64().map(|v| v != 0.0),
        }
    }

    /// The value as text (numbers formatted like Java does).
    pub fn to_text(&self) -> String {
        match self {
            Value::Missing => String::new(),
            Value::Str(s) => s.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => {
                if f.is_finite() && *f == f.trunc() && f.abs() < 1e7 {
                    format!("{f:.1}")
                } else {
                    format!("{f}")
                }
            }
            Value::Double(d) => format_f64(*d),
            Value::Bool(b) => b.to_string(),
        }
    }

    /// A number of the given numeric type (rounded to it).
    pub fn number(dt: DataType, v: f64) -> Self {
        match dt {
            DataType::Float => Value::Float(v as f32),
            DataType::Integer => match f64_to_int(v) {
                Some(i) => Value::Int(i),
                None => Value::Double(v),
            },
            _ => Value::Double(v),
        }
    }

    /// Parses literal text from a PMML document as `dt`.
    pub fn parse_as(dt: DataType, text: &str) -> Result<Self, String> {
        let bad = || format!("'{text}' is not a valid {dt:?} value");
        Ok(match dt {
            DataType::String => Value::str(text),
            DataType::Integer => {
                let t = text.trim();
                match t.parse::<i64>() {
                    Ok(i) => Value::Int(i),
                    Err(_) => Value::Int(parse_f64(t).and_then(f64_to_int).ok_or_else(bad)?),
                }
            }
            DataType::Float => Value::Float(parse_f32(text).ok_or_else(bad)?),
            DataType::Double => Value::Double(parse_f64(text).ok_or_else(bad)?),
            DataType::Boolean => Value::Bool(parse_bool(text).ok_or_else(bad)?),
        })
    }

    /// Converts to `dt` (missing stays missing). Fails where PMML has no
    /// conversion: a non-integral number as integer, unparsable text.
    pub fn cast(&self, dt: DataType) -> Result<Value, String> {
        if self.data_type() == Some(dt) || self.is_missing() {
            return Ok(self.clone());
        }
        let bad = || format!("value '{}' cannot be converted to {dt:?}", self.to_text());
        Ok(match (dt, self) {
            (_, Value::Str(s)) => return Value::parse_as(dt, s),
            (DataType::String, v) => Value::str(&v.to_text()),
            (DataType::Integer, v) => Value::Int(v.as_f64().and_then(f64_to_int).ok_or_else(bad)?),
            (DataType::Float, v) => Value::Float(v.as_f64().ok_or_else(bad)? as f32),
            (DataType::Double, v) => Value::Double(v.as_f64().ok_or_else(bad)?),
            (DataType::Boolean, v) => match v.as_f64() {
                Some(0.0) => Value::Bool(false),
                Some(1.0) => Value::Bool(true),
                _ => return Err(bad()),
            },
        })
    }

    /// PMML equality: `other` is converted to this value's type first.
    pub fn equals_value(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Missing, _) | (_, Value::Missing) => false,
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Str(a), b) => **a == *b.to_text(),
            (a, b) => match (
                a.data_type(),
                b.cast(a.data_type().unwrap_or(DataType::Double)),
            ) {
                (Some(_), Ok(b)) => a.num_cmp(&b) == Some(Ordering::Equal),
                _ => false,
            },
        }
    }

    /// PMML ordering: `other` is converted to this value's type first.
    pub fn compare_value(&self, other: &Value) -> Option<Ordering> {
        match (self, other) {
            (Value::Missing, _) | (_, Value::Missing) => None,
            (Value::Str(a), Value::Str(b)) => Some(a.as_ref().cmp(b.as_ref())),
            (Value::Str(a), b) => Some(a.as_ref().cmp(b.to_text().as_str())),
            (a, b) => {
                let b = b.cast(a.data_type()?).ok()?;
                a.num_cmp(&b)
            }
        }
    }

    fn num_cmp(&self, other: &Value) -> Option<Ordering> {
        match (self, other) {
            (Value::Float(a), Value::Float(b)) => a.partial_cmp(b),
            (Value::Int(a), Value::Int(b)) => Some(a.cmp(b)),
            (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
            (a, b) => a.as_f64()?.partial_cmp(&b.as_f64()?),
        }
    }
}

/// A literal from the document (a predicate threshold, a table cell),
/// parsed once in every form a runtime value may need to compare with it.
#[derive(Debug, Clone)]
pub struct Literal {
    /// The text as written.
    pub text: Arc<str>,
    double: Option<f64>,
    float: Option<f32>,
    int: Option<i64>,
    boolean: Option<bool>,
}

impl Literal {
    /// Parses `text` in every form.
    pub fn new(text: &str) -> Self {
        let double = parse_f64(text);
        Literal {
            text: Arc::from(text),
            double,
            float: parse_f32(text),
            int: text
                .trim()
                .parse::<i64>()
                .ok()
                .or_else(|| double.and_then(f64_to_int)),
            boolean: parse_bool(text),
        }
    }

    /// The literal as a value of type `dt`, if it parses as one.
    pub fn as_value(&self, dt: DataType) -> Option<Value> {
        Some(match dt {
            DataType::String => Value::Str(self.text.clone()),
            DataType::Integer => Value::Int(self.int?),
            DataType::Float => Value::Float(self.float?),
            DataType::Double => Value::Double(self.double?),
            DataType::Boolean => Value::Bool(self.boolean?),
        })
    }

    /// The literal as a double.
    pub fn as_f64(&self) -> Option<f64> {
        self.double
    }

    /// Compares `v` with this literal read in `v`'s own type.
    pub fn compare(&self, v: &Value) -> Option<Ordering> {
        match v {
            Value::Missing => None,
            Value::Str(s) => Some(s.as_ref().cmp(self.text.as_ref())),
            Value::Float(f) => f.partial_cmp(&self.float?),
            Value::Double(d) => d.partial_cmp(&self.double?),
            Value::Int(i) => match self.int {
                Some(j) => Some(i.cmp(&j)),
                None => (*i as f64).partial_cmp(&self.double?),
            },
            Value::Bool(b) => Some(b.cmp(&self.boolean?)),
        }
    }

    /// True when `v` equals this literal read in `v`'s own type.
    pub fn matches(&self, v: &Value) -> bool {
        self.compare(v) == Some(Ordering::Equal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_compare_is_single_precision() {
        // 0.8 as f32 is 0.800000011920929; as a double it is below that.
        let lit = Literal::new("0.8");
        let x = Value::Float(0.8f64 as f32);
        assert_eq!(lit.compare(&x), Some(Ordering::Equal));
        let d = Value::Double(0.800000001);
        assert_eq!(lit.compare(&d), Some(Ordering::Greater));
    }

    #[test]
    fn casts() {
        assert_eq!(
            Value::Double(2.0).cast(DataType::Integer),
            Ok(Value::Int(2))
        );
        assert!(Value::Double(2.5).cast(DataType::Integer).is_err());
        assert_eq!(
            Value::str("1.5").cast(DataType::Double),
            Ok(Value::Double(1.5))
        );
        assert_eq!(Value::Int(3).cast(DataType::String), Ok(Value::str("3")));
        assert!(Value::str("abc").cast(DataType::Double).is_err());
        assert_eq!(parse_f64("1.0E-5"), Some(1e-5));
        assert_eq!(parse_f64("Infinity"), Some(f64::INFINITY));
        assert_eq!(parse_f64("abc"), None);
        assert_eq!(java_round(-2.5), -2.0);
    }

    #[test]
    fn equality_across_types() {
        assert!(Value::Int(1).equals_value(&Value::str("1")));
        assert!(Value::Double(1.0).equals_value(&Value::Int(1)));
        assert!(Value::str("a").equals_value(&Value::str("a")));
        assert!(!Value::Missing.equals_value(&Value::Missing));
    }
}

//! Reading a request body field by field, so that every error names the
//! parameter at fault, and deciding what to do with fields this server does
//! not implement.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::error::OpenAiError;

/// A rule for a field this server does not implement: the values it may
/// take (those that ask for nothing beyond what the server does anyway).
pub(crate) type Harmless = fn(&Value) -> bool;

/// Any value is harmless (metadata, hints, scheduling priority…).
pub(crate) fn any(_: &Value) -> bool {
    true
}

/// Only `false` is harmless.
pub(crate) fn is_false(v: &Value) -> bool {
    v == &Value::Bool(false)
}

/// Only `true` is harmless.
pub(crate) fn is_true(v: &Value) -> bool {
    v == &Value::Bool(true)
}

/// Only an empty list or object (or empty string) is harmless.
pub(crate) fn is_empty(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// Nothing but `null` is harmless (the field is only tolerated when unset).
pub(crate) fn never(_: &Value) -> bool {
    false
}

/// The fields of a JSON request object, taken one at a time.
pub(crate) struct Fields {
    map: Map<String, Value>,
}

impl Fields {
    /// Parses `body`, which must be a JSON object.
    pub(crate) fn parse(body: &[u8]) -> Result<Self, OpenAiError> {
        let v: Value = serde_json::from_slice(body).map_err(|e| {
            OpenAiError::bad_request(format!("request body is not valid JSON: {e}"))
        })?;
        match v {
            Value::Object(map) => Ok(Fields { map }),
            _ => Err(OpenAiError::bad_request(
                "request body must be a JSON object",
            )),
        }
    }

    /// Removes `name`; `null` counts as absent.
    pub(crate) fn raw(&mut self, name: &str) -> Option<Value> {
        self.map.remove(name).filter(|v| !v.is_null())
    }

    /// Removes `name` and converts it to `T`; `null` counts as absent.
    pub(crate) fn get<T: DeserializeOwned>(
        &mut self,
        name: &str,
    ) -> Result<Option<T>, OpenAiError> {
        match self.raw(name) {
            None => Ok(None),
            Some(v) => serde_json::from_value(v)
                .map(Some)
                .map_err(|e| OpenAiError::invalid(name, format!("invalid '{name}': {e}"))),
        }
    }

    /// Ends reading: each field left over must be listed in `rules` with a
    /// harmless value; others are refused, naming the parameter.
    pub(crate) fn finish(self, rules: &[(&str, Harmless)]) -> Result<(), OpenAiError> {
        // Sorted for a deterministic error when several are at fault.
        let mut left: Vec<(String, Value)> = self.map.into_iter().collect();
        left.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, value) in left {
            if value.is_null() {
                continue;
            }
            match rules.iter().find(|(n, _)| *n == name) {
                Some((_, ok)) if ok(&value) => {}
                Some(_) => {
                    return Err(OpenAiError::invalid(
                        name.as_str(),
                        format!("'{name}' = {value} is not supported by this server"),
                    ))
                }
                None => {
                    return Err(OpenAiError::invalid(
                        name.as_str(),
                        format!("Unrecognized request argument supplied: {name}"),
                    ))
                }
            }
        }
        Ok(())
    }
}

/// Checks `lo <= v <= hi` (or `lo < v` when `lo_open`).
pub(crate) fn check_range(
    name: &str,
    v: f32,
    lo: f32,
    hi: f32,
    lo_open: bool,
) -> Result<f32, OpenAiError> {
    let low_ok = if lo_open { v > lo } else { v >= lo };
    if low_ok && v <= hi && v.is_finite() {
        Ok(v)
    } else {
        let open = if lo_open { "(" } else { "[" };
        Err(OpenAiError::invalid(
            name,
            format!("'{name}' must be in {open}{lo}, {hi}], got {v}"),
        ))
    }
}

/// Checks `lo <= v <= hi` for a count.
pub(crate) fn check_count(name: &str, v: i64, lo: i64, hi: i64) -> Result<usize, OpenAiError> {
    if (lo..=hi).contains(&v) {
        usize::try_from(v).map_err(|_| OpenAiError::invalid(name, format!("'{name}' is too large")))
    } else if hi == i64::MAX {
        Err(OpenAiError::invalid(
            name,
            format!("'{name}' must be at least {lo}, got {v}"),
        ))
    } else {
        Err(OpenAiError::invalid(
            name,
            format!("'{name}' must be between {lo} and {hi}, got {v}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_name_the_parameter() {
        let mut f = Fields::parse(br#"{"a": "x", "b": null, "c": 1, "d": true}"#).unwrap();
        let e = f.get::<f32>("a").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("a"));
        assert_eq!(f.get::<f32>("b").unwrap(), None);
        assert_eq!(f.get::<f32>("c").unwrap(), Some(1.0));
        let e = f.finish(&[("d", is_false)]).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("d"));
        let f = Fields::parse(br#"{"zzz": 1}"#).unwrap();
        let e = f.finish(&[]).unwrap_err();
        assert!(e
            .message
            .contains("Unrecognized request argument supplied: zzz"));
        assert!(Fields::parse(b"[1]").is_err());
        assert!(Fields::parse(b"{").is_err());
    }

    #[test]
    fn ranges() {
        assert!(check_range("top_p", 0.0, 0.0, 1.0, true).is_err());
        assert!(check_range("top_p", 1.0, 0.0, 1.0, true).is_ok());
        assert!(check_range("t", 2.5, 0.0, 2.0, false).is_err());
        assert!(check_count("n", 0, 1, 128).is_err());
        assert_eq!(check_count("n", 128, 1, 128).unwrap(), 128);
    }
}

//! Tensor data in JSON: nested or flat arrays of numbers, booleans or
//! strings, decoded straight into packed little-endian bytes without an
//! intermediate `serde_json::Value`, and encoded back as flat arrays.

use std::fmt;

use bytes::Bytes;
use ferroserve_core::{DataType, Tensor, TensorData};
use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};

/// Elements collected from JSON for one tensor.
#[derive(Debug)]
pub enum Sink {
    /// Packed little-endian elements.
    Raw(Vec<u8>),
    /// `BYTES` elements.
    Strings(Vec<Bytes>),
}

impl Sink {
    /// An empty sink for `dt`.
    pub fn for_type(dt: DataType) -> Self {
        if dt == DataType::Bytes {
            Sink::Strings(Vec::new())
        } else {
            Sink::Raw(Vec::new())
        }
    }

    /// Turns the collected elements into tensor data.
    pub fn into_data(self) -> TensorData {
        match self {
            Sink::Raw(v) => TensorData::Raw(Bytes::from(v)),
            Sink::Strings(v) => TensorData::Strings(v),
        }
    }
}

/// A `DeserializeSeed` that flattens arbitrarily nested arrays of `dt`
/// elements into `sink`.
pub struct Flatten<'a> {
    /// Element type to convert to.
    pub dt: DataType,
    /// Where elements go.
    pub sink: &'a mut Sink,
    /// Nesting depth so far (bounded to keep recursion safe).
    pub depth: u32,
}

const MAX_DEPTH: u32 = 64;

impl<'de> DeserializeSeed<'de> for Flatten<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

fn push_int<E: de::Error>(dt: DataType, sink: &mut Sink, v: i128) -> Result<(), E> {
    let Sink::Raw(out) = sink else {
        return Err(E::custom(
            "expected a string for a BYTES tensor, got a number",
        ));
    };
    macro_rules! int {
        ($t:ty) => {{
            let x = <$t>::try_from(v)
                .map_err(|_| E::custom(format!("value {v} out of range for {}", dt)))?;
            out.extend_from_slice(&x.to_le_bytes());
        }};
    }
    match dt {
        DataType::Bool => match v {
            0 | 1 => out.push(v as u8),
            _ => return Err(E::custom(format!("value {v} is not a BOOL"))),
        },
        DataType::U8 => int!(u8),
        DataType::U16 => int!(u16),
        DataType::U32 => int!(u32),
        DataType::U64 => int!(u64),
        DataType::I8 => int!(i8),
        DataType::I16 => int!(i16),
        DataType::I32 => int!(i32),
        DataType::I64 => int!(i64),
        DataType::F16 | DataType::BF16 | DataType::F32 | DataType::F64 => {
            push_float::<E>(dt, sink, v as f64)?
        }
        DataType::Bytes => unreachable_bytes::<E>()?,
    }
    Ok(())
}

fn unreachable_bytes<E: de::Error>() -> Result<(), E> {
    Err(E::custom("expected a string for a BYTES tensor"))
}

fn push_float<E: de::Error>(dt: DataType, sink: &mut Sink, v: f64) -> Result<(), E> {
    let Sink::Raw(out) = sink else {
        return Err(E::custom(
            "expected a string for a BYTES tensor, got a number",
        ));
    };
    match dt {
        DataType::F32 => out.extend_from_slice(&(v as f32).to_le_bytes()),
        DataType::F64 => out.extend_from_slice(&v.to_le_bytes()),
        DataType::F16 => out.extend_from_slice(&half::f16::from_f64(v).to_le_bytes()),
        DataType::BF16 => out.extend_from_slice(&half::bf16::from_f64(v).to_le_bytes()),
        _ => {
            return Err(E::custom(format!(
                "value {v} is not an integer, as {dt} requires"
            )))
        }
    }
    Ok(())
}

impl<'de> Visitor<'de> for Flatten<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an array of {} values", self.dt)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.depth >= MAX_DEPTH {
            return Err(de::Error::custom("data nested too deeply"));
        }
        while seq
            .next_element_seed(Flatten {
                dt: self.dt,
                sink: &mut *self.sink,
                depth: self.depth + 1,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        match (self.dt, &mut *self.sink) {
            (DataType::Bool, Sink::Raw(out)) => {
                out.push(u8::from(v));
                Ok(())
            }
            _ => Err(E::custom(format!("boolean given for a {} tensor", self.dt))),
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        push_int(self.dt, self.sink, i128::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        push_int(self.dt, self.sink, i128::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        push_float(self.dt, self.sink, v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        match &mut *self.sink {
            Sink::Strings(out) => {
                out.push(Bytes::copy_from_slice(v.as_bytes()));
                Ok(())
            }
            Sink::Raw(_) => Err(E::custom(format!(
                "string \"{}\" given for a {} tensor",
                v.chars().take(32).collect::<String>(),
                self.dt
            ))),
        }
    }

    /// JSON `null` is a missing value: NaN in a floating-point tensor, an
    /// empty string in a BYTES one (as KServe's pandas-based servers read
    /// it); other types have no missing value.
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        match (self.dt, &mut *self.sink) {
            (DataType::F16 | DataType::BF16 | DataType::F32 | DataType::F64, _) => {
                push_float(self.dt, self.sink, f64::NAN)
            }
            (DataType::Bytes, Sink::Strings(out)) => {
                out.push(Bytes::new());
                Ok(())
            }
            _ => Err(E::custom(format!(
                "null given for a {} tensor (null is a missing value only in FP16/BF16/FP32/FP64 and BYTES tensors)",
                self.dt
            ))),
        }
    }

    fn visit_map<A: de::MapAccess<'de>>(self, _map: A) -> Result<(), A::Error> {
        Err(de::Error::custom(format!(
            "object given for a {} tensor",
            self.dt
        )))
    }
}

/// Parses a JSON `data` value (nested or flat) into tensor data of `dt`.
pub fn parse_data(dt: DataType, json: &str) -> Result<TensorData, serde_json::Error> {
    let mut sink = Sink::for_type(dt);
    let mut de = serde_json::Deserializer::from_str(json);
    Flatten {
        dt,
        sink: &mut sink,
        depth: 0,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(sink.into_data())
}

/// Serializes a tensor's elements as a flat JSON array.
pub struct FlatData<'a>(pub &'a Tensor);

impl serde::Serialize for FlatData<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = self.0;
        match &t.data {
            TensorData::Strings(v) => {
                let mut seq = s.serialize_seq(Some(v.len()))?;
                for b in v {
                    seq.serialize_element(&String::from_utf8_lossy(b))?;
                }
                seq.end()
            }
            TensorData::Raw(b) => serialize_raw(s, t.datatype, b),
        }
    }
}

fn serialize_raw<S: Serializer>(s: S, dt: DataType, b: &[u8]) -> Result<S::Ok, S::Error> {
    let size = dt.size().unwrap_or(1);
    let mut seq = s.serialize_seq(Some(b.len() / size))?;
    macro_rules! each {
        ($t:ty, $n:expr, $conv:expr) => {
            for c in b.chunks_exact($n) {
                let mut a = [0u8; $n];
                a.copy_from_slice(c);
                let v = <$t>::from_le_bytes(a);
                seq.serialize_element(&$conv(v))?;
            }
        };
    }
    match dt {
        DataType::Bool => {
            for &x in b {
                seq.serialize_element(&(x != 0))?;
            }
        }
        DataType::U8 => each!(u8, 1, |v| v),
        DataType::U16 => each!(u16, 2, |v| v),
        DataType::U32 => each!(u32, 4, |v| v),
        DataType::U64 => each!(u64, 8, |v| v),
        DataType::I8 => each!(i8, 1, |v| v),
        DataType::I16 => each!(i16, 2, |v| v),
        DataType::I32 => each!(i32, 4, |v| v),
        DataType::I64 => each!(i64, 8, |v| v),
        DataType::F16 => each!(u16, 2, |v| half::f16::from_bits(v).to_f32()),
        DataType::BF16 => each!(u16, 2, |v| half::bf16::from_bits(v).to_f32()),
        DataType::F32 => each!(f32, 4, |v| v),
        DataType::F64 => each!(f64, 8, |v| v),
        DataType::Bytes => {}
    }
    seq.end()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_is_missing() {
        let t = Tensor::new(
            "x",
            DataType::F64,
            vec![3],
            parse_data(DataType::F64, "[1.5, null, 2]").unwrap(),
        )
        .unwrap();
        let v = t.to_vec::<f64>().unwrap();
        assert_eq!(v[0], 1.5);
        assert!(v[1].is_nan());
        assert!(parse_data(DataType::F32, "[[null]]").is_ok());
        let s = parse_data(DataType::Bytes, "[\"a\", null]").unwrap();
        assert_eq!(
            s,
            TensorData::Strings(vec![Bytes::from_static(b"a"), Bytes::new()])
        );
    }

    #[test]
    fn nested_and_flat_agree() {
        let a = parse_data(DataType::F32, "[[1, 2.5], [3, 4]]").unwrap();
        let b = parse_data(DataType::F32, "[1, 2.5, 3, 4]").unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn ranges_and_kinds_checked() {
        assert!(parse_data(DataType::I8, "[127, -128]").is_ok());
        assert!(parse_data(DataType::I8, "[128]").is_err());
        assert!(parse_data(DataType::U16, "[-1]").is_err());
        assert!(parse_data(DataType::I32, "[1.5]").is_err());
        assert!(parse_data(DataType::F32, "[\"a\"]").is_err());
        assert!(parse_data(DataType::I64, "[null]").is_err());
        assert!(parse_data(DataType::Bool, "[null]").is_err());
        assert!(parse_data(DataType::Bytes, "[1]").is_err());
        assert!(parse_data(DataType::Bool, "[true, false, 1]").is_ok());
        assert!(parse_data(DataType::Bool, "[2]").is_err());
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert!(parse_data(DataType::F32, &deep).is_err());
    }

    #[test]
    fn round_trip_all_types() {
        for dt in ferroserve_core::datatype::ALL_DATATYPES {
            let json = match dt {
                DataType::Bytes => r#"["a","bc"]"#,
                DataType::Bool => "[true,false]",
                d if d.is_float() => "[1.5,-2.0]",
                DataType::U8 | DataType::U16 | DataType::U32 | DataType::U64 => "[1,200]",
                _ => "[-1,100]",
            };
            let data = parse_data(dt, json).unwrap();
            let t = Tensor::new("x", dt, vec![2], data).unwrap();
            let back = serde_json::to_string(&FlatData(&t)).unwrap();
            let again = parse_data(dt, &back).unwrap();
            assert_eq!(again, t.data, "{dt}");
        }
    }
}

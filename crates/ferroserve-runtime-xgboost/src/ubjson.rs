//! A small UBJSON (Universal Binary JSON, draft 12) reader.
//!
//! No maintained Rust crate reads UBJSON with the optimized (typed, counted)
//! containers XGBoost writes — `[$d#L<count><big-endian f32 …>` for the node
//! arrays — so this module implements the part of the spec models use:
//! every scalar marker (`Z N T F i U I l L d D C S H`), plain and counted
//! arrays and objects, and typed arrays of any scalar type. Numbers are
//! big-endian. Counts are checked against the bytes left before anything is
//! allocated, so a corrupt count cannot reserve huge buffers.

use crate::value::{Value, MAX_DEPTH};

/// Parses a whole UBJSON document.
pub(crate) fn parse(bytes: &[u8]) -> Result<Value, String> {
    let mut r = Reader { bytes, pos: 0 };
    let marker = r.marker()?;
    let v = r.value(marker, 0)?;
    // Trailing no-ops are allowed; anything else is not.
    while r.pos < bytes.len() {
        if r.byte()? != b'N' {
            return Err(r.err("trailing data after the UBJSON document"));
        }
    }
    Ok(v)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

/// Size in bytes of one element of a typed array of `marker`, if fixed.
fn fixed_size(marker: u8) -> Option<usize> {
    Some(match marker {
        b'i' | b'U' | b'C' => 1,
        b'I' => 2,
        b'l' | b'd' => 4,
        b'L' | b'D' => 8,
        _ => return None,
    })
}

impl Reader<'_> {
    fn err(&self, what: &str) -> String {
        format!("invalid UBJSON at byte {}: {what}", self.pos)
    }

    fn left(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if n > self.left() {
            return Err(self.err("unexpected end of file"));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array_of<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    /// The next type marker, skipping no-ops.
    fn marker(&mut self) -> Result<u8, String> {
        loop {
            let m = self.byte()?;
            if m != b'N' {
                return Ok(m);
            }
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// An integer payload of type `marker`.
    fn int_of(&mut self, marker: u8) -> Result<i64, String> {
        Ok(match marker {
            b'i' => i64::from(i8::from_be_bytes(self.array_of()?)),
            b'U' => i64::from(u8::from_be_bytes(self.array_of()?)),
            b'I' => i64::from(i16::from_be_bytes(self.array_of()?)),
            b'l' => i64::from(i32::from_be_bytes(self.array_of()?)),
            b'L' => i64::from_be_bytes(self.array_of()?),
            _ => return Err(self.err("expected an integer type marker")),
        })
    }

    /// A length or count: an integer with its own marker, not negative.
    fn length(&mut self) -> Result<usize, String> {
        let m = self.marker()?;
        let n = self.int_of(m)?;
        usize::try_from(n).map_err(|_| self.err("negative length"))
    }

    fn string_payload(&mut self) -> Result<String, String> {
        let n = self.length()?;
        let raw = self.take(n)?;
        String::from_utf8(raw.to_vec()).map_err(|_| self.err("string is not UTF-8"))
    }

    /// A value whose type marker has been read.
    fn value(&mut self, marker: u8, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        Ok(match marker {
            b'Z' => Value::Null,
            b'T' => Value::Bool(true),
            b'F' => Value::Bool(false),
            b'i' | b'U' | b'I' | b'l' | b'L' => Value::Int(self.int_of(marker)?),
            b'd' => Value::Float(f32::from_be_bytes(self.array_of()?)),
            b'D' => Value::Float(f64::from_be_bytes(self.array_of()?) as f32),
            b'C' => Value::Str(char::from(self.byte()?).to_string()),
            b'S' => Value::Str(self.string_payload()?),
            b'H' => {
                let text = self.string_payload()?;
                text.parse::<f32>()
                    .map(Value::Float)
                    .map_err(|_| self.err("bad high-precision number"))?
            }
            b'[' => self.array(depth)?,
            b'{' => self.object(depth)?,
            _ => return Err(self.err(&format!("unknown type marker 0x{marker:02x}"))),
        })
    }

    /// Reads the optional `$type` and `#count` of a container.
    fn container_header(&mut self) -> Result<(Option<u8>, Option<usize>), String> {
        let mut ty = None;
        if self.peek() == Some(b'$') {
            self.pos += 1;
            let t = self.byte()?;
            if matches!(t, b'N' | b'Z' | b'T' | b'F' | b']' | b'}' | b'$' | b'#') {
                return Err(self.err("unsupported container element type"));
            }
            ty = Some(t);
            if self.peek() != Some(b'#') {
                return Err(self.err("typed container without a count"));
            }
        }
        let mut count = None;
        if self.peek() == Some(b'#') {
            self.pos += 1;
            let n = self.length()?;
            // Every element takes at least one byte (typed scalars their
            // fixed size), so a count larger than that is corrupt.
            let min = ty.and_then(fixed_size).unwrap_or(1);
            if n.checked_mul(min).is_none_or(|b| b > self.left()) {
                return Err(self.err("container count exceeds the file size"));
            }
            count = Some(n);
        }
        Ok((ty, count))
    }

    fn typed_array(&mut self, ty: u8, n: usize) -> Result<Option<Value>, String> {
        let Some(size) = fixed_size(ty) else {
            return Ok(None);
        };
        let raw = self.take(n * size)?;
        let chunks = raw.chunks_exact(size);
        let mut buf = [0u8; 8];
        let mut word = |c: &[u8]| {
            buf[..size].copy_from_slice(c);
            buf
        };
        Ok(Some(match ty {
            b'd' => Value::F32s(
                chunks
                    .map(|c| {
                        let b = word(c);
                        f32::from_be_bytes([b[0], b[1], b[2], b[3]])
                    })
                    .collect(),
            ),
            b'D' => Value::F64s(chunks.map(|c| f64::from_be_bytes(word(c))).collect()),
            b'i' => Value::Ints(chunks.map(|c| i64::from(c[0] as i8)).collect()),
            b'U' | b'C' => Value::Ints(chunks.map(|c| i64::from(c[0])).collect()),
            b'I' => Value::Ints(
                chunks
                    .map(|c| i64::from(i16::from_be_bytes([c[0], c[1]])))
                    .collect(),
            ),
            b'l' => Value::Ints(
                chunks
                    .map(|c| i64::from(i32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                    .collect(),
            ),
            _ => Value::Ints(chunks.map(|c| i64::from_be_bytes(word(c))).collect()),
        }))
    }

    fn array(&mut self, depth: usize) -> Result<Value, String> {
        let (ty, count) = self.container_header()?;
        if let (Some(t), Some(n)) = (ty, count) {
            if let Some(v) = self.typed_array(t, n)? {
                return Ok(v);
            }
        }
        let mut items = Vec::new();
        match count {
            Some(n) => {
                items.reserve(n.min(1 << 16));
                for _ in 0..n {
                    let m = match ty {
                        Some(t) => t,
                        None => self.marker()?,
                    };
                    items.push(self.value(m, depth + 1)?);
                }
            }
            None => loop {
                let m = self.marker()?;
                if m == b']' {
                    break;
                }
                items.push(self.value(m, depth + 1)?);
            },
        }
        Ok(Value::Array(items))
    }

    fn object(&mut self, depth: usize) -> Result<Value, String> {
        let (ty, count) = self.container_header()?;
        let mut members = Vec::new();
        let mut read_member = |r: &mut Self| -> Result<(), String> {
            let key = r.string_payload()?;
            let m = match ty {
                Some(t) => t,
                None => r.marker()?,
            };
            let v = r.value(m, depth + 1)?;
            members.push((key, v));
            Ok(())
        };
        match count {
            Some(n) => {
                for _ in 0..n {
                    read_member(self)?;
                }
            }
            None => loop {
                while self.peek() == Some(b'N') {
                    self.pos += 1;
                }
                match self.peek() {
                    None => return Err(self.err("unexpected end of file in an object")),
                    Some(b'}') => {
                        self.pos += 1;
                        break;
                    }
                    Some(_) => read_member(self)?,
                }
            },
        }
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(out: &mut Vec<u8>, k: &str) {
        out.push(b'L');
        out.extend_from_slice(&(k.len() as i64).to_be_bytes());
        out.extend_from_slice(k.as_bytes());
    }

    #[test]
    fn parses_xgboost_layout() {
        let mut b = vec![b'{'];
        key(&mut b, "f");
        b.extend_from_slice(b"[$d#L");
        b.extend_from_slice(&2i64.to_be_bytes());
        b.extend_from_slice(&1.5f32.to_be_bytes());
        b.extend_from_slice(&(-2.0f32).to_be_bytes());
        key(&mut b, "s");
        b.push(b'S');
        key(&mut b, "hi");
        key(&mut b, "a");
        b.extend_from_slice(b"[#L");
        b.extend_from_slice(&2i64.to_be_bytes());
        b.extend_from_slice(b"i\x05T");
        key(&mut b, "u");
        b.extend_from_slice(b"[$U#i\x03\x01\x00\x02");
        key(&mut b, "plain");
        b.extend_from_slice(b"[l\x00\x00\x01\x00Z]");
        b.push(b'}');
        let v = parse(&b).unwrap();
        assert_eq!(v.get("f"), Some(&Value::F32s(vec![1.5, -2.0])));
        assert_eq!(v.get("s").unwrap().as_str(), Some("hi"));
        assert_eq!(
            v.get("a"),
            Some(&Value::Array(vec![Value::Int(5), Value::Bool(true)]))
        );
        assert_eq!(v.get("u"), Some(&Value::Ints(vec![1, 0, 2])));
        assert_eq!(
            v.get("plain"),
            Some(&Value::Array(vec![Value::Int(256), Value::Null]))
        );
        // Every truncation fails cleanly.
        for cut in 0..b.len() {
            assert!(parse(&b[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn rejects_huge_counts() {
        let mut b = b"[$d#L".to_vec();
        b.extend_from_slice(&(i64::MAX / 2).to_be_bytes());
        assert!(parse(&b).is_err());
        let mut b = b"[#L".to_vec();
        b.extend_from_slice(&(-1i64).to_be_bytes());
        assert!(parse(&b).is_err());
        assert!(parse("[".repeat(1000).as_bytes()).is_err());
    }
}

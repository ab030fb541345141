//! A reader for the protobuf text format of Triton's `config.pbtxt`.
//!
//! Written by hand: prost-reflect can parse text format, but only against a
//! complete descriptor, and an unknown field (Triton's config has dozens we
//! do not use) would make the whole file fail. This reader builds a generic
//! tree instead; `config::ModelConfig::from_pbtxt` picks the fields it knows.

/// A value in a text-format message.
#[derive(Debug, Clone, PartialEq)]
pub enum PbValue {
    /// A number, identifier (enum value, `true`) or string, as written
    /// (strings unquoted and unescaped).
    Scalar(String),
    /// A nested message: its fields in order (repeated fields repeat).
    Message(Vec<(String, PbValue)>),
    /// A `[a, b, …]` list.
    List(Vec<PbValue>),
}

impl PbValue {
    /// Every value of field `name` of a message, flattening `[…]` lists.
    pub fn all<'a>(&'a self, name: &str) -> Vec<&'a PbValue> {
        let PbValue::Message(fields) = self else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in fields {
            if k == name {
                match v {
                    PbValue::List(items) => out.extend(items.iter()),
                    other => out.push(other),
                }
            }
        }
        out
    }

    /// The last value of field `name` (text format: last one wins).
    pub fn get(&self, name: &str) -> Option<&PbValue> {
        self.all(name).into_iter().last()
    }

    /// The scalar text of field `name`.
    pub fn scalar(&self, name: &str) -> Option<&str> {
        match self.get(name)? {
            PbValue::Scalar(s) => Some(s),
            _ => None,
        }
    }
}

/// A parse error with its byte offset.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("config.pbtxt: {msg} at byte {at}")]
pub struct PbError {
    /// What was wrong.
    pub msg: String,
    /// Where.
    pub at: usize,
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    depth: u32,
}

impl Parser<'_> {
    fn err<T>(&self, msg: impl Into<String>) -> Result<T, PbError> {
        Err(PbError {
            msg: msg.into(),
            at: self.i,
        })
    }

    fn skip_ws(&mut self) {
        while let Some(&c) = self.s.get(self.i) {
            if c == b'#' {
                while self.s.get(self.i).is_some_and(|&c| c != b'\n') {
                    self.i += 1;
                }
            } else if c.is_ascii_whitespace() {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.i).copied()
    }

    fn ident(&mut self) -> Result<String, PbError> {
        self.skip_ws();
        let start = self.i;
        while self
            .s
            .get(self.i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-' | b'+'))
        {
            self.i += 1;
        }
        if start == self.i {
            return self.err("expected a name or value");
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn string(&mut self) -> Result<String, PbError> {
        let Some(quote) = self.peek() else {
            return self.err("unexpected end");
        };
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.i) else {
                return self.err("unterminated string");
            };
            self.i += 1;
            match c {
                c if c == quote => break,
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else {
                        return self.err("unterminated escape");
                    };
                    self.i += 1;
                    out.push(match e {
                        b'n' => b'\n',
                        b't' => b'\t',
                        b'r' => b'\r',
                        other => other,
                    });
                }
                other => out.push(other),
            }
        }
        // Adjacent string literals concatenate.
        if matches!(self.peek(), Some(b'"') | Some(b'\'')) {
            let more = self.string()?;
            out.extend_from_slice(more.as_bytes());
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    fn value(&mut self) -> Result<PbValue, PbError> {
        match self.peek() {
            Some(b'{') | Some(b'<') => self.message_body(),
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    if self.peek() == Some(b']') {
                        self.i += 1;
                        break;
                    }
                    items.push(self.value()?);
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {}
                        _ => return self.err("expected ',' or ']'"),
                    }
                }
                Ok(PbValue::List(items))
            }
            Some(b'"') | Some(b'\'') => Ok(PbValue::Scalar(self.string()?)),
            Some(_) => Ok(PbValue::Scalar(self.ident()?)),
            None => self.err("unexpected end"),
        }
    }

    fn message_body(&mut self) -> Result<PbValue, PbError> {
        let close = match self.peek() {
            Some(b'{') => b'}',
            Some(b'<') => b'>',
            _ => return self.err("expected '{'"),
        };
        self.i += 1;
        self.depth += 1;
        if self.depth > 64 {
            return self.err("messages nested too deeply");
        }
        let fields = self.fields(Some(close))?;
        self.depth -= 1;
        Ok(PbValue::Message(fields))
    }

    fn fields(&mut self, close: Option<u8>) -> Result<Vec<(String, PbValue)>, PbError> {
        let mut fields = Vec::new();
        loop {
            match (self.peek(), close) {
                (None, None) => return Ok(fields),
                (None, Some(_)) => return self.err("unexpected end inside a message"),
                (Some(c), Some(cl)) if c == cl => {
                    self.i += 1;
                    return Ok(fields);
                }
                _ => {}
            }
            let name = self.ident()?;
            let value = match self.peek() {
                Some(b':') => {
                    self.i += 1;
                    self.value()?
                }
                // `name [ {..}, {..} ]`: a list of messages without a colon.
                Some(b'[') => self.value()?,
                _ => self.message_body()?,
            };
            fields.push((name, value));
            if matches!(self.peek(), Some(b',') | Some(b';')) {
                self.i += 1;
            }
        }
    }
}

/// Parses a whole text-format document into a message.
pub fn parse(text: &str) -> Result<PbValue, PbError> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
        depth: 0,
    };
    Ok(PbValue::Message(p.fields(None)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triton_config() {
        let doc = parse(
            r#"
            name: "simple"   # a comment
            platform: "onnxruntime_onnx"
            max_batch_size: 8
            input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] } ]
            dynamic_batching {
              preferred_batch_size: [ 4, 8 ]
              max_queue_delay_microseconds: 100
              default_queue_policy { timeout_action: REJECT max_queue_size: 3 }
            }
            instance_group [ { count: 2 kind: KIND_CPU } ]
            parameters { key: "engine" value: { string_value: "tract" } }
            "#,
        )
        .unwrap();
        assert_eq!(doc.scalar("max_batch_size"), Some("8"));
        let db = doc.get("dynamic_batching").unwrap();
        let pref: Vec<_> = db.all("preferred_batch_size");
        assert_eq!(pref.len(), 2);
        assert_eq!(
            db.get("default_queue_policy")
                .unwrap()
                .scalar("max_queue_size"),
            Some("3")
        );
        assert_eq!(doc.all("instance_group")[0].scalar("count"), Some("2"));
        assert_eq!(doc.all("input")[0].scalar("name"), Some("INPUT0"));
    }

    #[test]
    fn malformed_is_an_error_not_a_panic() {
        for bad in [
            "name: ",
            "a { b: 1",
            "a: [1, 2",
            "a: \"x",
            "{",
            "a: [1 2]",
            "a < b: 1 }",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let deep = "a {".repeat(100) + &"}".repeat(100);
        assert!(parse(&deep).is_err());
    }
}

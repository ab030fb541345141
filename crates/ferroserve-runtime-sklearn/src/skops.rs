//! skops files (`skops.io.dump`): a zip of `schema.json` (a tree of typed
//! nodes) and `.npy` arrays. Loaded natively into the same [`Value`] tree a
//! pickle gives, checking every class against the same allow-list. The
//! `.npy` header is a tiny Python literal; parsed by hand below (no crate
//! reads `.npy` into our array type without pulling in ndarray).

use std::cell::RefCell;
use std::io::Read;
use std::path::Path;
use std::rc::Rc;

use serde_json::Value as Json;

use crate::allow;
use crate::numpy::{self, Dtype, NdArray};
use crate::value::{Object, Value};

/// Largest nesting of schema nodes accepted.
const MAX_DEPTH: usize = 200;

/// True when `head` starts like a zip file.
pub fn looks_like_zip(head: &[u8]) -> bool {
    head.starts_with(b"PK\x03\x04")
}

/// Reads a skops file into a value tree.
pub fn read_skops_file(path: &Path) -> Result<Value, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut zip =
        zip::ZipArchive::new(file).map_err(|e| format!("not a skops file (bad zip): {e}"))?;
    let limit = crate::container::decompressed_limit(usize::try_from(size).unwrap_or(usize::MAX));
    let schema = read_member(&mut zip, "schema.json", limit)?;
    let schema: Json = serde_json::from_slice(&schema)
        .map_err(|e| format!("skops schema.json is not JSON: {e}"))?;
    if let Some(p) = schema.get("protocol").and_then(Json::as_i64) {
        if !(0..=3).contains(&p) {
            return Err(format!(
                "unsupported skops protocol {p} (supported: up to 3)"
            ));
        }
    }
    let mut r = Reader { zip, limit };
    r.node(&schema, 0)
}

fn read_member(
    zip: &mut zip::ZipArchive<std::fs::File>,
    name: &str,
    limit: u64,
) -> Result<Vec<u8>, String> {
    let f = zip
        .by_name(name)
        .map_err(|e| format!("skops file lacks {name}: {e}"))?;
    let mut out = Vec::new();
    f.take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("skops member {name} is corrupt: {e}"))?;
    if out.len() as u64 > limit {
        return Err(format!(
            "skops member {name} expands beyond {limit} bytes; refusing"
        ));
    }
    Ok(out)
}

struct Reader {
    zip: zip::ZipArchive<std::fs::File>,
    limit: u64,
}

fn s(j: &Json, key: &str) -> String {
    j.get(key).and_then(Json::as_str).unwrap_or("").to_string()
}

fn new_obj(class: String, args: Vec<Value>, state: Value) -> Value {
    Value::Object(Rc::new(RefCell::new(Object {
        class: Rc::from(class),
        args,
        state,
        native: None,
    })))
}

impl Reader {
    fn node(&mut self, j: &Json, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err("skops schema nested too deeply".into());
        }
        let loader = s(j, "__loader__");
        let module = s(j, "__module__");
        let class = s(j, "__class__");
        let content = j.get("content").unwrap_or(&Json::Null);
        match loader.as_str() {
            "JsonNode" => {
                let text = content.as_str().unwrap_or("null");
                // Python's json also writes NaN and ±Infinity
                match text.trim() {
                    "NaN" => return Ok(Value::Float(f64::NAN)),
                    "Infinity" => return Ok(Value::Float(f64::INFINITY)),
                    "-Infinity" => return Ok(Value::Float(f64::NEG_INFINITY)),
                    _ => {}
                }
                let v: Json =
                    serde_json::from_str(text).map_err(|e| format!("skops JsonNode: {e}"))?;
                Ok(json_scalar(&v))
            }
            "ListNode" | "TupleNode" | "SetNode" => {
                let items = content
                    .as_array()
                    .ok_or_else(|| format!("skops {loader} without a list"))?
                    .iter()
                    .map(|c| self.node(c, depth + 1))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(if loader == "TupleNode" {
                    Value::Tuple(Rc::new(items))
                } else {
                    Value::List(Rc::new(RefCell::new(items)))
                })
            }
            "DictNode" => self.dict(j, depth),
            "ObjectNode" => {
                let full = allow::check(&module, &class)?;
                let state = match content {
                    Json::Null => Value::None,
                    c => self.node(c, depth + 1)?,
                };
                Ok(new_obj(full, Vec::new(), state))
            }
            "TreeNode" | "ReduceNode" | "SGDNode" | "LossNode" => {
                let full = allow::check(&module, &class)?;
                let args = match j.get("__reduce__").and_then(|r| r.get("args")) {
                    Some(a) => self.node(a, depth + 1)?.as_seq().unwrap_or_default(),
                    None => Vec::new(),
                };
                let state = match content {
                    Json::Null => Value::None,
                    c => self.node(c, depth + 1)?,
                };
                Ok(new_obj(full, args, state))
            }
            "TypeNode" => {
                if module == "builtins" {
                    return Ok(Value::Global(Rc::from(format!("builtins.{class}"))));
                }
                Ok(Value::Global(Rc::from(allow::check(&module, &class)?)))
            }
            "SliceNode" => {
                let g = |k: &str| {
                    content
                        .get(k)
                        .and_then(Json::as_i64)
                        .map_or(Value::None, Value::Int)
                };
                Ok(new_obj(
                    "builtins.slice".into(),
                    vec![g("start"), g("stop"), g("step")],
                    Value::None,
                ))
            }
            "NdArrayNode" => self.ndarray(j, &class, depth),
            "DTypeNode" => {
                let arr = self.node(content, depth + 1)?;
                let a = arr.as_array().ok_or("skops DTypeNode without an array")?;
                Ok(Value::Dtype(Rc::new(a.dtype.clone())))
            }
            "RandomStateNode" | "RandomGeneratorNode" | "BitGeneratorNode" => Ok(new_obj(
                format!("{module}.{class}"),
                Vec::new(),
                Value::None,
            )),
            "FunctionNode" | "MethodNode" | "PartialNode" | "OperatorFuncNode" => Err(format!(
                "skops file holds a function ({module}.{class}); functions are not supported"
            )),
            "SparseMatrixNode" => {
                Err("skops file holds a scipy sparse matrix; not supported".into())
            }
            other => Err(format!(
                "unsupported skops node type '{other}' ({module}.{class})"
            )),
        }
    }

    fn dict(&mut self, j: &Json, depth: usize) -> Result<Value, String> {
        let content = j
            .get("content")
            .and_then(Json::as_object)
            .ok_or("skops DictNode without content")?;
        let key_types: Vec<String> = j
            .get("key_types")
            .and_then(|k| k.get("content"))
            .and_then(Json::as_array)
            .map(|a| a.iter().map(|t| s(t, "__class__")).collect())
            .unwrap_or_default();
        let mut out = Vec::with_capacity(content.len());
        for (i, (k, v)) in content.iter().enumerate() {
            let key = match key_types.get(i).map(String::as_str) {
                Some("int") => k
                    .parse::<i64>()
                    .map(Value::Int)
                    .unwrap_or_else(|_| Value::Str(Rc::from(k.as_str()))),
                _ => Value::Str(Rc::from(k.as_str())),
            };
            out.push((key, self.node(v, depth + 1)?));
        }
        Ok(Value::Dict(Rc::new(RefCell::new(out))))
    }

    fn ndarray(&mut self, j: &Json, class: &str, depth: usize) -> Result<Value, String> {
        match j.get("type").and_then(Json::as_str) {
            Some("numpy") => {
                let file = s(j, "file");
                let bytes = read_member(&mut self.zip, &file, self.limit)?;
                let a = parse_npy(&bytes).map_err(|e| format!("skops array {file}: {e}"))?;
                let _ = class; // numpy scalar classes load as 0-d arrays
                Ok(numpy::array_value(a))
            }
            Some("json") => {
                let items = j
                    .get("content")
                    .and_then(Json::as_array)
                    .ok_or("skops json array without content")?
                    .iter()
                    .map(|c| self.node(c, depth + 1))
                    .collect::<Result<Vec<_>, _>>()?;
                let shape = match j.get("shape") {
                    Some(sh) => self
                        .node(sh, depth + 1)?
                        .as_seq()
                        .unwrap_or_default()
                        .iter()
                        .map(|d| d.as_i64().and_then(|d| usize::try_from(d).ok()))
                        .collect::<Option<Vec<usize>>>()
                        .ok_or("skops array shape is not a tuple of sizes")?,
                    None => vec![items.len()],
                };
                // skops writes `arr.tolist()`: an n-d object array (e.g.
                // GradientBoosting's `estimators_`, shape (n_stages, K)) comes
                // as nested lists; flatten them row-major like `np.array`.
                let items = flatten_nested(items, &shape)?;
                let dt = Dtype {
                    kind: 'O',
                    itemsize: 8,
                    big_endian: false,
                    fields: Vec::new(),
                };
                Ok(numpy::array_value(NdArray::from_objects(
                    dt, shape, items, false,
                )?))
            }
            other => Err(format!("unsupported skops array type {other:?}")),
        }
    }
}

/// Flattens nested lists (the `tolist()` of an object array of `shape`) into
/// its row-major items. A 0-d or 1-d shape keeps the items as they are.
fn flatten_nested(items: Vec<Value>, shape: &[usize]) -> Result<Vec<Value>, String> {
    if shape.len() <= 1 {
        return Ok(items);
    }
    if items.len() != shape[0] {
        return Err(format!(
            "skops object array of shape {shape:?} holds {} rows",
            items.len()
        ));
    }
    let mut out = Vec::new();
    for row in items {
        let inner = match &row {
            Value::List(l) => l.borrow().clone(),
            Value::Tuple(t) => t.as_ref().clone(),
            other => {
                return Err(format!(
                    "skops object array of shape {shape:?}: row is {}, expected a list",
                    other.kind()
                ))
            }
        };
        if inner.len() != shape[1] {
            return Err(format!(
                "skops object array of shape {shape:?} has a row of {} items",
                inner.len()
            ));
        }
        out.extend(flatten_nested(inner, &shape[1..])?);
    }
    Ok(out)
}

fn json_scalar(v: &Json) -> Value {
    match v {
        Json::Null => Value::None,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::Str(Rc::from(s.as_str())),
        Json::Array(a) => Value::List(Rc::new(RefCell::new(a.iter().map(json_scalar).collect()))),
        Json::Object(o) => Value::Dict(Rc::new(RefCell::new(
            o.iter()
                .map(|(k, v)| (Value::Str(Rc::from(k.as_str())), json_scalar(v)))
                .collect(),
        ))),
    }
}

/// A Python literal as found in `.npy` headers.
#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Str(String),
    Int(i64),
    Bool(bool),
    None,
    Seq(Vec<Lit>),
    Dict(Vec<(Lit, Lit)>),
}

struct LitParser<'a> {
    b: &'a [u8],
    i: usize,
    depth: usize,
}

impl LitParser<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && (self.b[self.i] as char).is_whitespace() {
            self.i += 1;
        }
    }

    fn parse(&mut self) -> Result<Lit, String> {
        self.depth += 1;
        if self.depth > 32 {
            return Err("npy header nested too deeply".into());
        }
        self.ws();
        let c = *self.b.get(self.i).ok_or("npy header ends early")?;
        let r = match c {
            b'\'' | b'"' => {
                let end = self.b[self.i + 1..]
                    .iter()
                    .position(|&x| x == c)
                    .ok_or("unterminated string in npy header")?;
                let s = String::from_utf8_lossy(&self.b[self.i + 1..self.i + 1 + end]).into_owned();
                self.i += end + 2;
                Lit::Str(s)
            }
            b'(' | b'[' | b'{' => {
                let close = match c {
                    b'(' => b')',
                    b'[' => b']',
                    _ => b'}',
                };
                self.i += 1;
                let mut items = Vec::new();
                let mut pairs = Vec::new();
                loop {
                    self.ws();
                    match self.b.get(self.i) {
                        Some(&x) if x == close => {
                            self.i += 1;
                            break;
                        }
                        Some(b',') => self.i += 1,
                        Some(_) => {
                            let v = self.parse()?;
                            if c == b'{' {
                                self.ws();
                                if self.b.get(self.i) != Some(&b':') {
                                    return Err("expected ':' in npy header".into());
                                }
                                self.i += 1;
                                let val = self.parse()?;
                                pairs.push((v, val));
                            } else {
                                items.push(v);
                            }
                        }
                        None => return Err("npy header ends early".into()),
                    }
                }
                if c == b'{' {
                    Lit::Dict(pairs)
                } else {
                    Lit::Seq(items)
                }
            }
            _ => {
                let start = self.i;
                while self.i < self.b.len()
                    && ((self.b[self.i] as char).is_ascii_alphanumeric()
                        || matches!(self.b[self.i], b'-' | b'_'))
                {
                    self.i += 1;
                }
                let w = std::str::from_utf8(&self.b[start..self.i]).unwrap_or("");
                match w {
                    "True" => Lit::Bool(true),
                    "False" => Lit::Bool(false),
                    "None" => Lit::None,
                    _ => Lit::Int(
                        w.trim_end_matches('L')
                            .parse()
                            .map_err(|_| format!("unexpected '{w}' in npy header"))?,
                    ),
                }
            }
        };
        self.depth -= 1;
        Ok(r)
    }
}

fn descr_dtype(d: &Lit) -> Result<Dtype, String> {
    match d {
        Lit::Str(s) => Dtype::parse(s, true),
        Lit::Seq(fields) => {
            let mut off = 0usize;
            let mut out = Vec::new();
            for f in fields {
                let Lit::Seq(parts) = f else {
                    return Err("bad structured descr in npy header".into());
                };
                let (Some(Lit::Str(name)), Some(t)) = (parts.first(), parts.get(1)) else {
                    return Err("bad structured descr in npy header".into());
                };
                if parts.len() > 2 {
                    return Err("sub-array fields in npy headers are not supported".into());
                }
                let dt = descr_dtype(t)?;
                let size = dt.itemsize;
                if !name.is_empty() {
                    out.push((name.clone(), dt, off));
                }
                off = off.checked_add(size).ok_or("structured dtype too large")?;
            }
            Ok(Dtype {
                kind: 'V',
                itemsize: off,
                big_endian: false,
                fields: out,
            })
        }
        _ => Err("bad descr in npy header".into()),
    }
}

/// Parses a `.npy` file (format versions 1–3, no pickled objects).
pub fn parse_npy(b: &[u8]) -> Result<NdArray, String> {
    if !b.starts_with(b"\x93NUMPY") || b.len() < 10 {
        return Err("not a .npy file".into());
    }
    let (hlen, start): (usize, usize) = match b[6] {
        1 => (usize::from(u16::from_le_bytes([b[8], b[9]])), 10),
        2 | 3 if b.len() >= 12 => (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = b
        .get(start..start.saturating_add(hlen))
        .ok_or(".npy header truncated")?;
    let lit = LitParser {
        b: header,
        i: 0,
        depth: 0,
    }
    .parse()?;
    let Lit::Dict(pairs) = lit else {
        return Err(".npy header is not a dict".into());
    };
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| *key == Lit::Str(k.into()))
            .map(|(_, v)| v)
    };
    let dtype = descr_dtype(get("descr").ok_or(".npy header lacks descr")?)?;
    if dtype.has_object() {
        return Err(".npy object arrays (pickled) are not supported".into());
    }
    let fortran = matches!(get("fortran_order"), Some(Lit::Bool(true)));
    let shape = match get("shape") {
        Some(Lit::Seq(d)) => d
            .iter()
            .map(|x| match x {
                Lit::Int(i) => usize::try_from(*i).map_err(|_| "negative .npy shape".to_string()),
                _ => Err("bad .npy shape".to_string()),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(".npy header lacks shape".into()),
    };
    let data = b[start + hlen..].to_vec();
    NdArray::from_raw(dtype, shape, data, fortran)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_object_rows_flatten() {
        let row =
            |a: i64, b: i64| Value::List(Rc::new(RefCell::new(vec![Value::Int(a), Value::Int(b)])));
        let flat = flatten_nested(vec![row(1, 2), row(3, 4), row(5, 6)], &[3, 2]).unwrap();
        let got: Vec<i64> = flat.iter().map(|v| v.as_i64().unwrap()).collect();
        assert_eq!(got, vec![1, 2, 3, 4, 5, 6]);
        assert!(flatten_nested(vec![row(1, 2)], &[1, 3]).is_err());
        assert!(flatten_nested(vec![Value::Int(1)], &[1, 1]).is_err());
        assert_eq!(flatten_nested(vec![Value::Int(1)], &[1]).unwrap().len(), 1);
    }

    #[test]
    fn npy_header() {
        let header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (2, 1), }";
        let mut f = b"\x93NUMPY\x01\x00".to_vec();
        f.extend((header.len() as u16).to_le_bytes());
        f.extend(header);
        f.extend(1.5f64.to_le_bytes());
        f.extend(2.5f64.to_le_bytes());
        let a = parse_npy(&f).unwrap();
        assert_eq!(a.shape, vec![2, 1]);
        assert_eq!(a.to_f64().unwrap(), vec![1.5, 2.5]);
        f.pop();
        assert!(parse_npy(&f).is_err());
    }
}

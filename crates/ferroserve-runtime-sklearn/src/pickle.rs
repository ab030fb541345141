//! A pickle reader that never executes anything.
//!
//! Written by hand because no crate does this: serde-pickle refuses (or
//! drops) the globals, REDUCE calls and BUILD states that every
//! scikit-learn pickle is made of, and Python's own unpickler *runs* them.
//! This virtual machine interprets protocols 0–5 opcode by opcode, resolves
//! GLOBAL / STACK_GLOBAL against [`crate::allow`] (refusing anything else),
//! and turns REDUCE / NEWOBJ / BUILD into plain [`Object`]s (class name,
//! arguments, state). numpy's constructors (`_reconstruct`, `dtype`,
//! `scalar`, `_frombuffer`) and joblib's `NumpyArrayWrapper` (whose array
//! bytes follow the opcode stream) are rebuilt into arrays.
//!
//! Every length read from the file is checked against the bytes left, so a
//! small file cannot make the reader allocate more than a few times its size.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::allow;
use crate::numpy::{self, Dtype, NdArray};
use crate::value::{dismantle, Object, Value};

/// Parses a complete pickle (or joblib stream, with `joblib` set) and
/// returns its top value.
pub fn load(data: &[u8], joblib: bool) -> Result<Value, String> {
    let mut pos = 0usize;
    let v = Machine::new(data, &mut pos, joblib, 0).run()?;
    Ok(v)
}

/// Largest nesting of pickles inside pickles (joblib object arrays).
const MAX_NESTED: usize = 2;

struct Machine<'a> {
    data: &'a [u8],
    pos: &'a mut usize,
    joblib: bool,
    depth: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
}

impl Drop for Machine<'_> {
    fn drop(&mut self) {
        for v in self.stack.drain(..) {
            dismantle(v);
        }
        for (_, v) in self.memo.drain() {
            dismantle(v);
        }
    }
}

fn obj(class: &str, args: Vec<Value>) -> Value {
    Value::Object(Rc::new(RefCell::new(Object {
        class: Rc::from(class),
        args,
        state: Value::None,
        native: None,
    })))
}

impl<'a> Machine<'a> {
    fn new(data: &'a [u8], pos: &'a mut usize, joblib: bool, depth: usize) -> Self {
        Machine {
            data,
            pos,
            joblib,
            depth,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
        }
    }

    fn err<T>(&self, msg: impl std::fmt::Display) -> Result<T, String> {
        Err(format!("{msg} (at byte {})", *self.pos))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        match end {
            Some(end) => {
                let s = &self.data[*self.pos..end];
                *self.pos = end;
                Ok(s)
            }
            None => self.err(format!(
                "truncated pickle: needs {n} more bytes, {} left",
                self.data.len().saturating_sub(*self.pos)
            )),
        }
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn len(&mut self, n: u64) -> Result<usize, String> {
        usize::try_from(n).or_else(|_| self.err("length too large"))
    }

    fn line_bytes(&mut self) -> Result<&'a [u8], String> {
        let rest = &self.data[*self.pos..];
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return self.err("truncated pickle: unterminated text line");
        };
        *self.pos += end + 1;
        let line = &rest[..end];
        Ok(line.strip_suffix(b"\r").unwrap_or(line))
    }

    fn line(&mut self) -> Result<&'a str, String> {
        let line = self.line_bytes()?;
        std::str::from_utf8(line).or_else(|_| self.err("pickle text line is not UTF-8"))
    }

    fn pop(&mut self) -> Result<Value, String> {
        match self.stack.pop() {
            Some(v) => Ok(v),
            None => self.err("malformed pickle: stack underflow"),
        }
    }

    fn top_mut(&mut self) -> Result<&mut Value, String> {
        if self.stack.is_empty() {
            return self.err("malformed pickle: stack underflow");
        }
        let n = self.stack.len();
        Ok(&mut self.stack[n - 1])
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let Some(m) = self.marks.pop() else {
            return self.err("malformed pickle: no MARK");
        };
        if m > self.stack.len() {
            return self.err("malformed pickle: MARK above stack");
        }
        Ok(self.stack.split_off(m))
    }

    fn memo_get(&mut self, idx: u64) -> Result<(), String> {
        match self.memo.get(&idx) {
            Some(v) => {
                let v = v.clone();
                self.stack.push(v);
                Ok(())
            }
            None => self.err(format!("malformed pickle: memo entry {idx} missing")),
        }
    }

    fn memo_put(&mut self, idx: u64) -> Result<(), String> {
        let v = match self.stack.last() {
            Some(v) => v.clone(),
            None => return self.err("malformed pickle: stack underflow"),
        };
        if let Some(old) = self.memo.insert(idx, v) {
            dismantle(old);
        }
        Ok(())
    }

    fn global(&mut self, module: &str, name: &str) -> Result<(), String> {
        let full = allow::check(module, name)?;
        self.stack.push(Value::Global(Rc::from(full)));
        Ok(())
    }

    fn push_int_bytes(&mut self, b: &[u8]) {
        self.stack.push(int_from_le(b));
    }

    /// Runs until STOP and returns the top of the stack.
    fn run(mut self) -> Result<Value, String> {
        loop {
            let op = self.u8()?;
            match op {
                b'.' => {
                    // STOP
                    let v = self.pop()?;
                    return Ok(v);
                }
                0x80 => {
                    // PROTO
                    let p = self.u8()?;
                    if p > 5 {
                        return self
                            .err(format!("unsupported pickle protocol {p} (supported: 0-5)"));
                    }
                }
                0x95 => {
                    // FRAME: frames only group opcodes; the stream reads the same without them
                    self.u64()?;
                }
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    let v = self.pop()?;
                    dismantle(v);
                }
                b'1' => {
                    for v in self.pop_mark()? {
                        dismantle(v);
                    }
                }
                b'2' => {
                    let v = match self.stack.last() {
                        Some(v) => v.clone(),
                        None => return self.err("malformed pickle: stack underflow"),
                    };
                    self.stack.push(v);
                }
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'J' => {
                    let v = self.u32()? as i32;
                    self.stack.push(Value::Int(i64::from(v)));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(i64::from(v)));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.stack.push(Value::Int(i64::from(v)));
                }
                0x8a => {
                    let n = usize::from(self.u8()?);
                    let b = self.take(n)?;
                    self.push_int_bytes(b);
                }
                0x8b => {
                    let n = self.u32()?;
                    let n = self.len(u64::from(n))?;
                    let b = self.take(n)?;
                    self.push_int_bytes(b);
                }
                b'G' => {
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.stack.push(Value::Float(f64::from_be_bytes(a)));
                }
                b'I' => {
                    let l = self.line()?;
                    let v = match l {
                        "01" => Value::Bool(true),
                        "00" => Value::Bool(false),
                        s => parse_text_int(s).ok_or_else(|| format!("bad INT '{s}'"))?,
                    };
                    self.stack.push(v);
                }
                b'L' => {
                    let l = self.line()?;
                    let s = l.strip_suffix('L').unwrap_or(l);
                    let v = parse_text_int(s).ok_or_else(|| format!("bad LONG '{s}'"))?;
                    self.stack.push(v);
                }
                b'F' => {
                    let l = self.line()?;
                    let f: f64 = l.trim().parse().map_err(|_| format!("bad FLOAT '{l}'"))?;
                    self.stack.push(Value::Float(f));
                }
                0x8c => {
                    let n = usize::from(self.u8()?);
                    let b = self.take(n)?;
                    self.stack
                        .push(Value::Str(Rc::from(String::from_utf8_lossy(b).as_ref())));
                }
                b'X' => {
                    let n = self.u32()?;
                    let n = self.len(u64::from(n))?;
                    let b = self.take(n)?;
                    self.stack
                        .push(Value::Str(Rc::from(String::from_utf8_lossy(b).as_ref())));
                }
                0x8d => {
                    let n = self.u64()?;
                    let n = self.len(n)?;
                    let b = self.take(n)?;
                    self.stack
                        .push(Value::Str(Rc::from(String::from_utf8_lossy(b).as_ref())));
                }
                b'V' => {
                    // raw-unicode-escape: latin-1 bytes with \uXXXX escapes
                    let l: String = self.line_bytes()?.iter().map(|&b| char::from(b)).collect();
                    self.stack
                        .push(Value::Str(Rc::from(unescape_raw_unicode(&l).as_str())));
                }
                b'S' => {
                    let l = self.line()?;
                    let b = unquote_string(l).ok_or_else(|| "bad STRING opcode".to_string())?;
                    self.stack.push(Value::Bytes(Rc::from(b)));
                }
                b'U' | b'C' => {
                    // SHORT_BINSTRING (Python 2 str) / SHORT_BINBYTES
                    let n = usize::from(self.u8()?);
                    let b = self.take(n)?;
                    self.stack.push(Value::Bytes(Rc::from(b)));
                }
                b'T' | b'B' => {
                    let n = self.u32()?;
                    let n = self.len(u64::from(n))?;
                    let b = self.take(n)?;
                    self.stack.push(Value::Bytes(Rc::from(b)));
                }
                0x8e | 0x96 => {
                    // BINBYTES8 / BYTEARRAY8
                    let n = self.u64()?;
                    let n = self.len(n)?;
                    let b = self.take(n)?;
                    self.stack.push(Value::Bytes(Rc::from(b)));
                }
                0x97 => return self.err("refusing pickle with out-of-band buffers (NEXT_BUFFER)"),
                0x98 => {} // READONLY_BUFFER: no-op on in-band data
                b')' => self.stack.push(Value::Tuple(Rc::new(Vec::new()))),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(Rc::new(items)));
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n {
                        return self.err("malformed pickle: stack underflow");
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(Rc::new(items)));
                }
                b']' => self
                    .stack
                    .push(Value::List(Rc::new(RefCell::new(Vec::new())))),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(Rc::new(RefCell::new(items))));
                }
                0x8f => self
                    .stack
                    .push(Value::List(Rc::new(RefCell::new(Vec::new())))),
                0x91 => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(Rc::new(RefCell::new(items))));
                }
                b'}' => self
                    .stack
                    .push(Value::Dict(Rc::new(RefCell::new(Vec::new())))),
                b'd' => {
                    let items = self.pop_mark()?;
                    let d = Value::Dict(Rc::new(RefCell::new(Vec::new())));
                    self.set_items(&d, items)?;
                    self.stack.push(d);
                }
                b'a' => {
                    let v = self.pop()?;
                    let target = self.top_mut()?.clone();
                    self.append(&target, vec![v])?;
                }
                b'e' | 0x90 => {
                    let items = self.pop_mark()?;
                    let target = self.top_mut()?.clone();
                    self.append(&target, items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let target = self.top_mut()?.clone();
                    self.set_items(&target, vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let target = self.top_mut()?.clone();
                    self.set_items(&target, items)?;
                }
                b'g' => {
                    let l = self.line()?;
                    let i: u64 = l.trim().parse().map_err(|_| format!("bad GET '{l}'"))?;
                    self.memo_get(i)?;
                }
                b'h' => {
                    let i = self.u8()?;
                    self.memo_get(u64::from(i))?;
                }
                b'j' => {
                    let i = self.u32()?;
                    self.memo_get(u64::from(i))?;
                }
                b'p' => {
                    let l = self.line()?;
                    let i: u64 = l.trim().parse().map_err(|_| format!("bad PUT '{l}'"))?;
                    self.memo_put(i)?;
                }
                b'q' => {
                    let i = self.u8()?;
                    self.memo_put(u64::from(i))?;
                }
                b'r' => {
                    let i = self.u32()?;
                    self.memo_put(u64::from(i))?;
                }
                0x94 => {
                    let i = self.memo.len() as u64;
                    self.memo_put(i)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.global(module, name)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module.as_str(), name.as_str()) {
                        (Some(m), Some(n)) => {
                            let (m, n) = (m.to_string(), n.to_string());
                            self.global(&m, &n)?;
                        }
                        _ => return self.err("malformed pickle: STACK_GLOBAL needs two strings"),
                    }
                }
                b'i' => {
                    // INST module\nname\n with MARKed args
                    let module = self.line()?;
                    let name = self.line()?;
                    let class = allow::check(module, name)?;
                    let args = self.pop_mark()?;
                    self.stack.push(obj(&class, args));
                }
                b'o' => {
                    let mut items = self.pop_mark()?;
                    if items.is_empty() {
                        return self.err("malformed pickle: OBJ without class");
                    }
                    let cls = items.remove(0);
                    let v = self.call(cls, items)?;
                    self.stack.push(v);
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let args = match args {
                        Value::Tuple(t) => Rc::try_unwrap(t).unwrap_or_else(|t| t.as_ref().clone()),
                        other => {
                            dismantle(other);
                            return self.err("malformed pickle: REDUCE arguments are not a tuple");
                        }
                    };
                    let v = self.call(callable, args)?;
                    self.stack.push(v);
                }
                0x81 => {
                    // NEWOBJ cls args: cls.__new__(cls, *args)
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let args = args.as_seq().unwrap_or_default();
                    let v = self.new_object(&cls, args)?;
                    self.stack.push(v);
                }
                0x92 => {
                    let _kwargs = self.pop()?;
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let args = args.as_seq().unwrap_or_default();
                    let v = self.new_object(&cls, args)?;
                    self.stack.push(v);
                }
                b'b' => {
                    let state = self.pop()?;
                    let target = self.top_mut()?.clone();
                    self.build(&target, state)?;
                    if self.joblib && is_array_wrapper(&target) {
                        let arr = self.read_wrapped_array(&target)?;
                        let top = self.top_mut()?;
                        *top = arr;
                    }
                }
                b'P' | b'Q' => {
                    return self.err("refusing pickle with persistent ids (PERSID/BINPERSID)")
                }
                0x82..=0x84 => {
                    return self.err("refusing pickle with extension-registry codes (EXT1/2/4)")
                }
                other => return self.err(format!("unknown pickle opcode 0x{other:02x}")),
            }
        }
    }

    fn append(&mut self, target: &Value, items: Vec<Value>) -> Result<(), String> {
        match target {
            Value::List(l) => match l.try_borrow_mut() {
                Ok(mut l) => {
                    l.extend(items);
                    Ok(())
                }
                Err(_) => self.err("malformed pickle: list busy"),
            },
            Value::Object(o) => match o.try_borrow_mut() {
                // list subclasses: keep the items as arguments
                Ok(mut o) => {
                    o.args.extend(items);
                    Ok(())
                }
                Err(_) => self.err("malformed pickle: object busy"),
            },
            other => self.err(format!("malformed pickle: APPEND to {}", other.kind())),
        }
    }

    fn set_items(&mut self, target: &Value, items: Vec<Value>) -> Result<(), String> {
        if items.len() % 2 != 0 {
            return self.err("malformed pickle: odd number of dict items");
        }
        let dict = match target {
            Value::Dict(d) => d.clone(),
            Value::Object(o) => {
                // dict subclasses (OrderedDict, Bunch): the items become the state
                let Ok(mut o) = o.try_borrow_mut() else {
                    return self.err("malformed pickle: object busy");
                };
                if !matches!(o.state, Value::Dict(_)) {
                    o.state = Value::Dict(Rc::new(RefCell::new(Vec::new())));
                }
                match &o.state {
                    Value::Dict(d) => d.clone(),
                    _ => return self.err("malformed pickle: object state"),
                }
            }
            other => return self.err(format!("malformed pickle: SETITEM on {}", other.kind())),
        };
        let Ok(mut d) = dict.try_borrow_mut() else {
            return self.err("malformed pickle: dict busy");
        };
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            d.push((k, v));
        }
        Ok(())
    }

    fn new_object(&mut self, cls: &Value, args: Vec<Value>) -> Result<Value, String> {
        match cls {
            Value::Global(name) => Ok(match &**name {
                "builtins.object" | "__builtin__.object" => obj(name, args),
                "collections.OrderedDict" | "builtins.dict" => {
                    Value::Dict(Rc::new(RefCell::new(Vec::new())))
                }
                "builtins.set" | "builtins.frozenset" | "builtins.list" => {
                    Value::List(Rc::new(RefCell::new(Vec::new())))
                }
                _ => obj(name, args),
            }),
            other => self.err(format!("malformed pickle: NEWOBJ on {}", other.kind())),
        }
    }

    /// What calling an allow-listed global with `args` would have produced,
    /// as data.
    fn call(&mut self, callable: Value, mut args: Vec<Value>) -> Result<Value, String> {
        let Value::Global(name) = &callable else {
            return self.err(format!("malformed pickle: REDUCE on {}", callable.kind()));
        };
        let name = name.clone();
        match &*name {
            "copyreg._reconstructor" | "copy_reg._reconstructor" => match args.first() {
                Some(Value::Global(cls)) => Ok(obj(cls, Vec::new())),
                _ => self.err("malformed pickle: _reconstructor without a class"),
            },
            "_codecs.encode" => {
                // protocol 2 encodes bytes as _codecs.encode(str, 'latin1')
                let s = args.first().and_then(|v| v.as_str()).unwrap_or("");
                let enc = args.get(1).and_then(|v| v.as_str()).unwrap_or("utf-8");
                let bytes: Vec<u8> =
                    if enc.eq_ignore_ascii_case("latin1") || enc.eq_ignore_ascii_case("latin-1") {
                        s.chars().map(|c| c as u32 as u8).collect()
                    } else {
                        s.as_bytes().to_vec()
                    };
                Ok(Value::Bytes(Rc::from(bytes)))
            }
            "builtins.set"
            | "builtins.frozenset"
            | "__builtin__.set"
            | "__builtin__.frozenset"
            | "builtins.list"
            | "builtins.tuple" => {
                let items = args.first().and_then(Value::as_seq).unwrap_or_default();
                Ok(Value::List(Rc::new(RefCell::new(items))))
            }
            "builtins.bytearray" => match args.first() {
                Some(Value::Bytes(b)) => Ok(Value::Bytes(b.clone())),
                _ => Ok(Value::Bytes(Rc::from(Vec::new()))),
            },
            "collections.OrderedDict" | "builtins.dict" => {
                let d = Value::Dict(Rc::new(RefCell::new(Vec::new())));
                if let Some(items) = args.first().and_then(Value::as_seq) {
                    let mut flat = Vec::new();
                    for pair in items {
                        let p = pair.as_seq().unwrap_or_default();
                        if p.len() == 2 {
                            flat.extend(p);
                        }
                    }
                    self.set_items(&d, flat)?;
                }
                Ok(d)
            }
            "numpy.dtype" => {
                let s = args.first().and_then(|v| v.as_str()).unwrap_or("");
                let dt = Dtype::parse(s, false)?;
                let o = obj(&name, Vec::new());
                if let Value::Object(o) = &o {
                    o.borrow_mut().native = Some(Value::Dtype(Rc::new(dt)));
                }
                Ok(o)
            }
            "numpy.core.multiarray._reconstruct" | "numpy._core.multiarray._reconstruct" => {
                Ok(obj("numpy.ndarray", Vec::new()))
            }
            "numpy.core.multiarray.scalar" | "numpy._core.multiarray.scalar" => {
                let dt = args
                    .first()
                    .and_then(Value::as_dtype)
                    .ok_or_else(|| "numpy scalar without a dtype".to_string())?;
                match args.get(1) {
                    Some(Value::Bytes(b)) => {
                        let a = NdArray::from_raw((*dt).clone(), Vec::new(), b.to_vec(), false)?;
                        Ok(numpy::array_value(a))
                    }
                    // object scalars carry the object itself
                    Some(v) => Ok(v.clone()),
                    None => self.err("numpy scalar without data"),
                }
            }
            "numpy.core.numeric._frombuffer" | "numpy._core.numeric._frombuffer" => {
                // _frombuffer(buffer, dtype, shape, order)
                if args.len() < 4 {
                    return self.err("numpy _frombuffer needs 4 arguments");
                }
                let order = args[3].as_str().unwrap_or("C").to_string();
                let shape = shape_of(&args[2])?;
                let dt = args[1]
                    .as_dtype()
                    .ok_or_else(|| "numpy _frombuffer without a dtype".to_string())?;
                let Value::Bytes(b) = std::mem::take(&mut args[0]) else {
                    return self.err("numpy _frombuffer without a buffer");
                };
                let a = NdArray::from_raw((*dt).clone(), shape, b.to_vec(), order == "F")?;
                Ok(numpy::array_value(a))
            }
            _ => {
                // Anything else allow-listed (scikit-learn classes, Cython
                // unpickle helpers, RandomState constructors): plain data.
                if let Some(cls) = name
                    .rsplit('.')
                    .next()
                    .and_then(|n| n.strip_prefix("__pyx_unpickle_"))
                {
                    let module = name.rsplit_once('.').map_or("", |(m, _)| m);
                    let o = obj(&format!("{module}.{cls}"), Vec::new());
                    // __pyx_unpickle_X(type, checksum, state): the state is the third argument
                    if let (Value::Object(ob), Some(state)) = (&o, args.get(2)) {
                        ob.borrow_mut().state = state.clone();
                    }
                    return Ok(o);
                }
                if name.ends_with(".newObj") {
                    if let Some(Value::Global(cls)) = args.first() {
                        return Ok(obj(cls, Vec::new()));
                    }
                }
                Ok(obj(&name, args))
            }
        }
    }

    fn build(&mut self, target: &Value, state: Value) -> Result<(), String> {
        let Value::Object(o) = target else {
            return self.err(format!("malformed pickle: BUILD on {}", target.kind()));
        };
        let class = o
            .try_borrow()
            .map_err(|_| "object busy".to_string())?
            .class
            .clone();
        match &*class {
            "numpy.ndarray" => {
                let arr = build_ndarray(&state)?;
                dismantle(state);
                o.borrow_mut().native = Some(arr);
            }
            "numpy.dtype" => {
                let mut b = o.borrow_mut();
                let mut dt = b
                    .native
                    .as_ref()
                    .and_then(Value::as_dtype)
                    .map(|d| (*d).clone());
                if let Some(dt) = dt.as_mut() {
                    dt.apply_state(&state)?;
                    b.native = Some(Value::Dtype(Rc::new(dt.clone())));
                }
                drop(b);
                dismantle(state);
            }
            _ => {
                let mut b = o.try_borrow_mut().map_err(|_| "object busy".to_string())?;
                let old = std::mem::replace(&mut b.state, state);
                drop(b);
                dismantle(old);
            }
        }
        Ok(())
    }

    /// Reads the array joblib wrote after a `NumpyArrayWrapper`'s BUILD.
    fn read_wrapped_array(&mut self, wrapper: &Value) -> Result<Value, String> {
        let w = wrapper.as_object().ok_or("bad NumpyArrayWrapper")?;
        let w = w.borrow();
        let shape = shape_of(&w.attr("shape").unwrap_or_default())?;
        let dtype = w
            .attr("dtype")
            .and_then(|d| d.as_dtype())
            .ok_or_else(|| "joblib NumpyArrayWrapper without a dtype".to_string())?;
        let fortran = w
            .attr("order")
            .and_then(|o| o.as_str().map(|s| s == "F"))
            .unwrap_or(false);
        let aligned = w
            .attr("numpy_array_alignment_bytes")
            .is_some_and(|v| !v.is_none());
        drop(w);
        if dtype.has_object() {
            if self.depth >= MAX_NESTED {
                return self.err("joblib object arrays nested too deeply");
            }
            // a nested, plain pickle of the whole array
            let v = Machine::new(self.data, self.pos, false, self.depth + 1).run()?;
            if v.as_array().is_none() {
                let kind = v.kind();
                dismantle(v);
                return self.err(format!("joblib object array holds {kind}, not an array"));
            }
            return Ok(v);
        }
        if aligned {
            let pad = self.u8()?;
            self.take(usize::from(pad))?;
        }
        let n = numpy::count(&shape)?;
        let bytes = n
            .checked_mul(dtype.itemsize)
            .ok_or_else(|| format!("array shape {shape:?} is too large"))?;
        let raw = self.take(bytes)?.to_vec();
        let a = NdArray::from_raw((*dtype).clone(), shape, raw, fortran)?;
        Ok(numpy::array_value(a))
    }
}

fn is_array_wrapper(v: &Value) -> bool {
    match v {
        Value::Object(o) => o
            .try_borrow()
            .map(|o| o.class.ends_with("numpy_pickle.NumpyArrayWrapper"))
            .unwrap_or(false),
        _ => false,
    }
}

/// A shape tuple.
fn shape_of(v: &Value) -> Result<Vec<usize>, String> {
    let items = v
        .as_seq()
        .or_else(|| v.as_i64().map(|i| vec![Value::Int(i)]))
        .ok_or_else(|| format!("array shape is {}, not a tuple", v.kind()))?;
    items
        .iter()
        .map(|d| {
            d.as_i64()
                .and_then(|d| usize::try_from(d).ok())
                .ok_or_else(|| "array shape holds a negative or non-integer size".to_string())
        })
        .collect()
}

/// `ndarray.__setstate__((version, shape, dtype, is_fortran, rawdata))`.
fn build_ndarray(state: &Value) -> Result<Value, String> {
    let items = state.as_seq().ok_or("numpy array state is not a tuple")?;
    let (shape, dtype, fortran, data) = match items.len() {
        5 => (&items[1], &items[2], &items[3], &items[4]),
        4 => (&items[0], &items[1], &items[2], &items[3]),
        n => return Err(format!("numpy array state has {n} items, expected 4 or 5")),
    };
    let shape = shape_of(shape)?;
    let dtype = dtype
        .as_dtype()
        .ok_or("numpy array state without a dtype")?;
    let fortran = fortran.as_bool().unwrap_or(false);
    let a = if dtype.has_object() {
        let items = data
            .as_seq()
            .ok_or("numpy object array state is not a list")?;
        NdArray::from_objects((*dtype).clone(), shape, items, fortran)?
    } else {
        let raw = match data {
            Value::Bytes(b) => b.to_vec(),
            Value::Str(s) => s.chars().map(|c| c as u32 as u8).collect(), // Python 2 str
            other => return Err(format!("numpy array data is {}", other.kind())),
        };
        NdArray::from_raw((*dtype).clone(), shape, raw, fortran)?
    };
    Ok(numpy::array_value(a))
}

/// A little-endian two's complement integer.
fn int_from_le(b: &[u8]) -> Value {
    if b.is_empty() {
        return Value::Int(0);
    }
    if b.len() <= 8 {
        let neg = b[b.len() - 1] & 0x80 != 0;
        let mut a = [if neg { 0xff } else { 0 }; 8];
        a[..b.len()].copy_from_slice(b);
        return Value::Int(i64::from_le_bytes(a));
    }
    let neg = b[b.len() - 1] & 0x80 != 0;
    let mut f = 0.0f64;
    for &byte in b.iter().rev() {
        let byte = if neg { !byte } else { byte };
        f = f * 256.0 + f64::from(byte);
    }
    Value::BigInt(if neg { -(f + 1.0) } else { f })
}

fn parse_text_int(s: &str) -> Option<Value> {
    let s = s.trim();
    if let Ok(i) = s.parse::<i64>() {
        return Some(Value::Int(i));
    }
    let f: f64 = s.parse().ok()?;
    Some(Value::BigInt(f))
}

/// Protocol 0 `STRING`: a quoted Python 2 repr with backslash escapes.
fn unquote_string(l: &str) -> Option<Vec<u8>> {
    let b = l.as_bytes();
    if b.len() < 2 || b[0] != b[b.len() - 1] || !matches!(b[0], b'\'' | b'"') {
        return None;
    }
    let inner = &b[1..b.len() - 1];
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        let c = inner[i];
        if c == b'\\' && i + 1 < inner.len() {
            i += 1;
            match inner[i] {
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'r' => out.push(b'\r'),
                b'x' if i + 2 < inner.len() => {
                    let h = std::str::from_utf8(&inner[i + 1..i + 3]).ok()?;
                    out.push(u8::from_str_radix(h, 16).ok()?);
                    i += 2;
                }
                other => out.push(other),
            }
        } else {
            out.push(c);
        }
        i += 1;
    }
    Some(out)
}

/// Protocol 0 `UNICODE`: raw-unicode-escape (`\uXXXX`, `\UXXXXXXXX`).
fn unescape_raw_unicode(l: &str) -> String {
    let mut out = String::with_capacity(l.len());
    let mut chars = l.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && matches!(chars.peek(), Some('u' | 'U')) {
            let n = if chars.next() == Some('u') { 4 } else { 8 };
            let hex: String = chars.by_ref().take(n).collect();
            match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                Some(ch) => out.push(ch),
                None => out.push('\u{fffd}'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_os_system_before_reduce() {
        // protocol 2: GLOBAL 'posix system', args, REDUCE
        let p = b"\x80\x02cposix\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.";
        let e = load(p, false).unwrap_err();
        assert!(e.contains("posix.system"), "{e}");
    }

    #[test]
    fn basic_values() {
        // pickle.dumps({'a': [1, 2.5, None], 'b': (True, 'x')}, protocol=4)
        let p = b"\x80\x04\x95%\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01a\x94]\x94(K\x01G@\x04\x00\x00\x00\x00\x00\x00Ne\x8c\x01b\x94\x88\x8c\x01x\x94\x86\x94u.";
        let v = load(p, false).unwrap();
        let Value::Dict(d) = v else { panic!() };
        assert_eq!(d.borrow().len(), 2);
    }

    #[test]
    fn truncated_is_error() {
        assert!(load(b"\x80\x04\x8c\x05ab", false)
            .unwrap_err()
            .contains("truncated"));
        assert!(load(b"", false).is_err());
        // huge BINBYTES8 length in a tiny file
        assert!(load(b"\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\x7f", false).is_err());
    }

    #[test]
    fn deep_nesting_drops_without_recursion() {
        // 200k nested 1-tuples: ( ( ( ... ) ) )
        let mut p = vec![0x80, 4, b'N'];
        p.extend(std::iter::repeat_n(0x85u8, 200_000));
        p.push(b'.');
        let v = load(&p, false).unwrap();
        dismantle(v);
    }

    #[test]
    fn big_ints() {
        assert!(matches!(int_from_le(&[0xff]), Value::Int(-1)));
        assert!(matches!(int_from_le(&[0x00, 0x01]), Value::Int(256)));
        assert!(matches!(int_from_le(&[0; 9]), Value::BigInt(_)));
    }
}

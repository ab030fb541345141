//! The plain data a pickle (or a skops file) is rebuilt into: Python
//! scalars, containers, references to allow-listed classes, objects (a
//! class name, constructor arguments and a state) and numpy arrays. Nothing
//! here can run code.
//!
//! Containers are shared (`Rc`) because pickles share objects through their
//! memo and mutate them after creation (APPENDS, SETITEMS, BUILD). Dropping
//! a deep tree recursively could overflow the stack, so every owner of a
//! tree takes it apart iteratively with [`dismantle`].

use std::cell::RefCell;
use std::rc::Rc;

use crate::numpy::{Dtype, NdArray};

/// A shared, mutable list of values.
pub type List = Rc<RefCell<Vec<Value>>>;
/// A shared, mutable dict (insertion ordered key/value pairs).
pub type Dict = Rc<RefCell<Vec<(Value, Value)>>>;

/// One rebuilt Python value.
#[derive(Debug, Clone, Default)]
pub enum Value {
    /// `None`.
    #[default]
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An integer that fits in 64 bits.
    Int(i64),
    /// An integer too large for 64 bits (kept only as an approximation).
    BigInt(f64),
    /// A float.
    Float(f64),
    /// A `str`.
    Str(Rc<str>),
    /// A `bytes` or `bytearray`.
    Bytes(Rc<[u8]>),
    /// A tuple (immutable once built).
    Tuple(Rc<Vec<Value>>),
    /// A list, set or frozenset.
    List(List),
    /// A dict.
    Dict(Dict),
    /// A reference to an allow-listed class or function, `module.name`.
    Global(Rc<str>),
    /// An instance of an allow-listed class.
    Object(Rc<RefCell<Object>>),
    /// A numpy array (or numpy scalar, as a 0-d array).
    Array(Rc<NdArray>),
    /// A numpy dtype.
    Dtype(Rc<Dtype>),
}

/// An instance: what `cls(*args)` followed by `__setstate__(state)` would
/// have built, kept as data.
#[derive(Debug, Default)]
pub struct Object {
    /// Fully qualified class name (`sklearn.tree._tree.Tree`).
    pub class: Rc<str>,
    /// Constructor arguments (REDUCE / NEWOBJ).
    pub args: Vec<Value>,
    /// The BUILD state: usually a dict of attributes.
    pub state: Value,
    /// What a numpy constructor rebuilt once its state arrived.
    pub native: Option<Value>,
}

impl Object {
    /// The short class name (`Tree`).
    pub fn short_name(&self) -> &str {
        short_name(&self.class)
    }

    /// Attribute `name` from the state dict (or the dict part of a
    /// `(dict, slots)` state).
    pub fn attr(&self, name: &str) -> Option<Value> {
        let dict = match &self.state {
            Value::Dict(d) => d.clone(),
            Value::Tuple(t) => match t.first() {
                Some(Value::Dict(d)) => d.clone(),
                _ => return None,
            },
            _ => return None,
        };
        let d = dict.borrow();
        d.iter()
            .find(|(k, _)| matches!(k, Value::Str(s) if &**s == name))
            .map(|(_, v)| v.clone())
    }
}

/// The last dotted component of a qualified name.
pub fn short_name(qualified: &str) -> &str {
    qualified.rsplit('.').next().unwrap_or(qualified)
}

impl Value {
    /// A short description of the value's kind, for error messages (never
    /// its content, which may be huge or deep).
    pub fn kind(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) | Value::BigInt(_) => "int".into(),
            Value::Float(_) => "float".into(),
            Value::Str(_) => "str".into(),
            Value::Bytes(_) => "bytes".into(),
            Value::Tuple(_) => "tuple".into(),
            Value::List(_) => "list".into(),
            Value::Dict(_) => "dict".into(),
            Value::Global(g) => format!("reference to {g}"),
            Value::Object(o) => match o.try_borrow() {
                Ok(o) => format!("{} object", o.class),
                Err(_) => "object".into(),
            },
            Value::Array(a) => format!("numpy array of {} {:?}", a.dtype.describe(), a.shape),
            Value::Dtype(_) => "numpy dtype".into(),
        }
    }

    /// The string, for `str` values.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as an integer (bools, ints, integral floats, numpy integer
    /// scalars).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Bool(b) => Some(i64::from(*b)),
            Value::Int(i) => Some(*i),
            Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
            Value::Array(a) if a.shape.is_empty() => a.scalar_i64(),
            Value::Object(o) => o.try_borrow().ok()?.native.as_ref()?.as_i64(),
            _ => None,
        }
    }

    /// The value as a float (numbers and numpy scalars).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            Value::Int(i) => Some(*i as f64),
            Value::BigInt(f) | Value::Float(f) => Some(*f),
            Value::Array(a) if a.shape.is_empty() => a.scalar_f64(),
            Value::Object(o) => o.try_borrow().ok()?.native.as_ref()?.as_f64(),
            _ => None,
        }
    }

    /// The value as a bool (bools, numpy bool scalars, ints).
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            other => other.as_i64().map(|i| i != 0),
        }
    }

    /// The array, for arrays and objects a numpy constructor rebuilt.
    pub fn as_array(&self) -> Option<Rc<NdArray>> {
        match self {
            Value::Array(a) => Some(a.clone()),
            Value::Object(o) => o.try_borrow().ok()?.native.as_ref()?.as_array(),
            _ => None,
        }
    }

    /// The dtype, for dtypes and objects a numpy constructor rebuilt.
    pub fn as_dtype(&self) -> Option<Rc<Dtype>> {
        match self {
            Value::Dtype(d) => Some(d.clone()),
            Value::Object(o) => o.try_borrow().ok()?.native.as_ref()?.as_dtype(),
            _ => None,
        }
    }

    /// The object, for instances of classes (not numpy rebuilt values).
    pub fn as_object(&self) -> Option<Rc<RefCell<Object>>> {
        match self {
            Value::Object(o) => Some(o.clone()),
            _ => None,
        }
    }

    /// The items of a tuple or list (a snapshot).
    pub fn as_seq(&self) -> Option<Vec<Value>> {
        match self {
            Value::Tuple(t) => Some(t.as_ref().clone()),
            Value::List(l) => Some(l.try_borrow().ok()?.clone()),
            Value::Array(a) => a.objects().map(|o| o.to_vec()),
            Value::Object(o) => {
                let native = o.try_borrow().ok()?.native.clone()?;
                native.as_seq()
            }
            _ => None,
        }
    }

    /// True for `None`.
    pub fn is_none(&self) -> bool {
        matches!(self, Value::None)
    }
}

/// Takes a value tree apart without recursion: every container whose last
/// reference is dropped here has its children moved onto a work list first,
/// so that no drop ever recurses. Cycles are left alone (they leak, bounded
/// by the file size; they cannot recurse).
pub fn dismantle(root: Value) {
    let mut work = vec![root];
    while let Some(v) = work.pop() {
        match v {
            Value::Tuple(rc) => {
                if let Ok(items) = Rc::try_unwrap(rc) {
                    work.extend(items);
                }
            }
            Value::List(rc) => {
                if let Ok(cell) = Rc::try_unwrap(rc) {
                    work.extend(cell.into_inner());
                }
            }
            Value::Dict(rc) => {
                if let Ok(cell) = Rc::try_unwrap(rc) {
                    for (k, v) in cell.into_inner() {
                        work.push(k);
                        work.push(v);
                    }
                }
            }
            Value::Object(rc) => {
                if let Ok(cell) = Rc::try_unwrap(rc) {
                    let o = cell.into_inner();
                    work.extend(o.args);
                    work.push(o.state);
                    work.extend(o.native);
                }
            }
            Value::Array(rc) => {
                if let Ok(a) = Rc::try_unwrap(rc) {
                    work.extend(a.into_objects());
                }
            }
            _ => {}
        }
    }
}

/// A value tree that is taken apart iteratively when dropped.
#[derive(Debug, Default)]
pub struct Tree(pub Value);

impl Drop for Tree {
    fn drop(&mut self) {
        dismantle(std::mem::take(&mut self.0));
    }
}

//! Reading fitted attributes out of rebuilt objects, with errors that name
//! the class and attribute (a pickle whose layout doesn't match what this
//! runtime knows fails here, clearly).

use std::cell::RefCell;
use std::rc::Rc;

use crate::numpy::NdArray;
use crate::value::{Object, Value};

/// Errors while turning a value tree into estimators.
pub type BResult<T> = Result<T, String>;

/// A rebuilt object with typed attribute accessors.
#[derive(Clone)]
pub struct Obj {
    /// The short class name (`LogisticRegression`).
    pub class: String,
    inner: Rc<RefCell<Object>>,
}

/// A dense numeric array read from an attribute: data in C order and shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Arr {
    /// Elements, C order.
    pub data: Vec<f64>,
    /// Shape.
    pub shape: Vec<usize>,
}

impl Arr {
    /// Rows × columns of a 2-d array; a 1-d array counts as one row.
    pub fn dims2(&self) -> (usize, usize) {
        match self.shape.as_slice() {
            [] => (1, 1),
            [n] => (1, *n),
            [r, c] => (*r, *c),
            s => (s[0], s[1..].iter().product()),
        }
    }
}

/// Class labels (`classes_`).
#[derive(Debug, Clone, PartialEq)]
pub enum Labels {
    /// Integer (or bool) labels: INT64 output.
    Int(Vec<i64>),
    /// Float labels: FP64 output.
    Float(Vec<f64>),
    /// String labels: BYTES output.
    Str(Vec<String>),
}

impl Labels {
    /// Number of classes.
    pub fn len(&self) -> usize {
        match self {
            Labels::Int(v) => v.len(),
            Labels::Float(v) => v.len(),
            Labels::Str(v) => v.len(),
        }
    }

    /// True when there are no classes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads labels from an array.
    pub fn from_array(a: &NdArray) -> BResult<Labels> {
        if a.is_strings() {
            return a
                .to_strings()
                .map(Labels::Str)
                .ok_or_else(|| "bad string labels".into());
        }
        match a.dtype.kind {
            'i' | 'u' | 'b' => Ok(Labels::Int(a.to_i64()?)),
            'f' => Ok(Labels::Float(a.to_f64()?)),
            'O' => match a.to_i64() {
                Ok(v) => Ok(Labels::Int(v)),
                Err(_) => Ok(Labels::Float(a.to_f64().map_err(|_| {
                    "class labels mix types (supported: all ints, all floats or all strings)"
                        .to_string()
                })?)),
            },
            _ => Err(format!(
                "unsupported class label dtype {}",
                a.dtype.describe()
            )),
        }
    }
}

impl Obj {
    /// Wraps a value that must be an object; `what` names it in errors.
    pub fn from_value(v: &Value, what: &str) -> BResult<Obj> {
        match v {
            Value::Object(o) => {
                let class = o
                    .try_borrow()
                    .map_err(|_| format!("{what}: object busy"))?
                    .short_name()
                    .to_string();
                Ok(Obj {
                    class,
                    inner: o.clone(),
                })
            }
            other => Err(format!(
                "{what} is {}, expected an estimator object",
                other.kind()
            )),
        }
    }

    /// The fully qualified class name.
    pub fn qualified(&self) -> String {
        self.inner.borrow().class.to_string()
    }

    /// The constructor arguments.
    pub fn args(&self) -> Vec<Value> {
        self.inner.borrow().args.clone()
    }

    /// The raw state value.
    pub fn state(&self) -> Value {
        self.inner.borrow().state.clone()
    }

    /// Attribute `name`, if present.
    pub fn get(&self, name: &str) -> Option<Value> {
        self.inner.borrow().attr(name)
    }

    fn missing(&self, name: &str) -> String {
        format!(
            "{} lacks attribute '{name}': the file's layout does not match the scikit-learn versions this runtime reads (is the estimator fitted?)",
            self.class
        )
    }

    /// Attribute `name`, required.
    pub fn req(&self, name: &str) -> BResult<Value> {
        self.get(name).ok_or_else(|| self.missing(name))
    }

    /// A numeric array attribute (scalars count as 0-d arrays).
    pub fn arr(&self, name: &str) -> BResult<Arr> {
        let v = self.req(name)?;
        value_arr(&v).map_err(|e| format!("{}.{name}: {e}", self.class))
    }

    /// An optional numeric array attribute (absent or None → None).
    pub fn opt_arr(&self, name: &str) -> BResult<Option<Arr>> {
        match self.get(name) {
            None | Some(Value::None) => Ok(None),
            Some(v) => value_arr(&v)
                .map(Some)
                .map_err(|e| format!("{}.{name}: {e}", self.class)),
        }
    }

    /// A float attribute.
    pub fn f64(&self, name: &str) -> BResult<f64> {
        self.req(name)?
            .as_f64()
            .ok_or_else(|| format!("{}.{name} is not a number", self.class))
    }

    /// An integer attribute.
    pub fn int(&self, name: &str) -> BResult<i64> {
        self.req(name)?
            .as_i64()
            .ok_or_else(|| format!("{}.{name} is not an integer", self.class))
    }

    /// A non-negative integer attribute.
    pub fn usize(&self, name: &str) -> BResult<usize> {
        usize::try_from(self.int(name)?).map_err(|_| format!("{}.{name} is negative", self.class))
    }

    /// A string attribute, if present and a string.
    pub fn str_opt(&self, name: &str) -> Option<String> {
        self.get(name).and_then(|v| v.as_str().map(str::to_string))
    }

    /// A bool attribute with a default.
    pub fn bool_or(&self, name: &str, default: bool) -> bool {
        self.get(name).and_then(|v| v.as_bool()).unwrap_or(default)
    }

    /// `classes_` as labels.
    pub fn labels(&self, name: &str) -> BResult<Labels> {
        let v = self.req(name)?;
        let a = v
            .as_array()
            .ok_or_else(|| format!("{}.{name} is {}, not an array", self.class, v.kind()))?;
        let l = Labels::from_array(&a).map_err(|e| format!("{}.{name}: {e}", self.class))?;
        if l.is_empty() {
            return Err(format!("{}.{name} is empty", self.class));
        }
        Ok(l)
    }

    /// `n_features_in_` when present and plausible (at most
    /// [`MAX_FEATURES`]; a larger count can only come from a corrupt file,
    /// and sizing buffers by it would allocate without bound).
    pub fn n_features_in(&self) -> Option<usize> {
        self.get("n_features_in_")
            .and_then(|v| v.as_i64())
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n <= MAX_FEATURES)
    }

    /// `feature_names_in_` when present.
    pub fn feature_names(&self) -> Option<Vec<String>> {
        self.get("feature_names_in_")?.as_array()?.to_strings()
    }
}

/// The most input features a model may declare (`n_features_in_`): far
/// above any dense model (one row would be 128 MiB of FP64).
pub const MAX_FEATURES: usize = 1 << 24;

/// A numeric array (or scalar) value as f64 data and shape.
pub fn value_arr(v: &Value) -> BResult<Arr> {
    if let Some(a) = v.as_array() {
        return Ok(Arr {
            data: a.to_f64()?,
            shape: a.shape.clone(),
        });
    }
    if let Some(f) = v.as_f64() {
        return Ok(Arr {
            data: vec![f],
            shape: Vec::new(),
        });
    }
    if let Some(items) = v.as_seq() {
        let data = items
            .iter()
            .map(Value::as_f64)
            .collect::<Option<Vec<f64>>>()
            .ok_or_else(|| "list holds non-numbers".to_string())?;
        let n = data.len();
        return Ok(Arr {
            data,
            shape: vec![n],
        });
    }
    Err(format!("is {}, not a numeric array", v.kind()))
}

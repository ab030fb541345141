//! numpy dtypes and arrays as pickles, joblib and `.npy` files describe them,
//! and typed views of their elements. Every array's data is normalised to C
//! order and native (little-endian) byte order when it is built.

use std::rc::Rc;

use crate::value::Value;

/// Errors building arrays, as plain messages (the caller adds context).
pub type NpResult<T> = Result<T, String>;

/// A numpy dtype: kind, item size, byte order and, for structured dtypes,
/// named fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Dtype {
    /// numpy's kind character: `f` float, `i` signed, `u` unsigned, `b`
    /// bool, `U` unicode, `S` bytes, `O` object, `V` structured/void.
    pub kind: char,
    /// Bytes per element.
    pub itemsize: usize,
    /// Whether multi-byte elements are big-endian.
    pub big_endian: bool,
    /// Fields of a structured dtype: name, dtype and byte offset.
    pub fields: Vec<(String, Dtype, usize)>,
}

impl Dtype {
    /// Parses numpy's type string (`f8`, `<i4`, `|u1`, `U40`, `O8`, `V64`).
    /// For `U`, numpy's pickles give the size in bytes (`U40` is 10
    /// characters); `.npy` headers give characters: `unicode_chars` says which.
    pub fn parse(s: &str, unicode_chars: bool) -> NpResult<Dtype> {
        let (big, rest) = match s.as_bytes().first() {
            Some(b'>') => (true, &s[1..]),
            Some(b'<' | b'|' | b'=') => (false, &s[1..]),
            _ => (false, s),
        };
        let mut chars = rest.chars();
        let kind = chars
            .next()
            .ok_or_else(|| "empty dtype string".to_string())?;
        let num = chars.as_str();
        let n: usize = if num.is_empty() {
            match kind {
                'b' | '?' => 1,
                'O' => 8,
                _ => 0,
            }
        } else {
            num.parse()
                .map_err(|_| format!("unsupported numpy dtype '{s}'"))?
        };
        let (kind, itemsize) = match kind {
            '?' | 'b' if n <= 1 => ('b', 1),
            'f' if matches!(n, 2 | 4 | 8) => ('f', n),
            'i' if matches!(n, 1 | 2 | 4 | 8) => ('i', n),
            'u' if matches!(n, 1 | 2 | 4 | 8) => ('u', n),
            'U' => ('U', if unicode_chars { n.saturating_mul(4) } else { n }),
            'S' | 'a' => ('S', n),
            'O' => ('O', 8),
            'V' => ('V', n),
            _ => {
                return Err(format!(
                    "unsupported numpy dtype '{s}' (supported: bool, int, uint, float16/32/64, str, bytes, object, structured)"
                ))
            }
        };
        Ok(Dtype {
            kind,
            itemsize,
            big_endian: big && itemsize > 1,
            fields: Vec::new(),
        })
    }

    /// A short description (`<f8`, `|O`, structured).
    pub fn describe(&self) -> String {
        if self.fields.is_empty() {
            format!(
                "{}{}{}",
                if self.big_endian { '>' } else { '<' },
                self.kind,
                self.itemsize
            )
        } else {
            let names: Vec<&str> = self.fields.iter().map(|(n, _, _)| n.as_str()).collect();
            format!("structured({})", names.join(","))
        }
    }

    /// True for dtypes whose elements are Python objects.
    pub fn has_object(&self) -> bool {
        self.kind == 'O' || self.fields.iter().any(|(_, d, _)| d.has_object())
    }

    /// Applies a pickled dtype state `(version, byteorder, subdescr, names,
    /// fields, elsize, alignment, flags[, metadata])`.
    pub fn apply_state(&mut self, state: &Value) -> NpResult<()> {
        let items = state
            .as_seq()
            .ok_or_else(|| "numpy dtype state is not a tuple".to_string())?;
        if items.len() < 8 {
            return Err(format!(
                "numpy dtype state has {} items, expected 8 or 9",
                items.len()
            ));
        }
        match items[1].as_str() {
            Some(">") => self.big_endian = self.itemsize > 1,
            Some("<" | "|" | "=") => self.big_endian = false,
            _ => {}
        }
        if let Some(names) = items[3].as_seq() {
            let Value::Dict(fields) = &items[4] else {
                return Err("structured numpy dtype without fields".into());
            };
            let fields = fields.borrow();
            let mut out = Vec::with_capacity(names.len());
            for name in &names {
                let name = name
                    .as_str()
                    .ok_or_else(|| "structured dtype field name is not a str".to_string())?;
                let (_, spec) = fields
                    .iter()
                    .find(|(k, _)| k.as_str() == Some(name))
                    .ok_or_else(|| format!("structured dtype lacks field '{name}'"))?;
                let spec = spec
                    .as_seq()
                    .ok_or_else(|| format!("structured dtype field '{name}' is not a tuple"))?;
                let dt = spec
                    .first()
                    .and_then(Value::as_dtype)
                    .ok_or_else(|| format!("structured dtype field '{name}' has no dtype"))?;
                let off = spec
                    .get(1)
                    .and_then(Value::as_i64)
                    .and_then(|o| usize::try_from(o).ok())
                    .ok_or_else(|| format!("structured dtype field '{name}' has no offset"))?;
                out.push((name.to_string(), (*dt).clone(), off));
            }
            self.fields = out;
        }
        if let Some(elsize) = items[5].as_i64() {
            if elsize > 0 {
                self.itemsize = usize::try_from(elsize).map_err(|_| "bad dtype size")?;
            }
        }
        for (name, dt, off) in &self.fields {
            if off
                .checked_add(dt.itemsize)
                .is_none_or(|end| end > self.itemsize)
            {
                return Err(format!(
                    "structured dtype field '{name}' lies outside its record"
                ));
            }
        }
        Ok(())
    }
}

/// The elements of an array.
#[derive(Debug, Clone)]
pub enum ArrayData {
    /// Fixed-size elements, C order, little-endian.
    Raw(Vec<u8>),
    /// Python objects, C order.
    Objects(Vec<Value>),
}

/// A numpy array.
#[derive(Debug, Clone)]
pub struct NdArray {
    /// Element type.
    pub dtype: Dtype,
    /// Shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// Elements in C order.
    pub data: ArrayData,
}

/// Number of elements of `shape`, or an error on overflow.
pub fn count(shape: &[usize]) -> NpResult<usize> {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("array shape {shape:?} is too large"))
}

/// Reverses the byte order of each `size`-byte element in place.
fn swap_bytes(data: &mut [u8], size: usize) {
    if size > 1 {
        for chunk in data.chunks_exact_mut(size) {
            chunk.reverse();
        }
    }
}

/// Reorders Fortran-ordered elements (first index fastest) into C order.
fn fortran_to_c<T: Clone>(data: &[T], shape: &[usize], item: usize) -> Vec<T> {
    let n = shape.len();
    if n < 2 {
        return data.to_vec();
    }
    let total = data.len() / item.max(1);
    let mut out = Vec::with_capacity(data.len());
    let mut idx = vec![0usize; n];
    for _ in 0..total {
        // Fortran offset of the C-order multi-index `idx`.
        let mut off = 0usize;
        let mut stride = 1usize;
        for (i, &d) in idx.iter().zip(shape) {
            off += i * stride;
            stride *= d;
        }
        out.extend_from_slice(&data[off * item..(off + 1) * item]);
        for k in (0..n).rev() {
            idx[k] += 1;
            if idx[k] < shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    out
}

impl NdArray {
    /// Builds an array from raw bytes in the given order and the dtype's
    /// byte order, checking the length.
    pub fn from_raw(
        dtype: Dtype,
        shape: Vec<usize>,
        mut raw: Vec<u8>,
        fortran: bool,
    ) -> NpResult<NdArray> {
        if dtype.has_object() {
            return Err("object arrays cannot be built from raw bytes".into());
        }
        let n = count(&shape)?;
        let want = n
            .checked_mul(dtype.itemsize)
            .ok_or_else(|| format!("array shape {shape:?} is too large"))?;
        if raw.len() != want {
            return Err(format!(
                "array of {} {:?} needs {want} bytes, the file holds {}",
                dtype.describe(),
                shape,
                raw.len()
            ));
        }
        let mut dtype = dtype;
        if dtype.big_endian {
            if dtype.fields.is_empty() {
                let size = if dtype.kind == 'U' { 4 } else { dtype.itemsize };
                if dtype.kind != 'S' {
                    swap_bytes(&mut raw, size);
                }
            } else {
                return Err("big-endian structured arrays are not supported".into());
            }
            dtype.big_endian = false;
        }
        for (_, f, _) in &dtype.fields {
            if f.big_endian {
                return Err("big-endian structured arrays are not supported".into());
            }
        }
        if fortran && shape.len() > 1 && n > 0 {
            raw = fortran_to_c(&raw, &shape, dtype.itemsize);
        }
        Ok(NdArray {
            dtype,
            shape,
            data: ArrayData::Raw(raw),
        })
    }

    /// Builds an object array, checking the length.
    pub fn from_objects(
        dtype: Dtype,
        shape: Vec<usize>,
        items: Vec<Value>,
        fortran: bool,
    ) -> NpResult<NdArray> {
        let n = count(&shape)?;
        if items.len() != n {
            return Err(format!(
                "object array of shape {shape:?} holds {} items",
                items.len()
            ));
        }
        let items = if fortran && shape.len() > 1 {
            fortran_to_c(&items, &shape, 1)
        } else {
            items
        };
        Ok(NdArray {
            dtype,
            shape,
            data: ArrayData::Objects(items),
        })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        count(&self.shape).unwrap_or(0)
    }

    /// True when the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The objects of an object array.
    pub fn objects(&self) -> Option<&[Value]> {
        match &self.data {
            ArrayData::Objects(v) => Some(v),
            ArrayData::Raw(_) => None,
        }
    }

    /// Moves the objects out (for dismantling).
    pub fn into_objects(self) -> Vec<Value> {
        match self.data {
            ArrayData::Objects(v) => v,
            ArrayData::Raw(_) => Vec::new(),
        }
    }

    fn raw(&self) -> Option<&[u8]> {
        match &self.data {
            ArrayData::Raw(v) => Some(v),
            ArrayData::Objects(_) => None,
        }
    }

    /// Reads one numeric element of `dtype` from `b` as f64.
    fn read_f64(dtype: &Dtype, b: &[u8]) -> Option<f64> {
        Some(match (dtype.kind, dtype.itemsize) {
            ('f', 8) => f64::from_le_bytes(b.try_into().ok()?),
            ('f', 4) => f64::from(f32::from_le_bytes(b.try_into().ok()?)),
            ('f', 2) => f64::from(half_to_f32(u16::from_le_bytes(b.try_into().ok()?))),
            ('i', _) | ('u', _) | ('b', _) => Self::read_i64(dtype, b)? as f64,
            _ => return None,
        })
    }

    /// Reads one integer element of `dtype` from `b`.
    fn read_i64(dtype: &Dtype, b: &[u8]) -> Option<i64> {
        Some(match (dtype.kind, dtype.itemsize) {
            ('i', 1) => i64::from(i8::from_le_bytes(b.try_into().ok()?)),
            ('i', 2) => i64::from(i16::from_le_bytes(b.try_into().ok()?)),
            ('i', 4) => i64::from(i32::from_le_bytes(b.try_into().ok()?)),
            ('i', 8) => i64::from_le_bytes(b.try_into().ok()?),
            ('u', 1) | ('b', 1) => i64::from(*b.first()?),
            ('u', 2) => i64::from(u16::from_le_bytes(b.try_into().ok()?)),
            ('u', 4) => i64::from(u32::from_le_bytes(b.try_into().ok()?)),
            ('u', 8) => i64::try_from(u64::from_le_bytes(b.try_into().ok()?)).ok()?,
            ('f', _) => {
                let f = Self::read_f64(dtype, b)?;
                if f.fract() == 0.0 && f.abs() < 9.2e18 {
                    f as i64
                } else {
                    return None;
                }
            }
            _ => return None,
        })
    }

    /// Every element as f64 (numeric dtypes, and object arrays of numbers).
    pub fn to_f64(&self) -> NpResult<Vec<f64>> {
        match &self.data {
            ArrayData::Raw(raw) => {
                let size = self.dtype.itemsize.max(1);
                raw.chunks_exact(size)
                    .map(|c| Self::read_f64(&self.dtype, c))
                    .collect::<Option<Vec<f64>>>()
                    .ok_or_else(|| format!("array of {} is not numeric", self.dtype.describe()))
            }
            ArrayData::Objects(v) => v
                .iter()
                .map(Value::as_f64)
                .collect::<Option<Vec<f64>>>()
                .ok_or_else(|| "object array holds non-numbers".to_string()),
        }
    }

    /// Every element as i64 (integer, bool and integral float dtypes).
    pub fn to_i64(&self) -> NpResult<Vec<i64>> {
        match &self.data {
            ArrayData::Raw(raw) => {
                let size = self.dtype.itemsize.max(1);
                raw.chunks_exact(size)
                    .map(|c| Self::read_i64(&self.dtype, c))
                    .collect::<Option<Vec<i64>>>()
                    .ok_or_else(|| format!("array of {} is not integral", self.dtype.describe()))
            }
            ArrayData::Objects(v) => v
                .iter()
                .map(Value::as_i64)
                .collect::<Option<Vec<i64>>>()
                .ok_or_else(|| "object array holds non-integers".to_string()),
        }
    }

    /// Every element as a string, for `str`/`bytes` arrays and object
    /// arrays of `str`/`bytes`.
    pub fn to_strings(&self) -> Option<Vec<String>> {
        match (&self.data, self.dtype.kind) {
            (ArrayData::Raw(raw), 'U') => {
                let size = self.dtype.itemsize.max(4);
                Some(
                    raw.chunks_exact(size)
                        .map(|c| {
                            c.chunks_exact(4)
                                .map(|u| u32::from_le_bytes([u[0], u[1], u[2], u[3]]))
                                .take_while(|&u| u != 0)
                                .map(|u| char::from_u32(u).unwrap_or('\u{fffd}'))
                                .collect()
                        })
                        .collect(),
                )
            }
            (ArrayData::Raw(raw), 'S') => {
                let size = self.dtype.itemsize.max(1);
                Some(
                    raw.chunks_exact(size)
                        .map(|c| {
                            let end = c.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
                            String::from_utf8_lossy(&c[..end]).into_owned()
                        })
                        .collect(),
                )
            }
            (ArrayData::Objects(v), _) => v
                .iter()
                .map(|x| match x {
                    Value::Str(s) => Some(s.to_string()),
                    Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
                    _ => None,
                })
                .collect(),
            _ => None,
        }
    }

    /// True for arrays of strings (unicode, bytes, or objects that are all
    /// strings).
    pub fn is_strings(&self) -> bool {
        match (&self.data, self.dtype.kind) {
            (ArrayData::Raw(_), 'U' | 'S') => true,
            (ArrayData::Objects(v), _) => {
                !v.is_empty()
                    && v.iter()
                        .all(|x| matches!(x, Value::Str(_) | Value::Bytes(_)))
            }
            _ => false,
        }
    }

    /// The scalar value of a 0-d (or 1-element) numeric array.
    pub fn scalar_f64(&self) -> Option<f64> {
        if self.len() != 1 {
            return None;
        }
        match &self.data {
            ArrayData::Raw(r) => Self::read_f64(&self.dtype, r),
            ArrayData::Objects(v) => v.first()?.as_f64(),
        }
    }

    /// The integer value of a 0-d (or 1-element) array.
    pub fn scalar_i64(&self) -> Option<i64> {
        if self.len() != 1 {
            return None;
        }
        match &self.data {
            ArrayData::Raw(r) => Self::read_i64(&self.dtype, r),
            ArrayData::Objects(v) => v.first()?.as_i64(),
        }
    }

    /// One field of a structured array as f64 per record.
    pub fn field_f64(&self, name: &str) -> NpResult<Vec<f64>> {
        let (dt, off) = self.field(name)?;
        let raw = self.raw().ok_or("structured array without raw data")?;
        raw.chunks_exact(self.dtype.itemsize.max(1))
            .map(|rec| Self::read_f64(&dt, rec.get(off..off + dt.itemsize)?))
            .collect::<Option<Vec<f64>>>()
            .ok_or_else(|| format!("field '{name}' is not numeric"))
    }

    /// One field of a structured array as i64 per record.
    pub fn field_i64(&self, name: &str) -> NpResult<Vec<i64>> {
        let (dt, off) = self.field(name)?;
        let raw = self.raw().ok_or("structured array without raw data")?;
        raw.chunks_exact(self.dtype.itemsize.max(1))
            .map(|rec| Self::read_i64(&dt, rec.get(off..off + dt.itemsize)?))
            .collect::<Option<Vec<i64>>>()
            .ok_or_else(|| format!("field '{name}' is not integral"))
    }

    /// True when the structured dtype has field `name`.
    pub fn has_field(&self, name: &str) -> bool {
        self.dtype.fields.iter().any(|(n, _, _)| n == name)
    }

    fn field(&self, name: &str) -> NpResult<(Dtype, usize)> {
        self.dtype
            .fields
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, d, o)| (d.clone(), *o))
            .ok_or_else(|| {
                let have: Vec<&str> = self
                    .dtype
                    .fields
                    .iter()
                    .map(|(n, _, _)| n.as_str())
                    .collect();
                format!(
                    "record array lacks field '{name}' (has: {})",
                    have.join(", ")
                )
            })
    }
}

/// IEEE half → single precision.
fn half_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // subnormal
            let v = m as f32 * 2f32.powi(-24);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// Wraps an array as a value.
pub fn array_value(a: NdArray) -> Value {
    Value::Array(Rc::new(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fortran_order() {
        // 2x3 array [[0,1,2],[3,4,5]] in Fortran order is 0,3,1,4,2,5
        let f: Vec<u8> = vec![0, 3, 1, 4, 2, 5];
        assert_eq!(fortran_to_c(&f, &[2, 3], 1), vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn dtype_strings() {
        assert_eq!(Dtype::parse("<f8", false).unwrap().itemsize, 8);
        assert!(Dtype::parse(">i4", false).unwrap().big_endian);
        assert_eq!(Dtype::parse("U40", false).unwrap().itemsize, 40);
        assert_eq!(Dtype::parse("<U10", true).unwrap().itemsize, 40);
        assert!(Dtype::parse("M8", false).is_err());
        assert_eq!(half_to_f32(0x3c00), 1.0);
    }
}

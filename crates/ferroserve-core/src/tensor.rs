//! Tensors: a name, a datatype, a shape and row-major data.

use bytes::Bytes;

use crate::datatype::DataType;
use crate::parameters::Parameters;

/// The elements of a tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// Packed little-endian elements of a fixed-size datatype. Kept as a
    /// `Bytes` view so that binary request bodies and gRPC raw contents reach
    /// the runtime without a copy; the view need not be aligned.
    Raw(Bytes),
    /// Elements of a `BYTES` tensor.
    Strings(Vec<Bytes>),
}

/// Errors building or reading a tensor.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TensorError {
    /// The shape's element count overflows or is negative.
    #[error("tensor '{name}': invalid shape {shape:?}")]
    InvalidShape {
        /// Tensor name.
        name: String,
        /// The offending shape.
        shape: Vec<i64>,
    },
    /// Data length does not match shape × datatype.
    #[error("tensor '{name}': shape {shape:?} with datatype {datatype} needs {expected} {unit}, got {actual}")]
    SizeMismatch {
        /// Tensor name.
        name: String,
        /// Declared shape.
        shape: Vec<usize>,
        /// Declared datatype.
        datatype: DataType,
        /// Expected count.
        expected: usize,
        /// Actual count.
        actual: usize,
        /// What was counted ("bytes" or "elements").
        unit: &'static str,
    },
    /// BYTES data given for a fixed-size datatype or the other way round.
    #[error("tensor '{name}': datatype {datatype} does not match the kind of data given")]
    KindMismatch {
        /// Tensor name.
        name: String,
        /// Declared datatype.
        datatype: DataType,
    },
    /// A typed accessor was used with the wrong element type.
    #[error("tensor '{name}' has datatype {actual}, not {expected}")]
    WrongType {
        /// Tensor name.
        name: String,
        /// Requested type.
        expected: DataType,
        /// Actual type.
        actual: DataType,
    },
}

/// Rust element types that map one-to-one onto a fixed-size datatype.
pub trait Element: bytemuck::Pod + Send + Sync + 'static {
    /// The matching protocol datatype.
    const DATATYPE: DataType;
}

macro_rules! element {
    ($t:ty, $d:expr) => {
        impl Element for $t {
            const DATATYPE: DataType = $d;
        }
    };
}
element!(u8, DataType::U8);
element!(u16, DataType::U16);
element!(u32, DataType::U32);
element!(u64, DataType::U64);
element!(i8, DataType::I8);
element!(i16, DataType::I16);
element!(i32, DataType::I32);
element!(i64, DataType::I64);
element!(half::f16, DataType::F16);
element!(half::bf16, DataType::BF16);
element!(f32, DataType::F32);
element!(f64, DataType::F64);

/// Number of elements of a shape, or `None` on overflow.
pub fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Converts a wire shape (signed) into a concrete one, rejecting negatives.
pub fn concrete_shape(name: &str, shape: &[i64]) -> Result<Vec<usize>, TensorError> {
    let out: Option<Vec<usize>> = shape.iter().map(|&d| usize::try_from(d).ok()).collect();
    match out {
        Some(s) if element_count(&s).is_some() => Ok(s),
        _ => Err(TensorError::InvalidShape {
            name: name.to_string(),
            shape: shape.to_vec(),
        }),
    }
}

/// A named tensor with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Tensor name as the model declares it.
    pub name: String,
    /// Element type.
    pub datatype: DataType,
    /// Concrete shape, row-major.
    pub shape: Vec<usize>,
    /// The elements.
    pub data: TensorData,
    /// Protocol parameters attached to this tensor.
    pub parameters: Parameters,
}

impl Tensor {
    /// Builds a tensor after checking that the data fits the shape and datatype.
    pub fn new(
        name: impl Into<String>,
        datatype: DataType,
        shape: Vec<usize>,
        data: TensorData,
    ) -> Result<Self, TensorError> {
        let name = name.into();
        let count = element_count(&shape).ok_or_else(|| TensorError::InvalidShape {
            name: name.clone(),
            shape: shape.iter().map(|&d| d as i64).collect(),
        })?;
        match (&data, datatype.size()) {
            (TensorData::Raw(b), Some(size)) => {
                let expected =
                    count
                        .checked_mul(size)
                        .ok_or_else(|| TensorError::InvalidShape {
                            name: name.clone(),
                            shape: shape.iter().map(|&d| d as i64).collect(),
                        })?;
                if b.len() != expected {
                    return Err(TensorError::SizeMismatch {
                        name,
                        shape,
                        datatype,
                        expected,
                        actual: b.len(),
                        unit: "bytes",
                    });
                }
            }
            (TensorData::Strings(v), None) => {
                if v.len() != count {
                    return Err(TensorError::SizeMismatch {
                        name,
                        shape,
                        datatype,
                        expected: count,
                        actual: v.len(),
                        unit: "elements",
                    });
                }
            }
            _ => return Err(TensorError::KindMismatch { name, datatype }),
        }
        Ok(Tensor {
            name,
            datatype,
            shape,
            data,
            parameters: Parameters::new(),
        })
    }

    /// Builds a tensor from a vector of typed elements.
    pub fn from_vec<T: Element>(
        name: impl Into<String>,
        shape: Vec<usize>,
        values: Vec<T>,
    ) -> Result<Self, TensorError> {
        let bytes = Bytes::from(bytemuck::cast_slice::<T, u8>(&values).to_vec());
        Tensor::new(name, T::DATATYPE, shape, TensorData::Raw(bytes))
    }

    /// Builds a `BOOL` tensor.
    pub fn from_bools(
        name: impl Into<String>,
        shape: Vec<usize>,
        values: &[bool],
    ) -> Result<Self, TensorError> {
        let bytes: Vec<u8> = values.iter().map(|&b| u8::from(b)).collect();
        Tensor::new(
            name,
            DataType::Bool,
            shape,
            TensorData::Raw(Bytes::from(bytes)),
        )
    }

    /// Builds a `BYTES` tensor.
    pub fn from_strings(
        name: impl Into<String>,
        shape: Vec<usize>,
        values: Vec<Bytes>,
    ) -> Result<Self, TensorError> {
        Tensor::new(name, DataType::Bytes, shape, TensorData::Strings(values))
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        element_count(&self.shape).unwrap_or(0)
    }

    /// True when the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The raw little-endian bytes of a fixed-size tensor.
    pub fn raw(&self) -> Option<&Bytes> {
        match &self.data {
            TensorData::Raw(b) => Some(b),
            TensorData::Strings(_) => None,
        }
    }

    /// The elements of a `BYTES` tensor.
    pub fn strings(&self) -> Option<&[Bytes]> {
        match &self.data {
            TensorData::Strings(v) => Some(v),
            TensorData::Raw(_) => None,
        }
    }

    /// Copies the elements out as `T` (handles unaligned views).
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>, TensorError> {
        match &self.data {
            TensorData::Raw(b) if self.datatype == T::DATATYPE => {
                Ok(bytemuck::pod_collect_to_vec::<u8, T>(b))
            }
            _ => Err(TensorError::WrongType {
                name: self.name.clone(),
                expected: T::DATATYPE,
                actual: self.datatype,
            }),
        }
    }

    /// Wire shape (signed), as protocols send it.
    pub fn wire_shape(&self) -> Vec<i64> {
        self.shape.iter().map(|&d| d as i64).collect()
    }

    /// Byte size of the data as the binary extension sends it (BYTES
    /// elements each carry a 4-byte length prefix).
    pub fn binary_size(&self) -> usize {
        match &self.data {
            TensorData::Raw(b) => b.len(),
            TensorData::Strings(v) => v.iter().map(|s| 4 + s.len()).sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_checked() {
        assert!(Tensor::from_vec("x", vec![2, 2], vec![1.0f32; 4]).is_ok());
        let err = Tensor::new(
            "x",
            DataType::F32,
            vec![2, 3],
            TensorData::Raw(Bytes::from(vec![0u8; 8])),
        )
        .unwrap_err();
        assert!(matches!(
            err,
            TensorError::SizeMismatch {
                expected: 24,
                actual: 8,
                ..
            }
        ));
        let err = Tensor::new("x", DataType::Bytes, vec![1], TensorData::Raw(Bytes::new()));
        assert!(matches!(err, Err(TensorError::KindMismatch { .. })));
    }

    #[test]
    fn overflowing_shape_rejected() {
        assert!(concrete_shape("x", &[-1, 2]).is_err());
        assert!(concrete_shape("x", &[i64::MAX, i64::MAX]).is_err());
        let t = Tensor::new(
            "x",
            DataType::F64,
            vec![usize::MAX / 2, 3],
            TensorData::Raw(Bytes::new()),
        );
        assert!(t.is_err());
    }

    #[test]
    fn unaligned_view_reads() {
        let mut v = vec![0u8; 9];
        v[1..5].copy_from_slice(&1.5f32.to_le_bytes());
        v[5..9].copy_from_slice(&(-2.0f32).to_le_bytes());
        let b = Bytes::from(v).slice(1..);
        let t = Tensor::new("x", DataType::F32, vec![2], TensorData::Raw(b)).unwrap();
        assert_eq!(t.to_vec::<f32>().unwrap(), vec![1.5, -2.0]);
        assert!(t.to_vec::<i32>().is_err());
    }
}

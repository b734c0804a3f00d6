//! Value types: element type plus (possibly symbolic) shape, and the
//! non-tensor types (sequence, optional, map).

use std::fmt;

use crate::dtype::DataType;

/// One dimension of a declared shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A fixed size.
    Known(usize),
    /// A named size such as `batch`, bound at run time.
    Symbolic(String),
    /// A size nothing is known about.
    Unknown,
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(n) => write!(f, "{n}"),
            Dim::Symbolic(s) => f.write_str(s),
            Dim::Unknown => f.write_str("?"),
        }
    }
}

/// The type of a value flowing along a graph edge.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ValueType {
    /// A tensor; `shape` is `None` when even the rank is unknown.
    Tensor {
        dtype: DataType,
        shape: Option<Vec<Dim>>,
    },
    /// A sequence of values of one type.
    Sequence(Box<ValueType>),
    /// A value that may be absent.
    Optional(Box<ValueType>),
    /// A map from a scalar key type to values.
    Map {
        key: DataType,
        value: Box<ValueType>,
    },
    /// A sparse tensor.
    SparseTensor {
        dtype: DataType,
        shape: Option<Vec<Dim>>,
    },
    /// Nothing is known.
    Unknown,
}

impl ValueType {
    /// A tensor type with a fully known shape.
    pub fn tensor(dtype: DataType, shape: &[usize]) -> Self {
        ValueType::Tensor {
            dtype,
            shape: Some(shape.iter().map(|&d| Dim::Known(d)).collect()),
        }
    }

    /// The element type, if this is a tensor.
    pub fn dtype(&self) -> Option<DataType> {
        match self {
            ValueType::Tensor { dtype, .. } => Some(*dtype),
            _ => None,
        }
    }

    /// The dims, if this is a tensor of known rank.
    pub fn dims(&self) -> Option<&[Dim]> {
        match self {
            ValueType::Tensor {
                shape: Some(dims), ..
            } => Some(dims),
            _ => None,
        }
    }

    /// The dims as numbers when every one is known.
    pub fn concrete_shape(&self) -> Option<Vec<usize>> {
        self.dims()?
            .iter()
            .map(|d| match d {
                Dim::Known(n) => Some(*n),
                _ => None,
            })
            .collect()
    }
}

/// Formats dims like `[batch, 3, 224, 224]`.
pub fn format_dims(dims: &[Dim]) -> String {
    let parts: Vec<String> = dims.iter().map(Dim::to_string).collect();
    format!("[{}]", parts.join(", "))
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueType::Tensor { dtype, shape } => match shape {
                Some(d) => write!(f, "tensor({dtype}) {}", format_dims(d)),
                None => write!(f, "tensor({dtype})"),
            },
            ValueType::SparseTensor { dtype, .. } => write!(f, "sparse_tensor({dtype})"),
            ValueType::Sequence(t) => write!(f, "seq({t})"),
            ValueType::Optional(t) => write!(f, "optional({t})"),
            ValueType::Map { key, value } => write!(f, "map({key}, {value})"),
            ValueType::Unknown => f.write_str("unknown"),
        }
    }
}

/// A named, typed value of a graph's interface.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueInfo {
    pub name: String,
    pub ty: ValueType,
}

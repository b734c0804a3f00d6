//! `Value`: what flows along a graph edge at run time — a tensor, a
//! sequence of tensors, a map, or an optional value that may be absent.

use std::fmt;

use crate::dtype::DataType;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// An ONNX sequence: tensors of one element type (their shapes may differ).
#[derive(Debug, Clone, PartialEq)]
pub struct Sequence {
    /// Element type of every tensor, also known when the sequence is empty.
    pub dtype: DataType,
    pub items: Vec<Tensor>,
}

impl Sequence {
    /// A sequence of `items`, checking they all have element type `dtype`.
    pub fn new(dtype: DataType, items: Vec<Tensor>) -> Result<Self> {
        if let Some((i, t)) = items.iter().enumerate().find(|(_, t)| t.dtype() != dtype) {
            return Err(Error::invalid(format!(
                "sequence of {dtype}: item #{i} is {}",
                t.dtype()
            )));
        }
        Ok(Self { dtype, items })
    }

    /// An empty sequence of `dtype`.
    pub fn empty(dtype: DataType) -> Self {
        Self {
            dtype,
            items: Vec::new(),
        }
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when the sequence holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// An ONNX map: scalar keys (a 1-D int64, int32 or string tensor) and one
/// value per key.
#[derive(Debug, Clone, PartialEq)]
pub struct Map {
    pub keys: Tensor,
    pub values: Vec<Value>,
}

impl Map {
    /// A map of `keys` to `values`, checking the key type and the counts.
    pub fn new(keys: Tensor, values: Vec<Value>) -> Result<Self> {
        if keys.rank() != 1
            || !matches!(
                keys.dtype(),
                DataType::I64 | DataType::I32 | DataType::String
            )
        {
            return Err(Error::invalid(format!(
                "map keys must be a 1-D int64, int32 or string tensor, got {} {:?}",
                keys.dtype(),
                keys.shape()
            )));
        }
        if keys.len() != values.len() {
            return Err(Error::invalid(format!(
                "map has {} keys but {} values",
                keys.len(),
                values.len()
            )));
        }
        Ok(Self { keys, values })
    }
}

/// A run-time value of any kind the ONNX type system has and oxrt runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Tensor(Tensor),
    Sequence(Sequence),
    Map(Map),
    /// An optional value; `None` when absent.
    Optional(Option<Box<Value>>),
}

impl From<Tensor> for Value {
    fn from(t: Tensor) -> Self {
        Value::Tensor(t)
    }
}

impl From<Sequence> for Value {
    fn from(s: Sequence) -> Self {
        Value::Sequence(s)
    }
}

impl Value {
    /// The tensor, if this is one.
    pub fn as_tensor(&self) -> Option<&Tensor> {
        match self {
            Value::Tensor(t) => Some(t),
            _ => None,
        }
    }

    /// The tensor, or an error naming the kind of value this is.
    pub fn into_tensor(self) -> Result<Tensor> {
        match self {
            Value::Tensor(t) => Ok(t),
            other => Err(Error::invalid(format!(
                "expected a tensor, got a {}",
                other.kind()
            ))),
        }
    }

    /// A borrowed view of this value.
    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Value::Tensor(t) => ValueRef::Tensor(t),
            Value::Sequence(s) => ValueRef::Sequence(s),
            Value::Map(m) => ValueRef::Map(m),
            Value::Optional(o) => ValueRef::Optional(o.as_deref()),
        }
    }

    /// `tensor`, `sequence`, `map` or `optional`, for messages.
    pub fn kind(&self) -> &'static str {
        self.as_ref().kind()
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_ref().fmt(f)
    }
}

/// A borrowed [`Value`]: what kernels receive. A tensor may be borrowed from
/// a session's constants without being wrapped in a `Value`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    Tensor(&'a Tensor),
    Sequence(&'a Sequence),
    Map(&'a Map),
    Optional(Option<&'a Value>),
}

impl<'a> ValueRef<'a> {
    /// The tensor, if this is one.
    pub fn tensor(self) -> Option<&'a Tensor> {
        match self {
            ValueRef::Tensor(t) => Some(t),
            _ => None,
        }
    }

    /// An owned copy.
    pub fn to_value(self) -> Value {
        match self {
            ValueRef::Tensor(t) => Value::Tensor(t.clone()),
            ValueRef::Sequence(s) => Value::Sequence(s.clone()),
            ValueRef::Map(m) => Value::Map(m.clone()),
            ValueRef::Optional(o) => Value::Optional(o.map(|v| Box::new(v.clone()))),
        }
    }

    /// `tensor`, `sequence`, `map` or `optional`, for messages.
    pub fn kind(self) -> &'static str {
        match self {
            ValueRef::Tensor(_) => "tensor",
            ValueRef::Sequence(_) => "sequence",
            ValueRef::Map(_) => "map",
            ValueRef::Optional(_) => "optional",
        }
    }
}

impl fmt::Display for ValueRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueRef::Tensor(t) => write!(f, "tensor({}) {:?}", t.dtype(), t.shape()),
            ValueRef::Sequence(s) => write!(f, "seq(tensor({})) of {}", s.dtype, s.len()),
            ValueRef::Map(m) => write!(f, "map({}, ...) of {}", m.keys.dtype(), m.values.len()),
            ValueRef::Optional(None) => f.write_str("optional(none)"),
            ValueRef::Optional(Some(v)) => write!(f, "optional({v})"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sequences_check_their_element_type() {
        let a = Tensor::from_vec(vec![2], vec![1.0f32, 2.0]).unwrap();
        let b = Tensor::from_vec(vec![1], vec![3i64]).unwrap();
        let err = Sequence::new(DataType::F32, vec![a.clone(), b]).unwrap_err();
        assert_eq!(err.to_string(), "sequence of float: item #1 is int64");
        let s = Sequence::new(DataType::F32, vec![a.clone()]).unwrap();
        let v = Value::Optional(Some(Box::new(Value::Sequence(s))));
        assert_eq!(v.as_ref().to_value(), v);
        assert_eq!(v.kind(), "optional");
        assert!(Value::Sequence(Sequence::empty(DataType::F32))
            .into_tensor()
            .unwrap_err()
            .to_string()
            .contains("got a sequence"));
        assert_eq!(Value::from(a.clone()).into_tensor().unwrap(), a);
        let keys = Tensor::from_vec(vec![2], vec![1i64, 2]).unwrap();
        let m = Map::new(
            keys.clone(),
            vec![Value::Tensor(a.clone()), Value::Tensor(a.clone())],
        )
        .unwrap();
        assert_eq!(Value::Map(m).kind(), "map");
        assert!(Map::new(keys, vec![Value::Tensor(a.clone())])
            .unwrap_err()
            .to_string()
            .contains("2 keys but 1 values"));
        assert!(Map::new(a.clone(), Vec::new()).is_err());
    }
}

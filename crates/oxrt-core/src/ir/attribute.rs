//! Node attributes and typed accessors that report mismatches precisely.

use std::sync::Arc;

use super::{Graph, Node, ValueType};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// An attribute value, decoded from `AttributeProto`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Attribute {
    Float(f32),
    Int(i64),
    /// Raw bytes (ONNX strings are byte strings).
    String(Vec<u8>),
    Tensor(Arc<Tensor>),
    Graph(Arc<Graph>),
    Type(ValueType),
    Floats(Vec<f32>),
    Ints(Vec<i64>),
    Strings(Vec<Vec<u8>>),
    Tensors(Vec<Arc<Tensor>>),
    Graphs(Vec<Arc<Graph>>),
    Types(Vec<ValueType>),
}

impl Attribute {
    /// The ONNX name of the attribute's type, e.g. `INTS`.
    pub fn kind(&self) -> &'static str {
        match self {
            Attribute::Float(_) => "FLOAT",
            Attribute::Int(_) => "INT",
            Attribute::String(_) => "STRING",
            Attribute::Tensor(_) => "TENSOR",
            Attribute::Graph(_) => "GRAPH",
            Attribute::Type(_) => "TYPE_PROTO",
            Attribute::Floats(_) => "FLOATS",
            Attribute::Ints(_) => "INTS",
            Attribute::Strings(_) => "STRINGS",
            Attribute::Tensors(_) => "TENSORS",
            Attribute::Graphs(_) => "GRAPHS",
            Attribute::Types(_) => "TYPE_PROTOS",
        }
    }
}

macro_rules! accessor {
    ($(#[$doc:meta])* $name:ident, $variant:ident, $ret:ty, |$v:ident| $conv:expr) => {
        $(#[$doc])*
        pub fn $name(&self, attr: &str) -> Result<Option<$ret>> {
            match self.attributes.get(attr) {
                None => Ok(None),
                Some(Attribute::$variant($v)) => Ok(Some($conv)),
                Some(other) => Err(self.wrong_kind(attr, stringify!($variant), other)),
            }
        }
    };
}

impl Node {
    fn wrong_kind(&self, attr: &str, expected: &str, got: &Attribute) -> Error {
        Error::invalid(format!(
            "attribute '{attr}' must be {}, got {}",
            expected.to_uppercase(),
            got.kind()
        ))
    }

    accessor!(
        /// An `INT` attribute.
        get_int, Int, i64, |v| *v);
    accessor!(
        /// A `FLOAT` attribute.
        get_float, Float, f32, |v| *v);
    accessor!(
        /// An `INTS` attribute.
        get_ints, Ints, &[i64], |v| v.as_slice());
    accessor!(
        /// A `FLOATS` attribute.
        get_floats, Floats, &[f32], |v| v.as_slice());
    accessor!(
        /// A `TENSOR` attribute.
        get_tensor, Tensor, &Arc<Tensor>, |v| v);
    accessor!(
        /// A `GRAPH` attribute.
        get_graph, Graph, &Arc<Graph>, |v| v);

    /// A `STRING` attribute decoded as UTF-8.
    pub fn get_string(&self, attr: &str) -> Result<Option<&str>> {
        match self.attributes.get(attr) {
            None => Ok(None),
            Some(Attribute::String(bytes)) => std::str::from_utf8(bytes)
                .map(Some)
                .map_err(|_| Error::invalid(format!("attribute '{attr}' is not valid UTF-8"))),
            Some(other) => Err(self.wrong_kind(attr, "String", other)),
        }
    }

    /// An `INT` attribute or `default`.
    pub fn int_or(&self, attr: &str, default: i64) -> Result<i64> {
        Ok(self.get_int(attr)?.unwrap_or(default))
    }

    /// A `FLOAT` attribute or `default`.
    pub fn float_or(&self, attr: &str, default: f32) -> Result<f32> {
        Ok(self.get_float(attr)?.unwrap_or(default))
    }

    /// A `STRING` attribute or `default`.
    pub fn string_or<'a>(&'a self, attr: &str, default: &'a str) -> Result<&'a str> {
        Ok(self.get_string(attr)?.unwrap_or(default))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn accessors_check_kinds() {
        let mut attributes = BTreeMap::new();
        attributes.insert("axis".to_string(), Attribute::Int(1));
        attributes.insert("pads".to_string(), Attribute::Ints(vec![1, 1]));
        let n = Node {
            name: "n".into(),
            op_type: "X".into(),
            domain: String::new(),
            inputs: vec![],
            outputs: vec![],
            attributes,
        };
        assert_eq!(n.int_or("axis", 0).unwrap(), 1);
        assert_eq!(n.int_or("missing", 7).unwrap(), 7);
        assert_eq!(n.get_ints("pads").unwrap(), Some(&[1i64, 1][..]));
        let err = n.get_float("axis").unwrap_err();
        assert_eq!(err.to_string(), "attribute 'axis' must be FLOAT, got INT");
    }
}

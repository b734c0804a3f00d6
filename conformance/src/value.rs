//! Reference values of every kind the node tests store: `TensorProto`,
//! `SequenceProto`, `OptionalProto` and `MapProto`, decoded by the type the
//! model declares for the value.

use oxrt::core::tensor_proto::{tensor_from_proto, DEFAULT_MEMORY_LIMIT};
use oxrt::core::{Map, Sequence, Value};
use oxrt::onnx::proto::{MapProto, OptionalProto, SequenceProto, TensorProto};
use oxrt::{DataType, Tensor, ValueType};
use prost::Message;

/// A decoded test value.
#[derive(Debug, Clone, PartialEq)]
pub enum RefValue {
    Tensor(Tensor),
    Sequence(Vec<RefValue>),
    /// `None` for an empty optional.
    Optional(Option<Box<RefValue>>),
    /// Keys (an int64 or string tensor) and one value per key.
    Map {
        keys: Tensor,
        values: Vec<RefValue>,
    },
}

fn tensor(t: &TensorProto) -> Result<RefValue, String> {
    tensor_from_proto(t, DEFAULT_MEMORY_LIMIT)
        .map(RefValue::Tensor)
        .map_err(|e| e.to_string())
}

/// `SequenceProto.elem_type` / `OptionalProto.elem_type` codes.
const TENSOR: i32 = 1;
const SPARSE_TENSOR: i32 = 2;
const SEQUENCE: i32 = 3;
const MAP: i32 = 4;
const OPTIONAL: i32 = 5;

fn sequence(s: &SequenceProto) -> Result<Vec<RefValue>, String> {
    match s.elem_type.unwrap_or(0) {
        TENSOR => s.tensor_values.iter().map(tensor).collect(),
        SEQUENCE => s
            .sequence_values
            .iter()
            .map(|v| sequence(v).map(RefValue::Sequence))
            .collect(),
        MAP => s.map_values.iter().map(map).collect(),
        OPTIONAL => s
            .optional_values
            .iter()
            .map(|v| optional(v).map(RefValue::Optional))
            .collect(),
        SPARSE_TENSOR => Err("sequences of sparse tensors are not supported".into()),
        0 if s.tensor_values.is_empty()
            && s.sequence_values.is_empty()
            && s.map_values.is_empty() =>
        {
            Ok(Vec::new())
        }
        other => Err(format!("sequence of unknown element type {other}")),
    }
}

fn optional(o: &OptionalProto) -> Result<Option<Box<RefValue>>, String> {
    let value = match o.elem_type.unwrap_or(0) {
        0 => None,
        TENSOR => o.tensor_value.as_ref().map(tensor).transpose()?,
        SEQUENCE => o
            .sequence_value
            .as_ref()
            .map(|s| sequence(s).map(RefValue::Sequence))
            .transpose()?,
        MAP => o.map_value.as_ref().map(map).transpose()?,
        OPTIONAL => o
            .optional_value
            .as_deref()
            .map(|v| optional(v).map(RefValue::Optional))
            .transpose()?,
        other => return Err(format!("optional of unsupported element type {other}")),
    };
    Ok(value.map(Box::new))
}

fn map(m: &MapProto) -> Result<RefValue, String> {
    let key_type = DataType::from_onnx(m.key_type.unwrap_or(0)).ok_or("map without a key type")?;
    let keys = if key_type == DataType::String {
        let keys: Result<Vec<String>, _> = m
            .string_keys
            .iter()
            .map(|k| String::from_utf8(k.to_vec()))
            .collect();
        let keys = keys.map_err(|_| "map key is not UTF-8")?;
        Tensor::from_strings(vec![keys.len()], keys)
    } else {
        Tensor::from_vec(vec![m.keys.len()], m.keys.clone())
    }
    .map_err(|e| e.to_string())?;
    let values = m
        .values
        .as_ref()
        .map(sequence)
        .transpose()?
        .unwrap_or_default();
    if values.len() != keys.len() {
        return Err(format!(
            "map has {} keys but {} values",
            keys.len(),
            values.len()
        ));
    }
    Ok(RefValue::Map { keys, values })
}

impl RefValue {
    /// `tensor`, `sequence`, `optional` or `map`, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            RefValue::Tensor(_) => "tensor",
            RefValue::Sequence(_) => "sequence",
            RefValue::Optional(_) => "optional",
            RefValue::Map { .. } => "map",
        }
    }

    /// The runtime value to feed, with `ty` (the declared type) giving the
    /// element type of empty sequences. Maps are not runtime values.
    pub fn to_value(&self, ty: &ValueType) -> Result<Value, String> {
        match self {
            RefValue::Tensor(t) => Ok(Value::Tensor(t.clone())),
            RefValue::Sequence(items) => {
                let tensors: Option<Vec<Tensor>> = items
                    .iter()
                    .map(|v| match v {
                        RefValue::Tensor(t) => Some(t.clone()),
                        _ => None,
                    })
                    .collect();
                let tensors = tensors.ok_or("sequences of non-tensors are not supported")?;
                let declared = match ty {
                    ValueType::Sequence(e) => e.dtype(),
                    _ => None,
                };
                let dtype = tensors
                    .first()
                    .map(Tensor::dtype)
                    .or(declared)
                    .ok_or("empty sequence of unknown element type")?;
                Sequence::new(dtype, tensors)
                    .map(Value::Sequence)
                    .map_err(|e| e.to_string())
            }
            RefValue::Optional(inner) => {
                let elem = match ty {
                    ValueType::Optional(e) => e.as_ref().clone(),
                    _ => ValueType::Unknown,
                };
                let inner = inner.as_deref().map(|v| v.to_value(&elem)).transpose()?;
                Ok(Value::Optional(inner.map(Box::new)))
            }
            RefValue::Map { keys, values } => {
                let elem = match ty {
                    ValueType::Map { value, .. } => value.as_ref().clone(),
                    _ => ValueType::Unknown,
                };
                let values = values
                    .iter()
                    .map(|v| v.to_value(&elem))
                    .collect::<Result<Vec<_>, _>>()?;
                Map::new(keys.clone(), values)
                    .map(Value::Map)
                    .map_err(|e| e.to_string())
            }
        }
    }
}

/// Decodes a `.pb` file's bytes as the kind of value `ty` declares.
pub fn decode(bytes: &[u8], ty: &ValueType) -> Result<RefValue, String> {
    let err = |e: prost::DecodeError| e.to_string();
    match ty {
        ValueType::Sequence(_) => {
            sequence(&SequenceProto::decode(bytes).map_err(err)?).map(RefValue::Sequence)
        }
        ValueType::Optional(_) => {
            optional(&OptionalProto::decode(bytes).map_err(err)?).map(RefValue::Optional)
        }
        ValueType::Map { .. } => map(&MapProto::decode(bytes).map_err(err)?),
        _ => tensor(&TensorProto::decode(bytes).map_err(err)?),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use oxrt::onnx::proto::SequenceProto;

    use super::*;

    fn t(v: &[i64]) -> TensorProto {
        TensorProto {
            dims: vec![v.len() as i64],
            data_type: Some(7),
            int64_data: v.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn decodes_nested_kinds() {
        let seq = SequenceProto {
            elem_type: Some(TENSOR),
            tensor_values: vec![t(&[1]), t(&[2, 3])],
            ..Default::default()
        };
        let ty = ValueType::Sequence(Box::new(ValueType::Unknown));
        let RefValue::Sequence(items) = decode(&seq.encode_to_vec(), &ty).unwrap() else {
            panic!()
        };
        assert_eq!(items.len(), 2);
        assert_eq!(
            items[1],
            RefValue::Tensor(Tensor::from_vec(vec![2], vec![2i64, 3]).unwrap())
        );

        let opt = OptionalProto {
            elem_type: Some(SEQUENCE),
            sequence_value: Some(seq),
            ..Default::default()
        };
        let ty = ValueType::Optional(Box::new(ValueType::Unknown));
        assert!(matches!(
            decode(&opt.encode_to_vec(), &ty).unwrap(),
            RefValue::Optional(Some(_))
        ));
        let empty = OptionalProto::default();
        assert_eq!(
            decode(&empty.encode_to_vec(), &ty).unwrap(),
            RefValue::Optional(None)
        );

        let m = MapProto {
            key_type: Some(8),
            string_keys: vec![b"a".to_vec().into()],
            values: Some(SequenceProto {
                elem_type: Some(TENSOR),
                tensor_values: vec![t(&[5])],
                ..Default::default()
            }),
            ..Default::default()
        };
        let ty = ValueType::Map {
            key: DataType::String,
            value: Box::new(ValueType::Unknown),
        };
        let RefValue::Map { keys, values } = decode(&m.encode_to_vec(), &ty).unwrap() else {
            panic!()
        };
        assert_eq!(keys.as_strings().unwrap(), &["a".to_string()]);
        assert_eq!(values.len(), 1);

        let bad = MapProto {
            key_type: Some(7),
            keys: vec![1, 2],
            ..Default::default()
        };
        assert!(decode(&bad.encode_to_vec(), &ty)
            .unwrap_err()
            .contains("2 keys but 0 values"));
    }
}

//! Converting the IR back to ONNX protobuf: tensors, types, nodes (with
//! subgraph attributes), graphs and models. Used to hand nodes to provider
//! libraries and to save models.

use std::collections::HashSet;

use oxrt_onnx::proto::{
    attribute_proto::AttributeType, tensor_shape_proto::dimension, tensor_shape_proto::Dimension,
    type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

use super::{Attribute, Dim, Graph, Model, Node, ValueInfo, ValueType};
use crate::tensor::{Storage, Tensor};

fn le_bytes<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    v.iter().flat_map(|&x| f(x)).collect()
}

/// Packs unpacked sub-byte elements (one per byte), low bits first.
fn pack_bits(v: &[u8], bits: usize) -> Vec<u8> {
    let per_byte = 8 / bits;
    let mask = (1u8 << bits) - 1;
    let mut out = vec![0u8; v.len().div_ceil(per_byte)];
    for (i, &x) in v.iter().enumerate() {
        out[i / per_byte] |= (x & mask) << ((i % per_byte) * bits);
    }
    out
}

/// Encodes a tensor as a `TensorProto` (`raw_data`, or `string_data` for strings).
pub fn tensor_to_proto(name: &str, t: &Tensor) -> TensorProto {
    let mut p = TensorProto {
        name: Some(name.to_string()),
        dims: t.shape().iter().map(|&d| d as i64).collect(),
        data_type: Some(t.dtype().onnx_code()),
        ..Default::default()
    };
    let raw = match t.storage() {
        Storage::F32(v) => le_bytes(v, f32::to_le_bytes),
        Storage::F64(v) => le_bytes(v, f64::to_le_bytes),
        Storage::F16(v) => le_bytes(v, half::f16::to_le_bytes),
        Storage::BF16(v) => le_bytes(v, half::bf16::to_le_bytes),
        Storage::I8(v) => le_bytes(v, i8::to_le_bytes),
        Storage::I16(v) => le_bytes(v, i16::to_le_bytes),
        Storage::I32(v) => le_bytes(v, i32::to_le_bytes),
        Storage::I64(v) => le_bytes(v, i64::to_le_bytes),
        Storage::U8(v) => v.clone(),
        Storage::U16(v) => le_bytes(v, u16::to_le_bytes),
        Storage::U32(v) => le_bytes(v, u32::to_le_bytes),
        Storage::U64(v) => le_bytes(v, u64::to_le_bytes),
        Storage::Bool(v) => v.iter().map(|&b| b as u8).collect(),
        Storage::Complex64(v) => v
            .iter()
            .flat_map(|c| [c[0].to_le_bytes(), c[1].to_le_bytes()].concat())
            .collect(),
        Storage::Complex128(v) => v
            .iter()
            .flat_map(|c| [c[0].to_le_bytes(), c[1].to_le_bytes()].concat())
            .collect(),
        Storage::Bits(v) if t.dtype().bits() < 8 => pack_bits(v, t.dtype().bits()),
        Storage::Bits(v) => v.clone(),
        Storage::String(v) => {
            p.string_data = v.iter().map(|s| s.as_bytes().to_vec().into()).collect();
            return p;
        }
    };
    p.raw_data = Some(raw.into());
    p
}

fn shape_to_proto(dims: &[Dim]) -> TensorShapeProto {
    TensorShapeProto {
        dim: dims
            .iter()
            .map(|d| Dimension {
                value: match d {
                    Dim::Known(n) => Some(dimension::Value::DimValue(*n as i64)),
                    Dim::Symbolic(s) => Some(dimension::Value::DimParam(s.clone())),
                    Dim::Unknown => None,
                },
                denotation: None,
            })
            .collect(),
    }
}

/// Encodes a value type (`None` for [`ValueType::Unknown`]).
pub fn type_to_proto(t: &ValueType) -> Option<TypeProto> {
    use type_proto::Value as V;
    let value = match t {
        ValueType::Tensor { dtype, shape } => V::TensorType(type_proto::Tensor {
            elem_type: Some(dtype.onnx_code()),
            shape: shape.as_deref().map(shape_to_proto),
        }),
        ValueType::SparseTensor { dtype, shape } => V::SparseTensorType(type_proto::SparseTensor {
            elem_type: Some(dtype.onnx_code()),
            shape: shape.as_deref().map(shape_to_proto),
        }),
        ValueType::Sequence(e) => V::SequenceType(Box::new(type_proto::Sequence {
            elem_type: type_to_proto(e).map(Box::new),
        })),
        ValueType::Optional(e) => V::OptionalType(Box::new(type_proto::Optional {
            elem_type: type_to_proto(e).map(Box::new),
        })),
        ValueType::Map { key, value } => V::MapType(Box::new(type_proto::Map {
            key_type: Some(key.onnx_code()),
            value_type: type_to_proto(value).map(Box::new),
        })),
        ValueType::Unknown => return None,
    };
    Some(TypeProto {
        value: Some(value),
        denotation: None,
    })
}

/// Encodes a named, typed value.
pub fn value_info_to_proto(v: &ValueInfo) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(v.name.clone()),
        r#type: type_to_proto(&v.ty),
        ..Default::default()
    }
}

fn attribute_to_proto(name: &str, a: &Attribute) -> AttributeProto {
    let mut p = AttributeProto {
        name: Some(name.to_string()),
        ..Default::default()
    };
    let ty = match a {
        Attribute::Float(v) => {
            p.f = Some(*v);
            AttributeType::Float
        }
        Attribute::Int(v) => {
            p.i = Some(*v);
            AttributeType::Int
        }
        Attribute::String(v) => {
            p.s = Some(v.clone().into());
            AttributeType::String
        }
        Attribute::Tensor(t) => {
            p.t = Some(tensor_to_proto("", t));
            AttributeType::Tensor
        }
        Attribute::Graph(g) => {
            p.g = Some(graph_to_proto(g));
            AttributeType::Graph
        }
        Attribute::Type(t) => {
            p.tp = type_to_proto(t);
            AttributeType::TypeProto
        }
        Attribute::Floats(v) => {
            p.floats = v.clone();
            AttributeType::Floats
        }
        Attribute::Ints(v) => {
            p.ints = v.clone();
            AttributeType::Ints
        }
        Attribute::Strings(v) => {
            p.strings = v.iter().map(|s| s.clone().into()).collect();
            AttributeType::Strings
        }
        Attribute::Tensors(v) => {
            p.tensors = v.iter().map(|t| tensor_to_proto("", t)).collect();
            AttributeType::Tensors
        }
        Attribute::Graphs(v) => {
            p.graphs = v.iter().map(|g| graph_to_proto(g)).collect();
            AttributeType::Graphs
        }
        Attribute::Types(v) => {
            p.type_protos = v.iter().filter_map(type_to_proto).collect();
            AttributeType::TypeProtos
        }
    };
    p.r#type = Some(ty as i32);
    p
}

/// Encodes a node with its attributes (subgraphs included).
pub fn node_to_proto(n: &Node) -> NodeProto {
    NodeProto {
        name: Some(n.name.clone()),
        op_type: Some(n.op_type.clone()),
        domain: Some(n.domain.clone()),
        input: n.inputs.clone(),
        output: n.outputs.clone(),
        attribute: n
            .attributes
            .iter()
            .map(|(k, v)| attribute_to_proto(k, v))
            .collect(),
        ..Default::default()
    }
}

/// Encodes a graph: nodes, interface, initializers, and the known types of
/// intermediate values as `value_info`.
pub fn graph_to_proto(g: &Graph) -> GraphProto {
    let mut names: Vec<&String> = g.initializers.keys().collect();
    names.sort();
    let interface: HashSet<&str> = g
        .inputs
        .iter()
        .chain(&g.overridable_initializers)
        .chain(&g.outputs)
        .map(|v| v.name.as_str())
        .collect();
    let mut value_info: Vec<ValueInfoProto> = g
        .value_types
        .iter()
        .filter(|(k, _)| !interface.contains(k.as_str()) && !g.initializers.contains_key(*k))
        .map(|(k, t)| {
            value_info_to_proto(&ValueInfo {
                name: k.clone(),
                ty: t.clone(),
            })
        })
        .collect();
    value_info.sort_by(|a, b| a.name.cmp(&b.name));
    GraphProto {
        name: Some(g.name.clone()),
        doc_string: (!g.doc_string.is_empty()).then(|| g.doc_string.clone()),
        node: g.nodes.iter().map(node_to_proto).collect(),
        input: g
            .inputs
            .iter()
            .chain(&g.overridable_initializers)
            .map(value_info_to_proto)
            .collect(),
        output: g.outputs.iter().map(value_info_to_proto).collect(),
        initializer: names
            .into_iter()
            .map(|n| tensor_to_proto(n, &g.initializers[n]))
            .collect(),
        value_info,
        ..Default::default()
    }
}

impl Model {
    /// Encodes the model as a `ModelProto`.
    pub fn to_proto(&self) -> ModelProto {
        ModelProto {
            // IR 4 lets initializers be left out of the inputs, which
            // constants of older models are once lowered.
            ir_version: Some(self.ir_version.max(4)),
            producer_name: Some(self.producer_name.clone()),
            producer_version: Some(self.producer_version.clone()),
            domain: Some(self.domain.clone()),
            model_version: self.model_version,
            doc_string: Some(self.doc_string.clone()),
            opset_import: self
                .opsets
                .iter()
                .map(|(d, v)| OperatorSetIdProto {
                    domain: Some(d.clone()),
                    version: Some(*v),
                })
                .collect(),
            metadata_props: self
                .metadata
                .iter()
                .map(|(k, v)| StringStringEntryProto {
                    key: Some(k.clone()),
                    value: Some(v.clone()),
                })
                .collect(),
            graph: Some(graph_to_proto(&self.graph)),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::dtype::DataType;
    use crate::ir::LowerOptions;
    use crate::tensor_proto::{tensor_from_proto, DEFAULT_MEMORY_LIMIT};

    fn round_trip(t: &Tensor) -> Tensor {
        tensor_from_proto(&tensor_to_proto("t", t), DEFAULT_MEMORY_LIMIT).unwrap()
    }

    #[test]
    fn tensors_of_every_storage_round_trip() {
        let cases = vec![
            Tensor::from_vec(vec![2], vec![1.5f32, -0.0]).unwrap(),
            Tensor::from_vec(vec![1], vec![f64::MIN_POSITIVE]).unwrap(),
            Tensor::from_vec(vec![2], vec![half::f16::from_f32(0.5), half::f16::NAN]).unwrap(),
            Tensor::from_vec(vec![1], vec![half::bf16::from_f32(3.0)]).unwrap(),
            Tensor::from_vec(vec![3], vec![i8::MIN, 0, i8::MAX]).unwrap(),
            Tensor::from_vec(vec![2], vec![i64::MIN, 7]).unwrap(),
            Tensor::from_vec(vec![2], vec![u64::MAX, 1]).unwrap(),
            Tensor::from_vec(vec![2, 1], vec![true, false]).unwrap(),
            Tensor::from_strings(vec![2], vec!["a".into(), "ünï".into()]).unwrap(),
            Tensor::from_storage(
                DataType::Complex64,
                vec![1],
                Storage::Complex64(vec![[1.0, -2.0]]),
            )
            .unwrap(),
            // int4 [7, -1, 1] unpacked as sign-extended bytes; odd count pads the last byte.
            Tensor::from_storage(DataType::I4, vec![3], Storage::Bits(vec![7, 0xFF, 1])).unwrap(),
            Tensor::from_storage(DataType::U2, vec![5], Storage::Bits(vec![0, 1, 2, 3, 1]))
                .unwrap(),
            Tensor::from_storage(DataType::F8E4M3FN, vec![2], Storage::Bits(vec![0x38, 0x7F]))
                .unwrap(),
        ];
        for t in &cases {
            let back = round_trip(t);
            match (t.storage(), back.storage()) {
                (Storage::F16(a), Storage::F16(b)) => {
                    assert_eq!(
                        a.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                        b.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
                    )
                }
                _ => assert_eq!(&back, t, "{t:?}"),
            }
        }
    }

    #[test]
    fn graphs_with_subgraphs_round_trip_through_lowering() {
        use oxrt_onnx::proto::{GraphProto as G, NodeProto as N};
        let body = G {
            name: Some("then".into()),
            node: vec![N {
                op_type: Some("Relu".into()),
                name: Some("inner".into()),
                input: vec!["x".into()],
                output: vec!["z".into()],
                ..Default::default()
            }],
            output: vec![ValueInfoProto {
                name: Some("z".into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut node = N {
            op_type: Some("If".into()),
            name: Some("if".into()),
            input: vec!["c".into()],
            output: vec!["y".into()],
            ..Default::default()
        };
        node.attribute.push(AttributeProto {
            name: Some("then_branch".into()),
            r#type: Some(AttributeType::Graph as i32),
            g: Some(body),
            ..Default::default()
        });
        node.attribute.push(AttributeProto {
            name: Some("axes".into()),
            r#type: Some(AttributeType::Ints as i32),
            ints: vec![1, -1],
            ..Default::default()
        });
        let model = ModelProto {
            ir_version: Some(8),
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(13),
            }],
            graph: Some(G {
                name: Some("g".into()),
                node: vec![node],
                input: vec![value_info_to_proto(&ValueInfo {
                    name: "c".into(),
                    ty: ValueType::tensor(DataType::Bool, &[]),
                })],
                output: vec![value_info_to_proto(&ValueInfo {
                    name: "y".into(),
                    ty: ValueType::Tensor {
                        dtype: DataType::F32,
                        shape: Some(vec![Dim::Symbolic("n".into()), Dim::Unknown]),
                    },
                })],
                initializer: vec![tensor_to_proto(
                    "x",
                    &Tensor::from_vec(vec![2], vec![1.0f32, -1.0]).unwrap(),
                )],
                ..Default::default()
            }),
            ..Default::default()
        };
        let lowered = Model::from_proto(&model, &LowerOptions::default()).unwrap();
        let again = Model::from_proto(&lowered.to_proto(), &LowerOptions::default()).unwrap();
        assert_eq!(again.graph.outputs, lowered.graph.outputs);
        assert_eq!(again.graph.inputs, lowered.graph.inputs);
        assert_eq!(
            again.graph.initializers["x"],
            lowered.graph.initializers["x"]
        );
        let (a, b) = (&again.graph.nodes[0], &lowered.graph.nodes[0]);
        assert_eq!(
            (&a.name, &a.op_type, &a.inputs, &a.outputs),
            (&b.name, &b.op_type, &b.inputs, &b.outputs)
        );
        assert_eq!(a.get_ints("axes").unwrap(), Some(&[1i64, -1][..]));
        let sub = a.get_graph("then_branch").unwrap().unwrap();
        assert_eq!(sub.nodes[0].name, "inner");
        assert_eq!(sub.outputs[0].name, "z");
        assert_eq!(again.opsets, lowered.opsets);
    }
}

//! Builders for small ONNX models used by the integration tests.
#![allow(dead_code)]

use oxrt::onnx::proto::{
    attribute_proto::AttributeType,
    tensor_shape_proto::{dimension, Dimension},
    type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use prost::Message;

/// A dimension: a number or a symbol.
pub enum D {
    N(i64),
    S(&'static str),
}

pub fn vi(name: &str, elem: i32, dims: &[D]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                D::N(n) => dimension::Value::DimValue(*n),
                D::S(s) => dimension::Value::DimParam(s.to_string()),
            }),
            denotation: None,
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem),
                shape: Some(TensorShapeProto { dim }),
            })),
            denotation: None,
        }),
        ..Default::default()
    }
}

pub fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(name.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

pub fn int_attr(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

pub fn ints_attr(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..Default::default()
    }
}

pub fn f32_tensor(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(1),
        raw_data: Some(
            data.iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<u8>>()
                .into(),
        ),
        ..Default::default()
    }
}

pub fn model(
    nodes: Vec<NodeProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    inits: Vec<TensorProto>,
    opset: i64,
) -> ModelProto {
    ModelProto {
        ir_version: Some(8),
        producer_name: Some("oxrt-tests".into()),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(opset),
        }],
        graph: Some(GraphProto {
            name: Some("test".into()),
            node: nodes,
            input: inputs,
            output: outputs,
            initializer: inits,
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn bytes(m: &ModelProto) -> Vec<u8> {
    m.encode_to_vec()
}

pub const FLOAT: i32 = 1;
pub const INT64: i32 = 7;

/// The bundled example model's path.
pub fn mnist_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/mnist")
}

/// Reads a float32 or int64 `.npy` into a tensor.
pub fn read_npy(path: &std::path::Path) -> oxrt::Tensor {
    let bytes = std::fs::read(path).expect("read npy");
    let npy = npyz::NpyFile::new(&bytes[..]).expect("parse npy");
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    match npy.dtype() {
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float => {
            oxrt::Tensor::from_vec(shape, npy.into_vec::<f32>().expect("f32")).expect("tensor")
        }
        _ => oxrt::Tensor::from_vec(shape, npy.into_vec::<i64>().expect("i64")).expect("tensor"),
    }
}

/// How many rows of 10 logits pick the label of the held-out digit at
/// their position.
pub fn digits_correct(logits: &oxrt::Tensor, labels: &oxrt::Tensor) -> usize {
    logits
        .as_slice::<f32>()
        .expect("f32 logits")
        .chunks(10)
        .zip(labels.as_slice::<i64>().expect("i64 labels"))
        .filter(|(row, &l)| {
            let best = row
                .iter()
                .enumerate()
                .fold(0, |b, (i, v)| if *v > row[b] { i } else { b });
            best as i64 == l
        })
        .count()
}

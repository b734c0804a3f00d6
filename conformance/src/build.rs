//! Builds single-node ONNX models for property tests.

use oxrt::onnx::proto::{
    attribute_proto::AttributeType, tensor_shape_proto::dimension, tensor_shape_proto::Dimension,
    type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use oxrt::{DataType, Session, SessionOutputs, Tensor};
use prost::Message;

/// An attribute value for [`single_node`].
#[derive(Debug, Clone)]
pub enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
    Str(&'static str),
}

fn attribute(name: &str, value: &Attr) -> AttributeProto {
    let mut a = AttributeProto {
        name: Some(name.to_string()),
        ..Default::default()
    };
    match value {
        Attr::Int(v) => {
            a.r#type = Some(AttributeType::Int as i32);
            a.i = Some(*v);
        }
        Attr::Ints(v) => {
            a.r#type = Some(AttributeType::Ints as i32);
            a.ints = v.clone();
        }
        Attr::Float(v) => {
            a.r#type = Some(AttributeType::Float as i32);
            a.f = Some(*v);
        }
        Attr::Str(v) => {
            a.r#type = Some(AttributeType::String as i32);
            a.s = Some(v.as_bytes().to_vec().into());
        }
    }
    a
}

fn value_info(name: &str, dtype: DataType, rank: Option<usize>) -> ValueInfoProto {
    let shape = rank.map(|r| TensorShapeProto {
        dim: (0..r)
            .map(|i| Dimension {
                value: Some(dimension::Value::DimParam(format!("{name}_d{i}"))),
                denotation: None,
            })
            .collect(),
    });
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(dtype.onnx_code()),
                shape,
            })),
            denotation: None,
        }),
        ..Default::default()
    }
}

/// A model with one `op` node over `inputs` (all fed at run time, with
/// symbolic dims of their rank), producing `outputs` outputs of `out_dtype`.
pub fn single_node(
    op: &str,
    opset: i64,
    inputs: &[&Tensor],
    outputs: usize,
    out_dtype: DataType,
    attrs: &[(&str, Attr)],
) -> Vec<u8> {
    let in_names: Vec<String> = (0..inputs.len()).map(|i| format!("x{i}")).collect();
    let out_names: Vec<String> = (0..outputs).map(|i| format!("y{i}")).collect();
    let node = NodeProto {
        op_type: Some(op.to_string()),
        name: Some("node".into()),
        input: in_names.clone(),
        output: out_names.clone(),
        attribute: attrs.iter().map(|(n, v)| attribute(n, v)).collect(),
        ..Default::default()
    };
    let model = ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(opset),
        }],
        graph: Some(GraphProto {
            name: Some(format!("single_{op}")),
            node: vec![node],
            input: in_names
                .iter()
                .zip(inputs)
                .map(|(n, t)| value_info(n, t.dtype(), Some(t.rank())))
                .collect(),
            output: out_names
                .iter()
                .map(|n| value_info(n, out_dtype, None))
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    model.encode_to_vec()
}

/// Builds the single-node model and runs it on `inputs` (on the CPU provider).
pub fn run_single(
    op: &str,
    opset: i64,
    inputs: &[&Tensor],
    out_dtype: DataType,
    attrs: &[(&str, Attr)],
) -> oxrt::Result<SessionOutputs> {
    run_single_on(&[], op, opset, inputs, out_dtype, attrs).map(|(o, _)| o)
}

/// Like [`run_single`] on `providers` (CPU takes what they decline); also
/// returns the provider that ran the node.
pub fn run_single_on(
    providers: &[oxrt::Provider],
    op: &str,
    opset: i64,
    inputs: &[&Tensor],
    out_dtype: DataType,
    attrs: &[(&str, Attr)],
) -> oxrt::Result<(SessionOutputs, String)> {
    let bytes = single_node(op, opset, inputs, 1, out_dtype, attrs);
    let session = Session::builder()
        .with_providers(providers.iter().cloned())
        .with_intra_threads(1)
        .commit_from_memory(&bytes)?;
    let placed = session
        .node_placement()
        .first()
        .map(|(_, p)| p.to_string())
        .unwrap_or_default();
    let feed: Vec<(String, Tensor)> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("x{i}"), (*t).clone()))
        .collect();
    Ok((session.run(feed)?, placed))
}

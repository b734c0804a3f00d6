//! Conversions between oxrt's types and what crosses the provider ABI:
//! element types as DLPack codes, graphs and nodes as serialized ONNX models.

use std::collections::BTreeMap;

use oxrt_onnx::proto::{GraphProto, ModelProto, OperatorSetIdProto, TensorProto, ValueInfoProto};
use oxrt_provider_abi::{type_code, OxrtDataType};
use prost::Message;

use crate::dtype::DataType;
use crate::ir::export::{graph_to_proto, node_to_proto, tensor_to_proto, type_to_proto};
use crate::ir::{Graph, Node, ValueType};
use crate::provider::KernelInfo;

/// The DLPack code of an element type (`None` for types that cannot cross:
/// strings and sub-byte formats).
pub fn to_abi_dtype(d: DataType) -> Option<OxrtDataType> {
    use DataType as D;
    let (code, bits) = match d {
        D::F32 => (type_code::FLOAT, 32),
        D::F64 => (type_code::FLOAT, 64),
        D::F16 => (type_code::FLOAT, 16),
        D::BF16 => (type_code::BFLOAT, 16),
        D::I8 => (type_code::INT, 8),
        D::I16 => (type_code::INT, 16),
        D::I32 => (type_code::INT, 32),
        D::I64 => (type_code::INT, 64),
        D::U8 => (type_code::UINT, 8),
        D::U16 => (type_code::UINT, 16),
        D::U32 => (type_code::UINT, 32),
        D::U64 => (type_code::UINT, 64),
        D::Bool => (type_code::BOOL, 8),
        D::Complex64 => (type_code::COMPLEX, 64),
        D::Complex128 => (type_code::COMPLEX, 128),
        _ => return None,
    };
    Some(OxrtDataType {
        code,
        bits,
        lanes: 1,
    })
}

/// The element type of a DLPack code (`None` if oxrt has no such type).
pub fn from_abi_dtype(t: OxrtDataType) -> Option<DataType> {
    if t.lanes != 1 {
        return None;
    }
    use DataType as D;
    Some(match (t.code, t.bits) {
        (type_code::FLOAT, 32) => D::F32,
        (type_code::FLOAT, 64) => D::F64,
        (type_code::FLOAT, 16) => D::F16,
        (type_code::BFLOAT, 16) => D::BF16,
        (type_code::INT, 8) => D::I8,
        (type_code::INT, 16) => D::I16,
        (type_code::INT, 32) => D::I32,
        (type_code::INT, 64) => D::I64,
        (type_code::UINT, 8) => D::U8,
        (type_code::UINT, 16) => D::U16,
        (type_code::UINT, 32) => D::U32,
        (type_code::UINT, 64) => D::U64,
        (type_code::BOOL, 8) => D::Bool,
        (type_code::COMPLEX, 64) => D::Complex64,
        (type_code::COMPLEX, 128) => D::Complex128,
        _ => return None,
    })
}

fn model(graph: GraphProto, opsets: &BTreeMap<String, i64>) -> Vec<u8> {
    ModelProto {
        ir_version: Some(10),
        producer_name: Some("oxrt".into()),
        opset_import: opsets
            .iter()
            .map(|(d, v)| OperatorSetIdProto {
                domain: Some(d.clone()),
                version: Some(*v),
            })
            .collect(),
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

/// An initializer's name, type and dims without its data.
fn strip_data(t: TensorProto) -> TensorProto {
    TensorProto {
        name: t.name,
        dims: t.dims,
        data_type: t.data_type,
        ..Default::default()
    }
}

/// The whole graph for a capability query: every known type as
/// `value_info`, initializers without their data.
pub fn capability_model(graph: &Graph, opsets: &BTreeMap<String, i64>) -> Vec<u8> {
    let mut g = graph_to_proto(graph);
    g.initializer = std::mem::take(&mut g.initializer)
        .into_iter()
        .map(strip_data)
        .collect();
    model(g, opsets)
}

fn value_info(name: &str, ty: Option<&ValueType>) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: ty.and_then(type_to_proto),
        ..Default::default()
    }
}

/// The one-node model a kernel is compiled from, and how its graph inputs
/// and outputs map to the node's input and output positions.
pub struct KernelModel {
    pub bytes: Vec<u8>,
    /// Node input position of each graph input.
    pub inputs: Vec<usize>,
    /// Node output position of each graph output.
    pub outputs: Vec<usize>,
}

/// Builds the model for one node: non-constant inputs as graph inputs (each
/// name once), constant inputs as initializers with data (only when
/// `with_constants`), outputs with their inferred types.
pub fn kernel_model(node: &Node, info: &KernelInfo<'_>, with_constants: bool) -> KernelModel {
    let mut g = GraphProto {
        name: Some(format!("{}_kernel", node.name)),
        node: vec![node_to_proto(node)],
        ..Default::default()
    };
    let mut inputs = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, name) in node.inputs.iter().enumerate() {
        if name.is_empty() || !seen.insert(name.as_str()) {
            continue;
        }
        match info.constants.get(&i) {
            Some(t) if with_constants => g.initializer.push(tensor_to_proto(name, t)),
            Some(t) => g.initializer.push(TensorProto {
                name: Some(name.clone()),
                dims: t.shape().iter().map(|&d| d as i64).collect(),
                data_type: Some(t.dtype().onnx_code()),
                ..Default::default()
            }),
            None => {
                let ty = info.node.input_types.get(i).copied().flatten();
                g.input.push(value_info(name, ty));
                inputs.push(i);
            }
        }
    }
    let mut outputs = Vec::new();
    for (i, name) in node.outputs.iter().enumerate() {
        if !name.is_empty() {
            let ty = info.output_types.get(i).copied().flatten();
            g.output.push(value_info(name, ty));
            outputs.push(i);
        }
    }
    let mut opsets = BTreeMap::new();
    opsets.insert(node.domain.clone(), info.node.opset);
    KernelModel {
        bytes: model(g, &opsets),
        inputs,
        outputs,
    }
}

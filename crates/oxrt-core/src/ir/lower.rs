//! Lowering a checked `ModelProto` into the IR.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use oxrt_onnx::proto::{
    attribute_proto::AttributeType, tensor_shape_proto::dimension, type_proto, AttributeProto,
    GraphProto, ModelProto, TypeProto, ValueInfoProto,
};

use super::{Attribute, Dim, Graph, Model, Node, ValueInfo, ValueType};
use crate::dtype::DataType;
use crate::error::{Error, Result};
use crate::tensor_proto::{tensor_from_proto, DEFAULT_MEMORY_LIMIT};

/// Options for lowering.
#[derive(Debug, Clone)]
pub struct LowerOptions {
    /// Largest tensor (in bytes) accepted as an initializer or constant.
    pub memory_limit: u64,
}

impl Default for LowerOptions {
    fn default() -> Self {
        Self {
            memory_limit: DEFAULT_MEMORY_LIMIT,
        }
    }
}

fn invalid(location: &str, message: impl Into<String>) -> Error {
    Error::InvalidModel {
        location: location.to_string(),
        message: message.into(),
    }
}

impl Model {
    /// Lowers a decoded (and preferably checked) model.
    pub fn from_proto(proto: &ModelProto, options: &LowerOptions) -> Result<Model> {
        let graph = proto
            .graph
            .as_ref()
            .ok_or_else(|| invalid("model", "the model has no graph"))?;
        let mut opsets = BTreeMap::new();
        for op in &proto.opset_import {
            let domain = match op.domain() {
                "ai.onnx" => "",
                d => d,
            };
            opsets.insert(domain.to_string(), op.version.unwrap_or(0));
        }
        if opsets.is_empty() {
            // IR < 3 models have no opset_import and mean opset 1.
            opsets.insert(String::new(), 1);
        }
        let ir_version = proto.ir_version.unwrap_or(0);
        let mut graph = lower_graph(graph, options)?;
        if ir_version < 4 {
            // Before IR 4 every initializer had to be listed as an input too;
            // that did not make it a value to feed (as in ONNX Runtime), so
            // they stay constants.
            graph.overridable_initializers.clear();
        }
        Ok(Model {
            graph,
            opsets,
            ir_version,
            producer_name: proto.producer_name().to_string(),
            producer_version: proto.producer_version().to_string(),
            domain: proto.domain().to_string(),
            model_version: proto.model_version,
            doc_string: proto.doc_string().to_string(),
            metadata: proto
                .metadata_props
                .iter()
                .map(|kv| (kv.key().to_string(), kv.value().to_string()))
                .collect(),
        })
    }
}

fn lower_graph(g: &GraphProto, options: &LowerOptions) -> Result<Graph> {
    let loc = format!("graph '{}'", g.name());
    let mut initializers = HashMap::new();
    for t in &g.initializer {
        let tensor = tensor_from_proto(t, options.memory_limit)?;
        initializers.insert(t.name().to_string(), Arc::new(tensor));
    }
    if let Some(s) = g.sparse_initializer.first() {
        let name = s.values.as_ref().map(|v| v.name()).unwrap_or_default();
        return Err(invalid(
            &loc,
            format!("sparse initializer '{name}': sparse tensors are not supported yet"),
        ));
    }
    let mut inputs = Vec::new();
    let mut overridable = Vec::new();
    for vi in &g.input {
        let v = lower_value_info(vi);
        if initializers.contains_key(&v.name) {
            overridable.push(v);
        } else {
            inputs.push(v);
        }
    }
    let outputs = g.output.iter().map(lower_value_info).collect();
    let mut value_types: HashMap<String, ValueType> = g
        .value_info
        .iter()
        .map(lower_value_info)
        .map(|v| (v.name, v.ty))
        .collect();
    for (name, t) in &initializers {
        value_types.insert(name.clone(), ValueType::tensor(t.dtype(), t.shape()));
    }
    let mut used_names: HashSet<String> = g.node.iter().map(|n| n.name().to_string()).collect();
    let mut nodes = Vec::with_capacity(g.node.len());
    for (i, n) in g.node.iter().enumerate() {
        let mut name = n.name().to_string();
        if name.is_empty() {
            name = format!("{}_{i}", n.op_type());
            while !used_names.insert(name.clone()) {
                name.push('_');
            }
        }
        let nloc = format!("{loc} > node '{name}' ({})", n.op_type());
        let mut attributes = BTreeMap::new();
        for a in &n.attribute {
            if a.ref_attr_name.is_some() {
                return Err(invalid(
                    &nloc,
                    format!(
                        "attribute '{}' refers to a function attribute outside a function",
                        a.name()
                    ),
                ));
            }
            let value = lower_attribute(a, options, &nloc)?;
            attributes.insert(a.name().to_string(), value);
        }
        nodes.push(Node {
            name,
            op_type: n.op_type().to_string(),
            domain: match n.domain() {
                "ai.onnx" => String::new(),
                d => d.to_string(),
            },
            inputs: n.input.clone(),
            outputs: n.output.clone(),
            attributes,
        });
    }
    Ok(Graph {
        name: g.name().to_string(),
        doc_string: g.doc_string().to_string(),
        nodes,
        inputs,
        overridable_initializers: overridable,
        outputs,
        initializers,
        value_types,
    })
}

fn lower_value_info(vi: &ValueInfoProto) -> ValueInfo {
    ValueInfo {
        name: vi.name().to_string(),
        ty: vi.r#type.as_ref().map_or(ValueType::Unknown, lower_type),
    }
}

fn lower_shape(shape: Option<&oxrt_onnx::proto::TensorShapeProto>) -> Option<Vec<Dim>> {
    shape.map(|s| {
        s.dim
            .iter()
            .map(|d| match &d.value {
                Some(dimension::Value::DimValue(v)) if *v >= 0 => Dim::Known(*v as usize),
                Some(dimension::Value::DimParam(p)) if !p.is_empty() => Dim::Symbolic(p.clone()),
                _ => Dim::Unknown,
            })
            .collect()
    })
}

/// Converts an ONNX `TypeProto`; element types it does not know become `Unknown`.
pub fn lower_type(tp: &TypeProto) -> ValueType {
    let elem = |code: Option<i32>| DataType::from_onnx(code.unwrap_or(0));
    match &tp.value {
        Some(type_proto::Value::TensorType(t)) => match elem(t.elem_type) {
            Some(dtype) => ValueType::Tensor {
                dtype,
                shape: lower_shape(t.shape.as_ref()),
            },
            None => ValueType::Unknown,
        },
        Some(type_proto::Value::SparseTensorType(t)) => match elem(t.elem_type) {
            Some(dtype) => ValueType::SparseTensor {
                dtype,
                shape: lower_shape(t.shape.as_ref()),
            },
            None => ValueType::Unknown,
        },
        Some(type_proto::Value::SequenceType(s)) => ValueType::Sequence(Box::new(
            s.elem_type
                .as_deref()
                .map_or(ValueType::Unknown, lower_type),
        )),
        Some(type_proto::Value::OptionalType(o)) => ValueType::Optional(Box::new(
            o.elem_type
                .as_deref()
                .map_or(ValueType::Unknown, lower_type),
        )),
        Some(type_proto::Value::MapType(m)) => match elem(m.key_type) {
            Some(key) => ValueType::Map {
                key,
                value: Box::new(
                    m.value_type
                        .as_deref()
                        .map_or(ValueType::Unknown, lower_type),
                ),
            },
            None => ValueType::Unknown,
        },
        Some(type_proto::Value::OpaqueType(_)) | None => ValueType::Unknown,
    }
}

/// The attribute type, inferred from the populated field for old models
/// that leave `type` unset.
fn attribute_type(a: &AttributeProto) -> AttributeType {
    let declared =
        AttributeType::try_from(a.r#type.unwrap_or(0)).unwrap_or(AttributeType::Undefined);
    if declared != AttributeType::Undefined {
        return declared;
    }
    use AttributeType as T;
    [
        (a.f.is_some(), T::Float),
        (a.i.is_some(), T::Int),
        (a.s.is_some(), T::String),
        (a.t.is_some(), T::Tensor),
        (a.g.is_some(), T::Graph),
        (a.tp.is_some(), T::TypeProto),
        (!a.floats.is_empty(), T::Floats),
        (!a.ints.is_empty(), T::Ints),
        (!a.strings.is_empty(), T::Strings),
        (!a.tensors.is_empty(), T::Tensors),
        (!a.graphs.is_empty(), T::Graphs),
        (a.sparse_tensor.is_some(), T::SparseTensor),
        (!a.sparse_tensors.is_empty(), T::SparseTensors),
    ]
    .into_iter()
    .find(|(present, _)| *present)
    .map_or(T::Undefined, |(_, t)| t)
}

fn lower_attribute(a: &AttributeProto, options: &LowerOptions, nloc: &str) -> Result<Attribute> {
    let aloc = format!("{nloc} > attribute '{}'", a.name());
    let tensor = |t| tensor_from_proto(t, options.memory_limit).map(Arc::new);
    use AttributeType as T;
    Ok(match attribute_type(a) {
        T::Float => Attribute::Float(a.f.unwrap_or(0.0)),
        T::Int => Attribute::Int(a.i.unwrap_or(0)),
        T::String => Attribute::String(a.s.as_deref().unwrap_or_default().to_vec()),
        T::Tensor => match &a.t {
            Some(t) => Attribute::Tensor(tensor(t)?),
            None => return Err(invalid(&aloc, "TENSOR attribute without a tensor")),
        },
        T::Graph => match &a.g {
            Some(g) => Attribute::Graph(Arc::new(lower_graph(g, options)?)),
            None => return Err(invalid(&aloc, "GRAPH attribute without a graph")),
        },
        T::TypeProto => Attribute::Type(a.tp.as_ref().map_or(ValueType::Unknown, lower_type)),
        T::Floats => Attribute::Floats(a.floats.clone()),
        T::Ints => Attribute::Ints(a.ints.clone()),
        T::Strings => Attribute::Strings(a.strings.iter().map(|s| s.to_vec()).collect()),
        T::Tensors => Attribute::Tensors(a.tensors.iter().map(tensor).collect::<Result<_>>()?),
        T::Graphs => Attribute::Graphs(
            a.graphs
                .iter()
                .map(|g| lower_graph(g, options).map(Arc::new))
                .collect::<Result<_>>()?,
        ),
        T::TypeProtos => Attribute::Types(a.type_protos.iter().map(lower_type).collect()),
        T::SparseTensor | T::SparseTensors => {
            return Err(invalid(
                &aloc,
                "sparse tensor attributes are not supported yet",
            ))
        }
        T::Undefined => return Err(invalid(&aloc, "the attribute has no value")),
    })
}

//! Structural validation of a model, in the spirit of `onnx.checker`.
//!
//! Checks opset imports, that every value is defined exactly once and every
//! node input refers to a defined value (graph input, initializer, node output
//! or a value of an enclosing graph), that the nodes form a DAG, that attribute
//! payloads match their declared types, and that the main graph's inputs and
//! outputs are typed. Subgraphs (If/Loop/Scan bodies) are checked recursively.

use std::collections::{HashMap, HashSet};

use crate::error::{CheckError, Result};
use crate::proto::{
    attribute_proto::AttributeType, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    ValueInfoProto,
};
use crate::{MAX_DEFAULT_OPSET, MAX_ML_OPSET, ONNX_RELEASE};

/// Options of [`check_model`].
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Accept default-domain opsets newer than the vendored ONNX release.
    pub allow_unknown_opset: bool,
}

/// Checks `model`, returning the first problem found.
pub fn check_model(model: &ModelProto, options: &CheckOptions) -> Result<(), CheckError> {
    let ir = model.ir_version.unwrap_or(0);
    if ir <= 0 {
        return Err(CheckError::new("model", "ir_version is missing"));
    }
    check_opsets(model, options)?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| CheckError::new("model", "the model has no graph"))?;
    let loc = format!("graph '{}'", graph.name());
    check_graph(graph, &HashSet::new(), &loc, true)
}

fn check_opsets(model: &ModelProto, options: &CheckOptions) -> Result<(), CheckError> {
    let ir = model.ir_version.unwrap_or(0);
    if ir >= 3 && model.opset_import.is_empty() {
        return Err(CheckError::new(
            "model",
            "opset_import is empty (required since IR version 3)",
        ));
    }
    let mut seen = HashSet::new();
    for op in &model.opset_import {
        let domain = op.domain();
        let version = op.version.unwrap_or(0);
        let loc = format!("model > opset_import '{domain}'");
        if !seen.insert(domain.to_string()) {
            return Err(CheckError::new(loc, "domain is imported twice"));
        }
        if version <= 0 {
            return Err(CheckError::new(
                loc,
                format!("opset version {version} is not a positive integer"),
            ));
        }
        let max = match domain {
            "" | "ai.onnx" => Some(MAX_DEFAULT_OPSET),
            "ai.onnx.ml" => Some(MAX_ML_OPSET),
            _ => None,
        };
        if let Some(max) = max {
            if version > max && !options.allow_unknown_opset {
                return Err(CheckError::new(
                    loc,
                    format!(
                        "unsupported opset version {version}: ONNX {ONNX_RELEASE} defines versions 1..={max}"
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn node_label(node: &NodeProto, index: usize) -> String {
    let name = if node.name().is_empty() {
        format!("#{index}")
    } else {
        format!("'{}'", node.name())
    };
    let domain = match node.domain() {
        "" => String::new(),
        d => format!("{d}::"),
    };
    format!("node {name} ({domain}{})", node.op_type())
}

fn check_graph(
    graph: &GraphProto,
    outer: &HashSet<String>,
    loc: &str,
    is_main: bool,
) -> Result<(), CheckError> {
    // 1. Every value is defined once.
    let mut defined: HashMap<String, String> = HashMap::new();
    let mut define = |name: &str, by: String| -> Result<(), CheckError> {
        if name.is_empty() {
            return Err(CheckError::new(
                format!("{loc} > {by}"),
                "a value has an empty name",
            ));
        }
        if let Some(prev) = defined.insert(name.to_string(), by.clone()) {
            // An initializer may also be listed as a graph input (IR < 4 style).
            if !(prev.starts_with("input") && by.starts_with("initializer")) {
                return Err(CheckError::new(
                    format!("{loc} > {by}"),
                    format!("value '{name}' is already defined by {prev}"),
                ));
            }
        }
        Ok(())
    };
    for (i, v) in graph.input.iter().enumerate() {
        define(v.name(), format!("input #{i}"))?;
    }
    for (i, t) in graph.initializer.iter().enumerate() {
        define(t.name(), format!("initializer #{i} '{}'", t.name()))?;
    }
    for (i, t) in graph.sparse_initializer.iter().enumerate() {
        let name = t.values.as_ref().map(|v| v.name()).unwrap_or_default();
        define(name, format!("sparse initializer #{i}"))?;
    }
    for (i, node) in graph.node.iter().enumerate() {
        if node.op_type().is_empty() {
            return Err(CheckError::new(
                format!("{loc} > {}", node_label(node, i)),
                "op_type is empty",
            ));
        }
        for out in node.output.iter().filter(|o| !o.is_empty()) {
            define(out, node_label(node, i))?;
        }
    }
    let known = |name: &str| defined.contains_key(name) || outer.contains(name);

    // 2. Inputs refer to defined values; attributes are well-formed.
    let mut scope: HashSet<String> = outer.clone();
    scope.extend(defined.keys().cloned());
    for (i, node) in graph.node.iter().enumerate() {
        let nloc = format!("{loc} > {}", node_label(node, i));
        for (k, input) in node.input.iter().enumerate() {
            if !input.is_empty() && !known(input) {
                return Err(CheckError::new(
                    nloc,
                    format!("input #{k} '{input}' is not defined by any graph input, initializer or node output"),
                ));
            }
        }
        let mut names = HashSet::new();
        for attr in &node.attribute {
            if !names.insert(attr.name()) {
                return Err(CheckError::new(
                    &nloc,
                    format!("attribute '{}' appears twice", attr.name()),
                ));
            }
            check_attribute(attr, &scope, &nloc)?;
        }
    }

    // 3. The nodes form a DAG.
    check_acyclic(graph, loc)?;

    // 4. Outputs are defined; the main graph's interface is typed.
    for (i, out) in graph.output.iter().enumerate() {
        if !known(out.name()) {
            return Err(CheckError::new(
                format!("{loc} > output #{i} '{}'", out.name()),
                "the graph output is not produced by any node, input or initializer",
            ));
        }
    }
    if is_main {
        for (i, v) in graph.input.iter().enumerate() {
            check_typed(v, &format!("{loc} > input #{i} '{}'", v.name()))?;
        }
        for (i, v) in graph.output.iter().enumerate() {
            check_typed(v, &format!("{loc} > output #{i} '{}'", v.name()))?;
        }
    }
    Ok(())
}

fn check_typed(v: &ValueInfoProto, loc: &str) -> Result<(), CheckError> {
    let Some(tp) = v.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Err(CheckError::new(loc, "the value has no type"));
    };
    if let type_proto::Value::TensorType(t) = tp {
        let elem = t.elem_type.unwrap_or(0);
        if elem == 0 {
            return Err(CheckError::new(loc, "the tensor type has no element type"));
        }
    }
    Ok(())
}

/// Kahn's algorithm over node dependencies inside one graph.
fn check_acyclic(graph: &GraphProto, loc: &str) -> Result<(), CheckError> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, node) in graph.node.iter().enumerate() {
        for out in node.output.iter().filter(|o| !o.is_empty()) {
            producer.insert(out, i);
        }
    }
    let n = graph.node.len();
    let mut indegree = vec![0usize; n];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, node) in graph.node.iter().enumerate() {
        for input in &node.input {
            if let Some(&p) = producer.get(input.as_str()) {
                indegree[i] += 1;
                users[p].push(i);
            }
        }
    }
    let mut ready: Vec<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut visited = 0;
    while let Some(i) = ready.pop() {
        visited += 1;
        for &u in &users[i] {
            indegree[u] -= 1;
            if indegree[u] == 0 {
                ready.push(u);
            }
        }
    }
    if visited == n {
        return Ok(());
    }
    let stuck: Vec<String> = (0..n)
        .filter(|&i| indegree[i] > 0)
        .take(5)
        .map(|i| node_label(&graph.node[i], i))
        .collect();
    Err(CheckError::new(
        loc,
        format!("the graph has a cycle through {}", stuck.join(", ")),
    ))
}

fn check_attribute(
    attr: &AttributeProto,
    scope: &HashSet<String>,
    nloc: &str,
) -> Result<(), CheckError> {
    let aloc = format!("{nloc} > attribute '{}'", attr.name());
    if attr.name().is_empty() {
        return Err(CheckError::new(nloc, "an attribute has an empty name"));
    }
    if attr.ref_attr_name.is_some() {
        return Ok(()); // a reference inside a function body, resolved on expansion
    }
    let ty = attr.r#type.unwrap_or(0);
    let Ok(ty) = AttributeType::try_from(ty) else {
        return Err(CheckError::new(
            aloc,
            format!("unknown attribute type {ty}"),
        ));
    };
    let present = [
        (AttributeType::Float, attr.f.is_some()),
        (AttributeType::Int, attr.i.is_some()),
        (AttributeType::String, attr.s.is_some()),
        (AttributeType::Tensor, attr.t.is_some()),
        (AttributeType::Graph, attr.g.is_some()),
        (AttributeType::SparseTensor, attr.sparse_tensor.is_some()),
        (AttributeType::TypeProto, attr.tp.is_some()),
        (AttributeType::Floats, !attr.floats.is_empty()),
        (AttributeType::Ints, !attr.ints.is_empty()),
        (AttributeType::Strings, !attr.strings.is_empty()),
        (AttributeType::Tensors, !attr.tensors.is_empty()),
        (AttributeType::Graphs, !attr.graphs.is_empty()),
        (
            AttributeType::SparseTensors,
            !attr.sparse_tensors.is_empty(),
        ),
        (AttributeType::TypeProtos, !attr.type_protos.is_empty()),
    ];
    let filled: Vec<AttributeType> = present.iter().filter(|p| p.1).map(|p| p.0).collect();
    if ty == AttributeType::Undefined {
        if filled.len() > 1 {
            return Err(CheckError::new(
                aloc,
                "the attribute has no type and several values",
            ));
        }
    } else {
        let is_list = matches!(
            ty,
            AttributeType::Floats
                | AttributeType::Ints
                | AttributeType::Strings
                | AttributeType::Tensors
                | AttributeType::Graphs
                | AttributeType::SparseTensors
                | AttributeType::TypeProtos
        );
        if !is_list && !filled.contains(&ty) {
            return Err(CheckError::new(
                aloc,
                format!("declared as {} but its value is missing", ty.as_str_name()),
            ));
        }
        if let Some(other) = filled.iter().find(|&&f| f != ty) {
            return Err(CheckError::new(
                aloc,
                format!(
                    "declared as {} but holds a {} value",
                    ty.as_str_name(),
                    other.as_str_name()
                ),
            ));
        }
    }
    if let Some(g) = &attr.g {
        check_graph(g, scope, &format!("{aloc} > graph '{}'", g.name()), false)?;
    }
    for g in &attr.graphs {
        check_graph(g, scope, &format!("{aloc} > graph '{}'", g.name()), false)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::proto::{tensor_proto::DataType, type_proto::Tensor, OperatorSetIdProto, TypeProto};

    fn vi(name: &str) -> ValueInfoProto {
        ValueInfoProto {
            name: Some(name.into()),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(Tensor {
                    elem_type: Some(DataType::Float as i32),
                    shape: None,
                })),
                denotation: None,
            }),
            ..Default::default()
        }
    }

    fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
        NodeProto {
            op_type: Some(op.into()),
            name: Some(name.into()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn model(nodes: Vec<NodeProto>, opset: i64) -> ModelProto {
        ModelProto {
            ir_version: Some(8),
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(opset),
            }],
            graph: Some(GraphProto {
                name: Some("g".into()),
                node: nodes,
                input: vec![vi("x")],
                output: vec![vi("y")],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn accepts_valid_unsorted_dag() {
        let m = model(
            vec![
                node("Relu", "b", &["t"], &["y"]),
                node("Relu", "a", &["x"], &["t"]),
            ],
            13,
        );
        check_model(&m, &CheckOptions::default()).unwrap();
    }

    #[test]
    fn rejects_cycle_naming_nodes() {
        let m = model(
            vec![
                node("Add", "a", &["x", "c"], &["b_in"]),
                node("Relu", "b", &["b_in"], &["c"]),
                node("Relu", "out", &["c"], &["y"]),
            ],
            13,
        );
        let err = check_model(&m, &CheckOptions::default()).unwrap_err();
        assert!(err.message.contains("cycle"), "{err}");
        assert!(err.message.contains("node 'a' (Add)"), "{err}");
    }

    #[test]
    fn rejects_undefined_input() {
        let m = model(vec![node("Relu", "r", &["nope"], &["y"])], 13);
        let err = check_model(&m, &CheckOptions::default()).unwrap_err();
        assert_eq!(err.location, "graph 'g' > node 'r' (Relu)");
        assert!(err.message.contains("'nope'"), "{err}");
    }

    #[test]
    fn rejects_unsupported_opset() {
        let m = model(vec![node("Relu", "r", &["x"], &["y"])], 1000);
        let err = check_model(&m, &CheckOptions::default()).unwrap_err();
        assert!(
            err.message.contains("unsupported opset version 1000"),
            "{err}"
        );
    }

    #[test]
    fn rejects_attribute_type_mismatch() {
        let mut n = node("LeakyRelu", "l", &["x"], &["y"]);
        n.attribute.push(AttributeProto {
            name: Some("alpha".into()),
            r#type: Some(AttributeType::Float as i32),
            i: Some(3),
            ..Default::default()
        });
        let err = check_model(&model(vec![n], 13), &CheckOptions::default()).unwrap_err();
        assert!(err.location.ends_with("attribute 'alpha'"), "{err}");
    }

    #[test]
    fn rejects_untyped_graph_input() {
        let mut m = model(vec![node("Relu", "r", &["x"], &["y"])], 13);
        m.graph.as_mut().unwrap().input[0].r#type = None;
        let err = check_model(&m, &CheckOptions::default()).unwrap_err();
        assert!(err.message.contains("no type"), "{err}");
    }

    #[test]
    fn subgraph_sees_outer_scope_but_not_undefined_names() {
        let body = GraphProto {
            name: Some("then".into()),
            node: vec![node("Relu", "inner", &["x"], &["z"])],
            output: vec![vi("z")],
            ..Default::default()
        };
        let mut n = node("If", "if", &["x"], &["y"]);
        n.attribute.push(AttributeProto {
            name: Some("then_branch".into()),
            r#type: Some(AttributeType::Graph as i32),
            g: Some(body.clone()),
            ..Default::default()
        });
        check_model(&model(vec![n.clone()], 13), &CheckOptions::default()).unwrap();
        let mut bad = body;
        bad.node[0].input[0] = "missing".into();
        n.attribute[0].g = Some(bad);
        let err = check_model(&model(vec![n], 13), &CheckOptions::default()).unwrap_err();
        assert!(
            err.location.contains("graph 'then' > node 'inner'"),
            "{err}"
        );
    }
}

//! Assigning nodes to execution providers.
//!
//! Providers are asked in the user's priority order which nodes they take;
//! nodes nobody took go to the fallback provider (the CPU provider in the
//! `oxrt` facade). A node that no provider can run is an error naming the
//! node, the op, its domain and opset, and each provider's reason.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::ir::{Graph, Node};
use crate::provider::{ExecutionProvider, NodeContext};

/// What a provider sees of `node`: its domain's opset and known input types.
pub fn node_context<'a>(
    graph: &'a Graph,
    node: &Node,
    opsets: &BTreeMap<String, i64>,
) -> NodeContext<'a> {
    NodeContext {
        opset: opsets.get(&node.domain).copied().unwrap_or(0),
        input_types: node
            .inputs
            .iter()
            .map(|name| graph.value_types.get(name))
            .collect(),
    }
}

/// Returns, for each node of `graph`, the index in `providers` that runs it.
pub fn partition(
    graph: &Graph,
    opsets: &BTreeMap<String, i64>,
    providers: &[Arc<dyn ExecutionProvider>],
) -> Result<Vec<usize>> {
    let mut assignment: Vec<Option<usize>> = vec![None; graph.nodes.len()];
    for (p, provider) in providers.iter().enumerate() {
        for group in provider.capability(graph, opsets) {
            if group
                .nodes
                .iter()
                .all(|&i| assignment.get(i) == Some(&None))
            {
                for i in group.nodes {
                    assignment[i] = Some(p);
                }
            }
        }
    }
    let mut out = Vec::with_capacity(assignment.len());
    for (i, a) in assignment.into_iter().enumerate() {
        match a {
            Some(p) => out.push(p),
            None => return Err(unsupported(graph, &graph.nodes[i], opsets, providers)),
        }
    }
    Ok(out)
}

fn unsupported(
    graph: &Graph,
    node: &Node,
    opsets: &BTreeMap<String, i64>,
    providers: &[Arc<dyn ExecutionProvider>],
) -> Error {
    let opset = opsets.get(&node.domain).copied();
    let reason = if opset.is_none() {
        format!("the model does not import the domain '{}'", node.domain)
    } else if providers.is_empty() {
        "no execution provider is available (the `cpu` feature of oxrt is disabled and no other provider was given)".to_string()
    } else {
        let ctx = node_context(graph, node, opsets);
        providers
            .iter()
            .map(|p| match p.supports(node, &ctx) {
                Ok(()) => format!("{}: declined", p.name()),
                Err(why) => format!("{}: {why}", p.name()),
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    Error::UnsupportedOp {
        op: node.op_type.clone(),
        domain: if node.domain.is_empty() {
            "ai.onnx".into()
        } else {
            node.domain.clone()
        },
        opset: opset.unwrap_or(0),
        node: node.name.clone(),
        reason,
    }
}

//! Constant folding and shape folding.
//!
//! A node whose inputs are all initializers (or a `Constant`) runs once at
//! session creation on the first host provider that supports it, and its
//! outputs become initializers. `Shape` and `Size` of a value whose shape is
//! fully known become constants too, so the shape arithmetic exported models
//! carry (Shape → Gather → Concat → Reshape) folds away. Random operators,
//! nodes with subgraphs, overridable initializers (a run may feed another
//! value) and results over the session's memory limit are left to run.

use std::collections::HashSet;
use std::sync::Arc;

use super::NON_DETERMINISTIC;
use super::{constant, remove_nodes, OptimizeContext};
use crate::ir::{Graph, Node};
use crate::partition::node_context;
use crate::provider::KernelInfo;
use crate::tensor::Tensor;
use crate::value::{Value, ValueRef};

fn bytes(t: &Tensor) -> u64 {
    (t.len() * t.dtype().host_size().max(1)) as u64
}

/// `Shape`/`Size` of a value of known shape, as a constant.
fn fold_shape(graph: &Graph, node: &Node) -> Option<Tensor> {
    if !node.domain.is_empty() {
        return None;
    }
    let dims = graph.value_types.get(node.input(0)?)?.concrete_shape()?;
    match node.op_type.as_str() {
        "Shape" => {
            let rank = dims.len() as i64;
            let clamp = |v: i64| {
                let v = if v < 0 { v + rank } else { v };
                v.clamp(0, rank) as usize
            };
            let start = clamp(node.int_or("start", 0).ok()?);
            let end = match node.get_int("end").ok()? {
                Some(e) => clamp(e),
                None => dims.len(),
            };
            let v: Vec<i64> = dims[start..end.max(start)]
                .iter()
                .map(|&d| d as i64)
                .collect();
            Tensor::from_vec(vec![v.len()], v).ok()
        }
        "Size" => Some(Tensor::scalar(dims.iter().product::<usize>() as i64)),
        _ => None,
    }
}

/// Runs `node` on its constant inputs with a host provider.
fn evaluate(graph: &Graph, node: &Node, ctx: &OptimizeContext<'_>) -> Option<Vec<Tensor>> {
    let inputs: Vec<Option<&Arc<Tensor>>> = node
        .inputs
        .iter()
        .map(|n| (!n.is_empty()).then(|| constant(graph, n)))
        .map(|o| o.flatten())
        .collect();
    let given = node.inputs.iter().filter(|n| !n.is_empty()).count();
    if inputs.iter().flatten().count() != given {
        return None;
    }
    let node_ctx = node_context(graph, node, ctx.opsets);
    let provider = ctx
        .providers
        .iter()
        .find(|p| p.device_memory().is_none() && p.supports(node, &node_ctx).is_ok())?;
    let info = KernelInfo {
        node: node_ctx,
        constants: inputs
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.map(|t| (i, t.as_ref())))
            .collect(),
        output_types: node
            .outputs
            .iter()
            .map(|o| graph.value_types.get(o))
            .collect(),
        subgraphs: None,
    };
    let kernel = provider.create_kernel(node, &info).ok()?;
    let args: Vec<Option<ValueRef<'_>>> = inputs
        .iter()
        .map(|t| t.map(|t| ValueRef::Tensor(t.as_ref())))
        .collect();
    let outputs = match kernel.compute_values(&args) {
        Ok(o) => o,
        Err(e) => {
            tracing::debug!(node = node.name, error = %e, "constant folding skipped");
            return None;
        }
    };
    let limit = ctx.memory_limit;
    let mut tensors = Vec::with_capacity(outputs.len());
    for v in outputs {
        match v {
            Value::Tensor(t) if bytes(&t) <= limit => tensors.push(t),
            _ => return None,
        }
    }
    let named = node.outputs.iter().filter(|o| !o.is_empty()).count();
    (tensors.len() >= named).then_some(tensors)
}

/// Folds constant nodes and static shapes into initializers; returns
/// `(nodes folded from constants, Shape/Size nodes folded)`.
pub fn fold_constants(graph: &mut Graph, ctx: &OptimizeContext<'_>) -> (usize, usize) {
    let Ok(order) = crate::plan::topological_order(graph) else {
        return (0, 0);
    };
    let mut removed = HashSet::new();
    let (mut folded, mut shapes) = (0, 0);
    for ni in order {
        let node = &graph.nodes[ni];
        if node.subgraphs().next().is_some() || NON_DETERMINISTIC.contains(&node.op_type.as_str()) {
            continue;
        }
        let has_inputs = node.inputs.iter().any(|i| !i.is_empty());
        let results = if let Some(t) = fold_shape(graph, node) {
            shapes += 1;
            vec![t]
        } else if has_inputs || node.op_type == "Constant" {
            match evaluate(graph, node, ctx) {
                Some(r) => {
                    folded += 1;
                    r
                }
                None => continue,
            }
        } else {
            continue;
        };
        let names = node.outputs.clone();
        for (name, t) in names.into_iter().zip(results) {
            if !name.is_empty() {
                graph.value_types.insert(
                    name.clone(),
                    crate::ir::ValueType::tensor(t.dtype(), t.shape()),
                );
                graph.initializers.insert(name, Arc::new(t));
            }
        }
        removed.insert(ni);
    }
    remove_nodes(graph, &removed);
    (folded, shapes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::tests::{graph, node, with};
    use super::*;
    use crate::ir::{Attribute, ValueType};
    use crate::DataType;

    #[test]
    fn shapes_of_static_values_fold() {
        let mut g = graph(
            vec![
                node("Shape", &["x"], &["s"]),
                with(
                    node("Shape", &["x"], &["tail"]),
                    "start",
                    Attribute::Int(-2),
                ),
                node("Size", &["x"], &["n"]),
                node("Reshape", &["x", "s"], &["y"]),
            ],
            &["y"],
        );
        g.value_types
            .insert("x".into(), ValueType::tensor(DataType::F32, &[2, 3, 4]));
        let mut opsets = Default::default();
        let ctx = OptimizeContext {
            opsets: &mut opsets,
            providers: &[],
            memory_limit: u64::MAX,
            fp16: false,
        };
        assert_eq!(fold_constants(&mut g, &ctx), (0, 3));
        assert_eq!(g.nodes.len(), 1);
        assert_eq!(g.initializers["s"].as_slice::<i64>().unwrap(), [2, 3, 4]);
        assert_eq!(g.initializers["tail"].as_slice::<i64>().unwrap(), [3, 4]);
        assert_eq!(g.initializers["n"].as_slice::<i64>().unwrap(), [24]);
    }
}

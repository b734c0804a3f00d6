//! A residual connection summed right after a convolution, `Add(Conv(x),
//! z)` or `Sum(Conv(x), z)` with `z` of the convolution's output shape,
//! becomes `oxrt.FusedConv(x, w, b, z)`: the product accumulates onto `z`
//! (in place when the run owns it) and a later activation still fuses.

use std::collections::HashSet;

use super::{is_op, remove_nodes, GraphIndex, OptimizeContext, OXRT_DOMAIN};
use crate::ir::{Dim, Graph, Node, ValueType};

/// Whether `node` is a Conv, or a FusedConv with neither a residual input
/// nor an activation yet.
fn plain_conv(node: &Node) -> bool {
    let fused = node.domain == OXRT_DOMAIN
        && node.op_type == "FusedConv"
        && !node.attributes.contains_key("activation");
    (is_op(node, "Conv") || fused) && node.inputs.len() <= 3 && node.outputs.len() == 1
}

/// Whether values `a` and `b` are tensors of one element type and one fully
/// known shape (so the sum needs no broadcasting).
fn same_static_type(graph: &Graph, a: &str, b: &str) -> bool {
    let tensor = |name: &str| match graph.value_types.get(name) {
        Some(ValueType::Tensor {
            dtype,
            shape: Some(shape),
        }) => Some((*dtype, shape)),
        _ => None,
    };
    match (tensor(a), tensor(b)) {
        (Some((ta, sa)), Some((tb, sb))) => {
            ta == tb && sa == sb && sa.iter().all(|d| !matches!(d, Dim::Unknown))
        }
        _ => false,
    }
}

/// The other operand of a two-input Add/Sum `node` that reads `value`.
fn other_addend<'n>(node: &'n Node, value: &str) -> Option<&'n str> {
    let sum = is_op(node, "Add") || is_op(node, "Sum");
    if !sum || node.inputs.len() != 2 || node.outputs.len() != 1 {
        return None;
    }
    match (node.inputs[0].as_str(), node.inputs[1].as_str()) {
        (a, z) | (z, a) if a == value && z != value && !z.is_empty() => Some(z),
        _ => None,
    }
}

/// Fuses every eligible residual sum into its convolution; returns how many.
pub fn fuse(graph: &mut Graph, ctx: &mut OptimizeContext<'_>) -> usize {
    let index = GraphIndex::new(graph);
    let mut removed = HashSet::new();
    for ci in 0..graph.nodes.len() {
        let conv = &graph.nodes[ci];
        if !plain_conv(conv) {
            continue;
        }
        let y = &conv.outputs[0];
        let Some(ai) = index.only_reader(y).filter(|a| !removed.contains(a)) else {
            continue;
        };
        let add = &graph.nodes[ai];
        let Some(z) = other_addend(add, y) else {
            continue;
        };
        if !same_static_type(graph, y, z) {
            continue;
        }
        let mut fused = conv.clone();
        if fused.domain != OXRT_DOMAIN {
            fused.name = format!("{}_fused", conv.name);
        }
        fused.op_type = "FusedConv".into();
        fused.domain = OXRT_DOMAIN.into();
        fused.inputs.resize(3, String::new());
        fused.inputs.push(z.to_string());
        fused.outputs = add.outputs.clone();
        if !ctx.accepts(graph, conv, &fused) {
            continue;
        }
        removed.insert(ai);
        graph.nodes[ci] = fused;
    }
    remove_nodes(graph, &removed);
    removed.len()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::optimize::tests::{graph, node, run_pass, typed};

    #[test]
    fn residual_sum_becomes_the_fourth_input() {
        let mut g = graph(
            vec![
                node("Conv", &["x", "w"], &["c"]),
                node("Sum", &["r", "c"], &["y"]),
            ],
            &["y"],
        );
        typed(&mut g, &["c", "r"], &[1, 8, 4, 4]);
        assert_eq!(run_pass(&mut g, fuse), 1);
        assert_eq!(g.nodes.len(), 1);
        let n = &g.nodes[0];
        assert_eq!(
            (n.domain.as_str(), n.op_type.as_str()),
            (OXRT_DOMAIN, "FusedConv")
        );
        assert_eq!(n.inputs, ["x", "w", "", "r"]);
        assert_eq!(n.outputs, ["y"]);
    }

    #[test]
    fn the_activation_after_the_sum_still_fuses() {
        let mut g = graph(
            vec![
                node("Conv", &["x", "w", "b"], &["c"]),
                node("Add", &["c", "r"], &["s"]),
                node("Relu", &["s"], &["y"]),
            ],
            &["y"],
        );
        typed(&mut g, &["c", "r"], &[1, 8, 4, 4]);
        assert_eq!(run_pass(&mut g, fuse), 1);
        assert_eq!(run_pass(&mut g, crate::optimize::fuse_activation::fuse), 1);
        assert_eq!(g.nodes.len(), 1);
        let n = &g.nodes[0];
        assert_eq!(n.inputs, ["x", "w", "b", "r"]);
        assert_eq!(n.outputs, ["y"]);
        assert_eq!(n.get_string("activation").unwrap(), Some("Relu"));
    }

    #[test]
    fn broadcast_unknown_shared_or_activated_sums_stay() {
        // Broadcasting addend.
        let mut g = graph(
            vec![
                node("Conv", &["x", "w", "b"], &["c"]),
                node("Add", &["c", "r"], &["y"]),
            ],
            &["y"],
        );
        typed(&mut g, &["c"], &[1, 8, 4, 4]);
        typed(&mut g, &["r"], &[1, 8, 1, 1]);
        assert_eq!(run_pass(&mut g, fuse), 0);
        // Unknown shapes.
        let mut g = graph(
            vec![
                node("Conv", &["x", "w"], &["c"]),
                node("Add", &["c", "r"], &["y"]),
            ],
            &["y"],
        );
        assert_eq!(run_pass(&mut g, fuse), 0);
        // The convolution's output is read twice.
        let mut g = graph(
            vec![
                node("Conv", &["x", "w"], &["c"]),
                node("Add", &["c", "r"], &["y"]),
                node("Relu", &["c"], &["z"]),
            ],
            &["y", "z"],
        );
        typed(&mut g, &["c", "r"], &[1, 8, 4, 4]);
        assert_eq!(run_pass(&mut g, fuse), 0);
        // An activation already fused comes before the sum.
        let mut act = node("FusedConv", &["x", "w"], &["c"]);
        act.domain = OXRT_DOMAIN.into();
        act.attributes.insert(
            "activation".into(),
            crate::ir::Attribute::String(b"Relu".to_vec()),
        );
        let mut g = graph(vec![act, node("Add", &["c", "r"], &["y"])], &["y"]);
        typed(&mut g, &["c", "r"], &[1, 8, 4, 4]);
        assert_eq!(run_pass(&mut g, fuse), 0);
        // A sum of the output with itself.
        let mut g = graph(
            vec![
                node("Conv", &["x", "w"], &["c"]),
                node("Add", &["c", "c"], &["y"]),
            ],
            &["y"],
        );
        typed(&mut g, &["c"], &[1, 8, 4, 4]);
        assert_eq!(run_pass(&mut g, fuse), 0);
    }
}

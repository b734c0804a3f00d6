//! An activation right after Conv, Gemm or MatMul (its only reader) runs in
//! the product's epilogue: `oxrt.FusedConv`, `oxrt.FusedGemm` and
//! `oxrt.FusedMatMul` carry it as `activation` (the op name) and
//! `activation_params` (its parameters in a fixed order).

use std::collections::HashSet;

use super::{constant_scalar, is_op, remove_nodes, GraphIndex, OptimizeContext, OXRT_DOMAIN};
use crate::ir::{Attribute, Graph, Node};

/// `(name, params)` of an activation node that can be fused.
pub fn fusable_activation(graph: &Graph, n: &Node) -> Option<(String, Vec<f32>)> {
    let oxrt_gelu = n.domain == OXRT_DOMAIN && n.op_type == "Gelu";
    if !(n.domain.is_empty() || oxrt_gelu) {
        return None;
    }
    let f = |a: &str, d: f32| n.float_or(a, d).ok();
    let params = match n.op_type.as_str() {
        "Relu" | "Sigmoid" | "Tanh" | "HardSwish" | "Softplus" => vec![],
        "LeakyRelu" => vec![f("alpha", 0.01)?],
        "Elu" => vec![f("alpha", 1.0)?],
        "HardSigmoid" => vec![f("alpha", 0.2)?, f("beta", 0.5)?],
        "Gelu" => vec![f32::from(u8::from(
            n.string_or("approximate", "none").ok()? == "tanh",
        ))],
        "Clip" => {
            // Bounds are attributes before opset 11, constant inputs after.
            let bound = |i: usize, attr: &str, d: f32| match n.input(i) {
                Some(name) => constant_scalar(graph, name).map(|v| v as f32),
                None => f(attr, d),
            };
            vec![bound(1, "min", f32::MIN)?, bound(2, "max", f32::MAX)?]
        }
        _ => return None,
    };
    Some((n.op_type.clone(), params))
}

/// Fuses activations into the products before them; returns how many.
pub fn fuse(graph: &mut Graph, ctx: &mut OptimizeContext<'_>) -> usize {
    let index = GraphIndex::new(graph);
    let mut removed = HashSet::new();
    for i in 0..graph.nodes.len() {
        let n = &graph.nodes[i];
        let fused_conv = n.domain == OXRT_DOMAIN && n.op_type == "FusedConv";
        let fused_op = if is_op(n, "Conv") || fused_conv {
            "FusedConv"
        } else if is_op(n, "Gemm") {
            "FusedGemm"
        } else if is_op(n, "MatMul") || (n.domain == OXRT_DOMAIN && n.op_type == "FusedMatMul") {
            "FusedMatMul"
        } else {
            continue;
        };
        if n.attributes.contains_key("activation") || n.outputs.len() != 1 {
            continue;
        }
        let Some(ai) = index.only_reader(&n.outputs[0]) else {
            continue;
        };
        let act = &graph.nodes[ai];
        if removed.contains(&ai) || act.input(0) != Some(n.outputs[0].as_str()) {
            continue;
        }
        let Some((name, params)) = fusable_activation(graph, act) else {
            continue;
        };
        let mut fused = n.clone();
        if fused.domain != OXRT_DOMAIN {
            fused.name = format!("{}_fused", n.name);
        }
        fused.op_type = fused_op.into();
        fused.domain = OXRT_DOMAIN.into();
        fused.outputs = act.outputs.clone();
        fused
            .attributes
            .insert("activation".into(), Attribute::String(name.into_bytes()));
        fused
            .attributes
            .insert("activation_params".into(), Attribute::Floats(params));
        if !ctx.accepts(graph, n, &fused) {
            continue;
        }
        removed.insert(ai);
        graph.nodes[i] = fused;
    }
    remove_nodes(graph, &removed);
    removed.len()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::optimize::tests::{constant, graph, node, run_pass, with};

    #[test]
    fn relu_after_conv_moves_into_the_epilogue() {
        let mut g = graph(
            vec![
                node("Conv", &["x", "w"], &["c"]),
                node("Relu", &["c"], &["y"]),
            ],
            &["y"],
        );
        assert_eq!(run_pass(&mut g, fuse), 1);
        assert_eq!(g.nodes.len(), 1);
        let n = &g.nodes[0];
        assert_eq!(
            (n.domain.as_str(), n.op_type.as_str()),
            (OXRT_DOMAIN, "FusedConv")
        );
        assert_eq!(n.inputs, ["x", "w"]);
        assert_eq!(n.outputs, ["y"]);
        assert_eq!(n.get_string("activation").unwrap(), Some("Relu"));
    }

    #[test]
    fn clip_bounds_and_leaky_alpha_become_parameters() {
        let mut g = graph(
            vec![
                node("MatMul", &["x", "w"], &["m"]),
                node("Clip", &["m", "lo", "hi"], &["y"]),
                node("Gemm", &["x", "w"], &["g"]),
                with(
                    node("LeakyRelu", &["g"], &["z"]),
                    "alpha",
                    Attribute::Float(0.3),
                ),
            ],
            &["y", "z"],
        );
        constant(&mut g, "lo", &[], &[0.0]);
        constant(&mut g, "hi", &[], &[6.0]);
        assert_eq!(run_pass(&mut g, fuse), 2);
        let params = |op: &str| {
            let n = g.nodes.iter().find(|n| n.op_type == op).unwrap();
            n.get_floats("activation_params").unwrap().unwrap().to_vec()
        };
        assert_eq!(params("FusedMatMul"), [0.0, 6.0]);
        assert_eq!(params("FusedGemm"), [0.3]);
    }

    #[test]
    fn a_product_read_elsewhere_stays_unfused() {
        let mut g = graph(
            vec![
                node("Conv", &["x", "w"], &["c"]),
                node("Relu", &["c"], &["y"]),
            ],
            &["y", "c"],
        );
        assert_eq!(run_pass(&mut g, fuse), 0);
        assert_eq!(g.nodes.len(), 2);
    }
}

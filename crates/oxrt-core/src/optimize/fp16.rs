//! Mixed precision: eligible float32 nodes run in float16.
//!
//! A node is converted when its op is on the list of ops that lose little
//! in half precision (products accumulate in f32 inside the kernels;
//! elementwise arithmetic, activations, pooling and layout ops), every
//! float input and output it has is f32, and the provider that runs it
//! takes the f16 version. Numerically sensitive ops stay f32: Softmax and
//! LogSoftmax, reductions, normalizations (and their fused forms),
//! attention, Exp/Log/Pow/Sqrt/Erf and anything not listed.
//!
//! Constant f32 inputs of converted nodes become f16 constants; other f32
//! inputs get a `Cast` to f16 (one per value) unless a converted node made
//! them; a converted node's outputs are renamed, and a `Cast` back to f32
//! under the original name serves f32 readers and graph outputs.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{fresh_name, OptimizeContext, OXRT_DOMAIN};
use crate::dtype::DataType;
use crate::ir::{Attribute, Graph, Node, ValueType};
use crate::provider::NodeContext;

/// Ops run in f16 (standard domain, then the `oxrt` fused ones).
const ELIGIBLE: &[&str] = &[
    "Conv",
    "ConvTranspose",
    "Gemm",
    "MatMul",
    "Add",
    "Sub",
    "Mul",
    "Relu",
    "LeakyRelu",
    "Clip",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "Concat",
    "Reshape",
    "Flatten",
    "Transpose",
    "Squeeze",
    "Unsqueeze",
    "Identity",
    "Gelu",
];
const ELIGIBLE_FUSED: &[&str] = &["FusedConv", "FusedGemm", "FusedMatMul", "Gelu"];

fn is_f32(graph: &Graph, name: &str) -> bool {
    graph
        .value_types
        .get(name)
        .and_then(ValueType::dtype)
        .is_some_and(|d| d == DataType::F32)
}

fn is_float(graph: &Graph, name: &str) -> Option<bool> {
    Some(graph.value_types.get(name)?.dtype()?.is_float())
}

fn f16_type(graph: &Graph, name: &str) -> Option<ValueType> {
    match graph.value_types.get(name)? {
        ValueType::Tensor { shape, .. } => Some(ValueType::Tensor {
            dtype: DataType::F16,
            shape: shape.clone(),
        }),
        _ => None,
    }
}

fn cast(name: String, input: String, output: String, to: DataType) -> Node {
    Node {
        name,
        op_type: "Cast".into(),
        domain: String::new(),
        inputs: vec![input],
        outputs: vec![output],
        attributes: [("to".to_string(), Attribute::Int(i64::from(to.onnx_code())))].into(),
    }
}

/// Whether `node` may run in f16: eligible op, every float value f32 and
/// typed, no subgraphs, and its provider takes the f16 form.
fn eligible(graph: &Graph, node: &Node, ctx: &OptimizeContext<'_>) -> bool {
    let listed = match node.domain.as_str() {
        "" => ELIGIBLE.contains(&node.op_type.as_str()),
        d if d == OXRT_DOMAIN => ELIGIBLE_FUSED.contains(&node.op_type.as_str()),
        _ => false,
    };
    if !listed || node.subgraphs().next().is_some() {
        return false;
    }
    let values = node
        .inputs
        .iter()
        .chain(&node.outputs)
        .filter(|n| !n.is_empty());
    let mut any = false;
    for v in values {
        match is_float(graph, v) {
            None => return false,
            Some(true) if !is_f32(graph, v) => return false,
            Some(true) => any = true,
            Some(false) => {}
        }
    }
    if !any {
        return false;
    }
    let Some(p) = ctx.provider_for(graph, node) else {
        return false;
    };
    let types: Vec<Option<ValueType>> = node
        .inputs
        .iter()
        .map(|n| {
            if is_f32(graph, n) {
                f16_type(graph, n)
            } else {
                graph.value_types.get(n).cloned()
            }
        })
        .collect();
    let nc = NodeContext {
        opset: ctx.opsets.get(&node.domain).copied().unwrap_or(0),
        input_types: types.iter().map(Option::as_ref).collect(),
    };
    ctx.providers[p].supports(node, &nc).is_ok()
}

/// Converts the eligible nodes; returns how many run in f16 now.
pub fn convert(graph: &mut Graph, ctx: &mut OptimizeContext<'_>) -> usize {
    let chosen: HashSet<usize> = (0..graph.nodes.len())
        .filter(|&i| eligible(graph, &graph.nodes[i], ctx))
        .collect();
    if chosen.is_empty() {
        return 0;
    }
    let outputs: HashSet<String> = graph.outputs.iter().map(|o| o.name.clone()).collect();
    // Every name made below goes into the graph at once, so `fresh_name`
    // never hands out a name twice. First the f16 name of every f32
    // output a converted node makes.
    let mut half_of: HashMap<String, String> = HashMap::new();
    for &i in &chosen {
        for k in 0..graph.nodes[i].outputs.len() {
            let o = graph.nodes[i].outputs[k].clone();
            if !o.is_empty() && is_f32(graph, &o) {
                let h = fresh_name(graph, &format!("{o}_fp16"));
                graph.nodes[i].outputs[k] = h.clone();
                half_of.insert(o, h);
            }
        }
    }
    let mut cast_in: HashMap<String, String> = HashMap::new();
    for &i in &chosen {
        for j in 0..graph.nodes[i].inputs.len() {
            let input = graph.nodes[i].inputs[j].clone();
            if input.is_empty() || !is_f32(graph, &input) {
                continue;
            }
            let replacement = if let Some(h) = half_of.get(&input).or(cast_in.get(&input)) {
                h.clone()
            } else if let Some(t) = super::constant(graph, &input).cloned() {
                let converted = t
                    .to_f64_vec()
                    .and_then(|v| super::float_tensor(DataType::F16, t.shape(), v));
                let Some(converted) = converted else {
                    continue;
                };
                let name = fresh_name(graph, &format!("{input}_fp16"));
                graph.initializers.insert(name.clone(), Arc::new(converted));
                cast_in.insert(input.clone(), name.clone());
                name
            } else {
                let name = fresh_name(graph, &format!("{input}_fp16"));
                let node_name = fresh_name(graph, &format!("{input}_to_fp16"));
                graph
                    .nodes
                    .push(cast(node_name, input.clone(), name.clone(), DataType::F16));
                cast_in.insert(input.clone(), name.clone());
                name
            };
            graph.nodes[i].inputs[j] = replacement;
        }
    }
    // Casts back for f32 readers: nodes not converted (subgraph reads
    // included) and graph outputs.
    let index = super::GraphIndex::new(graph);
    for (orig, half) in &half_of {
        let read_f32 =
            outputs.contains(orig) || index.readers(orig).iter().any(|r| !chosen.contains(r));
        if read_f32 {
            let node_name = fresh_name(graph, &format!("{orig}_to_fp32"));
            graph
                .nodes
                .push(cast(node_name, half.clone(), orig.clone(), DataType::F32));
        }
    }
    chosen.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sensitive_ops_are_not_listed() {
        for op in [
            "Softmax",
            "LogSoftmax",
            "ReduceMean",
            "ReduceSum",
            "LayerNormalization",
            "BatchNormalization",
            "Exp",
            "Log",
            "Pow",
            "Erf",
            "Sqrt",
            "Attention",
            "Div",
        ] {
            assert!(!ELIGIBLE.contains(&op), "{op}");
        }
        assert!(!ELIGIBLE_FUSED.contains(&"SkipLayerNormalization"));
    }
}

#[cfg(test)]
mod conversion_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::optimize::tests::{constant, graph, node, run_pass_at, typed};

    #[test]
    fn products_run_in_half_with_casts_at_the_boundaries() {
        // x -> MatMul(w) -> Relu -> Softmax -> y
        let mut g = graph(
            vec![
                node("MatMul", &["x", "w"], &["m"]),
                node("Relu", &["m"], &["r"]),
                node("Softmax", &["r"], &["y"]),
            ],
            &["y"],
        );
        constant(&mut g, "w", &[2, 2], &[1.0, 2.0, 3.0, 4.0]);
        typed(&mut g, &["x", "w", "m", "r", "y"], &[2, 2]);
        assert_eq!(run_pass_at(&mut g, 17, true, convert), 2);
        let find = |op: &str| {
            g.nodes
                .iter()
                .filter(|n| n.op_type == op)
                .collect::<Vec<_>>()
        };
        // One Cast in (x), one Cast out (for Softmax); w became an f16 constant.
        let casts = find("Cast");
        assert_eq!(casts.len(), 2);
        let to = |n: &Node| n.get_int("to").unwrap().unwrap();
        let into_half = casts.iter().find(|c| c.inputs[0] == "x").unwrap();
        assert_eq!(to(into_half), i64::from(DataType::F16.onnx_code()));
        let back = casts.iter().find(|c| c.outputs[0] == "r").unwrap();
        assert_eq!(to(back), i64::from(DataType::F32.onnx_code()));
        let mm = find("MatMul")[0];
        assert_eq!(mm.inputs[0], into_half.outputs[0]);
        assert_eq!(g.initializers[&mm.inputs[1]].dtype(), DataType::F16);
        let relu = find("Relu")[0];
        assert_eq!(relu.inputs[0], mm.outputs[0]);
        assert_eq!(back.inputs[0], relu.outputs[0]);
        // Softmax still reads the f32 name.
        assert_eq!(find("Softmax")[0].inputs[0], "r");
    }
}

//! LayerNormalization from its decomposed form over the last axis,
//!
//! ```text
//! mean = ReduceMean(x); d = x - mean; var = ReduceMean(d^2)
//! y = d / Sqrt(var + epsilon) [* gamma] [+ beta]
//! ```
//!
//! (`d^2` as `Pow(d, 2)` or `d * d`), into `LayerNormalization` (standard
//! from opset 17, else in the `oxrt` domain); and `Add` followed by
//! `LayerNormalization` into `oxrt.SkipLayerNormalization`, which also
//! returns the sum when it is read elsewhere (the residual stream).

use std::collections::HashSet;
use std::sync::Arc;

use super::{
    constant, constant_scalar, float_tensor, fresh_name, is_op, remove_nodes, GraphIndex,
    OptimizeContext, OXRT_DOMAIN,
};
use crate::ir::{Attribute, Dim, Graph, Node};

/// Whether a ReduceMean reduces exactly the last axis (keeping it) of a
/// value of rank `rank`.
fn reduces_last_axis(graph: &Graph, n: &Node, rank: Option<usize>) -> bool {
    if !is_op(n, "ReduceMean") || n.int_or("keepdims", 1).unwrap_or(0) != 1 {
        return false;
    }
    let axes: Option<Vec<i64>> = match (n.get_ints("axes"), n.input(1)) {
        (Ok(Some(a)), _) => Some(a.to_vec()),
        (_, Some(name)) => {
            constant(graph, name).and_then(|t| t.as_slice::<i64>().ok().map(<[i64]>::to_vec))
        }
        _ => None,
    };
    match axes.as_deref() {
        Some([-1]) => true,
        Some([a]) => rank.is_some_and(|r| *a == r as i64 - 1),
        _ => false,
    }
}

/// A matched decomposed LayerNormalization.
struct Match {
    x: String,
    nodes: Vec<usize>,
    epsilon: f64,
    gamma: Option<String>,
    beta: Option<String>,
    output: String,
}

fn match_layer_norm(graph: &Graph, index: &GraphIndex, r1: usize) -> Option<Match> {
    let mean_node = &graph.nodes[r1];
    let x = mean_node.input(0)?;
    let rank = graph
        .value_types
        .get(x)
        .and_then(|t| t.dims())
        .map(<[Dim]>::len);
    if !reduces_last_axis(graph, mean_node, rank) {
        return None;
    }
    let mean = &mean_node.outputs[0];
    let s = index.only_reader(mean)?;
    let sub = &graph.nodes[s];
    if !is_op(sub, "Sub") || sub.input(0) != Some(x) || sub.input(1) != Some(mean) {
        return None;
    }
    let d = &sub.outputs[0];
    // d is read twice: squared, and divided by the deviation.
    let readers = index.readers(d);
    if readers.len() != 2 || index.is_output(d) {
        return None;
    }
    let is_square = |n: &Node| {
        (is_op(n, "Pow") && n.input(1).and_then(|e| constant_scalar(graph, e)) == Some(2.0))
            || (is_op(n, "Mul") && n.input(0) == Some(d) && n.input(1) == Some(d))
    };
    let (&p, &v) = (
        readers.iter().find(|&&r| is_square(&graph.nodes[r]))?,
        readers.iter().find(|&&r| is_op(&graph.nodes[r], "Div"))?,
    );
    let r2 = index.only_reader(&graph.nodes[p].outputs[0])?;
    if !reduces_last_axis(graph, &graph.nodes[r2], rank) {
        return None;
    }
    let a = index.only_reader(&graph.nodes[r2].outputs[0])?;
    let add = &graph.nodes[a];
    if !is_op(add, "Add") {
        return None;
    }
    let var = &graph.nodes[r2].outputs[0];
    let eps_name = if add.input(0) == Some(var) {
        add.input(1)?
    } else {
        add.input(0)?
    };
    let epsilon = constant_scalar(graph, eps_name)?;
    let q = index.only_reader(&add.outputs[0])?;
    if !is_op(&graph.nodes[q], "Sqrt") || index.only_reader(&graph.nodes[q].outputs[0]) != Some(v) {
        return None;
    }
    let div = &graph.nodes[v];
    if div.input(0) != Some(d.as_str()) {
        return None;
    }
    let mut nodes = vec![r1, s, p, r2, a, q, v];
    let mut output = div.outputs[0].clone();
    // Optional affine: * gamma, then + beta (constants over the last axis).
    let affine = |op: &str, output: &mut String, nodes: &mut Vec<usize>| -> Option<String> {
        let r = index.only_reader(output)?;
        let n = &graph.nodes[r];
        if !is_op(n, op) {
            return None;
        }
        let other = if n.input(0) == Some(output.as_str()) {
            n.input(1)?
        } else {
            n.input(0)?
        };
        let t = constant(graph, other)?;
        if t.rank() != 1 {
            return None;
        }
        nodes.push(r);
        *output = n.outputs[0].clone();
        Some(other.to_string())
    };
    let gamma = affine("Mul", &mut output, &mut nodes);
    let beta = affine("Add", &mut output, &mut nodes);
    Some(Match {
        x: x.to_string(),
        nodes,
        epsilon,
        gamma,
        beta,
        output,
    })
}

/// Replaces decomposed layer norms; returns how many.
pub fn fuse(graph: &mut Graph, ctx: &mut OptimizeContext<'_>) -> usize {
    let index = GraphIndex::new(graph);
    let standard = ctx.opsets.get("").is_some_and(|&v| v >= 17);
    let mut removed = HashSet::new();
    let mut added = Vec::new();
    for i in 0..graph.nodes.len() {
        if !is_op(&graph.nodes[i], "ReduceMean") {
            continue;
        }
        let Some(m) = match_layer_norm(graph, &index, i) else {
            continue;
        };
        if m.nodes.iter().any(|n| removed.contains(n)) {
            continue;
        }
        // LayerNormalization needs a scale: ones over the last axis.
        let gamma = match m.gamma {
            Some(g) => g,
            None => {
                let last = graph
                    .value_types
                    .get(&m.x)
                    .and_then(|t| t.dims())
                    .and_then(|d| d.last().cloned());
                let (Some(Dim::Known(h)), Some(dtype)) =
                    (last, graph.value_types.get(&m.x).and_then(|t| t.dtype()))
                else {
                    continue;
                };
                let Some(ones) = float_tensor(dtype, &[h], vec![1.0; h]) else {
                    continue;
                };
                let name = fresh_name(graph, &format!("{}_ones", m.output));
                graph.initializers.insert(name.clone(), Arc::new(ones));
                name
            }
        };
        let mut inputs = vec![m.x, gamma];
        inputs.extend(m.beta);
        let ln = Node {
            name: format!("{}_layer_norm", graph.nodes[i].name),
            op_type: "LayerNormalization".into(),
            domain: if standard {
                String::new()
            } else {
                OXRT_DOMAIN.into()
            },
            inputs,
            outputs: vec![m.output],
            attributes: [
                ("axis".to_string(), Attribute::Int(-1)),
                ("epsilon".to_string(), Attribute::Float(m.epsilon as f32)),
            ]
            .into(),
        };
        if !ctx.accepts(graph, &graph.nodes[i], &ln) {
            continue;
        }
        removed.extend(m.nodes);
        added.push(ln);
    }
    let count = added.len();
    remove_nodes(graph, &removed);
    graph.nodes.extend(added);
    count
}

/// Fuses `Add(a, b)` into the LayerNormalization reading it, when `a` and
/// `b` have the same shape; returns how many.
pub fn fuse_skip(graph: &mut Graph, ctx: &mut OptimizeContext<'_>) -> usize {
    let index = GraphIndex::new(graph);
    let mut removed = HashSet::new();
    let mut count = 0;
    for li in 0..graph.nodes.len() {
        let ln = &graph.nodes[li];
        let is_ln = ln.op_type == "LayerNormalization"
            && (ln.domain.is_empty() || ln.domain == OXRT_DOMAIN);
        if !is_ln || ln.outputs.iter().skip(1).any(|o| !o.is_empty()) {
            continue;
        }
        let axis = ln.int_or("axis", -1).unwrap_or(0);
        let Some(sum) = ln.input(0) else { continue };
        let Some(ai) = index.producer(sum) else {
            continue;
        };
        let add = &graph.nodes[ai];
        if !is_op(add, "Add") || removed.contains(&ai) {
            continue;
        }
        let (Some(a), Some(b)) = (add.input(0), add.input(1)) else {
            continue;
        };
        let dims = |n: &str| graph.value_types.get(n).and_then(|t| t.dims());
        let same = matches!((dims(a), dims(b)), (Some(x), Some(y)) if x == y
            && matches!(x.last(), Some(Dim::Known(_)))
            && (axis == -1 || axis == x.len() as i64 - 1));
        if !same {
            continue;
        }
        // The sum stays available when something else reads it.
        let sum_out = if index.only_reader(sum) == Some(li) {
            String::new()
        } else {
            sum.to_string()
        };
        let mut inputs = vec![a.to_string(), b.to_string()];
        inputs.extend(ln.inputs.iter().skip(1).cloned());
        let mut outputs = vec![ln.outputs[0].clone()];
        if !sum_out.is_empty() {
            outputs.push(sum_out);
        }
        let fused = Node {
            name: format!("{}_skip", ln.name),
            op_type: "SkipLayerNormalization".into(),
            domain: OXRT_DOMAIN.into(),
            inputs,
            outputs,
            attributes: [(
                "epsilon".to_string(),
                Attribute::Float(ln.float_or("epsilon", 1e-5).unwrap_or(1e-5)),
            )]
            .into(),
        };
        if !ctx.accepts(graph, ln, &fused) {
            continue;
        }
        removed.insert(ai);
        graph.nodes[li] = fused;
        count += 1;
    }
    remove_nodes(graph, &removed);
    count
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::optimize::tests::{constant, graph, node, run_pass, typed, with};

    /// `Add(r, s)` then a decomposed LayerNorm of the sum with gamma/beta.
    fn decomposed() -> Graph {
        let axes = |n: Node| with(n, "axes", Attribute::Ints(vec![-1]));
        let mut g = graph(
            vec![
                node("Add", &["r", "s"], &["x"]),
                axes(node("ReduceMean", &["x"], &["mean"])),
                node("Sub", &["x", "mean"], &["d"]),
                node("Pow", &["d", "two"], &["sq"]),
                axes(node("ReduceMean", &["sq"], &["var"])),
                node("Add", &["var", "eps"], &["ve"]),
                node("Sqrt", &["ve"], &["std"]),
                node("Div", &["d", "std"], &["n"]),
                node("Mul", &["n", "gamma"], &["g"]),
                node("Add", &["g", "beta"], &["y"]),
            ],
            &["y"],
        );
        constant(&mut g, "two", &[], &[2.0]);
        constant(&mut g, "eps", &[], &[1e-6]);
        constant(&mut g, "gamma", &[4], &[1.0, 2.0, 3.0, 4.0]);
        constant(&mut g, "beta", &[4], &[0.0; 4]);
        typed(&mut g, &["r", "s", "x"], &[2, 4]);
        g
    }

    #[test]
    fn the_decomposed_form_becomes_layer_normalization() {
        let mut g = decomposed();
        assert_eq!(run_pass(&mut g, fuse), 1);
        assert_eq!(g.nodes.len(), 2);
        let ln = g
            .nodes
            .iter()
            .find(|n| n.op_type == "LayerNormalization")
            .unwrap();
        assert_eq!(ln.domain, "");
        assert_eq!(ln.inputs[0], "x");
        assert_eq!(ln.outputs[0], "y");
        let eps = ln.get_float("epsilon").unwrap().unwrap();
        assert!((eps - 1e-6).abs() < 1e-12, "{eps}");
        assert_eq!(ln.int_or("axis", 0).unwrap(), -1);
    }

    #[test]
    fn add_then_layer_norm_becomes_skip_layer_norm() {
        let mut g = decomposed();
        run_pass(&mut g, fuse);
        assert_eq!(run_pass(&mut g, fuse_skip), 1);
        let dead = crate::optimize::tests::dead(&g);
        remove_nodes(&mut g, &dead);
        assert_eq!(g.nodes.len(), 1, "{:?}", g.nodes);
        let n = &g.nodes[0];
        assert_eq!(
            (n.domain.as_str(), n.op_type.as_str()),
            (OXRT_DOMAIN, "SkipLayerNormalization")
        );
        assert_eq!(n.inputs[..2], ["r", "s"]);
        // Nobody else reads the sum: no second output.
        assert_eq!(n.outputs, ["y"]);
    }

    #[test]
    fn a_mean_over_another_axis_is_left_alone() {
        let mut g = decomposed();
        g.nodes[1]
            .attributes
            .insert("axes".into(), Attribute::Ints(vec![0]));
        assert_eq!(run_pass(&mut g, fuse), 0);
    }
}

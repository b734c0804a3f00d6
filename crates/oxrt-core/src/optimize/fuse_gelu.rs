//! GELU from its decomposed forms, as exporters write them:
//! - erf: `x * 0.5 * (1 + Erf(x / sqrt(2)))` (or `x * (1/sqrt(2))`),
//! - tanh: `x * 0.5 * (1 + Tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))`,
//!
//! with the final products in any grouping. The result is a `Gelu` node
//! (standard from opset 20, else in the `oxrt` domain), `approximate`
//! `none` or `tanh`.

use std::collections::HashSet;

use super::{constant_scalar, is_op, remove_nodes, GraphIndex, OptimizeContext, OXRT_DOMAIN};
use crate::ir::{Attribute, Graph, Node};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-4 * b.abs().max(1.0)
}

/// If `node` is the binary `op` of a value and a constant close to `c`
/// (either side when `commutes`), the other input.
fn with_constant<'n>(graph: &Graph, node: &'n Node, op: &str, c: f64) -> Option<&'n str> {
    if !is_op(node, op) || node.inputs.len() != 2 {
        return None;
    }
    let (a, b) = (node.input(0)?, node.input(1)?);
    if constant_scalar(graph, b).is_some_and(|v| close(v, c)) {
        return Some(a);
    }
    let commutes = op == "Mul" || op == "Add";
    (commutes && constant_scalar(graph, a).is_some_and(|v| close(v, c))).then_some(b)
}

/// The other input of a two-input `op` node that reads `name`.
fn other_input<'n>(node: &'n Node, op: &str, name: &str) -> Option<&'n str> {
    if !is_op(node, op) || node.inputs.len() != 2 {
        return None;
    }
    match (node.input(0)?, node.input(1)?) {
        (a, b) if a == name => Some(b),
        (a, b) if b == name => Some(a),
        _ => None,
    }
}

/// Matches `x * 0.5 * inner` in either grouping, starting from the node
/// reading `inner`; returns the nodes involved and the final output.
fn match_half_product(
    graph: &Graph,
    index: &GraphIndex,
    inner: &str,
    x: &str,
) -> Option<(Vec<usize>, String)> {
    let r = index.only_reader(inner)?;
    let node = &graph.nodes[r];
    let other = other_input(node, "Mul", inner)?;
    if other == x {
        // (x * inner) * 0.5
        let r2 = index.only_reader(&node.outputs[0])?;
        with_constant(graph, &graph.nodes[r2], "Mul", 0.5)?;
        return Some((vec![r, r2], graph.nodes[r2].outputs[0].clone()));
    }
    if let Some(p) = index.producer(other) {
        // (x * 0.5) * inner
        if with_constant(graph, &graph.nodes[p], "Mul", 0.5) == Some(x)
            && index.only_reader(other) == Some(r)
        {
            return Some((vec![p, r], node.outputs[0].clone()));
        }
    }
    // ((0.5 * inner) * x
    let half = with_constant(graph, node, "Mul", 0.5)?;
    debug_assert_eq!(half, inner);
    let r2 = index.only_reader(&node.outputs[0])?;
    (other_input(&graph.nodes[r2], "Mul", &node.outputs[0])? == x)
        .then(|| (vec![r, r2], graph.nodes[r2].outputs[0].clone()))
}

/// The erf form from its Erf node: `(x, nodes, output)`.
fn match_erf(graph: &Graph, index: &GraphIndex, e: usize) -> Option<(String, Vec<usize>, String)> {
    let erf = &graph.nodes[e];
    let scaled = erf.input(0)?;
    let s = index.producer(scaled)?;
    let sn = &graph.nodes[s];
    let x = with_constant(graph, sn, "Div", std::f64::consts::SQRT_2)
        .or_else(|| with_constant(graph, sn, "Mul", std::f64::consts::FRAC_1_SQRT_2))?;
    index.only_reader(scaled)?;
    let a = index.only_reader(&erf.outputs[0])?;
    with_constant(graph, &graph.nodes[a], "Add", 1.0)?;
    let (mut nodes, out) = match_half_product(graph, index, &graph.nodes[a].outputs[0], x)?;
    nodes.extend([s, e, a]);
    Some((x.to_string(), nodes, out))
}

/// `x^3` as `Pow(x, 3)` or `x * x * x`: the base.
fn cube_base(graph: &Graph, index: &GraphIndex, n: usize) -> Option<(String, Vec<usize>)> {
    let node = &graph.nodes[n];
    if let Some(x) = with_constant(graph, node, "Pow", 3.0) {
        return Some((x.to_string(), vec![n]));
    }
    if is_op(node, "Mul") {
        let (a, b) = (node.input(0)?, node.input(1)?);
        for (sq, x) in [(a, b), (b, a)] {
            let p = index.producer(sq)?;
            let pn = &graph.nodes[p];
            if is_op(pn, "Mul")
                && pn.input(0) == Some(x)
                && pn.input(1) == Some(x)
                && index.only_reader(sq) == Some(n)
            {
                return Some((x.to_string(), vec![p, n]));
            }
        }
    }
    None
}

/// The tanh form from its Tanh node: `(x, nodes, output)`.
fn match_tanh(graph: &Graph, index: &GraphIndex, t: usize) -> Option<(String, Vec<usize>, String)> {
    let tanh = &graph.nodes[t];
    let k = (2.0 / std::f64::consts::PI).sqrt();
    let m2 = index.producer(tanh.input(0)?)?;
    let inner = with_constant(graph, &graph.nodes[m2], "Mul", k)?;
    index.only_reader(tanh.input(0)?)?;
    let a1 = index.producer(inner)?;
    index.only_reader(inner)?;
    let a1n = &graph.nodes[a1];
    if !is_op(a1n, "Add") {
        return None;
    }
    // x + 0.044715 * x^3, either order.
    let (p, q) = (a1n.input(0)?, a1n.input(1)?);
    let mut found = None;
    for (x, cubic) in [(p, q), (q, p)] {
        let Some(m1) = index.producer(cubic) else {
            continue;
        };
        let Some(cube) = with_constant(graph, &graph.nodes[m1], "Mul", 0.044715) else {
            continue;
        };
        let Some(c) = index.producer(cube) else {
            continue;
        };
        match cube_base(graph, index, c) {
            Some((base, cube_nodes))
                if base == x
                    && index.only_reader(cubic) == Some(a1)
                    && index.only_reader(cube) == Some(m1) =>
            {
                let mut nodes = cube_nodes;
                nodes.push(m1);
                found = Some((x.to_string(), nodes));
                break;
            }
            _ => continue,
        }
    }
    let (x, mut nodes) = found?;
    let a2 = index.only_reader(&tanh.outputs[0])?;
    with_constant(graph, &graph.nodes[a2], "Add", 1.0)?;
    let (tail, out) = match_half_product(graph, index, &graph.nodes[a2].outputs[0], &x)?;
    nodes.extend([a1, m2, t, a2]);
    nodes.extend(tail);
    Some((x, nodes, out))
}

/// Replaces every GELU pattern by one node; returns how many.
pub fn fuse(graph: &mut Graph, ctx: &mut OptimizeContext<'_>) -> usize {
    let index = GraphIndex::new(graph);
    let standard = ctx.opsets.get("").is_some_and(|&v| v >= 20);
    let mut removed = HashSet::new();
    let mut added = Vec::new();
    for i in 0..graph.nodes.len() {
        let n = &graph.nodes[i];
        let (found, approximate) = if is_op(n, "Erf") {
            (match_erf(graph, &index, i), "none")
        } else if is_op(n, "Tanh") {
            (match_tanh(graph, &index, i), "tanh")
        } else {
            continue;
        };
        let Some((x, nodes, out)) = found else {
            continue;
        };
        if nodes.iter().any(|n| removed.contains(n)) {
            continue;
        }
        let gelu = Node {
            name: format!("{}_gelu", graph.nodes[i].name),
            op_type: "Gelu".into(),
            domain: if standard {
                String::new()
            } else {
                OXRT_DOMAIN.into()
            },
            inputs: vec![x],
            outputs: vec![out],
            attributes: [(
                "approximate".to_string(),
                Attribute::String(approximate.as_bytes().to_vec()),
            )]
            .into(),
        };
        if !ctx.accepts(graph, &graph.nodes[i], &gelu) {
            continue;
        }
        removed.extend(nodes);
        added.push(gelu);
    }
    let count = added.len();
    remove_nodes(graph, &removed);
    graph.nodes.extend(added);
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optimize::tests::{constant, graph, node, run_pass_at};

    /// `x * 0.5 * (1 + erf(x / sqrt 2))`, grouped as PyTorch exports it.
    fn erf_form() -> Graph {
        let mut g = graph(
            vec![
                node("Div", &["x", "sqrt2"], &["d"]),
                node("Erf", &["d"], &["e"]),
                node("Add", &["e", "one"], &["a"]),
                node("Mul", &["x", "a"], &["m"]),
                node("Mul", &["m", "half"], &["y"]),
            ],
            &["y"],
        );
        constant(&mut g, "sqrt2", &[], &[std::f32::consts::SQRT_2]);
        constant(&mut g, "one", &[], &[1.0]);
        constant(&mut g, "half", &[], &[0.5]);
        g
    }

    #[test]
    fn the_erf_form_becomes_one_gelu() {
        let mut g = erf_form();
        assert_eq!(run_pass_at(&mut g, 20, false, fuse), 1);
        assert_eq!(g.nodes.len(), 1);
        let n = &g.nodes[0];
        assert_eq!((n.domain.as_str(), n.op_type.as_str()), ("", "Gelu"));
        assert_eq!(
            (n.inputs.as_slice(), n.outputs.as_slice()),
            (&["x".to_string()][..], &["y".to_string()][..])
        );
        assert_eq!(n.get_string("approximate").ok().flatten(), Some("none"));
        // Before opset 20 there is no standard Gelu: oxrt's.
        let mut g = erf_form();
        assert_eq!(run_pass_at(&mut g, 17, false, fuse), 1);
        assert_eq!(g.nodes[0].domain, OXRT_DOMAIN);
    }

    #[test]
    fn a_wrong_constant_is_not_gelu() {
        let mut g = erf_form();
        constant(&mut g, "half", &[], &[0.25]);
        assert_eq!(run_pass_at(&mut g, 20, false, fuse), 0);
        assert_eq!(g.nodes.len(), 5);
    }
}

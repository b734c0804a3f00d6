//! No-op elimination. A node that passes its input through unchanged is
//! removed and its readers read its input instead (in subgraphs too):
//! Identity, Dropout at inference (its mask unread, training mode off), Cast to
//! the type the input already has, Reshape and Expand to the shape the input
//! already has, and Transpose with the identity permutation. A Transpose of
//! a Transpose reads the first one's input with the composed permutation
//! (and disappears when that is the identity). Nodes producing a graph
//! output stay, as the output's name must be produced.

use std::collections::HashSet;

use super::{constant, constant_scalar, is_op, rename_reads, GraphIndex};
use crate::ir::{Graph, Node};

/// The input a no-op node passes through unchanged, if `n` is one.
/// Its other outputs must be absent or unread (`used`: every name the
/// graph reads, e.g. a Dropout's mask nothing reads).
fn passes_through<'n>(graph: &Graph, n: &'n Node, used: &HashSet<String>) -> Option<&'n str> {
    let input = n.input(0)?;
    let read = |o: &String| !o.is_empty() && used.contains(o);
    if !n.domain.is_empty() || n.outputs.iter().skip(1).any(read) {
        return None;
    }
    let ty = |name: &str| graph.value_types.get(name);
    let same_static_shape = || {
        let a = ty(input)?.concrete_shape()?;
        let b = ty(&n.outputs[0])?.concrete_shape()?;
        (a == b).then_some(input)
    };
    match n.op_type.as_str() {
        "Identity" if n.inputs.len() == 1 => Some(input),
        "Dropout" if n.int_or("is_test", 1).ok()? != 0 => {
            // Training mode is input 2 (opset 12+); off unless a constant true.
            match n.input(2) {
                None => Some(input),
                Some(t) => (constant_scalar(graph, t)? == 0.0).then_some(input),
            }
        }
        "Cast" => {
            let to = n.get_int("to").ok()??;
            let dtype = ty(input)?.dtype()?;
            (dtype.onnx_code() == to as i32).then_some(input)
        }
        "Reshape" | "Expand" => same_static_shape(),
        "Transpose" => {
            let perm = n.get_ints("perm").ok()??;
            perm.iter()
                .enumerate()
                .all(|(i, &p)| p == i as i64)
                .then_some(input)
        }
        _ => None,
    }
}

/// Rewrites `Transpose(Transpose(x, p1), p2)` to read `x` with the composed
/// permutation; returns how many were rewritten.
fn compose_transposes(graph: &mut Graph) -> usize {
    let index = GraphIndex::new(graph);
    let mut changed = 0;
    for i in 0..graph.nodes.len() {
        let n = &graph.nodes[i];
        if !is_op(n, "Transpose") {
            continue;
        }
        let Some(first) = n.input(0).and_then(|x| index.producer(x)) else {
            continue;
        };
        let f = &graph.nodes[first];
        if !is_op(f, "Transpose") {
            continue;
        }
        let (Ok(Some(p1)), Ok(Some(p2)), Some(x)) =
            (f.get_ints("perm"), n.get_ints("perm"), f.input(0))
        else {
            continue;
        };
        if p1.len() != p2.len() || p2.iter().any(|&p| p < 0 || p as usize >= p1.len()) {
            continue;
        }
        let composed: Vec<i64> = p2.iter().map(|&p| p1[p as usize]).collect();
        let x = x.to_string();
        let n = &mut graph.nodes[i];
        n.inputs[0] = x;
        n.attributes
            .insert("perm".into(), crate::ir::Attribute::Ints(composed));
        changed += 1;
    }
    changed
}

/// Removes no-op nodes; returns how many nodes were removed or rewritten.
pub fn remove_no_ops(graph: &mut Graph) -> usize {
    let mut changed = compose_transposes(graph);
    let outputs: HashSet<String> = graph.outputs.iter().map(|o| o.name.clone()).collect();
    let used = super::used_names(graph);
    let mut i = 0;
    while i < graph.nodes.len() {
        let n = &graph.nodes[i];
        let through = passes_through(graph, n, &used).map(str::to_string);
        match through {
            Some(to)
                if !outputs.contains(&n.outputs[0]) && constant(graph, &n.outputs[0]).is_none() =>
            {
                let from = n.outputs[0].clone();
                graph.nodes.remove(i);
                rename_reads(graph, &from, &to);
                changed += 1;
            }
            _ => i += 1,
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::tests::{graph, node, with};
    use super::*;
    use crate::ir::{Attribute, ValueType};
    use crate::DataType;

    #[test]
    fn identities_are_bypassed_unless_they_name_an_output() {
        let mut g = graph(
            vec![
                node("Identity", &["x"], &["a"]),
                node("Relu", &["a"], &["b"]),
                node("Identity", &["b"], &["y"]),
            ],
            &["y"],
        );
        assert_eq!(remove_no_ops(&mut g), 1);
        assert_eq!(g.nodes.len(), 2);
        assert_eq!(g.nodes[0].inputs, ["x"]);
        assert_eq!(g.nodes[1].op_type, "Identity");
    }

    #[test]
    fn same_type_casts_same_shape_reshapes_and_inference_dropout_go() {
        let f32_2x3 = ValueType::tensor(DataType::F32, &[2, 3]);
        let mut g = graph(
            vec![
                with(node("Cast", &["x"], &["a"]), "to", Attribute::Int(1)),
                node("Reshape", &["a", "shape"], &["b"]),
                node("Dropout", &["b"], &["c"]),
                with(node("Cast", &["c"], &["d"]), "to", Attribute::Int(10)),
                node("Relu", &["d"], &["y"]),
            ],
            &["y"],
        );
        for v in ["x", "a", "b", "c"] {
            g.value_types.insert(v.into(), f32_2x3.clone());
        }
        assert_eq!(remove_no_ops(&mut g), 3);
        let ops: Vec<&str> = g.nodes.iter().map(|n| n.op_type.as_str()).collect();
        // The Cast to f16 changes the type and stays.
        assert_eq!(ops, ["Cast", "Relu"]);
        assert_eq!(g.nodes[0].inputs, ["x"]);
    }

    #[test]
    fn inference_dropout_goes_unless_its_mask_is_read() {
        // The mask output named but unread: the Dropout goes.
        let mut g = graph(
            vec![
                node("Dropout", &["x"], &["a", "mask"]),
                node("Relu", &["a"], &["y"]),
            ],
            &["y"],
        );
        assert_eq!(remove_no_ops(&mut g), 1);
        assert_eq!(g.nodes.len(), 1);
        assert_eq!(g.nodes[0].inputs, ["x"]);
        // The mask read by a node, or a graph output: it stays.
        let reads_mask = vec![
            node("Dropout", &["x"], &["a", "mask"]),
            node("Relu", &["a"], &["y"]),
            node("Not", &["mask"], &["z"]),
        ];
        let mut g = graph(reads_mask, &["y", "z"]);
        assert_eq!(remove_no_ops(&mut g), 0);
        let mut g = graph(
            vec![
                node("Dropout", &["x"], &["a", "mask"]),
                node("Relu", &["a"], &["y"]),
            ],
            &["y", "mask"],
        );
        assert_eq!(remove_no_ops(&mut g), 0);
    }

    #[test]
    fn transpose_pairs_compose() {
        let perm = |p: &[i64]| Attribute::Ints(p.to_vec());
        let mut g = graph(
            vec![
                with(node("Transpose", &["x"], &["a"]), "perm", perm(&[0, 2, 1])),
                with(node("Transpose", &["a"], &["b"]), "perm", perm(&[0, 2, 1])),
                with(node("Transpose", &["a"], &["c"]), "perm", perm(&[1, 0, 2])),
                node("Add", &["b", "c"], &["y"]),
            ],
            &["y"],
        );
        remove_no_ops(&mut g);
        super::super::remove_dead_nodes(&mut g);
        // b = x exactly; c = x transposed by [2, 0, 1].
        let add = g.nodes.iter().find(|n| n.op_type == "Add").unwrap();
        assert_eq!(add.inputs[0], "x");
        let t = g.nodes.iter().find(|n| n.outputs[0] == "c").unwrap();
        assert_eq!(t.inputs, ["x"]);
        assert_eq!(t.get_ints("perm").unwrap().unwrap(), [2, 0, 1]);
        assert_eq!(g.nodes.len(), 2);
    }
}

//! Scaled dot-product attention from the form exported transformers write,
//!
//! ```text
//! scores = MatMul(Q, Kt) [/ c | * c] [+ mask]
//! Y = MatMul(Softmax(scores, axis = -1), V)
//! ```
//!
//! with Q, Kt and V of rank 4 (`[batch, heads, seq, head_size]`, Kt the
//! keys with their last two axes swapped), into one `Attention` node
//! (standard from opset 23, else in the `oxrt` domain) with the explicit
//! `scale` and the mask as `attn_mask`. When Kt is a Transpose read by
//! nothing else, its permutation is changed to give the keys directly;
//! otherwise a Transpose is added.

use std::collections::HashSet;

use super::{
    constant_scalar, fresh_name, is_op, remove_nodes, GraphIndex, OptimizeContext, OXRT_DOMAIN,
};
use crate::ir::{Attribute, Graph, Node};

/// A matched attention block.
struct Found {
    q: String,
    kt: String,
    v: String,
    mask: Option<String>,
    scale: f64,
    /// Nodes replaced by the fused one.
    nodes: Vec<usize>,
    output: String,
}

fn rank(graph: &Graph, name: &str) -> Option<usize> {
    graph.value_types.get(name)?.dims().map(<[_]>::len)
}

/// The pattern ending in the MatMul reading Softmax node `s`.
fn match_at(graph: &Graph, index: &GraphIndex, s: usize) -> Option<Found> {
    let softmax = &graph.nodes[s];
    let x = softmax.input(0)?;
    let r = rank(graph, x)?;
    let axis = softmax.int_or("axis", -1).ok()?;
    let opset13_axis = axis == -1 || axis == r as i64 - 1;
    if r != 4 || !opset13_axis {
        return None;
    }
    let out_mm = index.only_reader(&softmax.outputs[0])?;
    let mm2 = &graph.nodes[out_mm];
    if !is_op(mm2, "MatMul") || mm2.input(0) != Some(softmax.outputs[0].as_str()) {
        return None;
    }
    let v = mm2.input(1)?;
    let mut nodes = vec![s, out_mm];
    // Optional mask: Add(scores, mask) with the scores from a MatMul.
    let mut scores = x;
    let mut mask = None;
    let p = index.producer(scores)?;
    if is_op(&graph.nodes[p], "Add") {
        let add = &graph.nodes[p];
        let (a, b) = (add.input(0)?, add.input(1)?);
        let from_product = |n: &str| {
            index.producer(n).is_some_and(|q| {
                let pn = &graph.nodes[q];
                is_op(pn, "MatMul") || is_op(pn, "Div") || is_op(pn, "Mul")
            })
        };
        let (sc, m) = if from_product(a) { (a, b) } else { (b, a) };
        mask = Some(m.to_string());
        scores = sc;
        nodes.push(p);
    }
    // Optional scale: Div or Mul by a constant scalar.
    let mut scale = 1.0;
    let p = index.producer(scores)?;
    let pn = &graph.nodes[p];
    let product = if is_op(pn, "Div") || is_op(pn, "Mul") {
        let c = constant_scalar(graph, pn.input(1)?)?;
        scale = if is_op(pn, "Div") { 1.0 / c } else { c };
        if !scale.is_finite() {
            return None;
        }
        nodes.push(p);
        pn.input(0)?
    } else {
        scores
    };
    let mm1i = index.producer(product)?;
    let mm1 = &graph.nodes[mm1i];
    // Every intermediate disappears: each must be read once, by the block.
    let once = [x, scores, product]
        .iter()
        .all(|n| index.only_reader(n).is_some());
    if !is_op(mm1, "MatMul") || !once {
        return None;
    }
    nodes.push(mm1i);
    let (q, kt) = (mm1.input(0)?, mm1.input(1)?);
    if [q, kt, v].iter().any(|n| rank(graph, n) != Some(4)) {
        return None;
    }
    Some(Found {
        q: q.to_string(),
        kt: kt.to_string(),
        v: v.to_string(),
        mask,
        scale,
        nodes,
        output: mm2.outputs[0].clone(),
    })
}

/// Replaces each attention block by one `Attention` node; returns how many.
pub fn fuse(graph: &mut Graph, ctx: &mut OptimizeContext<'_>) -> usize {
    let standard = ctx.opsets.get("").is_some_and(|&v| v >= 23);
    let mut count = 0;
    // One block at a time: each rewrite changes the index.
    loop {
        let index = GraphIndex::new(graph);
        let mut done = false;
        for s in 0..graph.nodes.len() {
            if !is_op(&graph.nodes[s], "Softmax") {
                continue;
            }
            let Some(found) = match_at(graph, &index, s) else {
                continue;
            };
            if rewrite(graph, &index, ctx, found, standard) {
                count += 1;
                done = true;
                break;
            }
        }
        if !done {
            return count;
        }
    }
}

/// Builds the fused node (and the keys' Transpose); false when the
/// provider declines it.
fn rewrite(
    graph: &mut Graph,
    index: &GraphIndex,
    ctx: &mut OptimizeContext<'_>,
    found: Found,
    standard: bool,
) -> bool {
    // Keys [b, h, s, d] from Kt [b, h, d, s].
    let kt_transpose = index
        .producer(&found.kt)
        .filter(|&t| is_op(&graph.nodes[t], "Transpose") && index.only_reader(&found.kt).is_some());
    let (k_node, k_name) = match kt_transpose {
        Some(t) => {
            let tn = &graph.nodes[t];
            let Ok(Some(perm)) = tn.get_ints("perm") else {
                return false;
            };
            if perm.len() != 4 {
                return false;
            }
            let composed = vec![perm[0], perm[1], perm[3], perm[2]];
            let mut n = tn.clone();
            n.attributes
                .insert("perm".into(), Attribute::Ints(composed));
            let name = fresh_name(graph, &format!("{}_keys", found.kt));
            n.outputs = vec![name.clone()];
            (n, name)
        }
        None => {
            let name = fresh_name(graph, &format!("{}_keys", found.kt));
            let n = Node {
                name: fresh_name(graph, &format!("{}_keys_transpose", found.kt)),
                op_type: "Transpose".into(),
                domain: String::new(),
                inputs: vec![found.kt.clone()],
                outputs: vec![name.clone()],
                attributes: [("perm".to_string(), Attribute::Ints(vec![0, 1, 3, 2]))].into(),
            };
            (n, name)
        }
    };
    let mut inputs = vec![found.q.clone(), k_name, found.v.clone()];
    if let Some(m) = &found.mask {
        inputs.push(m.clone());
    }
    let softmax = &graph.nodes[found.nodes[0]];
    let fused = Node {
        name: format!("{}_attention", softmax.name),
        op_type: "Attention".into(),
        domain: if standard {
            String::new()
        } else {
            OXRT_DOMAIN.into()
        },
        inputs,
        outputs: vec![found.output.clone()],
        attributes: [("scale".to_string(), Attribute::Float(found.scale as f32))].into(),
    };
    if !ctx.accepts(graph, softmax, &fused) {
        return false;
    }
    let mut removed: HashSet<usize> = found.nodes.iter().copied().collect();
    if let Some(t) = kt_transpose {
        removed.insert(t);
    }
    remove_nodes(graph, &removed);
    graph.nodes.push(k_node);
    graph.nodes.push(fused);
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::optimize::tests::{graph, node, with};

    fn typed(g: &mut Graph, names: &[&str]) {
        for n in names {
            g.value_types.insert(
                n.to_string(),
                crate::ir::ValueType::Tensor {
                    dtype: crate::DataType::F32,
                    shape: Some(vec![crate::Dim::Unknown; 4]),
                },
            );
        }
    }

    #[test]
    fn matches_scaled_masked_attention() {
        let mut g = graph(
            vec![
                with(
                    node("Transpose", &["k_in"], &["kt"]),
                    "perm",
                    Attribute::Ints(vec![0, 2, 3, 1]),
                ),
                node("MatMul", &["q", "kt"], &["qk"]),
                node("Div", &["qk", "c"], &["scaled"]),
                node("Add", &["scaled", "mask"], &["masked"]),
                node("Softmax", &["masked"], &["p"]),
                node("MatMul", &["p", "v"], &["y"]),
            ],
            &["y"],
        );
        g.initializers.insert(
            "c".into(),
            std::sync::Arc::new(crate::Tensor::from_vec(vec![], vec![4.0f32]).unwrap()),
        );
        typed(&mut g, &["q", "kt", "v", "masked", "qk", "scaled"]);
        let index = GraphIndex::new(&g);
        let s = g.nodes.iter().position(|n| n.op_type == "Softmax").unwrap();
        let f = match_at(&g, &index, s).unwrap();
        assert_eq!(
            (f.q.as_str(), f.kt.as_str(), f.v.as_str()),
            ("q", "kt", "v")
        );
        assert_eq!(f.mask.as_deref(), Some("mask"));
        assert_eq!(f.scale, 0.25);
        assert_eq!(f.output, "y");
        assert_eq!(f.nodes.len(), 5);
    }

    #[test]
    fn a_softmax_read_twice_is_left_alone() {
        let mut g = graph(
            vec![
                node("MatMul", &["q", "kt"], &["qk"]),
                node("Softmax", &["qk"], &["p"]),
                node("MatMul", &["p", "v"], &["y"]),
            ],
            &["y", "p"],
        );
        typed(&mut g, &["q", "kt", "v", "qk"]);
        let index = GraphIndex::new(&g);
        assert!(match_at(&g, &index, 1).is_none());
    }
}

//! MatMul fusions:
//! - a Transpose swapping the last two axes of a MatMul or Gemm operand is
//!   dropped and the product reads the operand transposed (Gemm's
//!   `transA`/`transB`, or `oxrt.FusedMatMul`'s);
//! - `MatMul(A, B) + C` with a constant bias becomes `Gemm(A, B, C)` when
//!   A and B are matrices and C broadcasts to the product, else
//!   `oxrt.FusedMatMul(A, B, bias)` when C is one value per output column.

use std::collections::HashSet;

use super::{constant, is_op, remove_nodes, GraphIndex, OptimizeContext, OXRT_DOMAIN};
use crate::ir::{Attribute, Graph, Node};

/// Whether `node` is `oxrt.FusedMatMul`.
fn is_fused_matmul(node: &Node) -> bool {
    node.domain == OXRT_DOMAIN && node.op_type == "FusedMatMul"
}

/// Whether `perm` swaps the last two axes and keeps the others.
fn swaps_last_two(perm: &[i64]) -> bool {
    let r = perm.len();
    r >= 2
        && perm[..r - 2]
            .iter()
            .enumerate()
            .all(|(i, &p)| p == i as i64)
        && perm[r - 2] == r as i64 - 1
        && perm[r - 1] == r as i64 - 2
}

/// `node` as an `oxrt.FusedMatMul` (a MatMul gets `transA = transB = 0`).
fn as_fused_matmul(node: &Node) -> Node {
    let mut fused = node.clone();
    if !is_fused_matmul(node) {
        fused.op_type = "FusedMatMul".into();
        fused.domain = OXRT_DOMAIN.into();
        fused.name = format!("{}_fused", node.name);
    }
    fused
}

/// Folds last-axes Transposes into the products reading them; returns how
/// many operands were folded.
pub fn fold_transposes(graph: &mut Graph, ctx: &mut OptimizeContext<'_>) -> usize {
    let index = GraphIndex::new(graph);
    let mut count = 0;
    for i in 0..graph.nodes.len() {
        let n = &graph.nodes[i];
        let gemm = is_op(n, "Gemm");
        if !(gemm || is_op(n, "MatMul") || is_fused_matmul(n)) {
            continue;
        }
        let mut updated = if gemm { n.clone() } else { as_fused_matmul(n) };
        let mut folded = 0;
        for (k, flag) in [(0, "transA"), (1, "transB")] {
            let Some(t) = n.input(k).and_then(|v| index.producer(v)) else {
                continue;
            };
            let tn = &graph.nodes[t];
            let perm = match tn.get_ints("perm") {
                Ok(Some(p)) if is_op(tn, "Transpose") => p,
                _ => continue,
            };
            if !swaps_last_two(perm) || (gemm && perm.len() != 2) {
                continue;
            }
            let Some(source) = tn.input(0) else { continue };
            let was = updated.int_or(flag, 0).unwrap_or(0);
            updated.inputs[k] = source.to_string();
            updated
                .attributes
                .insert(flag.into(), Attribute::Int(1 - was.clamp(0, 1)));
            folded += 1;
        }
        if folded == 0 || (!gemm && !is_fused_matmul(n) && !ctx.accepts(graph, n, &updated)) {
            continue;
        }
        graph.nodes[i] = updated;
        count += folded;
    }
    count
}

/// Known dims of `name` (from inference, or the constant's shape).
fn shape_of(graph: &Graph, name: &str) -> Option<Vec<usize>> {
    constant(graph, name)
        .map(|t| t.shape().to_vec())
        .or_else(|| graph.value_types.get(name)?.concrete_shape())
}

/// Rank of `name`, when known.
fn rank_of(graph: &Graph, name: &str) -> Option<usize> {
    constant(graph, name)
        .map(|t| t.rank())
        .or_else(|| graph.value_types.get(name)?.dims().map(<[_]>::len))
}

/// Fuses constant bias additions into the products before them; returns
/// how many.
pub fn fuse_bias(graph: &mut Graph, ctx: &mut OptimizeContext<'_>) -> usize {
    let index = GraphIndex::new(graph);
    let mut removed = HashSet::new();
    for i in 0..graph.nodes.len() {
        let n = &graph.nodes[i];
        let plain = is_op(n, "MatMul");
        if !(plain || is_fused_matmul(n))
            || n.input(2).is_some()
            || n.attributes.contains_key("activation")
        {
            continue;
        }
        let Some(ai) = index.only_reader(&n.outputs[0]) else {
            continue;
        };
        let add = &graph.nodes[ai];
        if !is_op(add, "Add") || removed.contains(&ai) {
            continue;
        }
        let y = &n.outputs[0];
        let Some(c) = (if add.input(0) == Some(y) {
            add.input(1)
        } else {
            add.input(0)
        }) else {
            continue;
        };
        let Some(bias) = constant(graph, c) else {
            continue;
        };
        let (Some(a), Some(b)) = (n.input(0), n.input(1)) else {
            continue;
        };
        let trans_b = n.int_or("transB", 0).unwrap_or(0) != 0;
        let columns = shape_of(graph, b).and_then(|s| match (s.len(), trans_b) {
            (r, false) if r >= 2 => Some(s[r - 1]),
            (r, true) if r >= 2 => Some(s[r - 2]),
            _ => None,
        });
        let Some(columns) = columns else { continue };
        let matrices = rank_of(graph, a) == Some(2) && rank_of(graph, b) == Some(2);
        let fits_gemm = bias.rank() <= 2
            && bias.shape().last().is_none_or(|&d| d == 1 || d == columns)
            && (bias.rank() < 2 || bias.shape()[0] == 1);
        let per_column = bias.shape() == [columns];
        let fused = if plain && matrices && fits_gemm {
            let mut g = n.clone();
            g.op_type = "Gemm".into();
            g.name = format!("{}_gemm", n.name);
            g.inputs = vec![a.to_string(), b.to_string(), c.to_string()];
            g
        } else if per_column {
            let mut f = as_fused_matmul(n);
            f.inputs = vec![a.to_string(), b.to_string(), c.to_string()];
            f
        } else {
            continue;
        };
        let mut fused = fused;
        fused.outputs = vec![add.outputs[0].clone()];
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
    #[test]
    fn last_two_axes_swaps() {
        assert!(super::swaps_last_two(&[1, 0]));
        assert!(super::swaps_last_two(&[0, 1, 3, 2]));
        assert!(!super::swaps_last_two(&[0, 2, 1, 3]));
        assert!(!super::swaps_last_two(&[0]));
    }
}

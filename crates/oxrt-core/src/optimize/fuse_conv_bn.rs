//! Conv + BatchNormalization (inference) folded into the convolution's
//! weights and bias: `W' = W * s`, `B' = (B - mean) * s + beta` with
//! `s = gamma / sqrt(var + epsilon)` per output channel; and Conv + Add of
//! a constant with one value per output channel (`[C,1,1]`, `[1,C,1,1]`,
//! a scalar...) folded into the bias.

use std::collections::HashSet;
use std::sync::Arc;

use super::{constant, float_tensor, fresh_name, is_op, remove_nodes, GraphIndex, OptimizeContext};
use crate::ir::Graph;
use crate::tensor::Tensor;

/// The folded `(W', B')` of a Conv followed by a BatchNormalization.
fn fold(
    w: &Tensor,
    b: Option<&Tensor>,
    bn: [&Tensor; 4],
    epsilon: f64,
) -> Option<(Tensor, Tensor)> {
    let m = *w.shape().first()?;
    let [gamma, beta, mean, var] = bn.map(|t| t.to_f64_vec());
    let (gamma, beta, mean, var) = (gamma?, beta?, mean?, var?);
    if [&gamma, &beta, &mean, &var].iter().any(|v| v.len() != m) || m == 0 {
        return None;
    }
    let bias = match b {
        Some(b) => b.to_f64_vec().filter(|v| v.len() == m)?,
        None => vec![0.0; m],
    };
    let scale: Vec<f64> = (0..m)
        .map(|c| gamma[c] / (var[c] + epsilon).sqrt())
        .collect();
    let per = w.len() / m;
    let weights: Vec<f64> = w
        .to_f64_vec()?
        .iter()
        .enumerate()
        .map(|(i, v)| v * scale[i / per])
        .collect();
    let new_bias: Vec<f64> = (0..m)
        .map(|c| (bias[c] - mean[c]) * scale[c] + beta[c])
        .collect();
    Some((
        float_tensor(w.dtype(), w.shape(), weights)?,
        float_tensor(w.dtype(), &[m], new_bias)?,
    ))
}

/// When node `ci` is a Conv whose output only one node reads: that node.
fn conv_reader(graph: &Graph, index: &GraphIndex, ci: usize) -> Option<usize> {
    let conv = &graph.nodes[ci];
    if !is_op(conv, "Conv") || conv.outputs.len() != 1 {
        return None;
    }
    index.only_reader(&conv.outputs[0])
}

/// Folds every eligible BatchNormalization into its Conv; returns how many.
pub fn fuse(graph: &mut Graph, _: &mut OptimizeContext<'_>) -> usize {
    let index = GraphIndex::new(graph);
    let mut removed = HashSet::new();
    for ci in 0..graph.nodes.len() {
        let Some(bi) = conv_reader(graph, &index, ci) else {
            continue;
        };
        let conv = &graph.nodes[ci];
        let bn = &graph.nodes[bi];
        let training = bn.int_or("training_mode", 0).unwrap_or(1) != 0;
        if !is_op(bn, "BatchNormalization")
            || training
            || bn.inputs.first() != Some(&conv.outputs[0])
            || bn.outputs.iter().skip(1).any(|o| !o.is_empty())
        {
            continue;
        }
        let params: Option<Vec<&Arc<Tensor>>> = (1..5)
            .map(|i| bn.input(i).and_then(|n| constant(graph, n)))
            .collect();
        let (Some(params), Some(w)) = (params, conv.input(1).and_then(|n| constant(graph, n)))
        else {
            continue;
        };
        let b = match conv.input(2) {
            Some(n) => match constant(graph, n) {
                Some(b) => Some(b.as_ref()),
                None => continue,
            },
            None => None,
        };
        let epsilon = f64::from(bn.float_or("epsilon", 1e-5).unwrap_or(1e-5));
        let bn_params = [
            params[0].as_ref(),
            params[1].as_ref(),
            params[2].as_ref(),
            params[3].as_ref(),
        ];
        let Some((w2, b2)) = fold(w, b, bn_params, epsilon) else {
            continue;
        };
        let w_name = fresh_name(graph, &format!("{}_bn_folded", conv.inputs[1]));
        let b_name = fresh_name(graph, &format!("{}_bn_bias", conv.name));
        let y = bn.outputs[0].clone();
        graph.initializers.insert(w_name.clone(), Arc::new(w2));
        graph.initializers.insert(b_name.clone(), Arc::new(b2));
        let conv = &mut graph.nodes[ci];
        conv.inputs.resize(3, String::new());
        conv.inputs[1] = w_name;
        conv.inputs[2] = b_name;
        conv.outputs[0] = y;
        removed.insert(bi);
    }
    remove_nodes(graph, &removed);
    removed.len()
}

/// One value per output channel of a Conv with `m` outputs and `rank`-D
/// output, when `t` broadcasts that way (`[m,1,..]`, `[1,m,1,..]`, or one
/// value for all).
fn per_channel(t: &Tensor, m: usize, rank: usize) -> Option<Vec<f64>> {
    let v = t.to_f64_vec()?;
    if v.len() == 1 {
        return Some(vec![v[0]; m]);
    }
    let s = t.shape();
    // Right-aligned against [N, C, spatial...]: C sits at rank - 2 from the end.
    let channel_at = s.len().checked_sub(rank - 1)?;
    let ok = v.len() == m
        && s.len() <= rank
        && s.iter()
            .enumerate()
            .all(|(i, &d)| if i == channel_at { d == m } else { d == 1 });
    ok.then_some(v)
}

/// Folds `Conv → Add(constant per channel)` into the Conv's bias; returns
/// how many Adds disappeared.
pub fn fuse_bias(graph: &mut Graph, _: &mut OptimizeContext<'_>) -> usize {
    let index = GraphIndex::new(graph);
    let mut removed = HashSet::new();
    for ci in 0..graph.nodes.len() {
        let Some(ai) = conv_reader(graph, &index, ci) else {
            continue;
        };
        let conv = &graph.nodes[ci];
        let add = &graph.nodes[ai];
        if !is_op(add, "Add") || removed.contains(&ai) {
            continue;
        }
        let other = match (add.input(0), add.input(1)) {
            (Some(a), Some(b)) if a == conv.outputs[0] => b,
            (Some(a), Some(b)) if b == conv.outputs[0] => a,
            _ => continue,
        };
        let (Some(c), Some(w)) = (
            constant(graph, other),
            conv.input(1).and_then(|n| constant(graph, n)),
        ) else {
            continue;
        };
        let m = w.shape().first().copied().unwrap_or(0);
        if m == 0 || c.dtype() != w.dtype() {
            continue;
        }
        let Some(add_bias) = per_channel(c, m, w.rank()) else {
            continue;
        };
        let old = match conv.input(2) {
            Some(n) => match constant(graph, n).and_then(|b| b.to_f64_vec()) {
                Some(b) if b.len() == m => b,
                _ => continue,
            },
            None => vec![0.0; m],
        };
        let bias: Vec<f64> = old.iter().zip(&add_bias).map(|(a, b)| a + b).collect();
        let Some(b2) = float_tensor(w.dtype(), &[m], bias) else {
            continue;
        };
        let b_name = fresh_name(graph, &format!("{}_add_bias", conv.name));
        let y = add.outputs[0].clone();
        graph.initializers.insert(b_name.clone(), Arc::new(b2));
        let conv = &mut graph.nodes[ci];
        conv.inputs.resize(3, String::new());
        conv.inputs[2] = b_name;
        conv.outputs[0] = y;
        removed.insert(ai);
    }
    remove_nodes(graph, &removed);
    removed.len()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn folded_weights_match_the_formula() {
        // Two output channels, one input channel, 1x1 kernel.
        let w = Tensor::from_vec(vec![2, 1, 1, 1], vec![2.0f32, -1.0]).unwrap();
        let b = Tensor::from_vec(vec![2], vec![0.5f32, 1.0]).unwrap();
        let t = |v: [f32; 2]| Tensor::from_vec(vec![2], v.to_vec()).unwrap();
        let (gamma, beta, mean, var) =
            (t([1.0, 2.0]), t([0.1, 0.2]), t([0.5, -1.0]), t([4.0, 1.0]));
        let (w2, b2) = fold(&w, Some(&b), [&gamma, &beta, &mean, &var], 0.0).unwrap();
        // s = [1/2, 2/1]
        assert_eq!(w2.as_slice::<f32>().unwrap(), [1.0, -2.0]);
        // (0.5 - 0.5) * 0.5 + 0.1 = 0.1; (1 + 1) * 2 + 0.2 = 4.2
        let b2 = b2.as_slice::<f32>().unwrap();
        assert!(
            (b2[0] - 0.1).abs() < 1e-6 && (b2[1] - 4.2).abs() < 1e-6,
            "{b2:?}"
        );
    }

    #[test]
    fn per_channel_constants_broadcast_over_channels_only() {
        let t = |shape: Vec<usize>, v: Vec<f32>| Tensor::from_vec(shape, v).unwrap();
        let two = vec![1.0f32, 2.0];
        assert_eq!(
            per_channel(&t(vec![2, 1, 1], two.clone()), 2, 4),
            Some(vec![1.0, 2.0])
        );
        assert_eq!(
            per_channel(&t(vec![1, 2, 1, 1], two.clone()), 2, 4),
            Some(vec![1.0, 2.0])
        );
        assert_eq!(
            per_channel(&t(vec![], vec![3.0]), 2, 4),
            Some(vec![3.0, 3.0])
        );
        // Along the last spatial axis, not the channels.
        assert_eq!(per_channel(&t(vec![2], two.clone()), 2, 4), None);
        assert_eq!(per_channel(&t(vec![1, 1, 2, 1], two), 2, 4), None);
    }

    #[test]
    fn conv_then_channel_add_folds_into_the_bias() {
        use crate::optimize::tests::{graph, node, run_pass};
        let mut g = graph(
            vec![
                node("Conv", &["x", "w", "b"], &["c"]),
                node("Add", &["c", "k"], &["y"]),
            ],
            &["y"],
        );
        let init = |g: &mut Graph, n: &str, shape: Vec<usize>, v: Vec<f32>| {
            g.initializers
                .insert(n.into(), Arc::new(Tensor::from_vec(shape, v).unwrap()));
        };
        init(&mut g, "w", vec![2, 1, 1, 1], vec![1.0, 1.0]);
        init(&mut g, "b", vec![2], vec![0.5, 0.25]);
        init(&mut g, "k", vec![2, 1, 1], vec![1.0, -1.0]);
        assert_eq!(run_pass(&mut g, fuse_bias), 1);
        assert_eq!(g.nodes.len(), 1);
        assert_eq!(g.nodes[0].outputs, ["y"]);
        let bias = &g.initializers[&g.nodes[0].inputs[2]];
        assert_eq!(bias.as_slice::<f32>().unwrap(), [1.5, -0.75]);
    }
}

//! Level `all`: 3x3 stride-1 convolutions with constant f32 weights become
//! `WinogradConv` (domain `oxrt`), their filters transformed once here into
//! the Winograd F(4x4, 3x3) domain: `U[p][c][k] = (G g[k][c] G^T)[p]`, one
//! `C x K` matrix per tile position `p` (36), the layout the CPU kernel
//! multiplies directly.
//!
//! Applied only where it wins, by the limits of the provider that would
//! run the convolution ([`ExecutionProvider::winograd_limits`], measured
//! per provider and CPU; providers without them keep their convolutions):
//! the input's spatial size must be known and give enough output tiles (on
//! small maps the 4x larger filters cost more memory traffic than the
//! saved multiplies), and both channel counts must be large enough (with
//! few channels the transforms outweigh the saved multiplies).
//!
//! [`ExecutionProvider::winograd_limits`]: crate::ExecutionProvider::winograd_limits

use std::sync::Arc;

use super::{constant, fresh_name, is_op, OptimizeContext, OXRT_DOMAIN};
use crate::ir::{Dim, Graph, Node};
use crate::shape::WindowAttrs;
use crate::tensor::Tensor;
use crate::{DataType, WinogradLimits};

/// Winograd-domain positions per 6x6 tile.
pub const POSITIONS: usize = 36;

/// The filter transform `G` of F(4x4, 3x3).
const G: [[f64; 3]; 6] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// The Winograd-domain filters `U` (36 x C x K, row-major) of 3x3 weights
/// `w` (K x C x 3 x 3); `None` if `w` has another size.
pub fn winograd_filters(w: &[f32], k: usize, c: usize) -> Option<Vec<f32>> {
    if w.len() != k.checked_mul(c)?.checked_mul(9)? {
        return None;
    }
    let mut u = vec![0.0f32; POSITIONS * c * k];
    for o in 0..k {
        for ch in 0..c {
            let g = &w[(o * c + ch) * 9..][..9];
            // t = G g (6 x 3), then G g G^T (6 x 6).
            let mut t = [[0.0f64; 3]; 6];
            for (a, row) in t.iter_mut().enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = (0..3).map(|i| G[a][i] * f64::from(g[i * 3 + j])).sum();
                }
            }
            for a in 0..6 {
                for b in 0..6 {
                    let v: f64 = (0..3).map(|j| t[a][j] * G[b][j]).sum();
                    u[((a * 6 + b) * c + ch) * k + o] = v as f32;
                }
            }
        }
    }
    Some(u)
}

/// Whether all of `name`'s ints are 1 (absent counts as 1).
fn all_ones(node: &Node, name: &str) -> bool {
    match node.get_ints(name) {
        Ok(Some(v)) => v.iter().all(|&x| x == 1),
        Ok(None) => true,
        Err(_) => false,
    }
}

/// The number of 4x4 output tiles of `node` per image, when the input's
/// spatial size is known.
fn output_tiles(graph: &Graph, node: &Node) -> Option<usize> {
    let dims = graph.value_types.get(node.input(0)?)?.dims()?;
    let [_, _, Dim::Known(h), Dim::Known(w)] = dims else {
        return None;
    };
    let win = WindowAttrs::from_node(node)
        .ok()?
        .resolve(&[*h, *w], Some(&[3, 3]))
        .ok()?;
    Some(win.output[0].div_ceil(4) * win.output[1].div_ceil(4))
}

/// The `WinogradConv` for Conv/FusedConv node `node`, and its filters.
fn convert_node(graph: &Graph, node: &Node, limits: WinogradLimits) -> Option<(Node, Tensor)> {
    let conv = is_op(node, "Conv") || (node.domain == OXRT_DOMAIN && node.op_type == "FusedConv");
    if !conv
        || node.input(3).is_some()
        || node.outputs.len() != 1
        || node.int_or("group", 1).ok()? != 1
        || !all_ones(node, "strides")
        || !all_ones(node, "dilations")
    {
        return None;
    }
    let w = constant(graph, node.input(1)?)?;
    let [k, c, 3, 3] = w.shape()[..] else {
        return None;
    };
    if w.dtype() != DataType::F32 || k < limits.channels || c < limits.channels {
        return None;
    }
    if let Some(b) = node.input(2) {
        constant(graph, b)?;
    }
    if output_tiles(graph, node)? < limits.tiles {
        return None;
    }
    let u = winograd_filters(w.as_slice::<f32>().ok()?, k, c)?;
    let u = Tensor::from_vec(vec![POSITIONS, c, k], u).ok()?;
    let mut new = node.clone();
    new.op_type = "WinogradConv".into();
    new.domain = OXRT_DOMAIN.into();
    for a in ["group", "strides", "dilations", "kernel_shape"] {
        new.attributes.remove(a);
    }
    Some((new, u))
}

/// Converts every eligible convolution; returns how many.
pub fn convert(graph: &mut Graph, ctx: &mut OptimizeContext<'_>) -> usize {
    let mut changed = 0;
    for i in 0..graph.nodes.len() {
        let Some(limits) = ctx
            .provider_for(graph, &graph.nodes[i])
            .and_then(|p| ctx.providers[p].winograd_limits())
        else {
            continue;
        };
        let Some((mut new, u)) = convert_node(graph, &graph.nodes[i], limits) else {
            continue;
        };
        if !ctx.accepts(graph, &graph.nodes[i], &new) {
            continue;
        }
        let name = fresh_name(graph, &format!("{}_winograd", new.inputs[1]));
        graph.initializers.insert(name.clone(), Arc::new(u));
        new.inputs[1] = name;
        graph.nodes[i] = new;
        changed += 1;
    }
    changed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::tests::{constant, graph, node, run_pass_on, with};
    use super::*;
    use crate::ir::{Attribute, ValueType};

    /// Limits taking maps from 4 tiles and 16 channels, and from 36 tiles
    /// and 32 channels.
    const WIDE: WinogradLimits = WinogradLimits {
        tiles: 4,
        channels: 16,
    };
    const NARROW: WinogradLimits = WinogradLimits {
        tiles: 36,
        channels: 32,
    };

    /// Runs the pass with a provider of the narrow limits.
    fn run_pass(g: &mut Graph, pass: fn(&mut Graph, &mut OptimizeContext<'_>) -> usize) -> usize {
        run_pass_on(g, 17, false, Some(NARROW), pass)
    }

    /// Conv of `c -> k` channels on an `h x w` input with 3x3 weights.
    fn conv_graph(c: usize, k: usize, h: usize, w: usize, attrs: &[(&str, Attribute)]) -> Graph {
        let mut n = node("Conv", &["x", "w", "b"], &["y"]);
        for (name, a) in attrs {
            n = with(n, name, a.clone());
        }
        let mut g = graph(vec![n], &["y"]);
        constant(&mut g, "w", &[k, c, 3, 3], &vec![0.5; k * c * 9]);
        constant(&mut g, "b", &[k], &vec![0.0; k]);
        g.value_types
            .insert("x".into(), ValueType::tensor(DataType::F32, &[1, c, h, w]));
        g
    }

    #[test]
    fn converts_eligible_convolutions_with_transformed_filters() {
        let pads = ("pads", Attribute::Ints(vec![1; 4]));
        let mut g = conv_graph(32, 32, 24, 24, &[pads]);
        assert_eq!(run_pass(&mut g, convert), 1);
        let n = &g.nodes[0];
        assert_eq!(
            (n.op_type.as_str(), n.domain.as_str()),
            ("WinogradConv", "oxrt")
        );
        assert_eq!(n.get_ints("pads").unwrap(), Some(&[1i64, 1, 1, 1][..]));
        let u = &g.initializers[&n.inputs[1]];
        assert_eq!(u.shape(), [36, 32, 32]);
        assert_eq!(n.inputs[2], "b");
    }

    #[test]
    fn small_maps_and_few_channels_convert_only_within_the_providers_limits() {
        let pads = || ("pads", Attribute::Ints(vec![1; 4]));
        for (what, g) in [
            ("7x7 map (4 tiles)", conv_graph(32, 32, 7, 7, &[pads()])),
            ("16 -> 16 channels", conv_graph(16, 16, 24, 24, &[pads()])),
        ] {
            for (limits, want) in [(WIDE, "WinogradConv"), (NARROW, "Conv")] {
                let mut g = g.clone();
                let n = run_pass_on(&mut g, 17, false, Some(limits), convert);
                assert_eq!(n, usize::from(want == "WinogradConv"), "{what}");
                assert_eq!(g.nodes[0].op_type, want, "{what} {limits:?}");
            }
        }
    }

    #[test]
    fn providers_without_limits_keep_their_convolutions() {
        let mut g = conv_graph(64, 64, 56, 56, &[("pads", Attribute::Ints(vec![1; 4]))]);
        assert_eq!(run_pass_on(&mut g, 17, false, None, convert), 0);
        assert_eq!(g.nodes[0].op_type, "Conv");
    }

    #[test]
    fn leaves_convolutions_it_cannot_or_should_not_convert() {
        let cases: Vec<(&str, Graph)> = vec![
            (
                "stride 2",
                conv_graph(32, 32, 32, 32, &[("strides", Attribute::Ints(vec![2, 2]))]),
            ),
            (
                "dilated",
                conv_graph(
                    32,
                    32,
                    32,
                    32,
                    &[("dilations", Attribute::Ints(vec![2, 2]))],
                ),
            ),
            ("grouped", {
                let mut g = conv_graph(32, 32, 32, 32, &[("group", Attribute::Int(2))]);
                constant(&mut g, "w", &[32, 16, 3, 3], &[0.5; 32 * 16 * 9]);
                g
            }),
            (
                "small map (1 tile)",
                conv_graph(32, 32, 4, 4, &[("pads", Attribute::Ints(vec![1; 4]))]),
            ),
            ("few channels", conv_graph(8, 64, 64, 64, &[])),
            ("unknown size", {
                let mut g = conv_graph(32, 32, 64, 64, &[]);
                g.value_types.clear();
                g
            }),
        ];
        for (what, mut g) in cases {
            assert_eq!(run_pass(&mut g, convert), 0, "{what}");
            assert_eq!(g.nodes[0].op_type, "Conv", "{what}");
        }
    }

    #[test]
    fn the_filter_transform_maps_a_centre_tap_to_g_outer_g() {
        // A filter with only the centre tap 1: U = G[:,1] G[:,1]^T.
        let mut w = [0.0f32; 9];
        w[4] = 1.0;
        let u = winograd_filters(&w, 1, 1).unwrap();
        for a in 0..6 {
            for b in 0..6 {
                let want = G[a][1] * G[b][1];
                assert!((f64::from(u[a * 6 + b]) - want).abs() < 1e-7);
            }
        }
        assert!(winograd_filters(&w, 2, 1).is_none());
    }
}

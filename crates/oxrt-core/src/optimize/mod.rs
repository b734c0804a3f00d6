//! Graph optimization passes, run at session creation by level (as in ONNX
//! Runtime).
//!
//! - `Basic`: constant folding (through the session's host providers),
//!   shape folding once shapes are known, no-op elimination (Identity,
//!   inference Dropout, Cast to the same type, Reshape/Expand to the same
//!   shape, identity Transposes and Transpose pairs), common-subexpression
//!   elimination and dead-code elimination.
//! - `Extended`: fusions — Conv+BatchNormalization into the weights, a
//!   per-channel Add after Conv into its bias, GELU
//!   and LayerNormalization from their decomposed forms, Add +
//!   LayerNormalization into SkipLayerNormalization, scaled dot-product
//!   attention into Attention, MatMul+Add into Gemm
//!   or a biased MatMul, Transposes into MatMul/Gemm, and a trailing
//!   activation into Conv/Gemm/MatMul. Fused ops without a standard ONNX
//!   form live in the `oxrt` domain ([`OXRT_DOMAIN`]); a fusion is applied
//!   only when the provider that would run the original node runs the fused
//!   one too.
//! - `All`: Extended, then weight layouts chosen for the CPU provider at
//!   session creation: 3x3 stride-1 convolutions on large enough maps
//!   become `WinogradConv` with their filters pre-transformed (see
//!   `winograd.rs`).
//!
//! Initializers no node reads any more (weights a fusion replaced) are
//! dropped.
//!
//! - fp16 mode (any level, [`OptimizeContext::fp16`]): eligible nodes run
//!   in float16, sensitive ones stay float32 (see `fp16.rs`).
//!
//! Each pass reports how many nodes it changed.

mod constant_fold;
mod cse;
mod dead_code;
mod fp16;
mod fuse_activation;
mod fuse_attention;
mod fuse_conv_bn;
mod fuse_conv_sum;
mod fuse_gelu;
mod fuse_layer_norm;
mod fuse_matmul;
mod no_op;
mod winograd;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::ir::{Attribute, Graph, Node};
use crate::partition::node_context;
use crate::provider::ExecutionProvider;
use crate::session::OptimizationLevel;
use crate::tensor::Tensor;

pub use constant_fold::fold_constants;
pub use cse::eliminate_common_subexpressions;
pub use dead_code::remove_dead_nodes;
pub use no_op::remove_no_ops;
pub use winograd::winograd_filters;

/// Operators whose output may differ between runs on the same inputs:
/// never folded or merged.
pub(crate) const NON_DETERMINISTIC: &[&str] = &[
    "RandomUniform",
    "RandomNormal",
    "RandomUniformLike",
    "RandomNormalLike",
    "Bernoulli",
    "Multinomial",
    "Dropout",
];

/// The domain of oxrt's fused operators (`FusedConv`, `FusedGemm`,
/// `FusedMatMul`, `SkipLayerNormalization`, `Gelu`/`LayerNormalization`
/// for models whose opset predates them, and `WinogradConv` at level `all`).
pub const OXRT_DOMAIN: &str = "oxrt";

/// What the passes changed: `(pass name, nodes changed)` in run order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OptimizationReport {
    pub passes: Vec<(&'static str, usize)>,
}

impl OptimizationReport {
    /// Total number of nodes the passes changed.
    pub fn total(&self) -> usize {
        self.passes.iter().map(|(_, n)| n).sum()
    }

    fn add(&mut self, pass: &'static str, n: usize) {
        match self.passes.iter_mut().find(|(p, _)| *p == pass) {
            Some((_, total)) => *total += n,
            None => self.passes.push((pass, n)),
        }
    }
}

impl std::fmt::Display for OptimizationReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (pass, n) in &self.passes {
            writeln!(f, "  {pass:<34} {n:>6}")?;
        }
        write!(f, "  {:<34} {:>6}", "total", self.total())
    }
}

/// What passes may consult: the model's opsets (fusions add the `oxrt`
/// domain) and the session's providers (constant folding runs kernels;
/// fusions check the fused op is supported).
pub struct OptimizeContext<'a> {
    pub opsets: &'a mut BTreeMap<String, i64>,
    pub providers: &'a [Arc<dyn ExecutionProvider>],
    /// Largest folded constant, in bytes.
    pub memory_limit: u64,
    /// Run eligible nodes in float16 (mixed precision).
    pub fp16: bool,
}

impl OptimizeContext<'_> {
    /// The provider that would run `node` (the first that supports it).
    fn provider_for(&self, graph: &Graph, node: &Node) -> Option<usize> {
        let ctx = node_context(graph, node, self.opsets);
        self.providers
            .iter()
            .position(|p| p.supports(node, &ctx).is_ok())
    }

    /// Whether `fused` may replace `original`: the provider that would run
    /// the original runs the fused node too. Imports the `oxrt` domain when
    /// the fused node is in it.
    fn accepts(&mut self, graph: &Graph, original: &Node, fused: &Node) -> bool {
        let Some(p) = self.provider_for(graph, original) else {
            return false;
        };
        let added = fused.domain == OXRT_DOMAIN && !self.opsets.contains_key(OXRT_DOMAIN);
        if added {
            self.opsets.insert(OXRT_DOMAIN.into(), 1);
        }
        let ctx = node_context(graph, fused, self.opsets);
        let ok = self.providers[p].supports(fused, &ctx).is_ok();
        if added && !ok {
            self.opsets.remove(OXRT_DOMAIN);
        }
        ok
    }
}

/// Runs the passes of `level` on `graph` (types inferred beforehand make
/// more passes apply).
pub fn optimize(
    graph: &mut Graph,
    level: OptimizationLevel,
    ctx: &mut OptimizeContext<'_>,
) -> OptimizationReport {
    let mut report = OptimizationReport::default();
    if level == OptimizationLevel::Disabled {
        if ctx.fp16 {
            report.add("fp16 conversion", fp16::convert(graph, ctx));
            prune_value_types(graph);
        }
        return report;
    }
    // Folding exposes no-ops and duplicates, which expose more folding.
    for _ in 0..4 {
        let before = report.total();
        let (folded, shapes) = fold_constants(graph, ctx);
        report.add("constant folding", folded);
        report.add("shape folding", shapes);
        report.add("no-op elimination", remove_no_ops(graph));
        report.add(
            "common-subexpression elimination",
            eliminate_common_subexpressions(graph),
        );
        report.add("dead-code elimination", remove_dead_nodes(graph));
        if report.total() == before {
            break;
        }
    }
    if level != OptimizationLevel::Basic {
        report.add(
            "Conv+BatchNormalization fusion",
            fuse_conv_bn::fuse(graph, ctx),
        );
        report.add("Conv+Add bias fusion", fuse_conv_bn::fuse_bias(graph, ctx));
        report.add("GELU fusion", fuse_gelu::fuse(graph, ctx));
        report.add(
            "LayerNormalization fusion",
            fuse_layer_norm::fuse(graph, ctx),
        );
        report.add(
            "SkipLayerNormalization fusion",
            fuse_layer_norm::fuse_skip(graph, ctx),
        );
        report.add("attention fusion", fuse_attention::fuse(graph, ctx));
        report.add(
            "Transpose into MatMul/Gemm",
            fuse_matmul::fold_transposes(graph, ctx),
        );
        report.add("MatMul+Add fusion", fuse_matmul::fuse_bias(graph, ctx));
        report.add("Conv+residual Add fusion", fuse_conv_sum::fuse(graph, ctx));
        report.add("activation fusion", fuse_activation::fuse(graph, ctx));
        report.add("dead-code elimination", remove_dead_nodes(graph));
    }
    if level == OptimizationLevel::All {
        report.add("Winograd 3x3 convolution", winograd::convert(graph, ctx));
    }
    if ctx.fp16 {
        report.add("fp16 conversion", fp16::convert(graph, ctx));
    }
    prune_initializers(graph);
    prune_value_types(graph);
    report
}

/// Every name `graph` reads: node inputs and, recursively, the outer-scope
/// reads of subgraphs, plus the graph outputs.
fn used_names(graph: &Graph) -> HashSet<String> {
    let mut used: HashSet<String> = graph.outputs.iter().map(|o| o.name.clone()).collect();
    for n in &graph.nodes {
        used.extend(n.inputs.iter().filter(|i| !i.is_empty()).cloned());
        used.extend(n.subgraphs().flat_map(crate::plan::outer_reads));
    }
    used
}

/// Drops initializers nothing reads (and no run can feed).
fn prune_initializers(graph: &mut Graph) {
    let used = used_names(graph);
    let fed: HashSet<&str> = graph
        .overridable_initializers
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    graph
        .initializers
        .retain(|name, _| used.contains(name) || fed.contains(name.as_str()));
}

/// Drops inferred types of values the graph no longer has.
fn prune_value_types(graph: &mut Graph) {
    let mut live: HashSet<String> = graph
        .inputs
        .iter()
        .chain(&graph.overridable_initializers)
        .chain(&graph.outputs)
        .map(|v| v.name.clone())
        .collect();
    live.extend(graph.initializers.keys().cloned());
    for n in &graph.nodes {
        live.extend(n.outputs.iter().cloned());
    }
    graph.value_types.retain(|k, _| live.contains(k));
}

/// Replaces every read of `from` by `to` in `graph` and its subgraphs.
pub(crate) fn rename_reads(graph: &mut Graph, from: &str, to: &str) {
    for n in &mut graph.nodes {
        for i in n.inputs.iter_mut().filter(|i| *i == from) {
            *i = to.to_string();
        }
        for a in n.attributes.values_mut() {
            let subgraphs: Vec<&mut Arc<Graph>> = match a {
                Attribute::Graph(g) => vec![g],
                Attribute::Graphs(gs) => gs.iter_mut().collect(),
                _ => Vec::new(),
            };
            for g in subgraphs {
                // Only when the subgraph reads the name from outside.
                if !crate::plan::outer_reads(g).iter().any(|r| r == from) {
                    continue;
                }
                let g = Arc::make_mut(g);
                rename_reads(g, from, to);
                // A subgraph may return an outer value directly.
                for o in g.outputs.iter_mut().filter(|o| o.name == from) {
                    o.name = to.to_string();
                }
            }
        }
    }
}

/// Who produces and who reads each value of a graph, for pattern matching.
pub(crate) struct GraphIndex {
    producer: HashMap<String, usize>,
    readers: HashMap<String, Vec<usize>>,
    outputs: HashSet<String>,
}

impl GraphIndex {
    pub(crate) fn new(graph: &Graph) -> Self {
        let mut producer = HashMap::new();
        let mut readers: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, n) in graph.nodes.iter().enumerate() {
            for o in n.outputs.iter().filter(|o| !o.is_empty()) {
                producer.insert(o.clone(), i);
            }
            let implicit = crate::plan::implicit_inputs(n);
            for name in n.inputs.iter().filter(|x| !x.is_empty()).chain(&implicit) {
                let r = readers.entry(name.clone()).or_default();
                if !r.contains(&i) {
                    r.push(i);
                }
            }
        }
        let outputs = graph.outputs.iter().map(|o| o.name.clone()).collect();
        Self {
            producer,
            readers,
            outputs,
        }
    }

    /// The node producing `name`.
    pub(crate) fn producer(&self, name: &str) -> Option<usize> {
        self.producer.get(name).copied()
    }

    /// The nodes reading `name`.
    pub(crate) fn readers(&self, name: &str) -> &[usize] {
        self.readers.get(name).map_or(&[], Vec::as_slice)
    }

    /// The one node reading `name`, when `name` is not also a graph output
    /// (so the value may disappear into a fusion).
    pub(crate) fn only_reader(&self, name: &str) -> Option<usize> {
        match self.readers(name) {
            [r] if !self.outputs.contains(name) => Some(*r),
            _ => None,
        }
    }

    /// Whether `name` is a graph output.
    pub(crate) fn is_output(&self, name: &str) -> bool {
        self.outputs.contains(name)
    }
}

/// A standard-domain node called `op` (any opset).
pub(crate) fn is_op(node: &Node, op: &str) -> bool {
    node.domain.is_empty() && node.op_type == op
}

/// The initializer called `name`, unless it is overridable (listed among
/// the graph inputs too, so a run may feed another value).
pub(crate) fn constant<'g>(graph: &'g Graph, name: &str) -> Option<&'g Arc<Tensor>> {
    if graph
        .overridable_initializers
        .iter()
        .any(|v| v.name == name)
    {
        return None;
    }
    graph.initializers.get(name)
}

/// A constant scalar (or one-element tensor) as f64.
pub(crate) fn constant_scalar(graph: &Graph, name: &str) -> Option<f64> {
    let t = constant(graph, name)?;
    if t.len() != 1 {
        return None;
    }
    t.to_f64_vec()?.first().copied()
}

/// `values` as a float tensor of `dtype` and `shape` (`None` for
/// non-float types).
pub(crate) fn float_tensor(
    dtype: crate::DataType,
    shape: &[usize],
    values: Vec<f64>,
) -> Option<Tensor> {
    use crate::DataType as D;
    match dtype {
        D::F32 => Tensor::from_vec(shape, values.into_iter().map(|v| v as f32).collect()),
        D::F64 => Tensor::from_vec(shape, values),
        D::F16 => Tensor::from_vec(shape, values.into_iter().map(half::f16::from_f64).collect()),
        D::BF16 => Tensor::from_vec(
            shape,
            values.into_iter().map(half::bf16::from_f64).collect(),
        ),
        _ => return None,
    }
    .ok()
}

/// A fresh value or node name starting with `base` that `graph` does not use.
pub(crate) fn fresh_name(graph: &Graph, base: &str) -> String {
    let taken = |s: &str| {
        graph.initializers.contains_key(s)
            || graph.value_types.contains_key(s)
            || graph
                .nodes
                .iter()
                .any(|n| n.name == s || n.outputs.iter().any(|o| o == s))
    };
    if !taken(base) {
        return base.to_string();
    }
    (1..)
        .map(|i| format!("{base}_{i}"))
        .find(|s| !taken(s))
        .unwrap_or_else(|| base.to_string())
}

/// Removes the nodes at `indices` (any order, duplicates allowed).
pub(crate) fn remove_nodes(graph: &mut Graph, indices: &HashSet<usize>) {
    let mut i = 0;
    graph.nodes.retain(|_| {
        let keep = !indices.contains(&i);
        i += 1;
        keep
    });
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::OptimizeContext;
    use crate::ir::{Attribute, Graph, Node, ValueInfo, ValueType};
    use crate::provider::{DeviceInfo, DeviceKind, ExecutionProvider, Kernel, KernelInfo};

    /// A provider that takes every node (passes ask before fusing), with
    /// the given Winograd limits.
    struct AcceptAll(Option<crate::WinogradLimits>);

    impl ExecutionProvider for AcceptAll {
        fn name(&self) -> &str {
            "accept-all"
        }
        fn device(&self) -> DeviceInfo {
            DeviceInfo {
                kind: DeviceKind::Cpu,
                id: 0,
                description: "test".into(),
            }
        }
        fn supports(&self, _: &Node, _: &crate::NodeContext<'_>) -> Result<(), String> {
            Ok(())
        }
        fn create_kernel(&self, _: &Node, _: &KernelInfo<'_>) -> crate::Result<Box<dyn Kernel>> {
            Err(crate::Error::NotSupported("test provider".into()))
        }
        fn winograd_limits(&self) -> Option<crate::WinogradLimits> {
            self.0
        }
    }

    /// Runs `pass` with a provider that accepts everything, at ONNX opset
    /// `opset`.
    pub fn run_pass_at(
        g: &mut Graph,
        opset: i64,
        fp16: bool,
        pass: impl FnOnce(&mut Graph, &mut OptimizeContext<'_>) -> usize,
    ) -> usize {
        run_pass_on(g, opset, fp16, None, pass)
    }

    /// [`run_pass_at`] with a provider whose Winograd limits are `winograd`.
    pub fn run_pass_on(
        g: &mut Graph,
        opset: i64,
        fp16: bool,
        winograd: Option<crate::WinogradLimits>,
        pass: impl FnOnce(&mut Graph, &mut OptimizeContext<'_>) -> usize,
    ) -> usize {
        let mut opsets = BTreeMap::from([(String::new(), opset)]);
        let providers: Vec<Arc<dyn ExecutionProvider>> = vec![Arc::new(AcceptAll(winograd))];
        let mut ctx = OptimizeContext {
            opsets: &mut opsets,
            providers: &providers,
            memory_limit: u64::MAX,
            fp16,
        };
        pass(g, &mut ctx)
    }

    /// [`run_pass_at`] at opset 17.
    pub fn run_pass(
        g: &mut Graph,
        pass: impl FnOnce(&mut Graph, &mut OptimizeContext<'_>) -> usize,
    ) -> usize {
        run_pass_at(g, 17, false, pass)
    }

    /// Adds an f32 constant.
    pub fn constant(g: &mut Graph, name: &str, shape: &[usize], v: &[f32]) {
        g.initializers.insert(
            name.into(),
            Arc::new(crate::Tensor::from_vec(shape.to_vec(), v.to_vec()).unwrap()),
        );
    }

    /// The nodes nobody reads (what dead-code elimination removes).
    pub fn dead(g: &Graph) -> std::collections::HashSet<usize> {
        let used = super::used_names(g);
        (0..g.nodes.len())
            .filter(|&i| !g.nodes[i].outputs.iter().any(|o| used.contains(o)))
            .collect()
    }

    /// Declares `names` as f32 tensors of `shape`.
    pub fn typed(g: &mut Graph, names: &[&str], shape: &[usize]) {
        for n in names {
            g.value_types.insert(
                n.to_string(),
                ValueType::tensor(crate::DataType::F32, shape),
            );
        }
    }

    pub fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> Node {
        Node {
            name: format!("{op}_{}", outputs[0]),
            op_type: op.into(),
            domain: String::new(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            attributes: BTreeMap::new(),
        }
    }

    pub fn with(mut n: Node, name: &str, a: Attribute) -> Node {
        n.attributes.insert(name.into(), a);
        n
    }

    pub fn graph(nodes: Vec<Node>, outputs: &[&str]) -> Graph {
        Graph {
            name: "g".into(),
            doc_string: String::new(),
            nodes,
            inputs: vec![ValueInfo {
                name: "x".into(),
                ty: ValueType::Unknown,
            }],
            outputs: outputs
                .iter()
                .map(|o| ValueInfo {
                    name: o.to_string(),
                    ty: ValueType::Unknown,
                })
                .collect(),
            ..Default::default()
        }
    }
}

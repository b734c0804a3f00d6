//! Graph optimization passes, run at session creation by level.
//!
//! `Basic` removes no-op nodes (Identity, inference Dropout without a mask
//! output) and dead nodes. Each pass reports how many nodes it changed.

mod dead_code;
mod no_op;

use crate::ir::Graph;
use crate::session::OptimizationLevel;

pub use dead_code::remove_dead_nodes;
pub use no_op::remove_no_ops;

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
}

/// Runs the passes of `level` on `graph`.
pub fn optimize(graph: &mut Graph, level: OptimizationLevel) -> OptimizationReport {
    let mut report = OptimizationReport::default();
    if level == OptimizationLevel::Disabled {
        return report;
    }
    report
        .passes
        .push(("no-op elimination", remove_no_ops(graph)));
    report
        .passes
        .push(("dead-code elimination", remove_dead_nodes(graph)));
    report
}

/// Every name `graph` reads: node inputs and, recursively, the outer-scope
/// reads of subgraphs, plus the graph outputs.
fn used_names(graph: &Graph) -> std::collections::HashSet<String> {
    let mut used: std::collections::HashSet<String> =
        graph.outputs.iter().map(|o| o.name.clone()).collect();
    for n in &graph.nodes {
        used.extend(n.inputs.iter().filter(|i| !i.is_empty()).cloned());
        used.extend(n.subgraphs().flat_map(crate::plan::outer_reads));
    }
    used
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use crate::ir::{Graph, Node, ValueInfo, ValueType};

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

    pub fn graph(nodes: Vec<Node>, outputs: &[&str]) -> Graph {
        Graph {
            name: "g".into(),
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

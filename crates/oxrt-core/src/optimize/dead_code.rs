//! Dead-code elimination: nodes none of whose outputs is read (by a node,
//! a subgraph or the graph outputs) are removed, until none is left.

use super::used_names;
use crate::ir::Graph;

/// Removes dead nodes; returns how many.
pub fn remove_dead_nodes(graph: &mut Graph) -> usize {
    let mut removed = 0;
    loop {
        let used = used_names(graph);
        let before = graph.nodes.len();
        graph
            .nodes
            .retain(|n| n.outputs.iter().any(|o| !o.is_empty() && used.contains(o)));
        let gone = before - graph.nodes.len();
        if gone == 0 {
            return removed;
        }
        removed += gone;
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{graph, node};
    use super::*;

    #[test]
    fn removes_chains_nobody_reads() {
        let mut g = graph(
            vec![
                node("Relu", &["x"], &["a"]),
                node("Neg", &["a"], &["dead1"]),
                node("Abs", &["dead1"], &["dead2"]),
                node("Exp", &["a"], &["y"]),
            ],
            &["y"],
        );
        assert_eq!(remove_dead_nodes(&mut g), 2);
        let ops: Vec<&str> = g.nodes.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["Relu", "Exp"]);
        assert_eq!(remove_dead_nodes(&mut g), 0);
    }
}

//! No-op elimination: an Identity node is removed and its readers read its
//! input instead (in subgraphs too). Identities that produce a graph output
//! stay, as the output's name must be produced.

use std::collections::HashSet;

use crate::ir::{Attribute, Graph};

/// Replaces every read of `from` by `to` in `graph` and its subgraphs.
fn rename_reads(graph: &mut Graph, from: &str, to: &str) {
    for n in &mut graph.nodes {
        for i in n.inputs.iter_mut().filter(|i| *i == from) {
            *i = to.to_string();
        }
        for a in n.attributes.values_mut() {
            let subgraphs: Vec<&mut std::sync::Arc<Graph>> = match a {
                Attribute::Graph(g) => vec![g],
                Attribute::Graphs(gs) => gs.iter_mut().collect(),
                _ => Vec::new(),
            };
            for g in subgraphs {
                let g = std::sync::Arc::make_mut(g);
                rename_reads(g, from, to);
                // A subgraph may return an outer value directly.
                for o in g.outputs.iter_mut().filter(|o| o.name == from) {
                    o.name = to.to_string();
                }
            }
        }
    }
}

/// Removes Identity nodes; returns how many.
pub fn remove_no_ops(graph: &mut Graph) -> usize {
    let outputs: HashSet<String> = graph.outputs.iter().map(|o| o.name.clone()).collect();
    let mut removed = 0;
    let mut i = 0;
    while i < graph.nodes.len() {
        let n = &graph.nodes[i];
        let removable = n.op_type == "Identity"
            && n.domain.is_empty()
            && n.inputs.len() == 1
            && n.outputs.len() == 1
            && !n.inputs[0].is_empty()
            && !outputs.contains(&n.outputs[0]);
        if removable {
            let (from, to) = (n.outputs[0].clone(), n.inputs[0].clone());
            graph.nodes.remove(i);
            rename_reads(graph, &from, &to);
            removed += 1;
        } else {
            i += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::super::tests::{graph, node};
    use super::*;

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
}

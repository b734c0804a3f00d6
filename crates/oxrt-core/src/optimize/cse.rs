//! Common-subexpression elimination: nodes with the same operator,
//! attributes and inputs compute the same values, so all but the first are
//! removed and their readers read the first one's outputs. Random
//! operators and nodes with subgraphs are never merged; nodes producing a
//! graph output stay.

use std::collections::{HashMap, HashSet};

use super::NON_DETERMINISTIC;
use super::{remove_nodes, rename_reads};
use crate::ir::{Attribute, Graph, Node};

/// A key equal for nodes computing the same thing, or `None` when the node
/// must not be merged.
fn key(node: &Node) -> Option<String> {
    if NON_DETERMINISTIC.contains(&node.op_type.as_str())
        || node.inputs.iter().all(String::is_empty)
    {
        return None;
    }
    let mut attrs = String::new();
    for (name, a) in &node.attributes {
        match a {
            Attribute::Graph(_) | Attribute::Graphs(_) => return None,
            // Tensor attributes are compared by identity, not by value.
            Attribute::Tensor(t) => attrs.push_str(&format!("{name}=<{:p}>;", t.as_ref())),
            Attribute::Tensors(_) => return None,
            other => attrs.push_str(&format!("{name}={other:?};")),
        }
    }
    Some(format!(
        "{}\u{1}{}\u{1}{}\u{1}{attrs}",
        node.domain,
        node.op_type,
        node.inputs.join("\u{2}")
    ))
}

/// Merges duplicate nodes; returns how many were removed.
pub fn eliminate_common_subexpressions(graph: &mut Graph) -> usize {
    let Ok(order) = crate::plan::topological_order(graph) else {
        return 0;
    };
    let outputs: HashSet<String> = graph.outputs.iter().map(|o| o.name.clone()).collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut renames: HashMap<String, String> = HashMap::new();
    let mut removed = HashSet::new();
    for ni in order {
        // Earlier merges renamed this node's inputs.
        for i in graph.nodes[ni].inputs.iter_mut() {
            if let Some(to) = renames.get(i.as_str()) {
                *i = to.clone();
            }
        }
        let node = &graph.nodes[ni];
        let Some(k) = key(node) else { continue };
        match seen.get(&k) {
            Some(&first)
                if graph.nodes[first].outputs.len() == node.outputs.len()
                    && !node.outputs.iter().any(|o| outputs.contains(o)) =>
            {
                for (from, to) in node.outputs.iter().zip(&graph.nodes[first].outputs) {
                    if !from.is_empty() && !to.is_empty() {
                        renames.insert(from.clone(), to.clone());
                    }
                }
                if node
                    .outputs
                    .iter()
                    .zip(&graph.nodes[first].outputs)
                    .all(|(f, t)| f.is_empty() || !t.is_empty())
                {
                    removed.insert(ni);
                }
            }
            Some(_) => {}
            None => {
                seen.insert(k, ni);
            }
        }
    }
    let count = removed.len();
    remove_nodes(graph, &removed);
    for (from, to) in &renames {
        rename_reads(graph, from, to);
    }
    count
}

#[cfg(test)]
mod tests {
    use super::super::tests::{graph, node, with};
    use super::*;

    #[test]
    fn duplicates_merge_transitively() {
        let mut g = graph(
            vec![
                node("Relu", &["x"], &["a"]),
                node("Relu", &["x"], &["b"]),
                node("Exp", &["a"], &["c"]),
                node("Exp", &["b"], &["d"]),
                with(
                    node("LeakyRelu", &["x"], &["e"]),
                    "alpha",
                    Attribute::Float(0.1),
                ),
                with(
                    node("LeakyRelu", &["x"], &["f"]),
                    "alpha",
                    Attribute::Float(0.2),
                ),
                node("Sum", &["c", "d", "e", "f"], &["y"]),
            ],
            &["y"],
        );
        assert_eq!(eliminate_common_subexpressions(&mut g), 2);
        let sum = g
            .nodes
            .iter()
            .find(|n| n.op_type == "Sum")
            .unwrap_or_else(|| panic!());
        assert_eq!(sum.inputs, ["c", "c", "e", "f"]);
    }

    #[test]
    fn random_ops_are_never_merged() {
        let mut g = graph(
            vec![
                node("RandomUniformLike", &["x"], &["a"]),
                node("RandomUniformLike", &["x"], &["b"]),
                node("Add", &["a", "b"], &["y"]),
            ],
            &["y"],
        );
        assert_eq!(eliminate_common_subexpressions(&mut g), 0);
    }
}

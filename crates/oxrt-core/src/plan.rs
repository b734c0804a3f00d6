//! The execution plan: kernels in topological order, values in numbered
//! slots, and the step after which each intermediate value is released.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::ir::Graph;
use crate::partition::node_context;
use crate::provider::{ExecutionProvider, Kernel, KernelInfo};
use crate::tensor::Tensor;

/// One node ready to run.
pub struct Step {
    /// Index of the node in the graph.
    pub node: usize,
    /// Index of the provider running it.
    pub provider: usize,
    pub kernel: Box<dyn Kernel>,
    /// Slot of each input (`None` for an omitted optional input).
    pub inputs: Vec<Option<usize>>,
    /// Slot of each output (`None` for an unused optional output).
    pub outputs: Vec<Option<usize>>,
    /// Slots whose last reader is this step: released right after it.
    pub release: Vec<usize>,
}

/// A graph compiled for execution.
pub struct ExecutionPlan {
    pub steps: Vec<Step>,
    /// Number of value slots.
    pub slot_count: usize,
    /// Slot of every named value.
    pub slots: HashMap<String, usize>,
    /// Initializers and their slots.
    pub constants: Vec<(usize, Arc<Tensor>)>,
}

/// Orders nodes so every value is produced before it is read (Kahn's
/// algorithm, keeping the model's order among ready nodes).
pub fn topological_order(graph: &Graph) -> Result<Vec<usize>> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in graph.nodes.iter().enumerate() {
        for o in n.outputs.iter().filter(|o| !o.is_empty()) {
            producer.insert(o, i);
        }
    }
    let n = graph.nodes.len();
    let mut indegree = vec![0usize; n];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, node) in graph.nodes.iter().enumerate() {
        // Values read by subgraphs from the outer scope are dependencies too.
        let implicit = node.subgraphs().flat_map(outer_reads);
        for input in node.inputs.iter().cloned().chain(implicit) {
            if let Some(&p) = producer.get(input.as_str()) {
                if p != i {
                    indegree[i] += 1;
                    users[p].push(i);
                }
            }
        }
    }
    let mut ready: std::collections::BTreeSet<usize> =
        (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &u in &users[i] {
            indegree[u] -= 1;
            if indegree[u] == 0 {
                ready.insert(u);
            }
        }
    }
    if order.len() != n {
        let stuck: Vec<String> = (0..n)
            .filter(|&i| indegree[i] > 0)
            .take(5)
            .map(|i| format!("'{}' ({})", graph.nodes[i].name, graph.nodes[i].op_type))
            .collect();
        return Err(Error::InvalidModel {
            location: format!("graph '{}'", graph.name),
            message: format!("the graph has a cycle through nodes {}", stuck.join(", ")),
        });
    }
    Ok(order)
}

/// Names a subgraph reads that it does not define itself.
fn outer_reads(g: &Graph) -> Vec<String> {
    let mut defined: std::collections::HashSet<&str> =
        g.inputs.iter().map(|v| v.name.as_str()).collect();
    defined.extend(g.initializers.keys().map(String::as_str));
    for n in &g.nodes {
        defined.extend(n.outputs.iter().map(String::as_str));
    }
    let mut reads = Vec::new();
    for n in &g.nodes {
        for i in n.inputs.iter().filter(|i| !i.is_empty()) {
            if !defined.contains(i.as_str()) {
                reads.push(i.clone());
            }
        }
        for sub in n.subgraphs() {
            reads.extend(
                outer_reads(sub)
                    .into_iter()
                    .filter(|r| !defined.contains(r.as_str())),
            );
        }
    }
    reads
}

impl ExecutionPlan {
    /// Creates every kernel and lays out slots and lifetimes.
    pub fn build(
        graph: &Graph,
        opsets: &BTreeMap<String, i64>,
        providers: &[Arc<dyn ExecutionProvider>],
        assignment: &[usize],
    ) -> Result<Self> {
        let order = topological_order(graph)?;
        let mut slots: HashMap<String, usize> = HashMap::new();
        let mut slot_of = |name: &str| -> usize {
            let next = slots.len();
            *slots.entry(name.to_string()).or_insert(next)
        };
        for v in &graph.inputs {
            slot_of(&v.name);
        }
        let mut constants = Vec::new();
        let mut init_names: Vec<&String> = graph.initializers.keys().collect();
        init_names.sort();
        for name in init_names {
            let s = slot_of(name);
            constants.push((s, graph.initializers[name].clone()));
        }
        let mut steps = Vec::with_capacity(order.len());
        for &ni in &order {
            let node = &graph.nodes[ni];
            let provider = &providers[assignment[ni]];
            let ctx = node_context(graph, node, opsets);
            let constants = node
                .inputs
                .iter()
                .enumerate()
                .filter_map(|(i, name)| graph.initializers.get(name).map(|t| (i, t.as_ref())))
                .collect();
            let info = KernelInfo {
                node: ctx,
                constants,
            };
            let kernel = provider
                .create_kernel(node, &info)
                .map_err(|e| e.in_node(&node.name, &node.op_type))?;
            let inputs = node
                .inputs
                .iter()
                .map(|n| (!n.is_empty()).then(|| slot_of(n)))
                .collect();
            let outputs = node
                .outputs
                .iter()
                .map(|n| (!n.is_empty()).then(|| slot_of(n)))
                .collect();
            steps.push(Step {
                node: ni,
                provider: assignment[ni],
                kernel,
                inputs,
                outputs,
                release: Vec::new(),
            });
        }
        for o in &graph.outputs {
            slot_of(&o.name);
        }
        let slot_count = slots.len();
        // Lifetimes: release a slot after its last reader, unless it is a
        // graph output or a constant (constants are shared, never owned).
        let mut keep = vec![false; slot_count];
        for o in &graph.outputs {
            keep[slots[&o.name]] = true;
        }
        for (s, _) in &constants {
            keep[*s] = true;
        }
        let mut last_use: Vec<Option<usize>> = vec![None; slot_count];
        for (si, step) in steps.iter().enumerate() {
            for s in step.inputs.iter().flatten() {
                last_use[*s] = Some(si);
            }
        }
        // Values nobody reads are released by the step that produced them.
        for (si, step) in steps.iter().enumerate() {
            for s in step.outputs.iter().flatten() {
                if last_use[*s].is_none() {
                    last_use[*s] = Some(si);
                }
            }
        }
        for (slot, last) in last_use.iter().enumerate() {
            if let (Some(si), false) = (last, keep[slot]) {
                steps[*si].release.push(slot);
            }
        }
        Ok(Self {
            steps,
            slot_count,
            slots,
            constants,
        })
    }
}

//! The execution plan: kernels in topological order, values in numbered
//! slots, and the step after which each intermediate value is released.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::ir::Graph;
use crate::partition::node_context;
use crate::provider::{ExecutionProvider, Kernel, KernelInfo};
use crate::subgraph::SubgraphScope;
use crate::tensor::Tensor;

/// What a step does.
pub enum StepKind {
    /// Runs a node's kernel.
    Node {
        /// Index of the node in the graph.
        node: usize,
        /// Index of the provider running it.
        provider: usize,
        kernel: Box<dyn Kernel>,
        /// The kernel reads and writes the provider's device memory.
        on_device: bool,
        /// Outer-scope values the node's subgraphs read, passed to the
        /// kernel after the node's own inputs.
        implicit: Vec<String>,
    },
    /// Copies a host value to a provider's device.
    Upload { provider: usize, value: String },
    /// Copies a value from a provider's device to the host.
    Download { provider: usize, value: String },
}

/// One step of the plan: a kernel to run or a copy between memories.
pub struct Step {
    pub kind: StepKind,
    /// Slot of each input (`None` for an omitted optional input, or a
    /// constant a device kernel already holds).
    pub inputs: Vec<Option<usize>>,
    /// Slot of each output (`None` for an unused optional output).
    pub outputs: Vec<Option<usize>>,
    /// Slots whose last reader is this step: released right after it.
    pub release: Vec<usize>,
    /// The distinct slots among `inputs`, sorted.
    pub distinct_inputs: Vec<usize>,
    /// The input whose buffer the kernel may overwrite with its output:
    /// set when the kernel offers one ([`Kernel::in_place_input`]), this
    /// step is the value's last reader in plan order and the value is not
    /// kept.
    pub in_place: Option<usize>,
    /// Whether earlier steps read the [`Step::in_place`] value too: the
    /// sequential executor has run them by then, the parallel one may not
    /// have, so only the sequential one takes the value.
    pub in_place_shared: bool,
}

/// A graph compiled for execution.
pub struct ExecutionPlan {
    pub steps: Vec<Step>,
    /// Number of value slots.
    pub slot_count: usize,
    /// Host slot of every named value (inputs, constants, values produced on
    /// or copied to the host).
    pub slots: HashMap<String, usize>,
    /// Initializers and their slots.
    pub constants: Vec<(usize, Arc<Tensor>)>,
    /// The value each slot holds, and where (`None`: host memory; else the
    /// device of that provider).
    pub slot_values: Vec<(String, Option<usize>)>,
    /// How many steps read each slot.
    pub readers: Vec<usize>,
    /// Slots never released: graph outputs and constants.
    pub kept: Vec<bool>,
    /// The steps that read what each step makes.
    pub dependents: Vec<Vec<usize>>,
    /// How many distinct steps each step reads from.
    pub dependencies: Vec<usize>,
}

/// Where a value lives: host memory or the device of provider `p`.
type Loc = Option<usize>;

/// Value slots per (name, location), and where each value is first made.
#[derive(Default)]
struct Slots {
    by_loc: HashMap<(String, Loc), usize>,
    home: HashMap<String, Loc>,
    count: usize,
}

impl Slots {
    fn get_or_add(&mut self, name: &str, loc: Loc) -> usize {
        let next = self.count;
        let s = *self.by_loc.entry((name.to_string(), loc)).or_insert(next);
        if s == next {
            self.count += 1;
        }
        s
    }

    /// Declares `name` as made at `loc` and returns its slot there.
    fn define(&mut self, name: &str, loc: Loc) -> usize {
        self.home.entry(name.to_string()).or_insert(loc);
        self.get_or_add(name, loc)
    }

    /// The slot holding `name` at `loc`, adding copy steps to `steps` when it
    /// lives elsewhere (device → host → other device).
    fn fetch(&mut self, name: &str, loc: Loc, steps: &mut Vec<Step>) -> usize {
        if let Some(&s) = self.by_loc.get(&(name.to_string(), loc)) {
            return s;
        }
        let home = self.home.get(name).copied().flatten();
        if let Some(p) = home {
            // Made on a device: bring it to the host first (once).
            if !self.by_loc.contains_key(&(name.to_string(), None)) {
                let src = self.get_or_add(name, Some(p));
                let dst = self.get_or_add(name, None);
                steps.push(copy_step(
                    StepKind::Download {
                        provider: p,
                        value: name.to_string(),
                    },
                    src,
                    dst,
                ));
            }
        }
        let host = self.get_or_add(name, None);
        match loc {
            None => host,
            Some(p) => {
                let dst = self.get_or_add(name, Some(p));
                steps.push(copy_step(
                    StepKind::Upload {
                        provider: p,
                        value: name.to_string(),
                    },
                    host,
                    dst,
                ));
                dst
            }
        }
    }
}

fn copy_step(kind: StepKind, src: usize, dst: usize) -> Step {
    Step {
        kind,
        inputs: vec![Some(src)],
        outputs: vec![Some(dst)],
        release: Vec::new(),
        in_place: None,
        in_place_shared: false,
        distinct_inputs: Vec::new(),
    }
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

/// The outer-scope values a node's subgraphs read, each once, in order of
/// first use.
pub(crate) fn implicit_inputs(node: &crate::ir::Node) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for r in node.subgraphs().flat_map(outer_reads) {
        if !names.contains(&r) {
            names.push(r);
        }
    }
    names
}

/// Names a subgraph reads that it does not define itself.
pub(crate) fn outer_reads(g: &Graph) -> Vec<String> {
    let mut defined: std::collections::HashSet<&str> =
        g.inputs.iter().map(|v| v.name.as_str()).collect();
    defined.extend(g.initializers.keys().map(String::as_str));
    for n in &g.nodes {
        defined.extend(n.outputs.iter().map(String::as_str));
    }
    let mut reads = Vec::new();
    // Outputs may name an outer value directly.
    for o in &g.outputs {
        if !defined.contains(o.name.as_str()) {
            reads.push(o.name.clone());
        }
    }
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
    /// Creates every kernel and lays out slots, copies and lifetimes.
    pub fn build(
        graph: &Graph,
        opsets: &BTreeMap<String, i64>,
        providers: &[Arc<dyn ExecutionProvider>],
        assignment: &[usize],
    ) -> Result<Self> {
        let order = topological_order(graph)?;
        let mut slots = Slots::default();
        for v in &graph.inputs {
            slots.define(&v.name, None);
        }
        let mut constants = Vec::new();
        let mut init_names: Vec<&String> = graph.initializers.keys().collect();
        init_names.sort();
        for name in init_names {
            let s = slots.define(name, None);
            constants.push((s, graph.initializers[name].clone()));
        }
        let mut steps = Vec::with_capacity(order.len());
        for &ni in &order {
            let node = &graph.nodes[ni];
            let provider = &providers[assignment[ni]];
            let on_device = provider.device_memory().is_some();
            let loc = on_device.then_some(assignment[ni]);
            let ctx = node_context(graph, node, opsets);
            let constants: BTreeMap<usize, &Tensor> = node
                .inputs
                .iter()
                .enumerate()
                .filter_map(|(i, name)| graph.initializers.get(name).map(|t| (i, t.as_ref())))
                .collect();
            let output_types = node
                .outputs
                .iter()
                .map(|name| graph.value_types.get(name))
                .collect();
            let implicit = implicit_inputs(node);
            let inputs = node
                .inputs
                .iter()
                .chain(&implicit)
                .enumerate()
                .map(|(i, n)| {
                    let skip = n.is_empty() || (on_device && constants.contains_key(&i));
                    (!skip).then(|| slots.fetch(n, loc, &mut steps))
                })
                .collect();
            let info = KernelInfo {
                node: ctx,
                constants,
                output_types,
                subgraphs: Some(SubgraphScope {
                    graph,
                    opsets,
                    providers,
                    implicit: &implicit,
                }),
            };
            let kernel = provider
                .create_kernel(node, &info)
                .map_err(|e| e.in_node(&node.name, &node.op_type))?;
            let outputs = node
                .outputs
                .iter()
                .map(|n| (!n.is_empty()).then(|| slots.define(n, loc)))
                .collect();
            steps.push(Step {
                kind: StepKind::Node {
                    node: ni,
                    provider: assignment[ni],
                    kernel,
                    on_device,
                    implicit,
                },
                inputs,
                outputs,
                release: Vec::new(),
                in_place: None,
                in_place_shared: false,
                distinct_inputs: Vec::new(),
            });
        }
        // Graph outputs are returned from host memory.
        let mut keep = Vec::new();
        for o in &graph.outputs {
            keep.push(slots.fetch(&o.name, None, &mut steps));
        }
        let slot_count = slots.count;
        // Lifetimes: release a slot after its last reader, unless it is a
        // graph output or a constant (constants are shared, never owned).
        let mut kept = vec![false; slot_count];
        for s in keep {
            kept[s] = true;
        }
        for (s, _) in &constants {
            kept[*s] = true;
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
            if let (Some(si), false) = (last, kept[slot]) {
                steps[*si].release.push(slot);
            }
        }
        let mut readers = vec![0usize; slot_count];
        for step in &mut steps {
            let mut seen: Vec<usize> = step.inputs.iter().flatten().copied().collect();
            seen.sort_unstable();
            seen.dedup();
            for &s in &seen {
                readers[s] += 1;
            }
            step.distinct_inputs = seen;
        }
        // For parallel runs: the steps each step waits for, and who waits.
        let mut producer: Vec<Option<usize>> = vec![None; slot_count];
        for (i, step) in steps.iter().enumerate() {
            for s in step.outputs.iter().flatten() {
                producer[*s] = Some(i);
            }
        }
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); steps.len()];
        let mut dependencies = vec![0usize; steps.len()];
        for (i, step) in steps.iter().enumerate() {
            let mut deps: Vec<usize> = step
                .distinct_inputs
                .iter()
                .filter_map(|&s| producer[s])
                .collect();
            deps.sort_unstable();
            deps.dedup();
            dependencies[i] = deps.len();
            for d in deps {
                dependents[d].push(i);
            }
        }
        for step in &mut steps {
            let StepKind::Node {
                kernel, on_device, ..
            } = &step.kind
            else {
                continue;
            };
            let Some(i) = kernel.in_place_input().filter(|_| !on_device) else {
                continue;
            };
            let Some(Some(s)) = step.inputs.get(i).copied() else {
                continue;
            };
            let once = step.inputs.iter().filter(|x| **x == Some(s)).count() == 1;
            // Released after this step: it is the last reader, nothing keeps it.
            if once && step.release.contains(&s) {
                step.in_place = Some(i);
                step.in_place_shared = readers[s] > 1;
            }
        }
        let mut slot_values = vec![(String::new(), None); slot_count];
        for ((name, loc), s) in &slots.by_loc {
            slot_values[*s] = (name.clone(), *loc);
        }
        let host_slots = slots
            .by_loc
            .into_iter()
            .filter_map(|((name, loc), s)| loc.is_none().then_some((name, s)))
            .collect();
        Ok(Self {
            steps,
            slot_count,
            slots: host_slots,
            constants,
            slot_values,
            readers,
            kept,
            dependents,
            dependencies,
        })
    }

    /// The node steps: `(node index, provider index)` in execution order.
    pub fn node_steps(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.steps.iter().filter_map(|s| match s.kind {
            StepKind::Node { node, provider, .. } => Some((node, provider)),
            _ => None,
        })
    }
}

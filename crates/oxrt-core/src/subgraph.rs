//! Subgraphs (If branches, Loop and Scan bodies) compiled into execution
//! plans with the session's providers, and run by the same executor as the
//! main graph.
//!
//! A subgraph may read values of enclosing graphs. The plan passes those to
//! the node as *implicit inputs* after its own inputs; a compiled subgraph
//! takes them as extra graph inputs, so nested subgraphs work the same way
//! one level at a time.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::execute::{Runner, Slot};
use crate::infer::infer_graph;
use crate::ir::{Graph, ValueInfo, ValueType};
use crate::partition::partition;
use crate::plan::{outer_reads, ExecutionPlan};
use crate::provider::ExecutionProvider;
use crate::value::{Value, ValueRef};

/// What a node with subgraph attributes needs to compile them: the graph it
/// belongs to, the opsets and providers, and its implicit inputs.
#[derive(Clone, Copy)]
pub struct SubgraphScope<'a> {
    pub(crate) graph: &'a Graph,
    pub(crate) opsets: &'a BTreeMap<String, i64>,
    pub(crate) providers: &'a [Arc<dyn ExecutionProvider>],
    pub(crate) implicit: &'a [String],
}

impl fmt::Debug for SubgraphScope<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubgraphScope")
            .field("graph", &self.graph.name)
            .field("implicit", &self.implicit)
            .finish()
    }
}

impl SubgraphScope<'_> {
    /// Number of the node's implicit inputs (they follow its own inputs).
    pub fn implicit_count(&self) -> usize {
        self.implicit.len()
    }

    /// Infers, partitions and plans `body`, whose outer-scope reads become
    /// graph inputs fed from the node's implicit inputs.
    pub fn compile(&self, body: &Graph) -> Result<Subgraph> {
        let mut graph = body.clone();
        let mut outer = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for name in outer_reads(body) {
            if !seen.insert(name.clone()) {
                continue;
            }
            let Some(pos) = self.implicit.iter().position(|n| *n == name) else {
                return Err(Error::InvalidModel {
                    location: format!("subgraph '{}'", body.name),
                    message: format!("reads '{name}', which no enclosing graph defines"),
                });
            };
            let ty = self
                .graph
                .value_types
                .get(&name)
                .cloned()
                .or_else(|| {
                    self.graph
                        .initializers
                        .get(&name)
                        .map(|t| ValueType::tensor(t.dtype(), t.shape()))
                })
                .unwrap_or(ValueType::Unknown);
            graph.inputs.push(ValueInfo { name, ty });
            outer.push(pos);
        }
        infer_graph(&mut graph, self.opsets);
        let assignment = partition(&graph, self.opsets, self.providers)?;
        let plan = ExecutionPlan::build(&graph, self.opsets, self.providers, &assignment)?;
        Ok(Subgraph {
            formal: body.inputs.len(),
            outer,
            graph,
            plan,
            providers: self.providers.to_vec(),
        })
    }
}

/// A compiled subgraph, ready to run any number of times.
pub struct Subgraph {
    graph: Graph,
    plan: ExecutionPlan,
    providers: Vec<Arc<dyn ExecutionProvider>>,
    /// Number of the body's own (formal) inputs.
    formal: usize,
    /// For each outer-scope input, its index among the node's implicit inputs.
    outer: Vec<usize>,
}

impl fmt::Debug for Subgraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subgraph")
            .field("graph", &self.graph.name)
            .field("formal", &self.formal)
            .field("outer", &self.outer)
            .finish()
    }
}

impl Subgraph {
    /// The body's declared (formal) inputs.
    pub fn inputs(&self) -> &[ValueInfo] {
        &self.graph.inputs[..self.formal]
    }

    /// The body's outputs.
    pub fn outputs(&self) -> &[ValueInfo] {
        &self.graph.outputs
    }

    /// The known type of a value of the body (after inference).
    pub fn value_type(&self, name: &str) -> Option<&ValueType> {
        self.graph.value_types.get(name)
    }

    /// Runs the body on its formal inputs; `implicit` are the node's
    /// implicit inputs (the values after the node's own inputs).
    pub fn run(&self, formal: Vec<Value>, implicit: &[Option<ValueRef<'_>>]) -> Result<Vec<Value>> {
        if formal.len() != self.formal {
            return Err(Error::invalid(format!(
                "subgraph '{}' takes {} inputs, given {}",
                self.graph.name,
                self.formal,
                formal.len()
            )));
        }
        let mut feeds = Vec::with_capacity(self.graph.inputs.len());
        for (info, v) in self.graph.inputs.iter().zip(formal) {
            if let Some(&s) = self.plan.slots.get(&info.name) {
                feeds.push((s, Slot::Owned(v)));
            }
        }
        for (info, &pos) in self.graph.inputs[self.formal..].iter().zip(&self.outer) {
            let v = implicit.get(pos).copied().flatten().ok_or_else(|| {
                Error::invalid(format!(
                    "subgraph '{}': outer value '{}' has no value",
                    self.graph.name, info.name
                ))
            })?;
            if let Some(&s) = self.plan.slots.get(&info.name) {
                feeds.push((s, Slot::Borrowed(v)));
            }
        }
        let runner = Runner {
            graph: &self.graph,
            plan: &self.plan,
            providers: &self.providers,
            release: true,
            arena: crate::arena::current(),
        };
        runner.run(feeds, None)
    }
}

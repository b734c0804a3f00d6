//! The graph IR: a [`Model`] holds a [`Graph`] of [`Node`]s and typed values.
//!
//! Subgraphs (If/Loop/Scan bodies) are nested [`Graph`]s held in attributes.
//! Initializers are decoded once into shared [`Tensor`]s.

mod attribute;
pub mod export;
mod lower;
pub mod value;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub use attribute::Attribute;
pub use lower::LowerOptions;
pub use value::{Dim, ValueInfo, ValueType};

use crate::tensor::Tensor;

/// A model: the main graph plus the metadata and opset imports around it.
#[derive(Debug, Clone)]
pub struct Model {
    /// The main graph.
    pub graph: Graph,
    /// Opset version per domain (`""` is the default `ai.onnx` domain).
    pub opsets: BTreeMap<String, i64>,
    pub ir_version: i64,
    pub producer_name: String,
    pub producer_version: String,
    pub domain: String,
    /// `None` when the model does not say.
    pub model_version: Option<i64>,
    pub doc_string: String,
    /// `metadata_props` key-value pairs.
    pub metadata: Vec<(String, String)>,
}

impl Model {
    /// The opset version imported for `domain` (`"ai.onnx"` and `""` are the same).
    pub fn opset(&self, domain: &str) -> Option<i64> {
        let d = if domain == "ai.onnx" { "" } else { domain };
        self.opsets.get(d).copied()
    }
}

/// A computation graph: nodes in the order given by the model, its interface,
/// and its constant initializers.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub name: String,
    /// The graph's `doc_string`.
    pub doc_string: String,
    pub nodes: Vec<Node>,
    /// Inputs that must be fed (initializers listed as inputs are excluded).
    pub inputs: Vec<ValueInfo>,
    /// Initializers that are also graph inputs: fed values override them.
    pub overridable_initializers: Vec<ValueInfo>,
    pub outputs: Vec<ValueInfo>,
    /// Constant tensors by name.
    pub initializers: HashMap<String, Arc<Tensor>>,
    /// Known types of intermediate values (declared `value_info` plus inference).
    pub value_types: HashMap<String, ValueType>,
}

/// One operator invocation.
#[derive(Debug, Clone)]
pub struct Node {
    /// The node's name (generated as `<op_type>_<index>` when the model has none).
    pub name: String,
    pub op_type: String,
    /// Operator domain, `""` for the default ONNX domain.
    pub domain: String,
    /// Input value names; an empty string marks an omitted optional input.
    pub inputs: Vec<String>,
    /// Output value names; an empty string marks an unused optional output.
    pub outputs: Vec<String>,
    pub attributes: BTreeMap<String, Attribute>,
}

impl Node {
    /// The `i`-th input name, if present and not omitted.
    pub fn input(&self, i: usize) -> Option<&str> {
        self.inputs
            .get(i)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// Subgraphs held in this node's attributes.
    pub fn subgraphs(&self) -> impl Iterator<Item = &Graph> {
        self.attributes.values().flat_map(|a| match a {
            Attribute::Graph(g) => vec![g.as_ref()],
            Attribute::Graphs(gs) => gs.iter().map(|g| g.as_ref()).collect(),
            _ => Vec::new(),
        })
    }
}

//! The `ExecutionProvider` trait: how a device offers to run nodes and
//! creates kernels for them.

use std::collections::BTreeMap;
use std::fmt;

use crate::device::{DeviceCost, DeviceMemory, DeviceTensor};
use crate::dtype::DataType;
use crate::error::Result;
use crate::ir::{Graph, Node, ValueType};
use crate::partition::node_context;
use crate::subgraph::SubgraphScope;
use crate::tensor::Tensor;
use crate::value::{Value, ValueRef};

/// The kind of device a provider runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeviceKind {
    Cpu,
    Cuda,
    Other(String),
}

/// A description of a provider's device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub kind: DeviceKind,
    /// Device ordinal (0 for the host).
    pub id: u32,
    /// Human-readable description, e.g. the CPU model or GPU name.
    pub description: String,
}

impl fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}:{} ({})", self.kind, self.id, self.description)
    }
}

/// What a provider sees of a node when deciding whether to take it.
#[derive(Debug, Clone)]
pub struct NodeContext<'a> {
    /// The opset version imported for the node's domain.
    pub opset: i64,
    /// Known types of the node's inputs (`None`: omitted or not inferred).
    pub input_types: Vec<Option<&'a ValueType>>,
}

impl NodeContext<'_> {
    /// Element type of input `i`, if known.
    pub fn input_dtype(&self, i: usize) -> Option<DataType> {
        self.input_types
            .get(i)
            .copied()
            .flatten()
            .and_then(ValueType::dtype)
    }
}

/// What a kernel is created from, besides the node itself.
#[derive(Debug, Clone)]
pub struct KernelInfo<'a> {
    /// The node's opset version and input types.
    pub node: NodeContext<'a>,
    /// Constant inputs (initializers) by input index, for pre-packing weights
    /// or reading shapes at creation time.
    pub constants: BTreeMap<usize, &'a Tensor>,
    /// Known types of the node's outputs (`None`: unused or not inferred).
    pub output_types: Vec<Option<&'a ValueType>>,
    /// Compiles the node's subgraph attributes (If/Loop/Scan bodies) with
    /// the session's providers; `None` where nodes are created outside a
    /// session plan.
    pub subgraphs: Option<SubgraphScope<'a>>,
}

/// A node prepared for execution: attributes parsed, weights pre-packed.
pub trait Kernel: Send + Sync {
    /// Computes the node's outputs. `inputs[i]` is `None` for an omitted
    /// optional input. Returns one tensor per node output (trailing optional
    /// outputs the node does not name may be left out).
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>>;

    /// Computes the node on values of any kind (tensors, sequences,
    /// optionals). Kernels of sequence, optional and control-flow operators
    /// override this; the default accepts tensors only and calls
    /// [`Kernel::compute`]. Nodes with subgraphs receive the outer-scope
    /// values their subgraphs read after their own inputs.
    fn compute_values(&self, inputs: &[Option<ValueRef<'_>>]) -> Result<Vec<Value>> {
        let mut tensors = Vec::with_capacity(inputs.len());
        for (i, v) in inputs.iter().enumerate() {
            tensors.push(match v {
                None => None,
                Some(ValueRef::Tensor(t)) => Some(*t),
                Some(other) => {
                    return Err(crate::Error::invalid(format!(
                        "input #{i} is a {}, this operator takes tensors",
                        other.kind()
                    )))
                }
            });
        }
        Ok(self
            .compute(&tensors)?
            .into_iter()
            .map(Value::Tensor)
            .collect())
    }

    /// The input whose buffer this kernel can overwrite with output 0 (an
    /// elementwise op whose output has that input's dtype and, when the
    /// shapes allow, its shape). The executor then calls
    /// [`Kernel::compute_in_place`] when the run owns that value and no
    /// other step reads it.
    fn in_place_input(&self) -> Option<usize> {
        None
    }

    /// Like [`Kernel::compute`], with input [`Kernel::in_place_input`] given
    /// by value as `owned` (`inputs` holds `None` at its position). A kernel
    /// writes its output into `owned` where the shapes allow and computes
    /// normally otherwise; the default always computes normally.
    fn compute_in_place(&self, owned: Tensor, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let i = self.in_place_input().unwrap_or(0);
        let mut all: Vec<Option<&Tensor>> = inputs.to_vec();
        if i < all.len() {
            all[i] = Some(&owned);
        }
        self.compute(&all)
    }

    /// Computes the node on device-resident values, for kernels of providers
    /// with [`ExecutionProvider::device_memory`]. Constant inputs are not
    /// passed (`None`): the kernel received them in [`KernelInfo::constants`]
    /// and keeps its own device copy. Returns the outputs (positions as in
    /// [`Kernel::compute`]) and what the work cost on the device.
    fn compute_on_device(
        &self,
        _inputs: &[Option<&DeviceTensor>],
    ) -> Result<(Vec<Option<DeviceTensor>>, DeviceCost)> {
        Err(crate::Error::NotSupported(
            "this kernel runs on host memory only".into(),
        ))
    }
}

/// A group of nodes a provider takes (one node, or a fused subgraph).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeGroup {
    /// Indices into `Graph::nodes`.
    pub nodes: Vec<usize>,
}

/// Where a provider's `WinogradConv` (domain `oxrt`) beats its direct
/// convolution: the fewest 4x4 output tiles per image and the fewest input
/// and output channels a 3x3 convolution needs to be converted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WinogradLimits {
    pub tiles: usize,
    pub channels: usize,
}

/// An execution provider: a device plus the kernels it can run.
pub trait ExecutionProvider: Send + Sync {
    /// Short unique name, e.g. `cpu`.
    fn name(&self) -> &str;

    /// The device this provider runs on.
    fn device(&self) -> DeviceInfo;

    /// Whether this provider can run `node`; the error explains why not
    /// (unknown op, opset not covered, element type not handled...).
    fn supports(&self, node: &Node, ctx: &NodeContext<'_>) -> Result<(), String>;

    /// The nodes of `graph` this provider takes. The default offers every
    /// node [`ExecutionProvider::supports`] accepts, one group per node.
    fn capability(&self, graph: &Graph, opsets: &BTreeMap<String, i64>) -> Vec<NodeGroup> {
        graph
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| self.supports(n, &node_context(graph, n, opsets)).is_ok())
            .map(|(i, _)| NodeGroup { nodes: vec![i] })
            .collect()
    }

    /// Creates the kernel that runs `node`.
    fn create_kernel(&self, node: &Node, info: &KernelInfo<'_>) -> Result<Box<dyn Kernel>>;

    /// The provider's device memory, when its kernels do not use host memory
    /// (then they run through [`Kernel::compute_on_device`]).
    fn device_memory(&self) -> Option<&dyn DeviceMemory> {
        None
    }

    /// Where this provider's `WinogradConv` pays off, for the optimizer's
    /// Winograd pass (level `all`); `None`, the default, leaves its
    /// convolutions as they are.
    fn winograd_limits(&self) -> Option<WinogradLimits> {
        None
    }
}

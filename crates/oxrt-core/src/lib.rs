//! oxrt core: tensors, the graph IR, shape inference, the execution-provider
//! interface and kernel registry, partitioning, planning and [`Session`].
//!
//! Providers plug in through [`ExecutionProvider`]; this crate depends on none
//! of them. Most users go through the `oxrt` facade crate instead.

pub mod arena;
pub mod device;
pub mod dtype;
pub mod dylib;
pub mod error;
mod execute;
pub mod infer;
pub mod ir;
pub mod memory;
pub mod optimize;
pub mod partition;
pub mod plan;
pub mod profile;
pub mod provider;
pub mod registry;
pub mod session;
pub mod shape;
mod spin;
pub mod subgraph;
pub mod tensor;
pub mod tensor_proto;
pub mod value;

pub use arena::{Arena, ArenaStats};
pub use device::{DeviceBuffer, DeviceCost, DeviceMemory, DeviceTensor};
pub use dtype::DataType;
pub use error::{Error, Result};
pub use ir::{Dim, Graph, Model, Node, ValueInfo, ValueType};
pub use provider::{
    DeviceInfo, DeviceKind, ExecutionProvider, Kernel, KernelInfo, NodeContext, WinogradLimits,
};
pub use registry::{KernelDef, KernelRegistry};
pub use session::{ExecutionMode, OptimizationLevel, Session, SessionBuilder, SessionOutputs};
pub use subgraph::{Subgraph, SubgraphScope};
pub use tensor::{Element, Storage, Tensor};
pub use value::{Map, Sequence, Value, ValueRef};

pub use half::{bf16, f16};
pub use ndarray;

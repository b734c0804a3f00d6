//! The oxrt CPU execution provider.
//!
//! Kernels live in [`ops`], one module per operator family, each registering
//! itself in a [`KernelRegistry`]. Matrix products go through the `gemm`
//! crate (packed, SIMD, run-time ISA selection); intra-op parallelism uses
//! the session's rayon pool.

pub mod broadcast;
pub mod fast_math;
pub mod gemm;
pub mod kernel;
pub mod minifloat;
pub mod ops;
pub mod packed;

use oxrt_core::{
    DeviceInfo, DeviceKind, ExecutionProvider, Kernel, KernelInfo, KernelRegistry, Node,
    NodeContext, Result,
};

/// The CPU execution provider.
#[derive(Clone)]
pub struct CpuProvider {
    registry: KernelRegistry,
}

impl Default for CpuProvider {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuProvider {
    /// The provider's name, as used in provider lists (`--provider cpu`).
    pub const NAME: &'static str = "cpu";

    /// A provider with every CPU kernel registered.
    pub fn new() -> Self {
        let mut registry = KernelRegistry::new();
        ops::register_all(&mut registry);
        Self { registry }
    }

    /// The kernels this provider has.
    pub fn registry(&self) -> &KernelRegistry {
        &self.registry
    }
}

impl ExecutionProvider for CpuProvider {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn device(&self) -> DeviceInfo {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        DeviceInfo {
            kind: DeviceKind::Cpu,
            id: 0,
            description: format!(
                "{} {} host, {threads} hardware threads",
                std::env::consts::ARCH,
                std::env::consts::OS
            ),
        }
    }

    fn supports(&self, node: &Node, ctx: &NodeContext<'_>) -> Result<(), String> {
        self.registry.lookup(node, ctx).map(|_| ())
    }

    fn create_kernel(&self, node: &Node, info: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
        let def = self
            .registry
            .lookup(node, &info.node)
            .map_err(oxrt_core::Error::NotSupported)?;
        (def.factory)(node, info)
    }
}

/// `n` test values in [-1, 1] (a fixed pseudo-random pattern per `seed`),
/// for kernels checked against their definitions.
#[cfg(test)]
pub(crate) fn test_values(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919 + seed * 104729) % 201) as f32 / 100.0 - 1.0)
        .collect()
}

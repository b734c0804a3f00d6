//! oxrt's CUDA execution provider.
//!
//! Built on cudarc with the CUDA libraries (driver, NVRTC, cuBLAS) loaded
//! at run time: the crate builds without the CUDA toolkit, and on a machine
//! without a driver or a GPU [`CudaProvider::new`] returns
//! [`Error::ProviderUnavailable`] ("no CUDA driver found", "no CUDA
//! device") instead of panicking.
//!
//! Kernels run on one stream per provider instance (one per session),
//! from device memory; the planner uploads inputs and downloads outputs
//! at the partition boundaries, through a pinned staging buffer. Freed
//! device memory stays in the driver's stream-ordered pool, so runs after
//! the first do not call the allocator of the driver. The elementwise,
//! softmax, im2col, pooling and layout kernels are CUDA C compiled once by
//! NVRTC (`kernels.cu`); products and convolutions use cuBLAS SGEMM.
//!
//! Operators (f32): the unary activations and math of
//! [`ops::elementwise::UNARY_OPS`], Add/Sub/Mul/Div/Max/Min/Pow with
//! broadcasting, MatMul, Gemm, FusedMatMul, FusedGemm, Conv and FusedConv
//! (2-D), MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool,
//! BatchNormalization (inference), LayerNormalization, Softmax and
//! LogSoftmax (last axis), ReduceSum/Mean/Max/Min/SumSquare/L1/L2/LogSumExp,
//! Slice, Concat, Gather, Cast (f32 with f16, int64, int32, bool), Reshape,
//! Flatten, Squeeze, Unsqueeze, Identity and Transpose (the data-moving ops
//! take any 4-byte element type). Every other node falls back to the CPU.

use std::sync::Arc;

use oxrt_core::device::DeviceMemory;
use oxrt_core::{
    DeviceInfo, DeviceKind, Error, ExecutionProvider, Kernel, KernelInfo, Node, NodeContext, Result,
};

mod gpu;
mod memory;
pub mod ops;

pub use gpu::{cublas_present, driver_present, nvrtc_present, probe};

/// The CUDA execution provider on one device.
pub struct CudaProvider {
    gpu: Arc<gpu::Gpu>,
    memory: memory::CudaMemory,
    ordinal: usize,
    description: String,
}

impl CudaProvider {
    /// Opens CUDA device `ordinal`; a typed error when there is no driver,
    /// no such device, or a CUDA library is missing.
    pub fn new(ordinal: usize) -> Result<Self> {
        let gpu = gpu::Gpu::open(ordinal)?;
        let description = gpu.describe();
        Ok(Self {
            memory: memory::CudaMemory { gpu: gpu.clone() },
            gpu,
            ordinal,
            description,
        })
    }
}

impl ExecutionProvider for CudaProvider {
    fn name(&self) -> &str {
        gpu::NAME
    }

    fn device(&self) -> DeviceInfo {
        DeviceInfo {
            kind: DeviceKind::Cuda,
            id: u32::try_from(self.ordinal).unwrap_or(u32::MAX),
            description: self.description.clone(),
        }
    }

    fn supports(&self, node: &Node, ctx: &NodeContext<'_>) -> std::result::Result<(), String> {
        ops::lookup(node, ctx).map(|_| ())
    }

    fn create_kernel(&self, node: &Node, info: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
        let factory = ops::lookup(node, &info.node).map_err(Error::NotSupported)?;
        factory(node, info, &self.gpu)
    }

    fn device_memory(&self) -> Option<&dyn DeviceMemory> {
        Some(&self.memory)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creating_the_provider_without_a_gpu_is_a_clear_error() {
        match CudaProvider::new(0) {
            Ok(p) => eprintln!("skipped: a CUDA device is present ({})", p.device()),
            Err(e) => {
                assert!(matches!(e, Error::ProviderUnavailable { .. }), "{e:?}");
                let msg = e.to_string();
                assert!(
                    msg.starts_with("execution provider 'cuda' is unavailable: "),
                    "{msg}"
                );
                assert!(msg.contains("CUDA"), "{msg}");
            }
        }
    }
}

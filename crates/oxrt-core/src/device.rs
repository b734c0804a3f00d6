//! Tensors in device memory and the copies between host and device.
//!
//! A provider whose kernels read and write memory the host cannot touch
//! (a GPU, an accelerator card, a simulated FPGA) exposes [`DeviceMemory`]
//! from [`ExecutionProvider::device_memory`](crate::ExecutionProvider::device_memory).
//! The planner then keeps that provider's intermediate values on its device
//! and inserts upload and download steps where values cross to or from
//! nodes running elsewhere.

use std::any::Any;
use std::fmt;

use crate::dtype::DataType;
use crate::error::Result;
use crate::tensor::Tensor;

/// What a device operation cost, as the provider reports it (for profiling).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceCost {
    /// Time on the device (measured or simulated), in nanoseconds.
    pub device_ns: u64,
    /// Bytes moved host → device.
    pub bytes_to_device: u64,
    /// Bytes moved device → host.
    pub bytes_to_host: u64,
}

/// Memory owned by a provider on its device; dropping it frees the memory.
pub trait DeviceBuffer: Send + Sync + 'static {
    /// For the provider to recover its own buffer type.
    fn as_any(&self) -> &dyn Any;
}

/// A dense row-major tensor in a provider's device memory.
pub struct DeviceTensor {
    dtype: DataType,
    shape: Vec<usize>,
    buffer: Box<dyn DeviceBuffer>,
}

impl DeviceTensor {
    /// Wraps a provider's buffer holding a `dtype` tensor of `shape`.
    pub fn new(dtype: DataType, shape: Vec<usize>, buffer: Box<dyn DeviceBuffer>) -> Self {
        Self {
            dtype,
            shape,
            buffer,
        }
    }

    /// Element type.
    pub fn dtype(&self) -> DataType {
        self.dtype
    }

    /// Dimensions.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The provider's buffer.
    pub fn buffer(&self) -> &dyn DeviceBuffer {
        self.buffer.as_ref()
    }
}

impl fmt::Debug for DeviceTensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceTensor({} {:?})", self.dtype, self.shape)
    }
}

/// Copies between host memory and a provider's device memory.
pub trait DeviceMemory: Send + Sync {
    /// Copies a host tensor to the device.
    fn upload(&self, tensor: &Tensor) -> Result<(DeviceTensor, DeviceCost)>;
    /// Copies a device tensor to the host.
    fn download(&self, tensor: &DeviceTensor) -> Result<(Tensor, DeviceCost)>;
}

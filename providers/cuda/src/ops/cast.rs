//! Cast between the element types the device kernels use: f32 with f16,
//! int64, int32 and bool (float to integer truncates toward zero).

use std::sync::Arc;

use cudarc::driver::PushKernelArg;
use oxrt_core::device::DeviceTensor;
use oxrt_core::{DataType as D, Error, Kernel, KernelInfo, Node, Result};

use super::{boxed, first, launch_for, GpuKernel};
use crate::gpu::{failed, Gpu};
use crate::memory::{buffer, byte_len, device_tensor, relabel};

/// Element types a Cast on CUDA reads.
pub(crate) const SOURCES: &[D] = &[D::F32, D::F16, D::I64, D::I32, D::Bool];

/// `cast_any`'s mode for `from -> to`, if the kernel has it.
pub(crate) fn mode(from: D, to: D) -> Option<i32> {
    Some(match (from, to) {
        (D::F32, D::F16) => 0,
        (D::F16, D::F32) => 1,
        (D::I64, D::F32) => 2,
        (D::I32, D::F32) => 3,
        (D::F32, D::I64) => 4,
        (D::F32, D::I32) => 5,
        (D::Bool, D::F32) => 6,
        (D::F32, D::Bool) => 7,
        _ => return None,
    })
}

struct Cast {
    gpu: Arc<Gpu>,
    to: D,
}

impl GpuKernel for Cast {
    fn op(&self) -> &str {
        "Cast"
    }

    fn run(&self, inputs: &[Option<&DeviceTensor>]) -> Result<DeviceTensor> {
        let x = first(inputs, "Cast")?;
        if x.dtype() == self.to {
            return relabel(x, x.shape().to_vec());
        }
        let code = mode(x.dtype(), self.to).ok_or_else(|| {
            Error::NotSupported(format!("Cast from {} to {} on CUDA", x.dtype(), self.to))
        })?;
        let n: usize = x.shape().iter().product();
        let mut bytes = self.gpu.alloc(byte_len(self.to, x.shape())?)?;
        if n > 0 {
            let src = buffer(x)?;
            let n64 = n as i64;
            let f = self.gpu.function("cast_any")?;
            let mut launch = self.gpu.stream.launch_builder(&f);
            launch
                .arg(src.bytes.as_ref())
                .arg(&mut bytes)
                .arg(&n64)
                .arg(&code);
            // SAFETY: cast_any reads n elements of the source type and
            // writes n of the target type; both buffers were sized for
            // their tensors' n elements of those types.
            unsafe { launch.launch(launch_for(n)) }.map_err(|e| failed("cast kernel", e))?;
        }
        Ok(device_tensor(self.to, x.shape().to_vec(), bytes))
    }
}

pub(crate) fn create(
    node: &Node,
    info: &KernelInfo<'_>,
    gpu: &Arc<Gpu>,
) -> Result<Box<dyn Kernel>> {
    let to = node.int_or("to", 0)?;
    let to = i32::try_from(to)
        .ok()
        .and_then(D::from_onnx)
        .ok_or_else(|| Error::invalid(format!("Cast: unknown element type {to}")))?;
    if let Some(from) = info.node.input_dtype(0) {
        if from != to && mode(from, to).is_none() {
            return Err(Error::NotSupported(format!(
                "Cast from {from} to {to} on CUDA"
            )));
        }
    }
    Ok(boxed(Cast {
        gpu: gpu.clone(),
        to,
    }))
}

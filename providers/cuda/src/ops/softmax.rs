//! Softmax and LogSoftmax over the last axis (opset 13 semantics; older
//! opsets flatten from `axis` on, which is the same rows when the axis is
//! the last), one block per row.

use std::sync::Arc;

use cudarc::driver::PushKernelArg;
use oxrt_core::device::DeviceTensor;
use oxrt_core::{Error, Kernel, KernelInfo, Node, Result};

use super::{boxed, first, launch_rows, GpuKernel};
use crate::gpu::{failed, Gpu};
use crate::memory::{f32_view, Output};

struct Softmax {
    gpu: Arc<Gpu>,
    axis: i64,
    log: bool,
}

impl GpuKernel for Softmax {
    fn op(&self) -> &str {
        "Softmax"
    }

    fn run(&self, inputs: &[Option<&DeviceTensor>]) -> Result<DeviceTensor> {
        let x = first(inputs, "Softmax")?;
        let shape = x.shape();
        let axis = oxrt_core::shape::normalize_axis(self.axis, shape.len().max(1))?;
        if !shape.is_empty() && axis + 1 != shape.len() {
            return Err(Error::NotSupported(format!(
                "Softmax over axis {axis} of a rank-{} tensor on CUDA (only the last axis)",
                shape.len()
            )));
        }
        let len = shape.last().copied().unwrap_or(1);
        let mut out = Output::new(&self.gpu, shape.to_vec())?;
        let rows = out.len() / len.max(1);
        if rows > 0 && len > 0 {
            let xv = f32_view(x)?;
            let mut yv = out.view()?;
            let f = self.gpu.function("softmax_f32")?;
            let (r64, l64, log) = (rows as i64, len as i64, i32::from(self.log));
            let mut launch = self.gpu.stream.launch_builder(&f);
            launch.arg(&xv).arg(&mut yv).arg(&r64).arg(&l64).arg(&log);
            // SAFETY: softmax_f32(const float*, float*, long long, long long,
            // int) reads and writes rows x len values, the views' sizes; it
            // is launched with the 256 threads its reduction expects.
            unsafe { launch.launch(launch_rows(rows)) }.map_err(|e| failed("softmax kernel", e))?;
        }
        Ok(out.finish())
    }
}

pub(crate) fn create(
    node: &Node,
    info: &KernelInfo<'_>,
    gpu: &Arc<Gpu>,
) -> Result<Box<dyn Kernel>> {
    let default_axis = if info.node.opset < 13 { 1 } else { -1 };
    Ok(boxed(Softmax {
        gpu: gpu.clone(),
        axis: node.int_or("axis", default_axis)?,
        log: node.op_type == "LogSoftmax",
    }))
}

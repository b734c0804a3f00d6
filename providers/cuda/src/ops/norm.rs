//! LayerNormalization (f32) over the axes from `axis` on, one block per
//! row; the optional Mean and InvStdDev outputs run on the host.

use std::sync::Arc;

use cudarc::driver::PushKernelArg;
use oxrt_core::device::DeviceTensor;
use oxrt_core::{Error, Kernel, KernelInfo, Node, Result};

use super::{boxed, first, launch_rows, Constants, GpuKernel};
use crate::gpu::{failed, Gpu};
use crate::memory::{f32_view, Output};

struct LayerNorm {
    gpu: Arc<Gpu>,
    axis: i64,
    epsilon: f32,
    constants: Constants,
}

impl GpuKernel for LayerNorm {
    fn op(&self) -> &str {
        "LayerNormalization"
    }

    fn run(&self, inputs: &[Option<&DeviceTensor>]) -> Result<DeviceTensor> {
        let x = first(inputs, "LayerNormalization")?;
        let scale = self.constants.required(inputs, 1, "LayerNormalization")?;
        let bias = self.constants.input(inputs, 2);
        let shape = x.shape();
        let axis = oxrt_core::shape::normalize_axis(self.axis, shape.len())?;
        let len: usize = shape[axis..].iter().product();
        let fits = |t: &DeviceTensor| t.shape().iter().product::<usize>() == len;
        if !fits(scale) || bias.is_some_and(|b| !fits(b)) {
            return Err(Error::NotSupported(format!(
                "LayerNormalization on CUDA needs Scale and B of the normalized shape {:?}",
                &shape[axis..]
            )));
        }
        let mut out = Output::new(&self.gpu, shape.to_vec())?;
        let rows = out.len() / len.max(1);
        if rows > 0 && len > 0 {
            let (xv, sv) = (f32_view(x)?, f32_view(scale)?);
            // Without B the kernel reads no bias: pass the scale in its place.
            let bv = f32_view(bias.unwrap_or(scale))?;
            let mut yv = out.view()?;
            let f = self.gpu.function("layer_norm_f32")?;
            let (r64, l64, has_bias) = (rows as i64, len as i64, i32::from(bias.is_some()));
            let mut launch = self.gpu.stream.launch_builder(&f);
            launch
                .arg(&xv)
                .arg(&sv)
                .arg(&bv)
                .arg(&mut yv)
                .arg(&r64)
                .arg(&l64)
                .arg(&self.epsilon)
                .arg(&has_bias);
            // SAFETY: layer_norm_f32 reads rows x len inputs and len scale
            // and bias values, writes rows x len outputs (the views' sizes),
            // with the 256 threads its reductions expect.
            unsafe { launch.launch(launch_rows(rows)) }
                .map_err(|e| failed("layer-norm kernel", e))?;
        }
        Ok(out.finish())
    }
}

pub(crate) fn create(
    node: &Node,
    info: &KernelInfo<'_>,
    gpu: &Arc<Gpu>,
) -> Result<Box<dyn Kernel>> {
    if node.outputs.iter().skip(1).any(|o| !o.is_empty()) {
        return Err(Error::NotSupported(
            "LayerNormalization's Mean and InvStdDev outputs on CUDA".into(),
        ));
    }
    Ok(boxed(LayerNorm {
        gpu: gpu.clone(),
        axis: node.int_or("axis", -1)?,
        epsilon: node.float_or("epsilon", 1e-5)?,
        constants: Constants::upload(gpu, info, 3)?,
    }))
}

//! ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceSumSquare, ReduceL1,
//! ReduceL2 and ReduceLogSumExp over any axes (f32): each output walks its
//! reduced positions through two stride tables.

use std::sync::Arc;

use cudarc::driver::PushKernelArg;
use oxrt_core::device::DeviceTensor;
use oxrt_core::shape::normalize_axis;
use oxrt_core::{Error, Kernel, KernelInfo, Node, Result};

use super::{boxed, first, host_constant, launch_for, GpuKernel, Strides};
use crate::gpu::{failed, Gpu};
use crate::memory::{f32_view, Output};

/// The operators, in the order of `reduce_f32`'s op codes.
pub(crate) const OPS: &[&str] = &[
    "ReduceSum",
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceSumSquare",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSumExp",
];

/// Output shape and the kept and reduced stride tables of reducing
/// `shape` over `axes` (all axes when empty, unless `noop`).
pub(crate) fn reduce_plan(
    shape: &[usize],
    axes: &[i64],
    keepdims: bool,
    noop: bool,
) -> Result<(Vec<usize>, Strides, Strides, usize)> {
    let rank = shape.len();
    let mut reduced = vec![false; rank];
    if axes.is_empty() {
        if !noop {
            reduced.iter_mut().for_each(|r| *r = true);
        }
    } else {
        for &a in axes {
            reduced[normalize_axis(a, rank)?] = true;
        }
    }
    let dense = super::dense_strides(shape);
    let (mut kept_dims, mut kept_strides, mut red_dims, mut red_strides) =
        (vec![], vec![], vec![], vec![]);
    let mut out = Vec::with_capacity(rank);
    for d in 0..rank {
        if reduced[d] {
            red_dims.push(shape[d]);
            red_strides.push(dense[d]);
            if keepdims {
                out.push(1);
            }
        } else {
            kept_dims.push(shape[d]);
            kept_strides.push(dense[d]);
            out.push(shape[d]);
        }
    }
    let count = red_dims.iter().product();
    Ok((
        out,
        Strides::gather(&kept_dims, &kept_strides)?,
        Strides::gather(&red_dims, &red_strides)?,
        count,
    ))
}

struct Reduce {
    gpu: Arc<Gpu>,
    code: i32,
    axes: Vec<i64>,
    keepdims: bool,
    noop: bool,
    name: String,
}

impl GpuKernel for Reduce {
    fn op(&self) -> &str {
        &self.name
    }

    fn run(&self, inputs: &[Option<&DeviceTensor>]) -> Result<DeviceTensor> {
        let x = first(inputs, &self.name)?;
        let (shape, kept, red, count) =
            reduce_plan(x.shape(), &self.axes, self.keepdims, self.noop)?;
        let mut out = Output::new(&self.gpu, shape)?;
        let n = out.len();
        if n > 0 {
            let xv = f32_view(x)?;
            let mut yv = out.view()?;
            let f = self.gpu.function("reduce_f32")?;
            let (n64, c64) = (n as i64, count as i64);
            let mut launch = self.gpu.stream.launch_builder(&f);
            launch
                .arg(&xv)
                .arg(&mut yv)
                .arg(&n64)
                .arg(&c64)
                .arg(&self.code)
                .arg(&kept)
                .arg(&red);
            // SAFETY: reduce_f32 writes y[0..n) and reads x at the kept
            // offset plus each reduced offset, both inside x's shape.
            unsafe { launch.launch(launch_for(n)) }.map_err(|e| failed("reduction kernel", e))?;
        }
        Ok(out.finish())
    }
}

pub(crate) fn create(
    node: &Node,
    info: &KernelInfo<'_>,
    gpu: &Arc<Gpu>,
) -> Result<Box<dyn Kernel>> {
    let code = OPS
        .iter()
        .position(|&o| o == node.op_type)
        .ok_or_else(|| Error::NotSupported(format!("CUDA reduction {}", node.op_type)))?
        as i32;
    let axes = match node.input(1) {
        Some(_) => host_constant(info, 1, &node.op_type)?
            .as_slice::<i64>()?
            .to_vec(),
        None => node
            .get_ints("axes")?
            .map(<[i64]>::to_vec)
            .unwrap_or_default(),
    };
    Ok(boxed(Reduce {
        gpu: gpu.clone(),
        code,
        axes,
        keepdims: node.int_or("keepdims", 1)? != 0,
        noop: node.int_or("noop_with_empty_axes", 0)? != 0,
        name: node.op_type.clone(),
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn plans_split_kept_and_reduced_axes() {
        let (out, _, _, count) = reduce_plan(&[2, 3, 4], &[1], true, false).unwrap();
        assert_eq!((out, count), (vec![2, 1, 4], 3));
        let (out, _, _, count) = reduce_plan(&[2, 3, 4], &[-1, 0], false, false).unwrap();
        assert_eq!((out, count), (vec![3], 8));
        let (out, _, _, count) = reduce_plan(&[2, 3], &[], false, false).unwrap();
        assert_eq!((out, count), (vec![], 6));
        let (out, _, _, count) = reduce_plan(&[2, 3], &[], true, true).unwrap();
        assert_eq!((out, count), (vec![2, 3], 1));
        assert!(reduce_plan(&[2], &[3], true, false).is_err());
    }
}

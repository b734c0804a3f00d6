//! Slice (constant starts/ends/axes/steps, through the strided gather),
//! Concat (one block copy per input) and Gather along an axis (indices
//! checked on the host), for any 4-byte element type.

use std::sync::Arc;

use cudarc::driver::PushKernelArg;
use oxrt_core::device::DeviceTensor;
use oxrt_core::shape::normalize_axis;
use oxrt_core::{DeviceMemory, Error, Kernel, KernelInfo, Node, Result, Tensor};

use super::{boxed, first, host_constant, launch_for, GpuKernel, Strides};
use crate::gpu::{failed, Gpu};
use crate::memory::{buffer, byte_len, device_tensor, words, words_mut, CudaMemory};

/// The operators of this family.
pub(crate) const OPS: &[&str] = &["Slice", "Concat", "Gather"];

/// Output shape, first element and per-axis strides of a slice of `shape`
/// (numpy semantics: clamped bounds, negative steps).
pub(crate) fn slice_plan(
    shape: &[usize],
    starts: &[i64],
    ends: &[i64],
    axes: &[i64],
    steps: &[i64],
) -> Result<(Vec<usize>, i64, Vec<i64>)> {
    let rank = shape.len();
    let dense = super::dense_strides(shape);
    let mut out = shape.to_vec();
    let mut strides = dense.clone();
    let mut base = 0i64;
    for (k, &axis) in axes.iter().enumerate() {
        let a = normalize_axis(axis, rank)?;
        let dim = shape[a] as i64;
        let step = steps.get(k).copied().unwrap_or(1);
        if step == 0 {
            return Err(Error::invalid("Slice steps must not be 0"));
        }
        let norm = |v: i64| if v < 0 { v + dim } else { v };
        let (lo, hi) = if step > 0 { (0, dim) } else { (-1, dim - 1) };
        let start = norm(
            *starts
                .get(k)
                .ok_or_else(|| Error::invalid("Slice: fewer starts than axes"))?,
        )
        .clamp(lo, hi);
        let end = norm(
            *ends
                .get(k)
                .ok_or_else(|| Error::invalid("Slice: fewer ends than axes"))?,
        )
        .clamp(lo, hi);
        let len = if step > 0 {
            (end - start + step - 1).div_euclid(step).max(0)
        } else {
            (start - end - step - 1).div_euclid(-step).max(0)
        };
        out[a] = len as usize;
        if len > 0 {
            base += start * dense[a];
        }
        strides[a] = dense[a] * step;
    }
    Ok((out, base, strides))
}

struct Slice {
    gpu: Arc<Gpu>,
    starts: Vec<i64>,
    ends: Vec<i64>,
    axes: Option<Vec<i64>>,
    steps: Vec<i64>,
}

impl GpuKernel for Slice {
    fn op(&self) -> &str {
        "Slice"
    }

    fn run(&self, inputs: &[Option<&DeviceTensor>]) -> Result<DeviceTensor> {
        let x = first(inputs, "Slice")?;
        let axes: Vec<i64> = match &self.axes {
            Some(a) => a.clone(),
            None => (0..self.starts.len() as i64).collect(),
        };
        let (shape, base, strides) =
            slice_plan(x.shape(), &self.starts, &self.ends, &axes, &self.steps)?;
        let table = Strides::gather(&shape, &strides)?;
        let n: usize = shape.iter().product();
        let mut bytes = self.gpu.alloc(byte_len(x.dtype(), &shape)?)?;
        if n > 0 {
            let xv = words(x)?;
            let mut yv = words_mut(&mut bytes, n)?;
            let f = self.gpu.function("gather_u32")?;
            let n64 = n as i64;
            let mut launch = self.gpu.stream.launch_builder(&f);
            launch
                .arg(&xv)
                .arg(&mut yv)
                .arg(&n64)
                .arg(&base)
                .arg(&table);
            // SAFETY: gather_u32 writes y[0..n) and reads x at base plus the
            // strided offsets `slice_plan` keeps inside the input.
            unsafe { launch.launch(launch_for(n)) }.map_err(|e| failed("slice kernel", e))?;
        }
        Ok(device_tensor(x.dtype(), shape, bytes))
    }
}

struct Concat {
    gpu: Arc<Gpu>,
    axis: i64,
    constants: super::Constants,
}

impl GpuKernel for Concat {
    fn op(&self) -> &str {
        "Concat"
    }

    fn run(&self, inputs: &[Option<&DeviceTensor>]) -> Result<DeviceTensor> {
        let parts: Vec<&DeviceTensor> = (0..inputs.len())
            .map(|i| self.constants.required(inputs, i, "Concat"))
            .collect::<Result<_>>()?;
        let head = parts
            .first()
            .ok_or_else(|| Error::invalid("Concat needs an input"))?;
        let rank = head.shape().len();
        let axis = normalize_axis(self.axis, rank)?;
        let mut shape = head.shape().to_vec();
        shape[axis] = 0;
        for p in &parts {
            let s = p.shape();
            let fits = s.len() == rank
                && p.dtype() == head.dtype()
                && (0..rank).all(|d| d == axis || s[d] == head.shape()[d]);
            if !fits {
                return Err(Error::invalid(format!(
                    "Concat: input {s:?} does not fit {:?} along axis {axis}",
                    head.shape()
                )));
            }
            shape[axis] += s[axis];
        }
        let outer: usize = shape[..axis].iter().product();
        let inner: usize = shape[axis + 1..].iter().product();
        let n: usize = shape.iter().product();
        let mut bytes = self.gpu.alloc(byte_len(head.dtype(), &shape)?)?;
        if n > 0 {
            let mut yv = words_mut(&mut bytes, n)?;
            let f = self.gpu.function("concat_u32")?;
            let dst_stride = (shape[axis] * inner) as i64;
            let mut offset = 0i64;
            for p in &parts {
                let chunk = (p.shape()[axis] * inner) as i64;
                if chunk > 0 && outer > 0 {
                    let xv = words(p)?;
                    let outer64 = outer as i64;
                    let mut launch = self.gpu.stream.launch_builder(&f);
                    launch
                        .arg(&xv)
                        .arg(&mut yv)
                        .arg(&outer64)
                        .arg(&chunk)
                        .arg(&dst_stride)
                        .arg(&offset);
                    // SAFETY: concat_u32 reads the input's outer x chunk
                    // values and writes them at block offsets inside the
                    // output (offset + chunk <= dst_stride per block).
                    unsafe { launch.launch(launch_for(outer * chunk as usize)) }
                        .map_err(|e| failed("concat kernel", e))?;
                }
                offset += chunk;
            }
        }
        Ok(device_tensor(head.dtype(), shape, bytes))
    }
}

struct Gather {
    gpu: Arc<Gpu>,
    axis: i64,
    memory: CudaMemory,
    constants: super::Constants,
}

impl GpuKernel for Gather {
    fn op(&self) -> &str {
        "Gather"
    }

    fn run(&self, inputs: &[Option<&DeviceTensor>]) -> Result<DeviceTensor> {
        let x = self.constants.required(inputs, 0, "Gather")?;
        let idx = self.constants.required(inputs, 1, "Gather")?;
        let axis = normalize_axis(self.axis, x.shape().len())?;
        let dim = x.shape()[axis] as i64;
        // Indices are few: checked and made non-negative on the host.
        let host = self
            .memory
            .download(idx)?
            .0
            .to_f64_vec()
            .ok_or_else(|| Error::invalid("Gather indices must be integers"))?;
        let mut checked = Vec::with_capacity(host.len());
        for v in host {
            let i = v as i64;
            let j = if i < 0 { i + dim } else { i };
            if !(0..dim).contains(&j) {
                return Err(Error::invalid(format!(
                    "Gather index {i} is out of range for axis {axis} of size {dim}"
                )));
            }
            checked.push(j);
        }
        let idx_dev = self
            .memory
            .upload(&Tensor::from_vec(vec![checked.len()], checked)?)?
            .0;
        let s = x.shape();
        let (outer, inner): (usize, usize) =
            (s[..axis].iter().product(), s[axis + 1..].iter().product());
        let mut shape = s[..axis].to_vec();
        shape.extend(idx.shape());
        shape.extend(&s[axis + 1..]);
        let count: usize = idx.shape().iter().product();
        let n = outer * count * inner;
        let mut bytes = self.gpu.alloc(byte_len(x.dtype(), &shape)?)?;
        if n > 0 {
            let xv = words(x)?;
            // SAFETY: the index buffer holds `count` i64 values.
            let iv = unsafe { buffer(&idx_dev)?.bytes.transmute::<i64>(count) }
                .ok_or_else(|| Error::invalid("CUDA buffer too small"))?;
            let mut yv = words_mut(&mut bytes, n)?;
            let f = self.gpu.function("gather_axis_u32")?;
            let (o64, d64, c64, i64_) = (outer as i64, dim, count as i64, inner as i64);
            let mut launch = self.gpu.stream.launch_builder(&f);
            launch
                .arg(&xv)
                .arg(&iv)
                .arg(&mut yv)
                .arg(&o64)
                .arg(&d64)
                .arg(&c64)
                .arg(&i64_);
            // SAFETY: gather_axis_u32 writes y[0..n) and reads x at indices
            // checked above to lie in 0..dim.
            unsafe { launch.launch(launch_for(n)) }.map_err(|e| failed("gather kernel", e))?;
        }
        Ok(device_tensor(x.dtype(), shape, bytes))
    }
}

/// Integers of constant input `i`.
fn constant_ints(info: &KernelInfo<'_>, i: usize, op: &str) -> Result<Vec<i64>> {
    Ok(host_constant(info, i, op)?.as_slice::<i64>()?.to_vec())
}

pub(crate) fn create(
    node: &Node,
    info: &KernelInfo<'_>,
    gpu: &Arc<Gpu>,
) -> Result<Box<dyn Kernel>> {
    Ok(match node.op_type.as_str() {
        "Slice" => {
            let (starts, ends, axes, steps) = if info.node.opset < 10 {
                let ints = |name: &str| node.get_ints(name).map(|v| v.map(<[i64]>::to_vec));
                (
                    ints("starts")?.unwrap_or_default(),
                    ints("ends")?.unwrap_or_default(),
                    ints("axes")?,
                    Vec::new(),
                )
            } else {
                let optional = |i: usize| -> Result<Option<Vec<i64>>> {
                    node.input(i)
                        .map(|_| constant_ints(info, i, "Slice"))
                        .transpose()
                };
                (
                    constant_ints(info, 1, "Slice")?,
                    constant_ints(info, 2, "Slice")?,
                    optional(3)?,
                    optional(4)?.unwrap_or_default(),
                )
            };
            boxed(Slice {
                gpu: gpu.clone(),
                starts,
                ends,
                axes,
                steps,
            })
        }
        "Concat" => boxed(Concat {
            gpu: gpu.clone(),
            axis: node.int_or("axis", 0)?,
            constants: super::Constants::upload(gpu, info, node.inputs.len())?,
        }),
        _ => boxed(Gather {
            gpu: gpu.clone(),
            axis: node.int_or("axis", 0)?,
            memory: CudaMemory { gpu: gpu.clone() },
            constants: super::Constants::upload(gpu, info, 2)?,
        }),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn slice_plans_clamp_and_walk_backwards() {
        // x[1:3, ::-2] of a 4 x 5.
        let (shape, base, strides) =
            slice_plan(&[4, 5], &[1, -1], &[3, i64::MIN], &[0, 1], &[1, -2]).unwrap();
        assert_eq!(shape, [2, 3]);
        assert_eq!(base, 5 + 4);
        assert_eq!(strides, [5, -2]);
        // Out-of-range bounds clamp; an empty slice.
        let (shape, _, _) = slice_plan(&[4], &[2], &[100], &[0], &[]).unwrap();
        assert_eq!(shape, [2]);
        let (shape, _, _) = slice_plan(&[4], &[3], &[1], &[-1], &[1]).unwrap();
        assert_eq!(shape, [0]);
        assert!(slice_plan(&[4], &[0], &[1], &[0], &[0]).is_err());
    }
}

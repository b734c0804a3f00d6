//! Reshape, Flatten, Squeeze, Unsqueeze and Identity relabel their input's
//! device buffer under a new shape (no copy); Transpose gathers through a
//! stride table (`gather_u32`, any 4-byte element type).

use std::sync::Arc;

use cudarc::driver::PushKernelArg;
use oxrt_core::device::DeviceTensor;
use oxrt_core::infer::{flatten_axis, reshape_shape, squeeze_shape, unsqueeze_shape};
use oxrt_core::{Error, Kernel, KernelInfo, Node, Result};

use super::{boxed, first, host_constant, launch_for, GpuKernel, Strides};
use crate::gpu::{failed, Gpu};
use crate::memory::{byte_len, device_tensor, relabel, words, words_mut};

/// The layout operators.
pub(crate) const OPS: &[&str] = &[
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Identity",
    "Transpose",
];

/// How the output shape follows from the input's.
enum Relabel {
    Reshape { target: Vec<i64>, allowzero: bool },
    Flatten(i64),
    Squeeze(Option<Vec<i64>>),
    Unsqueeze(Vec<i64>),
    Identity,
    Transpose(Option<Vec<usize>>),
}

struct Layout {
    gpu: Arc<Gpu>,
    op: Relabel,
}

impl Layout {
    fn shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let bad = |what: &str| Error::invalid(format!("{what} does not fit input shape {input:?}"));
        Ok(match &self.op {
            Relabel::Reshape { target, allowzero } => reshape_shape(input, target, *allowzero)
                .ok_or_else(|| bad(&format!("Reshape to {target:?}")))?,
            Relabel::Flatten(axis) => {
                let a = flatten_axis(*axis, input.len())?;
                vec![input[..a].iter().product(), input[a..].iter().product()]
            }
            Relabel::Squeeze(axes) => squeeze_shape(input, axes.as_deref())
                .ok_or_else(|| bad(&format!("Squeeze axes {axes:?}")))?,
            Relabel::Unsqueeze(axes) => unsqueeze_shape(input, axes)
                .ok_or_else(|| bad(&format!("Unsqueeze axes {axes:?}")))?,
            Relabel::Identity | Relabel::Transpose(_) => input.to_vec(),
        })
    }

    fn transpose(&self, x: &DeviceTensor, perm: &[usize]) -> Result<DeviceTensor> {
        let s = x.shape();
        let mut sorted = perm.to_vec();
        sorted.sort_unstable();
        if sorted != (0..s.len()).collect::<Vec<_>>() {
            return Err(Error::invalid(format!(
                "perm {perm:?} is not a permutation of 0..{}",
                s.len()
            )));
        }
        if x.dtype().host_size() != 4 {
            return Err(Error::NotSupported(format!(
                "Transpose of {} on CUDA",
                x.dtype()
            )));
        }
        let strides = Strides::transpose(s, perm)?;
        let out_shape: Vec<usize> = perm.iter().map(|&p| s[p]).collect();
        let n: usize = out_shape.iter().product();
        let mut bytes = self.gpu.alloc(byte_len(x.dtype(), &out_shape)?)?;
        if n > 0 {
            let xv = words(x)?;
            let mut yv = words_mut(&mut bytes, n)?;
            let f = self.gpu.function("gather_u32")?;
            let (n64, base) = (n as i64, 0i64);
            let mut launch = self.gpu.stream.launch_builder(&f);
            launch
                .arg(&xv)
                .arg(&mut yv)
                .arg(&n64)
                .arg(&base)
                .arg(&strides);
            // SAFETY: gather_u32(const unsigned*, unsigned*, long long,
            // long long, Strides) writes y[0..n) and reads x at offsets
            // inside its shape (a permutation of the output's).
            unsafe { launch.launch(launch_for(n)) }.map_err(|e| failed("transpose kernel", e))?;
        }
        Ok(device_tensor(x.dtype(), out_shape, bytes))
    }
}

impl GpuKernel for Layout {
    fn op(&self) -> &str {
        "a layout operator"
    }

    fn run(&self, inputs: &[Option<&DeviceTensor>]) -> Result<DeviceTensor> {
        let x = first(inputs, "a layout operator")?;
        let y = match &self.op {
            Relabel::Transpose(perm) => {
                let reverse: Vec<usize> = (0..x.shape().len()).rev().collect();
                self.transpose(x, perm.as_deref().unwrap_or(&reverse))?
            }
            _ => relabel(x, self.shape(x.shape())?)?,
        };
        Ok(y)
    }
}

/// Integers of constant input `i`, or of attribute `attr` (older opsets).
fn ints(node: &Node, info: &KernelInfo<'_>, i: usize, attr: &str) -> Result<Option<Vec<i64>>> {
    if node.input(i).is_some() {
        let t = host_constant(info, i, &node.op_type)?;
        return Ok(Some(t.as_slice::<i64>()?.to_vec()));
    }
    Ok(node.get_ints(attr)?.map(<[i64]>::to_vec))
}

pub(crate) fn create(
    node: &Node,
    info: &KernelInfo<'_>,
    gpu: &Arc<Gpu>,
) -> Result<Box<dyn Kernel>> {
    let op = match node.op_type.as_str() {
        "Reshape" => Relabel::Reshape {
            target: ints(node, info, 1, "shape")?
                .ok_or_else(|| Error::invalid("Reshape needs a shape"))?,
            allowzero: node.int_or("allowzero", 0)? != 0,
        },
        "Flatten" => Relabel::Flatten(node.int_or("axis", 1)?),
        "Squeeze" => Relabel::Squeeze(ints(node, info, 1, "axes")?),
        "Unsqueeze" => Relabel::Unsqueeze(
            ints(node, info, 1, "axes")?.ok_or_else(|| Error::invalid("Unsqueeze needs axes"))?,
        ),
        "Transpose" => Relabel::Transpose(
            node.get_ints("perm")?
                .map(|p| {
                    p.iter()
                        .map(|&v| {
                            usize::try_from(v)
                                .map_err(|_| Error::invalid(format!("perm value {v}")))
                        })
                        .collect()
                })
                .transpose()?,
        ),
        _ => Relabel::Identity,
    };
    Ok(boxed(Layout {
        gpu: gpu.clone(),
        op,
    }))
}

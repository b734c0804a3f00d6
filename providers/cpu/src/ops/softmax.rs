//! Softmax, LogSoftmax and Hardmax, with the opset < 13 "flatten to 2-D"
//! semantics.

use oxrt_core::shape::normalize_axis;
use oxrt_core::{Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor};

use crate::kernel::{required, unsupported_type, with_float_type, Real};
use crate::ops::activation::FLOATS;

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Mode {
    Softmax,
    LogSoftmax,
    /// 1 at the first maximum of each lane, 0 elsewhere.
    Hardmax,
}

struct Softmax {
    axis: i64,
    mode: Mode,
    /// Opset < 13: normalize over all dims from `axis` on, as one row.
    coerce_2d: bool,
}

/// Softmax over `len`-long lanes that are `stride` apart, `outer` blocks of them.
pub(crate) fn softmax<T: Real>(
    x: &[T],
    outer: usize,
    len: usize,
    stride: usize,
    mode: Mode,
) -> Vec<T> {
    if mode == Mode::Softmax && stride == 1 && len > 0 {
        let mut y = oxrt_core::arena::copied(x);
        if let Some(rows) = crate::kernel::as_f32_mut(&mut y) {
            // Contiguous f32 rows: the vectorized kernel, rows in parallel.
            use rayon::prelude::*;
            rows.par_chunks_mut(len)
                .with_min_len((4096 / len).max(1))
                .for_each(crate::fast_math::softmax);
            return y;
        }
        oxrt_core::arena::recycle(y);
    }
    let mut y = oxrt_core::arena::filled(x.len(), T::zero());
    for o in 0..outer {
        for s in 0..stride {
            let base = o * len * stride + s;
            let idx = |i: usize| base + i * stride;
            let max = (0..len).map(|i| x[idx(i)]).fold(T::neg_infinity(), T::max);
            if mode == Mode::Hardmax {
                if let Some(first) = (0..len).find(|&i| x[idx(i)] == max) {
                    y[idx(first)] = T::one();
                }
                continue;
            }
            // Exponentials round to T; their sum is accumulated wide and
            // rounded once (as numpy sums half precision).
            let mut wide = 0.0f64;
            for i in 0..len {
                let e = (x[idx(i)] - max).exp();
                y[idx(i)] = e;
                wide += e.to_f64().unwrap_or(f64::NAN);
            }
            let sum = T::from(wide).unwrap_or(T::nan());
            for i in 0..len {
                y[idx(i)] = if mode == Mode::LogSoftmax {
                    x[idx(i)] - max - sum.ln()
                } else {
                    y[idx(i)] / sum
                };
            }
        }
    }
    y
}

impl Kernel for Softmax {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let shape = x.shape();
        let (outer, len, stride) = if shape.is_empty() {
            (1, 1, 1)
        } else if self.coerce_2d {
            let axis = normalize_axis(self.axis, shape.len())?;
            (
                shape[..axis].iter().product(),
                shape[axis..].iter().product(),
                1,
            )
        } else {
            let axis = normalize_axis(self.axis, shape.len())?;
            (
                shape[..axis].iter().product(),
                shape[axis],
                shape[axis + 1..].iter().product(),
            )
        };
        with_float_type!(x.dtype(), T => {
            let y = softmax(x.as_slice::<T>()?, outer, len, stride, self.mode);
            Ok(vec![Tensor::from_vec(shape, y)?])
        }, _ => Err(unsupported_type("Softmax", x)))
    }
}

fn create(node: &Node, info: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let coerce_2d = info.node.opset < 13;
    let axis = node.int_or("axis", if coerce_2d { 1 } else { -1 })?;
    Ok(Box::new(Softmax {
        axis,
        mode: match node.op_type.as_str() {
            "LogSoftmax" => Mode::LogSoftmax,
            "Hardmax" => Mode::Hardmax,
            _ => Mode::Softmax,
        },
        coerce_2d,
    }))
}

/// Registers Softmax, LogSoftmax and Hardmax.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new("Softmax", 1.., FLOATS, create));
    reg.add(KernelDef::new("LogSoftmax", 1.., FLOATS, create));
    reg.add(KernelDef::new("Hardmax", 1.., FLOATS, create));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_sum_to_one_and_log_matches() {
        let x = [1.0f64, 2.0, 3.0, 1000.0, 1000.0, 1000.0];
        let y = softmax(&x, 2, 3, 1, Mode::Softmax);
        let e: Vec<f64> = [1.0f64, 2.0, 3.0].iter().map(|v| v.exp()).collect();
        let s: f64 = e.iter().sum();
        for i in 0..3 {
            assert!((y[i] - e[i] / s).abs() < 1e-12);
            assert!((y[3 + i] - 1.0 / 3.0).abs() < 1e-12);
        }
        let ly = softmax(&x, 2, 3, 1, Mode::LogSoftmax);
        for i in 0..6 {
            assert!((ly[i] - y[i].ln()).abs() < 1e-12);
        }
        // Along axis 0 of a 2x2: lanes are stride 2 apart.
        let y = softmax(&[0.0f64, 1.0, 0.0, 3.0], 1, 2, 2, Mode::Softmax);
        assert!((y[0] - 0.5).abs() < 1e-12);
        assert!((y[1] - 1.0 / (1.0 + 2f64.exp())).abs() < 1e-12);
        // Hardmax marks the first maximum only.
        let h = softmax(&[3.0f32, 1.0, 3.0, 0.0, 2.0, 1.0], 2, 3, 1, Mode::Hardmax);
        assert_eq!(h, vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
    }
}

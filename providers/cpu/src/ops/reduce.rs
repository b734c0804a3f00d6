//! Reductions: ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceProd,
//! ReduceL1, ReduceL2, ReduceLogSum, ReduceLogSumExp, ReduceSumSquare
//! (axes as attribute or input, keepdims, noop_with_empty_axes), and
//! ArgMax/ArgMin (select_last_index).

use oxrt_core::shape::normalize_axis;
use oxrt_core::{
    DataType as D, Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor,
};

use crate::broadcast::{offsets, strides};
use crate::kernel::{optional, read_ints, required, unsupported_type, with_numeric_type, Arith};
use crate::ops::cast::cast;
use crate::ops::elementwise::NUMERIC;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Red {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    L1,
    L2,
    LogSum,
    LogSumExp,
    SumSquare,
}

/// The element types reductions work on directly (f16/bf16 go through f32).
trait Reducible: Arith + PartialOrd + num_traits::NumCast + num_traits::Bounded {}
impl<T: Arith + PartialOrd + num_traits::NumCast + num_traits::Bounded> Reducible for T {}

fn to_f64<T: Reducible>(v: T) -> f64 {
    num_traits::cast(v).unwrap_or(f64::NAN)
}

fn from_f64<T: Reducible>(v: f64) -> T {
    num_traits::cast(v).unwrap_or_else(|| {
        if v > 0.0 {
            T::max_value()
        } else {
            T::min_value()
        }
    })
}

/// Output shape and, for every input element, the output element it
/// reduces into.
fn reduction_map(shape: &[usize], reduced: &[bool], keepdims: bool) -> (Vec<usize>, Vec<usize>) {
    let kept: Vec<usize> = shape
        .iter()
        .zip(reduced)
        .map(|(&d, &r)| if r { 1 } else { d })
        .collect();
    let out_strides = strides(&kept);
    let s: Vec<isize> = out_strides
        .iter()
        .zip(reduced)
        .map(|(&st, &r)| if r { 0 } else { st as isize })
        .collect();
    let map = offsets(shape, &s, 0);
    let out_shape = if keepdims {
        kept
    } else {
        shape
            .iter()
            .zip(reduced)
            .filter(|(_, &r)| !r)
            .map(|(&d, _)| d)
            .collect()
    };
    (out_shape, map)
}

fn reduce<T: Reducible>(red: Red, x: &[T], map: &[usize], n_out: usize, count: usize) -> Vec<T> {
    let fold = |init: T, f: &dyn Fn(T, T) -> T| {
        let mut acc = vec![init; n_out];
        for (&v, &o) in x.iter().zip(map) {
            acc[o] = f(acc[o], v);
        }
        acc
    };
    #[allow(clippy::eq_op)]
    let nan = |v: T| v != v;
    let abs = |v: T| if v < T::zero() { T::zero().sub(v) } else { v };
    match red {
        Red::Sum => fold(T::zero(), &|a, v| a.add(v)),
        Red::Prod => fold(T::one(), &|a, v| a.mul(v)),
        Red::L1 => fold(T::zero(), &|a, v| a.add(abs(v))),
        Red::SumSquare => fold(T::zero(), &|a, v| a.add(v.mul(v))),
        Red::Max => {
            let lowest = num_traits::cast(f64::NEG_INFINITY).unwrap_or(T::min_value());
            fold(lowest, &|a, v| if nan(a) || a >= v { a } else { v })
        }
        Red::Min => {
            let highest = num_traits::cast(f64::INFINITY).unwrap_or(T::max_value());
            fold(highest, &|a, v| if nan(a) || a <= v { a } else { v })
        }
        Red::Mean => {
            let n = to_f64(T::one()) * count as f64;
            let sums = fold(T::zero(), &|a, v| a.add(v));
            sums.into_iter().map(|s| from_f64(to_f64(s) / n)).collect()
        }
        Red::L2 => fold(T::zero(), &|a, v| a.add(v.mul(v)))
            .into_iter()
            .map(|s| from_f64(to_f64(s).sqrt()))
            .collect(),
        Red::LogSum => fold(T::zero(), &|a, v| a.add(v))
            .into_iter()
            .map(|s| from_f64(to_f64(s).ln()))
            .collect(),
        Red::LogSumExp => {
            let mut max = vec![f64::NEG_INFINITY; n_out];
            for (&v, &o) in x.iter().zip(map) {
                max[o] = max[o].max(to_f64(v));
            }
            let mut sum = vec![0.0f64; n_out];
            for (&v, &o) in x.iter().zip(map) {
                sum[o] += (to_f64(v) - max[o]).exp();
            }
            max.iter()
                .zip(sum)
                .map(|(&m, s)| from_f64(if m.is_finite() { m + s.ln() } else { m }))
                .collect()
        }
    }
}

struct Reduce {
    red: Red,
    name: String,
    keepdims: bool,
    noop_with_empty_axes: bool,
    /// Axes from the attribute (older opsets); otherwise input 1.
    attr_axes: Option<Vec<i64>>,
}

impl Reduce {
    fn reduced_axes(&self, inputs: &[Option<&Tensor>], rank: usize) -> Result<Vec<bool>> {
        let axes = match &self.attr_axes {
            Some(a) => a.clone(),
            None => match optional(inputs, 1) {
                Some(t) => read_ints(t, "axes")?,
                None => Vec::new(),
            },
        };
        if axes.is_empty() {
            return Ok(vec![!self.noop_with_empty_axes; rank]);
        }
        let mut mask = vec![false; rank];
        for &a in &axes {
            mask[normalize_axis(a, rank)?] = true;
        }
        Ok(mask)
    }
}

impl Kernel for Reduce {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let mask = self.reduced_axes(inputs, x.rank())?;
        let (out_shape, map) = reduction_map(x.shape(), &mask, self.keepdims);
        let n_out = out_shape.iter().product();
        let count = x
            .shape()
            .iter()
            .zip(&mask)
            .filter(|(_, &r)| r)
            .map(|(&d, _)| d)
            .product();
        // Half-precision and bool inputs are reduced in a wider type.
        let (work, back) = match x.dtype() {
            D::F16 | D::BF16 => (cast(x, D::F32)?, Some(x.dtype())),
            D::Bool => (cast(x, D::U8)?, Some(D::Bool)),
            _ => (x.clone(), None),
        };
        let out = with_numeric_type!(work.dtype(), T => {
            Tensor::from_vec(out_shape, reduce(self.red, work.as_slice::<T>()?, &map, n_out, count))?
        }, _ => return Err(unsupported_type(&self.name, x)));
        Ok(vec![match back {
            Some(d) => cast(&out, d)?,
            None => out,
        }])
    }
}

fn create(node: &Node, info: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let red = match node.op_type.as_str() {
        "ReduceSum" => Red::Sum,
        "ReduceMean" => Red::Mean,
        "ReduceMax" => Red::Max,
        "ReduceMin" => Red::Min,
        "ReduceProd" => Red::Prod,
        "ReduceL1" => Red::L1,
        "ReduceL2" => Red::L2,
        "ReduceLogSum" => Red::LogSum,
        "ReduceLogSumExp" => Red::LogSumExp,
        "ReduceSumSquare" => Red::SumSquare,
        other => return Err(Error::NotSupported(format!("reduction {other}"))),
    };
    // ReduceSum takes axes as an input from opset 13, the others from 18.
    let axes_as_input = info.node.opset >= if red == Red::Sum { 13 } else { 18 };
    let attr_axes = if axes_as_input {
        None
    } else {
        Some(
            node.get_ints("axes")?
                .map(<[i64]>::to_vec)
                .unwrap_or_default(),
        )
    };
    Ok(Box::new(Reduce {
        red,
        name: node.op_type.clone(),
        keepdims: node.int_or("keepdims", 1)? != 0,
        noop_with_empty_axes: node.int_or("noop_with_empty_axes", 0)? != 0,
        attr_axes,
    }))
}

/// ArgMax / ArgMin along one axis; ties go to the first index unless
/// `select_last_index`.
struct ArgExtreme {
    max: bool,
    axis: i64,
    keepdims: bool,
    last: bool,
}

fn arg_extreme<T: PartialOrd + Copy>(
    x: &[T],
    outer: usize,
    len: usize,
    inner: usize,
    max: bool,
    last: bool,
) -> Vec<i64> {
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| x[(o * len + k) * inner + i];
            let mut best = 0usize;
            for k in 1..len {
                let (v, b) = (at(k), at(best));
                let better = if max { v > b } else { v < b };
                if better || (last && v == b) {
                    best = k;
                }
            }
            out.push(best as i64);
        }
    }
    out
}

impl Kernel for ArgExtreme {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let shape = x.shape();
        let axis = normalize_axis(self.axis, shape.len())?;
        let (outer, len, inner) = (
            shape[..axis].iter().product(),
            shape[axis],
            shape[axis + 1..].iter().product(),
        );
        if len == 0 {
            return Err(Error::invalid(format!(
                "ArgMax/ArgMin over axis {axis} of size 0"
            )));
        }
        let idx = with_numeric_type!(x.dtype(), T => {
            arg_extreme(x.as_slice::<T>()?, outer, len, inner, self.max, self.last)
        }, _ => return Err(unsupported_type(if self.max { "ArgMax" } else { "ArgMin" }, x)));
        let mut out_shape = shape.to_vec();
        if self.keepdims {
            out_shape[axis] = 1;
        } else {
            out_shape.remove(axis);
        }
        Ok(vec![Tensor::from_vec(out_shape, idx)?])
    }
}

fn create_arg(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(ArgExtreme {
        max: node.op_type == "ArgMax",
        axis: node.int_or("axis", 0)?,
        keepdims: node.int_or("keepdims", 1)? != 0,
        last: node.int_or("select_last_index", 0)? != 0,
    }))
}

/// Registers the reductions and ArgMax/ArgMin.
pub fn register(reg: &mut KernelRegistry) {
    for op in [
        "ReduceSum",
        "ReduceMean",
        "ReduceProd",
        "ReduceL1",
        "ReduceL2",
        "ReduceLogSum",
        "ReduceLogSumExp",
        "ReduceSumSquare",
    ] {
        reg.add(KernelDef::new(op, 1.., NUMERIC, create));
    }
    for op in ["ReduceMax", "ReduceMin"] {
        reg.add(KernelDef::new(op, 1.., NUMERIC, create));
        reg.add(KernelDef::new(op, 20.., &[D::Bool], create));
    }
    for op in ["ArgMax", "ArgMin"] {
        reg.add(KernelDef::new(op, 1.., NUMERIC, create_arg));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Runs a reduction over attribute axes and checks the output type.
    fn reduce_tensor<T: oxrt_core::Element>(
        red: Red,
        x: &Tensor,
        axes: &[i64],
        keepdims: bool,
    ) -> Tensor {
        let k = Reduce {
            red,
            name: format!("{red:?}"),
            keepdims,
            noop_with_empty_axes: false,
            attr_axes: Some(axes.to_vec()),
        };
        let out = k.compute(&[Some(x)]).unwrap().remove(0);
        assert_eq!(out.dtype(), T::DTYPE);
        out
    }

    #[test]
    fn reductions_over_axes() {
        let x = Tensor::from_vec(vec![2, 3], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let s = reduce_tensor::<f32>(Red::Sum, &x, &[1], true);
        assert_eq!(s.shape(), &[2, 1]);
        assert_eq!(s.as_slice::<f32>().unwrap(), &[6.0, 15.0]);
        let m = reduce_tensor::<f32>(Red::Mean, &x, &[0], false);
        assert_eq!(m.as_slice::<f32>().unwrap(), &[2.5, 3.5, 4.5]);
        let all = reduce_tensor::<f32>(Red::Prod, &x, &[], false);
        assert_eq!(all.shape(), &[] as &[usize]);
        assert_eq!(all.as_slice::<f32>().unwrap(), &[720.0]);
        let l2 = reduce_tensor::<f32>(Red::L2, &x, &[-1], false);
        assert!((l2.as_slice::<f32>().unwrap()[0] - 14f32.sqrt()).abs() < 1e-6);
        let lse = reduce_tensor::<f32>(Red::LogSumExp, &x, &[1], false);
        let want = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln() as f32;
        assert!((lse.as_slice::<f32>().unwrap()[0] - want).abs() < 1e-6);
    }

    #[test]
    fn empty_sets_and_bool() {
        let e = Tensor::from_vec(vec![2, 0], Vec::<f32>::new()).unwrap();
        let mx = reduce_tensor::<f32>(Red::Max, &e, &[1], false);
        assert_eq!(mx.as_slice::<f32>().unwrap(), &[f32::NEG_INFINITY; 2]);
        let s = reduce_tensor::<f32>(Red::Sum, &e, &[1], false);
        assert_eq!(s.as_slice::<f32>().unwrap(), &[0.0; 2]);
        let ei = Tensor::from_vec(vec![0], Vec::<i32>::new()).unwrap();
        let mn = reduce_tensor::<i32>(Red::Min, &ei, &[0], false);
        assert_eq!(mn.as_slice::<i32>().unwrap(), &[i32::MAX]);
        let b = Tensor::from_vec(vec![2, 2], vec![true, false, false, false]).unwrap();
        let any = reduce_tensor::<bool>(Red::Max, &b, &[1], false);
        assert_eq!(any.as_slice::<bool>().unwrap(), &[true, false]);
    }

    #[test]
    fn arg_extremes_with_ties() {
        let x = [2i32, 5, 5, 1, 1, 0];
        assert_eq!(arg_extreme(&x, 2, 3, 1, true, false), vec![1, 0]);
        assert_eq!(arg_extreme(&x, 2, 3, 1, true, true), vec![2, 1]);
        assert_eq!(arg_extreme(&x, 2, 3, 1, false, false), vec![0, 2]);
        // Axis 0 of a 2x3: lanes are 3 apart.
        assert_eq!(arg_extreme(&x, 1, 2, 3, false, false), vec![1, 1, 1]);
    }
}

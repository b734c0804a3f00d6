//! Selection by mask or position: Compress, NonZero and OneHot.

use oxrt_core::shape::normalize_axis;
use oxrt_core::{
    DataType as D, Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor,
};

use crate::broadcast::select_index;
use crate::kernel::{ensure_allocatable, required, take, unsupported_type, with_numeric_type};
use crate::ops::cast::cast;

/// Compress: the slices along `axis` (or elements of the flattened input)
/// whose condition is true.
struct Compress {
    axis: Option<i64>,
}

impl Kernel for Compress {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let (x, cond) = (required(inputs, 0)?, required(inputs, 1)?);
        let cond = cond.as_slice::<bool>()?;
        let x = match self.axis {
            Some(_) => x.clone(),
            None => x.clone().reshape(vec![x.len()])?,
        };
        let axis = normalize_axis(self.axis.unwrap_or(0), x.rank())?;
        let dim = x.shape()[axis];
        if cond.len() > dim {
            return Err(Error::invalid(format!(
                "condition has {} values for an axis of size {dim}",
                cond.len()
            )));
        }
        let mut sel: Vec<Vec<usize>> = x.shape().iter().map(|&d| (0..d).collect()).collect();
        sel[axis] = (0..cond.len()).filter(|&i| cond[i]).collect();
        let shape: Vec<usize> = sel.iter().map(Vec::len).collect();
        let idx = select_index(x.shape(), &sel);
        Ok(vec![take(&x, shape, &idx)?])
    }
}

/// NonZero: the coordinates of non-zero elements, `[rank, count]` int64.
struct NonZero;

impl Kernel for NonZero {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let nz: Vec<bool> = match x.dtype() {
            D::Bool => x.as_slice::<bool>()?.to_vec(),
            dt => with_numeric_type!(dt, T => {
                let zero = <T as crate::kernel::Arith>::zero();
                x.as_slice::<T>()?.iter().map(|&v| v != zero).collect()
            }, _ => return Err(unsupported_type("NonZero", x))),
        };
        let rank = x.rank();
        let hits: Vec<usize> = (0..nz.len()).filter(|&i| nz[i]).collect();
        let mut out = vec![0i64; rank * hits.len()];
        for (k, &flat) in hits.iter().enumerate() {
            let mut rem = flat;
            for d in (0..rank).rev() {
                let n = x.shape()[d];
                out[d * hits.len() + k] = (rem % n) as i64;
                rem /= n;
            }
        }
        Ok(vec![Tensor::from_vec(vec![rank, hits.len()], out)?])
    }
}

/// OneHot: `values[1]` at each index along a new axis of size `depth`,
/// `values[0]` elsewhere.
struct OneHot {
    axis: i64,
}

impl Kernel for OneHot {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let (indices, depth, values) = (
            required(inputs, 0)?,
            required(inputs, 1)?,
            required(inputs, 2)?,
        );
        let depth = cast(depth, D::F64)?.into_vec::<f64>()?;
        let depth = match depth.as_slice() {
            [d] if *d >= 1.0 && d.is_finite() => *d as usize,
            other => {
                return Err(Error::invalid(format!(
                    "depth must be one positive value, got {other:?}"
                )))
            }
        };
        if values.len() != 2 {
            return Err(Error::invalid(format!(
                "values must hold [off, on], got {} elements",
                values.len()
            )));
        }
        let mut out_shape = indices.shape().to_vec();
        out_shape.push(depth);
        ensure_allocatable(&out_shape, "OneHot output")?;
        let idx = cast(indices, D::I64)?.into_vec::<i64>()?;
        let out_rank = indices.rank() + 1;
        let axis = normalize_axis(self.axis, out_rank)?;
        let outer: usize = indices.shape()[..axis].iter().product();
        let inner: usize = indices.shape()[axis..].iter().product();
        let mut pick = vec![0usize; outer * depth * inner];
        for o in 0..outer {
            for i in 0..inner {
                let v = idx[o * inner + i];
                let v = if v < 0 { v + depth as i64 } else { v };
                if (0..depth as i64).contains(&v) {
                    pick[(o * depth + v as usize) * inner + i] = 1;
                }
            }
        }
        let mut shape = indices.shape().to_vec();
        shape.insert(axis, depth);
        Ok(vec![take(values, shape, &pick)?])
    }
}

fn create(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    Ok(match node.op_type.as_str() {
        "Compress" => Box::new(Compress {
            axis: node.get_int("axis")?,
        }),
        "NonZero" => Box::new(NonZero),
        _ => Box::new(OneHot {
            axis: node.int_or("axis", -1)?,
        }),
    })
}

/// Registers Compress, NonZero and OneHot.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new("Compress", 9.., &[], create));
    reg.add(KernelDef::new("NonZero", 9.., &[], create));
    reg.add(KernelDef::new("OneHot", 9.., &[], create));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn compress_nonzero_onehot() {
        let x = Tensor::from_vec(vec![2, 3], vec![1i32, 0, 3, 0, 5, 0]).unwrap();
        let c = Tensor::from_vec(vec![2], vec![false, true]).unwrap();
        let y = Compress { axis: Some(1) }
            .compute(&[Some(&x), Some(&c)])
            .unwrap();
        assert_eq!(y[0].shape(), &[2, 1]);
        assert_eq!(y[0].as_slice::<i32>().unwrap(), &[0, 5]);
        let y = Compress { axis: None }
            .compute(&[Some(&x), Some(&c)])
            .unwrap();
        assert_eq!(y[0].as_slice::<i32>().unwrap(), &[0]);
        let nz = NonZero.compute(&[Some(&x)]).unwrap();
        assert_eq!(nz[0].shape(), &[2, 3]);
        assert_eq!(nz[0].as_slice::<i64>().unwrap(), &[0, 0, 1, 0, 2, 1]);
        let idx = Tensor::from_vec(vec![3], vec![0i64, -1, 5]).unwrap();
        let depth = Tensor::scalar(3.0f32);
        let vals = Tensor::from_vec(vec![2], vec![0i32, 9]).unwrap();
        let oh = OneHot { axis: -1 }
            .compute(&[Some(&idx), Some(&depth), Some(&vals)])
            .unwrap();
        assert_eq!(oh[0].shape(), &[3, 3]);
        assert_eq!(
            oh[0].as_slice::<i32>().unwrap(),
            &[9, 0, 0, 0, 0, 9, 0, 0, 0]
        );
        let oh = OneHot { axis: 0 }
            .compute(&[Some(&idx), Some(&depth), Some(&vals)])
            .unwrap();
        assert_eq!(
            oh[0].as_slice::<i32>().unwrap(),
            &[9, 0, 0, 0, 0, 0, 0, 9, 0]
        );
    }
}

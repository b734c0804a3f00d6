//! Operators that make tensors from shapes and scalars: ConstantOfShape,
//! Range, EyeLike, Size, and Trilu (triangle masks).

use oxrt_core::{
    tensor::checked_numel, DataType as D, Error, Kernel, KernelDef, KernelInfo, KernelRegistry,
    Node, Result, Tensor,
};

use crate::broadcast::OUTSIDE;
use crate::kernel::{
    gather_fill, optional, read_ints, read_scalar_int, required, take, unsupported_type,
    with_numeric_type, Arith,
};
use crate::ops::cast::cast;

/// A `Vec` with room for `n` elements, or a clear error if that cannot be had.
fn try_vec<T>(n: usize, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        Error::invalid(format!(
            "{what} would need {n} elements, more than memory allows"
        ))
    })?;
    Ok(v)
}

/// ConstantOfShape: a tensor of the given shape filled with `value`
/// (a one-element tensor attribute, f32 0 by default).
struct ConstantOfShape {
    value: Tensor,
}

impl Kernel for ConstantOfShape {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let shape: Vec<usize> = read_ints(required(inputs, 0)?, "shape")?
            .into_iter()
            .map(|d| {
                usize::try_from(d)
                    .map_err(|_| Error::invalid(format!("negative dimension {d} in shape")))
            })
            .collect::<Result<_>>()?;
        let n = checked_numel(&shape)
            .ok_or_else(|| Error::invalid(format!("shape {shape:?} has too many elements")))?;
        let mut idx = try_vec(n, "ConstantOfShape")?;
        idx.resize(n, 0usize);
        Ok(vec![take(&self.value, shape, &idx)?])
    }
}

fn create_constant_of_shape(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let value = match node.get_tensor("value")? {
        Some(t) if t.len() == 1 => t.as_ref().clone().reshape(vec![1])?,
        Some(t) => {
            return Err(Error::invalid(format!(
                "attribute 'value' must hold one element, got shape {:?}",
                t.shape()
            )))
        }
        None => Tensor::from_vec(vec![1], vec![0.0f32])?,
    };
    Ok(Box::new(ConstantOfShape { value }))
}

/// Range(start, limit, delta): `start + i * delta` while short of `limit`.
struct Range;

impl Kernel for Range {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let start = required(inputs, 0)?;
        let scalar = |i: usize| -> Result<f64> {
            let t = required(inputs, i)?;
            if t.dtype() != start.dtype() || t.len() != 1 {
                return Err(Error::invalid(format!(
                    "Range inputs must be scalars of one type; input #{i} is {} of shape {:?}",
                    t.dtype(),
                    t.shape()
                )));
            }
            t.to_f64_vec()
                .and_then(|v| v.first().copied())
                .ok_or_else(|| unsupported_type("Range", t))
        };
        let (s, l, d) = (scalar(0)?, scalar(1)?, scalar(2)?);
        if d == 0.0 {
            return Err(Error::invalid("Range delta must not be 0"));
        }
        let n = ((l - s) / d).ceil().max(0.0);
        if !n.is_finite() || n > usize::MAX as f64 {
            return Err(Error::invalid(format!(
                "Range({s}, {l}, {d}) has no finite length"
            )));
        }
        let n = n as usize;
        with_numeric_type!(start.dtype(), T => {
            let first = start.as_slice::<T>()?[0];
            let step = required(inputs, 2)?.as_slice::<T>()?[0];
            let mut v: Vec<T> = try_vec(n, "Range")?;
            let mut cur = first;
            for _ in 0..n {
                v.push(cur);
                cur = cur.add(step);
            }
            Ok(vec![Tensor::from_vec(vec![n], v)?])
        }, _ => Err(unsupported_type("Range", start)))
    }
}

/// EyeLike: ones on diagonal `k` of a 2-D tensor shaped like the input.
struct EyeLike {
    dtype: Option<D>,
    k: i64,
}

impl Kernel for EyeLike {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let &[rows, cols] = x.shape() else {
            return Err(Error::invalid(format!(
                "EyeLike needs a 2-D input, got shape {:?}",
                x.shape()
            )));
        };
        let mut v = vec![0u8; rows * cols];
        for r in 0..rows {
            let c = r as i64 + self.k;
            if (0..cols as i64).contains(&c) {
                v[r * cols + c as usize] = 1;
            }
        }
        let ones = Tensor::from_vec(vec![rows, cols], v)?;
        Ok(vec![cast(&ones, self.dtype.unwrap_or(x.dtype()))?])
    }
}

fn create_eye_like(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let dtype = node
        .get_int("dtype")?
        .map(|c| {
            i32::try_from(c)
                .ok()
                .and_then(D::from_onnx)
                .ok_or_else(|| Error::invalid(format!("dtype {c} is not an ONNX element type")))
        })
        .transpose()?;
    Ok(Box::new(EyeLike {
        dtype,
        k: node.int_or("k", 0)?,
    }))
}

/// Size: the number of elements, as an int64 scalar.
struct Size;

impl Kernel for Size {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        Ok(vec![Tensor::scalar(required(inputs, 0)?.len() as i64)])
    }
}

/// Trilu: keeps the upper (or lower) triangle of the last two axes from
/// diagonal `k` on, zeroes the rest.
struct Trilu {
    upper: bool,
}

impl Kernel for Trilu {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let k = match optional(inputs, 1) {
            Some(_) => read_scalar_int(inputs, 1, "k")?,
            None => 0,
        };
        let r = x.rank();
        if r < 2 {
            return Err(Error::invalid(format!(
                "Trilu needs at least 2 dims, got shape {:?}",
                x.shape()
            )));
        }
        let (rows, cols) = (x.shape()[r - 2], x.shape()[r - 1]);
        let idx: Vec<usize> = (0..x.len())
            .map(|i| {
                let (row, col) = ((i / cols) % rows.max(1), i % cols.max(1));
                let d = col as i64 - row as i64;
                let keep = if self.upper { d >= k } else { d <= k };
                if keep {
                    i
                } else {
                    OUTSIDE
                }
            })
            .collect();
        let zero = Tensor::zeros(x.dtype(), vec![1])?;
        Ok(vec![gather_fill(x, x.shape().to_vec(), idx, &zero)?])
    }
}

fn create(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    Ok(match node.op_type.as_str() {
        "Range" => Box::new(Range),
        "Size" => Box::new(Size),
        _ => Box::new(Trilu {
            upper: node.int_or("upper", 1)? != 0,
        }),
    })
}

/// Registers ConstantOfShape, Range, EyeLike, Size and Trilu.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new(
        "ConstantOfShape",
        9..,
        &[],
        create_constant_of_shape,
    ));
    reg.add(KernelDef::new("Range", 11.., &[], create));
    reg.add(KernelDef::new("EyeLike", 9.., &[], create_eye_like));
    reg.add(KernelDef::new("Size", 1.., &[], create));
    reg.add(KernelDef::new("Trilu", 14.., &[], create));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn constant_range_eye() {
        let k = ConstantOfShape {
            value: Tensor::from_vec(vec![1], vec![7i32]).unwrap(),
        };
        let shape = Tensor::from_vec(vec![2], vec![2i64, 3]).unwrap();
        let y = k.compute(&[Some(&shape)]).unwrap();
        assert_eq!(y[0].as_slice::<i32>().unwrap(), &[7; 6]);
        let bad = Tensor::from_vec(vec![2], vec![-1i64, 3]).unwrap();
        assert!(k.compute(&[Some(&bad)]).is_err());
        let (s, l, d) = (
            Tensor::scalar(10i32),
            Tensor::scalar(4i32),
            Tensor::scalar(-3i32),
        );
        let r = Range.compute(&[Some(&s), Some(&l), Some(&d)]).unwrap();
        assert_eq!(r[0].as_slice::<i32>().unwrap(), &[10, 7]);
        let (s, l, d) = (
            Tensor::scalar(1.0f32),
            Tensor::scalar(2.0f32),
            Tensor::scalar(0.0f32),
        );
        assert!(Range.compute(&[Some(&s), Some(&l), Some(&d)]).is_err());
        let x = Tensor::zeros(D::F32, vec![2, 3]).unwrap();
        let e = EyeLike {
            dtype: Some(D::I64),
            k: 1,
        }
        .compute(&[Some(&x)])
        .unwrap();
        assert_eq!(e[0].as_slice::<i64>().unwrap(), &[0, 1, 0, 0, 0, 1]);
    }

    #[test]
    fn trilu_masks_triangles() {
        let x = Tensor::from_vec(vec![3, 3], (1..=9).collect::<Vec<i64>>()).unwrap();
        let up = Trilu { upper: true }.compute(&[Some(&x)]).unwrap();
        assert_eq!(
            up[0].as_slice::<i64>().unwrap(),
            &[1, 2, 3, 0, 5, 6, 0, 0, 9]
        );
        let k = Tensor::scalar(-1i64);
        let low = Trilu { upper: false }
            .compute(&[Some(&x), Some(&k)])
            .unwrap();
        assert_eq!(
            low[0].as_slice::<i64>().unwrap(),
            &[0, 0, 0, 4, 0, 0, 7, 8, 0]
        );
    }
}

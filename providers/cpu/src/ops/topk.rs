//! TopK: the k largest (or smallest) values along an axis and their
//! indices; equal values keep their input order.

use std::cmp::Ordering;

use oxrt_core::shape::normalize_axis;
use oxrt_core::{Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor};

use crate::kernel::{read_scalar_int, required, take, unsupported_type, with_numeric_type};
use crate::ops::elementwise::NUMERIC;

struct TopK {
    /// `k` from the attribute (opset 1), else input 1.
    attr_k: Option<i64>,
    axis: i64,
    largest: bool,
}

/// Indices of the top `k` of each lane, best first (`sorted` output order).
fn top_indices<T: PartialOrd + Copy>(
    x: &[T],
    outer: usize,
    len: usize,
    inner: usize,
    k: usize,
    largest: bool,
) -> Vec<usize> {
    let mut picks = vec![0usize; outer * k * inner];
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| (o * len + j) * inner + i;
            let mut lane: Vec<usize> = (0..len).collect();
            lane.sort_by(|&a, &b| {
                let c = x[at(a)].partial_cmp(&x[at(b)]).unwrap_or(Ordering::Equal);
                if largest {
                    c.reverse()
                } else {
                    c
                }
            });
            for (r, &j) in lane.iter().take(k).enumerate() {
                picks[(o * k + r) * inner + i] = at(j);
            }
        }
    }
    picks
}

impl Kernel for TopK {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let k = match self.attr_k {
            Some(k) => k,
            None => read_scalar_int(inputs, 1, "K")?,
        };
        let axis = normalize_axis(self.axis, x.rank())?;
        let s = x.shape();
        let len = s[axis];
        let k = usize::try_from(k)
            .ok()
            .filter(|&k| k <= len)
            .ok_or_else(|| {
                Error::invalid(format!("K = {k} is out of range for an axis of size {len}"))
            })?;
        let (outer, inner): (usize, usize) =
            (s[..axis].iter().product(), s[axis + 1..].iter().product());
        let picks = with_numeric_type!(x.dtype(), T => top_indices(x.as_slice::<T>()?, outer, len, inner, k, self.largest),
            _ => return Err(unsupported_type("TopK", x)));
        let mut shape = s.to_vec();
        shape[axis] = k;
        let indices: Vec<i64> = picks.iter().map(|&p| ((p / inner) % len) as i64).collect();
        Ok(vec![
            take(x, shape.clone(), &picks)?,
            Tensor::from_vec(shape, indices)?,
        ])
    }
}

fn create(node: &Node, info: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let attr_k = if info.node.opset < 10 {
        Some(
            node.get_int("k")?
                .ok_or_else(|| Error::invalid("attribute 'k' is required"))?,
        )
    } else {
        None
    };
    // `sorted = 0` allows any order; the sorted one is among them.
    Ok(Box::new(TopK {
        attr_k,
        axis: node.int_or("axis", -1)?,
        largest: node.int_or("largest", 1)? != 0,
    }))
}

/// Registers TopK.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new("TopK", 1.., NUMERIC, create));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn largest_smallest_and_ties() {
        let x =
            Tensor::from_vec(vec![2, 4], vec![3.0f32, 1.0, 3.0, 2.0, 0.0, 5.0, 4.0, 5.0]).unwrap();
        let k = Tensor::from_vec(vec![1], vec![2i64]).unwrap();
        let top = TopK {
            attr_k: None,
            axis: -1,
            largest: true,
        };
        let out = top.compute(&[Some(&x), Some(&k)]).unwrap();
        assert_eq!(out[0].as_slice::<f32>().unwrap(), &[3.0, 3.0, 5.0, 5.0]);
        assert_eq!(out[1].as_slice::<i64>().unwrap(), &[0, 2, 1, 3]);
        let low = TopK {
            attr_k: Some(1),
            axis: 0,
            largest: false,
        };
        let out = low.compute(&[Some(&x)]).unwrap();
        assert_eq!(out[0].as_slice::<f32>().unwrap(), &[0.0, 1.0, 3.0, 2.0]);
        assert_eq!(out[1].as_slice::<i64>().unwrap(), &[1, 0, 0, 0]);
        let too_many = Tensor::from_vec(vec![1], vec![5i64]).unwrap();
        assert!(top.compute(&[Some(&x), Some(&too_many)]).is_err());
    }
}

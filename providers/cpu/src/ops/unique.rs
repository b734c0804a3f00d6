//! Unique: distinct elements (or slices along an axis), sorted or in order
//! of first occurrence, with first indices, inverse indices and counts.

use std::cmp::Ordering;

use oxrt_core::shape::normalize_axis;
use oxrt_core::{
    DataType as D, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor,
};

use crate::kernel::{required, take, unsupported_type, with_numeric_type};
use crate::ops::layout::transpose;

/// The distinct rows of `data` (`n` rows of `len` elements): for each, its
/// first row index, in output order; plus each row's output position and
/// each output row's count.
fn distinct_rows<T: PartialOrd>(
    data: &[T],
    n: usize,
    len: usize,
    sorted: bool,
) -> (Vec<usize>, Vec<i64>, Vec<i64>) {
    let row = |i: usize| &data[i * len..(i + 1) * len];
    let cmp = |a: usize, b: usize| {
        row(a)
            .iter()
            .zip(row(b))
            .map(|(x, y)| x.partial_cmp(y).unwrap_or(Ordering::Equal))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    };
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| cmp(a, b)); // stable: each group starts with its first occurrence
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for &i in &order {
        match groups.last_mut() {
            Some(g) if cmp(g[0], i).is_eq() => g.push(i),
            _ => groups.push(vec![i]),
        }
    }
    if !sorted {
        groups.sort_by_key(|g| g[0]);
    }
    let mut inverse = vec![0i64; n];
    for (u, g) in groups.iter().enumerate() {
        for &i in g {
            inverse[i] = u as i64;
        }
    }
    let counts = groups.iter().map(|g| g.len() as i64).collect();
    (groups.iter().map(|g| g[0]).collect(), inverse, counts)
}

struct Unique {
    axis: Option<i64>,
    sorted: bool,
}

impl Kernel for Unique {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        // Rows are contiguous once the axis is moved to the front.
        let (rows, axis) = match self.axis {
            None => (x.clone().reshape(vec![x.len()])?, 0),
            Some(a) => {
                let axis = normalize_axis(a, x.rank())?;
                let mut perm: Vec<usize> = (0..x.rank()).collect();
                perm.remove(axis);
                perm.insert(0, axis);
                (transpose(x, &perm)?, axis)
            }
        };
        let n = rows.shape().first().copied().unwrap_or(1);
        let len = rows.len().checked_div(n).unwrap_or(0);
        let (first, inverse, counts) = match rows.dtype() {
            D::String => distinct_rows(rows.as_strings()?, n, len, self.sorted),
            D::Bool => distinct_rows(rows.as_slice::<bool>()?, n, len, self.sorted),
            dt => {
                with_numeric_type!(dt, T => distinct_rows(rows.as_slice::<T>()?, n, len, self.sorted),
                _ => return Err(unsupported_type("Unique", x)))
            }
        };
        let idx: Vec<usize> = first.iter().flat_map(|&r| r * len..(r + 1) * len).collect();
        let mut shape = rows.shape().to_vec();
        if let Some(d) = shape.first_mut() {
            *d = first.len();
        }
        let y = take(&rows, shape, &idx)?;
        let y = match self.axis {
            None => y,
            Some(_) => {
                // Move the axis back: inverse of "axis to the front".
                let mut perm: Vec<usize> = (1..x.rank()).collect();
                perm.insert(axis, 0);
                transpose(&y, &perm)?
            }
        };
        let k = first.len();
        Ok(vec![
            y,
            Tensor::from_vec(vec![k], first.iter().map(|&i| i as i64).collect())?,
            Tensor::from_vec(vec![inverse.len()], inverse)?,
            Tensor::from_vec(vec![k], counts)?,
        ])
    }
}

fn create(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(Unique {
        axis: node.get_int("axis")?,
        sorted: node.int_or("sorted", 1)? != 0,
    }))
}

/// Registers Unique.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new("Unique", 11.., &[], create));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn flat_sorted_and_unsorted() {
        let x = Tensor::from_vec(vec![6], vec![2.0f32, 1.0, 1.0, 3.0, 4.0, 3.0]).unwrap();
        let out = Unique {
            axis: None,
            sorted: false,
        }
        .compute(&[Some(&x)])
        .unwrap();
        assert_eq!(out[0].as_slice::<f32>().unwrap(), &[2.0, 1.0, 3.0, 4.0]);
        assert_eq!(out[1].as_slice::<i64>().unwrap(), &[0, 1, 3, 4]);
        assert_eq!(out[2].as_slice::<i64>().unwrap(), &[0, 1, 1, 2, 3, 2]);
        assert_eq!(out[3].as_slice::<i64>().unwrap(), &[1, 2, 2, 1]);
        let out = Unique {
            axis: None,
            sorted: true,
        }
        .compute(&[Some(&x)])
        .unwrap();
        assert_eq!(out[0].as_slice::<f32>().unwrap(), &[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(out[1].as_slice::<i64>().unwrap(), &[1, 0, 3, 4]);
    }

    #[test]
    fn along_an_axis() {
        // Columns of [[1,0,1],[2,5,2]]: col0 == col2.
        let x = Tensor::from_vec(vec![2, 3], vec![1i32, 0, 1, 2, 5, 2]).unwrap();
        let out = Unique {
            axis: Some(1),
            sorted: true,
        }
        .compute(&[Some(&x)])
        .unwrap();
        assert_eq!(out[0].shape(), &[2, 2]);
        assert_eq!(out[0].as_slice::<i32>().unwrap(), &[0, 1, 5, 2]);
        assert_eq!(out[2].as_slice::<i64>().unwrap(), &[1, 0, 1]);
    }
}

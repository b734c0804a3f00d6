//! Gather along an axis with int32/int64 indices (negative indices count
//! from the end).

use oxrt_core::shape::normalize_axis;
use oxrt_core::{Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor};

use crate::kernel::{read_ints, required};

struct Gather {
    axis: i64,
}

fn gather(data: &Tensor, indices: &Tensor, axis: i64) -> Result<Tensor> {
    let ds = data.shape();
    let axis = normalize_axis(axis, ds.len())?;
    let dim = ds[axis];
    let raw = read_ints(indices, "indices")?;
    let mut idx = Vec::with_capacity(raw.len());
    for &i in &raw {
        let j = if i < 0 { i + dim as i64 } else { i };
        if j < 0 || j >= dim as i64 {
            return Err(Error::invalid(format!(
                "index {i} is out of bounds for axis {axis} of size {dim}"
            )));
        }
        idx.push(j as usize);
    }
    let outer: usize = ds[..axis].iter().product();
    let inner: usize = ds[axis + 1..].iter().product();
    let mut flat = Vec::with_capacity(outer * idx.len() * inner);
    for o in 0..outer {
        for &j in &idx {
            let start = (o * dim + j) * inner;
            flat.extend(start..start + inner);
        }
    }
    let mut shape = ds[..axis].to_vec();
    shape.extend(indices.shape());
    shape.extend(&ds[axis + 1..]);
    Tensor::from_storage(data.dtype(), shape, data.storage().gather(&flat)?)
}

impl Kernel for Gather {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        Ok(vec![gather(
            required(inputs, 0)?,
            required(inputs, 1)?,
            self.axis,
        )?])
    }
}

fn create(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(Gather {
        axis: node.int_or("axis", 0)?,
    }))
}

/// Registers Gather.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new("Gather", 1.., &[], create));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn gathers_rows_and_columns() {
        let data = Tensor::from_vec(vec![3, 2], vec![1.0f32, 1.2, 2.3, 3.4, 4.5, 5.7]).unwrap();
        let idx = Tensor::from_vec(vec![2, 2], vec![0i64, 1, 1, 2]).unwrap();
        let y = gather(&data, &idx, 0).unwrap();
        assert_eq!(y.shape(), &[2, 2, 2]);
        assert_eq!(
            y.as_slice::<f32>().unwrap(),
            &[1.0, 1.2, 2.3, 3.4, 2.3, 3.4, 4.5, 5.7]
        );
        let idx = Tensor::from_vec(vec![1], vec![-1i32]).unwrap();
        let y = gather(&data, &idx, 1).unwrap();
        assert_eq!(y.as_slice::<f32>().unwrap(), &[1.2, 3.4, 5.7]);
        let bad = Tensor::from_vec(vec![1], vec![3i64]).unwrap();
        let err = gather(&data, &bad, 0).unwrap_err();
        assert!(err.to_string().contains("out of bounds"), "{err}");
    }
}

//! Scatter, ScatterElements and ScatterND: a copy of the data with updates
//! written (or combined: add, mul, max, min) at indexed positions.

use oxrt_core::shape::normalize_axis;
use oxrt_core::{
    Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Storage, Tensor,
};

use crate::kernel::{required, unsupported_type, with_numeric_type, Arith};
use crate::ops::gather::{element_targets, nd_targets};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Reduction {
    None,
    Add,
    Mul,
    Max,
    Min,
}

/// Writes `updates[k]` into a copy of `data` at flat position `dest[k]`,
/// later writes winning (reduction none) or combined with what is there.
fn scatter(data: &Tensor, updates: &Tensor, dest: &[usize], red: Reduction) -> Result<Tensor> {
    if updates.dtype() != data.dtype() {
        return Err(Error::invalid(format!(
            "updates are {}, data is {}",
            updates.dtype(),
            data.dtype()
        )));
    }
    if dest.len() != updates.len() {
        return Err(Error::invalid(format!(
            "{} updates for {} indexed positions",
            updates.len(),
            dest.len()
        )));
    }
    if red == Reduction::None {
        // Any element type: gather from data and updates laid end to end.
        let mut src: Vec<usize> = (0..data.len()).collect();
        for (k, &d) in dest.iter().enumerate() {
            src[d] = data.len() + k;
        }
        let both = Storage::concat(&[data.storage(), updates.storage()])?;
        return Tensor::from_storage(data.dtype(), data.shape().to_vec(), both.gather(&src)?);
    }
    with_numeric_type!(data.dtype(), T => {
        let mut out = data.as_slice::<T>()?.to_vec();
        for (&d, &u) in dest.iter().zip(updates.as_slice::<T>()?) {
            let cur = out[d];
            out[d] = match red {
                Reduction::Add => cur.add(u),
                Reduction::Mul => cur.mul(u),
                Reduction::Max => if u > cur { u } else { cur },
                Reduction::Min => if u < cur { u } else { cur },
                Reduction::None => u,
            };
        }
        Tensor::from_vec(data.shape(), out)
    }, _ => Err(unsupported_type("Scatter with a reduction", data)))
}

struct Scatter {
    /// ScatterND when `None`, else the ScatterElements axis.
    axis: Option<i64>,
    red: Reduction,
}

impl Kernel for Scatter {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let (data, indices, updates) = (
            required(inputs, 0)?,
            required(inputs, 1)?,
            required(inputs, 2)?,
        );
        let dest = match self.axis {
            Some(axis) => {
                if updates.shape() != indices.shape() {
                    return Err(Error::invalid(format!(
                        "updates of shape {:?} for indices of shape {:?}",
                        updates.shape(),
                        indices.shape()
                    )));
                }
                element_targets(data.shape(), indices, normalize_axis(axis, data.rank())?)?
            }
            None => {
                let t = nd_targets(data.shape(), indices, 0)?;
                let mut want = t.tuple_shape.clone();
                let q = indices.shape().last().copied().unwrap_or(0);
                want.extend(&data.shape()[q..]);
                if updates.shape() != want.as_slice() {
                    return Err(Error::invalid(format!(
                        "updates of shape {:?}, expected {want:?}",
                        updates.shape()
                    )));
                }
                t.starts.iter().flat_map(|&s| s..s + t.slice).collect()
            }
        };
        Ok(vec![scatter(data, updates, &dest, self.red)?])
    }
}

fn create(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let red = match node.string_or("reduction", "none")? {
        "none" => Reduction::None,
        "add" => Reduction::Add,
        "mul" => Reduction::Mul,
        "max" => Reduction::Max,
        "min" => Reduction::Min,
        other => {
            return Err(Error::invalid(format!(
                "reduction must be none, add, mul, max or min, got '{other}'"
            )))
        }
    };
    let axis = match node.op_type.as_str() {
        "ScatterND" => None,
        _ => Some(node.int_or("axis", 0)?),
    };
    Ok(Box::new(Scatter { axis, red }))
}

/// Registers Scatter (opsets 9–10), ScatterElements and ScatterND.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new("Scatter", 9..=10, &[], create));
    reg.add(KernelDef::new("ScatterElements", 11.., &[], create));
    reg.add(KernelDef::new("ScatterND", 11.., &[], create));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn scatter_elements_and_nd() {
        let data = Tensor::from_vec(vec![2, 3], vec![0i32; 6]).unwrap();
        let idx = Tensor::from_vec(vec![1, 2], vec![2i64, 2]).unwrap();
        let upd = Tensor::from_vec(vec![1, 2], vec![5i32, 7]).unwrap();
        let k = Scatter {
            axis: Some(1),
            red: Reduction::None,
        };
        let y = k.compute(&[Some(&data), Some(&idx), Some(&upd)]).unwrap();
        assert_eq!(y[0].as_slice::<i32>().unwrap(), &[0, 0, 7, 0, 0, 0]);
        let add = Scatter {
            axis: Some(1),
            red: Reduction::Add,
        };
        let y = add.compute(&[Some(&data), Some(&idx), Some(&upd)]).unwrap();
        assert_eq!(y[0].as_slice::<i32>().unwrap(), &[0, 0, 12, 0, 0, 0]);
        // ScatterND: replace row 1.
        let rows = Tensor::from_vec(vec![1, 1], vec![-1i64]).unwrap();
        let upd = Tensor::from_vec(vec![1, 3], vec![1i32, 2, 3]).unwrap();
        let nd = Scatter {
            axis: None,
            red: Reduction::Max,
        };
        let y = nd.compute(&[Some(&data), Some(&rows), Some(&upd)]).unwrap();
        assert_eq!(y[0].as_slice::<i32>().unwrap(), &[0, 0, 0, 1, 2, 3]);
        let bad = Tensor::from_vec(vec![1, 1], vec![2i64]).unwrap();
        assert!(nd.compute(&[Some(&data), Some(&bad), Some(&upd)]).is_err());
    }
}

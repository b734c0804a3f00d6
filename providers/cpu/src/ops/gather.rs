//! Gather, GatherElements and GatherND (batch_dims), with int32/int64
//! indices; negative indices count from the end.

use oxrt_core::shape::normalize_axis;
use oxrt_core::{Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor};

use crate::broadcast::{offsets, strides};
use crate::kernel::{read_ints, required, take};

struct Gather {
    axis: i64,
}

/// `i` as a position on an axis of size `dim` (negative counts from the end).
pub fn resolve_index(i: i64, dim: usize, axis: usize) -> Result<usize> {
    let j = if i < 0 { i + dim as i64 } else { i };
    if j < 0 || j >= dim as i64 {
        return Err(Error::invalid(format!(
            "index {i} is out of bounds for axis {axis} of size {dim}"
        )));
    }
    Ok(j as usize)
}

/// For each element of `indices` (same rank as data), the flat data index
/// it addresses: its own position with the `axis` coordinate replaced.
pub fn element_targets(data_shape: &[usize], indices: &Tensor, axis: usize) -> Result<Vec<usize>> {
    let is = indices.shape();
    if is.len() != data_shape.len() {
        return Err(Error::invalid(format!(
            "indices of rank {} for data of rank {}",
            is.len(),
            data_shape.len()
        )));
    }
    let raw = read_ints(indices, "indices")?;
    let ds = strides(data_shape);
    let pos = offsets(is, &ds.iter().map(|&s| s as isize).collect::<Vec<_>>(), 0);
    let inner: usize = is[axis + 1..].iter().product();
    raw.iter()
        .zip(pos)
        .enumerate()
        .map(|(k, (&i, p))| {
            let own = (k / inner) % is[axis];
            let j = resolve_index(i, data_shape[axis], axis)?;
            Ok(p - own * ds[axis] + j * ds[axis])
        })
        .collect()
}

fn gather(data: &Tensor, indices: &Tensor, axis: i64) -> Result<Tensor> {
    let ds = data.shape();
    let axis = normalize_axis(axis, ds.len())?;
    let dim = ds[axis];
    let raw = read_ints(indices, "indices")?;
    let idx: Vec<usize> = raw
        .iter()
        .map(|&i| resolve_index(i, dim, axis))
        .collect::<Result<_>>()?;
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
    take(data, shape, &flat)
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

/// GatherElements: `out[p] = data[p with axis coordinate indices[p]]`.
struct GatherElements {
    axis: i64,
}

impl Kernel for GatherElements {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let (data, indices) = (required(inputs, 0)?, required(inputs, 1)?);
        let axis = normalize_axis(self.axis, data.rank())?;
        let idx = element_targets(data.shape(), indices, axis)?;
        Ok(vec![take(data, indices.shape().to_vec(), &idx)?])
    }
}

/// Where each index tuple of GatherND/ScatterND points: the flat offset of
/// the addressed slice in `data`, and the slice length.
pub struct NdTargets {
    /// Flat start of each addressed slice, in index-tuple order.
    pub starts: Vec<usize>,
    /// Elements per slice.
    pub slice: usize,
    /// `indices.shape[..-1]`.
    pub tuple_shape: Vec<usize>,
}

/// Resolves the index tuples of `indices` (last axis = tuple length) into
/// `data`, the first `batch_dims` axes shared.
pub fn nd_targets(data_shape: &[usize], indices: &Tensor, batch_dims: usize) -> Result<NdTargets> {
    let is = indices.shape();
    let Some((&q, tuple_shape)) = is.split_last() else {
        return Err(Error::invalid("indices must have at least one dimension"));
    };
    if batch_dims + q > data_shape.len() || batch_dims >= is.len() {
        return Err(Error::invalid(format!(
            "index tuples of length {q} with {batch_dims} batch dims do not fit data of rank {}",
            data_shape.len()
        )));
    }
    if data_shape[..batch_dims] != is[..batch_dims] {
        return Err(Error::invalid(format!(
            "batch dims of data {:?} and indices {:?} differ",
            &data_shape[..batch_dims],
            &is[..batch_dims]
        )));
    }
    let raw = read_ints(indices, "indices")?;
    let ds = strides(data_shape);
    let slice: usize = data_shape[batch_dims + q..].iter().product();
    let n_tuples: usize = tuple_shape.iter().product();
    let batch_size: usize = data_shape[..batch_dims].iter().product();
    let per_batch = (n_tuples / batch_size.max(1)).max(1);
    let batch_stride = if batch_dims == 0 {
        0
    } else {
        ds[batch_dims - 1]
    };
    let mut starts = Vec::with_capacity(n_tuples);
    for t in 0..n_tuples {
        let mut off = (t / per_batch) * batch_stride;
        for (k, &i) in raw[t * q..(t + 1) * q].iter().enumerate() {
            let axis = batch_dims + k;
            off += resolve_index(i, data_shape[axis], axis)? * ds[axis];
        }
        starts.push(off);
    }
    Ok(NdTargets {
        starts,
        slice,
        tuple_shape: tuple_shape.to_vec(),
    })
}

/// GatherND: slices of data addressed by index tuples.
struct GatherNd {
    batch_dims: usize,
}

impl Kernel for GatherNd {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let (data, indices) = (required(inputs, 0)?, required(inputs, 1)?);
        let t = nd_targets(data.shape(), indices, self.batch_dims)?;
        let idx: Vec<usize> = t.starts.iter().flat_map(|&s| s..s + t.slice).collect();
        let q = indices.shape().last().copied().unwrap_or(0);
        let mut shape = t.tuple_shape.clone();
        shape.extend(&data.shape()[self.batch_dims + q..]);
        Ok(vec![take(data, shape, &idx)?])
    }
}

fn create(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let axis = node.int_or("axis", 0)?;
    Ok(match node.op_type.as_str() {
        "GatherElements" => Box::new(GatherElements { axis }),
        "GatherND" => Box::new(GatherNd {
            batch_dims: usize::try_from(node.int_or("batch_dims", 0)?)
                .map_err(|_| Error::invalid("batch_dims must not be negative"))?,
        }),
        _ => Box::new(Gather { axis }),
    })
}

/// Registers Gather, GatherElements and GatherND.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new("Gather", 1.., &[], create));
    reg.add(KernelDef::new("GatherElements", 11.., &[], create));
    reg.add(KernelDef::new("GatherND", 11.., &[], create));
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

    #[test]
    fn gather_elements_and_nd() {
        let data = Tensor::from_vec(vec![2, 2], vec![1i32, 2, 3, 4]).unwrap();
        let idx = Tensor::from_vec(vec![2, 2], vec![0i64, 0, -1, 0]).unwrap();
        let y = GatherElements { axis: 1 }
            .compute(&[Some(&data), Some(&idx)])
            .unwrap();
        assert_eq!(y[0].as_slice::<i32>().unwrap(), &[1, 1, 4, 3]);
        let y = GatherElements { axis: 0 }
            .compute(&[Some(&data), Some(&idx)])
            .unwrap();
        assert_eq!(y[0].as_slice::<i32>().unwrap(), &[1, 2, 3, 2]);
        // GatherND: [[0,0],[1,1]] -> [1, 4]; [[1],[0]] -> rows.
        let t = Tensor::from_vec(vec![2, 2], vec![0i64, 0, 1, 1]).unwrap();
        let y = GatherNd { batch_dims: 0 }
            .compute(&[Some(&data), Some(&t)])
            .unwrap();
        assert_eq!(y[0].as_slice::<i32>().unwrap(), &[1, 4]);
        let rows = Tensor::from_vec(vec![2, 1], vec![1i64, 0]).unwrap();
        let y = GatherNd { batch_dims: 0 }
            .compute(&[Some(&data), Some(&rows)])
            .unwrap();
        assert_eq!(y[0].shape(), &[2, 2]);
        assert_eq!(y[0].as_slice::<i32>().unwrap(), &[3, 4, 1, 2]);
        // batch_dims = 1: one column index per row.
        let cols = Tensor::from_vec(vec![2, 1], vec![1i64, 0]).unwrap();
        let y = GatherNd { batch_dims: 1 }
            .compute(&[Some(&data), Some(&cols)])
            .unwrap();
        assert_eq!(y[0].as_slice::<i32>().unwrap(), &[2, 3]);
    }
}

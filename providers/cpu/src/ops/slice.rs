//! Slice (negative steps, axes; attributes before opset 10) and Split
//! (sizes as attribute or input, `num_outputs`).

use oxrt_core::shape::normalize_axis;
use oxrt_core::{Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor};

use crate::broadcast::select_index;
use crate::kernel::{optional, read_ints, required, take};

/// Positions `start, start+step, ...` an axis of size `dim` keeps, with
/// ONNX's clamping of out-of-range starts and ends.
pub fn slice_positions(dim: usize, start: i64, end: i64, step: i64) -> Result<Vec<usize>> {
    if step == 0 {
        return Err(Error::invalid("Slice step must not be 0"));
    }
    let d = dim as i64;
    let norm = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
    let (start, end) = (norm(start), norm(end));
    let (start, end) = if step > 0 {
        (start.clamp(0, d), end.clamp(0, d))
    } else {
        // A start before the first element selects nothing, as in numpy
        // (the ONNX reference slices with numpy).
        (start.clamp(-1, d - 1), end.clamp(-1, d - 1))
    };
    let mut out = Vec::new();
    let mut p = start;
    while (step > 0 && p < end) || (step < 0 && p > end) {
        out.push(p as usize);
        p += step;
    }
    Ok(out)
}

/// Slices `x`: `starts[i]..ends[i]` by `steps[i]` along `axes[i]`.
pub fn slice(
    x: &Tensor,
    starts: &[i64],
    ends: &[i64],
    axes: &[i64],
    steps: &[i64],
) -> Result<Tensor> {
    let n = starts.len();
    if ends.len() != n || axes.len() != n || steps.len() != n {
        return Err(Error::invalid(format!(
            "Slice needs starts, ends, axes and steps of one length, got {n}, {}, {} and {}",
            ends.len(),
            axes.len(),
            steps.len()
        )));
    }
    let shape = x.shape();
    let mut sel: Vec<Vec<usize>> = shape.iter().map(|&d| (0..d).collect()).collect();
    let mut seen = vec![false; shape.len()];
    for i in 0..n {
        let a = normalize_axis(axes[i], shape.len())?;
        if std::mem::replace(&mut seen[a], true) {
            return Err(Error::invalid(format!(
                "Slice axis {} is repeated",
                axes[i]
            )));
        }
        sel[a] = slice_positions(shape[a], starts[i], ends[i], steps[i])?;
    }
    let out_shape: Vec<usize> = sel.iter().map(Vec::len).collect();
    let idx = select_index(shape, &sel);
    take(x, out_shape, &idx)
}

/// Slice parameters given as attributes (opset < 10).
struct SliceAttrs {
    starts: Vec<i64>,
    ends: Vec<i64>,
    axes: Option<Vec<i64>>,
}

struct Slice {
    attrs: Option<SliceAttrs>,
}

impl Kernel for Slice {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let (starts, ends, axes, steps) = match &self.attrs {
            Some(a) => (a.starts.clone(), a.ends.clone(), a.axes.clone(), None),
            None => {
                let get = |i: usize, what: &str| {
                    optional(inputs, i).map(|t| read_ints(t, what)).transpose()
                };
                (
                    read_ints(required(inputs, 1)?, "starts")?,
                    read_ints(required(inputs, 2)?, "ends")?,
                    get(3, "axes")?,
                    get(4, "steps")?,
                )
            }
        };
        let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
        let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
        Ok(vec![slice(x, &starts, &ends, &axes, &steps)?])
    }
}

fn create_slice(node: &Node, info: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let attrs = if info.node.opset < 10 {
        let req = |name: &str| -> Result<Vec<i64>> {
            node.get_ints(name)?
                .map(<[i64]>::to_vec)
                .ok_or_else(|| Error::invalid(format!("attribute '{name}' is required")))
        };
        Some(SliceAttrs {
            starts: req("starts")?,
            ends: req("ends")?,
            axes: node.get_ints("axes")?.map(<[i64]>::to_vec),
        })
    } else {
        None
    };
    Ok(Box::new(Slice { attrs }))
}

/// Split along `axis` into given sizes or equal parts.
struct Split {
    axis: i64,
    /// Sizes from the attribute (opset < 13).
    attr_split: Option<Vec<i64>>,
    /// Outputs wanted: `num_outputs` (opset 18) or the node's output count.
    outputs: usize,
    /// `num_outputs` given: the last part may be smaller.
    uneven: bool,
}

impl Kernel for Split {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let axis = normalize_axis(self.axis, x.rank())?;
        let dim = x.shape()[axis];
        let sizes: Vec<usize> = match self
            .attr_split
            .clone()
            .map(Ok)
            .or_else(|| optional(inputs, 1).map(|t| read_ints(t, "split")))
        {
            Some(s) => {
                let s = s?;
                let sizes: Vec<usize> = s
                    .iter()
                    .map(|&v| {
                        usize::try_from(v)
                            .map_err(|_| Error::invalid(format!("negative split size {v}")))
                    })
                    .collect::<Result<_>>()?;
                if sizes.iter().sum::<usize>() != dim {
                    return Err(Error::invalid(format!(
                        "split sizes {s:?} do not add up to dimension {axis} of size {dim}"
                    )));
                }
                sizes
            }
            None => {
                let n = self.outputs.max(1);
                if self.uneven {
                    let chunk = dim.div_ceil(n);
                    (0..n)
                        .map(|i| chunk.min(dim.saturating_sub(i * chunk)))
                        .collect()
                } else if dim % n != 0 {
                    return Err(Error::invalid(format!(
                        "dimension {axis} of size {dim} does not split into {n} equal parts"
                    )));
                } else {
                    vec![dim / n; n]
                }
            }
        };
        let mut start = 0i64;
        let mut out = Vec::with_capacity(sizes.len());
        for s in sizes {
            let end = start + s as i64;
            out.push(slice(x, &[start], &[end], &[axis as i64], &[1])?);
            start = end;
        }
        Ok(out)
    }
}

fn create_split(node: &Node, info: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let num_outputs = node.get_int("num_outputs")?;
    let attr_split = if info.node.opset < 13 {
        node.get_ints("split")?.map(<[i64]>::to_vec)
    } else {
        None
    };
    Ok(Box::new(Split {
        axis: node.int_or("axis", 0)?,
        attr_split,
        outputs: num_outputs.map_or(node.outputs.len(), |n| n.max(0) as usize),
        uneven: num_outputs.is_some(),
    }))
}

/// Registers Slice and Split.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new("Slice", 1.., &[], create_slice));
    reg.add(KernelDef::new("Split", 1.., &[], create_split));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn positions_clamp_like_onnx() {
        assert_eq!(slice_positions(5, 1, 3, 1).unwrap(), vec![1, 2]);
        assert_eq!(
            slice_positions(5, -1, i64::MIN, -1).unwrap(),
            vec![4, 3, 2, 1, 0]
        );
        assert_eq!(slice_positions(5, 100, -100, -2).unwrap(), vec![4, 2, 0]);
        assert_eq!(slice_positions(5, 0, i64::MAX, 3).unwrap(), vec![0, 3]);
        assert!(slice_positions(5, 3, 1, 1).unwrap().is_empty());
        assert!(slice_positions(1, -2, -2, -1).unwrap().is_empty());
        assert!(slice_positions(5, 0, 1, 0).is_err());
    }

    #[test]
    fn slices_and_splits() {
        let x = Tensor::from_vec(vec![2, 3], (0..6).collect::<Vec<i32>>()).unwrap();
        let s = slice(&x, &[0, -1], &[2, 0], &[0, 1], &[1, -1]).unwrap();
        assert_eq!(s.shape(), &[2, 2]);
        assert_eq!(s.as_slice::<i32>().unwrap(), &[2, 1, 5, 4]);
        let sp = Split {
            axis: 1,
            attr_split: None,
            outputs: 2,
            uneven: true,
        };
        let parts = sp.compute(&[Some(&x)]).unwrap();
        assert_eq!(parts[0].as_slice::<i32>().unwrap(), &[0, 1, 3, 4]);
        assert_eq!(parts[1].as_slice::<i32>().unwrap(), &[2, 5]);
        let even = Split {
            axis: 1,
            attr_split: None,
            outputs: 2,
            uneven: false,
        };
        assert!(even.compute(&[Some(&x)]).is_err());
    }
}

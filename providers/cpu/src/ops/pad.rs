//! Pad: constant, reflect, edge and wrap modes, negative pads (cropping),
//! and the `axes` input (opset 18); CenterCropPad.

use oxrt_core::shape::normalize_axis;
use oxrt_core::{Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor};

use crate::broadcast::{select_index, OUTSIDE};
use crate::kernel::{ensure_allocatable, gather_fill, optional, read_ints, required};
use crate::ops::cast::cast;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Constant,
    Reflect,
    Edge,
    Wrap,
}

/// Input positions of one padded axis of size `n`.
fn axis_positions(n: usize, begin: i64, end: i64, mode: Mode) -> Result<Vec<usize>> {
    let len = (n as i64).saturating_add(begin).saturating_add(end);
    if len < 0 {
        return Err(Error::invalid(format!(
            "pads {begin}, {end} crop an axis of size {n} below zero"
        )));
    }
    if n == 0 && len > 0 && mode != Mode::Constant {
        return Err(Error::invalid(format!("{mode:?} padding of an empty axis")));
    }
    let n = n as i64;
    Ok((0..len)
        .map(|k| {
            let src = k - begin;
            if (0..n).contains(&src) {
                return src as usize;
            }
            match mode {
                Mode::Constant => OUTSIDE,
                Mode::Edge => src.clamp(0, n - 1) as usize,
                Mode::Wrap => src.rem_euclid(n) as usize,
                Mode::Reflect if n == 1 => 0,
                Mode::Reflect => {
                    let period = 2 * (n - 1);
                    let m = src.rem_euclid(period);
                    (if m >= n { period - m } else { m }) as usize
                }
            }
        })
        .collect())
}

struct Pad {
    mode: Mode,
    /// pads and value from attributes (opset < 11).
    attrs: Option<(Vec<i64>, f32)>,
}

impl Kernel for Pad {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let rank = x.rank();
        let (pads, value) = match &self.attrs {
            Some((p, v)) => (p.clone(), Some(cast(&Tensor::scalar(*v), x.dtype())?)),
            None => (
                read_ints(required(inputs, 1)?, "pads")?,
                optional(inputs, 2).cloned(),
            ),
        };
        let axes: Vec<usize> = match optional(inputs, 3) {
            Some(t) => read_ints(t, "axes")?
                .into_iter()
                .map(|a| normalize_axis(a, rank))
                .collect::<Result<_>>()?,
            None => (0..rank).collect(),
        };
        if pads.len() != 2 * axes.len() {
            return Err(Error::invalid(format!(
                "pads has {} values, expected {} (begin and end for {} axes)",
                pads.len(),
                2 * axes.len(),
                axes.len()
            )));
        }
        let mut sel: Vec<Vec<usize>> = x.shape().iter().map(|&d| (0..d).collect()).collect();
        let mut padded = x.shape().to_vec();
        for (i, &a) in axes.iter().enumerate() {
            let len = (padded[a] as i64)
                .saturating_add(pads[i])
                .saturating_add(pads[i + axes.len()]);
            padded[a] = usize::try_from(len).unwrap_or(0);
        }
        ensure_allocatable(&padded, "Pad output")?;
        for (i, &a) in axes.iter().enumerate() {
            sel[a] = axis_positions(x.shape()[a], pads[i], pads[i + axes.len()], self.mode)?;
        }
        let shape: Vec<usize> = sel.iter().map(Vec::len).collect();
        let idx = select_index(x.shape(), &sel);
        let fill = match value {
            Some(v) if !v.is_empty() => v,
            _ => Tensor::zeros(x.dtype(), vec![1])?,
        };
        Ok(vec![gather_fill(x, shape, idx, &fill)?])
    }
}

fn create(node: &Node, info: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let mode = match node.string_or("mode", "constant")? {
        "constant" => Mode::Constant,
        "reflect" => Mode::Reflect,
        "edge" => Mode::Edge,
        "wrap" => Mode::Wrap,
        other => {
            return Err(Error::invalid(format!(
                "Pad mode must be constant, reflect, edge or wrap, got '{other}'"
            )))
        }
    };
    let attrs = if info.node.opset < 11 {
        let pads = node
            .get_ints("pads")?
            .or(node.get_ints("paddings")?)
            .ok_or_else(|| Error::invalid("attribute 'pads' is required"))?;
        Some((pads.to_vec(), node.float_or("value", 0.0)?))
    } else {
        None
    };
    Ok(Box::new(Pad { mode, attrs }))
}

/// CenterCropPad: each listed axis cropped or zero-padded to its target
/// size around the center (the extra element of an odd difference goes to
/// the end).
struct CenterCropPad {
    axes: Option<Vec<i64>>,
}

/// Input positions of an axis of size `dim` centered in `target`.
fn centered(dim: usize, target: usize) -> Vec<usize> {
    if target <= dim {
        let start = (dim - target) / 2;
        (start..start + target).collect()
    } else {
        let begin = (target - dim) / 2;
        (0..target)
            .map(|k| {
                if (begin..begin + dim).contains(&k) {
                    k - begin
                } else {
                    OUTSIDE
                }
            })
            .collect()
    }
}

impl Kernel for CenterCropPad {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let target = read_ints(required(inputs, 1)?, "shape")?;
        let rank = x.rank();
        let axes: Vec<usize> = match &self.axes {
            Some(a) => a
                .iter()
                .map(|&v| normalize_axis(v, rank))
                .collect::<Result<_>>()?,
            None => (0..rank).collect(),
        };
        if target.len() != axes.len() {
            return Err(Error::invalid(format!(
                "shape has {} sizes for {} axes",
                target.len(),
                axes.len()
            )));
        }
        let mut sel: Vec<Vec<usize>> = x.shape().iter().map(|&d| (0..d).collect()).collect();
        let mut out = x.shape().to_vec();
        for (&a, &t) in axes.iter().zip(&target) {
            out[a] = usize::try_from(t)
                .map_err(|_| Error::invalid(format!("target size {t} is negative")))?;
        }
        ensure_allocatable(&out, "CenterCropPad output")?;
        for &a in &axes {
            sel[a] = centered(x.shape()[a], out[a]);
        }
        let idx = select_index(x.shape(), &sel);
        let zero = Tensor::zeros(x.dtype(), vec![1])?;
        Ok(vec![gather_fill(x, out, idx, &zero)?])
    }
}

fn create_center_crop_pad(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(CenterCropPad {
        axes: node.get_ints("axes")?.map(<[i64]>::to_vec),
    }))
}

/// Registers Pad and CenterCropPad.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new("Pad", 1.., &[], create));
    reg.add(KernelDef::new(
        "CenterCropPad",
        18..,
        &[],
        create_center_crop_pad,
    ));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn modes_match_numpy_pad() {
        // numpy.pad([0,1,2], (3,4), mode=...) positions.
        assert_eq!(
            axis_positions(3, 3, 4, Mode::Reflect).unwrap(),
            vec![1, 2, 1, 0, 1, 2, 1, 0, 1, 2]
        );
        assert_eq!(
            axis_positions(3, 2, 2, Mode::Edge).unwrap(),
            vec![0, 0, 0, 1, 2, 2, 2]
        );
        assert_eq!(
            axis_positions(3, 2, 2, Mode::Wrap).unwrap(),
            vec![1, 2, 0, 1, 2, 0, 1]
        );
        assert_eq!(
            axis_positions(3, -1, 1, Mode::Constant).unwrap(),
            vec![1, 2, OUTSIDE]
        );
        assert!(axis_positions(3, -2, -2, Mode::Constant).is_err());
    }

    #[test]
    fn center_crop_and_pad() {
        assert_eq!(centered(5, 2), vec![1, 2]);
        assert_eq!(centered(2, 5), vec![OUTSIDE, 0, 1, OUTSIDE, OUTSIDE]);
        let x = Tensor::from_vec(vec![3, 1], vec![1i32, 2, 3]).unwrap();
        let shape = Tensor::from_vec(vec![2], vec![1i64, 2]).unwrap();
        let y = CenterCropPad { axes: None }
            .compute(&[Some(&x), Some(&shape)])
            .unwrap();
        assert_eq!(y[0].shape(), &[1, 2]);
        assert_eq!(y[0].as_slice::<i32>().unwrap(), &[2, 0]);
    }

    #[test]
    fn constant_pad_with_value() {
        let x = Tensor::from_vec(vec![1, 2], vec![1.0f32, 2.0]).unwrap();
        let pads = Tensor::from_vec(vec![4], vec![0i64, 1, 1, 0]).unwrap();
        let v = Tensor::scalar(9.0f32);
        let k = Pad {
            mode: Mode::Constant,
            attrs: None,
        };
        let y = k.compute(&[Some(&x), Some(&pads), Some(&v)]).unwrap();
        assert_eq!(y[0].shape(), &[2, 3]);
        assert_eq!(
            y[0].as_slice::<f32>().unwrap(),
            &[9.0, 1.0, 2.0, 9.0, 9.0, 9.0]
        );
    }
}

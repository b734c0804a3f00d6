//! Shape and layout operators: Reshape, Flatten, Squeeze, Unsqueeze,
//! Transpose, Concat, Shape and Dropout (inference; Identity is in `sequence`,
//! as it passes values of any kind).

use oxrt_core::infer::{flatten_axis, reshape_shape, squeeze_shape, unsqueeze_shape};
use oxrt_core::shape::normalize_axis;
use oxrt_core::{
    Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Storage, Tensor,
};

use crate::kernel::{optional, read_ints, required};

/// How a kernel of this family computes its output.
enum Layout {
    /// Reshape; `allowzero` keeps literal zeros (opset 14).
    Reshape {
        allowzero: bool,
    },
    Flatten {
        axis: i64,
    },
    /// Squeeze/Unsqueeze with `axes` from the attribute (opset < 13) or input 1.
    Squeeze {
        axes: Option<Vec<i64>>,
    },
    Unsqueeze {
        axes: Option<Vec<i64>>,
    },
    Transpose {
        perm: Option<Vec<i64>>,
    },
    Shape {
        start: i64,
        end: Option<i64>,
    },
    /// Dropout in inference: the input unchanged.
    Identity {
        mask: bool,
    },
}

fn axes_input(inputs: &[Option<&Tensor>], attr: &Option<Vec<i64>>) -> Result<Option<Vec<i64>>> {
    match attr {
        Some(a) => Ok(Some(a.clone())),
        None => optional(inputs, 1)
            .map(|t| read_ints(t, "axes"))
            .transpose(),
    }
}

/// Permutes the axes of `x`.
pub fn transpose(x: &Tensor, perm: &[usize]) -> Result<Tensor> {
    let shape = x.shape();
    let rank = shape.len();
    let mut seen = vec![false; rank];
    if perm.len() != rank
        || perm
            .iter()
            .any(|&p| p >= rank || std::mem::replace(&mut seen[p], true))
    {
        return Err(Error::invalid(format!(
            "perm {perm:?} is not a permutation of 0..{rank}"
        )));
    }
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let mut in_strides = vec![1usize; rank];
    for d in (0..rank.saturating_sub(1)).rev() {
        in_strides[d] = in_strides[d + 1] * shape[d + 1];
    }
    let strides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    // Trailing axes that stay in place are copied as contiguous runs.
    let kept = (0..rank).rev().take_while(|&d| perm[d] == d).count();
    let outer = rank - kept;
    let run: usize = shape[outer..].iter().product();
    let n = x.len();
    let runs = n.checked_div(run).unwrap_or(0);
    let mut starts = Vec::with_capacity(runs);
    let mut counter = vec![0usize; outer];
    let mut offset = 0usize;
    for _ in 0..runs {
        starts.push(offset);
        for d in (0..outer).rev() {
            counter[d] += 1;
            offset += strides[d];
            if counter[d] < out_shape[d] {
                break;
            }
            offset -= strides[d] * counter[d];
            counter[d] = 0;
        }
    }
    Tensor::from_storage(x.dtype(), out_shape, x.storage().gather_runs(&starts, run)?)
}

/// Joins tensors of one dtype along `axis` (other dims must agree).
pub fn concat(parts: &[&Tensor], axis: i64) -> Result<Tensor> {
    let first = parts
        .first()
        .ok_or_else(|| Error::invalid("Concat needs at least one input"))?;
    let rank = first.rank();
    let axis = normalize_axis(axis, rank)?;
    for (i, p) in parts.iter().enumerate() {
        let ok = p.rank() == rank
            && p.dtype() == first.dtype()
            && (0..rank).all(|d| d == axis || p.shape()[d] == first.shape()[d]);
        if !ok {
            return Err(Error::invalid(format!(
                "input #{i} ({} {:?}) does not match input #0 ({} {:?}) outside axis {axis}",
                p.dtype(),
                p.shape(),
                first.dtype(),
                first.shape()
            )));
        }
    }
    let outer: usize = first.shape()[..axis].iter().product();
    let mut shape = first.shape().to_vec();
    shape[axis] = parts.iter().map(|p| p.shape()[axis]).sum();
    // Block o of the output is block o of every input in turn.
    let storages: Vec<&Storage> = parts.iter().map(|p| p.storage()).collect();
    let joined = Storage::concat_blocks(&storages, outer)?;
    Tensor::from_storage(first.dtype(), shape, joined)
}

impl Layout {
    /// The output shape of the ops that only relabel the input's shape:
    /// Reshape, Flatten, Squeeze, Unsqueeze (the variants `compute` does
    /// not match itself).
    fn relabelled(&self, x: &[usize], inputs: &[Option<&Tensor>]) -> Result<Vec<usize>> {
        let valid = |shape: Option<Vec<usize>>, what: String| {
            shape.ok_or_else(|| Error::invalid(format!("{what} is invalid for input shape {x:?}")))
        };
        match self {
            Layout::Reshape { allowzero } => {
                let target = read_ints(required(inputs, 1)?, "shape")?;
                valid(
                    reshape_shape(x, &target, *allowzero),
                    format!("target shape {target:?}"),
                )
            }
            Layout::Flatten { axis } => {
                let a = flatten_axis(*axis, x.len())?;
                let rows = x[..a].iter().product();
                Ok(vec![rows, x[a..].iter().product()])
            }
            Layout::Squeeze { axes } => {
                let axes = axes_input(inputs, axes)?;
                valid(
                    squeeze_shape(x, axes.as_deref()),
                    format!("squeeze axes {axes:?} (each must be a size-1 dim)"),
                )
            }
            Layout::Unsqueeze { axes } => {
                let axes = axes_input(inputs, axes)?
                    .ok_or_else(|| Error::invalid("Unsqueeze needs axes"))?;
                valid(
                    unsqueeze_shape(x, &axes),
                    format!("unsqueeze axes {axes:?}"),
                )
            }
            Layout::Transpose { .. } | Layout::Shape { .. } | Layout::Identity { .. } => Err(
                Error::invalid("Transpose, Shape and Identity do not relabel a shape"),
            ),
        }
    }
}

impl Kernel for Layout {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        match self {
            Layout::Transpose { perm } => {
                let perm: Vec<usize> = match perm {
                    Some(p) => p
                        .iter()
                        .map(|&v| normalize_axis(v, x.rank()))
                        .collect::<Result<_>>()?,
                    None => (0..x.rank()).rev().collect(),
                };
                Ok(vec![transpose(x, &perm)?])
            }
            Layout::Shape { start, end } => {
                let r = x.rank() as i64;
                let clamp = |v: i64| if v < 0 { (v + r).clamp(0, r) } else { v.min(r) } as usize;
                let (s, e) = (clamp(*start), clamp(end.unwrap_or(r)));
                let dims: Vec<i64> = x.shape()[s..e.max(s)].iter().map(|&d| d as i64).collect();
                Ok(vec![Tensor::from_vec(vec![dims.len()], dims)?])
            }
            Layout::Identity { mask } => {
                let mut out = vec![x.copied()];
                if *mask {
                    out.push(Tensor::from_vec(x.shape(), vec![true; x.len()])?);
                }
                Ok(out)
            }
            _ => Ok(vec![x
                .copied()
                .reshape(self.relabelled(x.shape(), inputs)?)?]),
        }
    }

    /// Reshape, Flatten, Squeeze, Unsqueeze and Identity hand a dying
    /// input on without copying it.
    fn in_place_input(&self) -> Option<usize> {
        match self {
            Layout::Transpose { .. } | Layout::Shape { .. } => None,
            Layout::Identity { mask } if *mask => None,
            _ => Some(0),
        }
    }

    fn compute_in_place(&self, owned: Tensor, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        match self {
            Layout::Identity { mask: false } => Ok(vec![owned]),
            Layout::Transpose { .. } | Layout::Shape { .. } | Layout::Identity { .. } => {
                let mut all = inputs.to_vec();
                all[0] = Some(&owned);
                self.compute(&all)
            }
            _ => {
                let shape = self.relabelled(owned.shape(), inputs)?;
                Ok(vec![owned.reshape(shape)?])
            }
        }
    }
}

fn create(node: &Node, info: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let opset = info.node.opset;
    let attr_axes = || -> Result<Option<Vec<i64>>> {
        Ok(if opset < 13 {
            node.get_ints("axes")?.map(<[i64]>::to_vec)
        } else {
            None
        })
    };
    Ok(Box::new(match node.op_type.as_str() {
        "Reshape" => {
            if opset < 5 {
                return Err(Error::NotSupported(
                    "Reshape with a 'shape' attribute (opset < 5)".into(),
                ));
            }
            Layout::Reshape {
                allowzero: node.int_or("allowzero", 0)? != 0,
            }
        }
        "Flatten" => Layout::Flatten {
            axis: node.int_or("axis", 1)?,
        },
        "Squeeze" => Layout::Squeeze { axes: attr_axes()? },
        "Unsqueeze" => Layout::Unsqueeze { axes: attr_axes()? },
        "Transpose" => Layout::Transpose {
            perm: node.get_ints("perm")?.map(<[i64]>::to_vec),
        },
        "Shape" => Layout::Shape {
            start: node.int_or("start", 0)?,
            end: node.get_int("end")?,
        },
        _ => Layout::Identity { mask: false },
    }))
}

/// Concat along `axis`.
struct Concat {
    axis: i64,
}

impl Kernel for Concat {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let parts: Vec<&Tensor> = inputs.iter().flatten().copied().collect();
        Ok(vec![concat(&parts, self.axis)?])
    }
}

fn create_concat(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let axis = node
        .get_int("axis")?
        .ok_or_else(|| Error::invalid("attribute 'axis' is required"))?;
    Ok(Box::new(Concat { axis }))
}

/// Dropout: the input unchanged (and an all-true mask) in inference. In
/// training mode, elements are kept where a uniform draw is at least the
/// ratio and scaled by `1 / (1 - ratio)` (seeded draws repeat, see
/// [`crate::ops::random`]).
struct Dropout {
    mask: bool,
    seed: Option<u32>,
}

impl Kernel for Dropout {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let training = match optional(inputs, 2) {
            Some(t) => t.as_slice::<bool>()?.first().copied().unwrap_or(false),
            None => false,
        };
        let ratio = match optional(inputs, 1) {
            Some(r) => r
                .to_f64_vec()
                .and_then(|v| v.first().copied())
                .ok_or_else(|| Error::invalid("ratio must be one float"))?,
            None => 0.5,
        };
        if !training || ratio == 0.0 {
            return Layout::Identity { mask: self.mask }.compute(inputs);
        }
        if !(0.0..1.0).contains(&ratio) {
            return Err(Error::invalid(format!("ratio {ratio} must be in [0, 1)")));
        }
        let keep = crate::ops::random::dropout_mask(x.len(), ratio, self.seed);
        let scale = 1.0 / (1.0 - ratio);
        let v = x
            .to_f64_vec()
            .ok_or_else(|| Error::invalid(format!("Dropout of {}", x.dtype())))?;
        let y: Vec<f64> = v
            .iter()
            .zip(&keep)
            .map(|(&e, &k)| if k { e * scale } else { 0.0 })
            .collect();
        let mut out = vec![crate::ops::cast::cast(
            &Tensor::from_vec(x.shape(), y)?,
            x.dtype(),
        )?];
        if self.mask {
            out.push(Tensor::from_vec(x.shape(), keep)?);
        }
        Ok(out)
    }
}

fn create_dropout(node: &Node, info: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    if info.node.opset < 7 && node.int_or("is_test", 0)? == 0 {
        return Err(Error::NotSupported(
            "Dropout with is_test=0 (training mode)".into(),
        ));
    }
    let mask = node.outputs.get(1).is_some_and(|o| !o.is_empty());
    Ok(Box::new(Dropout {
        mask,
        seed: crate::ops::random::dropout_seed(node)?,
    }))
}

/// Registers the layout operators.
pub fn register(reg: &mut KernelRegistry) {
    for op in [
        "Reshape",
        "Flatten",
        "Squeeze",
        "Unsqueeze",
        "Transpose",
        "Shape",
    ] {
        reg.add(KernelDef::new(op, 1.., &[], create));
    }
    reg.add(KernelDef::new("Concat", 1.., &[], create_concat));
    reg.add(KernelDef::new("Dropout", 1.., &[], create_dropout));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn transpose_3d() {
        let x = Tensor::from_vec(vec![2, 3, 4], (0..24).collect::<Vec<i32>>()).unwrap();
        let y = transpose(&x, &[2, 0, 1]).unwrap();
        assert_eq!(y.shape(), &[4, 2, 3]);
        let yv = y.as_slice::<i32>().unwrap();
        for a in 0..4 {
            for b in 0..2 {
                for c in 0..3 {
                    assert_eq!(yv[a * 6 + b * 3 + c], (b * 12 + c * 4 + a) as i32);
                }
            }
        }
        assert!(transpose(&x, &[0, 0, 1]).is_err());
    }

    #[test]
    fn transpose_copies_trailing_axes_in_runs() {
        // The attention head split: [b, s, h, d] -> [b, h, s, d].
        let x = Tensor::from_vec(vec![2, 3, 4, 5], (0..120).collect::<Vec<i64>>()).unwrap();
        let y = transpose(&x, &[0, 2, 1, 3]).unwrap();
        assert_eq!(y.shape(), &[2, 4, 3, 5]);
        let yv = y.as_slice::<i64>().unwrap();
        for (b, h, s, d) in (0..2).flat_map(|b| {
            (0..4).flat_map(move |h| (0..3).flat_map(move |s| (0..5).map(move |d| (b, h, s, d))))
        }) {
            assert_eq!(
                yv[((b * 4 + h) * 3 + s) * 5 + d],
                (((b * 3 + s) * 4 + h) * 5 + d) as i64
            );
        }
        // Identity, scalars and empty tensors.
        assert_eq!(
            transpose(&x, &[0, 1, 2, 3])
                .unwrap()
                .as_slice::<i64>()
                .unwrap(),
            x.as_slice::<i64>().unwrap()
        );
        let s = Tensor::from_vec(vec![], vec![7.0f32]).unwrap();
        assert_eq!(
            transpose(&s, &[]).unwrap().as_slice::<f32>().unwrap(),
            [7.0]
        );
        let e = Tensor::from_vec(vec![3, 0], Vec::<f32>::new()).unwrap();
        assert_eq!(transpose(&e, &[1, 0]).unwrap().shape(), &[0, 3]);
    }

    #[test]
    fn flatten_axes_including_negative() {
        let x = Tensor::from_vec(vec![2, 3, 4, 5], vec![0u8; 120]).unwrap();
        let flat = |axis| {
            Layout::Flatten { axis }
                .compute(&[Some(&x)])
                .map(|o| o[0].shape().to_vec())
        };
        assert_eq!(flat(0).unwrap(), vec![1, 120]);
        assert_eq!(flat(4).unwrap(), vec![120, 1]);
        assert_eq!(flat(-1).unwrap(), vec![24, 5]);
        assert_eq!(flat(-4).unwrap(), vec![1, 120]);
        assert!(flat(5).is_err());
        assert!(flat(-5).is_err());
    }

    #[test]
    fn concat_middle_axis_and_strings() {
        let a = Tensor::from_vec(vec![2, 1], vec![1i64, 2]).unwrap();
        let b = Tensor::from_vec(vec![2, 2], vec![3i64, 4, 5, 6]).unwrap();
        let y = concat(&[&a, &b], 1).unwrap();
        assert_eq!(y.shape(), &[2, 3]);
        assert_eq!(y.as_slice::<i64>().unwrap(), &[1, 3, 4, 2, 5, 6]);
        let s = Tensor::from_strings(vec![1], vec!["x".into()]).unwrap();
        let y = concat(&[&s, &s], 0).unwrap();
        assert_eq!(y.as_strings().unwrap(), &["x".to_string(), "x".to_string()]);
        assert!(concat(&[&a, &s], 0).is_err());
        let scalar = Tensor::scalar(1.0f32);
        assert!(concat(&[&scalar, &scalar], 0).is_err());
    }
}

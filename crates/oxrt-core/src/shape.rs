//! Shape arithmetic shared by shape inference and kernels: numpy
//! broadcasting, axis normalization, convolution/pooling output sizes.

use crate::error::{Error, Result};

/// The numpy-broadcast shape of `a` and `b`.
pub fn broadcast(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(Error::invalid(format!(
                    "shapes {a:?} and {b:?} cannot be broadcast (dimension {i}: {da} vs {db})"
                )))
            }
        };
    }
    Ok(out)
}

/// Normalizes a possibly negative `axis` for a tensor of `rank` dims.
pub fn normalize_axis(axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r {
        return Err(Error::invalid(format!(
            "axis {axis} is out of range for a tensor of rank {rank}"
        )));
    }
    Ok(a as usize)
}

/// How padding is chosen for convolution and pooling (`auto_pad`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoPad {
    NotSet,
    Valid,
    SameUpper,
    SameLower,
}

impl AutoPad {
    /// Parses the ONNX `auto_pad` attribute.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "NOTSET" | "" => AutoPad::NotSet,
            "VALID" => AutoPad::Valid,
            "SAME_UPPER" => AutoPad::SameUpper,
            "SAME_LOWER" => AutoPad::SameLower,
            other => {
                return Err(Error::invalid(format!(
                    "auto_pad '{other}' is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER"
                )))
            }
        })
    }
}

/// Geometry of a sliding window over the spatial dims of an NC... tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    /// Padding at the start of each spatial dim.
    pub pads_begin: Vec<usize>,
    /// Padding at the end of each spatial dim.
    pub pads_end: Vec<usize>,
    /// Output spatial dims.
    pub output: Vec<usize>,
}

/// Resolves pads and output size of a window over `input` spatial dims.
///
/// `pads` is ONNX's `[x1_begin, x2_begin, ..., x1_end, x2_end, ...]`;
/// `ceil_mode` rounds the output size up (pooling).
pub fn window(
    input: &[usize],
    kernel: &[usize],
    strides: &[usize],
    dilations: &[usize],
    pads: &[usize],
    auto_pad: AutoPad,
    ceil_mode: bool,
) -> Result<Window> {
    let n = input.len();
    if kernel.len() != n || strides.len() != n || dilations.len() != n {
        return Err(Error::invalid(format!(
            "kernel {kernel:?}, strides {strides:?} and dilations {dilations:?} must each have {n} values (one per spatial dim)"
        )));
    }
    if pads.len() != 2 * n {
        return Err(Error::invalid(format!(
            "pads {pads:?} must have {} values (begin and end per spatial dim)",
            2 * n
        )));
    }
    if let Some(i) = (0..n).find(|&i| strides[i] == 0 || dilations[i] == 0 || kernel[i] == 0) {
        return Err(Error::invalid(format!(
            "kernel size, stride and dilation must be positive (spatial dim {i})"
        )));
    }
    let mut w = Window {
        kernel: kernel.to_vec(),
        strides: strides.to_vec(),
        dilations: dilations.to_vec(),
        pads_begin: pads[..n].to_vec(),
        pads_end: pads[n..].to_vec(),
        output: vec![0; n],
    };
    for i in 0..n {
        let eff = (kernel[i] - 1) * dilations[i] + 1;
        match auto_pad {
            AutoPad::SameUpper | AutoPad::SameLower => {
                let out = input[i].div_ceil(strides[i]);
                let total = ((out.saturating_sub(1)) * strides[i] + eff).saturating_sub(input[i]);
                let small = total / 2;
                let (b, e) = if auto_pad == AutoPad::SameUpper {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                w.pads_begin[i] = b;
                w.pads_end[i] = e;
                w.output[i] = out;
                continue;
            }
            AutoPad::Valid => {
                w.pads_begin[i] = 0;
                w.pads_end[i] = 0;
            }
            AutoPad::NotSet => {}
        }
        let padded = input[i] + w.pads_begin[i] + w.pads_end[i];
        if padded < eff {
            return Err(Error::invalid(format!(
                "spatial dim {i}: padded input size {padded} is smaller than the effective kernel size {eff}"
            )));
        }
        let span = padded - eff;
        let mut out = if ceil_mode {
            span.div_ceil(strides[i]) + 1
        } else {
            span / strides[i] + 1
        };
        // With ceil_mode the last window must start inside the input or left padding.
        if ceil_mode && (out - 1) * strides[i] >= input[i] + w.pads_begin[i] {
            out -= 1;
        }
        w.output[i] = out;
    }
    Ok(w)
}

/// Converts ONNX `ints` that must be non-negative, naming the attribute.
pub fn to_usize(values: &[i64], what: &str) -> Result<Vec<usize>> {
    values
        .iter()
        .map(|&v| {
            usize::try_from(v)
                .map_err(|_| Error::invalid(format!("{what} must be non-negative, got {values:?}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn broadcasting() {
        assert_eq!(broadcast(&[2, 1, 3], &[4, 1]).unwrap(), vec![2, 4, 3]);
        assert_eq!(broadcast(&[], &[5]).unwrap(), vec![5]);
        assert_eq!(broadcast(&[0, 3], &[1, 3]).unwrap(), vec![0, 3]);
        assert!(broadcast(&[2, 3], &[3, 2]).is_err());
    }

    #[test]
    fn axes() {
        assert_eq!(normalize_axis(-1, 4).unwrap(), 3);
        assert!(normalize_axis(0, 0).is_err());
        assert!(normalize_axis(4, 4).is_err());
        assert!(normalize_axis(-5, 4).is_err());
    }

    #[test]
    fn conv_and_pool_windows() {
        // 5x5, k3, stride 2, pad 1 -> 3x3
        let w = window(
            &[5, 5],
            &[3, 3],
            &[2, 2],
            &[1, 1],
            &[1, 1, 1, 1],
            AutoPad::NotSet,
            false,
        )
        .unwrap();
        assert_eq!(w.output, vec![3, 3]);
        // SAME_UPPER with stride 2 on 4: out 2, total pad 1 -> (0, 1)
        let w = window(&[4], &[3], &[2], &[1], &[0, 0], AutoPad::SameUpper, false).unwrap();
        assert_eq!((w.output[0], w.pads_begin[0], w.pads_end[0]), (2, 0, 1));
        let w = window(&[4], &[3], &[2], &[1], &[0, 0], AutoPad::SameLower, false).unwrap();
        assert_eq!((w.pads_begin[0], w.pads_end[0]), (1, 0));
        // ceil mode: 6 with k3 s2 -> floor 2, ceil 3
        let w = window(&[6], &[3], &[2], &[1], &[0, 0], AutoPad::NotSet, true).unwrap();
        assert_eq!(w.output, vec![3]);
        // dilation 2: effective kernel 5 on 7 -> 3
        let w = window(&[7], &[3], &[1], &[2], &[0, 0], AutoPad::NotSet, false).unwrap();
        assert_eq!(w.output, vec![3]);
        assert!(window(&[2], &[3], &[1], &[1], &[0, 0], AutoPad::NotSet, false).is_err());
        assert!(window(&[4], &[3], &[0], &[1], &[0, 0], AutoPad::NotSet, false).is_err());
    }
}

/// The window attributes of Conv and the pooling operators, parsed once.
#[derive(Debug, Clone)]
pub struct WindowAttrs {
    pub kernel_shape: Option<Vec<usize>>,
    pub strides: Option<Vec<usize>>,
    pub dilations: Option<Vec<usize>>,
    pub pads: Option<Vec<usize>>,
    pub auto_pad: AutoPad,
    pub ceil_mode: bool,
}

impl WindowAttrs {
    /// Reads `kernel_shape`, `strides`, `dilations`, `pads`, `auto_pad`, `ceil_mode`.
    pub fn from_node(node: &crate::ir::Node) -> Result<Self> {
        let ints = |name: &str| -> Result<Option<Vec<usize>>> {
            node.get_ints(name)?.map(|v| to_usize(v, name)).transpose()
        };
        Ok(Self {
            kernel_shape: ints("kernel_shape")?,
            strides: ints("strides")?,
            dilations: ints("dilations")?,
            pads: ints("pads")?,
            auto_pad: AutoPad::parse(node.string_or("auto_pad", "NOTSET")?)?,
            ceil_mode: node.int_or("ceil_mode", 0)? != 0,
        })
    }

    /// Resolves the window over `spatial` input dims; `kernel` is used when
    /// `kernel_shape` is absent (Conv takes it from the weights).
    pub fn resolve(&self, spatial: &[usize], kernel: Option<&[usize]>) -> Result<Window> {
        let n = spatial.len();
        let kernel = match (&self.kernel_shape, kernel) {
            (Some(k), _) => k.as_slice(),
            (None, Some(k)) => k,
            (None, None) => return Err(Error::invalid("attribute 'kernel_shape' is required")),
        };
        let ones = vec![1; n];
        let zeros = vec![0; 2 * n];
        window(
            spatial,
            kernel,
            self.strides.as_deref().unwrap_or(&ones),
            self.dilations.as_deref().unwrap_or(&ones),
            self.pads.as_deref().unwrap_or(&zeros),
            self.auto_pad,
            self.ceil_mode,
        )
    }
}

//! Conv (1-D, 2-D, 3-D...): im2col through the window tap table, then GEMM
//! per image and group; ConvInteger and QLinearConv run the same path
//! exactly in i32.

use oxrt_core::shape::WindowAttrs;
use oxrt_core::{
    DataType as D, Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor,
};

use crate::gemm::{gemm, MatRef};
use crate::kernel::{optional, required, unsupported_type, with_float_type, Arith};
use crate::ops::activation::FLOATS;
use crate::ops::cast::cast;
use crate::ops::unary::round_half_even;
use crate::ops::window::taps;

struct Conv {
    attrs: WindowAttrs,
    group: usize,
}

impl Conv {
    fn run<T: Arith>(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
        let (xs, ws) = (x.shape(), w.shape());
        if xs.len() < 3 || ws.len() != xs.len() {
            return Err(Error::invalid(format!(
                "X must be N x C x spatial... and W of the same rank, got X {xs:?} and W {ws:?}"
            )));
        }
        let (n, c, m) = (xs[0], xs[1], ws[0]);
        let g = self.group;
        if g == 0 || c % g != 0 || m % g != 0 || ws[1] * g != c {
            return Err(Error::invalid(format!(
                "group {g} does not fit X channels {c}, W {ws:?} (W must be M x C/group x kernel...)"
            )));
        }
        let spatial = &xs[2..];
        let win = self.attrs.resolve(spatial, Some(&ws[2..]))?;
        if ws[2..] != win.kernel[..] {
            return Err(Error::invalid(format!(
                "kernel_shape {:?} differs from the weights' spatial dims {:?}",
                win.kernel,
                &ws[2..]
            )));
        }
        let bias = match b {
            Some(b) if b.len() != m => {
                return Err(Error::invalid(format!(
                    "B must have {m} values, got shape {:?}",
                    b.shape()
                )))
            }
            Some(b) => Some(b.as_slice::<T>()?),
            None => None,
        };
        let (cg, mg) = (c / g, m / g);
        let in_len: usize = spatial.iter().product();
        let out_len: usize = win.output.iter().product();
        let k_len: usize = win.kernel.iter().product();
        let tap = taps(&win, spatial);
        let xd = x.as_slice::<T>()?;
        let wd = w.as_slice::<T>()?;
        let mut y = vec![T::zero(); n * m * out_len];
        let rows = cg * k_len;
        let mut col = vec![T::zero(); rows * out_len];
        for img in 0..n {
            for grp in 0..g {
                // col[(ch * k_len + k), o] = x[img, grp*cg + ch, tap(o, k)]
                for ch in 0..cg {
                    let xc = &xd[(img * c + grp * cg + ch) * in_len..][..in_len];
                    for k in 0..k_len {
                        let row = &mut col[(ch * k_len + k) * out_len..][..out_len];
                        for (o, v) in row.iter_mut().enumerate() {
                            let t = tap[o * k_len + k];
                            *v = if t >= 0 { xc[t as usize] } else { T::zero() };
                        }
                    }
                }
                let wg = &wd[grp * mg * rows..][..mg * rows];
                let yg = &mut y[(img * m + grp * mg) * out_len..][..mg * out_len];
                gemm(
                    MatRef::row_major(wg, mg, rows, false),
                    MatRef::row_major(&col, rows, out_len, false),
                    yg,
                    T::one(),
                    false,
                )?;
            }
        }
        if let Some(bias) = bias {
            for (i, chunk) in y.chunks_mut(out_len.max(1)).enumerate() {
                let bv = bias[i % m];
                chunk.iter_mut().for_each(|v| *v = v.add(bv));
            }
        }
        let mut shape = vec![n, m];
        shape.extend(&win.output);
        Tensor::from_vec(shape, y)
    }
}

impl Kernel for Conv {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let (x, w, b) = (
            required(inputs, 0)?,
            required(inputs, 1)?,
            optional(inputs, 2),
        );
        with_float_type!(x.dtype(), T => Ok(vec![self.run::<T>(x, w, b)?]),
            _ => Err(unsupported_type("Conv", x)))
    }
}

/// ConvInteger: 8-bit operands minus their zero points (x: one value; w:
/// one value or one per output channel), convolved exactly in i32.
struct ConvInteger(Conv);

/// `t` as i32 minus `zero` (one value, or one per slice along axis 0).
fn minus_zero_point(t: &Tensor, zero: Option<&Tensor>) -> Result<Tensor> {
    let v = cast(t, D::I32)?.into_vec::<i32>()?;
    let z = match zero {
        Some(z) => cast(z, D::I32)?.into_vec::<i32>()?,
        None => vec![0],
    };
    let rows = t.shape().first().copied().unwrap_or(1);
    if z.len() != 1 && z.len() != rows {
        return Err(Error::invalid(format!(
            "zero point has {} values for {rows} channels",
            z.len()
        )));
    }
    let per = v.len() / rows.max(1);
    let out = v
        .iter()
        .enumerate()
        .map(|(i, &e)| e - z[if z.len() == 1 { 0 } else { i / per.max(1) }])
        .collect();
    Tensor::from_vec(t.shape(), out)
}

impl Kernel for ConvInteger {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x_zero = optional(inputs, 2);
        if let Some(z) = x_zero.filter(|z| z.len() != 1) {
            return Err(Error::invalid(format!(
                "x_zero_point must be one value, got shape {:?}",
                z.shape()
            )));
        }
        let x = minus_zero_point(required(inputs, 0)?, x_zero)?;
        let w = minus_zero_point(required(inputs, 1)?, optional(inputs, 3))?;
        Ok(vec![self.0.run::<i32>(&x, &w, None)?])
    }
}

/// QLinearConv: ConvInteger plus the int32 bias, rescaled by
/// `x_scale * w_scale / y_scale` (w_scale per tensor or per output
/// channel, the multiplier in f32 as the reference computes it), plus
/// `y_zero_point`, saturated and rounded half to even.
struct QLinearConv(Conv);

impl Kernel for QLinearConv {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let scalar = |i: usize, what: &str| -> Result<f32> {
            match required(inputs, i)?.to_f64_vec().as_deref() {
                Some([v]) => Ok(*v as f32),
                _ => Err(Error::invalid(format!("{what} must be one float"))),
            }
        };
        let (x_scale, y_scale) = (scalar(1, "x_scale")?, scalar(6, "y_scale")?);
        let x = required(inputs, 0)?;
        let w = required(inputs, 3)?;
        let xq = minus_zero_point(x, optional(inputs, 2))?;
        let wq = minus_zero_point(w, optional(inputs, 5))?;
        let acc = self.0.run::<i32>(&xq, &wq, optional(inputs, 8))?;
        let w_scale: Vec<f32> = required(inputs, 4)?
            .to_f64_vec()
            .ok_or_else(|| Error::invalid("w_scale must be float"))?
            .into_iter()
            .map(|v| v as f32)
            .collect();
        let channels = acc.shape().get(1).copied().unwrap_or(1);
        if w_scale.len() != 1 && w_scale.len() != channels {
            return Err(Error::invalid(format!(
                "w_scale has {} values for {channels} output channels",
                w_scale.len()
            )));
        }
        let y_zero = optional(inputs, 7);
        let out_type = y_zero.map_or(x.dtype(), Tensor::dtype);
        let zero = y_zero
            .map(|z| {
                z.to_f64_vec()
                    .and_then(|v| v.first().copied())
                    .unwrap_or(0.0)
            })
            .unwrap_or(0.0);
        let (lo, hi) = if out_type == D::I8 {
            (-128.0, 127.0)
        } else {
            (0.0, 255.0)
        };
        let plane: usize = acc.shape()[2..].iter().product();
        let y: Vec<f64> = acc
            .as_slice::<i32>()?
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let c = (i / plane.max(1)) % channels;
                let ws = w_scale[if w_scale.len() == 1 { 0 } else { c }];
                let m = f64::from(x_scale * ws / y_scale);
                round_half_even((f64::from(v) * m + zero).clamp(lo, hi))
            })
            .collect();
        Ok(vec![cast(&Tensor::from_vec(acc.shape(), y)?, out_type)?])
    }
}

pub(crate) fn create(node: &Node, info: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let conv = create_conv(node, info)?;
    Ok(match node.op_type.as_str() {
        "ConvInteger" => Box::new(ConvInteger(conv)),
        "QLinearConv" => Box::new(QLinearConv(conv)),
        _ => Box::new(conv),
    })
}

fn create_conv(node: &Node, _: &KernelInfo<'_>) -> Result<Conv> {
    let group = node.int_or("group", 1)?;
    let group = usize::try_from(group)
        .ok()
        .filter(|&g| g > 0)
        .ok_or_else(|| Error::invalid(format!("group must be positive, got {group}")))?;
    Ok(Conv {
        attrs: WindowAttrs::from_node(node)?,
        group,
    })
}

/// Registers Conv, ConvInteger and QLinearConv.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new("Conv", 1.., FLOATS, create));
    reg.add(KernelDef::new("ConvInteger", 10.., &[D::U8, D::I8], create));
    reg.add(KernelDef::new("QLinearConv", 10.., &[D::U8, D::I8], create));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn conv(attrs: WindowAttrs, group: usize, x: Tensor, w: Tensor, b: Option<Tensor>) -> Tensor {
        Conv { attrs, group }
            .run::<f32>(&x, &w, b.as_ref())
            .unwrap()
    }

    fn attrs(pads: &[usize], strides: &[usize]) -> WindowAttrs {
        WindowAttrs {
            kernel_shape: None,
            strides: Some(strides.to_vec()),
            dilations: None,
            pads: Some(pads.to_vec()),
            auto_pad: oxrt_core::shape::AutoPad::NotSet,
            ceil_mode: false,
        }
    }

    #[test]
    fn matches_the_onnx_conv_example() {
        // The ONNX Conv docs example: 5x5 input 0..25, 3x3 ones kernel, pads 1.
        let x = Tensor::from_vec(vec![1, 1, 5, 5], (0..25).map(|v| v as f32).collect()).unwrap();
        let w = Tensor::from_vec(vec![1, 1, 3, 3], vec![1.0f32; 9]).unwrap();
        let y = conv(attrs(&[1, 1, 1, 1], &[1, 1]), 1, x.clone(), w.clone(), None);
        assert_eq!(
            y.as_slice::<f32>().unwrap(),
            &[
                12., 21., 27., 33., 24., 33., 54., 63., 72., 51., 63., 99., 108., 117., 81., 93.,
                144., 153., 162., 111., 72., 111., 117., 123., 84.
            ]
        );
        let y = conv(attrs(&[1, 1, 1, 1], &[2, 2]), 1, x, w, None);
        assert_eq!(y.shape(), &[1, 1, 3, 3]);
        assert_eq!(
            y.as_slice::<f32>().unwrap(),
            &[12., 27., 24., 63., 108., 81., 72., 117., 84.]
        );
    }

    #[test]
    fn depthwise_groups_and_bias() {
        // 2 channels, group 2, 1x1 kernels scaling by 2 and 3, bias 1 and -1.
        let x = Tensor::from_vec(vec![1, 2, 1, 2], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
        let w = Tensor::from_vec(vec![2, 1, 1, 1], vec![2.0f32, 3.0]).unwrap();
        let b = Tensor::from_vec(vec![2], vec![1.0f32, -1.0]).unwrap();
        let y = conv(attrs(&[0, 0, 0, 0], &[1, 1]), 2, x, w, Some(b));
        assert_eq!(y.as_slice::<f32>().unwrap(), &[3.0, 5.0, 8.0, 11.0]);
    }

    #[test]
    fn conv_integer_shifts_by_zero_points() {
        let k = ConvInteger(Conv {
            attrs: attrs(&[0, 0, 0, 0], &[1, 1]),
            group: 1,
        });
        let x = Tensor::from_vec(vec![1, 1, 2, 2], vec![10u8, 11, 12, 13]).unwrap();
        let w = Tensor::from_vec(vec![2, 1, 1, 1], vec![3u8, 5]).unwrap();
        let xz = Tensor::scalar(10u8);
        let wz = Tensor::from_vec(vec![2], vec![1u8, 5]).unwrap();
        let y = k
            .compute(&[Some(&x), Some(&w), Some(&xz), Some(&wz)])
            .unwrap();
        // Channel 0: [0,1,2,3] * 2; channel 1: * 0.
        assert_eq!(y[0].as_slice::<i32>().unwrap(), &[0, 2, 4, 6, 0, 0, 0, 0]);
        let bad = Tensor::from_vec(vec![2], vec![1u8, 2]).unwrap();
        assert!(k.compute(&[Some(&x), Some(&w), Some(&bad)]).is_err());
    }

    #[test]
    fn channel_mismatch_is_an_error() {
        let x = Tensor::from_vec(vec![1, 3, 2, 2], vec![0.0f32; 12]).unwrap();
        let w = Tensor::from_vec(vec![1, 2, 1, 1], vec![0.0f32; 2]).unwrap();
        let err = Conv {
            attrs: attrs(&[0, 0, 0, 0], &[1, 1]),
            group: 1,
        }
        .run::<f32>(&x, &w, None)
        .unwrap_err();
        assert!(err.to_string().contains("group 1"), "{err}");
    }
}

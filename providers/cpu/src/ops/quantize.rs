//! QuantizeLinear, DequantizeLinear and DynamicQuantizeLinear: per-tensor, per-axis and blocked
//! scales and zero points; 8/16-bit, 4/2-bit and float8/float4 types.

use oxrt_core::shape::normalize_axis;
use oxrt_core::{
    DataType as D, Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor,
};

use crate::broadcast::strides;
use crate::kernel::{optional, required, unsupported_type};
use crate::ops::cast::{cast, cast_with, CastOptions};
use crate::ops::unary::round_half_even;

/// For each element of `shape`, the index of its scale (or zero point) in
/// a parameter of `param_shape`: one value, one per `axis` position, or
/// blocks of `block` along `axis`.
fn param_index(
    shape: &[usize],
    param_shape: &[usize],
    axis: usize,
    block: usize,
) -> Result<Vec<usize>> {
    let n: usize = shape.iter().product();
    let count: usize = param_shape.iter().product();
    if count == 1 {
        return Ok(vec![0; n]);
    }
    let st = strides(shape);
    let dim = shape[axis];
    let inner = st[axis];
    if block == 0 {
        if param_shape.len() != 1 || count != dim {
            return Err(Error::invalid(format!(
                "per-axis scale of shape {param_shape:?} for axis {axis} of size {dim}"
            )));
        }
        return Ok((0..n).map(|i| (i / inner) % dim).collect());
    }
    let blocks = dim.div_ceil(block);
    let mut want = shape.to_vec();
    want[axis] = blocks;
    if param_shape != want.as_slice() {
        return Err(Error::invalid(format!(
            "blocked scale of shape {param_shape:?}, expected {want:?} (block size {block})"
        )));
    }
    let pst = strides(param_shape);
    Ok((0..n)
        .map(|i| {
            let mut rem = i;
            let mut at = 0;
            for d in 0..shape.len() {
                let c = rem / st[d];
                rem %= st[d];
                at += if d == axis { c / block } else { c } * pst[d];
            }
            at
        })
        .collect())
}

/// `v` rounded to the precision of `dtype` (the type numpy computes in).
fn round_to(v: f64, dtype: D) -> f64 {
    match dtype {
        D::F32 => f64::from(v as f32),
        D::F16 => oxrt_core::f16::from_f64(v).to_f64(),
        D::BF16 => oxrt_core::bf16::from_f64(v).to_f64(),
        _ => v,
    }
}

fn integer_range(dtype: D) -> Option<(f64, f64)> {
    Some(match dtype {
        D::U8 => (0.0, 255.0),
        D::I8 => (-128.0, 127.0),
        D::U16 => (0.0, 65535.0),
        D::I16 => (-32768.0, 32767.0),
        D::U4 => (0.0, 15.0),
        D::I4 => (-8.0, 7.0),
        D::U2 => (0.0, 3.0),
        D::I2 => (-2.0, 1.0),
        _ => return None,
    })
}

fn values(t: &Tensor) -> Result<Vec<f64>> {
    cast(t, D::F64)?.into_vec::<f64>()
}

struct Quantize {
    axis: i64,
    block: usize,
    saturate: bool,
    output_dtype: Option<D>,
    precision: Option<D>,
}

impl Kernel for Quantize {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let (x, scale) = (required(inputs, 0)?, required(inputs, 1)?);
        let zp = optional(inputs, 2);
        let to = zp.map_or(self.output_dtype.unwrap_or(D::U8), |z| z.dtype());
        let axis = normalize_axis(self.axis, x.rank().max(1)).unwrap_or(0);
        let si = param_index(x.shape(), scale.shape(), axis, self.block)?;
        let (xv, sv) = (values(x)?, values(scale)?);
        let zv = zp.map(|z| {
            let idx = param_index(x.shape(), z.shape(), axis, self.block)?;
            Ok::<_, Error>((values(z)?, idx))
        });
        let zv = zv.transpose()?;
        let work = self.precision.unwrap_or(x.dtype());
        let q: Vec<f64> = (0..xv.len())
            .map(|i| round_to(round_to(xv[i], work) / round_to(sv[si[i]], work), work))
            .collect();
        let zero = |i: usize| zv.as_ref().map_or(0.0, |(z, idx)| z[idx[i]]);
        let y = if let Some((lo, hi)) = integer_range(to) {
            let v: Vec<i64> = (0..q.len())
                .map(|i| (round_half_even(q[i]) + zero(i)).clamp(lo, hi) as i64)
                .collect();
            cast(&Tensor::from_vec(x.shape(), v)?, to)?
        } else if matches!(
            to,
            D::F8E4M3FN | D::F8E4M3FNUZ | D::F8E5M2 | D::F8E5M2FNUZ | D::F4E2M1
        ) {
            let v: Vec<f64> = if to == D::F4E2M1 {
                (0..q.len()).map(|i| q[i] + zero(i)).collect()
            } else {
                q
            };
            let opts = CastOptions {
                saturate: self.saturate,
                ..CastOptions::default()
            };
            cast_with(&Tensor::from_vec(x.shape(), v)?, to, opts)?
        } else {
            return Err(Error::NotSupported(format!("QuantizeLinear to {to}")));
        };
        Ok(vec![y])
    }
}

struct Dequantize {
    axis: i64,
    block: usize,
    output_dtype: Option<D>,
}

impl Kernel for Dequantize {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let (x, scale) = (required(inputs, 0)?, required(inputs, 1)?);
        if !scale.dtype().is_float() {
            return Err(unsupported_type("DequantizeLinear scale", scale));
        }
        let axis = normalize_axis(self.axis, x.rank().max(1)).unwrap_or(0);
        let si = param_index(x.shape(), scale.shape(), axis, self.block)?;
        let (xv, sv) = (values(x)?, values(scale)?);
        let zero: Option<(Vec<f64>, Vec<usize>)> = match optional(inputs, 2) {
            Some(z) if !x.dtype().is_float() => {
                if z.dtype() != x.dtype() {
                    return Err(Error::invalid(format!(
                        "zero point is {}, x is {}",
                        z.dtype(),
                        x.dtype()
                    )));
                }
                Some((
                    values(z)?,
                    param_index(x.shape(), z.shape(), axis, self.block)?,
                ))
            }
            _ => None,
        };
        // The reference computes in f32: (x - zero) * scale.
        let y: Vec<f64> = (0..xv.len())
            .map(|i| {
                let z = zero.as_ref().map_or(0.0, |(z, idx)| z[idx[i]]);
                let dx = round_to(xv[i] - z, D::F32);
                round_to(dx * sv[si[i]], D::F32)
            })
            .collect();
        Ok(vec![cast(
            &Tensor::from_vec(x.shape(), y)?,
            self.output_dtype.unwrap_or(scale.dtype()),
        )?])
    }
}

/// DynamicQuantizeLinear: uint8 with scale and zero point from the data's
/// range (widened to include 0), all arithmetic in f32.
struct DynamicQuantize;

impl Kernel for DynamicQuantize {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let v = x.as_slice::<f32>()?;
        let max = v.iter().copied().fold(0.0f32, f32::max);
        let min = v.iter().copied().fold(0.0f32, f32::min);
        let scale = if max == min { 1.0 } else { max - min } / 255.0;
        let zp = round_half_even(f64::from((0.0 - min / scale).clamp(0.0, 255.0)));
        let y: Vec<u8> = v
            .iter()
            .map(|&e| (round_half_even(f64::from(e / scale)) + zp).clamp(0.0, 255.0) as u8)
            .collect();
        Ok(vec![
            Tensor::from_vec(x.shape(), y)?,
            Tensor::scalar(scale),
            Tensor::scalar(zp as u8),
        ])
    }
}

fn dtype_attr(node: &Node, name: &str) -> Result<Option<D>> {
    match node.get_int(name)? {
        None | Some(0) => Ok(None),
        Some(c) => i32::try_from(c)
            .ok()
            .and_then(D::from_onnx)
            .map(Some)
            .ok_or_else(|| Error::invalid(format!("{name} {c} is not an ONNX element type"))),
    }
}

fn create(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let axis = node.int_or("axis", 1)?;
    let block = usize::try_from(node.int_or("block_size", 0)?)
        .map_err(|_| Error::invalid("block_size must not be negative"))?;
    let output_dtype = dtype_attr(node, "output_dtype")?;
    if node.op_type == "DynamicQuantizeLinear" {
        return Ok(Box::new(DynamicQuantize));
    }
    Ok(if node.op_type == "QuantizeLinear" {
        Box::new(Quantize {
            axis,
            block,
            saturate: node.int_or("saturate", 1)? != 0,
            output_dtype,
            precision: dtype_attr(node, "precision")?,
        })
    } else {
        Box::new(Dequantize {
            axis,
            block,
            output_dtype,
        })
    })
}

/// Registers QuantizeLinear, DequantizeLinear and DynamicQuantizeLinear.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new("QuantizeLinear", 10.., &[], create));
    reg.add(KernelDef::new("DequantizeLinear", 10.., &[], create));
    reg.add(KernelDef::new(
        "DynamicQuantizeLinear",
        11..,
        &[D::F32],
        create,
    ));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn quantize_round_trip_per_axis() {
        let x = Tensor::from_vec(vec![2, 3], vec![0.0f32, 1.5, -2.5, 10.0, 300.0, -300.0]).unwrap();
        let scale = Tensor::from_vec(vec![2], vec![0.5f32, 2.0]).unwrap();
        let zp = Tensor::from_vec(vec![2], vec![10i8, -1]).unwrap();
        let q = Quantize {
            axis: 0,
            block: 0,
            saturate: true,
            output_dtype: None,
            precision: None,
        };
        let y = q.compute(&[Some(&x), Some(&scale), Some(&zp)]).unwrap();
        // Row 0: 0/0.5+10, 3+10, -5+10; row 1: 5-1, 150-1, -150-1 -> clamp -128.
        assert_eq!(y[0].as_slice::<i8>().unwrap(), &[10, 13, 5, 4, 127, -128]);
        let d = Dequantize {
            axis: 0,
            block: 0,
            output_dtype: None,
        };
        let back = d.compute(&[Some(&y[0]), Some(&scale), Some(&zp)]).unwrap();
        assert_eq!(
            back[0].as_slice::<f32>().unwrap(),
            &[0.0, 1.5, -2.5, 10.0, 256.0, -254.0]
        );
        // Ties round to even: 2.5 -> 2.
        let t = Tensor::from_vec(vec![1], vec![2.5f32]).unwrap();
        let one = Tensor::scalar(1.0f32);
        let y = q.compute(&[Some(&t), Some(&one)]).unwrap();
        assert_eq!(y[0].as_slice::<u8>().unwrap(), &[2]);
    }

    #[test]
    fn dynamic_quantize_spans_the_range() {
        let x = Tensor::from_vec(vec![3], vec![-1.0f32, 0.0, 2.0]).unwrap();
        let out = DynamicQuantize.compute(&[Some(&x)]).unwrap();
        let scale = out[1].as_slice::<f32>().unwrap()[0];
        assert!((scale - 3.0 / 255.0).abs() < 1e-9);
        assert_eq!(out[2].as_slice::<u8>().unwrap(), &[85]);
        assert_eq!(out[0].as_slice::<u8>().unwrap(), &[0, 85, 255]);
    }

    #[test]
    fn blocked_scales() {
        let x = Tensor::from_vec(vec![1, 4], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
        let scale = Tensor::from_vec(vec![1, 2], vec![1.0f32, 0.5]).unwrap();
        let q = Quantize {
            axis: 1,
            block: 2,
            saturate: true,
            output_dtype: Some(D::I4),
            precision: None,
        };
        let y = q.compute(&[Some(&x), Some(&scale)]).unwrap();
        assert_eq!(y[0].dtype(), D::I4);
        let back = cast(&y[0], D::I8).unwrap();
        assert_eq!(back.as_slice::<i8>().unwrap(), &[1, 2, 6, 7]);
        let bad = Tensor::from_vec(vec![1, 3], vec![1.0f32; 3]).unwrap();
        assert!(q.compute(&[Some(&x), Some(&bad)]).is_err());
    }
}

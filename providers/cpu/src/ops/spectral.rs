//! Fourier transforms with rustfft: DFT (opset 17 axis attribute, opset 20
//! axis input; forward, inverse, one-sided in both directions, dft_length
//! padding or cropping) and STFT (windowed frames, one-sided).
//!
//! Signals are tensors whose last axis holds 1 (real) or 2 (real,
//! imaginary) values; transforms run in f64.

use oxrt_core::dtype::DataType;
use oxrt_core::shape::normalize_axis;
use oxrt_core::{Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor};
use rustfft::num_complex::Complex;
use rustfft::FftPlanner;

use crate::kernel::{ensure_allocatable, optional, read_scalar_int, required};
use crate::ops::activation::FLOATS;
use crate::ops::cast::cast;

type C64 = Complex<f64>;

/// The complex signal of `x` (`[..., 1 | 2]`) and its shape without the
/// last axis.
fn complex_signal(x: &Tensor) -> Result<(Vec<C64>, Vec<usize>)> {
    let (last, dims) = x
        .shape()
        .split_last()
        .ok_or_else(|| Error::invalid("a signal needs a last axis of 1 or 2 values"))?;
    let v = x
        .to_f64_vec()
        .ok_or_else(|| Error::NotSupported(format!("a signal of {}", x.dtype())))?;
    let data = match last {
        1 => v.into_iter().map(|re| C64::new(re, 0.0)).collect(),
        2 => v.chunks_exact(2).map(|c| C64::new(c[0], c[1])).collect(),
        n => {
            return Err(Error::invalid(format!(
                "the last axis of a signal holds 1 (real) or 2 (complex) values, got {n}"
            )))
        }
    };
    Ok((data, dims.to_vec()))
}

/// Tensor `[dims..., 2]` (or `[dims..., 1]` of the real parts) of `dtype`.
fn to_tensor(data: &[C64], mut dims: Vec<usize>, real: bool, dtype: DataType) -> Result<Tensor> {
    let flat: Vec<f64> = if real {
        dims.push(1);
        data.iter().map(|c| c.re).collect()
    } else {
        dims.push(2);
        data.iter().flat_map(|c| [c.re, c.im]).collect()
    };
    cast(&Tensor::from_vec(dims, flat)?, dtype)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Transform {
    Forward {
        onesided: bool,
    },
    Inverse,
    /// Inverse of a one-sided spectrum: a real signal.
    InverseReal,
}

/// Transforms every lane of `data` (shape `dims`) along `axis` with
/// length-`n` transforms; returns the output and its dims.
fn transform_axis(
    data: &[C64],
    dims: &[usize],
    axis: usize,
    n: usize,
    how: Transform,
) -> Result<(Vec<C64>, Vec<usize>)> {
    let len = dims[axis];
    let outer: usize = dims[..axis].iter().product();
    let inner: usize = dims[axis + 1..].iter().product();
    let kept = match how {
        Transform::Forward { onesided: true } => n / 2 + 1,
        _ => n,
    };
    let mut out_dims = dims.to_vec();
    out_dims[axis] = kept;
    ensure_allocatable(&out_dims, "DFT output")?;
    let forward = matches!(how, Transform::Forward { .. });
    let mut planner = FftPlanner::<f64>::new();
    let fft = if forward {
        planner.plan_fft_forward(n)
    } else {
        planner.plan_fft_inverse(n)
    };
    let mut out = vec![C64::new(0.0, 0.0); outer * kept * inner];
    let mut lane = vec![C64::new(0.0, 0.0); n];
    for o in 0..outer {
        for i in 0..inner {
            lane.fill(C64::new(0.0, 0.0));
            let at = |k: usize| data[(o * len + k) * inner + i];
            if how == Transform::InverseReal {
                // Rebuild the Hermitian spectrum from its first n/2 + 1 bins.
                for k in 0..=(n / 2).min(len.saturating_sub(1)) {
                    let mut v = at(k);
                    if k == 0 || (n.is_multiple_of(2) && k == n / 2) {
                        v.im = 0.0;
                    }
                    lane[k] = v;
                    if k > 0 && k < n - k {
                        lane[n - k] = v.conj();
                    }
                }
            } else {
                for (k, slot) in lane.iter_mut().enumerate().take(len.min(n)) {
                    *slot = at(k);
                }
            }
            fft.process(&mut lane);
            let scale = if forward { 1.0 } else { 1.0 / n as f64 };
            for k in 0..kept {
                out[(o * kept + k) * inner + i] = lane[k] * scale;
            }
        }
    }
    Ok((out, out_dims))
}

struct Dft {
    /// Opset 17 reads the axis from the attribute; 20 from input 2.
    attr_axis: Option<i64>,
    inverse: bool,
    onesided: bool,
}

impl Kernel for Dft {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let (data, dims) = complex_signal(x)?;
        let axis = match self.attr_axis {
            Some(a) => a,
            None if optional(inputs, 2).is_some() => read_scalar_int(inputs, 2, "axis")?,
            None => -2,
        };
        // The axis counts the last (real/imaginary) axis too, which it may not name.
        let axis = normalize_axis(axis, x.rank())?;
        if axis >= dims.len() {
            return Err(Error::invalid(format!(
                "DFT axis {axis} is the real/imaginary axis of a rank-{} signal",
                x.rank()
            )));
        }
        let n = match optional(inputs, 1) {
            Some(_) => {
                let n = read_scalar_int(inputs, 1, "dft_length")?;
                usize::try_from(n)
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| Error::invalid(format!("dft_length {n} must be positive")))?
            }
            None if self.inverse && self.onesided => 2 * dims[axis].saturating_sub(1),
            None => dims[axis],
        };
        if n == 0 {
            return Err(Error::invalid("DFT of an empty axis"));
        }
        let how = match (self.inverse, self.onesided) {
            (false, onesided) => Transform::Forward { onesided },
            (true, false) => Transform::Inverse,
            (true, true) => Transform::InverseReal,
        };
        let (out, out_dims) = transform_axis(&data, &dims, axis, n, how)?;
        Ok(vec![to_tensor(
            &out,
            out_dims,
            how == Transform::InverseReal,
            x.dtype(),
        )?])
    }
}

fn create_dft(node: &Node, info: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(Dft {
        attr_axis: (info.node.opset < 20)
            .then(|| node.int_or("axis", 1))
            .transpose()?,
        inverse: node.int_or("inverse", 0)? != 0,
        onesided: node.int_or("onesided", 0)? != 0,
    }))
}

/// STFT: `signal [batch, length, 1 | 2]` cut into frames of `frame_length`
/// every `frame_step`, each multiplied by `window` and transformed:
/// `[batch, frames, bins, 2]`.
struct Stft {
    onesided: bool,
}

impl Kernel for Stft {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let (data, dims) = complex_signal(x)?;
        let [batch, length] = dims[..] else {
            return Err(Error::invalid(format!(
                "STFT signal must be [batch, length, 1 | 2], got {:?}",
                x.shape()
            )));
        };
        let step = usize::try_from(read_scalar_int(inputs, 1, "frame_step")?)
            .ok()
            .filter(|&s| s > 0)
            .ok_or_else(|| Error::invalid("frame_step must be positive"))?;
        let window = optional(inputs, 2)
            .map(|w| {
                w.to_f64_vec()
                    .ok_or_else(|| Error::invalid("window must be float"))
            })
            .transpose()?;
        let frame = match optional(inputs, 3) {
            Some(_) => usize::try_from(read_scalar_int(inputs, 3, "frame_length")?)
                .map_err(|_| Error::invalid("frame_length must not be negative"))?,
            None => window.as_ref().map_or(length, Vec::len),
        };
        if frame == 0 || frame > length {
            return Err(Error::invalid(format!(
                "frame_length {frame} must be in [1, {length}]"
            )));
        }
        let window = window.unwrap_or_else(|| vec![1.0; frame]);
        if window.len() != frame {
            return Err(Error::invalid(format!(
                "window has {} values, frame_length is {frame}",
                window.len()
            )));
        }
        let frames = 1 + (length - frame) / step;
        let mut framed = Vec::with_capacity(batch * frames * frame);
        for b in 0..batch {
            for f in 0..frames {
                let start = b * length + f * step;
                framed.extend(
                    data[start..start + frame]
                        .iter()
                        .zip(&window)
                        .map(|(v, w)| v * w),
                );
            }
        }
        let how = Transform::Forward {
            onesided: self.onesided,
        };
        let (out, out_dims) = transform_axis(&framed, &[batch, frames, frame], 2, frame, how)?;
        Ok(vec![to_tensor(&out, out_dims, false, x.dtype())?])
    }
}

fn create_stft(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(Stft {
        onesided: node.int_or("onesided", 1)? != 0,
    }))
}

/// Registers DFT and STFT.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new("DFT", 17.., FLOATS, create_dft));
    reg.add(KernelDef::new("STFT", 17.., FLOATS, create_stft));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn dft(x: &Tensor, inverse: bool, onesided: bool, n: Option<i64>) -> Tensor {
        let k = Dft {
            attr_axis: Some(0),
            inverse,
            onesided,
        };
        let n = n.map(Tensor::scalar);
        k.compute(&[Some(x), n.as_ref()]).unwrap().remove(0)
    }

    #[test]
    fn forward_then_inverse_round_trips() {
        let x = Tensor::from_vec(vec![4, 1], vec![1.0f64, 2.0, 0.0, -1.0]).unwrap();
        let spectrum = dft(&x, false, false, None);
        // X[0] = sum = 2, X[2] = 1 - 2 + 0 + 1 = 0.
        let s = spectrum.as_slice::<f64>().unwrap();
        assert!((s[0] - 2.0).abs() < 1e-12 && (s[4]).abs() < 1e-12);
        let back = dft(&spectrum, true, false, None);
        for (i, v) in back.as_slice::<f64>().unwrap().chunks(2).enumerate() {
            assert!((v[0] - x.as_slice::<f64>().unwrap()[i]).abs() < 1e-12 && v[1].abs() < 1e-12);
        }
        // One-sided there and back gives the real signal.
        let half = dft(&x, false, true, None);
        assert_eq!(half.shape(), &[3, 2]);
        let real = dft(&half, true, true, None);
        assert_eq!(real.shape(), &[4, 1]);
        for (a, b) in real
            .as_slice::<f64>()
            .unwrap()
            .iter()
            .zip(x.as_slice::<f64>().unwrap())
        {
            assert!((a - b).abs() < 1e-12);
        }
        // dft_length pads with zeros.
        assert_eq!(dft(&x, false, false, Some(6)).shape(), &[6, 2]);
    }
}

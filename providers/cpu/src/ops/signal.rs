//! Signal generators: HannWindow, HammingWindow and BlackmanWindow
//! (periodic or symmetric) and MelWeightMatrix, computed in f64 and cast to
//! `output_datatype`.

use std::f64::consts::PI;

use oxrt_core::{
    DataType as D, Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor,
};

use crate::kernel::read_scalar_int;
use crate::ops::cast::cast;

#[derive(Clone, Copy, Debug)]
enum Shape {
    Hann,
    Hamming,
    Blackman,
}

/// The `n`-th of `size` window values; `denominator` is `size` for
/// periodic windows and `size - 1` for symmetric ones.
fn value(shape: Shape, n: f64, denominator: f64) -> f64 {
    let x = 2.0 * PI * n / denominator;
    match shape {
        Shape::Hann => (PI * n / denominator).sin().powi(2),
        Shape::Hamming => 25.0 / 46.0 - (21.0 / 46.0) * x.cos(),
        Shape::Blackman => 0.42 - 0.5 * x.cos() + 0.08 * (2.0 * x).cos(),
    }
}

struct Window {
    shape: Shape,
    periodic: bool,
    dtype: D,
}

impl Kernel for Window {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let size = read_scalar_int(inputs, 0, "size")?;
        let size = usize::try_from(size)
            .map_err(|_| Error::invalid(format!("window size {size} is negative")))?;
        crate::kernel::ensure_allocatable(&[size], "window")?;
        let denominator = if self.periodic {
            size
        } else {
            size.saturating_sub(1)
        } as f64;
        let v: Vec<f64> = (0..size)
            .map(|n| value(self.shape, n as f64, denominator))
            .collect();
        Ok(vec![cast(&Tensor::from_vec(vec![size], v)?, self.dtype)?])
    }
}

fn output_datatype(node: &Node) -> Result<D> {
    let code = node.int_or("output_datatype", 1)?;
    i32::try_from(code)
        .ok()
        .and_then(D::from_onnx)
        .ok_or_else(|| {
            Error::invalid(format!(
                "output_datatype {code} is not an ONNX element type"
            ))
        })
}

fn create(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let dtype = output_datatype(node)?;
    Ok(Box::new(Window {
        shape: match node.op_type.as_str() {
            "HannWindow" => Shape::Hann,
            "HammingWindow" => Shape::Hamming,
            _ => Shape::Blackman,
        },
        periodic: node.int_or("periodic", 1)? != 0,
        dtype,
    }))
}

/// MelWeightMatrix: `[dft_length / 2 + 1, num_mel_bins]` triangular
/// filters whose edges are evenly spaced on the mel scale between the two
/// edge frequencies (bins rounded down as ONNX does).
struct MelWeightMatrix {
    dtype: D,
}

fn scalar_f64(inputs: &[Option<&Tensor>], i: usize, what: &str) -> Result<f64> {
    let t = crate::kernel::required(inputs, i)?;
    match t.to_f64_vec().as_deref() {
        Some([v]) => Ok(*v),
        _ => Err(Error::invalid(format!(
            "{what} must be one number, got {} {:?}",
            t.dtype(),
            t.shape()
        ))),
    }
}

impl Kernel for MelWeightMatrix {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let count = |i: usize, what: &str| -> Result<usize> {
            let v = read_scalar_int(inputs, i, what)?;
            usize::try_from(v)
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| Error::invalid(format!("{what} {v} must be positive")))
        };
        let (mels, dft_length, rate) = (
            count(0, "num_mel_bins")?,
            count(1, "dft_length")?,
            count(2, "sample_rate")?,
        );
        let (low, high) = (
            scalar_f64(inputs, 3, "lower_edge_hertz")?,
            scalar_f64(inputs, 4, "upper_edge_hertz")?,
        );
        let bins = dft_length / 2 + 1;
        crate::kernel::ensure_allocatable(&[bins, mels], "MelWeightMatrix output")?;
        // The edges are computed in the precision of the hertz inputs (f32).
        let mel = |hz: f64| (2595.0 * (1.0 + hz as f32 / 700.0).log10()) as f64;
        let (low_mel, high_mel) = (mel(low), mel(high));
        let step = (high_mel - low_mel) / (mels + 2) as f64;
        let edges: Vec<usize> = (0..mels + 2)
            .map(|i| {
                let hz = 700.0 * (10f64.powf((i as f64 * step + low_mel) / 2595.0) - 1.0);
                (((dft_length + 1) as f64 * hz) / rate as f64)
                    .floor()
                    .max(0.0) as usize
            })
            .collect();
        let mut out = vec![0.0f64; bins * mels];
        let mut set = |j: usize, i: usize, v: f64| -> Result<()> {
            let slot = out.get_mut(j * mels + i).ok_or_else(|| {
                Error::invalid(format!(
                    "mel filter {i} reaches bin {j}, past the {bins} bins (upper_edge_hertz above the Nyquist frequency?)"
                ))
            })?;
            *slot = v;
            Ok(())
        };
        for i in 0..mels {
            let (lo, center, hi) = (edges[i], edges[i + 1], edges[i + 2]);
            if center == lo {
                set(center, i, 1.0)?;
            } else {
                for j in lo..=center {
                    set(j, i, (j - lo) as f64 / (center - lo) as f64)?;
                }
            }
            for j in center..hi {
                set(j, i, (hi - j) as f64 / (hi - center) as f64)?;
            }
        }
        Ok(vec![cast(
            &Tensor::from_vec(vec![bins, mels], out)?,
            self.dtype,
        )?])
    }
}

fn create_mel(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(MelWeightMatrix {
        dtype: output_datatype(node)?,
    }))
}

/// Registers the window generators and MelWeightMatrix.
pub fn register(reg: &mut KernelRegistry) {
    for op in ["HannWindow", "HammingWindow", "BlackmanWindow"] {
        reg.add(KernelDef::new(op, 17.., &[], create));
    }
    reg.add(KernelDef::new("MelWeightMatrix", 17.., &[], create_mel));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn windows_match_their_formulas() {
        let size = Tensor::scalar(4i64);
        let hann = Window {
            shape: Shape::Hann,
            periodic: true,
            dtype: D::F64,
        };
        let v = hann
            .compute(&[Some(&size)])
            .unwrap()
            .remove(0)
            .into_vec::<f64>()
            .unwrap();
        let want = [0.0, 0.5, 1.0, 0.5];
        assert!(
            v.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12),
            "{v:?}"
        );
        let sym = Window {
            shape: Shape::Hamming,
            periodic: false,
            dtype: D::F32,
        };
        let v = sym
            .compute(&[Some(&size)])
            .unwrap()
            .remove(0)
            .into_vec::<f32>()
            .unwrap();
        // Symmetric: the ends are equal, alpha - beta = 4/46.
        assert!((v[0] - 4.0 / 46.0).abs() < 1e-6 && (v[3] - v[0]).abs() < 1e-6);
        let b = Window {
            shape: Shape::Blackman,
            periodic: true,
            dtype: D::F64,
        };
        let v = b
            .compute(&[Some(&size)])
            .unwrap()
            .remove(0)
            .into_vec::<f64>()
            .unwrap();
        assert!(v[0].abs() < 1e-12 && (v[2] - 1.0).abs() < 1e-12);
        assert!(hann.compute(&[Some(&Tensor::scalar(-1i64))]).is_err());
    }
}

//! Signal windows: HannWindow, HammingWindow and BlackmanWindow (periodic
//! or symmetric), computed in f64 and cast to `output_datatype`.

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

fn create(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let code = node.int_or("output_datatype", 1)?;
    let dtype = i32::try_from(code)
        .ok()
        .and_then(D::from_onnx)
        .ok_or_else(|| {
            Error::invalid(format!(
                "output_datatype {code} is not an ONNX element type"
            ))
        })?;
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

/// Registers the window generators.
pub fn register(reg: &mut KernelRegistry) {
    for op in ["HannWindow", "HammingWindow", "BlackmanWindow"] {
        reg.add(KernelDef::new(op, 17.., &[], create));
    }
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

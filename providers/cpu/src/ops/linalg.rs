//! Det: determinants of square matrices (the last two axes), by LU
//! decomposition with partial pivoting in f64.

use oxrt_core::{Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor};

use crate::kernel::{required, unsupported_type, with_float_type};
use crate::ops::activation::FLOATS;

/// The determinant of the `n`×`n` row-major matrix `m` (consumed).
fn determinant(mut m: Vec<f64>, n: usize) -> f64 {
    let mut det = 1.0;
    for c in 0..n {
        let pivot = (c..n)
            .max_by(|&a, &b| m[a * n + c].abs().total_cmp(&m[b * n + c].abs()))
            .unwrap_or(c);
        if m[pivot * n + c] == 0.0 {
            return 0.0;
        }
        if pivot != c {
            for j in 0..n {
                m.swap(c * n + j, pivot * n + j);
            }
            det = -det;
        }
        let p = m[c * n + c];
        det *= p;
        for r in c + 1..n {
            let f = m[r * n + c] / p;
            for j in c..n {
                m[r * n + j] -= f * m[c * n + j];
            }
        }
    }
    det
}

struct Det;

impl Kernel for Det {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let s = x.shape();
        let r = s.len();
        if r < 2 || s[r - 1] != s[r - 2] {
            return Err(Error::invalid(format!(
                "Det needs square matrices in the last two axes, got shape {s:?}"
            )));
        }
        let n = s[r - 1];
        let values = x.to_f64_vec().ok_or_else(|| unsupported_type("Det", x))?;
        let dets: Vec<f64> = if n == 0 {
            vec![1.0; s[..r - 2].iter().product()]
        } else {
            values
                .chunks(n * n)
                .map(|m| determinant(m.to_vec(), n))
                .collect()
        };
        with_float_type!(x.dtype(), T => {
            let out: Vec<T> = dets.iter().map(|&d| <T as num_traits::NumCast>::from(d).unwrap_or(<T as num_traits::Float>::nan())).collect();
            Ok(vec![Tensor::from_vec(&s[..r - 2], out)?])
        }, _ => Err(unsupported_type("Det", x)))
    }
}

fn create(_: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(Det))
}

/// Registers Det.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new("Det", 11.., FLOATS, create));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn determinants() {
        assert_eq!(determinant(vec![1.0, 2.0, 3.0, 4.0], 2), -2.0);
        // Needs a row swap: [[0,1],[1,0]] -> -1.
        assert_eq!(determinant(vec![0.0, 1.0, 1.0, 0.0], 2), -1.0);
        assert_eq!(determinant(vec![1.0, 2.0, 2.0, 4.0], 2), 0.0);
        let x = Tensor::from_vec(
            vec![2, 3, 3],
            vec![
                2.0f32, 0.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 4.0, 1.0, 2.0, 3.0, 0.0, 1.0, 4.0, 5.0,
                6.0, 0.0,
            ],
        )
        .unwrap();
        let d = Det.compute(&[Some(&x)]).unwrap();
        assert_eq!(d[0].shape(), &[2]);
        let v = d[0].as_slice::<f32>().unwrap();
        assert!(
            (v[0] - 24.0).abs() < 1e-5 && (v[1] - 1.0).abs() < 1e-5,
            "{v:?}"
        );
        let bad = Tensor::from_vec(vec![2, 3], vec![0.0f32; 6]).unwrap();
        assert!(Det.compute(&[Some(&bad)]).is_err());
    }
}

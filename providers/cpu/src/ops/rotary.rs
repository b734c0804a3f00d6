//! RotaryEmbedding (opset 23): rotates pairs of each head's leading
//! `rotary_embedding_dim` features by position-dependent angles, halves or
//! interleaved, on 3-D `[batch, seq, heads * size]` or 4-D
//! `[batch, heads, seq, size]` inputs.

use oxrt_core::{Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor};

use crate::kernel::{optional, read_ints, required, unsupported_type};
use crate::ops::activation::FLOATS;
use crate::ops::cast::cast;

struct Rotary {
    interleaved: bool,
    rotary_dim: usize,
    num_heads: usize,
}

impl Kernel for Rotary {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let (x, cos_t, sin_t) = (
            required(inputs, 0)?,
            required(inputs, 1)?,
            required(inputs, 2)?,
        );
        let f = |t: &Tensor| {
            t.to_f64_vec()
                .ok_or_else(|| unsupported_type("RotaryEmbedding", t))
        };
        let (xv, cos, sin) = (f(x)?, f(cos_t)?, f(sin_t)?);
        let (b, h, s, d, four) = match *x.shape() {
            [b, h, s, d] => (b, h, s, d, true),
            [b, s, hidden] if self.num_heads > 0 && hidden % self.num_heads == 0 => {
                (b, self.num_heads, s, hidden / self.num_heads, false)
            }
            _ => {
                return Err(Error::invalid(format!(
                    "input of shape {:?} needs to be 4-D, or 3-D with num_heads dividing its hidden size",
                    x.shape()
                )))
            }
        };
        let rot = if self.rotary_dim == 0 {
            d
        } else {
            self.rotary_dim
        };
        if rot > d || rot % 2 != 0 {
            return Err(Error::invalid(format!(
                "rotary_embedding_dim {rot} does not fit head size {d}"
            )));
        }
        let half = rot / 2;
        let positions = optional(inputs, 3)
            .map(|t| read_ints(t, "position_ids"))
            .transpose()?;
        // Row of the cos/sin caches for (batch, position in sequence).
        let row = |bi: usize, si: usize| -> Result<usize> {
            match &positions {
                Some(p) => {
                    let pos = p.get(bi * s + si).copied().unwrap_or(-1);
                    usize::try_from(pos)
                        .ok()
                        .filter(|&r| (r + 1) * half <= cos.len())
                        .ok_or_else(|| {
                            Error::invalid(format!(
                                "position id {pos} is outside the cos/sin cache"
                            ))
                        })
                }
                None => Ok(bi * s + si),
            }
        };
        if cos.len() != sin.len() || (positions.is_none() && cos.len() != b * s * half) {
            return Err(Error::invalid(format!(
                "cos/sin caches of {} and {} values do not fit {b} x {s} positions of {half}",
                cos.len(),
                sin.len()
            )));
        }
        let at = |bi: usize, hi: usize, si: usize, di: usize| {
            if four {
                ((bi * h + hi) * s + si) * d + di
            } else {
                ((bi * s + si) * h + hi) * d + di
            }
        };
        let mut y = xv.clone();
        for bi in 0..b {
            for si in 0..s {
                let r = row(bi, si)?;
                for hi in 0..h {
                    for k in 0..half {
                        let (i1, i2) = if self.interleaved {
                            (2 * k, 2 * k + 1)
                        } else {
                            (k, k + half)
                        };
                        let (x1, x2) = (xv[at(bi, hi, si, i1)], xv[at(bi, hi, si, i2)]);
                        let (c, sn) = (cos[r * half + k], sin[r * half + k]);
                        y[at(bi, hi, si, i1)] = c * x1 - sn * x2;
                        y[at(bi, hi, si, i2)] = sn * x1 + c * x2;
                    }
                }
            }
        }
        Ok(vec![cast(&Tensor::from_vec(x.shape(), y)?, x.dtype())?])
    }
}

fn create(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let non_negative = |name: &str| -> Result<usize> {
        usize::try_from(node.int_or(name, 0)?)
            .map_err(|_| Error::invalid(format!("{name} must not be negative")))
    };
    Ok(Box::new(Rotary {
        interleaved: node.int_or("interleaved", 0)? != 0,
        rotary_dim: non_negative("rotary_embedding_dim")?,
        num_heads: non_negative("num_heads")?,
    }))
}

/// Registers RotaryEmbedding.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new("RotaryEmbedding", 23.., FLOATS, create));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rotates_pairs_by_the_cached_angle() {
        // One head of size 2 at one position, angle 90 degrees: (1, 0) -> (0, 1).
        let x = Tensor::from_vec(vec![1, 1, 1, 2], vec![1.0f32, 0.0]).unwrap();
        let cos = Tensor::from_vec(vec![1, 1, 1], vec![0.0f32]).unwrap();
        let sin = Tensor::from_vec(vec![1, 1, 1], vec![1.0f32]).unwrap();
        let k = Rotary {
            interleaved: false,
            rotary_dim: 0,
            num_heads: 0,
        };
        let y = k.compute(&[Some(&x), Some(&cos), Some(&sin)]).unwrap();
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[0.0, 1.0]);
        let pos = Tensor::from_vec(vec![1, 1], vec![3i64]).unwrap();
        assert!(k
            .compute(&[Some(&x), Some(&cos), Some(&sin), Some(&pos)])
            .is_err());
    }
}

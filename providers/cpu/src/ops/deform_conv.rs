//! DeformConv (2-D): a grouped convolution whose kernel taps are moved by
//! learned per-position `offset`s (bilinear samples, zero outside the
//! input) and optionally scaled by a `mask`, per offset group.

use oxrt_core::{Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor};

use crate::kernel::{ensure_allocatable, numbers, optional, required};
use crate::ops::activation::FLOATS;
use crate::ops::cast::cast;

struct DeformConv {
    dilations: Option<Vec<i64>>,
    group: usize,
    offset_group: usize,
    pads: Option<Vec<i64>>,
    strides: Option<Vec<i64>>,
}

/// Bilinear sample of `plane` (`h` x `w`) at `(y, x)`, zero outside.
fn sample(plane: &[f64], h: usize, w: usize, y: f64, x: f64) -> f64 {
    let (y0, x0) = (y.floor(), x.floor());
    let (ly, lx) = (y - y0, x - x0);
    let at = |r: f64, c: f64| {
        if r < 0.0 || c < 0.0 || r >= h as f64 || c >= w as f64 {
            0.0
        } else {
            plane[r as usize * w + c as usize]
        }
    };
    (1.0 - ly) * ((1.0 - lx) * at(y0, x0) + lx * at(y0, x0 + 1.0))
        + ly * ((1.0 - lx) * at(y0 + 1.0, x0) + lx * at(y0 + 1.0, x0 + 1.0))
}

impl DeformConv {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let (x, w, off) = (
            required(inputs, 0)?,
            required(inputs, 1)?,
            required(inputs, 2)?,
        );
        let (bias, mask) = (optional(inputs, 3), optional(inputs, 4));
        let ([n, ic, ih, iw], [oc, icg, kh, kw]) = (
            <[usize; 4]>::try_from(x.shape()).map_err(|_| {
                Error::NotSupported(format!(
                    "DeformConv of a rank-{} input (2-D only)",
                    x.rank()
                ))
            })?,
            <[usize; 4]>::try_from(w.shape()).map_err(|_| {
                Error::invalid(format!(
                    "W must be [OC, IC/group, kH, kW], got {:?}",
                    w.shape()
                ))
            })?,
        );
        let (g, og) = (self.group, self.offset_group);
        if g == 0 || og == 0 || ic != icg * g || oc % g != 0 || ic % og != 0 {
            return Err(Error::invalid(format!(
                "X {:?} and W {:?} do not fit group {g} and offset_group {og}",
                x.shape(),
                w.shape()
            )));
        }
        let pair = |v: &Option<Vec<i64>>, d: i64| {
            v.as_deref()
                .map_or([d, d], |v| [v[0], *v.get(1).unwrap_or(&d)])
        };
        let [sh, sw] = pair(&self.strides, 1);
        let [dh, dw] = pair(&self.dilations, 1);
        let pads = self.pads.clone().unwrap_or_else(|| vec![0; 4]);
        if pads.len() != 4 || sh <= 0 || sw <= 0 || dh <= 0 || dw <= 0 {
            return Err(Error::invalid(
                "DeformConv needs 4 pads and positive strides and dilations",
            ));
        }
        let span = |k: usize, d: i64| (k as i64 - 1) * d + 1;
        let out_dim = |i: usize, k: usize, d: i64, p0: i64, p1: i64, s: i64| {
            (i as i64 + p0 + p1 - span(k, d)) / s + 1
        };
        let (oh, ow) = (
            out_dim(ih, kh, dh, pads[0], pads[2], sh),
            out_dim(iw, kw, dw, pads[1], pads[3], sw),
        );
        let (oh, ow) = (
            usize::try_from(oh)
                .map_err(|_| Error::invalid("the kernel is larger than the padded input"))?,
            usize::try_from(ow)
                .map_err(|_| Error::invalid("the kernel is larger than the padded input"))?,
        );
        let taps = kh * kw;
        if off.shape() != [n, og * taps * 2, oh, ow] {
            return Err(Error::invalid(format!(
                "offset must be [{n}, {}, {oh}, {ow}], got {:?}",
                og * taps * 2,
                off.shape()
            )));
        }
        if let Some(m) = mask {
            if m.shape() != [n, og * taps, oh, ow] {
                return Err(Error::invalid(format!(
                    "mask must be [{n}, {}, {oh}, {ow}], got {:?}",
                    og * taps,
                    m.shape()
                )));
            }
        }
        ensure_allocatable(&[n, oc, oh, ow], "DeformConv output")?;
        ensure_allocatable(&[ic, taps, oh, ow], "DeformConv columns")?;
        let (xv, wv, ov) = (numbers(x, "X")?, numbers(w, "W")?, numbers(off, "offset")?);
        let mv = mask.map(|m| numbers(m, "mask")).transpose()?;
        let bv = bias.map(|b| numbers(b, "B")).transpose()?;
        let plane = oh * ow;
        let (ocg, icpog) = (oc / g, ic / og);
        let mut out = vec![0.0; n * oc * plane];
        for b in 0..n {
            // Columns: the deformed, masked sample of every input channel
            // at every tap and output position.
            let mut cols = vec![0.0; ic * taps * plane];
            for c in 0..ic {
                let gi = c / icpog;
                let xp = &xv[(b * ic + c) * ih * iw..][..ih * iw];
                for ki in 0..kh {
                    for kj in 0..kw {
                        let k = ki * kw + kj;
                        for i in 0..oh {
                            for j in 0..ow {
                                let p = i * ow + j;
                                let o = |axis: usize| {
                                    ov[((b * og + gi) * taps * 2 + k * 2 + axis) * plane + p]
                                };
                                let y = (i as i64 * sh - pads[0] + ki as i64 * dh) as f64 + o(0);
                                let xx = (j as i64 * sw - pads[1] + kj as i64 * dw) as f64 + o(1);
                                let m = mv
                                    .as_ref()
                                    .map_or(1.0, |m| m[((b * og + gi) * taps + k) * plane + p]);
                                cols[(c * taps + k) * plane + p] = m * sample(xp, ih, iw, y, xx);
                            }
                        }
                    }
                }
            }
            for o in 0..oc {
                let grp = o / ocg;
                let dst = &mut out[(b * oc + o) * plane..][..plane];
                dst.fill(bv.as_ref().map_or(0.0, |bv| bv[o]));
                for cl in 0..icg {
                    let c = grp * icg + cl;
                    for k in 0..taps {
                        let wt = wv[(o * icg + cl) * taps + k];
                        let col = &cols[(c * taps + k) * plane..][..plane];
                        dst.iter_mut().zip(col).for_each(|(d, v)| *d += wt * v);
                    }
                }
            }
        }
        cast(&Tensor::from_vec(vec![n, oc, oh, ow], out)?, x.dtype())
    }
}

impl Kernel for DeformConv {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        Ok(vec![self.run(inputs)?])
    }
}

fn create(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let ints =
        |name: &str| -> Result<Option<Vec<i64>>> { Ok(node.get_ints(name)?.map(<[i64]>::to_vec)) };
    let count = |name: &str| -> Result<usize> {
        let v = node.int_or(name, 1)?;
        usize::try_from(v)
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| Error::invalid(format!("{name} {v} must be positive")))
    };
    Ok(Box::new(DeformConv {
        dilations: ints("dilations")?,
        group: count("group")?,
        offset_group: count("offset_group")?,
        pads: ints("pads")?,
        strides: ints("strides")?,
    }))
}

/// Registers DeformConv.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new("DeformConv", 19.., FLOATS, create));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn zero_offsets_are_a_plain_convolution() {
        let x = Tensor::from_vec(vec![1, 1, 2, 2], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
        let w = Tensor::from_vec(vec![1, 1, 1, 1], vec![2.0f32]).unwrap();
        let off = Tensor::from_vec(vec![1, 2, 2, 2], vec![0.0f32; 8]).unwrap();
        let k = DeformConv {
            dilations: None,
            group: 1,
            offset_group: 1,
            pads: None,
            strides: None,
        };
        let y = k.run(&[Some(&x), Some(&w), Some(&off)]).unwrap();
        assert_eq!(y.as_slice::<f32>().unwrap(), &[2.0, 4.0, 6.0, 8.0]);
        // Shifting every tap half a pixel right averages neighbours (zero outside).
        let mut shift = vec![0.0f32; 8];
        shift[4..].fill(0.5);
        let off = Tensor::from_vec(vec![1, 2, 2, 2], shift).unwrap();
        let y = k.run(&[Some(&x), Some(&w), Some(&off)]).unwrap();
        assert_eq!(y.as_slice::<f32>().unwrap(), &[3.0, 2.0, 7.0, 4.0]);
    }
}

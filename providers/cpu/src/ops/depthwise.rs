//! Depthwise 2-D convolution in f32 (one filter per channel): each plane is
//! copied once into a zero-padded buffer, then each output row accumulates
//! one contiguous run of the buffer per filter tap, with no bounds tests.
//! Compiled for AVX2+FMA and NEON besides the baseline, chosen at run time.

use multiversion::multiversion;

use crate::ops::window::Window2d;

/// The padded plane's size and the window walked over it.
struct Plane {
    /// Input rows and columns.
    h: usize,
    w: usize,
    /// Padded rows and columns (what the window reads).
    ph: usize,
    pw: usize,
    /// Top and left padding.
    pad: [usize; 2],
    kernel: [usize; 2],
    output: [usize; 2],
    strides: [usize; 2],
    dilations: [usize; 2],
}

impl Plane {
    /// The geometry of `g` over `h x w` planes; `None` for negative pads or
    /// non-positive strides/dilations (the caller's general path handles them).
    fn new(g: &Window2d, [h, w]: [usize; 2]) -> Option<Self> {
        let u = |v: isize| usize::try_from(v).ok();
        let strides = [u(g.strides[0])?, u(g.strides[1])?];
        let dilations = [u(g.dilations[0])?, u(g.dilations[1])?];
        if strides.contains(&0) || dilations.contains(&0) {
            return None;
        }
        let ([kh, kw], [oh, ow]) = (g.kernel, g.output);
        let span =
            |o: usize, s: usize, k: usize, d: usize| (o.max(1) - 1) * s + (k.max(1) - 1) * d + 1;
        Some(Self {
            h,
            w,
            ph: span(oh, strides[0], kh, dilations[0]),
            pw: span(ow, strides[1], kw, dilations[1]),
            pad: [u(g.pads[0])?, u(g.pads[1])?],
            kernel: g.kernel,
            output: g.output,
            strides,
            dilations,
        })
    }

    /// Copies plane `x` into `padded` (`ph x pw`), zeros around it.
    fn pad_into(&self, x: &[f32], padded: &mut [f32]) {
        padded.fill(0.0);
        let [top, left] = self.pad;
        if left >= self.pw {
            return;
        }
        let cols = self.w.min(self.pw - left);
        for iy in 0..self.h {
            let r = iy + top;
            if r >= self.ph {
                break;
            }
            padded[r * self.pw + left..][..cols].copy_from_slice(&x[iy * self.w..][..cols]);
        }
    }
}

/// `out` (`oh x ow`) = the depthwise convolution of padded plane `p` with
/// the `kh x kw` filter `wc`: per output row, one pass over the row per
/// tap (contiguous at stride 1, so the loop runs in full SIMD registers).
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn convolve_plane(g: &Plane, p: &[f32], wc: &[f32], out: &mut [f32]) {
    let fma =
        multiversion::target::target_cfg_f!(any(target_feature = "fma", target_feature = "neon"));
    let ([kh, kw], [oh, ow]) = (g.kernel, g.output);
    let ([sh, sw], [dh, dw]) = (g.strides, g.dilations);
    for oy in 0..oh {
        let row = &mut out[oy * ow..][..ow];
        row.fill(0.0);
        for ky in 0..kh {
            let base = (oy * sh + ky * dh) * g.pw;
            for kx in 0..kw {
                let wk = wc[ky * kw + kx];
                let start = base + kx * dw;
                if sw == 1 {
                    let src = &p[start..start + ow];
                    if fma {
                        row.iter_mut()
                            .zip(src)
                            .for_each(|(a, &v)| *a = wk.mul_add(v, *a));
                    } else {
                        row.iter_mut().zip(src).for_each(|(a, &v)| *a += wk * v);
                    }
                } else {
                    let src = p[start..].iter().step_by(sw);
                    row.iter_mut().zip(src).for_each(|(a, &v)| *a += wk * v);
                }
            }
        }
    }
}

/// Depthwise convolution of the `channels`-plane batch `x` (planes of
/// `h x w`) with one `kh x kw` filter per channel into `y`; `false` when
/// the window is one this kernel does not cover (negative pads).
pub(crate) fn depthwise_f32(
    x: &[f32],
    w: &[f32],
    y: &mut [f32],
    g: &Window2d,
    [h, wd]: [usize; 2],
) -> bool {
    use rayon::prelude::*;
    let Some(plane) = Plane::new(g, [h, wd]) else {
        return false;
    };
    let k_len = g.kernel[0] * g.kernel[1];
    let channels = w.len() / k_len.max(1);
    let out_len = (g.output[0] * g.output[1]).max(1);
    y.par_chunks_mut(out_len).enumerate().for_each_init(
        || vec![0.0f32; plane.ph * plane.pw],
        |padded, (i, out)| {
            let ch = i % channels.max(1);
            plane.pad_into(&x[i * h * wd..][..h * wd], padded);
            convolve_plane(&plane, padded, &w[ch * k_len..][..k_len], out);
        },
    );
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use oxrt_core::shape::{AutoPad, WindowAttrs};

    /// Direct f64 depthwise convolution (pads as given, zeros outside).
    fn reference(x: &[f32], w: &[f32], c: usize, [h, wd]: [usize; 2], g: &Window2d) -> Vec<f64> {
        let ([kh, kw], [oh, ow]) = (g.kernel, g.output);
        let mut y = vec![0.0; c * oh * ow];
        for ch in 0..c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = 0.0;
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let iy = (oy * g.strides[0] as usize + ky * g.dilations[0] as usize)
                                as isize
                                - g.pads[0];
                            let ix = (ox * g.strides[1] as usize + kx * g.dilations[1] as usize)
                                as isize
                                - g.pads[1];
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                                acc += f64::from(x[(ch * h + iy as usize) * wd + ix as usize])
                                    * f64::from(w[(ch * kh + ky) * kw + kx]);
                            }
                        }
                    }
                    y[(ch * oh + oy) * ow + ox] = acc;
                }
            }
        }
        y
    }

    #[test]
    fn matches_the_direct_sum_at_strides_pads_and_dilations() {
        // Ragged widths (not multiples of 8), stride 2, dilation 2, asymmetric pads.
        // (kernel, strides, pads, dilations, input size)
        type Case<'a> = (
            &'a [usize],
            &'a [usize],
            &'a [usize],
            &'a [usize],
            [usize; 2],
        );
        let cases: [Case; 5] = [
            (&[3, 3], &[1, 1], &[1, 1, 1, 1], &[1, 1], [14, 14]),
            (&[3, 3], &[2, 2], &[1, 1, 1, 1], &[1, 1], [15, 13]),
            (&[3, 3], &[1, 1], &[2, 2, 2, 2], &[2, 2], [9, 11]),
            (&[5, 5], &[1, 2], &[2, 0, 1, 2], &[1, 1], [10, 21]),
            (&[1, 1], &[1, 1], &[0, 0, 0, 0], &[1, 1], [3, 5]),
        ];
        for (kernel, strides, pads, dilations, [h, wd]) in cases {
            let attrs = WindowAttrs {
                kernel_shape: Some(kernel.to_vec()),
                strides: Some(strides.to_vec()),
                pads: Some(pads.to_vec()),
                dilations: Some(dilations.to_vec()),
                auto_pad: AutoPad::NotSet,
                ceil_mode: false,
            };
            let win = attrs.resolve(&[h, wd], Some(kernel)).unwrap();
            let g = Window2d::new(&win);
            let c = 3;
            let k_len = g.kernel[0] * g.kernel[1];
            let x: Vec<f32> = (0..c * h * wd)
                .map(|i| ((i * 37) % 23) as f32 / 7.0 - 1.5)
                .collect();
            let w: Vec<f32> = (0..c * k_len)
                .map(|i| ((i * 11) % 13) as f32 / 5.0 - 1.0)
                .collect();
            let mut y = vec![f32::NAN; c * g.output[0] * g.output[1]];
            assert!(depthwise_f32(&x, &w, &mut y, &g, [h, wd]));
            let want = reference(&x, &w, c, [h, wd], &g);
            for (i, (a, b)) in y.iter().zip(&want).enumerate() {
                assert!(
                    (f64::from(*a) - b).abs() < 1e-4,
                    "{kernel:?} {strides:?} at {i}: {a} vs {b}"
                );
            }
        }
    }
}

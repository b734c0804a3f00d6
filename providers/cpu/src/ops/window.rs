//! The tap table shared by convolution (im2col) and pooling: for every
//! output position and kernel offset, which input element it reads.

use oxrt_core::shape::Window;
use oxrt_core::{Error, Result};

/// A tap inside the padding region (reads as the pad value / is skipped).
pub const PAD: isize = -1;
/// A tap past the padded input (only with `ceil_mode`); never counted.
pub const OUTSIDE: isize = -2;

/// `taps[o * kernel_len + k]` is the flat spatial input index read by output
/// position `o` at kernel offset `k`, or [`PAD`] / [`OUTSIDE`].
pub fn taps(win: &Window, input: &[usize]) -> Vec<isize> {
    let nd = input.len();
    let out_len: usize = win.output.iter().product();
    let k_len: usize = win.kernel.iter().product();
    let mut taps = Vec::with_capacity(out_len * k_len);
    let mut o = vec![0usize; nd];
    let mut k = vec![0usize; nd];
    for _ in 0..out_len {
        k.iter_mut().for_each(|v| *v = 0);
        for _ in 0..k_len {
            let mut flat: isize = 0;
            let mut state = 0; // 0: inside the input; else PAD or OUTSIDE
            for d in 0..nd {
                let pos = (o[d] * win.strides[d] + k[d] * win.dilations[d]) as isize
                    - win.pads_begin[d] as isize;
                let size = input[d] as isize;
                if pos >= size + win.pads_end[d] as isize {
                    state = OUTSIDE;
                    break;
                } else if pos < 0 || pos >= size {
                    state = PAD;
                } else {
                    flat = flat * size + pos;
                }
            }
            taps.push(if state == 0 { flat } else { state });
            advance(&mut k, &win.kernel);
        }
        advance(&mut o, &win.output);
    }
    taps
}

/// Row-major odometer increment of `idx` within `dims`.
fn advance(idx: &mut [usize], dims: &[usize]) {
    for d in (0..idx.len()).rev() {
        idx[d] += 1;
        if idx[d] < dims[d] {
            return;
        }
        idx[d] = 0;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use oxrt_core::shape::{window, AutoPad};

    use super::*;

    #[test]
    fn one_dim_with_padding_and_ceil() {
        // input 4, k2, stride 2, pads (1, 0), ceil: outputs 3 -> last window hangs over the end
        let w = window(&[4], &[2], &[2], &[1], &[1, 0], AutoPad::NotSet, true).unwrap();
        assert_eq!(w.output, vec![3]);
        assert_eq!(taps(&w, &[4]), vec![PAD, 0, 1, 2, 3, OUTSIDE]);
    }

    #[test]
    fn two_dims_row_major() {
        let w = window(
            &[2, 3],
            &[2, 2],
            &[1, 1],
            &[1, 1],
            &[0, 0, 0, 0],
            AutoPad::NotSet,
            false,
        )
        .unwrap();
        assert_eq!(w.output, vec![1, 2]);
        assert_eq!(taps(&w, &[2, 3]), vec![0, 1, 3, 4, 1, 2, 4, 5]);
        let g = Window2d::new(&w).unwrap();
        assert_eq!((g.kernel, g.output, g.strides), ([2, 2], [1, 2], [1, 1]));
    }

    #[test]
    fn a_2d_geometry_of_another_rank_is_an_error() {
        let one = window(&[4], &[2], &[2], &[1], &[1, 0], AutoPad::NotSet, false).unwrap();
        let three = window(
            &[3, 3, 3],
            &[2, 2, 2],
            &[1, 1, 1],
            &[1, 1, 1],
            &[0; 6],
            AutoPad::NotSet,
            false,
        )
        .unwrap();
        for w in [one, three] {
            let e = Window2d::new(&w).err().unwrap().to_string();
            assert!(e.contains("two spatial axes"), "{e}");
        }
    }
}

/// A 2-D window's geometry as signed numbers, for kernels that walk rows.
pub struct Window2d {
    pub kernel: [usize; 2],
    pub output: [usize; 2],
    pub strides: [isize; 2],
    pub dilations: [isize; 2],
    pub pads: [isize; 2],
}

impl Window2d {
    /// The geometry of `win`; an error unless it has two spatial axes.
    pub fn new(win: &Window) -> Result<Self> {
        let (&[kh, kw], &[oh, ow], &[pt, pl, ..]) = (
            win.kernel.as_slice(),
            win.output.as_slice(),
            win.pads_begin.as_slice(),
        ) else {
            return Err(Error::invalid(format!(
                "a 2-D window needs two spatial axes, got kernel {:?} and output {:?}",
                win.kernel, win.output
            )));
        };
        let i = |v: &[usize], a: usize| v.get(a).copied().unwrap_or(1) as isize;
        Ok(Self {
            kernel: [kh, kw],
            output: [oh, ow],
            strides: [i(&win.strides, 0), i(&win.strides, 1)],
            dilations: [i(&win.dilations, 0), i(&win.dilations, 1)],
            pads: [pt as isize, pl as isize],
        })
    }

    /// The input row that output row `oy` reads at kernel row `ky`, if it
    /// lies inside the `h` input rows.
    pub fn input_row(&self, oy: usize, ky: usize, h: usize) -> Option<usize> {
        let iy = oy as isize * self.strides[0] + ky as isize * self.dilations[0] - self.pads[0];
        (iy >= 0 && iy < h as isize).then_some(iy as usize)
    }

    /// The input column offset of kernel column `kx` (input column
    /// `ox * stride + offset`).
    pub fn column_offset(&self, kx: usize) -> isize {
        kx as isize * self.dilations[1] - self.pads[1]
    }
}

/// The output positions `o` in `0..outputs` whose input position
/// `o * stride + offset` lies in `0..len`, as a range (for kernels that
/// walk one kernel offset across a whole output row).
pub fn valid_outputs(
    offset: isize,
    stride: isize,
    len: usize,
    outputs: usize,
) -> std::ops::Range<usize> {
    let lo = if offset >= 0 {
        0
    } else {
        (-offset + stride - 1) / stride
    };
    let hi = (len as isize - offset + stride - 1).div_euclid(stride);
    let (lo, hi) = (
        lo.clamp(0, outputs as isize) as usize,
        hi.clamp(0, outputs as isize) as usize,
    );
    lo..hi.max(lo)
}

#[cfg(test)]
mod valid_output_tests {
    use super::valid_outputs;

    #[test]
    fn ranges_cover_exactly_the_inside_positions() {
        for stride in 1..4isize {
            for offset in -3..4isize {
                for len in 0..9usize {
                    let r = valid_outputs(offset, stride, len, 6);
                    for o in 0..6usize {
                        let i = o as isize * stride + offset;
                        assert_eq!(
                            r.contains(&o),
                            i >= 0 && i < len as isize,
                            "{stride} {offset} {len} {o}"
                        );
                    }
                }
            }
        }
    }
}

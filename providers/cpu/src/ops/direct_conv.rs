//! Dense 2-D f32 convolution as an implicit matrix product, with no im2col
//! matrix: each input plane is split into its stride phases with zero
//! padding (the depthwise kernel's [`Plane`]), so that row `(channel, tap)`
//! of the im2col matrix is the phase buffer itself read from a fixed
//! offset, over output positions on the phase planes' row width. An
//! AVX-512 micro-kernel keeps 6 output channels x 64 positions (24 vectors)
//! in registers; per (channel, tap) it loads 4 vectors straight from the
//! phase buffer and broadcasts 6 weights. Each output row is computed
//! `cols2 - ow` positions too wide (columns past the row's end, dropped
//! when the channel's plane is copied out), so this path is for maps whose
//! rows are wide compared with that waste.

use oxrt_core::Result;

use crate::gemm::SharedDst;
use crate::ops::depthwise::{Plane, PlaneFinish};
use crate::ops::window::Window2d;

/// Output channels per micro-tile (and per packed weight group).
const MR: usize = 6;
/// Output positions per micro-tile: four 16-lane vectors.
const NR: usize = 64;
/// Output positions per parallel chunk (whole tiles).
const CHUNK: usize = 4 * NR;

/// Whether the direct kernel runs on this CPU and suits `g` over `h x w`
/// planes with `k` (input channels x taps) products per output: at least
/// 85% of the positions computed useful, and a depth where im2col and packing cost more than
/// the micro-kernel loses to the `gemm` crate's.
pub(crate) fn prefers(g: &Window2d, [h, w]: [usize; 2], k: usize) -> bool {
    if !available() || g.kernel[0] * g.kernel[1] < 2 || k > MAX_DEPTH {
        return false;
    }
    // Outputs computed: whole rows on the phase width, in whole tiles.
    let useful = (g.output[0] * g.output[1]) as f64;
    Plane::new(g, [h, w]).is_some_and(|p| useful >= 0.85 * (p.wide_len().div_ceil(NR) * NR) as f64)
}

/// Products per output above which the direct kernel is not used
/// (measured up to ResNet-50's 256-channel 3x3/2: 2304; deeper sums are
/// 14x14 and 7x7 maps, too narrow for it anyway).
const MAX_DEPTH: usize = 2304;

/// Whether this CPU runs the micro-kernel.
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Convolution of the `c` planes of `x` (`h x wd` each) with `w` (`m` rows
/// of `c x kh x kw`) into the `m` planes of `y` (overwritten, or added to
/// when `accumulate`), then `finish(channel, values)` on the outputs, a
/// part of a plane at a time (each output once; without `accumulate`,
/// also on values of the dropped columns); `Ok(false)` (nothing done)
/// where the kernel does not cover the window or the CPU.
#[allow(clippy::too_many_arguments)]
pub(crate) fn direct_f32(
    x: &[f32],
    w: &[f32],
    y: &mut [f32],
    g: &Window2d,
    [h, wd]: [usize; 2],
    c: usize,
    accumulate: bool,
    finish: Option<&PlaneFinish<'_>>,
) -> Result<bool> {
    use rayon::prelude::*;
    let Some(plane) = Plane::new(g, [h, wd]) else {
        return Ok(false);
    };
    let k_len = g.kernel[0] * g.kernel[1];
    let k = c * k_len;
    let [oh, ow] = g.output;
    let out_len = oh * ow;
    if !available() || k == 0 || out_len == 0 || !w.len().is_multiple_of(k) || x.len() < c * h * wd {
        return Ok(false);
    }
    let m = w.len() / k;
    if y.len() < m * out_len {
        return Ok(false);
    }
    // Where row (channel, tap) of the implicit im2col matrix starts.
    let per_plane = plane.buffer_len();
    let offsets: Vec<usize> = (0..c)
        .flat_map(|ic| plane.taps.iter().map(move |&t| ic * per_plane + t))
        .collect();
    let wide = plane.wide_len();
    let wide_pad = wide.div_ceil(NR) * NR;
    // Every load of a tile stays inside the buffer.
    let furthest = offsets.iter().max().copied().unwrap_or(0) + wide_pad;
    let mut buf = oxrt_core::arena::zeroed::<f32>(furthest.max(c * per_plane));
    buf[..c * per_plane]
        .par_chunks_mut(per_plane.max(1))
        .enumerate()
        .for_each(|(ic, b)| plane.split_into(&x[ic * h * wd..][..h * wd], b));
    let packed = pack_weights(w, m, k);
    let (buf, offsets, cols2) = (&buf[..], &offsets[..], plane.cols2);
    let blocks = m.div_ceil(MR);
    let dst = SharedDst::new(&mut y[..m * out_len]);
    // Chunks of positions (on the phase width) on the threads; within
    // one, every block of output channels, so its input rows stay in
    // cache across them.
    (0..wide.div_ceil(CHUNK))
        .into_par_iter()
        .try_for_each_init(
            || vec![0.0f32; blocks * MR * CHUNK],
            |scratch, ci| -> Result<()> {
                let q0 = ci * CHUNK;
                let len = CHUNK.min(wide - q0);
                for blk in 0..blocks {
                    let height = MR.min(m - blk * MR);
                    let wp = &packed[blk * k * MR..][..k * MR];
                    for p in (0..len).step_by(NR) {
                        // SAFETY: `available` checked AVX-512F; `wp` holds k
                        // groups of MR weights; every load reads
                        // buf[offsets[i] + q0 + p .. + NR], inside `buf`
                        // (sized for the furthest, q0 + p + NR <= wide_pad);
                        // the tile's `height` rows of NR values start at
                        // (blk * MR + r) * CHUNK + p, p + NR <= CHUNK.
                        #[cfg(target_arch = "x86_64")]
                        unsafe {
                            let at = scratch.as_mut_ptr().add(blk * MR * CHUNK + p);
                            let src = buf.as_ptr().add(q0 + p);
                            avx512::tile_rows(height, wp, src, offsets, at, CHUNK);
                        }
                    }
                }
                // Each output row's part in this chunk, copied out of the
                // phase width (columns past `ow` dropped), then finished.
                let (first, last) = (q0 / cols2, (q0 + len - 1) / cols2);
                for oc in 0..m {
                    let row = &mut scratch[oc * CHUNK..][..len];
                    // Without a sum to add first, the chunk's row is finished
                    // at once (the dropped columns too: values like the rest).
                    if let (Some(f), false) = (finish, accumulate) {
                        f(oc, row)?;
                    }
                    let row = &*row;
                    for oy in first..=last.min(oh - 1) {
                        let lo = q0.max(oy * cols2);
                        let hi = (q0 + len).min(oy * cols2 + ow);
                        if lo >= hi {
                            continue;
                        }
                        let at = oc * out_len + oy * ow + (lo - oy * cols2);
                        // SAFETY: positions map one-to-one and in order to
                        // output elements of plane oc, so chunks (disjoint
                        // position ranges) write disjoint parts of `y`, which
                        // `dst` borrows exclusively until all chunks finish;
                        // at + (hi - lo) <= m * out_len.
                        let out = unsafe { std::slice::from_raw_parts_mut(dst.at(at), hi - lo) };
                        let src = &row[lo - q0..hi - q0];
                        if accumulate {
                            out.iter_mut().zip(src).for_each(|(d, &s)| *d += s);
                        } else {
                            out.copy_from_slice(src);
                        }
                        if let (Some(f), true) = (finish, accumulate) {
                            f(oc, out)?;
                        }
                    }
                }
                Ok(())
            },
        )?;
    oxrt_core::arena::recycle(buf.to_vec());
    Ok(true)
}

/// `w` (`m x k`, row-major) as groups of [`MR`] rows, each k-major (`MR`
/// values per column, zero past the last row).
fn pack_weights(w: &[f32], m: usize, k: usize) -> Vec<f32> {
    let blocks = m.div_ceil(MR);
    let mut out = oxrt_core::arena::zeroed::<f32>(blocks * MR * k);
    for (i, row) in w.chunks_exact(k).enumerate() {
        let (blk, r) = (i / MR, i % MR);
        let group = &mut out[blk * MR * k..][..MR * k];
        for (kk, &v) in row.iter().enumerate() {
            group[kk * MR + r] = v;
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::MR;

    /// The first `height` (1..=MR) rows of one tile (see [`tile`]).
    ///
    /// # Safety
    /// As for [`tile`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tile_rows(
        height: usize,
        w: &[f32],
        src: *const f32,
        offsets: &[usize],
        dst: *mut f32,
        stride: usize,
    ) {
        // SAFETY: the caller's guarantee, passed on.
        unsafe {
            match height {
                6.. => tile::<6>(w, src, offsets, dst, stride),
                5 => tile::<5>(w, src, offsets, dst, stride),
                4 => tile::<4>(w, src, offsets, dst, stride),
                3 => tile::<3>(w, src, offsets, dst, stride),
                2 => tile::<2>(w, src, offsets, dst, stride),
                _ => tile::<1>(w, src, offsets, dst, stride),
            }
        }
    }

    /// `dst[r * stride + j] = sum over i of w[i * MR + r] * src[offsets[i] + j]`
    /// for rows `r < R` and positions `j < 64` (`NR`).
    ///
    /// # Safety
    /// The CPU must have AVX-512F; `w` must hold `offsets.len()` groups of
    /// `MR` values; `src + offsets[i] .. + NR` must be readable for every
    /// `i`, and `dst + r * stride .. + NR` writable for every `r < R`.
    #[target_feature(enable = "avx512f")]
    unsafe fn tile<const R: usize>(
        w: &[f32],
        src: *const f32,
        offsets: &[usize],
        dst: *mut f32,
        stride: usize,
    ) {
        let mut acc = [[_mm512_setzero_ps(); 4]; R];
        for (i, &off) in offsets.iter().enumerate() {
            // SAFETY: the caller's guarantee for this row of loads.
            let b = unsafe {
                let at = src.add(off);
                [
                    _mm512_loadu_ps(at),
                    _mm512_loadu_ps(at.add(16)),
                    _mm512_loadu_ps(at.add(32)),
                    _mm512_loadu_ps(at.add(48)),
                ]
            };
            let ws = &w[i * MR..][..MR];
            for (r, acc) in acc.iter_mut().enumerate() {
                let a = _mm512_set1_ps(ws[r]);
                for (v, &bv) in acc.iter_mut().zip(&b) {
                    *v = _mm512_fmadd_ps(a, bv, *v);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (q, &v) in acc.iter().enumerate() {
                // SAFETY: row r's NR values at `dst` are writable.
                unsafe { _mm512_storeu_ps(dst.add(r * stride + q * 16), v) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use oxrt_core::shape::{AutoPad, WindowAttrs};

    /// Direct f64 convolution (zeros outside the input).
    fn reference(
        x: &[f32],
        w: &[f32],
        c: usize,
        m: usize,
        [h, wd]: [usize; 2],
        g: &Window2d,
    ) -> Vec<f64> {
        let ([kh, kw], [oh, ow]) = (g.kernel, g.output);
        let mut y = vec![0.0; m * oh * ow];
        for oc in 0..m {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = 0.0;
                    for ic in 0..c {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy as isize) * g.strides[0]
                                    + (ky as isize) * g.dilations[0]
                                    - g.pads[0];
                                let ix = (ox as isize) * g.strides[1]
                                    + (kx as isize) * g.dilations[1]
                                    - g.pads[1];
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                                    acc += f64::from(x[(ic * h + iy as usize) * wd + ix as usize])
                                        * f64::from(w[((oc * c + ic) * kh + ky) * kw + kx]);
                                }
                            }
                        }
                    }
                    y[(oc * oh + oy) * ow + ox] = acc;
                }
            }
        }
        y
    }

    #[test]
    fn matches_the_definition_at_strides_pads_dilations_and_channel_tails() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512F (the direct kernel does not run)");
            return;
        }
        // (kernel, strides, pads, dilations, input size, in channels, out channels)
        type Case<'a> = (
            &'a [usize],
            &'a [usize],
            &'a [usize],
            &'a [usize],
            [usize; 2],
            usize,
            usize,
        );
        // Output channel counts with every tile height (1..=6) in the
        // last group; output rows shorter and longer than one 64-position
        // tile; stride 2 (phase planes), dilation, asymmetric pads.
        let cases: [Case; 7] = [
            (&[3, 3], &[1, 1], &[1, 1, 1, 1], &[1, 1], [9, 11], 3, 13),
            (&[3, 3], &[1, 1], &[1, 1, 1, 1], &[1, 1], [20, 70], 5, 6),
            (&[3, 3], &[2, 2], &[1, 1, 1, 1], &[1, 1], [15, 29], 4, 8),
            (&[7, 7], &[2, 2], &[3, 3, 3, 3], &[1, 1], [23, 30], 3, 7),
            (&[3, 3], &[1, 1], &[2, 2, 2, 2], &[2, 2], [12, 17], 2, 9),
            (&[2, 3], &[1, 2], &[0, 1, 1, 0], &[1, 1], [10, 21], 6, 10),
            (&[3, 3], &[1, 1], &[0, 0, 0, 0], &[1, 1], [6, 6], 16, 11),
        ];
        for (kernel, strides, pads, dilations, [h, wd], c, m) in cases {
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
            let k = c * kernel[0] * kernel[1];
            let x = crate::test_values(c * h * wd, 3);
            let w = crate::test_values(m * k, 7);
            let want = reference(&x, &w, c, m, [h, wd], &g);
            let out_len = g.output[0] * g.output[1];
            for threads in [1, 2] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                // Overwrite (from NaN), then accumulate onto 1.0, then
                // with a finish that sees each plane once with its channel.
                let mut y = vec![f32::NAN; m * out_len];
                assert!(pool
                    .install(|| direct_f32(&x, &w, &mut y, &g, [h, wd], c, false, None))
                    .unwrap());
                let mut y1 = vec![1.0f32; m * out_len];
                let seen = std::sync::Mutex::new(Vec::new());
                let finish = |ch: usize, v: &mut [f32]| -> Result<()> {
                    v.iter_mut().for_each(|e| *e += 100.0 * ch as f32);
                    seen.lock().unwrap().push((ch, v.len()));
                    Ok(())
                };
                assert!(pool
                    .install(|| direct_f32(&x, &w, &mut y1, &g, [h, wd], c, true, Some(&finish)))
                    .unwrap());
                // Every channel's outputs, each once, in parts.
                let mut counts = vec![0; m];
                for (ch, len) in seen.into_inner().unwrap() {
                    counts[ch] += len;
                }
                assert_eq!(counts, vec![out_len; m]);
                // Overwritten, then finished.
                let plus = |ch: usize, v: &mut [f32]| -> Result<()> {
                    v.iter_mut().for_each(|e| *e += 100.0 * ch as f32);
                    Ok(())
                };
                let mut y2 = vec![f32::NAN; m * out_len];
                assert!(pool
                    .install(|| direct_f32(&x, &w, &mut y2, &g, [h, wd], c, false, Some(&plus)))
                    .unwrap());
                for (i, (a, want)) in y2.iter().zip(&want).enumerate() {
                    let want = want + 100.0 * (i / out_len) as f64;
                    assert!(
                        (f64::from(*a) - want).abs() < 1e-3,
                        "finished at {i}: {a} vs {want}"
                    );
                }
                for (i, ((a, b), want)) in y.iter().zip(&y1).zip(&want).enumerate() {
                    let ch = (i / out_len) as f64;
                    assert!(
                        (f64::from(*a) - want).abs() < 1e-4,
                        "{kernel:?} {strides:?} at {i}: {a} vs {want}"
                    );
                    let want1 = want + 1.0 + 100.0 * ch;
                    assert!(
                        (f64::from(*b) - want1).abs() < 1e-3,
                        "accumulated at {i}: {b} vs {want1}"
                    );
                }
            }
        }
    }
}

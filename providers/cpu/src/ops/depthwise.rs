//! Depthwise 2-D convolution in f32 (one filter per channel). 3x3 windows
//! at stride 1 or 2 take `Dw3x3` (`depthwise3x3.rs`: straight from the
//! input planes, with AVX-512). The others run as a stencil over "phase
//! planes": each zero-padded input plane is split by the strides into
//! `sh x sw` planes (rows and columns of one remainder each), so every
//! filter tap reads one contiguous run of one phase plane at a
//! fixed offset from the output's position. The output is computed on the
//! phase planes' row width, in chunks of 16 that sum all taps in registers
//! (one load per tap, one store), then its valid columns are copied out and
//! the bias and activation applied while the plane is in cache.
//! Compiled for AVX-512, AVX2+FMA and NEON besides the baseline, chosen at
//! run time.

use std::cell::RefCell;

use multiversion::multiversion;

use oxrt_core::Result;

use crate::ops::activation::Clamp;
use crate::ops::depthwise3x3::Dw3x3;
use crate::ops::direct_conv::TileEpilogue;
use crate::ops::window::Window2d;

/// Work on one finished output plane: its channel and its values.
pub(crate) type PlaneFinish<'a> = dyn Fn(usize, &mut [f32]) -> Result<()> + Sync + 'a;

/// The phase planes of one input plane, and where each tap reads them.
pub(crate) struct Plane {
    /// Input rows and columns.
    h: usize,
    w: usize,
    /// Padded rows and columns (what the window reads).
    ph: usize,
    pw: usize,
    /// Top and left padding.
    pad: [usize; 2],
    output: [usize; 2],
    strides: [usize; 2],
    /// Columns of one phase plane.
    pub(crate) cols2: usize,
    /// Elements of one phase plane, with a row of zeros after it for the
    /// reads past the last row's valid columns.
    phase_len: usize,
    /// Per tap (row-major over the kernel), its offset into the phase
    /// buffer: the tap's phase plane plus its row and column shift.
    pub(crate) taps: Vec<usize>,
}

impl Plane {
    /// The geometry of `g` over `h x w` planes; `None` for negative pads or
    /// non-positive strides/dilations (the caller's general path handles them).
    pub(crate) fn new(g: &Window2d, [h, w]: [usize; 2]) -> Option<Self> {
        let u = |v: isize| usize::try_from(v).ok();
        let strides = [u(g.strides[0])?, u(g.strides[1])?];
        let [dh, dw] = [u(g.dilations[0])?, u(g.dilations[1])?];
        if strides.contains(&0) || dh == 0 || dw == 0 {
            return None;
        }
        let ([kh, kw], [oh, ow]) = (g.kernel, g.output);
        let [sh, sw] = strides;
        let span =
            |o: usize, s: usize, k: usize, d: usize| (o.max(1) - 1) * s + (k.max(1) - 1) * d + 1;
        let (ph, pw) = (span(oh, sh, kh, dh), span(ow, sw, kw, dw));
        let (rows2, cols2) = (ph.div_ceil(sh), pw.div_ceil(sw));
        let phase_len = (rows2 + 1) * cols2;
        let mut taps = Vec::with_capacity(kh * kw);
        for ky in 0..kh {
            for kx in 0..kw {
                let (r, c) = (ky * dh, kx * dw);
                let phase = (r % sh) * sw + c % sw;
                taps.push(phase * phase_len + (r / sh) * cols2 + c / sw);
            }
        }
        Some(Self {
            h,
            w,
            ph,
            pw,
            pad: [u(g.pads[0])?, u(g.pads[1])?],
            output: g.output,
            strides,
            cols2,
            phase_len,
            taps,
        })
    }

    /// Elements of the phase buffer (all phase planes).
    pub(crate) fn buffer_len(&self) -> usize {
        self.strides[0] * self.strides[1] * self.phase_len
    }

    /// Elements of the output on the phase planes' row width.
    pub(crate) fn wide_len(&self) -> usize {
        self.output[0] * self.cols2
    }

    /// Scatters plane `x` into the phase planes of `buf`. Only the
    /// positions of input values are written: the rest (the padding)
    /// stays as the zeros `buf` started with, the same for every plane.
    pub(crate) fn split_into(&self, x: &[f32], buf: &mut [f32]) {
        let [top, left] = self.pad;
        let [sh, sw] = self.strides;
        if left >= self.pw {
            return;
        }
        let cols = self.w.min(self.pw - left);
        for iy in 0..self.h {
            let r = iy + top;
            if r >= self.ph {
                break;
            }
            let row_base = (r % sh) * sw * self.phase_len + (r / sh) * self.cols2;
            let src = &x[iy * self.w..][..cols];
            if sw == 1 {
                buf[row_base + left..][..cols].copy_from_slice(src);
                continue;
            }
            if sw == 2 {
                // Even and odd inputs go to the two column phases.
                let even = row_base + (left % 2) * self.phase_len + left / 2;
                let odd = row_base + ((left + 1) % 2) * self.phase_len + left.div_ceil(2);
                let (lo, hi) = buf.split_at_mut(even.max(odd));
                let (e, o) = if even < odd {
                    (&mut lo[even..], &mut hi[..])
                } else {
                    (&mut hi[..], &mut lo[odd..])
                };
                deinterleave(src, e, o);
                continue;
            }
            // Column phase p holds the padded columns c = p, p + sw, ...:
            // the inputs ix = c - left, every sw-th one from the first.
            for p in 0..sw {
                let first = (p + sw - left % sw) % sw;
                if first >= cols {
                    continue;
                }
                let dst = &mut buf[row_base + p * self.phase_len + (first + left) / sw..];
                for (d, &v) in dst.iter_mut().zip(src[first..].iter().step_by(sw)) {
                    *d = v;
                }
            }
        }
    }
}

/// `src`'s even-indexed values to `even`, odd-indexed ones to `odd`
/// (pairwise: a loop the compiler turns into SIMD shuffles).
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub(crate) fn deinterleave(src: &[f32], even: &mut [f32], odd: &mut [f32]) {
    let pairs = src.chunks_exact(2);
    let last = pairs.remainder().first().copied();
    let n = src.len() / 2;
    for ((pair, e), o) in pairs.zip(&mut even[..n]).zip(&mut odd[..n]) {
        *e = pair[0];
        *o = pair[1];
    }
    if let Some(v) = last {
        even[n] = v;
    }
}

/// Rows of `width` outputs: `out[r * out_stride + i] = sum over taps t of
/// wc[t] * buf[taps[t] + r * in_stride + i]`, in chunks of 64, 32, 16 (then
/// 8) outputs held in registers, one load per tap and vector and one store
/// per vector.
#[multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn stencil(
    buf: &[f32],
    taps: &[usize],
    wc: &[f32],
    out: &mut [f32],
    [rows, width]: [usize; 2],
    [in_stride, out_stride]: [usize; 2],
) {
    let fma =
        multiversion::target::target_cfg_f!(any(target_feature = "fma", target_feature = "neon"));
    /// `L` outputs from input position `at` into `dst`.
    #[inline(always)]
    fn chunk<const L: usize>(
        buf: &[f32],
        taps: &[usize],
        wc: &[f32],
        at: usize,
        dst: &mut [f32],
        fma: bool,
    ) {
        let mut acc = [0.0f32; L];
        for (&off, &wk) in taps.iter().zip(wc) {
            let src = &buf[off + at..][..L];
            if fma {
                for j in 0..L {
                    acc[j] = wk.mul_add(src[j], acc[j]);
                }
            } else {
                for j in 0..L {
                    acc[j] += wk * src[j];
                }
            }
        }
        dst[..L].copy_from_slice(&acc);
    }
    for r in 0..rows {
        let (src_row, row) = (r * in_stride, &mut out[r * out_stride..][..width]);
        let mut i = 0;
        // Several vectors at once: each tap's multiply-add waits on the
        // previous one of its vector, so one vector alone runs at the
        // latency of that chain rather than the throughput.
        while i + 64 <= width {
            chunk::<64>(buf, taps, wc, src_row + i, &mut row[i..], fma);
            i += 64;
        }
        if i + 32 <= width {
            chunk::<32>(buf, taps, wc, src_row + i, &mut row[i..], fma);
            i += 32;
        }
        if i + 16 <= width {
            chunk::<16>(buf, taps, wc, src_row + i, &mut row[i..], fma);
            i += 16;
        }
        if i + 8 <= width {
            chunk::<8>(buf, taps, wc, src_row + i, &mut row[i..], fma);
            i += 8;
        }
        for (j, v) in row.iter_mut().enumerate().skip(i) {
            *v = taps
                .iter()
                .zip(wc)
                .map(|(&off, &wk)| wk * buf[off + src_row + j])
                .sum();
        }
    }
}

/// Output rows at least this wide are computed row by row straight into
/// the output; narrower ones as one run over the phase planes' row width
/// (fewer, longer chunks), then their valid columns copied out.
const ROW_BY_ROW: usize = 32;

/// Outputs per parallel task at least (whole planes).
const TASK_OUTPUTS: usize = 2048;

/// Zeros after the phase planes, for the reads of the last vector of a
/// narrow map's output run.
const SLACK: usize = 16;

/// Depthwise convolution of the `channels`-plane batch `x` (planes of
/// `h x w`) with one `kh x kw` filter per channel into `y`, then `finish`
/// on each output plane; `Ok(false)` when the window is one this kernel
/// does not cover (negative pads). Where the 3x3 kernel applies, `epi`
/// (bias per channel and clamp) is applied in registers instead of
/// `finish`.
pub(crate) fn depthwise_f32(
    x: &[f32],
    w: &[f32],
    y: &mut [f32],
    g: &Window2d,
    [h, wd]: [usize; 2],
    finish: Option<&PlaneFinish<'_>>,
    epi: Option<TileEpilogue<'_>>,
) -> Result<bool> {
    use rayon::prelude::*;
    let k_len = g.kernel[0] * g.kernel[1];
    let channels = w.len() / k_len.max(1);
    let [oh, ow] = g.output;
    let out_len = (oh * ow).max(1);
    // Several planes per task when they are small: a task per plane of a
    // 7x7 map would cost more in scheduling than its few hundred FMAs.
    let per_task = (TASK_OUTPUTS / out_len).max(1);
    if let Some(k) = Dw3x3::new(g, [h, wd]) {
        y.par_chunks_mut(out_len * per_task)
            .enumerate()
            .try_for_each(|(task, outs)| {
                for (j, out) in outs.chunks_mut(out_len).enumerate() {
                    let i = task * per_task + j;
                    let ch = i % channels.max(1);
                    let (bias, clamp) = match epi {
                        Some(e) => (e.bias.map_or(0.0, |b| b[ch]), e.clamp),
                        None => (0.0, Clamp::Identity),
                    };
                    k.plane(
                        &x[i * h * wd..][..h * wd],
                        &w[ch * 9..][..9],
                        out,
                        bias,
                        clamp,
                    );
                    if let (None, Some(f)) = (epi, finish) {
                        f(ch, out)?;
                    }
                }
                Ok::<(), oxrt_core::Error>(())
            })?;
        return Ok(true);
    }
    let Some(plane) = Plane::new(g, [h, wd]) else {
        return Ok(false);
    };
    #[cfg(target_arch = "x86_64")]
    if ow <= lanes16::MAX_WIDTH && k_len <= lanes16::MAX_TAPS && crate::kernel::has_avx512f() {
        // Narrow maps, 16 planes per vector (see `lanes16`); blocks of 16
        // consecutive planes, each lane with its own channel's filter.
        let block = lanes16::L * out_len;
        let per_task = (TASK_OUTPUTS / block).max(1);
        y.par_chunks_mut(block * per_task)
            .enumerate()
            .try_for_each(|(task, outs)| {
                crate::scratch::with_f32(lanes16::scratch_len(&plane), |scratch| {
                    for (j, out) in outs.chunks_mut(block).enumerate() {
                        let p0 = (task * per_task + j) * lanes16::L;
                        // SAFETY: the CPU has AVX-512F (checked above).
                        unsafe { lanes16::block(&plane, g, x, w, channels, p0, out, scratch) };
                        if let Some(f) = finish {
                            for (l, o) in out.chunks_mut(out_len).enumerate() {
                                f((p0 + l) % channels.max(1), o)?;
                            }
                        }
                    }
                    Ok::<(), oxrt_core::Error>(())
                })
            })?;
        return Ok(true);
    }
    let by_rows = ow >= ROW_BY_ROW;
    // Narrow maps run over whole 16-lane vectors: the last one reads up to
    // 15 values past the phase planes (the buffer's slack) into outputs
    // that are not copied out.
    let wide_len = if by_rows {
        0
    } else {
        plane.wide_len().div_ceil(16) * 16
    };
    y.par_chunks_mut(out_len * per_task)
        .enumerate()
        .try_for_each(|(task, outs)| {
            with_buffers(&plane, wide_len, |buf, wide| {
                for (j, out) in outs.chunks_mut(out_len).enumerate() {
                    let i = task * per_task + j;
                    let ch = i % channels.max(1);
                    let wc = &w[ch * k_len..][..k_len];
                    plane.split_into(&x[i * h * wd..][..h * wd], buf);
                    if by_rows {
                        stencil(buf, &plane.taps, wc, out, [oh, ow], [plane.cols2, ow]);
                    } else {
                        let n = wide.len();
                        stencil(buf, &plane.taps, wc, wide, [1, n], [n, n]);
                        for (oy, row) in out.chunks_mut(ow.max(1)).enumerate() {
                            row.copy_from_slice(&wide[oy * plane.cols2..][..row.len()]);
                        }
                    }
                    if let Some(f) = finish {
                        f(ch, out)?;
                    }
                }
                Ok::<(), oxrt_core::Error>(())
            })
        })?;
    Ok(true)
}

/// Buffers one thread reuses from call to call: the phase buffer with
/// the geometry it was last zeroed for, and the wide output row.
struct Buffers {
    geometry: [usize; 8],
    phases: Vec<f32>,
    wide: Vec<f32>,
}

thread_local! {
    static BUFFERS: RefCell<Buffers> = const {
        RefCell::new(Buffers { geometry: [0; 8], phases: Vec::new(), wide: Vec::new() })
    };
}

/// `f` on this thread's phase buffer for `plane` plus [`SLACK`] (zero wherever
/// `split_into` does not write: zeroed again whenever the geometry
/// changes) and a `wide_len` output row; no allocation once a run has
/// sized them. Taken out for the call (a nested call on this thread makes
/// its own), then put back.
fn with_buffers<R>(
    plane: &Plane,
    wide_len: usize,
    f: impl FnOnce(&mut [f32], &mut [f32]) -> R,
) -> R {
    let mut b = BUFFERS.with(|b| {
        let mut b = b.borrow_mut();
        Buffers {
            geometry: b.geometry,
            phases: std::mem::take(&mut b.phases),
            wide: std::mem::take(&mut b.wide),
        }
    });
    let geometry = [
        plane.h,
        plane.w,
        plane.ph,
        plane.pw,
        plane.pad[0],
        plane.pad[1],
        plane.strides[0],
        plane.strides[1],
    ];
    let len = plane.buffer_len() + SLACK;
    if b.geometry != geometry || b.phases.len() != len {
        b.phases.clear();
        b.phases.resize(len, 0.0);
        b.geometry = geometry;
    }
    if b.wide.len() < wide_len {
        b.wide.resize(wide_len, 0.0);
    }
    let out = f(&mut b.phases, &mut b.wide[..wide_len]);
    BUFFERS.with(|c| *c.borrow_mut() = b);
    out
}

/// Depthwise convolution of narrow maps with AVX-512, 16 planes at a time:
/// the planes' padded inputs transposed into one buffer of 16-channel
/// vectors per position (zero padding), every output a sum of one
/// multiply-add per tap with whole vectors (no lane wasted on a 7x7 map's
/// row), then transposed back into the output planes.
#[cfg(target_arch = "x86_64")]
mod lanes16 {
    use std::arch::x86_64::*;

    use super::Plane;
    use crate::ops::window::Window2d;
    use crate::transpose16::{transpose16, vectors16};

    /// Planes per block: the lanes of a vector.
    pub(super) const L: usize = 16;
    /// Taps of the largest window taken (7x7).
    pub(super) const MAX_TAPS: usize = 49;
    /// Widest output rows taken: where vectors along a row waste lanes
    /// (measured on one thread against the stencil: 1024 planes 7x7 0.094
    /// -> 0.088 ms, 512 planes 14x14 at stride 2 0.095 -> 0.077; 512 at
    /// 14x14, stride 1, lost: 0.102 -> 0.116).
    pub(super) const MAX_WIDTH: usize = 8;
    /// Outputs of a row summed at once (independent multiply-add chains).
    const RUN: usize = 4;

    /// Scratch values [`block`] needs for `plane`: its padded input and
    /// its outputs, 16 lanes each.
    pub(super) fn scratch_len(plane: &Plane) -> usize {
        (plane.ph * plane.pw + plane.output[0] * plane.output[1]) * L
    }

    /// The output planes `out` (up to 16 of `oh x ow`) of the input planes
    /// `p0..` of `x`, plane `p` filtered by channel `p % channels` of `w`.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn block(
        plane: &Plane,
        g: &Window2d,
        x: &[f32],
        w: &[f32],
        channels: usize,
        p0: usize,
        out: &mut [f32],
        scratch: &mut [f32],
    ) {
        let (h, wd, ph, pw) = (plane.h, plane.w, plane.ph, plane.pw);
        let [top, left] = plane.pad;
        let [oh, ow] = plane.output;
        let [sh, sw] = plane.strides;
        let [kh, kw] = g.kernel;
        let (dh, dw) = (g.dilations[0].unsigned_abs(), g.dilations[1].unsigned_abs());
        let out_len = oh * ow;
        let n = out.len() / out_len.max(1);
        let k_len = kh * kw;
        let (padded, outputs) = (ph * pw * L, out_len * L);
        let (pbuf, obuf) = scratch[..padded + outputs].split_at_mut(padded);
        pbuf.fill(0.0);
        // Input rows into the padded buffer, 16 columns at a time.
        let cols = if left < pw { wd.min(pw - left) } else { 0 };
        for iy in 0..h.min(ph.saturating_sub(top)) {
            let py = iy + top;
            for c0 in (0..cols).step_by(L) {
                let m = L.min(cols - c0);
                let mask = crate::kernel::first_lanes(m);
                // Built from its values, not zeroed first (see `vectors16`).
                let mut v = vectors16(|l| {
                    if l >= n {
                        return _mm512_setzero_ps();
                    }
                    let src = &x[(p0 + l) * h * wd + iy * wd + c0..][..m];
                    // SAFETY: the `m` masked lanes read `src`.
                    unsafe { _mm512_maskz_loadu_ps(mask, src.as_ptr()) }
                });
                transpose16(&mut v);
                for (j, vj) in v.iter().enumerate().take(m) {
                    let dst = &mut pbuf[(py * pw + left + c0 + j) * L..][..L];
                    // SAFETY: `dst` holds 16 values.
                    unsafe { _mm512_storeu_ps(dst.as_mut_ptr(), *vj) };
                }
            }
        }
        // The taps' weights, one vector of the block's channels each, and
        // their offsets in positions of the padded buffer.
        let mut wv = [_mm512_setzero_ps(); MAX_TAPS];
        let mut offs = [0usize; MAX_TAPS];
        let taps = k_len.min(MAX_TAPS);
        // Each lane's filter (its plane's channel), found once per block.
        let filters: [usize; L] = std::array::from_fn(|l| ((p0 + l) % channels.max(1)) * k_len);
        for t in 0..taps {
            let lanes: [f32; L] =
                std::array::from_fn(|l| if l < n { w[filters[l] + t] } else { 0.0 });
            // SAFETY: `lanes` holds 16 values.
            wv[t] = unsafe { _mm512_loadu_ps(lanes.as_ptr()) };
            offs[t] = (t / kw) * dh * pw + (t % kw) * dw;
        }
        let (wv, offs) = (&wv[..taps], &offs[..taps]);
        // `RUN` outputs of a row at once, then one at a time.
        let load = |at: usize| {
            let src = &pbuf[at * L..][..L];
            // SAFETY: `src` holds 16 values.
            unsafe { _mm512_loadu_ps(src.as_ptr()) }
        };
        for oy in 0..oh {
            let mut ox = 0;
            while ox < ow {
                let base = oy * sh * pw + ox * sw;
                let dst = &mut obuf[(oy * ow + ox) * L..];
                if ox + RUN <= ow {
                    let mut acc = [_mm512_setzero_ps(); RUN];
                    for (&wt, &o) in wv.iter().zip(offs) {
                        for (r, a) in acc.iter_mut().enumerate() {
                            *a = _mm512_fmadd_ps(wt, load(base + r * sw + o), *a);
                        }
                    }
                    for (r, a) in acc.iter().enumerate() {
                        let d = &mut dst[r * L..][..L];
                        // SAFETY: `d` holds 16 values.
                        unsafe { _mm512_storeu_ps(d.as_mut_ptr(), *a) };
                    }
                    ox += RUN;
                } else {
                    let mut acc = _mm512_setzero_ps();
                    for (&wt, &o) in wv.iter().zip(offs) {
                        acc = _mm512_fmadd_ps(wt, load(base + o), acc);
                    }
                    // SAFETY: `dst` holds at least 16 values.
                    unsafe { _mm512_storeu_ps(dst[..L].as_mut_ptr(), acc) };
                    ox += 1;
                }
            }
        }
        // Back to planes, 16 positions at a time.
        for q0 in (0..out_len).step_by(L) {
            let m = L.min(out_len - q0);
            let mut v = vectors16(|j| {
                if j >= m {
                    return _mm512_setzero_ps();
                }
                let src = &obuf[(q0 + j) * L..][..L];
                // SAFETY: `src` holds 16 values.
                unsafe { _mm512_loadu_ps(src.as_ptr()) }
            });
            transpose16(&mut v);
            let mask = crate::kernel::first_lanes(m);
            for (l, vl) in v.iter().enumerate().take(n) {
                let dst = &mut out[l * out_len + q0..][..m];
                // SAFETY: the `m` masked lanes write `dst`.
                unsafe { _mm512_mask_storeu_ps(dst.as_mut_ptr(), mask, *vl) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
        // 3x3 windows at strides 1 and 2 take the `Dw3x3` kernel; of the
        // others, output rows of 40, 38, 120 and 100 take the stencil's
        // row-by-row path (32 + 8; 32 + 6 scalar; 64 + 32 + 16 + 8; 64 +
        // 32 + 4 scalar), narrower ones its wide run or the 16-plane one.
        let cases: [Case; 18] = [
            (&[5, 5], &[1, 1], &[2, 2, 2, 2], &[1, 1], [3, 40]),
            (&[3, 3], &[2, 2], &[2, 2, 2, 2], &[2, 2], [4, 76]),
            (&[3, 1], &[1, 1], &[1, 0, 1, 0], &[1, 1], [3, 120]),
            (&[3, 3], &[1, 1], &[1, 2, 1, 2], &[1, 2], [4, 100]),
            (&[3, 3], &[1, 1], &[1, 1, 1, 1], &[1, 1], [3, 120]),
            (&[3, 3], &[1, 1], &[0, 1, 2, 1], &[1, 1], [4, 100]),
            (&[3, 3], &[1, 1], &[1, 1, 1, 1], &[1, 1], [5, 40]),
            (&[3, 3], &[2, 2], &[1, 1, 1, 1], &[1, 1], [4, 75]),
            (&[3, 3], &[1, 1], &[1, 1, 1, 1], &[1, 1], [14, 14]),
            (&[3, 3], &[3, 2], &[1, 2, 0, 1], &[2, 2], [17, 19]),
            (&[1, 1], &[2, 2], &[0, 0, 0, 0], &[1, 1], [7, 9]),
            (&[7, 7], &[2, 2], &[3, 3, 3, 3], &[1, 1], [5, 6]),
            (&[3, 3], &[2, 2], &[1, 1, 1, 1], &[1, 1], [15, 13]),
            (&[3, 3], &[1, 1], &[2, 2, 2, 2], &[2, 2], [9, 11]),
            (&[5, 5], &[1, 2], &[2, 0, 1, 2], &[1, 1], [10, 21]),
            (&[1, 1], &[1, 1], &[0, 0, 0, 0], &[1, 1], [3, 5]),
            // Rows of at most 8 outputs (16 planes per vector) with
            // dilation and asymmetric pads.
            (&[3, 3], &[1, 1], &[2, 2, 2, 2], &[2, 2], [6, 5]),
            (&[3, 3], &[2, 1], &[1, 0, 0, 1], &[1, 2], [8, 7]),
        ];
        // 3 channels: one partial block of 16 planes on the narrow-map
        // path; 21: a whole block and one that spans the two images.
        for ((kernel, strides, pads, dilations, [h, wd]), c) in
            cases.into_iter().flat_map(|case| [(case, 3), (case, 21)])
        {
            let g = crate::test_window2d(kernel, strides, pads, dilations, [h, wd]);
            let k_len = g.kernel[0] * g.kernel[1];
            let x: Vec<f32> = (0..c * h * wd)
                .map(|i| ((i * 37) % 23) as f32 / 7.0 - 1.5)
                .collect();
            let w: Vec<f32> = (0..c * k_len)
                .map(|i| ((i * 11) % 13) as f32 / 5.0 - 1.0)
                .collect();
            let mut y = vec![f32::NAN; c * g.output[0] * g.output[1]];
            assert!(depthwise_f32(&x, &w, &mut y, &g, [h, wd], None, None).unwrap());
            let want = crate::conv2d_reference(&x, &w, [c, c, c], [h, wd], &g);
            for (i, (a, b)) in y.iter().zip(&want).enumerate() {
                assert!(
                    (f64::from(*a) - b).abs() < 1e-4,
                    "{kernel:?} {strides:?} at {i}: {a} vs {b}"
                );
            }
            // `finish` sees each plane once, with its channel, after it is
            // computed (two images of c channels here).
            let x2: Vec<f32> = x.iter().chain(&x).copied().collect();
            let mut y2 = vec![f32::NAN; 2 * y.len()];
            let seen = std::sync::Mutex::new(Vec::new());
            let finish = |ch: usize, v: &mut [f32]| -> Result<()> {
                v.iter_mut()
                    .for_each(|e| *e = e.max(0.0) + 100.0 * ch as f32);
                seen.lock().unwrap().push(ch);
                Ok(())
            };
            assert!(depthwise_f32(&x2, &w, &mut y2, &g, [h, wd], Some(&finish), None).unwrap());
            let mut seen = seen.into_inner().unwrap();
            seen.sort_unstable();
            let want_seen: Vec<usize> = (0..c).flat_map(|ch| [ch, ch]).collect();
            assert_eq!(seen, want_seen);
            let plane = g.output[0] * g.output[1];
            for (i, (a, b)) in y2.iter().zip(want.iter().chain(&want)).enumerate() {
                let ch = (i / plane.max(1)) % c;
                let b = b.max(0.0) + 100.0 * ch as f64;
                assert!(
                    (f64::from(*a) - b).abs() < 1e-4,
                    "finished at {i}: {a} vs {b}"
                );
            }
        }
    }
}

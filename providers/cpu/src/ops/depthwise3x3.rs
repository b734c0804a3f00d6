//! 3x3 depthwise convolution at stride 1 or 2 (dilation 1, any pads) in
//! f32 with AVX-512, straight from the input planes: each output vector
//! (16 columns of a row) loads its three input rows with masked loads
//! (lanes outside the plane read as zero, so padding costs nothing and
//! no padded or phase-split copy of the input is made), at stride 2
//! splitting even and odd columns with two permutes, and sums its nine
//! taps in registers, one sum per kernel row (three short multiply-add
//! chains rather than one of nine); bias and a clamp-like activation are
//! applied before the one store.

use crate::ops::activation::Clamp;
use crate::ops::window::Window2d;

/// Columns of an output vector.
const L: usize = 16;

/// Output vectors of the widest row taken (rows of up to 256 columns;
/// wider ones take the phase-plane stencil).
const MAX_CHUNKS: usize = 16;

/// Output vectors of the largest plane run flat (see [`Flat`]).
const FLAT_VECTORS: usize = 16;

/// A small plane at stride 1 whose output rows are as wide as its input
/// rows (a "same" padding): output position `p` reads input position
/// `p + offsets[tap]`, so the plane runs as one flat run of 16-lane
/// vectors over all its positions, each tap a masked load at a fixed
/// offset (lanes whose tap falls in the padding, or past the plane, are
/// masked off). A 7x7 map fills 49 of 64 lanes instead of 7 of 16 per
/// row, and a 14x14 one needs 13 vectors instead of 14 rows.
#[derive(Clone, Copy, Debug)]
struct Flat {
    /// Per tap, the input offset from the output position.
    offsets: [isize; 9],
    /// Per output vector, each tap's load mask.
    loads: [[u16; 9]; FLAT_VECTORS],
}

impl Flat {
    /// The flat geometry, or `None` where it does not apply.
    fn new(h: usize, w: usize, [oh, ow]: [usize; 2], [top, left]: [isize; 2]) -> Option<Self> {
        let positions = oh * ow;
        if ow != w || positions == 0 || positions > FLAT_VECTORS * L {
            return None;
        }
        let mut offsets = [0isize; 9];
        for (t, off) in offsets.iter_mut().enumerate() {
            *off = ((t / 3) as isize - top) * w as isize + (t % 3) as isize - left;
        }
        let mut loads = [[0u16; 9]; FLAT_VECTORS];
        let (mut oy, mut ox) = (0isize, 0isize);
        for p in 0..positions {
            // Which kernel rows and columns of output (oy, ox) fall inside.
            let rows = [0, 1, 2].map(|ky| (0..h as isize).contains(&(oy + ky - top)));
            let cols = [0, 1, 2].map(|kx| (0..w as isize).contains(&(ox + kx - left)));
            for (t, mask) in loads[p / L].iter_mut().enumerate() {
                if rows[t / 3] && cols[t % 3] {
                    *mask |= 1 << (p % L);
                }
            }
            ox += 1;
            if ox == ow as isize {
                (oy, ox) = (oy + 1, 0);
            }
        }
        Some(Self { offsets, loads })
    }
}

/// The geometry of one plane's 3x3 window at stride 1 or 2, with the
/// lane masks of each output vector of a row (the same on every row).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dw3x3 {
    /// Input rows and columns.
    h: usize,
    w: usize,
    /// Output rows and columns.
    oh: usize,
    ow: usize,
    /// Top and left padding (negative: cropping).
    top: isize,
    left: isize,
    stride: usize,
    /// Per output vector of a row: the masks of its three loads of one
    /// input row (see [`column_masks`]) and of its store.
    loads: [[u16; 3]; MAX_CHUNKS],
    stores: [u16; MAX_CHUNKS],
    /// The flat form, where it applies (stride 1).
    flat: Option<Flat>,
}

impl Dw3x3 {
    /// The kernel for window `g` over `h x w` planes, or `None` where it
    /// does not apply (another window, rows wider than 256 outputs, or a
    /// CPU without AVX-512).
    pub(crate) fn new(g: &Window2d, [h, w]: [usize; 2]) -> Option<Self> {
        let stride = match g.strides {
            [1, 1] => 1,
            [2, 2] => 2,
            _ => return None,
        };
        let [oh, ow] = g.output;
        let fits = g.kernel == [3, 3]
            && g.dilations == [1, 1]
            && ow <= MAX_CHUNKS * L
            && h < isize::MAX as usize / 4
            && w < isize::MAX as usize / 4
            && g.pads
                .iter()
                .all(|p| p.unsigned_abs() < isize::MAX as usize / 4)
            && available();
        if !fits {
            return None;
        }
        let mut loads = [[0; 3]; MAX_CHUNKS];
        let mut stores = [0; MAX_CHUNKS];
        for c in 0..ow.div_ceil(L) {
            let start = (c * L * stride) as isize - g.pads[1];
            loads[c] = column_masks(stride, start, w);
            stores[c] = lanes(0, ow - c * L);
        }
        let flat = if stride == 1 {
            Flat::new(h, w, [oh, ow], [g.pads[0], g.pads[1]])
        } else {
            None
        };
        Some(Self {
            h,
            w,
            oh,
            ow,
            top: g.pads[0],
            left: g.pads[1],
            stride,
            loads,
            stores,
            flat,
        })
    }

    /// Output values of one plane.
    pub(crate) fn out_len(&self) -> usize {
        self.oh * self.ow
    }

    /// One output plane `out` (`oh x ow`) of input plane `x` (`h x w`)
    /// with the nine weights `k` (row-major), then `clamp(v + bias)`.
    pub(crate) fn plane(&self, x: &[f32], k: &[f32], out: &mut [f32], bias: f32, clamp: Clamp) {
        assert!(
            x.len() >= self.h * self.w && k.len() >= 9 && out.len() >= self.out_len(),
            "depthwise 3x3: buffers smaller than the geometry"
        );
        if self.out_len() == 0 {
            return;
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (x, k, out, bias, clamp);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `new` checked that the CPU has AVX-512F; the lengths
        // were checked above.
        unsafe {
            if let Some(f) = &self.flat {
                return avx512::flat(f, self.out_len(), x, k, out, bias, clamp);
            }
            if self.stride == 1 && self.left == 1 {
                return avx512::sliding(self, x, k, out, bias, clamp);
            }
            match self.stride {
                1 => avx512::plane::<1>(self, x, k, out, bias, clamp),
                _ => avx512::plane::<2>(self, x, k, out, bias, clamp),
            }
        }
    }
}

/// Whether this CPU runs the kernel.
fn available() -> bool {
    crate::kernel::has_avx512f()
}

/// Lanes `i` of a 16-lane load at column `start` with
/// `0 <= start + i < width`.
fn lanes(start: isize, width: usize) -> u16 {
    crate::kernel::lanes_inside(start, width, L)
}

/// The lane masks of the three loads of one input row for the output
/// vector whose first input column is `start`: at stride 1 the loads at
/// `start + kx`; at stride 2 those at `start`, `start + 16` and the one
/// value at `start + 32`.
fn column_masks(stride: usize, start: isize, width: usize) -> [u16; 3] {
    let l = L as isize;
    if stride == 1 {
        [
            lanes(start, width),
            lanes(start + 1, width),
            lanes(start + 2, width),
        ]
    } else {
        [
            lanes(start, width),
            lanes(start + l, width),
            lanes(start + 2 * l, width) & 1,
        ]
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Dw3x3, Flat, L, MAX_CHUNKS};
    use crate::ops::activation::Clamp;

    /// The three taps' inputs of one kernel row for 16 outputs: columns
    /// `start + S * i + kx` of `row` for `kx` in 0..3, zero outside the
    /// lanes of `m` (see [`super::column_masks`]).
    ///
    /// # Safety
    /// Every lane `m` selects is a value of the row `row` points to.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn taps<const S: usize>(row: *const f32, start: isize, m: [u16; 3]) -> [__m512; 3] {
        let p = row.wrapping_offset(start);
        // SAFETY (all loads): only the selected lanes are read; masked-off
        // lanes' addresses are never touched.
        if S == 1 {
            return unsafe {
                [
                    _mm512_maskz_loadu_ps(m[0], p),
                    _mm512_maskz_loadu_ps(m[1], p.wrapping_add(1)),
                    _mm512_maskz_loadu_ps(m[2], p.wrapping_add(2)),
                ]
            };
        }
        // Columns start..start + 32 as two vectors; even ones are the
        // kx = 0 taps, odd ones kx = 1, and the even ones shifted by one
        // (with column start + 32) kx = 2.
        let (a, b, next) = unsafe {
            (
                _mm512_maskz_loadu_ps(m[0], p),
                _mm512_maskz_loadu_ps(m[1], p.wrapping_add(L)),
                _mm512_maskz_loadu_ps(m[2], p.wrapping_add(2 * L)),
            )
        };
        let even_idx = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
        let odd_idx = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
        let even = _mm512_permutex2var_ps(a, even_idx, b);
        let odd = _mm512_permutex2var_ps(a, odd_idx, b);
        let shifted = _mm512_castsi512_ps(_mm512_alignr_epi32::<1>(
            _mm512_castps_si512(next),
            _mm512_castps_si512(even),
        ));
        [even, odd, shifted]
    }

    /// One output row `out` from the input rows `rows` (one per kernel
    /// row; `valid[ky]` all ones where row `ky` is inside the plane, zero
    /// where it is padding and `rows[ky]` is not read). `EDGE`: some row
    /// is padding.
    ///
    /// # Safety
    /// Each valid `rows[ky]` points to an input row of the plane; `out`
    /// holds `g.ow` values.
    #[inline]
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn row<const S: usize, const EDGE: bool>(
        g: &Dw3x3,
        rows: [*const f32; 3],
        valid: [u16; 3],
        wv: &[__m512; 9],
        out: &mut [f32],
        bias: __m512,
        clamp: Clamp,
    ) {
        for c in 0..g.ow.div_ceil(L) {
            let start = (c * L * S) as isize - g.left;
            let m = g.loads[c];
            // One sum per kernel row, added at the end: three chains of
            // three multiply-adds rather than one of nine (a row of one
            // vector has no other work to overlap them with).
            let mut acc = [_mm512_setzero_ps(); 3];
            for (ky, a) in acc.iter_mut().enumerate() {
                let mk = if EDGE { m.map(|v| v & valid[ky]) } else { m };
                // SAFETY: the masks select values of row `ky` only (none
                // where it is padding).
                let [t0, t1, t2] = unsafe { taps::<S>(rows[ky], start, mk) };
                *a = _mm512_mul_ps(wv[ky * 3], t0);
                *a = _mm512_fmadd_ps(wv[ky * 3 + 1], t1, *a);
                *a = _mm512_fmadd_ps(wv[ky * 3 + 2], t2, *a);
            }
            let v = finish(acc, bias, clamp);
            let dst = &mut out[c * L..];
            // SAFETY: the store mask selects the row's values from `c * L`.
            unsafe { _mm512_mask_storeu_ps(dst.as_mut_ptr(), g.stores[c], v) };
        }
    }

    /// The input rows of kernel rows 0..3 for the output row whose first
    /// kernel row is padded row `first` (`oy * stride`): a pointer to each
    /// row of `x` and all-ones in `valid`, or, for a row in the padding,
    /// `x` itself (never read) and zero.
    #[inline]
    fn input_rows(g: &Dw3x3, x: &[f32], first: usize) -> ([*const f32; 3], [u16; 3]) {
        let mut rows = [x.as_ptr(); 3];
        let mut valid = [0u16; 3];
        for ky in 0..3 {
            let iy = (first + ky) as isize - g.top;
            if iy >= 0 && (iy as usize) < g.h {
                rows[ky] = x[iy as usize * g.w..].as_ptr();
                valid[ky] = 0xffff;
            }
        }
        (rows, valid)
    }

    /// The output vector from one sum per kernel row: their total, plus
    /// `bias`, through `clamp`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn finish(acc: [__m512; 3], bias: __m512, clamp: Clamp) -> __m512 {
        clamp.biased_avx512(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), acc[2]), bias)
    }

    /// The nine weights (at least nine values of `k`), each broadcast to
    /// a vector.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn weights(k: &[f32]) -> [__m512; 9] {
        let mut wv = [_mm512_setzero_ps(); 9];
        for (w, &kv) in wv.iter_mut().zip(k) {
            *w = _mm512_set1_ps(kv);
        }
        wv
    }

    /// One output plane of `positions` values in the flat form (see
    /// [`Flat`]).
    ///
    /// # Safety
    /// The CPU has AVX-512F; `x` holds the `h * w` input values `f` was
    /// made for, `k` nine and `out` `positions`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn flat(
        f: &Flat,
        positions: usize,
        x: &[f32],
        k: &[f32],
        out: &mut [f32],
        bias: f32,
        clamp: Clamp,
    ) {
        let wv = weights(k);
        let bias = _mm512_set1_ps(bias);
        for (v, masks) in f.loads.iter().enumerate().take(positions.div_ceil(L)) {
            let at = (v * L) as isize;
            // One sum per kernel row, as in `row`.
            let mut acc = [_mm512_setzero_ps(); 3];
            for (ky, a) in acc.iter_mut().enumerate() {
                for kx in 0..3 {
                    let t = ky * 3 + kx;
                    // SAFETY: the mask selects the lanes whose input
                    // position `p + offsets[t]` lies inside the plane `x`
                    // holds; masked-off lanes' addresses are never touched.
                    let tap = unsafe {
                        _mm512_maskz_loadu_ps(
                            masks[t],
                            x.as_ptr().wrapping_offset(at + f.offsets[t]),
                        )
                    };
                    *a = _mm512_fmadd_ps(wv[t], tap, *a);
                }
            }
            let store = crate::kernel::first_lanes(positions - v * L);
            // SAFETY: the store mask selects positions < `positions` of `out`.
            unsafe {
                _mm512_mask_storeu_ps(out.as_mut_ptr().add(v * L), store, finish(acc, bias, clamp))
            };
        }
    }

    /// One output plane at stride 1 with one column of left padding (see
    /// [`Dw3x3::plane`]), each input row loaded once: along a row, the
    /// vector of input columns `16 c..` is the middle tap of output
    /// vector `c`, and the left and right taps are it shifted by one
    /// lane with the last lane of the vector before or the first of the
    /// vector after (`valignd`), so an output vector costs three loads
    /// (one per kernel row, aligned with the row) instead of nine.
    ///
    /// # Safety
    /// As [`plane`], with `g.stride == 1` and `g.left == 1`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn sliding(
        g: &Dw3x3,
        x: &[f32],
        k: &[f32],
        out: &mut [f32],
        bias: f32,
        clamp: Clamp,
    ) {
        let wv = weights(k);
        let bias = _mm512_set1_ps(bias);
        let chunks = g.ow.div_ceil(L);
        // Lanes of input columns 16 c.. inside the row, for every output
        // vector and the one after the last (the right taps' next lanes).
        let mut cols = [0u16; MAX_CHUNKS + 1];
        for (c, m) in cols.iter_mut().enumerate().take(chunks + 1) {
            *m = crate::kernel::lanes_inside((c * L) as isize, g.w, L);
        }
        for (oy, orow) in out.chunks_exact_mut(g.ow).take(g.oh).enumerate() {
            let (rows, valid) = input_rows(g, x, oy);
            // SAFETY (all loads): the mask selects columns inside the row
            // and nothing of a row that is padding (`valid` zero), so only
            // values of `x` are read.
            let load = |ky: usize, c: usize| unsafe {
                _mm512_maskz_loadu_ps(cols[c] & valid[ky], rows[ky].wrapping_add(c * L))
            };
            let mut prev = [_mm512_setzero_ps(); 3];
            let mut cur = [load(0, 0), load(1, 0), load(2, 0)];
            for c in 0..chunks {
                let mut acc = [_mm512_setzero_ps(); 3];
                for ky in 0..3 {
                    let next = load(ky, c + 1);
                    let (p, m) = (_mm512_castps_si512(prev[ky]), _mm512_castps_si512(cur[ky]));
                    let left = _mm512_castsi512_ps(_mm512_alignr_epi32::<15>(m, p));
                    let right =
                        _mm512_castsi512_ps(_mm512_alignr_epi32::<1>(_mm512_castps_si512(next), m));
                    acc[ky] = _mm512_mul_ps(wv[ky * 3], left);
                    acc[ky] = _mm512_fmadd_ps(wv[ky * 3 + 1], cur[ky], acc[ky]);
                    acc[ky] = _mm512_fmadd_ps(wv[ky * 3 + 2], right, acc[ky]);
                    prev[ky] = cur[ky];
                    cur[ky] = next;
                }
                let store = crate::kernel::first_lanes(g.ow - c * L);
                let v = finish(acc, bias, clamp);
                // SAFETY: the store mask selects output columns < ow of this row.
                unsafe {
                    if store == 0xffff {
                        _mm512_storeu_ps(orow.as_mut_ptr().add(c * L), v)
                    } else {
                        _mm512_mask_storeu_ps(orow.as_mut_ptr().add(c * L), store, v)
                    }
                };
            }
        }
    }

    /// One output plane (see [`Dw3x3::plane`]).
    ///
    /// # Safety
    /// The CPU has AVX-512F; `x` holds `h * w` values, `k` nine and `out`
    /// `oh * ow`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn plane<const S: usize>(
        g: &Dw3x3,
        x: &[f32],
        k: &[f32],
        out: &mut [f32],
        bias: f32,
        clamp: Clamp,
    ) {
        let wv = weights(k);
        let bias = _mm512_set1_ps(bias);
        for (oy, out) in out.chunks_exact_mut(g.ow).take(g.oh).enumerate() {
            let (rows, valid) = input_rows(g, x, oy * S);
            // SAFETY: valid rows are rows of `x`; `out` is one output row.
            unsafe {
                if valid == [0xffff; 3] {
                    row::<S, false>(g, rows, valid, &wv, out, bias, clamp);
                } else {
                    row::<S, true>(g, rows, valid, &wv, out, bias, clamp);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn matches_the_definition_at_both_strides_and_any_pads() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512F");
            return;
        }
        // (strides, pads top/left/bottom/right, input size): rows of one
        // to three vectors with a ragged last one, maps narrower than a
        // vector, a row of one column, no padding, asymmetric and wide pads;
        // at stride 1 with rows as wide as the input's, the flat form
        // (7x7, 14x14, 5x40, asymmetric pads on 6x7 and 9x12); with one
        // column of left padding otherwise, the sliding form (3x112,
        // 20x56, rows one column wider or narrower than the input's).
        let cases: [(usize, [usize; 4], [usize; 2]); 19] = [
            (1, [1, 1, 1, 1], [20, 56]),
            (1, [1, 1, 0, 2], [6, 33]),
            (1, [1, 1, 1, 0], [4, 48]),
            (1, [1, 1, 1, 1], [7, 7]),
            (1, [0, 2, 2, 0], [9, 12]),
            (1, [1, 1, 1, 1], [5, 40]),
            (2, [1, 1, 1, 1], [7, 75]),
            (2, [0, 0, 1, 1], [6, 64]),
            (1, [0, 0, 0, 0], [4, 18]),
            (1, [1, 1, 1, 1], [14, 14]),
            (2, [1, 1, 1, 1], [14, 14]),
            (2, [1, 1, 1, 1], [9, 33]),
            (1, [2, 0, 1, 2], [6, 7]),
            (2, [2, 2, 2, 2], [3, 3]),
            (1, [1, 1, 1, 1], [1, 1]),
            (2, [1, 1, 1, 1], [112, 112]),
            (1, [1, 1, 1, 1], [3, 112]),
            (2, [1, 0, 0, 1], [5, 31]),
            (1, [0, 1, 2, 0], [5, 17]),
        ];
        let clamps = [
            (0.0, Clamp::Identity),
            (0.25, Clamp::Relu),
            (-0.5, Clamp::Clip { lo: -0.3, hi: 0.6 }),
        ];
        for ((s, pads, [h, w]), (bias, clamp)) in cases
            .into_iter()
            .flat_map(|c| clamps.iter().map(move |&cl| (c, cl)))
        {
            let g = crate::test_window2d(&[3, 3], &[s, s], &pads, &[1, 1], [h, w]);
            let k = Dw3x3::new(&g, [h, w]).unwrap();
            let same_width = s == 1 && pads[1] + pads[3] == 2 && h * w <= 256;
            assert_eq!(k.flat.is_some(), same_width, "{h}x{w} pads {pads:?}");
            let x: Vec<f32> = (0..h * w)
                .map(|i| ((i * 37) % 23) as f32 / 7.0 - 1.5)
                .collect();
            let wk: Vec<f32> = (0..9).map(|i| ((i * 11) % 13) as f32 / 5.0 - 1.0).collect();
            // One more value than the plane: it must stay untouched.
            let mut y = vec![f32::NAN; k.out_len() + 1];
            k.plane(&x, &wk, &mut y, bias, clamp);
            let want = crate::conv2d_reference(&x, &wk, [1, 1, 1], [h, w], &g);
            for (i, (a, b)) in y.iter().zip(&want).enumerate() {
                let b = b + f64::from(bias);
                let b = match clamp {
                    Clamp::Identity => b,
                    Clamp::Relu => b.max(0.0),
                    Clamp::Clip { lo, hi } => b.clamp(f64::from(lo), f64::from(hi)),
                };
                assert!(
                    (f64::from(*a) - b).abs() < 1e-4,
                    "stride {s} pads {pads:?} {h}x{w} {clamp:?} at {i}: {a} vs {b}"
                );
            }
            assert!(y[k.out_len()].is_nan(), "wrote past the plane");
        }
    }

    #[test]
    fn declines_other_windows() {
        let g = crate::test_window2d(&[3, 3], &[1, 2], &[1, 1, 1, 1], &[1, 1], [8, 8]);
        assert!(Dw3x3::new(&g, [8, 8]).is_none());
        let g = crate::test_window2d(&[3, 3], &[1, 1], &[1, 1, 1, 1], &[2, 2], [8, 8]);
        assert!(Dw3x3::new(&g, [8, 8]).is_none());
        let g = crate::test_window2d(&[5, 5], &[1, 1], &[2, 2, 2, 2], &[1, 1], [8, 8]);
        assert!(Dw3x3::new(&g, [8, 8]).is_none());
    }
}

//! `WinogradConv` (domain `oxrt`): a 3x3, stride-1, single-group f32
//! convolution by Winograd's minimal filtering F(4x4, 3x3), produced by
//! the optimizer at level `all`.
//!
//! Inputs: `X` (N x C x H x W), `U` (36 x C x K: the filters already in
//! the Winograd domain, `U[p] = G g G^T` laid out for one GEMM per
//! position `p`, see `oxrt_core::optimize::winograd_filters`), optional
//! `B` (K). Attributes as Conv's (`pads`/`auto_pad`), plus Conv's fused
//! `activation`. Each 4x4 output tile costs 36 multiply-adds per input
//! channel instead of 144.
//!
//! Per image: the input transform `V = B^T d B` of every 6x6 input tile
//! (tiles in parallel, 16 channels per vector), 36 GEMMs `M[p] = V[p] U[p]`
//! (in parallel; with `U` constant, each `U[p]` packed once at kernel
//! creation for the packed product, which keeps output channels along its
//! vectors and so stays efficient on the 16 tiles of a 14x14 map), and the
//! output transform `Y = A^T M A`, then bias and activation in one pass
//! over each block of planes (output channels in parallel).
//!
//! Where `U` is no larger than `V` and `M` (wide maps, few channels) and
//! the activation is a clamp, blocks of tiles instead go whole to one
//! thread each — input transform, products, output transform with bias
//! and activation in registers — so that their `V` and `M` stay in that
//! core's cache (`blocked`).

use multiversion::multiversion;
use oxrt_core::shape::WindowAttrs;
use oxrt_core::{
    Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor, WinogradLimits,
};
use rayon::prelude::*;

use crate::gemm::{gemm, MatRef};
use crate::kernel::{optional, required, unsupported_type};
use crate::ops::activation::{bias_then_act_f32, Epilogue};
use crate::ops::conv::channel_bias;
use crate::packed::{gemm_packed_t, PackedA};
use oxrt_core::arena::stale;

/// Output tile side.
const M: usize = 4;
/// Input tile side (`M + 3 - 1`).
const A: usize = 6;
/// Winograd-domain positions per tile.
const P: usize = A * A;
/// Channels transformed at once (one vector of f32 lanes).
const L: usize = 16;

/// The input transform `B^T`.
const BT: [[f32; A]; A] = [
    [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
    [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
    [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
    [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
    [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
    [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
];

/// The output transform `A^T`.
const AT: [[f32; A]; M] = [
    [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
    [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
    [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
    [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
];

type Lanes = [f32; L];

/// `out[r][c] = sum_i t[r][i] * d[i][c]`: a small constant matrix times a
/// column of lane vectors, for every column.
#[inline(always)]
fn left<const R: usize, const N: usize>(t: &[[f32; A]; R], d: &[[Lanes; N]; A]) -> [[Lanes; N]; R] {
    let mut out = [[[0.0; L]; N]; R];
    for r in 0..R {
        for i in 0..A {
            let w = t[r][i];
            if w == 0.0 {
                continue;
            }
            for c in 0..N {
                for l in 0..L {
                    out[r][c][l] += w * d[i][c][l];
                }
            }
        }
    }
    out
}

/// `out[r][c] = sum_j d[r][j] * t[c][j]`: lane vectors times a small
/// constant matrix transposed, for every row.
#[inline(always)]
fn right<const R: usize, const N: usize>(
    d: &[[Lanes; A]; R],
    t: &[[f32; A]; N],
) -> [[Lanes; N]; R] {
    let mut out = [[[0.0; L]; N]; R];
    for r in 0..R {
        for c in 0..N {
            for j in 0..A {
                let w = t[c][j];
                if w == 0.0 {
                    continue;
                }
                for l in 0..L {
                    out[r][c][l] += w * d[r][j][l];
                }
            }
        }
    }
    out
}

/// The tile grid of one image.
#[derive(Clone, Copy)]
struct Grid {
    c: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    pad_top: isize,
    pad_left: isize,
    tiles_w: usize,
}

impl Grid {
    fn tiles(&self) -> usize {
        self.oh.div_ceil(M) * self.tiles_w
    }
}

/// `V[t][p][c]` for every tile `t` of image `x` (C x H x W).
fn input_transform(x: &[f32], g: Grid, v: &mut [f32]) {
    v.par_chunks_mut(P * g.c)
        .enumerate()
        .for_each(|(t, vt)| input_tile(x, g, t, vt));
}

/// `V[t]` (`P x C`) of tile `t`.
fn input_tile(x: &[f32], g: Grid, t: usize, vt: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked above).
        unsafe { avx512::input_tile(x, g, t, vt) };
        return;
    }
    input_tile_lanes(x, g, t, vt);
}

/// [`input_tile`] with each channel's patch gathered value by value (CPUs
/// without AVX-512, which always take `avx512::input_tile`).
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn input_tile_lanes(x: &[f32], g: Grid, t: usize, vt: &mut [f32]) {
    let (c, h, w) = (g.c, g.h, g.w);
    let (ty, tx) = (t / g.tiles_w, t % g.tiles_w);
    let y0 = (ty * M) as isize - g.pad_top;
    let x0 = (tx * M) as isize - g.pad_left;
    let interior = y0 >= 0 && x0 >= 0 && y0 as usize + A <= h && x0 as usize + A <= w;
    for c0 in (0..c).step_by(L) {
        let lanes = L.min(c - c0);
        let mut d = [[[0.0f32; L]; A]; A];
        for (l, ch) in (c0..c0 + lanes).enumerate() {
            let plane = &x[ch * h * w..][..h * w];
            for (i, row) in d.iter_mut().enumerate() {
                let iy = y0 + i as isize;
                if interior {
                    let src = &plane[iy as usize * w + x0 as usize..][..A];
                    for (j, &s) in src.iter().enumerate() {
                        row[j][l] = s;
                    }
                } else if (0..h as isize).contains(&iy) {
                    for (j, cell) in row.iter_mut().enumerate() {
                        let ix = x0 + j as isize;
                        if (0..w as isize).contains(&ix) {
                            cell[l] = plane[iy as usize * w + ix as usize];
                        }
                    }
                }
            }
        }
        let tmp = left(&BT, &d);
        let out = right(&tmp, &BT);
        for (p, vals) in out.iter().flatten().enumerate() {
            vt[p * c + c0..][..lanes].copy_from_slice(&vals[..lanes]);
        }
    }
}

/// `Y[k]` (OH x OW planes) from `Mo[p][t][k]`, then the bias and the
/// activation, each block of planes while it is still in cache.
fn output_transform(
    mo: &[f32],
    g: Grid,
    k: usize,
    bias: Option<&[f32]>,
    act: Option<&Epilogue>,
    y: &mut [f32],
) -> Result<()> {
    let plane = (g.oh * g.ow).max(1);
    y.par_chunks_mut(L * plane)
        .enumerate()
        .try_for_each(|(blk, planes)| {
            let k0 = blk * L;
            output_block(mo, g, k, k0, planes);
            for (l, values) in planes.chunks_mut(plane).enumerate() {
                bias_then_act_f32(act, bias.map(|b| b[k0 + l]), values)?;
            }
            Ok(())
        })
}

/// The output planes of channels `k0..` (as many as `planes` holds),
/// without bias.
fn output_block(mo: &[f32], g: Grid, k: usize, k0: usize, planes: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if planes.len() == L * g.oh * g.ow && std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked above).
        unsafe { avx512::output_block(mo, g, k, k0, planes) };
        return;
    }
    output_block_lanes(mo, g, k, k0, planes);
}

/// [`output_block`] for any number of channels, one lane per channel.
#[multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn output_block_lanes(mo: &[f32], g: Grid, k: usize, k0: usize, planes: &mut [f32]) {
    let (oh, ow) = (g.oh, g.ow);
    let tiles = g.tiles();
    let lanes = planes.len() / (oh * ow).max(1);
    for t in 0..tiles {
        let (ty, tx) = (t / g.tiles_w, t % g.tiles_w);
        let mut m = [[[0.0f32; L]; A]; A];
        for (p, cell) in m.iter_mut().flatten().enumerate() {
            let src = &mo[(p * tiles + t) * k + k0..];
            if lanes == L {
                cell.copy_from_slice(&src[..L]);
            } else {
                cell[..lanes].copy_from_slice(&src[..lanes]);
            }
        }
        let tmp = left(&AT, &m);
        let out = right(&tmp, &AT);
        for (r, row) in out.iter().enumerate() {
            let oy = ty * M + r;
            if oy >= oh {
                break;
            }
            for (s, vals) in row.iter().enumerate() {
                let ox = tx * M + s;
                if ox >= ow {
                    break;
                }
                for l in 0..lanes {
                    planes[l * oh * ow + oy * ow + ox] = vals[l];
                }
            }
        }
    }
}

/// AVX-512 transforms: 16 channels per vector, transposed in registers
/// so that each channel's 4x4 output block is stored as four rows.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Grid, A, L, M, P};

    /// Tiles ahead whose products [`output_block`] prefetches.
    const AHEAD: usize = 2;
    /// Products larger than this (a second-level cache) are prefetched.
    const PREFETCH_BYTES: usize = 1 << 20;
    use crate::transpose16::{transpose16, vectors16};

    /// `B^T d` for one column `d` of six vectors.
    #[target_feature(enable = "avx512f")]
    fn bt_column(d: [__m512; A]) -> [__m512; A] {
        let (four, five, two) = (
            _mm512_set1_ps(4.0),
            _mm512_set1_ps(5.0),
            _mm512_set1_ps(2.0),
        );
        // d4 - 4 d2, d3 - 4 d1, d4 - d2, 2 (d3 - d1).
        let a = _mm512_fnmadd_ps(four, d[2], d[4]);
        let b = _mm512_fnmadd_ps(four, d[1], d[3]);
        let c = _mm512_sub_ps(d[4], d[2]);
        let e = _mm512_mul_ps(two, _mm512_sub_ps(d[3], d[1]));
        [
            _mm512_fmadd_ps(four, d[0], _mm512_fnmadd_ps(five, d[2], d[4])),
            _mm512_add_ps(a, b),
            _mm512_sub_ps(a, b),
            _mm512_add_ps(c, e),
            _mm512_sub_ps(c, e),
            _mm512_fmadd_ps(four, d[1], _mm512_fnmadd_ps(five, d[3], d[5])),
        ]
    }

    /// `V[t]` (`P x C`) of tile `t`: for each group of 16 channels, the
    /// 6x6 patches loaded two rows per vector (row `i` in lanes 0..6, row
    /// `i + 1` in lanes 8..14, masked to the image), transposed so that
    /// each vector holds one patch value of the 16 channels, transformed.
    #[target_feature(enable = "avx512f")]
    pub(super) fn input_tile(x: &[f32], g: Grid, t: usize, vt: &mut [f32]) {
        let (c, h, w) = (g.c, g.h, g.w);
        let (ty, tx) = (t / g.tiles_w, t % g.tiles_w);
        let y0 = (ty * M) as isize - g.pad_top;
        let x0 = (tx * M) as isize - g.pad_left;
        // The patch columns inside the image, as lane bits.
        let cols = crate::kernel::lanes_inside(x0, w, A);
        let row_mask = |i: usize| -> u16 {
            let iy = y0 + i as isize;
            if (0..h as isize).contains(&iy) {
                cols
            } else {
                0
            }
        };
        for c0 in (0..c).step_by(L) {
            let lanes = L.min(c - c0);
            // Rows 2 pair and 2 pair + 1 of the 16 channels' patches,
            // transposed: vector j holds patch value (2 pair, j) of every
            // channel, vector 8 + j value (2 pair + 1, j). The arrays here
            // are built from their values, not zeroed and then written: a
            // zeroed array of vectors is a call to memset per tile.
            let pair = |pair: usize| -> [__m512; L] {
                let (i0, i1) = (2 * pair, 2 * pair + 1);
                let (m0, m1) = (row_mask(i0), row_mask(i1) << 8);
                let channel = |l: usize| -> __m512 {
                    if l >= lanes {
                        return _mm512_setzero_ps();
                    }
                    let plane = &x[(c0 + l) * h * w..][..h * w];
                    // Lane j of the vector addresses patch column j of
                    // row i0 (lanes 8.. of row i1); only lanes inside the
                    // image are set in the masks.
                    let at = |i: usize, lane0: isize| {
                        let offset = (y0 + i as isize) * w as isize + x0 - lane0;
                        plane.as_ptr().wrapping_offset(offset)
                    };
                    // SAFETY: masked lanes address columns x0 + j of rows
                    // y0 + i inside the image, so inside `plane`; other
                    // lanes are not accessed.
                    unsafe {
                        let lo = _mm512_maskz_loadu_ps(m0, at(i0, 0));
                        _mm512_mask_loadu_ps(lo, m1, at(i1, 8))
                    }
                };
                let mut v = vectors16(channel);
                transpose16(&mut v);
                v
            };
            let (p0, p1, p2) = (pair(0), pair(1), pair(2));
            // Column j of B^T d, then row i of (B^T d) B = V.
            let column =
                |j: usize| bt_column([p0[j], p0[8 + j], p1[j], p1[8 + j], p2[j], p2[8 + j]]);
            let tmp = six(column);
            let keep = crate::kernel::first_lanes(lanes);
            for i in 0..A {
                for (j, v) in bt_column(six(|j| tmp[j][i])).into_iter().enumerate() {
                    let dst = &mut vt[(i * A + j) * c + c0..][..lanes];
                    // SAFETY: the first `lanes` lanes are stored, into `dst`.
                    unsafe { _mm512_mask_storeu_ps(dst.as_mut_ptr(), keep, v) };
                }
            }
        }
    }

    /// `[f(0), .., f(5)]`, built from its values: an array of vectors
    /// zeroed first and then written is a call to memset per tile.
    #[inline(always)]
    fn six<T>(f: impl Fn(usize) -> T) -> [T; A] {
        [f(0), f(1), f(2), f(3), f(4), f(5)]
    }

    /// `A^T m` for one column `m` of six vectors: the four output rows.
    #[target_feature(enable = "avx512f")]
    fn at_column(m: [__m512; A]) -> [__m512; M] {
        let (s12, d12) = (_mm512_add_ps(m[1], m[2]), _mm512_sub_ps(m[1], m[2]));
        let (s34, d34) = (_mm512_add_ps(m[3], m[4]), _mm512_sub_ps(m[3], m[4]));
        let two = _mm512_set1_ps(2.0);
        let four = _mm512_set1_ps(4.0);
        let eight = _mm512_set1_ps(8.0);
        [
            _mm512_add_ps(_mm512_add_ps(m[0], s12), s34),
            _mm512_fmadd_ps(two, d34, d12),
            _mm512_fmadd_ps(four, s34, s12),
            _mm512_add_ps(_mm512_fmadd_ps(eight, d34, d12), m[5]),
        ]
    }

    /// The 4x4 output values of one tile for 16 channels from its 36
    /// products `load(p)` (each the 16 channels' value at position `p`):
    /// `out[r * 4 + s]`, lanes along the channels. Column j of A^T m (one
    /// vector per output row r), then row r of (A^T m) A. The arrays are
    /// built from their values, not zeroed and then written (a zeroed
    /// array of vectors is a call to memset per tile).
    ///
    /// # Safety
    /// `load` must be safe to call for every p < 36.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn tile_values(load: impl Fn(usize) -> __m512) -> [__m512; L] {
        let column = |j: usize| at_column(std::array::from_fn(|i| load(i * A + j)));
        let tmp = six(column);
        let row = |r: usize| at_column(six(|j| tmp[j][r]));
        let [r0, r1, r2, r3] = [row(0), row(1), row(2), row(3)];
        [
            r0[0], r0[1], r0[2], r0[3], r1[0], r1[1], r1[2], r1[3], r2[0], r2[1], r2[2], r2[3],
            r3[0], r3[1], r3[2], r3[3],
        ]
    }

    /// Stores tile `t`'s values, transposed (`out[l]`: channel l's 4x4
    /// block, row by row), into 16 planes of OH x OW from `planes`, the
    /// rows and columns inside the map.
    ///
    /// # Safety
    /// `planes` must address 16 writable planes of `g.oh * g.ow` values.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn store_tile(out: &[__m512; L], planes: *mut f32, g: Grid, t: usize) {
        let (oh, ow) = (g.oh, g.ow);
        let (oy0, ox) = ((t / g.tiles_w) * M, (t % g.tiles_w) * M);
        let cols = M.min(ow - ox);
        for (l, block) in out.iter().enumerate() {
            for r in 0..M.min(oh - oy0) {
                // Lanes 4r..4r + cols of the block are this row; the store
                // is addressed so that lane 4r lands on the row's first.
                let mask: __mmask16 = ((1u16 << cols) - 1) << (M * r);
                let row = planes.wrapping_add(l * oh * ow + (oy0 + r) * ow + ox);
                // SAFETY: only the masked lanes are written, and they
                // address columns ox..ox + cols of row oy0 + r of plane l,
                // inside the caller's planes.
                unsafe { _mm512_mask_storeu_ps(row.wrapping_sub(M * r), mask, *block) };
            }
        }
    }

    /// The outputs of `tiles` (of image planes from `y`, `k` of them) from
    /// `mo[p][t - tiles.start][k]`, with the bias and `clamp` applied to
    /// each tile's values in registers.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; `k` must be a multiple of 16, `mo` hold
    /// P * tiles.len() * k values, and `y` address the image's `k`
    /// writable planes, whose parts under `tiles` no other thread touches.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn output_tiles(
        mo: &[f32],
        g: Grid,
        k: usize,
        tiles: std::ops::Range<usize>,
        bias: Option<&[f32]>,
        clamp: crate::ops::activation::Clamp,
        y: *mut f32,
    ) {
        let nt = tiles.len();
        debug_assert!(k.is_multiple_of(L) && mo.len() >= P * nt * k);
        for k0 in (0..k).step_by(L) {
            let b = match bias {
                // SAFETY: the bias holds k values, k0 + 16 <= k.
                Some(b) => unsafe { _mm512_loadu_ps(b[k0..][..L].as_ptr()) },
                None => _mm512_setzero_ps(),
            };
            for (i, t) in tiles.clone().enumerate() {
                // SAFETY: `mo` holds P * nt * k values and k0 + 16 <= k.
                let mut out = unsafe {
                    tile_values(|p| {
                        let src = &mo[(p * nt + i) * k + k0..][..L];
                        _mm512_loadu_ps(src.as_ptr())
                    })
                };
                for v in &mut out {
                    *v = clamp.biased_avx512(*v, b);
                }
                transpose16(&mut out);
                // SAFETY: channels k0..k0 + 16 of the image's planes, tile
                // t's outputs, this caller's alone.
                unsafe { store_tile(&out, y.wrapping_add(k0 * g.oh * g.ow), g, t) };
            }
        }
    }

    /// The 16 output planes of channels `k0..k0 + 16` (`planes`, each
    /// OH x OW) from `Mo[p][t][k]`, without bias.
    #[target_feature(enable = "avx512f")]
    pub(super) fn output_block(mo: &[f32], g: Grid, k: usize, k0: usize, planes: &mut [f32]) {
        debug_assert!(planes.len() >= L * g.oh * g.ow);
        let tiles = g.tiles();
        let prefetch = std::mem::size_of_val(mo) > PREFETCH_BYTES;
        for t in 0..tiles {
            // The values of a tile ahead, from 36 places that far apart
            // that the hardware prefetchers lose track of them (where the
            // products outgrow the second-level cache: 16 -> 64 channels
            // at 55x55, 1.8 MB, 0.570 -> 0.515 ms and 0.626 -> 0.594 in
            // two A/B runs; no change at 27x27 or 13x13).
            if prefetch && t + AHEAD < tiles {
                for p in 0..P {
                    // A hint only: it reads nothing, so any address will do.
                    let at = mo.as_ptr().wrapping_add((p * tiles + t + AHEAD) * k + k0);
                    _mm_prefetch::<_MM_HINT_T0>(at.cast());
                }
            }
            // SAFETY: `mo` holds P * tiles * k values and k0 + 16 <= k.
            let mut out = unsafe {
                tile_values(|p| {
                    let src = &mo[(p * tiles + t) * k + k0..][..L];
                    _mm512_loadu_ps(src.as_ptr())
                })
            };
            transpose16(&mut out);
            // SAFETY: `planes` holds the 16 planes of the block.
            unsafe { store_tile(&out, planes.as_mut_ptr(), g, t) };
        }
    }
}

/// Where `WinogradConv` beats the direct kernel when the product goes
/// through the `gemm` crate and the transforms go value by value (measured
/// on one thread, `oxrt bench -l all` vs `-l extended`: 56x56 and 28x28
/// maps gain 1.5-1.8x, 14x14 with its 16 tiles loses 1.7x as each GEMM
/// packs the 4x larger filters again for few rows; 32 -> 128 channels at
/// 27x27 gain 1.3x, 16 -> 64 at 55x55 lose 1.2x as the transforms outweigh
/// the saved multiplies).
pub const LIMITS: WinogradLimits = WinogradLimits {
    tiles: 36,
    channels: 32,
};

/// Where it wins with AVX-512: filters packed once at kernel creation,
/// vectorized transforms (measured on one thread against the direct
/// kernel, single Conv+Relu layers: 256 channels at 14x14 2.58 -> 0.97
/// ms, 512 at 7x7 3.28 -> 2.46, 256 at 5x5 0.41 -> 0.26, 16 -> 64 at
/// 55x55 0.66 -> 0.49; 8 -> 32 at 56x56 lost, 0.18 -> 0.29).
pub const LIMITS_AVX512: WinogradLimits = WinogradLimits {
    tiles: 4,
    channels: 16,
};

/// The limits for this CPU: whether it has the packed product (whose
/// AVX-512 also runs the vectorized transforms).
pub fn limits() -> WinogradLimits {
    if crate::packed::available() {
        LIMITS_AVX512
    } else {
        LIMITS
    }
}

// The blocked path needs the packed product and the AVX-512 transforms.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
/// Bytes of `V` and `M` per block of tiles on the blocked path: with the
/// block's share of `U`, about a second-level cache.
const BLOCK_BYTES: usize = 512 << 10;
/// Columns of the packed product's panels: blocks are whole panels.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const PANEL: usize = 12;

/// Tiles per block where the blocked path suits `c -> k` channels over
/// `tiles` tiles: `U` no larger than `V` and `M` together (each block
/// reads all of `U`; 16 -> 64 channels at 55x55: `U` 0.15 MB, `V` and
/// `M` 2.3 MB), `k` whole vectors of channels; blocks of whole panels
/// that fit [`BLOCK_BYTES`], at least two per thread where the tiles
/// allow.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn block_tiles(c: usize, k: usize, tiles: usize) -> Option<usize> {
    if !k.is_multiple_of(L) || c * k > tiles * (c + k) {
        return None;
    }
    let fit = (BLOCK_BYTES / 4 / (P * (c + k))) / PANEL * PANEL;
    let share = tiles
        .div_ceil(2 * rayon::current_num_threads())
        .div_ceil(PANEL)
        * PANEL;
    Some(fit.min(share).max(PANEL))
}

/// The convolution by blocks of `tb` tiles, each taken whole by one
/// thread: its input transform, its 36 products and its output transform
/// with bias and `clamp` in registers, while its `V` and `M` stay in that
/// thread's cache (the three-phase path hands each phase's output to the
/// other threads and streams `V` and `M` through memory when they outgrow
/// the second-level cache).
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn blocked(
    xd: &[f32],
    packed: &[PackedA],
    g: Grid,
    k: usize,
    n: usize,
    tb: usize,
    bias: Option<&[f32]>,
    clamp: crate::ops::activation::Clamp,
    y: &mut [f32],
) -> Result<()> {
    let (c, tiles) = (g.c, g.tiles());
    let (image, plane) = (c * g.h * g.w, g.oh * g.ow);
    if packed.len() != P || xd.len() < n * image || y.len() < n * k * plane {
        return Err(Error::invalid(
            "Winograd buffers are smaller than their shapes",
        ));
    }
    let blocks = tiles.div_ceil(tb);
    let dst = crate::gemm::SharedDst::new(&mut y[..n * k * plane]);
    (0..n * blocks).into_par_iter().try_for_each(|job| {
        let (img, t0) = (job / blocks, (job % blocks) * tb);
        let nt = tb.min(tiles - t0);
        let x = &xd[img * image..][..image];
        crate::scratch::with_f32(nt * P * (c + k), |scratch| {
            let (v, mo) = scratch.split_at_mut(nt * P * c);
            for (t, vt) in v.chunks_exact_mut(P * c).enumerate() {
                input_tile(x, g, t0 + t, vt);
            }
            for (p, (up, mp)) in packed.iter().zip(mo.chunks_exact_mut(nt * k)).enumerate() {
                gemm_packed_t(up, position(v, p, c, nt), mp, false)?;
            }
            // SAFETY: `blocked` runs only where `packed` exists, so this
            // CPU has AVX-512F; the tiles t0..t0 + nt of image `img` are
            // this job's alone, and their outputs lie in the image's k
            // planes inside `y` (checked above).
            unsafe {
                avx512::output_tiles(mo, g, k, t0..t0 + nt, bias, clamp, dst.at(img * k * plane))
            };
            Ok(())
        })
    })
}

struct WinogradConv {
    attrs: WindowAttrs,
    /// `U[p]` transposed (`K x C`) and packed per position, when `U` is a
    /// constant and this CPU has the packed product's micro-kernel.
    packed: Option<Vec<PackedA>>,
    /// The fused activation, applied with the bias after the output
    /// transform.
    epilogue: Option<Epilogue>,
}

/// `V[p]` of `V[t][p][c]` (`tiles` tiles of `c` channels) read as a
/// `c x tiles` matrix, the packed product's right operand: each tile's
/// channels are contiguous.
fn position(v: &[f32], p: usize, c: usize, tiles: usize) -> MatRef<'_, f32> {
    MatRef {
        data: &v[p * c..],
        rows: c,
        cols: tiles,
        row_stride: 1,
        col_stride: P * c,
    }
}

/// `U` (36 x C x K) packed as one `K x C` operand per position.
fn pack_filters(u: &Tensor) -> Option<Vec<PackedA>> {
    let [P, c, k] = u.shape()[..] else {
        return None;
    };
    let ud = u.as_slice::<f32>().ok()?;
    ud.chunks_exact(c * k)
        .map(|up| PackedA::transposed(up, c, k))
        .collect()
}

impl WinogradConv {
    fn run(&self, x: &Tensor, u: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
        let (xs, us) = (x.shape(), u.shape());
        let [n, c, h, w] = xs[..] else {
            return Err(Error::invalid(format!(
                "X must be N x C x H x W, got {xs:?}"
            )));
        };
        if us.len() != 3 || us[0] != P || us[1] != c {
            return Err(Error::invalid(format!(
                "U must be {P} x C x K with C = {c} (X's channels), got {us:?}"
            )));
        }
        let k = us[2];
        let win = self.attrs.resolve(&[h, w], Some(&[3, 3]))?;
        if win.kernel != [3, 3] || win.strides != [1, 1] || win.dilations != [1, 1] {
            return Err(Error::invalid(format!(
                "WinogradConv needs a 3x3 window at stride 1 without dilation, got kernel {:?} strides {:?} dilations {:?}",
                win.kernel, win.strides, win.dilations
            )));
        }
        let bias = channel_bias::<f32>(b, k)?;
        let [oh, ow] = [win.output[0], win.output[1]];
        let grid = Grid {
            c,
            h,
            w,
            oh,
            ow,
            pad_top: win.pads_begin[0] as isize,
            pad_left: win.pads_begin[1] as isize,
            tiles_w: ow.div_ceil(M),
        };
        let tiles = grid.tiles();
        let (xd, ud) = (x.as_slice::<f32>()?, u.as_slice::<f32>()?);
        // Every value of the three is written before it is read.
        let mut y = stale(n * k * oh * ow, 0.0f32);
        #[cfg(target_arch = "x86_64")]
        if let (Some(packed), Some(clamp), Some(tb)) = (
            self.packed.as_deref(),
            crate::ops::activation::clamp_of(self.epilogue.as_ref()),
            block_tiles(c, k, tiles),
        ) {
            blocked(xd, packed, grid, k, n, tb, bias, clamp, &mut y)?;
            return Tensor::from_vec(vec![n, k, oh, ow], y);
        }
        // The transformed input and the products, in this thread's
        // scratch, so a warm run allocates nothing for them.
        let (v_len, mo_len) = (tiles * P * c, P * tiles * k);
        crate::scratch::with_f32(v_len + mo_len, |scratch| {
            let (v, mo) = scratch.split_at_mut(v_len);
            for img in 0..n {
                input_transform(&xd[img * c * h * w..][..c * h * w], grid, v);
                let v = &*v;
                mo.par_chunks_mut((tiles * k).max(1))
                    .enumerate()
                    .try_for_each(|(p, mp)| {
                        if let Some(up) = self.packed.as_ref().and_then(|u| u.get(p)) {
                            return gemm_packed_t(up, position(v, p, c, tiles), mp, false);
                        }
                        let vp = MatRef {
                            data: &v[p * c..],
                            rows: tiles,
                            cols: c,
                            row_stride: P * c,
                            col_stride: 1,
                        };
                        let up = MatRef::row_major(&ud[p * c * k..][..c * k], c, k, false);
                        gemm(vp, up, mp, 1.0, false)
                    })?;
                let yi = &mut y[img * k * oh * ow..][..k * oh * ow];
                output_transform(mo, grid, k, bias, self.epilogue.as_ref(), yi)?;
            }
            Ok::<(), Error>(())
        })?;
        Tensor::from_vec(vec![n, k, oh, ow], y)
    }
}

impl Kernel for WinogradConv {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let (x, u, b) = (
            required(inputs, 0)?,
            required(inputs, 1)?,
            optional(inputs, 2),
        );
        if x.dtype() != oxrt_core::DataType::F32 || u.dtype() != x.dtype() {
            return Err(unsupported_type("WinogradConv", x));
        }
        Ok(vec![self.run(x, u, b)?])
    }
}

fn create(node: &Node, info: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let packed = info.constants.get(&1).and_then(|u| pack_filters(u));
    Ok(Box::new(WinogradConv {
        attrs: WindowAttrs::from_node(node)?,
        packed,
        epilogue: Epilogue::from_node(node)?,
    }))
}

pub fn register(reg: &mut KernelRegistry) {
    let mut def = KernelDef::new("WinogradConv", 1.., &[oxrt_core::DataType::F32], create);
    def.domain = crate::ops::fused::DOMAIN;
    reg.add(def);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ops::conv::tests::naive;
    use oxrt_core::ir::Attribute;
    use oxrt_core::optimize::winograd_filters;
    use oxrt_core::shape::AutoPad;

    fn attrs(pads: usize, stride: usize) -> WindowAttrs {
        WindowAttrs {
            kernel_shape: None,
            strides: Some(vec![stride; 2]),
            dilations: None,
            pads: Some(vec![pads; 4]),
            auto_pad: AutoPad::NotSet,
            ceil_mode: false,
        }
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    }

    /// Random `x`, weights, bias and their Winograd filters for `shape`
    /// and `k` outputs, with the direct convolution plus bias (f32 naive).
    struct Case {
        x: Tensor,
        u: Tensor,
        bias: Tensor,
        want: Vec<f32>,
        out_shape: [usize; 4],
    }

    fn case(shape: [usize; 4], k: usize, pad: usize) -> Case {
        let [n, c, h, w] = shape;
        let x = values(n * c * h * w, 1);
        let wt = values(k * c * 9, 2);
        let bias = values(k, 3);
        let u = winograd_filters(&wt, k, c).unwrap();
        let (mut want, _, _) = naive(&x, &wt, (n, c, h, w), (k, 3, 3), 1, 1, pad);
        let plane = want.len() / (n * k);
        for (i, v) in want.iter_mut().enumerate() {
            *v += bias[(i / plane) % k];
        }
        Case {
            x: Tensor::from_vec(shape.to_vec(), x).unwrap(),
            u: Tensor::from_vec(vec![P, c, k], u).unwrap(),
            bias: Tensor::from_vec(vec![k], bias).unwrap(),
            want,
            out_shape: [n, k, h + 2 * pad - 2, w + 2 * pad - 2],
        }
    }

    /// The largest difference relative to the largest wanted magnitude
    /// (at least 1): sums over deep inputs round in another order.
    fn worst(got: &Tensor, want: &[f32]) -> f32 {
        let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        got.as_slice::<f32>()
            .unwrap()
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs() / scale)
            .fold(0.0f32, f32::max)
    }

    #[test]
    fn matches_the_direct_convolution_on_ragged_tiles_and_channel_counts() {
        // Channel counts off the vector width, outputs off the tile size,
        // with and without padding, two images; depth past one packed block.
        for (shape, k, pad) in [
            ([2, 3, 7, 9], 5, 1),
            ([1, 17, 10, 6], 18, 0),
            ([1, 33, 13, 13], 16, 1),
            ([1, 800, 6, 6], 40, 1),
        ] {
            let t = case(shape, k, pad);
            // The gemm crate's product, and the packed one where this CPU
            // has it.
            let packed = pack_filters(&t.u);
            assert_eq!(packed.is_some(), crate::packed::available());
            for packed in [None, packed] {
                let conv = WinogradConv {
                    attrs: attrs(pad, 1),
                    packed,
                    epilogue: None,
                };
                let y = conv.run(&t.x, &t.u, Some(&t.bias)).unwrap();
                assert_eq!(y.shape(), t.out_shape);
                let e = worst(&y, &t.want);
                assert!(e < 1e-4, "{shape:?}: max error {e}");
            }
        }
    }

    /// The kernel `create` makes for a WinogradConv node with padding
    /// `pad`, `activation` (with `params`) and `u` constant (packed there).
    fn kernel(u: &Tensor, pad: usize, activation: &str, params: &[f32]) -> Box<dyn Kernel> {
        let node = Node {
            name: "n".into(),
            op_type: "WinogradConv".into(),
            domain: crate::ops::fused::DOMAIN.into(),
            inputs: vec!["x".into(), "u".into(), "b".into()],
            outputs: vec!["y".into()],
            attributes: [
                ("pads".to_string(), Attribute::Ints(vec![pad as i64; 4])),
                (
                    "activation".to_string(),
                    Attribute::String(activation.into()),
                ),
                (
                    "activation_params".to_string(),
                    Attribute::Floats(params.to_vec()),
                ),
            ]
            .into_iter()
            .collect(),
        };
        let info = KernelInfo {
            node: oxrt_core::NodeContext {
                opset: 1,
                input_types: vec![],
            },
            constants: [(1, u)].into_iter().collect(),
            output_types: vec![],
            subgraphs: None,
        };
        create(&node, &info).unwrap()
    }

    #[test]
    fn fused_activations_follow_the_bias() {
        // A piecewise activation (fused with the bias) and one that is not.
        let t = case([2, 20, 9, 11], 24, 1);
        type Act = fn(f32) -> f32;
        let acts: [(&str, Act); 2] = [("Relu", |v| v.max(0.0)), ("Tanh", f32::tanh)];
        for (name, f) in acts {
            let y = kernel(&t.u, 1, name, &[])
                .compute(&[Some(&t.x), Some(&t.u), Some(&t.bias)])
                .unwrap();
            assert_eq!(y[0].shape(), t.out_shape);
            let want: Vec<f32> = t.want.iter().map(|&v| f(v)).collect();
            let e = worst(&y[0], &want);
            assert!(e < 1e-4, "{name}: max error {e}");
        }
    }

    #[test]
    fn the_blocked_path_matches_the_direct_convolution() {
        // Maps of several blocks (the last one partial), two images, with
        // and without padding; the bias with Relu and Clip applied in
        // registers, and Tanh (which takes the three-phase path).
        type Act = fn(f32) -> f32;
        let acts: [(&str, &[f32], Act); 3] = [
            ("Relu", &[], |v| v.max(0.0)),
            ("Clip", &[-0.1, 0.2], |v| v.clamp(-0.1, 0.2)),
            ("Tanh", &[], f32::tanh),
        ];
        for (shape, k, pad) in [([2, 16, 23, 21], 32, 1), ([1, 8, 30, 30], 16, 0)] {
            let t = case(shape, k, pad);
            let tiles = t.out_shape[2].div_ceil(M) * t.out_shape[3].div_ceil(M);
            let tb = block_tiles(shape[1], k, tiles).unwrap();
            assert!(tiles > tb, "{shape:?}: one block of {tb} for {tiles} tiles");
            for (name, params, f) in acts {
                let y = kernel(&t.u, pad, name, params)
                    .compute(&[Some(&t.x), Some(&t.u), Some(&t.bias)])
                    .unwrap();
                assert_eq!(y[0].shape(), t.out_shape);
                let want: Vec<f32> = t.want.iter().map(|&v| f(v)).collect();
                let e = worst(&y[0], &want);
                assert!(e < 1e-4, "{shape:?} {name}: max error {e}");
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx512_transforms_match_the_lane_by_lane_ones() {
        // The lane-by-lane versions serve CPUs without AVX-512, so the
        // convolution tests above do not reach them on one that has it.
        if !std::arch::is_x86_feature_detected!("avx512f") {
            eprintln!("skipped: this CPU has no AVX-512F");
            return;
        }
        // 21 channels (a whole vector and a partial one), a map off the
        // tile size, padding on every side.
        let (c, h, w, k) = (21, 9, 11, 16);
        let g = Grid {
            c,
            h,
            w,
            oh: h,
            ow: w,
            pad_top: 1,
            pad_left: 1,
            tiles_w: w.div_ceil(M),
        };
        let tiles = g.tiles();
        let x = values(c * h * w, 4);
        for t in 0..tiles {
            let (mut a, mut b) = (vec![0.0f32; P * c], vec![0.0f32; P * c]);
            input_tile_lanes(&x, g, t, &mut a);
            // SAFETY: the CPU has AVX-512F (checked above).
            unsafe { avx512::input_tile(&x, g, t, &mut b) };
            for (i, (u, v)) in a.iter().zip(&b).enumerate() {
                assert!((u - v).abs() < 1e-5, "input tile {t} at {i}: {u} vs {v}");
            }
        }
        let mo = values(P * tiles * k, 5);
        let (mut a, mut b) = (vec![0.0f32; k * h * w], vec![0.0f32; k * h * w]);
        output_block_lanes(&mo, g, k, 0, &mut a);
        // SAFETY: as above; `b` holds the 16 planes of the block.
        unsafe { avx512::output_block(&mo, g, k, 0, &mut b) };
        for (i, (u, v)) in a.iter().zip(&b).enumerate() {
            assert!((u - v).abs() < 1e-4, "output at {i}: {u} vs {v}");
        }
    }

    #[test]
    fn rejects_windows_it_cannot_compute() {
        let conv = WinogradConv {
            attrs: attrs(0, 2),
            packed: None,
            epilogue: None,
        };
        let x = Tensor::from_vec(vec![1, 1, 4, 4], vec![0.0f32; 16]).unwrap();
        let u = Tensor::from_vec(vec![P, 1, 1], vec![0.0f32; P]).unwrap();
        let e = conv.run(&x, &u, None).unwrap_err().to_string();
        assert!(e.contains("stride 1"), "{e}");
        let bad_u = Tensor::from_vec(vec![P, 2, 1], vec![0.0f32; 2 * P]).unwrap();
        let e = WinogradConv {
            attrs: attrs(0, 1),
            packed: None,
            epilogue: None,
        }
        .run(&x, &bad_u, None)
        .unwrap_err()
        .to_string();
        assert!(e.contains("X's channels"), "{e}");
    }
}

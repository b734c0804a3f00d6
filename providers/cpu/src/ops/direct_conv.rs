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
use crate::ops::activation::Clamp;
use crate::ops::depthwise::{Plane, PlaneFinish};
use crate::ops::window::Window2d;

/// Output channels per micro-tile (and per packed weight group).
const MR: usize = 6;
/// Output positions per micro-tile: four 16-lane vectors.
const NR: usize = 64;
/// Output positions per parallel chunk (whole tiles).
const CHUNK: usize = 4 * NR;
/// The longest chunk: a last one takes a remainder under half a chunk.
const MAX_CHUNK: usize = CHUNK + CHUNK / 2;

/// Whether the direct kernel runs on this CPU and suits `g` over `h x w`
/// planes with `k` (input channels x taps) products per output: at least
/// 85% of the positions computed useful, and a depth where im2col and packing cost more than
/// the micro-kernel loses to the `gemm` crate's.
pub(crate) fn prefers(g: &Window2d, [h, w]: [usize; 2], k: usize) -> bool {
    if !available() || g.kernel[0] * g.kernel[1] < 2 || k > MAX_DEPTH {
        return false;
    }
    // Outputs computed: whole rows on the phase width, in whole vectors.
    let useful = (g.output[0] * g.output[1]) as f64;
    Plane::new(g, [h, w]).is_some_and(|p| useful >= 0.85 * (p.wide_len().div_ceil(16) * 16) as f64)
}

/// Products per output above which the direct kernel is not used
/// (measured up to ResNet-50's 256-channel 3x3/2: 2304; deeper sums are
/// 14x14 and 7x7 maps, too narrow for it anyway).
pub(crate) const MAX_DEPTH: usize = 2304;

/// Whether this CPU runs the micro-kernel.
pub(crate) fn available() -> bool {
    crate::kernel::has_avx512f()
}

/// Convolution of the `c` planes of `x` (`h x wd` each) with `w` (`m` rows
/// of `c x kh x kw`) into the `m` planes of `y` (overwritten, or added to
/// when `accumulate`), then `finish(channel, values)` on the outputs, a
/// part of a plane at a time (each output once; without `accumulate`,
/// also on values of the dropped columns); `Ok(false)` (nothing done)
/// where the kernel does not cover the window or the CPU.
///
/// With an `epilogue` and without `accumulate`, `finish` is not called:
/// the epilogue's bias and activation are applied to each tile in
/// registers and the tile is stored straight into the output planes
/// (no pass through a scratch row and no second pass over the output).
#[allow(clippy::too_many_arguments)]
pub(crate) fn direct_f32(
    x: &[f32],
    w: &DirectWeights,
    y: &mut [f32],
    g: &Window2d,
    [h, wd]: [usize; 2],
    c: usize,
    accumulate: bool,
    finish: Option<&PlaneFinish<'_>>,
    epilogue: Option<TileEpilogue<'_>>,
) -> Result<bool> {
    use rayon::prelude::*;
    let Some(plane) = Plane::new(g, [h, wd]) else {
        return Ok(false);
    };
    let k_len = g.kernel[0] * g.kernel[1];
    let k = c * k_len;
    let [oh, ow] = g.output;
    let out_len = oh * ow;
    let m = w.rows;
    if !available() || w.depth != k || out_len == 0 || x.len() < c * h * wd {
        return Ok(false);
    }
    if y.len() < m * out_len {
        return Ok(false);
    }
    let Phases { buf, offsets } = Phases::new(x, &plane, c, [h, wd]);
    let (phases, offs, cols2) = (&buf[..], &offsets[..], plane.cols2);
    let wide = plane.wide_len();
    if let (Some(epi), false, true) = (epilogue, accumulate, TilePlanes::fits(cols2)) {
        let at = TilePlanes {
            y: SharedDst::new(&mut y[..m * out_len]),
            out_len,
            cols2,
            ow,
            oh,
        };
        fused_tiles(w, phases, offs, wide, &at, epi);
        oxrt_core::arena::recycle(offsets);
        oxrt_core::arena::recycle(buf);
        return Ok(true);
    }
    let blocks = m.div_ceil(MR);
    let dst = SharedDst::new(&mut y[..m * out_len]);
    // Tasks on the threads: a chunk of positions (on the phase width) by a
    // group of output-channel blocks; within one, every block of the group,
    // so its input rows stay in cache across them.
    let split = Split::new(wide, blocks);
    (0..split.count())
        .into_par_iter()
        .try_for_each(|t| -> Result<()> {
            crate::scratch::with_f32(GROUP_BLOCKS * MR * MAX_CHUNK, |scratch| {
                let task = split.nth(t);
                let (q0, len, blks) = (task.q0, task.len, task.blocks.clone());
                task.tiles(m, |blk, height, p, width| {
                    let local = (blk - blks.start) * MR * MAX_CHUNK;
                    // SAFETY: `available` checked AVX-512F; the block holds
                    // k groups of MR weights; every load reads at most
                    // buf[offsets[i] + q0 + p .. + NR], inside `buf` (sized
                    // for the furthest, q0 + p + NR <= wide_pad); the tile's
                    // `height` rows of at most NR values start at local +
                    // r * MAX_CHUNK + p, p + width <= len <= MAX_CHUNK,
                    // inside the group's GROUP_BLOCKS * MR rows.
                    #[cfg(target_arch = "x86_64")]
                    unsafe {
                        let at = scratch.as_mut_ptr().add(local + p);
                        let src = phases.as_ptr().add(q0 + p);
                        let wp = w.block(blk);
                        avx512::tile_rows(
                            height, wp, src, offs, at, MAX_CHUNK, width, false, None, 0,
                        );
                    }
                });
                // Each output row's part in this chunk, copied out of the
                // phase width (columns past `ow` dropped), then finished.
                let (first, last) = (q0 / cols2, (q0 + len - 1) / cols2);
                let first_oc = blks.start * MR;
                for oc in first_oc..(blks.end * MR).min(m) {
                    let row = &mut scratch[(oc - first_oc) * MAX_CHUNK..][..len];
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
                        // output elements of plane oc, so tasks (disjoint
                        // position ranges or channels) write disjoint parts
                        // of `y`, which `dst` borrows exclusively until all
                        // finish; at + (hi - lo) <= m * out_len.
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
            })
        })?;
    oxrt_core::arena::recycle(offsets);
    oxrt_core::arena::recycle(buf);
    Ok(true)
}

/// The input's phase planes (see [`Plane`]) with room for every load of a
/// tile, and where row (channel, tap) of the implicit im2col matrix starts
/// in them.
struct Phases {
    buf: Vec<f32>,
    offsets: Vec<u64>,
}

impl Phases {
    fn new(x: &[f32], plane: &Plane, c: usize, [h, wd]: [usize; 2]) -> Self {
        use rayon::prelude::*;
        let per_plane = plane.buffer_len();
        let mut offsets = oxrt_core::arena::buffer::<u64>(c * plane.taps.len());
        offsets.extend(
            (0..c).flat_map(|ic| plane.taps.iter().map(move |&t| (ic * per_plane + t) as u64)),
        );
        let wide_pad = plane.wide_len().div_ceil(NR) * NR;
        // Every load of a tile stays inside the buffer.
        let furthest = offsets.iter().max().map_or(0, |&o| o as usize) + wide_pad;
        let mut buf = oxrt_core::arena::zeroed::<f32>(furthest.max(c * per_plane));
        buf[..c * per_plane]
            .par_chunks_mut(per_plane.max(1))
            .enumerate()
            .for_each(|(ic, b)| plane.split_into(&x[ic * h * wd..][..h * wd], b));
        Self { buf, offsets }
    }
}

/// A bias per output channel and an activation, applied by the direct
/// kernel to its tiles before they are stored.
#[derive(Clone, Copy)]
pub(crate) struct TileEpilogue<'a> {
    pub(crate) bias: Option<&'a [f32]>,
    pub(crate) clamp: Clamp,
}

/// The output planes tiles on the phase width are stored into: `m` planes
/// of `oh x ow`, `out_len` apart; position `q` of the phase width is
/// column `q % cols2` of row `q / cols2` (columns from `ow` dropped).
struct TilePlanes {
    y: SharedDst<f32>,
    out_len: usize,
    cols2: usize,
    ow: usize,
    oh: usize,
}

impl TilePlanes {
    /// Whether a vector of positions spans at most two rows of the phase
    /// width (as the stores assume).
    fn fits(cols2: usize) -> bool {
        cols2 >= 16
    }
}

/// Every tile of the convolution stored straight into the output planes
/// with `epi` applied (see [`direct_f32`]).
fn fused_tiles(
    w: &DirectWeights,
    phases: &[f32],
    offs: &[u64],
    wide: usize,
    at: &TilePlanes,
    epi: TileEpilogue<'_>,
) {
    use rayon::prelude::*;
    let m = w.rows;
    let blocks = m.div_ceil(MR);
    let split = Split::new(wide, blocks);
    (0..split.count()).into_par_iter().for_each(|t| {
        let task = split.nth(t);
        task.tiles(m, |blk, height, p, width| {
            let bias = epi.bias.map(|b| &b[blk * MR..][..height]);
            let tile_epi = TileEpilogue { bias, ..epi };
            // SAFETY: as in `direct_f32` for the loads; the stores write
            // only outputs (row < oh, column < ow) of channels blk * MR..
            // + height at positions q0 + p.. + width, this task's alone
            // (tasks split positions and channels), in the m * out_len
            // buffer of `at.y`.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                let src = phases.as_ptr().add(task.q0 + p);
                let (w, q) = (w.block(blk), task.q0 + p);
                avx512::tile_planes(height, w, src, offs, at, blk * MR, q, width, tile_epi);
            }
        });
    });
}

/// A convolution's weights (`rows` output channels of `depth` products
/// each) packed for the direct kernels: groups of [`MR`] rows, each
/// k-major (`MR` values per product, zero past the last row).
pub(crate) struct DirectWeights {
    rows: usize,
    depth: usize,
    data: Vec<f32>,
}

impl DirectWeights {
    /// `w` (`rows x depth`, row-major) packed; `None` when its length
    /// does not match.
    pub(crate) fn new(w: &[f32], rows: usize, depth: usize) -> Option<Self> {
        if depth == 0 || w.len() != rows * depth {
            return None;
        }
        let mut data = vec![0.0f32; rows.div_ceil(MR) * MR * depth];
        for (i, row) in w.chunks_exact(depth).enumerate() {
            let (blk, r) = (i / MR, i % MR);
            let group = &mut data[blk * MR * depth..][..MR * depth];
            for (kk, &v) in row.iter().enumerate() {
                group[kk * MR + r] = v;
            }
        }
        Some(Self { rows, depth, data })
    }

    /// Output channels and products per output.
    pub(crate) fn shape(&self) -> [usize; 2] {
        [self.rows, self.depth]
    }

    /// The packed group of rows `blk * MR..`.
    fn block(&self, blk: usize) -> &[f32] {
        &self.data[blk * MR * self.depth..][..MR * self.depth]
    }
}

/// Output-channel blocks per parallel task of the direct kernels (fewer
/// where that leaves too few tasks, see [`Split`]).
const GROUP_BLOCKS: usize = 8;

/// One parallel task of the direct kernels: a chunk of positions by a
/// group of output-channel blocks. Consecutive tasks share a chunk, so
/// its input stays in cache across the groups.
struct Task {
    /// The chunk's first position and length.
    q0: usize,
    len: usize,
    /// The group's blocks of [`MR`] output channels.
    blocks: std::ops::Range<usize>,
}

/// How one call's work splits into [`Task`]s: chunks of positions by
/// groups of output-channel blocks.
#[derive(Clone, Copy)]
struct Split {
    positions: usize,
    blocks: usize,
    chunks: usize,
    /// Blocks per group.
    group: usize,
}

impl Split {
    /// Chunks of whole `CHUNK`s, the last one also taking a remainder
    /// shorter than half a chunk (784 positions: 256, 256 and 272, not a
    /// fourth chunk of 16 that leaves one thread of two with half the work
    /// of the other); groups of [`GROUP_BLOCKS`] blocks, halved while there
    /// are fewer than two tasks per thread of the current pool (a squeeze
    /// layer's 32-48 output channels make one group: 256 -> 48 at 13x13
    /// was one task, run by one thread of two).
    fn new(positions: usize, blocks: usize) -> Self {
        let chunks = ((positions + CHUNK / 2) / CHUNK).max(1);
        let threads = rayon::current_num_threads();
        let wanted = if threads > 1 { 2 * threads } else { 1 };
        let mut group = GROUP_BLOCKS;
        while group > 1 && chunks * blocks.div_ceil(group) < wanted {
            group = group.div_ceil(2);
        }
        Self {
            positions,
            blocks,
            chunks,
            group,
        }
    }

    fn groups(&self) -> usize {
        self.blocks.div_ceil(self.group).max(1)
    }

    /// How many tasks cover the work.
    fn count(&self) -> usize {
        self.chunks * self.groups()
    }

    /// Task `t` of [`Split::count`].
    fn nth(&self, t: usize) -> Task {
        let groups = self.groups();
        let (ci, gi) = (t / groups, t % groups);
        let q0 = ci * CHUNK;
        Task {
            q0,
            len: if ci + 1 == self.chunks {
                self.positions - q0
            } else {
                CHUNK
            },
            blocks: gi * self.group..((gi + 1) * self.group).min(self.blocks),
        }
    }
}

impl Task {
    /// `tile(block, height, p, width)` for each micro-tile of the task:
    /// every block of its group (`height` of its rows below `m`), then
    /// every `NR` positions from `q0 + p` (`width` of them in the chunk).
    fn tiles(&self, m: usize, mut tile: impl FnMut(usize, usize, usize, usize)) {
        for blk in self.blocks.clone() {
            let height = MR.min(m - blk * MR);
            for p in (0..self.len).step_by(NR) {
                tile(blk, height, p, NR.min(self.len - p));
            }
        }
    }
}

/// Whether [`pointwise_f32`] suits a 1x1 convolution of `depth` input
/// channels with `n` positions.
pub(crate) fn prefers_pointwise(depth: usize, n: usize) -> bool {
    available() && n >= POINTWISE_MIN && depth <= POINTWISE_MAX_DEPTH
}

/// Most input channels for [`pointwise_f32`]: it reads each input plane in
/// place, and past this many planes its loads miss the first-level cache
/// (512 -> 512 channels at 14x14: 1.08 ms with the `gemm` crate, 1.28
/// here; 32 -> 64 at 112x112: 0.76 there, 0.60 here).
const POINTWISE_MAX_DEPTH: usize = 256;

/// Fewest positions for [`pointwise_f32`] (narrower maps take the packed
/// product or the `gemm` crate), and for packing any direct kernel's
/// weights at creation.
pub(crate) const POINTWISE_MIN: usize = 128;

/// A 1x1 convolution at stride 1 without padding, `y = w x` (`x`: `c`
/// planes of `n` positions, read in place; `y`: `m` planes, overwritten or
/// added to when `accumulate`), then `finish(channel, values)` on each
/// plane's parts; `Ok(false)` (nothing done) where the CPU has no kernel.
/// With an `epilogue` and without `accumulate`, its bias and activation
/// are applied to the tiles in registers instead of `finish`.
pub(crate) fn pointwise_f32(
    x: &[f32],
    w: &DirectWeights,
    y: &mut [f32],
    n: usize,
    accumulate: bool,
    finish: Option<&PlaneFinish<'_>>,
    epilogue: Option<TileEpilogue<'_>>,
) -> Result<bool> {
    use rayon::prelude::*;
    let [m, c] = w.shape();
    // Without a sum to add to, the epilogue replaces `finish`.
    let epi = epilogue.filter(|_| !accumulate);
    if !available() || n == 0 || x.len() < c * n || y.len() < m * n {
        return Ok(false);
    }
    let mut offsets = oxrt_core::arena::buffer::<u64>(c);
    offsets.extend((0..c).map(|ic| (ic * n) as u64));
    let blocks = m.div_ceil(MR);
    let dst = SharedDst::new(&mut y[..m * n]);
    let offsets_ref = &offsets[..];
    let split = Split::new(n, blocks);
    (0..split.count())
        .into_par_iter()
        .try_for_each(|t| -> Result<()> {
            let task = split.nth(t);
            let (q0, len, blks) = (task.q0, task.len, task.blocks.clone());
            task.tiles(m, |blk, height, p, width| {
                let tile_epi = epi.map(|e| TileEpilogue {
                    bias: e.bias.map(|b| &b[blk * MR..][..height]),
                    ..e
                });
                // SAFETY: `available` checked AVX-512F; the block holds c
                // groups of MR weights; loads read x[ic * n + q0 + p ..
                // + width] (masked to width), inside `x`; rows blk * MR + r
                // < m of `y` get positions q0 + p .. + width, this task's
                // only (tasks split positions and channels).
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    let (src, at) = (x.as_ptr().add(q0 + p), dst.at(blk * MR * n + q0 + p));
                    let wb = w.block(blk);
                    avx512::tile_rows(
                        height,
                        wb,
                        src,
                        offsets_ref,
                        at,
                        n,
                        width,
                        accumulate,
                        tile_epi,
                        // The group's first block prefetches the next
                        // tile's input, which the other blocks then find in
                        // cache (128 -> 16 channels at 55x55, one thread:
                        // 143 -> 119 us).
                        if blk == blks.start { NR } else { 0 },
                    );
                }
            });
            if let (Some(f), None) = (finish, epi) {
                for oc in blks.start * MR..(blks.end * MR).min(m) {
                    // SAFETY: this task's positions of plane oc (see above),
                    // inside `y`; no other reference to them lives meanwhile.
                    let out = unsafe { std::slice::from_raw_parts_mut(dst.at(oc * n + q0), len) };
                    f(oc, out)?;
                }
            }
            Ok(())
        })?;
    oxrt_core::arena::recycle(offsets);
    Ok(true)
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Clamp, TileEpilogue, TilePlanes, MR};

    /// `$f::<R, V, MASKED>(args.., width)` for a tile of `$r` rows and
    /// `$width` (1..=64) positions: all four vectors unmasked where
    /// `$whole` allows it, otherwise only the vectors needed, masked.
    macro_rules! by_width {
        ($r:literal, $width:expr, $whole:expr, $f:ident($($arg:expr),*)) => {
            match ($width, $whole) {
                (64.., true) => $f::<$r, 4, false>($($arg,)* 64),
                (49.., _) => $f::<$r, 4, true>($($arg,)* $width),
                (33.., _) => $f::<$r, 3, true>($($arg,)* $width),
                (17.., _) => $f::<$r, 2, true>($($arg,)* $width),
                _ => $f::<$r, 1, true>($($arg,)* $width),
            }
        };
    }

    /// [`by_width`] for a tile of `$height` (1..=MR) rows.
    macro_rules! by_shape {
        ($height:expr, $width:expr, $whole:expr, $f:ident($($arg:expr),*)) => {
            match $height {
                6.. => by_width!(6, $width, $whole, $f($($arg),*)),
                5 => by_width!(5, $width, $whole, $f($($arg),*)),
                4 => by_width!(4, $width, $whole, $f($($arg),*)),
                3 => by_width!(3, $width, $whole, $f($($arg),*)),
                2 => by_width!(2, $width, $whole, $f($($arg),*)),
                _ => by_width!(1, $width, $whole, $f($($arg),*)),
            }
        };
    }

    /// The first `height` (1..=MR) rows of one tile (see [`tile`]), its
    /// first `width` (1..=64) positions, added to `dst` when `accumulate`,
    /// or with `epi` (its bias from the tile's first row on, and its
    /// activation) applied before they are stored; with `ahead` > 0, the
    /// 64 values `ahead` past each row's loads are prefetched (see
    /// [`sums`]).
    ///
    /// # Safety
    /// As for [`tile`].
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tile_rows(
        height: usize,
        w: &[f32],
        src: *const f32,
        offsets: &[u64],
        dst: *mut f32,
        stride: usize,
        width: usize,
        accumulate: bool,
        epi: Option<TileEpilogue<'_>>,
        ahead: usize,
    ) {
        // A narrow tile (the last of a plane) takes only the vectors it
        // needs; a whole one unmasked unless it accumulates.
        // SAFETY: the caller's guarantee, passed on.
        unsafe {
            by_shape!(
                height,
                width,
                !accumulate,
                tile(w, src, offsets, dst, stride, accumulate, epi, ahead)
            )
        }
    }

    /// `act(v + bias)` for the clamp-like activations.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn finish(v: __m512, bias: f32, clamp: Clamp) -> __m512 {
        clamp.biased_avx512(v, _mm512_set1_ps(bias))
    }

    /// Lane masks of the `V` vectors of a tile `width` positions wide.
    #[inline(always)]
    fn masks<const V: usize>(width: usize) -> [__mmask16; V] {
        std::array::from_fn(|q| crate::kernel::first_lanes(width.saturating_sub(q * 16)))
    }

    /// `sum over i of w[i * MR + r] * src[offsets[i] + j]` for rows `r < R`
    /// and the positions `j` of `V` vectors (masked lanes read nothing
    /// when `MASKED`). With `ahead` > 0, also prefetches the 64 values at
    /// `src + offsets[i] + ahead` for the next tile: its input rows lie in
    /// as many planes as there are channels, more streams than the
    /// hardware prefetchers follow.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; `w` must hold `offsets.len()` groups of
    /// `MR` values; `src + offsets[i]` must be readable for the lanes of
    /// `masks` (all `16 * V` without `MASKED`) for every `i`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn sums<const R: usize, const V: usize, const MASKED: bool>(
        w: &[f32],
        src: *const f32,
        offsets: &[u64],
        masks: &[__mmask16; V],
        ahead: usize,
    ) -> [[__m512; V]; R] {
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        for (i, &off) in offsets.iter().enumerate() {
            let at = src.wrapping_add(off as usize);
            if ahead != 0 {
                for q in 0..4 {
                    // A hint only: it reads nothing, so any address will do.
                    _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(ahead + 16 * q).cast());
                }
            }
            // SAFETY: the caller's guarantee for this row of loads (masked
            // lanes are not read).
            let b: [__m512; V] = std::array::from_fn(|q| unsafe {
                let at = at.wrapping_add(16 * q);
                if MASKED {
                    _mm512_maskz_loadu_ps(masks[q], at)
                } else {
                    _mm512_loadu_ps(at)
                }
            });
            let ws = &w[i * MR..][..MR];
            for (r, acc) in acc.iter_mut().enumerate() {
                let a = _mm512_set1_ps(ws[r]);
                for (v, &bv) in acc.iter_mut().zip(&b) {
                    *v = _mm512_fmadd_ps(a, bv, *v);
                }
            }
        }
        acc
    }

    /// `dst[r * stride + j] (+)= sum over i of w[i * MR + r] * src[offsets[i] + j]`
    /// for rows `r < R` and positions `j < width` (at most `16 * V`: `V`
    /// vectors; `MASKED` when fewer or accumulating, so that only those
    /// are read and written).
    ///
    /// # Safety
    /// The CPU must have AVX-512F; `w` must hold `offsets.len()` groups of
    /// `MR` values; `src + offsets[i] .. + width` must be readable for every
    /// `i`, and `dst + r * stride .. + width` writable for every `r < R`
    /// (without `MASKED`, `width` is 64).
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const R: usize, const V: usize, const MASKED: bool>(
        w: &[f32],
        src: *const f32,
        offsets: &[u64],
        dst: *mut f32,
        stride: usize,
        accumulate: bool,
        epi: Option<TileEpilogue<'_>>,
        ahead: usize,
        width: usize,
    ) {
        let masks = masks::<V>(width);
        // SAFETY: the caller's guarantee, passed on.
        let acc = unsafe { sums::<R, V, MASKED>(w, src, offsets, &masks, ahead) };
        for (r, acc) in acc.iter().enumerate() {
            for (q, &v) in acc.iter().enumerate() {
                let v = match epi {
                    Some(e) => finish(v, e.bias.map_or(0.0, |b| b[r]), e.clamp),
                    None => v,
                };
                // SAFETY: row r's `width` values at `dst` are writable
                // (and readable); masked lanes are not touched.
                unsafe {
                    let at = dst.wrapping_add(r * stride + q * 16);
                    if MASKED {
                        let v = if accumulate {
                            _mm512_add_ps(v, _mm512_maskz_loadu_ps(masks[q], at))
                        } else {
                            v
                        };
                        _mm512_mask_storeu_ps(at, masks[q], v);
                    } else {
                        _mm512_storeu_ps(at, v);
                    }
                }
            }
        }
    }

    /// The pieces of the vector of positions `start..start + n` (n <= 16)
    /// that are outputs, at most two as rows of the phase width are at
    /// least 16 long ([`TilePlanes::fits`]): per piece, the lanes (a mask)
    /// and the offset in the output plane that lane 0 would have, so that
    /// one masked store at `plane + offset` writes the piece.
    #[inline(always)]
    fn pieces(at: &TilePlanes, start: usize, n: usize) -> [(__mmask16, isize); 2] {
        let mut out = [(0, 0isize); 2];
        let mut lane = 0;
        for piece in &mut out {
            if lane >= n {
                break;
            }
            let pos = start + lane;
            let (oy, ox) = (pos / at.cols2, pos % at.cols2);
            if oy >= at.oh {
                break;
            }
            let run = (at.cols2 - ox).min(n - lane);
            let valid = at.ow.saturating_sub(ox).min(run);
            if valid > 0 {
                let mask = (((1u32 << valid) - 1) << lane) as __mmask16;
                *piece = (mask, (oy * at.ow + ox) as isize - lane as isize);
            }
            lane += run;
        }
        out
    }

    /// The first `height` (1..=MR) rows of one tile of `width` (1..=64)
    /// positions from `start` on the phase width, output channels `ch0..`,
    /// plus `epi`'s bias (from the tile's first row on) and through its
    /// activation, stored into their output planes.
    ///
    /// # Safety
    /// As for [`tile_rows`] for the loads; the outputs of channels
    /// `ch0..ch0 + height` at those positions must lie in `at.y`'s buffer
    /// and be this thread's alone.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tile_planes(
        height: usize,
        w: &[f32],
        src: *const f32,
        offsets: &[u64],
        at: &TilePlanes,
        ch0: usize,
        start: usize,
        width: usize,
        epi: TileEpilogue<'_>,
    ) {
        // SAFETY: the caller's guarantee, passed on.
        unsafe {
            by_shape!(
                height,
                width,
                true,
                planes(w, src, offsets, at, ch0, start, epi)
            )
        }
    }

    /// [`tile_planes`] for `R` rows and `V` vectors.
    ///
    /// # Safety
    /// As for [`tile_planes`].
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    unsafe fn planes<const R: usize, const V: usize, const MASKED: bool>(
        w: &[f32],
        src: *const f32,
        offsets: &[u64],
        at: &TilePlanes,
        ch0: usize,
        start: usize,
        epi: TileEpilogue<'_>,
        width: usize,
    ) {
        let masks = masks::<V>(width);
        let pieces: [_; V] = std::array::from_fn(|q| {
            pieces(at, start + 16 * q, width.saturating_sub(16 * q).min(16))
        });
        // SAFETY: the caller's guarantee, passed on.
        let acc = unsafe { sums::<R, V, MASKED>(w, src, offsets, &masks, 0) };
        for (r, acc) in acc.iter().enumerate() {
            let b = epi.bias.map_or(0.0, |b| b[r]);
            let plane = at.y.at((ch0 + r) * at.out_len);
            for (&v, pieces) in acc.iter().zip(&pieces) {
                let v = finish(v, b, epi.clamp);
                for &(mask, offset) in pieces.iter().filter(|p| p.0 != 0) {
                    // SAFETY: the masked lanes address outputs (row < oh,
                    // column < ow) of this channel's plane, this thread's
                    // (the caller's guarantee); the others are not touched.
                    unsafe { _mm512_mask_storeu_ps(plane.wrapping_offset(offset), mask, v) };
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
    fn splits_cover_every_tile_once_with_enough_tasks_for_the_threads() {
        // (positions, blocks, threads, tasks wanted, longest chunk)
        for (positions, blocks, threads, tasks, longest) in [
            (784, 43, 2, 18, 272),
            (169, 8, 2, 4, 169),
            (729, 6, 2, 6, 256),
            (169, 8, 1, 1, 169),
            (100, 1, 2, 1, 100),
            (1029, 9, 1, 8, 261),
        ] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let split = pool.install(|| Split::new(positions, blocks));
            assert_eq!(split.count(), tasks, "{positions} x {blocks} on {threads}");
            let mut seen = vec![0u8; positions * blocks];
            let mut max_len = 0;
            for t in 0..split.count() {
                let task = split.nth(t);
                max_len = max_len.max(task.len);
                for b in task.blocks.clone() {
                    for q in task.q0..task.q0 + task.len {
                        seen[b * positions + q] += 1;
                    }
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "{positions} x {blocks}");
            assert_eq!(max_len, longest);
            assert!(max_len <= MAX_CHUNK);
        }
    }

    #[test]
    fn pointwise_matches_the_product_at_position_and_channel_tails() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512F (the direct kernel does not run)");
            return;
        }
        // Positions: under one vector, tails of a tile, several chunks;
        // channel counts with partial blocks and several task groups.
        for (c, m, n) in [(3, 5, 7), (16, 13, 130), (5, 64, 300), (32, 50, 1029)] {
            let x = crate::test_values(c * n, 5);
            let w = crate::test_values(m * c, 9);
            let packed = DirectWeights::new(&w, m, c).unwrap();
            let want: Vec<f64> = (0..m * n)
                .map(|i| {
                    let (oc, p) = (i / n, i % n);
                    (0..c)
                        .map(|ic| f64::from(w[oc * c + ic]) * f64::from(x[ic * n + p]))
                        .sum()
                })
                .collect();
            for threads in [1, 2] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let mut y = vec![f32::NAN; m * n];
                assert!(pool
                    .install(|| pointwise_f32(&x, &packed, &mut y, n, false, None, None))
                    .unwrap());
                let seen = std::sync::Mutex::new(vec![0; m]);
                let finish = |ch: usize, v: &mut [f32]| -> Result<()> {
                    v.iter_mut().for_each(|e| *e *= 2.0);
                    seen.lock().unwrap()[ch] += v.len();
                    Ok(())
                };
                let mut y2 = vec![1.0f32; m * n];
                assert!(pool
                    .install(|| pointwise_f32(&x, &packed, &mut y2, n, true, Some(&finish), None))
                    .unwrap());
                assert_eq!(
                    seen.into_inner().unwrap(),
                    vec![n; m],
                    "each output finished once"
                );
                // With a bias and Clip applied by the tiles: no finish.
                let bias: Vec<f32> = (0..m).map(|i| 0.1 * i as f32 - 0.3).collect();
                let epi = TileEpilogue {
                    bias: Some(&bias),
                    clamp: Clamp::Clip { lo: -0.2, hi: 0.4 },
                };
                let never = |_: usize, _: &mut [f32]| -> Result<()> {
                    panic!("finish called with a tile epilogue")
                };
                let mut y3 = vec![f32::NAN; m * n];
                assert!(pool
                    .install(|| pointwise_f32(
                        &x,
                        &packed,
                        &mut y3,
                        n,
                        false,
                        Some(&never),
                        Some(epi)
                    ))
                    .unwrap());
                for (i, (a, want)) in y3.iter().zip(&want).enumerate() {
                    let want = (want + f64::from(bias[i / n])).clamp(-0.2, 0.4);
                    assert!(
                        (f64::from(*a) - want).abs() < 1e-4,
                        "epilogue {c}x{m}x{n} at {i}: {a} vs {want}"
                    );
                }
                for (i, ((a, b), want)) in y.iter().zip(&y2).zip(&want).enumerate() {
                    assert!(
                        (f64::from(*a) - want).abs() < 1e-4,
                        "{c}x{m}x{n} at {i}: {a} vs {want}"
                    );
                    let want2 = 2.0 * (want + 1.0);
                    assert!(
                        (f64::from(*b) - want2).abs() < 1e-3,
                        "accumulated at {i}: {b} vs {want2}"
                    );
                }
            }
        }
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
        // tile; stride 2 (phase planes), dilation, asymmetric pads; 586
        // positions on the phase width: a last chunk of 330 (the remainder
        // of 74 merged into it).
        let cases: [Case; 8] = [
            (&[3, 3], &[1, 1], &[1, 1, 1, 1], &[1, 1], [14, 40], 4, 13),
            (&[3, 3], &[1, 1], &[1, 1, 1, 1], &[1, 1], [9, 11], 3, 13),
            (&[3, 3], &[1, 1], &[1, 1, 1, 1], &[1, 1], [20, 70], 5, 6),
            (&[3, 3], &[2, 2], &[1, 1, 1, 1], &[1, 1], [15, 29], 4, 8),
            (&[7, 7], &[2, 2], &[3, 3, 3, 3], &[1, 1], [23, 30], 3, 7),
            (&[3, 3], &[1, 1], &[2, 2, 2, 2], &[2, 2], [12, 17], 2, 9),
            (&[2, 3], &[1, 2], &[0, 1, 1, 0], &[1, 1], [10, 21], 6, 10),
            (&[3, 3], &[1, 1], &[0, 0, 0, 0], &[1, 1], [6, 6], 16, 11),
        ];
        for (kernel, strides, pads, dilations, [h, wd], c, m) in cases {
            let g = crate::test_window2d(kernel, strides, pads, dilations, [h, wd]);
            let k = c * kernel[0] * kernel[1];
            let x = crate::test_values(c * h * wd, 3);
            let w = crate::test_values(m * k, 7);
            let want = crate::conv2d_reference(&x, &w, [c, m, 1], [h, wd], &g);
            let w = DirectWeights::new(&w, m, k).unwrap();
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
                    .install(|| direct_f32(&x, &w, &mut y, &g, [h, wd], c, false, None, None))
                    .unwrap());
                let mut y1 = vec![1.0f32; m * out_len];
                let seen = std::sync::Mutex::new(Vec::new());
                let finish = |ch: usize, v: &mut [f32]| -> Result<()> {
                    v.iter_mut().for_each(|e| *e += 100.0 * ch as f32);
                    seen.lock().unwrap().push((ch, v.len()));
                    Ok(())
                };
                assert!(pool
                    .install(|| direct_f32(
                        &x,
                        &w,
                        &mut y1,
                        &g,
                        [h, wd],
                        c,
                        true,
                        Some(&finish),
                        None
                    ))
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
                    .install(|| direct_f32(
                        &x,
                        &w,
                        &mut y2,
                        &g,
                        [h, wd],
                        c,
                        false,
                        Some(&plus),
                        None
                    ))
                    .unwrap());
                for (i, (a, want)) in y2.iter().zip(&want).enumerate() {
                    let want = want + 100.0 * (i / out_len) as f64;
                    assert!(
                        (f64::from(*a) - want).abs() < 1e-3,
                        "finished at {i}: {a} vs {want}"
                    );
                }
                // Stored by the tiles with a bias and an activation (no
                // finish call where rows are 16 wide or more; narrower,
                // the finish applies them), from NaN: each output once.
                let bias: Vec<f32> = (0..m).map(|i| 0.25 - 0.1 * i as f32).collect();
                let fused = TilePlanes::fits(Plane::new(&g, [h, wd]).unwrap().cols2);
                for (b, clamp) in [
                    (Some(&bias[..]), Clamp::Relu),
                    (None, Clamp::Clip { lo: -0.1, hi: 0.2 }),
                    (Some(&bias[..]), Clamp::Identity),
                ] {
                    let act = |v: f32| match clamp {
                        Clamp::Identity => v,
                        Clamp::Relu => v.max(0.0),
                        Clamp::Clip { lo, hi } => v.clamp(lo, hi),
                    };
                    let calls = std::sync::atomic::AtomicUsize::new(0);
                    let finish = |ch: usize, v: &mut [f32]| -> Result<()> {
                        calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let bc = b.map_or(0.0, |b| b[ch]);
                        v.iter_mut().for_each(|e| *e = act(*e + bc));
                        Ok(())
                    };
                    let mut y3 = vec![f32::NAN; m * out_len];
                    let epi = TileEpilogue { bias: b, clamp };
                    assert!(pool
                        .install(|| direct_f32(
                            &x,
                            &w,
                            &mut y3,
                            &g,
                            [h, wd],
                            c,
                            false,
                            Some(&finish),
                            Some(epi)
                        ))
                        .unwrap());
                    let calls = calls.into_inner();
                    assert_eq!(
                        calls == 0,
                        fused,
                        "{kernel:?} {:?}: {calls} finish calls",
                        [h, wd]
                    );
                    for (i, (a, want)) in y3.iter().zip(&want).enumerate() {
                        let v = want + b.map_or(0.0, |b| f64::from(b[i / out_len]));
                        let want = match clamp {
                            Clamp::Identity => v,
                            Clamp::Relu => v.max(0.0),
                            Clamp::Clip { lo, hi } => v.clamp(f64::from(lo), f64::from(hi)),
                        };
                        assert!(
                            (f64::from(*a) - want).abs() < 1e-4,
                            "{kernel:?} {strides:?} {clamp:?} at {i}: {a} vs {want}"
                        );
                    }
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

//! An f32 matrix product for a fixed left operand (a layer's weights) and
//! a narrow right one: A is packed once, at kernel creation, into panels
//! of [`MR`] rows laid out k-major; B is packed per call, a [`KC`] x
//! [`NC`] block at a time, into panels of [`NR`] columns; an AVX-512
//! micro-kernel keeps an `MR x NR` tile of C in registers (two 16-lane
//! vectors of rows per column, 24 accumulators) while it walks k, and
//! writes it back transposed into row-major C ([`gemm_packed`]: a
//! convolution's weights times its im2col matrix) or as whole vectors
//! into C transposed ([`gemm_packed_t`]: a MatMul by constant weights).
//!
//! Vectors run along the rows of C (output channels), not along its
//! columns (output positions) as in the `gemm` crate: a 7x7 map has 49
//! positions, 77% of four 16-lane vectors, while channel counts are
//! multiples of 32 and a tail of columns costs only its own broadcasts.

use std::cell::RefCell;

use oxrt_core::{Error, Result};

use crate::gemm::{MatRef, RowPost, SharedDst};

/// Rows of A per panel (and of C per micro-tile): two 16-lane vectors.
pub const MR: usize = 32;
/// Columns of B per panel (and of C per micro-tile), each broadcast.
const NR: usize = 12;
/// Depth of one packed block of B; the A panels' part of that depth
/// (`MR x KC`) and the block stay in L2.
const KC: usize = 768;
/// Columns of B packed at once (eight panels).
const NC: usize = 96;

/// Multiply-adds below which the product runs on one thread.
const PARALLEL_MIN_MACS: usize = 1 << 21;

/// A row-major `rows x cols` f32 matrix packed for [`gemm_packed`].
pub struct PackedA {
    rows: usize,
    cols: usize,
    /// Blocks of `KC` columns, one after another; within a block, panel `p`
    /// holds rows `p * MR..` as one group of `MR` values per column
    /// (zero past the last row). A product walks a block's panels in
    /// order, so its reads of A run through memory sequentially.
    data: Vec<f32>,
}

impl PackedA {
    /// Packs `a`, or `None` where this CPU has no micro-kernel for it (the
    /// caller keeps the unpacked product).
    pub fn new(a: MatRef<'_, f32>) -> Option<Self> {
        if !available() || !a.fits() {
            return None;
        }
        let (rows, cols) = (a.rows, a.cols);
        let mut packed = Self {
            rows,
            cols,
            data: vec![0.0f32; rows.div_ceil(MR) * MR * cols],
        };
        for pc in (0..cols).step_by(KC) {
            let kc = KC.min(cols - pc);
            for p in 0..rows.div_ceil(MR) {
                let at = packed.panel(p * MR, pc, kc);
                let panel = &mut packed.data[at..][..kc * MR];
                for r in 0..MR.min(rows - p * MR) {
                    let row = (p * MR + r) * a.row_stride;
                    for (k, v) in panel.iter_mut().skip(r).step_by(MR).enumerate() {
                        *v = a.data[row + (pc + k) * a.col_stride];
                    }
                }
            }
        }
        Some(packed)
    }

    /// A row-major `k x n` matrix `w` packed as its `n x k` transpose, for
    /// [`gemm_packed_t`] (`X * W`).
    pub fn transposed(w: &[f32], k: usize, n: usize) -> Option<Self> {
        Self::new(MatRef::row_major(w, k, n, true))
    }

    /// Where the panel of rows `row..row + MR`, columns `pc..pc + kc`
    /// (`pc` a multiple of `KC`, `kc` that block's width) starts.
    fn panel(&self, row: usize, pc: usize, kc: usize) -> usize {
        pc * self.rows.div_ceil(MR) * MR + (row / MR) * kc * MR
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }
}

/// Whether the packed product beats the `gemm` crate for an `m x k` by
/// `k x n` product: C narrow enough that 16-lane vectors along its rows
/// waste lanes (49 positions of a 7x7 map fill 77% of four), its height
/// whole panels, and this CPU able to run it.
pub fn prefers(m: usize, k: usize, n: usize) -> bool {
    let lanes = n.div_ceil(16) * 16;
    n <= 256 && k >= 64 && m.is_multiple_of(MR) && (n as f64) < 0.85 * lanes as f64 && available()
}

/// Whether this CPU runs the packed product.
pub fn available() -> bool {
    crate::kernel::has_avx512f()
}

/// `c = a * b (+ c when accumulate)` with `c` row-major `a.rows x b.cols`,
/// then `post` on each row part by the thread that computed it; split
/// over the current rayon pool's threads when large enough.
pub fn gemm_packed(
    a: &PackedA,
    b: MatRef<'_, f32>,
    c: &mut [f32],
    accumulate: bool,
    post: Option<&RowPost<'_, f32>>,
) -> Result<()> {
    product(a, b, c, accumulate, post, false)
}

/// [`gemm_packed`], or [`gemm_packed_t`] when `transposed`.
fn product(
    a: &PackedA,
    b: MatRef<'_, f32>,
    c: &mut [f32],
    accumulate: bool,
    post: Option<&RowPost<'_, f32>>,
    transposed: bool,
) -> Result<()> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if b.rows != k {
        return Err(Error::invalid(format!(
            "matrix product of {m}x{k} and {}x{n}: inner dimensions differ",
            b.rows
        )));
    }
    if !b.fits() || c.len() != m * n || a.data.len() < m.div_ceil(MR) * MR * k {
        return Err(Error::invalid(
            "matrix buffers are smaller than their shapes",
        ));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    let threads = rayon::current_num_threads();
    let parts = if threads > 1 && m * n * k >= PARALLEL_MIN_MACS {
        threads
    } else {
        1
    };
    let dst = SharedDst::new(c);
    // Split rows in whole panels when there are enough of them (each
    // part then packs all of B, which is narrow), otherwise columns.
    let col_panels = n.div_ceil(NR);
    let row_panels = m.div_ceil(MR);
    let by_columns = row_panels < 2 * parts && col_panels > row_panels;
    let run = |i: usize| -> Result<()> {
        let (rows, cols) = if by_columns {
            (0..m, split(col_panels, parts, i, NR, n))
        } else {
            (split(row_panels, parts, i, MR, m), 0..n)
        };
        if rows.is_empty() || cols.is_empty() {
            return Ok(());
        }
        // SAFETY: parts cover disjoint row or column ranges of the
        // row-major m x n buffer behind `dst` (checked to hold m * n
        // values), which stays exclusively borrowed until all finish.
        unsafe { product_part(a, b, &dst, rows, cols, accumulate, post, transposed) }
    };
    if parts == 1 {
        run(0)
    } else {
        use rayon::prelude::*;
        (0..parts).into_par_iter().try_for_each(run)
    }
}

/// `c = (a * b)ᵀ (+ c when accumulate)`: `c` row-major `b.cols x a.rows`.
/// With `a` a layer's weights `W` packed transposed ([`PackedA::transposed`])
/// and `b` the activations `X` read transposed, this is `X * W` (a MatMul
/// by constant weights), each tile stored with whole vectors.
pub fn gemm_packed_t(
    a: &PackedA,
    b: MatRef<'_, f32>,
    c: &mut [f32],
    accumulate: bool,
) -> Result<()> {
    product(a, b, c, accumulate, None, true)
}

/// Part `i` of `parts` of `units` panels of `width` (the last clipped to
/// `len`), as an element range.
fn split(units: usize, parts: usize, i: usize, width: usize, len: usize) -> std::ops::Range<usize> {
    let per = units.div_ceil(parts);
    let start = (i * per * width).min(len);
    let end = ((i + 1) * per * width).min(len);
    start..end
}

thread_local! {
    /// Each thread's packed block of B, reused from call to call.
    static PACK: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Rows `rows` x columns `cols` of the product into the buffer at `dst`
/// (row-major, `b.cols` wide; or transposed, `a.rows` wide), then `post`
/// on each row's part (row-major only).
///
/// # Safety
/// Those elements must lie inside the buffer and no other thread may touch
/// them meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn product_part(
    a: &PackedA,
    b: MatRef<'_, f32>,
    dst: &SharedDst<f32>,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    accumulate: bool,
    post: Option<&RowPost<'_, f32>>,
    transposed: bool,
) -> Result<()> {
    let (k, n, m) = (a.cols, b.cols, a.rows);
    // Taken out for the call (a nested call on this thread, from a work-
    // stealing wait, finds it empty and makes its own), then put back.
    let mut pack = PACK.with(|p| std::mem::take(&mut *p.borrow_mut()));
    let result = (|| -> Result<()> {
        // 64 spare values so that the panels can start on a cache line.
        let need = KC * NC.min(cols.len().div_ceil(NR) * NR) + 16;
        if pack.len() < need {
            pack.resize(need, 0.0);
        }
        let offset = pack.as_ptr().align_offset(64).min(15);
        let panels = &mut pack[offset..];
        for jc in cols.clone().step_by(NC) {
            let nc = NC.min(cols.end - jc);
            for pc in (0..k).step_by(KC) {
                let kc = KC.min(k - pc);
                pack_b(b, pc, kc, jc, nc, panels);
                let load = accumulate || pc > 0;
                for ir in rows.clone().step_by(MR) {
                    let ap = &a.data[a.panel(ir, pc, kc)..][..kc * MR];
                    let height = MR.min(rows.end - ir);
                    for (jr, panel) in panels.chunks(kc * NR).take(nc.div_ceil(NR)).enumerate() {
                        let j = jc + jr * NR;
                        let width = NR.min(jc + nc - j);
                        // SAFETY: `ap` holds kc groups of MR values and
                        // `panel` kc groups of NR; rows ir..ir+height and
                        // columns j..j+width of the buffer are this part's
                        // (the caller's guarantee).
                        unsafe {
                            if transposed {
                                micro_t(kc, ap, panel, dst.at(j * m + ir), m, height, width, load)
                            } else {
                                micro(kc, ap, panel, dst.at(ir * n + j), n, height, width, load)
                            }
                        };
                    }
                }
            }
            if let (Some(post), false) = (post, transposed) {
                for r in rows.clone() {
                    // SAFETY: row r's columns jc..jc+nc are this part's and
                    // this slice is the only reference to them while it lives.
                    let row = unsafe { std::slice::from_raw_parts_mut(dst.at(r * n + jc), nc) };
                    post(r, row)?;
                }
            }
        }
        Ok(())
    })();
    PACK.with(|p| *p.borrow_mut() = pack);
    result
}

/// Packs rows `pc..pc + kc`, columns `jc..jc + nc` of `b` into `out` as
/// panels of `NR` columns (each `kc` rows of `NR` values, zero past `nc`).
fn pack_b(b: MatRef<'_, f32>, pc: usize, kc: usize, jc: usize, nc: usize, out: &mut [f32]) {
    for (jr, panel) in out.chunks_mut(kc * NR).take(nc.div_ceil(NR)).enumerate() {
        let j0 = jc + jr * NR;
        let width = NR.min(jc + nc - j0);
        for (p, dst) in panel.chunks_exact_mut(NR).enumerate() {
            let row = (pc + p) * b.row_stride + j0 * b.col_stride;
            if b.col_stride == 1 {
                dst[..width].copy_from_slice(&b.data[row..][..width]);
            } else if b.row_stride != 1 {
                for (j, v) in dst[..width].iter_mut().enumerate() {
                    *v = b.data[row + j * b.col_stride];
                }
            }
            dst[width..].fill(0.0);
        }
        if b.col_stride != 1 && b.row_stride == 1 {
            // B read transposed (activations of a MatMul): each column is
            // contiguous in memory, so walk columns outside.
            for j in 0..width {
                let col = &b.data[(j0 + j) * b.col_stride + pc..][..kc];
                for (p, &v) in col.iter().enumerate() {
                    panel[p * NR + j] = v;
                }
            }
        }
    }
}

/// The micro-kernel instance `$($tile)::+::<W>` for a tile `$width` columns
/// wide (at most `NR`).
#[cfg(target_arch = "x86_64")]
macro_rules! by_width {
    ($($tile:ident)::+, $width:expr) => {
        match $width {
            12.. => $($tile)::+::<12>,
            11 => $($tile)::+::<11>,
            10 => $($tile)::+::<10>,
            9 => $($tile)::+::<9>,
            8 => $($tile)::+::<8>,
            7 => $($tile)::+::<7>,
            6 => $($tile)::+::<6>,
            5 => $($tile)::+::<5>,
            4 => $($tile)::+::<4>,
            3 => $($tile)::+::<3>,
            2 => $($tile)::+::<2>,
            _ => $($tile)::+::<1>,
        }
    };
}

/// One `height x width` tile of C (at most `MR x NR`) from `kc` steps of
/// a packed A panel and a packed B panel, added to C when `load`.
///
/// # Safety
/// `a` and `b` must hold `kc * MR` and `kc * NR` values; rows `0..height`
/// and columns `0..width` (`width <= NR`) from `c` (rows `ldc` apart) must
/// be valid for reads and writes by this thread alone.
#[allow(clippy::too_many_arguments)]
unsafe fn micro(
    kc: usize,
    a: &[f32],
    b: &[f32],
    c: *mut f32,
    ldc: usize,
    height: usize,
    width: usize,
    load: bool,
) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `available()` (checked before any PackedA exists) found
    // AVX-512F; the caller's guarantee covers the memory.
    unsafe {
        let f = by_width!(avx512::tile, width);
        f(kc, a, b, c, ldc, height, load)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (kc, a, b, c, ldc, height, width, load);
        unreachable!("PackedA is only built where a micro-kernel exists")
    }
}

/// [`micro`] into the transposed tile: element (r, j) at `c + j * ldc + r`.
///
/// # Safety
/// As [`micro`], with rows and columns of C exchanged.
#[allow(clippy::too_many_arguments)]
unsafe fn micro_t(
    kc: usize,
    a: &[f32],
    b: &[f32],
    c: *mut f32,
    ldc: usize,
    height: usize,
    width: usize,
    load: bool,
) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: as in `micro`.
    unsafe {
        let f = by_width!(avx512::tile_t, width);
        f(kc, a, b, c, ldc, height, load)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (kc, a, b, c, ldc, height, width, load);
        unreachable!("PackedA is only built where a micro-kernel exists")
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{MR, NR};

    /// The micro-kernel for `W` columns of the tile.
    ///
    /// # Safety
    /// AVX-512F must be available; otherwise as [`super::micro`] with
    /// `width = W`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tile<const W: usize>(
        kc: usize,
        a: &[f32],
        b: &[f32],
        c: *mut f32,
        ldc: usize,
        height: usize,
        load: bool,
    ) {
        let acc = accumulate::<W>(kc, a, b);
        // Column-major tile to row-major C.
        let mut t = [[0.0f32; MR]; W];
        for (dst, col) in t.iter_mut().zip(&acc) {
            // SAFETY: dst holds MR = 32 values.
            unsafe {
                _mm512_storeu_ps(dst.as_mut_ptr(), col[0]);
                _mm512_storeu_ps(dst.as_mut_ptr().add(16), col[1]);
            }
        }
        for r in 0..height.min(MR) {
            // SAFETY: columns 0..W of row r < height lie inside C (the
            // caller's guarantee); this is the only reference to them.
            let row = unsafe { std::slice::from_raw_parts_mut(c.add(r * ldc), W) };
            if load {
                row.iter_mut().zip(&t).for_each(|(v, col)| *v += col[r]);
            } else {
                row.iter_mut().zip(&t).for_each(|(v, col)| *v = col[r]);
            }
        }
    }

    /// [`tile`] stored transposed: column j of the tile (32 rows) is
    /// `height` contiguous values at `c + j * ldc`.
    ///
    /// # Safety
    /// As [`tile`], with rows and columns of C exchanged.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tile_t<const W: usize>(
        kc: usize,
        a: &[f32],
        b: &[f32],
        c: *mut f32,
        ldc: usize,
        height: usize,
        load: bool,
    ) {
        let acc = accumulate::<W>(kc, a, b);
        let mask = crate::kernel::first_lanes;
        let (m0, m1) = (mask(height), mask(height.saturating_sub(16)));
        for (j, col) in acc.iter().enumerate() {
            // SAFETY: lanes under the masks are rows < height of column j
            // < W, inside C by the caller's guarantee.
            unsafe {
                let p = c.add(j * ldc);
                for (half, (&v, m)) in col.iter().zip([m0, m1]).enumerate() {
                    if m == 0 {
                        continue;
                    }
                    let q = p.add(half * 16);
                    let v = if load {
                        _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, q))
                    } else {
                        v
                    };
                    _mm512_mask_storeu_ps(q, m, v);
                }
            }
        }
    }

    /// The `MR x W` tile of `kc` steps, as two 16-lane vectors per column.
    #[target_feature(enable = "avx512f")]
    fn accumulate<const W: usize>(kc: usize, a: &[f32], b: &[f32]) -> [[__m512; 2]; W] {
        let mut acc = [[_mm512_setzero_ps(); 2]; W];
        let (a, b) = (&a[..kc * MR], &b[..kc * NR]);
        for (ak, bk) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
            // SAFETY: ak holds MR = 32 values.
            let (a0, a1) = unsafe {
                (
                    _mm512_loadu_ps(ak.as_ptr()),
                    _mm512_loadu_ps(ak.as_ptr().add(16)),
                )
            };
            for (col, &bv) in acc.iter_mut().zip(bk) {
                let bv = _mm512_set1_ps(bv);
                col[0] = _mm512_fmadd_ps(a0, bv, col[0]);
                col[1] = _mm512_fmadd_ps(a1, bv, col[1]);
            }
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k)
                    .map(|p| a[i * k + p] as f64 * b[p * n + j] as f64)
                    .sum();
            }
        }
        c
    }

    #[test]
    fn matches_the_definition_at_edge_shapes_on_one_and_two_threads() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512F, the packed product is not used");
            return;
        }
        let vals = crate::test_values;
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            // Tails of MR, NR, KC and NC; every tile width; products
            // large enough to split over threads by rows and by columns.
            for (m, k, n) in [
                (1, 1, 1),
                (7, 3, 17),
                (32, 768, 12),
                (33, 769, 97),
                (130, 300, 49),
                (64, 1600, 23),
                (512, 600, 49),
                (64, 100, 1100),
            ] {
                let a = vals(m * k, 1);
                let b = vals(k * n, 2);
                let packed = PackedA::new(MatRef::row_major(&a, m, k, false)).unwrap();
                let want = naive(&a, &b, m, k, n);
                for accumulate in [false, true] {
                    let mut c = vals(m * n, 3);
                    let before = c.clone();
                    let seen = std::sync::Mutex::new(vec![0usize; m]);
                    let post = |r: usize, row: &mut [f32]| -> Result<()> {
                        seen.lock().unwrap()[r] += row.len();
                        row.iter_mut().for_each(|v| *v *= 2.0);
                        Ok(())
                    };
                    pool.install(|| {
                        gemm_packed(
                            &packed,
                            MatRef::row_major(&b, k, n, false),
                            &mut c,
                            accumulate,
                            Some(&post),
                        )
                    })
                    .unwrap();
                    assert!(seen.lock().unwrap().iter().all(|&s| s == n));
                    for (i, (&got, &w)) in c.iter().zip(&want).enumerate() {
                        let w = 2.0 * (w + if accumulate { before[i] as f64 } else { 0.0 });
                        assert!(
                            (got as f64 - w).abs() <= 1e-3 * (1.0 + w.abs()),
                            "{m}x{k}x{n} acc {accumulate} threads {threads} at {i}: {got} vs {w}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn transposed_product_is_a_matmul_by_packed_weights() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512F");
            return;
        }
        let vals = crate::test_values;
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            // (tokens, k, features): tails of the 12 tokens per panel, of
            // the 32 features per panel (masked stores), of KC.
            for (t, k, f) in [
                (1, 1, 1),
                (13, 70, 33),
                (128, 800, 96),
                (5, 64, 20),
                (50, 300, 512),
            ] {
                let x = vals(t * k, 1);
                let w = vals(k * f, 2);
                let packed = PackedA::transposed(&w, k, f).unwrap();
                let want = naive(&x, &w, t, k, f);
                for accumulate in [false, true] {
                    let mut c = vals(t * f, 3);
                    let before = c.clone();
                    pool.install(|| {
                        gemm_packed_t(
                            &packed,
                            MatRef::row_major(&x, t, k, true),
                            &mut c,
                            accumulate,
                        )
                    })
                    .unwrap();
                    for (i, (&got, &w)) in c.iter().zip(&want).enumerate() {
                        let w = w + if accumulate { before[i] as f64 } else { 0.0 };
                        assert!(
                            (got as f64 - w).abs() <= 1e-3 * (1.0 + w.abs()),
                            "{t}x{k}x{f} acc {accumulate} threads {threads} at {i}: {got} vs {w}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn preferred_where_column_vectors_would_waste_lanes() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512F");
            assert!(!prefers(512, 4608, 49));
            return;
        }
        // 7x7 maps of whole panels of channels.
        assert!(prefers(512, 4608, 49));
        assert!(prefers(2048, 512, 49));
        // 14x14 and larger fill the crate's vectors; 16 channels are half a
        // panel; tiny depths leave the transposed store dominant.
        assert!(!prefers(256, 2304, 196));
        assert!(!prefers(64, 576, 3136));
        assert!(!prefers(16, 512, 49));
        assert!(!prefers(512, 32, 49));
    }

    #[test]
    fn a_mismatched_operand_is_an_error() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512F");
            return;
        }
        let a = vec![1.0f32; 6];
        let packed = PackedA::new(MatRef::row_major(&a, 2, 3, false)).unwrap();
        let b = vec![1.0f32; 8];
        let mut c = vec![0.0f32; 8];
        let err = gemm_packed(
            &packed,
            MatRef::row_major(&b, 2, 4, false),
            &mut c,
            false,
            None,
        );
        assert!(err.unwrap_err().to_string().contains("inner dimensions"));
        let mut short = vec![0.0f32; 3];
        let b = vec![1.0f32; 12];
        let err = gemm_packed(
            &packed,
            MatRef::row_major(&b, 3, 4, false),
            &mut short,
            false,
            None,
        );
        assert!(err.is_err());
    }
}

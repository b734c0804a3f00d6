//! Matrix multiplication: the `gemm` crate (packed, SIMD, run-time ISA
//! dispatch) for f32/f64, f16/bf16 widened to f32, a plain loop for the
//! integer types.

use std::any::TypeId;

use oxrt_core::{bf16, f16, Error, Result};

use crate::kernel::Arith;

/// Products smaller than this many multiply-adds run on one thread: below
/// it, splitting costs more than it saves.
const PARALLEL_MIN_MACS: usize = 1 << 20;

/// Elements of B from which a product splits over threads however few
/// rows A has: a matrix-vector product (a classifier's 1024 -> 1000 at
/// batch 1) is bound by reading B, which two cores read faster than one.
const PARALLEL_MIN_B: usize = 1 << 18;

/// A strided read-only matrix view.
#[derive(Clone, Copy)]
pub struct MatRef<'a, T> {
    pub data: &'a [T],
    pub rows: usize,
    pub cols: usize,
    /// Distance between consecutive rows.
    pub row_stride: usize,
    /// Distance between consecutive columns.
    pub col_stride: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// A row-major `rows x cols` matrix, optionally read transposed.
    pub fn row_major(data: &'a [T], rows: usize, cols: usize, transposed: bool) -> Self {
        if transposed {
            Self {
                data,
                rows: cols,
                cols: rows,
                row_stride: 1,
                col_stride: cols,
            }
        } else {
            Self {
                data,
                rows,
                cols,
                row_stride: cols,
                col_stride: 1,
            }
        }
    }

    pub(crate) fn fits(&self) -> bool {
        if self.rows == 0 || self.cols == 0 {
            return true;
        }
        let last = (self.rows - 1).checked_mul(self.row_stride).and_then(|r| {
            (self.cols - 1)
                .checked_mul(self.col_stride)
                .and_then(|c| r.checked_add(c))
        });
        last.is_some_and(|l| l < self.data.len())
    }
}

/// Work on part of one row of C (its index, then the values), done by the
/// thread that computed them while they are in its cache: a bias and an
/// activation, say. A row may come in several parts (column blocks).
pub type RowPost<'a, T> = dyn Fn(usize, &mut [T]) -> Result<()> + Sync + 'a;

/// `c = alpha * a * b + (accumulate ? c : 0)`, with `c` row-major `a.rows x b.cols`.
pub fn gemm<T: Arith>(
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    c: &mut [T],
    alpha: T,
    accumulate: bool,
) -> Result<()> {
    gemm_then(a, b, c, alpha, accumulate, None)
}

/// [`gemm`], then `post` on every row of `c`, each part by the thread that
/// computed it right after computing it.
pub fn gemm_then<T: Arith>(
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    c: &mut [T],
    alpha: T,
    accumulate: bool,
    post: Option<&RowPost<'_, T>>,
) -> Result<()> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if b.rows != k {
        return Err(Error::invalid(format!(
            "matrix product of {m}x{k} and {}x{n}: inner dimensions differ",
            b.rows
        )));
    }
    if !a.fits() || !b.fits() || c.len() != m * n {
        return Err(Error::invalid(
            "matrix buffers are smaller than their shapes",
        ));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            c.fill(T::zero());
        }
        return post_rows(c, n, 0, post);
    }
    let id = TypeId::of::<T>();
    if id == TypeId::of::<f16>() || id == TypeId::of::<bf16>() {
        // Half precision is multiplied in f32 and rounded once at the end,
        // as numpy (and so the ONNX reference) does.
        let widen = |x: MatRef<'_, T>| -> Vec<f32> {
            let mut v = Vec::with_capacity(x.rows * x.cols);
            for r in 0..x.rows {
                for c in 0..x.cols {
                    v.push(x.data[r * x.row_stride + c * x.col_stride].to_f32());
                }
            }
            v
        };
        let (wa, wb) = (widen(a), widen(b));
        let mut wc: Vec<f32> = if accumulate {
            c.iter().map(|&v| v.to_f32()).collect()
        } else {
            vec![0.0; m * n]
        };
        gemm(
            MatRef::row_major(&wa, m, k, false),
            MatRef::row_major(&wb, k, n, false),
            &mut wc,
            alpha.to_f32(),
            accumulate,
        )?;
        for (d, s) in c.iter_mut().zip(wc) {
            *d = T::from_f32(s);
        }
        return post_rows(c, n, 0, post);
    }
    if id == TypeId::of::<f32>() || id == TypeId::of::<f64>() {
        let threads = rayon::current_num_threads();
        let big = threads > 1 && (m * n * k >= PARALLEL_MIN_MACS || k * n >= PARALLEL_MIN_B);
        // Convolutions' products are much wider (output positions) than
        // tall (channels): splitting their columns lets each thread pack
        // only its share of the im2col operand.
        let wide = n >= 16 * threads && n > 2 * m;
        if big && m >= 16 * threads && !wide {
            // Row blocks of A and C on the intra-op threads, each product on
            // one thread: splits better than the crate's own threading at
            // the shapes convolutions and transformer layers have.
            use rayon::prelude::*;
            let rows = m.div_ceil(threads);
            c.par_chunks_mut(rows * n)
                .enumerate()
                .try_for_each(|(i, block)| {
                    let a_block = MatRef {
                        data: &a.data[i * rows * a.row_stride..],
                        rows: block.len() / n,
                        ..a
                    };
                    crate_gemm(
                        a_block,
                        b,
                        block,
                        alpha,
                        accumulate,
                        gemm::Parallelism::None,
                    )?;
                    post_rows(block, n, i * rows, post)
                })?;
            return Ok(());
        }
        if big && (wide || n >= 16 * threads && n > m) {
            // Column blocks of B and C: each thread packs only its part of
            // B, the larger operand of convolutions (im2col columns).
            return column_blocks(a, b, c, alpha, accumulate, threads, post);
        }
        if big {
            crate_gemm(
                a,
                b,
                c,
                alpha,
                accumulate,
                gemm::Parallelism::Rayon(threads),
            )?;
            use rayon::prelude::*;
            return match post {
                Some(post) => c
                    .par_chunks_mut(n)
                    .enumerate()
                    .try_for_each(|(r, row)| post(r, row)),
                None => Ok(()),
            };
        }
        crate_gemm(a, b, c, alpha, accumulate, gemm::Parallelism::None)?;
        return post_rows(c, n, 0, post);
    }
    for i in 0..m {
        for j in 0..n {
            let mut acc = T::zero();
            for p in 0..k {
                let x = a.data[i * a.row_stride + p * a.col_stride];
                let y = b.data[p * b.row_stride + j * b.col_stride];
                acc = acc.add(x.mul(y));
            }
            let v = alpha.mul(acc);
            c[i * n + j] = if accumulate { c[i * n + j].add(v) } else { v };
        }
    }
    post_rows(c, n, 0, post)
}

/// `x` as an f32 matrix when `T` is f32.
fn as_f32<T: Arith>(x: MatRef<'_, T>) -> Option<MatRef<'_, f32>> {
    Some(MatRef {
        data: crate::kernel::as_type::<T, f32>(x.data)?,
        rows: x.rows,
        cols: x.cols,
        row_stride: x.row_stride,
        col_stride: x.col_stride,
    })
}

/// `post` on each `n`-wide row of `c` (rows `first..` of the product), on
/// this thread.
fn post_rows<T>(c: &mut [T], n: usize, first: usize, post: Option<&RowPost<'_, T>>) -> Result<()> {
    match post {
        Some(post) if n > 0 => c
            .chunks_mut(n)
            .enumerate()
            .try_for_each(|(r, row)| post(first + r, row)),
        _ => Ok(()),
    }
}

/// A pointer the column-block threads share; each writes its own columns.
pub(crate) struct SharedDst<T>(*mut T);

// SAFETY: the threads of `column_blocks` write pairwise disjoint column
// ranges of the one buffer the pointer addresses, which outlives them
// (`try_for_each` returns before the borrow of `c` ends).
unsafe impl<T: Send> Send for SharedDst<T> {}
unsafe impl<T: Send> Sync for SharedDst<T> {}

impl<T> SharedDst<T> {
    /// The buffer's start; the borrow ends here, so the caller must keep
    /// `c` unused until the threads that write through this finish.
    pub(crate) fn new(c: &mut [T]) -> Self {
        Self(c.as_mut_ptr())
    }

    pub(crate) fn at(&self, offset: usize) -> *mut T {
        self.0.wrapping_add(offset)
    }
}

/// `c = alpha * a * b (+ c)` with B and C split into column blocks, one
/// per intra-op thread.
fn column_blocks<T: Arith>(
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    c: &mut [T],
    alpha: T,
    accumulate: bool,
    threads: usize,
    post: Option<&RowPost<'_, T>>,
) -> Result<()> {
    use rayon::prelude::*;
    let (m, n) = (a.rows, b.cols);
    if c.len() != m * n || !a.fits() || !b.fits() {
        return Err(Error::invalid(
            "matrix buffers are smaller than their shapes",
        ));
    }
    // Blocks of whole micro-kernel widths (16 columns).
    let width = n.div_ceil(threads).div_ceil(16) * 16;
    let dst = SharedDst(c.as_mut_ptr());
    (0..n.div_ceil(width)).into_par_iter().try_for_each(|i| {
        let j0 = i * width;
        let cols = width.min(n - j0);
        let block = MatRef {
            data: b.data.get(j0 * b.col_stride..).unwrap_or(&[]),
            cols,
            ..b
        };
        // SAFETY: rows 0..m of columns j0..j0+cols of the row-major m x n
        // buffer `c` (checked above to hold m*n elements) lie inside it;
        // blocks cover disjoint column ranges, so no two threads write one
        // element, and `c` stays exclusively borrowed until all finish.
        unsafe { product_into_columns(a, block, &dst, n, j0, alpha, accumulate, post) }
    })
}

/// `a * block` into columns `j0..j0 + block.cols` of the row-major
/// `a.rows x n` buffer at `dst`, then `post` on each row's part.
///
/// # Safety
/// Those columns of every row must lie inside the buffer, and no other
/// thread may touch them meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn product_into_columns<T: Arith>(
    a: MatRef<'_, T>,
    block: MatRef<'_, T>,
    dst: &SharedDst<T>,
    n: usize,
    j0: usize,
    alpha: T,
    accumulate: bool,
    post: Option<&RowPost<'_, T>>,
) -> Result<()> {
    // SAFETY: the caller's guarantee is crate_gemm_raw's for this block.
    unsafe {
        crate_gemm_raw(
            a,
            block,
            dst.at(j0),
            n,
            alpha,
            accumulate,
            gemm::Parallelism::None,
        )?;
    }
    let Some(post) = post else {
        return Ok(());
    };
    (0..a.rows).try_for_each(|r| {
        // SAFETY: columns j0..j0+cols of row r lie inside the buffer and
        // only this thread touches them (the caller's guarantee); this
        // slice is the only reference to them while it lives.
        let row = unsafe { std::slice::from_raw_parts_mut(dst.at(r * n + j0), block.cols) };
        post(r, row)
    })
}

/// Fills the row-major `k x cols` block of B for output columns
/// `j0..j0 + cols` into the vector (cleared first by the caller).
pub type FillColumns<'a, T> = dyn Fn(usize, usize, &mut Vec<T>) -> Result<()> + Sync + 'a;

/// `c (m x n) = a (m x k) * B (+ c)` where B is never whole: bands of
/// `band` columns are made by `fill` (im2col of a few output rows, say),
/// each multiplied into its columns of `c` and passed to `post` by one
/// thread while it is in cache, bands spread over the intra-op threads.
/// For element types the crate does not multiply, B is made whole.
pub fn gemm_column_bands<T: Arith>(
    a: MatRef<'_, T>,
    n: usize,
    c: &mut [T],
    accumulate: bool,
    band: usize,
    fill: &FillColumns<'_, T>,
    post: Option<&RowPost<'_, T>>,
) -> Result<()> {
    use rayon::prelude::*;
    let (m, k) = (a.rows, a.cols);
    if c.len() != m * n || !a.fits() {
        return Err(Error::invalid(
            "matrix buffers are smaller than their shapes",
        ));
    }
    let id = TypeId::of::<T>();
    if band == 0 || n == 0 || !(id == TypeId::of::<f32>() || id == TypeId::of::<f64>()) {
        let mut b = oxrt_core::arena::buffer(k * n);
        fill(0, n, &mut b)?;
        let result = gemm_then(
            a,
            MatRef::row_major(&b, k, n, false),
            c,
            T::one(),
            accumulate,
            post,
        );
        oxrt_core::arena::recycle(b);
        return result;
    }
    let dst = SharedDst(c.as_mut_ptr());
    (0..n.div_ceil(band))
        .into_par_iter()
        .try_for_each_init(Vec::new, |b, i| {
            let j0 = i * band;
            let cols = band.min(n - j0);
            b.clear();
            fill(j0, cols, b)?;
            let block = MatRef::row_major(b.as_slice(), k, cols, false);
            if !block.fits() || b.len() != k * cols {
                return Err(Error::invalid(format!(
                    "a band of B holds {} values, not {k} x {cols}",
                    b.len()
                )));
            }
            // SAFETY: rows 0..m of columns j0..j0+cols of the row-major
            // m x n buffer `c` (checked above to hold m*n elements) lie
            // inside it; bands cover disjoint column ranges, so no two
            // threads write one element, and `c` stays exclusively
            // borrowed until all finish.
            unsafe { product_into_columns(a, block, &dst, n, j0, T::one(), accumulate, post) }
        })
}

/// The `gemm` crate's product for f32/f64 (`T` is one of them).
fn crate_gemm<T: Arith>(
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    c: &mut [T],
    alpha: T,
    accumulate: bool,
    parallelism: gemm::Parallelism,
) -> Result<()> {
    if c.len() != a.rows * b.cols {
        return Err(Error::invalid(
            "matrix buffers are smaller than their shapes",
        ));
    }
    // SAFETY: `c` holds exactly rows x cols elements, addressed row-major
    // with row stride b.cols, and is exclusively borrowed.
    unsafe { crate_gemm_raw(a, b, c.as_mut_ptr(), b.cols, alpha, accumulate, parallelism) }
}

/// [`crate_gemm`] into `a.rows x b.cols` elements at `dst`, rows
/// `dst_row_stride` apart.
///
/// # Safety
/// Every `dst + i * dst_row_stride + j` (i < a.rows, j < b.cols) must be
/// valid for reads and writes and not accessed by anything else meanwhile.
unsafe fn crate_gemm_raw<T: Arith>(
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    dst: *mut T,
    dst_row_stride: usize,
    alpha: T,
    accumulate: bool,
    parallelism: gemm::Parallelism,
) -> Result<()> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if !a.fits() || !b.fits() || b.rows != k {
        return Err(Error::invalid(
            "matrix buffers are smaller than their shapes",
        ));
    }
    if let (Some(af), Some(bf), Some(alpha_f)) = (
        as_f32(a),
        as_f32(b),
        crate::kernel::as_type::<T, f32>(std::slice::from_ref(&alpha)),
    ) {
        let t = crate::gemm_tail::tail(&af, n);
        if t > 0 {
            let main = n - t;
            let tail_b = MatRef {
                data: bf.data.get(main * bf.col_stride..).unwrap_or(&[]),
                cols: t,
                ..bf
            };
            // SAFETY: the caller's guarantee for columns 0..n covers the
            // first `main` columns here and the last `t` in the tail call.
            unsafe {
                crate_gemm_raw(
                    a,
                    MatRef { cols: main, ..b },
                    dst,
                    dst_row_stride,
                    alpha,
                    accumulate,
                    parallelism,
                )?;
                return crate::gemm_tail::product(
                    af,
                    tail_b,
                    dst.add(main) as *mut f32,
                    dst_row_stride,
                    alpha_f[0],
                    accumulate,
                );
            }
        }
    }
    // SAFETY: `fits()` checked just above that every element addressed
    // through the given strides lies inside `a.data` and `b.data`; the
    // caller guarantees `dst` as documented. The caller only passes f32 or
    // f64, types gemm supports. With read_dst=false gemm ignores `alpha`
    // (its dst scale) and writes dst. Exercised by the gemm tests below
    // (serial, row- and column-blocked) and every MatMul/Gemm/Conv test.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_row_stride as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            if accumulate { T::one() } else { T::zero() },
            alpha,
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn naive(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn post_runs_once_on_every_row_part_with_its_row_index() {
        // Shapes for each path on two threads: row blocks (300 x 256 x 64),
        // column blocks (72 x 256 x 250), the crate's own threading
        // (30 x 8192 x 20: big, too few rows and columns to split), one
        // thread (5 x 7 x 3), k = 0, and f16 (widened to f32).
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for (m, k, n) in [
            (300, 256, 64),
            (72, 256, 250),
            (30, 8192, 20),
            (5, 7, 3),
            (4, 0, 6),
        ] {
            let a: Vec<f32> = (0..m * k).map(|x| ((x * 7) % 13) as f32 - 6.0).collect();
            let b: Vec<f32> = (0..k * n).map(|x| ((x * 5) % 11) as f32 - 5.0).collect();
            let post = |row: usize, values: &mut [f32]| -> Result<()> {
                values
                    .iter_mut()
                    .for_each(|v| *v = v.max(0.0) + row as f32 * 1000.0);
                Ok(())
            };
            let mut c = vec![f32::NAN; m * n];
            pool.install(|| {
                gemm_then(
                    MatRef::row_major(&a, m, k, false),
                    MatRef::row_major(&b, k, n, false),
                    &mut c,
                    1.0,
                    false,
                    Some(&post),
                )
            })
            .unwrap();
            for i in 0..m {
                for j in 0..n {
                    let dot: f32 = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
                    let want = dot.max(0.0) + i as f32 * 1000.0;
                    assert_eq!(c[i * n + j], want, "{m}x{k}x{n} at ({i}, {j})");
                }
            }
        }
        let a: Vec<f16> = [1.0f32, 2.0, 3.0, 4.0].map(f16::from_f32).to_vec();
        let mut c = vec![f16::ZERO; 4];
        let post = |row: usize, values: &mut [f16]| -> Result<()> {
            values
                .iter_mut()
                .for_each(|v| *v = f16::from_f32(v.to_f32() + row as f32));
            Ok(())
        };
        let m = MatRef::row_major(&a, 2, 2, false);
        gemm_then(m, m, &mut c, f16::ONE, false, Some(&post)).unwrap();
        assert_eq!(c, [7.0f32, 10.0, 16.0, 23.0].map(f16::from_f32));
        let failing = |_: usize, _: &mut [f32]| -> Result<()> { Err(Error::invalid("stop")) };
        let mut c = vec![0.0f32; 300 * 64];
        let (a, b) = (vec![1.0f32; 300 * 256], vec![1.0f32; 256 * 64]);
        let err = pool.install(|| {
            gemm_then(
                MatRef::row_major(&a, 300, 256, false),
                MatRef::row_major(&b, 256, 64, false),
                &mut c,
                1.0,
                false,
                Some(&failing),
            )
        });
        assert!(err.is_err());
    }

    #[test]
    fn row_and_column_blocks_on_two_threads_match_one_product() {
        // Large enough to split (> 2^22 multiply-adds): 300 x 256 x 64
        // splits rows; 72 x 256 x 250 splits (ragged) columns; a
        // matrix-vector product (1 x 1024 x 300: B past 2^18 values) splits
        // columns too. Widths 250 and 300 leave a tail of n % 16 columns
        // to the dot-product kernel where it runs.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for (m, k, n) in [(300, 256, 64), (72, 256, 250), (1, 1024, 300)] {
            let a: Vec<f32> = (0..m * k)
                .map(|x| ((x * 31) % 97) as f32 / 50.0 - 1.0)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|x| ((x * 17) % 89) as f32 / 45.0 - 1.0)
                .collect();
            for transposed in [false, true] {
                // Both operands stored transposed when read transposed.
                let t = |v: &[f32], r: usize, c: usize| {
                    let mut out = vec![0.0f32; r * c];
                    for i in 0..r {
                        for j in 0..c {
                            out[j * r + i] = v[i * c + j];
                        }
                    }
                    out
                };
                let (a_mat, b_mat) = if transposed {
                    (t(&a, m, k), t(&b, k, n))
                } else {
                    (a.clone(), b.clone())
                };
                let (va, vb) = if transposed {
                    (
                        MatRef::row_major(&a_mat, k, m, true),
                        MatRef::row_major(&b_mat, n, k, true),
                    )
                } else {
                    (
                        MatRef::row_major(&a_mat, m, k, false),
                        MatRef::row_major(&b_mat, k, n, false),
                    )
                };
                let mut split = vec![1.0f32; m * n];
                pool.install(|| gemm(va, vb, &mut split, 0.5, true).unwrap());
                let want = naive(
                    &a.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(),
                    &b.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(),
                    m,
                    k,
                    n,
                );
                for (x, y) in split.iter().zip(&want) {
                    let y = 1.0 + 0.5 * y;
                    assert!(
                        (f64::from(*x) - y).abs() <= 1e-3 * (1.0 + y.abs()),
                        "{x} vs {y}"
                    );
                }
            }
        }
    }

    #[test]
    fn f32_matches_reference_with_transpose_and_accumulate() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|x| x as f32 * 0.5 - 3.0).collect();
        let b: Vec<f32> = (0..k * n).map(|x| (x as f32).sin()).collect();
        let a64: Vec<f64> = a.iter().map(|&x| x as f64).collect();
        let b64: Vec<f64> = b.iter().map(|&x| x as f64).collect();
        let want = naive(&a64, &b64, m, k, n);
        let mut c = vec![1.0f32; m * n];
        gemm(
            MatRef::row_major(&a, m, k, false),
            MatRef::row_major(&b, k, n, false),
            &mut c,
            2.0,
            true,
        )
        .unwrap();
        for (x, w) in c.iter().zip(&want) {
            assert!((*x as f64 - (1.0 + 2.0 * w)).abs() < 1e-4, "{x} vs {w}");
        }
        // b stored transposed (n x k)
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let mut c = vec![0.0f32; m * n];
        gemm(
            MatRef::row_major(&a, m, k, false),
            MatRef::row_major(&bt, n, k, true),
            &mut c,
            1.0,
            false,
        )
        .unwrap();
        for (x, w) in c.iter().zip(&want) {
            assert!((*x as f64 - w).abs() < 1e-4);
        }
    }

    #[test]
    fn integers_use_the_generic_loop() {
        let a = [1i64, 2, 3, 4];
        let b = [5i64, 6, 7, 8];
        let mut c = [0i64; 4];
        gemm(
            MatRef::row_major(&a, 2, 2, false),
            MatRef::row_major(&b, 2, 2, false),
            &mut c,
            1,
            false,
        )
        .unwrap();
        assert_eq!(c, [19, 22, 43, 50]);
    }

    #[test]
    fn shape_errors_are_reported() {
        let a = [1.0f32; 6];
        let mut c = [0.0f32; 4];
        let err = gemm(
            MatRef::row_major(&a, 2, 3, false),
            MatRef::row_major(&a, 2, 3, false),
            &mut c,
            1.0,
            false,
        );
        assert!(err.is_err());
    }
}

//! The last `n % 16` columns of a row-major f32 product `C = A B`, as dot
//! products along `k`.
//!
//! The `gemm` crate runs vectors along the columns of a row-major C, 64
//! at a time, and the last `n % 16` columns cost a whole 16-lane vector
//! kernel that broadcasts a value per row: for a 1x1 convolution on a
//! 14x14 map (196 positions) its last 4 columns took 7% of the time for
//! 2% of the work. Here they are taken off and computed instead as dot
//! products of rows of A (contiguous along `k`) with those columns of B
//! (gathered once into a contiguous scratch block): 4 rows x 4 columns
//! of C per step, 8 loads per 16 fused multiply-adds, and one
//! transposing reduction of the 16 accumulators at the end.

use crate::gemm::MatRef;

/// Columns left to the crate in whole vectors, the rest taken here.
const LANES: usize = 16;

/// Shallowest product worth the dot-product form: its loads along `k`
/// fill whole vectors and the reduction is paid once per `k`.
const MIN_DEPTH: usize = 64;

/// How many trailing columns of an `m x k` by `k x n` product to compute
/// here rather than in the crate: `n % 16` where A is row-major with
/// contiguous rows, the product deep and wide enough, and this CPU able
/// to run the kernel; otherwise 0.
pub(crate) fn tail(a: &MatRef<'_, f32>, n: usize) -> usize {
    let t = n % LANES;
    if n > LANES && a.col_stride == 1 && a.rows >= 4 && a.cols >= MIN_DEPTH && available() {
        t
    } else {
        0
    }
}

fn available() -> bool {
    crate::kernel::has_avx512f()
}

/// `dst[i][j] = alpha * (a b)[i][j] (+ dst[i][j] when accumulate)` for the
/// `a.rows x b.cols` elements at `dst`, rows `ldc` apart; `a` must have
/// `col_stride == 1` and this CPU AVX-512F ([`tail`] checks both).
///
/// # Safety
/// Every `dst + i * ldc + j` (i < a.rows, j < b.cols) must be valid for
/// reads and writes and not accessed by anything else meanwhile.
pub(crate) unsafe fn product(
    a: MatRef<'_, f32>,
    b: MatRef<'_, f32>,
    dst: *mut f32,
    ldc: usize,
    alpha: f32,
    accumulate: bool,
) -> oxrt_core::Result<()> {
    let (m, k, t) = (a.rows, a.cols, b.cols);
    if a.col_stride != 1 || !a.fits() || !b.fits() || b.rows != k || !available() {
        return Err(oxrt_core::Error::invalid(
            "tail columns: operands do not match the kernel",
        ));
    }
    if m == 0 || t == 0 {
        return Ok(());
    }
    crate::scratch::with_f32(t * k, |bt| {
        // Column j of B, contiguous: `bt[j * k..][..k]`.
        for (j, col) in bt.chunks_exact_mut(k).enumerate() {
            for (p, v) in col.iter_mut().enumerate() {
                *v = b.data[p * b.row_stride + j * b.col_stride];
            }
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `available()` found AVX-512F; `a.fits()` puts rows
        // 0..m of k values at `row_stride` apart inside `a.data`; `bt`
        // holds t columns of k values; the caller's guarantee covers dst.
        unsafe {
            avx512::columns(
                a.data,
                a.row_stride,
                m,
                k,
                bt,
                t,
                dst,
                ldc,
                alpha,
                accumulate,
            )
        }
    });
    Ok(())
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// Rows and columns of C per step.
    const R: usize = 4;

    /// See [`super::product`]: rows of A from `a` (`lda` apart, `k`
    /// values each), columns of B as `bt` (`t` runs of `k` values).
    ///
    /// # Safety
    /// AVX-512F must be available, `a` must hold `m` such rows, and the
    /// `m x t` elements at `dst` (rows `ldc` apart) must be this thread's.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn columns(
        a: &[f32],
        lda: usize,
        m: usize,
        k: usize,
        bt: &[f32],
        t: usize,
        dst: *mut f32,
        ldc: usize,
        alpha: f32,
        accumulate: bool,
    ) {
        for r in (0..m).step_by(R) {
            let rows = R.min(m - r);
            // Rows past the end repeat the last one; their sums are dropped.
            let ar: [&[f32]; R] = std::array::from_fn(|i| &a[(r + i.min(rows - 1)) * lda..][..k]);
            for j in (0..t).step_by(R) {
                let cols = R.min(t - j);
                let bc: [&[f32]; R] =
                    std::array::from_fn(|c| &bt[(j + c.min(cols - 1)) * k..][..k]);
                let mut sums = [0.0f32; R * R];
                // SAFETY: sums holds 16 values.
                unsafe {
                    _mm512_storeu_ps(
                        sums.as_mut_ptr(),
                        _mm512_mul_ps(block(ar, bc, k), _mm512_set1_ps(alpha)),
                    )
                };
                for (i, row) in sums.chunks_exact(R).take(rows).enumerate() {
                    for (c, &v) in row.iter().take(cols).enumerate() {
                        // SAFETY: row r + i < m, column j + c < t: inside
                        // the caller's elements.
                        unsafe {
                            let p = dst.add((r + i) * ldc + j + c);
                            *p = if accumulate { *p + v } else { v };
                        }
                    }
                }
            }
        }
    }

    /// The 16 dot products of rows `a` with columns `b` (`k` values
    /// each), lane `4 i + c` holding row i times column c.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn block(a: [&[f32]; R], b: [&[f32]; R], k: usize) -> __m512 {
        let mut acc = [[_mm512_setzero_ps(); R]; R];
        let mut p = 0;
        while p < k {
            let mask = crate::kernel::first_lanes(k - p);
            let mut av = [_mm512_setzero_ps(); R];
            let mut bv = [_mm512_setzero_ps(); R];
            for i in 0..R {
                // SAFETY: lanes under the mask are values p.. < k of each slice.
                unsafe {
                    av[i] = _mm512_maskz_loadu_ps(mask, a[i].as_ptr().add(p));
                    bv[i] = _mm512_maskz_loadu_ps(mask, b[i].as_ptr().add(p));
                }
            }
            for (row, &x) in acc.iter_mut().zip(&av) {
                for (sum, &y) in row.iter_mut().zip(&bv) {
                    *sum = _mm512_fmadd_ps(x, y, *sum);
                }
            }
            p += 16;
        }
        // sum16 puts the sum of input s at lane 4 (s % 4) + s / 4: feed
        // accumulator (i, c) (lane 4 i + c wanted) at s = 4 c + i.
        let mut v = [_mm512_setzero_ps(); 16];
        for (s, v) in v.iter_mut().enumerate() {
            *v = acc[s % R][s / R];
        }
        sum16(v)
    }

    /// Lane `4 (s % 4) + s / 4` of the result is the sum of the 16 lanes
    /// of `v[s]`: three rounds of shuffles and adds, each halving the
    /// partial sums per input.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(super) fn sum16(v: [__m512; 16]) -> __m512 {
        // Pairs of inputs: 128-bit lanes (x.0 + x.2, x.1 + x.3, y.0 + y.2,
        // y.1 + y.3).
        let mut s = [_mm512_setzero_ps(); 8];
        for (i, s) in s.iter_mut().enumerate() {
            let (x, y) = (v[2 * i], v[2 * i + 1]);
            *s = _mm512_add_ps(
                _mm512_shuffle_f32x4::<0b01_00_01_00>(x, y),
                _mm512_shuffle_f32x4::<0b11_10_11_10>(x, y),
            );
        }
        // Pairs again: 128-bit lane q of u[g] holds the four partial sums
        // of input 4 g + q.
        let mut u = [_mm512_setzero_ps(); 4];
        for (g, u) in u.iter_mut().enumerate() {
            let (x, y) = (s[2 * g], s[2 * g + 1]);
            *u = _mm512_add_ps(
                _mm512_shuffle_f32x4::<0b10_00_10_00>(x, y),
                _mm512_shuffle_f32x4::<0b11_01_11_01>(x, y),
            );
        }
        // Within each 128-bit lane q: (u0, u1, u2, u3) totals, i.e. lane
        // 4 q + g holds the sum of input 4 g + q.
        let w0 = _mm512_add_ps(
            _mm512_unpacklo_ps(u[0], u[1]),
            _mm512_unpackhi_ps(u[0], u[1]),
        );
        let w1 = _mm512_add_ps(
            _mm512_unpacklo_ps(u[2], u[3]),
            _mm512_unpackhi_ps(u[2], u[3]),
        );
        _mm512_add_ps(
            _mm512_shuffle_ps::<0b01_00_01_00>(w0, w1),
            _mm512_shuffle_ps::<0b11_10_11_10>(w0, w1),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_transposing_reduction_sums_each_input_into_its_lane() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512F");
            return;
        }
        use std::arch::x86_64::*;
        let vals: Vec<f32> = (0..256).map(|i| ((i * 37) % 101) as f32 - 50.0).collect();
        let mut got = [0.0f32; 16];
        // SAFETY: AVX-512F checked above; each load reads 16 of the 256 values.
        unsafe {
            let v: [__m512; 16] =
                std::array::from_fn(|s| _mm512_loadu_ps(vals.as_ptr().add(16 * s)));
            _mm512_storeu_ps(got.as_mut_ptr(), avx512::sum16(v));
        }
        for s in 0..16 {
            let want: f32 = vals[16 * s..][..16].iter().sum();
            assert_eq!(got[4 * (s % 4) + s / 4], want, "input {s}");
        }
    }

    #[test]
    fn tail_columns_match_the_definition() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512F, the crate computes every column");
            assert_eq!(
                tail(&MatRef::row_major(&[0.0; 64 * 4], 4, 64, false), 20),
                0
            );
            return;
        }
        let vals = crate::test_values;
        // Rows and columns with partial 4-blocks, depths with a partial
        // 16-vector, B read as stored and transposed.
        for (m, k, t, transposed) in [
            (4, 64, 4, false),
            (7, 70, 1, false),
            (13, 129, 15, true),
            (32, 512, 9, false),
        ] {
            let a = vals(m * k, 1);
            let b = vals(k * t, 2);
            let bm = if transposed {
                MatRef::row_major(&b, t, k, true)
            } else {
                MatRef::row_major(&b, k, t, false)
            };
            let ldc = t + 3;
            for accumulate in [false, true] {
                let mut c = vals(m * ldc, 3);
                let before = c.clone();
                // SAFETY: c holds m rows of ldc >= t values.
                unsafe {
                    product(
                        MatRef::row_major(&a, m, k, false),
                        bm,
                        c.as_mut_ptr(),
                        ldc,
                        0.5,
                        accumulate,
                    )
                }
                .unwrap();
                for i in 0..m {
                    for j in 0..ldc {
                        let got = c[i * ldc + j];
                        if j >= t {
                            assert_eq!(got, before[i * ldc + j], "column {j} is not the tail's");
                            continue;
                        }
                        let dot: f64 = (0..k)
                            .map(|p| {
                                let bv = if transposed {
                                    b[j * k + p]
                                } else {
                                    b[p * t + j]
                                };
                                a[i * k + p] as f64 * bv as f64
                            })
                            .sum();
                        let want = 0.5 * dot
                            + if accumulate {
                                before[i * ldc + j] as f64
                            } else {
                                0.0
                            };
                        assert!(
                            (got as f64 - want).abs() <= 1e-4 * (1.0 + want.abs()),
                            "{m}x{k}x{t} at ({i}, {j}): {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn only_shapes_that_gain_take_the_tail() {
        if !available() {
            return;
        }
        let a = vec![0.0f32; 512 * 512];
        let w = MatRef::row_major(&a, 512, 512, false);
        assert_eq!(tail(&w, 196), 4);
        assert_eq!(tail(&w, 3025), 1);
        assert_eq!(tail(&w, 784), 0);
        assert_eq!(tail(&w, 12), 0);
        // Transposed A (columns contiguous) and shallow products stay whole.
        assert_eq!(tail(&MatRef::row_major(&a, 512, 512, true), 196), 0);
        assert_eq!(
            tail(&MatRef::row_major(&a[..512 * 27], 512, 27, false), 196),
            0
        );
    }
}

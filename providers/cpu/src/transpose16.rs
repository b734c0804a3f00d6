//! A 16 x 16 f32 transpose in AVX-512 registers: kernels that keep 16
//! channels per vector (Winograd transforms, narrow depthwise maps) turn
//! rows of one channel into vectors of 16 channels and back with it.

use std::arch::x86_64::*;

/// `[f(0), .., f(15)]`, built from its values: an array of vectors
/// zeroed first and then written is a call to memset.
#[inline(always)]
pub(crate) fn vectors16(mut f: impl FnMut(usize) -> __m512) -> [__m512; 16] {
    [
        f(0),
        f(1),
        f(2),
        f(3),
        f(4),
        f(5),
        f(6),
        f(7),
        f(8),
        f(9),
        f(10),
        f(11),
        f(12),
        f(13),
        f(14),
        f(15),
    ]
}

/// Transposes a 16 x 16 block held as 16 vectors: lane `j` of vector
/// `i` moves to lane `i` of vector `j`.
#[target_feature(enable = "avx512f")]
pub(crate) fn transpose16(v: &mut [__m512; 16]) {
    // Pairs of rows interleaved by 32 bits, then by 64 bits: each
    // 128-bit block of r[4i + j] holds rows 4i..4i+4 of column 4b + j
    // (b the block's index).
    let mut t = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]);
    }
    let mut r = [_mm512_setzero_ps(); 16];
    for i in 0..4 {
        let (a, b) = (_mm512_castps_pd(t[4 * i]), _mm512_castps_pd(t[4 * i + 2]));
        let (c, d) = (
            _mm512_castps_pd(t[4 * i + 1]),
            _mm512_castps_pd(t[4 * i + 3]),
        );
        r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
        r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
        r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
        r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
    }
    // Then the 128-bit blocks gathered: column 4b + j takes block b of
    // r[j], r[4 + j], r[8 + j], r[12 + j].
    for j in 0..4 {
        let even_lo = _mm512_shuffle_f32x4::<0x88>(r[j], r[4 + j]);
        let odd_lo = _mm512_shuffle_f32x4::<0xDD>(r[j], r[4 + j]);
        let even_hi = _mm512_shuffle_f32x4::<0x88>(r[8 + j], r[12 + j]);
        let odd_hi = _mm512_shuffle_f32x4::<0xDD>(r[8 + j], r[12 + j]);
        v[j] = _mm512_shuffle_f32x4::<0x88>(even_lo, even_hi);
        v[8 + j] = _mm512_shuffle_f32x4::<0xDD>(even_lo, even_hi);
        v[4 + j] = _mm512_shuffle_f32x4::<0x88>(odd_lo, odd_hi);
        v[12 + j] = _mm512_shuffle_f32x4::<0xDD>(odd_lo, odd_hi);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose16_moves_lane_j_of_vector_i_to_lane_i_of_vector_j() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            eprintln!("skipped: this CPU has no AVX-512F");
            return;
        }
        let rows: Vec<[f32; 16]> = (0..16)
            .map(|i| std::array::from_fn(|j| (i * 16 + j) as f32))
            .collect();
        // SAFETY: the CPU has AVX-512F (checked above); loads and
        // stores touch 16-value arrays.
        unsafe {
            let mut v: [__m512; 16] = std::array::from_fn(|i| _mm512_loadu_ps(rows[i].as_ptr()));
            transpose16(&mut v);
            for (j, vj) in v.iter().enumerate() {
                let mut got = [0.0f32; 16];
                _mm512_storeu_ps(got.as_mut_ptr(), *vj);
                let want: [f32; 16] = std::array::from_fn(|i| (i * 16 + j) as f32);
                assert_eq!(got, want, "vector {j}");
            }
        }
    }
}

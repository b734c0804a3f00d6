//! f32 approximations of `exp`, `erf` and `tanh` written as branch-free
//! arithmetic so loops over slices vectorize, and the slice kernels built
//! on them (GELU, tanh, sigmoid, softmax, layer normalization), compiled for AVX2+FMA and NEON besides
//! the baseline and chosen at run time.
//!
//! Accuracy against f64 (checked by the property tests below): `exp`
//! within 3e-7 relative over the normal range, `erf` within 5e-7
//! absolute, `tanh` within 1e-6 absolute; GELU, tanh and sigmoid slices
//! within 2e-6 absolute (plus 1e-6 relative).

use multiversion::multiversion;

/// `e^x`: `x = n ln2 + r` with `|r| <= ln2/2`, a degree-6 polynomial for
/// `e^r`, and `2^n` applied as two normal powers of two (so results down
/// to the subnormal range are kept). Inputs are clamped to `[-104, 88.5]`
/// (0 and near `f32::MAX` beyond); NaN stays NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that n * LN2_HI is exact for |n| < 2^9.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-104.0, 88.5);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    // n lies in [-150, 128]; both halves are normal exponents. It is read
    // from t's bits (t = 1.5 * 2^23 + n, one unit per integer) rather than
    // cast, which vectorizes (a saturating float-to-int cast is done lane
    // by lane).
    let n = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let half = n >> 1;
    let pow2 = |e: i32| f32::from_bits(((e + 127) as u32) << 23);
    p * pow2(half) * pow2(n - half)
}

/// `erf(x)`: a rational function `x P(x²) / Q(x²)` on `[-4, 4]`, where
/// erf is within f32 rounding of ±1 outside.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    const P: [f32; 7] = [
        -2.726_142_3e-10,
        2.770_681_4e-8,
        -2.101_024e-6,
        -5.692_506_4e-5,
        -7.349_906_3e-4,
        -2.954_600_2e-3,
        -1.609_603_3e-2,
    ];
    const Q: [f32; 5] = [
        -1.456_607_2e-5,
        -2.133_740_6e-4,
        -1.682_827e-3,
        -7.373_329e-3,
        -1.426_474e-2,
    ];
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = P[0];
    for c in &P[1..] {
        p = p * x2 + c;
    }
    let mut q = Q[0];
    for c in &Q[1..] {
        q = q * x2 + c;
    }
    x * p / q
}

/// `tanh(x) = 1 - 2 / (e^{2x} + 1)`, with `x` clamped to `[-9, 9]` (tanh
/// is within f32 rounding of ±1 beyond) and an odd polynomial near zero,
/// where the subtraction would cancel.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let x = x.clamp(-9.0, 9.0);
    let far = 1.0 - 2.0 / (exp(2.0 * x) + 1.0);
    // x - x³/3 + 2x⁵/15 - 17x⁷/315 for |x| < 0.0625 (error < 1e-11).
    let x2 = x * x;
    let near = x * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 - x2 * (17.0 / 315.0))));
    if x.abs() < 0.0625 {
        near
    } else {
        far
    }
}

/// `GELU(x) = x/2 (1 + erf(x/√2))` in place.
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
pub fn gelu_erf(x: &mut [f32]) {
    x.iter_mut()
        .for_each(|v| *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2)));
}

/// The tanh form of GELU, `x/2 (1 + tanh(√(2/π) (x + 0.044715 x³)))`, in place.
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
pub fn gelu_tanh(x: &mut [f32]) {
    const K: f32 = 0.797_884_6; // √(2/π)
    x.iter_mut()
        .for_each(|v| *v = 0.5 * *v * (1.0 + tanh(K * (*v + 0.044_715 * *v * *v * *v))));
}

/// `tanh` in place.
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
pub fn tanh_slice(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = tanh(*v));
}

/// The logistic sigmoid in place: `e = e^-|x|`, then `1 / (1 + e)` for
/// `x >= 0` and `e / (1 + e)` below (never exponentiates a large positive
/// number; the negative tail keeps its subnormals).
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
pub fn sigmoid(x: &mut [f32]) {
    x.iter_mut().for_each(|v| {
        let e = exp(-v.abs());
        let s = 1.0 / (1.0 + e);
        *v = if *v >= 0.0 { s } else { e * s };
    });
}

/// Lanes of the partial maxima and sums (one AVX2 register of f32).
const LANES: usize = 8;

/// `row = softmax(row)`: `e^(x - max) / sum`, the maximum and the sum
/// kept in [`LANES`] partial values so both loops vectorize. A row of
/// only -inf gives NaN, as the definition does.
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
pub fn softmax(row: &mut [f32]) {
    let mut maxes = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for (m, &v) in maxes.iter_mut().zip(c) {
            *m = if v > *m { v } else { *m };
        }
    }
    let tail_max = chunks
        .remainder()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    let max = maxes.iter().copied().fold(tail_max, f32::max);
    // Terms below e^-80 of the maximum are 0: they are far below f32's
    // resolution of the sum, and kept they would be subnormal, which the
    // CPU computes on a slow path (it made BERT's attention softmax 5-10x
    // slower with random weights).
    row.iter_mut().for_each(|v| {
        let d = *v - max;
        *v = if d < -80.0 { 0.0 } else { exp(d) };
    });
    let inv = 1.0 / lane_sum(row, |v| v);
    row.iter_mut().for_each(|v| *v *= inv);
}

/// The sum of `x`, accumulated in [`LANES`] partial sums.
#[inline(always)]
fn lane_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut sums = [0.0f32; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for (s, &v) in sums.iter_mut().zip(c) {
            *s += f(v);
        }
    }
    sums.iter().sum::<f32>() + chunks.remainder().iter().map(|&v| f(v)).sum::<f32>()
}

/// One row of layer normalization: `out = (x - mean) / sqrt(var + eps) *
/// gamma (+ beta)`, mean and (biased) variance in two passes. Returns the
/// mean and `1 / sqrt(var + eps)`.
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
pub fn layer_norm(
    x: &[f32],
    gamma: &[f32],
    beta: Option<&[f32]>,
    eps: f32,
    out: &mut [f32],
) -> (f32, f32) {
    let n = x.len().max(1) as f32;
    let mean = lane_sum(x, |v| v) / n;
    let var = lane_sum(x, |v| (v - mean) * (v - mean)) / n;
    let inv = 1.0 / (var + eps).sqrt();
    match beta {
        Some(beta) => {
            for (((o, &v), &g), &b) in out.iter_mut().zip(x).zip(gamma).zip(beta) {
                *o = (v - mean) * inv * g + b;
            }
        }
        None => {
            for ((o, &v), &g) in out.iter_mut().zip(x).zip(gamma) {
                *o = (v - mean) * inv * g;
            }
        }
    }
    (mean, inv)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn gelu_ref(x: f64) -> f64 {
        0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
    }

    proptest! {
        #[test]
        fn exp_is_within_3e_7_relative(x in -87.0f32..88.4) {
            let want = f64::from(x).exp();
            let got = f64::from(exp(x));
            prop_assert!(((got - want) / want).abs() < 3e-7, "exp({x}) = {got}, want {want}");
        }

        #[test]
        fn erf_is_within_5e_7(x in -10.0f32..10.0) {
            let want = libm::erf(f64::from(x));
            prop_assert!((f64::from(erf(x)) - want).abs() < 5e-7, "erf({x})");
        }

        #[test]
        fn tanh_is_within_1e_6(x in -20.0f32..20.0) {
            let want = f64::from(x).tanh();
            prop_assert!((f64::from(tanh(x)) - want).abs() < 1e-6, "tanh({x})");
        }

        #[test]
        fn slice_kernels_match_f64(v in proptest::collection::vec(-12.0f32..12.0, 1..70)) {
            let run = |f: fn(&mut [f32])| { let mut y = v.clone(); f(&mut y); y };
            let k = (2.0 / std::f64::consts::PI).sqrt();
            for (i, &x) in v.iter().enumerate() {
                let x64 = f64::from(x);
                let cases = [
                    (run(gelu_erf)[i], gelu_ref(x64)),
                    (run(gelu_tanh)[i], 0.5 * x64 * (1.0 + (k * (x64 + 0.044715 * x64.powi(3))).tanh())),
                    (run(tanh_slice)[i], x64.tanh()),
                    (run(sigmoid)[i], 1.0 / (1.0 + (-x64).exp())),
                ];
                for (got, want) in cases {
                    let err = (f64::from(got) - want).abs();
                    prop_assert!(err < 2e-6 + 1e-6 * want.abs(), "at {x}: {got} vs {want}");
                }
            }
        }
    }

    proptest! {
        #[test]
        fn softmax_matches_f64(v in proptest::collection::vec(-30.0f32..30.0, 1..40)) {
            let mut y = v.clone();
            softmax(&mut y);
            let max = v.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(f64::from(x)));
            let sum: f64 = v.iter().map(|&x| (f64::from(x) - max).exp()).sum();
            for (&x, &got) in v.iter().zip(&y) {
                let want = (f64::from(x) - max).exp() / sum;
                prop_assert!((f64::from(got) - want).abs() < 1e-6 + 1e-5 * want, "{got} vs {want}");
            }
        }
    }

    proptest! {
        #[test]
        fn layer_norm_matches_f64(v in proptest::collection::vec(-50.0f32..50.0, 2..300)) {
            let gamma: Vec<f32> = (0..v.len()).map(|i| 0.5 + (i % 7) as f32 / 7.0).collect();
            let beta: Vec<f32> = (0..v.len()).map(|i| (i % 5) as f32 - 2.0).collect();
            let mut out = vec![0.0; v.len()];
            let (m, inv) = layer_norm(&v, &gamma, Some(&beta), 1e-5, &mut out);
            let n = v.len() as f64;
            let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
            let var = v.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / n;
            prop_assert!((f64::from(m) - mean).abs() < 1e-4 * (1.0 + mean.abs()));
            prop_assert!((f64::from(inv) - 1.0 / (var + 1e-5).sqrt()).abs() < 1e-4 / (var + 1e-5).sqrt());
            for i in 0..v.len() {
                let want = (f64::from(v[i]) - mean) / (var + 1e-5).sqrt() * f64::from(gamma[i])
                    + f64::from(beta[i]);
                prop_assert!((f64::from(out[i]) - want).abs() < 2e-5, "{} vs {want}", out[i]);
            }
        }
    }

    #[test]
    fn softmax_gives_no_subnormal_terms() {
        // e^-90 and e^-100 of the maximum would be subnormal: they are 0.
        let mut row = [0.0f32, -10.0, -90.0, -100.0, -1000.0, -79.0];
        softmax(&mut row);
        assert!(row.iter().all(|v| *v == 0.0 || v.is_normal()), "{row:?}");
        assert_eq!(&row[2..5], [0.0; 3]);
        assert!(row[5] > 0.0);
        let sum = 1.0 + (-10.0f64).exp() + (-79.0f64).exp();
        assert!((f64::from(row[0]) - 1.0 / sum).abs() < 1e-6);
    }

    #[test]
    fn softmax_of_masked_entries() {
        let mut row = [0.0f32, f32::NEG_INFINITY, 0.0];
        softmax(&mut row);
        assert_eq!(row, [0.5, 0.0, 0.5]);
        let mut all = [f32::NEG_INFINITY; 3];
        softmax(&mut all);
        assert!(all.iter().all(|v| v.is_nan()));
    }

    #[test]
    fn tails_and_nan() {
        assert_eq!(exp(-200.0), 0.0);
        let tiny = f64::from(exp(-100.0));
        assert!((tiny - (-100f64).exp()).abs() < 2e-45, "{tiny}");
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(erf(7.0), erf(4.0));
        assert!((erf(4.0) - 1.0).abs() < 5e-7);
        assert_eq!(tanh(50.0), tanh(9.0));
        let mut s = [-100.0f32, 100.0];
        sigmoid(&mut s);
        assert!(s[0] > 0.0 && s[0] < 1e-43 && s[1] == 1.0);
    }
}

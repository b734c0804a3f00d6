//! The sub-byte and 8-bit element formats: float8 (E4M3FN, E4M3FNUZ, E5M2,
//! E5M2FNUZ), float4 E2M1, float8 E8M0 and int4/uint4/int2/uint2, held one
//! element per byte as raw bit patterns (signed integers sign-extended).
//!
//! Encoding rounds to nearest, ties to even, as the ONNX reference (via
//! `ml_dtypes`) does; overflow saturates or becomes NaN/Inf as each format
//! and the `saturate` flag require.

use oxrt_core::DataType as D;

/// The layout of a small float format (sign bit on top).
#[derive(Clone, Copy)]
struct Format {
    exp_bits: u32,
    man_bits: u32,
    bias: i32,
    /// E5M2: exponent all-ones with zero mantissa is infinity.
    has_inf: bool,
    /// FNUZ formats: the negative-zero pattern is NaN, there is no -0.
    nan_is_neg_zero: bool,
    /// E4M3FN: exponent and mantissa all ones is NaN (no infinities).
    nan_all_ones: bool,
}

fn format(dtype: D) -> Option<Format> {
    let f = |exp_bits, man_bits, bias, has_inf, nan_is_neg_zero, nan_all_ones| Format {
        exp_bits,
        man_bits,
        bias,
        has_inf,
        nan_is_neg_zero,
        nan_all_ones,
    };
    Some(match dtype {
        D::F8E4M3FN => f(4, 3, 7, false, false, true),
        D::F8E4M3FNUZ => f(4, 3, 8, false, true, false),
        D::F8E5M2 => f(5, 2, 15, true, false, false),
        D::F8E5M2FNUZ => f(5, 2, 16, false, true, false),
        D::F4E2M1 => f(2, 1, 1, false, false, false),
        _ => return None,
    })
}

impl Format {
    fn bits(&self) -> u32 {
        1 + self.exp_bits + self.man_bits
    }

    fn sign_bit(&self) -> u8 {
        1 << (self.bits() - 1)
    }

    fn is_nan(&self, code: u8) -> bool {
        let mag = code & !self.sign_bit();
        let all = self.sign_bit() - 1;
        (self.nan_is_neg_zero && code == self.sign_bit())
            || (self.nan_all_ones && mag == all)
            || (self.has_inf && mag > all - ((1 << self.man_bits) - 1))
    }

    fn is_inf(&self, code: u8) -> bool {
        let mag = code & !self.sign_bit();
        self.has_inf && mag == (self.sign_bit() - 1) - ((1 << self.man_bits) - 1)
    }

    /// The value of a non-negative magnitude pattern.
    fn magnitude(&self, mag: u8) -> f64 {
        let e = i32::from(mag >> self.man_bits);
        let m = f64::from(mag & ((1 << self.man_bits) - 1));
        let scale = f64::from(1u32 << self.man_bits);
        if e == 0 {
            m / scale * 2f64.powi(1 - self.bias)
        } else {
            (1.0 + m / scale) * 2f64.powi(e - self.bias)
        }
    }

    fn decode(&self, code: u8) -> f64 {
        if self.is_nan(code) {
            return f64::NAN;
        }
        let neg = code & self.sign_bit() != 0;
        let v = if self.is_inf(code) {
            f64::INFINITY
        } else {
            self.magnitude(code & !self.sign_bit())
        };
        if neg {
            -v
        } else {
            v
        }
    }

    /// The largest finite magnitude pattern.
    fn max_code(&self) -> u8 {
        let all = self.sign_bit() - 1;
        if self.has_inf {
            all - (1 << self.man_bits)
        } else if self.nan_all_ones {
            all - 1
        } else {
            all
        }
    }

    fn nan_code(&self) -> u8 {
        if self.nan_is_neg_zero {
            self.sign_bit()
        } else if self.has_inf {
            // Exponent all ones, top mantissa bit set: the quiet NaN.
            self.max_code() + 1 + (1 << (self.man_bits - 1))
        } else if self.nan_all_ones {
            self.sign_bit() - 1
        } else {
            // float4 has no NaN: ml_dtypes maps it to the -0 pattern.
            self.sign_bit()
        }
    }

    fn encode(&self, v: f64, saturate: bool) -> u8 {
        if v.is_nan() {
            return self.nan_code();
        }
        let neg = v.is_sign_negative();
        let a = v.abs();
        let max = self.max_code();
        // float4 has neither NaN nor Inf: it always saturates.
        let saturate = saturate || (!self.has_inf && !self.nan_all_ones && !self.nan_is_neg_zero);
        let mag = if a > self.magnitude(max) {
            let ulp = self.magnitude(max) - self.magnitude(max - 1);
            let limit = self.magnitude(max) + ulp / 2.0;
            let rounds_to_max = a < limit || (a == limit && max.is_multiple_of(2));
            if saturate || rounds_to_max {
                max
            } else if self.has_inf {
                max + 1
            } else if neg && !self.nan_is_neg_zero {
                return self.nan_code() | self.sign_bit();
            } else {
                return self.nan_code();
            }
        } else {
            // Nearest pattern, ties to the even one (magnitudes grow with the pattern).
            let (mut lo, mut hi) = (0u8, max);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if self.magnitude(mid) <= a {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            let (dl, dh) = (a - self.magnitude(lo), self.magnitude(hi) - a);
            if dl < dh || (dl == dh && lo % 2 == 0) {
                lo
            } else {
                hi
            }
        };
        if neg && !(self.nan_is_neg_zero && mag == 0) {
            mag | self.sign_bit()
        } else {
            mag
        }
    }
}

/// How float8 E8M0 rounds (the Cast `round_mode` attribute).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RoundMode {
    Up,
    Down,
    Nearest,
}

/// E8M0 (exponent only, `2^(e-127)`, 0xFF = NaN) from an f32's bits, as
/// `onnx.numpy_helper.to_float8e8m0` computes it.
fn encode_e8m0(v: f32, saturate: bool, mode: RoundMode) -> u8 {
    let bits = v.to_bits();
    let exp = (bits >> 23) & 0xFF;
    if exp == 0xFF {
        return 0xFF;
    }
    let round_up = match mode {
        RoundMode::Down => false,
        RoundMode::Up => bits & 0x7F_FFFF != 0,
        RoundMode::Nearest => {
            let g = bits & 0x40_0000 != 0;
            let r = bits & 0x20_0000 != 0;
            let s = bits & 0x1F_FFFF != 0;
            g && (r || s || exp > 0)
        }
    };
    let up = round_up && !(saturate && exp == 0xFE);
    (exp + u32::from(up)) as u8
}

/// True for the element types this module converts.
pub fn handles(dtype: D) -> bool {
    format(dtype).is_some() || matches!(dtype, D::F8E8M0 | D::I4 | D::U4 | D::I2 | D::U2)
}

/// A decoded element: float formats as `F`, integer formats as `I`.
pub enum Value {
    F(f64),
    I(i64),
}

/// Decodes a raw pattern of `dtype`.
pub fn decode(dtype: D, code: u8) -> Option<Value> {
    if let Some(f) = format(dtype) {
        return Some(Value::F(f.decode(code)));
    }
    Some(match dtype {
        D::F8E8M0 if code == 0xFF => Value::F(f64::NAN),
        D::F8E8M0 => Value::F(2f64.powi(i32::from(code) - 127)),
        D::I4 | D::I2 => Value::I(i64::from(code as i8)),
        D::U4 | D::U2 => Value::I(i64::from(code)),
        _ => return None,
    })
}

/// Encodes a float as `dtype` (integer formats truncate toward zero and
/// wrap, NaN and infinities becoming 0, as `ml_dtypes` casts do).
pub fn encode_float(dtype: D, v: f64, saturate: bool, mode: RoundMode) -> Option<u8> {
    if let Some(f) = format(dtype) {
        return Some(f.encode(v, saturate));
    }
    match dtype {
        D::F8E8M0 => Some(encode_e8m0(v as f32, saturate, mode)),
        _ => encode_int(dtype, if v.is_finite() { v.trunc() as i64 } else { 0 }),
    }
}

/// Encodes an integer as `dtype`, wrapping to the format's width; float
/// formats round the value.
pub fn encode_int(dtype: D, v: i64) -> Option<u8> {
    let wrap = |bits: u32, signed: bool| {
        let mask = (1i64 << bits) - 1;
        let u = v & mask;
        if signed && u & (1 << (bits - 1)) != 0 {
            (u | !mask) as u8
        } else {
            u as u8
        }
    };
    match dtype {
        D::I4 => Some(wrap(4, true)),
        D::U4 => Some(wrap(4, false)),
        D::I2 => Some(wrap(2, true)),
        D::U2 => Some(wrap(2, false)),
        _ => encode_float(dtype, v as f64, true, RoundMode::Up),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn f8(dtype: D, v: f64, saturate: bool) -> u8 {
        encode_float(dtype, v, saturate, RoundMode::Up).unwrap()
    }

    fn value(dtype: D, code: u8) -> f64 {
        match decode(dtype, code).unwrap() {
            Value::F(v) => v,
            Value::I(v) => v as f64,
        }
    }

    #[test]
    fn float8_matches_ml_dtypes() {
        // Values checked against ml_dtypes 0.6 `astype`.
        assert_eq!(value(D::F8E4M3FN, f8(D::F8E4M3FN, 300.0, false)), 288.0);
        assert!(value(D::F8E4M3FN, f8(D::F8E4M3FN, 1e9, false)).is_nan());
        assert_eq!(f8(D::F8E4M3FN, 1e9, true), 0x7E);
        assert_eq!(value(D::F8E4M3FN, 0x7E), 448.0);
        assert_eq!(value(D::F8E4M3FN, f8(D::F8E4M3FN, 464.0, false)), 448.0);
        assert!(value(D::F8E4M3FN, f8(D::F8E4M3FN, 465.0, false)).is_nan());
        assert_eq!(
            value(D::F8E4M3FN, f8(D::F8E4M3FN, 0.001, false)),
            0.001953125
        );
        assert_eq!(f8(D::F8E4M3FN, -1e-7, false), 0x80);
        assert_eq!(f8(D::F8E4M3FN, f64::NEG_INFINITY, false), 0xFF);
        assert_eq!(value(D::F8E5M2, f8(D::F8E5M2, 300.0, false)), 320.0);
        assert_eq!(
            value(D::F8E5M2, f8(D::F8E5M2, 61440.0, false)),
            f64::INFINITY
        );
        assert_eq!(value(D::F8E5M2, f8(D::F8E5M2, 0.001, false)), 0.0009765625);
        assert_eq!(f8(D::F8E4M3FNUZ, 300.0, false), 0x80);
        assert_eq!(f8(D::F8E4M3FNUZ, f64::NAN, false), 0x80);
        assert_eq!(f8(D::F8E4M3FNUZ, 0.001, false), 1);
        assert_eq!(f8(D::F8E4M3FNUZ, -0.0, false), 0);
        assert_eq!(value(D::F8E5M2FNUZ, 0x7F), 57344.0);
        assert_eq!(f8(D::F8E5M2, f64::NAN, false), 0x7E);
    }

    #[test]
    fn float4_e8m0_and_small_ints() {
        let enc = |v: f64| f8(D::F4E2M1, v, false);
        // From the ONNX Cast FLOAT->FLOAT4E2M1 test data.
        let got: Vec<u8> = [
            0.48,
            0.25,
            1.05,
            -3.5,
            -8.0,
            9.0,
            1e6,
            1e-7,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -4.0,
            0.01,
            -0.0,
        ]
        .iter()
        .map(|&v| enc(v))
        .collect();
        assert_eq!(got, vec![1, 0, 2, 0xE, 0xF, 7, 7, 0, 8, 7, 0xF, 0xE, 0, 8]);
        let e8 = |v: f32| encode_e8m0(v, true, RoundMode::Up);
        assert_eq!(
            [0.0, 0.124, 0.25, 0.5, 1.1, 2.0].map(e8),
            [0x00, 0x7C, 0x7D, 0x7E, 0x80, 0x80]
        );
        assert_eq!(value(D::F8E8M0, 0x7F), 1.0);
        assert_eq!(encode_float(D::I4, -10.6, true, RoundMode::Up), Some(6));
        assert_eq!(encode_float(D::I4, 8.5, true, RoundMode::Up), Some(0xF8));
        assert_eq!(value(D::I4, 0xF8), -8.0);
        assert_eq!(encode_float(D::U2, -1.5, true, RoundMode::Up), Some(3));
        assert_eq!(encode_int(D::I2, 2), Some(0xFE));
    }
}

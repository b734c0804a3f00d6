//! Cast and CastLike between numeric types, bool, f16/bf16, strings and
//! the 8-, 4- and 2-bit formats (float8, float4, int4, int2...).
//!
//! Float to integer saturates (NaN becomes 0); integer narrowing wraps, as a
//! C++ `static_cast` does in ONNX Runtime. Float8 targets saturate unless
//! `saturate = 0`.

use oxrt_core::{
    bf16, f16, DataType as D, Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result,
    Storage, Tensor,
};

use crate::kernel::required;
use crate::minifloat::{self, RoundMode, Value};

/// One source element, widened without loss where possible.
#[derive(Clone, Copy)]
enum Wide {
    I(i64),
    U(u64),
    F(f64),
    B(bool),
}

fn widen(t: &Tensor) -> Result<Vec<Wide>> {
    Ok(match t.storage() {
        Storage::F32(v) => v.iter().map(|&x| Wide::F(x as f64)).collect(),
        Storage::F64(v) => v.iter().map(|&x| Wide::F(x)).collect(),
        Storage::F16(v) => v.iter().map(|&x| Wide::F(x.to_f64())).collect(),
        Storage::BF16(v) => v.iter().map(|&x| Wide::F(x.to_f64())).collect(),
        Storage::I8(v) => v.iter().map(|&x| Wide::I(x.into())).collect(),
        Storage::I16(v) => v.iter().map(|&x| Wide::I(x.into())).collect(),
        Storage::I32(v) => v.iter().map(|&x| Wide::I(x.into())).collect(),
        Storage::I64(v) => v.iter().map(|&x| Wide::I(x)).collect(),
        Storage::U8(v) => v.iter().map(|&x| Wide::U(x.into())).collect(),
        Storage::U16(v) => v.iter().map(|&x| Wide::U(x.into())).collect(),
        Storage::U32(v) => v.iter().map(|&x| Wide::U(x.into())).collect(),
        Storage::U64(v) => v.iter().map(|&x| Wide::U(x)).collect(),
        Storage::Bool(v) => v.iter().map(|&x| Wide::B(x)).collect(),
        Storage::String(v) => v.iter().map(|s| parse(s)).collect::<Result<_>>()?,
        Storage::Bits(v) if minifloat::handles(t.dtype()) => v
            .iter()
            .map(|&c| match minifloat::decode(t.dtype(), c) {
                Some(Value::I(i)) => Wide::I(i),
                Some(Value::F(f)) => Wide::F(f),
                None => Wide::F(f64::NAN),
            })
            .collect(),
        _ => return Err(Error::NotSupported(format!("Cast from {}", t.dtype()))),
    })
}

fn parse(s: &str) -> Result<Wide> {
    let s = s.trim();
    if let Ok(i) = s.parse::<i64>() {
        return Ok(Wide::I(i));
    }
    let lower = s.to_ascii_lowercase();
    let f = match lower.trim_start_matches(['+', '-']) {
        "inf" | "infinity" => {
            if lower.starts_with('-') {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            }
        }
        "nan" => f64::NAN,
        _ => s
            .parse::<f64>()
            .map_err(|_| Error::invalid(format!("cannot convert string '{s}' to a number")))?,
    };
    Ok(Wide::F(f))
}

macro_rules! to_int {
    ($name:ident, $t:ty) => {
        fn $name(w: Wide) -> $t {
            match w {
                Wide::I(v) => v as $t,
                Wide::U(v) => v as $t,
                Wide::F(v) => v as $t,
                Wide::B(b) => b as $t,
            }
        }
    };
}
to_int!(to_i8, i8);
to_int!(to_i16, i16);
to_int!(to_i32, i32);
to_int!(to_i64, i64);
to_int!(to_u8, u8);
to_int!(to_u16, u16);
to_int!(to_u32, u32);
to_int!(to_u64, u64);

fn to_f64(w: Wide) -> f64 {
    match w {
        Wide::I(v) => v as f64,
        Wide::U(v) => v as f64,
        Wide::F(v) => v,
        Wide::B(b) => b as u8 as f64,
    }
}

fn to_f32(w: Wide) -> f32 {
    match w {
        Wide::I(v) => v as f32,
        Wide::U(v) => v as f32,
        Wide::F(v) => v as f32,
        Wide::B(b) => b as u8 as f32,
    }
}

fn to_string(w: Wide) -> String {
    match w {
        Wide::I(v) => v.to_string(),
        Wide::U(v) => v.to_string(),
        Wide::B(b) => (b as u8).to_string(),
        Wide::F(v) if v.is_nan() => "NaN".into(),
        Wide::F(v) if v.is_infinite() => if v > 0.0 { "INF" } else { "-INF" }.into(),
        Wide::F(v) => v.to_string(),
    }
}

fn convert<T>(w: &[Wide], f: fn(Wide) -> T) -> Vec<T> {
    w.iter().copied().map(f).collect()
}

/// How values are rounded and bounded when the target is a small format.
#[derive(Clone, Copy, Debug)]
pub struct CastOptions {
    /// Float8 targets clamp out-of-range values to the largest finite value.
    pub saturate: bool,
    /// Rounding for float8 E8M0 targets.
    pub round_mode: RoundMode,
}

impl Default for CastOptions {
    fn default() -> Self {
        Self {
            saturate: true,
            round_mode: RoundMode::Up,
        }
    }
}

fn to_bits(w: &[Wide], to: D, opts: CastOptions) -> Result<Vec<u8>> {
    w.iter()
        .map(|&x| {
            let code = match x {
                Wide::I(v) => minifloat::encode_int(to, v),
                Wide::U(v) => minifloat::encode_int(to, v as i64),
                Wide::B(b) => minifloat::encode_int(to, i64::from(b)),
                Wide::F(v) => minifloat::encode_float(to, v, opts.saturate, opts.round_mode),
            };
            code.ok_or_else(|| Error::NotSupported(format!("Cast to {to}")))
        })
        .collect()
}

/// Converts `t` to `to`.
pub fn cast(t: &Tensor, to: D) -> Result<Tensor> {
    cast_with(t, to, CastOptions::default())
}

/// Converts `t` to `to` with explicit saturation and rounding for small
/// float targets.
pub fn cast_with(t: &Tensor, to: D, opts: CastOptions) -> Result<Tensor> {
    if t.dtype() == to {
        return Ok(t.clone());
    }
    let w = widen(t)?;
    let storage = match to {
        D::F32 => Storage::F32(convert(&w, to_f32)),
        D::F64 => Storage::F64(convert(&w, to_f64)),
        D::F16 => Storage::F16(w.iter().map(|&x| f16::from_f64(to_f64(x))).collect()),
        D::BF16 => Storage::BF16(w.iter().map(|&x| bf16::from_f64(to_f64(x))).collect()),
        D::I8 => Storage::I8(convert(&w, to_i8)),
        D::I16 => Storage::I16(convert(&w, to_i16)),
        D::I32 => Storage::I32(convert(&w, to_i32)),
        D::I64 => Storage::I64(convert(&w, to_i64)),
        D::U8 => Storage::U8(convert(&w, to_u8)),
        D::U16 => Storage::U16(convert(&w, to_u16)),
        D::U32 => Storage::U32(convert(&w, to_u32)),
        D::U64 => Storage::U64(convert(&w, to_u64)),
        D::Bool => Storage::Bool(w.iter().map(|&x| to_f64(x) != 0.0).collect()),
        D::String => Storage::String(convert(&w, to_string)),
        other if minifloat::handles(other) => Storage::Bits(to_bits(&w, other, opts)?),
        other => return Err(Error::NotSupported(format!("Cast to {other}"))),
    };
    Tensor::from_storage(to, t.shape().to_vec(), storage)
}

struct Cast {
    /// The target type; `None` for CastLike (input 1's type).
    to: Option<D>,
    opts: CastOptions,
}

impl Kernel for Cast {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let to = match self.to {
            Some(t) => t,
            None => required(inputs, 1)?.dtype(),
        };
        Ok(vec![cast_with(required(inputs, 0)?, to, self.opts)?])
    }
}

fn options(node: &Node) -> Result<CastOptions> {
    Ok(CastOptions {
        saturate: node.int_or("saturate", 1)? != 0,
        round_mode: match node.string_or("round_mode", "up")? {
            "up" => RoundMode::Up,
            "down" => RoundMode::Down,
            "nearest" => RoundMode::Nearest,
            other => {
                return Err(Error::invalid(format!(
                    "round_mode must be up, down or nearest, got '{other}'"
                )))
            }
        },
    })
}

/// BitCast: the same bytes read as another element type of equal width.
struct BitCast {
    to: D,
}

impl Kernel for BitCast {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let bytes = x
            .as_bytes()
            .filter(|_| self.to != D::String)
            .ok_or_else(|| {
                Error::NotSupported(format!("BitCast from {} to {}", x.dtype(), self.to))
            })?;
        if x.dtype().bits() != self.to.bits() {
            return Err(Error::invalid(format!(
                "BitCast needs types of one width: {} has {} bits, {} has {}",
                x.dtype(),
                x.dtype().bits(),
                self.to,
                self.to.bits()
            )));
        }
        Ok(vec![Tensor::from_bytes(self.to, x.shape(), bytes)?])
    }
}

fn create_bit_cast(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let code = node
        .get_int("to")?
        .ok_or_else(|| Error::invalid("attribute 'to' is required"))?;
    let to = i32::try_from(code)
        .ok()
        .and_then(D::from_onnx)
        .ok_or_else(|| {
            Error::invalid(format!(
                "attribute 'to' = {code} is not an ONNX element type"
            ))
        })?;
    Ok(Box::new(BitCast { to }))
}

fn create_cast_like(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(Cast {
        to: None,
        opts: options(node)?,
    }))
}

fn create(node: &Node, info: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let to = if info.node.opset < 6 {
        // Opset 1 names the type as a string, e.g. "FLOAT".
        let name = node.string_or("to", "")?;
        (1..=26)
            .filter_map(D::from_onnx)
            .find(|d| d.onnx_name().eq_ignore_ascii_case(name))
            .ok_or_else(|| Error::invalid(format!("unknown target type '{name}'")))?
    } else {
        let code = node
            .get_int("to")?
            .ok_or_else(|| Error::invalid("attribute 'to' is required"))?;
        i32::try_from(code)
            .ok()
            .and_then(D::from_onnx)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "attribute 'to' = {code} is not an ONNX element type"
                ))
            })?
    };
    Ok(Box::new(Cast {
        to: Some(to),
        opts: options(node)?,
    }))
}

/// Registers Cast, CastLike and BitCast.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new("Cast", 1.., &[], create));
    reg.add(KernelDef::new("CastLike", 15.., &[], create_cast_like));
    reg.add(KernelDef::new("BitCast", 26.., &[], create_bit_cast));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn numeric_casts() {
        let x = Tensor::from_vec(vec![4], vec![1.7f32, -1.7, 300.0, f32::NAN]).unwrap();
        assert_eq!(
            cast(&x, D::I64).unwrap().as_slice::<i64>().unwrap(),
            &[1, -1, 300, 0]
        );
        assert_eq!(
            cast(&x, D::U8).unwrap().as_slice::<u8>().unwrap(),
            &[1, 0, 255, 0]
        );
        assert_eq!(
            cast(&x, D::Bool).unwrap().as_slice::<bool>().unwrap(),
            &[true, true, true, true]
        );
        let h = cast(&x, D::F16).unwrap();
        assert_eq!(h.as_slice::<f16>().unwrap()[2], f16::from_f32(300.0));
        let big = Tensor::from_vec(vec![1], vec![(1i64 << 53) + 1]).unwrap();
        assert_eq!(
            cast(&big, D::I64).unwrap().as_slice::<i64>().unwrap(),
            &[(1i64 << 53) + 1]
        );
        let i = Tensor::from_vec(vec![1], vec![300i32]).unwrap();
        assert_eq!(cast(&i, D::I8).unwrap().as_slice::<i8>().unwrap(), &[44]);
    }

    #[test]
    fn small_formats_round_trip() {
        let x = Tensor::from_vec(vec![4], vec![0.3f32, -2.5, 1e6, f32::NAN]).unwrap();
        let f8 = cast(&x, D::F8E4M3FN).unwrap();
        let back = cast(&f8, D::F32).unwrap();
        let v = back.as_slice::<f32>().unwrap();
        assert_eq!(&v[..3], &[0.3125, -2.5, 448.0]);
        assert!(v[3].is_nan());
        let strict = CastOptions {
            saturate: false,
            ..CastOptions::default()
        };
        let nan = cast_with(&x, D::F8E4M3FN, strict).unwrap();
        assert!(cast(&nan, D::F32).unwrap().as_slice::<f32>().unwrap()[2].is_nan());
        let i4 = cast(&Tensor::from_vec(vec![2], vec![-3i32, 9]).unwrap(), D::I4).unwrap();
        assert_eq!(
            cast(&i4, D::I8).unwrap().as_slice::<i8>().unwrap(),
            &[-3, -7]
        );
    }

    #[test]
    fn bit_cast_reinterprets() {
        let x = Tensor::from_vec(vec![2], vec![1.0f32, -0.0]).unwrap();
        let y = BitCast { to: D::I32 }.compute(&[Some(&x)]).unwrap();
        assert_eq!(y[0].as_slice::<i32>().unwrap(), &[0x3F80_0000, i32::MIN]);
        assert!(BitCast { to: D::I64 }.compute(&[Some(&x)]).is_err());
        let b = Tensor::from_vec(vec![1], vec![true]).unwrap();
        assert_eq!(
            BitCast { to: D::U8 }.compute(&[Some(&b)]).unwrap()[0]
                .as_slice::<u8>()
                .unwrap(),
            &[1]
        );
    }

    #[test]
    fn string_casts() {
        let s =
            Tensor::from_strings(vec![3], vec!["1.5".into(), "-INF".into(), "7".into()]).unwrap();
        let f = cast(&s, D::F32).unwrap();
        assert_eq!(f.as_slice::<f32>().unwrap(), &[1.5, f32::NEG_INFINITY, 7.0]);
        let bad = Tensor::from_strings(vec![1], vec!["abc".into()]).unwrap();
        assert!(cast(&bad, D::F32).is_err());
        let back = cast(&Tensor::from_vec(vec![1], vec![42i32]).unwrap(), D::String).unwrap();
        assert_eq!(back.as_strings().unwrap(), &["42".to_string()]);
    }
}

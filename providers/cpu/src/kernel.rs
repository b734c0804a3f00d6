//! Helpers shared by the CPU kernels: input access, element-type dispatch
//! and the numeric traits kernels are generic over.

use oxrt_core::{bf16, f16, Element, Error, Result, Tensor};

/// Input `i`, which the operator requires.
pub fn required<'a>(inputs: &[Option<&'a Tensor>], i: usize) -> Result<&'a Tensor> {
    inputs
        .get(i)
        .copied()
        .flatten()
        .ok_or_else(|| Error::invalid(format!("required input #{i} is missing")))
}

/// Input `i` if given.
pub fn optional<'a>(inputs: &[Option<&'a Tensor>], i: usize) -> Option<&'a Tensor> {
    inputs.get(i).copied().flatten()
}

/// Reads a 1-D (or scalar) integer tensor as `i64`s (int64 or int32).
pub fn read_ints(t: &Tensor, what: &str) -> Result<Vec<i64>> {
    if let Ok(v) = t.as_slice::<i64>() {
        return Ok(v.to_vec());
    }
    if let Ok(v) = t.as_slice::<i32>() {
        return Ok(v.iter().map(|&x| i64::from(x)).collect());
    }
    Err(Error::invalid(format!(
        "{what} must be an int64 or int32 tensor, got {}",
        t.dtype()
    )))
}

/// Runs `$body` with `$T` bound to the Rust type of a float `DataType`
/// (f32, f64, f16, bf16); other types evaluate `$other`.
macro_rules! with_float_type {
    ($dtype:expr, $T:ident => $body:expr, _ => $other:expr) => {
        match $dtype {
            oxrt_core::DataType::F32 => {
                type $T = f32;
                $body
            }
            oxrt_core::DataType::F64 => {
                type $T = f64;
                $body
            }
            oxrt_core::DataType::F16 => {
                type $T = oxrt_core::f16;
                $body
            }
            oxrt_core::DataType::BF16 => {
                type $T = oxrt_core::bf16;
                $body
            }
            _ => $other,
        }
    };
}
pub(crate) use with_float_type;

/// Runs `$body` with `$T` bound to the Rust type of an integer `DataType`
/// (i8..i64, u8..u64); other types evaluate `$other`.
macro_rules! with_int_type {
    ($dtype:expr, $T:ident => $body:expr, _ => $other:expr) => {
        match $dtype {
            oxrt_core::DataType::I8 => {
                type $T = i8;
                $body
            }
            oxrt_core::DataType::I16 => {
                type $T = i16;
                $body
            }
            oxrt_core::DataType::I32 => {
                type $T = i32;
                $body
            }
            oxrt_core::DataType::I64 => {
                type $T = i64;
                $body
            }
            oxrt_core::DataType::U8 => {
                type $T = u8;
                $body
            }
            oxrt_core::DataType::U16 => {
                type $T = u16;
                $body
            }
            oxrt_core::DataType::U32 => {
                type $T = u32;
                $body
            }
            oxrt_core::DataType::U64 => {
                type $T = u64;
                $body
            }
            _ => $other,
        }
    };
}
pub(crate) use with_int_type;

/// Like [`with_float_type`] for every float and integer type.
macro_rules! with_numeric_type {
    ($dtype:expr, $T:ident => $body:expr, _ => $other:expr) => {{
        let dtype = $dtype;
        $crate::kernel::with_int_type!(dtype, $T => $body,
            _ => $crate::kernel::with_float_type!(dtype, $T => $body, _ => $other))
    }};
}
pub(crate) use with_numeric_type;

/// The error for an element type a kernel does not handle.
pub fn unsupported_type(op: &str, t: &Tensor) -> Error {
    Error::NotSupported(format!("{op} on {} tensors", t.dtype()))
}

/// `len` zeros in a buffer from the run arena (see [`oxrt_core::arena`]).
pub fn zeros<T: Arith>(len: usize) -> Vec<T> {
    oxrt_core::arena::filled(len, T::zero())
}

/// Arithmetic with ONNX semantics: integers wrap on overflow, integer
/// division by zero is an error.
pub trait Arith: Element {
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn div(self, o: Self) -> Result<Self>;
    /// The additive identity.
    fn zero() -> Self;
    /// The multiplicative identity.
    fn one() -> Self;
    /// The value as f32 (rounded; used to widen half-precision math).
    fn to_f32(self) -> f32;
    /// An f32 converted to this type (rounded, saturating for integers).
    fn from_f32(v: f32) -> Self;
}

macro_rules! arith_int {
    ($($t:ty),*) => {$(
        impl Arith for $t {
            fn add(self, o: Self) -> Self { self.wrapping_add(o) }
            fn sub(self, o: Self) -> Self { self.wrapping_sub(o) }
            fn mul(self, o: Self) -> Self { self.wrapping_mul(o) }
            fn div(self, o: Self) -> Result<Self> {
                if o == 0 {
                    return Err(Error::invalid("integer division by zero"));
                }
                Ok(self.wrapping_div(o))
            }
            fn zero() -> Self { 0 }
            fn one() -> Self { 1 }
            fn to_f32(self) -> f32 { self as f32 }
            fn from_f32(v: f32) -> Self { v as $t }
        }
    )*};
}
arith_int!(i8, i16, i32, i64, u8, u16, u32, u64);

macro_rules! arith_float {
    ($($t:ty),*) => {$(
        impl Arith for $t {
            fn add(self, o: Self) -> Self { self + o }
            fn sub(self, o: Self) -> Self { self - o }
            fn mul(self, o: Self) -> Self { self * o }
            fn div(self, o: Self) -> Result<Self> { Ok(self / o) }
            fn zero() -> Self { <$t as num_traits::Zero>::zero() }
            fn one() -> Self { <$t as num_traits::One>::one() }
            fn to_f32(self) -> f32 { num_traits::ToPrimitive::to_f32(&self).unwrap_or(f32::NAN) }
            fn from_f32(v: f32) -> Self { <$t as num_traits::NumCast>::from(v).unwrap_or(<$t as num_traits::Float>::nan()) }
        }
    )*};
}
arith_float!(f32, f64, f16, bf16);

/// `x` as f32 elements when `T` is f32 (for f32-only fast paths inside
/// generic kernels).
pub fn as_f32_mut<T: 'static>(x: &mut [T]) -> Option<&mut [f32]> {
    as_type_mut::<T, f32>(x)
}

/// `x` as a slice of `U` when `T` is `U` (for kernels generic over the
/// element type that call a kernel written for one).
pub fn as_type_mut<T: 'static, U: 'static>(x: &mut [T]) -> Option<&mut [U]> {
    if std::any::TypeId::of::<T>() != std::any::TypeId::of::<U>() {
        return None;
    }
    // SAFETY: `T` is `U` (same TypeId), so pointer, length, alignment
    // and the exclusive borrow carry over unchanged. Exercised by
    // `as_f32_mut_views_only_f32` and every f32 activation test.
    Some(unsafe { std::slice::from_raw_parts_mut(x.as_mut_ptr().cast::<U>(), x.len()) })
}

/// `x` as a slice of `U` when `T` is `U` (the shared-borrow
/// [`as_type_mut`]).
pub fn as_type<T: 'static, U: 'static>(x: &[T]) -> Option<&[U]> {
    if std::any::TypeId::of::<T>() != std::any::TypeId::of::<U>() {
        return None;
    }
    // SAFETY: `T` is `U` (same TypeId), so pointer, length, alignment and
    // the shared borrow carry over unchanged. Exercised by
    // `as_f32_mut_views_only_f32`.
    Some(unsafe { std::slice::from_raw_parts(x.as_ptr().cast::<U>(), x.len()) })
}

/// Float element types usable with `num_traits::Float` math.
pub trait Real: Element + num_traits::Float {}
impl<T: Element + num_traits::Float> Real for T {}

/// Converts an `f32` attribute to a kernel's element type.
pub fn cast_f32<T: num_traits::NumCast>(v: f32) -> Result<T> {
    num_traits::cast(v).ok_or_else(|| Error::invalid(format!("{v} does not fit the element type")))
}

/// A tensor of `shape` holding `x`'s elements at flat indices `idx` (any
/// element type; an index out of bounds is an error).
pub fn take(x: &Tensor, shape: Vec<usize>, idx: &[usize]) -> Result<Tensor> {
    Tensor::from_storage(x.dtype(), shape, x.storage().gather(idx)?)
}

/// A tensor of `shape` holding `x`'s elements at flat indices `idx`, and
/// `fill`'s first element where an index is [`crate::broadcast::OUTSIDE`].
pub fn gather_fill(
    x: &Tensor,
    shape: Vec<usize>,
    mut idx: Vec<usize>,
    fill: &Tensor,
) -> Result<Tensor> {
    if fill.dtype() != x.dtype() || fill.is_empty() {
        return Err(Error::invalid(format!(
            "the fill value must be one {} element, got {} of shape {:?}",
            x.dtype(),
            fill.dtype(),
            fill.shape()
        )));
    }
    let storage = if idx.contains(&crate::broadcast::OUTSIDE) {
        let at = x.len();
        for i in &mut idx {
            if *i == crate::broadcast::OUTSIDE {
                *i = at;
            }
        }
        oxrt_core::Storage::concat(&[x.storage(), fill.storage()])?.gather(&idx)?
    } else {
        x.storage().gather(&idx)?
    };
    Tensor::from_storage(x.dtype(), shape, storage)
}

/// Input `i` as one integer (a scalar or 1-element int64/int32 tensor).
pub fn read_scalar_int(inputs: &[Option<&Tensor>], i: usize, what: &str) -> Result<i64> {
    match read_ints(required(inputs, i)?, what)?.as_slice() {
        [v] => Ok(*v),
        other => Err(Error::invalid(format!(
            "{what} must hold one value, got {}",
            other.len()
        ))),
    }
}

/// Checks that an output of `shape` whose size comes from input *values*
/// (a target shape, repeats, pads, a depth) can be held: its element count
/// must not overflow and the memory must be obtainable. A clear error
/// instead of an abort on hostile sizes.
pub fn ensure_allocatable(shape: &[usize], what: &str) -> Result<()> {
    let too_big = || {
        Error::invalid(format!(
            "{what} of shape {shape:?} is too large to allocate"
        ))
    };
    let n = oxrt_core::tensor::checked_numel(shape).ok_or_else(too_big)?;
    // Room for the element and its gather index.
    let bytes = n.checked_mul(16).ok_or_else(too_big)?;
    let mut probe: Vec<u8> = Vec::new();
    probe.try_reserve_exact(bytes).map_err(|_| too_big())?;
    Ok(())
}

/// The elements of a numeric tensor as f64; `what` names it in the error.
pub fn numbers(t: &Tensor, what: &str) -> Result<Vec<f64>> {
    t.to_f64_vec()
        .ok_or_else(|| Error::invalid(format!("{what} must be numeric, got {}", t.dtype())))
}

/// The first `n` of 16 lanes as a lane mask (all 16 for `n >= 16`).
/// Branch-free: kernels compute it per vector in their inner loops.
#[inline]
pub(crate) fn first_lanes(n: usize) -> u16 {
    ((1u32 << n.min(16)) - 1) as u16
}

/// The lanes `i < cap` (`cap <= 16`) of a load at column `start` that lie
/// in a row of `width` columns (`0 <= start + i < width`), as a lane mask
/// (none when the load misses the row: the two masks then nest).
#[inline]
pub(crate) fn lanes_inside(start: isize, width: usize, cap: usize) -> u16 {
    let cap = cap.min(16) as isize;
    let lo = (-start).clamp(0, cap) as usize;
    let hi = (width as isize).saturating_sub(start).clamp(0, cap) as usize;
    first_lanes(hi) & !first_lanes(lo)
}

/// Whether this CPU has AVX-512F, which the hand-written f32 kernels
/// (`packed.rs`, the direct and depthwise convolutions, max pooling) need.
pub(crate) fn has_avx512f() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn lane_masks_cover_the_asked_lanes() {
        assert_eq!(first_lanes(0), 0);
        assert_eq!(first_lanes(3), 0b111);
        assert_eq!(first_lanes(16), 0xffff);
        assert_eq!(first_lanes(40), 0xffff);
        // A row of 20 columns: a load at -2 covers lanes 2..16, one at 8
        // lanes 0..12, one at 20 nothing, one at -20 nothing.
        assert_eq!(lanes_inside(-2, 20, 16), 0xfffc);
        assert_eq!(lanes_inside(8, 20, 16), 0x0fff);
        assert_eq!(lanes_inside(20, 20, 16), 0);
        assert_eq!(lanes_inside(-20, 20, 16), 0);
        // At most `cap` lanes (a 6-column Winograd patch).
        assert_eq!(lanes_inside(-1, 20, 6), 0b111110);
        assert_eq!(lanes_inside(17, 20, 6), 0b111);
    }

    #[test]
    fn as_f32_mut_views_only_f32() {
        let mut v = vec![1.0f32, 2.0];
        as_f32_mut(&mut v).unwrap()[1] = 5.0;
        assert_eq!(v, [1.0, 5.0]);
        assert!(as_f32_mut(&mut [1.0f64]).is_none());
        assert!(as_f32_mut(&mut [1i32]).is_none());
        assert_eq!(as_type::<f32, f32>(&v), Some(&[1.0f32, 5.0][..]));
        assert!(as_type::<f32, f64>(&v).is_none());
    }
}

//! `Tensor`: a dense, contiguous, row-major array of any ONNX element type.

use std::fmt;

use half::{bf16, f16};
use ndarray::{ArrayD, ArrayViewD, IxDyn};

use crate::dtype::DataType;
use crate::error::{Error, Result};

/// Typed storage of a tensor's elements (host memory).
#[derive(Debug, Clone, PartialEq)]
pub enum Storage {
    F32(Vec<f32>),
    F64(Vec<f64>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    Bool(Vec<bool>),
    String(Vec<String>),
    /// Complex numbers as `[re, im]` pairs.
    Complex64(Vec<[f32; 2]>),
    /// Complex numbers as `[re, im]` pairs.
    Complex128(Vec<[f64; 2]>),
    /// 8-, 4- and 2-bit formats (float8, int4, uint4, float4, int2, uint2), one
    /// element per byte, holding the element's raw bit pattern (unpacked).
    Bits(Vec<u8>),
}

impl Storage {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Storage::F32(v) => v.len(),
            Storage::F64(v) => v.len(),
            Storage::F16(v) => v.len(),
            Storage::BF16(v) => v.len(),
            Storage::I8(v) => v.len(),
            Storage::I16(v) => v.len(),
            Storage::I32(v) => v.len(),
            Storage::I64(v) => v.len(),
            Storage::U8(v) => v.len(),
            Storage::U16(v) => v.len(),
            Storage::U32(v) => v.len(),
            Storage::U64(v) => v.len(),
            Storage::Bool(v) => v.len(),
            Storage::String(v) => v.len(),
            Storage::Complex64(v) => v.len(),
            Storage::Complex128(v) => v.len(),
            Storage::Bits(v) => v.len(),
        }
    }

    /// Storage of `len` zero (default) elements of `dtype`.
    fn zeros(dtype: DataType, len: usize) -> Storage {
        use crate::arena::zeroed;
        use DataType as D;
        match dtype {
            D::F32 => Storage::F32(zeroed(len)),
            D::F64 => Storage::F64(zeroed(len)),
            D::F16 => Storage::F16(zeroed(len)),
            D::BF16 => Storage::BF16(zeroed(len)),
            D::I8 => Storage::I8(zeroed(len)),
            D::I16 => Storage::I16(zeroed(len)),
            D::I32 => Storage::I32(zeroed(len)),
            D::I64 => Storage::I64(zeroed(len)),
            D::U8 => Storage::U8(zeroed(len)),
            D::U16 => Storage::U16(zeroed(len)),
            D::U32 => Storage::U32(zeroed(len)),
            D::U64 => Storage::U64(zeroed(len)),
            D::Bool => Storage::Bool(zeroed(len)),
            D::String => Storage::String(vec![String::new(); len]),
            D::Complex64 => Storage::Complex64(vec![[0.0; 2]; len]),
            D::Complex128 => Storage::Complex128(vec![[0.0; 2]; len]),
            _ => Storage::Bits(vec![0; len]),
        }
    }
}

/// Rebuilds the same storage variant from the vector inside it: `$body` is
/// evaluated with `$v` bound to the inner `Vec` and must produce a `Vec` of the
/// same element type (so it can only use operations every element type has).
#[macro_export]
macro_rules! map_storage {
    ($storage:expr, $v:ident => $body:expr) => {{
        use $crate::tensor::Storage as S;
        match $storage {
            S::F32($v) => S::F32($body),
            S::F64($v) => S::F64($body),
            S::F16($v) => S::F16($body),
            S::BF16($v) => S::BF16($body),
            S::I8($v) => S::I8($body),
            S::I16($v) => S::I16($body),
            S::I32($v) => S::I32($body),
            S::I64($v) => S::I64($body),
            S::U8($v) => S::U8($body),
            S::U16($v) => S::U16($body),
            S::U32($v) => S::U32($body),
            S::U64($v) => S::U64($body),
            S::Bool($v) => S::Bool($body),
            S::String($v) => S::String($body),
            S::Complex64($v) => S::Complex64($body),
            S::Complex128($v) => S::Complex128($body),
            S::Bits($v) => S::Bits($body),
        }
    }};
}

impl Storage {
    /// A new storage whose `i`-th element is `self[indices[i]]`.
    ///
    /// Callers guarantee every index is in bounds (it is checked: an out-of-
    /// bounds index is an error, never a panic).
    // `clone` is needed for strings; the macro instantiates it for Copy types too.
    #[allow(clippy::clone_on_copy)]
    pub fn gather(&self, indices: &[usize]) -> Result<Storage> {
        let len = self.len();
        if let Some(&bad) = indices.iter().find(|&&i| i >= len) {
            return Err(Error::invalid(format!(
                "element index {bad} is out of bounds for {len} elements"
            )));
        }
        Ok(map_storage!(self, v => indices.iter().map(|&i| v[i].clone()).collect()))
    }

    /// The runs `[s, s + run)` for each `s` in `starts`, joined in order.
    pub fn gather_runs(&self, starts: &[usize], run: usize) -> Result<Storage> {
        let len = self.len();
        if let Some(&bad) = starts
            .iter()
            .find(|&&s| s.checked_add(run).is_none_or(|e| e > len))
        {
            return Err(Error::invalid(format!(
                "element run {bad}..{} is out of bounds for {len} elements",
                bad.saturating_add(run)
            )));
        }
        Ok(map_storage!(self, v => {
            let mut out = Vec::with_capacity(starts.len() * run);
            for &s in starts {
                out.extend_from_slice(&v[s..s + run]);
            }
            out
        }))
    }

    /// Concatenates storages of the same variant, in order.
    pub fn concat(parts: &[&Storage]) -> Result<Storage> {
        Self::concat_blocks(parts, 1)
    }

    /// Each part split into `outer` equal blocks, joined block by block:
    /// block 0 of every part in order, then block 1, ... (Concat along an
    /// axis with `outer` elements before it, each block copied whole).
    pub fn concat_blocks(parts: &[&Storage], outer: usize) -> Result<Storage> {
        let Some(first) = parts.first() else {
            return Err(Error::invalid("nothing to concatenate"));
        };
        if let Some(p) = parts
            .iter()
            .find(|p| (outer == 0 && !p.is_empty()) || (outer > 0 && p.len() % outer != 0))
        {
            return Err(Error::invalid(format!(
                "{} elements do not split into {outer} blocks",
                p.len()
            )));
        }
        let total = parts.iter().map(|p| p.len()).sum();
        let mixed = || Error::invalid("cannot concatenate tensors of different element types");
        macro_rules! concat_as {
            (numeric: $($num:ident),*; other: $($var:ident),*) => {
                match first {
                    // Numeric buffers come from the run arena.
                    $(Storage::$num(_) => {
                        if parts.iter().any(|p| !matches!(p, Storage::$num(_))) {
                            return Err(mixed());
                        }
                        let part = |i: usize| match parts[i] {
                            Storage::$num(v) => &v[..],
                            _ => &[],
                        };
                        Storage::$num(join_blocks(parts.len(), part, outer, total))
                    })*
                    $(Storage::$var(_) => {
                        let mut out = Vec::with_capacity(total);
                        for o in 0..outer {
                            for p in parts {
                                let Storage::$var(v) = p else { return Err(mixed()) };
                                let block = v.len() / outer;
                                out.extend_from_slice(&v[o * block..][..block]);
                            }
                        }
                        Storage::$var(out)
                    })*
                }
            };
        }
        Ok(concat_as!(
            numeric: F32, F64, F16, BF16, I8, I16, I32, I64, U8, U16, U32, U64, Bool, Bits;
            other: String, Complex64, Complex128
        ))
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy whose numeric buffer comes from the run arena (see
    /// [`crate::arena`]); other variants are cloned.
    pub fn copied(&self) -> Storage {
        use crate::arena::copied as copy;
        match self {
            Storage::F32(v) => Storage::F32(copy(v)),
            Storage::F64(v) => Storage::F64(copy(v)),
            Storage::F16(v) => Storage::F16(copy(v)),
            Storage::BF16(v) => Storage::BF16(copy(v)),
            Storage::I8(v) => Storage::I8(copy(v)),
            Storage::I16(v) => Storage::I16(copy(v)),
            Storage::I32(v) => Storage::I32(copy(v)),
            Storage::I64(v) => Storage::I64(copy(v)),
            Storage::U8(v) => Storage::U8(copy(v)),
            Storage::U16(v) => Storage::U16(copy(v)),
            Storage::U32(v) => Storage::U32(copy(v)),
            Storage::U64(v) => Storage::U64(copy(v)),
            Storage::Bool(v) => Storage::Bool(copy(v)),
            Storage::Bits(v) => Storage::Bits(copy(v)),
            other => other.clone(),
        }
    }
}

/// Elements of a join below which it is copied on the calling thread.
const PARALLEL_JOIN: usize = 1 << 16;

/// Output elements one parallel task of a join copies.
const JOIN_PIECE: usize = 1 << 14;

/// The `count` slices `part(i)`, each split into `outer` equal blocks,
/// joined block by block into a run-arena buffer of `total` elements (the
/// sum of their lengths); large joins are copied in pieces on the
/// current rayon pool's threads.
fn join_blocks<'a, T: Element>(
    count: usize,
    part: impl Fn(usize) -> &'a [T] + Sync,
    outer: usize,
    total: usize,
) -> Vec<T> {
    use rayon::prelude::*;
    let block = |i: usize| part(i).len() / outer.max(1);
    let first = (0..count).find_map(|i| part(i).first().copied());
    let (Some(fill), true) = (
        first,
        total >= PARALLEL_JOIN && rayon::current_num_threads() > 1,
    ) else {
        let mut out = crate::arena::buffer(total);
        for o in 0..outer {
            for i in 0..count {
                out.extend_from_slice(&part(i)[o * block(i)..][..block(i)]);
            }
        }
        return out;
    };
    // Every element is written below: output element `at` is element
    // `off` of block `at / row` of the part whose block spans `off`.
    let mut out = crate::arena::stale(total, fill);
    let row = total / outer.max(1);
    out.par_chunks_mut(JOIN_PIECE)
        .enumerate()
        .for_each(|(piece, mut dst)| {
            let mut at = piece * JOIN_PIECE;
            while !dst.is_empty() {
                let (o, mut off) = (at / row, at % row);
                for i in 0..count {
                    let b = block(i);
                    if off < b {
                        let n = (b - off).min(dst.len());
                        let (head, rest) = dst.split_at_mut(n);
                        head.copy_from_slice(&part(i)[o * b + off..][..n]);
                        dst = rest;
                        at += n;
                        break;
                    }
                    off -= b;
                }
            }
        });
    out
}

/// A numeric (or bool) element type that a [`Tensor`] can hold.
pub trait Element: Copy + Send + Sync + PartialEq + fmt::Debug + 'static {
    /// The ONNX element type.
    const DTYPE: DataType;
    /// Borrows the elements if `storage` holds this type.
    fn slice(storage: &Storage) -> Option<&[Self]>;
    /// Mutably borrows the elements if `storage` holds this type.
    fn slice_mut(storage: &mut Storage) -> Option<&mut [Self]>;
    /// Takes the elements if `storage` holds this type.
    fn take(storage: Storage) -> Option<Vec<Self>>;
    /// Wraps a vector in storage.
    fn store(data: Vec<Self>) -> Storage;
    /// The capacity of the vector inside `storage` if it holds this type.
    fn capacity(storage: &Storage) -> Option<usize>;
}

macro_rules! element {
    ($t:ty, $variant:ident, $dtype:ident) => {
        impl Element for $t {
            const DTYPE: DataType = DataType::$dtype;
            fn slice(storage: &Storage) -> Option<&[Self]> {
                match storage {
                    Storage::$variant(v) => Some(v),
                    _ => None,
                }
            }
            fn slice_mut(storage: &mut Storage) -> Option<&mut [Self]> {
                match storage {
                    Storage::$variant(v) => Some(v),
                    _ => None,
                }
            }
            fn take(storage: Storage) -> Option<Vec<Self>> {
                match storage {
                    Storage::$variant(v) => Some(v),
                    _ => None,
                }
            }
            fn store(data: Vec<Self>) -> Storage {
                Storage::$variant(data)
            }
            fn capacity(storage: &Storage) -> Option<usize> {
                match storage {
                    Storage::$variant(v) => Some(v.capacity()),
                    _ => None,
                }
            }
        }
    };
}

element!(f32, F32, F32);
element!(f64, F64, F64);
element!(f16, F16, F16);
element!(bf16, BF16, BF16);
element!(i8, I8, I8);
element!(i16, I16, I16);
element!(i32, I32, I32);
element!(i64, I64, I64);
element!(u8, U8, U8);
element!(u16, U16, U16);
element!(u32, U32, U32);
element!(u64, U64, U64);
element!(bool, Bool, Bool);

/// A dense row-major tensor in host memory.
#[derive(Clone, PartialEq)]
pub struct Tensor {
    dtype: DataType,
    shape: Vec<usize>,
    storage: Storage,
}

/// Number of elements of `shape`, or `None` on overflow.
pub fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

impl Tensor {
    /// Builds a tensor from a shape and elements; fails if they disagree.
    pub fn from_vec<T: Element>(shape: impl Into<Vec<usize>>, data: Vec<T>) -> Result<Self> {
        Self::from_storage(T::DTYPE, shape.into(), T::store(data))
    }

    /// Builds a string tensor.
    pub fn from_strings(shape: impl Into<Vec<usize>>, data: Vec<String>) -> Result<Self> {
        Self::from_storage(DataType::String, shape.into(), Storage::String(data))
    }

    /// A 0-d tensor holding one value.
    pub fn scalar<T: Element>(value: T) -> Self {
        Self {
            dtype: T::DTYPE,
            shape: Vec::new(),
            storage: T::store(vec![value]),
        }
    }

    /// Builds a tensor from raw parts; fails if the storage variant does not
    /// match `dtype` or its length does not match `shape`.
    pub fn from_storage(dtype: DataType, shape: Vec<usize>, storage: Storage) -> Result<Self> {
        let numel = checked_numel(&shape)
            .ok_or_else(|| Error::invalid(format!("shape {shape:?} overflows usize")))?;
        let ok_variant = match (&storage, dtype) {
            (Storage::Bits(_), d) => d.bits() <= 8 && d.is_float() || d.bits() < 8,
            (s, d) => std::mem::discriminant(s) == std::mem::discriminant(&Storage::zeros(d, 0)),
        };
        if !ok_variant {
            return Err(Error::invalid(format!(
                "storage does not hold {dtype} elements"
            )));
        }
        if storage.len() != numel {
            return Err(Error::invalid(format!(
                "shape {shape:?} needs {numel} elements, got {}",
                storage.len()
            )));
        }
        Ok(Self {
            dtype,
            shape,
            storage,
        })
    }

    /// A tensor of zeros (`false`, empty strings) of the given type and shape.
    pub fn zeros(dtype: DataType, shape: impl Into<Vec<usize>>) -> Result<Self> {
        let shape = shape.into();
        let numel = checked_numel(&shape)
            .ok_or_else(|| Error::invalid(format!("shape {shape:?} overflows usize")))?;
        Ok(Self {
            dtype,
            storage: Storage::zeros(dtype, numel),
            shape,
        })
    }

    /// A copy of the tensor whose buffer comes from the run arena (what
    /// kernels use instead of `clone` for an output that starts as an
    /// input).
    pub fn copied(&self) -> Self {
        Self {
            dtype: self.dtype,
            shape: self.shape.clone(),
            storage: self.storage.copied(),
        }
    }

    /// The elements as raw bytes in host byte order, for types with a fixed
    /// width of at least one byte (`None` for strings and sub-byte types).
    pub fn as_bytes(&self) -> Option<&[u8]> {
        use bytemuck::cast_slice as b;
        Some(match &self.storage {
            Storage::F32(v) => b(v),
            Storage::F64(v) => b(v),
            Storage::F16(v) => b(v),
            Storage::BF16(v) => b(v),
            Storage::I8(v) => b(v),
            Storage::I16(v) => b(v),
            Storage::I32(v) => b(v),
            Storage::I64(v) => b(v),
            Storage::U8(v) => v,
            Storage::U16(v) => b(v),
            Storage::U32(v) => b(v),
            Storage::U64(v) => b(v),
            Storage::Bool(v) => b(v),
            Storage::Complex64(v) => b(v),
            Storage::Complex128(v) => b(v),
            Storage::Bits(v) if self.dtype.bits() == 8 => v,
            Storage::Bits(_) | Storage::String(_) => return None,
        })
    }

    /// Builds a tensor from raw bytes in host byte order (the inverse of
    /// [`Tensor::as_bytes`]); any non-zero byte is `true` for bool.
    pub fn from_bytes(dtype: DataType, shape: impl Into<Vec<usize>>, bytes: &[u8]) -> Result<Self> {
        let mut t = Self::zeros(dtype, shape)?;
        let want = t.as_bytes().map(<[u8]>::len).ok_or_else(|| {
            Error::NotSupported(format!("{dtype} tensors have no fixed-width byte layout"))
        })?;
        if want != bytes.len() {
            return Err(Error::invalid(format!(
                "{dtype} tensor of shape {:?} needs {want} bytes, got {}",
                t.shape,
                bytes.len()
            )));
        }
        use bytemuck::cast_slice_mut as m;
        let dst: &mut [u8] = match &mut t.storage {
            Storage::Bool(v) => {
                for (d, s) in v.iter_mut().zip(bytes) {
                    *d = *s != 0;
                }
                return Ok(t);
            }
            Storage::F32(v) => m(v),
            Storage::F64(v) => m(v),
            Storage::F16(v) => m(v),
            Storage::BF16(v) => m(v),
            Storage::I8(v) => m(v),
            Storage::I16(v) => m(v),
            Storage::I32(v) => m(v),
            Storage::I64(v) => m(v),
            Storage::U8(v) => v,
            Storage::U16(v) => m(v),
            Storage::U32(v) => m(v),
            Storage::U64(v) => m(v),
            Storage::Complex64(v) => m(v),
            Storage::Complex128(v) => m(v),
            Storage::Bits(v) => v,
            // `as_bytes` above already rejected strings.
            Storage::String(_) => {
                return Err(Error::NotSupported(
                    "string tensors have no byte layout".into(),
                ))
            }
        };
        dst.copy_from_slice(bytes);
        Ok(t)
    }

    /// Element type.
    pub fn dtype(&self) -> DataType {
        self.dtype
    }

    /// Dimensions.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.storage.len()
    }

    /// True when the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The typed storage.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Consumes the tensor, returning its storage.
    pub fn into_storage(self) -> Storage {
        self.storage
    }

    /// Borrows the elements as `&[T]`.
    pub fn as_slice<T: Element>(&self) -> Result<&[T]> {
        T::slice(&self.storage).ok_or(Error::TypeMismatch {
            requested: T::DTYPE,
            actual: self.dtype,
        })
    }

    /// Mutably borrows the elements as `&mut [T]`.
    pub fn as_slice_mut<T: Element>(&mut self) -> Result<&mut [T]> {
        let actual = self.dtype;
        T::slice_mut(&mut self.storage).ok_or(Error::TypeMismatch {
            requested: T::DTYPE,
            actual,
        })
    }

    /// Consumes the tensor, returning its elements.
    pub fn into_vec<T: Element>(self) -> Result<Vec<T>> {
        let actual = self.dtype;
        T::take(self.storage).ok_or(Error::TypeMismatch {
            requested: T::DTYPE,
            actual,
        })
    }

    /// Borrows string elements.
    pub fn as_strings(&self) -> Result<&[String]> {
        match &self.storage {
            Storage::String(v) => Ok(v),
            _ => Err(Error::TypeMismatch {
                requested: DataType::String,
                actual: self.dtype,
            }),
        }
    }

    /// The elements as `f64` for every real numeric type (floats and
    /// integers); `None` for bool, string, complex and the sub-byte formats.
    pub fn to_f64_vec(&self) -> Option<Vec<f64>> {
        fn conv<T: Copy>(v: &[T], f: impl Fn(T) -> f64) -> Option<Vec<f64>> {
            Some(v.iter().map(|&x| f(x)).collect())
        }
        match &self.storage {
            Storage::F32(v) => conv(v, f64::from),
            Storage::F64(v) => Some(v.clone()),
            Storage::F16(v) => conv(v, f64::from),
            Storage::BF16(v) => conv(v, f64::from),
            Storage::I8(v) => conv(v, f64::from),
            Storage::I16(v) => conv(v, f64::from),
            Storage::I32(v) => conv(v, f64::from),
            Storage::I64(v) => conv(v, |x| x as f64),
            Storage::U8(v) => conv(v, f64::from),
            Storage::U16(v) => conv(v, f64::from),
            Storage::U32(v) => conv(v, f64::from),
            Storage::U64(v) => conv(v, |x| x as f64),
            _ => None,
        }
    }

    /// Same data with a new shape of equal element count.
    pub fn reshape(mut self, shape: impl Into<Vec<usize>>) -> Result<Self> {
        let shape = shape.into();
        if checked_numel(&shape) != Some(self.len()) {
            return Err(Error::invalid(format!(
                "cannot reshape {:?} ({} elements) to {shape:?}",
                self.shape,
                self.len()
            )));
        }
        self.shape = shape;
        Ok(self)
    }

    /// A read-only ndarray view.
    pub fn view<T: Element>(&self) -> Result<ArrayViewD<'_, T>> {
        let data = self.as_slice::<T>()?;
        ArrayViewD::from_shape(IxDyn(&self.shape), data)
            .map_err(|e| Error::invalid(format!("ndarray view: {e}")))
    }

    /// Converts into an owned ndarray.
    pub fn into_array<T: Element>(self) -> Result<ArrayD<T>> {
        let shape = self.shape.clone();
        let data = self.into_vec::<T>()?;
        ArrayD::from_shape_vec(IxDyn(&shape), data)
            .map_err(|e| Error::invalid(format!("ndarray conversion: {e}")))
    }

    /// Converts an ndarray (any layout) into a tensor.
    pub fn from_array<T: Element, D: ndarray::Dimension>(array: ndarray::Array<T, D>) -> Self {
        let shape = array.shape().to_vec();
        let data = if array.is_standard_layout() {
            array.into_raw_vec_and_offset().0
        } else {
            array.iter().copied().collect()
        };
        Self {
            dtype: T::DTYPE,
            shape,
            storage: T::store(data),
        }
    }
}

impl<T: Element, D: ndarray::Dimension> From<ndarray::Array<T, D>> for Tensor {
    fn from(array: ndarray::Array<T, D>) -> Self {
        Tensor::from_array(array)
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor<{}>{:?}", self.dtype, self.shape)?;
        let n = self.len().min(8);
        let more = if self.len() > n { ", ..." } else { "" };
        match &self.storage {
            Storage::F32(v) => write!(f, " {:?}{more}", &v[..n]),
            Storage::F64(v) => write!(f, " {:?}{more}", &v[..n]),
            Storage::I64(v) => write!(f, " {:?}{more}", &v[..n]),
            Storage::I32(v) => write!(f, " {:?}{more}", &v[..n]),
            Storage::Bool(v) => write!(f, " {:?}{more}", &v[..n]),
            Storage::String(v) => write!(f, " {:?}{more}", &v[..n]),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn construction_checks_length() {
        let t = Tensor::from_vec(vec![2, 3], vec![1.0f32; 6]).unwrap();
        assert_eq!(t.shape(), &[2, 3]);
        assert_eq!(t.dtype(), DataType::F32);
        assert!(Tensor::from_vec(vec![2, 3], vec![1.0f32; 5]).is_err());
        assert!(Tensor::from_vec(vec![usize::MAX, 3], vec![1.0f32; 5]).is_err());
    }

    #[test]
    fn typed_access_checks_dtype() {
        let t = Tensor::from_vec(vec![2], vec![1i64, 2]).unwrap();
        assert_eq!(t.as_slice::<i64>().unwrap(), &[1, 2]);
        let err = t.as_slice::<f32>().unwrap_err();
        assert!(matches!(
            err,
            Error::TypeMismatch {
                requested: DataType::F32,
                actual: DataType::I64
            }
        ));
    }

    #[test]
    fn storage_must_match_dtype() {
        assert!(Tensor::from_storage(DataType::F64, vec![1], Storage::F32(vec![1.0])).is_err());
        assert!(Tensor::from_storage(DataType::I4, vec![2], Storage::Bits(vec![1, 2])).is_ok());
        assert!(Tensor::from_storage(DataType::F32, vec![1], Storage::Bits(vec![1])).is_err());
    }

    #[test]
    fn ndarray_round_trip_including_non_standard_layout() {
        let a =
            ndarray::Array2::from_shape_vec((2, 3), (0..6).map(|x| x as f32).collect()).unwrap();
        let t = Tensor::from_array(a.clone().reversed_axes());
        assert_eq!(t.shape(), &[3, 2]);
        assert_eq!(
            t.as_slice::<f32>().unwrap(),
            &[0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
        );
        let back = Tensor::from(a.clone()).into_array::<f32>().unwrap();
        assert_eq!(back, a.into_dyn());
    }

    #[test]
    fn reshape_keeps_data() {
        let t = Tensor::from_vec(vec![6], vec![1u8, 2, 3, 4, 5, 6]).unwrap();
        let r = t.reshape(vec![3, 2]).unwrap();
        assert_eq!(r.shape(), &[3, 2]);
        assert!(r.reshape(vec![4]).is_err());
    }
}

#[cfg(test)]
mod storage_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn gather_and_concat() {
        let s = Storage::String(vec!["a".into(), "b".into(), "c".into()]);
        assert_eq!(
            s.gather(&[2, 0]).unwrap(),
            Storage::String(vec!["c".into(), "a".into()])
        );
        assert!(s.gather(&[3]).is_err());
        let a = Storage::I32(vec![1, 2]);
        let b = Storage::I32(vec![3]);
        assert_eq!(
            Storage::concat(&[&a, &b]).unwrap(),
            Storage::I32(vec![1, 2, 3])
        );
        assert!(Storage::concat(&[&a, &s]).is_err());
    }

    #[test]
    fn large_joins_copied_in_parallel_match_the_sequential_order() {
        // Three parts (one empty) of 1 and of 7 blocks, over 2 threads:
        // pieces of the output straddle block and part boundaries.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for (outer, blocks) in [(1, [40_000usize, 0, 50_001]), (7, [3001, 0, 6999])] {
            let parts: Vec<Vec<f32>> = blocks
                .iter()
                .enumerate()
                .map(|(p, &b)| (0..b * outer).map(|i| (p * 1_000_000 + i) as f32).collect())
                .collect();
            let storages: Vec<Storage> = parts.iter().map(|v| Storage::F32(v.clone())).collect();
            let refs: Vec<&Storage> = storages.iter().collect();
            let joined = pool
                .install(|| Storage::concat_blocks(&refs, outer))
                .unwrap();
            let mut want = Vec::new();
            for o in 0..outer {
                for v in &parts {
                    let b = v.len() / outer;
                    want.extend_from_slice(&v[o * b..][..b]);
                }
            }
            assert!(want.len() >= PARALLEL_JOIN);
            assert_eq!(joined, Storage::F32(want), "outer {outer}");
        }
    }

    #[test]
    fn concat_blocks_joins_block_by_block() {
        // Two blocks each: [1 2 | 3 4] and [5 | 6] -> 1 2 5 3 4 6.
        let a = Storage::F32(vec![1.0, 2.0, 3.0, 4.0]);
        let b = Storage::F32(vec![5.0, 6.0]);
        assert_eq!(
            Storage::concat_blocks(&[&a, &b], 2).unwrap(),
            Storage::F32(vec![1.0, 2.0, 5.0, 3.0, 4.0, 6.0])
        );
        let s = Storage::String(vec!["x".into(), "y".into()]);
        let t = Storage::String(vec!["z".into(), "w".into()]);
        assert_eq!(
            Storage::concat_blocks(&[&s, &t], 2).unwrap(),
            Storage::String(vec!["x".into(), "z".into(), "y".into(), "w".into()])
        );
        let e = Storage::concat_blocks(&[&a, &Storage::F32(vec![1.0])], 2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("do not split into 2 blocks"), "{e}");
        assert!(Storage::concat_blocks(&[&a, &Storage::I32(vec![1, 2])], 2).is_err());
        assert_eq!(
            Storage::concat_blocks(&[&Storage::F32(vec![])], 0).unwrap(),
            Storage::F32(vec![])
        );
    }
}

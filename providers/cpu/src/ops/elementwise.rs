//! Binary and variadic arithmetic with numpy broadcasting: Add, Sub, Mul,
//! Div, Pow, Mod, Max, Min, Sum, Mean, BitShift, BitwiseAnd/Or/Xor.

use oxrt_core::{
    DataType as D, Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor,
};

use crate::broadcast::binary;
use crate::kernel::{
    required, unsupported_type, with_float_type, with_int_type, with_numeric_type, Arith,
};
use crate::ops::cast::cast;

/// Element types of the arithmetic operators.
pub const NUMERIC: &[D] = &[
    D::F32,
    D::F64,
    D::F16,
    D::BF16,
    D::I8,
    D::I16,
    D::I32,
    D::I64,
    D::U8,
    D::U16,
    D::U32,
    D::U64,
];

/// Integer element types.
pub const INTEGERS: &[D] = &[D::I8, D::I16, D::I32, D::I64, D::U8, D::U16, D::U32, D::U64];

const UNSIGNED: &[D] = &[D::U8, D::U16, D::U32, D::U64];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    /// Max and Min propagate NaN, as numpy's `maximum`/`minimum` do.
    Max,
    Min,
    Mod {
        fmod: bool,
    },
    BitwiseAnd,
    BitwiseOr,
    BitwiseXor,
    ShiftLeft,
    ShiftRight,
}

/// Remainder with ONNX `Mod` semantics: `fmod` takes the dividend's sign
/// (C `fmod`), otherwise the divisor's (Python `%`).
trait Modulo: Sized {
    fn modulo(self, o: Self, fmod: bool) -> Result<Self>;
}

macro_rules! modulo_int {
    ($($t:ty),*) => {$(
        impl Modulo for $t {
            fn modulo(self, o: Self, fmod: bool) -> Result<Self> {
                if o == 0 {
                    return Err(Error::invalid("integer modulo by zero"));
                }
                let r = self.wrapping_rem(o);
                #[allow(unused_comparisons)]
                let adjust = !fmod && r != 0 && ((r < 0) != (o < 0));
                Ok(if adjust { r.wrapping_add(o) } else { r })
            }
        }
    )*};
}
modulo_int!(i8, i16, i32, i64, u8, u16, u32, u64);

macro_rules! modulo_float {
    ($($t:ty),*) => {$(
        impl Modulo for $t {
            fn modulo(self, o: Self, fmod: bool) -> Result<Self> {
                let (x, y) = (f64::from(self), f64::from(o));
                let r = x % y;
                let r = if !fmod && r != 0.0 && ((r < 0.0) != (y < 0.0)) { r + y } else { r };
                Ok(<$t as num_traits::NumCast>::from(r).unwrap_or(<$t as num_traits::Float>::nan()))
            }
        }
    )*};
}
modulo_float!(f32, f64, oxrt_core::f16, oxrt_core::bf16);

/// Bit operations of the integer types.
trait Bitwise: Sized {
    fn bit(self, o: Self, op: Op) -> Self;
}

macro_rules! bitwise {
    ($($t:ty),*) => {$(
        impl Bitwise for $t {
            fn bit(self, o: Self, op: Op) -> Self {
                // Shifting by the bit width or more gives 0, as in ONNX Runtime.
                let shift = u32::try_from(o).ok().filter(|&s| s < <$t>::BITS);
                match op {
                    Op::BitwiseAnd => self & o,
                    Op::BitwiseOr => self | o,
                    Op::BitwiseXor => self ^ o,
                    Op::ShiftLeft => shift.map_or(0, |s| self << s),
                    _ => shift.map_or(0, |s| self >> s),
                }
            }
        }
    )*};
}
bitwise!(i8, i16, i32, i64, u8, u16, u32, u64);

fn arith<T: Arith + PartialOrd + Modulo>(op: Op, x: T, y: T) -> Result<T> {
    // `v != v` holds only for NaN, so integers never take those branches.
    #[allow(clippy::eq_op)]
    let nan = |v: T| v != v;
    Ok(match op {
        Op::Add => x.add(y),
        Op::Sub => x.sub(y),
        Op::Mul => x.mul(y),
        Op::Div => x.div(y)?,
        Op::Max if nan(x) || x >= y => x,
        Op::Min if nan(x) || x <= y => x,
        Op::Max | Op::Min => y,
        Op::Mod { fmod } => x.modulo(y, fmod)?,
        _ => return Err(Error::NotSupported(format!("{op:?} on this type"))),
    })
}

/// Applies `op` to two broadcast tensors of one element type.
fn apply(op: Op, name: &str, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.dtype() != b.dtype() {
        return Err(Error::invalid(format!(
            "{name} needs inputs of one element type, got {} and {}",
            a.dtype(),
            b.dtype()
        )));
    }
    let bitwise = matches!(
        op,
        Op::BitwiseAnd | Op::BitwiseOr | Op::BitwiseXor | Op::ShiftLeft | Op::ShiftRight
    );
    if bitwise {
        return with_int_type!(a.dtype(), T => {
            let (shape, out) = binary(a.as_slice::<T>()?, a.shape(), b.as_slice::<T>()?, b.shape(), |x, y| Ok(x.bit(y, op)))?;
            Tensor::from_vec(shape, out)
        }, _ => Err(unsupported_type(name, a)));
    }
    with_numeric_type!(a.dtype(), T => {
        let (shape, out) = binary(a.as_slice::<T>()?, a.shape(), b.as_slice::<T>()?, b.shape(), |x, y| arith(op, x, y))?;
        Tensor::from_vec(shape, out)
    }, _ => Err(unsupported_type(name, a)))
}

/// A binary operator, or a variadic one folded over its inputs.
struct Elementwise {
    op: Op,
    name: &'static str,
    /// Mean: divide the sum by the input count.
    mean: bool,
}

impl Kernel for Elementwise {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let parts: Vec<&Tensor> = inputs.iter().flatten().copied().collect();
        // A binary op whose second operand covers a block of the first's
        // axes (bias, per-channel scale): a copy of the first, updated.
        if let ([a, b], false, false) = (parts.as_slice(), self.mean, self.bitwise()) {
            let numeric =
                a.dtype() != oxrt_core::DataType::Bool && a.dtype() != oxrt_core::DataType::String;
            if numeric
                && a.dtype() == b.dtype()
                && blocked_broadcast(a.shape(), b.shape()).is_some()
            {
                return self.compute_in_place(a.copied(), &[None, Some(b)]);
            }
        }
        self.compute_general(inputs)
    }

    fn in_place_input(&self) -> Option<usize> {
        (!self.mean).then_some(0)
    }

    /// `a op= b` when `a` already has the output's shape and `b` repeats
    /// along `a`'s leading axes (same shape, a scalar, or trailing axes);
    /// otherwise computes normally.
    fn compute_in_place(
        &self,
        mut owned: Tensor,
        inputs: &[Option<&Tensor>],
    ) -> Result<Vec<Tensor>> {
        let others: Vec<&Tensor> = inputs.iter().skip(1).flatten().copied().collect();
        if let ([b], false) = (others.as_slice(), self.bitwise()) {
            if let Some(block) =
                blocked_broadcast(owned.shape(), b.shape()).filter(|_| b.dtype() == owned.dtype())
            {
                let op = self.op;
                with_numeric_type!(owned.dtype(), T => {
                    apply_blocked(op, owned.as_slice_mut::<T>()?, b.as_slice::<T>()?, block)?;
                    return Ok(vec![owned]);
                }, _ => {});
            }
        }
        // The general path (which must not come back here).
        let mut all = inputs.to_vec();
        all[0] = Some(&owned);
        self.compute_general(&all)
    }
}

impl Elementwise {
    /// Folds the operator over the inputs with numpy broadcasting.
    fn compute_general(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let parts: Vec<&Tensor> = inputs.iter().flatten().copied().collect();
        let (first, rest) = parts
            .split_first()
            .ok_or_else(|| Error::invalid(format!("{} needs at least one input", self.name)))?;
        let mut acc = first.copied();
        for p in rest {
            acc = apply(self.op, self.name, &acc, p)?;
        }
        if self.mean {
            with_float_type!(acc.dtype(), T => {
                let n: T = num_traits::cast(parts.len()).ok_or_else(|| Error::invalid("too many inputs"))?;
                let v: Vec<T> = acc.as_slice::<T>()?.iter().map(|&x| x / n).collect();
                acc = Tensor::from_vec(acc.shape(), v)?;
            }, _ => return Err(unsupported_type("Mean", &acc)));
        }
        Ok(vec![acc])
    }

    fn bitwise(&self) -> bool {
        matches!(
            self.op,
            Op::BitwiseAnd | Op::BitwiseOr | Op::BitwiseXor | Op::ShiftLeft | Op::ShiftRight
        )
    }
}

/// When `b` broadcasts to `a`'s shape by covering one block of `a`'s axes
/// (its dims equal `a`'s there and are 1 elsewhere: a suffix, a
/// per-channel `[C, 1, 1]`, a scalar...), `(mid, inner)`: `b` has `mid`
/// values, each used for `inner` consecutive elements of `a`, cycling.
fn blocked_broadcast(a: &[usize], b: &[usize]) -> Option<(usize, usize)> {
    if b.len() > a.len() || b.contains(&0) || a.contains(&0) {
        return None;
    }
    let pad = a.len() - b.len();
    let dim = |i: usize| if i < pad { 1 } else { b[i - pad] };
    let non_one: Vec<usize> = (0..a.len()).filter(|&i| dim(i) != 1).collect();
    let (Some(&first), Some(&last)) = (non_one.first(), non_one.last()) else {
        // All ones: one value for everything.
        return Some((1, a.iter().product()));
    };
    if (first..=last).any(|i| dim(i) != a[i]) {
        return None;
    }
    Some((
        a[first..=last].iter().product(),
        a[last + 1..].iter().product(),
    ))
}

/// `a[i] = op(a[i], b[...])` for a `b` that [`blocked_broadcast`]s into `a`.
fn apply_blocked<T: Arith + PartialOrd + Modulo>(
    op: Op,
    a: &mut [T],
    b: &[T],
    (mid, inner): (usize, usize),
) -> Result<()> {
    if inner == 1 {
        for chunk in a.chunks_mut(mid.max(1)) {
            for (x, &y) in chunk.iter_mut().zip(b) {
                *x = arith(op, *x, y)?;
            }
        }
        return Ok(());
    }
    for (k, chunk) in a.chunks_mut(inner).enumerate() {
        let y = b[k % mid.max(1)];
        for x in chunk.iter_mut() {
            *x = arith(op, *x, y)?;
        }
    }
    Ok(())
}

/// `Pow`: the base's element type, any numeric exponent type.
struct Pow;

impl Kernel for Pow {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let (x, y) = (required(inputs, 0)?, required(inputs, 1)?);
        let as_int = |t: &Tensor| cast(t, D::I64).and_then(|c| c.into_vec::<i64>());
        let out = if x.dtype().is_integer() && y.dtype().is_integer() {
            let (shape, v) = binary(&as_int(x)?, x.shape(), &as_int(y)?, y.shape(), |b, e| {
                u32::try_from(e)
                    .map(|e| b.wrapping_pow(e))
                    .map_err(|_| Error::invalid(format!("integer Pow with negative exponent {e}")))
            })?;
            Tensor::from_vec(shape, v)?
        } else {
            let f = |t: &Tensor| t.to_f64_vec().ok_or_else(|| unsupported_type("Pow", t));
            let (shape, v) = binary(&f(x)?, x.shape(), &f(y)?, y.shape(), |b, e| Ok(b.powf(e)))?;
            Tensor::from_vec(shape, v)?
        };
        Ok(vec![cast(&out, x.dtype())?])
    }
}

fn create(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    if node.int_or("broadcast", 0)? != 0 || node.attributes.contains_key("axis") {
        return Err(Error::NotSupported(
            "the legacy 'broadcast'/'axis' attributes (opset < 7)".into(),
        ));
    }
    let (op, name, mean) = match node.op_type.as_str() {
        "Add" => (Op::Add, "Add", false),
        "Sub" => (Op::Sub, "Sub", false),
        "Mul" => (Op::Mul, "Mul", false),
        "Div" => (Op::Div, "Div", false),
        "Max" => (Op::Max, "Max", false),
        "Min" => (Op::Min, "Min", false),
        "Sum" => (Op::Add, "Sum", false),
        "Mean" => (Op::Add, "Mean", true),
        "Mod" => (
            Op::Mod {
                fmod: node.int_or("fmod", 0)? != 0,
            },
            "Mod",
            false,
        ),
        "BitwiseAnd" => (Op::BitwiseAnd, "BitwiseAnd", false),
        "BitwiseOr" => (Op::BitwiseOr, "BitwiseOr", false),
        "BitwiseXor" => (Op::BitwiseXor, "BitwiseXor", false),
        "BitShift" => match node.string_or("direction", "")? {
            "LEFT" => (Op::ShiftLeft, "BitShift", false),
            "RIGHT" => (Op::ShiftRight, "BitShift", false),
            other => {
                return Err(Error::invalid(format!(
                    "BitShift direction must be LEFT or RIGHT, got '{other}'"
                )))
            }
        },
        other => return Err(Error::NotSupported(format!("elementwise operator {other}"))),
    };
    Ok(Box::new(Elementwise { op, name, mean }))
}

fn create_pow(_: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(Pow))
}

/// Registers the arithmetic operators (numpy broadcasting since opset 7;
/// variadic ones since opset 8).
pub fn register(reg: &mut KernelRegistry) {
    for op in ["Add", "Sub", "Mul", "Div", "Mod"] {
        reg.add(KernelDef::new(op, 7.., NUMERIC, create));
    }
    for op in ["Max", "Min", "Sum", "Mean"] {
        reg.add(KernelDef::new(op, 8.., NUMERIC, create));
    }
    for op in ["BitwiseAnd", "BitwiseOr", "BitwiseXor"] {
        reg.add(KernelDef::new(op, 18.., INTEGERS, create));
    }
    reg.add(KernelDef::new("BitShift", 11.., UNSIGNED, create));
    reg.add(KernelDef::new("Pow", 7.., NUMERIC, create_pow));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn blocked_broadcasts() {
        assert_eq!(blocked_broadcast(&[2, 3, 4], &[2, 3, 4]), Some((24, 1)));
        assert_eq!(blocked_broadcast(&[2, 3, 4], &[4]), Some((4, 1)));
        assert_eq!(blocked_broadcast(&[2, 3, 4], &[1, 3, 4]), Some((12, 1)));
        assert_eq!(blocked_broadcast(&[2, 3, 4], &[1]), Some((1, 24)));
        assert_eq!(blocked_broadcast(&[2, 3, 4], &[]), Some((1, 24)));
        // Per channel: 3 values, each for 4 elements.
        assert_eq!(blocked_broadcast(&[2, 3, 4], &[3, 1]), Some((3, 4)));
        assert_eq!(
            blocked_broadcast(&[2, 3, 4, 5], &[1, 3, 1, 1]),
            Some((3, 20))
        );
        // Two separate blocks, or a bigger b: the general path.
        assert_eq!(blocked_broadcast(&[2, 3, 4], &[2, 1, 4]), None);
        assert_eq!(blocked_broadcast(&[3, 4], &[2, 3, 4]), None);
        assert_eq!(blocked_broadcast(&[2, 3, 4], &[0]), None);
    }

    #[test]
    fn blocked_updates_match_general_broadcasting() {
        let a = Tensor::from_vec(vec![2, 3, 2], (0..12).map(|v| v as f32).collect()).unwrap();
        for b_shape in [vec![3, 1], vec![1, 3, 1], vec![2], vec![1], vec![2, 3, 2]] {
            let n: usize = b_shape.iter().product();
            let b = Tensor::from_vec(
                b_shape.clone(),
                (0..n).map(|v| v as f32 * 0.5 + 1.0).collect(),
            )
            .unwrap();
            for op in [Op::Add, Op::Sub, Op::Mul] {
                let general = apply(op, "op", &a, &b).unwrap();
                let mut fast = a.clone();
                let block = blocked_broadcast(a.shape(), b.shape()).unwrap();
                apply_blocked(
                    op,
                    fast.as_slice_mut::<f32>().unwrap(),
                    b.as_slice::<f32>().unwrap(),
                    block,
                )
                .unwrap();
                assert_eq!(fast, general, "{b_shape:?} {op:?}");
            }
        }
    }

    fn t<T: oxrt_core::Element>(v: Vec<T>) -> Tensor {
        Tensor::from_vec(vec![v.len()], v).unwrap()
    }

    #[test]
    fn modulo_follows_divisor_or_dividend_sign() {
        let (a, b) = (t(vec![-4i32, 7, 5, -5]), t(vec![3i32, -3, 3, -3]));
        let m = apply(Op::Mod { fmod: false }, "Mod", &a, &b).unwrap();
        assert_eq!(m.as_slice::<i32>().unwrap(), &[2, -2, 2, -2]);
        let f = apply(Op::Mod { fmod: true }, "Mod", &a, &b).unwrap();
        assert_eq!(f.as_slice::<i32>().unwrap(), &[-1, 1, 2, -2]);
        let x = apply(
            Op::Mod { fmod: true },
            "Mod",
            &t(vec![-4.5f32]),
            &t(vec![2.0f32]),
        )
        .unwrap();
        assert_eq!(x.as_slice::<f32>().unwrap(), &[-0.5]);
        assert!(apply(Op::Mod { fmod: false }, "Mod", &t(vec![1u8]), &t(vec![0u8])).is_err());
    }

    #[test]
    fn variadic_max_min_mean_and_nan() {
        let k = Elementwise {
            op: Op::Max,
            name: "Max",
            mean: false,
        };
        let (a, b, c) = (
            t(vec![1.0f32, f32::NAN, 3.0]),
            t(vec![2.0f32, 1.0, 0.0]),
            t(vec![0.5f32]),
        );
        let out = k.compute(&[Some(&a), Some(&b), Some(&c)]).unwrap();
        let v = out[0].as_slice::<f32>().unwrap();
        assert_eq!((v[0], v[2]), (2.0, 3.0));
        assert!(v[1].is_nan());
        let mean = Elementwise {
            op: Op::Add,
            name: "Mean",
            mean: true,
        };
        let m = mean.compute(&[Some(&b), Some(&c)]).unwrap();
        assert_eq!(m[0].as_slice::<f32>().unwrap(), &[1.25, 0.75, 0.25]);
    }

    #[test]
    fn bits_and_pow() {
        let s = apply(
            Op::ShiftLeft,
            "BitShift",
            &t(vec![16u8, 1, 1]),
            &t(vec![1u8, 7, 8]),
        )
        .unwrap();
        assert_eq!(s.as_slice::<u8>().unwrap(), &[32, 128, 0]);
        let x = apply(
            Op::BitwiseXor,
            "BitwiseXor",
            &t(vec![0b1100i16]),
            &t(vec![0b1010i16]),
        )
        .unwrap();
        assert_eq!(x.as_slice::<i16>().unwrap(), &[0b0110]);
        let p = Pow
            .compute(&[Some(&t(vec![2i64, 3])), Some(&t(vec![10i32, 3]))])
            .unwrap();
        assert_eq!(p[0].as_slice::<i64>().unwrap(), &[1024, 27]);
        let p = Pow
            .compute(&[Some(&t(vec![4.0f32])), Some(&t(vec![0.5f64]))])
            .unwrap();
        assert_eq!(p[0].as_slice::<f32>().unwrap(), &[2.0]);
    }
}

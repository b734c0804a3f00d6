//! Elementwise unary math: Abs, Neg, Sign, Ceil, Floor, Round, Reciprocal,
//! Sqrt, Exp, Log, Erf, the trigonometric and hyperbolic functions and their
//! inverses, IsNaN, IsInf, Not and BitwiseNot.

use oxrt_core::{
    DataType as D, Element, Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result,
    Tensor,
};

use crate::kernel::{required, unsupported_type, with_float_type, Real};
use crate::ops::activation::{FLOATS, SIGNED_AND_FLOATS};
use crate::ops::elementwise::{INTEGERS, NUMERIC};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Abs,
    Neg,
    Sign,
    Ceil,
    Floor,
    Round,
    Reciprocal,
    Sqrt,
    Exp,
    Log,
    Erf,
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Asinh,
    Acosh,
    Atanh,
    IsNaN,
    IsInf { negative: bool, positive: bool },
    Not,
    BitwiseNot,
}

/// Applies `f` to every element of `x`.
pub fn map<T: Element, U: Element>(x: &Tensor, f: impl Fn(T) -> U) -> Result<Tensor> {
    Tensor::from_vec(
        x.shape(),
        x.as_slice::<T>()?.iter().map(|&v| f(v)).collect(),
    )
}

/// Rounds half to even, as numpy (`rint`) and ONNX `Round` do.
pub(crate) fn round_half_even<T: Real>(v: T) -> T {
    let r = v.round();
    let half = T::one() / (T::one() + T::one());
    if (v - v.trunc()).abs() == half {
        let two = T::one() + T::one();
        (v / two).round() * two
    } else {
        r
    }
}

fn float_op<T: Real>(op: Op, v: T) -> T {
    let via_f64 =
        |f: fn(f64) -> f64| T::from(f(v.to_f64().unwrap_or(f64::NAN))).unwrap_or(T::nan());
    match op {
        Op::Abs => v.abs(),
        Op::Neg => -v,
        Op::Sign => {
            if v.is_nan() {
                v
            } else if v > T::zero() {
                T::one()
            } else if v < T::zero() {
                -T::one()
            } else {
                T::zero()
            }
        }
        Op::Ceil => v.ceil(),
        Op::Floor => v.floor(),
        Op::Round => round_half_even(v),
        Op::Reciprocal => v.recip(),
        Op::Sqrt => v.sqrt(),
        Op::Exp => v.exp(),
        Op::Log => v.ln(),
        Op::Erf => via_f64(libm::erf),
        Op::Sin => v.sin(),
        Op::Cos => v.cos(),
        Op::Tan => v.tan(),
        Op::Asin => v.asin(),
        Op::Acos => v.acos(),
        Op::Atan => v.atan(),
        Op::Sinh => v.sinh(),
        Op::Cosh => v.cosh(),
        Op::Asinh => v.asinh(),
        Op::Acosh => v.acosh(),
        Op::Atanh => v.atanh(),
        // Predicates and bit operations are dispatched before this point.
        Op::IsNaN | Op::IsInf { .. } | Op::Not | Op::BitwiseNot => v,
    }
}

/// Abs, Neg, Sign and BitwiseNot on integers (`None`: not an integer tensor).
fn int_op(op: Op, x: &Tensor) -> Option<Result<Tensor>> {
    macro_rules! signed {
        ($($t:ty),*) => {$(
            if x.dtype() == <$t as Element>::DTYPE {
                return Some(match op {
                    Op::Abs => map(x, |v: $t| v.wrapping_abs()),
                    Op::Neg => map(x, |v: $t| v.wrapping_neg()),
                    Op::Sign => map(x, |v: $t| v.signum()),
                    Op::BitwiseNot => map(x, |v: $t| !v),
                    _ => Err(unsupported_type(&format!("{op:?}"), x)),
                });
            }
        )*};
    }
    macro_rules! unsigned {
        ($($t:ty),*) => {$(
            if x.dtype() == <$t as Element>::DTYPE {
                return Some(match op {
                    Op::Abs => map(x, |v: $t| v),
                    Op::Sign => map(x, |v: $t| v.min(1)),
                    Op::BitwiseNot => map(x, |v: $t| !v),
                    _ => Err(unsupported_type(&format!("{op:?}"), x)),
                });
            }
        )*};
    }
    signed!(i8, i16, i32, i64);
    unsigned!(u8, u16, u32, u64);
    None
}

struct Unary {
    op: Op,
}

impl Kernel for Unary {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let name = format!("{:?}", self.op);
        let out = match self.op {
            Op::Not => map(x, |v: bool| !v)?,
            Op::IsNaN => with_float_type!(x.dtype(), T => map(x, |v: T| v.is_nan())?,
                _ => return Err(unsupported_type("IsNaN", x))),
            Op::IsInf { negative, positive } => with_float_type!(x.dtype(), T => map(x, |v: T| {
                v.is_infinite() && ((v.is_sign_positive() && positive) || (v.is_sign_negative() && negative))
            })?, _ => return Err(unsupported_type("IsInf", x))),
            op => match int_op(op, x) {
                Some(r) => r?,
                None => with_float_type!(x.dtype(), T => map(x, |v: T| float_op(op, v))?,
                    _ => return Err(unsupported_type(&name, x))),
            },
        };
        Ok(vec![out])
    }

    /// Float math overwrites its input; predicates make booleans.
    fn in_place_input(&self) -> Option<usize> {
        (!matches!(self.op, Op::IsNaN | Op::IsInf { .. } | Op::Not)).then_some(0)
    }

    fn compute_in_place(
        &self,
        mut owned: Tensor,
        inputs: &[Option<&Tensor>],
    ) -> Result<Vec<Tensor>> {
        let op = self.op;
        if owned.dtype().is_float() && self.in_place_input().is_some() {
            with_float_type!(owned.dtype(), T => {
                owned.as_slice_mut::<T>()?.iter_mut().for_each(|v| *v = float_op(op, *v));
                return Ok(vec![owned]);
            }, _ => {});
        }
        let mut all = inputs.to_vec();
        all[0] = Some(&owned);
        self.compute(&all)
    }
}

fn create(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let op = match node.op_type.as_str() {
        "Abs" => Op::Abs,
        "Neg" => Op::Neg,
        "Sign" => Op::Sign,
        "Ceil" => Op::Ceil,
        "Floor" => Op::Floor,
        "Round" => Op::Round,
        "Reciprocal" => Op::Reciprocal,
        "Sqrt" => Op::Sqrt,
        "Exp" => Op::Exp,
        "Log" => Op::Log,
        "Erf" => Op::Erf,
        "Sin" => Op::Sin,
        "Cos" => Op::Cos,
        "Tan" => Op::Tan,
        "Asin" => Op::Asin,
        "Acos" => Op::Acos,
        "Atan" => Op::Atan,
        "Sinh" => Op::Sinh,
        "Cosh" => Op::Cosh,
        "Asinh" => Op::Asinh,
        "Acosh" => Op::Acosh,
        "Atanh" => Op::Atanh,
        "IsNaN" => Op::IsNaN,
        "IsInf" => Op::IsInf {
            negative: node.int_or("detect_negative", 1)? != 0,
            positive: node.int_or("detect_positive", 1)? != 0,
        },
        "Not" => Op::Not,
        "BitwiseNot" => Op::BitwiseNot,
        other => return Err(Error::NotSupported(format!("unary operator {other}"))),
    };
    Ok(Box::new(Unary { op }))
}

/// Registers the unary operators.
pub fn register(reg: &mut KernelRegistry) {
    let float_ops = [
        "Ceil",
        "Floor",
        "Round",
        "Reciprocal",
        "Sqrt",
        "Exp",
        "Log",
        "Erf",
        "Sin",
        "Cos",
        "Tan",
        "Asin",
        "Acos",
        "Atan",
        "Sinh",
        "Cosh",
        "Asinh",
        "Acosh",
        "Atanh",
        "IsNaN",
        "IsInf",
    ];
    for op in float_ops {
        reg.add(KernelDef::new(op, 1.., FLOATS, create));
    }
    reg.add(KernelDef::new("Abs", 1.., NUMERIC, create));
    reg.add(KernelDef::new("Sign", 9.., NUMERIC, create));
    reg.add(KernelDef::new("Neg", 1.., SIGNED_AND_FLOATS, create));
    reg.add(KernelDef::new("Not", 1.., &[D::Bool], create));
    reg.add(KernelDef::new("BitwiseNot", 18.., INTEGERS, create));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn run(op: Op, x: Tensor) -> Tensor {
        Unary { op }.compute(&[Some(&x)]).unwrap().remove(0)
    }

    #[test]
    fn float_functions_match_reference_values() {
        let x = Tensor::from_vec(vec![5], vec![-2.5f32, -0.5, 0.5, 1.5, 2.5]).unwrap();
        assert_eq!(
            run(Op::Round, x.clone()).as_slice::<f32>().unwrap(),
            &[-2.0, -0.0, 0.0, 2.0, 2.0]
        );
        assert_eq!(
            run(Op::Sign, x.clone()).as_slice::<f32>().unwrap(),
            &[-1.0, -1.0, 1.0, 1.0, 1.0]
        );
        let e = run(
            Op::Erf,
            Tensor::from_vec(vec![2], vec![0.5f64, -1.0]).unwrap(),
        );
        let e = e.as_slice::<f64>().unwrap();
        assert!((e[0] - 0.520_499_877_813_046_5).abs() < 1e-15);
        assert!((e[1] + 0.842_700_792_949_714_9).abs() < 1e-15);
        let h = run(
            Op::Sqrt,
            Tensor::from_vec(vec![1], vec![oxrt_core::f16::from_f32(4.0)]).unwrap(),
        );
        assert_eq!(h.as_slice::<oxrt_core::f16>().unwrap()[0].to_f32(), 2.0);
    }

    #[test]
    fn integer_and_boolean_forms() {
        let i = Tensor::from_vec(vec![3], vec![-128i8, -3, 4]).unwrap();
        assert_eq!(
            run(Op::Abs, i.clone()).as_slice::<i8>().unwrap(),
            &[-128, 3, 4]
        );
        assert_eq!(
            run(Op::Neg, i.clone()).as_slice::<i8>().unwrap(),
            &[-128, 3, -4]
        );
        assert_eq!(
            run(Op::BitwiseNot, i).as_slice::<i8>().unwrap(),
            &[127, 2, -5]
        );
        let u = Tensor::from_vec(vec![2], vec![0u16, 9]).unwrap();
        assert_eq!(run(Op::Sign, u).as_slice::<u16>().unwrap(), &[0, 1]);
        let f =
            Tensor::from_vec(vec![3], vec![f32::NEG_INFINITY, f32::NAN, f32::INFINITY]).unwrap();
        let only_neg = Op::IsInf {
            negative: true,
            positive: false,
        };
        assert_eq!(
            run(only_neg, f.clone()).as_slice::<bool>().unwrap(),
            &[true, false, false]
        );
        assert_eq!(
            run(Op::IsNaN, f).as_slice::<bool>().unwrap(),
            &[false, true, false]
        );
        let b = Tensor::from_vec(vec![2], vec![true, false]).unwrap();
        assert_eq!(run(Op::Not, b).as_slice::<bool>().unwrap(), &[false, true]);
        let u = Tensor::from_vec(vec![1], vec![1u8]).unwrap();
        assert!(Unary { op: Op::Neg }.compute(&[Some(&u)]).is_err());
    }
}

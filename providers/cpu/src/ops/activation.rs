//! Activations: Relu, LeakyRelu, PRelu, Elu, Selu, Celu, Gelu, HardSigmoid,
//! HardSwish, Mish, Swish, Softplus, Softsign, ThresholdedRelu, Shrink, Sigmoid,
//! Tanh and Clip.

use multiversion::multiversion;
use oxrt_core::{
    DataType as D, Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor,
};

use crate::broadcast::binary;
use crate::fast_math;
use crate::kernel::{
    cast_f32, optional, required, unsupported_type, with_float_type, with_numeric_type, Arith, Real,
};

/// Float element types.
pub const FLOATS: &[D] = &[D::F32, D::F64, D::F16, D::BF16];
/// Types of Relu since opset 14 and Clip since opset 12.
pub const SIGNED_AND_FLOATS: &[D] = &[
    D::F32,
    D::F64,
    D::F16,
    D::BF16,
    D::I8,
    D::I16,
    D::I32,
    D::I64,
];

#[derive(Clone, Copy)]
enum Act {
    Relu,
    LeakyRelu(f32),
    Sigmoid,
    Tanh,
    Elu(f32),
    Selu {
        alpha: f32,
        gamma: f32,
    },
    Celu(f32),
    Gelu {
        tanh: bool,
    },
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    HardSwish,
    Mish,
    Swish(f32),
    Softplus,
    Softsign,
    ThresholdedRelu(f32),
    /// Only in fused epilogues (the Clip operator has its own kernel).
    Clip {
        min: f32,
        max: f32,
    },
}

struct Activation {
    act: Act,
}

/// Softplus `ln(1 + e^v)`, without overflow for large `v`.
fn softplus<T: Real>(v: T) -> T {
    if v > T::zero() {
        v + (-v).exp().ln_1p()
    } else {
        v.exp().ln_1p()
    }
}

fn apply<T: Real>(act: Act, x: &[T]) -> Result<Vec<T>> {
    let mut y = oxrt_core::arena::copied(x);
    apply_in_place(act, &mut y)?;
    Ok(y)
}

/// Applies the activation to every element of `x` in place (one match,
/// then a loop the compiler specializes per activation).
fn apply_in_place<T: Real>(act: Act, x: &mut [T]) -> Result<()> {
    if let Some(x) = crate::kernel::as_f32_mut(x) {
        if let Some(p) = Piecewise::of(act) {
            piecewise(x, None, p);
            return Ok(());
        }
        // Vectorized f32 approximations (see `fast_math`).
        let fast: Option<fn(&mut [f32])> = match act {
            Act::Gelu { tanh: false } => Some(fast_math::gelu_erf),
            Act::Gelu { tanh: true } => Some(fast_math::gelu_tanh),
            Act::Tanh => Some(fast_math::tanh_slice),
            Act::Sigmoid => Some(fast_math::sigmoid),
            _ => None,
        };
        if let Some(f) = fast {
            f(x);
            return Ok(());
        }
    }
    let zero = T::zero();
    let one = T::one();
    let c = cast_f32::<T>;
    match act {
        Act::Relu => each(x, move |v| if v > zero { v } else { zero }),
        Act::LeakyRelu(alpha) => {
            let a = c(alpha)?;
            each(x, move |v| if v >= zero { v } else { v * a })
        }
        Act::Sigmoid => each(x, move |v| {
            // Stable on both tails: never exponentiates a large positive number.
            if v >= zero {
                one / (one + (-v).exp())
            } else {
                let e = v.exp();
                e / (one + e)
            }
        }),
        Act::Tanh => each(x, |v| v.tanh()),
        Act::Elu(alpha) => {
            let a = c(alpha)?;
            each(x, move |v| if v >= zero { v } else { a * v.exp_m1() })
        }
        Act::Selu { alpha, gamma } => {
            let (a, g) = (c(alpha)?, c(gamma)?);
            each(
                x,
                move |v| if v > zero { g * v } else { g * a * v.exp_m1() },
            )
        }
        Act::Celu(alpha) => {
            let a = c(alpha)?;
            each(x, move |v| v.max(zero) + (a * (v / a).exp_m1()).min(zero))
        }
        Act::Gelu { tanh } => each(x, move |v| {
            let x = v.to_f64().unwrap_or(f64::NAN);
            let y = if tanh {
                let k = (2.0 / std::f64::consts::PI).sqrt();
                0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh())
            } else {
                0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
            };
            T::from(y).unwrap_or(T::nan())
        }),
        Act::HardSigmoid { alpha, beta } => {
            let (a, b) = (c(alpha)?, c(beta)?);
            each(x, move |v| (a * v + b).max(zero).min(one))
        }
        Act::HardSwish => {
            let (a, b) = (c(1.0 / 6.0)?, c(0.5)?);
            each(x, move |v| v * (a * v + b).max(zero).min(one))
        }
        Act::Mish => each(x, |v| v * softplus(v).tanh()),
        Act::Swish(alpha) => {
            let a = c(alpha)?;
            each(x, move |v| v / (one + (-(a * v)).exp()))
        }
        Act::Softplus => each(x, softplus),
        Act::Softsign => each(x, move |v| v / (one + v.abs())),
        Act::ThresholdedRelu(alpha) => {
            let a = c(alpha)?;
            each(x, move |v| if v > a { v } else { zero })
        }
        Act::Clip { min, max } => {
            // Bounds beyond the type's range clip nothing on that side.
            let lo = T::from(min).unwrap_or(T::neg_infinity());
            let hi = T::from(max).unwrap_or(T::infinity());
            each(x, move |v| {
                if v < lo {
                    lo
                } else if v > hi {
                    hi
                } else {
                    v
                }
            })
        }
    }
    Ok(())
}

/// The activations that are a few compares and multiply-adds per value,
/// with their parameters: run in one vectorized pass over f32 values,
/// optionally after adding a bias (a fused product's epilogue).
#[derive(Clone, Copy)]
enum Piecewise {
    Identity,
    Relu,
    LeakyRelu(f32),
    Clip { lo: f32, hi: f32 },
    HardSigmoid { alpha: f32, beta: f32 },
    HardSwish,
}

impl Piecewise {
    fn of(act: Act) -> Option<Self> {
        Some(match act {
            Act::Relu => Self::Relu,
            Act::LeakyRelu(a) => Self::LeakyRelu(a),
            Act::Clip { min, max } => Self::Clip { lo: min, hi: max },
            Act::HardSigmoid { alpha, beta } => Self::HardSigmoid { alpha, beta },
            Act::HardSwish => Self::HardSwish,
            _ => return None,
        })
    }
}

/// `x[i] = p(x[i] + bias)` (`p(x[i])` without a bias), with the same
/// results as the generic per-activation loops in [`apply_in_place`].
// `max(0).min(1)` rather than `clamp`: NaN gives 0 as in the generic loops.
#[allow(clippy::manual_clamp)]
#[multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn piecewise(x: &mut [f32], bias: Option<f32>, p: Piecewise) {
    #[inline(always)]
    fn run(x: &mut [f32], bias: Option<f32>, f: impl Fn(f32) -> f32) {
        match bias {
            Some(b) => x.iter_mut().for_each(|v| *v = f(*v + b)),
            None => x.iter_mut().for_each(|v| *v = f(*v)),
        }
    }
    match p {
        Piecewise::Identity => run(x, bias, |v| v),
        Piecewise::Relu => run(x, bias, |v| if v > 0.0 { v } else { 0.0 }),
        Piecewise::LeakyRelu(a) => run(x, bias, |v| if v >= 0.0 { v } else { v * a }),
        Piecewise::Clip { lo, hi } => run(x, bias, |v| {
            if v < lo {
                lo
            } else if v > hi {
                hi
            } else {
                v
            }
        }),
        Piecewise::HardSigmoid { alpha, beta } => {
            run(x, bias, |v| (alpha * v + beta).max(0.0).min(1.0))
        }
        Piecewise::HardSwish => run(x, bias, |v| v * (v * (1.0 / 6.0) + 0.5).max(0.0).min(1.0)),
    }
}

/// An activation that is a clamp, as kernels apply it to vectors in
/// registers (the direct convolution's tile epilogue).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Clamp {
    Identity,
    /// `max(v, 0)` (NaN gives 0, as the generic Relu).
    Relu,
    /// `min(max(v, lo), hi)` (NaN stays NaN, as the generic Clip).
    Clip {
        lo: f32,
        hi: f32,
    },
}

#[cfg(target_arch = "x86_64")]
impl Clamp {
    /// `clamp(v + bias)` on 16 lanes, the bound first so that NaN gives 0
    /// through Relu and stays NaN through Clip, as in the generic loops.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) fn biased_avx512(
        self,
        v: std::arch::x86_64::__m512,
        bias: std::arch::x86_64::__m512,
    ) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::*;
        let v = _mm512_add_ps(v, bias);
        match self {
            Clamp::Identity => v,
            Clamp::Relu => _mm512_max_ps(v, _mm512_setzero_ps()),
            Clamp::Clip { lo, hi } => {
                _mm512_min_ps(_mm512_set1_ps(hi), _mm512_max_ps(_mm512_set1_ps(lo), v))
            }
        }
    }
}

/// The fused activation as a [`Clamp`] (none, Relu, or Clip with
/// min <= max), if it is one.
pub(crate) fn clamp_of(act: Option<&Epilogue>) -> Option<Clamp> {
    match act.map(|e| e.0) {
        None => Some(Clamp::Identity),
        Some(Act::Relu) => Some(Clamp::Relu),
        Some(Act::Clip { min, max }) if min <= max => Some(Clamp::Clip { lo: min, hi: max }),
        Some(_) => None,
    }
}

/// `x[i] = act(x[i] + bias)` (or `act(x[i])`) in one pass over f32 values
/// when `act` is none or piecewise linear; `false` (nothing done) otherwise.
pub(crate) fn bias_then_f32(act: Option<&Epilogue>, bias: Option<f32>, x: &mut [f32]) -> bool {
    let p = match act {
        None => Piecewise::Identity,
        Some(e) => match Piecewise::of(e.0) {
            Some(p) => p,
            None => return false,
        },
    };
    piecewise(x, bias, p);
    true
}

/// `x[i] = act(x[i] + bias)` for f32 values: one vectorized pass where the
/// activation is piecewise-linear ([`bias_then_f32`]), otherwise the bias
/// and then the activation's own loop.
pub(crate) fn bias_then_act_f32(
    act: Option<&Epilogue>,
    bias: Option<f32>,
    x: &mut [f32],
) -> Result<()> {
    if (act.is_none() && bias.is_none()) || bias_then_f32(act, bias, x) {
        return Ok(());
    }
    if let Some(b) = bias {
        x.iter_mut().for_each(|v| *v += b);
    }
    act.map_or(Ok(()), |e| e.apply_slice(x))
}

/// `x[i] = f(x[i])`.
fn each<T: Copy>(x: &mut [T], f: impl Fn(T) -> T) {
    x.iter_mut().for_each(|v| *v = f(*v));
}

/// The activation a fused product (`oxrt.FusedConv`, `FusedGemm`,
/// `FusedMatMul`) applies to its result, from its `activation` and
/// `activation_params` attributes.
pub(crate) struct Epilogue(Act);

impl Epilogue {
    /// `None` when the node has no `activation` attribute.
    pub(crate) fn from_node(node: &Node) -> Result<Option<Self>> {
        let Some(name) = node.get_string("activation")? else {
            return Ok(None);
        };
        let p = node.get_floats("activation_params")?.unwrap_or(&[]);
        let at = |i: usize, default: f32| p.get(i).copied().unwrap_or(default);
        let act = match name {
            "Relu" => Act::Relu,
            "Sigmoid" => Act::Sigmoid,
            "Tanh" => Act::Tanh,
            "HardSwish" => Act::HardSwish,
            "Softplus" => Act::Softplus,
            "LeakyRelu" => Act::LeakyRelu(at(0, 0.01)),
            "Elu" => Act::Elu(at(0, 1.0)),
            "HardSigmoid" => Act::HardSigmoid {
                alpha: at(0, 0.2),
                beta: at(1, 0.5),
            },
            "Gelu" => Act::Gelu {
                tanh: at(0, 0.0) != 0.0,
            },
            "Clip" => Act::Clip {
                min: at(0, f32::MIN),
                max: at(1, f32::MAX),
            },
            other => return Err(Error::NotSupported(format!("fused activation '{other}'"))),
        };
        Ok(Some(Self(act)))
    }

    /// Applies the activation to `x` in place, on this thread.
    pub(crate) fn apply_slice<T: Real>(&self, x: &mut [T]) -> Result<()> {
        apply_in_place(self.0, x)
    }

    /// Applies the activation to `t` in place.
    pub(crate) fn apply(&self, mut t: Tensor) -> Result<Tensor> {
        with_float_type!(t.dtype(), T => {
            apply_parallel(self.0, t.as_slice_mut::<T>()?)?;
            Ok(t)
        }, _ => Err(unsupported_type("fused activation", &t)))
    }
}

/// [`apply_in_place`] over chunks on the intra-op threads when `x` is large.
fn apply_parallel<T: Real>(act: Act, x: &mut [T]) -> Result<()> {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 15;
    if x.len() <= CHUNK || rayon::current_num_threads() == 1 {
        return apply_in_place(act, x);
    }
    x.par_chunks_mut(CHUNK)
        .try_for_each(|c| apply_in_place(act, c))
}

impl Kernel for Activation {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        if let Act::Relu = self.act {
            macro_rules! int_relu {
                ($($t:ty),*) => {$(
                    if let Ok(v) = x.as_slice::<$t>() {
                        return Ok(vec![Tensor::from_vec(x.shape(), v.iter().map(|&e| e.max(0)).collect())?]);
                    }
                )*};
            }
            int_relu!(i8, i16, i32, i64);
        }
        with_float_type!(x.dtype(), T => {
            Ok(vec![Tensor::from_vec(x.shape(), apply(self.act, x.as_slice::<T>()?)?)?])
        }, _ => Err(unsupported_type("activation", x)))
    }

    fn in_place_input(&self) -> Option<usize> {
        Some(0)
    }

    fn compute_in_place(&self, owned: Tensor, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        if owned.dtype().is_float() {
            return Ok(vec![Epilogue(self.act).apply(owned)?]);
        }
        // Integer Relu and the like compute normally.
        let mut all = inputs.to_vec();
        all[0] = Some(&owned);
        self.compute(&all)
    }
}

pub(crate) fn create(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let f = |name: &str, default: f32| node.float_or(name, default);
    let act = match node.op_type.as_str() {
        "Relu" => Act::Relu,
        "LeakyRelu" => Act::LeakyRelu(f("alpha", 0.01)?),
        "Sigmoid" => Act::Sigmoid,
        "Tanh" => Act::Tanh,
        "Elu" => Act::Elu(f("alpha", 1.0)?),
        "Selu" => Act::Selu {
            alpha: f("alpha", 1.673_263_2)?,
            gamma: f("gamma", 1.050_701)?,
        },
        "Celu" => Act::Celu(f("alpha", 1.0)?),
        "Gelu" => Act::Gelu {
            tanh: match node.string_or("approximate", "none")? {
                "none" => false,
                "tanh" => true,
                other => {
                    return Err(Error::invalid(format!(
                        "Gelu approximate must be 'none' or 'tanh', got '{other}'"
                    )))
                }
            },
        },
        "HardSigmoid" => Act::HardSigmoid {
            alpha: f("alpha", 0.2)?,
            beta: f("beta", 0.5)?,
        },
        "HardSwish" => Act::HardSwish,
        "Mish" => Act::Mish,
        "Swish" => Act::Swish(f("alpha", 1.0)?),
        "Softplus" => Act::Softplus,
        "Softsign" => Act::Softsign,
        "ThresholdedRelu" => Act::ThresholdedRelu(f("alpha", 1.0)?),
        other => return Err(Error::NotSupported(format!("activation {other}"))),
    };
    Ok(Box::new(Activation { act }))
}

/// PRelu: `x` where positive, else `slope * x`, the slope broadcast to `x`.
struct PRelu;

impl Kernel for PRelu {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let (x, slope) = (required(inputs, 0)?, required(inputs, 1)?);
        with_numeric_type!(x.dtype(), T => {
            let zero = <T as Arith>::zero();
            let (shape, out) = binary(x.as_slice::<T>()?, x.shape(), slope.as_slice::<T>()?, slope.shape(),
                |v, s| Ok(if v < zero { v.mul(s) } else { v }))?;
            if shape != x.shape() {
                return Err(Error::invalid(format!(
                    "PRelu slope of shape {:?} does not broadcast to X of shape {:?}", slope.shape(), x.shape()
                )));
            }
            Ok(vec![Tensor::from_vec(shape, out)?])
        }, _ => Err(unsupported_type("PRelu", x)))
    }
}

fn create_prelu(_: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(PRelu))
}

/// Shrink: `x - bias` above `lambd`, `x + bias` below `-lambd`, else 0.
struct Shrink {
    bias: f64,
    lambd: f64,
}

impl Kernel for Shrink {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let (bias, lambd) = (self.bias, self.lambd);
        with_numeric_type!(x.dtype(), T => {
            let out: Vec<T> = x.as_slice::<T>()?.iter().map(|&v| {
                let f = num_traits::cast::<T, f64>(v).unwrap_or(f64::NAN);
                let y = if f < -lambd { f + bias } else if f > lambd { f - bias } else { 0.0 };
                num_traits::cast::<f64, T>(y).unwrap_or(v)
            }).collect();
            Ok(vec![Tensor::from_vec(x.shape(), out)?])
        }, _ => Err(unsupported_type("Shrink", x)))
    }
}

fn create_shrink(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(Shrink {
        bias: node.float_or("bias", 0.0)?.into(),
        lambd: node.float_or("lambd", 0.5)?.into(),
    }))
}

/// Clip: bounds from attributes (opset < 11) or optional inputs (11+).
struct Clip {
    /// Attribute bounds (opset < 11).
    attr_bounds: Option<(f32, f32)>,
}

fn clip_slice<T: PartialOrd + Copy>(x: &[T], lo: Option<T>, hi: Option<T>) -> Vec<T> {
    x.iter()
        .map(|&v| {
            let v = match lo {
                Some(l) if v < l => l,
                _ => v,
            };
            match hi {
                Some(h) if v > h => h,
                _ => v,
            }
        })
        .collect()
}

impl Kernel for Clip {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        with_numeric_type!(x.dtype(), T => {
            let bound = |i: usize| -> Result<Option<T>> {
                match optional(inputs, i) {
                    None => Ok(None),
                    Some(t) => match t.as_slice::<T>()? {
                        [v] => Ok(Some(*v)),
                        _ => Err(Error::invalid(format!("Clip bound #{i} must be a scalar, got shape {:?}", t.shape()))),
                    },
                }
            };
            let (lo, hi) = match self.attr_bounds {
                Some((lo, hi)) => (Some(cast_f32::<T>(lo)?), Some(cast_f32::<T>(hi)?)),
                None => (bound(1)?, bound(2)?),
            };
            Ok(vec![Tensor::from_vec(x.shape(), clip_slice(x.as_slice::<T>()?, lo, hi))?])
        }, _ => Err(unsupported_type("Clip", x)))
    }
}

fn create_clip(node: &Node, info: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let attr_bounds = if info.node.opset < 11 {
        Some((
            node.float_or("min", f32::MIN)?,
            node.float_or("max", f32::MAX)?,
        ))
    } else {
        None
    };
    Ok(Box::new(Clip { attr_bounds }))
}

/// Registers the activations.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new("Relu", 6..=13, FLOATS, create));
    reg.add(KernelDef::new("Relu", 14.., SIGNED_AND_FLOATS, create));
    for op in [
        "LeakyRelu",
        "Sigmoid",
        "Tanh",
        "Elu",
        "Selu",
        "Celu",
        "Gelu",
        "HardSigmoid",
        "HardSwish",
        "Mish",
        "Swish",
        "Softplus",
        "Softsign",
        "ThresholdedRelu",
    ] {
        reg.add(KernelDef::new(op, 1.., FLOATS, create));
    }
    reg.add(KernelDef::new(
        "PRelu",
        7..,
        crate::ops::elementwise::NUMERIC,
        create_prelu,
    ));
    reg.add(KernelDef::new(
        "Shrink",
        9..,
        crate::ops::elementwise::NUMERIC,
        create_shrink,
    ));
    reg.add(KernelDef::new("Clip", 6..=11, FLOATS, create_clip));
    reg.add(KernelDef::new(
        "Clip",
        12..,
        crate::ops::elementwise::NUMERIC,
        create_clip,
    ));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn prelu_and_shrink() {
        let x = Tensor::from_vec(vec![2, 2], vec![-1.0f32, 2.0, -3.0, 4.0]).unwrap();
        let slope = Tensor::from_vec(vec![2], vec![0.5f32, 0.25]).unwrap();
        let y = PRelu.compute(&[Some(&x), Some(&slope)]).unwrap();
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[-0.5, 2.0, -1.5, 4.0]);
        let big = Tensor::from_vec(vec![3], vec![1.0f32, 1.0, 1.0]).unwrap();
        assert!(PRelu.compute(&[Some(&slope), Some(&big)]).is_err());
        let s = Shrink {
            bias: 1.5,
            lambd: 1.0,
        };
        let i = Tensor::from_vec(vec![3], vec![-3i32, 0, 3]).unwrap();
        let y = s.compute(&[Some(&i)]).unwrap();
        assert_eq!(y[0].as_slice::<i32>().unwrap(), &[-1, 0, 1]);
    }

    #[test]
    fn bias_then_activation_in_one_pass_matches_the_definitions() {
        // Lengths past several vector widths, with tails; values around
        // every activation's break points.
        let x: Vec<f32> = (0..203).map(|i| (i as f32 - 101.0) / 17.0).collect();
        let def = |act: Act, v: f64| -> f64 {
            match act {
                Act::Relu => v.max(0.0),
                Act::LeakyRelu(a) => {
                    if v >= 0.0 {
                        v
                    } else {
                        v * f64::from(a)
                    }
                }
                Act::Clip { min, max } => v.clamp(f64::from(min), f64::from(max)),
                Act::HardSigmoid { alpha, beta } => {
                    (f64::from(alpha) * v + f64::from(beta)).clamp(0.0, 1.0)
                }
                Act::HardSwish => v * (v / 6.0 + 0.5).clamp(0.0, 1.0),
                _ => unreachable!("not piecewise"),
            }
        };
        let acts = [
            Act::Relu,
            Act::LeakyRelu(0.1),
            Act::Clip { min: 0.0, max: 6.0 },
            Act::Clip {
                min: -1.0,
                max: 0.5,
            },
            Act::HardSigmoid {
                alpha: 0.2,
                beta: 0.5,
            },
            Act::HardSwish,
        ];
        for bias in [None, Some(0.75f32)] {
            let b = f64::from(bias.unwrap_or(0.0));
            // No activation: the bias alone.
            let mut y = x.clone();
            assert!(bias_then_f32(None, bias, &mut y));
            for (v, &xv) in y.iter().zip(&x) {
                assert_eq!(f64::from(*v), f64::from(xv + bias.unwrap_or(0.0)));
            }
            for act in acts {
                let mut y = x.clone();
                assert!(bias_then_f32(Some(&Epilogue(act)), bias, &mut y));
                for (i, (v, &xv)) in y.iter().zip(&x).enumerate() {
                    let want = def(act, f64::from(xv + bias.unwrap_or(0.0)));
                    assert!(
                        (f64::from(*v) - want).abs() <= 1e-6 * want.abs().max(1.0),
                        "bias {b} at {i}: {v} vs {want}"
                    );
                }
            }
        }
        // Not piecewise linear: left to the caller.
        let mut y = x.clone();
        assert!(!bias_then_f32(
            Some(&Epilogue(Act::Tanh)),
            Some(1.0),
            &mut y
        ));
        assert_eq!(y, x);
        // ...which bias_then_act_f32 is: bias, then the activation's loop.
        bias_then_act_f32(Some(&Epilogue(Act::Tanh)), Some(1.0), &mut y).unwrap();
        for (v, &xv) in y.iter().zip(&x) {
            let want = (f64::from(xv) + 1.0).tanh();
            assert!((f64::from(*v) - want).abs() <= 1e-6, "{v} vs {want}");
        }
        let mut y = x.clone();
        bias_then_act_f32(Some(&Epilogue(Act::Relu)), Some(-0.25), &mut y).unwrap();
        for (v, &xv) in y.iter().zip(&x) {
            assert_eq!(*v, (xv - 0.25).max(0.0));
        }
        let mut y = x.clone();
        bias_then_act_f32(None, None, &mut y).unwrap();
        assert_eq!(y, x);
    }

    #[test]
    fn activations_match_reference_values() {
        let x = [-2.0f32, -0.5, 0.0, 0.5, 2.0];
        assert_eq!(apply(Act::Relu, &x).unwrap(), vec![0.0, 0.0, 0.0, 0.5, 2.0]);
        assert_eq!(
            apply(Act::LeakyRelu(0.1), &x).unwrap(),
            vec![-0.2, -0.05, 0.0, 0.5, 2.0]
        );
        let s = apply(Act::Sigmoid, &[-100.0f32, 0.0, 100.0, 1.0]).unwrap();
        // exp(-100) / (1 + exp(-100)): a subnormal f32, not flushed to 0.
        let expected = (-100f64).exp() / (1.0 + (-100f64).exp());
        assert!((f64::from(s[0]) - expected).abs() < 2e-45, "{}", s[0]);
        assert_eq!(s[1], 0.5);
        assert_eq!(s[2], 1.0);
        assert!((s[3] - 0.731_058_6).abs() < 1e-6);
        let t = apply(Act::Tanh, &[0.5f64]).unwrap();
        assert!((t[0] - 0.5f64.tanh()).abs() < 1e-15);
        let y = apply(
            Act::Selu {
                alpha: 2.0,
                gamma: 3.0,
            },
            &[-1.0f64, 1.0],
        )
        .unwrap();
        assert!((y[0] - 3.0 * 2.0 * ((-1.0f64).exp() - 1.0)).abs() < 1e-12);
        assert_eq!(y[1], 3.0);
        let g = apply(Act::Gelu { tanh: false }, &[1.0f64]).unwrap();
        assert!((g[0] - 0.841_344_746_068_542_9).abs() < 1e-12);
        let g = apply(Act::Gelu { tanh: true }, &[1.0f64]).unwrap();
        assert!((g[0] - 0.841_191_990_607_477_6).abs() < 1e-12);
        let sp = apply(Act::Softplus, &[1000.0f32, -1000.0, 0.0]).unwrap();
        assert_eq!(sp[0], 1000.0);
        assert_eq!(sp[1], 0.0);
        assert!((sp[2] - std::f32::consts::LN_2).abs() < 1e-7);
        let hs = apply(Act::HardSwish, &[-4.0f32, 1.0, 4.0]).unwrap();
        assert_eq!(hs[0], 0.0);
        assert!((hs[1] - 1.0 * (1.0 / 6.0 + 0.5)).abs() < 1e-7);
        assert_eq!(hs[2], 4.0);
        assert_eq!(
            apply(Act::ThresholdedRelu(1.0), &[0.5f32, 1.0, 2.0]).unwrap(),
            vec![0.0, 0.0, 2.0]
        );
        assert_eq!(clip_slice(&[-3, 0, 7], Some(-1), Some(5)), vec![-1, 0, 5]);
        assert_eq!(clip_slice(&[-3.0, 9.0], None, Some(5.0)), vec![-3.0, 5.0]);
    }
}

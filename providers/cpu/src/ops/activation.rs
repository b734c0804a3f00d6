//! Relu, LeakyRelu, Sigmoid, Tanh and Clip.

use oxrt_core::{
    DataType as D, Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor,
};

use crate::kernel::{
    cast_f32, optional, required, unsupported_type, with_float_type, with_numeric_type, Real,
};

/// Float element types.
pub const FLOATS: &[D] = &[D::F32, D::F64, D::F16, D::BF16];
/// Types of Relu since opset 14 and Clip since opset 12.
const SIGNED_AND_FLOATS: &[D] = &[
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
}

struct Activation {
    act: Act,
}

fn apply<T: Real>(act: Act, x: &[T]) -> Result<Vec<T>> {
    Ok(match act {
        Act::Relu => x
            .iter()
            .map(|&v| if v > T::zero() { v } else { T::zero() })
            .collect(),
        Act::LeakyRelu(alpha) => {
            let a: T = cast_f32(alpha)?;
            x.iter()
                .map(|&v| if v >= T::zero() { v } else { v * a })
                .collect()
        }
        Act::Sigmoid => x
            .iter()
            .map(|&v| {
                // Stable on both tails: never exponentiates a large positive number.
                if v >= T::zero() {
                    T::one() / (T::one() + (-v).exp())
                } else {
                    let e = v.exp();
                    e / (T::one() + e)
                }
            })
            .collect(),
        Act::Tanh => x.iter().map(|&v| v.tanh()).collect(),
    })
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
}

fn create(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let act = match node.op_type.as_str() {
        "Relu" => Act::Relu,
        "LeakyRelu" => Act::LeakyRelu(node.float_or("alpha", 0.01)?),
        "Sigmoid" => Act::Sigmoid,
        _ => Act::Tanh,
    };
    Ok(Box::new(Activation { act }))
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
    for op in ["LeakyRelu", "Sigmoid", "Tanh"] {
        reg.add(KernelDef::new(op, 6.., FLOATS, create));
    }
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
        assert_eq!(clip_slice(&[-3, 0, 7], Some(-1), Some(5)), vec![-1, 0, 5]);
        assert_eq!(clip_slice(&[-3.0, 9.0], None, Some(5.0)), vec![-3.0, 5.0]);
    }
}

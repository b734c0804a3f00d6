//! BatchNormalization in inference mode.

use oxrt_core::{Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor};

use crate::kernel::{cast_f32, required, unsupported_type, with_float_type, Real};
use crate::ops::activation::FLOATS;

struct BatchNorm {
    epsilon: f32,
}

fn batch_norm<T: Real>(x: &Tensor, params: [&Tensor; 4], eps: f32) -> Result<Tensor> {
    let xs = x.shape();
    let c = *xs
        .get(1)
        .ok_or_else(|| Error::invalid(format!("X must be N x C x ..., got {xs:?}")))?;
    let names = ["scale", "B", "input_mean", "input_var"];
    let mut p: Vec<&[T]> = Vec::with_capacity(4);
    for (t, name) in params.iter().zip(names) {
        if t.len() != c {
            return Err(Error::invalid(format!(
                "{name} must have {c} values (one per channel), got shape {:?}",
                t.shape()
            )));
        }
        p.push(t.as_slice::<T>()?);
    }
    let eps: T = cast_f32(eps)?;
    // y = x * a + b with a = scale / sqrt(var + eps), b = B - mean * a
    let a: Vec<T> = (0..c).map(|i| p[0][i] / (p[3][i] + eps).sqrt()).collect();
    let b: Vec<T> = (0..c).map(|i| p[1][i] - p[2][i] * a[i]).collect();
    let inner: usize = xs[2..].iter().product();
    let xd = x.as_slice::<T>()?;
    let y: Vec<T> = xd
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let ch = (i / inner.max(1)) % c;
            v * a[ch] + b[ch]
        })
        .collect();
    Tensor::from_vec(xs, y)
}

impl Kernel for BatchNorm {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let params = [
            required(inputs, 1)?,
            required(inputs, 2)?,
            required(inputs, 3)?,
            required(inputs, 4)?,
        ];
        with_float_type!(x.dtype(), T => Ok(vec![batch_norm::<T>(x, params, self.epsilon)?]),
            _ => Err(unsupported_type("BatchNormalization", x)))
    }
}

fn create(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    if node.int_or("training_mode", 0)? != 0 {
        return Err(Error::NotSupported(
            "BatchNormalization with training_mode=1".into(),
        ));
    }
    if node.int_or("spatial", 1)? != 1 {
        return Err(Error::NotSupported(
            "BatchNormalization with spatial=0 (opset < 9)".into(),
        ));
    }
    if node.outputs.iter().skip(1).any(|o| !o.is_empty()) {
        return Err(Error::NotSupported(
            "BatchNormalization training outputs (running mean/var, saved statistics)".into(),
        ));
    }
    Ok(Box::new(BatchNorm {
        epsilon: node.float_or("epsilon", 1e-5)?,
    }))
}

/// Registers BatchNormalization.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new("BatchNormalization", 1.., FLOATS, create));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn normalizes_per_channel() {
        let x = Tensor::from_vec(vec![1, 2, 2], vec![1.0f32, 3.0, 10.0, 20.0]).unwrap();
        let t = |v: Vec<f32>| Tensor::from_vec(vec![2], v).unwrap();
        let (scale, b, mean, var) = (
            t(vec![1.0, 2.0]),
            t(vec![0.0, 1.0]),
            t(vec![2.0, 15.0]),
            t(vec![1.0, 25.0]),
        );
        let y = batch_norm::<f32>(&x, [&scale, &b, &mean, &var], 0.0).unwrap();
        assert_eq!(y.as_slice::<f32>().unwrap(), &[-1.0, 1.0, -1.0, 3.0]);
        let bad = t(vec![1.0, 2.0]).reshape(vec![2, 1]).unwrap();
        let short = Tensor::from_vec(vec![1], vec![1.0f32]).unwrap();
        assert!(batch_norm::<f32>(&x, [&short, &b, &mean, &bad], 0.0).is_err());
    }
}

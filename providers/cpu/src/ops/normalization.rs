//! BatchNormalization: inference with the given statistics, and training
//! mode (batch statistics, updated running mean and variance).

use oxrt_core::{Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor};

use crate::kernel::{cast_f32, required, unsupported_type, with_float_type, Real};
use crate::ops::activation::FLOATS;

struct BatchNorm {
    epsilon: f32,
    /// Training mode: normalize with the batch statistics and return the
    /// running statistics (`momentum`); `saved` adds the batch statistics
    /// as outputs 3 and 4 (opset < 14).
    training: Option<Training>,
}

#[derive(Clone, Copy)]
struct Training {
    momentum: f64,
    saved: bool,
}

/// Per-channel mean and (population) variance of `x` over every axis but 1.
fn batch_statistics(x: &Tensor) -> Result<(Vec<f64>, Vec<f64>)> {
    let xs = x.shape();
    let c = *xs
        .get(1)
        .ok_or_else(|| Error::invalid(format!("X must be N x C x ..., got {xs:?}")))?;
    let inner: usize = xs[2..].iter().product();
    let v = x
        .to_f64_vec()
        .ok_or_else(|| unsupported_type("BatchNormalization", x))?;
    let count = (v.len() / c.max(1)).max(1) as f64;
    let mut mean = vec![0.0; c];
    let mut sq = vec![0.0; c];
    for (i, &e) in v.iter().enumerate() {
        mean[(i / inner.max(1)) % c] += e;
    }
    mean.iter_mut().for_each(|m| *m /= count);
    for (i, &e) in v.iter().enumerate() {
        let ch = (i / inner.max(1)) % c;
        sq[ch] += (e - mean[ch]).powi(2);
    }
    Ok((mean, sq.into_iter().map(|s| s / count).collect()))
}

fn channel_tensor(v: Vec<f64>, like: &Tensor) -> Result<Tensor> {
    crate::ops::cast::cast(&Tensor::from_vec(vec![v.len()], v)?, like.dtype())
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
    let mut y = x.copied().into_vec::<T>()?;
    // One plane per (image, channel), planes on the intra-op threads.
    use rayon::prelude::*;
    y.par_chunks_mut(inner.max(1))
        .enumerate()
        .for_each(|(k, plane)| {
            let (ak, bk) = (a[k % c.max(1)], b[k % c.max(1)]);
            plane.iter_mut().for_each(|v| *v = *v * ak + bk);
        });
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
        let Some(training) = self.training else {
            return with_float_type!(x.dtype(), T => Ok(vec![batch_norm::<T>(x, params, self.epsilon)?]),
                _ => Err(unsupported_type("BatchNormalization", x)));
        };
        let (mean, var) = batch_statistics(x)?;
        let running = |given: &Tensor, batch: &[f64], what: &str| -> Result<Tensor> {
            let g = given
                .to_f64_vec()
                .filter(|g| g.len() == batch.len())
                .ok_or_else(|| Error::invalid(format!("{what} must have one value per channel")))?;
            let m = training.momentum;
            channel_tensor(
                g.iter()
                    .zip(batch)
                    .map(|(g, b)| g * m + b * (1.0 - m))
                    .collect(),
                x,
            )
        };
        let (run_mean, run_var) = (
            running(params[2], &mean, "input_mean")?,
            running(params[3], &var, "input_var")?,
        );
        let (saved_mean, saved_var) = (channel_tensor(mean, x)?, channel_tensor(var, x)?);
        let batch_params = [params[0], params[1], &saved_mean, &saved_var];
        let y = with_float_type!(x.dtype(), T => batch_norm::<T>(x, batch_params, self.epsilon)?,
            _ => return Err(unsupported_type("BatchNormalization", x)));
        let mut out = vec![y, run_mean, run_var];
        if training.saved {
            out.extend([saved_mean, saved_var]);
        }
        Ok(out)
    }
}

fn create(node: &Node, info: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let opset = info.node.opset;
    let training = if opset >= 14 {
        node.int_or("training_mode", 0)? != 0
    } else if opset < 7 {
        node.int_or("is_test", 0)? == 0
    } else {
        // Opsets 7-13 train when the statistics outputs are requested.
        node.outputs.iter().skip(1).any(|o| !o.is_empty())
    };
    if node.int_or("spatial", 1)? != 1 {
        return Err(Error::NotSupported(
            "BatchNormalization with spatial=0 (opset < 9)".into(),
        ));
    }
    Ok(Box::new(BatchNorm {
        epsilon: node.float_or("epsilon", 1e-5)?,
        training: training
            .then(|| -> Result<Training> {
                Ok(Training {
                    momentum: f64::from(node.float_or("momentum", 0.9)?),
                    saved: opset < 14,
                })
            })
            .transpose()?,
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

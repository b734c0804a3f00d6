//! NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss (class weights,
//! ignore_index, reductions none/sum/mean), computed in f64.

use oxrt_core::{Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor};

use crate::kernel::{optional, read_ints, required, unsupported_type};
use crate::ops::activation::FLOATS;
use crate::ops::cast::cast;
use crate::ops::softmax::{softmax, Mode};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Reduction {
    None,
    Sum,
    Mean,
}

struct Loss {
    reduction: Reduction,
    ignore_index: Option<i64>,
    /// SoftmaxCrossEntropyLoss: take log-softmax of the scores first.
    softmax: bool,
}

impl Kernel for Loss {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let (x, target) = (required(inputs, 0)?, required(inputs, 1)?);
        let s = x.shape();
        if s.len() < 2 {
            return Err(Error::invalid(format!(
                "scores must be N x C x ..., got shape {s:?}"
            )));
        }
        let (n, c) = (s[0], s[1]);
        let d: usize = s[2..].iter().product();
        let mut want_target = vec![n];
        want_target.extend(&s[2..]);
        if target.shape() != want_target.as_slice() {
            return Err(Error::invalid(format!(
                "target of shape {:?}, expected {want_target:?}",
                target.shape()
            )));
        }
        let values = x.to_f64_vec().ok_or_else(|| unsupported_type("loss", x))?;
        let logp = if self.softmax {
            softmax(&values, n, c, d, Mode::LogSoftmax)
        } else {
            values
        };
        let labels = read_ints(target, "target")?;
        let weight = optional(inputs, 2)
            .map(|w| w.to_f64_vec().ok_or_else(|| unsupported_type("weight", w)))
            .transpose()?;
        if let Some(w) = &weight {
            if w.len() != c {
                return Err(Error::invalid(format!(
                    "weight has {} values for {c} classes",
                    w.len()
                )));
            }
        }
        let mut loss = vec![0.0; n * d];
        let mut weights = vec![0.0; n * d];
        for i in 0..n {
            for k in 0..d {
                let t = labels[i * d + k];
                if Some(t) == self.ignore_index {
                    continue;
                }
                let j = usize::try_from(t).ok().filter(|&j| j < c).ok_or_else(|| {
                    Error::invalid(format!("target {t} is out of range for {c} classes"))
                })?;
                let w = weight.as_ref().map_or(1.0, |w| w[j]);
                loss[i * d + k] = -logp[(i * c + j) * d + k] * w;
                weights[i * d + k] = w;
            }
        }
        let out = match self.reduction {
            Reduction::None => Tensor::from_vec(want_target, loss)?,
            Reduction::Sum => Tensor::scalar(loss.iter().sum::<f64>()),
            Reduction::Mean => {
                Tensor::scalar(loss.iter().sum::<f64>() / weights.iter().sum::<f64>())
            }
        };
        let mut outs = vec![cast(&out, x.dtype())?];
        if self.softmax {
            outs.push(cast(&Tensor::from_vec(s, logp)?, x.dtype())?);
        }
        Ok(outs)
    }
}

fn create(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let reduction = match node.string_or("reduction", "mean")? {
        "none" => Reduction::None,
        "sum" => Reduction::Sum,
        "mean" => Reduction::Mean,
        other => {
            return Err(Error::invalid(format!(
                "reduction must be none, sum or mean, got '{other}'"
            )))
        }
    };
    Ok(Box::new(Loss {
        reduction,
        ignore_index: node.get_int("ignore_index")?,
        softmax: node.op_type == "SoftmaxCrossEntropyLoss",
    }))
}

/// Registers the losses.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new(
        "NegativeLogLikelihoodLoss",
        12..,
        FLOATS,
        create,
    ));
    reg.add(KernelDef::new(
        "SoftmaxCrossEntropyLoss",
        12..,
        FLOATS,
        create,
    ));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn nll_with_weights_and_ignore() {
        let x = Tensor::from_vec(vec![3, 2], vec![-1.0f32, -2.0, -3.0, -4.0, -5.0, -6.0]).unwrap();
        let t = Tensor::from_vec(vec![3], vec![0i64, 1, 1]).unwrap();
        let w = Tensor::from_vec(vec![2], vec![1.0f32, 2.0]).unwrap();
        let k = Loss {
            reduction: Reduction::Mean,
            ignore_index: Some(0),
            softmax: false,
        };
        let y = k.compute(&[Some(&x), Some(&t), Some(&w)]).unwrap();
        // Rows 1 and 2: (4*2 + 6*2) / (2 + 2).
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[5.0]);
        let none = Loss {
            reduction: Reduction::None,
            ignore_index: None,
            softmax: false,
        };
        let y = none.compute(&[Some(&x), Some(&t)]).unwrap();
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[1.0, 4.0, 6.0]);
        let bad = Tensor::from_vec(vec![3], vec![0i64, 2, 1]).unwrap();
        assert!(none.compute(&[Some(&x), Some(&bad)]).is_err());
    }

    #[test]
    fn softmax_cross_entropy() {
        let x = Tensor::from_vec(vec![1, 2], vec![0.0f64, 0.0]).unwrap();
        let t = Tensor::from_vec(vec![1], vec![1i64]).unwrap();
        let k = Loss {
            reduction: Reduction::Sum,
            ignore_index: None,
            softmax: true,
        };
        let y = k.compute(&[Some(&x), Some(&t)]).unwrap();
        assert!((y[0].as_slice::<f64>().unwrap()[0] - std::f64::consts::LN_2).abs() < 1e-12);
        assert_eq!(y[1].shape(), &[1, 2]);
    }
}

//! The training optimizers of `ai.onnx.preview.training`: Adagrad, Adam and
//! Momentum (standard and Nesterov). Each takes the learning rate `R`, the
//! step count `T`, then for N tensors their values, gradients and
//! accumulators, and returns the updated values and accumulators.

use oxrt_core::{Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor};

use crate::kernel::{numbers, read_scalar_int, required};
use crate::ops::cast::cast;

#[derive(Clone, Copy, Debug)]
enum Rule {
    Adagrad {
        decay: f64,
        epsilon: f64,
        norm: f64,
    },
    Adam {
        alpha: f64,
        beta: f64,
        epsilon: f64,
        norm: f64,
        norm_post: f64,
    },
    Momentum {
        alpha: f64,
        beta: f64,
        norm: f64,
        nesterov: bool,
    },
}

impl Rule {
    /// Tensors per optimized value: the value, its gradient, accumulators.
    fn group(self) -> usize {
        match self {
            Rule::Adam { .. } => 4,
            _ => 3,
        }
    }

    /// Updates one element: `x` and its gradient `g` with accumulators
    /// `acc`; returns the new value and writes the new accumulators.
    fn step(self, r: f64, t: i64, x: f64, g: f64, acc: &mut [f64]) -> f64 {
        match self {
            Rule::Adagrad {
                decay,
                epsilon,
                norm,
            } => {
                let rate = r / (1.0 + t as f64 * decay);
                let g = norm * x + g;
                acc[0] += g * g;
                x - rate * g / (acc[0].sqrt() + epsilon)
            }
            Rule::Adam {
                alpha,
                beta,
                epsilon,
                norm,
                norm_post,
            } => {
                let g = norm * x + g;
                acc[0] = alpha * acc[0] + (1.0 - alpha) * g;
                acc[1] = beta * acc[1] + (1.0 - beta) * g * g;
                let rate = if t > 0 {
                    let t = t as i32;
                    r * (1.0 - beta.powi(t)).sqrt() / (1.0 - alpha.powi(t))
                } else {
                    r
                };
                (1.0 - norm_post) * (x - rate * acc[0] / (acc[1].sqrt() + epsilon))
            }
            Rule::Momentum {
                alpha,
                beta,
                norm,
                nesterov,
            } => {
                let g = norm * x + g;
                let b = if t > 0 { beta } else { 1.0 };
                acc[0] = alpha * acc[0] + b * g;
                if nesterov {
                    x - r * (g + alpha * acc[0])
                } else {
                    x - r * acc[0]
                }
            }
        }
    }
}

struct Optimizer(Rule);

impl Kernel for Optimizer {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let k = self.0.group();
        let n = inputs.len().saturating_sub(2) / k;
        if n == 0 || inputs.len() != 2 + n * k {
            return Err(Error::invalid(format!(
                "expected R, T and {k} tensors per optimized value, got {} inputs",
                inputs.len()
            )));
        }
        let r = match numbers(required(inputs, 0)?, "R")?[..] {
            [r] => r,
            _ => return Err(Error::invalid("R must be one float")),
        };
        let t = read_scalar_int(inputs, 1, "T")?;
        let mut values = Vec::with_capacity(n);
        let mut accs: Vec<Vec<Tensor>> = vec![Vec::with_capacity(n); k - 2];
        for i in 0..n {
            let x = required(inputs, 2 + i)?;
            let g = required(inputs, 2 + n + i)?;
            let state: Vec<&Tensor> = (0..k - 2)
                .map(|a| required(inputs, 2 + (2 + a) * n + i))
                .collect::<Result<_>>()?;
            if g.shape() != x.shape() || state.iter().any(|s| s.shape() != x.shape()) {
                return Err(Error::invalid(format!(
                    "value #{i}: gradient and accumulators must have the shape {:?} of the value",
                    x.shape()
                )));
            }
            let (xv, gv) = (numbers(x, "X")?, numbers(g, "G")?);
            let mut sv: Vec<Vec<f64>> = state
                .iter()
                .map(|s| numbers(s, "accumulator"))
                .collect::<Result<_>>()?;
            let mut acc = vec![0.0; k - 2];
            let mut new_x = Vec::with_capacity(xv.len());
            for e in 0..xv.len() {
                for (a, s) in acc.iter_mut().zip(&sv) {
                    *a = s[e];
                }
                new_x.push(self.0.step(r, t, xv[e], gv[e], &mut acc));
                for (a, s) in acc.iter().zip(sv.iter_mut()) {
                    s[e] = *a;
                }
            }
            values.push(cast(&Tensor::from_vec(x.shape(), new_x)?, x.dtype())?);
            for (a, (s, like)) in sv.into_iter().zip(&state).enumerate() {
                accs[a].push(cast(&Tensor::from_vec(like.shape(), s)?, like.dtype())?);
            }
        }
        Ok(values
            .into_iter()
            .chain(accs.into_iter().flatten())
            .collect())
    }
}

fn create(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let f =
        |name: &str, default: f32| -> Result<f64> { Ok(f64::from(node.float_or(name, default)?)) };
    let need = |name: &str| -> Result<f64> {
        node.get_float(name)?
            .map(f64::from)
            .ok_or_else(|| Error::invalid(format!("attribute '{name}' is required")))
    };
    let rule = match node.op_type.as_str() {
        "Adagrad" => Rule::Adagrad {
            decay: f("decay_factor", 0.0)?,
            epsilon: f("epsilon", 0.0)?,
            norm: f("norm_coefficient", 0.0)?,
        },
        "Adam" => Rule::Adam {
            alpha: f("alpha", 0.9)?,
            beta: f("beta", 0.999)?,
            epsilon: f("epsilon", 0.0)?,
            norm: f("norm_coefficient", 0.0)?,
            norm_post: f("norm_coefficient_post", 0.0)?,
        },
        _ => Rule::Momentum {
            alpha: need("alpha")?,
            beta: need("beta")?,
            norm: need("norm_coefficient")?,
            nesterov: match node
                .get_string("mode")?
                .ok_or_else(|| Error::invalid("attribute 'mode' is required"))?
            {
                "standard" => false,
                "nesterov" => true,
                other => return Err(Error::invalid(format!("unknown Momentum mode '{other}'"))),
            },
        },
    };
    Ok(Box::new(Optimizer(rule)))
}

/// Registers Adagrad, Adam and Momentum (domain ai.onnx.preview.training).
pub fn register(reg: &mut KernelRegistry) {
    for op in ["Adagrad", "Adam", "Momentum"] {
        let mut def = KernelDef::new(op, 1.., &[], create);
        def.domain = "ai.onnx.preview.training";
        reg.add(def);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn momentum_steps_against_the_gradient() {
        let k = Optimizer(Rule::Momentum {
            alpha: 0.5,
            beta: 1.0,
            norm: 0.0,
            nesterov: false,
        });
        let (r, t) = (Tensor::scalar(0.1f32), Tensor::scalar(1i64));
        let x = Tensor::from_vec(vec![2], vec![1.0f32, 2.0]).unwrap();
        let g = Tensor::from_vec(vec![2], vec![1.0f32, -2.0]).unwrap();
        let v = Tensor::from_vec(vec![2], vec![2.0f32, 0.0]).unwrap();
        let out = k
            .compute(&[Some(&r), Some(&t), Some(&x), Some(&g), Some(&v)])
            .unwrap();
        // v' = 0.5 v + g = [2, -2]; x' = x - 0.1 v' = [0.8, 2.2].
        let xs = out[0].as_slice::<f32>().unwrap();
        assert!((xs[0] - 0.8).abs() < 1e-6 && (xs[1] - 2.2).abs() < 1e-6);
        assert_eq!(out[1].as_slice::<f32>().unwrap(), &[2.0, -2.0]);
        assert!(k
            .compute(&[Some(&r), Some(&t), Some(&x), Some(&g)])
            .is_err());
    }
}

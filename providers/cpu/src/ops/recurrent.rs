//! Recurrent layers: RNN, GRU (`linear_before_reset`) and LSTM (peepholes,
//! `input_forget`), in every direction, with `sequence_lens`, initial
//! states, `clip`, custom activations and both layouts.
//!
//! One driver runs all three: per direction and batch entry it walks the
//! valid time steps, computes the gate pre-activations `W x + Wb` and
//! `R h + Rb`, and lets the cell combine them. Computed in f64.

use oxrt_core::ir::Attribute;
use oxrt_core::{Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor};

use crate::kernel::{ensure_allocatable, numbers, optional, read_ints, required};
use crate::ops::activation::FLOATS;
use crate::ops::cast::cast;

/// An activation of the recurrent operators' `activations` attribute.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Act {
    Relu,
    Tanh,
    Sigmoid,
    Affine(f64, f64),
    LeakyRelu(f64),
    ThresholdedRelu(f64),
    ScaledTanh(f64, f64),
    HardSigmoid(f64, f64),
    Elu(f64),
    Softsign,
    Softplus,
}

impl Act {
    fn apply(self, x: f64) -> f64 {
        match self {
            Act::Relu => x.max(0.0),
            Act::Tanh => x.tanh(),
            Act::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Act::Affine(a, b) => a * x + b,
            Act::LeakyRelu(a) => {
                if x >= 0.0 {
                    x
                } else {
                    a * x
                }
            }
            Act::ThresholdedRelu(a) => {
                if x > a {
                    x
                } else {
                    0.0
                }
            }
            Act::ScaledTanh(a, b) => a * (b * x).tanh(),
            Act::HardSigmoid(a, b) => (a * x + b).clamp(0.0, 1.0),
            Act::Elu(a) => {
                if x >= 0.0 {
                    x
                } else {
                    a * (x.exp() - 1.0)
                }
            }
            Act::Softsign => x / (1.0 + x.abs()),
            Act::Softplus => x.exp().ln_1p(),
        }
    }

    /// Parses `name`, taking alpha/beta from the attribute lists in order.
    fn parse(
        name: &str,
        alphas: &mut impl Iterator<Item = f64>,
        betas: &mut impl Iterator<Item = f64>,
    ) -> Result<Self> {
        let mut a = |d: f64| alphas.next().unwrap_or(d);
        Ok(match name.to_ascii_lowercase().as_str() {
            "relu" => Act::Relu,
            "tanh" => Act::Tanh,
            "sigmoid" => Act::Sigmoid,
            "affine" => Act::Affine(a(1.0), betas.next().unwrap_or(0.0)),
            "leakyrelu" => Act::LeakyRelu(a(0.01)),
            "thresholdedrelu" => Act::ThresholdedRelu(a(1.0)),
            "scaledtanh" => Act::ScaledTanh(a(1.0), betas.next().unwrap_or(1.0)),
            "hardsigmoid" => Act::HardSigmoid(a(0.2), betas.next().unwrap_or(0.5)),
            "elu" => Act::Elu(a(1.0)),
            "softsign" => Act::Softsign,
            "softplus" => Act::Softplus,
            other => return Err(Error::invalid(format!("unknown activation '{other}'"))),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Cell {
    Rnn,
    Gru { linear_before_reset: bool },
    Lstm { input_forget: bool },
}

impl Cell {
    fn gates(self) -> usize {
        match self {
            Cell::Rnn => 1,
            Cell::Gru { .. } => 3,
            Cell::Lstm { .. } => 4,
        }
    }

    fn default_activations(self) -> &'static [Act] {
        match self {
            Cell::Rnn => &[Act::Tanh],
            Cell::Gru { .. } => &[Act::Sigmoid, Act::Tanh],
            Cell::Lstm { .. } => &[Act::Sigmoid, Act::Tanh, Act::Tanh],
        }
    }
}

struct Recurrent {
    cell: Cell,
    /// `false` forward, `true` reverse, per direction.
    reverse: Vec<bool>,
    hidden: usize,
    /// Activations of each direction.
    acts: Vec<Vec<Act>>,
    clip: Option<f64>,
    batch_first: bool,
}

/// `out[r] += sum_c m[r * cols + c] * v[c]` for `rows` rows.
fn mat_vec_add(out: &mut [f64], m: &[f64], v: &[f64]) {
    let cols = v.len();
    for (r, o) in out.iter_mut().enumerate() {
        *o += m[r * cols..(r + 1) * cols]
            .iter()
            .zip(v)
            .map(|(a, b)| a * b)
            .sum::<f64>();
    }
}

/// Checks `t` has shape `want`, naming the input.
fn expect_shape(t: &Tensor, want: &[usize], what: &str) -> Result<()> {
    if t.shape() != want {
        return Err(Error::invalid(format!(
            "{what} must have shape {want:?}, got {:?}",
            t.shape()
        )));
    }
    Ok(())
}

impl Recurrent {
    /// One step of the cell for one batch entry. `xw` is `W x + Wb`, `hr`
    /// is `R h + Rb` (gate-major); updates `h` and `c`.
    #[allow(clippy::too_many_arguments)]
    fn step(
        &self,
        acts: &[Act],
        xw: &[f64],
        hr: &[f64],
        r: &[f64],
        rb: &[f64],
        p: Option<&[f64]>,
        h: &mut [f64],
        c: &mut [f64],
    ) {
        let n = self.hidden;
        let clip = |v: f64| self.clip.map_or(v, |k| v.clamp(-k, k));
        match self.cell {
            Cell::Rnn => {
                for j in 0..n {
                    h[j] = acts[0].apply(clip(xw[j] + hr[j]));
                }
            }
            Cell::Gru {
                linear_before_reset,
            } => {
                let (f, g) = (acts[0], acts[1]);
                let z: Vec<f64> = (0..n).map(|j| f.apply(clip(xw[j] + hr[j]))).collect();
                let rg: Vec<f64> = (0..n)
                    .map(|j| f.apply(clip(xw[n + j] + hr[n + j])))
                    .collect();
                let candidate: Vec<f64> = if linear_before_reset {
                    (0..n)
                        .map(|j| g.apply(clip(xw[2 * n + j] + rg[j] * hr[2 * n + j])))
                        .collect()
                } else {
                    // (r ⊙ h) Rh^T + Rbh
                    let rh: Vec<f64> = (0..n).map(|j| rg[j] * h[j]).collect();
                    let mut lin = rb[2 * n..3 * n].to_vec();
                    mat_vec_add(&mut lin, &r[2 * n * n..3 * n * n], &rh);
                    (0..n)
                        .map(|j| g.apply(clip(xw[2 * n + j] + lin[j])))
                        .collect()
                };
                for j in 0..n {
                    h[j] = (1.0 - z[j]) * candidate[j] + z[j] * h[j];
                }
            }
            Cell::Lstm { input_forget } => {
                let (f, g, hf) = (acts[0], acts[1], acts[2]);
                let peep = |k: usize, j: usize, cv: f64| p.map_or(0.0, |p| p[k * n + j] * cv);
                for j in 0..n {
                    let pre = |k: usize| xw[k * n + j] + hr[k * n + j];
                    let i = f.apply(clip(pre(0) + peep(0, j, c[j])));
                    let fg = if input_forget {
                        1.0 - i
                    } else {
                        f.apply(clip(pre(2) + peep(2, j, c[j])))
                    };
                    let cand = g.apply(clip(pre(3)));
                    c[j] = fg * c[j] + i * cand;
                    let o = f.apply(clip(pre(1) + peep(1, j, c[j])));
                    h[j] = o * hf.apply(c[j]);
                }
            }
        }
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let (w, r) = (required(inputs, 1)?, required(inputs, 2)?);
        if x.rank() != 3 {
            return Err(Error::invalid(format!(
                "X must be 3-D, got {:?}",
                x.shape()
            )));
        }
        let (seq, batch, input) = if self.batch_first {
            (x.shape()[1], x.shape()[0], x.shape()[2])
        } else {
            (x.shape()[0], x.shape()[1], x.shape()[2])
        };
        let (dirs, n, g) = (self.reverse.len(), self.hidden, self.cell.gates());
        expect_shape(w, &[dirs, g * n, input], "W")?;
        expect_shape(r, &[dirs, g * n, n], "R")?;
        let xs = numbers(x, "X")?;
        let (wv, rv) = (numbers(w, "W")?, numbers(r, "R")?);
        let bias = match optional(inputs, 3) {
            Some(b) => {
                expect_shape(b, &[dirs, 2 * g * n], "B")?;
                numbers(b, "B")?
            }
            None => vec![0.0; dirs * 2 * g * n],
        };
        let lens: Vec<usize> = match optional(inputs, 4) {
            Some(l) => read_ints(l, "sequence_lens")?
                .iter()
                .map(|&v| usize::try_from(v).ok().filter(|&v| v <= seq))
                .collect::<Option<_>>()
                .filter(|l: &Vec<usize>| l.len() == batch)
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "sequence_lens must hold {batch} lengths in [0, {seq}]"
                    ))
                })?,
            None => vec![seq; batch],
        };
        let state = |i: usize, what: &str| -> Result<Option<Vec<f64>>> {
            optional(inputs, i)
                .map(|t| {
                    let want = if self.batch_first {
                        [batch, dirs, n]
                    } else {
                        [dirs, batch, n]
                    };
                    expect_shape(t, &want, what)?;
                    numbers(t, what)
                })
                .transpose()
        };
        let (h0, c0) = (state(5, "initial_h")?, state(6, "initial_c")?);
        let peepholes = match optional(inputs, 7).filter(|_| matches!(self.cell, Cell::Lstm { .. }))
        {
            Some(p) => {
                expect_shape(p, &[dirs, 3 * n], "P")?;
                Some(numbers(p, "P")?)
            }
            None => None,
        };
        let y_shape = if self.batch_first {
            vec![batch, seq, dirs, n]
        } else {
            vec![seq, dirs, batch, n]
        };
        ensure_allocatable(&y_shape, "Y")?;
        let mut y = vec![0.0; seq * dirs * batch * n];
        let mut yh = vec![0.0; dirs * batch * n];
        let mut yc = vec![0.0; dirs * batch * n];
        // Offsets of (direction, batch) in state tensors, (t, d, b) in Y.
        let st = |d: usize, b: usize| {
            if self.batch_first {
                (b * dirs + d) * n
            } else {
                (d * batch + b) * n
            }
        };
        let yo = |t: usize, d: usize, b: usize| {
            if self.batch_first {
                ((b * seq + t) * dirs + d) * n
            } else {
                ((t * dirs + d) * batch + b) * n
            }
        };
        for d in 0..dirs {
            let wd = &wv[d * g * n * input..][..g * n * input];
            let rd = &rv[d * g * n * n..][..g * n * n];
            let (wb, rb) = (
                &bias[d * 2 * g * n..][..g * n],
                &bias[(d * 2 + 1) * g * n..][..g * n],
            );
            let pd = peepholes.as_ref().map(|p| &p[d * 3 * n..][..3 * n]);
            for b in 0..batch {
                let mut h = h0
                    .as_ref()
                    .map_or(vec![0.0; n], |s| s[st(d, b)..][..n].to_vec());
                let mut c = c0
                    .as_ref()
                    .map_or(vec![0.0; n], |s| s[st(d, b)..][..n].to_vec());
                for k in 0..lens[b] {
                    let t = if self.reverse[d] { lens[b] - 1 - k } else { k };
                    let xo = if self.batch_first {
                        (b * seq + t) * input
                    } else {
                        (t * batch + b) * input
                    };
                    let mut xw = wb.to_vec();
                    mat_vec_add(&mut xw, wd, &xs[xo..xo + input]);
                    let mut hr = rb.to_vec();
                    mat_vec_add(&mut hr, rd, &h);
                    self.step(&self.acts[d], &xw, &hr, rd, rb, pd, &mut h, &mut c);
                    y[yo(t, d, b)..][..n].copy_from_slice(&h);
                }
                yh[st(d, b)..][..n].copy_from_slice(&h);
                yc[st(d, b)..][..n].copy_from_slice(&c);
            }
        }
        let state_shape = if self.batch_first {
            vec![batch, dirs, n]
        } else {
            vec![dirs, batch, n]
        };
        let dtype = x.dtype();
        let mut out = vec![
            cast(&Tensor::from_vec(y_shape, y)?, dtype)?,
            cast(&Tensor::from_vec(state_shape.clone(), yh)?, dtype)?,
        ];
        if matches!(self.cell, Cell::Lstm { .. }) {
            out.push(cast(&Tensor::from_vec(state_shape, yc)?, dtype)?);
        }
        Ok(out)
    }
}

impl Kernel for Recurrent {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        self.run(inputs)
    }
}

fn create(node: &Node, info: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let cell = match node.op_type.as_str() {
        "RNN" => Cell::Rnn,
        "GRU" => Cell::Gru {
            linear_before_reset: node.int_or("linear_before_reset", 0)? != 0,
        },
        _ => Cell::Lstm {
            input_forget: node.int_or("input_forget", 0)? != 0,
        },
    };
    let reverse = match node.string_or("direction", "forward")? {
        "forward" => vec![false],
        "reverse" => vec![true],
        "bidirectional" => vec![false, true],
        other => return Err(Error::invalid(format!("unknown direction '{other}'"))),
    };
    let hidden = usize::try_from(node.int_or("hidden_size", -1)?)
        .map_err(|_| Error::invalid("attribute 'hidden_size' is required"))?;
    let per_dir = cell.default_activations().len();
    let names: Vec<String> = match node.attributes.get("activations") {
        Some(Attribute::Strings(v)) => v
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
        Some(other) => {
            return Err(Error::invalid(format!(
                "attribute 'activations' must be STRINGS, got {}",
                other.kind()
            )))
        }
        None => Vec::new(),
    };
    let acts = if names.is_empty() {
        vec![cell.default_activations().to_vec(); reverse.len()]
    } else {
        if names.len() != per_dir * reverse.len() {
            return Err(Error::invalid(format!(
                "{} activations given, {} needed ({per_dir} per direction)",
                names.len(),
                per_dir * reverse.len()
            )));
        }
        let alphas = node.get_floats("activation_alpha")?.unwrap_or(&[]);
        let betas = node.get_floats("activation_beta")?.unwrap_or(&[]);
        let (mut a, mut b) = (
            alphas.iter().map(|&v| f64::from(v)),
            betas.iter().map(|&v| f64::from(v)),
        );
        let parsed: Vec<Act> = names
            .iter()
            .map(|n| Act::parse(n, &mut a, &mut b))
            .collect::<Result<_>>()?;
        parsed.chunks(per_dir).map(<[Act]>::to_vec).collect()
    };
    let clip = node.get_float("clip")?.map(f64::from);
    let batch_first = info.node.opset >= 14 && node.int_or("layout", 0)? != 0;
    Ok(Box::new(Recurrent {
        cell,
        reverse,
        hidden,
        acts,
        clip,
        batch_first,
    }))
}

/// Registers RNN, GRU and LSTM.
pub fn register(reg: &mut KernelRegistry) {
    for op in ["RNN", "GRU", "LSTM"] {
        reg.add(KernelDef::new(op, 7.., FLOATS, create));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A one-unit LSTM with unit weights, checked against the equations.
    #[test]
    fn lstm_matches_its_equations() {
        let k = Recurrent {
            cell: Cell::Lstm {
                input_forget: false,
            },
            reverse: vec![false],
            hidden: 1,
            acts: vec![Cell::Lstm {
                input_forget: false,
            }
            .default_activations()
            .to_vec()],
            clip: None,
            batch_first: false,
        };
        let x = Tensor::from_vec(vec![2, 1, 1], vec![0.5f32, -1.0]).unwrap();
        let w = Tensor::from_vec(vec![1, 4, 1], vec![1.0f32; 4]).unwrap();
        let r = Tensor::from_vec(vec![1, 4, 1], vec![1.0f32; 4]).unwrap();
        let out = k.run(&[Some(&x), Some(&w), Some(&r)]).unwrap();
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let (mut h, mut c) = (0.0f64, 0.0f64);
        for xv in [0.5, -1.0] {
            let pre = xv + h;
            c = sig(pre) * c + sig(pre) * pre.tanh();
            h = sig(pre) * c.tanh();
        }
        let yh = out[1].as_slice::<f32>().unwrap()[0];
        let yc = out[2].as_slice::<f32>().unwrap()[0];
        assert!((f64::from(yh) - h).abs() < 1e-6 && (f64::from(yc) - c).abs() < 1e-6);
        assert_eq!(out[0].shape(), &[2, 1, 1, 1]);
        let bad = Tensor::from_vec(vec![1, 3, 1], vec![1.0f32; 3]).unwrap();
        assert!(k.run(&[Some(&x), Some(&bad), Some(&r)]).is_err());
    }
}

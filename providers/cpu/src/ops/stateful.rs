//! Operators that carry state between decoding steps: LinearAttention
//! (linear, gated, delta and gated-delta recurrences, GQA/MQA),
//! CausalConvWithState (depthwise causal 1-D convolution) and TensorScatter
//! (writing updates into a KV cache, linear or circular).
//!
//! The recurrences run in f32, as the ONNX reference does, and results are
//! cast back to the input types.

use oxrt_core::dtype::DataType;
use oxrt_core::shape::normalize_axis;
use oxrt_core::{Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor};

use crate::kernel::{numbers, optional, read_ints, required};
use crate::ops::activation::FLOATS;
use crate::ops::cast::cast;

fn f32s(t: &Tensor, what: &str) -> Result<Vec<f32>> {
    Ok(numbers(t, what)?.into_iter().map(|v| v as f32).collect())
}

fn output(shape: Vec<usize>, data: Vec<f32>, dtype: DataType) -> Result<Tensor> {
    cast(&Tensor::from_vec(shape, data)?, dtype)
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct UpdateRule {
    gating: bool,
    delta: bool,
}

struct LinearAttention {
    rule: UpdateRule,
    q_heads: usize,
    kv_heads: usize,
    scale: Option<f32>,
}

impl LinearAttention {
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let (q, k, v) = (
            required(inputs, 0)?,
            required(inputs, 1)?,
            required(inputs, 2)?,
        );
        let (past, decay, beta) = (
            optional(inputs, 3),
            optional(inputs, 4),
            optional(inputs, 5),
        );
        for (name, t) in [("query", q), ("key", k), ("value", v)] {
            if t.rank() != 3 {
                return Err(Error::invalid(format!(
                    "{name} must be [batch, time, heads * dim], got {:?}",
                    t.shape()
                )));
            }
        }
        let rule = self.rule;
        if rule.gating != decay.is_some() || rule.delta != beta.is_some() {
            return Err(Error::invalid(format!(
                "this update rule {} decay and {} beta",
                if rule.gating { "needs" } else { "takes no" },
                if rule.delta { "needs" } else { "takes no" }
            )));
        }
        let (b, t) = (q.shape()[0], q.shape()[1]);
        let (hq, hk) = (self.q_heads, self.kv_heads);
        let dk = q.shape()[2] / hq;
        let dv = v.shape()[2] / hk;
        if q.shape()[2] != hq * dk || k.shape() != [b, t, hk * dk] || v.shape() != [b, t, hk * dv] {
            return Err(Error::invalid(format!(
                "query {:?}, key {:?} and value {:?} do not fit {hq} query and {hk} key/value heads",
                q.shape(),
                k.shape(),
                v.shape()
            )));
        }
        let (qv, kv, vv) = (f32s(q, "query")?, f32s(k, "key")?, f32s(v, "value")?);
        // decay: per head [b, t, hk] or per key dim [b, t, hk * dk].
        let decay = decay
            .map(|d| -> Result<(Vec<f32>, usize)> {
                let per = match d.shape() {
                    [db, dt, last] if *db == b && *dt == t && *last == hk => 1,
                    [db, dt, last] if *db == b && *dt == t && *last == hk * dk => dk,
                    other => {
                        return Err(Error::invalid(format!(
                            "decay must be [{b}, {t}, {hk}] or [{b}, {t}, {}], got {other:?}",
                            hk * dk
                        )))
                    }
                };
                Ok((f32s(d, "decay")?, per))
            })
            .transpose()?;
        // beta: per head [b, t, hk] or shared [b, t, 1].
        let beta = beta
            .map(|x| -> Result<(Vec<f32>, usize)> {
                match x.shape() {
                    [xb, xt, last] if *xb == b && *xt == t && (*last == hk || *last == 1) => {
                        Ok((f32s(x, "beta")?, *last))
                    }
                    other => Err(Error::invalid(format!(
                        "beta must be [{b}, {t}, {hk}] or [{b}, {t}, 1], got {other:?}"
                    ))),
                }
            })
            .transpose()?;
        let state_shape = [b, hk, dk, dv];
        let (mut state, state_dtype) = match past {
            Some(p) if p.shape() == state_shape => (f32s(p, "past_state")?, p.dtype()),
            Some(p) => {
                return Err(Error::invalid(format!(
                    "past_state must be {state_shape:?}, got {:?}",
                    p.shape()
                )))
            }
            None => (vec![0.0f32; b * hk * dk * dv], q.dtype()),
        };
        let scale = match self.scale {
            Some(s) if s != 0.0 => s,
            _ => 1.0 / (dk as f32).sqrt(),
        };
        let group = hq / hk;
        let mut out = vec![0.0f32; b * t * hq * dv];
        let mut retrieved = vec![0.0f32; dv];
        let mut vt = vec![0.0f32; dv];
        for bi in 0..b {
            for ti in 0..t {
                for h in 0..hk {
                    let s = &mut state[(bi * hk + h) * dk * dv..][..dk * dv];
                    let kt = &kv[(bi * t + ti) * hk * dk + h * dk..][..dk];
                    vt.copy_from_slice(&vv[(bi * t + ti) * hk * dv + h * dv..][..dv]);
                    if let Some((d, per)) = &decay {
                        let g = &d[((bi * t + ti) * hk + h) * per..][..*per];
                        for i in 0..dk {
                            let f = g[if *per == 1 { 0 } else { i }].exp();
                            s[i * dv..(i + 1) * dv].iter_mut().for_each(|x| *x *= f);
                        }
                    }
                    if let Some((bt, last)) = &beta {
                        let bv = bt[(bi * t + ti) * last + if *last == 1 { 0 } else { h }];
                        retrieved.fill(0.0);
                        for i in 0..dk {
                            for (r, x) in retrieved.iter_mut().zip(&s[i * dv..(i + 1) * dv]) {
                                *r += x * kt[i];
                            }
                        }
                        for (x, r) in vt.iter_mut().zip(&retrieved) {
                            *x = bv * (*x - r);
                        }
                    }
                    for i in 0..dk {
                        for (x, y) in s[i * dv..(i + 1) * dv].iter_mut().zip(&vt) {
                            *x += kt[i] * y;
                        }
                    }
                }
                // Query head qh reads key/value head qh / group.
                for qh in 0..hq {
                    let h = qh / group;
                    let s = &state[(bi * hk + h) * dk * dv..][..dk * dv];
                    let qt = &qv[(bi * t + ti) * hq * dk + qh * dk..][..dk];
                    let o = &mut out[(bi * t + ti) * hq * dv + qh * dv..][..dv];
                    for i in 0..dk {
                        for (x, y) in o.iter_mut().zip(&s[i * dv..(i + 1) * dv]) {
                            *x += qt[i] * y;
                        }
                    }
                    o.iter_mut().for_each(|x| *x *= scale);
                }
            }
        }
        Ok(vec![
            output(vec![b, t, hq * dv], out, q.dtype())?,
            output(state_shape.to_vec(), state, state_dtype)?,
        ])
    }
}

impl Kernel for LinearAttention {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        self.run(inputs)
    }
}

fn create_linear_attention(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let rule = match node.string_or("update_rule", "gated_delta")? {
        "linear" => UpdateRule {
            gating: false,
            delta: false,
        },
        "gated" => UpdateRule {
            gating: true,
            delta: false,
        },
        "delta" => UpdateRule {
            gating: false,
            delta: true,
        },
        "gated_delta" => UpdateRule {
            gating: true,
            delta: true,
        },
        other => return Err(Error::invalid(format!("unknown update_rule '{other}'"))),
    };
    let heads = |name: &str| -> Result<usize> {
        usize::try_from(node.int_or(name, 0)?)
            .ok()
            .filter(|&h| h > 0)
            .ok_or_else(|| Error::invalid(format!("attribute '{name}' must be a positive count")))
    };
    let (q_heads, kv_heads) = (heads("q_num_heads")?, heads("kv_num_heads")?);
    if q_heads % kv_heads != 0 {
        return Err(Error::invalid(format!(
            "q_num_heads {q_heads} is not a multiple of kv_num_heads {kv_heads}"
        )));
    }
    Ok(Box::new(LinearAttention {
        rule,
        q_heads,
        kv_heads,
        scale: node.get_float("scale")?,
    }))
}

/// CausalConvWithState: `input [B, C, L]` convolved per channel with
/// `weight [C, 1, K]` after the `K - 1` previous steps (`past_state`, or
/// zeros); returns the output and the last `K - 1` steps as the new state.
struct CausalConv {
    silu: bool,
}

impl Kernel for CausalConv {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let (x, w) = (required(inputs, 0)?, required(inputs, 1)?);
        let [b, c, l] = x.shape()[..] else {
            return Err(Error::invalid(format!(
                "input must be [B, C, L], got {:?}",
                x.shape()
            )));
        };
        let k = match w.shape() {
            [wc, 1, k] if *wc == c && *k > 0 => *k,
            other => {
                return Err(Error::invalid(format!(
                    "weight must be [{c}, 1, K] with K > 0, got {other:?}"
                )))
            }
        };
        let (xv, wv) = (f32s(x, "input")?, f32s(w, "weight")?);
        let bias = optional(inputs, 2)
            .map(|t| {
                if t.shape() != [c] {
                    return Err(Error::invalid(format!(
                        "bias must be [{c}], got {:?}",
                        t.shape()
                    )));
                }
                f32s(t, "bias")
            })
            .transpose()?;
        let past = optional(inputs, 3)
            .map(|t| {
                if t.shape() != [b, c, k - 1] {
                    return Err(Error::invalid(format!(
                        "past_state must be [{b}, {c}, {}], got {:?}",
                        k - 1,
                        t.shape()
                    )));
                }
                f32s(t, "past_state")
            })
            .transpose()?;
        let padded_len = l + k - 1;
        let mut out = vec![0.0f32; b * c * l];
        let mut state = vec![0.0f32; b * c * (k - 1)];
        let mut padded = vec![0.0f32; padded_len];
        for bi in 0..b {
            for ci in 0..c {
                let lane = bi * c + ci;
                padded.fill(0.0);
                if let Some(p) = &past {
                    padded[..k - 1].copy_from_slice(&p[lane * (k - 1)..][..k - 1]);
                }
                padded[k - 1..].copy_from_slice(&xv[lane * l..][..l]);
                let taps = &wv[ci * k..][..k];
                for t in 0..l {
                    let mut acc = bias.as_ref().map_or(0.0, |b| b[ci]);
                    for (j, w) in taps.iter().enumerate() {
                        acc += w * padded[t + j];
                    }
                    out[lane * l + t] = acc;
                }
                state[lane * (k - 1)..][..k - 1].copy_from_slice(&padded[padded_len - (k - 1)..]);
            }
        }
        let mut y = output(vec![b, c, l], out, x.dtype())?;
        if self.silu {
            // SiLU on the output as rounded to the input type.
            let v = f32s(&y, "output")?;
            let act = v.iter().map(|&z| z / (1.0 + (-z).exp())).collect();
            y = output(vec![b, c, l], act, x.dtype())?;
        }
        Ok(vec![y, output(vec![b, c, k - 1], state, x.dtype())?])
    }
}

fn create_causal_conv(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let silu = match node.string_or("activation", "none")? {
        "none" => false,
        "silu" | "swish" => true,
        other => return Err(Error::invalid(format!("unknown activation '{other}'"))),
    };
    Ok(Box::new(CausalConv { silu }))
}

/// TensorScatter: `update` written into a copy of `past_cache` along `axis`
/// at each batch entry's `write_indices` position (wrapping in circular mode).
struct TensorScatter {
    axis: i64,
    circular: bool,
}

impl Kernel for TensorScatter {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let (cache, update) = (required(inputs, 0)?, required(inputs, 1)?);
        let (cs, us) = (cache.shape(), update.shape());
        let axis = normalize_axis(self.axis, cs.len())?;
        if axis == 0
            || us.len() != cs.len()
            || cs
                .iter()
                .zip(us)
                .enumerate()
                .any(|(i, (a, b))| if i == axis { b > a } else { a != b })
            || cache.dtype() != update.dtype()
        {
            return Err(Error::invalid(format!(
                "update {:?} of {} does not fit cache {cs:?} of {} along axis {axis}",
                us,
                update.dtype(),
                cache.dtype()
            )));
        }
        let batch = cs[0];
        let starts = match optional(inputs, 2) {
            Some(w) => read_ints(w, "write_indices")?,
            None => vec![0; batch],
        };
        if starts.len() != batch {
            return Err(Error::invalid(format!(
                "write_indices holds {} positions for a batch of {batch}",
                starts.len()
            )));
        }
        let (max_len, len) = (cs[axis], us[axis]);
        let inner: usize = cs[axis + 1..].iter().product();
        let prefix: usize = cs[1..axis].iter().product();
        // Flat source position for every cache element (update or cache).
        let total = cache.len();
        let mut from_update = vec![None; total];
        for (bi, &start) in starts.iter().enumerate() {
            for p in 0..prefix {
                let row = bi * prefix + p;
                for s in 0..len {
                    let mut pos = start + s as i64;
                    if self.circular {
                        pos = pos.rem_euclid(max_len as i64);
                    }
                    let pos = usize::try_from(pos).ok().filter(|&q| q < max_len).ok_or_else(|| {
                        Error::invalid(format!(
                            "write position {pos} of batch entry {bi} is outside the cache of {max_len}"
                        ))
                    })?;
                    for i in 0..inner {
                        from_update[(row * max_len + pos) * inner + i] =
                            Some((row * len + s) * inner + i);
                    }
                }
            }
        }
        let merged = oxrt_core::Storage::concat(&[cache.storage(), update.storage()])?;
        let idx: Vec<usize> = (0..total)
            .map(|i| from_update[i].map_or(i, |u| total + u))
            .collect();
        Ok(vec![Tensor::from_storage(
            cache.dtype(),
            cs.to_vec(),
            merged.gather(&idx)?,
        )?])
    }
}

fn create_tensor_scatter(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let circular = match node.string_or("mode", "linear")? {
        "linear" => false,
        "circular" => true,
        other => return Err(Error::invalid(format!("unknown mode '{other}'"))),
    };
    Ok(Box::new(TensorScatter {
        axis: node.int_or("axis", -2)?,
        circular,
    }))
}

/// Registers LinearAttention, CausalConvWithState and TensorScatter.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new(
        "LinearAttention",
        27..,
        FLOATS,
        create_linear_attention,
    ));
    reg.add(KernelDef::new(
        "CausalConvWithState",
        27..,
        FLOATS,
        create_causal_conv,
    ));
    reg.add(KernelDef::new(
        "TensorScatter",
        24..,
        &[],
        create_tensor_scatter,
    ));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn causal_conv_carries_its_state() {
        let k = CausalConv { silu: false };
        let w = Tensor::from_vec(vec![1, 1, 2], vec![1.0f32, 10.0]).unwrap();
        let x = Tensor::from_vec(vec![1, 1, 3], vec![1.0f32, 2.0, 3.0]).unwrap();
        let out = k.compute(&[Some(&x), Some(&w)]).unwrap();
        assert_eq!(out[0].as_slice::<f32>().unwrap(), &[10.0, 21.0, 32.0]);
        assert_eq!(out[1].as_slice::<f32>().unwrap(), &[3.0]);
        let next = Tensor::from_vec(vec![1, 1, 1], vec![4.0f32]).unwrap();
        let out = k
            .compute(&[Some(&next), Some(&w), None, Some(&out[1])])
            .unwrap();
        assert_eq!(out[0].as_slice::<f32>().unwrap(), &[43.0]);
    }

    #[test]
    fn tensor_scatter_wraps_in_circular_mode() {
        let cache = Tensor::from_vec(vec![1, 3, 1], vec![0i64, 0, 0]).unwrap();
        let update = Tensor::from_vec(vec![1, 2, 1], vec![7i64, 8]).unwrap();
        let at = Tensor::from_vec(vec![1], vec![2i64]).unwrap();
        let k = TensorScatter {
            axis: -2,
            circular: true,
        };
        let y = k
            .compute(&[Some(&cache), Some(&update), Some(&at)])
            .unwrap();
        assert_eq!(y[0].as_slice::<i64>().unwrap(), &[8, 0, 7]);
        let linear = TensorScatter {
            axis: -2,
            circular: false,
        };
        assert!(linear
            .compute(&[Some(&cache), Some(&update), Some(&at)])
            .is_err());
    }
}

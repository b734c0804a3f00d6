//! Attention (opset 23): scaled dot-product attention over 3-D
//! (`[batch, seq, heads * size]`) or 4-D (`[batch, heads, seq, size]`)
//! inputs, with past key/value, boolean or additive masks, causal masking,
//! grouped-query heads, softcap, padding lengths and the optional
//! `qk_matmul_output`. Computed in f64, rounded to the input type once.

use oxrt_core::{
    DataType as D, Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor,
};

use crate::broadcast::{broadcast_all, broadcast_index};
use crate::gemm::{gemm, MatRef};
use crate::kernel::{optional, read_ints, required, unsupported_type};
use crate::ops::activation::FLOATS;
use crate::ops::cast::cast;
use crate::ops::softmax::{softmax, Mode};

struct Attention {
    scale: Option<f64>,
    causal: bool,
    q_heads: Option<usize>,
    kv_heads: Option<usize>,
    softcap: f64,
    qk_mode: i64,
    /// The node names only output 0 (Y): the fast path may skip the rest.
    only_y: bool,
}

/// Offsets of a mask broadcast to `[b, h, sq, t]`: strides per axis (0
/// where the mask repeats), or `None` when it does not broadcast.
fn mask_strides(shape: &[usize], out: [usize; 4]) -> Option<[usize; 4]> {
    if shape.len() > 4 {
        return None;
    }
    let mut dims = [1usize; 4];
    dims[4 - shape.len()..].copy_from_slice(shape);
    let mut strides = [0usize; 4];
    let mut acc = 1;
    for a in (0..4).rev() {
        if dims[a] == out[a] {
            strides[a] = acc;
        } else if dims[a] != 1 {
            return None;
        }
        acc *= dims[a];
    }
    Some(strides)
}

impl Attention {
    /// 4-D f32 Q/K/V without past state, padding lengths or softcap, only
    /// Y requested: per (batch, head) `softmax(scale * Q K^T + mask) V`
    /// with two GEMMs and an f32 softmax, heads in parallel. `None` when
    /// the general path must run.
    fn fast_f32(&self, inputs: &[Option<&Tensor>]) -> Option<Result<Tensor>> {
        use rayon::prelude::*;
        let (q, k, v) = (
            required(inputs, 0).ok()?,
            required(inputs, 1).ok()?,
            required(inputs, 2).ok()?,
        );
        let extra = (4..7).any(|i| optional(inputs, i).is_some());
        let types = [q, k, v]
            .iter()
            .all(|t| t.dtype() == D::F32 && t.rank() == 4);
        if !self.only_y || extra || !types || self.softcap > 0.0 || self.qk_mode != 0 {
            return None;
        }
        let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
        let (b, hq, sq, d) = (qs[0], qs[1], qs[2], qs[3]);
        let (hk, t, dv) = (ks[1], ks[2], vs[3]);
        if ks[0] != b
            || vs[0] != b
            || ks[3] != d
            || vs[1] != hk
            || vs[2] != t
            || hk == 0
            || hq % hk != 0
        {
            return None;
        }
        let mask = optional(inputs, 3);
        let (mask_vals, strides): (Option<Vec<f32>>, [usize; 4]) = match mask {
            None => (None, [0; 4]),
            Some(m) => {
                let strides = mask_strides(m.shape(), [b, hq, sq, t])?;
                let vals = match m.dtype() {
                    D::Bool => m
                        .as_slice::<bool>()
                        .ok()?
                        .iter()
                        .map(|&keep| if keep { 0.0 } else { f32::NEG_INFINITY })
                        .collect(),
                    D::F32 => m.as_slice::<f32>().ok()?.to_vec(),
                    _ => return None,
                };
                (Some(vals), strides)
            }
        };
        let scale = self.scale.unwrap_or(1.0 / (d as f64).sqrt()) as f32;
        let group = hq / hk;
        let (qd, kd, vd) = (
            q.as_slice::<f32>().ok()?,
            k.as_slice::<f32>().ok()?,
            v.as_slice::<f32>().ok()?,
        );
        let mut y = crate::kernel::zeros::<f32>(b * hq * sq * dv);
        let causal = self.causal;
        let result = y.par_chunks_mut((sq * dv).max(1)).enumerate().try_for_each(
            |(bh, out)| -> Result<()> {
                let (bi, h) = (bh / hq, bh % hq);
                let kh = h / group;
                let qm = &qd[bh * sq * d..][..sq * d];
                let km = &kd[(bi * hk + kh) * t * d..][..t * d];
                let vm = &vd[(bi * hk + kh) * t * dv..][..t * dv];
                let mut scores = crate::kernel::zeros::<f32>(sq * t);
                gemm(
                    MatRef::row_major(qm, sq, d, false),
                    MatRef::row_major(km, t, d, true),
                    &mut scores,
                    scale,
                    false,
                )?;
                for (i, row) in scores.chunks_mut(t.max(1)).enumerate() {
                    if let Some(mv) = &mask_vals {
                        let base = bi * strides[0] + h * strides[1] + i * strides[2];
                        for (j, s) in row.iter_mut().enumerate() {
                            *s += mv[base + j * strides[3]];
                        }
                    }
                    if causal {
                        row.iter_mut()
                            .skip(i + 1)
                            .for_each(|s| *s = f32::NEG_INFINITY);
                    }
                    crate::fast_math::softmax(row);
                }
                let done = gemm(
                    MatRef::row_major(&scores, sq, t, false),
                    MatRef::row_major(vm, t, dv, false),
                    out,
                    1.0,
                    false,
                );
                oxrt_core::arena::recycle(scores);
                done
            },
        );
        Some(result.and_then(|()| Tensor::from_vec(vec![b, hq, sq, dv], y)))
    }
}

/// A tensor as `[batch, heads, seq, size]` f64 values.
struct Heads {
    v: Vec<f64>,
    b: usize,
    h: usize,
    s: usize,
    d: usize,
}

impl Heads {
    fn from(t: &Tensor, heads: Option<usize>, what: &str) -> Result<Self> {
        let v = t
            .to_f64_vec()
            .ok_or_else(|| unsupported_type("Attention", t))?;
        match *t.shape() {
            [b, h, s, d] => Ok(Self { v, b, h, s, d }),
            [b, s, hidden] => {
                let h = heads.filter(|&h| h > 0 && hidden % h == 0).ok_or_else(|| {
                    Error::invalid(format!(
                        "{what} of hidden size {hidden} needs a head count that divides it"
                    ))
                })?;
                let d = hidden / h;
                // [b, s, h, d] -> [b, h, s, d]
                let mut out = vec![0.0; v.len()];
                for bi in 0..b {
                    for si in 0..s {
                        for hi in 0..h {
                            for di in 0..d {
                                out[((bi * h + hi) * s + si) * d + di] =
                                    v[((bi * s + si) * h + hi) * d + di];
                            }
                        }
                    }
                }
                Ok(Self { v: out, b, h, s, d })
            }
            _ => Err(Error::invalid(format!(
                "{what} must be 3-D or 4-D, got shape {:?}",
                t.shape()
            ))),
        }
    }

    fn at(&self, b: usize, h: usize, s: usize, d: usize) -> f64 {
        self.v[((b * self.h + h) * self.s + s) * self.d + d]
    }

    /// `past` followed by `self` along the sequence axis.
    fn after(self, past: Option<Heads>) -> Result<Heads> {
        let Some(p) = past else { return Ok(self) };
        if (p.b, p.h, p.d) != (self.b, self.h, self.d) {
            return Err(Error::invalid(
                "past key/value do not match the new keys/values in batch, heads or size",
            ));
        }
        let s = p.s + self.s;
        let mut v = Vec::with_capacity(self.b * self.h * s * self.d);
        for b in 0..self.b {
            for h in 0..self.h {
                let (ps, ns) = (p.s * p.d, self.s * self.d);
                v.extend_from_slice(&p.v[(b * p.h + h) * ps..][..ps]);
                v.extend_from_slice(&self.v[(b * self.h + h) * ns..][..ns]);
            }
        }
        Ok(Heads {
            v,
            b: self.b,
            h: self.h,
            s,
            d: self.d,
        })
    }
}

impl Kernel for Attention {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        if let Some(y) = self.fast_f32(inputs) {
            return Ok(vec![y?]);
        }
        let (qt, kt, vt) = (
            required(inputs, 0)?,
            required(inputs, 1)?,
            required(inputs, 2)?,
        );
        let three_d = qt.rank() == 3;
        let q = Heads::from(qt, self.q_heads, "Q")?;
        let past = |i: usize| {
            optional(inputs, i)
                .map(|t| Heads::from(t, None, "past"))
                .transpose()
        };
        let past_len = optional(inputs, 4).map_or(0, |t| t.shape().get(2).copied().unwrap_or(0));
        let k = Heads::from(kt, self.kv_heads, "K")?.after(past(4)?)?;
        let v = Heads::from(vt, self.kv_heads, "V")?.after(past(5)?)?;
        if k.d != q.d || k.b != q.b || v.s != k.s || v.h != k.h || q.h % k.h != 0 {
            return Err(Error::invalid(format!(
                "Q [{}, {}, {}, {}], K [{}, {}, {}, {}] and V [{}, {}, {}, {}] do not fit together",
                q.b, q.h, q.s, q.d, k.b, k.h, k.s, k.d, v.b, v.h, v.s, v.d
            )));
        }
        let (b, hq, sq, t, dv) = (q.b, q.h, q.s, k.s, v.d);
        let group = hq / k.h;
        let scale = self.scale.unwrap_or(1.0 / (q.d as f64).sqrt());
        // Additive bias [b, hq, sq, t] from the mask, causality and padding.
        let out4 = [b, hq, sq, t];
        let mut bias = vec![0.0f64; b * hq * sq * t];
        if let Some(m) = optional(inputs, 3) {
            let mut ms = m.shape().to_vec();
            let last = ms.last().copied().unwrap_or(1);
            let vals: Vec<f64> = if m.dtype() == D::Bool {
                m.as_slice::<bool>()?
                    .iter()
                    .map(|&keep| if keep { 0.0 } else { f64::NEG_INFINITY })
                    .collect()
            } else {
                m.to_f64_vec()
                    .ok_or_else(|| unsupported_type("attn_mask", m))?
            };
            // A mask shorter than the total sequence is padded with "masked".
            let (vals, width) = if last < t && !ms.is_empty() {
                let rows = vals.len() / last.max(1);
                let mut p = vec![f64::NEG_INFINITY; rows * t];
                for r in 0..rows {
                    p[r * t..r * t + last].copy_from_slice(&vals[r * last..(r + 1) * last]);
                }
                (p, t)
            } else {
                (vals, last)
            };
            if let Some(l) = ms.last_mut() {
                *l = width;
            }
            if broadcast_all(&[&ms, &out4])? != out4 {
                return Err(Error::invalid(format!(
                    "attn_mask of shape {:?} does not broadcast to {out4:?}",
                    m.shape()
                )));
            }
            for (o, i) in bias.iter_mut().zip(broadcast_index(&ms, &out4)) {
                *o += vals[i];
            }
        }
        let lens = optional(inputs, 6)
            .map(|t| read_ints(t, "nonpad_kv_seqlen"))
            .transpose()?;
        for bi in 0..b {
            for h in 0..hq {
                for i in 0..sq {
                    for j in 0..t {
                        let masked_causal = self.causal && j > i + past_len;
                        let padded = lens.as_ref().is_some_and(|l| j as i64 >= l[bi]);
                        if masked_causal || padded {
                            bias[((bi * hq + h) * sq + i) * t + j] = f64::NEG_INFINITY;
                        }
                    }
                }
            }
        }
        let mut qk = vec![0.0; b * hq * sq * t];
        let mut probs = vec![0.0; b * hq * sq * t];
        let mut y = vec![0.0; b * hq * sq * dv];
        for bi in 0..b {
            for h in 0..hq {
                let kh = h / group;
                for i in 0..sq {
                    let row = ((bi * hq + h) * sq + i) * t;
                    for j in 0..t {
                        let dot: f64 = (0..q.d)
                            .map(|d| q.at(bi, h, i, d) * k.at(bi, kh, j, d))
                            .sum();
                        let mut s = dot * scale;
                        if self.softcap > 0.0 {
                            s = (s / self.softcap).tanh() * self.softcap;
                        }
                        qk[row + j] = s;
                        probs[row + j] = s + bias[row + j];
                    }
                    let p = softmax(&probs[row..row + t], 1, t, 1, Mode::Softmax);
                    probs[row..row + t].copy_from_slice(&p);
                    let lane = &probs[row..row + t];
                    for e in 0..dv {
                        y[((bi * hq + h) * sq + i) * dv + e] =
                            (0..t).map(|j| lane[j] * v.at(bi, kh, j, e)).sum();
                    }
                    if self.qk_mode == 2 {
                        for j in 0..t {
                            qk[row + j] += bias[row + j];
                        }
                    }
                }
            }
        }
        if self.qk_mode == 3 {
            qk.clone_from(&probs);
        }
        let dtype = qt.dtype();
        let y = if three_d {
            // [b, h, s, d] -> [b, s, h * d]
            let mut o = vec![0.0; y.len()];
            for bi in 0..b {
                for h in 0..hq {
                    for i in 0..sq {
                        for e in 0..dv {
                            o[((bi * sq + i) * hq + h) * dv + e] =
                                y[((bi * hq + h) * sq + i) * dv + e];
                        }
                    }
                }
            }
            Tensor::from_vec(vec![b, sq, hq * dv], o)?
        } else {
            Tensor::from_vec(vec![b, hq, sq, dv], y)?
        };
        Ok(vec![
            cast(&y, dtype)?,
            cast(
                &Tensor::from_vec(vec![k.b, k.h, k.s, k.d], k.v)?,
                kt.dtype(),
            )?,
            cast(
                &Tensor::from_vec(vec![v.b, v.h, v.s, v.d], v.v)?,
                vt.dtype(),
            )?,
            cast(&Tensor::from_vec(out4, qk)?, dtype)?,
        ])
    }
}

pub(crate) fn create(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let heads = |name: &str| -> Result<Option<usize>> {
        node.get_int(name)?
            .map(|h| {
                usize::try_from(h)
                    .map_err(|_| Error::invalid(format!("{name} must not be negative")))
            })
            .transpose()
    };
    let qk_mode = node.int_or("qk_matmul_output_mode", 0)?;
    if !(0..=3).contains(&qk_mode) {
        return Err(Error::invalid(format!(
            "qk_matmul_output_mode must be 0..=3, got {qk_mode}"
        )));
    }
    Ok(Box::new(Attention {
        scale: node.get_float("scale")?.map(f64::from),
        causal: node.int_or("is_causal", 0)? != 0,
        q_heads: heads("q_num_heads")?,
        kv_heads: heads("kv_num_heads")?,
        softcap: node.float_or("softcap", 0.0)?.into(),
        qk_mode,
        only_y: node.outputs.iter().skip(1).all(String::is_empty),
    }))
}

/// Registers Attention.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new("Attention", 23.., FLOATS, create));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_fast_path_matches_the_general_one() {
        // Two batches, 4 query heads over 2 kv heads (GQA), masks of two
        // broadcast shapes, causal and not.
        let vals = |n: usize, seed: u32| -> Vec<f32> {
            (0..n)
                .map(|i| {
                    ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 500.0
                        - 1.0
                })
                .collect()
        };
        let q = Tensor::from_vec(vec![2, 4, 5, 8], vals(2 * 4 * 5 * 8, 1)).unwrap();
        let k = Tensor::from_vec(vec![2, 2, 6, 8], vals(2 * 2 * 6 * 8, 2)).unwrap();
        let v = Tensor::from_vec(vec![2, 2, 6, 3], vals(2 * 2 * 6 * 3, 3)).unwrap();
        let masks = [
            None,
            Some(Tensor::from_vec(vec![2, 1, 1, 6], vals(12, 4)).unwrap()),
            Some(Tensor::from_vec(vec![5, 6], vals(30, 5)).unwrap()),
        ];
        for mask in &masks {
            for causal in [false, true] {
                let make = |only_y| Attention {
                    scale: Some(0.3),
                    causal,
                    q_heads: None,
                    kv_heads: None,
                    softcap: 0.0,
                    qk_mode: 0,
                    only_y,
                };
                let inputs = [Some(&q), Some(&k), Some(&v), mask.as_ref()];
                let fast = make(true).compute(&inputs).unwrap();
                let general = make(false).compute(&inputs).unwrap();
                assert_eq!(fast.len(), 1);
                assert_eq!(fast[0].shape(), general[0].shape());
                for (a, b) in fast[0]
                    .as_slice::<f32>()
                    .unwrap()
                    .iter()
                    .zip(general[0].as_slice::<f32>().unwrap())
                {
                    assert!((a - b).abs() <= 1e-5 + 1e-5 * b.abs(), "{a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn single_query_attends_by_softmax() {
        // One head, one query, two keys: scores 0 and ln(3) (scale 1).
        let q = Tensor::from_vec(vec![1, 1, 1, 1], vec![1.0f32]).unwrap();
        let k = Tensor::from_vec(vec![1, 1, 2, 1], vec![0.0f32, 3f32.ln()]).unwrap();
        let v = Tensor::from_vec(vec![1, 1, 2, 1], vec![10.0f32, 20.0]).unwrap();
        let a = Attention {
            scale: Some(1.0),
            causal: false,
            q_heads: None,
            kv_heads: None,
            softcap: 0.0,
            qk_mode: 0,
            only_y: false,
        };
        let out = a.compute(&[Some(&q), Some(&k), Some(&v)]).unwrap();
        // Weights 1/4 and 3/4.
        assert!((out[0].as_slice::<f32>().unwrap()[0] - 17.5).abs() < 1e-5);
        // Causal with no past: the query only sees the first key.
        let c = Attention {
            scale: Some(1.0),
            causal: true,
            q_heads: None,
            kv_heads: None,
            softcap: 0.0,
            qk_mode: 0,
            only_y: false,
        };
        let out = c.compute(&[Some(&q), Some(&k), Some(&v)]).unwrap();
        assert!((out[0].as_slice::<f32>().unwrap()[0] - 10.0).abs() < 1e-5);
        // A boolean mask hiding the first key.
        let m = Tensor::from_vec(vec![1, 2], vec![false, true]).unwrap();
        let out = a
            .compute(&[Some(&q), Some(&k), Some(&v), Some(&m)])
            .unwrap();
        assert!((out[0].as_slice::<f32>().unwrap()[0] - 20.0).abs() < 1e-5);
        let bad = Tensor::from_vec(vec![1, 1, 2, 2], vec![0.0f32; 4]).unwrap();
        assert!(a.compute(&[Some(&q), Some(&bad), Some(&v)]).is_err());
    }
}

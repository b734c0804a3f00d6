//! Normalizations over groups of elements: LayerNormalization,
//! RMSNormalization, InstanceNormalization, GroupNormalization,
//! MeanVarianceNormalization, LpNormalization and LRN. Statistics are computed
//! in f64 and results rounded once to the input's type, except f32
//! LayerNormalization with scale and bias of the normalized shape, which
//! runs the vectorized f32 row kernel of `fast_math`.

use oxrt_core::shape::normalize_axis;
use oxrt_core::{
    DataType as D, Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor,
};

use crate::broadcast::broadcast_index;
use crate::kernel::{optional, required, unsupported_type};
use crate::ops::activation::FLOATS;
use crate::ops::cast::cast;
use crate::ops::layout::transpose;

fn floats(t: &Tensor, what: &str) -> Result<Vec<f64>> {
    if !t.dtype().is_float() {
        return Err(unsupported_type(what, t));
    }
    t.to_f64_vec().ok_or_else(|| unsupported_type(what, t))
}

fn back(values: Vec<f64>, shape: &[usize], dtype: D) -> Result<Tensor> {
    cast(&Tensor::from_vec(shape, values)?, dtype)
}

/// Statistics of `groups` contiguous runs of `len` elements: the mean
/// (0 when not centering, as RMSNormalization does) and 1/sqrt(var + eps).
fn group_stats(x: &[f64], len: usize, eps: f64, center: bool) -> (Vec<f64>, Vec<f64>) {
    x.chunks(len.max(1))
        .map(|g| {
            let n = g.len().max(1) as f64;
            let mean = if center {
                g.iter().sum::<f64>() / n
            } else {
                0.0
            };
            let var = g.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
            (mean, 1.0 / (var + eps).sqrt())
        })
        .unzip()
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Layer,
    Rms,
    Instance,
    Group(usize),
}

struct LaneNorm {
    kind: Kind,
    axis: i64,
    epsilon: f64,
}

impl LaneNorm {
    /// f32 LayerNormalization whose scale and bias cover the normalized
    /// axes exactly: the vectorized row kernel, rows in parallel (`None`
    /// when the inputs are other types or broadcast).
    fn layer_f32(
        &self,
        x: &Tensor,
        scale: &Tensor,
        bias: Option<&Tensor>,
    ) -> Option<Result<Vec<Tensor>>> {
        use rayon::prelude::*;
        let s = x.shape();
        let axis = normalize_axis(self.axis, s.len()).ok()?;
        let tail = &s[axis..];
        let fits = |t: &Tensor| t.dtype() == D::F32 && t.shape() == tail;
        if self.kind != Kind::Layer || x.dtype() != D::F32 || !fits(scale) || !bias.is_none_or(fits)
        {
            return None;
        }
        let (xs, g) = (x.as_slice::<f32>().ok()?, scale.as_slice::<f32>().ok()?);
        let b = match bias {
            Some(b) => Some(b.as_slice::<f32>().ok()?),
            None => None,
        };
        let len = tail.iter().product::<usize>().max(1);
        let eps = self.epsilon as f32;
        let mut y = oxrt_core::arena::filled(xs.len(), 0.0f32);
        let stats: Vec<(f32, f32)> = y
            .par_chunks_mut(len)
            .zip(xs.par_chunks(len))
            .with_min_len((8192 / len).max(1))
            .map(|(out, row)| crate::fast_math::layer_norm(row, g, b, eps, out))
            .collect();
        let mut stat_shape = s[..axis].to_vec();
        stat_shape.resize(s.len(), 1);
        let (mean, inv): (Vec<f32>, Vec<f32>) = stats.into_iter().unzip();
        let tensors = [
            Tensor::from_vec(s, y),
            Tensor::from_vec(stat_shape.clone(), mean),
            Tensor::from_vec(stat_shape, inv),
        ];
        Some(tensors.into_iter().collect())
    }
}

impl Kernel for LaneNorm {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let scale = required(inputs, 1)?;
        let bias = optional(inputs, 2);
        if let Some(done) = self.layer_f32(x, scale, bias) {
            return done;
        }
        let s = x.shape();
        let xs = floats(x, "normalization")?;
        // Where each group starts and how scale/bias index into the element.
        let (group_len, per_channel) = match self.kind {
            Kind::Layer | Kind::Rms => {
                let axis = normalize_axis(self.axis, s.len())?;
                (s[axis..].iter().product::<usize>(), false)
            }
            Kind::Instance | Kind::Group(_) => {
                if s.len() < 2 {
                    return Err(Error::invalid(format!(
                        "expected an N x C x ... input, got shape {s:?}"
                    )));
                }
                let spatial: usize = s[2..].iter().product();
                let len = match self.kind {
                    Kind::Group(g) => {
                        if g == 0 || s[1] % g != 0 {
                            return Err(Error::invalid(format!(
                                "{} channels do not divide into {g} groups",
                                s[1]
                            )));
                        }
                        s[1] / g * spatial
                    }
                    _ => spatial,
                };
                (len, true)
            }
        };
        let center = self.kind != Kind::Rms;
        let (mean, inv) = group_stats(&xs, group_len, self.epsilon, center);
        let n = xs.len();
        let affine = |t: &Tensor, what: &str| -> Result<Vec<f64>> {
            let v = floats(t, what)?;
            if per_channel {
                let c = s[1];
                let spatial = n / (s[0] * c).max(1);
                let groups = match self.kind {
                    Kind::Group(g) => g,
                    _ => c,
                };
                if v.len() == c {
                    Ok((0..n).map(|i| v[(i / spatial.max(1)) % c]).collect())
                } else if v.len() == groups {
                    Ok((0..n)
                        .map(|i| v[(i / spatial.max(1)) % c / (c / groups)])
                        .collect())
                } else {
                    Err(Error::invalid(format!(
                        "{what} has {} values for {c} channels",
                        v.len()
                    )))
                }
            } else {
                let idx = broadcast_index(t.shape(), s);
                if crate::broadcast::broadcast_all(&[t.shape(), s])? != s {
                    return Err(Error::invalid(format!(
                        "{what} of shape {:?} does not broadcast to X of shape {s:?}",
                        t.shape()
                    )));
                }
                Ok(idx.iter().map(|&i| v[i]).collect())
            }
        };
        let w = affine(scale, "scale")?;
        let b = bias.map(|t| affine(t, "bias")).transpose()?;
        let y: Vec<f64> = (0..n)
            .map(|i| {
                let g = i / group_len.max(1);
                let v = (xs[i] - mean[g]) * inv[g] * w[i];
                b.as_ref().map_or(v, |b| v + b[i])
            })
            .collect();
        let mut out = vec![back(y, s, x.dtype())?];
        if self.kind == Kind::Layer {
            let axis = normalize_axis(self.axis, s.len())?;
            let mut stat_shape = s[..axis].to_vec();
            stat_shape.resize(s.len(), 1);
            // The ONNX reference returns Mean and InvStdDev in X's type.
            out.push(back(mean, &stat_shape, x.dtype())?);
            out.push(back(inv, &stat_shape, x.dtype())?);
        }
        Ok(out)
    }
}

pub(crate) fn create(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    if node.int_or("stash_type", 1)? != 1 {
        return Err(Error::NotSupported(
            "stash_type other than 1 (float32)".into(),
        ));
    }
    let kind = match node.op_type.as_str() {
        "LayerNormalization" => Kind::Layer,
        "RMSNormalization" => Kind::Rms,
        "InstanceNormalization" => Kind::Instance,
        _ => Kind::Group(
            node.get_int("num_groups")?
                .and_then(|g| usize::try_from(g).ok())
                .ok_or_else(|| Error::invalid("attribute 'num_groups' is required"))?,
        ),
    };
    Ok(Box::new(LaneNorm {
        kind,
        axis: node.int_or("axis", -1)?,
        epsilon: node.float_or("epsilon", 1e-5)?.into(),
    }))
}

/// Moves `axes` of `x` to the end; returns the moved tensor, the length
/// of the trailing block and the permutation that undoes the move.
fn axes_last(x: &Tensor, axes: &[usize]) -> Result<(Tensor, usize, Vec<usize>)> {
    let r = x.rank();
    let mut perm: Vec<usize> = (0..r).filter(|d| !axes.contains(d)).collect();
    perm.extend(axes);
    let mut inverse = vec![0; r];
    for (i, &p) in perm.iter().enumerate() {
        inverse[p] = i;
    }
    let len = axes.iter().map(|&a| x.shape()[a]).product();
    Ok((transpose(x, &perm)?, len, inverse))
}

/// MeanVarianceNormalization `(x - mean) / (std + 1e-9)` over `axes`, and
/// LpNormalization `x / ||x||_p` along `axis` (0 where the norm is 0).
struct AxesNorm {
    axes: Vec<i64>,
    /// `Some(p)` for LpNormalization.
    p: Option<i64>,
}

impl Kernel for AxesNorm {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let mut axes: Vec<usize> = self
            .axes
            .iter()
            .map(|&a| normalize_axis(a, x.rank()))
            .collect::<Result<_>>()?;
        axes.sort_unstable();
        axes.dedup();
        let (moved, len, inverse) = axes_last(x, &axes)?;
        let v = floats(&moved, "normalization")?;
        let y: Vec<f64> = v
            .chunks(len.max(1))
            .flat_map(|g| {
                let n = g.len().max(1) as f64;
                let out: Vec<f64> = match self.p {
                    Some(p) => {
                        let norm = if p == 1 {
                            g.iter().map(|v| v.abs()).sum::<f64>()
                        } else {
                            g.iter().map(|v| v * v).sum::<f64>().sqrt()
                        };
                        g.iter()
                            .map(|v| if norm == 0.0 { 0.0 } else { v / norm })
                            .collect()
                    }
                    None => {
                        let mean = g.iter().sum::<f64>() / n;
                        let var = g.iter().map(|v| v * v).sum::<f64>() / n - mean * mean;
                        let std = var.max(0.0).sqrt();
                        g.iter().map(|v| (v - mean) / (std + 1e-9)).collect()
                    }
                };
                out
            })
            .collect();
        let y = back(y, moved.shape(), x.dtype())?;
        Ok(vec![transpose(&y, &inverse)?])
    }
}

fn create_axes_norm(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(if node.op_type == "LpNormalization" {
        let p = node.int_or("p", 2)?;
        if p != 1 && p != 2 {
            return Err(Error::invalid(format!(
                "LpNormalization p must be 1 or 2, got {p}"
            )));
        }
        AxesNorm {
            axes: vec![node.int_or("axis", -1)?],
            p: Some(p),
        }
    } else {
        AxesNorm {
            axes: node
                .get_ints("axes")?
                .map_or_else(|| vec![0, 2, 3], <[i64]>::to_vec),
            p: None,
        }
    }))
}

/// LRN: each element divided by `(bias + alpha / size * sum of squares
/// over `size` neighbouring channels)^beta`.
struct Lrn {
    alpha: f64,
    beta: f64,
    bias: f64,
    size: usize,
}

impl Kernel for Lrn {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let s = x.shape();
        if s.len() < 2 {
            return Err(Error::invalid(format!("LRN needs N x C x ..., got {s:?}")));
        }
        let v = floats(x, "LRN")?;
        let (c, inner) = (s[1], s[2..].iter().product::<usize>());
        let (before, after) = ((self.size - 1) / 2, self.size.div_ceil(2) - 1);
        let y: Vec<f64> = (0..v.len())
            .map(|i| {
                let ch = (i / inner.max(1)) % c;
                let base = i - ch * inner;
                let lo = ch.saturating_sub(before);
                let hi = (ch + after).min(c - 1);
                let sq: f64 = (lo..=hi).map(|k| v[base + k * inner].powi(2)).sum();
                v[i] / (self.bias + self.alpha / self.size as f64 * sq).powf(self.beta)
            })
            .collect();
        Ok(vec![back(y, s, x.dtype())?])
    }
}

fn create_lrn(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let size = node
        .get_int("size")?
        .and_then(|s| usize::try_from(s).ok())
        .filter(|&s| s > 0)
        .ok_or_else(|| Error::invalid("attribute 'size' must be a positive integer"))?;
    Ok(Box::new(Lrn {
        alpha: node.float_or("alpha", 1e-4)?.into(),
        beta: node.float_or("beta", 0.75)?.into(),
        bias: node.float_or("bias", 1.0)?.into(),
        size,
    }))
}

/// Registers the group and axis normalizations and LRN.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new("LayerNormalization", 17.., FLOATS, create));
    reg.add(KernelDef::new("RMSNormalization", 23.., FLOATS, create));
    reg.add(KernelDef::new("InstanceNormalization", 6.., FLOATS, create));
    reg.add(KernelDef::new("GroupNormalization", 18.., FLOATS, create));
    reg.add(KernelDef::new(
        "MeanVarianceNormalization",
        9..,
        FLOATS,
        create_axes_norm,
    ));
    reg.add(KernelDef::new(
        "LpNormalization",
        1..,
        FLOATS,
        create_axes_norm,
    ));
    reg.add(KernelDef::new("LRN", 1.., FLOATS, create_lrn));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn layer_and_rms_norm() {
        let x = Tensor::from_vec(vec![2, 2], vec![1.0f32, 3.0, -2.0, 2.0]).unwrap();
        let w = Tensor::from_vec(vec![2], vec![1.0f32, 2.0]).unwrap();
        let b = Tensor::from_vec(vec![2], vec![0.5f32, 0.0]).unwrap();
        let k = LaneNorm {
            kind: Kind::Layer,
            axis: -1,
            epsilon: 0.0,
        };
        let out = k.compute(&[Some(&x), Some(&w), Some(&b)]).unwrap();
        assert_eq!(out[0].as_slice::<f32>().unwrap(), &[-0.5, 2.0, -0.5, 2.0]);
        assert_eq!(out[1].shape(), &[2, 1]);
        assert_eq!(out[1].as_slice::<f32>().unwrap(), &[2.0, 0.0]);
        assert_eq!(out[2].as_slice::<f32>().unwrap(), &[1.0, 0.5]);
        let rms = LaneNorm {
            kind: Kind::Rms,
            axis: 1,
            epsilon: 0.0,
        };
        let out = rms.compute(&[Some(&x), Some(&w)]).unwrap();
        let r0 = (5.0f32).sqrt();
        let got = out[0].as_slice::<f32>().unwrap();
        assert!((got[0] - 1.0 / r0).abs() < 1e-6 && (got[1] - 6.0 / r0).abs() < 1e-6);
    }

    #[test]
    fn lrn_over_neighbouring_channels() {
        // One pixel, channels [1, 2, 3], size 3: sums 1+4, 1+4+9, 4+9.
        let x = Tensor::from_vec(vec![1, 3, 1, 1], vec![1.0f64, 2.0, 3.0]).unwrap();
        let k = Lrn {
            alpha: 3.0,
            beta: 1.0,
            bias: 1.0,
            size: 3,
        };
        let y = k
            .compute(&[Some(&x)])
            .unwrap()
            .remove(0)
            .into_vec::<f64>()
            .unwrap();
        assert_eq!(y, vec![1.0 / 6.0, 2.0 / 15.0, 3.0 / 14.0]);
    }

    #[test]
    fn instance_group_mvn_lp() {
        // N=1, C=2, 2 spatial values per channel.
        let x = Tensor::from_vec(vec![1, 2, 2], vec![0.0f32, 2.0, 5.0, 5.0]).unwrap();
        let ones = Tensor::from_vec(vec![2], vec![1.0f32, 1.0]).unwrap();
        let zeros = Tensor::from_vec(vec![2], vec![0.0f32, 0.0]).unwrap();
        let inst = LaneNorm {
            kind: Kind::Instance,
            axis: 0,
            epsilon: 0.0,
        };
        let y = inst
            .compute(&[Some(&x), Some(&ones), Some(&zeros)])
            .unwrap();
        let y = y[0].as_slice::<f32>().unwrap();
        assert_eq!(&y[..2], &[-1.0, 1.0]);
        assert!(y[2].is_nan()); // zero variance without epsilon
        let group = LaneNorm {
            kind: Kind::Group(1),
            axis: 0,
            epsilon: 0.0,
        };
        let y = group
            .compute(&[Some(&x), Some(&ones), Some(&zeros)])
            .unwrap();
        // One group of [0,2,5,5]: mean 3, var 4.5.
        let want = -3.0 / 4.5f32.sqrt();
        assert!((y[0].as_slice::<f32>().unwrap()[0] - want).abs() < 1e-6);
        let lp = AxesNorm {
            axes: vec![-1],
            p: Some(2),
        };
        let x = Tensor::from_vec(vec![2, 2], vec![3.0f32, 4.0, 0.0, 0.0]).unwrap();
        let y = lp.compute(&[Some(&x)]).unwrap();
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[0.6, 0.8, 0.0, 0.0]);
        let mvn = AxesNorm {
            axes: vec![1],
            p: None,
        };
        let y = mvn.compute(&[Some(&x)]).unwrap();
        let y = y[0].as_slice::<f32>().unwrap();
        assert!((y[0] + 1.0).abs() < 1e-6 && (y[1] - 1.0).abs() < 1e-6);
    }
}

//! FlexAttention (ai.onnx.preview): attention over `[B, H, L, E]` inputs
//! whose scores and probabilities pass through optional `score_mod` and
//! `prob_mod` subgraphs, with grouped-query heads and `softmax_precision`.
//!
//! Scores are computed from the pre-scaled (by `sqrt(scale)`, in the input
//! type) query and key, rounded to the softmax precision (f32 for half
//! types, as ONNX does) and handed to the subgraphs as tensors of it.

use oxrt_core::dtype::DataType;
use oxrt_core::{
    Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Subgraph, Tensor, Value,
    ValueRef,
};

use crate::ops::activation::FLOATS;
use crate::ops::cast::cast;
use crate::ops::control::body;
use crate::ops::sequence::{tensor_input, ValueKernel, Values};
use crate::ops::softmax::{softmax, Mode};

struct FlexAttention {
    scale: Option<f64>,
    score_mod: Option<Subgraph>,
    prob_mod: Option<Subgraph>,
    precision: Option<DataType>,
    explicit: usize,
}

/// `values` rounded through `dtype` (a no-op for f64).
fn round_to(values: Vec<f64>, shape: &[usize], dtype: DataType) -> Result<Vec<f64>> {
    let t = cast(&Tensor::from_vec(shape.to_vec(), values)?, dtype)?;
    t.to_f64_vec()
        .ok_or_else(|| Error::invalid(format!("cannot read back {dtype} values")))
}

/// Runs a one-input, one-output mod graph on `x` (of `dtype`).
fn apply_mod(
    g: &Subgraph,
    x: Vec<f64>,
    shape: &[usize],
    dtype: DataType,
    implicit: &[Option<ValueRef<'_>>],
) -> Result<Vec<f64>> {
    let input = cast(&Tensor::from_vec(shape.to_vec(), x)?, dtype)?;
    let out = g
        .run(vec![Value::Tensor(input)], implicit)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::invalid("a mod graph must return one tensor"))?
        .into_tensor()?;
    if out.shape() != shape {
        return Err(Error::invalid(format!(
            "a mod graph returned shape {:?} for scores of shape {shape:?}",
            out.shape()
        )));
    }
    out.to_f64_vec()
        .ok_or_else(|| Error::invalid("a mod graph must return a float tensor"))
}

impl ValueKernel for FlexAttention {
    fn run(&self, inputs: &[Option<ValueRef<'_>>]) -> Result<Vec<Value>> {
        let implicit = &inputs[self.explicit.min(inputs.len())..];
        let get = |i: usize, what: &str| {
            tensor_input(inputs, i)?
                .ok_or_else(|| Error::invalid(format!("input '{what}' is required")))
        };
        let (q, k, v) = (get(0, "Q")?, get(1, "K")?, get(2, "V")?);
        let dims4 = |t: &Tensor| <[usize; 4]>::try_from(t.shape()).map_err(|_| rank_error(t));
        let [b, hq, l, e] = dims4(q)?;
        let [kb, hk, s, ke] = dims4(k)?;
        let [vb, vh, vs, ev] = dims4(v)?;
        if kb != b || vb != b || vh != hk || vs != s || ke != e || hk == 0 || hq % hk != 0 {
            return Err(Error::invalid(format!(
                "Q {:?}, K {:?} and V {:?} do not agree (batch, heads, lengths, sizes)",
                q.shape(),
                k.shape(),
                v.shape()
            )));
        }
        let scale = self.scale.unwrap_or(1.0 / (e as f64).sqrt());
        let root = f64::from((scale as f32).sqrt());
        let dtype = q.dtype();
        let compute = self.precision.unwrap_or(match dtype {
            DataType::F64 => DataType::F64,
            _ => DataType::F32,
        });
        let read = |t: &Tensor| {
            t.to_f64_vec()
                .ok_or_else(|| Error::invalid(format!("FlexAttention of {}", t.dtype())))
        };
        let scaled = |t: &Tensor| -> Result<Vec<f64>> {
            round_to(
                read(t)?.iter().map(|x| x * root).collect(),
                t.shape(),
                dtype,
            )
        };
        let (qv, kv) = (scaled(q)?, scaled(k)?);
        let group = hq / hk;
        let mut scores = vec![0.0; b * hq * l * s];
        for bi in 0..b {
            for h in 0..hq {
                let kh = h / group;
                for i in 0..l {
                    let qr = &qv[((bi * hq + h) * l + i) * e..][..e];
                    for j in 0..s {
                        let kr = &kv[((bi * hk + kh) * s + j) * e..][..e];
                        scores[((bi * hq + h) * l + i) * s + j] =
                            qr.iter().zip(kr).map(|(x, y)| x * y).sum();
                    }
                }
            }
        }
        let shape = [b, hq, l, s];
        let mut scores = round_to(scores, &shape, dtype)?;
        scores = round_to(scores, &shape, compute)?;
        if let Some(g) = &self.score_mod {
            scores = apply_mod(g, scores, &shape, compute, implicit)?;
        }
        let mut probs = round_to(
            softmax(&scores, b * hq * l, s, 1, Mode::Softmax),
            &shape,
            compute,
        )?;
        if let Some(g) = &self.prob_mod {
            probs = apply_mod(g, probs, &shape, compute, implicit)?;
        }
        let vv = round_to(read(v)?, v.shape(), compute)?;
        let mut out = vec![0.0; b * hq * l * ev];
        for bi in 0..b {
            for h in 0..hq {
                let kh = h / group;
                for i in 0..l {
                    let p = &probs[((bi * hq + h) * l + i) * s..][..s];
                    let o = &mut out[((bi * hq + h) * l + i) * ev..][..ev];
                    for (j, pj) in p.iter().enumerate() {
                        let vr = &vv[((bi * hk + kh) * s + j) * ev..][..ev];
                        o.iter_mut().zip(vr).for_each(|(x, y)| *x += pj * y);
                    }
                }
            }
        }
        let out = round_to(out, &[b, hq, l, ev], compute)?;
        Ok(vec![Value::Tensor(cast(
            &Tensor::from_vec(vec![b, hq, l, ev], out)?,
            v.dtype(),
        )?)])
    }
}

fn rank_error(t: &Tensor) -> Error {
    Error::invalid(format!(
        "FlexAttention inputs must be [B, H, L, E], got {:?}",
        t.shape()
    ))
}

fn create(node: &Node, info: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let sub = |attr: &str| -> Result<Option<Subgraph>> {
        if node.attributes.contains_key(attr) {
            let g = body(node, info, attr)?;
            if g.inputs().len() != 1 || g.outputs().len() != 1 {
                return Err(Error::invalid(format!(
                    "'{attr}' must take one input and return one output"
                )));
            }
            Ok(Some(g))
        } else {
            Ok(None)
        }
    };
    let precision = node
        .get_int("softmax_precision")?
        .map(|code| {
            i32::try_from(code)
                .ok()
                .and_then(DataType::from_onnx)
                .filter(|d| d.is_float())
                .ok_or_else(|| {
                    Error::invalid(format!("softmax_precision {code} is not a float type"))
                })
        })
        .transpose()?;
    Ok(Box::new(Values(FlexAttention {
        scale: node.get_float("scale")?.map(f64::from),
        score_mod: sub("score_mod")?,
        prob_mod: sub("prob_mod")?,
        precision,
        explicit: node.inputs.len(),
    })))
}

/// Registers FlexAttention (domain `ai.onnx.preview`).
pub fn register(reg: &mut KernelRegistry) {
    let mut def = KernelDef::new("FlexAttention", 1.., FLOATS, create);
    def.domain = "ai.onnx.preview";
    reg.add(def);
}

//! oxrt's fused operators (domain `oxrt`), produced by the graph optimizer:
//! - `FusedConv` / `FusedGemm`: Conv / Gemm (same inputs and attributes)
//!   followed by the `activation` named in the node (`activation_params`
//!   in a fixed order per activation); FusedConv's optional input 3, `Z`
//!   (the output's shape), is added before the activation (a residual
//!   connection);
//! - `FusedMatMul(A, B, bias?)`: `alpha * op(A) @ op(B) + bias` (numpy
//!   batching; `transA`/`transB` swap an operand's last two axes; `bias`
//!   holds one value per output column), then the activation;
//! - `SkipLayerNormalization(input, skip, gamma, beta?)`: LayerNormalization
//!   over the last axis of `input + skip`; output 1, when named, is the sum;
//! - `Gelu` and `LayerNormalization`, for models whose ONNX opset predates
//!   the standard ops.

use oxrt_core::{Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor};

use crate::kernel::{cast_f32, optional, required, unsupported_type, with_float_type, Real};
use crate::ops::activation::{Epilogue, FLOATS};
use crate::ops::matmul::{matmul_transposed, PackedWeights};

/// The domain of the fused operators.
pub(crate) const DOMAIN: &str = oxrt_core::optimize::OXRT_DOMAIN;

/// A standard kernel followed by a fused activation.
pub(crate) struct WithEpilogue {
    pub inner: Box<dyn Kernel>,
    pub epilogue: Option<Epilogue>,
}

impl WithEpilogue {
    /// The inner kernel's outputs with the activation applied to the last.
    fn finish(&self, mut out: Vec<Tensor>) -> Result<Vec<Tensor>> {
        if let Some(e) = &self.epilogue {
            if let Some(y) = out.pop() {
                out.push(e.apply(y)?);
            }
        }
        Ok(out)
    }
}

impl Kernel for WithEpilogue {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        self.finish(self.inner.compute(inputs)?)
    }

    fn in_place_input(&self) -> Option<usize> {
        self.inner.in_place_input()
    }

    fn compute_in_place(&self, owned: Tensor, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        self.finish(self.inner.compute_in_place(owned, inputs)?)
    }
}

fn create_fused_conv(node: &Node, info: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    crate::ops::conv::create_fused(node, info)
}

fn create_fused_gemm(node: &Node, info: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(WithEpilogue {
        inner: crate::ops::matmul::create_gemm(node, info)?,
        epilogue: Epilogue::from_node(node)?,
    }))
}

struct FusedMatMul {
    transpose: [bool; 2],
    alpha: f32,
    epilogue: Option<Epilogue>,
    /// Constant weights packed at creation (A read as stored, alpha 1).
    packed: Option<PackedWeights>,
}

impl FusedMatMul {
    fn run<T: Real + crate::kernel::Arith>(
        &self,
        a: &Tensor,
        b: &Tensor,
        bias: Option<&Tensor>,
    ) -> Result<Tensor> {
        let packed = match &self.packed {
            Some(p) => p.product(a)?,
            None => None,
        };
        let mut y = match packed {
            Some(y) => y,
            None => matmul_transposed::<T>(a, b, self.transpose, cast_f32(self.alpha)?)?,
        };
        if let Some(bias) = bias {
            let n = y.shape().last().copied().unwrap_or(1);
            if bias.shape() != [n] {
                return Err(Error::invalid(format!(
                    "FusedMatMul bias must have shape [{n}] (one value per output column), got {:?}",
                    bias.shape()
                )));
            }
            use rayon::prelude::*;
            let bv = bias.as_slice::<T>()?;
            y.as_slice_mut::<T>()?
                .par_chunks_mut(n.max(1))
                .for_each(|row| row.iter_mut().zip(bv).for_each(|(v, &b)| *v = *v + b));
        }
        match &self.epilogue {
            Some(e) => e.apply(y),
            None => Ok(y),
        }
    }
}

impl Kernel for FusedMatMul {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let (a, b, bias) = (
            required(inputs, 0)?,
            required(inputs, 1)?,
            optional(inputs, 2),
        );
        if a.dtype() != b.dtype() {
            return Err(Error::invalid(format!(
                "FusedMatMul inputs differ in type: {} and {}",
                a.dtype(),
                b.dtype()
            )));
        }
        with_float_type!(a.dtype(), T => Ok(vec![self.run::<T>(a, b, bias)?]),
            _ => Err(unsupported_type("FusedMatMul", a)))
    }
}

fn create_fused_matmul(node: &Node, info: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let transpose = [
        node.int_or("transA", 0)? != 0,
        node.int_or("transB", 0)? != 0,
    ];
    let alpha = node.float_or("alpha", 1.0)?;
    Ok(Box::new(FusedMatMul {
        transpose,
        alpha,
        epilogue: Epilogue::from_node(node)?,
        packed: (!transpose[0] && alpha == 1.0)
            .then(|| PackedWeights::from_info(info, transpose[1]))
            .flatten(),
    }))
}

struct SkipLayerNorm {
    epsilon: f64,
}

impl SkipLayerNorm {
    fn run<T: Real>(
        &self,
        x: &Tensor,
        skip: &Tensor,
        gamma: &Tensor,
        beta: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor)> {
        let h = x.shape().last().copied().unwrap_or(0);
        if x.shape() != skip.shape() || gamma.len() != h || beta.is_some_and(|b| b.len() != h) {
            return Err(Error::invalid(format!(
                "SkipLayerNormalization needs input and skip of one shape and gamma/beta of its last dim: input {:?}, skip {:?}, gamma {:?}, beta {:?}",
                x.shape(),
                skip.shape(),
                gamma.shape(),
                beta.map(Tensor::shape)
            )));
        }
        let (xs, ss, g) = (
            x.as_slice::<T>()?,
            skip.as_slice::<T>()?,
            gamma.as_slice::<T>()?,
        );
        let b = beta.map(|b| b.as_slice::<T>()).transpose()?;
        let mut sum: Vec<T> = xs.iter().zip(ss).map(|(&a, &b)| a + b).collect();
        let mut y = oxrt_core::arena::filled(sum.len(), T::zero());
        if let (Some(y), Some(sum)) = (
            crate::kernel::as_f32_mut(&mut y),
            crate::kernel::as_f32_mut(&mut sum),
        ) {
            // f32: the vectorized row kernel, rows in parallel.
            use rayon::prelude::*;
            let (g, b) = (
                gamma.as_slice::<f32>()?,
                beta.map(|b| b.as_slice::<f32>()).transpose()?,
            );
            let eps = self.epsilon as f32;
            y.par_chunks_mut(h.max(1))
                .zip(sum.par_chunks(h.max(1)))
                .with_min_len((8192 / h.max(1)).max(1))
                .for_each(|(out, row)| {
                    crate::fast_math::layer_norm(row, g, b, eps, out);
                });
        } else {
            self.rows_f64(&mut sum, &mut y, g, b, h);
        }
        Ok((
            Tensor::from_vec(x.shape(), y)?,
            Tensor::from_vec(x.shape(), std::mem::take(&mut sum))?,
        ))
    }

    /// The rows of `y` from those of `sum` in f64 (half precision).
    fn rows_f64<T: Real>(&self, sum: &mut [T], y: &mut [T], g: &[T], b: Option<&[T]>, h: usize) {
        let f = |v: T| v.to_f64().unwrap_or(f64::NAN);
        for (row, out) in sum.chunks_mut(h.max(1)).zip(y.chunks_mut(h.max(1))) {
            let mean = row.iter().map(|&v| f(v)).sum::<f64>() / h as f64;
            let var = row.iter().map(|&v| (f(v) - mean).powi(2)).sum::<f64>() / h as f64;
            let inv = 1.0 / (var + self.epsilon).sqrt();
            for (i, o) in out.iter_mut().enumerate() {
                let mut v = (f(row[i]) - mean) * inv * f(g[i]);
                if let Some(b) = b {
                    v += f(b[i]);
                }
                *o = T::from(v).unwrap_or(T::nan());
            }
        }
    }
}

impl Kernel for SkipLayerNorm {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let (x, skip, gamma, beta) = (
            required(inputs, 0)?,
            required(inputs, 1)?,
            required(inputs, 2)?,
            optional(inputs, 3),
        );
        with_float_type!(x.dtype(), T => {
            let (y, sum) = self.run::<T>(x, skip, gamma, beta)?;
            Ok(vec![y, sum])
        }, _ => Err(unsupported_type("SkipLayerNormalization", x)))
    }
}

fn create_skip_layer_norm(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(SkipLayerNorm {
        epsilon: f64::from(node.float_or("epsilon", 1e-5)?),
    }))
}

/// Registers the `oxrt`-domain fused operators.
pub fn register(reg: &mut KernelRegistry) {
    let defs = [
        KernelDef::new("FusedConv", 1.., FLOATS, create_fused_conv),
        KernelDef::new("FusedGemm", 1.., FLOATS, create_fused_gemm),
        KernelDef::new("FusedMatMul", 1.., FLOATS, create_fused_matmul),
        KernelDef::new(
            "SkipLayerNormalization",
            1..,
            FLOATS,
            create_skip_layer_norm,
        ),
        KernelDef::new("Gelu", 1.., FLOATS, crate::ops::activation::create),
        KernelDef::new("Attention", 1.., FLOATS, crate::ops::attention::create),
        KernelDef::new(
            "LayerNormalization",
            1..,
            FLOATS,
            crate::ops::lane_norm::create,
        ),
    ];
    for mut def in defs {
        def.domain = DOMAIN;
        reg.add(def);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeMap;

    use oxrt_core::ir::Attribute;

    use super::*;

    fn node(op: &str, attrs: &[(&str, Attribute)]) -> Node {
        Node {
            name: "n".into(),
            op_type: op.into(),
            domain: DOMAIN.into(),
            inputs: vec![],
            outputs: vec!["y".into()],
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    fn info() -> KernelInfo<'static> {
        KernelInfo {
            node: oxrt_core::NodeContext {
                opset: 1,
                input_types: vec![],
            },
            constants: BTreeMap::new(),
            output_types: vec![],
            subgraphs: None,
        }
    }

    #[test]
    fn fused_matmul_transposes_adds_bias_and_activates() {
        // A stored 3x2 read transposed (2x3), B 3x2: A' @ B, + bias, Relu.
        let a = Tensor::from_vec(vec![3, 2], vec![1.0f32, 4.0, 2.0, 5.0, 3.0, 6.0]).unwrap();
        let b = Tensor::from_vec(vec![3, 2], vec![1.0f32, -1.0, 0.0, -1.0, 1.0, -1.0]).unwrap();
        let bias = Tensor::from_vec(vec![2], vec![0.5f32, 1.0]).unwrap();
        let n = node(
            "FusedMatMul",
            &[
                ("transA", Attribute::Int(1)),
                ("activation", Attribute::String(b"Relu".to_vec())),
            ],
        );
        let k = create_fused_matmul(&n, &info()).unwrap();
        let y = k.compute(&[Some(&a), Some(&b), Some(&bias)]).unwrap();
        // A' = [[1,2,3],[4,5,6]]; A'B = [[4,-6],[10,-15]]; + bias; relu.
        assert_eq!(y[0].shape(), [2, 2]);
        assert_eq!(y[0].as_slice::<f32>().unwrap(), [4.5, 0.0, 10.5, 0.0]);
    }

    #[test]
    fn constant_weights_packed_at_creation_give_the_unpacked_result() {
        if !crate::packed::available() {
            eprintln!("skipped: this CPU has no packed product");
            return;
        }
        let vals = crate::test_values;
        // [2, 37, 96] @ [96, 64] + bias, Relu; and 500 rows (the crate's).
        let (k, n) = (96, 64);
        let w = Tensor::from_vec(vec![k, n], vals(k * n, 1)).unwrap();
        let bias = Tensor::from_vec(vec![n], vals(n, 2)).unwrap();
        let relu = ("activation", Attribute::String(b"Relu".to_vec()));
        let fused = node("FusedMatMul", std::slice::from_ref(&relu));
        let mut with_w = info();
        with_w.constants.insert(1, &w);
        let packed = create_fused_matmul(&fused, &with_w).unwrap();
        let plain = create_fused_matmul(&fused, &info()).unwrap();
        let mut matmul = node("MatMul", &[]);
        matmul.domain = String::new();
        let packed_mm = crate::ops::matmul::create_matmul(&matmul, &with_w).unwrap();
        let plain_mm = crate::ops::matmul::create_matmul(&matmul, &info()).unwrap();
        for shape in [vec![2, 37, k], vec![500, k]] {
            let rows: usize = shape[..shape.len() - 1].iter().product();
            let a = Tensor::from_vec(shape, vals(rows * k, 3)).unwrap();
            for (p, q, args) in [
                (&packed, &plain, vec![Some(&a), Some(&w), Some(&bias)]),
                (&packed_mm, &plain_mm, vec![Some(&a), Some(&w)]),
            ] {
                let (y, want) = (p.compute(&args).unwrap(), q.compute(&args).unwrap());
                assert_eq!(y[0].shape(), want[0].shape());
                let (y, want) = (
                    y[0].as_slice::<f32>().unwrap(),
                    want[0].as_slice::<f32>().unwrap(),
                );
                for (i, (a, b)) in y.iter().zip(want).enumerate() {
                    assert!((a - b).abs() < 1e-4, "rows {rows} at {i}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn fused_conv_adds_the_residual_before_the_activation() {
        // 1x1 conv over 2 channels (a channel swap, scaled), bias, + Z, Relu;
        // and a depthwise 1x1 (group 2), which sums after its direct kernel.
        let x = Tensor::from_vec(vec![1, 2, 1, 2], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
        let z = Tensor::from_vec(vec![1, 2, 1, 2], vec![-10.0f32, 1.0, 0.5, -0.5]).unwrap();
        let b = Tensor::from_vec(vec![2], vec![1.0f32, -1.0]).unwrap();
        let relu = ("activation", Attribute::String(b"Relu".to_vec()));
        let mut n = node("FusedConv", std::slice::from_ref(&relu));
        n.inputs = ["x", "w", "b", "z"].map(String::from).to_vec();
        let w = Tensor::from_vec(vec![2, 2, 1, 1], vec![0.0f32, 2.0, 2.0, 0.0]).unwrap();
        let k = create_fused_conv(&n, &info()).unwrap();
        assert_eq!(k.in_place_input(), Some(3));
        // y = 2 * swap(x) + b + z = [6+1-10, 8+1+1, 2-1+0.5, 4-1-0.5], relu.
        let want = [0.0, 10.0, 1.5, 2.5];
        let args = [Some(&x), Some(&w), Some(&b), Some(&z)];
        assert_eq!(
            k.compute(&args).unwrap()[0].as_slice::<f32>().unwrap(),
            want
        );
        let owned = k
            .compute_in_place(z.clone(), &[Some(&x), Some(&w), Some(&b), None])
            .unwrap();
        assert_eq!(owned[0].as_slice::<f32>().unwrap(), want);

        let mut dw = node("FusedConv", &[relu, ("group", Attribute::Int(2))]);
        dw.inputs = n.inputs.clone();
        let w = Tensor::from_vec(vec![2, 1, 1, 1], vec![2.0f32, -1.0]).unwrap();
        let k = create_fused_conv(&dw, &info()).unwrap();
        // y = [2, 4, -3, -4] + b + z = [-7, 6, -3.5, -5.5], relu.
        let out = k
            .compute(&[Some(&x), Some(&w), Some(&b), Some(&z)])
            .unwrap();
        assert_eq!(out[0].as_slice::<f32>().unwrap(), [0.0, 6.0, 0.0, 0.0]);
        // A Z of another shape is an error naming both.
        let short = Tensor::from_vec(vec![1, 2, 1, 1], vec![0.0f32, 0.0]).unwrap();
        let err = k
            .compute(&[Some(&x), Some(&w), Some(&b), Some(&short)])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Z must have the output's shape [1, 2, 1, 2]"),
            "{err}"
        );
    }

    #[test]
    fn fused_depthwise_conv_applies_bias_activation_and_residual_per_channel() {
        // 3x3 depthwise over 2 images of 5 channels at strides 1 and 2
        // (the register epilogue for Relu and Clip, the plane finish for
        // Sigmoid, the sum after the kernel with a residual).
        let vals = crate::test_values;
        let (n, c, h, wd) = (2, 5, 9, 21);
        let x = Tensor::from_vec(vec![n, c, h, wd], vals(n * c * h * wd, 1)).unwrap();
        let w = Tensor::from_vec(vec![c, 1, 3, 3], vals(c * 9, 2)).unwrap();
        let b = Tensor::from_vec(vec![c], vals(c, 3)).unwrap();
        let (xd, wdat, bd) = (
            x.as_slice::<f32>().unwrap(),
            w.as_slice::<f32>().unwrap(),
            b.as_slice::<f32>().unwrap(),
        );
        for stride in [1, 2] {
            let g = crate::test_window2d(&[3, 3], &[stride, stride], &[1; 4], &[1, 1], [h, wd]);
            let [oh, ow] = g.output;
            let plane = oh * ow;
            let want: Vec<f64> = (0..n)
                .flat_map(|img| {
                    let xi = &xd[img * c * h * wd..][..c * h * wd];
                    crate::conv2d_reference(xi, wdat, [c, c, c], [h, wd], &g)
                })
                .collect();
            let z = Tensor::from_vec(vec![n, c, oh, ow], vals(n * c * plane, 4)).unwrap();
            type Reference = fn(f64) -> f64;
            let acts: [(&str, Vec<f32>, Reference); 3] = [
                ("Relu", vec![], |v| v.max(0.0)),
                ("Clip", vec![-0.2, 0.3], |v| v.clamp(-0.2, 0.3)),
                ("Sigmoid", vec![], |v| 1.0 / (1.0 + (-v).exp())),
            ];
            for (name, params, f) in acts {
                for residual in [false, true] {
                    let mut attrs = vec![
                        ("activation", Attribute::String(name.as_bytes().to_vec())),
                        ("group", Attribute::Int(c as i64)),
                        ("kernel_shape", Attribute::Ints(vec![3, 3])),
                        ("pads", Attribute::Ints(vec![1; 4])),
                        ("strides", Attribute::Ints(vec![stride as i64; 2])),
                    ];
                    if !params.is_empty() {
                        attrs.push(("activation_params", Attribute::Floats(params.clone())));
                    }
                    let mut nd = node("FusedConv", &attrs);
                    nd.inputs = ["x", "w", "b", "z"][..3 + usize::from(residual)]
                        .iter()
                        .map(|s| s.to_string())
                        .collect();
                    let k = create_fused_conv(&nd, &info()).unwrap();
                    let zarg = residual.then_some(&z);
                    let y = k.compute(&[Some(&x), Some(&w), Some(&b), zarg]).unwrap();
                    assert_eq!(y[0].shape(), [n, c, oh, ow]);
                    let zd = z.as_slice::<f32>().unwrap();
                    for (i, (&got, &plain)) in y[0]
                        .as_slice::<f32>()
                        .unwrap()
                        .iter()
                        .zip(&want)
                        .enumerate()
                    {
                        let extra = if residual { f64::from(zd[i]) } else { 0.0 };
                        let expected = f(plain + f64::from(bd[(i / plane) % c]) + extra);
                        assert!(
                            (f64::from(got) - expected).abs() < 1e-4,
                            "stride {stride} {name} residual {residual} at {i}: {got} vs {expected}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn skip_layer_norm_matches_add_then_normalize() {
        let x = Tensor::from_vec(vec![1, 4], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
        let s = Tensor::from_vec(vec![1, 4], vec![1.0f32, 0.0, -1.0, 4.0]).unwrap();
        let g = Tensor::from_vec(vec![4], vec![1.0f32, 2.0, 1.0, 1.0]).unwrap();
        let k = create_skip_layer_norm(&node("SkipLayerNormalization", &[]), &info()).unwrap();
        let out = k.compute(&[Some(&x), Some(&s), Some(&g), None]).unwrap();
        // sum = [2, 2, 2, 8]: mean 3.5, var 6.75.
        assert_eq!(out[1].as_slice::<f32>().unwrap(), [2.0, 2.0, 2.0, 8.0]);
        let inv = 1.0 / (6.75f64 + 1e-5).sqrt();
        let want = [-1.5 * inv, -3.0 * inv, -1.5 * inv, 4.5 * inv];
        for (y, w) in out[0].as_slice::<f32>().unwrap().iter().zip(want) {
            assert!((f64::from(*y) - w).abs() < 1e-6, "{y} vs {w}");
        }
    }
}

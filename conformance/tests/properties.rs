//! Property tests: each CPU operator, run through a `Session`, against the
//! plain reference implementations on generated shapes, attributes and values.
#![allow(clippy::unwrap_used)]

use oxrt::{DataType, Tensor};
use oxrt_conformance::build::{run_single, Attr};
use oxrt_conformance::check::{close, f64s, small_ints};
use oxrt_conformance::reference as r;
use oxrt_conformance::strategies::{broadcastable_pair, f32_tensor, nonempty_shape, values};
use proptest::prelude::*;

/// An activation: op name, attributes and the scalar reference function.
type UnaryCase = (
    &'static str,
    Vec<(&'static str, Attr)>,
    Box<dyn Fn(f64) -> f64>,
);

fn tensor_pair(max_rank: usize, max_dim: usize) -> impl Strategy<Value = (Tensor, Tensor)> {
    broadcastable_pair(max_rank, max_dim)
        .prop_flat_map(|(a, b)| (f32_tensor(a, 8.0), f32_tensor(b, 8.0)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn arithmetic_broadcasts((a, b) in tensor_pair(4, 3), op in 0usize..4) {
        let (name, f): (&str, fn(f64, f64) -> f64) = match op {
            0 => ("Add", |x, y| x + y),
            1 => ("Sub", |x, y| x - y),
            2 => ("Mul", |x, y| x * y),
            _ => ("Div", |x, y| x / y),
        };
        // Keep divisors away from zero so the f32 result is well conditioned.
        let b = if name == "Div" {
            Tensor::from_vec(b.shape(), b.as_slice::<f32>().unwrap().iter().map(|v| if v.abs() < 0.5 { v + 1.0 } else { *v }).collect()).unwrap()
        } else { b };
        let out = run_single(name, 14, &[&a, &b], DataType::F32, &[]).unwrap();
        let (shape, want) = r::binary(&f64s(&a), a.shape(), &f64s(&b), b.shape(), f).unwrap();
        // One f32 rounding of an exact result.
        close(&out[0], &shape, &want, 1e-6, 1e-6)?;
    }

    #[test]
    fn integer_arithmetic_is_exact((sa, sb) in broadcastable_pair(3, 3), seed in any::<u64>()) {
        let gen = |s: &[usize], k: u64| -> Tensor {
            let n: usize = s.iter().product();
            Tensor::from_vec(s.to_vec(), (0..n as u64).map(|i| ((i * 7919 + seed + k) % 201) as i64 - 100).collect()).unwrap()
        };
        let (a, b) = (gen(&sa, 0), gen(&sb, 13));
        let out = run_single("Mul", 14, &[&a, &b], DataType::I64, &[]).unwrap();
        let (shape, want) = r::binary(&f64s(&a), &sa, &f64s(&b), &sb, |x, y| x * y).unwrap();
        prop_assert_eq!(out[0].shape(), &shape[..]);
        prop_assert_eq!(f64s(&out[0]), want);
    }

    #[test]
    fn unary_activations(shape in nonempty_shape(0, 3, 4), op in 0usize..5, alpha in 0.01f32..0.5) {
        let x = Tensor::from_vec(shape.clone(), (0..shape.iter().product::<usize>()).map(|i| (i as f32 * 0.37).sin() * 6.0).collect()).unwrap();
        let a = f64::from(alpha);
        let (name, attrs, f): UnaryCase = match op {
            0 => ("Relu", vec![], Box::new(|v: f64| v.max(0.0))),
            1 => ("Sigmoid", vec![], Box::new(|v: f64| 1.0 / (1.0 + (-v).exp()))),
            2 => ("Tanh", vec![], Box::new(|v: f64| v.tanh())),
            3 => ("LeakyRelu", vec![("alpha", Attr::Float(alpha))], Box::new(move |v: f64| if v >= 0.0 { v } else { v * a })),
            _ => ("Clip", vec![], Box::new(|v: f64| v.clamp(-1.0, 1.0))),
        };
        if name == "Clip" {
            let lo = Tensor::scalar(-1.0f32);
            let hi = Tensor::scalar(1.0f32);
            let out = run_single(name, 13, &[&x, &lo, &hi], DataType::F32, &[]).unwrap();
            close(&out[0], &shape, &f64s(&x).iter().map(|&v| f(v)).collect::<Vec<_>>(), 0.0, 0.0)?;
        } else {
            let out = run_single(name, 14, &[&x], DataType::F32, &attrs).unwrap();
            // f32 transcendental functions: a few ulps.
            close(&out[0], &shape, &f64s(&x).iter().map(|&v| f(v)).collect::<Vec<_>>(), 1e-6, 1e-5)?;
        }
    }

    #[test]
    fn matmul_batched_with_broadcast(
        (ba, bb) in broadcastable_pair(2, 3), m in 1usize..5, k in 1usize..6, n in 1usize..5,
        seed in values(1, 1.0),
    ) {
        let mk = |batch: &[usize], rows: usize, cols: usize, s: f32| {
            let mut shape = batch.to_vec();
            shape.extend([rows, cols]);
            let len: usize = shape.iter().product();
            Tensor::from_vec(shape, (0..len).map(|i| ((i as f32 + s) * 0.71).sin()).collect()).unwrap()
        };
        let (a, b) = (mk(&ba, m, k, seed[0]), mk(&bb, k, n, 3.0));
        let out = run_single("MatMul", 13, &[&a, &b], DataType::F32, &[]).unwrap();
        let batch = r::broadcast_shape(&ba, &bb).unwrap();
        let count: usize = batch.iter().product();
        let (av, bv) = (f64s(&a), f64s(&b));
        let mut want = Vec::new();
        for i in 0..count {
            let idx = r::unravel(i, &batch);
            let pick = |own: &[usize]| -> usize {
                let off = idx.len() - own.len();
                own.iter().enumerate().fold(0, |acc, (d, &s)| acc * s + if s == 1 { 0 } else { idx[off + d] })
            };
            let (ia, ib) = (pick(&ba), pick(&bb));
            want.extend(r::matmul2d(&av[ia * m * k..][..m * k], &bv[ib * k * n..][..k * n], m, k, n));
        }
        let mut shape = batch;
        shape.extend([m, n]);
        // k products of values in [-1, 1], accumulated in f32.
        close(&out[0], &shape, &want, 1e-6 * k as f64, 1e-5)?;
    }

    #[test]
    fn gemm_attributes(m in 1usize..5, k in 1usize..6, n in 1usize..5, ta in any::<bool>(), tb in any::<bool>(),
                       alpha in -2.0f32..2.0, beta in -2.0f32..2.0, c_kind in 0usize..4) {
        let sa = if ta { [k, m] } else { [m, k] };
        let sb = if tb { [n, k] } else { [k, n] };
        let a = Tensor::from_vec(sa.to_vec(), (0..m * k).map(|i| (i as f32 * 0.3).cos()).collect()).unwrap();
        let b = Tensor::from_vec(sb.to_vec(), (0..k * n).map(|i| (i as f32 * 0.7).sin()).collect()).unwrap();
        let c_shape: Vec<usize> = match c_kind { 0 => vec![], 1 => vec![n], 2 => vec![m, 1], _ => vec![m, n] };
        let c = Tensor::from_vec(c_shape.clone(), (0..c_shape.iter().product::<usize>()).map(|i| i as f32 - 1.5).collect()).unwrap();
        let attrs = [("alpha", Attr::Float(alpha)), ("beta", Attr::Float(beta)), ("transA", Attr::Int(ta as i64)), ("transB", Attr::Int(tb as i64))];
        let out = run_single("Gemm", 13, &[&a, &b, &c], DataType::F32, &attrs).unwrap();
        let want = r::gemm(&f64s(&a), sa, &f64s(&b), sb, Some((&f64s(&c), &c_shape)), f64::from(alpha), f64::from(beta), ta, tb);
        close(&out[0], &[m, n], &want, 1e-5 * k as f64, 1e-5)?;
    }

    #[test]
    fn conv2d_groups_pads_strides_dilations(
        n in 1usize..3, cg in 1usize..3, groups in 1usize..3, mg in 1usize..3,
        kh in 1usize..4, kw in 1usize..4, extra_h in 0usize..5, extra_w in 0usize..5,
        pads in proptest::array::uniform4(0usize..3), sh in 1usize..3, sw in 1usize..3, dh in 1usize..3, dw in 1usize..3,
        bias in any::<bool>(),
    ) {
        let (c, m) = (cg * groups, mg * groups);
        let (h, w) = (dh * (kh - 1) + 1 + extra_h, dw * (kw - 1) + 1 + extra_w);
        let xs = [n, c, h, w];
        let ws = [m, cg, kh, kw];
        let x = Tensor::from_vec(xs.to_vec(), (0..n * c * h * w).map(|i| ((i * 37 % 17) as f32 - 8.0) / 8.0).collect()).unwrap();
        let wt = Tensor::from_vec(ws.to_vec(), (0..m * cg * kh * kw).map(|i| ((i * 11 % 7) as f32 - 3.0) / 4.0).collect()).unwrap();
        let b = Tensor::from_vec(vec![m], (0..m).map(|i| i as f32 * 0.5 - 1.0).collect()).unwrap();
        let attrs = [
            ("group", Attr::Int(groups as i64)),
            ("pads", Attr::Ints(vec![pads[0] as i64, pads[1] as i64, pads[2] as i64, pads[3] as i64])),
            ("strides", Attr::Ints(vec![sh as i64, sw as i64])),
            ("dilations", Attr::Ints(vec![dh as i64, dw as i64])),
        ];
        let inputs: Vec<&Tensor> = if bias { vec![&x, &wt, &b] } else { vec![&x, &wt] };
        let out = run_single("Conv", 11, &inputs, DataType::F32, &attrs).unwrap();
        let bv = f64s(&b);
        let (shape, want) = r::conv2d(&f64s(&x), xs, &f64s(&wt), ws, bias.then_some(&bv[..]), pads, [sh, sw], [dh, dw], groups);
        // Inputs are multiples of 1/8 and 1/4: products and sums are exact in f32.
        close(&out[0], &shape, &want, 0.0, 0.0)?;
    }

    #[test]
    fn max_and_average_pool(
        c in 1usize..3, kh in 1usize..4, kw in 1usize..4, extra in 0usize..4,
        sh in 1usize..3, sw in 1usize..3, pad_seed in proptest::array::uniform4(0usize..3),
        max in any::<bool>(), include_pad in any::<bool>(),
    ) {
        let (h, w) = (kh + extra, kw + extra + 1);
        // ONNX requires each pad to be smaller than the kernel.
        let pads = [pad_seed[0] % kh, pad_seed[1] % kw, pad_seed[2] % kh, pad_seed[3] % kw];
        let x = Tensor::from_vec(vec![1, c, h, w], (0..c * h * w).map(|i| ((i * 29 % 23) as f32 - 11.0) / 4.0).collect()).unwrap();
        let mut attrs = vec![
            ("kernel_shape", Attr::Ints(vec![kh as i64, kw as i64])),
            ("strides", Attr::Ints(vec![sh as i64, sw as i64])),
            ("pads", Attr::Ints(pads.iter().map(|&p| p as i64).collect())),
        ];
        if !max {
            attrs.push(("count_include_pad", Attr::Int(include_pad as i64)));
        }
        let out = run_single(if max { "MaxPool" } else { "AveragePool" }, 11, &[&x], DataType::F32, &attrs).unwrap();
        let (shape, want) = r::pool2d(&f64s(&x), [1, c, h, w], [kh, kw], [sh, sw], pads, max, include_pad);
        close(&out[0], &shape, &want, 1e-6, 1e-6)?;
    }

    #[test]
    fn softmax_any_axis(shape in nonempty_shape(1, 4, 4), axis_seed in any::<usize>(), log in any::<bool>()) {
        let axis = axis_seed % shape.len();
        let x = Tensor::from_vec(shape.clone(), (0..shape.iter().product::<usize>()).map(|i| ((i * 13 % 19) as f32) - 9.0).collect()).unwrap();
        let out = run_single(if log { "LogSoftmax" } else { "Softmax" }, 13, &[&x], DataType::F32, &[("axis", Attr::Int(axis as i64))]).unwrap();
        close(&out[0], &shape, &r::softmax(&f64s(&x), &shape, axis, log), 1e-6, 1e-5)?;
    }

    #[test]
    fn transpose_any_permutation(shape in nonempty_shape(1, 5, 3), keys in proptest::collection::vec(any::<u32>(), 5)) {
        let mut perm: Vec<usize> = (0..shape.len()).collect();
        perm.sort_by_key(|&i| keys[i]);
        let x = Tensor::from_vec(shape.clone(), (0..shape.iter().product::<usize>()).map(|i| i as f32).collect()).unwrap();
        let out = run_single("Transpose", 13, &[&x], DataType::F32, &[("perm", Attr::Ints(perm.iter().map(|&p| p as i64).collect()))]).unwrap();
        let (s, want) = r::transpose(&f64s(&x), &shape, &perm);
        close(&out[0], &s, &want, 0.0, 0.0)?;
    }

    #[test]
    fn concat_along_any_axis(base in nonempty_shape(1, 4, 3), sizes in proptest::collection::vec(0usize..4, 1..4), axis_seed in any::<usize>()) {
        let axis = axis_seed % base.len();
        let mut parts = Vec::new();
        let mut start = 0.0f32;
        for &s in &sizes {
            let mut shape = base.clone();
            shape[axis] = s;
            let len: usize = shape.iter().product();
            parts.push(Tensor::from_vec(shape, (0..len).map(|i| start + i as f32).collect()).unwrap());
            start += 100.0;
        }
        let refs: Vec<&Tensor> = parts.iter().collect();
        let out = run_single("Concat", 13, &refs, DataType::F32, &[("axis", Attr::Int(axis as i64 - base.len() as i64))]).unwrap();
        let (s, want) = r::concat(&parts.iter().map(|p| (f64s(p), p.shape().to_vec())).collect::<Vec<_>>(), axis);
        close(&out[0], &s, &want, 0.0, 0.0)?;
    }

    #[test]
    fn gather_with_negative_indices(ds in nonempty_shape(1, 3, 4), is in proptest::collection::vec(1usize..3, 0..3), axis_seed in any::<usize>(), seeds in proptest::collection::vec(any::<i64>(), 9)) {
        let axis = axis_seed % ds.len();
        let n_idx: usize = is.iter().product();
        let dim = ds[axis] as i64;
        let raw: Vec<i64> = (0..n_idx).map(|i| seeds[i % seeds.len()].rem_euclid(2 * dim) - dim).collect();
        let data = Tensor::from_vec(ds.clone(), (0..ds.iter().product::<usize>()).map(|i| i as f32).collect()).unwrap();
        let idx = Tensor::from_vec(is.clone(), raw.clone()).unwrap();
        let out = run_single("Gather", 13, &[&data, &idx], DataType::F32, &[("axis", Attr::Int(axis as i64))]).unwrap();
        let norm: Vec<usize> = raw.iter().map(|&v| if v < 0 { (v + dim) as usize } else { v as usize }).collect();
        let (s, want) = r::gather(&f64s(&data), &ds, &norm, &is, axis);
        close(&out[0], &s, &want, 0.0, 0.0)?;
    }

    #[test]
    fn reshape_with_zero_and_minus_one(shape in nonempty_shape(1, 4, 3), use_zero in any::<bool>(), infer_at in any::<usize>()) {
        let total: usize = shape.iter().product();
        // Target: keep dim 0 (as 0 when use_zero), infer the rest with -1 or spell it out.
        let mut target = vec![if use_zero { 0 } else { shape[0] as i64 }];
        if infer_at % 2 == 0 { target.push(-1) } else { target.push((total / shape[0]) as i64) }
        let x = Tensor::from_vec(shape.clone(), (0..total).map(|i| i as f32).collect()).unwrap();
        let t = Tensor::from_vec(vec![2], target).unwrap();
        let out = run_single("Reshape", 14, &[&x, &t], DataType::F32, &[]).unwrap();
        close(&out[0], &[shape[0], total / shape[0]], &(0..total).map(|i| i as f64).collect::<Vec<_>>(), 0.0, 0.0)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn add_and_mul_over_every_numeric_dtype((sa, sb) in broadcastable_pair(3, 3), dtype in oxrt_conformance::strategies::numeric_dtype(), mul in any::<bool>()) {
        let (a, b) = (small_ints(&sa, dtype, 0), small_ints(&sb, dtype, 5));
        prop_assert_eq!(a.dtype(), dtype);
        let op = if mul { "Mul" } else { "Add" };
        let out = run_single(op, 14, &[&a, &b], dtype, &[]).unwrap();
        prop_assert_eq!(out[0].dtype(), dtype);
        let (shape, want) = r::binary(&f64s(&a), &sa, &f64s(&b), &sb, |x, y| if mul { x * y } else { x + y }).unwrap();
        // Operands are 0..=10, so results (<= 100) are exact in every type.
        close(&out[0], &shape, &want, 0.0, 0.0)?;
    }

    #[test]
    fn batch_normalization_inference(n in 1usize..3, c in 1usize..4, hw in 0usize..5, eps in 1e-5f32..1e-2) {
        let x = Tensor::from_vec(vec![n, c, hw], (0..n * c * hw).map(|i| (i as f32 * 0.9).sin() * 3.0).collect()).unwrap();
        let p = |f: fn(usize) -> f32| Tensor::from_vec(vec![c], (0..c).map(f).collect()).unwrap();
        let (scale, bias, mean, var) = (p(|i| 0.5 + i as f32), p(|i| i as f32 - 1.0), p(|i| i as f32 * 0.3), p(|i| 1.0 + i as f32 * 2.0));
        let out = run_single("BatchNormalization", 15, &[&x, &scale, &bias, &mean, &var], DataType::F32, &[("epsilon", Attr::Float(eps))]).unwrap();
        let (xs, sc, bi, me, va) = (f64s(&x), f64s(&scale), f64s(&bias), f64s(&mean), f64s(&var));
        let want: Vec<f64> = xs.iter().enumerate().map(|(i, v)| {
            let ch = (i / hw.max(1)) % c;
            (v - me[ch]) / (va[ch] + f64::from(eps)).sqrt() * sc[ch] + bi[ch]
        }).collect();
        close(&out[0], &[n, c, hw], &want, 1e-5, 1e-5)?;
    }

    #[test]
    fn global_average_pool(shape in nonempty_shape(3, 5, 4)) {
        let x = Tensor::from_vec(shape.clone(), (0..shape.iter().product::<usize>()).map(|i| (i % 9) as f32 - 4.0).collect()).unwrap();
        let out = run_single("GlobalAveragePool", 13, &[&x], DataType::F32, &[]).unwrap();
        let inner: usize = shape[2..].iter().product();
        let want: Vec<f64> = f64s(&x).chunks(inner).map(|p| p.iter().sum::<f64>() / inner as f64).collect();
        let mut s = shape[..2].to_vec();
        s.extend(std::iter::repeat_n(1, shape.len() - 2));
        close(&out[0], &s, &want, 1e-6, 1e-6)?;
    }

    #[test]
    fn flatten_squeeze_unsqueeze_shape(shape in nonempty_shape(1, 4, 3), axis_seed in any::<usize>(), neg in any::<bool>()) {
        let rank = shape.len();
        let total: usize = shape.iter().product();
        let x = Tensor::from_vec(shape.clone(), (0..total).map(|i| i as f32).collect()).unwrap();
        let seq: Vec<f64> = (0..total).map(|i| i as f64).collect();
        // Flatten at any axis in [-rank, rank].
        let axis = (axis_seed % (rank + 1)) as i64;
        let attr = if neg && axis < rank as i64 { axis - rank as i64 } else { axis };
        let out = run_single("Flatten", 13, &[&x], DataType::F32, &[("axis", Attr::Int(attr))]).unwrap();
        let a = axis as usize;
        close(&out[0], &[shape[..a].iter().product(), shape[a..].iter().product()], &seq, 0.0, 0.0)?;
        // Unsqueeze at `axis`, then Squeeze it back.
        let axes = Tensor::from_vec(vec![1], vec![axis]).unwrap();
        let up = run_single("Unsqueeze", 13, &[&x, &axes], DataType::F32, &[]).unwrap();
        let mut up_shape = shape.clone();
        up_shape.insert(a, 1);
        close(&up[0], &up_shape, &seq, 0.0, 0.0)?;
        let down = run_single("Squeeze", 13, &[&up[0], &axes], DataType::F32, &[]).unwrap();
        close(&down[0], &shape, &seq, 0.0, 0.0)?;
        // Shape.
        let s = run_single("Shape", 15, &[&x], DataType::I64, &[]).unwrap();
        prop_assert_eq!(s[0].as_slice::<i64>().unwrap(), &shape.iter().map(|&d| d as i64).collect::<Vec<_>>()[..]);
    }

    #[test]
    fn cast_float_to_int_truncates_and_back(v in values(12, 100.0)) {
        let x = Tensor::from_vec(vec![12], v.clone()).unwrap();
        let to_i32 = run_single("Cast", 13, &[&x], DataType::I32, &[("to", Attr::Int(6))]).unwrap();
        prop_assert_eq!(to_i32[0].as_slice::<i32>().unwrap(), &v.iter().map(|&f| f.trunc() as i32).collect::<Vec<_>>()[..]);
        let to_f64 = run_single("Cast", 13, &[&x], DataType::F64, &[("to", Attr::Int(11))]).unwrap();
        close(&to_f64[0], &[12], &v.iter().map(|&f| f64::from(f)).collect::<Vec<_>>(), 0.0, 0.0)?;
    }
}

//! Property tests: every operator fpga-sim takes, on generated shapes,
//! attributes and values, against the CPU provider (or, for the int8 ops
//! the CPU provider does not have yet, against the ONNX formulas). Each
//! case also checks that the node really ran on fpga-sim.
#![allow(clippy::unwrap_used)]

use oxrt::{DataType, Provider, Tensor};
use oxrt_conformance::build::{run_single_on, Attr};
use oxrt_conformance::strategies::{broadcastable_pair, f32_tensor, nonempty_shape};
use proptest::prelude::*;

fn fpga() -> Vec<Provider> {
    vec![Provider::FpgaSim(Vec::new())]
}

/// Runs the node on fpga-sim and on CPU; both must agree within `tol`
/// (relative to the magnitude), and the fpga-sim run must have taken it.
fn agree(
    op: &str,
    opset: i64,
    inputs: &[&Tensor],
    attrs: &[(&str, Attr)],
    tol: f64,
) -> Result<(), TestCaseError> {
    let (dev, placed) = run_single_on(&fpga(), op, opset, inputs, DataType::F32, attrs).unwrap();
    prop_assert_eq!(placed.as_str(), "fpga-sim");
    let (cpu, placed) = run_single_on(&[], op, opset, inputs, DataType::F32, attrs).unwrap();
    prop_assert_eq!(placed.as_str(), "cpu");
    prop_assert_eq!(dev[0].shape(), cpu[0].shape());
    let (d, c) = (dev[0].to_f64_vec().unwrap(), cpu[0].to_f64_vec().unwrap());
    for (i, (a, b)) in d.iter().zip(&c).enumerate() {
        prop_assert!(
            (a - b).abs() <= tol * (1.0 + b.abs()),
            "{op} element {i}: fpga-sim {a}, cpu {b}"
        );
    }
    Ok(())
}

fn grid(shape: &[usize], mul: usize, modulo: usize, scale: f32) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(
        shape.to_vec(),
        (0..n)
            .map(|i| ((i * mul % modulo) as f32 - (modulo / 2) as f32) * scale)
            .collect(),
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn add_and_mul_broadcast((sa, sb) in broadcastable_pair(4, 4), mul in any::<bool>()) {
        let (a, b) = (grid(&sa, 7, 13, 0.25), grid(&sb, 5, 11, 0.5));
        agree(if mul { "Mul" } else { "Add" }, 14, &[&a, &b], &[], 0.0)?;
    }

    #[test]
    fn relu_and_clip(x in nonempty_shape(0, 4, 5).prop_flat_map(|s| f32_tensor(s, 10.0)), lo in -3.0f32..0.0, hi in 0.0f32..3.0) {
        agree("Relu", 14, &[&x], &[], 0.0)?;
        agree("Clip", 6, &[&x], &[("min", Attr::Float(lo)), ("max", Attr::Float(hi))], 0.0)?;
    }

    #[test]
    fn gemm_transposes_alpha_beta(m in 1usize..6, n in 1usize..6, k in 1usize..6, ta in any::<bool>(), tb in any::<bool>(), bias in 0usize..3) {
        let a = grid(&if ta { [k, m] } else { [m, k] }, 3, 7, 0.5);
        let b = grid(&if tb { [n, k] } else { [k, n] }, 5, 9, 0.25);
        let c = grid(&[[1, n], [m, n], [m, 1]][bias], 1, 5, 1.0);
        let attrs = [("transA", Attr::Int(ta as i64)), ("transB", Attr::Int(tb as i64)), ("alpha", Attr::Float(0.5)), ("beta", Attr::Float(2.0))];
        agree("Gemm", 13, &[&a, &b, &c], &attrs, 1e-6)?;
    }

    #[test]
    fn matmul_batched_with_broadcast(batch in 1usize..3, m in 1usize..5, n in 1usize..5, k in 1usize..5, bcast in any::<bool>()) {
        let a = grid(&[batch, 2, m, k], 3, 7, 0.5);
        let b = grid(&if bcast { vec![k, n] } else { vec![batch, 2, k, n] }, 5, 9, 0.25);
        agree("MatMul", 13, &[&a, &b], &[], 1e-6)?;
    }

    #[test]
    fn conv_groups_pads_strides_dilations(
        n in 1usize..3, cg in 1usize..3, groups in 1usize..3, mg in 1usize..3, kh in 1usize..4, kw in 1usize..4,
        extra in 0usize..4, pads in proptest::array::uniform4(0usize..3), s in 1usize..3, d in 1usize..3, bias in any::<bool>(),
    ) {
        let (c, m) = (cg * groups, mg * groups);
        let (h, w) = (d * (kh - 1) + 1 + extra, d * (kw - 1) + 2 + extra);
        let x = grid(&[n, c, h, w], 37, 17, 0.125);
        let wt = grid(&[m, cg, kh, kw], 11, 7, 0.25);
        let b = grid(&[m], 1, 4, 0.5);
        let attrs = [
            ("group", Attr::Int(groups as i64)),
            ("pads", Attr::Ints(pads.iter().map(|&p| p as i64).collect())),
            ("strides", Attr::Ints(vec![s as i64; 2])),
            ("dilations", Attr::Ints(vec![d as i64; 2])),
        ];
        let inputs: Vec<&Tensor> = if bias { vec![&x, &wt, &b] } else { vec![&x, &wt] };
        agree("Conv", 11, &inputs, &attrs, 1e-6)?;
    }

    #[test]
    fn pools(c in 1usize..3, k in 1usize..4, extra in 0usize..4, s in 1usize..3, pad_seed in proptest::array::uniform4(0usize..3), include_pad in any::<bool>(), ceil in any::<bool>()) {
        let x = grid(&[2, c, k + extra, k + extra + 1], 29, 23, 0.25);
        let pads: Vec<i64> = pad_seed.iter().map(|&p| (p % k) as i64).collect();
        let attrs = [
            ("kernel_shape", Attr::Ints(vec![k as i64; 2])),
            ("strides", Attr::Ints(vec![s as i64; 2])),
            ("pads", Attr::Ints(pads)),
            ("ceil_mode", Attr::Int(ceil as i64)),
        ];
        agree("MaxPool", 12, &[&x], &attrs, 0.0)?;
        let mut avg = attrs.to_vec();
        avg.push(("count_include_pad", Attr::Int(include_pad as i64)));
        agree("AveragePool", 19, &[&x], &avg, 1e-6)?;
        agree("GlobalAveragePool", 1, &[&x], &[], 1e-6)?;
    }

    #[test]
    fn quantize_and_dequantize_linear(x in nonempty_shape(0, 3, 5).prop_flat_map(|s| f32_tensor(s, 50.0)), scale in 0.05f32..2.0, zp in 0u8..255) {
        let s = Tensor::scalar(scale);
        let z = Tensor::scalar(zp);
        let (q, placed) = run_single_on(&fpga(), "QuantizeLinear", 13, &[&x, &s, &z], DataType::U8, &[]).unwrap();
        prop_assert_eq!(placed.as_str(), "fpga-sim");
        let want: Vec<u8> = x.as_slice::<f32>().unwrap().iter()
            .map(|&v| ((v / scale).round_ties_even() + f32::from(zp)).clamp(0.0, 255.0) as u8)
            .collect();
        prop_assert_eq!(q[0].as_slice::<u8>().unwrap(), &want[..]);
        let (d, _) = run_single_on(&fpga(), "DequantizeLinear", 13, &[&q[0], &s, &z], DataType::F32, &[]).unwrap();
        let back: Vec<f32> = want.iter().map(|&v| (f32::from(v) - f32::from(zp)) * scale).collect();
        prop_assert_eq!(d[0].as_slice::<f32>().unwrap(), &back[..]);
    }

    #[test]
    fn qlinear_matmul(m in 1usize..5, n in 1usize..5, k in 1usize..6, azp in 0u8..255, bzp in 0u8..255, yzp in 0u8..255) {
        let a: Vec<u8> = (0..m * k).map(|i| (i * 37 % 251) as u8).collect();
        let b: Vec<u8> = (0..k * n).map(|i| (i * 53 % 241) as u8).collect();
        let (sa, sb, sy) = (0.02f32, 0.03f32, 0.5f32);
        let at = Tensor::from_vec(vec![m, k], a.clone()).unwrap();
        let bt = Tensor::from_vec(vec![k, n], b.clone()).unwrap();
        let (s, z) = (Tensor::scalar, Tensor::scalar::<u8>);
        let inputs = [&at, &s(sa), &z(azp), &bt, &s(sb), &z(bzp), &s(sy), &z(yzp)];
        let (y, placed) = run_single_on(&fpga(), "QLinearMatMul", 10, &inputs, DataType::U8, &[]).unwrap();
        prop_assert_eq!(placed.as_str(), "fpga-sim");
        let mut want = Vec::new();
        for i in 0..m {
            for j in 0..n {
                let acc: i32 = (0..k).map(|kk| (i32::from(a[i * k + kk]) - i32::from(azp)) * (i32::from(b[kk * n + j]) - i32::from(bzp))).sum();
                let r = (f64::from(acc) * f64::from(sa * sb / sy) + f64::from(yzp)).round_ties_even();
                want.push(r.clamp(0.0, 255.0) as u8);
            }
        }
        prop_assert_eq!(y[0].as_slice::<u8>().unwrap(), &want[..]);
    }
}

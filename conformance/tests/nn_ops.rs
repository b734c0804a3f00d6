//! Property tests for neural-network operators on the CPU provider:
//! ConvTranspose as the adjoint of Conv, LayerNormalization statistics,
//! quantize/dequantize round trips, and Resize against direct formulas.
#![allow(clippy::unwrap_used)]

use oxrt::{DataType, Tensor};
use oxrt_conformance::build::{run_single, Attr};
use oxrt_conformance::check::f64s;
use oxrt_conformance::strategies::{f32_tensor, nonempty_shape, values};
use proptest::prelude::*;

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// <Conv(x, w), y> == <x, ConvTranspose(y, w)> for every stride,
    /// padding and dilation: the transposed convolution is the adjoint.
    #[test]
    fn conv_transpose_is_the_adjoint_of_conv(
        cin in 1usize..3, cout in 1usize..3, h in 3usize..7, w in 3usize..7,
        k in 1usize..3, stride in 1usize..3, dil in 1usize..3, pad in 0usize..2,
        seed in any::<u64>(),
    ) {
        let span = (k - 1) * dil + 1;
        prop_assume!(h + 2 * pad >= span && w + 2 * pad >= span);
        let val = |i: usize, salt: u64| (((i as u64 * 2654435761 + seed + salt) % 17) as f32 - 8.0) / 4.0;
        let x = Tensor::from_vec(vec![1, cin, h, w], (0..cin * h * w).map(|i| val(i, 1)).collect()).unwrap();
        let wt = Tensor::from_vec(vec![cout, cin, k, k], (0..cout * cin * k * k).map(|i| val(i, 2)).collect()).unwrap();
        let (s, d, p) = (stride as i64, dil as i64, pad as i64);
        let attrs = [
            ("strides", Attr::Ints(vec![s, s])),
            ("dilations", Attr::Ints(vec![d, d])),
            ("pads", Attr::Ints(vec![p, p, p, p])),
        ];
        let y = run_single("Conv", 11, &[&x, &wt], DataType::F32, &attrs).unwrap()[0].clone();
        let g = Tensor::from_vec(y.shape(), (0..y.len()).map(|i| val(i, 3)).collect()).unwrap();
        // ConvTranspose weights are [C_in of the transpose = cout, C_out = cin, k, k]: the same tensor.
        let mut t_attrs = attrs.to_vec();
        t_attrs.push(("output_shape", Attr::Ints(vec![h as i64, w as i64])));
        let xt = run_single("ConvTranspose", 11, &[&g, &wt], DataType::F32, &t_attrs).unwrap()[0].clone();
        prop_assert_eq!(xt.shape(), x.shape());
        let (lhs, rhs) = (dot(&f64s(&y), &f64s(&g)), dot(&f64s(&x), &f64s(&xt)));
        prop_assert!((lhs - rhs).abs() <= 1e-3 * (1.0 + lhs.abs()), "{} vs {}", lhs, rhs);
    }

    /// With unit scale and zero bias every normalized group has mean 0 and
    /// variance 1 (up to epsilon), for any axis.
    #[test]
    fn layer_normalization_standardizes(x in nonempty_shape(1, 3, 5).prop_flat_map(|s| f32_tensor(s, 4.0)), axis_seed in any::<usize>()) {
        let rank = x.rank();
        let axis = axis_seed % rank;
        let group: usize = x.shape()[axis..].iter().product();
        prop_assume!(group > 1);
        let vals = f64s(&x);
        // Skip constant groups (variance 0, the output is 0 there).
        prop_assume!(vals.chunks(group).all(|g| g.iter().any(|&v| v != g[0])));
        let scale = Tensor::from_vec(x.shape()[axis..].to_vec(), vec![1.0f32; group]).unwrap();
        let bias = Tensor::from_vec(x.shape()[axis..].to_vec(), vec![0.0f32; group]).unwrap();
        let out = run_single("LayerNormalization", 17, &[&x, &scale, &bias], DataType::F32, &[("axis", Attr::Int(axis as i64)), ("epsilon", Attr::Float(1e-9))]).unwrap();
        for g in f64s(&out[0]).chunks(group) {
            let n = g.len() as f64;
            let mean = g.iter().sum::<f64>() / n;
            let var = g.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
            prop_assert!(mean.abs() < 1e-4 && (var - 1.0).abs() < 1e-3, "mean {} var {}", mean, var);
        }
    }

    /// Dequantize(Quantize(x)) is within half a step of x inside the
    /// representable range, for int8 and uint8 with any zero point.
    #[test]
    fn quantize_dequantize_round_trip(v in values(16, 10.0), scale in 0.05f32..1.0, zp in 0i64..40, signed in any::<bool>()) {
        let x = Tensor::from_vec(vec![16], v).unwrap();
        let s = Tensor::scalar(scale);
        let (dtype, z) = if signed {
            (DataType::I8, Tensor::scalar((zp - 20) as i8))
        } else {
            (DataType::U8, Tensor::scalar(zp as u8 + 100))
        };
        let q = run_single("QuantizeLinear", 21, &[&x, &s, &z], dtype, &[]).unwrap()[0].clone();
        prop_assert_eq!(q.dtype(), dtype);
        let back = run_single("DequantizeLinear", 21, &[&q, &s, &z], DataType::F32, &[]).unwrap()[0].clone();
        let zf = f64s(&z)[0];
        let (lo, hi) = if signed { (-128.0, 127.0) } else { (0.0, 255.0) };
        for (orig, got) in f64s(&x).iter().zip(f64s(&back)) {
            let clamped = orig.clamp((lo - zf) * f64::from(scale), (hi - zf) * f64::from(scale));
            prop_assert!((clamped - got).abs() <= f64::from(scale) / 2.0 + 1e-5, "{} -> {}", orig, got);
        }
    }

    /// Bilinear Resize with align_corners to any size equals the direct
    /// bilinear formula at `(i (h-1)/(H-1), j (w-1)/(W-1))`.
    #[test]
    fn resize_linear_align_corners_is_bilinear(
        h in 1usize..5, w in 1usize..5, oh in 2usize..8, ow in 2usize..8,
        v in values(16, 5.0),
    ) {
        let x = Tensor::from_vec(vec![1, 1, h, w], v[..h * w].to_vec()).unwrap();
        let roi = Tensor::from_vec(vec![0], Vec::<f32>::new()).unwrap();
        let scales = Tensor::from_vec(vec![0], Vec::<f32>::new()).unwrap();
        let sizes = Tensor::from_vec(vec![4], vec![1i64, 1, oh as i64, ow as i64]).unwrap();
        let attrs = [("mode", Attr::Str("linear")), ("coordinate_transformation_mode", Attr::Str("align_corners"))];
        let y = run_single("Resize", 19, &[&x, &roi, &scales, &sizes], DataType::F32, &attrs).unwrap()[0].clone();
        prop_assert_eq!(y.shape(), &[1, 1, oh, ow]);
        let xv = f64s(&x);
        let at = |r: usize, c: usize| xv[r * w + c];
        let got = f64s(&y);
        for i in 0..oh {
            for j in 0..ow {
                let sr = i as f64 * (h - 1) as f64 / (oh - 1) as f64;
                let sc = j as f64 * (w - 1) as f64 / (ow - 1) as f64;
                let (r0, c0) = (sr.floor() as usize, sc.floor() as usize);
                let (r1, c1) = ((r0 + 1).min(h - 1), (c0 + 1).min(w - 1));
                let (fr, fc) = (sr - r0 as f64, sc - c0 as f64);
                let want = (1.0 - fr) * ((1.0 - fc) * at(r0, c0) + fc * at(r0, c1))
                    + fr * ((1.0 - fc) * at(r1, c0) + fc * at(r1, c1));
                prop_assert!((got[i * ow + j] - want).abs() < 1e-4, "({}, {}): {} vs {}", i, j, got[i * ow + j], want);
            }
        }
    }

    /// Nearest Resize (asymmetric, floor) by integer scales repeats every
    /// element along each axis, like numpy's `repeat`.
    #[test]
    fn resize_nearest_integer_scales_repeat(h in 1usize..4, w in 1usize..4, sh in 1usize..4, sw in 1usize..4, v in values(9, 9.0)) {
        let x = Tensor::from_vec(vec![h, w], v[..h * w].to_vec()).unwrap();
        let roi = Tensor::from_vec(vec![0], Vec::<f32>::new()).unwrap();
        let scales = Tensor::from_vec(vec![2], vec![sh as f32, sw as f32]).unwrap();
        let attrs = [("mode", Attr::Str("nearest")), ("coordinate_transformation_mode", Attr::Str("asymmetric")), ("nearest_mode", Attr::Str("floor"))];
        let y = run_single("Resize", 19, &[&x, &roi, &scales], DataType::F32, &attrs).unwrap()[0].clone();
        prop_assert_eq!(y.shape(), &[h * sh, w * sw]);
        let (xv, got) = (f64s(&x), f64s(&y));
        for i in 0..h * sh {
            for j in 0..w * sw {
                prop_assert_eq!(got[i * w * sw + j], xv[(i / sh) * w + j / sw]);
            }
        }
    }

    /// Every interpolation (nearest, linear, cubic, with or without
    /// antialias) keeps a constant image constant: the weights sum to 1.
    #[test]
    fn resize_keeps_constants(h in 1usize..6, w in 1usize..6, sh in 0.3f32..3.0, sw in 0.3f32..3.0, mode in 0usize..3, antialias in any::<bool>(), c in -5.0f32..5.0) {
        let x = Tensor::from_vec(vec![1, 1, h, w], vec![c; h * w]).unwrap();
        let roi = Tensor::from_vec(vec![0], Vec::<f32>::new()).unwrap();
        let scales = Tensor::from_vec(vec![4], vec![1.0, 1.0, sh, sw]).unwrap();
        let name = ["nearest", "linear", "cubic"][mode];
        let aa = i64::from(antialias && mode > 0);
        let attrs = [("mode", Attr::Str(name)), ("antialias", Attr::Int(aa))];
        let y = run_single("Resize", 19, &[&x, &roi, &scales], DataType::F32, &attrs).unwrap()[0].clone();
        let want = [(f64::from(sh) * h as f64) as usize, (f64::from(sw) * w as f64) as usize];
        prop_assert_eq!(&y.shape()[2..], &want[..]);
        for v in f64s(&y) {
            prop_assert!((v - f64::from(c)).abs() < 1e-4, "{} vs {}", v, c);
        }
    }
}

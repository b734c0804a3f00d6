//! Property tests for the tensor-math, shape and indexing operator families,
//! each run through a `Session` on the CPU provider and compared with the
//! plain reference implementations: generated shapes (size-0 dims
//! included), negative axes, attributes and element types.
#![allow(clippy::unwrap_used)]

use oxrt::{DataType, Tensor};
use oxrt_conformance::build::{run_single, single_node, Attr};
use oxrt_conformance::check::{close, f64s, small_ints};
use oxrt_conformance::reference as r;
use oxrt_conformance::strategies::{
    broadcastable_pair, f32_tensor, nonempty_shape, numeric_dtype, shape,
};
use proptest::prelude::*;

fn ints(v: &[i64]) -> Tensor {
    Tensor::from_vec(vec![v.len()], v.to_vec()).unwrap()
}

/// Runs a one-node model with `outputs` outputs of one element type.
fn run_multi(
    op: &str,
    opset: i64,
    inputs: &[&Tensor],
    outputs: usize,
    dtype: DataType,
    attrs: &[(&str, Attr)],
) -> Vec<Tensor> {
    let bytes = single_node(op, opset, inputs, outputs, dtype, attrs);
    let s = oxrt::Session::builder().commit_from_memory(&bytes).unwrap();
    let feed: Vec<(String, Tensor)> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("x{i}"), (*t).clone()))
        .collect();
    let out = s.run(feed).unwrap();
    (0..outputs).map(|i| out[i].clone()).collect()
}

/// A negative spelling of `axis` half of the time.
fn spell(axis: usize, rank: usize, neg: bool) -> i64 {
    if neg {
        axis as i64 - rank as i64
    } else {
        axis as i64
    }
}

fn round_half_even(v: f64) -> f64 {
    let r = v.round();
    if (v - v.trunc()).abs() == 0.5 {
        2.0 * (v / 2.0).round()
    } else {
        r
    }
}

type Unary = (&'static str, fn(f64) -> f64, f64);

/// Op, reference function, and the input offset keeping it in domain
/// (inputs are |x| + offset where the offset is positive).
const UNARY: &[Unary] = &[
    ("Abs", f64::abs, 0.0),
    ("Neg", |x| -x, 0.0),
    (
        "Sign",
        |x| {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            }
        },
        0.0,
    ),
    ("Ceil", f64::ceil, 0.0),
    ("Floor", f64::floor, 0.0),
    ("Round", round_half_even, 0.0),
    ("Reciprocal", f64::recip, 0.5),
    ("Sqrt", f64::sqrt, 0.01),
    ("Exp", f64::exp, 0.0),
    ("Log", f64::ln, 0.01),
    ("Sin", f64::sin, 0.0),
    ("Cos", f64::cos, 0.0),
    ("Tan", f64::tan, 0.0),
    ("Atan", f64::atan, 0.0),
    ("Sinh", f64::sinh, 0.0),
    ("Cosh", f64::cosh, 0.0),
    ("Asinh", f64::asinh, 0.0),
    ("Acosh", f64::acosh, 1.0),
    ("Softsign", |x| x / (1.0 + x.abs()), 0.0),
    ("Softplus", |x| x.exp().ln_1p(), 0.0),
    ("Elu", |x| if x >= 0.0 { x } else { x.exp_m1() }, 0.0),
    ("HardSwish", |x| x * (x / 6.0 + 0.5).clamp(0.0, 1.0), 0.0),
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn unary_math_in_f32_and_f64(x in nonempty_shape(0, 3, 4).prop_flat_map(|s| f32_tensor(s, 3.0)), op in 0..UNARY.len(), wide in any::<bool>()) {
        let (name, f, offset) = UNARY[op];
        let x = if offset > 0.0 {
            Tensor::from_vec(x.shape(), x.as_slice::<f32>().unwrap().iter().map(|v| v.abs() + offset as f32).collect()).unwrap()
        } else {
            x
        };
        let dtype = if wide { DataType::F64 } else { DataType::F32 };
        let x = oxrt_conformance::check::cast(&x, dtype);
        let out = run_single(name, 18, &[&x], dtype, &[]).unwrap();
        prop_assert_eq!(out[0].dtype(), dtype);
        let want: Vec<f64> = f64s(&x).into_iter().map(f).collect();
        close(&out[0], x.shape(), &want, 1e-6, 1e-5)?;
    }

    #[test]
    fn comparisons_and_where_broadcast((sa, sb) in broadcastable_pair(3, 3), dtype in numeric_dtype(), op in 0usize..5) {
        let (a, b) = (small_ints(&sa, dtype, 0), small_ints(&sb, dtype, 3));
        let (name, f): (&str, fn(f64, f64) -> bool) = [
            ("Equal", (|x, y| x == y) as fn(f64, f64) -> bool),
            ("Less", |x, y| x < y),
            ("LessOrEqual", |x, y| x <= y),
            ("Greater", |x, y| x > y),
            ("GreaterOrEqual", |x, y| x >= y),
        ][op];
        let cond = run_single(name, 19, &[&a, &b], DataType::Bool, &[]).unwrap()[0].clone();
        let (shape, want) = r::binary(&f64s(&a), &sa, &f64s(&b), &sb, |x, y| f64::from(u8::from(f(x, y)))).unwrap();
        prop_assert_eq!(cond.shape(), shape.as_slice());
        let got: Vec<f64> = cond.as_slice::<bool>().unwrap().iter().map(|&c| f64::from(u8::from(c))).collect();
        prop_assert_eq!(&got, &want);
        // Where picks a where the comparison held, b elsewhere.
        let w = run_single("Where", 16, &[&cond, &a, &b], dtype, &[]).unwrap();
        let (_, pick) = r::binary(&f64s(&a), &sa, &f64s(&b), &sb, |x, y| if f(x, y) { x } else { y }).unwrap();
        close(&w[0], &shape, &pick, 0.0, 0.0)?;
    }

    #[test]
    fn variadic_max_min_sum_mean((sa, sb) in broadcastable_pair(3, 3), dtype in numeric_dtype(), op in 0usize..3) {
        let (a, b) = (small_ints(&sa, dtype, 1), small_ints(&sb, dtype, 4));
        let (name, f): (&str, fn(f64, f64) -> f64) = [("Max", f64::max as fn(f64, f64) -> f64), ("Min", f64::min), ("Sum", |x, y| x + y)][op];
        let out = run_single(name, 13, &[&a, &b, &a], dtype, &[]).unwrap();
        let (shape, ab) = r::binary(&f64s(&a), &sa, &f64s(&b), &sb, f).unwrap();
        let (_, want) = r::binary(&ab, &shape, &f64s(&a), &sa, f).unwrap();
        close(&out[0], &shape, &want, 0.0, 0.0)?;
        if dtype.is_float() {
            let mean = run_single("Mean", 13, &[&a, &b], dtype, &[]).unwrap();
            let (_, want) = r::binary(&f64s(&a), &sa, &f64s(&b), &sb, |x, y| (x + y) / 2.0).unwrap();
            close(&mean[0], &shape, &want, 1e-3, 1e-3)?;
        }
    }

    #[test]
    fn integer_mod_pow_and_bits((sa, sb) in broadcastable_pair(3, 3), fmod in any::<bool>(), signed in any::<bool>()) {
        let dtype = if signed { DataType::I32 } else { DataType::U8 };
        let a = small_ints(&sa, dtype, 2);
        // Divisors 1..=11, negative half of the time for signed types.
        let n: usize = sb.iter().product();
        let div: Vec<i64> = (0..n).map(|i| ((i * 5 + 3) % 11 + 1) as i64 * if signed && i % 2 == 1 { -1 } else { 1 }).collect();
        let b = oxrt_conformance::check::cast(&Tensor::from_vec(sb.clone(), div).unwrap(), dtype);
        let m = run_single("Mod", 13, &[&a, &b], dtype, &[("fmod", Attr::Int(i64::from(fmod)))]).unwrap();
        let (shape, want) = r::binary(&f64s(&a), &sa, &f64s(&b), &sb, |x, y| {
            let rem = x % y;
            if !fmod && rem != 0.0 && (rem < 0.0) != (y < 0.0) { rem + y } else { rem }
        }).unwrap();
        close(&m[0], &shape, &want, 0.0, 0.0)?;
        let e = small_ints(&sb, dtype, 0);
        let e = oxrt_conformance::check::cast(&Tensor::from_vec(sb.clone(), f64s(&e).iter().map(|v| (*v as i64) % 3).collect()).unwrap(), dtype);
        let p = run_single("Pow", 15, &[&a, &e], dtype, &[]).unwrap();
        let (_, want) = r::binary(&f64s(&a), &sa, &f64s(&e), &sb, f64::powf).unwrap();
        close(&p[0], &shape, &want, 0.0, 0.0)?;
        if !signed {
            let and = run_single("BitwiseAnd", 18, &[&a, &b], dtype, &[]).unwrap();
            let (_, want) = r::binary(&f64s(&a), &sa, &f64s(&b), &sb, |x, y| ((x as u8) & (y as u8)) as f64).unwrap();
            close(&and[0], &shape, &want, 0.0, 0.0)?;
            let shl = run_single("BitShift", 11, &[&a, &e], dtype, &[("direction", Attr::Str("LEFT"))]).unwrap();
            let (_, want) = r::binary(&f64s(&a), &sa, &f64s(&e), &sb, |x, y| ((x as u8) << (y as u32)) as f64).unwrap();
            close(&shl[0], &shape, &want, 0.0, 0.0)?;
        }
    }

    #[test]
    fn reductions_over_any_axes(x in nonempty_shape(1, 4, 3).prop_flat_map(|s| f32_tensor(s, 2.0)), mask in proptest::collection::vec(any::<bool>(), 4), keep in any::<bool>(), neg in any::<bool>(), op in 0usize..9, as_input in any::<bool>()) {
        let rank = x.rank();
        let axes: Vec<usize> = (0..rank).filter(|&d| mask[d]).collect();
        let spelled: Vec<i64> = axes.iter().map(|&a| spell(a, rank, neg)).collect();
        type Fold = (&'static str, f64, fn(f64, f64) -> f64, fn(f64, usize) -> f64);
        let ops: [Fold; 9] = [
            ("ReduceSum", 0.0, |a, v| a + v, |a, _| a),
            ("ReduceMean", 0.0, |a, v| a + v, |a, n| a / n as f64),
            ("ReduceMax", f64::NEG_INFINITY, f64::max, |a, _| a),
            ("ReduceMin", f64::INFINITY, f64::min, |a, _| a),
            ("ReduceProd", 1.0, |a, v| a * v, |a, _| a),
            ("ReduceL1", 0.0, |a, v| a + v.abs(), |a, _| a),
            ("ReduceL2", 0.0, |a, v| a + v * v, |a, _| a.sqrt()),
            ("ReduceSumSquare", 0.0, |a, v| a + v * v, |a, _| a),
            ("ReduceLogSumExp", 0.0, |a, v| a + v.exp(), |a, _| a.ln()),
        ];
        let (name, init, fold, finish) = ops[op];
        let keepdims = ("keepdims", Attr::Int(i64::from(keep)));
        let out = if as_input {
            run_single(name, 18, &[&x, &ints(&spelled)], DataType::F32, &[keepdims]).unwrap()
        } else {
            run_single(name, 11, &[&x], DataType::F32, &[keepdims, ("axes", Attr::Ints(spelled.clone()))]).unwrap()
        };
        let (shape, want) = r::reduce(&f64s(&x), x.shape(), &axes, keep, init, fold, finish);
        close(&out[0], &shape, &want, 1e-4, 1e-4)?;
    }

    #[test]
    fn argmax_argmin_with_ties(s in nonempty_shape(1, 3, 4), axis_seed in any::<usize>(), keep in any::<bool>(), last in any::<bool>(), max in any::<bool>()) {
        // Values 0..=3 repeat, so lanes have ties.
        let n: usize = s.iter().product();
        let x = Tensor::from_vec(s.clone(), (0..n).map(|i| ((i * 7) % 4) as i32).collect()).unwrap();
        let axis = axis_seed % s.len();
        let attrs = [("axis", Attr::Int(axis as i64)), ("keepdims", Attr::Int(i64::from(keep))), ("select_last_index", Attr::Int(i64::from(last)))];
        let out = run_single(if max { "ArgMax" } else { "ArgMin" }, 13, &[&x], DataType::I64, &attrs).unwrap();
        let st = r::strides(&s);
        let xs = f64s(&x);
        let (shape, _) = r::reduce(&xs, &s, &[axis], keep, 0.0, |a, _| a, |a, _| a);
        // Reference: scan each lane.
        let mut want = Vec::new();
        for i in 0..n {
            let idx = r::unravel(i, &s);
            if idx[axis] != 0 { continue; }
            let lane: Vec<f64> = (0..s[axis]).map(|j| xs[i + j * st[axis]]).collect();
            let best = lane.iter().copied().fold(if max { f64::NEG_INFINITY } else { f64::INFINITY }, if max { f64::max } else { f64::min });
            let pos: Vec<usize> = (0..lane.len()).filter(|&j| lane[j] == best).collect();
            want.push(if last { *pos.last().unwrap() } else { pos[0] } as f64);
        }
        close(&out[0], &shape, &want, 0.0, 0.0)?;
    }

    #[test]
    fn cumsum_any_axis(x in nonempty_shape(1, 3, 4).prop_flat_map(|s| f32_tensor(s, 4.0)), axis_seed in any::<usize>(), exclusive in any::<bool>(), reverse in any::<bool>(), neg in any::<bool>()) {
        let axis = axis_seed % x.rank();
        let a = Tensor::scalar(spell(axis, x.rank(), neg));
        let attrs = [("exclusive", Attr::Int(i64::from(exclusive))), ("reverse", Attr::Int(i64::from(reverse)))];
        let out = run_single("CumSum", 14, &[&x, &a], DataType::F32, &attrs).unwrap();
        close(&out[0], x.shape(), &r::cumsum(&f64s(&x), x.shape(), axis, exclusive, reverse), 1e-5, 1e-5)?;
    }

    #[test]
    fn topk_values_are_sorted_lanes(s in nonempty_shape(1, 3, 5), axis_seed in any::<usize>(), largest in any::<bool>(), k_seed in any::<usize>()) {
        let n: usize = s.iter().product();
        let x = Tensor::from_vec(s.clone(), (0..n).map(|i| ((i * 13) % 7) as f32).collect()).unwrap();
        let axis = axis_seed % s.len();
        let k = k_seed % (s[axis] + 1);
        let out = run_multi("TopK", 11, &[&x, &ints(&[k as i64])], 2, DataType::F32, &[("axis", Attr::Int(axis as i64)), ("largest", Attr::Int(i64::from(largest)))]);
        let st = r::strides(&s);
        let xs = f64s(&x);
        let mut lanes = Vec::new();
        for i in 0..n {
            if r::unravel(i, &s)[axis] != 0 { continue; }
            let mut lane: Vec<f64> = (0..s[axis]).map(|j| xs[i + j * st[axis]]).collect();
            lane.sort_by(|a, b| if largest { b.total_cmp(a) } else { a.total_cmp(b) });
            lanes.push(lane[..k].to_vec());
        }
        // Reassemble lanes (axis moved back into place).
        let mut shape = s.clone();
        shape[axis] = k;
        let ost = r::strides(&shape);
        let mut want = vec![0.0; shape.iter().product()];
        let mut lane_id = 0;
        for i in 0..want.len() {
            if r::unravel(i, &shape)[axis] != 0 { continue; }
            for (j, v) in lanes[lane_id].iter().enumerate() { want[i + j * ost[axis]] = *v; }
            lane_id += 1;
        }
        close(&out[0], &shape, &want, 0.0, 0.0)?;
    }

    #[test]
    fn slice_with_negative_steps(x in nonempty_shape(1, 3, 5).prop_flat_map(|s| f32_tensor(s, 9.0)), starts in proptest::collection::vec(-7i64..7, 3), ends in proptest::collection::vec(-7i64..7, 3), steps in proptest::collection::vec(prop_oneof![-3i64..=-1, 1i64..=3], 3), neg in any::<bool>()) {
        let rank = x.rank();
        let axes: Vec<i64> = (0..rank).map(|d| spell(d, rank, neg)).collect();
        let out = run_single("Slice", 13, &[&x, &ints(&starts[..rank]), &ints(&ends[..rank]), &ints(&axes), &ints(&steps[..rank])], DataType::F32, &[]).unwrap();
        let ranges: Vec<Vec<usize>> = (0..rank).map(|d| r::py_slice(x.shape()[d], starts[d], ends[d], steps[d])).collect();
        let (shape, want) = r::select(&f64s(&x), x.shape(), &ranges);
        close(&out[0], &shape, &want, 0.0, 0.0)?;
    }

    #[test]
    fn pad_in_every_mode(x in nonempty_shape(1, 3, 4).prop_flat_map(|s| f32_tensor(s, 9.0)), pads in proptest::collection::vec(0usize..4, 6), mode in 0usize..4) {
        let rank = x.rank();
        let mode = ["constant", "edge", "reflect", "wrap"][mode];
        let p: Vec<i64> = (0..2 * rank).map(|i| pads[i] as i64).collect();
        let value = Tensor::scalar(7.5f32);
        let out = run_single("Pad", 19, &[&x, &ints(&p), &value], DataType::F32, &[("mode", Attr::Str(mode))]).unwrap();
        let pos: Vec<Vec<Option<usize>>> = (0..rank).map(|d| r::pad_positions(x.shape()[d], pads[d], pads[d + rank], mode)).collect();
        let shape: Vec<usize> = pos.iter().map(Vec::len).collect();
        let st = r::strides(x.shape());
        let xs = f64s(&x);
        let want: Vec<f64> = (0..shape.iter().product()).map(|i| {
            let idx = r::unravel(i, &shape);
            let src: Option<usize> = (0..rank).map(|d| pos[d][idx[d]].map(|p| p * st[d])).sum();
            src.map_or(7.5, |s| xs[s])
        }).collect();
        close(&out[0], &shape, &want, 0.0, 0.0)?;
    }

    #[test]
    fn expand_and_tile(s in shape(3, 3), reps in proptest::collection::vec(0usize..3, 3)) {
        let x = small_ints(&s, DataType::I64, 0);
        let xs = f64s(&x);
        // Expand to [2, s...] with every size-1 dim widened to 2.
        let mut target: Vec<usize> = vec![2];
        target.extend(s.iter().map(|&d| if d == 1 { 2 } else { d }));
        let tt: Vec<i64> = target.iter().map(|&d| d as i64).collect();
        let e = run_single("Expand", 13, &[&x, &ints(&tt)], DataType::I64, &[]).unwrap();
        let zeros = vec![0.0; target.iter().product()];
        let (_, want) = r::binary(&xs, &s, &zeros, &target, |a, _| a).unwrap();
        close(&e[0], &target, &want, 0.0, 0.0)?;
        let rep: Vec<i64> = (0..s.len()).map(|d| reps[d] as i64).collect();
        let t = run_single("Tile", 13, &[&x, &ints(&rep)], DataType::I64, &[]).unwrap();
        let ranges: Vec<Vec<usize>> = (0..s.len()).map(|d| (0..s[d] * reps[d]).map(|i| i % s[d].max(1)).collect()).collect();
        let (shape, want) = r::select(&xs, &s, &ranges);
        close(&t[0], &shape, &want, 0.0, 0.0)?;
    }

    #[test]
    fn split_into_sizes(s in nonempty_shape(1, 3, 6), axis_seed in any::<usize>(), cut in any::<usize>()) {
        let x = small_ints(&s, DataType::F32, 1);
        let axis = axis_seed % s.len();
        let first = cut % (s[axis] + 1);
        let sizes = [first as i64, (s[axis] - first) as i64];
        let out = run_multi("Split", 13, &[&x, &ints(&sizes)], 2, DataType::F32, &[("axis", Attr::Int(axis as i64))]);
        for (k, range) in [(0..first), (first..s[axis])].into_iter().enumerate() {
            let ranges: Vec<Vec<usize>> = (0..s.len()).map(|d| if d == axis { range.clone().collect() } else { (0..s[d]).collect() }).collect();
            let (shape, want) = r::select(&f64s(&x), &s, &ranges);
            close(&out[k], &shape, &want, 0.0, 0.0)?;
        }
    }

    #[test]
    fn scatter_then_gather_elements_round_trip(s in nonempty_shape(1, 3, 4), axis_seed in any::<usize>(), neg in any::<bool>()) {
        // Scattering a reversal along the axis, then gathering with the same
        // indices, gives back the updates.
        let axis = axis_seed % s.len();
        let n: usize = s.iter().product();
        let idx: Vec<i64> = (0..n).map(|i| {
            let p = r::unravel(i, &s)[axis];
            let j = (s[axis] - 1 - p) as i64;
            if neg { j - s[axis] as i64 } else { j }
        }).collect();
        let idx = Tensor::from_vec(s.clone(), idx).unwrap();
        let data = Tensor::from_vec(s.clone(), vec![0.0f32; n]).unwrap();
        let upd = small_ints(&s, DataType::F32, 3);
        let attrs = [("axis", Attr::Int(axis as i64))];
        let scattered = run_single("ScatterElements", 16, &[&data, &idx, &upd], DataType::F32, &attrs).unwrap();
        let back = run_single("GatherElements", 13, &[&scattered[0], &idx], DataType::F32, &attrs).unwrap();
        close(&back[0], &s, &f64s(&upd), 0.0, 0.0)?;
        // And the scattered tensor is the updates reversed along the axis.
        let ranges: Vec<Vec<usize>> = (0..s.len()).map(|d| if d == axis { (0..s[d]).rev().collect() } else { (0..s[d]).collect() }).collect();
        let (_, want) = r::select(&f64s(&upd), &s, &ranges);
        close(&scattered[0], &s, &want, 0.0, 0.0)?;
    }

    #[test]
    fn gather_nd_picks_rows(rows in 1usize..5, cols in 1usize..4, picks in proptest::collection::vec(any::<usize>(), 0..5)) {
        let x = small_ints(&[rows, cols], DataType::I32, 2);
        let idx: Vec<i64> = picks.iter().map(|p| (p % rows) as i64).collect();
        let it = Tensor::from_vec(vec![idx.len(), 1], idx.clone()).unwrap();
        let out = run_single("GatherND", 13, &[&x, &it], DataType::I32, &[]).unwrap();
        let ranges = vec![idx.iter().map(|&i| i as usize).collect(), (0..cols).collect()];
        let (shape, want) = r::select(&f64s(&x), &[rows, cols], &ranges);
        close(&out[0], &shape, &want, 0.0, 0.0)?;
    }

    #[test]
    fn onehot_nonzero_compress(n in 0usize..6, depth in 1usize..5, seed in any::<u64>()) {
        let v: Vec<i64> = (0..n).map(|i| ((seed >> (i * 3)) % (depth as u64 + 2)) as i64 - 1).collect();
        let idx = Tensor::from_vec(vec![n], v.clone()).unwrap();
        let vals = Tensor::from_vec(vec![2], vec![0.0f32, 1.0]).unwrap();
        let oh = run_single("OneHot", 11, &[&idx, &Tensor::scalar(depth as i64), &vals], DataType::F32, &[]).unwrap();
        let want: Vec<f64> = v.iter().flat_map(|&i| {
            let j = if i < 0 { i + depth as i64 } else { i };
            (0..depth as i64).map(move |k| f64::from(u8::from(k == j)))
        }).collect();
        close(&oh[0], &[n, depth], &want, 0.0, 0.0)?;
        // NonZero of the one-hot matrix: one coordinate pair per hit.
        let nz = run_single("NonZero", 13, &[&oh[0]], DataType::I64, &[]).unwrap();
        let hits: Vec<usize> = (0..want.len()).filter(|&i| want[i] != 0.0).collect();
        let mut coords: Vec<f64> = hits.iter().map(|&h| (h / depth) as f64).collect();
        coords.extend(hits.iter().map(|&h| (h % depth) as f64));
        close(&nz[0], &[2, hits.len()], &coords, 0.0, 0.0)?;
        // Compress the rows that have a hit.
        let cond = Tensor::from_vec(vec![n], (0..n).map(|r| want[r * depth..(r + 1) * depth].contains(&1.0)).collect()).unwrap();
        let c = run_single("Compress", 11, &[&oh[0], &cond], DataType::F32, &[("axis", Attr::Int(0))]).unwrap();
        let keep: Vec<usize> = (0..n).filter(|&r| cond.as_slice::<bool>().unwrap()[r]).collect();
        let (shape, rows) = r::select(&want, &[n, depth], &[keep, (0..depth).collect()]);
        close(&c[0], &shape, &rows, 0.0, 0.0)?;
    }

    #[test]
    fn einsum_matmul_and_transpose(m in 1usize..4, k in 0usize..4, n in 1usize..4) {
        let a = small_ints(&[m, k], DataType::F32, 1);
        let b = small_ints(&[k, n], DataType::F32, 2);
        let out = run_single("Einsum", 12, &[&a, &b], DataType::F32, &[("equation", Attr::Str("ij,jk->ik"))]).unwrap();
        close(&out[0], &[m, n], &r::matmul2d(&f64s(&a), &f64s(&b), m, k, n), 0.0, 0.0)?;
        let t = run_single("Einsum", 12, &[&a], DataType::F32, &[("equation", Attr::Str("ij->ji"))]).unwrap();
        let (shape, want) = r::transpose(&f64s(&a), &[m, k], &[1, 0]);
        close(&t[0], &shape, &want, 0.0, 0.0)?;
    }

    #[test]
    fn trilu_and_range(rows in 1usize..5, cols in 1usize..5, k in -4i64..4, upper in any::<bool>(), start in -5i64..5, len in 0i64..6, step in prop_oneof![-3i64..=-1, 1i64..=3]) {
        let x = small_ints(&[rows, cols], DataType::F32, 1);
        let out = run_single("Trilu", 14, &[&x, &Tensor::scalar(k)], DataType::F32, &[("upper", Attr::Int(i64::from(upper)))]).unwrap();
        let xs = f64s(&x);
        let want: Vec<f64> = (0..rows * cols).map(|i| {
            let d = (i % cols) as i64 - (i / cols) as i64;
            if (upper && d >= k) || (!upper && d <= k) { xs[i] } else { 0.0 }
        }).collect();
        close(&out[0], &[rows, cols], &want, 0.0, 0.0)?;
        let limit = start + len * step;
        let rg = run_single("Range", 11, &[&Tensor::scalar(start), &Tensor::scalar(limit), &Tensor::scalar(step)], DataType::I64, &[]).unwrap();
        let want: Vec<f64> = (0..len).map(|i| (start + i * step) as f64).collect();
        close(&rg[0], &[len as usize], &want, 0.0, 0.0)?;
    }

    #[test]
    fn cast_through_every_numeric_type(s in shape(2, 4), to in numeric_dtype()) {
        let x = small_ints(&s, DataType::I64, 5);
        let y = oxrt_conformance::check::cast(&x, to);
        prop_assert_eq!(y.dtype(), to);
        let back = oxrt_conformance::check::cast(&y, DataType::I64);
        close(&back, &s, &f64s(&x), 0.0, 0.0)?;
        let like = run_single("CastLike", 15, &[&x, &y], to, &[]).unwrap();
        close(&like[0], &s, &f64s(&x), 0.0, 0.0)?;
    }
}

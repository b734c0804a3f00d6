//! Inference for elementwise, comparison, reduction and contraction
//! operators.

use super::{ints_of, known, tensor, Inputs};
use crate::dtype::DataType;
use crate::infer::matmul_shape;
use crate::ir::{Dim, Node, ValueType};
use crate::shape::normalize_axis;

/// Numpy broadcasting over dims that may be symbolic: a known size > 1
/// wins over a symbol, two different symbols give an unknown size.
pub fn broadcast_dims(a: &[Dim], b: &[Dim]) -> Option<Vec<Dim>> {
    let rank = a.len().max(b.len());
    let one = Dim::Known(1);
    (0..rank)
        .map(|i| {
            let da = (i + a.len()).checked_sub(rank).map_or(&one, |j| &a[j]);
            let db = (i + b.len()).checked_sub(rank).map_or(&one, |j| &b[j]);
            Some(match (da, db) {
                (x, y) if x == y => x.clone(),
                (Dim::Known(1), y) => y.clone(),
                (x, Dim::Known(1)) => x.clone(),
                (Dim::Known(_), Dim::Known(_)) => return None,
                (Dim::Known(n), _) | (_, Dim::Known(n)) => Dim::Known(*n),
                _ => Dim::Unknown,
            })
        })
        .collect()
}

/// Broadcast shape of the given inputs (all must have known ranks).
fn broadcast_inputs(ins: &Inputs<'_, '_>, which: impl Iterator<Item = usize>) -> Option<Vec<Dim>> {
    which
        .map(|i| ins.dims(i))
        .try_fold(Vec::new(), |acc, d| broadcast_dims(&acc, d?))
}

const SAME_TYPE_UNARY: &[&str] = &[
    "Abs",
    "Neg",
    "Sign",
    "Ceil",
    "Floor",
    "Round",
    "Reciprocal",
    "Sqrt",
    "Exp",
    "Log",
    "Erf",
    "Sin",
    "Cos",
    "Tan",
    "Asin",
    "Acos",
    "Atan",
    "Sinh",
    "Cosh",
    "Asinh",
    "Acosh",
    "Atanh",
    "Not",
    "BitwiseNot",
    "Elu",
    "Selu",
    "Celu",
    "Gelu",
    "HardSigmoid",
    "HardSwish",
    "Mish",
    "Softplus",
    "Softsign",
    "ThresholdedRelu",
    "Shrink",
    "PRelu",
    "Hardmax",
    "CumSum",
    "CumProd",
    "Trilu",
];

const BROADCAST_SAME_TYPE: &[&str] = &[
    "Pow",
    "Mod",
    "Max",
    "Min",
    "Sum",
    "Mean",
    "BitShift",
    "BitwiseAnd",
    "BitwiseOr",
    "BitwiseXor",
];

const BROADCAST_BOOL: &[&str] = &[
    "Equal",
    "Less",
    "LessOrEqual",
    "Greater",
    "GreaterOrEqual",
    "And",
    "Or",
    "Xor",
];

/// Output types of the math operators; `None` when `node` is not one.
pub fn infer(node: &Node, opset: i64, ins: &Inputs<'_, '_>) -> Option<Vec<Option<ValueType>>> {
    let op = node.op_type.as_str();
    let dtype0 = ins.dtype(0);
    let with = |d: Option<DataType>, dims: Option<Vec<Dim>>| d.and_then(|d| tensor(d, dims));
    Some(if SAME_TYPE_UNARY.contains(&op) {
        vec![ins.ty(0).cloned()]
    } else if op == "LayerNormalization" {
        let stats = ins.dims(0).and_then(|d| {
            let axis = normalize_axis(node.int_or("axis", -1).ok()?, d.len()).ok()?;
            let mut s = d[..axis].to_vec();
            s.resize(d.len(), Dim::Known(1));
            Some(s)
        });
        vec![
            ins.ty(0).cloned(),
            with(dtype0, stats.clone()),
            with(dtype0, stats),
        ]
    } else if matches!(op, "NegativeLogLikelihoodLoss" | "SoftmaxCrossEntropyLoss") {
        let loss = match node.string_or("reduction", "mean").unwrap_or("mean") {
            "none" => ins.dims(1).map(<[Dim]>::to_vec),
            _ => Some(Vec::new()),
        };
        vec![with(dtype0, loss), ins.ty(0).cloned()]
    } else if matches!(op, "IsNaN" | "IsInf") {
        vec![tensor(DataType::Bool, ins.dims(0).map(<[Dim]>::to_vec))]
    } else if BROADCAST_SAME_TYPE.contains(&op) {
        vec![with(dtype0, broadcast_inputs(ins, 0..ins.len()))]
    } else if BROADCAST_BOOL.contains(&op) {
        vec![tensor(DataType::Bool, broadcast_inputs(ins, 0..ins.len()))]
    } else if op == "Where" {
        vec![with(ins.dtype(1), broadcast_inputs(ins, 0..3))]
    } else if op.starts_with("Reduce") {
        let axes = if opset >= if op == "ReduceSum" { 13 } else { 18 } {
            match ins.len() {
                0 | 1 => Some(Vec::new()),
                _ => ins.constant(1).and_then(ints_of),
            }
        } else {
            Some(
                node.get_ints("axes")
                    .ok()
                    .flatten()
                    .map(<[i64]>::to_vec)
                    .unwrap_or_default(),
            )
        };
        let keep = node.int_or("keepdims", 1).unwrap_or(1) != 0;
        let noop = node.int_or("noop_with_empty_axes", 0).unwrap_or(0) != 0;
        let out = ins
            .dims(0)
            .zip(axes)
            .and_then(|(d, axes)| reduced(d, &axes, keep, noop));
        vec![with(dtype0, out)]
    } else if matches!(op, "ArgMax" | "ArgMin") {
        let keep = node.int_or("keepdims", 1).unwrap_or(1) != 0;
        let axis = node.int_or("axis", 0).unwrap_or(0);
        let out = ins.dims(0).and_then(|d| reduced(d, &[axis], keep, false));
        vec![tensor(DataType::I64, out)]
    } else if op == "TopK" {
        let k = if opset < 10 {
            node.get_int("k").ok().flatten()
        } else {
            ins.constant(1)
                .and_then(ints_of)
                .and_then(|v| v.first().copied())
        };
        let out = ins.dims(0).and_then(|d| {
            let axis = normalize_axis(node.int_or("axis", -1).ok()?, d.len()).ok()?;
            let mut o = d.to_vec();
            o[axis] = k
                .and_then(|k| usize::try_from(k).ok())
                .map_or(Dim::Unknown, Dim::Known);
            Some(o)
        });
        vec![with(dtype0, out.clone()), tensor(DataType::I64, out)]
    } else if op == "Det" {
        let out = ins
            .dims(0)
            .and_then(|d| d.get(..d.len().checked_sub(2)?).map(<[Dim]>::to_vec));
        vec![with(dtype0, out)]
    } else if op == "MatMulInteger" {
        let out = match (ins.concrete(0), ins.concrete(1)) {
            (Some(a), Some(b)) => matmul_shape(&a, &b).map(|s| known(&s)),
            _ => None,
        };
        vec![tensor(DataType::I32, out)]
    } else if op == "Attention" {
        let rank = ins.dims(0).map(<[Dim]>::len);
        let unknown = |r: usize| vec![Dim::Unknown; r];
        // 4-D Q [b, heads, seq, d] and V [b, kv_heads, kv_seq, dv]: Y is
        // [b, heads, seq, dv] (whatever the past state adds to kv_seq).
        let y = match (ins.dims(0), ins.dims(2)) {
            (Some(q), Some(v)) if q.len() == 4 && v.len() == 4 => {
                Some(vec![q[0].clone(), q[1].clone(), q[2].clone(), v[3].clone()])
            }
            _ => rank.map(unknown),
        };
        vec![
            with(dtype0, y),
            with(ins.dtype(1), Some(unknown(4))),
            with(ins.dtype(2), Some(unknown(4))),
            with(dtype0, Some(unknown(4))),
        ]
    } else if op == "QLinearMatMul" {
        let out = match (ins.concrete(0), ins.concrete(3)) {
            (Some(a), Some(b)) => matmul_shape(&a, &b).map(|s| known(&s)),
            _ => None,
        };
        vec![with(ins.dtype(7).or(dtype0), out)]
    } else if op == "Einsum" {
        vec![with(dtype0, None)]
    } else {
        return None;
    })
}

/// Dims after reducing `axes` (all when empty, unless `noop`).
fn reduced(dims: &[Dim], axes: &[i64], keep: bool, noop: bool) -> Option<Vec<Dim>> {
    let rank = dims.len();
    let mut mask = vec![axes.is_empty() && !noop; rank];
    for &a in axes {
        mask[normalize_axis(a, rank).ok()?] = true;
    }
    Some(
        dims.iter()
            .zip(&mask)
            .filter_map(|(d, &r)| match (r, keep) {
                (false, _) => Some(d.clone()),
                (true, true) => Some(Dim::Known(1)),
                (true, false) => None,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn symbolic_broadcasting() {
        let n = Dim::Symbolic("N".into());
        let out = broadcast_dims(&[n.clone(), Dim::Known(1)], &[Dim::Known(4)]).unwrap();
        assert_eq!(out, vec![n.clone(), Dim::Known(4)]);
        let out = broadcast_dims(std::slice::from_ref(&n), &[Dim::Known(3)]).unwrap();
        assert_eq!(out, vec![Dim::Known(3)]);
        let m = Dim::Symbolic("M".into());
        assert_eq!(broadcast_dims(&[n], &[m]).unwrap(), vec![Dim::Unknown]);
        assert!(broadcast_dims(&[Dim::Known(2)], &[Dim::Known(3)]).is_none());
        assert_eq!(
            reduced(&[Dim::Known(2), Dim::Known(3)], &[-1], false, false).unwrap(),
            vec![Dim::Known(2)]
        );
        assert_eq!(
            reduced(&[Dim::Known(2), Dim::Known(3)], &[], true, false).unwrap(),
            vec![Dim::Known(1), Dim::Known(1)]
        );
    }
}

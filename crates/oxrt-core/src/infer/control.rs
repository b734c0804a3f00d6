//! Inference for control flow (from the bodies' declared outputs) and for
//! sequence and optional operators.

use super::{tensor, Inputs};
use crate::dtype::DataType;
use crate::ir::{Attribute, Dim, Graph, Node, ValueType};
use crate::shape::normalize_axis;

/// The type two branches agree on: the same element type, and the dims
/// both know where they match.
fn merge(a: &ValueType, b: &ValueType) -> Option<ValueType> {
    match (a, b) {
        (
            ValueType::Tensor {
                dtype: da,
                shape: sa,
            },
            ValueType::Tensor {
                dtype: db,
                shape: sb,
            },
        ) if da == db => {
            let shape = match (sa, sb) {
                (Some(x), Some(y)) if x.len() == y.len() => Some(
                    x.iter()
                        .zip(y)
                        .map(|(p, q)| if p == q { p.clone() } else { Dim::Unknown })
                        .collect(),
                ),
                _ => None,
            };
            tensor(*da, shape)
        }
        _ if a == b => Some(a.clone()),
        _ => None,
    }
}

fn body_output(g: Option<&Graph>, k: usize) -> Option<&ValueType> {
    g?.outputs.get(k).map(|o| &o.ty)
}

/// A per-iteration output stacked along a new axis of unknown size.
fn stacked(ty: Option<&ValueType>, axis: i64) -> Option<ValueType> {
    let dtype = ty?.dtype()?;
    let dims = ty?.dims().and_then(|d| {
        let a = normalize_axis(axis, d.len() + 1).ok()?;
        let mut d = d.to_vec();
        d.insert(a, Dim::Unknown);
        Some(d)
    });
    tensor(dtype, dims)
}

fn tensor_of(ty: Option<&ValueType>) -> Option<ValueType> {
    match ty? {
        ValueType::Sequence(e) => tensor(e.dtype()?, None),
        _ => None,
    }
}

fn sequence_of(dtype: Option<DataType>) -> Option<ValueType> {
    dtype.map(|d| {
        ValueType::Sequence(Box::new(ValueType::Tensor {
            dtype: d,
            shape: None,
        }))
    })
}

/// Output types of control-flow, sequence and optional operators; `None`
/// when `node` is not one.
pub fn infer(node: &Node, opset: i64, ins: &Inputs<'_, '_>) -> Option<Vec<Option<ValueType>>> {
    let graph = |name: &str| node.get_graph(name).ok().flatten().map(|g| g.as_ref());
    let n_out = node.outputs.len();
    let scalar = |d: DataType| Some(ValueType::tensor(d, &[]));
    Some(match node.op_type.as_str() {
        "If" => {
            let (t, e) = (graph("then_branch"), graph("else_branch"));
            (0..n_out)
                .map(|k| merge(body_output(t, k)?, body_output(e, k)?))
                .collect()
        }
        "Loop" => {
            let body = graph("body");
            let carried = node.inputs.len().saturating_sub(2);
            (0..n_out)
                .map(|k| {
                    if k < carried {
                        // The carried value keeps its type; its shape may change.
                        let ty = ins.ty(2 + k)?;
                        match ty {
                            ValueType::Tensor { dtype, .. } => tensor(*dtype, None),
                            other => Some(other.clone()),
                        }
                    } else {
                        stacked(body_output(body, 1 + k), 0)
                    }
                })
                .collect()
        }
        "Scan" if opset >= 9 => {
            let body = graph("body");
            let m = usize::try_from(node.int_or("num_scan_inputs", 0).ok()?).ok()?;
            let states = node.inputs.len().checked_sub(m)?;
            let axes = node.get_ints("scan_output_axes").ok().flatten();
            (0..n_out)
                .map(|k| {
                    if k < states {
                        ins.ty(k).cloned()
                    } else {
                        let axis = axes.and_then(|a| a.get(k - states).copied()).unwrap_or(0);
                        stacked(body_output(body, k), axis)
                    }
                })
                .collect()
        }
        "SequenceEmpty" => {
            let code = node.int_or("dtype", 1).ok()?;
            vec![sequence_of(DataType::from_onnx(i32::try_from(code).ok()?))]
        }
        "SequenceConstruct" | "SplitToSequence" => vec![sequence_of(ins.dtype(0))],
        "SequenceInsert" | "SequenceErase" => vec![ins.ty(0).cloned()],
        "SequenceAt" => vec![tensor_of(ins.ty(0))],
        "SequenceLength" => vec![scalar(DataType::I64)],
        "ConcatFromSequence" => vec![tensor_of(ins.ty(0))],
        "SequenceMap" => {
            let body = graph("body");
            (0..n_out)
                .map(|k| sequence_of(body_output(body, k)?.dtype()))
                .collect()
        }
        "Optional" => {
            let inner = match (ins.ty(0), node.attributes.get("type")) {
                (Some(t), _) => Some(t.clone()),
                (None, Some(Attribute::Type(t))) => Some(t.clone()),
                _ => None,
            };
            vec![inner.map(|t| ValueType::Optional(Box::new(t)))]
        }
        "OptionalHasElement" => vec![scalar(DataType::Bool)],
        "OptionalGetElement" => vec![match ins.ty(0) {
            Some(ValueType::Optional(inner)) => Some(inner.as_ref().clone()),
            other => other.cloned(),
        }],
        _ => return None,
    })
}

//! Inference for shape, layout, generator and indexing operators.

use super::math::broadcast_dims;
use super::{ints_of, tensor, Inputs};
use crate::dtype::DataType;
use crate::ir::{Dim, Node, ValueType};
use crate::shape::normalize_axis;

fn dims_of(values: &[i64]) -> Option<Vec<Dim>> {
    values
        .iter()
        .map(|&v| usize::try_from(v).ok().map(Dim::Known))
        .collect()
}

fn unknown(rank: usize) -> Vec<Dim> {
    vec![Dim::Unknown; rank]
}

/// Output types of the shape and indexing operators; `None` when `node` is
/// not one.
pub fn infer(node: &Node, opset: i64, ins: &Inputs<'_, '_>) -> Option<Vec<Option<ValueType>>> {
    let op = node.op_type.as_str();
    let dtype0 = ins.dtype(0);
    let with = |d: Option<DataType>, dims: Option<Vec<Dim>>| d.and_then(|d| tensor(d, dims));
    let dims0 = ins.dims(0).map(<[Dim]>::to_vec);
    let const_ints = |i: usize| ins.constant(i).and_then(ints_of);
    Some(match op {
        "CastLike" => vec![with(ins.dtype(1), dims0)],
        // Sizes depend on scales or sizes given at run time.
        "Resize" | "Upsample" => vec![with(dtype0, dims0.map(|d| unknown(d.len())))],
        "RNN" | "GRU" | "LSTM" => {
            let dirs = if node.string_or("direction", "forward").ok()? == "bidirectional" {
                2
            } else {
                1
            };
            let hidden = Dim::Known(usize::try_from(node.int_or("hidden_size", -1).ok()?).ok()?);
            let batch_first = opset >= 14 && node.int_or("layout", 0).unwrap_or(0) != 0;
            let (y, state) = match dims0.as_deref() {
                Some([a, b, _]) => {
                    let (seq, batch) = if batch_first { (b, a) } else { (a, b) };
                    let d = Dim::Known(dirs);
                    if batch_first {
                        (
                            Some(vec![batch.clone(), seq.clone(), d.clone(), hidden.clone()]),
                            Some(vec![batch.clone(), d, hidden]),
                        )
                    } else {
                        (
                            Some(vec![seq.clone(), d.clone(), batch.clone(), hidden.clone()]),
                            Some(vec![d, batch.clone(), hidden]),
                        )
                    }
                }
                _ => (None, None),
            };
            vec![
                with(dtype0, y),
                with(dtype0, state.clone()),
                with(dtype0, state),
            ]
        }
        "TensorScatter" => vec![ins.ty(0).cloned()],
        "RoiAlign" => {
            let size = |name: &str| {
                usize::try_from(node.int_or(name, 1).unwrap_or(1)).map_or(Dim::Unknown, Dim::Known)
            };
            let dims = match (dims0.as_deref(), ins.dims(1)) {
                (Some([_, c, ..]), Some([r, _])) => Some(vec![
                    r.clone(),
                    c.clone(),
                    size("output_height"),
                    size("output_width"),
                ]),
                _ => None,
            };
            vec![with(dtype0, dims)]
        }
        "MaxRoiPool" => {
            let pooled = node.get_ints("pooled_shape").ok().flatten().map(|p| {
                p.iter()
                    .map(|&v| usize::try_from(v).map_or(Dim::Unknown, Dim::Known))
                    .collect::<Vec<_>>()
            });
            let dims = match (dims0.as_deref(), ins.dims(1), pooled) {
                (Some([_, c, ..]), Some([r, _]), Some(p)) if p.len() == 2 => {
                    Some(vec![r.clone(), c.clone(), p[0].clone(), p[1].clone()])
                }
                _ => None,
            };
            vec![with(dtype0, dims)]
        }
        "DeformConv" => {
            let dims = match (dims0.as_deref(), ins.dims(1), ins.dims(2)) {
                (Some([n, ..]), Some([oc, ..]), Some(off)) if off.len() >= 2 => {
                    let mut d = vec![n.clone(), oc.clone()];
                    d.extend_from_slice(&off[2..]);
                    Some(d)
                }
                _ => None,
            };
            vec![with(dtype0, dims)]
        }
        "CausalConvWithState" => {
            let state = dims0.as_ref().map(|d| {
                let mut s = d.clone();
                if let Some(last) = s.last_mut() {
                    *last = Dim::Unknown;
                }
                s
            });
            vec![with(dtype0, dims0.clone()), with(dtype0, state)]
        }
        "LinearAttention" => {
            let state_dtype = ins.dtype(3).or(dtype0);
            vec![
                with(dtype0, Some(unknown(3))),
                with(state_dtype, Some(unknown(4))),
            ]
        }
        "GridSample" => {
            let dims = match (dims0.as_deref(), ins.dims(1)) {
                (Some(x), Some(g)) if x.len() >= 2 && g.len() == x.len() => {
                    let mut d = x[..2].to_vec();
                    d.extend_from_slice(&g[1..g.len() - 1]);
                    Some(d)
                }
                _ => None,
            };
            vec![with(dtype0, dims)]
        }
        "AffineGrid" => {
            let dims = const_ints(1).and_then(|s| {
                let k = s.len().checked_sub(2)?;
                let mut d = dims_of(&s[..1])?;
                d.extend(dims_of(&s[2..])?);
                d.push(Dim::Known(k));
                Some(d)
            });
            vec![with(dtype0, dims)]
        }
        "HannWindow" | "HammingWindow" | "BlackmanWindow" => {
            let dtype = DataType::from_onnx(node.int_or("output_datatype", 1).unwrap_or(1) as i32);
            let len = const_ints(0).and_then(|v| v.first().and_then(|&n| usize::try_from(n).ok()));
            vec![with(
                dtype,
                Some(vec![len.map_or(Dim::Unknown, Dim::Known)]),
            )]
        }
        "BitCast" => {
            let to = node
                .get_int("to")
                .ok()
                .flatten()
                .and_then(|c| DataType::from_onnx(c as i32));
            vec![with(to, dims0)]
        }
        "Col2Im" => {
            let image = const_ints(1).and_then(|s| dims_of(&s));
            let out = match (ins.dims(0), image) {
                (Some(d), Some(img)) if !d.is_empty() => {
                    let mut o = vec![d[0].clone(), Dim::Unknown];
                    o.extend(img);
                    Some(o)
                }
                _ => None,
            };
            vec![with(dtype0, out)]
        }
        "NonMaxSuppression" => vec![tensor(
            DataType::I64,
            Some(vec![Dim::Unknown, Dim::Known(3)]),
        )],
        "RegexFullMatch" => vec![tensor(DataType::Bool, dims0)],
        "StringConcat" => {
            let out = match (ins.dims(0), ins.dims(1)) {
                (Some(a), Some(b)) => broadcast_dims(a, b),
                _ => None,
            };
            vec![tensor(DataType::String, out)]
        }
        "StringSplit" => vec![
            tensor(
                DataType::String,
                dims0.clone().map(|mut d| {
                    d.push(Dim::Unknown);
                    d
                }),
            ),
            tensor(DataType::I64, dims0),
        ],
        "StringNormalizer" => vec![tensor(DataType::String, dims0.map(|d| unknown(d.len())))],
        "QuantizeLinear" | "DequantizeLinear" => {
            let attr = node
                .get_int("output_dtype")
                .ok()
                .flatten()
                .and_then(|c| DataType::from_onnx(c as i32));
            let dtype = if op == "QuantizeLinear" {
                ins.dtype(2).or(attr).or(Some(DataType::U8))
            } else {
                attr.or(ins.dtype(1))
            };
            vec![with(dtype, dims0)]
        }
        "DynamicQuantizeLinear" => vec![
            tensor(DataType::U8, dims0),
            tensor(DataType::F32, Some(Vec::new())),
            tensor(DataType::U8, Some(Vec::new())),
        ],
        "Size" => vec![tensor(DataType::I64, Some(Vec::new()))],
        "Scatter" | "ScatterElements" | "ScatterND" | "ReverseSequence" => vec![ins.ty(0).cloned()],
        "GatherElements" => vec![with(dtype0, ins.dims(1).map(<[Dim]>::to_vec))],
        "Expand" => {
            let out = match (ins.dims(0), const_ints(1).and_then(|s| dims_of(&s))) {
                (Some(d), Some(t)) => broadcast_dims(d, &t),
                _ => None,
            };
            vec![with(dtype0, out)]
        }
        "Tile" => {
            let out = dims0.as_ref().map(|d| match const_ints(1) {
                Some(r) if r.len() == d.len() => d
                    .iter()
                    .zip(&r)
                    .map(|(x, &k)| match (x, usize::try_from(k)) {
                        (Dim::Known(n), Ok(k)) => Dim::Known(n * k),
                        _ => Dim::Unknown,
                    })
                    .collect(),
                _ => unknown(d.len()),
            });
            vec![with(dtype0, out)]
        }
        "Slice" | "Pad" | "Compress" | "ConvTranspose" | "CenterCropPad" | "MaxUnpool" => {
            // Exact sizes need the data's shape and constant parameters;
            // the rank is always known.
            let rank = if op == "Compress" && node.get_int("axis").ok().flatten().is_none() {
                Some(1)
            } else {
                dims0.as_ref().map(Vec::len)
            };
            vec![with(dtype0, rank.map(unknown))]
        }
        "Split" => {
            let n = node
                .get_int("num_outputs")
                .ok()
                .flatten()
                .map_or(node.outputs.len(), |n| n.max(0) as usize);
            let axis = node.int_or("axis", 0).unwrap_or(0);
            let sizes: Option<Vec<i64>> = if opset < 13 {
                node.get_ints("split").ok().flatten().map(<[i64]>::to_vec)
            } else {
                const_ints(1)
            };
            // Sizes fed at run time leave the split dimension open.
            let runtime_sizes = sizes.is_none() && opset >= 13 && node.input(1).is_some();
            (0..n)
                .map(|i| {
                    let d = dims0.clone()?;
                    let a = normalize_axis(axis, d.len()).ok()?;
                    let mut o = d.clone();
                    o[a] = match (&sizes, &d[a]) {
                        (Some(s), _) => s
                            .get(i)
                            .and_then(|&v| usize::try_from(v).ok())
                            .map_or(Dim::Unknown, Dim::Known),
                        _ if runtime_sizes => Dim::Unknown,
                        (None, Dim::Known(total)) if total % n.max(1) == 0 => {
                            Dim::Known(total / n.max(1))
                        }
                        _ => Dim::Unknown,
                    };
                    with(dtype0, Some(o))
                })
                .collect()
        }
        "DepthToSpace" | "SpaceToDepth" => {
            let b = node
                .int_or("blocksize", 1)
                .ok()
                .and_then(|b| usize::try_from(b).ok())
                .filter(|&b| b > 0)?;
            let out = dims0.map(|d| match d.as_slice() {
                [n, Dim::Known(c), Dim::Known(h), Dim::Known(w)] => {
                    if op == "DepthToSpace" {
                        vec![
                            n.clone(),
                            Dim::Known(c / (b * b)),
                            Dim::Known(h * b),
                            Dim::Known(w * b),
                        ]
                    } else {
                        vec![
                            n.clone(),
                            Dim::Known(c * b * b),
                            Dim::Known(h / b),
                            Dim::Known(w / b),
                        ]
                    }
                }
                _ => unknown(d.len()),
            });
            vec![with(dtype0, out)]
        }
        "ConstantOfShape" => {
            let dtype = match node.get_tensor("value").ok().flatten() {
                Some(t) => t.dtype(),
                None => DataType::F32,
            };
            let out = const_ints(0)
                .and_then(|s| dims_of(&s))
                .or_else(|| ins.concrete(0).and_then(|s| s.first().map(|&r| unknown(r))));
            vec![tensor(dtype, out)]
        }
        "Range" => {
            let scalar = |i: usize| {
                ins.constant(i)
                    .and_then(|t| t.to_f64_vec())
                    .and_then(|v| v.first().copied())
            };
            let len = match (scalar(0), scalar(1), scalar(2)) {
                (Some(s), Some(l), Some(d)) if d != 0.0 => {
                    Dim::Known(((l - s) / d).ceil().max(0.0) as usize)
                }
                _ => Dim::Unknown,
            };
            vec![with(dtype0, Some(vec![len]))]
        }
        "EyeLike" => {
            let dtype = node
                .get_int("dtype")
                .ok()
                .flatten()
                .and_then(|c| DataType::from_onnx(c as i32))
                .or(dtype0);
            vec![with(dtype, dims0)]
        }
        "GatherND" => {
            let b = node
                .int_or("batch_dims", 0)
                .ok()
                .and_then(|b| usize::try_from(b).ok())?;
            let out = match (ins.dims(0), ins.dims(1)) {
                (Some(d), Some(i)) => match i.last() {
                    Some(Dim::Known(q)) if b + q <= d.len() => {
                        let mut o = i[..i.len() - 1].to_vec();
                        o.extend_from_slice(&d[b + q..]);
                        Some(o)
                    }
                    _ => None,
                },
                _ => None,
            };
            vec![with(dtype0, out)]
        }
        "NonZero" => {
            let rank = dims0.map(|d| d.len());
            vec![tensor(
                DataType::I64,
                rank.map(|r| vec![Dim::Known(r), Dim::Unknown]),
            )]
        }
        "OneHot" => {
            let depth = ins
                .constant(1)
                .and_then(|t| t.to_f64_vec())
                .and_then(|v| v.first().copied());
            let out = ins.dims(0).and_then(|d| {
                let axis = normalize_axis(node.int_or("axis", -1).ok()?, d.len() + 1).ok()?;
                let mut o = d.to_vec();
                o.insert(axis, depth.map_or(Dim::Unknown, |v| Dim::Known(v as usize)));
                Some(o)
            });
            vec![with(ins.dtype(2), out)]
        }
        "Unique" => {
            let y = match node.get_int("axis").ok().flatten() {
                None => Some(vec![Dim::Unknown]),
                Some(a) => dims0.and_then(|d| {
                    let a = normalize_axis(a, d.len()).ok()?;
                    let mut o = d;
                    o[a] = Dim::Unknown;
                    Some(o)
                }),
            };
            let vec1 = Some(vec![Dim::Unknown]);
            vec![
                with(dtype0, y),
                tensor(DataType::I64, vec1.clone()),
                tensor(DataType::I64, vec1.clone()),
                tensor(DataType::I64, vec1),
            ]
        }
        _ => return None,
    })
}

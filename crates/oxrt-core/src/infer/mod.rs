//! Type and shape inference for the operators oxrt implements.
//!
//! Best effort, like ONNX's: values whose type cannot be derived stay
//! unknown and kernels validate actual shapes at run time. Inferred types
//! fill `Graph::value_types`, where providers read them to choose kernels.

mod control;
mod math;
mod shape_ops;

use std::collections::BTreeMap;

use crate::dtype::DataType;
use crate::ir::{Attribute, Dim, Graph, Node, ValueType};
use crate::shape;
use crate::tensor::Tensor;

/// Fills `graph.value_types` for every node output it can infer.
pub fn infer_graph(graph: &mut Graph, opsets: &BTreeMap<String, i64>) {
    for v in graph.inputs.iter().chain(&graph.overridable_initializers) {
        graph
            .value_types
            .entry(v.name.clone())
            .or_insert(v.ty.clone());
    }
    // Constants (also those the optimizer made) have the type they hold.
    for (name, t) in &graph.initializers {
        graph
            .value_types
            .entry(name.clone())
            .or_insert_with(|| ValueType::Tensor {
                dtype: t.dtype(),
                shape: Some(known(t.shape())),
            });
    }
    let order = crate::plan::topological_order(graph).unwrap_or_default();
    for ni in order {
        let node = &graph.nodes[ni];
        let opset = opsets.get(&node.domain).copied().unwrap_or(0);
        let inputs: Vec<Option<&ValueType>> = node
            .inputs
            .iter()
            .map(|n| graph.value_types.get(n))
            .collect();
        let constant = |i: usize| {
            node.input(i)
                .and_then(|n| graph.initializers.get(n))
                .map(|t| t.as_ref())
        };
        let outs = if node.domain.is_empty() {
            infer_node(node, opset, &inputs, &constant)
        } else if node.domain == crate::optimize::OXRT_DOMAIN {
            let onnx_opset = opsets.get("").copied().unwrap_or(0);
            infer_fused(node, onnx_opset, &inputs, &constant)
        } else {
            Vec::new()
        };
        let updates: Vec<(String, ValueType)> = node
            .outputs
            .iter()
            .zip(outs)
            .filter(|(name, _)| !name.is_empty())
            .filter_map(|(name, t)| t.map(|t| (name.clone(), t)))
            .collect();
        for (name, t) in updates {
            // Declared value_info wins over inference when it is more precise.
            let keep_declared = graph
                .value_types
                .get(&name)
                .is_some_and(|d| d.concrete_shape().is_some());
            if !keep_declared {
                graph.value_types.insert(name, t);
            }
        }
    }
}

/// Infers the outputs of an `oxrt`-domain fused node from the standard op
/// it extends (`onnx_opset`: the model's ONNX opset).
fn infer_fused<'a>(
    node: &Node,
    onnx_opset: i64,
    inputs: &[Option<&ValueType>],
    constant: &dyn Fn(usize) -> Option<&'a Tensor>,
) -> Vec<Option<ValueType>> {
    let base = |op: &str, inputs: &[Option<&ValueType>]| {
        let mut n = node.clone();
        n.op_type = op.into();
        n.domain.clear();
        infer_node(&n, onnx_opset.max(20), inputs, constant)
    };
    match node.op_type.as_str() {
        "FusedConv" => base("Conv", inputs),
        "FusedGemm" => base("Gemm", inputs),
        "Gelu" | "LayerNormalization" | "Attention" => {
            let mut n = node.clone();
            n.domain.clear();
            infer_node(&n, onnx_opset.max(23), inputs, constant)
        }
        "FusedMatMul" => {
            // Operands as the product reads them: last two axes swapped.
            let swapped: Vec<Option<ValueType>> = [("transA", 0), ("transB", 1)]
                .iter()
                .map(|&(flag, i)| {
                    let t = inputs.get(i).copied().flatten()?;
                    if node.int_or(flag, 0).unwrap_or(0) == 0 {
                        return Some(t.clone());
                    }
                    match t {
                        ValueType::Tensor {
                            dtype,
                            shape: Some(d),
                        } if d.len() >= 2 => {
                            let mut d = d.clone();
                            let r = d.len();
                            d.swap(r - 2, r - 1);
                            Some(ValueType::Tensor {
                                dtype: *dtype,
                                shape: Some(d),
                            })
                        }
                        _ => None,
                    }
                })
                .collect();
            let refs: Vec<Option<&ValueType>> = swapped.iter().map(Option::as_ref).collect();
            base("MatMul", &refs)
        }
        "SkipLayerNormalization" => {
            let t = inputs.first().copied().flatten().cloned();
            vec![t.clone(), t]
        }
        _ => Vec::new(),
    }
}

fn known(dims: &[usize]) -> Vec<Dim> {
    dims.iter().map(|&d| Dim::Known(d)).collect()
}

fn tensor(dtype: DataType, dims: Option<Vec<Dim>>) -> Option<ValueType> {
    Some(ValueType::Tensor { dtype, shape: dims })
}

fn ints_of(t: &Tensor) -> Option<Vec<i64>> {
    if let Ok(v) = t.as_slice::<i32>() {
        return Some(v.iter().map(|&x| i64::from(x)).collect());
    }
    t.as_slice::<i64>().map(<[i64]>::to_vec).ok()
}

/// What inference sees of a node's inputs: their types and the constant
/// (initializer) values among them.
pub(crate) struct Inputs<'t, 'c> {
    types: &'t [Option<&'t ValueType>],
    constant: &'t dyn Fn(usize) -> Option<&'c Tensor>,
}

impl<'t, 'c> Inputs<'t, 'c> {
    fn len(&self) -> usize {
        self.types.len()
    }

    fn ty(&self, i: usize) -> Option<&'t ValueType> {
        self.types.get(i).copied().flatten()
    }

    fn dtype(&self, i: usize) -> Option<DataType> {
        self.ty(i).and_then(ValueType::dtype)
    }

    fn dims(&self, i: usize) -> Option<&'t [Dim]> {
        self.ty(i).and_then(ValueType::dims)
    }

    fn concrete(&self, i: usize) -> Option<Vec<usize>> {
        self.ty(i).and_then(ValueType::concrete_shape)
    }

    fn constant(&self, i: usize) -> Option<&'c Tensor> {
        (self.constant)(i)
    }
}

/// Infers the output types of one node of the ONNX domain.
pub fn infer_node<'a>(
    node: &Node,
    opset: i64,
    inputs: &[Option<&ValueType>],
    constant: &dyn Fn(usize) -> Option<&'a Tensor>,
) -> Vec<Option<ValueType>> {
    let input = |i: usize| inputs.get(i).copied().flatten();
    let dtype0 = input(0).and_then(ValueType::dtype);
    let dims0 = input(0).and_then(ValueType::dims).map(<[Dim]>::to_vec);
    let concrete = |i: usize| input(i).and_then(ValueType::concrete_shape);
    let same = || vec![input(0).cloned()];
    match node.op_type.as_str() {
        "Identity" | "Relu" | "LeakyRelu" | "Sigmoid" | "Tanh" | "Clip" | "Softmax"
        | "LogSoftmax" | "Abs" | "Neg" | "Exp" | "Log" | "Sqrt" => same(),
        "Dropout" => vec![
            input(0).cloned(),
            dims0.map(|d| ValueType::Tensor {
                dtype: DataType::Bool,
                shape: Some(d),
            }),
        ],
        "BatchNormalization" => same(),
        "Add" | "Sub" | "Mul" | "Div" => {
            let dims = |i: usize| input(i).and_then(ValueType::dims);
            let shape = match (concrete(0), concrete(1)) {
                (Some(a), Some(b)) => shape::broadcast(&a, &b).ok().map(|s| known(&s)),
                _ => match (dims(0), dims(1)) {
                    (Some(a), Some(b)) => math::broadcast_dims(a, b),
                    _ => None,
                },
            };
            vec![dtype0.and_then(|d| tensor(d, shape))]
        }
        "Cast" => {
            let to = node
                .get_int("to")
                .ok()
                .flatten()
                .and_then(|c| DataType::from_onnx(c as i32));
            vec![to.and_then(|d| tensor(d, dims0))]
        }
        "Shape" => {
            let rank = dims0.as_ref().map(|d| d.len() as i64);
            let len = rank.map(|r| {
                let clamp = |v: i64| if v < 0 { (v + r).max(0) } else { v.min(r) };
                let start = clamp(node.int_or("start", 0).unwrap_or(0));
                let end = clamp(node.int_or("end", r).unwrap_or(r));
                (end - start).max(0) as usize
            });
            vec![tensor(DataType::I64, len.map(|l| known(&[l])))]
        }
        "Constant" => vec![constant_type(node)],
        "Conv" | "ConvInteger" | "MaxPool" | "AveragePool" | "LpPool" => {
            let out = window_output(node, dims0.as_deref(), concrete(1));
            let dtype = if node.op_type == "ConvInteger" {
                Some(DataType::I32)
            } else {
                dtype0
            };
            let mut v = vec![dtype.and_then(|d| tensor(d, out.clone()))];
            if node.op_type == "MaxPool" {
                v.push(tensor(DataType::I64, out));
            }
            v
        }
        "QLinearConv" => {
            let out = window_output(node, dims0.as_deref(), concrete(3));
            let dtype = input(7).and_then(ValueType::dtype).or(dtype0);
            vec![dtype.and_then(|d| tensor(d, out))]
        }
        "GlobalAveragePool" | "GlobalMaxPool" | "GlobalLpPool" => {
            let out = dims0.map(|d| {
                d.iter()
                    .enumerate()
                    .map(|(i, x)| if i < 2 { x.clone() } else { Dim::Known(1) })
                    .collect()
            });
            vec![dtype0.and_then(|d| tensor(d, out))]
        }
        "Gemm" => {
            let (ta, tb) = (
                node.int_or("transA", 0).unwrap_or(0),
                node.int_or("transB", 0).unwrap_or(0),
            );
            let b_dims = input(1).and_then(ValueType::dims);
            let out = match (dims0.as_deref(), b_dims) {
                (Some(a), Some(b)) if a.len() == 2 && b.len() == 2 => {
                    let m = if ta != 0 { &a[1] } else { &a[0] };
                    let n = if tb != 0 { &b[0] } else { &b[1] };
                    Some(vec![m.clone(), n.clone()])
                }
                _ => None,
            };
            vec![dtype0.and_then(|d| tensor(d, out))]
        }
        "MatMul" => {
            let out = match (concrete(0), concrete(1)) {
                (Some(a), Some(b)) => matmul_shape(&a, &b).map(|s| known(&s)),
                _ => match (dims0.as_deref(), input(1).and_then(ValueType::dims)) {
                    (Some(a), Some(b)) => symbolic_matmul(a, b),
                    _ => None,
                },
            };
            vec![dtype0.and_then(|d| tensor(d, out))]
        }
        "Reshape" => {
            let target = constant(1).and_then(ints_of);
            let allowzero = node.int_or("allowzero", 0).unwrap_or(0) != 0;
            let out = match (concrete(0), target) {
                (Some(inp), Some(t)) => reshape_shape(&inp, &t, allowzero).map(|s| known(&s)),
                (None, Some(t)) if t.iter().all(|&v| v > 0) => {
                    Some(t.iter().map(|&v| Dim::Known(v as usize)).collect())
                }
                (None, Some(t)) if !allowzero => {
                    dims0.as_deref().and_then(|d| symbolic_reshape(d, &t))
                }
                _ => None,
            };
            vec![dtype0.and_then(|d| tensor(d, out))]
        }
        "Flatten" => {
            let out = concrete(0)
                .and_then(|s| {
                    let axis = flatten_axis(node.int_or("axis", 1).ok()?, s.len()).ok()?;
                    Some(known(&[
                        s[..axis].iter().product(),
                        s[axis..].iter().product(),
                    ]))
                })
                .or_else(|| {
                    // [batch, known...] with axis 1 keeps the symbol.
                    let d = dims0.as_deref()?;
                    let axis = flatten_axis(node.int_or("axis", 1).ok()?, d.len()).ok()?;
                    if axis != 1 {
                        return None;
                    }
                    let rest: usize = d[1..]
                        .iter()
                        .map(|x| match x {
                            Dim::Known(n) => Some(*n),
                            _ => None,
                        })
                        .product::<Option<usize>>()?;
                    Some(vec![d[0].clone(), Dim::Known(rest)])
                });
            vec![dtype0.and_then(|d| tensor(d, out))]
        }
        "Transpose" => {
            let out = dims0.and_then(|d| {
                let perm: Vec<i64> = match node.get_ints("perm").ok()? {
                    Some(p) => p.to_vec(),
                    None => (0..d.len() as i64).rev().collect(),
                };
                perm.iter()
                    .map(|&p| d.get(usize::try_from(p).ok()?).cloned())
                    .collect()
            });
            vec![dtype0.and_then(|d| tensor(d, out))]
        }
        "Concat" => {
            let shapes: Option<Vec<Vec<Dim>>> = (0..inputs.len())
                .map(|i| input(i).and_then(ValueType::dims).map(<[Dim]>::to_vec))
                .collect();
            let out = shapes.and_then(|s| {
                let first = s.first()?;
                let axis = shape::normalize_axis(node.get_int("axis").ok()??, first.len()).ok()?;
                let mut o = first.clone();
                // The concatenated axis must be known; the others agree.
                let mut total = 0;
                for x in &s {
                    match x.get(axis)? {
                        Dim::Known(n) => total += n,
                        _ => return None,
                    }
                }
                o[axis] = Dim::Known(total);
                for (i, d) in o.iter_mut().enumerate() {
                    if i != axis && s.iter().any(|x| x.get(i) != Some(&*d)) {
                        *d = Dim::Unknown;
                    }
                }
                Some(o)
            });
            vec![dtype0.and_then(|d| tensor(d, out))]
        }
        "Gather" => {
            let out = match (concrete(0), concrete(1)) {
                (Some(data), Some(idx)) => {
                    shape::normalize_axis(node.int_or("axis", 0).unwrap_or(0), data.len())
                        .ok()
                        .map(|a| {
                            let mut o = data[..a].to_vec();
                            o.extend(&idx);
                            o.extend(&data[a + 1..]);
                            known(&o)
                        })
                }
                _ => None,
            };
            vec![dtype0.and_then(|d| tensor(d, out))]
        }
        "Unsqueeze" | "Squeeze" => {
            let axes = if opset >= 13 {
                constant(1).and_then(ints_of)
            } else {
                node.get_ints("axes").ok().flatten().map(<[i64]>::to_vec)
            };
            // Axes fed at run time (not a constant) leave the shape open.
            let runtime_axes = opset >= 13 && axes.is_none() && node.input(1).is_some();
            let out = if runtime_axes {
                None
            } else if node.op_type == "Unsqueeze" {
                // Symbolic dims carry over; the new axes have size 1.
                dims0
                    .as_deref()
                    .and_then(|d| unsqueeze_dims(d, axes.as_deref()?, Dim::Known(1)))
            } else {
                concrete(0).and_then(|s| squeeze_shape(&s, axes.as_deref()).map(|s| known(&s)))
            };
            vec![dtype0.and_then(|d| tensor(d, out))]
        }
        _ => {
            let ins = Inputs {
                types: inputs,
                constant,
            };
            math::infer(node, opset, &ins)
                .or_else(|| shape_ops::infer(node, opset, &ins))
                .or_else(|| control::infer(node, opset, &ins))
                .unwrap_or_default()
        }
    }
}

fn constant_type(node: &Node) -> Option<ValueType> {
    let (name, attr) = node.attributes.iter().next()?;
    match (name.as_str(), attr) {
        ("value", Attribute::Tensor(t)) => Some(ValueType::tensor(t.dtype(), t.shape())),
        ("value_float", _) => Some(ValueType::tensor(DataType::F32, &[])),
        ("value_int", _) => Some(ValueType::tensor(DataType::I64, &[])),
        ("value_floats", Attribute::Floats(v)) => {
            Some(ValueType::tensor(DataType::F32, &[v.len()]))
        }
        ("value_ints", Attribute::Ints(v)) => Some(ValueType::tensor(DataType::I64, &[v.len()])),
        ("value_string", _) => Some(ValueType::tensor(DataType::String, &[])),
        ("value_strings", Attribute::Strings(v)) => {
            Some(ValueType::tensor(DataType::String, &[v.len()]))
        }
        _ => None,
    }
}

/// Output dims of Conv and pooling: the batch dim passes through (even
/// symbolic); channels and spatial dims must be known.
fn window_output(node: &Node, x: Option<&[Dim]>, w: Option<Vec<usize>>) -> Option<Vec<Dim>> {
    let x = x?;
    if x.len() < 3 {
        return None;
    }
    let spatial: Vec<usize> = x[2..]
        .iter()
        .map(|d| match d {
            Dim::Known(n) => Some(*n),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let is_conv = matches!(
        node.op_type.as_str(),
        "Conv" | "ConvInteger" | "QLinearConv"
    );
    let attrs = shape::WindowAttrs::from_node(node).ok()?;
    let kernel = w.as_ref().and_then(|w| w.get(2..)).filter(|_| is_conv);
    let win = attrs.resolve(&spatial, kernel).ok()?;
    let channels = if is_conv {
        Dim::Known(*w.as_ref()?.first()?)
    } else {
        x[1].clone()
    };
    let mut out = vec![x[0].clone(), channels];
    out.extend(known(&win.output));
    Some(out)
}

/// Flatten's `axis` in `[-rank, rank]`, normalized to `0..=rank`.
pub fn flatten_axis(axis: i64, rank: usize) -> crate::Result<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if !(0..=r).contains(&a) {
        return Err(crate::Error::invalid(format!(
            "axis {axis} is out of range [-{rank}, {rank}] for a tensor of rank {rank}"
        )));
    }
    Ok(a as usize)
}

/// Output shape of numpy-style `matmul`.
pub fn matmul_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let a2 = if a.len() == 1 {
        vec![1, a[0]]
    } else {
        a.to_vec()
    };
    let b2 = if b.len() == 1 {
        vec![b[0], 1]
    } else {
        b.to_vec()
    };
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let (k2, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
    if k != k2 {
        return None;
    }
    let mut out = shape::broadcast(&a2[..a2.len() - 2], &b2[..b2.len() - 2]).ok()?;
    if a.len() > 1 {
        out.push(m);
    }
    if b.len() > 1 {
        out.push(n);
    }
    Some(out)
}

/// Resolves a `Reshape` target (`0` copies, `-1` infers) against `input`.
/// MatMul's output over dims that may be symbolic (matrices of rank 2 or
/// more; batch axes broadcast).
fn symbolic_matmul(a: &[Dim], b: &[Dim]) -> Option<Vec<Dim>> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let (ra, rb) = (a.len(), b.len());
    let mut out = math::broadcast_dims(&a[..ra - 2], &b[..rb - 2])?;
    out.push(a[ra - 2].clone());
    out.push(b[rb - 1].clone());
    Some(out)
}

/// Reshape of an input whose dims may be symbolic: `0` copies the input's
/// dim, and `-1` is solved when every input dim it absorbs is known.
fn symbolic_reshape(input: &[Dim], target: &[i64]) -> Option<Vec<Dim>> {
    let mut out = Vec::with_capacity(target.len());
    let mut copied = vec![false; input.len()];
    let mut known_out: usize = 1;
    let mut infer_at = None;
    for (i, &t) in target.iter().enumerate() {
        match t {
            0 => {
                out.push(input.get(i)?.clone());
                copied[i] = true;
            }
            -1 if infer_at.is_none() => {
                infer_at = Some(i);
                out.push(Dim::Unknown);
            }
            t if t > 0 => {
                known_out = known_out.checked_mul(t as usize)?;
                out.push(Dim::Known(t as usize));
            }
            _ => return None,
        }
    }
    if let Some(at) = infer_at {
        let mut rest: usize = 1;
        for (d, c) in input.iter().zip(&copied) {
            match (d, c) {
                (_, true) => {}
                (Dim::Known(n), false) => rest = rest.checked_mul(*n)?,
                _ => return Some(out),
            }
        }
        if known_out == 0 || !rest.is_multiple_of(known_out) {
            return None;
        }
        out[at] = Dim::Known(rest / known_out);
    }
    Some(out)
}

pub fn reshape_shape(input: &[usize], target: &[i64], allowzero: bool) -> Option<Vec<usize>> {
    let total: usize = input.iter().product();
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &t) in target.iter().enumerate() {
        match t {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => out.push(*input.get(i)?),
            t if t >= 0 => out.push(t as usize),
            _ => return None,
        }
    }
    if let Some(i) = infer {
        let known: usize = out.iter().product();
        if known == 0 || !total.is_multiple_of(known) {
            return None;
        }
        out[i] = total / known;
    }
    (out.iter().product::<usize>() == total).then_some(out)
}

/// Output shape of `Unsqueeze` with `axes`.
pub fn unsqueeze_shape(input: &[usize], axes: &[i64]) -> Option<Vec<usize>> {
    unsqueeze_dims(input, axes, 1)
}

/// [`unsqueeze_shape`] over any kind of dim (`one` is the size-1 dim).
fn unsqueeze_dims<D: Clone>(input: &[D], axes: &[i64], one: D) -> Option<Vec<D>> {
    let rank = input.len() + axes.len();
    let mut norm: Vec<usize> = axes
        .iter()
        .map(|&a| shape::normalize_axis(a, rank).ok())
        .collect::<Option<_>>()?;
    norm.sort_unstable();
    if norm.windows(2).any(|w| w[0] == w[1]) {
        return None;
    }
    let mut it = input.iter();
    (0..rank)
        .map(|i| {
            if norm.contains(&i) {
                Some(one.clone())
            } else {
                it.next().cloned()
            }
        })
        .collect()
}

/// Output shape of `Squeeze` with optional `axes` (all size-1 dims when absent).
pub fn squeeze_shape(input: &[usize], axes: Option<&[i64]>) -> Option<Vec<usize>> {
    match axes {
        None => Some(input.iter().copied().filter(|&d| d != 1).collect()),
        Some(axes) => {
            let norm: Vec<usize> = axes
                .iter()
                .map(|&a| shape::normalize_axis(a, input.len()).ok())
                .collect::<Option<_>>()?;
            if norm.iter().any(|&a| input[a] != 1) {
                return None;
            }
            Some(
                input
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !norm.contains(i))
                    .map(|(_, &d)| d)
                    .collect(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn node(op: &str, attrs: Vec<(&str, Attribute)>) -> Node {
        Node {
            name: "n".into(),
            op_type: op.into(),
            domain: String::new(),
            inputs: vec!["a".into(), "b".into()],
            outputs: vec!["y".into()],
            attributes: attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        }
    }

    fn f32t(s: &[usize]) -> ValueType {
        ValueType::tensor(DataType::F32, s)
    }

    #[test]
    fn conv_pool_gemm_shapes() {
        let x = f32t(&[1, 1, 8, 8]);
        let w = f32t(&[8, 1, 3, 3]);
        let conv = node("Conv", vec![("pads", Attribute::Ints(vec![1, 1, 1, 1]))]);
        let out = infer_node(&conv, 13, &[Some(&x), Some(&w)], &|_| None);
        assert_eq!(out[0], Some(f32t(&[1, 8, 8, 8])));
        let pool = node(
            "MaxPool",
            vec![
                ("kernel_shape", Attribute::Ints(vec![2, 2])),
                ("strides", Attribute::Ints(vec![2, 2])),
            ],
        );
        let out = infer_node(&pool, 13, &[Some(&f32t(&[1, 8, 8, 8]))], &|_| None);
        assert_eq!(out[0], Some(f32t(&[1, 8, 4, 4])));
        let gemm = node("Gemm", vec![("transB", Attribute::Int(1))]);
        let out = infer_node(
            &gemm,
            13,
            &[Some(&f32t(&[5, 64])), Some(&f32t(&[10, 64]))],
            &|_| None,
        );
        assert_eq!(out[0], Some(f32t(&[5, 10])));
    }

    #[test]
    fn broadcast_reshape_and_symbolic() {
        let add = node("Add", vec![]);
        let out = infer_node(
            &add,
            14,
            &[Some(&f32t(&[2, 1, 3])), Some(&f32t(&[4, 1]))],
            &|_| None,
        );
        assert_eq!(out[0], Some(f32t(&[2, 4, 3])));
        let sym = ValueType::Tensor {
            dtype: DataType::F32,
            shape: Some(vec![Dim::Symbolic("N".into()), Dim::Known(3)]),
        };
        let relu = node("Relu", vec![]);
        assert_eq!(
            infer_node(&relu, 14, &[Some(&sym)], &|_| None)[0],
            Some(sym.clone())
        );
        assert_eq!(
            reshape_shape(&[2, 3, 4], &[0, -1], false),
            Some(vec![2, 12])
        );
        assert_eq!(reshape_shape(&[2, 3, 4], &[5, -1], false), None);
        assert_eq!(matmul_shape(&[7, 2, 3], &[3, 4]), Some(vec![7, 2, 4]));
        assert_eq!(matmul_shape(&[3], &[3, 4]), Some(vec![4]));
        assert_eq!(unsqueeze_shape(&[3, 4], &[0, -1]), Some(vec![1, 3, 4, 1]));
        assert_eq!(squeeze_shape(&[1, 3, 1], Some(&[0])), Some(vec![3, 1]));
        assert_eq!(squeeze_shape(&[1, 3, 1], None), Some(vec![3]));
    }
}

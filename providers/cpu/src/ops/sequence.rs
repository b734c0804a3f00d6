//! Sequence and optional operators, and Identity, which passes any value:
//! SequenceEmpty/Construct/At/Insert/Erase/Length, SplitToSequence,
//! ConcatFromSequence, Optional, OptionalHasElement, OptionalGetElement.

use oxrt_core::dtype::DataType;
use oxrt_core::ir::Attribute;
use oxrt_core::shape::normalize_axis;
use oxrt_core::{
    Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Sequence, Tensor, Value,
    ValueRef,
};

use crate::kernel::read_ints;
use crate::ops::layout::concat;
use crate::ops::slice::slice;

/// A kernel over values of any kind; [`Values`] adapts it to [`Kernel`].
pub(crate) trait ValueKernel: Send + Sync {
    fn run(&self, inputs: &[Option<ValueRef<'_>>]) -> Result<Vec<Value>>;
}

/// Runs a [`ValueKernel`] as a [`Kernel`].
pub(crate) struct Values<K>(pub K);

impl<K: ValueKernel> Kernel for Values<K> {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let values: Vec<Option<ValueRef<'_>>> =
            inputs.iter().map(|t| t.map(ValueRef::Tensor)).collect();
        self.0
            .run(&values)?
            .into_iter()
            .map(Value::into_tensor)
            .collect()
    }

    fn compute_values(&self, inputs: &[Option<ValueRef<'_>>]) -> Result<Vec<Value>> {
        self.0.run(inputs)
    }
}

/// Input `i`, which must be present.
pub(crate) fn value_input<'a>(inputs: &[Option<ValueRef<'a>>], i: usize) -> Result<ValueRef<'a>> {
    inputs
        .get(i)
        .copied()
        .flatten()
        .ok_or_else(|| Error::invalid(format!("input #{i} is required")))
}

/// Input `i` as a sequence.
pub(crate) fn sequence_input<'a>(
    inputs: &[Option<ValueRef<'a>>],
    i: usize,
) -> Result<&'a Sequence> {
    match value_input(inputs, i)? {
        ValueRef::Sequence(s) => Ok(s),
        other => Err(Error::invalid(format!(
            "input #{i} must be a sequence, got a {}",
            other.kind()
        ))),
    }
}

/// Input `i` as a tensor, if present.
pub(crate) fn tensor_input<'a>(
    inputs: &[Option<ValueRef<'a>>],
    i: usize,
) -> Result<Option<&'a Tensor>> {
    match inputs.get(i).copied().flatten() {
        None => Ok(None),
        Some(ValueRef::Tensor(t)) => Ok(Some(t)),
        Some(other) => Err(Error::invalid(format!(
            "input #{i} must be a tensor, got a {}",
            other.kind()
        ))),
    }
}

/// A position input: a scalar int32/int64 in `[-len, len]` (`[-len, len)`
/// unless `end_ok`), normalized to `[0, len]`.
fn position(t: &Tensor, len: usize, end_ok: bool) -> Result<usize> {
    let p = read_ints(t, "position")?;
    let [p] = p[..] else {
        return Err(Error::invalid(format!(
            "position must be a scalar, got shape {:?}",
            t.shape()
        )));
    };
    let n = len as i64;
    let hi = if end_ok { n } else { n - 1 };
    if p < -n || p > hi {
        return Err(Error::invalid(format!(
            "position {p} is out of range for a sequence of {len} tensors"
        )));
    }
    Ok(if p < 0 { p + n } else { p } as usize)
}

enum SeqOp {
    Identity,
    Empty(DataType),
    Construct,
    At,
    Insert,
    Erase,
    Length,
    Split { axis: i64, keepdims: bool },
    ConcatFrom { axis: i64, new_axis: bool },
    Optional,
    HasElement,
    GetElement,
}

impl ValueKernel for SeqOp {
    fn run(&self, inputs: &[Option<ValueRef<'_>>]) -> Result<Vec<Value>> {
        let out = match self {
            SeqOp::Identity => value_input(inputs, 0)?.to_value(),
            SeqOp::Empty(dtype) => Value::Sequence(Sequence::empty(*dtype)),
            SeqOp::Construct => {
                let mut items = Vec::with_capacity(inputs.len());
                for i in 0..inputs.len() {
                    items.push(
                        tensor_input(inputs, i)?
                            .cloned()
                            .ok_or_else(|| Error::invalid(format!("input #{i} is required")))?,
                    );
                }
                let dtype = items
                    .first()
                    .map(Tensor::dtype)
                    .ok_or_else(|| Error::invalid("SequenceConstruct needs at least one input"))?;
                Value::Sequence(Sequence::new(dtype, items)?)
            }
            SeqOp::At => {
                let s = sequence_input(inputs, 0)?;
                let p = required_tensor(inputs, 1)?;
                Value::Tensor(s.items[position(p, s.len(), false)?].clone())
            }
            SeqOp::Insert => {
                let s = sequence_input(inputs, 0)?;
                let t = required_tensor(inputs, 1)?;
                if t.dtype() != s.dtype {
                    return Err(Error::invalid(format!(
                        "cannot insert a {} tensor into a sequence of {}",
                        t.dtype(),
                        s.dtype
                    )));
                }
                let at = match tensor_input(inputs, 2)? {
                    Some(p) => position(p, s.len(), true)?,
                    None => s.len(),
                };
                let mut items = s.items.clone();
                items.insert(at, t.clone());
                Value::Sequence(Sequence::new(s.dtype, items)?)
            }
            SeqOp::Erase => {
                let s = sequence_input(inputs, 0)?;
                if s.is_empty() {
                    return Err(Error::invalid("cannot erase from an empty sequence"));
                }
                let at = match tensor_input(inputs, 1)? {
                    Some(p) => position(p, s.len(), false)?,
                    None => s.len() - 1,
                };
                let mut items = s.items.clone();
                items.remove(at);
                Value::Sequence(Sequence::new(s.dtype, items)?)
            }
            SeqOp::Length => Value::Tensor(Tensor::scalar(sequence_input(inputs, 0)?.len() as i64)),
            SeqOp::Split { axis, keepdims } => {
                let x = required_tensor(inputs, 0)?;
                let split = tensor_input(inputs, 1)?;
                Value::Sequence(split_to_sequence(x, split, *axis, *keepdims)?)
            }
            SeqOp::ConcatFrom { axis, new_axis } => {
                let s = sequence_input(inputs, 0)?;
                Value::Tensor(concat_from_sequence(s, *axis, *new_axis)?)
            }
            SeqOp::Optional => Value::Optional(
                inputs
                    .first()
                    .copied()
                    .flatten()
                    .map(|v| Box::new(v.to_value())),
            ),
            SeqOp::HasElement => {
                let has = match inputs.first().copied().flatten() {
                    None | Some(ValueRef::Optional(None)) => false,
                    Some(_) => true,
                };
                Value::Tensor(Tensor::scalar(has))
            }
            SeqOp::GetElement => match value_input(inputs, 0)? {
                ValueRef::Optional(None) => {
                    return Err(Error::invalid("the optional input holds no value"))
                }
                ValueRef::Optional(Some(v)) => v.clone(),
                other => other.to_value(),
            },
        };
        Ok(vec![out])
    }
}

fn required_tensor<'a>(inputs: &[Option<ValueRef<'a>>], i: usize) -> Result<&'a Tensor> {
    tensor_input(inputs, i)?.ok_or_else(|| Error::invalid(format!("input #{i} is required")))
}

/// SplitToSequence: pieces of `x` along `axis`, of the sizes `split` gives
/// (a scalar chunk size or 1-D lengths), or of size 1 (squeezed unless
/// `keepdims`) without `split`.
pub fn split_to_sequence(
    x: &Tensor,
    split: Option<&Tensor>,
    axis: i64,
    keepdims: bool,
) -> Result<Sequence> {
    let a = normalize_axis(axis, x.rank())?;
    let dim = x.shape()[a];
    let lengths: Vec<usize> = match split {
        None => vec![1; dim],
        Some(s) => {
            let v = read_ints(s, "split")?;
            let bad = |why: &str| Error::invalid(format!("split {v:?} {why} (axis size {dim})"));
            if s.rank() == 0 {
                let chunk = usize::try_from(v[0])
                    .ok()
                    .filter(|&c| c > 0)
                    .ok_or_else(|| bad("must be positive"))?;
                (0..dim.div_ceil(chunk))
                    .map(|i| chunk.min(dim - i * chunk))
                    .collect()
            } else {
                let l: Vec<usize> = v
                    .iter()
                    .map(|&n| usize::try_from(n).map_err(|_| bad("has a negative length")))
                    .collect::<Result<_>>()?;
                if l.iter().sum::<usize>() != dim {
                    return Err(bad("does not add up to the axis size"));
                }
                l
            }
        }
    };
    let squeeze = split.is_none() && !keepdims;
    let mut items = Vec::with_capacity(lengths.len());
    let mut start = 0usize;
    for len in lengths {
        let end = start + len;
        let piece = slice(x, &[start as i64], &[end as i64], &[a as i64], &[1])?;
        items.push(if squeeze {
            let mut shape = piece.shape().to_vec();
            shape.remove(a);
            piece.reshape(shape)?
        } else {
            piece
        });
        start = end;
    }
    Sequence::new(x.dtype(), items)
}

/// ConcatFromSequence: the tensors joined along `axis`, or stacked along a
/// new axis inserted there when `new_axis`.
pub fn concat_from_sequence(s: &Sequence, axis: i64, new_axis: bool) -> Result<Tensor> {
    let first = s
        .items
        .first()
        .ok_or_else(|| Error::invalid("ConcatFromSequence needs a non-empty sequence"))?;
    if !new_axis {
        let parts: Vec<&Tensor> = s.items.iter().collect();
        return concat(&parts, axis);
    }
    let a = normalize_axis(axis, first.rank() + 1)?;
    let expanded: Vec<Tensor> = s
        .items
        .iter()
        .map(|t| {
            let mut shape = t.shape().to_vec();
            shape.insert(a.min(shape.len()), 1);
            t.clone().reshape(shape)
        })
        .collect::<Result<_>>()?;
    let parts: Vec<&Tensor> = expanded.iter().collect();
    concat(&parts, a as i64)
}

fn create(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let op = match node.op_type.as_str() {
        "Identity" => SeqOp::Identity,
        "SequenceEmpty" => {
            let code = node.int_or("dtype", 1)?;
            let dtype = i32::try_from(code)
                .ok()
                .and_then(DataType::from_onnx)
                .ok_or_else(|| Error::invalid(format!("unknown dtype {code}")))?;
            SeqOp::Empty(dtype)
        }
        "SequenceConstruct" => SeqOp::Construct,
        "SequenceAt" => SeqOp::At,
        "SequenceInsert" => SeqOp::Insert,
        "SequenceErase" => SeqOp::Erase,
        "SequenceLength" => SeqOp::Length,
        "SplitToSequence" => SeqOp::Split {
            axis: node.int_or("axis", 0)?,
            keepdims: node.int_or("keepdims", 1)? != 0,
        },
        "ConcatFromSequence" => SeqOp::ConcatFrom {
            axis: node
                .get_int("axis")?
                .ok_or_else(|| Error::invalid("attribute 'axis' is required"))?,
            new_axis: node.int_or("new_axis", 0)? != 0,
        },
        "Optional" => {
            if node.input(0).is_none()
                && !matches!(node.attributes.get("type"), Some(Attribute::Type(_)))
            {
                return Err(Error::invalid(
                    "Optional without an input needs the 'type' attribute",
                ));
            }
            SeqOp::Optional
        }
        "OptionalHasElement" => SeqOp::HasElement,
        "OptionalGetElement" => SeqOp::GetElement,
        other => return Err(Error::invalid(format!("not a sequence operator: {other}"))),
    };
    Ok(Box::new(Values(op)))
}

/// Registers Identity and the sequence and optional operators.
pub fn register(reg: &mut KernelRegistry) {
    for op in [
        "Identity",
        "SequenceEmpty",
        "SequenceConstruct",
        "SequenceAt",
        "SequenceInsert",
        "SequenceErase",
        "SequenceLength",
        "SplitToSequence",
        "ConcatFromSequence",
        "Optional",
        "OptionalHasElement",
        "OptionalGetElement",
    ] {
        reg.add(KernelDef::new(op, 1.., &[], create));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn t(shape: &[usize], v: Vec<f32>) -> Tensor {
        Tensor::from_vec(shape.to_vec(), v).unwrap()
    }

    #[test]
    fn split_and_concat_round_trip() {
        let x = t(&[2, 3], (0..6).map(|v| v as f32).collect());
        let s = split_to_sequence(&x, None, 1, false).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s.items[1].shape(), &[2]);
        assert_eq!(s.items[1].as_slice::<f32>().unwrap(), &[1.0, 4.0]);
        let back = concat_from_sequence(&s, 1, true).unwrap();
        assert_eq!(back, x);
        let chunked = split_to_sequence(&x, Some(&Tensor::scalar(2i64)), 1, false).unwrap();
        let shapes: Vec<&[usize]> = chunked.items.iter().map(Tensor::shape).collect();
        assert_eq!(shapes, vec![&[2, 2][..], &[2, 1][..]]);
        assert_eq!(concat_from_sequence(&chunked, -1, false).unwrap(), x);
        let bad = Tensor::from_vec(vec![2], vec![1i64, 1]).unwrap();
        assert!(split_to_sequence(&x, Some(&bad), 1, true).is_err());
    }

    #[test]
    fn insert_erase_at_positions() {
        let a = t(&[1], vec![1.0]);
        let b = t(&[1], vec![2.0]);
        let s = Value::Sequence(Sequence::new(DataType::F32, vec![a.clone()]).unwrap());
        let pos = Tensor::scalar(-1i64);
        let out = SeqOp::Insert
            .run(&[
                Some(s.as_ref()),
                Some(ValueRef::Tensor(&b)),
                Some(ValueRef::Tensor(&pos)),
            ])
            .unwrap();
        let Value::Sequence(s2) = &out[0] else {
            panic!()
        };
        assert_eq!(s2.items, vec![b.clone(), a.clone()]);
        let at = SeqOp::At
            .run(&[Some(out[0].as_ref()), Some(ValueRef::Tensor(&pos))])
            .unwrap();
        assert_eq!(at[0], Value::Tensor(a.clone()));
        let far = Tensor::scalar(5i64);
        let err = SeqOp::At
            .run(&[Some(out[0].as_ref()), Some(ValueRef::Tensor(&far))])
            .unwrap_err();
        assert!(err.to_string().contains("position 5 is out of range"));
        let erased = SeqOp::Erase.run(&[Some(out[0].as_ref()), None]).unwrap();
        let Value::Sequence(s3) = &erased[0] else {
            panic!()
        };
        assert_eq!(s3.items, vec![b]);
        let i = Tensor::scalar(1i64);
        assert!(SeqOp::Insert
            .run(&[Some(s.as_ref()), Some(ValueRef::Tensor(&i))])
            .is_err());
    }

    #[test]
    fn optionals() {
        let x = t(&[1], vec![3.0]);
        let some = SeqOp::Optional
            .run(&[Some(ValueRef::Tensor(&x))])
            .unwrap()
            .remove(0);
        let none = Value::Optional(None);
        let has = |v: Option<ValueRef<'_>>| SeqOp::HasElement.run(&[v]).unwrap().remove(0);
        assert_eq!(
            has(Some(some.as_ref())),
            Value::Tensor(Tensor::scalar(true))
        );
        assert_eq!(
            has(Some(none.as_ref())),
            Value::Tensor(Tensor::scalar(false))
        );
        assert_eq!(has(None), Value::Tensor(Tensor::scalar(false)));
        let got = SeqOp::GetElement.run(&[Some(some.as_ref())]).unwrap();
        assert_eq!(got[0], Value::Tensor(x));
        assert!(SeqOp::GetElement.run(&[Some(none.as_ref())]).is_err());
    }
}

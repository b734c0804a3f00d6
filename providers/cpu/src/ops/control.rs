//! Control flow: If, Loop, Scan (opset 8 and 9+) and SequenceMap. Bodies are
//! compiled by the session into execution plans ([`Subgraph`]) and run by
//! the same executor as the main graph; the values they read from enclosing
//! graphs arrive after the node's own inputs.

use oxrt_core::shape::normalize_axis;
use oxrt_core::{
    Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Sequence, Subgraph, Tensor,
    Value, ValueRef, ValueType,
};

use crate::kernel::read_ints;
use crate::ops::sequence::{
    concat_from_sequence, sequence_input, tensor_input, value_input, ValueKernel, Values,
};
use crate::ops::slice::slice;

/// Compiles the graph attribute `attr` of `node`.
pub(crate) fn body(node: &Node, info: &KernelInfo<'_>, attr: &str) -> Result<Subgraph> {
    let scope = info
        .subgraphs
        .as_ref()
        .ok_or_else(|| Error::NotSupported(format!("{} outside a session plan", node.op_type)))?;
    let graph = node
        .get_graph(attr)?
        .ok_or_else(|| Error::invalid(format!("attribute '{attr}' is required")))?;
    scope.compile(graph)
}

/// Checks that a body has the number of inputs and outputs the node needs.
fn check_arity(b: &Subgraph, what: &str, inputs: usize, outputs: usize) -> Result<()> {
    if b.inputs().len() != inputs || b.outputs().len() != outputs {
        return Err(Error::invalid(format!(
            "{what} must have {inputs} inputs and {outputs} outputs, it has {} and {}",
            b.inputs().len(),
            b.outputs().len()
        )));
    }
    Ok(())
}

/// A scalar boolean (or numeric, nonzero is true) tensor.
fn truth(t: &Tensor, what: &str) -> Result<bool> {
    if t.len() != 1 {
        return Err(Error::invalid(format!(
            "{what} must hold one element, got shape {:?}",
            t.shape()
        )));
    }
    match t.as_slice::<bool>() {
        Ok(v) => Ok(v[0]),
        Err(_) => Ok(t.to_f64_vec().is_some_and(|v| v[0] != 0.0)),
    }
}

/// The `i`-th slice of `x` along `axis`, with that axis removed.
fn slice_at(x: &Tensor, axis: usize, i: usize) -> Result<Tensor> {
    let part = slice(x, &[i as i64], &[i as i64 + 1], &[axis as i64], &[1])?;
    let mut shape = part.shape().to_vec();
    shape.remove(axis);
    part.reshape(shape)
}

/// Stacks per-iteration tensors along a new `axis`; with no iterations, an
/// empty tensor shaped from the body's declared output type where known.
fn stack(items: Vec<Tensor>, axis: usize, declared: Option<&ValueType>) -> Result<Tensor> {
    if items.is_empty() {
        let dtype = declared.and_then(ValueType::dtype).ok_or_else(|| {
            Error::invalid("a scan output of zero iterations has no known element type")
        })?;
        let mut shape = declared
            .and_then(ValueType::concrete_shape)
            .unwrap_or_default();
        shape.insert(axis.min(shape.len()), 0);
        return Tensor::zeros(dtype, shape);
    }
    let seq = Sequence::new(items[0].dtype(), items)?;
    concat_from_sequence(&seq, axis as i64, true)
}

fn declared_output(b: &Subgraph, k: usize) -> Option<&ValueType> {
    let o = b.outputs().get(k)?;
    b.value_type(&o.name).or(Some(&o.ty))
}

struct If {
    then_branch: Subgraph,
    else_branch: Subgraph,
    explicit: usize,
}

impl ValueKernel for If {
    fn run(&self, inputs: &[Option<ValueRef<'_>>]) -> Result<Vec<Value>> {
        let cond =
            tensor_input(inputs, 0)?.ok_or_else(|| Error::invalid("input 'cond' is required"))?;
        let branch = if truth(cond, "cond")? {
            &self.then_branch
        } else {
            &self.else_branch
        };
        branch.run(Vec::new(), &inputs[self.explicit.min(inputs.len())..])
    }
}

fn create_if(node: &Node, info: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let then_branch = body(node, info, "then_branch")?;
    let else_branch = body(node, info, "else_branch")?;
    for (b, what) in [(&then_branch, "then_branch"), (&else_branch, "else_branch")] {
        check_arity(b, what, 0, node.outputs.len())?;
    }
    Ok(Box::new(Values(If {
        then_branch,
        else_branch,
        explicit: node.inputs.len(),
    })))
}

struct Loop {
    body: Subgraph,
    /// Loop-carried values (N).
    carried: usize,
    explicit: usize,
}

impl ValueKernel for Loop {
    fn run(&self, inputs: &[Option<ValueRef<'_>>]) -> Result<Vec<Value>> {
        let implicit = &inputs[self.explicit.min(inputs.len())..];
        let max_trips = match tensor_input(inputs, 0)? {
            Some(m) => Some(
                read_ints(m, "M")?
                    .first()
                    .copied()
                    .ok_or_else(|| Error::invalid("M must hold one element"))?,
            ),
            None => None,
        };
        let mut cond = match tensor_input(inputs, 1)? {
            Some(c) => truth(c, "cond")?,
            None => true,
        };
        let mut carried: Vec<Value> = (0..self.carried)
            .map(|k| value_input(inputs, 2 + k).map(ValueRef::to_value))
            .collect::<Result<_>>()?;
        let scans = self.body.outputs().len() - 1 - self.carried;
        let mut scanned: Vec<Vec<Value>> = vec![Vec::new(); scans];
        let mut i = 0i64;
        while cond && max_trips.is_none_or(|m| i < m) {
            let mut formal = Vec::with_capacity(2 + self.carried);
            formal.push(Value::Tensor(Tensor::scalar(i)));
            formal.push(Value::Tensor(Tensor::scalar(cond)));
            formal.append(&mut carried);
            let mut outs = self.body.run(formal, implicit)?.into_iter();
            let c = outs
                .next()
                .ok_or_else(|| Error::invalid("the Loop body returned no condition"))?;
            cond = truth(&c.into_tensor()?, "the body's condition output")?;
            carried = outs.by_ref().take(self.carried).collect();
            for (k, v) in outs.enumerate() {
                scanned[k].push(v);
            }
            i += 1;
        }
        let mut out = carried;
        for (k, items) in scanned.into_iter().enumerate() {
            let declared = declared_output(&self.body, 1 + self.carried + k);
            let tensors: Vec<Tensor> = items
                .into_iter()
                .map(Value::into_tensor)
                .collect::<Result<_>>()?;
            out.push(Value::Tensor(stack(tensors, 0, declared)?));
        }
        Ok(out)
    }
}

fn create_loop(node: &Node, info: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let body = body(node, info, "body")?;
    let carried = node.inputs.len().saturating_sub(2);
    let outputs = body.outputs().len();
    if body.inputs().len() != carried + 2 || outputs < carried + 1 {
        return Err(Error::invalid(format!(
            "the Loop body must take {} inputs (iteration, condition, {carried} carried) and return at least {}, it has {} and {outputs}",
            carried + 2,
            carried + 1,
            body.inputs().len()
        )));
    }
    Ok(Box::new(Values(Loop {
        body,
        carried,
        explicit: node.inputs.len(),
    })))
}

struct Scan {
    body: Subgraph,
    /// Number of state variables (N) and scan inputs (M).
    states: usize,
    scan_inputs: usize,
    input_axes: Vec<i64>,
    input_reverse: Vec<bool>,
    output_axes: Vec<i64>,
    output_reverse: Vec<bool>,
    /// Opset 8: a leading batch axis and an optional sequence_lens input.
    batched: bool,
    explicit: usize,
}

impl Scan {
    /// One (unbatched) scan over `states` and `xs`; returns the final states
    /// then the scan outputs. Iterations past `len` are left out.
    fn scan(
        &self,
        states: Vec<Tensor>,
        xs: &[&Tensor],
        len: Option<usize>,
        implicit: &[Option<ValueRef<'_>>],
    ) -> Result<(Vec<Tensor>, Vec<Vec<Tensor>>)> {
        let mut axes = Vec::with_capacity(xs.len());
        let mut steps = None;
        for (j, x) in xs.iter().enumerate() {
            let a = normalize_axis(self.input_axes.get(j).copied().unwrap_or(0), x.rank())?;
            let n = x.shape()[a];
            if *steps.get_or_insert(n) != n {
                return Err(Error::invalid(format!(
                    "scan input #{j} has {n} steps along axis {a}, an earlier one {}",
                    steps.unwrap_or(0)
                )));
            }
            axes.push(a);
        }
        let steps = len.unwrap_or(steps.unwrap_or(0)).min(steps.unwrap_or(0));
        let mut state = states;
        let outs = self.body.outputs().len() - self.states;
        let mut scanned: Vec<Vec<Tensor>> = vec![Vec::with_capacity(steps); outs];
        for t in 0..steps {
            let mut formal: Vec<Value> = state.drain(..).map(Value::Tensor).collect();
            for (j, x) in xs.iter().enumerate() {
                let i = if self.input_reverse.get(j).copied().unwrap_or(false) {
                    steps - 1 - t
                } else {
                    t
                };
                formal.push(Value::Tensor(slice_at(x, axes[j], i)?));
            }
            let mut results = self.body.run(formal, implicit)?.into_iter();
            state = results
                .by_ref()
                .take(self.states)
                .map(Value::into_tensor)
                .collect::<Result<_>>()?;
            for (k, v) in results.enumerate() {
                scanned[k].push(v.into_tensor()?);
            }
        }
        Ok((state, scanned))
    }

    /// Stacks scan output `k`'s slices along its output axis.
    fn stack_output(&self, k: usize, mut items: Vec<Tensor>) -> Result<Tensor> {
        if self.output_reverse.get(k).copied().unwrap_or(false) {
            items.reverse();
        }
        let declared = declared_output(&self.body, self.states + k);
        let rank = items
            .first()
            .map(Tensor::rank)
            .or_else(|| declared.and_then(ValueType::dims).map(<[_]>::len))
            .unwrap_or(0);
        let axis = normalize_axis(self.output_axes.get(k).copied().unwrap_or(0), rank + 1)?;
        stack(items, axis, declared)
    }
}

impl ValueKernel for Scan {
    fn run(&self, inputs: &[Option<ValueRef<'_>>]) -> Result<Vec<Value>> {
        let implicit = &inputs[self.explicit.min(inputs.len())..];
        let first = usize::from(self.batched);
        let tensor = |i: usize| {
            tensor_input(inputs, i)?
                .ok_or_else(|| Error::invalid(format!("input #{i} is required")))
        };
        let states: Vec<&Tensor> = (first..first + self.states)
            .map(tensor)
            .collect::<Result<_>>()?;
        let xs: Vec<&Tensor> = (first + self.states..first + self.states + self.scan_inputs)
            .map(tensor)
            .collect::<Result<_>>()?;
        if !self.batched {
            let (state, scanned) =
                self.scan(states.into_iter().cloned().collect(), &xs, None, implicit)?;
            let mut out: Vec<Value> = state.into_iter().map(Value::Tensor).collect();
            for (k, items) in scanned.into_iter().enumerate() {
                out.push(Value::Tensor(self.stack_output(k, items)?));
            }
            return Ok(out);
        }
        // Opset 8: run each batch entry on its own, then stack along axis 0.
        let batch = states
            .iter()
            .chain(&xs)
            .map(|t| t.shape().first().copied().unwrap_or(0))
            .next()
            .unwrap_or(0);
        let lens = match tensor_input(inputs, 0)? {
            Some(l) => Some(read_ints(l, "sequence_lens")?),
            None => None,
        };
        let mut final_states: Vec<Vec<Tensor>> = vec![Vec::new(); self.states];
        let mut outputs: Vec<Vec<Tensor>> = Vec::new();
        for b in 0..batch {
            let s: Vec<Tensor> = states
                .iter()
                .map(|t| slice_at(t, 0, b))
                .collect::<Result<_>>()?;
            let x: Vec<Tensor> = xs
                .iter()
                .map(|t| slice_at(t, 0, b))
                .collect::<Result<_>>()?;
            let x: Vec<&Tensor> = x.iter().collect();
            let len = lens
                .as_ref()
                .map(|l| usize::try_from(l.get(b).copied().unwrap_or(0)).unwrap_or(0));
            let full = x
                .first()
                .and_then(|t| t.shape().first().copied())
                .unwrap_or(0);
            let (state, scanned) = self.scan(s, &x, len, implicit)?;
            for (k, t) in state.into_iter().enumerate() {
                final_states[k].push(t);
            }
            outputs.resize_with(scanned.len(), Vec::new);
            for (k, mut items) in scanned.into_iter().enumerate() {
                // Steps past this entry's length are zeros.
                if let Some(last) = items.last().cloned() {
                    while items.len() < full {
                        items.push(Tensor::zeros(last.dtype(), last.shape().to_vec())?);
                    }
                }
                outputs[k].push(self.stack_output(k, items)?);
            }
        }
        let mut out = Vec::new();
        for items in final_states.into_iter().chain(outputs) {
            out.push(Value::Tensor(stack(items, 0, None)?));
        }
        Ok(out)
    }
}

fn axes_attr(node: &Node, name: &str, n: usize) -> Result<Vec<i64>> {
    Ok(node
        .get_ints(name)?
        .map(<[i64]>::to_vec)
        .unwrap_or_else(|| vec![0; n]))
}

fn create_scan(node: &Node, info: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let body = body(node, info, "body")?;
    let batched = info.node.opset < 9;
    let m = usize::try_from(node.int_or("num_scan_inputs", -1)?)
        .map_err(|_| Error::invalid("attribute 'num_scan_inputs' is required"))?;
    let states = node
        .inputs
        .len()
        .checked_sub(m + usize::from(batched))
        .ok_or_else(|| {
            Error::invalid(format!(
                "num_scan_inputs {m} exceeds the {} inputs",
                node.inputs.len()
            ))
        })?;
    let k = body.outputs().len().checked_sub(states).ok_or_else(|| {
        Error::invalid("the Scan body returns fewer outputs than there are states")
    })?;
    check_arity(&body, "the Scan body", states + m, states + k)?;
    let reverse = |v: Vec<i64>| v.into_iter().map(|d| d != 0).collect::<Vec<_>>();
    let (input_reverse, output_reverse) = if batched {
        (reverse(axes_attr(node, "directions", m)?), vec![false; k])
    } else {
        (
            reverse(axes_attr(node, "scan_input_directions", m)?),
            reverse(axes_attr(node, "scan_output_directions", k)?),
        )
    };
    let (input_axes, output_axes) = if batched {
        (vec![0; m], vec![0; k])
    } else {
        (
            axes_attr(node, "scan_input_axes", m)?,
            axes_attr(node, "scan_output_axes", k)?,
        )
    };
    Ok(Box::new(Values(Scan {
        body,
        states,
        scan_inputs: m,
        input_axes,
        input_reverse,
        output_axes,
        output_reverse,
        batched,
        explicit: node.inputs.len(),
    })))
}

struct SequenceMap {
    body: Subgraph,
    explicit: usize,
}

impl ValueKernel for SequenceMap {
    fn run(&self, inputs: &[Option<ValueRef<'_>>]) -> Result<Vec<Value>> {
        let implicit = &inputs[self.explicit.min(inputs.len())..];
        let first = sequence_input(inputs, 0)?;
        let n = first.len();
        let extra: Vec<ValueRef<'_>> = (1..self.explicit)
            .map(|i| value_input(inputs, i))
            .collect::<Result<_>>()?;
        for (i, v) in extra.iter().enumerate() {
            if let ValueRef::Sequence(s) = v {
                if s.len() != n {
                    return Err(Error::invalid(format!(
                        "input #{} has {} tensors, the first sequence {n}",
                        i + 1,
                        s.len()
                    )));
                }
            }
        }
        let outs = self.body.outputs().len();
        let mut collected: Vec<Vec<Tensor>> = vec![Vec::with_capacity(n); outs];
        for i in 0..n {
            let mut formal = vec![Value::Tensor(first.items[i].clone())];
            for v in &extra {
                formal.push(match v {
                    ValueRef::Sequence(s) => Value::Tensor(s.items[i].clone()),
                    other => other.to_value(),
                });
            }
            for (k, v) in self.body.run(formal, implicit)?.into_iter().enumerate() {
                collected[k].push(v.into_tensor()?);
            }
        }
        collected
            .into_iter()
            .enumerate()
            .map(|(k, items)| {
                let dtype = items
                    .first()
                    .map(Tensor::dtype)
                    .or_else(|| declared_output(&self.body, k).and_then(ValueType::dtype))
                    .ok_or_else(|| Error::invalid("empty output sequence of unknown type"))?;
                Ok(Value::Sequence(Sequence::new(dtype, items)?))
            })
            .collect()
    }
}

fn create_sequence_map(node: &Node, info: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let body = body(node, info, "body")?;
    check_arity(
        &body,
        "the SequenceMap body",
        node.inputs.len(),
        node.outputs.len(),
    )?;
    Ok(Box::new(Values(SequenceMap {
        body,
        explicit: node.inputs.len(),
    })))
}

/// Registers If, Loop, Scan and SequenceMap.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new("If", 1.., &[], create_if));
    reg.add(KernelDef::new("Loop", 1.., &[], create_loop));
    reg.add(KernelDef::new("Scan", 8.., &[], create_scan));
    reg.add(KernelDef::new(
        "SequenceMap",
        17..,
        &[],
        create_sequence_map,
    ));
}

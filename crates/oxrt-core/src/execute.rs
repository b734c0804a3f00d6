//! Running an [`ExecutionPlan`]: the one executor for the main graph and for
//! every subgraph (If branches, Loop and Scan bodies).

use std::sync::Arc;
use std::time::Instant;

use crate::device::{DeviceCost, DeviceTensor};
use crate::error::{Error, Result};
use crate::ir::Graph;
use crate::plan::{ExecutionPlan, Step, StepKind};
use crate::profile::{EventKind, ProfileEvent, RunProfile};
use crate::provider::ExecutionProvider;
use crate::value::{Value, ValueRef};

/// A value held in a slot during a run: owned, borrowed (a session constant
/// or an outer-scope value), or in a provider's device memory.
pub(crate) enum Slot<'a> {
    Owned(Value),
    Borrowed(ValueRef<'a>),
    Device(DeviceTensor),
}

impl Slot<'_> {
    fn host(&self) -> Option<ValueRef<'_>> {
        match self {
            Slot::Owned(v) => Some(v.as_ref()),
            Slot::Borrowed(v) => Some(*v),
            Slot::Device(_) => None,
        }
    }

    fn device(&self) -> Option<&DeviceTensor> {
        match self {
            Slot::Device(t) => Some(t),
            _ => None,
        }
    }
}

/// A compiled graph, borrowed for one run.
pub(crate) struct Runner<'g> {
    pub graph: &'g Graph,
    pub plan: &'g ExecutionPlan,
    pub providers: &'g [Arc<dyn ExecutionProvider>],
}

impl<'g> Runner<'g> {
    /// Runs every step with `feeds` (slot, value) bound first and returns the
    /// graph outputs in order.
    pub fn run<'a>(
        &self,
        feeds: Vec<(usize, Slot<'a>)>,
        mut profile: Option<&mut RunProfile>,
    ) -> Result<Vec<Value>>
    where
        'g: 'a,
    {
        let mut slots: Vec<Option<Slot<'a>>> = Vec::new();
        slots.resize_with(self.plan.slot_count, || None);
        for (s, t) in &self.plan.constants {
            slots[*s] = Some(Slot::Borrowed(ValueRef::Tensor(t.as_ref())));
        }
        for (s, v) in feeds {
            slots[s] = Some(v);
        }
        let started = Instant::now();
        for step in &self.plan.steps {
            let t0 = Instant::now();
            let (produced, cost) = self.run_step(step, &slots)?;
            if let Some(p) = profile.as_deref_mut() {
                p.events.push(self.event(step, started, t0, cost));
            }
            for (s, v) in step.outputs.iter().zip(produced) {
                if let (Some(s), Some(v)) = (s, v) {
                    slots[*s] = Some(v);
                }
            }
            for &s in &step.release {
                slots[s] = None;
            }
        }
        let mut outputs = Vec::with_capacity(self.graph.outputs.len());
        for o in &self.graph.outputs {
            let slot = self.plan.slots.get(&o.name).and_then(|&s| slots[s].take());
            outputs.push(match slot {
                Some(Slot::Owned(v)) => v,
                Some(Slot::Borrowed(v)) => v.to_value(),
                Some(Slot::Device(_)) | None => {
                    return Err(Error::invalid(format!(
                        "graph output '{}' was not produced",
                        o.name
                    )))
                }
            });
        }
        Ok(outputs)
    }

    /// Runs one step on the current slots; returns a value per output slot.
    fn run_step<'a>(
        &self,
        step: &Step,
        slots: &[Option<Slot<'a>>],
    ) -> Result<(Vec<Option<Slot<'a>>>, DeviceCost)> {
        let missing = |i: usize, name: &str| {
            Error::invalid(format!(
                "input #{i} '{name}' has no value (it is produced by nothing that ran)"
            ))
        };
        match &step.kind {
            StepKind::Node {
                node,
                kernel,
                on_device,
                implicit,
                ..
            } => {
                let node = &self.graph.nodes[*node];
                let fail = |e: Error| e.in_node(&node.name, &node.op_type);
                let named = step
                    .outputs
                    .iter()
                    .rposition(Option::is_some)
                    .map_or(0, |p| p + 1);
                let short = |n: usize| {
                    fail(Error::invalid(format!(
                        "the kernel produced {n} outputs, the node names {}",
                        step.outputs.len()
                    )))
                };
                let input_name = |i: usize| {
                    node.inputs
                        .get(i)
                        .or_else(|| implicit.get(i - node.inputs.len()))
                        .map_or("", String::as_str)
                };
                let value = |i: usize, s: &Option<usize>| -> Result<Option<&Slot<'a>>> {
                    match s {
                        None => Ok(None),
                        Some(s) => match slots[*s].as_ref() {
                            Some(v) => Ok(Some(v)),
                            None => Err(fail(missing(i, input_name(i)))),
                        },
                    }
                };
                if *on_device {
                    let mut args = Vec::with_capacity(step.inputs.len());
                    for (i, s) in step.inputs.iter().enumerate() {
                        args.push(value(i, s)?.and_then(Slot::device));
                    }
                    let (outputs, cost) = kernel.compute_on_device(&args).map_err(fail)?;
                    if outputs.len() < named {
                        return Err(short(outputs.len()));
                    }
                    Ok((
                        outputs.into_iter().map(|t| t.map(Slot::Device)).collect(),
                        cost,
                    ))
                } else {
                    let mut args = Vec::with_capacity(step.inputs.len());
                    for (i, s) in step.inputs.iter().enumerate() {
                        args.push(value(i, s)?.and_then(Slot::host));
                    }
                    let outputs = kernel.compute_values(&args).map_err(fail)?;
                    if outputs.len() < named {
                        return Err(short(outputs.len()));
                    }
                    let produced = outputs.into_iter().map(|v| Some(Slot::Owned(v))).collect();
                    Ok((produced, DeviceCost::default()))
                }
            }
            StepKind::Upload { provider, value } | StepKind::Download { provider, value } => {
                let memory = self.providers[*provider].device_memory().ok_or_else(|| {
                    Error::invalid(format!(
                        "provider '{}' has no device memory to copy '{value}' with",
                        self.providers[*provider].name()
                    ))
                })?;
                let src = step
                    .inputs
                    .first()
                    .copied()
                    .flatten()
                    .and_then(|s| slots[s].as_ref())
                    .ok_or_else(|| missing(0, value))?;
                let copy_error = |e: Error| {
                    Error::invalid(format!(
                        "copying '{value}' between host and '{}': {e}",
                        self.providers[*provider].name()
                    ))
                };
                let (slot, cost) = match (&step.kind, src) {
                    (StepKind::Upload { .. }, src) => {
                        let host = src.host().ok_or_else(|| missing(0, value))?;
                        let host = host.tensor().ok_or_else(|| {
                            copy_error(Error::invalid(format!(
                                "a {} cannot be copied to a device",
                                host.kind()
                            )))
                        })?;
                        let (t, cost) = memory.upload(host).map_err(copy_error)?;
                        (Slot::Device(t), cost)
                    }
                    (_, Slot::Device(t)) => {
                        let (t, cost) = memory.download(t).map_err(copy_error)?;
                        (Slot::Owned(Value::Tensor(t)), cost)
                    }
                    _ => return Err(missing(0, value)),
                };
                Ok((vec![Some(slot)], cost))
            }
        }
    }

    /// The profile event of a finished step.
    fn event(
        &self,
        step: &Step,
        run_start: Instant,
        start: Instant,
        cost: DeviceCost,
    ) -> ProfileEvent {
        let (name, op, provider, kind) = match &step.kind {
            StepKind::Node { node, provider, .. } => {
                let n = &self.graph.nodes[*node];
                (
                    n.name.clone(),
                    n.op_type.clone(),
                    *provider,
                    EventKind::Node,
                )
            }
            StepKind::Upload { provider, value } => {
                (value.clone(), "Upload".into(), *provider, EventKind::Upload)
            }
            StepKind::Download { provider, value } => (
                value.clone(),
                "Download".into(),
                *provider,
                EventKind::Download,
            ),
        };
        ProfileEvent {
            name,
            op,
            provider: self.providers[provider].name().to_string(),
            kind,
            start_us: start.duration_since(run_start).as_secs_f64() * 1e6,
            host_us: start.elapsed().as_secs_f64() * 1e6,
            device: cost,
        }
    }
}

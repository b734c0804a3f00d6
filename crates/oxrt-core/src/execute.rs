//! Running an [`ExecutionPlan`]: the one executor for the main graph and for
//! every subgraph (If branches, Loop and Scan bodies).

use std::sync::Arc;
use std::time::Instant;

use crate::arena::{with_arena, Arena};
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

/// How a run schedules its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExecutionMode {
    /// One step after another, in the plan's topological order.
    #[default]
    Sequential,
    /// Steps whose inputs are ready run at once on the inter-op threads
    /// (independent branches concurrently).
    Parallel,
}

/// A compiled graph, borrowed for one run.
pub(crate) struct Runner<'g> {
    pub graph: &'g Graph,
    pub plan: &'g ExecutionPlan,
    pub providers: &'g [Arc<dyn ExecutionProvider>],
    /// Release values after their last reader (the memory plan); off, every
    /// value lives to the end of the run.
    pub release: bool,
    /// Where released buffers go and kernels take theirs from (`None`: the
    /// thread's current arena, if any, as for subgraphs).
    pub arena: Option<Arc<Arena>>,
}

impl<'g> Runner<'g> {
    /// Initial slots: constants borrowed, then `feeds`.
    fn bind<'a>(&self, feeds: Vec<(usize, Slot<'a>)>) -> Vec<Option<Slot<'a>>>
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
        slots
    }

    /// The owned tensor in `slot`, taken out for an in-place step (`None`,
    /// and the slot untouched, when it holds anything else).
    fn take_owned_tensor(slot: &mut Option<Slot<'_>>) -> Option<crate::Tensor> {
        match slot.take() {
            Some(Slot::Owned(Value::Tensor(t))) => Some(t),
            other => {
                *slot = other;
                None
            }
        }
    }

    /// Hands a released slot's tensor buffer to the arena.
    fn release_slot(&self, slot: Option<Slot<'_>>) {
        if let (Some(arena), Some(Slot::Owned(Value::Tensor(t)))) = (&self.arena, slot) {
            arena.give(t.into_storage());
        }
    }

    /// Runs every step with `feeds` (slot, value) bound first and returns the
    /// graph outputs in order.
    pub fn run<'a>(
        &self,
        feeds: Vec<(usize, Slot<'a>)>,
        profile: Option<&mut RunProfile>,
    ) -> Result<Vec<Value>>
    where
        'g: 'a,
    {
        with_arena(self.arena.as_ref(), || self.run_sequential(feeds, profile))
    }

    fn run_sequential<'a>(
        &self,
        feeds: Vec<(usize, Slot<'a>)>,
        mut profile: Option<&mut RunProfile>,
    ) -> Result<Vec<Value>>
    where
        'g: 'a,
    {
        let mut slots = self.bind(feeds);
        let started = Instant::now();
        for step in &self.plan.steps {
            let t0 = Instant::now();
            let owned = match (step.in_place, self.release) {
                (Some(i), true) => step.inputs[i]
                    .and_then(|s| Self::take_owned_tensor(&mut slots[s]))
                    .map(|t| (i, t)),
                _ => None,
            };
            let args: Vec<Option<&Slot<'a>>> = step
                .inputs
                .iter()
                .map(|s| s.and_then(|s| slots[s].as_ref()))
                .collect();
            let (produced, cost) = self.run_step(step, &args, owned)?;
            if let Some(p) = profile.as_deref_mut() {
                p.events.push(self.event(step, started, t0, cost, &args));
            }
            for (s, v) in step.outputs.iter().zip(produced) {
                if let (Some(s), Some(v)) = (s, v) {
                    slots[*s] = Some(v);
                }
            }
            if self.release {
                for &s in &step.release {
                    self.release_slot(slots[s].take());
                }
            }
        }
        self.collect_outputs(slots)
    }

    /// Runs the steps on `pool` as their inputs become ready: independent
    /// steps run at once. Outputs equal those of [`Runner::run`].
    pub fn run_parallel<'a>(
        &self,
        feeds: Vec<(usize, Slot<'a>)>,
        profile: Option<&mut RunProfile>,
        pool: &rayon::ThreadPool,
        intra: &rayon::ThreadPool,
    ) -> Result<Vec<Value>>
    where
        'g: 'a,
    {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::{Mutex, RwLock};

        let plan = self.plan;
        let n = plan.steps.len();
        let waiting: Vec<AtomicUsize> = plan
            .dependencies
            .iter()
            .map(|&d| AtomicUsize::new(d))
            .collect();
        let readers: Vec<AtomicUsize> = plan.readers.iter().map(|&r| AtomicUsize::new(r)).collect();
        let slots: Vec<RwLock<Option<Slot<'a>>>> =
            self.bind(feeds).into_iter().map(RwLock::new).collect();
        let failure: Mutex<Option<Error>> = Mutex::new(None);
        let events: Mutex<Vec<ProfileEvent>> = Mutex::new(Vec::new());
        let profiling = profile.is_some();
        let started = Instant::now();
        let poisoned = || Error::invalid("a step panicked while holding a value");

        // Runs step `i`; returns the steps it made ready.
        let run_one = |i: usize| -> Result<Vec<usize>> {
            let step = &plan.steps[i];
            let t0 = Instant::now();
            let owned = match (step.in_place, self.release && !step.in_place_shared) {
                (Some(k), true) => match step.inputs[k] {
                    Some(s) => {
                        let mut guard = slots[s].write().map_err(|_| poisoned())?;
                        Self::take_owned_tensor(&mut guard).map(|t| (k, t))
                    }
                    None => None,
                },
                _ => None,
            };
            let (produced, _) = {
                let guards = step
                    .inputs
                    .iter()
                    .map(|s| s.map(|s| slots[s].read()).transpose())
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|_| poisoned())?;
                let args: Vec<Option<&Slot<'a>>> = guards
                    .iter()
                    .map(|g| g.as_ref().and_then(|g| g.as_ref()))
                    .collect();
                let r = intra.install(|| {
                    with_arena(self.arena.as_ref(), || self.run_step(step, &args, owned))
                })?;
                if profiling {
                    let e = self.event(step, started, t0, r.1, &args);
                    events.lock().map_err(|_| poisoned())?.push(e);
                }
                r
            };
            for (s, v) in step.outputs.iter().zip(produced) {
                if let (Some(s), Some(v)) = (s, v) {
                    *slots[*s].write().map_err(|_| poisoned())? = Some(v);
                }
            }
            if self.release {
                for &s in &step.distinct_inputs {
                    if readers[s].fetch_sub(1, Ordering::AcqRel) == 1 && !plan.kept[s] {
                        let v = slots[s].write().map_err(|_| poisoned())?.take();
                        self.release_slot(v);
                    }
                }
                for s in step.outputs.iter().flatten() {
                    if plan.readers[*s] == 0 && !plan.kept[*s] {
                        let v = slots[*s].write().map_err(|_| poisoned())?.take();
                        self.release_slot(v);
                    }
                }
            }
            Ok(plan.dependents[i]
                .iter()
                .copied()
                .filter(|&d| waiting[d].fetch_sub(1, Ordering::AcqRel) == 1)
                .collect())
        };

        fn spawn<'s, F>(
            scope: &rayon::Scope<'s>,
            i: usize,
            run_one: &'s F,
            failure: &'s Mutex<Option<Error>>,
        ) where
            F: Fn(usize) -> Result<Vec<usize>> + Sync,
        {
            scope.spawn(move |scope| {
                if failure.lock().map(|f| f.is_some()).unwrap_or(true) {
                    return;
                }
                match run_one(i) {
                    Ok(ready) => {
                        for r in ready {
                            spawn(scope, r, run_one, failure);
                        }
                    }
                    Err(e) => {
                        if let Ok(mut f) = failure.lock() {
                            f.get_or_insert(e);
                        }
                    }
                }
            });
        }

        let initial: Vec<usize> = (0..n)
            .filter(|&i| waiting[i].load(Ordering::Acquire) == 0)
            .collect();
        pool.scope(|scope| {
            for i in initial {
                spawn(scope, i, &run_one, &failure);
            }
        });
        if let Some(e) = failure.into_inner().map_err(|_| poisoned())? {
            return Err(e);
        }
        if let Some(p) = profile {
            let mut ev = events.into_inner().map_err(|_| poisoned())?;
            ev.sort_by(|a, b| a.start_us.total_cmp(&b.start_us));
            p.events.extend(ev);
        }
        let slots = slots
            .into_iter()
            .map(|s| s.into_inner().map_err(|_| poisoned()))
            .collect::<Result<Vec<_>>>()?;
        self.collect_outputs(slots)
    }

    /// The graph outputs, in order, from the final slots.
    fn collect_outputs(&self, mut slots: Vec<Option<Slot<'_>>>) -> Result<Vec<Value>> {
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
    /// `args` holds the value of each step input (`None` where omitted, or
    /// missing); `owned` the in-place input taken out of its slot.
    fn run_step<'a>(
        &self,
        step: &Step,
        args: &[Option<&Slot<'a>>],
        owned: Option<(usize, crate::Tensor)>,
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
                let in_place = owned.as_ref().map(|(k, _)| *k);
                let value = |i: usize, s: &Option<usize>| -> Result<Option<&Slot<'a>>> {
                    match (s, args.get(i).copied().flatten()) {
                        (None, _) => Ok(None),
                        (Some(_), Some(v)) => Ok(Some(v)),
                        (Some(_), None) if in_place == Some(i) => Ok(None),
                        (Some(_), None) => Err(fail(missing(i, input_name(i)))),
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
                } else if let Some((k, t)) = owned {
                    let mut tensors = Vec::with_capacity(step.inputs.len());
                    for (i, s) in step.inputs.iter().enumerate() {
                        let v = value(i, s)?.and_then(Slot::host);
                        tensors.push(match v {
                            None => None,
                            Some(ValueRef::Tensor(t)) => Some(t),
                            Some(other) => {
                                return Err(fail(Error::invalid(format!(
                                    "input #{i} is a {}, this operator takes tensors",
                                    other.kind()
                                ))))
                            }
                        });
                    }
                    if k < tensors.len() {
                        tensors[k] = None;
                    }
                    let outputs = kernel.compute_in_place(t, &tensors).map_err(fail)?;
                    if outputs.len() < named {
                        return Err(short(outputs.len()));
                    }
                    let produced = outputs
                        .into_iter()
                        .map(|t| Some(Slot::Owned(Value::Tensor(t))))
                        .collect();
                    Ok((produced, DeviceCost::default()))
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
                let src = args
                    .first()
                    .copied()
                    .flatten()
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
        args: &[Option<&Slot<'_>>],
    ) -> ProfileEvent {
        let input_shapes = args
            .iter()
            .map(|a| match a {
                Some(Slot::Device(t)) => Some(t.shape().to_vec()),
                Some(s) => s
                    .host()
                    .and_then(|v| v.tensor())
                    .map(|t| t.shape().to_vec()),
                None => None,
            })
            .collect();
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
            input_shapes,
        }
    }
}

//! `Session`: a model prepared for repeated, concurrent execution.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use oxrt_onnx::{check_model, CheckOptions};

use crate::device::{DeviceCost, DeviceTensor};
use crate::error::{Error, Result};
use crate::infer::infer_graph;
use crate::ir::{value::format_dims, Dim, LowerOptions, Model, ValueInfo, ValueType};
use crate::partition::partition;
use crate::plan::{ExecutionPlan, Step, StepKind};
use crate::profile::{EventKind, ProfileEvent, RunProfile};
use crate::provider::ExecutionProvider;
use crate::tensor::Tensor;
use crate::tensor_proto::{check_size, DEFAULT_MEMORY_LIMIT};

/// How much the graph is optimized before it runs (as in ONNX Runtime).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OptimizationLevel {
    /// Run the graph as written.
    Disabled,
    /// Semantics-preserving cleanups (constant folding, dead code...).
    Basic,
    /// Basic plus operator fusions.
    Extended,
    /// Everything, including provider-specific layouts.
    #[default]
    All,
}

/// Configures and creates a [`Session`].
#[derive(Clone)]
pub struct SessionBuilder {
    providers: Vec<Arc<dyn ExecutionProvider>>,
    fallback: Option<Arc<dyn ExecutionProvider>>,
    optimization_level: OptimizationLevel,
    intra_threads: usize,
    memory_limit: u64,
}

impl Default for SessionBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl SessionBuilder {
    /// A builder with no providers, all optimizations, one intra-op thread
    /// per core and the default memory limit.
    pub fn new() -> Self {
        Self {
            providers: Vec::new(),
            fallback: None,
            optimization_level: OptimizationLevel::default(),
            intra_threads: 0,
            memory_limit: DEFAULT_MEMORY_LIMIT,
        }
    }

    /// Providers in priority order: each node runs on the first that takes it.
    pub fn with_providers(
        mut self,
        providers: impl IntoIterator<Item = Arc<dyn ExecutionProvider>>,
    ) -> Self {
        self.providers = providers.into_iter().collect();
        self
    }

    /// The provider that runs whatever the others decline (normally CPU).
    pub fn with_fallback(mut self, provider: Arc<dyn ExecutionProvider>) -> Self {
        self.fallback = Some(provider);
        self
    }

    /// Graph optimization level. No optimization passes exist yet: every
    /// level currently runs the graph as written.
    pub fn with_optimization_level(mut self, level: OptimizationLevel) -> Self {
        self.optimization_level = level;
        self
    }

    /// Threads for parallelism inside one operator (0: one per core).
    pub fn with_intra_threads(mut self, threads: usize) -> Self {
        self.intra_threads = threads;
        self
    }

    /// Largest tensor, in bytes, accepted as an initializer, constant or input.
    pub fn with_memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = bytes;
        self
    }

    /// Loads (memory-mapped), checks and prepares the model at `path`.
    pub fn commit_from_file(self, path: impl AsRef<Path>) -> Result<Session> {
        let model = oxrt_onnx::load_model(path)?;
        self.commit_from_onnx(model)
    }

    /// Decodes, checks and prepares a model held in memory.
    pub fn commit_from_memory(self, bytes: &[u8]) -> Result<Session> {
        let model = oxrt_onnx::decode_model(bytes.to_vec())?;
        self.commit_from_onnx(model)
    }

    /// Checks and prepares an already decoded model.
    pub fn commit_from_onnx(self, model: oxrt_onnx::Model) -> Result<Session> {
        check_model(&model.proto, &CheckOptions::default()).map_err(oxrt_onnx::OnnxError::from)?;
        let lowered = Model::from_proto(
            &model.proto,
            &LowerOptions {
                memory_limit: self.memory_limit,
            },
        )?;
        self.commit(lowered, model.source_name)
    }

    fn commit(self, mut model: Model, source: String) -> Result<Session> {
        let threads = if self.intra_threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.intra_threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("oxrt-intra-{i}"))
            .build()
            .map_err(|e| Error::Config(format!("cannot create {threads} intra-op threads: {e}")))?;
        infer_graph(&mut model.graph, &model.opsets);
        let mut providers = self.providers;
        if let Some(f) = self.fallback {
            if !providers.iter().any(|p| p.name() == f.name()) {
                providers.push(f);
            }
        }
        let assignment = partition(&model.graph, &model.opsets, &providers)?;
        let plan = ExecutionPlan::build(&model.graph, &model.opsets, &providers, &assignment)?;
        tracing::debug!(
            source,
            nodes = model.graph.nodes.len(),
            threads,
            "session created"
        );
        Ok(Session {
            model,
            source,
            plan,
            providers,
            pool,
            threads,
            memory_limit: self.memory_limit,
            optimization_level: self.optimization_level,
        })
    }
}

/// A loaded, checked and planned model. `Send + Sync`: many threads may call
/// [`Session::run`] at once.
pub struct Session {
    model: Model,
    source: String,
    plan: ExecutionPlan,
    providers: Vec<Arc<dyn ExecutionProvider>>,
    pool: rayon::ThreadPool,
    threads: usize,
    memory_limit: u64,
    optimization_level: OptimizationLevel,
}

/// Named outputs of one run, in the model's output order.
#[derive(Debug, Clone)]
pub struct SessionOutputs {
    names: Vec<String>,
    tensors: Vec<Tensor>,
}

impl SessionOutputs {
    /// The output called `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| &self.tensors[i])
    }

    /// Number of outputs.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// True when there are no outputs.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// `(name, tensor)` pairs in output order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.names.iter().map(String::as_str).zip(&self.tensors)
    }
}

impl IntoIterator for SessionOutputs {
    type Item = (String, Tensor);
    type IntoIter = std::iter::Zip<std::vec::IntoIter<String>, std::vec::IntoIter<Tensor>>;
    fn into_iter(self) -> Self::IntoIter {
        self.names.into_iter().zip(self.tensors)
    }
}

impl std::ops::Index<usize> for SessionOutputs {
    type Output = Tensor;
    fn index(&self, i: usize) -> &Tensor {
        &self.tensors[i]
    }
}

impl std::ops::Index<&str> for SessionOutputs {
    type Output = Tensor;
    /// Panics if there is no such output; use [`SessionOutputs::get`] to check.
    fn index(&self, name: &str) -> &Tensor {
        match self.get(name) {
            Some(t) => t,
            None => panic!("no output named '{name}'"),
        }
    }
}

/// A value held in a slot during a run: owned, borrowed from the session,
/// or in a provider's device memory.
enum Slot<'a> {
    Owned(Tensor),
    Shared(&'a Tensor),
    Device(DeviceTensor),
}

impl Slot<'_> {
    fn host(&self) -> Option<&Tensor> {
        match self {
            Slot::Owned(t) => Some(t),
            Slot::Shared(t) => Some(t),
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

impl Session {
    /// A builder with no providers; the `oxrt` facade adds the CPU provider.
    pub fn builder() -> SessionBuilder {
        SessionBuilder::new()
    }

    /// The model's inputs to feed (initializers excluded).
    pub fn inputs(&self) -> &[ValueInfo] {
        &self.model.graph.inputs
    }

    /// The model's outputs.
    pub fn outputs(&self) -> &[ValueInfo] {
        &self.model.graph.outputs
    }

    /// The lowered model (metadata, opsets, graph).
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Where the model came from (its path, or `<memory>`).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Names of the providers, in priority order.
    pub fn providers(&self) -> Vec<&str> {
        self.providers.iter().map(|p| p.name()).collect()
    }

    /// The provider name running each node, in execution order.
    pub fn node_placement(&self) -> Vec<(&str, &str)> {
        self.plan
            .node_steps()
            .map(|(node, provider)| {
                (
                    self.model.graph.nodes[node].name.as_str(),
                    self.providers[provider].name(),
                )
            })
            .collect()
    }

    /// Intra-op thread count.
    pub fn intra_threads(&self) -> usize {
        self.threads
    }

    /// The optimization level the session was built with.
    pub fn optimization_level(&self) -> OptimizationLevel {
        self.optimization_level
    }

    /// Runs the model on named inputs and returns every output.
    pub fn run<K: AsRef<str>>(
        &self,
        inputs: impl IntoIterator<Item = (K, Tensor)>,
    ) -> Result<SessionOutputs> {
        let fed = self.bind_inputs(inputs)?;
        self.pool.install(|| self.execute(fed, None))
    }

    /// Runs the model like [`Session::run`] and also returns the time and
    /// traffic of every step (kernels and copies between memories).
    pub fn run_with_profile<K: AsRef<str>>(
        &self,
        inputs: impl IntoIterator<Item = (K, Tensor)>,
    ) -> Result<(SessionOutputs, RunProfile)> {
        let fed = self.bind_inputs(inputs)?;
        let mut profile = RunProfile::default();
        let outputs = self
            .pool
            .install(|| self.execute(fed, Some(&mut profile)))?;
        Ok((outputs, profile))
    }

    fn expected_inputs(&self) -> String {
        self.inputs()
            .iter()
            .map(|v| v.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Checks names, types and shapes of the inputs and binds symbolic dims.
    fn bind_inputs<K: AsRef<str>>(
        &self,
        inputs: impl IntoIterator<Item = (K, Tensor)>,
    ) -> Result<Vec<(usize, Tensor)>> {
        let graph = &self.model.graph;
        let mut fed: HashMap<String, Tensor> = HashMap::new();
        for (name, t) in inputs {
            fed.insert(name.as_ref().to_string(), t);
        }
        let mut symbols: HashMap<&str, usize> = HashMap::new();
        let mut out = Vec::with_capacity(fed.len());
        for info in &graph.inputs {
            let Some(t) = fed.remove(&info.name) else {
                return Err(Error::MissingInput {
                    name: info.name.clone(),
                    expected: self.expected_inputs(),
                });
            };
            self.check_input(info, &t, &mut symbols)?;
            out.push((self.plan.slots[&info.name], t));
        }
        for info in &graph.overridable_initializers {
            if let Some(t) = fed.remove(&info.name) {
                self.check_input(info, &t, &mut symbols)?;
                if let Some(&s) = self.plan.slots.get(&info.name) {
                    out.push((s, t));
                }
            }
        }
        if let Some(name) = fed.into_keys().next() {
            return Err(Error::UnknownInput {
                name,
                expected: self.expected_inputs(),
            });
        }
        Ok(out)
    }

    fn check_input<'a>(
        &self,
        info: &'a ValueInfo,
        t: &Tensor,
        symbols: &mut HashMap<&'a str, usize>,
    ) -> Result<()> {
        let dims: Vec<u64> = t.shape().iter().map(|&d| d as u64).collect();
        check_size(
            &format!("input '{}'", info.name),
            &dims,
            t.dtype(),
            self.memory_limit,
        )?;
        let ValueType::Tensor { dtype, shape } = &info.ty else {
            return Ok(());
        };
        if *dtype != t.dtype() {
            return Err(Error::InputType {
                name: info.name.clone(),
                expected: *dtype,
                got: t.dtype(),
            });
        }
        let Some(expected) = shape else {
            return Ok(());
        };
        let mismatch = || Error::InputShape {
            name: info.name.clone(),
            expected: format_dims(expected),
            got: t.shape().to_vec(),
        };
        if expected.len() != t.rank() {
            return Err(mismatch());
        }
        for (d, &got) in expected.iter().zip(t.shape()) {
            match d {
                Dim::Known(n) if *n != got => return Err(mismatch()),
                Dim::Symbolic(s) => {
                    let bound = *symbols.entry(s.as_str()).or_insert(got);
                    if bound != got {
                        return Err(Error::InputShape {
                            name: info.name.clone(),
                            expected: format!(
                                "{} with {s} = {bound} (bound by an earlier input)",
                                format_dims(expected)
                            ),
                            got: t.shape().to_vec(),
                        });
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn execute(
        &self,
        fed: Vec<(usize, Tensor)>,
        mut profile: Option<&mut RunProfile>,
    ) -> Result<SessionOutputs> {
        let graph = &self.model.graph;
        let mut slots: Vec<Option<Slot<'_>>> = Vec::new();
        slots.resize_with(self.plan.slot_count, || None);
        for (s, t) in &self.plan.constants {
            slots[*s] = Some(Slot::Shared(t.as_ref()));
        }
        for (s, t) in fed {
            slots[s] = Some(Slot::Owned(t));
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
        let mut names = Vec::with_capacity(graph.outputs.len());
        let mut tensors = Vec::with_capacity(graph.outputs.len());
        for o in &graph.outputs {
            let slot = self.plan.slots.get(&o.name).and_then(|&s| slots[s].take());
            let t = match slot {
                Some(Slot::Owned(t)) => t,
                Some(Slot::Shared(t)) => t.clone(),
                Some(Slot::Device(_)) | None => {
                    return Err(Error::invalid(format!(
                        "graph output '{}' was not produced",
                        o.name
                    )))
                }
            };
            names.push(o.name.clone());
            tensors.push(t);
        }
        Ok(SessionOutputs { names, tensors })
    }

    /// Runs one step on the current slots; returns a value per output slot.
    fn run_step<'a>(
        &self,
        step: &Step,
        slots: &[Option<Slot<'a>>],
    ) -> Result<(Vec<Option<Slot<'a>>>, DeviceCost)> {
        let graph = &self.model.graph;
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
                ..
            } => {
                let node = &graph.nodes[*node];
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
                let value = |i: usize, s: &Option<usize>| -> Result<Option<&Slot<'a>>> {
                    match s {
                        None => Ok(None),
                        Some(s) => match slots[*s].as_ref() {
                            Some(v) => Ok(Some(v)),
                            None => Err(fail(missing(i, &node.inputs[i]))),
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
                    let outputs = kernel.compute(&args).map_err(fail)?;
                    if outputs.len() < named {
                        return Err(short(outputs.len()));
                    }
                    let produced = outputs.into_iter().map(|t| Some(Slot::Owned(t))).collect();
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
                        let (t, cost) = memory.upload(host).map_err(copy_error)?;
                        (Slot::Device(t), cost)
                    }
                    (_, Slot::Device(t)) => {
                        let (t, cost) = memory.download(t).map_err(copy_error)?;
                        (Slot::Owned(t), cost)
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
                let n = &self.model.graph.nodes[*node];
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Session>();
    }
}

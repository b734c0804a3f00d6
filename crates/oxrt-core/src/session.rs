//! `Session`: a model prepared for repeated, concurrent execution.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use oxrt_onnx::{check_model, CheckOptions};

use crate::arena::{Arena, ArenaStats};
use crate::error::{Error, Result};
pub use crate::execute::ExecutionMode;
use crate::execute::{Runner, Slot};
use crate::infer::infer_graph;
use crate::ir::{value::format_dims, Dim, LowerOptions, Model, ValueInfo, ValueType};
use crate::optimize::OptimizationReport;
use crate::partition::partition;
use crate::plan::ExecutionPlan;
use crate::profile::RunProfile;
use crate::provider::ExecutionProvider;
use crate::tensor::Tensor;
use crate::tensor_proto::{check_size, DEFAULT_MEMORY_LIMIT};
use crate::value::Value;

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

impl std::str::FromStr for OptimizationLevel {
    type Err = String;
    /// `disabled`, `basic`, `extended` or `all` (ONNX Runtime's names; `0`..`3` too).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "disabled" | "disable" | "none" | "0" => Ok(Self::Disabled),
            "basic" | "1" => Ok(Self::Basic),
            "extended" | "2" => Ok(Self::Extended),
            "all" | "3" | "99" => Ok(Self::All),
            other => Err(format!(
                "unknown optimization level '{other}': use disabled, basic, extended or all"
            )),
        }
    }
}

impl std::fmt::Display for OptimizationLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Disabled => "disabled",
            Self::Basic => "basic",
            Self::Extended => "extended",
            Self::All => "all",
        })
    }
}

/// A rayon pool of `n` threads named `oxrt-<kind>-<i>`.
fn thread_pool(n: usize, kind: &'static str) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(move |i| format!("oxrt-{kind}-{i}"))
        .build()
        .map_err(|e| Error::Config(format!("cannot create {n} {kind}-op threads: {e}")))
}

/// Writes `bytes` to `path`, naming the file in the error.
fn write_file(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    std::fs::write(path, bytes).map_err(|source| Error::Write {
        path: path.display().to_string(),
        source,
    })
}

/// Configures and creates a [`Session`].
#[derive(Clone)]
pub struct SessionBuilder {
    providers: Vec<Arc<dyn ExecutionProvider>>,
    fallback: Option<Arc<dyn ExecutionProvider>>,
    optimization_level: OptimizationLevel,
    intra_threads: usize,
    inter_threads: usize,
    execution_mode: ExecutionMode,
    memory_reuse: bool,
    arena_limit: usize,
    profiling: Option<PathBuf>,
    fp16: bool,
    memory_limit: u64,
    spinning: bool,
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
            inter_threads: 0,
            execution_mode: ExecutionMode::Sequential,
            memory_reuse: true,
            arena_limit: crate::arena::DEFAULT_LIMIT,
            profiling: None,
            fp16: false,
            memory_limit: DEFAULT_MEMORY_LIMIT,
            spinning: true,
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

    /// Graph optimization level (default `All`); see [`crate::optimize`]
    /// for what each level does.
    pub fn with_optimization_level(mut self, level: OptimizationLevel) -> Self {
        self.optimization_level = level;
        self
    }

    /// Threads for parallelism inside one operator (0: one per physical
    /// core this process may use).
    pub fn with_intra_threads(mut self, threads: usize) -> Self {
        self.intra_threads = threads;
        self
    }

    /// Sequential (default) or parallel execution of independent branches.
    pub fn with_execution_mode(mut self, mode: ExecutionMode) -> Self {
        self.execution_mode = mode;
        self
    }

    /// Threads running independent nodes at once in
    /// [`ExecutionMode::Parallel`] (0: one per core).
    pub fn with_inter_threads(mut self, threads: usize) -> Self {
        self.inter_threads = threads;
        self
    }

    /// Whether a run releases each value after its last reader and lets
    /// elementwise kernels overwrite dying inputs (default on). Off, every
    /// intermediate value lives until the run ends (for measurement).
    pub fn with_memory_reuse(mut self, reuse: bool) -> Self {
        self.memory_reuse = reuse;
        self
    }

    /// Bytes of released tensor buffers the session keeps for reuse by later
    /// steps and runs (default [`crate::arena::DEFAULT_LIMIT`]; 0 keeps
    /// none, and every buffer is a fresh allocation).
    pub fn with_arena_limit(mut self, bytes: usize) -> Self {
        self.arena_limit = bytes;
        self
    }

    /// Records every run's per-node profile (provider, op, input shapes,
    /// host and device time); [`Session::end_profiling`] writes it to
    /// `path` as a Chrome trace (also written when the session is dropped).
    pub fn with_profiling(mut self, path: impl Into<PathBuf>) -> Self {
        self.profiling = Some(path.into());
        self
    }

    /// Mixed precision: eligible nodes (products, elementwise arithmetic,
    /// activations, pooling, layout) run in float16; Softmax, reductions,
    /// normalizations, Exp/Log and the like stay float32, with casts where
    /// values cross (default off).
    pub fn with_fp16(mut self, fp16: bool) -> Self {
        self.fp16 = fp16;
        self
    }

    /// Largest tensor, in bytes, accepted as an initializer, constant or input.
    pub fn with_memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = bytes;
        self
    }

    /// Whether the intra-op workers poll for work while runs are in
    /// progress and for 2 ms after the last (default: yes, as onnxruntime's
    /// spinning threads). Polling spares each parallel operator the wake-up
    /// of sleeping workers, at the cost of busy cores around runs; turn it
    /// off where other work needs those cores more than runs need latency.
    pub fn with_spinning(mut self, spinning: bool) -> Self {
        self.spinning = spinning;
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
        // Physical cores: hyper-threads share the FMA units the kernels use.
        let cores = num_cpus::get_physical()
            .min(std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        let threads = if self.intra_threads == 0 {
            cores
        } else {
            self.intra_threads
        };
        let inter_pool = match self.execution_mode {
            ExecutionMode::Sequential => None,
            ExecutionMode::Parallel => {
                let n = if self.inter_threads == 0 {
                    cores
                } else {
                    self.inter_threads
                };
                Some(thread_pool(n, "inter")?)
            }
        };
        let pool = thread_pool(threads, "intra")?;
        let mut providers = self.providers;
        if let Some(f) = self.fallback {
            if !providers.iter().any(|p| p.name() == f.name()) {
                providers.push(f);
            }
        }
        infer_graph(&mut model.graph, &model.opsets);
        let report = crate::optimize::optimize(
            &mut model.graph,
            self.optimization_level,
            &mut crate::optimize::OptimizeContext {
                opsets: &mut model.opsets,
                providers: &providers,
                memory_limit: self.memory_limit,
                fp16: self.fp16,
            },
        );
        tracing::debug!(%report, "graph optimized");
        infer_graph(&mut model.graph, &model.opsets);
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
            optimization_report: report,
            inter_pool,
            memory_reuse: self.memory_reuse,
            arena: (self.memory_reuse && self.arena_limit > 0)
                .then(|| Arc::new(Arena::new(self.arena_limit))),
            awake: crate::spin::Awake::new(threads, self.spinning),
            profiling: self.profiling.map(|path| {
                Mutex::new(Profiling {
                    path,
                    started: Instant::now(),
                    profile: RunProfile::default(),
                    written: false,
                })
            }),
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
    optimization_report: OptimizationReport,
    /// Inter-op threads, in parallel execution mode.
    inter_pool: Option<rayon::ThreadPool>,
    memory_reuse: bool,
    /// Released buffers, shared by every run (`None` without memory reuse).
    arena: Option<Arc<Arena>>,
    profiling: Option<Mutex<Profiling>>,
    /// Keeps the intra-op workers polling while runs are in progress
    /// (`None` with one thread or spinning off).
    awake: Option<Arc<crate::spin::Awake>>,
}

/// Runs recorded by [`SessionBuilder::with_profiling`].
struct Profiling {
    path: PathBuf,
    started: Instant,
    profile: RunProfile,
    written: bool,
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Err(e) = self.end_profiling() {
            tracing::warn!("profile not written: {e}");
        }
    }
}

/// Named outputs of one run, in the model's output order.
#[derive(Debug, Clone)]
pub struct SessionOutputs {
    names: Vec<String>,
    values: Vec<Value>,
}

impl SessionOutputs {
    /// The output called `name`, if it is a tensor.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.value(name).and_then(Value::as_tensor)
    }

    /// The output called `name`, of any kind (tensor, sequence, optional).
    pub fn value(&self, name: &str) -> Option<&Value> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| &self.values[i])
    }

    /// Number of outputs.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when there are no outputs.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `(name, value)` pairs in output order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.names.iter().map(String::as_str).zip(&self.values)
    }
}

impl IntoIterator for SessionOutputs {
    type Item = (String, Value);
    type IntoIter = std::iter::Zip<std::vec::IntoIter<String>, std::vec::IntoIter<Value>>;
    fn into_iter(self) -> Self::IntoIter {
        self.names.into_iter().zip(self.values)
    }
}

impl std::ops::Index<usize> for SessionOutputs {
    type Output = Tensor;
    /// Panics if output `i` does not exist or is not a tensor; use
    /// [`SessionOutputs::iter`] for outputs of other kinds.
    fn index(&self, i: usize) -> &Tensor {
        match self.values[i].as_tensor() {
            Some(t) => t,
            None => panic!("output #{i} is a {}, not a tensor", self.values[i].kind()),
        }
    }
}

impl std::ops::Index<&str> for SessionOutputs {
    type Output = Tensor;
    /// Panics if there is no such tensor output; use [`SessionOutputs::get`] to check.
    fn index(&self, name: &str) -> &Tensor {
        match self.get(name) {
            Some(t) => t,
            None => panic!("no tensor output named '{name}'"),
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

    /// What each optimization pass changed when the session was created.
    pub fn optimization_report(&self) -> &OptimizationReport {
        &self.optimization_report
    }

    /// The optimized model as ONNX protobuf bytes. Fused operators without a
    /// standard form are in the `oxrt` domain, which oxrt loads back.
    pub fn optimized_model_bytes(&self) -> Result<Vec<u8>> {
        use prost::Message;
        let proto = self.model.to_proto();
        let len = proto.encoded_len();
        // Protobuf messages are limited to 2 GiB (external data is not
        // written by this method).
        if len > i32::MAX as usize {
            return Err(Error::Config(format!(
                "the optimized model needs {len} bytes, more than protobuf's 2 GiB limit"
            )));
        }
        Ok(proto.encode_to_vec())
    }

    /// Writes the optimized model to `path` as an ONNX file.
    pub fn save_optimized_model(&self, path: impl AsRef<Path>) -> Result<()> {
        write_file(path.as_ref(), self.optimized_model_bytes()?)
    }

    /// Runs the model on named inputs and returns every output.
    /// Inputs may be tensors or any [`Value`] (sequences, optionals).
    pub fn run<K: AsRef<str>, V: Into<Value>>(
        &self,
        inputs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<SessionOutputs> {
        let Some(profiling) = &self.profiling else {
            let fed = self.bind_inputs(inputs)?;
            return self.pool.install(|| self.awake(|| self.execute(fed, None)));
        };
        let begun = Instant::now();
        let (outputs, profile) = self.run_with_profile(inputs)?;
        let mut p = profiling
            .lock()
            .map_err(|_| Error::invalid("the profile lock is poisoned"))?;
        let offset = begun.duration_since(p.started).as_secs_f64() * 1e6;
        p.profile
            .events
            .extend(profile.events.into_iter().map(|mut e| {
                e.start_us += offset;
                e
            }));
        p.written = false;
        Ok(outputs)
    }

    /// Writes the runs recorded since the session was created (with
    /// [`SessionBuilder::with_profiling`]) as a Chrome trace and returns
    /// the file and the recorded profile; `None` without profiling.
    pub fn end_profiling(&self) -> Result<Option<(PathBuf, RunProfile)>> {
        let Some(profiling) = &self.profiling else {
            return Ok(None);
        };
        let mut p = profiling
            .lock()
            .map_err(|_| Error::invalid("the profile lock is poisoned"))?;
        if !p.written {
            write_file(&p.path, p.profile.chrome_trace())?;
            p.written = true;
        }
        Ok(Some((p.path.clone(), p.profile.clone())))
    }

    /// The memory plan of the session's graph: value lifetimes, planned
    /// peak bytes with and without reuse, and arena offsets. `dims` binds
    /// symbolic dimensions (e.g. `batch`); values whose size still depends
    /// on the run are counted apart.
    pub fn memory_plan(&self, dims: &HashMap<String, usize>) -> crate::memory::MemoryPlan {
        crate::memory::MemoryPlan::build(&self.model.graph, &self.plan, dims)
    }

    /// The execution mode the session runs in.
    pub fn execution_mode(&self) -> ExecutionMode {
        if self.inter_pool.is_some() {
            ExecutionMode::Parallel
        } else {
            ExecutionMode::Sequential
        }
    }

    /// Runs the model like [`Session::run`] and also returns the time and
    /// traffic of every step (kernels and copies between memories).
    pub fn run_with_profile<K: AsRef<str>, V: Into<Value>>(
        &self,
        inputs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<(SessionOutputs, RunProfile)> {
        let fed = self.bind_inputs(inputs)?;
        let mut profile = RunProfile::default();
        let outputs = self
            .pool
            .install(|| self.awake(|| self.execute(fed, Some(&mut profile))))?;
        Ok((outputs, profile))
    }

    /// `f` (a run, inside the pool) with the other workers kept awake.
    fn awake<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.awake {
            Some(a) => a.during(f),
            None => f(),
        }
    }

    fn expected_inputs(&self) -> String {
        self.inputs()
            .iter()
            .map(|v| v.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Checks names, types and shapes of the inputs and binds symbolic dims.
    fn bind_inputs<K: AsRef<str>, V: Into<Value>>(
        &self,
        inputs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Vec<(usize, Value)>> {
        let graph = &self.model.graph;
        let mut fed: HashMap<String, Value> = HashMap::new();
        for (name, v) in inputs {
            fed.insert(name.as_ref().to_string(), v.into());
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

    /// Checks a fed value against the declared type: its kind, and for
    /// tensors (also inside sequences and optionals) the size limit, element
    /// type and shape.
    fn check_input<'a>(
        &self,
        info: &'a ValueInfo,
        v: &Value,
        symbols: &mut HashMap<&'a str, usize>,
    ) -> Result<()> {
        let kind_error = || Error::InputKind {
            name: info.name.clone(),
            expected: info.ty.to_string(),
            got: v.to_string(),
        };
        match (v, &info.ty) {
            (Value::Tensor(t), ValueType::Tensor { .. } | ValueType::Unknown) => {
                self.check_tensor(info, t, symbols)
            }
            (Value::Sequence(s), ValueType::Sequence(elem)) => {
                if elem.dtype().is_some_and(|d| d != s.dtype) {
                    return Err(kind_error());
                }
                for t in &s.items {
                    let dims: Vec<u64> = t.shape().iter().map(|&d| d as u64).collect();
                    let what = format!("input '{}' (sequence item)", info.name);
                    check_size(&what, &dims, t.dtype(), self.memory_limit)?;
                }
                Ok(())
            }
            (Value::Map(m), ValueType::Map { key, .. }) => {
                if m.keys.dtype() != *key {
                    return Err(kind_error());
                }
                Ok(())
            }
            (Value::Optional(inner), ValueType::Optional(elem)) => match inner {
                None => Ok(()),
                Some(inner) => {
                    let inner_info = ValueInfo {
                        name: info.name.clone(),
                        ty: (**elem).clone(),
                    };
                    // Symbols bound inside an optional are not shared.
                    self.check_input(&inner_info, inner, &mut HashMap::new())
                }
            },
            _ => Err(kind_error()),
        }
    }

    fn check_tensor<'a>(
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

    /// What the run arena has served: buffers reused and freshly allocated
    /// over all runs so far, and what it holds now (`None` without memory
    /// reuse).
    pub fn arena_stats(&self) -> Option<ArenaStats> {
        self.arena.as_ref().map(|a| a.stats())
    }

    fn execute(
        &self,
        fed: Vec<(usize, Value)>,
        profile: Option<&mut RunProfile>,
    ) -> Result<SessionOutputs> {
        let runner = Runner {
            graph: &self.model.graph,
            plan: &self.plan,
            providers: &self.providers,
            release: self.memory_reuse,
            arena: self.arena.clone(),
        };
        let feeds = fed.into_iter().map(|(s, v)| (s, Slot::Owned(v))).collect();
        let values = match &self.inter_pool {
            Some(inter) => runner.run_parallel(feeds, profile, inter, &self.pool),
            None => runner.run(feeds, profile),
        };
        if let Some(arena) = &self.arena {
            arena.end_run();
        }
        let values = values?;
        let names = self
            .model
            .graph
            .outputs
            .iter()
            .map(|o| o.name.clone())
            .collect();
        Ok(SessionOutputs { names, values })
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

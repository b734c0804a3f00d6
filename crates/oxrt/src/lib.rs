//! oxrt: an ONNX inference runtime.
//!
//! ```no_run
//! use oxrt::{Session, Tensor};
//!
//! let session = Session::builder()
//!     .with_intra_threads(2)
//!     .commit_from_file("examples/mnist/model.onnx")?;
//! let input = &session.inputs()[0];
//! println!("{}: {}", input.name, input.ty);
//! let image = Tensor::from_vec(vec![1, 1, 8, 8], vec![0.0f32; 64])?;
//! let outputs = session.run([(input.name.as_str(), image)])?;
//! let logits = outputs[0].as_slice::<f32>()?;
//! # Ok::<(), oxrt::Error>(())
//! ```
//!
//! Providers are chosen with cargo features: `cpu` (default), `cuda` (NVIDIA
//! GPUs; CUDA libraries loaded at run time) and `fpga-sim` (a simulated FPGA
//! reached through the provider C ABI). Provider shared
//! libraries load at run time with
//! [`SessionBuilder::with_provider_library`]. Nodes that no listed provider
//! takes run on the CPU provider.

mod providers;

use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

pub use oxrt_core::{
    bf16, f16, ndarray, DataType, DeviceInfo, DeviceKind, Dim, Element, Error, ExecutionMode,
    ExecutionProvider, Model, OptimizationLevel, Result, SessionOutputs, Storage, Tensor,
    ValueInfo, ValueType,
};
pub use providers::{
    available_providers, describe_library, unavailable_providers, Provider, ProviderInfo,
    ProviderOptions,
};

/// The lower layers, for provider authors and tools.
pub mod core {
    pub use oxrt_core::*;
}
/// ONNX protobuf types, loading and the checker.
pub use oxrt_onnx as onnx;

/// A loaded, checked and planned model, ready to [`run`](oxrt_core::Session::run).
///
/// Dereferences to [`oxrt_core::Session`] for `inputs()`, `outputs()` and `run()`.
pub struct Session {
    inner: oxrt_core::Session,
}

impl Session {
    /// Starts configuring a session. Without other providers, everything
    /// runs on the CPU provider.
    pub fn builder() -> SessionBuilder {
        SessionBuilder {
            inner: oxrt_core::SessionBuilder::new(),
            providers: Vec::new(),
            provider_fallback: false,
        }
    }

    /// The core session.
    pub fn into_inner(self) -> oxrt_core::Session {
        self.inner
    }
}

impl Deref for Session {
    type Target = oxrt_core::Session;
    fn deref(&self) -> &oxrt_core::Session {
        &self.inner
    }
}

/// Configures a [`Session`], like ONNX Runtime's `SessionOptions`.
#[derive(Clone)]
pub struct SessionBuilder {
    inner: oxrt_core::SessionBuilder,
    providers: Vec<Provider>,
    provider_fallback: bool,
}

impl SessionBuilder {
    /// Execution providers in priority order; nodes none of them takes run
    /// on the CPU provider (when the `cpu` feature is on).
    pub fn with_providers(mut self, providers: impl IntoIterator<Item = Provider>) -> Self {
        self.providers = providers.into_iter().collect();
        self
    }

    /// Adds a provider shared library (after the providers already listed),
    /// created with `options` when the session is committed. Loading errors
    /// (not found, not a library, no entry symbol, ABI mismatch, failed
    /// init) come back from `commit_*` as [`Error::ProviderLibrary`].
    pub fn with_provider_library(
        mut self,
        path: impl AsRef<Path>,
        options: impl IntoIterator<Item = (impl Into<String>, impl Into<String>)>,
    ) -> Self {
        self.providers.push(Provider::Library {
            path: path.as_ref().to_path_buf(),
            options: options
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        });
        self
    }

    /// Graph optimization level (accepted; no passes exist yet).
    pub fn with_optimization_level(mut self, level: OptimizationLevel) -> Self {
        self.inner = self.inner.with_optimization_level(level);
        self
    }

    /// Threads used inside one operator (0: one per core).
    pub fn with_intra_threads(mut self, threads: usize) -> Self {
        self.inner = self.inner.with_intra_threads(threads);
        self
    }

    /// Largest tensor, in bytes, accepted as initializer, constant or input.
    pub fn with_memory_limit(mut self, bytes: u64) -> Self {
        self.inner = self.inner.with_memory_limit(bytes);
        self
    }

    /// Sequential (default) or parallel execution of independent branches.
    pub fn with_execution_mode(mut self, mode: ExecutionMode) -> Self {
        self.inner = self.inner.with_execution_mode(mode);
        self
    }

    /// Threads running independent nodes at once in parallel mode (0: one per core).
    pub fn with_inter_threads(mut self, threads: usize) -> Self {
        self.inner = self.inner.with_inter_threads(threads);
        self
    }

    /// Release values after their last reader and let elementwise kernels
    /// overwrite dying inputs (default on).
    pub fn with_memory_reuse(mut self, reuse: bool) -> Self {
        self.inner = self.inner.with_memory_reuse(reuse);
        self
    }

    /// Bytes of released tensor buffers kept for later steps and runs
    /// (default 1 GiB; 0 keeps none).
    pub fn with_arena_limit(mut self, bytes: usize) -> Self {
        self.inner = self.inner.with_arena_limit(bytes);
        self
    }

    /// Record each run's per-node profile; written as a Chrome trace by
    /// `Session::end_profiling` or when the session is dropped.
    pub fn with_profiling(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.inner = self.inner.with_profiling(path);
        self
    }

    /// Mixed precision: eligible nodes run in float16, numerically
    /// sensitive ones stay float32 (default off).
    pub fn with_fp16(mut self, fp16: bool) -> Self {
        self.inner = self.inner.with_fp16(fp16);
        self
    }

    /// When a listed provider cannot be created on this machine (no driver,
    /// no device: [`Error::ProviderUnavailable`]), leave it out with a
    /// warning instead of failing, so its nodes run on the others and the
    /// CPU (default off).
    pub fn with_provider_fallback(mut self, fallback: bool) -> Self {
        self.provider_fallback = fallback;
        self
    }

    fn prepared(self) -> Result<oxrt_core::SessionBuilder> {
        let mut list: Vec<Arc<dyn ExecutionProvider>> = Vec::new();
        for p in self.providers {
            match p.instantiate() {
                Ok(p) => list.push(p),
                Err(e @ Error::ProviderUnavailable { .. }) if self.provider_fallback => {
                    tracing::warn!(error = %e, "provider left out; its nodes run on the others");
                }
                Err(e) => return Err(e),
            }
        }
        let builder = self.inner.with_providers(list);
        Ok(match providers::fallback() {
            Some(cpu) => builder.with_fallback(cpu),
            None => builder,
        })
    }

    /// Loads (memory-mapped), checks and plans the model at `path`.
    pub fn commit_from_file(self, path: impl AsRef<Path>) -> Result<Session> {
        let inner = self.prepared()?.commit_from_file(path)?;
        Ok(Session { inner })
    }

    /// Decodes, checks and plans a model held in memory.
    pub fn commit_from_memory(self, bytes: &[u8]) -> Result<Session> {
        let inner = self.prepared()?.commit_from_memory(bytes)?;
        Ok(Session { inner })
    }
}

//! Choosing execution providers by name or value; which are compiled in.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use oxrt_core::dylib::LoadedProvider;
use oxrt_core::{DeviceInfo, Error, ExecutionProvider, Result};

/// Provider options: key-value pairs handed to the provider when it is created.
pub type ProviderOptions = Vec<(String, String)>;

/// An execution provider to use in a session.
#[derive(Clone)]
#[non_exhaustive]
pub enum Provider {
    /// The CPU provider (cargo feature `cpu`, on by default).
    Cpu,
    /// The simulated FPGA (cargo feature `fpga-sim`), linked in and driven
    /// through the same C ABI table its shared library exports.
    FpgaSim(ProviderOptions),
    /// The CUDA provider on a device ordinal (cargo feature `cuda`).
    Cuda(usize),
    /// A provider shared library loaded at session creation.
    Library {
        path: PathBuf,
        options: ProviderOptions,
    },
    /// Any provider implementing the trait.
    Custom(Arc<dyn ExecutionProvider>),
}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Provider::Cpu => f.write_str("Cpu"),
            Provider::FpgaSim(o) => write!(f, "FpgaSim({o:?})"),
            Provider::Cuda(d) => write!(f, "Cuda({d})"),
            Provider::Library { path, options } => {
                write!(f, "Library({}, {options:?})", path.display())
            }
            Provider::Custom(p) => write!(f, "Custom({})", p.name()),
        }
    }
}

/// True when `s` names a shared library rather than a provider.
fn looks_like_path(s: &str) -> bool {
    s.contains(std::path::MAIN_SEPARATOR)
        || s.contains('/')
        || [".so", ".dylib", ".dll"].iter().any(|ext| s.ends_with(ext))
}

/// Names of the providers this build knows, compiled in or not.
const KNOWN: &[(&str, &str)] = &[
    ("cpu", "the `cpu` cargo feature of oxrt"),
    ("cuda", "the `cuda` cargo feature of oxrt"),
    ("fpga-sim", "the `fpga-sim` cargo feature of oxrt"),
];

impl FromStr for Provider {
    type Err = Error;

    /// Parses a provider name (`cpu`, `cuda` or `cuda:N`, `fpga-sim`,
    /// case-insensitive; `CPUExecutionProvider` and `CUDAExecutionProvider`
    /// too) or the path of a provider library.
    fn from_str(name: &str) -> Result<Self> {
        if looks_like_path(name.trim()) {
            return Ok(Provider::Library {
                path: PathBuf::from(name.trim()),
                options: Vec::new(),
            });
        }
        let key = name.trim().to_ascii_lowercase();
        let key = key.trim_end_matches("executionprovider");
        match key {
            #[cfg(feature = "cpu")]
            "cpu" => Ok(Provider::Cpu),
            #[cfg(feature = "fpga-sim")]
            "fpga-sim" | "fpgasim" => Ok(Provider::FpgaSim(Vec::new())),
            #[cfg(feature = "cuda")]
            "cuda" => Ok(Provider::Cuda(0)),
            #[cfg(feature = "cuda")]
            k if k.starts_with("cuda:") => {
                k["cuda:".len()..].parse().map(Provider::Cuda).map_err(|_| {
                    Error::Config(format!(
                        "'{name}': the CUDA device must be a number, as in cuda:0"
                    ))
                })
            }
            _ => {
                let available: Vec<String> =
                    available_providers().into_iter().map(|p| p.name).collect();
                let why = KNOWN
                    .iter()
                    .find(|(k, _)| *k == key || key.starts_with(&format!("{k}:")))
                    .map(|(_, needs)| format!("it needs {needs}"))
                    .unwrap_or_else(|| "no provider has this name".into());
                Err(Error::Config(format!(
                    "execution provider '{name}' is not available: {why}; available: [{}]",
                    available.join(", ")
                )))
            }
        }
    }
}

impl Provider {
    pub(crate) fn instantiate(&self) -> Result<Arc<dyn ExecutionProvider>> {
        match self {
            #[cfg(feature = "cpu")]
            Provider::Cpu => Ok(cpu()),
            #[cfg(not(feature = "cpu"))]
            Provider::Cpu => Err(Error::Config(
                "the CPU provider is not compiled in: enable the `cpu` feature of oxrt".into(),
            )),
            #[cfg(feature = "fpga-sim")]
            Provider::FpgaSim(options) => Ok(Arc::new(LoadedProvider::from_static(
                oxrt_provider_fpga_sim::provider_api(),
                options,
            )?)),
            #[cfg(not(feature = "fpga-sim"))]
            Provider::FpgaSim(_) => Err(Error::Config(
                "the fpga-sim provider is not compiled in: enable the `fpga-sim` feature of oxrt, or load its shared library with Provider::Library".into(),
            )),
            #[cfg(feature = "cuda")]
            Provider::Cuda(device) => Ok(Arc::new(oxrt_provider_cuda::CudaProvider::new(*device)?)),
            #[cfg(not(feature = "cuda"))]
            Provider::Cuda(_) => Err(Error::ProviderUnavailable {
                provider: "cuda".into(),
                reason: "not compiled in: enable the `cuda` feature of oxrt".into(),
            }),
            Provider::Library { path, options } => {
                Ok(Arc::new(LoadedProvider::load(path, options)?))
            }
            Provider::Custom(p) => Ok(p.clone()),
        }
    }

    /// Replaces the provider's options (for `FpgaSim` and `Library`).
    pub fn with_options(self, options: ProviderOptions) -> Self {
        match self {
            Provider::FpgaSim(_) => Provider::FpgaSim(options),
            Provider::Library { path, .. } => Provider::Library { path, options },
            p => p,
        }
    }
}

#[cfg(feature = "cpu")]
fn cpu() -> Arc<dyn ExecutionProvider> {
    use std::sync::OnceLock;
    // One registry for the whole process: kernels are created per session.
    static CPU: OnceLock<Arc<oxrt_provider_cpu::CpuProvider>> = OnceLock::new();
    CPU.get_or_init(|| Arc::new(oxrt_provider_cpu::CpuProvider::new()))
        .clone()
}

/// The provider that runs whatever no listed provider takes.
pub(crate) fn fallback() -> Option<Arc<dyn ExecutionProvider>> {
    #[cfg(feature = "cpu")]
    {
        Some(cpu())
    }
    #[cfg(not(feature = "cpu"))]
    {
        None
    }
}

/// A provider this build can use, and its device.
#[derive(Debug, Clone)]
pub struct ProviderInfo {
    pub name: String,
    pub version: String,
    pub device: DeviceInfo,
    /// Where it comes from: `built in`, or the library's path.
    pub origin: String,
    /// Number of operators (domain, op type) with a kernel, when the
    /// provider can list them (providers behind the C ABI cannot).
    pub operators: Option<usize>,
}

fn abi_info(p: &LoadedProvider, origin: String) -> ProviderInfo {
    ProviderInfo {
        name: p.name().to_string(),
        version: p.version().to_string(),
        device: p.device(),
        origin,
        operators: None,
    }
}

/// The providers compiled into this build.
pub fn available_providers() -> Vec<ProviderInfo> {
    #[allow(unused_mut)]
    let mut v = Vec::new();
    #[cfg(feature = "cpu")]
    {
        let p = oxrt_provider_cpu::CpuProvider::new();
        v.push(ProviderInfo {
            name: oxrt_provider_cpu::CpuProvider::NAME.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            device: p.device(),
            origin: "built in".into(),
            operators: Some(p.registry().op_count()),
        });
    }
    #[cfg(feature = "fpga-sim")]
    match LoadedProvider::from_static(oxrt_provider_fpga_sim::provider_api(), &[]) {
        Ok(p) => v.push(abi_info(&p, "built in (C ABI)".into())),
        Err(e) => tracing::warn!(error = %e, "the linked fpga-sim provider failed to start"),
    }
    #[cfg(feature = "cuda")]
    if let Ok(p) = oxrt_provider_cuda::CudaProvider::new(0) {
        v.push(ProviderInfo {
            name: p.name().to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            device: p.device(),
            origin: "built in".into(),
            operators: Some(oxrt_provider_cuda::ops::operator_count()),
        });
    }
    v
}

/// Providers compiled into this build that cannot run on this machine,
/// with the reason (e.g. `cuda`: no CUDA driver found).
pub fn unavailable_providers() -> Vec<(String, String)> {
    #[allow(unused_mut)]
    let mut v = Vec::new();
    #[cfg(feature = "cuda")]
    match oxrt_provider_cuda::probe(0) {
        Err(Error::ProviderUnavailable { reason, .. }) => v.push(("cuda".to_string(), reason)),
        Err(e) => v.push(("cuda".to_string(), e.to_string())),
        Ok(_) => {}
    }
    v
}

/// Loads a provider library to describe it (for `oxrt providers --load`).
pub fn describe_library(path: &Path, options: &[(String, String)]) -> Result<ProviderInfo> {
    let p = LoadedProvider::load(path, options)?;
    Ok(abi_info(&p, path.display().to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_parse_and_unknown_names_explain() {
        assert!(matches!("cpu".parse::<Provider>().unwrap(), Provider::Cpu));
        assert!(matches!(
            "CPUExecutionProvider".parse::<Provider>().unwrap(),
            Provider::Cpu
        ));
        #[cfg(not(feature = "cuda"))]
        {
            let err = "cuda".parse::<Provider>().unwrap_err().to_string();
            assert!(err.contains("'cuda' is not available"), "{err}");
            assert!(err.contains("the `cuda` cargo feature"), "{err}");
            assert!(err.contains("available: [cpu"), "{err}");
        }
        #[cfg(feature = "cuda")]
        {
            assert!(matches!(
                "CUDAExecutionProvider".parse::<Provider>().unwrap(),
                Provider::Cuda(0)
            ));
            assert!(matches!(
                "cuda:1".parse::<Provider>().unwrap(),
                Provider::Cuda(1)
            ));
            assert!("cuda:x".parse::<Provider>().is_err());
        }
        assert!(matches!(
            "./libfoo.so".parse::<Provider>().unwrap(),
            Provider::Library { .. }
        ));
        let missing = "/no/such/libprovider.so".parse::<Provider>().unwrap();
        let err = missing.instantiate().err().unwrap().to_string();
        assert!(err.contains("not found"), "{err}");
        let err = "tpu".parse::<Provider>().unwrap_err().to_string();
        assert!(err.contains("no provider has this name"), "{err}");
    }
}

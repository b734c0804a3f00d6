//! Choosing execution providers by name or value; which are compiled in.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use oxrt_core::{DeviceInfo, Error, ExecutionProvider, Result};

/// An execution provider to use in a session.
#[derive(Clone)]
#[non_exhaustive]
pub enum Provider {
    /// The CPU provider (cargo feature `cpu`, on by default).
    Cpu,
    /// Any provider implementing the trait.
    Custom(Arc<dyn ExecutionProvider>),
}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Provider::Cpu => f.write_str("Cpu"),
            Provider::Custom(p) => write!(f, "Custom({})", p.name()),
        }
    }
}

/// Names of the providers this build knows, compiled in or not.
const KNOWN: &[(&str, &str)] = &[
    ("cpu", "the `cpu` cargo feature of oxrt"),
    (
        "cuda",
        "a CUDA provider, which this version of oxrt does not include yet",
    ),
    (
        "fpga-sim",
        "the fpga-sim provider, which this version of oxrt does not include yet",
    ),
];

impl FromStr for Provider {
    type Err = Error;

    /// Parses a provider name (`cpu`, case-insensitive; `CPUExecutionProvider` too).
    fn from_str(name: &str) -> Result<Self> {
        let key = name.trim().to_ascii_lowercase();
        let key = key.trim_end_matches("executionprovider");
        match key {
            #[cfg(feature = "cpu")]
            "cpu" => Ok(Provider::Cpu),
            _ => {
                let available: Vec<&str> = available_providers().iter().map(|p| p.name).collect();
                let why = KNOWN
                    .iter()
                    .find(|(k, _)| *k == key)
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
            Provider::Custom(p) => Ok(p.clone()),
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

/// A provider compiled into this build.
#[derive(Debug, Clone)]
pub struct ProviderInfo {
    pub name: &'static str,
    pub device: DeviceInfo,
    /// Number of operators (domain, op type) with a kernel.
    pub operators: usize,
}

/// The providers compiled into this build.
pub fn available_providers() -> Vec<ProviderInfo> {
    #[allow(unused_mut)]
    let mut v = Vec::new();
    #[cfg(feature = "cpu")]
    {
        let p = oxrt_provider_cpu::CpuProvider::new();
        v.push(ProviderInfo {
            name: oxrt_provider_cpu::CpuProvider::NAME,
            device: p.device(),
            operators: p.registry().op_count(),
        });
    }
    v
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
        let err = "cuda".parse::<Provider>().unwrap_err().to_string();
        assert!(err.contains("'cuda' is not available"), "{err}");
        assert!(err.contains("available: [cpu]"), "{err}");
        let err = "tpu".parse::<Provider>().unwrap_err().to_string();
        assert!(err.contains("no provider has this name"), "{err}");
    }
}

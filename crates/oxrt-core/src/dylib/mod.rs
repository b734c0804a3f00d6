//! Loading execution providers from shared libraries through the C ABI of
//! `oxrt-provider-abi`: open the library, call its entry symbol with the
//! host's ABI version, check the table, create an instance.
//!
//! A library is never unloaded while an instance, kernel or buffer from it
//! exists (they hold the library), since its function pointers would dangle.
//!
//! [`LoadedProvider`] implements [`ExecutionProvider`]: capability queries,
//! kernels and device memory all go through the library's function table.

mod bridge;
mod kernel;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use oxrt_provider_abi::{
    device_type, OxrtDevice, OxrtKeyValue, OxrtProvider, OxrtProviderApi, OxrtProviderEntry,
    OxrtStatus, OxrtStr, OxrtWriteFn, OXRT_PROVIDER_ABI_VERSION, OXRT_PROVIDER_ENTRY_SYMBOL,
};

pub use bridge::{from_abi_dtype, to_abi_dtype};
use kernel::{AbiMemory, LoadedKernel};

use crate::device::DeviceMemory;
use crate::error::{Error, Result};
use crate::ir::{Graph, Node};
use crate::provider::{
    DeviceInfo, DeviceKind, ExecutionProvider, Kernel, KernelInfo, NodeContext, NodeGroup,
};

/// Why a provider library could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderLoadError {
    #[error("provider library {path} not found")]
    NotFound { path: PathBuf },
    #[error("{path} is not a loadable shared library: {reason}")]
    NotALibrary { path: PathBuf, reason: String },
    #[error(
        "{path} does not export the entry symbol '{symbol}': it is not an oxrt provider library"
    )]
    MissingSymbol { path: PathBuf, symbol: String },
    #[error("provider library {path} speaks ABI version {provider}, this oxrt speaks ABI version {host}")]
    AbiMismatch {
        path: PathBuf,
        host: u32,
        provider: u32,
    },
    #[error("provider library {path} returned an invalid function table: {reason}")]
    BadTable { path: PathBuf, reason: String },
    #[error("provider '{provider}' from {path} failed to initialize: {message}")]
    InitFailed {
        path: PathBuf,
        provider: String,
        message: String,
    },
}

/// Where a function table came from: an opened library, or a provider
/// linked into this binary.
enum Origin {
    /// Kept open while the table is in use.
    Library {
        _lib: libloading::Library,
    },
    Static,
}

/// An opened provider library (or a linked-in table) and its functions.
struct Library {
    api: *const OxrtProviderApi,
    path: PathBuf,
    // Declared last: dropped after everything that may call into it.
    _origin: Origin,
}

// SAFETY: the table is immutable static data of the library and the ABI
// requires its functions to be callable from any thread.
unsafe impl Send for Library {}
// SAFETY: as above; nothing in `Library` is mutated after loading.
unsafe impl Sync for Library {}

impl Library {
    fn api(&self) -> &OxrtProviderApi {
        // SAFETY: checked non-null at load time; it points to static data of
        // the library, which `self` keeps loaded.
        unsafe { &*self.api }
    }

    /// The provider's last error message (per thread).
    fn last_error(&self, provider: OxrtProvider) -> String {
        read_message(self.api().last_error, provider)
    }
}

/// A live provider instance; destroyed when the last kernel, buffer and
/// provider handle referring to it are gone.
pub(crate) struct Instance {
    handle: OxrtProvider,
    name: String,
    library: Arc<Library>,
}

// SAFETY: the ABI requires provider instances to be usable from any thread.
unsafe impl Send for Instance {}
// SAFETY: as above; the host never mutates the instance itself.
unsafe impl Sync for Instance {}

impl Instance {
    fn api(&self) -> &OxrtProviderApi {
        self.library.api()
    }

    /// The error for a failed call, with the provider's message.
    fn failure(&self, call: &str, status: OxrtStatus, message: Option<String>) -> Error {
        let message = message.unwrap_or_else(|| self.library.last_error(self.handle));
        Error::Provider {
            provider: self.name.clone(),
            call: call.to_string(),
            status: format!("{status:?}"),
            message: if message.is_empty() {
                "no message".into()
            } else {
                message
            },
        }
    }

    /// `Ok` for [`OxrtStatus::Ok`], else the provider's error.
    fn check(&self, call: &str, status: OxrtStatus) -> Result<()> {
        if status == OxrtStatus::Ok {
            Ok(())
        } else {
            Err(self.failure(call, status, None))
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // SAFETY: the handle came from `create` and is destroyed exactly once.
        unsafe { (self.api().destroy)(self.handle) };
    }
}

/// A provider instance created through the C ABI, from a shared library or
/// from a provider linked into this binary.
pub struct LoadedProvider {
    instance: Arc<Instance>,
    version: String,
    device: OxrtDevice,
    memory: Option<AbiMemory>,
}

impl LoadedProvider {
    /// Opens the library at `path` and creates a provider with `options`.
    pub fn load(
        path: impl AsRef<Path>,
        options: &[(String, String)],
    ) -> Result<Self, ProviderLoadError> {
        Self::load_with_entry(path, OXRT_PROVIDER_ENTRY_SYMBOL, options)
    }

    /// Creates a provider from the function table of a provider linked into
    /// this binary (the same table its shared library would export).
    pub fn from_static(
        api: &'static OxrtProviderApi,
        options: &[(String, String)],
    ) -> Result<Self, ProviderLoadError> {
        // SAFETY: a `'static` reference is non-null and lives forever.
        let name = unsafe { api.name.to_string_lossy() };
        let path = PathBuf::from(format!("<linked provider {name}>"));
        Self::from_table(api, OxrtStatus::Ok, path, Origin::Static, options)
    }

    /// Like [`LoadedProvider::load`] with another entry symbol (for tests of
    /// misbehaving libraries).
    #[doc(hidden)]
    pub fn load_with_entry(
        path: impl AsRef<Path>,
        symbol: &str,
        options: &[(String, String)],
    ) -> Result<Self, ProviderLoadError> {
        let path = path.as_ref().to_path_buf();
        if !path.exists() {
            return Err(ProviderLoadError::NotFound { path });
        }
        // SAFETY: loading a library runs its initializers; the user named
        // this file as a provider library. Exercised by tests/provider_library.rs.
        let lib = unsafe { libloading::Library::new(&path) }.map_err(|e| {
            ProviderLoadError::NotALibrary {
                path: path.clone(),
                reason: error_chain(&e),
            }
        })?;
        let mut name = symbol.as_bytes().to_vec();
        name.push(0);
        // SAFETY: the symbol is declared by the ABI with this exact signature.
        let entry: OxrtProviderEntry =
            match unsafe { lib.get::<OxrtProviderEntry>(name.as_slice()) } {
                Ok(f) => *f,
                Err(_) => {
                    return Err(ProviderLoadError::MissingSymbol {
                        path,
                        symbol: symbol.to_string(),
                    })
                }
            };
        let mut api: *const OxrtProviderApi = std::ptr::null();
        // SAFETY: `api` is a valid out-pointer; the entry never unwinds (ABI rule).
        let status = unsafe { entry(OXRT_PROVIDER_ABI_VERSION, &mut api) };
        if api.is_null() {
            return Err(match status {
                OxrtStatus::AbiMismatch => ProviderLoadError::AbiMismatch {
                    path,
                    host: OXRT_PROVIDER_ABI_VERSION,
                    provider: 0,
                },
                s => ProviderLoadError::BadTable {
                    path,
                    reason: format!("the entry returned {s:?} and no table"),
                },
            });
        }
        // SAFETY: non-null pointer to the library's static table, which stays
        // valid while `lib` is loaded (it moves into the `Library` below).
        let api = unsafe { &*api };
        Self::from_table(api, status, path, Origin::Library { _lib: lib }, options)
    }

    /// Checks a table the entry returned and creates an instance.
    fn from_table(
        api: &OxrtProviderApi,
        status: OxrtStatus,
        path: PathBuf,
        origin: Origin,
        options: &[(String, String)],
    ) -> Result<Self, ProviderLoadError> {
        let bad = |reason: String| ProviderLoadError::BadTable {
            path: path.clone(),
            reason,
        };
        // The two leading fields are the same in every ABI version.
        let (version, size) = (api.abi_version, api.struct_size);
        if status == OxrtStatus::AbiMismatch || version > OXRT_PROVIDER_ABI_VERSION || version == 0
        {
            return Err(ProviderLoadError::AbiMismatch {
                path,
                host: OXRT_PROVIDER_ABI_VERSION,
                provider: version,
            });
        }
        if size < std::mem::size_of::<OxrtProviderApi>() {
            return Err(bad(format!(
                "struct_size {size} is smaller than the {} bytes of ABI version {version}",
                std::mem::size_of::<OxrtProviderApi>()
            )));
        }
        if status != OxrtStatus::Ok {
            return Err(bad(format!("the entry returned {status:?}")));
        }
        let library = Arc::new(Library {
            api,
            path: path.clone(),
            _origin: origin,
        });
        let t = library.api();
        // SAFETY: static strings of the library, valid while it is loaded.
        let (pname, pversion) = unsafe { (t.name.to_string_lossy(), t.version.to_string_lossy()) };
        let kv: Vec<OxrtKeyValue> = options
            .iter()
            .map(|(k, v)| OxrtKeyValue {
                key: OxrtStr::from_str(k),
                value: OxrtStr::from_str(v),
            })
            .collect();
        let mut handle: OxrtProvider = std::ptr::null_mut();
        // SAFETY: `kv` outlives the call; `handle` is a valid out-pointer.
        let status = unsafe { (t.create)(kv.as_ptr(), kv.len(), &mut handle) };
        if status != OxrtStatus::Ok || handle.is_null() {
            let message = library.last_error(std::ptr::null_mut());
            return Err(ProviderLoadError::InitFailed {
                path,
                provider: pname,
                message: if message.is_empty() {
                    format!("status {status:?}")
                } else {
                    message
                },
            });
        }
        let instance = Arc::new(Instance {
            handle,
            name: pname,
            library,
        });
        let mut device = OxrtDevice {
            device_type: device_type::CPU,
            device_id: 0,
        };
        // SAFETY: live instance; `device` is a valid out-pointer.
        let status = unsafe { (instance.api().get_device)(instance.handle, &mut device) };
        if status != OxrtStatus::Ok {
            return Err(bad(format!(
                "get_device failed: {}",
                instance.library.last_error(instance.handle)
            )));
        }
        let memory = (device.device_type != device_type::CPU).then(|| AbiMemory {
            instance: instance.clone(),
        });
        Ok(Self {
            instance,
            version: pversion,
            device,
            memory,
        })
    }

    /// The provider's name.
    pub fn name(&self) -> &str {
        &self.instance.name
    }

    /// The provider's version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Where the library was loaded from.
    pub fn path(&self) -> &Path {
        &self.instance.library.path
    }

    /// The provider's description of its device.
    pub fn device_description(&self) -> String {
        read_message(self.instance.api().device_description, self.instance.handle)
    }

    /// Asks the provider which nodes of a serialized model it takes.
    fn query(&self, model: &[u8], node_count: usize) -> Result<Vec<i64>> {
        let mut groups = vec![-1i64; node_count];
        // SAFETY: live instance; `model` and `groups` have the lengths passed.
        let status = unsafe {
            (self.instance.api().get_capability)(
                self.instance.handle,
                model.as_ptr(),
                model.len(),
                groups.as_mut_ptr(),
                node_count,
            )
        };
        self.instance.check("get_capability", status)?;
        Ok(groups)
    }
}

impl ExecutionProvider for LoadedProvider {
    fn name(&self) -> &str {
        &self.instance.name
    }

    fn device(&self) -> DeviceInfo {
        DeviceInfo {
            kind: match self.device.device_type {
                device_type::CPU => DeviceKind::Cpu,
                device_type::CUDA => DeviceKind::Cuda,
                _ => DeviceKind::Other(self.instance.name.clone()),
            },
            id: u32::try_from(self.device.device_id).unwrap_or(0),
            description: self.device_description(),
        }
    }

    fn supports(&self, node: &Node, ctx: &NodeContext<'_>) -> Result<(), String> {
        let info = KernelInfo {
            node: ctx.clone(),
            constants: BTreeMap::new(),
            output_types: Vec::new(),
            subgraphs: None,
        };
        let model = bridge::kernel_model(node, &info, false);
        match self.query(&model.bytes, 1) {
            Ok(groups) if groups.first().is_some_and(|&g| g >= 0) => Ok(()),
            Ok(_) => Err(format!("declined by {}", self.name())),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Asks the library once for the whole graph. This host compiles every
    /// node separately: a group of several nodes is taken node by node.
    fn capability(&self, graph: &Graph, opsets: &BTreeMap<String, i64>) -> Vec<NodeGroup> {
        let model = bridge::capability_model(graph, opsets);
        match self.query(&model, graph.nodes.len()) {
            Ok(groups) => groups
                .iter()
                .enumerate()
                .filter(|(_, &g)| g >= 0)
                .map(|(i, _)| NodeGroup { nodes: vec![i] })
                .collect(),
            Err(e) => {
                tracing::warn!(provider = self.name(), error = %e, "capability query failed; the provider takes no nodes");
                Vec::new()
            }
        }
    }

    fn create_kernel(&self, node: &Node, info: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
        let model = bridge::kernel_model(node, info, true);
        let mut handle = std::ptr::null_mut();
        // SAFETY: live instance; `model.bytes` has the length passed; `handle`
        // is a valid out-pointer.
        let status = unsafe {
            (self.instance.api().create_kernel)(
                self.instance.handle,
                model.bytes.as_ptr(),
                model.bytes.len(),
                &mut handle,
            )
        };
        self.instance.check("create_kernel", status)?;
        Ok(Box::new(LoadedKernel {
            instance: self.instance.clone(),
            handle,
            inputs: model.inputs,
            outputs: model.outputs,
            node_outputs: node.outputs.len(),
            device: self.memory.as_ref().map(|_| self.device),
        }))
    }

    fn device_memory(&self) -> Option<&dyn DeviceMemory> {
        self.memory.as_ref().map(|m| m as &dyn DeviceMemory)
    }
}

impl std::fmt::Debug for LoadedProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedProvider")
            .field("name", &self.name())
            .field("version", &self.version)
            .field("path", &self.path())
            .finish()
    }
}

/// Calls a message-writing table function, retrying with a larger buffer
/// when the message did not fit.
fn read_message(f: OxrtWriteFn, provider: OxrtProvider) -> String {
    let mut buf = vec![0u8; 512];
    // SAFETY: `buf` has `buf.len()` writable bytes; `provider` is live or null
    // as the function's contract allows.
    let n = unsafe { f(provider, buf.as_mut_ptr(), buf.len()) };
    if n > buf.len() {
        buf.resize(n, 0);
        // SAFETY: as above, with the larger buffer.
        unsafe { f(provider, buf.as_mut_ptr(), buf.len()) };
    }
    buf.truncate(n);
    String::from_utf8_lossy(&buf).into_owned()
}

/// libloading's `Display` says only "dlopen failed": include the source chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

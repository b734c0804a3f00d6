//! Loading execution providers from shared libraries through the C ABI of
//! `oxrt-provider-abi`: open the library, call its entry symbol with the
//! host's ABI version, check the table, create an instance.
//!
//! A library is never unloaded while an instance from it exists (the
//! instance holds the library), since its function pointers would dangle.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use oxrt_provider_abi::{
    OxrtKeyValue, OxrtProvider, OxrtProviderApi, OxrtProviderEntry, OxrtStatus, OxrtStr,
    OxrtWriteFn, OXRT_PROVIDER_ABI_VERSION, OXRT_PROVIDER_ENTRY_SYMBOL,
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

/// An opened provider library and its function table.
struct Library {
    api: *const OxrtProviderApi,
    path: PathBuf,
    // Declared last: dropped after everything that may call into it.
    _lib: libloading::Library,
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

/// A provider instance created from a shared library.
pub struct LoadedProvider {
    handle: OxrtProvider,
    name: String,
    version: String,
    library: Arc<Library>,
}

// SAFETY: the ABI requires provider instances to be usable from any thread.
unsafe impl Send for LoadedProvider {}
// SAFETY: as above; the host never mutates the instance itself.
unsafe impl Sync for LoadedProvider {}

impl LoadedProvider {
    /// Opens the library at `path` and creates a provider with `options`.
    pub fn load(
        path: impl AsRef<Path>,
        options: &[(String, String)],
    ) -> Result<Self, ProviderLoadError> {
        Self::load_with_entry(path, OXRT_PROVIDER_ENTRY_SYMBOL, options)
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
        let bad = |reason: &str| ProviderLoadError::BadTable {
            path: path.clone(),
            reason: reason.into(),
        };
        if api.is_null() {
            return Err(match status {
                OxrtStatus::AbiMismatch => ProviderLoadError::AbiMismatch {
                    path,
                    host: OXRT_PROVIDER_ABI_VERSION,
                    provider: 0,
                },
                s => bad(&format!("the entry returned {s:?} and no table")),
            });
        }
        // SAFETY: non-null pointer to the library's static table; the two
        // leading fields are the same in every ABI version.
        let (version, size) = unsafe { ((*api).abi_version, (*api).struct_size) };
        if status == OxrtStatus::AbiMismatch || version > OXRT_PROVIDER_ABI_VERSION || version == 0
        {
            return Err(ProviderLoadError::AbiMismatch {
                path,
                host: OXRT_PROVIDER_ABI_VERSION,
                provider: version,
            });
        }
        if size < std::mem::size_of::<OxrtProviderApi>() {
            return Err(bad(&format!(
                "struct_size {size} is smaller than the {} bytes of ABI version {version}",
                std::mem::size_of::<OxrtProviderApi>()
            )));
        }
        if status != OxrtStatus::Ok {
            return Err(bad(&format!("the entry returned {status:?}")));
        }
        let library = Arc::new(Library {
            api,
            path: path.clone(),
            _lib: lib,
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
        Ok(Self {
            handle,
            name: pname,
            version: pversion,
            library,
        })
    }

    /// The provider's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The provider's version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Where the library was loaded from.
    pub fn path(&self) -> &Path {
        &self.library.path
    }

    /// The provider's description of its device.
    pub fn device_description(&self) -> String {
        read_message(self.library.api().device_description, self.handle)
    }
}

impl Drop for LoadedProvider {
    fn drop(&mut self) {
        // SAFETY: the handle came from `create` and is destroyed exactly once.
        unsafe { (self.library.api().destroy)(self.handle) };
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

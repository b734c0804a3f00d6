//! Finding the CUDA libraries and a device, and the state one session
//! keeps on it: context, stream, cuBLAS handle, the compiled kernels and
//! a pinned staging buffer for host copies.
//!
//! cudarc loads the CUDA libraries at run time and panics when one is
//! missing, so every library is probed (`is_culib_present`) before the
//! first call into it, and absence becomes
//! [`Error::ProviderUnavailable`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream};
use oxrt_core::{Error, Result};

/// The provider's name in errors.
pub(crate) const NAME: &str = "cuda";

/// The kernels' CUDA source.
const SOURCE: &str = include_str!("kernels.cu");

/// `ProviderUnavailable` for the CUDA provider.
pub(crate) fn unavailable(reason: impl Into<String>) -> Error {
    Error::ProviderUnavailable {
        provider: NAME.into(),
        reason: reason.into(),
    }
}

/// A failed CUDA call as an error naming it.
pub(crate) fn failed(what: &str, e: impl std::fmt::Display) -> Error {
    Error::invalid(format!("CUDA {what} failed: {e}"))
}

/// Whether the driver library can be loaded.
pub fn driver_present() -> bool {
    // SAFETY: only tries to open the library (dlopen) and drops it; no
    // CUDA function is called.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// Whether NVRTC (the run-time CUDA compiler) can be loaded.
pub fn nvrtc_present() -> bool {
    // SAFETY: as in `driver_present`.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Whether cuBLAS can be loaded.
pub fn cublas_present() -> bool {
    // SAFETY: as in `driver_present`.
    unsafe { cudarc::cublas::sys::is_culib_present() }
}

/// Checks that device `ordinal` can be used: the driver, NVRTC and cuBLAS
/// load and the device exists. Returns the number of devices.
pub fn probe(ordinal: usize) -> Result<usize> {
    if !driver_present() {
        return Err(unavailable(
            "no CUDA driver found (libcuda.so could not be loaded)",
        ));
    }
    let count = CudaContext::device_count()
        .map_err(|e| unavailable(format!("the CUDA driver did not initialize: {e}")))?;
    let count = usize::try_from(count).unwrap_or(0);
    if count == 0 {
        return Err(unavailable("no CUDA device"));
    }
    if ordinal >= count {
        return Err(unavailable(format!(
            "no CUDA device {ordinal}: this machine has {count}"
        )));
    }
    if !nvrtc_present() {
        return Err(unavailable(
            "NVRTC not found (libnvrtc.so.12 could not be loaded): install the CUDA runtime compiler",
        ));
    }
    if !cublas_present() {
        return Err(unavailable(
            "cuBLAS not found (libcublas.so.12 could not be loaded)",
        ));
    }
    Ok(count)
}

/// One session's state on its device.
pub(crate) struct Gpu {
    pub ctx: Arc<CudaContext>,
    /// The stream every kernel and copy of the session runs on, in order.
    pub stream: Arc<CudaStream>,
    pub blas: CudaBlas,
    module: OnceLock<std::result::Result<Arc<CudaModule>, String>>,
    functions: Mutex<HashMap<&'static str, CudaFunction>>,
    /// Pinned host memory that host <-> device copies go through.
    /// (Grown on demand, reused by every copy.)
    pub staging: Mutex<Option<cudarc::driver::PinnedHostSlice<u8>>>,
}

impl Gpu {
    /// Opens device `ordinal` (after [`probe`]).
    pub fn open(ordinal: usize) -> Result<Arc<Self>> {
        probe(ordinal)?;
        let ctx = CudaContext::new(ordinal)
            .map_err(|e| unavailable(format!("cannot open CUDA device {ordinal}: {e}")))?;
        keep_pool_memory(&ctx);
        let stream = ctx.new_stream().map_err(|e| failed("stream creation", e))?;
        let blas = CudaBlas::new(stream.clone()).map_err(|e| failed("cuBLAS initialization", e))?;
        Ok(Arc::new(Self {
            ctx,
            stream,
            blas,
            module: OnceLock::new(),
            functions: Mutex::new(HashMap::new()),
            staging: Mutex::new(None),
        }))
    }

    /// The device's name and compute capability.
    pub fn describe(&self) -> String {
        let name = self.ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        match self.ctx.compute_capability() {
            Ok((major, minor)) => format!("{name} (compute {major}.{minor})"),
            Err(_) => name,
        }
    }

    /// Kernel `name` from the module, compiled with NVRTC on first use.
    pub fn function(&self, name: &'static str) -> Result<CudaFunction> {
        let module = self
            .module
            .get_or_init(|| {
                let ptx = cudarc::nvrtc::compile_ptx(SOURCE).map_err(|e| format!("NVRTC: {e}"))?;
                self.ctx
                    .load_module(ptx)
                    .map_err(|e| format!("loading the kernels: {e}"))
            })
            .as_ref()
            .map_err(|e| failed("kernel compilation", e))?;
        let mut cache = self
            .functions
            .lock()
            .map_err(|_| Error::invalid("the CUDA kernel cache is poisoned"))?;
        if let Some(f) = cache.get(name) {
            return Ok(f.clone());
        }
        let f = module
            .load_function(name)
            .map_err(|e| failed(&format!("loading kernel {name}"), e))?;
        cache.insert(name, f.clone());
        Ok(f)
    }

    /// `bytes` of uninitialized device memory (from the stream's pool).
    pub fn alloc(&self, bytes: usize) -> Result<CudaSlice<u8>> {
        // SAFETY: the memory is written by a kernel or a copy before any
        // read: every caller fills the whole buffer it asks for.
        unsafe { self.stream.alloc::<u8>(bytes.max(1)) }.map_err(|e| failed("allocation", e))
    }
}

/// Keeps freed device memory in the device's default pool instead of
/// returning it to the driver, so runs after the first do not allocate
/// (best effort: devices without memory pools keep the default).
fn keep_pool_memory(ctx: &CudaContext) {
    use cudarc::driver::sys;
    if !ctx.has_async_alloc() {
        return;
    }
    let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
    // SAFETY: `ctx` is a live context of device `cu_device()`; the pool
    // handle is written by the driver before use, and the attribute value
    // is a u64 as CU_MEMPOOL_ATTR_RELEASE_THRESHOLD requires.
    unsafe {
        if sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()) != sys::CUresult::CUDA_SUCCESS
        {
            return;
        }
        let mut threshold: u64 = u64::MAX;
        let _ = sys::cuMemPoolSetAttribute(
            pool,
            sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
            (&mut threshold as *mut u64).cast(),
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn without_a_driver_probing_is_a_typed_error_not_a_panic() {
        if driver_present() {
            eprintln!("skipped: a CUDA driver is present on this machine");
            return;
        }
        let err = probe(0).unwrap_err();
        assert!(matches!(err, Error::ProviderUnavailable { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "execution provider 'cuda' is unavailable: no CUDA driver found (libcuda.so could not be loaded)"
        );
        assert!(Gpu::open(0).is_err());
    }

    #[test]
    fn the_kernels_compile_with_nvrtc() {
        if !nvrtc_present() {
            eprintln!("skipped: NVRTC (libnvrtc.so) is not installed here");
            return;
        }
        match cudarc::nvrtc::compile_ptx(SOURCE) {
            Ok(_) => {}
            Err(e) => panic!("kernels.cu does not compile: {e:?}"),
        }
    }
}

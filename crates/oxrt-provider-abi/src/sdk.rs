//! Helpers for providers written in Rust: implement [`ProviderImpl`] and
//! export the library with [`export_provider!`](crate::export_provider).
//! Every generated `extern "C"` function catches panics and turns them into
//! [`OxrtStatus::Internal`] with the panic message as the last error.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use std::ffi::c_void;

use crate::{
    device_type, write_message, OxrtDataType, OxrtDevice, OxrtKernel, OxrtKeyValue,
    OxrtOutputAllocator, OxrtProfile, OxrtProvider, OxrtProviderApi, OxrtStatus, OxrtTensor,
};

/// A failure to report across the boundary: a status and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub status: OxrtStatus,
    pub message: String,
}

impl Failure {
    /// A failure with `status`.
    pub fn new(status: OxrtStatus, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// [`OxrtStatus::Unsupported`].
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(OxrtStatus::Unsupported, message)
    }

    /// [`OxrtStatus::InvalidArgument`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(OxrtStatus::InvalidArgument, message)
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self::new(OxrtStatus::InvalidArgument, message)
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        Self::from(message.to_string())
    }
}

/// Result of a provider function.
pub type Outcome<T> = Result<T, Failure>;

/// What a Rust provider implements. Only `create`, `device_description`,
/// `capability`, `create_kernel` and `compute` are required; the memory
/// functions matter only to providers whose [`ProviderImpl::device`] is not
/// the host.
pub trait ProviderImpl: Sized + Send + Sync + 'static {
    /// A compiled node group.
    type Kernel: Send + Sync + 'static;

    /// Creates an instance from key-value options; the error becomes the
    /// host's "provider init failure" message.
    fn create(options: &[(String, String)]) -> Result<Self, String>;

    /// One line describing the device.
    fn device_description(&self) -> String;

    /// The device whose memory kernels use (the host by default).
    fn device(&self) -> OxrtDevice {
        OxrtDevice {
            device_type: device_type::CPU,
            device_id: 0,
        }
    }

    /// Group ids (or -1) for each node of the serialized model's graph.
    fn capability(&self, model: &[u8]) -> Outcome<Vec<i64>>;

    /// Compiles the serialized one-group model into a kernel.
    fn create_kernel(&self, model: &[u8]) -> Outcome<Self::Kernel>;

    /// Runs `kernel` on `inputs`, allocating and writing every output.
    fn compute(
        &self,
        kernel: &Self::Kernel,
        inputs: &[TensorDesc],
        outputs: &mut Outputs<'_>,
        profile: &mut OxrtProfile,
    ) -> Outcome<()>;

    /// Allocates device memory.
    fn alloc(&self, _bytes: usize) -> Outcome<*mut c_void> {
        Err(Failure::unsupported("this provider uses host memory"))
    }

    /// Frees device memory from [`ProviderImpl::alloc`].
    fn free(&self, _ptr: *mut c_void) {}

    /// Copies host bytes to the start of device memory `dst`.
    fn copy_to_device(
        &self,
        _dst: *mut c_void,
        _src: &[u8],
        _profile: &mut OxrtProfile,
    ) -> Outcome<()> {
        Err(Failure::unsupported("this provider uses host memory"))
    }

    /// Copies the start of device memory `src` into host bytes.
    fn copy_to_host(
        &self,
        _dst: &mut [u8],
        _src: *const c_void,
        _profile: &mut OxrtProfile,
    ) -> Outcome<()> {
        Err(Failure::unsupported("this provider uses host memory"))
    }
}

/// A tensor passed to `compute`, read from its [`OxrtTensor`] descriptor.
#[derive(Debug, Clone)]
pub struct TensorDesc {
    pub dtype: OxrtDataType,
    pub device: OxrtDevice,
    pub shape: Vec<i64>,
    /// Strides in elements, when the host gave any (it gives none today).
    pub strides: Option<Vec<i64>>,
    /// The data pointer with `byte_offset` applied.
    pub data: *mut c_void,
}

impl TensorDesc {
    /// Reads a descriptor.
    ///
    /// # Safety
    /// `t.shape` (and `t.strides` unless null) must point to `t.ndim` values.
    pub unsafe fn read(t: &OxrtTensor) -> Outcome<Self> {
        let ndim = usize::try_from(t.ndim)
            .map_err(|_| Failure::invalid(format!("tensor descriptor with ndim {}", t.ndim)))?;
        let read = |p: *const i64| -> Vec<i64> {
            if ndim == 0 || p.is_null() {
                Vec::new()
            } else {
                // SAFETY: the caller guarantees `ndim` values at `p`.
                unsafe { std::slice::from_raw_parts(p, ndim) }.to_vec()
            }
        };
        if ndim > 0 && t.shape.is_null() {
            return Err(Failure::invalid("tensor descriptor without a shape"));
        }
        let offset = usize::try_from(t.byte_offset)
            .map_err(|_| Failure::invalid("tensor byte_offset does not fit in memory"))?;
        Ok(Self {
            dtype: t.dtype,
            device: t.device,
            shape: read(t.shape),
            strides: (!t.strides.is_null()).then(|| read(t.strides)),
            data: t.data.cast::<u8>().wrapping_add(offset).cast(),
        })
    }

    /// Number of elements (0 if any dimension is negative).
    pub fn numel(&self) -> usize {
        self.shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(usize::try_from(d).ok()?))
            .unwrap_or(0)
    }

    /// Size of the compact data in bytes.
    pub fn byte_len(&self) -> usize {
        self.numel() * usize::from(self.dtype.bits).div_ceil(8) * usize::from(self.dtype.lanes)
    }

    /// The byte length of compact data in host memory (`None` for device
    /// memory, strided data, or a null pointer to non-empty data).
    fn host_len(&self) -> Option<usize> {
        if self.device.device_type != device_type::CPU || self.strides.is_some() {
            return None;
        }
        let len = self.byte_len();
        (len == 0 || !self.data.is_null()).then_some(len)
    }

    /// The data as host bytes, when the tensor lives in host memory.
    pub fn host_bytes(&self) -> Option<&[u8]> {
        let len = self.host_len()?;
        if len == 0 {
            return Some(&[]);
        }
        // SAFETY: the host's contract: a CPU tensor's data points to its
        // `byte_len` compact bytes, valid for the duration of `compute`.
        Some(unsafe { std::slice::from_raw_parts(self.data.cast::<u8>(), len) })
    }

    /// The data as writable host bytes, when the tensor lives in host memory
    /// (outputs the host allocated for this call).
    pub fn host_bytes_mut(&mut self) -> Option<&mut [u8]> {
        let len = self.host_len()?;
        if len == 0 {
            return Some(&mut []);
        }
        // SAFETY: the host's contract: an output's data is `byte_len` bytes
        // of memory it allocated for this call and reads only afterwards.
        Some(unsafe { std::slice::from_raw_parts_mut(self.data.cast::<u8>(), len) })
    }
}

/// The host's output allocator, as seen by `compute`.
pub struct Outputs<'a> {
    allocator: &'a OxrtOutputAllocator,
    count: usize,
}

impl Outputs<'_> {
    /// Number of outputs the kernel must produce.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the kernel has no outputs.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Asks the host for output `index` with `dtype` and `shape`; returns its
    /// descriptor (data on the provider's device).
    pub fn alloc(
        &mut self,
        index: usize,
        dtype: OxrtDataType,
        shape: &[i64],
    ) -> Outcome<TensorDesc> {
        if index >= self.count {
            return Err(Failure::invalid(format!(
                "output #{index} requested, the kernel has {} outputs",
                self.count
            )));
        }
        let ndim =
            i32::try_from(shape.len()).map_err(|_| Failure::invalid("too many dimensions"))?;
        let mut t = OxrtTensor {
            data: std::ptr::null_mut(),
            device: OxrtDevice {
                device_type: device_type::CPU,
                device_id: 0,
            },
            ndim: 0,
            dtype,
            shape: std::ptr::null(),
            strides: std::ptr::null(),
            byte_offset: 0,
        };
        // SAFETY: the host's allocator with its own context; `shape` holds
        // `ndim` values and `t` is a valid out-pointer.
        let status = unsafe {
            (self.allocator.alloc)(
                self.allocator.ctx,
                index,
                dtype,
                ndim,
                shape.as_ptr(),
                &mut t,
            )
        };
        if status != OxrtStatus::Ok {
            return Err(Failure::new(
                status,
                format!("the host could not allocate output #{index} of shape {shape:?}"),
            ));
        }
        // SAFETY: the host filled a descriptor whose shape holds `ndim` values.
        unsafe { TensorDesc::read(&t) }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Records the message returned by the table's `last_error`.
pub fn set_last_error(msg: impl Into<String>) {
    let msg = msg.into();
    LAST_ERROR.with(|e| *e.borrow_mut() = msg);
}

/// Runs `f`, turning a panic into [`OxrtStatus::Internal`] with its message.
pub fn guard(f: impl FnOnce() -> OxrtStatus) -> OxrtStatus {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let msg = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        set_last_error(format!("provider panicked: {msg}"));
        OxrtStatus::Internal
    })
}

/// `create` of the table for provider type `P`.
///
/// # Safety
/// `options` must point to `count` valid key-value pairs and `out` must be writable.
pub unsafe extern "C" fn create_impl<P: ProviderImpl>(
    options: *const OxrtKeyValue,
    count: usize,
    out: *mut OxrtProvider,
) -> OxrtStatus {
    guard(|| {
        if out.is_null() || (options.is_null() && count > 0) {
            set_last_error("create: null pointer argument");
            return OxrtStatus::InvalidArgument;
        }
        let pairs: &[OxrtKeyValue] = if count == 0 {
            &[]
        } else {
            // SAFETY: the host passes `count` valid pairs at `options`.
            unsafe { std::slice::from_raw_parts(options, count) }
        };
        // SAFETY: each string is `len` readable bytes owned by the host for this call.
        let opts: Vec<(String, String)> = pairs
            .iter()
            .map(|kv| unsafe { (kv.key.to_string_lossy(), kv.value.to_string_lossy()) })
            .collect();
        match P::create(&opts) {
            Ok(p) => {
                // SAFETY: `out` was checked non-null and is writable per the contract.
                unsafe { *out = Box::into_raw(Box::new(p)).cast() };
                OxrtStatus::Ok
            }
            Err(msg) => {
                set_last_error(msg);
                OxrtStatus::InvalidArgument
            }
        }
    })
}

/// `destroy` of the table for provider type `P`.
///
/// # Safety
/// `provider` must come from `create_impl::<P>` and not be used afterwards.
pub unsafe extern "C" fn destroy_impl<P: ProviderImpl>(provider: OxrtProvider) {
    let _ = guard(|| {
        if !provider.is_null() {
            // SAFETY: created by `Box::into_raw` in `create_impl::<P>`, destroyed once.
            drop(unsafe { Box::from_raw(provider.cast::<P>()) });
        }
        OxrtStatus::Ok
    });
}

/// `device_description` of the table for provider type `P`.
///
/// # Safety
/// `provider` must come from `create_impl::<P>`; `buf` must hold `cap` bytes.
pub unsafe extern "C" fn device_description_impl<P: ProviderImpl>(
    provider: OxrtProvider,
    buf: *mut u8,
    cap: usize,
) -> usize {
    let mut len = 0;
    let _ = guard(|| {
        if provider.is_null() {
            return OxrtStatus::InvalidArgument;
        }
        // SAFETY: a live instance created by `create_impl::<P>`.
        let p = unsafe { &*provider.cast::<P>() };
        // SAFETY: the host guarantees `cap` writable bytes at `buf`.
        len = unsafe { write_message(&p.device_description(), buf, cap) };
        OxrtStatus::Ok
    });
    len
}

/// `last_error` of the table (the message is per thread).
///
/// # Safety
/// `buf` must hold `cap` writable bytes.
pub unsafe extern "C" fn last_error_impl(
    _provider: OxrtProvider,
    buf: *mut u8,
    cap: usize,
) -> usize {
    // SAFETY: the host guarantees `cap` writable bytes at `buf`.
    LAST_ERROR.with(|e| unsafe { write_message(&e.borrow(), buf, cap) })
}

/// Turns an [`Outcome`] into a status, recording the message of a failure.
fn report(result: Outcome<()>) -> OxrtStatus {
    match result {
        Ok(()) => OxrtStatus::Ok,
        Err(f) => {
            set_last_error(f.message);
            f.status
        }
    }
}

/// The live instance behind `provider`, or an error for a null handle.
///
/// # Safety
/// A non-null `provider` must come from `create_impl::<P>` and still be live.
unsafe fn instance<'a, P: ProviderImpl>(provider: OxrtProvider) -> Outcome<&'a P> {
    if provider.is_null() {
        return Err(Failure::invalid("null provider handle"));
    }
    // SAFETY: per the caller's contract.
    Ok(unsafe { &*provider.cast::<P>() })
}

/// Borrows `len` bytes at `ptr` as a slice (empty for a null pointer with
/// length 0).
///
/// # Safety
/// `ptr` must be valid for `len` bytes for the lifetime of the borrow.
unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> Outcome<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Failure::invalid("null buffer with a non-zero length"));
    }
    // SAFETY: per the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Stores what a call cost where the host asked for it.
///
/// # Safety
/// `profile` must be writable or null.
unsafe fn write_profile(profile: *mut OxrtProfile, cost: OxrtProfile) {
    if !profile.is_null() {
        // SAFETY: non-null and writable per the caller's contract.
        unsafe { *profile = cost };
    }
}

/// `get_device` of the table for provider type `P`.
///
/// # Safety
/// `provider` must be live and `out` writable.
pub unsafe extern "C" fn get_device_impl<P: ProviderImpl>(
    provider: OxrtProvider,
    out: *mut OxrtDevice,
) -> OxrtStatus {
    guard(|| {
        report((|| {
            // SAFETY: forwarded contract.
            let p = unsafe { instance::<P>(provider)? };
            if out.is_null() {
                return Err(Failure::invalid("get_device: null out-pointer"));
            }
            // SAFETY: checked non-null, writable per the contract.
            unsafe { *out = p.device() };
            Ok(())
        })())
    })
}

/// `get_capability` of the table for provider type `P`.
///
/// # Safety
/// `provider` must be live, `model` hold `len` bytes, `groups` hold
/// `node_count` writable values.
pub unsafe extern "C" fn get_capability_impl<P: ProviderImpl>(
    provider: OxrtProvider,
    model: *const u8,
    len: usize,
    groups: *mut i64,
    node_count: usize,
) -> OxrtStatus {
    guard(|| {
        report((|| {
            // SAFETY: forwarded contract.
            let (p, model) = unsafe { (instance::<P>(provider)?, bytes(model, len)?) };
            let found = p.capability(model)?;
            if found.len() != node_count {
                return Err(Failure::invalid(format!(
                    "capability: the host says the graph has {node_count} nodes, the provider read {}",
                    found.len()
                )));
            }
            if node_count > 0 {
                if groups.is_null() {
                    return Err(Failure::invalid("capability: null groups buffer"));
                }
                // SAFETY: `groups` holds `node_count` writable values.
                unsafe { std::ptr::copy_nonoverlapping(found.as_ptr(), groups, node_count) };
            }
            Ok(())
        })())
    })
}

/// `create_kernel` of the table for provider type `P`.
///
/// # Safety
/// `provider` must be live, `model` hold `len` bytes and `out` be writable.
pub unsafe extern "C" fn create_kernel_impl<P: ProviderImpl>(
    provider: OxrtProvider,
    model: *const u8,
    len: usize,
    out: *mut OxrtKernel,
) -> OxrtStatus {
    guard(|| {
        report((|| {
            // SAFETY: forwarded contract.
            let (p, model) = unsafe { (instance::<P>(provider)?, bytes(model, len)?) };
            if out.is_null() {
                return Err(Failure::invalid("create_kernel: null out-pointer"));
            }
            let kernel = p.create_kernel(model)?;
            // SAFETY: checked non-null, writable per the contract.
            unsafe { *out = Box::into_raw(Box::new(kernel)).cast() };
            Ok(())
        })())
    })
}

/// `destroy_kernel` of the table for provider type `P`.
///
/// # Safety
/// `kernel` must come from `create_kernel_impl::<P>` and not be used afterwards.
pub unsafe extern "C" fn destroy_kernel_impl<P: ProviderImpl>(
    _provider: OxrtProvider,
    kernel: OxrtKernel,
) {
    let _ = guard(|| {
        if !kernel.is_null() {
            // SAFETY: created by `Box::into_raw` in `create_kernel_impl::<P>`, destroyed once.
            drop(unsafe { Box::from_raw(kernel.cast::<P::Kernel>()) });
        }
        OxrtStatus::Ok
    });
}

/// `compute` of the table for provider type `P`.
///
/// # Safety
/// `provider` and `kernel` must be live; `inputs` must hold `n_inputs`
/// valid descriptors; `outputs` must be the host's allocator; `profile` must
/// be writable or null.
pub unsafe extern "C" fn compute_impl<P: ProviderImpl>(
    provider: OxrtProvider,
    kernel: OxrtKernel,
    inputs: *const OxrtTensor,
    n_inputs: usize,
    outputs: *const OxrtOutputAllocator,
    n_outputs: usize,
    profile: *mut OxrtProfile,
) -> OxrtStatus {
    guard(|| {
        report((|| {
            // SAFETY: forwarded contract.
            let p = unsafe { instance::<P>(provider)? };
            if kernel.is_null() || outputs.is_null() || (inputs.is_null() && n_inputs > 0) {
                return Err(Failure::invalid("compute: null pointer argument"));
            }
            // SAFETY: a live kernel from `create_kernel_impl::<P>`.
            let kernel = unsafe { &*kernel.cast::<P::Kernel>() };
            let raw: &[OxrtTensor] = if n_inputs == 0 {
                &[]
            } else {
                // SAFETY: `n_inputs` descriptors at `inputs`.
                unsafe { std::slice::from_raw_parts(inputs, n_inputs) }
            };
            // SAFETY: each descriptor's shape holds `ndim` values (host contract).
            let descs = raw
                .iter()
                .map(|t| unsafe { TensorDesc::read(t) })
                .collect::<Outcome<Vec<_>>>()?;
            let mut outs = Outputs {
                // SAFETY: checked non-null; the host's allocator lives for the call.
                allocator: unsafe { &*outputs },
                count: n_outputs,
            };
            let mut local = OxrtProfile::default();
            p.compute(kernel, &descs, &mut outs, &mut local)?;
            // SAFETY: writable or null per the contract.
            unsafe { write_profile(profile, local) };
            Ok(())
        })())
    })
}

/// `alloc` of the table for provider type `P`.
///
/// # Safety
/// `provider` must be live and `out` writable.
pub unsafe extern "C" fn alloc_impl<P: ProviderImpl>(
    provider: OxrtProvider,
    size: usize,
    out: *mut *mut c_void,
) -> OxrtStatus {
    guard(|| {
        report((|| {
            // SAFETY: forwarded contract.
            let p = unsafe { instance::<P>(provider)? };
            if out.is_null() {
                return Err(Failure::invalid("alloc: null out-pointer"));
            }
            let ptr = p.alloc(size)?;
            // SAFETY: checked non-null, writable per the contract.
            unsafe { *out = ptr };
            Ok(())
        })())
    })
}

/// `free` of the table for provider type `P`.
///
/// # Safety
/// `provider` must be live; `ptr` must come from its `alloc`.
pub unsafe extern "C" fn free_impl<P: ProviderImpl>(provider: OxrtProvider, ptr: *mut c_void) {
    let _ = guard(|| {
        // SAFETY: forwarded contract.
        if let Ok(p) = unsafe { instance::<P>(provider) } {
            p.free(ptr);
        }
        OxrtStatus::Ok
    });
}

/// `copy_to_device` of the table for provider type `P`.
///
/// # Safety
/// `provider` must be live; `src` must hold `size` bytes; `dst` must be
/// device memory of at least `size` bytes; `profile` writable or null.
pub unsafe extern "C" fn copy_to_device_impl<P: ProviderImpl>(
    provider: OxrtProvider,
    dst: *mut c_void,
    src: *const u8,
    size: usize,
    profile: *mut OxrtProfile,
) -> OxrtStatus {
    guard(|| {
        report((|| {
            // SAFETY: forwarded contract.
            let (p, src) = unsafe { (instance::<P>(provider)?, bytes(src, size)?) };
            let mut local = OxrtProfile::default();
            p.copy_to_device(dst, src, &mut local)?;
            // SAFETY: writable or null per the contract.
            unsafe { write_profile(profile, local) };
            Ok(())
        })())
    })
}

/// `copy_to_host` of the table for provider type `P`.
///
/// # Safety
/// `provider` must be live; `dst` must hold `size` writable bytes; `src`
/// must be device memory of at least `size` bytes; `profile` writable or null.
pub unsafe extern "C" fn copy_to_host_impl<P: ProviderImpl>(
    provider: OxrtProvider,
    dst: *mut u8,
    src: *const c_void,
    size: usize,
    profile: *mut OxrtProfile,
) -> OxrtStatus {
    guard(|| {
        report((|| {
            // SAFETY: forwarded contract.
            let p = unsafe { instance::<P>(provider)? };
            let dst: &mut [u8] = if size == 0 {
                &mut []
            } else if dst.is_null() {
                return Err(Failure::invalid("copy_to_host: null destination"));
            } else {
                // SAFETY: `size` writable host bytes at `dst`.
                unsafe { std::slice::from_raw_parts_mut(dst, size) }
            };
            let mut local = OxrtProfile::default();
            p.copy_to_host(dst, src, &mut local)?;
            // SAFETY: writable or null per the contract.
            unsafe { write_profile(profile, local) };
            Ok(())
        })())
    })
}

/// The function table for provider type `P` (what [`export_provider!`](crate::export_provider) exports).
pub const fn api_table<P: ProviderImpl>(
    name: &'static str,
    version: &'static str,
) -> OxrtProviderApi {
    OxrtProviderApi {
        abi_version: crate::OXRT_PROVIDER_ABI_VERSION,
        struct_size: std::mem::size_of::<OxrtProviderApi>(),
        name: crate::OxrtStr::from_str(name),
        version: crate::OxrtStr::from_str(version),
        create: create_impl::<P>,
        destroy: destroy_impl::<P>,
        device_description: device_description_impl::<P>,
        last_error: last_error_impl,
        get_device: get_device_impl::<P>,
        get_capability: get_capability_impl::<P>,
        create_kernel: create_kernel_impl::<P>,
        destroy_kernel: destroy_kernel_impl::<P>,
        compute: compute_impl::<P>,
        alloc: alloc_impl::<P>,
        free: free_impl::<P>,
        copy_to_device: copy_to_device_impl::<P>,
        copy_to_host: copy_to_host_impl::<P>,
    }
}

/// The entry point's logic: serves any host at least as new as ABI 1.
///
/// # Safety
/// `out` must be writable.
pub unsafe fn entry_impl(
    api: &'static OxrtProviderApi,
    host_abi_version: u32,
    out: *mut *const OxrtProviderApi,
) -> OxrtStatus {
    guard(|| {
        if out.is_null() {
            return OxrtStatus::InvalidArgument;
        }
        // SAFETY: `out` is non-null and writable per the contract.
        unsafe { *out = api };
        if host_abi_version < api.abi_version {
            set_last_error(format!(
                "provider needs ABI {} but the host speaks ABI {host_abi_version}",
                api.abi_version
            ));
            return OxrtStatus::AbiMismatch;
        }
        OxrtStatus::Ok
    })
}

/// Exports `$ty` (a [`ProviderImpl`]) as an oxrt provider library: a static
/// [`OxrtProviderApi`] and the `oxrt_provider_entry` symbol.
#[macro_export]
macro_rules! export_provider {
    ($ty:ty, name = $name:expr, version = $version:expr) => {
        /// The provider's function table.
        pub static OXRT_PROVIDER_API: $crate::OxrtProviderApi =
            $crate::sdk::api_table::<$ty>($name, $version);

        /// The provider library's entry point.
        ///
        /// # Safety
        /// `out` must be writable.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn oxrt_provider_entry(
            host_abi_version: u32,
            out: *mut *const $crate::OxrtProviderApi,
        ) -> $crate::OxrtStatus {
            // SAFETY: forwarded contract.
            unsafe { $crate::sdk::entry_impl(&OXRT_PROVIDER_API, host_abi_version, out) }
        }
    };
}

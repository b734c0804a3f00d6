//! Helpers for providers written in Rust: implement [`ProviderImpl`] and
//! export the library with [`export_provider!`](crate::export_provider).
//! Every generated `extern "C"` function catches panics and turns them into
//! [`OxrtStatus::Internal`] with the panic message as the last error.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::{write_message, OxrtKeyValue, OxrtProvider, OxrtProviderApi, OxrtStatus};

/// What a Rust provider implements.
pub trait ProviderImpl: Sized + Send + Sync + 'static {
    /// Creates an instance from key-value options; the error becomes the
    /// host's "provider init failure" message.
    fn create(options: &[(String, String)]) -> Result<Self, String>;
    /// One line describing the device.
    fn device_description(&self) -> String;
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
        static OXRT_PROVIDER_API: $crate::OxrtProviderApi = $crate::OxrtProviderApi {
            abi_version: $crate::OXRT_PROVIDER_ABI_VERSION,
            struct_size: ::std::mem::size_of::<$crate::OxrtProviderApi>(),
            name: $crate::OxrtStr::from_str($name),
            version: $crate::OxrtStr::from_str($version),
            create: $crate::sdk::create_impl::<$ty>,
            destroy: $crate::sdk::destroy_impl::<$ty>,
            device_description: $crate::sdk::device_description_impl::<$ty>,
            last_error: $crate::sdk::last_error_impl,
        };

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

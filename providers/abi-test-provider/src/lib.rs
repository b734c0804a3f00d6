//! A provider library for loader tests, written against the ABI alone.
//!
//! - `oxrt_provider_entry`: a well-behaved provider. Options `fail_init=1`
//!   and `panic_init=1` make `create` fail or panic.
//! - `oxrt_provider_entry_v99`: claims ABI version 99.
//! - `oxrt_provider_entry_panic`: panics inside the entry point.

use oxrt_provider_abi::sdk::{entry_impl, guard, ProviderImpl};
use oxrt_provider_abi::{export_provider, OxrtProviderApi, OxrtStatus, OxrtStr};

/// The test provider.
pub struct TestProvider {
    label: String,
}

impl ProviderImpl for TestProvider {
    fn create(options: &[(String, String)]) -> Result<Self, String> {
        let get = |k: &str| {
            options
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        if get("panic_init") == Some("1") {
            panic!("panic_init was requested");
        }
        if get("fail_init") == Some("1") {
            return Err("simulated init failure: device 7 is not present".into());
        }
        Ok(Self {
            label: get("label").unwrap_or("default").to_string(),
        })
    }

    fn device_description(&self) -> String {
        format!("test device ({})", self.label)
    }
}

export_provider!(TestProvider, name = "abi-test", version = "0.1.0");

static V99: OxrtProviderApi = OxrtProviderApi {
    abi_version: 99,
    struct_size: std::mem::size_of::<OxrtProviderApi>(),
    name: OxrtStr::from_str("abi-test-v99"),
    version: OxrtStr::from_str("99.0.0"),
    create: oxrt_provider_abi::sdk::create_impl::<TestProvider>,
    destroy: oxrt_provider_abi::sdk::destroy_impl::<TestProvider>,
    device_description: oxrt_provider_abi::sdk::device_description_impl::<TestProvider>,
    last_error: oxrt_provider_abi::sdk::last_error_impl,
};

/// Entry point of a provider built for a future ABI.
///
/// # Safety
/// `out` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn oxrt_provider_entry_v99(
    host: u32,
    out: *mut *const OxrtProviderApi,
) -> OxrtStatus {
    // SAFETY: forwarded contract.
    unsafe { entry_impl(&V99, host, out) }
}

/// Entry point that panics (caught: it returns `Internal`).
///
/// # Safety
/// Never writes through `out`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn oxrt_provider_entry_panic(
    _host: u32,
    _out: *mut *const OxrtProviderApi,
) -> OxrtStatus {
    guard(|| panic!("the entry point panicked"))
}

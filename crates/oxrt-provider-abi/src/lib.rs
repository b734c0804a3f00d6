//! The stable C ABI between oxrt and execution providers shipped as shared
//! libraries: the version handshake, the provider function table, status
//! codes, the DLPack-style tensor descriptor, and [`sdk`] helpers for
//! providers written in Rust.
//!
//! Architecture invariant: this crate depends on nothing in the workspace,
//! so a third party can build a provider against it alone. Only `#[repr(C)]`
//! data crosses the boundary; structs are versioned and only ever grow at
//! the end.

use std::ffi::c_void;

/// The ABI version this crate describes. A host passes it to the provider's
/// entry point; a provider that cannot serve it refuses with
/// [`OxrtStatus::AbiMismatch`].
pub const OXRT_PROVIDER_ABI_VERSION: u32 = 1;

/// Name of the one symbol a provider library exports.
pub const OXRT_PROVIDER_ENTRY_SYMBOL: &str = "oxrt_provider_entry";

/// Result of every call across the boundary.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OxrtStatus {
    Ok = 0,
    InvalidArgument = 1,
    Unsupported = 2,
    OutOfMemory = 3,
    /// The host and the provider speak different ABI versions.
    AbiMismatch = 4,
    /// A failure inside the provider, panics included (caught at the boundary).
    Internal = 5,
}

/// DLPack `DLDataTypeCode` values used in [`OxrtDataType::code`].
pub mod type_code {
    pub const INT: u8 = 0;
    pub const UINT: u8 = 1;
    pub const FLOAT: u8 = 2;
    pub const BFLOAT: u8 = 4;
    pub const COMPLEX: u8 = 5;
    pub const BOOL: u8 = 6;
}

/// DLPack `DLDeviceType` values used in [`OxrtDevice::device_type`].
pub mod device_type {
    pub const CPU: i32 = 1;
    pub const CUDA: i32 = 2;
    pub const CUDA_HOST: i32 = 3;
    /// Devices a provider defines itself (e.g. a simulated FPGA).
    pub const EXT_DEV: i32 = 12;
}

/// Element type, laid out like DLPack's `DLDataType`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OxrtDataType {
    pub code: u8,
    pub bits: u8,
    pub lanes: u16,
}

/// Device, laid out like DLPack's `DLDevice`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OxrtDevice {
    pub device_type: i32,
    pub device_id: i32,
}

/// A tensor crossing the boundary, laid out like DLPack's `DLTensor`.
/// The descriptor borrows `data`, `shape` and `strides`; whoever created it
/// keeps them alive for the duration of the call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct OxrtTensor {
    pub data: *mut c_void,
    pub device: OxrtDevice,
    pub ndim: i32,
    pub dtype: OxrtDataType,
    /// `ndim` dimensions.
    pub shape: *const i64,
    /// `ndim` strides in elements, or null for compact row-major.
    pub strides: *const i64,
    pub byte_offset: u64,
}

/// A borrowed UTF-8 string: `len` bytes at `ptr` (not NUL-terminated).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct OxrtStr {
    pub ptr: *const u8,
    pub len: usize,
}

impl OxrtStr {
    /// Borrows a Rust string (valid as long as `s`).
    pub const fn from_str(s: &str) -> Self {
        Self {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// Reads the string back, replacing invalid UTF-8.
    ///
    /// # Safety
    /// `ptr` must point to `len` readable bytes (or `len` must be 0).
    pub unsafe fn to_string_lossy(&self) -> String {
        if self.ptr.is_null() || self.len == 0 {
            return String::new();
        }
        // SAFETY: the caller guarantees `len` readable bytes at `ptr`.
        let bytes = unsafe { std::slice::from_raw_parts(self.ptr, self.len) };
        String::from_utf8_lossy(bytes).into_owned()
    }
}

/// One provider option, e.g. `device_id = 0`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct OxrtKeyValue {
    pub key: OxrtStr,
    pub value: OxrtStr,
}

/// A provider instance, opaque to the host.
pub type OxrtProvider = *mut c_void;

/// A kernel created by a provider instance, opaque to the host.
pub type OxrtKernel = *mut c_void;

/// Writes a message into the host's buffer: at most `cap` bytes are copied
/// to `buf`; the full length is returned (so the host can retry larger).
pub type OxrtWriteFn =
    unsafe extern "C" fn(provider: OxrtProvider, buf: *mut u8, cap: usize) -> usize;

/// What one call cost on the device, filled in by the provider (the host
/// zeroes it before the call). Shown by the host's profiler.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OxrtProfile {
    /// Time the work took on the device (simulated or measured), in nanoseconds.
    pub device_ns: u64,
    /// Bytes moved from host memory to device memory.
    pub bytes_to_device: u64,
    /// Bytes moved from device memory to host memory.
    pub bytes_to_host: u64,
}

/// Allocates output `index` of a kernel once its shape is known: the host
/// allocates memory of the right size on the provider's device (through the
/// table's `alloc` for device memory, in host memory otherwise), keeps
/// ownership, and fills `out` (its `shape` points to host-owned storage valid
/// until `compute` returns). Each output is allocated at most once per call.
pub type OxrtAllocOutputFn = unsafe extern "C" fn(
    ctx: *mut c_void,
    index: usize,
    dtype: OxrtDataType,
    ndim: i32,
    shape: *const i64,
    out: *mut OxrtTensor,
) -> OxrtStatus;

/// The host's output allocator passed to `compute`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct OxrtOutputAllocator {
    pub ctx: *mut c_void,
    pub alloc: OxrtAllocOutputFn,
}

/// The function table a provider library hands to the host (ABI version 1).
///
/// Layout rules: `abi_version` and `struct_size` come first and never move;
/// later versions only append fields, so a host reads the fields that
/// `struct_size` says the provider has. Functions never unwind: they catch
/// panics and return [`OxrtStatus::Internal`].
///
/// Models cross as serialized ONNX `ModelProto` (opset imports plus one
/// graph whose inputs, outputs and `value_info` carry every type and shape
/// the host knows). See `docs/provider-abi.md` for the full contract.
#[repr(C)]
pub struct OxrtProviderApi {
    /// The ABI version this table implements.
    pub abi_version: u32,
    /// `size_of::<OxrtProviderApi>()` as the provider was compiled.
    pub struct_size: usize,
    /// Provider name, e.g. `fpga-sim` (static).
    pub name: OxrtStr,
    /// Provider version, e.g. `0.1.0` (static).
    pub version: OxrtStr,
    /// Creates an instance from `count` options; on failure the message is
    /// available through `last_error` with a null provider.
    pub create: unsafe extern "C" fn(
        options: *const OxrtKeyValue,
        count: usize,
        out: *mut OxrtProvider,
    ) -> OxrtStatus,
    /// Destroys an instance created by `create`.
    pub destroy: unsafe extern "C" fn(provider: OxrtProvider),
    /// Describes the device (for `oxrt providers`).
    pub device_description: OxrtWriteFn,
    /// The message of the last failed call on this thread (`provider` may
    /// be null for failures of `create`).
    pub last_error: OxrtWriteFn,
    /// The device whose memory the instance's kernels read and write. With
    /// [`device_type::CPU`] tensors stay in host memory and `alloc`, `free`
    /// and the copies are never called.
    pub get_device:
        unsafe extern "C" fn(provider: OxrtProvider, out: *mut OxrtDevice) -> OxrtStatus,
    /// Which nodes of a model's graph the provider takes: writes, for each of
    /// the graph's `node_count` nodes (in graph order), a group id (nodes
    /// with the same id are compiled together into one kernel) or -1 to
    /// decline. Initializers in this model carry name, type and dims only.
    pub get_capability: unsafe extern "C" fn(
        provider: OxrtProvider,
        model: *const u8,
        len: usize,
        groups: *mut i64,
        node_count: usize,
    ) -> OxrtStatus,
    /// Compiles one group into a kernel. The model's graph holds the group's
    /// nodes; its inputs are the tensors `compute` receives, in order, its
    /// outputs the tensors it allocates, in order, and constant inputs come
    /// as initializers with their data.
    pub create_kernel: unsafe extern "C" fn(
        provider: OxrtProvider,
        model: *const u8,
        len: usize,
        out: *mut OxrtKernel,
    ) -> OxrtStatus,
    /// Destroys a kernel created by `create_kernel`.
    pub destroy_kernel: unsafe extern "C" fn(provider: OxrtProvider, kernel: OxrtKernel),
    /// Runs a kernel: `inputs` are `n_inputs` tensors on the provider's
    /// device; each of the `n_outputs` outputs is allocated through
    /// `outputs` and written by the provider.
    pub compute: unsafe extern "C" fn(
        provider: OxrtProvider,
        kernel: OxrtKernel,
        inputs: *const OxrtTensor,
        n_inputs: usize,
        outputs: *const OxrtOutputAllocator,
        n_outputs: usize,
        profile: *mut OxrtProfile,
    ) -> OxrtStatus,
    /// Allocates `bytes` of device memory; the pointer is opaque to the host.
    pub alloc: unsafe extern "C" fn(
        provider: OxrtProvider,
        bytes: usize,
        out: *mut *mut c_void,
    ) -> OxrtStatus,
    /// Frees memory from `alloc`.
    pub free: unsafe extern "C" fn(provider: OxrtProvider, ptr: *mut c_void),
    /// Copies `bytes` from host memory to the start of device memory `dst`.
    pub copy_to_device: unsafe extern "C" fn(
        provider: OxrtProvider,
        dst: *mut c_void,
        src: *const u8,
        bytes: usize,
        profile: *mut OxrtProfile,
    ) -> OxrtStatus,
    /// Copies `bytes` from the start of device memory `src` to host memory.
    pub copy_to_host: unsafe extern "C" fn(
        provider: OxrtProvider,
        dst: *mut u8,
        src: *const c_void,
        bytes: usize,
        profile: *mut OxrtProfile,
    ) -> OxrtStatus,
}

// SAFETY: a table is immutable after construction and its string pointers
// refer to `'static` data, so sharing it between threads is sound.
unsafe impl Sync for OxrtProviderApi {}

/// Signature of the one exported entry symbol ([`OXRT_PROVIDER_ENTRY_SYMBOL`]):
/// called with the host's ABI version, it stores a pointer to a static
/// [`OxrtProviderApi`] in `out`, or returns [`OxrtStatus::AbiMismatch`] when it
/// cannot serve that version (writing its own table anyway when it has one,
/// so the host can report both versions).
pub type OxrtProviderEntry =
    unsafe extern "C" fn(host_abi_version: u32, out: *mut *const OxrtProviderApi) -> OxrtStatus;

/// Copies `msg` into a host buffer as [`OxrtWriteFn`] specifies.
///
/// # Safety
/// `buf` must be valid for `cap` bytes of writes (or `cap` must be 0).
pub unsafe fn write_message(msg: &str, buf: *mut u8, cap: usize) -> usize {
    let n = msg.len().min(cap);
    if n > 0 && !buf.is_null() {
        // SAFETY: the caller guarantees `cap >= n` writable bytes at `buf`;
        // `msg` cannot overlap a buffer the host owns exclusively.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), buf, n) };
    }
    msg.len()
}

pub mod sdk;

#[cfg(test)]
mod tests {
    use std::mem::{align_of, offset_of, size_of};

    use super::*;

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn layouts_match_dlpack_on_64_bit_targets() {
        assert_eq!(size_of::<OxrtDataType>(), 4);
        assert_eq!(size_of::<OxrtDevice>(), 8);
        assert_eq!(size_of::<OxrtTensor>(), 48);
        assert_eq!(align_of::<OxrtTensor>(), 8);
        assert_eq!(offset_of!(OxrtTensor, device), 8);
        assert_eq!(offset_of!(OxrtTensor, ndim), 16);
        assert_eq!(offset_of!(OxrtTensor, dtype), 20);
        assert_eq!(offset_of!(OxrtTensor, shape), 24);
        assert_eq!(offset_of!(OxrtTensor, strides), 32);
        assert_eq!(offset_of!(OxrtTensor, byte_offset), 40);
        assert_eq!(size_of::<OxrtStatus>(), 4);
    }
}

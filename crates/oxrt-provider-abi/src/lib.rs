//! The stable C ABI between oxrt and execution providers shipped as shared
//! libraries (first cut: version, status codes and the DLPack-style tensor
//! descriptor; the provider function table follows).
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

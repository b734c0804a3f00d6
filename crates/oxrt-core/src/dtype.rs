//! Element types of ONNX tensors.

use std::fmt;

/// Every ONNX tensor element type (`TensorProto.DataType`, ONNX 1.22).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DataType {
    F32,
    U8,
    I8,
    U16,
    I16,
    I32,
    I64,
    String,
    Bool,
    F16,
    F64,
    U32,
    U64,
    Complex64,
    Complex128,
    BF16,
    F8E4M3FN,
    F8E4M3FNUZ,
    F8E5M2,
    F8E5M2FNUZ,
    U4,
    I4,
    F4E2M1,
    F8E8M0,
    U2,
    I2,
}

impl DataType {
    /// All element types, in ONNX code order.
    pub const ALL: [DataType; 26] = [
        DataType::F32,
        DataType::U8,
        DataType::I8,
        DataType::U16,
        DataType::I16,
        DataType::I32,
        DataType::I64,
        DataType::String,
        DataType::Bool,
        DataType::F16,
        DataType::F64,
        DataType::U32,
        DataType::U64,
        DataType::Complex64,
        DataType::Complex128,
        DataType::BF16,
        DataType::F8E4M3FN,
        DataType::F8E4M3FNUZ,
        DataType::F8E5M2,
        DataType::F8E5M2FNUZ,
        DataType::U4,
        DataType::I4,
        DataType::F4E2M1,
        DataType::F8E8M0,
        DataType::U2,
        DataType::I2,
    ];

    /// Converts an ONNX `TensorProto.DataType` code; `None` for 0 or unknown codes.
    pub fn from_onnx(code: i32) -> Option<Self> {
        usize::try_from(code)
            .ok()
            .and_then(|c| c.checked_sub(1))
            .and_then(|i| Self::ALL.get(i).copied())
    }

    /// The ONNX `TensorProto.DataType` code.
    pub fn onnx_code(self) -> i32 {
        Self::ALL
            .iter()
            .position(|&d| d == self)
            .map_or(0, |i| i as i32 + 1)
    }

    /// Bits per element as stored in ONNX `raw_data` (0 for strings).
    pub fn bits(self) -> usize {
        use DataType::*;
        match self {
            Bool | U8 | I8 | F8E4M3FN | F8E4M3FNUZ | F8E5M2 | F8E5M2FNUZ | F8E8M0 => 8,
            U16 | I16 | F16 | BF16 => 16,
            F32 | I32 | U32 => 32,
            F64 | I64 | U64 | Complex64 => 64,
            Complex128 => 128,
            U4 | I4 | F4E2M1 => 4,
            U2 | I2 => 2,
            String => 0,
        }
    }

    /// Bytes one element occupies in an oxrt [`crate::Tensor`] (sub-byte types are unpacked).
    pub fn host_size(self) -> usize {
        match self {
            DataType::String => std::mem::size_of::<std::string::String>(),
            d => d.bits().div_ceil(8),
        }
    }

    /// True for floating-point types (including f16, bf16 and the 8/4-bit floats).
    pub fn is_float(self) -> bool {
        use DataType::*;
        matches!(
            self,
            F32 | F64 | F16 | BF16 | F8E4M3FN | F8E4M3FNUZ | F8E5M2 | F8E5M2FNUZ | F4E2M1 | F8E8M0
        )
    }

    /// True for signed and unsigned integer types of every width.
    pub fn is_integer(self) -> bool {
        use DataType::*;
        matches!(
            self,
            U8 | I8 | U16 | I16 | I32 | I64 | U32 | U64 | U4 | I4 | U2 | I2
        )
    }

    /// The ONNX spelling used in type strings, e.g. `float` in `tensor(float)`.
    pub fn onnx_name(self) -> &'static str {
        use DataType::*;
        match self {
            F32 => "float",
            U8 => "uint8",
            I8 => "int8",
            U16 => "uint16",
            I16 => "int16",
            I32 => "int32",
            I64 => "int64",
            String => "string",
            Bool => "bool",
            F16 => "float16",
            F64 => "double",
            U32 => "uint32",
            U64 => "uint64",
            Complex64 => "complex64",
            Complex128 => "complex128",
            BF16 => "bfloat16",
            F8E4M3FN => "float8e4m3fn",
            F8E4M3FNUZ => "float8e4m3fnuz",
            F8E5M2 => "float8e5m2",
            F8E5M2FNUZ => "float8e5m2fnuz",
            U4 => "uint4",
            I4 => "int4",
            F4E2M1 => "float4e2m1",
            F8E8M0 => "float8e8m0",
            U2 => "uint2",
            I2 => "int2",
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.onnx_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn onnx_codes_round_trip() {
        for (i, d) in DataType::ALL.iter().enumerate() {
            assert_eq!(d.onnx_code(), i as i32 + 1);
            assert_eq!(DataType::from_onnx(d.onnx_code()), Some(*d));
        }
        assert_eq!(DataType::from_onnx(0), None);
        assert_eq!(DataType::from_onnx(27), None);
        assert_eq!(DataType::from_onnx(-3), None);
        assert_eq!(DataType::from_onnx(1), Some(DataType::F32));
        assert_eq!(DataType::from_onnx(7), Some(DataType::I64));
        assert_eq!(DataType::from_onnx(16), Some(DataType::BF16));
    }

    #[test]
    fn sizes() {
        assert_eq!(DataType::F16.bits(), 16);
        assert_eq!(DataType::I4.bits(), 4);
        assert_eq!(DataType::I4.host_size(), 1);
        assert_eq!(DataType::Complex128.host_size(), 16);
    }
}

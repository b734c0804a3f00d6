//! Decoding ONNX `TensorProto`s into [`Tensor`]s.
//!
//! Handles `raw_data` (little-endian, sub-byte types packed low bits first) and
//! every typed field, checks that the data matches the declared dims, and
//! refuses tensors whose declared size exceeds the memory limit before
//! allocating anything.

use half::{bf16, f16};
use oxrt_onnx::proto::{tensor_proto::DataLocation, TensorProto};

use crate::dtype::DataType;
use crate::error::{Error, Result};
use crate::tensor::{Storage, Tensor};

/// Default cap on the bytes of one tensor (initializer, constant or input): 16 GiB.
pub const DEFAULT_MEMORY_LIMIT: u64 = 16 << 30;

/// Checks that a tensor of `dims` and `dtype` fits in `limit` bytes.
pub fn check_size(what: &str, dims: &[u64], dtype: DataType, limit: u64) -> Result<usize> {
    let too_big = |bytes: String| Error::MemoryLimit {
        what: what.to_string(),
        shape: dims.to_vec(),
        dtype,
        bytes,
        limit,
    };
    let numel = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| too_big("more than 2^64".into()))?;
    let bytes = numel
        .checked_mul(dtype.host_size() as u64)
        .ok_or_else(|| too_big("more than 2^64".into()))?;
    if bytes > limit {
        return Err(too_big(bytes.to_string()));
    }
    usize::try_from(numel).map_err(|_| too_big(bytes.to_string()))
}

/// Decodes `proto` into a tensor, refusing more than `limit` bytes.
pub fn tensor_from_proto(proto: &TensorProto, limit: u64) -> Result<Tensor> {
    let name = proto.name().to_string();
    let invalid = |message: String| Error::InvalidTensor {
        name: name.clone(),
        message,
    };
    let code = proto.data_type.unwrap_or(0);
    let dtype = DataType::from_onnx(code)
        .ok_or_else(|| invalid(format!("unknown or missing data_type {code}")))?;
    let mut dims = Vec::with_capacity(proto.dims.len());
    for &d in &proto.dims {
        dims.push(u64::try_from(d).map_err(|_| invalid(format!("negative dimension {d}")))?);
    }
    let numel = check_size(&format!("tensor '{name}'"), &dims, dtype, limit)?;
    let shape: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
    if proto.segment.is_some() {
        return Err(invalid("segmented tensors are not supported".into()));
    }
    if proto.data_location == Some(DataLocation::External as i32) {
        return Err(invalid(
            "external data was not resolved (load the model from its file)".into(),
        ));
    }
    let storage = match proto.raw_data.as_deref() {
        Some(raw) if dtype != DataType::String => decode_raw(raw, dtype, numel).map_err(invalid)?,
        _ => decode_typed(proto, dtype, numel).map_err(invalid)?,
    };
    Tensor::from_storage(dtype, shape, storage)
}

fn le_chunks<const N: usize, T>(raw: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
    raw.chunks_exact(N)
        .map(|c| {
            let mut b = [0u8; N];
            b.copy_from_slice(c);
            f(b)
        })
        .collect()
}

/// Unpacks `per_byte` sub-byte elements from each byte, low bits first.
fn unpack_bits(raw: &[u8], bits: usize, numel: usize, signed: bool) -> Vec<u8> {
    let per_byte = 8 / bits;
    let mask = (1u8 << bits) - 1;
    (0..numel)
        .map(|i| {
            let v = (raw[i / per_byte] >> ((i % per_byte) * bits)) & mask;
            if signed && v & (1 << (bits - 1)) != 0 {
                v | !mask // sign-extend into the byte
            } else {
                v
            }
        })
        .collect()
}

fn decode_raw(raw: &[u8], dtype: DataType, numel: usize) -> Result<Storage, String> {
    let expected = (numel * dtype.bits()).div_ceil(8);
    if raw.len() != expected {
        return Err(format!(
            "raw_data has {} bytes, but {numel} elements of {dtype} need {expected}",
            raw.len()
        ));
    }
    use DataType as D;
    Ok(match dtype {
        D::F32 => Storage::F32(le_chunks(raw, f32::from_le_bytes)),
        D::F64 => Storage::F64(le_chunks(raw, f64::from_le_bytes)),
        D::F16 => Storage::F16(le_chunks(raw, f16::from_le_bytes)),
        D::BF16 => Storage::BF16(le_chunks(raw, bf16::from_le_bytes)),
        D::I8 => Storage::I8(raw.iter().map(|&b| b as i8).collect()),
        D::U8 => Storage::U8(raw.to_vec()),
        D::I16 => Storage::I16(le_chunks(raw, i16::from_le_bytes)),
        D::U16 => Storage::U16(le_chunks(raw, u16::from_le_bytes)),
        D::I32 => Storage::I32(le_chunks(raw, i32::from_le_bytes)),
        D::U32 => Storage::U32(le_chunks(raw, u32::from_le_bytes)),
        D::I64 => Storage::I64(le_chunks(raw, i64::from_le_bytes)),
        D::U64 => Storage::U64(le_chunks(raw, u64::from_le_bytes)),
        D::Bool => Storage::Bool(raw.iter().map(|&b| b != 0).collect()),
        D::Complex64 => Storage::Complex64(le_chunks(raw, |b: [u8; 8]| {
            let (re, im) = b.split_at(4);
            [
                f32::from_le_bytes([re[0], re[1], re[2], re[3]]),
                f32::from_le_bytes([im[0], im[1], im[2], im[3]]),
            ]
        })),
        D::Complex128 => Storage::Complex128(le_chunks(raw, |b: [u8; 16]| {
            let mut re = [0u8; 8];
            let mut im = [0u8; 8];
            re.copy_from_slice(&b[..8]);
            im.copy_from_slice(&b[8..]);
            [f64::from_le_bytes(re), f64::from_le_bytes(im)]
        })),
        D::I4 | D::I2 => Storage::Bits(unpack_bits(raw, dtype.bits(), numel, true)),
        D::U4 | D::F4E2M1 | D::U2 => Storage::Bits(unpack_bits(raw, dtype.bits(), numel, false)),
        _ => Storage::Bits(raw.to_vec()), // the 8-bit float formats
    })
}

fn count_check(field: &str, got: usize, numel: usize) -> Result<(), String> {
    if got != numel {
        return Err(format!(
            "{field} has {got} values, but the dims need {numel}"
        ));
    }
    Ok(())
}

fn decode_typed(p: &TensorProto, dtype: DataType, numel: usize) -> Result<Storage, String> {
    use DataType as D;
    let ints = &p.int32_data;
    // int32_data carries every type of 16 bits or fewer (as values or bit patterns).
    let narrow = |n: usize| -> Result<(), String> { count_check("int32_data", ints.len(), n) };
    Ok(match dtype {
        D::F32 => {
            count_check("float_data", p.float_data.len(), numel)?;
            Storage::F32(p.float_data.clone())
        }
        D::F64 => {
            count_check("double_data", p.double_data.len(), numel)?;
            Storage::F64(p.double_data.clone())
        }
        D::I64 => {
            count_check("int64_data", p.int64_data.len(), numel)?;
            Storage::I64(p.int64_data.clone())
        }
        D::I32 => {
            narrow(numel)?;
            Storage::I32(ints.clone())
        }
        D::U64 | D::U32 => {
            count_check("uint64_data", p.uint64_data.len(), numel)?;
            if dtype == D::U64 {
                Storage::U64(p.uint64_data.clone())
            } else {
                Storage::U32(p.uint64_data.iter().map(|&v| v as u32).collect())
            }
        }
        D::I8 => {
            narrow(numel)?;
            Storage::I8(ints.iter().map(|&v| v as i8).collect())
        }
        D::U8 => {
            narrow(numel)?;
            Storage::U8(ints.iter().map(|&v| v as u8).collect())
        }
        D::I16 => {
            narrow(numel)?;
            Storage::I16(ints.iter().map(|&v| v as i16).collect())
        }
        D::U16 => {
            narrow(numel)?;
            Storage::U16(ints.iter().map(|&v| v as u16).collect())
        }
        D::Bool => {
            narrow(numel)?;
            Storage::Bool(ints.iter().map(|&v| v != 0).collect())
        }
        D::F16 => {
            narrow(numel)?;
            Storage::F16(ints.iter().map(|&v| f16::from_bits(v as u16)).collect())
        }
        D::BF16 => {
            narrow(numel)?;
            Storage::BF16(ints.iter().map(|&v| bf16::from_bits(v as u16)).collect())
        }
        D::String => {
            count_check("string_data", p.string_data.len(), numel)?;
            let mut out = Vec::with_capacity(numel);
            for (i, s) in p.string_data.iter().enumerate() {
                out.push(
                    String::from_utf8(s.to_vec())
                        .map_err(|_| format!("string_data[{i}] is not valid UTF-8"))?,
                );
            }
            Storage::String(out)
        }
        D::Complex64 => {
            count_check("float_data", p.float_data.len(), numel * 2)?;
            Storage::Complex64(p.float_data.chunks_exact(2).map(|c| [c[0], c[1]]).collect())
        }
        D::Complex128 => {
            count_check("double_data", p.double_data.len(), numel * 2)?;
            Storage::Complex128(
                p.double_data
                    .chunks_exact(2)
                    .map(|c| [c[0], c[1]])
                    .collect(),
            )
        }
        D::I4 | D::U4 | D::F4E2M1 | D::I2 | D::U2 => {
            // Packed like raw_data, one byte per int32 value.
            let per_byte = 8 / dtype.bits();
            narrow(numel.div_ceil(per_byte))?;
            let bytes: Vec<u8> = ints.iter().map(|&v| v as u8).collect();
            let signed = matches!(dtype, D::I4 | D::I2);
            Storage::Bits(unpack_bits(&bytes, dtype.bits(), numel, signed))
        }
        _ => {
            narrow(numel)?;
            Storage::Bits(ints.iter().map(|&v| v as u8).collect())
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn proto(dtype: DataType, dims: &[i64]) -> TensorProto {
        TensorProto {
            name: Some("t".into()),
            dims: dims.to_vec(),
            data_type: Some(dtype.onnx_code()),
            ..Default::default()
        }
    }

    #[test]
    fn raw_f32_and_typed_i64() {
        let mut p = proto(DataType::F32, &[2]);
        p.raw_data = Some(
            [1.5f32, -2.0]
                .iter()
                .flat_map(|f| f.to_le_bytes())
                .collect::<Vec<_>>()
                .into(),
        );
        let t = tensor_from_proto(&p, DEFAULT_MEMORY_LIMIT).unwrap();
        assert_eq!(t.as_slice::<f32>().unwrap(), &[1.5, -2.0]);

        let mut p = proto(DataType::I64, &[3]);
        p.int64_data = vec![1, -2, 3];
        let t = tensor_from_proto(&p, DEFAULT_MEMORY_LIMIT).unwrap();
        assert_eq!(t.as_slice::<i64>().unwrap(), &[1, -2, 3]);
    }

    #[test]
    fn f16_from_int32_bits_and_int4_raw() {
        let mut p = proto(DataType::F16, &[1]);
        p.int32_data = vec![f16::from_f32(0.5).to_bits() as i32];
        let t = tensor_from_proto(&p, DEFAULT_MEMORY_LIMIT).unwrap();
        assert_eq!(t.as_slice::<f16>().unwrap(), &[f16::from_f32(0.5)]);

        let mut p = proto(DataType::I4, &[3]);
        p.raw_data = Some(vec![0xF7u8, 0x01].into()); // 7, -1, 1
        let t = tensor_from_proto(&p, DEFAULT_MEMORY_LIMIT).unwrap();
        let Storage::Bits(b) = t.storage() else {
            panic!()
        };
        assert_eq!(
            b.iter().map(|&v| v as i8).collect::<Vec<_>>(),
            vec![7, -1, 1]
        );
    }

    #[test]
    fn length_mismatch_is_an_error_naming_the_tensor() {
        let mut p = proto(DataType::F32, &[4]);
        p.raw_data = Some(vec![0u8; 12].into());
        let err = tensor_from_proto(&p, DEFAULT_MEMORY_LIMIT).unwrap_err();
        assert!(err.to_string().contains("tensor 't'"), "{err}");
        assert!(err.to_string().contains("12 bytes"), "{err}");
    }

    #[test]
    fn absurd_dims_hit_the_memory_limit_before_allocating() {
        let p = proto(DataType::F32, &[1 << 20, 1 << 20, 1 << 20]);
        let err = tensor_from_proto(&p, DEFAULT_MEMORY_LIMIT).unwrap_err();
        assert!(matches!(err, Error::MemoryLimit { .. }), "{err}");
        let p = proto(DataType::F32, &[1000, 1000]);
        let err = tensor_from_proto(&p, 1_000_000).unwrap_err();
        assert!(err.to_string().contains("4000000 bytes"), "{err}");
    }

    #[test]
    fn negative_dims_and_unknown_types_are_errors() {
        let p = proto(DataType::F32, &[-1]);
        assert!(tensor_from_proto(&p, DEFAULT_MEMORY_LIMIT).is_err());
        let mut p = proto(DataType::F32, &[1]);
        p.data_type = Some(99);
        assert!(tensor_from_proto(&p, DEFAULT_MEMORY_LIMIT).is_err());
    }
}

//! Reading and writing tensors as NumPy `.npy` files.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use anyhow::{bail, Context, Result};
use npyz::WriterBuilder;
use oxrt::{f16, Storage, Tensor};

/// Reads a `.npy` file (C order) of any numeric, f16 or bool type.
pub fn read(path: &Path) -> Result<Tensor> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let npy = npyz::NpyFile::new(&bytes[..])
        .with_context(|| format!("{} is not a .npy file", path.display()))?;
    if npy.order() == npyz::Order::Fortran {
        bail!(
            "{}: Fortran-ordered arrays are not supported; save with C order",
            path.display()
        );
    }
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let descr = npy.dtype().descr();
    let t = match descr.trim_matches('\'').trim_start_matches(['<', '|', '=']) {
        "f4" => Tensor::from_vec(shape, npy.into_vec::<f32>()?)?,
        "f8" => Tensor::from_vec(shape, npy.into_vec::<f64>()?)?,
        "f2" => Tensor::from_vec(shape, npy.into_vec::<f16>()?)?,
        "i1" => Tensor::from_vec(shape, npy.into_vec::<i8>()?)?,
        "i2" => Tensor::from_vec(shape, npy.into_vec::<i16>()?)?,
        "i4" => Tensor::from_vec(shape, npy.into_vec::<i32>()?)?,
        "i8" => Tensor::from_vec(shape, npy.into_vec::<i64>()?)?,
        "u1" => Tensor::from_vec(shape, npy.into_vec::<u8>()?)?,
        "u2" => Tensor::from_vec(shape, npy.into_vec::<u16>()?)?,
        "u4" => Tensor::from_vec(shape, npy.into_vec::<u32>()?)?,
        "u8" => Tensor::from_vec(shape, npy.into_vec::<u64>()?)?,
        "b1" => Tensor::from_vec(shape, npy.into_vec::<bool>()?)?,
        other => bail!(
            "{}: unsupported .npy element type '{other}'",
            path.display()
        ),
    };
    Ok(t)
}

fn write_as<T: npyz::Serialize + npyz::AutoSerialize + Copy>(
    path: &Path,
    shape: &[u64],
    data: &[T],
) -> Result<()> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(BufWriter::new(file))
        .begin_nd()?;
    w.extend(data.iter().copied())?;
    w.finish()?;
    Ok(())
}

/// Writes a tensor as a `.npy` file.
pub fn write(path: &Path, t: &Tensor) -> Result<()> {
    let shape: Vec<u64> = t.shape().iter().map(|&d| d as u64).collect();
    match t.storage() {
        Storage::F32(v) => write_as(path, &shape, v),
        Storage::F64(v) => write_as(path, &shape, v),
        Storage::F16(v) => write_as(path, &shape, v),
        Storage::I8(v) => write_as(path, &shape, v),
        Storage::I16(v) => write_as(path, &shape, v),
        Storage::I32(v) => write_as(path, &shape, v),
        Storage::I64(v) => write_as(path, &shape, v),
        Storage::U8(v) => write_as(path, &shape, v),
        Storage::U16(v) => write_as(path, &shape, v),
        Storage::U32(v) => write_as(path, &shape, v),
        Storage::U64(v) => write_as(path, &shape, v),
        Storage::Bool(v) => write_as(path, &shape, v),
        _ => bail!("writing {} tensors as .npy is not supported", t.dtype()),
    }
}

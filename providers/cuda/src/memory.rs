//! Device tensors of the CUDA provider and the copies to and from the host.
//!
//! A buffer is untyped device memory shared by reference count, so
//! Reshape, Flatten, Squeeze, Unsqueeze and Identity hand their input's
//! buffer on under a new shape without a copy (kernels never write their
//! inputs). Copies go through the session's pinned staging buffer.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaView, CudaViewMut};
use oxrt_core::device::{DeviceBuffer, DeviceCost, DeviceMemory, DeviceTensor};
use oxrt_core::{DataType, Error, Result, Tensor};

use crate::gpu::{failed, Gpu};

/// Device memory of one tensor.
pub(crate) struct CudaBuffer {
    pub bytes: Arc<CudaSlice<u8>>,
}

impl DeviceBuffer for CudaBuffer {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Bytes of a dense `dtype` tensor of `shape`.
pub(crate) fn byte_len(dtype: DataType, shape: &[usize]) -> Result<usize> {
    if dtype == DataType::String {
        return Err(Error::NotSupported(format!(
            "{dtype} tensors cannot live in CUDA memory"
        )));
    }
    let width = dtype.host_size();
    shape
        .iter()
        .try_fold(width, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::invalid(format!("shape {shape:?} overflows")))
}

/// The provider's buffer behind `t`.
pub(crate) fn buffer(t: &DeviceTensor) -> Result<&CudaBuffer> {
    t.buffer()
        .as_any()
        .downcast_ref::<CudaBuffer>()
        .ok_or_else(|| {
            Error::invalid("a device tensor of another provider reached the CUDA provider")
        })
}

/// `t`'s elements as f32 on the device.
pub(crate) fn f32_view(t: &DeviceTensor) -> Result<CudaView<'_, f32>> {
    if t.dtype() != DataType::F32 {
        return Err(Error::NotSupported(format!(
            "the CUDA kernels take f32, got {}",
            t.dtype()
        )));
    }
    let len: usize = t.shape().iter().product();
    let b = buffer(t)?;
    // SAFETY: the buffer was allocated for this f32 tensor (`len * 4`
    // bytes, device allocations are 256-byte aligned) and f32 has no
    // invalid bit patterns.
    unsafe { b.bytes.transmute::<f32>(len) }
        .ok_or_else(|| Error::invalid("a CUDA buffer is smaller than its tensor"))
}

/// A tensor of `dtype` and `shape` in freshly written device memory.
pub(crate) fn device_tensor(
    dtype: DataType,
    shape: Vec<usize>,
    bytes: CudaSlice<u8>,
) -> DeviceTensor {
    DeviceTensor::new(
        dtype,
        shape,
        Box::new(CudaBuffer {
            bytes: Arc::new(bytes),
        }),
    )
}

/// `t`'s buffer under another shape (no copy; kernels never write inputs).
pub(crate) fn relabel(t: &DeviceTensor, shape: Vec<usize>) -> Result<DeviceTensor> {
    Ok(DeviceTensor::new(
        t.dtype(),
        shape,
        Box::new(CudaBuffer {
            bytes: buffer(t)?.bytes.clone(),
        }),
    ))
}

/// A 4-byte tensor's elements as u32 (for the kernels that only move data).
pub(crate) fn words(t: &DeviceTensor) -> Result<CudaView<'_, u32>> {
    if t.dtype().host_size() != 4 || t.dtype() == DataType::String {
        return Err(Error::NotSupported(format!("{} data on CUDA", t.dtype())));
    }
    let n: usize = t.shape().iter().product();
    // SAFETY: the buffer holds the tensor's n 4-byte elements; every bit
    // pattern is a valid u32.
    unsafe { buffer(t)?.bytes.transmute::<u32>(n) }
        .ok_or_else(|| Error::invalid("a CUDA buffer is smaller than its tensor"))
}

/// `bytes` (allocated for `n` 4-byte elements) as u32 to write.
pub(crate) fn words_mut(bytes: &mut CudaSlice<u8>, n: usize) -> Result<CudaViewMut<'_, u32>> {
    // SAFETY: the caller allocated `bytes` for n 4-byte elements; every bit
    // pattern is a valid u32.
    unsafe { bytes.transmute_mut::<u32>(n) }.ok_or_else(|| Error::invalid("CUDA buffer too small"))
}

/// A new f32 output of `shape`, its buffer and a typed view to write.
pub(crate) struct Output {
    pub shape: Vec<usize>,
    pub bytes: CudaSlice<u8>,
}

impl Output {
    pub fn new(gpu: &Gpu, shape: Vec<usize>) -> Result<Self> {
        let bytes = gpu.alloc(byte_len(DataType::F32, &shape)?)?;
        Ok(Self { shape, bytes })
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn view(&mut self) -> Result<CudaViewMut<'_, f32>> {
        let len = self.len();
        // SAFETY: allocated with `len * 4` bytes for f32 values.
        unsafe { self.bytes.transmute_mut::<f32>(len) }
            .ok_or_else(|| Error::invalid("a CUDA buffer is smaller than its tensor"))
    }

    pub fn finish(self) -> DeviceTensor {
        device_tensor(DataType::F32, self.shape, self.bytes)
    }
}

/// Copies between host and device for one session.
pub(crate) struct CudaMemory {
    pub gpu: Arc<Gpu>,
}

impl CudaMemory {
    /// Runs `f` with the staging buffer grown to at least `len` bytes.
    fn with_staging<R>(
        &self,
        len: usize,
        f: impl FnOnce(&mut cudarc::driver::PinnedHostSlice<u8>) -> Result<R>,
    ) -> Result<R> {
        let mut staging = self
            .gpu
            .staging
            .lock()
            .map_err(|_| Error::invalid("the CUDA staging buffer is poisoned"))?;
        if staging.as_ref().is_none_or(|b| b.len() < len) {
            // SAFETY: the pinned buffer is written (host copy or device
            // download) before it is read.
            let fresh = unsafe { self.gpu.ctx.alloc_pinned::<u8>(len.max(1)) }
                .map_err(|e| failed("pinned host allocation", e))?;
            *staging = Some(fresh);
        }
        match staging.as_mut() {
            Some(b) => f(b),
            None => Err(Error::invalid("no CUDA staging buffer")),
        }
    }
}

impl DeviceMemory for CudaMemory {
    fn upload(&self, tensor: &Tensor) -> Result<(DeviceTensor, DeviceCost)> {
        let bytes = tensor.as_bytes().ok_or_else(|| {
            Error::NotSupported(format!(
                "{} tensors cannot be copied to a CUDA device",
                tensor.dtype()
            ))
        })?;
        let mut dev = self.gpu.alloc(bytes.len())?;
        if !bytes.is_empty() {
            self.with_staging(bytes.len(), |pinned| {
                let host = pinned
                    .as_mut_slice()
                    .map_err(|e| failed("pinned host access", e))?;
                host[..bytes.len()].copy_from_slice(bytes);
                let src = &pinned
                    .as_slice()
                    .map_err(|e| failed("pinned host access", e))?[..bytes.len()];
                self.gpu
                    .stream
                    .memcpy_htod(src, &mut dev)
                    .map_err(|e| failed("host-to-device copy", e))?;
                // The staging buffer is reused: wait for the copy to end.
                self.gpu
                    .stream
                    .synchronize()
                    .map_err(|e| failed("stream synchronization", e))
            })?;
        }
        let cost = DeviceCost {
            bytes_to_device: bytes.len() as u64,
            ..Default::default()
        };
        Ok((
            device_tensor(tensor.dtype(), tensor.shape().to_vec(), dev),
            cost,
        ))
    }

    fn download(&self, tensor: &DeviceTensor) -> Result<(Tensor, DeviceCost)> {
        let len = byte_len(tensor.dtype(), tensor.shape())?;
        let b = buffer(tensor)?;
        let host = if len == 0 {
            Vec::new()
        } else {
            self.with_staging(len, |pinned| {
                let src = b.bytes.slice(..len);
                let dst = pinned
                    .as_mut_slice()
                    .map_err(|e| failed("pinned host access", e))?;
                self.gpu
                    .stream
                    .memcpy_dtoh(&src, &mut dst[..len])
                    .map_err(|e| failed("device-to-host copy", e))?;
                self.gpu
                    .stream
                    .synchronize()
                    .map_err(|e| failed("stream synchronization", e))?;
                Ok(dst[..len].to_vec())
            })?
        };
        let t = Tensor::from_bytes(tensor.dtype(), tensor.shape().to_vec(), &host)?;
        let cost = DeviceCost {
            bytes_to_host: len as u64,
            ..Default::default()
        };
        Ok((t, cost))
    }
}

//! Kernels and device memory of providers loaded from shared libraries:
//! tensors are described to the provider as DLPack-style descriptors, and
//! outputs are allocated by the host when the provider asks for them.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use oxrt_provider_abi::{
    OxrtDataType, OxrtDevice, OxrtKernel, OxrtOutputAllocator, OxrtProfile, OxrtStatus, OxrtTensor,
};

use super::bridge::{from_abi_dtype, to_abi_dtype};
use super::Instance;
use crate::device::{DeviceBuffer, DeviceCost, DeviceMemory, DeviceTensor};
use crate::dtype::DataType;
use crate::error::{Error, Result};
use crate::provider::Kernel;
use crate::tensor::{checked_numel, Tensor};

fn cost(p: &OxrtProfile) -> DeviceCost {
    DeviceCost {
        device_ns: p.device_ns,
        bytes_to_device: p.bytes_to_device,
        bytes_to_host: p.bytes_to_host,
    }
}

fn abi_dtype(d: DataType) -> Result<OxrtDataType> {
    to_abi_dtype(d).ok_or_else(|| {
        Error::NotSupported(format!(
            "{d} tensors cannot cross the provider ABI (no fixed-width byte layout)"
        ))
    })
}

fn byte_len(d: DataType, shape: &[usize]) -> Result<usize> {
    checked_numel(shape)
        .and_then(|n| n.checked_mul(d.host_size()))
        .ok_or_else(|| Error::invalid(format!("shape {shape:?} of {d} overflows memory")))
}

/// Device memory allocated through a provider's `alloc`; freed on drop.
pub(crate) struct AbiBuffer {
    ptr: *mut c_void,
    instance: Arc<Instance>,
}

// SAFETY: the pointer is an opaque device address owned by this buffer; the
// ABI lets any thread pass it back to the provider.
unsafe impl Send for AbiBuffer {}
// SAFETY: as above; the host never dereferences it.
unsafe impl Sync for AbiBuffer {}

impl AbiBuffer {
    fn alloc(instance: &Arc<Instance>, bytes: usize) -> Result<Self> {
        let mut ptr: *mut c_void = std::ptr::null_mut();
        if bytes > 0 {
            let api = instance.api();
            // SAFETY: live instance; `ptr` is a valid out-pointer.
            let status = unsafe { (api.alloc)(instance.handle, bytes, &mut ptr) };
            instance.check("alloc", status)?;
        }
        Ok(Self {
            ptr,
            instance: instance.clone(),
        })
    }
}

impl Drop for AbiBuffer {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: allocated by this instance's `alloc`, freed once.
            unsafe { (self.instance.api().free)(self.instance.handle, self.ptr) };
        }
    }
}

impl DeviceBuffer for AbiBuffer {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Host memory for bytes, aligned for every element type.
fn host_buffer(bytes: usize) -> Vec<u64> {
    vec![0u64; bytes.div_ceil(8)]
}

/// An output the provider asked for during one `compute`.
enum Allocated {
    Host {
        dtype: DataType,
        shape: Vec<usize>,
        buf: Vec<u64>,
        len: usize,
    },
    Device {
        dtype: DataType,
        shape: Vec<usize>,
        buf: AbiBuffer,
    },
}

struct OutputSlot {
    value: Allocated,
    /// The shape as the descriptor shows it (kept alive for the call).
    _abi_shape: Vec<i64>,
}

/// State behind the output allocator of one `compute` call.
struct OutputCtx<'a> {
    instance: &'a Arc<Instance>,
    device: Option<OxrtDevice>,
    slots: Mutex<Vec<Option<OutputSlot>>>,
    error: Mutex<Option<String>>,
}

impl OutputCtx<'_> {
    fn allocate(&self, index: usize, dtype: OxrtDataType, shape: &[i64]) -> Result<OxrtTensor> {
        let d = from_abi_dtype(dtype).ok_or_else(|| {
            Error::invalid(format!("output #{index}: unknown element type {dtype:?}"))
        })?;
        let dims: Vec<usize> = shape
            .iter()
            .map(|&x| usize::try_from(x))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| {
                Error::invalid(format!("output #{index}: negative dimension in {shape:?}"))
            })?;
        let len = byte_len(d, &dims)?;
        let mut slots = self.slots.lock().map_err(|_| Error::invalid("poisoned"))?;
        let n = slots.len();
        let slot = slots.get_mut(index).ok_or_else(|| {
            Error::invalid(format!("output #{index} requested, the kernel has {n}"))
        })?;
        if slot.is_some() {
            return Err(Error::invalid(format!("output #{index} allocated twice")));
        }
        let (value, data, device) = match self.device {
            Some(device) => {
                let buf = AbiBuffer::alloc(self.instance, len)?;
                let data = buf.ptr;
                (
                    Allocated::Device {
                        dtype: d,
                        shape: dims,
                        buf,
                    },
                    data,
                    device,
                )
            }
            None => {
                let mut buf = host_buffer(len);
                let data = buf.as_mut_ptr().cast::<c_void>();
                (
                    Allocated::Host {
                        dtype: d,
                        shape: dims,
                        buf,
                        len,
                    },
                    data,
                    OxrtDevice {
                        device_type: oxrt_provider_abi::device_type::CPU,
                        device_id: 0,
                    },
                )
            }
        };
        let abi_shape = shape.to_vec();
        let t = OxrtTensor {
            data,
            device,
            ndim: shape.len() as i32,
            dtype,
            shape: abi_shape.as_ptr(),
            strides: std::ptr::null(),
            byte_offset: 0,
        };
        *slot = Some(OutputSlot {
            value,
            _abi_shape: abi_shape,
        });
        Ok(t)
    }
}

/// The host's `alloc` callback handed to providers.
unsafe extern "C" fn alloc_output(
    ctx: *mut c_void,
    index: usize,
    dtype: OxrtDataType,
    ndim: i32,
    shape: *const i64,
    out: *mut OxrtTensor,
) -> OxrtStatus {
    let run = || -> Result<()> {
        if ctx.is_null() || out.is_null() || (shape.is_null() && ndim > 0) {
            return Err(Error::invalid(
                "output allocator called with a null pointer",
            ));
        }
        // SAFETY: `ctx` is the `OutputCtx` this host passed to `compute`,
        // alive for the duration of the call.
        let ctx = unsafe { &*ctx.cast::<OutputCtx<'_>>() };
        let ndim = usize::try_from(ndim).map_err(|_| Error::invalid("negative ndim"))?;
        let dims = if ndim == 0 {
            &[][..]
        } else {
            // SAFETY: the provider passes `ndim` dimensions at `shape`.
            unsafe { std::slice::from_raw_parts(shape, ndim) }
        };
        match ctx.allocate(index, dtype, dims) {
            Ok(t) => {
                // SAFETY: checked non-null; the provider's out-pointer.
                unsafe { *out = t };
                Ok(())
            }
            Err(e) => {
                if let Ok(mut slot) = ctx.error.lock() {
                    *slot = Some(e.to_string());
                }
                Err(e)
            }
        }
    };
    match catch_unwind(AssertUnwindSafe(run)) {
        Ok(Ok(())) => OxrtStatus::Ok,
        Ok(Err(_)) => OxrtStatus::InvalidArgument,
        Err(_) => OxrtStatus::Internal,
    }
}

/// A kernel created by a provider library.
pub(crate) struct LoadedKernel {
    pub(crate) instance: Arc<Instance>,
    pub(crate) handle: OxrtKernel,
    /// Node input position of each tensor `compute` receives.
    pub(crate) inputs: Vec<usize>,
    /// Node output position of each tensor `compute` produces.
    pub(crate) outputs: Vec<usize>,
    pub(crate) node_outputs: usize,
    /// The provider's device, when it is not host memory.
    pub(crate) device: Option<OxrtDevice>,
}

// SAFETY: the ABI requires kernels to be callable from any thread.
unsafe impl Send for LoadedKernel {}
// SAFETY: as above; the host never mutates the kernel.
unsafe impl Sync for LoadedKernel {}

impl Drop for LoadedKernel {
    fn drop(&mut self) {
        // SAFETY: created by this instance's `create_kernel`, destroyed once.
        unsafe { (self.instance.api().destroy_kernel)(self.instance.handle, self.handle) };
    }
}

impl LoadedKernel {
    /// Calls `compute` with `(dtype, shape, data)` per input; returns the
    /// allocated outputs in node positions and the reported cost.
    fn invoke(
        &self,
        inputs: &[(DataType, &[usize], *mut c_void)],
    ) -> Result<(Vec<Option<Allocated>>, DeviceCost)> {
        let shapes: Vec<Vec<i64>> = inputs
            .iter()
            .map(|(_, s, _)| s.iter().map(|&d| d as i64).collect())
            .collect();
        let device = self.device.unwrap_or(OxrtDevice {
            device_type: oxrt_provider_abi::device_type::CPU,
            device_id: 0,
        });
        let descs = inputs
            .iter()
            .zip(&shapes)
            .map(|((d, _, data), shape)| {
                Ok(OxrtTensor {
                    data: *data,
                    device,
                    ndim: shape.len() as i32,
                    dtype: abi_dtype(*d)?,
                    shape: shape.as_ptr(),
                    strides: std::ptr::null(),
                    byte_offset: 0,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let ctx = OutputCtx {
            instance: &self.instance,
            device: self.device,
            slots: Mutex::new((0..self.outputs.len()).map(|_| None).collect()),
            error: Mutex::new(None),
        };
        let allocator = OxrtOutputAllocator {
            ctx: (&ctx as *const OutputCtx<'_>).cast_mut().cast(),
            alloc: alloc_output,
        };
        let mut profile = OxrtProfile::default();
        let api = self.instance.api();
        // SAFETY: live instance and kernel; `descs` and the shapes they point
        // to outlive the call; `ctx` outlives the call and is only read
        // through `alloc_output`.
        let status = unsafe {
            (api.compute)(
                self.instance.handle,
                self.handle,
                descs.as_ptr(),
                descs.len(),
                &allocator,
                self.outputs.len(),
                &mut profile,
            )
        };
        if status != OxrtStatus::Ok {
            if let Ok(Some(e)) = ctx.error.lock().map(|mut e| e.take()) {
                return Err(self.instance.failure("compute", status, Some(e)));
            }
        }
        self.instance.check("compute", status)?;
        let slots = ctx
            .slots
            .into_inner()
            .map_err(|_| Error::invalid("poisoned"))?;
        let mut out: Vec<Option<Allocated>> = (0..self.node_outputs).map(|_| None).collect();
        for (i, slot) in slots.into_iter().enumerate() {
            let slot = slot.ok_or_else(|| {
                Error::invalid(format!(
                    "provider '{}' did not produce output #{i}",
                    self.instance.name
                ))
            })?;
            out[self.outputs[i]] = Some(slot.value);
        }
        Ok((out, cost(&profile)))
    }

    fn arguments<'t, T>(
        &self,
        inputs: &[Option<&'t T>],
        view: impl Fn(&'t T) -> Result<(DataType, &'t [usize], *mut c_void)>,
    ) -> Result<Vec<(DataType, &'t [usize], *mut c_void)>> {
        self.inputs
            .iter()
            .map(|&i| {
                let t = inputs
                    .get(i)
                    .copied()
                    .flatten()
                    .ok_or_else(|| Error::invalid(format!("input #{i} is missing")))?;
                view(t)
            })
            .collect()
    }
}

impl Kernel for LoadedKernel {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let args = self.arguments(inputs, |t: &Tensor| {
            let bytes = t.as_bytes().ok_or_else(|| {
                Error::NotSupported(format!(
                    "{} tensors cannot cross the provider ABI",
                    t.dtype()
                ))
            })?;
            // The provider only reads inputs (ABI contract).
            Ok((t.dtype(), t.shape(), bytes.as_ptr().cast_mut().cast()))
        })?;
        let (outputs, _) = self.invoke(&args)?;
        outputs
            .into_iter()
            .map(|o| match o {
                Some(Allocated::Host {
                    dtype,
                    shape,
                    buf,
                    len,
                }) => {
                    let bytes: &[u8] = bytemuck::cast_slice(&buf);
                    Tensor::from_bytes(dtype, shape, &bytes[..len])
                }
                // An output the node does not name.
                None => Ok(Tensor::scalar(0f32)),
                Some(Allocated::Device { .. }) => {
                    Err(Error::invalid("device output from a host kernel"))
                }
            })
            .collect()
    }

    fn compute_on_device(
        &self,
        inputs: &[Option<&DeviceTensor>],
    ) -> Result<(Vec<Option<DeviceTensor>>, DeviceCost)> {
        let args = self.arguments(inputs, |t: &DeviceTensor| {
            let buf = t
                .buffer()
                .as_any()
                .downcast_ref::<AbiBuffer>()
                .ok_or_else(|| Error::invalid("a device tensor of another provider"))?;
            Ok((t.dtype(), t.shape(), buf.ptr))
        })?;
        let (outputs, cost) = self.invoke(&args)?;
        let tensors = outputs
            .into_iter()
            .map(|o| match o {
                Some(Allocated::Device { dtype, shape, buf }) => {
                    Some(DeviceTensor::new(dtype, shape, Box::new(buf)))
                }
                _ => None,
            })
            .collect();
        Ok((tensors, cost))
    }
}

/// Copies through a provider's `copy_to_device` / `copy_to_host`.
pub(crate) struct AbiMemory {
    pub(crate) instance: Arc<Instance>,
}

impl DeviceMemory for AbiMemory {
    fn upload(&self, tensor: &Tensor) -> Result<(DeviceTensor, DeviceCost)> {
        abi_dtype(tensor.dtype())?;
        let bytes = tensor.as_bytes().ok_or_else(|| {
            Error::NotSupported(format!(
                "{} tensors cannot be copied to a device",
                tensor.dtype()
            ))
        })?;
        let buf = AbiBuffer::alloc(&self.instance, bytes.len())?;
        let mut profile = OxrtProfile::default();
        if !bytes.is_empty() {
            // SAFETY: `buf` holds `bytes.len()` bytes of device memory from
            // this instance; `bytes` is readable for that length.
            let status = unsafe {
                (self.instance.api().copy_to_device)(
                    self.instance.handle,
                    buf.ptr,
                    bytes.as_ptr(),
                    bytes.len(),
                    &mut profile,
                )
            };
            self.instance.check("copy_to_device", status)?;
        }
        let t = DeviceTensor::new(tensor.dtype(), tensor.shape().to_vec(), Box::new(buf));
        Ok((t, cost(&profile)))
    }

    fn download(&self, tensor: &DeviceTensor) -> Result<(Tensor, DeviceCost)> {
        let buf = tensor
            .buffer()
            .as_any()
            .downcast_ref::<AbiBuffer>()
            .ok_or_else(|| Error::invalid("a device tensor of another provider"))?;
        let len = byte_len(tensor.dtype(), tensor.shape())?;
        let mut host = host_buffer(len);
        let mut profile = OxrtProfile::default();
        if len > 0 {
            // SAFETY: `host` has at least `len` writable bytes; `buf` is this
            // instance's device memory of `len` bytes.
            let status = unsafe {
                (self.instance.api().copy_to_host)(
                    self.instance.handle,
                    host.as_mut_ptr().cast(),
                    buf.ptr,
                    len,
                    &mut profile,
                )
            };
            self.instance.check("copy_to_host", status)?;
        }
        let bytes: &[u8] = bytemuck::cast_slice(&host);
        let t = Tensor::from_bytes(tensor.dtype(), tensor.shape().to_vec(), &bytes[..len])?;
        Ok((t, cost(&profile)))
    }
}

//! 2-D convolution (im2col kernel + cuBLAS per image and group, bias and
//! a fused activation after), 2-D pooling (max, average, global) and
//! inference BatchNormalization (folded on the host into a per-channel
//! scale and shift), f32 NCHW.

use std::sync::Arc;

use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{Gemm as _, GemmConfig};
use cudarc::driver::{DeviceRepr, PushKernelArg};
use oxrt_core::device::DeviceTensor;
use oxrt_core::shape::WindowAttrs;
use oxrt_core::{DeviceMemory, Error, Kernel, KernelInfo, Node, Result, Tensor};

use super::elementwise::{binary, Unary};
use super::{boxed, first, host_constant, launch_for, Constants, GpuKernel};
use crate::gpu::{failed, Gpu};
use crate::memory::{f32_view, CudaMemory, Output};

/// The `Window` struct of kernels.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Window {
    c: i32,
    h: i32,
    w: i32,
    oh: i32,
    ow: i32,
    kh: i32,
    kw: i32,
    sh: i32,
    sw: i32,
    ph: i32,
    pw: i32,
    dh: i32,
    dw: i32,
}

// SAFETY: `repr(C)` plain data of thirteen i32, laid out as the `Window`
// struct of kernels.cu (thirteen ints), passed to kernels by value.
unsafe impl DeviceRepr for Window {}

impl Window {
    /// The geometry of `attrs` over `[c, h, w]` planes (`kernel` when the
    /// attributes leave it to the weights).
    fn new(attrs: &WindowAttrs, [c, h, w]: [usize; 3], kernel: Option<&[usize]>) -> Result<Self> {
        let win = attrs.resolve(&[h, w], kernel)?;
        if win.output.len() != 2 {
            return Err(Error::NotSupported("only 2-D windows run on CUDA".into()));
        }
        let i = |v: usize| {
            i32::try_from(v).map_err(|_| Error::NotSupported(format!("window size {v} on CUDA")))
        };
        Ok(Self {
            c: i(c)?,
            h: i(h)?,
            w: i(w)?,
            oh: i(win.output[0])?,
            ow: i(win.output[1])?,
            kh: i(win.kernel[0])?,
            kw: i(win.kernel[1])?,
            sh: i(win.strides[0])?,
            sw: i(win.strides[1])?,
            ph: i(win.pads_begin[0])?,
            pw: i(win.pads_begin[1])?,
            dh: i(win.dilations[0])?,
            dw: i(win.dilations[1])?,
        })
    }

    fn out_plane(&self) -> usize {
        self.oh as usize * self.ow as usize
    }
}

/// `[n, c, h, w]` of a 4-D input.
fn nchw(x: &DeviceTensor, op: &str) -> Result<[usize; 4]> {
    match *x.shape() {
        [n, c, h, w] => Ok([n, c, h, w]),
        ref s => Err(Error::NotSupported(format!(
            "{op} on CUDA takes N x C x H x W inputs, got {s:?}"
        ))),
    }
}

struct Conv {
    gpu: Arc<Gpu>,
    constants: Constants,
    attrs: WindowAttrs,
    group: usize,
    epilogue: Option<Unary>,
}

/// Code of Add in `binary()`.
const ADD: i32 = 0;

impl Conv {
    fn run(
        &self,
        x: &DeviceTensor,
        w: &DeviceTensor,
        b: Option<&DeviceTensor>,
    ) -> Result<DeviceTensor> {
        let [n, c, h, wd] = nchw(x, "Conv")?;
        let ws = w.shape();
        let (g, m) = (self.group, ws.first().copied().unwrap_or(0));
        if ws.len() != 4 || g == 0 || c % g != 0 || m % g != 0 || ws[1] * g != c {
            return Err(Error::invalid(format!(
                "Conv: group {g} does not fit X {:?} and W {ws:?}",
                x.shape()
            )));
        }
        let (cg, mg) = (c / g, m / g);
        let win = Window::new(&self.attrs, [cg, h, wd], Some(&ws[2..]))?;
        let rows = cg * ws[2] * ws[3];
        let plane = win.out_plane();
        let mut out = Output::new(&self.gpu, vec![n, m, win.oh as usize, win.ow as usize])?;
        let (xv, wv) = (f32_view(x)?, f32_view(w)?);
        let mut col = self.gpu.alloc(rows * plane * 4)?;
        let f = self.gpu.function("im2col_f32")?;
        let int = |v: usize| {
            i32::try_from(v).map_err(|_| {
                Error::NotSupported(format!("dimension {v} exceeds cuBLAS's int range"))
            })
        };
        {
            let mut yv = out.view()?;
            for img in 0..n {
                for grp in 0..g {
                    let xg = xv
                        .slice((img * c + grp * cg) * h * wd..(img * c + (grp + 1) * cg) * h * wd);
                    // SAFETY: `col` has rows * plane * 4 bytes, room for its
                    // rows x plane f32 (written in full by im2col below).
                    let mut colv = unsafe { col.transmute_mut::<f32>(rows * plane) }
                        .ok_or_else(|| Error::invalid("im2col buffer too small"))?;
                    let mut launch = self.gpu.stream.launch_builder(&f);
                    launch.arg(&xg).arg(&mut colv).arg(&win);
                    // SAFETY: im2col_f32(const float*, float*, Window) reads
                    // the group's cg planes of h x w and writes rows x plane
                    // values, the sizes of both views.
                    unsafe { launch.launch(launch_for(rows * plane)) }
                        .map_err(|e| failed("im2col kernel", e))?;
                    let wg = wv.slice(grp * mg * rows..(grp + 1) * mg * rows);
                    let mut yg = yv.slice_mut(
                        (img * m + grp * mg) * plane..(img * m + (grp + 1) * mg) * plane,
                    );
                    // Column-major Y^T [plane x mg] = col^T [plane x rows] * W^T [rows x mg].
                    let cfg = GemmConfig {
                        transa: cublasOperation_t::CUBLAS_OP_N,
                        transb: cublasOperation_t::CUBLAS_OP_N,
                        m: int(plane)?,
                        n: int(mg)?,
                        k: int(rows)?,
                        alpha: 1.0f32,
                        lda: int(plane)?,
                        ldb: int(rows)?,
                        beta: 0.0,
                        ldc: int(plane)?,
                    };
                    // SAFETY: col is rows x plane, the weights mg x rows and
                    // the output block mg x plane, row-major, as configured;
                    // the output does not alias the operands.
                    unsafe { self.gpu.blas.gemm(cfg, &colv, &wg, &mut yg) }
                        .map_err(|e| failed("cuBLAS SGEMM", e))?;
                }
            }
        }
        let mut y = out.finish();
        if let Some(b) = b {
            if b.shape() != [m] {
                return Err(Error::invalid(format!(
                    "Conv: B must have {m} values, got {:?}",
                    b.shape()
                )));
            }
            // Bias as [m, 1, 1], broadcast over images and positions.
            let bias = crate::memory::relabel(b, vec![m, 1, 1])?;
            y = binary(&self.gpu, ADD, &y, &bias)?;
        }
        if let Some(e) = &self.epilogue {
            y = e.apply(&self.gpu, &y)?;
        }
        Ok(y)
    }
}

impl GpuKernel for Conv {
    fn op(&self) -> &str {
        "Conv"
    }

    fn run(&self, inputs: &[Option<&DeviceTensor>]) -> Result<DeviceTensor> {
        let x = self.constants.required(inputs, 0, "Conv")?;
        let w = self.constants.required(inputs, 1, "Conv")?;
        let b = self.constants.input(inputs, 2);
        self.run(x, w, b)
    }
}

/// Pooling modes of `pool2d_f32`.
#[derive(Clone, Copy)]
enum Mode {
    Max = 0,
    AverageWithPads = 1,
    Average = 2,
}

struct Pool {
    gpu: Arc<Gpu>,
    attrs: Option<WindowAttrs>,
    mode: Mode,
}

impl GpuKernel for Pool {
    fn op(&self) -> &str {
        "pooling"
    }

    fn run(&self, inputs: &[Option<&DeviceTensor>]) -> Result<DeviceTensor> {
        let x = first(inputs, "pooling")?;
        let [n, c, h, w] = nchw(x, "pooling")?;
        // Global pooling is one window over the whole plane.
        let global = WindowAttrs {
            kernel_shape: Some(vec![h, w]),
            strides: None,
            dilations: None,
            pads: None,
            auto_pad: oxrt_core::shape::AutoPad::NotSet,
            ceil_mode: false,
        };
        let win = Window::new(self.attrs.as_ref().unwrap_or(&global), [c, h, w], None)?;
        let mut out = Output::new(&self.gpu, vec![n, c, win.oh as usize, win.ow as usize])?;
        let xv = f32_view(x)?;
        {
            let mut yv = out.view()?;
            let f = self.gpu.function("pool2d_f32")?;
            let planes = (n * c) as i64;
            let mode = self.mode as i32;
            let mut launch = self.gpu.stream.launch_builder(&f);
            launch
                .arg(&xv)
                .arg(&mut yv)
                .arg(&planes)
                .arg(&win)
                .arg(&mode);
            // SAFETY: pool2d_f32(const float*, float*, long long, Window, int)
            // reads planes of h x w and writes planes x oh x ow values.
            unsafe { launch.launch(launch_for(n * c * win.out_plane())) }
                .map_err(|e| failed("pooling kernel", e))?;
        }
        Ok(out.finish())
    }
}

pub(crate) fn create(
    node: &Node,
    info: &KernelInfo<'_>,
    gpu: &Arc<Gpu>,
) -> Result<Box<dyn Kernel>> {
    let pool = |attrs: Option<WindowAttrs>, mode| -> Result<Box<dyn Kernel>> {
        Ok(boxed(Pool {
            gpu: gpu.clone(),
            attrs,
            mode,
        }))
    };
    match node.op_type.as_str() {
        "MaxPool" => {
            if node.outputs.len() > 1 && node.outputs.get(1).is_some_and(|o| !o.is_empty()) {
                return Err(Error::NotSupported("MaxPool indices on CUDA".into()));
            }
            if node.int_or("storage_order", 0)? != 0 {
                return Err(Error::NotSupported(
                    "MaxPool storage_order 1 on CUDA".into(),
                ));
            }
            pool(Some(WindowAttrs::from_node(node)?), Mode::Max)
        }
        "AveragePool" => {
            let mode = if node.int_or("count_include_pad", 0)? != 0 {
                Mode::AverageWithPads
            } else {
                Mode::Average
            };
            pool(Some(WindowAttrs::from_node(node)?), mode)
        }
        "GlobalAveragePool" => pool(None, Mode::Average),
        "GlobalMaxPool" => pool(None, Mode::Max),
        _ => {
            let group = usize::try_from(node.int_or("group", 1)?)
                .ok()
                .filter(|&g| g > 0)
                .ok_or_else(|| Error::invalid("Conv group must be positive"))?;
            Ok(boxed(Conv {
                gpu: gpu.clone(),
                constants: Constants::upload(gpu, info, 3)?,
                attrs: WindowAttrs::from_node(node)?,
                group,
                epilogue: Unary::epilogue(node)?,
            }))
        }
    }
}

/// Inference BatchNormalization: `y = x * scale[c] + shift[c]` with
/// `scale = gamma / sqrt(var + eps)`, `shift = beta - mean * scale`
/// computed once from the constant parameters.
struct BatchNorm {
    gpu: Arc<Gpu>,
    scale: DeviceTensor,
    shift: DeviceTensor,
    channels: usize,
}

impl GpuKernel for BatchNorm {
    fn op(&self) -> &str {
        "BatchNormalization"
    }

    fn run(&self, inputs: &[Option<&DeviceTensor>]) -> Result<DeviceTensor> {
        let x = first(inputs, "BatchNormalization")?;
        let s = x.shape();
        if s.len() < 2 || s[1] != self.channels {
            return Err(Error::invalid(format!(
                "BatchNormalization: X {s:?} must have {} channels",
                self.channels
            )));
        }
        let inner: usize = s[2..].iter().product();
        let mut out = Output::new(&self.gpu, s.to_vec())?;
        let n = out.len();
        let (xv, sv, hv) = (f32_view(x)?, f32_view(&self.scale)?, f32_view(&self.shift)?);
        {
            let mut yv = out.view()?;
            let f = self.gpu.function("channel_affine_f32")?;
            let (n64, c64, i64_) = (n as i64, self.channels as i64, inner as i64);
            let mut launch = self.gpu.stream.launch_builder(&f);
            launch
                .arg(&xv)
                .arg(&sv)
                .arg(&hv)
                .arg(&mut yv)
                .arg(&n64)
                .arg(&c64)
                .arg(&i64_);
            // SAFETY: channel_affine_f32 reads x[0..n), scale and shift at
            // channel indices < channels, and writes y[0..n).
            unsafe { launch.launch(launch_for(n)) }
                .map_err(|e| failed("BatchNormalization kernel", e))?;
        }
        Ok(out.finish())
    }
}

pub(crate) fn create_batch_norm(
    node: &Node,
    info: &KernelInfo<'_>,
    gpu: &Arc<Gpu>,
) -> Result<Box<dyn Kernel>> {
    if node.int_or("training_mode", 0)? != 0 {
        return Err(Error::NotSupported(
            "training-mode BatchNormalization on CUDA".into(),
        ));
    }
    let eps = f64::from(node.float_or("epsilon", 1e-5)?);
    let param = |i: usize| -> Result<Vec<f64>> {
        host_constant(info, i, "BatchNormalization")?
            .to_f64_vec()
            .ok_or_else(|| Error::invalid("BatchNormalization parameters must be numbers"))
    };
    let (gamma, beta, mean, var) = (param(1)?, param(2)?, param(3)?, param(4)?);
    let c = gamma.len();
    if [beta.len(), mean.len(), var.len()].iter().any(|&l| l != c) {
        return Err(Error::invalid(
            "BatchNormalization parameters differ in length",
        ));
    }
    let scale: Vec<f32> = (0..c)
        .map(|i| (gamma[i] / (var[i] + eps).sqrt()) as f32)
        .collect();
    let shift: Vec<f32> = (0..c)
        .map(|i| (beta[i] - mean[i] * gamma[i] / (var[i] + eps).sqrt()) as f32)
        .collect();
    let memory = CudaMemory { gpu: gpu.clone() };
    Ok(boxed(BatchNorm {
        gpu: gpu.clone(),
        scale: memory.upload(&Tensor::from_vec(vec![c], scale)?)?.0,
        shift: memory.upload(&Tensor::from_vec(vec![c], shift)?)?.0,
        channels: c,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn window_matches_the_cuda_struct_and_resolves_pads() {
        assert_eq!(std::mem::size_of::<Window>(), 13 * 4);
        let attrs = WindowAttrs {
            kernel_shape: None,
            strides: Some(vec![2, 2]),
            dilations: None,
            pads: Some(vec![1, 1, 1, 1]),
            auto_pad: oxrt_core::shape::AutoPad::NotSet,
            ceil_mode: false,
        };
        let w = Window::new(&attrs, [64, 224, 224], Some(&[3, 3])).unwrap();
        assert_eq!((w.oh, w.ow, w.kh, w.sh, w.ph, w.dh), (112, 112, 3, 2, 1, 1));
    }
}

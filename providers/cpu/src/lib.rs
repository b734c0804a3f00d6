//! The oxrt CPU execution provider.
//!
//! Kernels live in [`ops`], one module per operator family, each registering
//! itself in a [`KernelRegistry`]. Matrix products go through the `gemm`
//! crate (packed, SIMD, run-time ISA selection); intra-op parallelism uses
//! the session's rayon pool.

pub mod broadcast;
pub mod fast_math;
pub mod gemm;
pub(crate) mod gemm_tail;
pub mod kernel;
pub mod minifloat;
pub mod ops;
pub mod packed;
pub(crate) mod scratch;
#[cfg(target_arch = "x86_64")]
pub(crate) mod transpose16;

use oxrt_core::{
    DeviceInfo, DeviceKind, ExecutionProvider, Kernel, KernelInfo, KernelRegistry, Node,
    NodeContext, Result, WinogradLimits,
};

/// The CPU execution provider.
#[derive(Clone)]
pub struct CpuProvider {
    registry: KernelRegistry,
}

impl Default for CpuProvider {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuProvider {
    /// The provider's name, as used in provider lists (`--provider cpu`).
    pub const NAME: &'static str = "cpu";

    /// A provider with every CPU kernel registered.
    pub fn new() -> Self {
        let mut registry = KernelRegistry::new();
        ops::register_all(&mut registry);
        Self { registry }
    }

    /// The kernels this provider has.
    pub fn registry(&self) -> &KernelRegistry {
        &self.registry
    }
}

impl ExecutionProvider for CpuProvider {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn device(&self) -> DeviceInfo {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        DeviceInfo {
            kind: DeviceKind::Cpu,
            id: 0,
            description: format!(
                "{} {} host, {threads} hardware threads",
                std::env::consts::ARCH,
                std::env::consts::OS
            ),
        }
    }

    fn supports(&self, node: &Node, ctx: &NodeContext<'_>) -> Result<(), String> {
        self.registry.lookup(node, ctx).map(|_| ())
    }

    fn create_kernel(&self, node: &Node, info: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
        let def = self
            .registry
            .lookup(node, &info.node)
            .map_err(oxrt_core::Error::NotSupported)?;
        (def.factory)(node, info)
    }

    fn winograd_limits(&self) -> Option<WinogradLimits> {
        Some(ops::winograd::limits())
    }
}

/// `n` test values in [-1, 1] (a fixed pseudo-random pattern per `seed`),
/// for kernels checked against their definitions.
#[cfg(test)]
pub(crate) fn test_values(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919 + seed * 104729) % 201) as f32 / 100.0 - 1.0)
        .collect()
}

/// The 2-D window of `kernel`, `strides`, `pads` (begin, then end) and
/// `dilations` over an input of `size`, for kernel tests.
#[cfg(test)]
pub(crate) fn test_window2d(
    kernel: &[usize],
    strides: &[usize],
    pads: &[usize],
    dilations: &[usize],
    size: [usize; 2],
) -> ops::window::Window2d {
    let attrs = oxrt_core::shape::WindowAttrs {
        kernel_shape: Some(kernel.to_vec()),
        strides: Some(strides.to_vec()),
        pads: Some(pads.to_vec()),
        dilations: Some(dilations.to_vec()),
        auto_pad: oxrt_core::shape::AutoPad::NotSet,
        ceil_mode: false,
    };
    match attrs
        .resolve(&size, Some(kernel))
        .and_then(|win| ops::window::Window2d::new(&win))
    {
        Ok(g) => g,
        Err(e) => panic!("test window {kernel:?} over {size:?}: {e}"),
    }
}

/// A 2-D convolution by its definition, in f64: `x` has `c` planes of
/// `h x wd`, `w` is `m x (c / groups) x kh x kw`, zeros outside the input;
/// the kernel tests' reference.
#[cfg(test)]
pub(crate) fn conv2d_reference(
    x: &[f32],
    w: &[f32],
    [c, m, groups]: [usize; 3],
    [h, wd]: [usize; 2],
    g: &ops::window::Window2d,
) -> Vec<f64> {
    let ([kh, kw], [oh, ow]) = (g.kernel, g.output);
    let (cg, mg) = (c / groups, m / groups);
    let at = |o: usize, k: usize, axis: usize| {
        o as isize * g.strides[axis] + k as isize * g.dilations[axis] - g.pads[axis]
    };
    let mut y = vec![0.0; m * oh * ow];
    for oc in 0..m {
        for (oy, ox) in (0..oh).flat_map(|oy| (0..ow).map(move |ox| (oy, ox))) {
            let mut acc = 0.0;
            for i in 0..cg {
                let ic = oc / mg * cg + i;
                for (ky, kx) in (0..kh).flat_map(|ky| (0..kw).map(move |kx| (ky, kx))) {
                    let (iy, ix) = (at(oy, ky, 0), at(ox, kx, 1));
                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                        acc += f64::from(x[(ic * h + iy as usize) * wd + ix as usize])
                            * f64::from(w[((oc * cg + i) * kh + ky) * kw + kx]);
                    }
                }
            }
            y[(oc * oh + oy) * ow + ox] = acc;
        }
    }
    y
}

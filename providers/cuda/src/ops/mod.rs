//! The CUDA kernels by operator family, and what they share: which nodes
//! the provider takes, constant inputs kept on the device, launch sizes
//! and the stride tables of broadcasting and transposition.

use std::sync::Arc;

use cudarc::driver::{DeviceRepr, LaunchConfig};
use oxrt_core::device::{DeviceCost, DeviceTensor};
use oxrt_core::{DataType, DeviceMemory, Error, KernelInfo, Node, NodeContext, Result, Tensor};

use crate::gpu::Gpu;
use crate::memory::CudaMemory;

pub(crate) mod cast;
pub(crate) mod conv;
pub(crate) mod elementwise;
pub(crate) mod indexing;
pub(crate) mod layout;
pub(crate) mod matmul;
pub(crate) mod norm;
pub(crate) mod reduce;
pub(crate) mod softmax;

/// The oxrt domain of fused operators.
const OXRT: &str = oxrt_core::optimize::OXRT_DOMAIN;

/// A kernel factory: the node, what the session knows of it, the device.
type Factory = fn(&Node, &KernelInfo<'_>, &Arc<Gpu>) -> Result<Box<dyn oxrt_core::Kernel>>;

/// Every operator the provider runs: (domain, op, factory). Inputs must be
/// f32 except where a family says otherwise (see [`accepts_types`]).
fn table() -> &'static [(&'static str, &'static str, Factory)] {
    static TABLE: std::sync::LazyLock<Vec<(&'static str, &'static str, Factory)>> =
        std::sync::LazyLock::new(build_table);
    &TABLE
}

/// Builds [`table`] once.
fn build_table() -> Vec<(&'static str, &'static str, Factory)> {
    let mut t: Vec<(&'static str, &'static str, Factory)> = Vec::new();
    for op in elementwise::UNARY_OPS {
        t.push(("", op, elementwise::create_unary));
    }
    for op in elementwise::BINARY_OPS {
        t.push(("", op, elementwise::create_binary));
    }
    for op in ["MatMul", "Gemm"] {
        t.push(("", op, matmul::create));
    }
    t.push((OXRT, "FusedGemm", matmul::create));
    t.push((OXRT, "FusedMatMul", matmul::create));
    for op in [
        "Conv",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "GlobalMaxPool",
    ] {
        t.push(("", op, conv::create));
    }
    t.push(("", "BatchNormalization", conv::create_batch_norm));
    t.push((OXRT, "FusedConv", conv::create));
    for op in ["Softmax", "LogSoftmax"] {
        t.push(("", op, softmax::create));
    }
    for op in layout::OPS {
        t.push(("", op, layout::create));
    }
    for op in indexing::OPS {
        t.push(("", op, indexing::create));
    }
    for op in reduce::OPS {
        t.push(("", op, reduce::create));
    }
    t.push(("", "LayerNormalization", norm::create));
    t.push((OXRT, "LayerNormalization", norm::create));
    t.push(("", "Cast", cast::create));
    t
}

/// How many operators (domain, op type) the provider runs.
pub fn operator_count() -> usize {
    table().len()
}

/// The standard (default-domain) operators the provider runs, for the
/// conformance run to pick its cases.
pub fn operators() -> Vec<&'static str> {
    table()
        .iter()
        .filter(|(d, _, _)| d.is_empty())
        .map(|&(_, op, _)| op)
        .collect()
}

/// The factory for `node`, or why the provider declines it.
pub(crate) fn lookup(node: &Node, ctx: &NodeContext<'_>) -> std::result::Result<Factory, String> {
    let domain = if node.domain == "ai.onnx" {
        ""
    } else {
        node.domain.as_str()
    };
    let factory = table()
        .iter()
        .find(|(d, op, _)| *d == domain && *op == node.op_type)
        .map(|&(_, _, f)| f)
        .ok_or_else(|| format!("the CUDA provider has no kernel for {}", node.op_type))?;
    accepts_types(node, ctx)?;
    if node.op_type == "FusedConv" && node.input(3).is_some() {
        return Err("FusedConv with a residual input runs on the host".into());
    }
    Ok(factory)
}

/// What the node's inputs must be: f32 data for the compute kernels;
/// any 4-byte element type for the data the layout and indexing ops only
/// move (their shape, axes and index inputs are int64); Cast's pairs.
fn accepts_types(node: &Node, ctx: &NodeContext<'_>) -> std::result::Result<(), String> {
    let op = node.op_type.as_str();
    let moves = layout::OPS.contains(&op) || indexing::OPS.contains(&op);
    for i in 0..node.inputs.len() {
        if node.input(i).is_none() {
            continue;
        }
        let Some(dtype) = ctx.input_dtype(i) else {
            return Err(format!("input {i} has no inferred type"));
        };
        // Shape, axes, starts... and indices: every input after the first
        // of the moving ops and the reductions (Concat's are all data).
        let aux = i > 0 && op != "Concat" && (moves || reduce::OPS.contains(&op));
        let ok = match op {
            "Cast" => cast::SOURCES.contains(&dtype),
            "Gather" if aux => matches!(dtype, DataType::I64 | DataType::I32),
            _ if aux => dtype == DataType::I64,
            _ if moves => dtype.host_size() == 4 && dtype != DataType::String,
            _ => dtype == DataType::F32,
        };
        if !ok {
            return Err(format!(
                "input {i} is {dtype}, which the CUDA {op} kernel does not take"
            ));
        }
        if op == "Cast" {
            let to = node
                .int_or("to", 0)
                .ok()
                .and_then(|t| i32::try_from(t).ok())
                .and_then(DataType::from_onnx);
            match to {
                Some(to) if to == dtype || cast::mode(dtype, to).is_some() => {}
                _ => return Err(format!("Cast from {dtype} to {to:?} has no CUDA kernel")),
            }
        }
    }
    Ok(())
}

/// Constant inputs uploaded once at kernel creation, by input index.
pub(crate) struct Constants {
    device: Vec<Option<DeviceTensor>>,
}

impl Constants {
    /// Uploads every constant input of `info` among the first `inputs`
    /// (strings cannot live on the device).
    pub fn upload(gpu: &Arc<Gpu>, info: &KernelInfo<'_>, inputs: usize) -> Result<Self> {
        let memory = CudaMemory { gpu: gpu.clone() };
        let mut device = Vec::with_capacity(inputs);
        for i in 0..inputs {
            device.push(match info.constants.get(&i) {
                Some(t) if t.dtype() != DataType::String => Some(memory.upload(t)?.0),
                _ => None,
            });
        }
        Ok(Self { device })
    }

    /// Input `i`: the value passed in, else the uploaded constant.
    pub fn input<'a>(
        &'a self,
        inputs: &[Option<&'a DeviceTensor>],
        i: usize,
    ) -> Option<&'a DeviceTensor> {
        inputs
            .get(i)
            .copied()
            .flatten()
            .or_else(|| self.device.get(i).and_then(Option::as_ref))
    }

    /// Input `i`, which the operator requires.
    pub fn required<'a>(
        &'a self,
        inputs: &[Option<&'a DeviceTensor>],
        i: usize,
        op: &str,
    ) -> Result<&'a DeviceTensor> {
        self.input(inputs, i)
            .ok_or_else(|| Error::invalid(format!("{op}: input {i} is required")))
    }
}

/// A CUDA kernel: one output computed from device-resident inputs.
pub(crate) trait GpuKernel: Send + Sync + 'static {
    /// The operator, for errors.
    fn op(&self) -> &str;
    /// The output from the inputs (`None` for omitted or constant ones).
    fn run(&self, inputs: &[Option<&DeviceTensor>]) -> Result<DeviceTensor>;
}

/// A [`GpuKernel`] as a session kernel.
struct OnDevice<K>(K);

impl<K: GpuKernel> oxrt_core::Kernel for OnDevice<K> {
    fn compute(&self, _: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        Err(Error::NotSupported(format!(
            "{} runs on the CUDA device",
            self.0.op()
        )))
    }

    fn compute_on_device(
        &self,
        inputs: &[Option<&DeviceTensor>],
    ) -> Result<(Vec<Option<DeviceTensor>>, DeviceCost)> {
        Ok((vec![Some(self.0.run(inputs)?)], DeviceCost::default()))
    }
}

/// `k` boxed as a session kernel.
pub(crate) fn boxed(k: impl GpuKernel) -> Box<dyn oxrt_core::Kernel> {
    Box::new(OnDevice(k))
}

/// Input 0, which every operator requires.
pub(crate) fn first<'a>(inputs: &[Option<&'a DeviceTensor>], op: &str) -> Result<&'a DeviceTensor> {
    inputs
        .first()
        .copied()
        .flatten()
        .ok_or_else(|| Error::invalid(format!("{op}: input 0 is required")))
}

/// A constant host tensor the node's input `i` must be.
pub(crate) fn host_constant<'a>(info: &KernelInfo<'a>, i: usize, op: &str) -> Result<&'a Tensor> {
    info.constants.get(&i).copied().ok_or_else(|| {
        Error::NotSupported(format!(
            "{op} on CUDA needs input {i} to be a constant (an initializer)"
        ))
    })
}

/// Threads per block of the elementwise kernels.
const THREADS: u32 = 256;

/// A grid-stride launch over `n` elements.
pub(crate) fn launch_for(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(THREADS as usize).clamp(1, 65_535) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One block of 256 threads per row, for the kernels whose shared-memory
/// reductions hold 256 values (softmax, layer norm).
pub(crate) fn launch_rows(rows: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows.clamp(1, 65_535) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Row-major element strides of `shape`.
pub(crate) fn dense_strides(shape: &[usize]) -> Vec<i64> {
    let mut dense = vec![1i64; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        dense[d] = dense[d + 1] * shape[d + 1] as i64;
    }
    dense
}

/// Ranks the stride tables cover (as `MAX_RANK` in kernels.cu).
pub(crate) const MAX_RANK: usize = 8;

/// The `Strides` table of kernels.cu: output dims and, per operand, the
/// element stride of each output axis (0 where broadcast).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Strides {
    rank: i32,
    pad: i32,
    dims: [i64; MAX_RANK],
    a: [i64; MAX_RANK],
    b: [i64; MAX_RANK],
}

// SAFETY: `Strides` is `repr(C)` plain data laid out exactly as the
// `Strides` struct in kernels.cu (two ints, then three arrays of 8 long
// longs), so it can be passed to kernels by value.
unsafe impl DeviceRepr for Strides {}

/// Row-major strides of `shape` aligned to the last `rank` output axes,
/// 0 along axes where `shape` has size 1 (broadcast) or is missing.
fn broadcast_strides(shape: &[usize], rank: usize) -> Vec<i64> {
    let mut out = vec![0i64; rank];
    let mut stride = 1i64;
    for (k, &d) in shape.iter().enumerate().rev() {
        let axis = rank - (shape.len() - k);
        out[axis] = if d == 1 { 0 } else { stride };
        stride *= d as i64;
    }
    out
}

impl Strides {
    /// The table for `out = f(a, b)` with numpy broadcasting.
    pub fn broadcast(out: &[usize], a: &[usize], b: &[usize]) -> Result<Self> {
        Self::build(
            out,
            &broadcast_strides(a, out.len()),
            &broadcast_strides(b, out.len()),
        )
    }

    /// The table for `out[i] = x[perm-permuted i]`: input axis `perm[d]`
    /// becomes output axis `d`.
    pub fn transpose(x: &[usize], perm: &[usize]) -> Result<Self> {
        let dense = dense_strides(x);
        let out: Vec<usize> = perm.iter().map(|&p| x[p]).collect();
        let a: Vec<i64> = perm.iter().map(|&p| dense[p]).collect();
        Self::build(&out, &a, &vec![0; out.len()])
    }

    /// The table for `out[i] = x[base + sum of index * strides[d]]`.
    pub fn gather(out: &[usize], strides: &[i64]) -> Result<Self> {
        Self::build(out, strides, &vec![0; out.len()])
    }

    fn build(out: &[usize], a: &[i64], b: &[i64]) -> Result<Self> {
        if out.len() > MAX_RANK {
            return Err(Error::NotSupported(format!(
                "rank {} on CUDA (at most {MAX_RANK})",
                out.len()
            )));
        }
        let mut s = Strides {
            rank: out.len() as i32,
            ..Default::default()
        };
        for d in 0..out.len() {
            s.dims[d] = out[d] as i64;
            s.a[d] = a[d];
            s.b[d] = b[d];
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn broadcast_tables_zero_the_broadcast_axes() {
        let s = Strides::broadcast(&[2, 3, 4], &[2, 3, 4], &[3, 1]).unwrap();
        assert_eq!(s.rank, 3);
        assert_eq!(&s.dims[..3], [2, 3, 4]);
        assert_eq!(&s.a[..3], [12, 4, 1]);
        assert_eq!(&s.b[..3], [0, 1, 0]);
    }

    #[test]
    fn transpose_tables_read_the_permuted_strides() {
        // [2, 3, 4] with perm [2, 0, 1] -> out [4, 2, 3]; out axis 0 walks
        // input axis 2 (stride 1), axis 1 input axis 0 (12), axis 2 input
        // axis 1 (4).
        let s = Strides::transpose(&[2, 3, 4], &[2, 0, 1]).unwrap();
        assert_eq!(&s.dims[..3], [4, 2, 3]);
        assert_eq!(&s.a[..3], [1, 12, 4]);
        assert!(Strides::transpose(&[1; 9], &[0, 1, 2, 3, 4, 5, 6, 7, 8]).is_err());
    }

    #[test]
    fn the_operator_table_has_one_entry_per_operator() {
        let t = table();
        let mut keys: Vec<(&str, &str)> = t.iter().map(|(d, o, _)| (*d, *o)).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), operator_count());
        assert_eq!(operator_count(), 59);
        assert!(operators().contains(&"Conv") && !operators().contains(&"FusedConv"));
    }

    #[test]
    fn the_table_matches_the_cuda_struct_layout() {
        // int rank, int pad, then three long long[8].
        assert_eq!(std::mem::size_of::<Strides>(), 8 + 3 * 8 * 8);
    }
}

//! MatMul, Gemm, FusedMatMul and FusedGemm through cuBLAS (f32).
//!
//! cuBLAS is column-major: a row-major `C = op(A) op(B)` is computed as the
//! column-major `C^T = op(B)^T op(A)^T`, reading each stored row-major
//! matrix as its transpose. Batched products use the strided-batched call
//! (a stride of 0 broadcasts a 2-D operand); a 2-D right operand folds
//! the left one's batch into its rows (one call).

use std::sync::Arc;

use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{Gemm as _, GemmConfig, StridedBatchedConfig};
use oxrt_core::device::DeviceTensor;
use oxrt_core::{Error, Kernel, KernelInfo, Node, Result, Tensor};

use super::elementwise::{binary, Unary};
use super::{boxed, host_constant, Constants, GpuKernel};
use crate::gpu::{failed, Gpu};
use crate::memory::{f32_view, CudaMemory, Output};
use oxrt_core::DeviceMemory;

/// Code of Add in `binary()`.
const ADD: i32 = 0;

/// A product's geometry: `batch` products of `op(A) [m x k]` and
/// `op(B) [k x n]`, element strides between the batch's operands.
#[derive(Debug, Clone, PartialEq)]
struct Plan {
    m: usize,
    k: usize,
    n: usize,
    batch: usize,
    stride_a: usize,
    stride_b: usize,
    trans: [bool; 2],
    out: Vec<usize>,
}

/// The plan for shapes `a` and `b` (numpy MatMul semantics, last two axes
/// swapped first where `trans` says).
fn plan(a: &[usize], b: &[usize], trans: [bool; 2]) -> Result<Plan> {
    let bad = || {
        Error::invalid(format!(
            "MatMul of shapes {a:?} and {b:?} (transposed: {trans:?}) does not fit"
        ))
    };
    if a.is_empty() || b.is_empty() {
        return Err(bad());
    }
    // 1-D operands become a row (A) or a column (B), dropped from the output.
    let a2: Vec<usize> = if a.len() == 1 {
        vec![1, a[0]]
    } else {
        a.to_vec()
    };
    let b2: Vec<usize> = if b.len() == 1 {
        vec![b[0], 1]
    } else {
        b.to_vec()
    };
    let last2 = |s: &[usize], t: bool| {
        let (r, c) = (s[s.len() - 2], s[s.len() - 1]);
        if t {
            (c, r)
        } else {
            (r, c)
        }
    };
    let (m, k) = last2(&a2, trans[0]);
    let (kb, n) = last2(&b2, trans[1]);
    if k != kb {
        return Err(bad());
    }
    let (ba, bb) = (&a2[..a2.len() - 2], &b2[..b2.len() - 2]);
    let batch_dims = oxrt_core::shape::broadcast(ba, bb).map_err(|_| bad())?;
    let count = |s: &[usize]| s.iter().product::<usize>();
    let batch = count(&batch_dims);
    let (stride_a, stride_b) = match (count(ba), count(bb)) {
        (x, y) if x == batch && y == batch => (m * k, k * n),
        (x, 1) if x == batch => (m * k, 0),
        (1, y) if y == batch => (0, k * n),
        _ => {
            return Err(Error::NotSupported(format!(
                "MatMul batch broadcasting of {a:?} and {b:?} on CUDA"
            )))
        }
    };
    let mut out = batch_dims;
    if a.len() > 1 {
        out.push(m);
    }
    if b.len() > 1 {
        out.push(n);
    }
    let mut p = Plan {
        m,
        k,
        n,
        batch,
        stride_a,
        stride_b,
        trans,
        out,
    };
    // A 2-D B under an untransposed batched A: one product of all rows.
    if p.stride_b == 0 && p.batch > 1 && !trans[0] {
        p.m *= p.batch;
        p.batch = 1;
    }
    Ok(p)
}

/// `alpha * op(A) op(B)` into a new tensor.
fn product(
    gpu: &Gpu,
    a: &DeviceTensor,
    b: &DeviceTensor,
    trans: [bool; 2],
    alpha: f32,
) -> Result<DeviceTensor> {
    let p = plan(a.shape(), b.shape(), trans)?;
    let (av, bv) = (f32_view(a)?, f32_view(b)?);
    let mut out = Output::new(gpu, p.out.clone())?;
    if out.len() == 0 {
        return Ok(out.finish());
    }
    let int = |v: usize| {
        i32::try_from(v)
            .map_err(|_| Error::NotSupported(format!("dimension {v} exceeds cuBLAS's int range")))
    };
    let op = |t: bool| {
        if t {
            cublasOperation_t::CUBLAS_OP_T
        } else {
            cublasOperation_t::CUBLAS_OP_N
        }
    };
    // Column-major C^T [n x m] = op(B)^T [n x k] * op(A)^T [k x m].
    let cfg = GemmConfig {
        transa: op(p.trans[1]),
        transb: op(p.trans[0]),
        m: int(p.n)?,
        n: int(p.m)?,
        k: int(p.k)?,
        alpha,
        lda: int(if p.trans[1] { p.k } else { p.n })?,
        ldb: int(if p.trans[0] { p.m } else { p.k })?,
        beta: 0.0,
        ldc: int(p.n)?,
    };
    {
        let mut cv = out.view()?;
        // SAFETY: the views hold the matrices the configuration describes
        // (`plan` checked the shapes; leading dimensions are the stored row
        // lengths) and C does not alias A or B (a fresh allocation).
        let r = unsafe {
            if p.batch == 1 {
                gpu.blas.gemm(cfg, &bv, &av, &mut cv)
            } else {
                gpu.blas.gemm_strided_batched(
                    StridedBatchedConfig {
                        gemm: cfg,
                        batch_size: int(p.batch)?,
                        stride_a: p.stride_b as i64,
                        stride_b: p.stride_a as i64,
                        stride_c: (p.m * p.n) as i64,
                    },
                    &bv,
                    &av,
                    &mut cv,
                )
            }
        };
        r.map_err(|e| failed("cuBLAS SGEMM", e))?;
    }
    Ok(out.finish())
}

struct MatMul {
    gpu: Arc<Gpu>,
    constants: Constants,
    trans: [bool; 2],
    alpha: f32,
    /// Gemm's `beta * C` (uploaded) or FusedMatMul's bias: added after.
    addend: Option<DeviceTensor>,
    /// Input index of a non-constant addend (Gemm's C, FusedMatMul's bias).
    addend_input: Option<usize>,
    epilogue: Option<Unary>,
    name: String,
}

impl GpuKernel for MatMul {
    fn op(&self) -> &str {
        &self.name
    }

    fn run(&self, inputs: &[Option<&DeviceTensor>]) -> Result<DeviceTensor> {
        let a = self.constants.required(inputs, 0, &self.name)?;
        let b = self.constants.required(inputs, 1, &self.name)?;
        let mut y = product(&self.gpu, a, b, self.trans, self.alpha)?;
        let addend = self.addend.as_ref().or_else(|| {
            self.addend_input
                .and_then(|i| self.constants.input(inputs, i))
        });
        if let Some(c) = addend {
            y = binary(&self.gpu, ADD, &y, c)?;
        }
        if let Some(e) = &self.epilogue {
            y = e.apply(&self.gpu, &y)?;
        }
        Ok(y)
    }
}

pub(crate) fn create(
    node: &Node,
    info: &KernelInfo<'_>,
    gpu: &Arc<Gpu>,
) -> Result<Box<dyn Kernel>> {
    let gemm = matches!(node.op_type.as_str(), "Gemm" | "FusedGemm");
    let fused = node.op_type.starts_with("Fused");
    let trans = if node.op_type == "MatMul" {
        [false, false]
    } else {
        [
            node.int_or("transA", 0)? != 0,
            node.int_or("transB", 0)? != 0,
        ]
    };
    let alpha = node.float_or("alpha", 1.0)?;
    let constants = Constants::upload(gpu, info, node.inputs.len())?;
    let (mut addend, mut addend_input) = (None, None);
    if node.input(2).is_some() {
        let beta = if gemm {
            node.float_or("beta", 1.0)?
        } else {
            1.0
        };
        match info.constants.get(&2) {
            Some(_) if beta != 1.0 => {
                let c = host_constant(info, 2, &node.op_type)?;
                let scaled: Vec<f32> = c.as_slice::<f32>()?.iter().map(|v| v * beta).collect();
                let t = Tensor::from_vec(c.shape().to_vec(), scaled)?;
                addend = Some(CudaMemory { gpu: gpu.clone() }.upload(&t)?.0);
            }
            _ if beta != 1.0 => {
                return Err(Error::NotSupported(
                    "Gemm with beta != 1 and a non-constant C on CUDA".into(),
                ))
            }
            _ => addend_input = Some(2),
        }
    }
    Ok(boxed(MatMul {
        gpu: gpu.clone(),
        constants,
        trans,
        alpha,
        addend,
        addend_input,
        epilogue: if fused { Unary::epilogue(node)? } else { None },
        name: node.op_type.clone(),
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn plans_fold_batches_broadcast_and_drop_vector_axes() {
        // A 2-D weight under a batched activation: one product of all rows.
        let p = plan(&[2, 128, 768], &[768, 3072], [false, false]).unwrap();
        assert_eq!((p.m, p.k, p.n, p.batch), (256, 768, 3072, 1));
        assert_eq!(p.out, [2, 128, 3072]);
        // Attention scores: batched on both sides, B transposed.
        let p = plan(&[1, 12, 128, 64], &[1, 12, 128, 64], [false, true]).unwrap();
        assert_eq!((p.m, p.k, p.n, p.batch), (128, 64, 128, 12));
        assert_eq!((p.stride_a, p.stride_b), (128 * 64, 128 * 64));
        assert_eq!(p.out, [1, 12, 128, 128]);
        // A 2-D left operand broadcast over B's batch.
        let p = plan(&[3, 4], &[5, 4, 2], [false, false]).unwrap();
        assert_eq!((p.batch, p.stride_a, p.stride_b), (5, 0, 8));
        // Vectors.
        assert_eq!(plan(&[4], &[4, 2], [false, false]).unwrap().out, [2]);
        assert_eq!(plan(&[3, 4], &[4], [false, false]).unwrap().out, [3]);
        // Mismatches and partial batch broadcasting.
        assert!(plan(&[3, 4], &[5, 2], [false, false]).is_err());
        assert!(matches!(
            plan(&[2, 1, 3, 4], &[1, 5, 4, 2], [false, false]),
            Err(Error::NotSupported(_))
        ));
    }
}

//! MatMul (numpy semantics, batched with broadcasting), MatMulInteger,
//! QLinearMatMul and Gemm.

use oxrt_core::infer::matmul_shape;
use oxrt_core::shape::broadcast;
use oxrt_core::{
    DataType as D, Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor,
};

use crate::broadcast::binary;
use crate::gemm::{gemm, MatRef};
use crate::kernel::{cast_f32, optional, required, unsupported_type, with_numeric_type, Arith};
use crate::ops::cast::cast;
use crate::ops::elementwise::NUMERIC;
use crate::ops::unary::round_half_even;
use crate::packed::{gemm_packed_t, PackedA};

struct MatMul {
    packed: Option<PackedWeights>,
}

/// A MatMul's constant f32 weights (`B`, `k x n`), packed at kernel
/// creation for [`gemm_packed_t`].
pub(crate) struct PackedWeights {
    packed: PackedA,
    k: usize,
    n: usize,
}

/// Activation rows up to which the packed product beats the `gemm` crate
/// (which packs the weights on every call): 5-11% at 128 tokens, even at
/// 512 (BERT-base's projections, `cargo bench -p oxrt-benches -- weights`).
const PACKED_MAX_ROWS: usize = 384;

impl PackedWeights {
    /// Input 1 of the node, when it is a constant f32 matrix (read as
    /// stored, not transposed) whose output width fills whole panels.
    pub(crate) fn from_info(info: &KernelInfo<'_>, transpose_b: bool) -> Option<Self> {
        let w = info.constants.get(&1)?;
        let [k, n] = *w.shape() else { return None };
        if transpose_b || k < 64 || n % crate::packed::MR != 0 {
            return None;
        }
        let packed = PackedA::transposed(w.as_slice::<f32>().ok()?, k, n)?;
        Some(Self { packed, k, n })
    }

    /// `a @ W` for f32 `a` (`... x k`, read as stored), or `None` where
    /// the packed product does not apply (other types or shapes, many rows).
    pub(crate) fn product(&self, a: &Tensor) -> Result<Option<Tensor>> {
        let shape = a.shape();
        let (Ok(ad), Some((&k, lead))) = (a.as_slice::<f32>(), shape.split_last()) else {
            return Ok(None);
        };
        let rows: usize = lead.iter().product();
        if k != self.k || lead.is_empty() || rows > PACKED_MAX_ROWS {
            return Ok(None);
        }
        let mut y = crate::kernel::zeros::<f32>(rows * self.n);
        gemm_packed_t(
            &self.packed,
            MatRef::row_major(ad, rows, k, true),
            &mut y,
            false,
        )?;
        let mut out = lead.to_vec();
        out.push(self.n);
        Ok(Some(Tensor::from_vec(out, y)?))
    }
}

/// Offsets of each batch matrix of an operand broadcast to `batch`.
fn batch_offsets(shape: &[usize], batch: &[usize], mat: usize) -> Vec<usize> {
    let count: usize = batch.iter().product();
    let own = &shape[..shape.len() - 2];
    let idx: Vec<usize> = (0..own.iter().product::<usize>()).collect();
    let (_, offsets) =
        binary(&idx, own, &vec![0usize; count], batch, |i, _| Ok(i * mat)).unwrap_or_default();
    offsets
}

fn matmul<T: Arith + num_traits::NumCast>(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    matmul_transposed(a, b, [false, false], T::one())
}

/// `alpha * op(a) @ op(b)` with numpy batching, where `op` swaps the last
/// two axes of an operand whose `transpose` flag is set (the operand is
/// read through strides, not copied).
pub(crate) fn matmul_transposed<T: Arith + num_traits::NumCast>(
    a: &Tensor,
    b: &Tensor,
    transpose: [bool; 2],
    alpha: T,
) -> Result<Tensor> {
    // Stored shapes as matrices (a vector is a row or column), and the
    // shapes as the product reads them.
    let stored = |t: &Tensor, row: bool| -> Vec<usize> {
        match (t.shape(), row) {
            ([k], true) => vec![1, *k],
            ([k], false) => vec![*k, 1],
            (s, _) => s.to_vec(),
        }
    };
    let read = |mut s: Vec<usize>, t: bool| {
        let r = s.len();
        if t {
            s.swap(r - 2, r - 1);
        }
        s
    };
    let (ta, tb) = (transpose[0] && a.rank() >= 2, transpose[1] && b.rank() >= 2);
    let (a2, b2) = (stored(a, true), stored(b, false));
    let (ra, rb) = (read(a2.clone(), ta), read(b2.clone(), tb));
    let logical = |t: &Tensor, s: &[usize]| {
        if t.rank() == 1 {
            t.shape().to_vec()
        } else {
            s.to_vec()
        }
    };
    let (la, lb) = (logical(a, &ra), logical(b, &rb));
    let out_shape = matmul_shape(&la, &lb).ok_or_else(|| {
        Error::invalid(format!(
            "MatMul shapes {la:?} and {lb:?} are incompatible (stored {:?} and {:?})",
            a.shape(),
            b.shape()
        ))
    })?;
    let (m, k, n) = (ra[ra.len() - 2], ra[ra.len() - 1], rb[rb.len() - 1]);
    let batch = broadcast(&a2[..a2.len() - 2], &b2[..b2.len() - 2])?;
    let count: usize = batch.iter().product();
    let oa = batch_offsets(&a2, &batch, m * k);
    let ob = batch_offsets(&b2, &batch, k * n);
    let (ad, bd) = (a.as_slice::<T>()?, b.as_slice::<T>()?);
    let mut y = crate::kernel::zeros::<T>(count * m * n);
    let (sa, sb) = (&a2[a2.len() - 2..], &b2[b2.len() - 2..]);
    for i in 0..count {
        gemm(
            MatRef::row_major(&ad[oa[i]..], sa[0], sa[1], ta),
            MatRef::row_major(&bd[ob[i]..], sb[0], sb[1], tb),
            &mut y[i * m * n..][..m * n],
            alpha,
            false,
        )?;
    }
    Tensor::from_vec(out_shape, y)
}

impl Kernel for MatMul {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let (a, b) = (required(inputs, 0)?, required(inputs, 1)?);
        if a.dtype() != b.dtype() {
            return Err(Error::invalid(format!(
                "MatMul inputs differ in type: {} and {}",
                a.dtype(),
                b.dtype()
            )));
        }
        if let Some(y) = self
            .packed
            .as_ref()
            .map(|p| p.product(a))
            .transpose()?
            .flatten()
        {
            return Ok(vec![y]);
        }
        with_numeric_type!(a.dtype(), T => Ok(vec![matmul::<T>(a, b)?]), _ => Err(unsupported_type("MatMul", a)))
    }
}

pub(crate) fn create_matmul(_: &Node, info: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(MatMul {
        packed: PackedWeights::from_info(info, false),
    }))
}

/// MatMulInteger: 8-bit operands minus their zero points (scalar, per row
/// of A or per column of B), multiplied exactly in i32.
struct MatMulInteger;

/// `x` as i32 minus its zero point; `per` is the axis the zero point runs
/// along when it is a vector (rows of A: rank-2, columns of B: rank-1).
fn shifted(x: &Tensor, zero: Option<&Tensor>, per_row: bool) -> Result<Tensor> {
    let v = cast(x, D::I32)?.into_vec::<i32>()?;
    let z = match zero {
        Some(z) => {
            if z.dtype() != x.dtype() {
                return Err(Error::invalid(format!(
                    "zero point is {}, its operand {}",
                    z.dtype(),
                    x.dtype()
                )));
            }
            cast(z, D::I32)?.into_vec::<i32>()?
        }
        None => vec![0],
    };
    let s = x.shape();
    let cols = s.last().copied().unwrap_or(1);
    let rows = if s.len() >= 2 { s[s.len() - 2] } else { 1 };
    let want = if per_row { rows } else { cols };
    if z.len() != 1 && z.len() != want {
        return Err(Error::invalid(format!(
            "zero point has {} values, expected 1 or {want}",
            z.len()
        )));
    }
    let out: Vec<i32> = v
        .iter()
        .enumerate()
        .map(|(i, &e)| {
            let at = if per_row {
                (i / cols.max(1)) % rows.max(1)
            } else {
                i % cols.max(1)
            };
            e - z[if z.len() == 1 { 0 } else { at }]
        })
        .collect();
    Tensor::from_vec(s, out)
}

impl Kernel for MatMulInteger {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let a = shifted(required(inputs, 0)?, optional(inputs, 2), true)?;
        let b = shifted(required(inputs, 1)?, optional(inputs, 3), false)?;
        Ok(vec![matmul::<i32>(&a, &b)?])
    }
}

/// QLinearMatMul: MatMulInteger, rescaled by `a_scale * b_scale / y_scale`,
/// rounded half to even, plus `y_zero_point`, saturated (per-tensor scales).
struct QLinearMatMul;

/// A one-element scale as f64 (`what` names it in errors).
fn scalar_scale(t: &Tensor, what: &str) -> Result<f64> {
    match t.to_f64_vec().as_deref() {
        Some([v]) => Ok(*v),
        _ => Err(Error::NotSupported(format!(
            "QLinearMatMul with a non-scalar {what} (shape {:?})",
            t.shape()
        ))),
    }
}

impl Kernel for QLinearMatMul {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let a = shifted(required(inputs, 0)?, optional(inputs, 2), true)?;
        let b = shifted(required(inputs, 3)?, optional(inputs, 5), false)?;
        let c = matmul::<i32>(&a, &b)?;
        let scale_t = required(inputs, 1)?;
        let (sa, sb, sy) = (
            scalar_scale(scale_t, "a_scale")?,
            scalar_scale(required(inputs, 4)?, "b_scale")?,
            scalar_scale(required(inputs, 6)?, "y_scale")?,
        );
        // The multiplier is computed in the scales' type, as numpy does.
        let round = |v: f64| {
            cast(&Tensor::scalar(v), scale_t.dtype())
                .ok()
                .and_then(|t| t.to_f64_vec())
                .map_or(v, |v| v[0])
        };
        let m = round(round(sa * sb) / sy);
        let zp = optional(inputs, 7);
        let out_type = zp.map_or(required(inputs, 0)?.dtype(), |z| z.dtype());
        let zero = zp
            .map(|z| scalar_scale(z, "y_zero_point"))
            .transpose()?
            .unwrap_or(0.0);
        let (lo, hi) = match out_type {
            D::U8 => (0.0, 255.0),
            D::I8 => (-128.0, 127.0),
            other => return Err(Error::NotSupported(format!("QLinearMatMul to {other}"))),
        };
        let y: Vec<f64> = c
            .as_slice::<i32>()?
            .iter()
            .map(|&v| round_half_even(f64::from(v) * m + zero).clamp(lo, hi))
            .collect();
        Ok(vec![cast(&Tensor::from_vec(c.shape(), y)?, out_type)?])
    }
}

fn create_qlinear_matmul(_: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(QLinearMatMul))
}

fn create_matmul_integer(_: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(MatMulInteger))
}

struct Gemm {
    alpha: f32,
    beta: f32,
    trans_a: bool,
    trans_b: bool,
}

impl Gemm {
    fn run<T: Arith + num_traits::NumCast>(
        &self,
        a: &Tensor,
        b: &Tensor,
        c: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (sa, sb) = (a.shape(), b.shape());
        if sa.len() != 2 || sb.len() != 2 {
            return Err(Error::invalid(format!(
                "Gemm needs 2-D A and B, got {sa:?} and {sb:?}"
            )));
        }
        let am = MatRef::row_major(a.as_slice::<T>()?, sa[0], sa[1], self.trans_a);
        let bm = MatRef::row_major(b.as_slice::<T>()?, sb[0], sb[1], self.trans_b);
        let (m, n) = (am.rows, bm.cols);
        if am.cols != bm.rows {
            return Err(Error::invalid(format!(
                "Gemm: A' is {m}x{} but B' is {}x{n} (transA={}, transB={})",
                am.cols, bm.rows, self.trans_a as u8, self.trans_b as u8
            )));
        }
        let mut y = crate::kernel::zeros::<T>(m * n);
        let mut accumulate = false;
        if let Some(c) = c {
            let beta: T = cast_f32(self.beta)?;
            let cs = c.shape();
            // C broadcasts unidirectionally to [m, n].
            if broadcast(cs, &[m, n]).ok().as_deref() != Some(&[m, n][..]) {
                return Err(Error::invalid(format!(
                    "Gemm: C of shape {cs:?} does not broadcast to [{m}, {n}]"
                )));
            }
            // y is [m, n] zeros, so broadcasting C against it yields beta * C at [m, n].
            y = binary(c.as_slice::<T>()?, cs, &y, &[m, n], |x, _| Ok(x.mul(beta)))?.1;
            accumulate = true;
        }
        gemm(am, bm, &mut y, cast_f32(self.alpha)?, accumulate)?;
        Tensor::from_vec(vec![m, n], y)
    }
}

impl Kernel for Gemm {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let (a, b, c) = (
            required(inputs, 0)?,
            required(inputs, 1)?,
            optional(inputs, 2),
        );
        with_numeric_type!(a.dtype(), T => Ok(vec![self.run::<T>(a, b, c)?]), _ => Err(unsupported_type("Gemm", a)))
    }
}

pub(crate) fn create_gemm(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    if node.int_or("broadcast", 1)? == 0 {
        return Err(Error::NotSupported(
            "Gemm with broadcast=0 (opset < 7)".into(),
        ));
    }
    Ok(Box::new(Gemm {
        alpha: node.float_or("alpha", 1.0)?,
        beta: node.float_or("beta", 1.0)?,
        trans_a: node.int_or("transA", 0)? != 0,
        trans_b: node.int_or("transB", 0)? != 0,
    }))
}

/// Registers MatMul, MatMulInteger, QLinearMatMul and Gemm.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new("MatMul", 1.., NUMERIC, create_matmul));
    reg.add(KernelDef::new(
        "MatMulInteger",
        10..,
        &[D::U8, D::I8],
        create_matmul_integer,
    ));
    reg.add(KernelDef::new("Gemm", 1.., NUMERIC, create_gemm));
    reg.add(KernelDef::new(
        "QLinearMatMul",
        10..,
        &[D::U8, D::I8],
        create_qlinear_matmul,
    ));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn qlinear_matmul_requantizes() {
        let a = Tensor::from_vec(vec![1, 2], vec![12u8, 14]).unwrap();
        let b = Tensor::from_vec(vec![2, 1], vec![3u8, 5]).unwrap();
        let s = |v: f32| Tensor::scalar(v);
        let z = |v: u8| Tensor::scalar(v);
        // (2*2 + 4*4) * 0.5 * 1 / 4 + 100 = 102.5 -> 102 (ties to even).
        let y = QLinearMatMul
            .compute(&[
                Some(&a),
                Some(&s(0.5)),
                Some(&z(10)),
                Some(&b),
                Some(&s(1.0)),
                Some(&z(1)),
                Some(&s(4.0)),
                Some(&z(100)),
            ])
            .unwrap();
        assert_eq!(y[0].as_slice::<u8>().unwrap(), &[102]);
    }

    #[test]
    fn matmul_integer_subtracts_zero_points() {
        let a = Tensor::from_vec(vec![2, 2], vec![10u8, 20, 30, 40]).unwrap();
        let b = Tensor::from_vec(vec![2, 1], vec![1u8, 2]).unwrap();
        let za = Tensor::from_vec(vec![2], vec![10u8, 30]).unwrap();
        let zb = Tensor::scalar(1u8);
        let y = MatMulInteger
            .compute(&[Some(&a), Some(&b), Some(&za), Some(&zb)])
            .unwrap();
        // rows [0,10] and [0,10] times [0,1]ᵀ.
        assert_eq!(y[0].as_slice::<i32>().unwrap(), &[10, 10]);
        let i8a = Tensor::from_vec(vec![1, 1], vec![-128i8]).unwrap();
        let i8b = Tensor::from_vec(vec![1, 1], vec![-128i8]).unwrap();
        let y = MatMulInteger.compute(&[Some(&i8a), Some(&i8b)]).unwrap();
        assert_eq!(y[0].as_slice::<i32>().unwrap(), &[16384]);
        assert!(MatMulInteger
            .compute(&[Some(&a), Some(&b), Some(&zb.clone()), Some(&za)])
            .is_err());
    }

    #[test]
    fn batched_matmul_broadcasts_batch_dims() {
        // a: [2, 1, 2], b: [2, 1] -> [2, 1, 1]
        let a = Tensor::from_vec(vec![2, 1, 2], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
        let b = Tensor::from_vec(vec![2, 1], vec![10.0f32, 100.0]).unwrap();
        let y = matmul::<f32>(&a, &b).unwrap();
        assert_eq!(y.shape(), &[2, 1, 1]);
        assert_eq!(y.as_slice::<f32>().unwrap(), &[210.0, 430.0]);
        // vector @ matrix
        let v = Tensor::from_vec(vec![2], vec![1i32, 1]).unwrap();
        let m = Tensor::from_vec(vec![2, 3], vec![1i32, 2, 3, 4, 5, 6]).unwrap();
        let y = matmul::<i32>(&v, &m).unwrap();
        assert_eq!(
            (y.shape(), y.as_slice::<i32>().unwrap()),
            (&[3usize][..], &[5, 7, 9][..])
        );
        assert!(matmul::<i32>(&m, &m).is_err());
    }

    #[test]
    fn gemm_with_transposes_and_broadcast_c() {
        let a = Tensor::from_vec(vec![2, 2], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap(); // A' = [[1,3],[2,4]]
        let b = Tensor::from_vec(vec![2, 2], vec![1.0f32, 0.0, 0.0, 1.0]).unwrap();
        let c = Tensor::from_vec(vec![2], vec![10.0f32, 20.0]).unwrap();
        let g = Gemm {
            alpha: 2.0,
            beta: 0.5,
            trans_a: true,
            trans_b: false,
        };
        let y = g.run::<f32>(&a, &b, Some(&c)).unwrap();
        assert_eq!(y.as_slice::<f32>().unwrap(), &[7.0, 16.0, 9.0, 18.0]);
        let bad_c = Tensor::from_vec(vec![3], vec![0.0f32; 3]).unwrap();
        assert!(g.run::<f32>(&a, &b, Some(&bad_c)).is_err());
    }
}

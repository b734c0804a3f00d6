//! Matrix products: Gemm (transposes, alpha, beta, broadcast C) and MatMul
//! (batched, with broadcast batch dimensions), on one systolic GEMM kernel
//! with fp32 accumulation.

use rayon::prelude::*;

use super::eltwise::{broadcast, broadcast_strides};
use super::{
    attr_float, attr_int, expect_elem, input, load, precision, store, Constants, DeviceOp, Elem,
    Launch, Meta, NodeView, OpFamily,
};
use crate::sim::program::{Invocation, KernelDef, Param};
use crate::sim::{Arg, Work};

const FLOATS: &[Elem] = &[Elem::F32, Elem::F16];

/// The family's registration.
pub static FAMILY: OpFamily = OpFamily {
    ops: &["Gemm", "MatMul"],
    accepts,
    compile,
};

/// Its kernels.
pub static KERNELS: &[&KernelDef] = &[&GEMM];

static GEMM: KernelDef = KernelDef {
    name: "gemm",
    params: &[
        Param::In("a"),
        Param::In("b"),
        Param::In("c"),
        Param::Out("y"),
        Param::Scalar("elem, m, n, k, trans_a, trans_b, has_c, c_row_stride, c_col_stride, batch, a_offsets, b_offsets"),
        Param::Scalar("alpha, beta"),
    ],
    body: gemm_body,
};

fn gemm_body(inv: &mut Invocation<'_>) -> Result<Work, String> {
    let p = inv.ints(0)?;
    let [alpha, beta] = *inv.floats(1)? else {
        return Err("gemm needs alpha and beta".into());
    };
    let elem = Elem::from_code(p[0])?;
    let dim = |i: usize| usize::try_from(p[i]).map_err(|_| format!("bad dimension {}", p[i]));
    let (m, n, k) = (dim(1)?, dim(2)?, dim(3)?);
    let (ta, tb, has_c) = (p[4] != 0, p[5] != 0, p[6] != 0);
    let (crs, ccs) = (p[7] as usize, p[8] as usize);
    let batch = dim(9)?;
    let a_off = &p[10..10 + batch];
    let b_off = &p[10 + batch..10 + 2 * batch];
    let a = load(inv.inputs[0], elem);
    let b = load(inv.inputs[1], elem);
    let c = if has_c {
        load(inv.inputs[2], elem)
    } else {
        Vec::new()
    };
    let mut y = vec![0f32; batch * m * n];
    if n > 0 {
        y.par_chunks_mut(n).enumerate().for_each(|(row, out)| {
            let (bi, i) = (row / m.max(1), row % m.max(1));
            let (ao, bo) = (a_off[bi] as usize, b_off[bi] as usize);
            for (j, o) in out.iter_mut().enumerate() {
                let mut acc = 0f32;
                for kk in 0..k {
                    let av = if ta {
                        a[ao + kk * m + i]
                    } else {
                        a[ao + i * k + kk]
                    };
                    let bv = if tb {
                        b[bo + j * k + kk]
                    } else {
                        b[bo + kk * n + j]
                    };
                    acc += av * bv;
                }
                let mut v = alpha * acc;
                if has_c {
                    v += beta * c[i * crs + j * ccs];
                }
                *o = v;
            }
        });
    }
    store(inv.outputs[0], elem, &y);
    let mut w = Work::new(precision(elem));
    w.macs = (batch * m * n * k) as u64;
    w.ops = (batch * m * n) as u64;
    w.weight_bytes = inv.inputs[1].len() as u64;
    w.ddr_bytes = (inv.inputs[0].len() + inv.inputs[1].len() + inv.outputs[0].len()) as u64
        + if has_c { inv.inputs[2].len() as u64 } else { 0 };
    Ok(w)
}

fn accepts(v: &NodeView<'_>) -> Result<(), String> {
    let a = expect_elem(v, 0, FLOATS)?;
    if expect_elem(v, 1, FLOATS)? != a {
        return Err("inputs of different element types".into());
    }
    if v.node.op_type() == "Gemm" {
        if v.has(2) && expect_elem(v, 2, FLOATS)? != a {
            return Err("C has another element type".into());
        }
        if v.opset < 7 {
            return Err("Gemm before opset 7 (broadcast attribute) is not supported".into());
        }
    } else {
        for i in [0, 1] {
            match v.rank(i) {
                Some(r) if r >= 2 => {}
                Some(_) => return Err("1-D MatMul operands are not supported".into()),
                None => return Err(format!("the rank of input #{i} is not known")),
            }
        }
    }
    Ok(())
}

struct Gemm {
    trans_a: bool,
    trans_b: bool,
    alpha: f32,
    beta: f32,
}

struct MatMul;

fn compile(v: &NodeView<'_>, _c: &Constants) -> Result<Box<dyn DeviceOp>, String> {
    Ok(match v.node.op_type() {
        "Gemm" => Box::new(Gemm {
            trans_a: attr_int(v.node, "transA", 0) != 0,
            trans_b: attr_int(v.node, "transB", 0) != 0,
            alpha: attr_float(v.node, "alpha", 1.0),
            beta: attr_float(v.node, "beta", 1.0),
        }),
        _ => Box::new(MatMul),
    })
}

fn launch(
    elem: Elem,
    dims: [usize; 3],
    flags: [bool; 3],
    c: (usize, usize),
    offsets: (Vec<i64>, Vec<i64>),
    out: Vec<usize>,
    ab: (f32, f32),
) -> Launch {
    let [m, n, k] = dims;
    let has_c = flags[2];
    let mut ints = vec![
        elem.code(),
        m as i64,
        n as i64,
        k as i64,
        i64::from(flags[0]),
        i64::from(flags[1]),
        i64::from(flags[2]),
        c.0 as i64,
        c.1 as i64,
        offsets.0.len() as i64,
    ];
    ints.extend(offsets.0);
    ints.extend(offsets.1);
    Launch {
        kernel: GEMM.name,
        inputs: vec![Some(0), Some(1), if has_c { Some(2) } else { None }],
        outputs: vec![Meta { elem, shape: out }],
        scalars: vec![Arg::Ints(ints), Arg::Floats(vec![ab.0, ab.1])],
        global: [m, n, 1],
    }
}

impl DeviceOp for Gemm {
    fn plan(&self, inputs: &[Option<Meta>], _c: &Constants) -> Result<Launch, String> {
        let (a, b) = (input(inputs, 0)?, input(inputs, 1)?);
        let (&[ar, ac], &[br, bc]) = (a.shape.as_slice(), b.shape.as_slice()) else {
            return Err(format!(
                "Gemm needs 2-D A and B, got {:?} and {:?}",
                a.shape, b.shape
            ));
        };
        let (m, k) = if self.trans_a { (ac, ar) } else { (ar, ac) };
        let (kb, n) = if self.trans_b { (bc, br) } else { (br, bc) };
        if k != kb {
            return Err(format!("Gemm: A is {m}x{k}, B is {kb}x{n}"));
        }
        let c = inputs.get(2).and_then(Option::as_ref);
        let strides = match c {
            Some(c) => {
                if broadcast(&c.shape, &[m, n])? != [m, n] {
                    return Err(format!(
                        "Gemm: C of shape {:?} does not broadcast to [{m}, {n}]",
                        c.shape
                    ));
                }
                let s = broadcast_strides(&c.shape, &[m, n]);
                (s[0] as usize, s[1] as usize)
            }
            None => (0, 0),
        };
        Ok(launch(
            a.elem,
            [m, n, k],
            [self.trans_a, self.trans_b, c.is_some()],
            strides,
            (vec![0], vec![0]),
            vec![m, n],
            (self.alpha, self.beta),
        ))
    }
}

/// Element offsets of the A and B operands of each output matrix.
pub type Offsets = (Vec<i64>, Vec<i64>);

/// The broadcast batch shape of two stacks of matrices and, for each
/// output matrix, the element offsets of its A and B operands.
pub fn batch_offsets(
    ab: &[usize],
    bb: &[usize],
    [m, n, k]: [usize; 3],
) -> Result<(Vec<usize>, Offsets), String> {
    let batch = broadcast(ab, bb)?;
    let count: usize = batch.iter().product();
    let (sa, sb) = (broadcast_strides(ab, &batch), broadcast_strides(bb, &batch));
    let mut offsets = (Vec::with_capacity(count), Vec::with_capacity(count));
    for flat in 0..count {
        let (mut rest, mut oa, mut ob) = (flat, 0i64, 0i64);
        for d in (0..batch.len()).rev() {
            let i = (rest % batch[d]) as i64;
            rest /= batch[d];
            oa += i * sa[d];
            ob += i * sb[d];
        }
        offsets.0.push(oa * (m * k) as i64);
        offsets.1.push(ob * (k * n) as i64);
    }
    Ok((batch, offsets))
}

impl DeviceOp for MatMul {
    fn plan(&self, inputs: &[Option<Meta>], _c: &Constants) -> Result<Launch, String> {
        let (a, b) = (input(inputs, 0)?, input(inputs, 1)?);
        if a.shape.len() < 2 || b.shape.len() < 2 {
            return Err("1-D MatMul operands are not supported".into());
        }
        let (ab, am) = a.shape.split_at(a.shape.len() - 2);
        let (bb, bm) = b.shape.split_at(b.shape.len() - 2);
        let (m, k, kb, n) = (am[0], am[1], bm[0], bm[1]);
        if k != kb {
            return Err(format!("MatMul: {:?} x {:?}", a.shape, b.shape));
        }
        let (batch, offsets) = batch_offsets(ab, bb, [m, n, k])?;
        let mut out = batch;
        out.extend([m, n]);
        Ok(launch(
            a.elem,
            [m, n, k],
            [false, false, false],
            (0, 0),
            offsets,
            out,
            (1.0, 0.0),
        ))
    }
}

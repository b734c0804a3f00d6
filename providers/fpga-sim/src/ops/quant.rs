//! The int8 path: QuantizeLinear and DequantizeLinear (per-tensor and
//! per-axis, int8/uint8; int32 too for dequantization) and QLinearMatMul
//! (int8/uint8, int32 accumulation, per-tensor or per-column B).

use rayon::prelude::*;

use super::conv::requantize;
use super::gemm::batch_offsets;
use super::{
    attr_int, expect_elem, input, load, load_i32, store, store_i32, Constants, DeviceOp, Elem,
    Launch, Meta, NodeView, OpFamily,
};
use crate::sim::cost::Precision;
use crate::sim::program::{Invocation, KernelDef, Param};
use crate::sim::{Arg, Work};

const QUANT: &[Elem] = &[Elem::I8, Elem::U8];

/// The family's registration.
pub static FAMILY: OpFamily = OpFamily {
    ops: &["QuantizeLinear", "DequantizeLinear", "QLinearMatMul"],
    accepts,
    compile,
};

/// Its kernels.
pub static KERNELS: &[&KernelDef] = &[&QUANTIZE, &DEQUANTIZE, &QGEMM];

const LINEAR_PARAMS: &[Param] = &[
    Param::In("x"),
    Param::In("scale"),
    Param::In("zero_point"),
    Param::Out("y"),
    Param::Scalar("x_elem, y_elem, has_zero_point, axis_len, inner"),
];

static QUANTIZE: KernelDef = KernelDef {
    name: "quantize_linear",
    params: LINEAR_PARAMS,
    body: quantize_body,
};

static DEQUANTIZE: KernelDef = KernelDef {
    name: "dequantize_linear",
    params: LINEAR_PARAMS,
    body: dequantize_body,
};

static QGEMM: KernelDef = KernelDef {
    name: "qlinear_gemm",
    params: &[
        Param::In("a"),
        Param::In("a_scale"),
        Param::In("a_zero_point"),
        Param::In("b"),
        Param::In("b_scale"),
        Param::In("b_zero_point"),
        Param::In("y_scale"),
        Param::In("y_zero_point"),
        Param::Out("y"),
        Param::Scalar("a_elem, b_elem, y_elem, m, n, k, batch, a_offsets, b_offsets"),
    ],
    body: qgemm_body,
};

/// The scale and zero point of each element's channel.
struct Channels {
    scale: Vec<f32>,
    zero: Vec<i32>,
    axis_len: usize,
    inner: usize,
}

impl Channels {
    fn read(inv: &Invocation<'_>, zp_elem: Elem) -> Result<Self, String> {
        let p = inv.ints(0)?;
        let axis_len = usize::try_from(p[3]).map_err(|_| "bad axis length")?.max(1);
        let inner = usize::try_from(p[4]).map_err(|_| "bad inner size")?.max(1);
        let scale = load(inv.inputs[1], Elem::F32);
        let zero = if p[2] != 0 {
            load_i32(inv.inputs[2], zp_elem)
        } else {
            vec![0]
        };
        for (what, len) in [("scale", scale.len()), ("zero point", zero.len())] {
            if len != 1 && len != axis_len {
                return Err(format!("{len} {what} values for an axis of {axis_len}"));
            }
        }
        Ok(Self {
            scale,
            zero,
            axis_len,
            inner,
        })
    }

    fn at(&self, i: usize) -> (f32, i32) {
        let c = (i / self.inner) % self.axis_len;
        let pick = |len: usize| if len == 1 { 0 } else { c };
        (
            self.scale[pick(self.scale.len())],
            self.zero[pick(self.zero.len())],
        )
    }
}

fn elems(inv: &Invocation<'_>) -> Result<(Elem, Elem), String> {
    let p = inv.ints(0)?;
    Ok((Elem::from_code(p[0])?, Elem::from_code(p[1])?))
}

fn quantize_body(inv: &mut Invocation<'_>) -> Result<Work, String> {
    let (xe, ye) = elems(inv)?;
    let ch = Channels::read(inv, ye)?;
    let x = load(inv.inputs[0], xe);
    let y: Vec<i32> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let (s, z) = ch.at(i);
            ((v / s).round_ties_even() as i32).saturating_add(z)
        })
        .collect();
    store_i32(inv.outputs[0], ye, &y);
    let mut w = Work::new(Precision::F32);
    w.ops = 2 * y.len() as u64;
    w.ddr_bytes = (inv.inputs[0].len() + inv.outputs[0].len()) as u64;
    Ok(w)
}

fn dequantize_body(inv: &mut Invocation<'_>) -> Result<Work, String> {
    let (xe, ye) = elems(inv)?;
    let ch = Channels::read(inv, xe)?;
    let x = load(inv.inputs[0], xe);
    let y: Vec<f32> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let (s, z) = ch.at(i);
            (v - z as f32) * s
        })
        .collect();
    store(inv.outputs[0], ye, &y);
    let mut w = Work::new(Precision::F32);
    w.ops = 2 * y.len() as u64;
    w.ddr_bytes = (inv.inputs[0].len() + inv.outputs[0].len()) as u64;
    Ok(w)
}

fn qgemm_body(inv: &mut Invocation<'_>) -> Result<Work, String> {
    let p = inv.ints(0)?;
    let (ae, be, ye) = (
        Elem::from_code(p[0])?,
        Elem::from_code(p[1])?,
        Elem::from_code(p[2])?,
    );
    let d = |i: usize| usize::try_from(p[i]).map_err(|_| format!("bad dimension {}", p[i]));
    let (m, n, k, batch) = (d(3)?, d(4)?, d(5)?, d(6)?);
    let (a_off, b_off) = (&p[7..7 + batch], &p[7 + batch..7 + 2 * batch]);
    let first = |i: usize| {
        load(inv.inputs[i], Elem::F32)
            .first()
            .copied()
            .ok_or("empty scale")
    };
    let (a_s, y_s) = (first(1)?, first(6)?);
    let azp = load_i32(inv.inputs[2], ae).first().copied().unwrap_or(0);
    let yzp = load_i32(inv.inputs[7], ye).first().copied().unwrap_or(0);
    fn column<T: Copy>(v: Vec<T>, n: usize, what: &str) -> Result<Vec<T>, String> {
        match v.len() {
            1 => Ok(vec![v[0]; n]),
            l if l == n => Ok(v),
            l => Err(format!("{l} {what} values for {n} columns")),
        }
    }
    let b_s = column(load(inv.inputs[4], Elem::F32), n, "B scale")?;
    let bzp = column(load_i32(inv.inputs[5], be), n, "B zero point")?;
    let a: Vec<i32> = load_i32(inv.inputs[0], ae)
        .into_iter()
        .map(|v| v - azp)
        .collect();
    let b: Vec<i32> = load_i32(inv.inputs[3], be)
        .into_iter()
        .enumerate()
        .map(|(i, v)| v - bzp[i % n.max(1)])
        .collect();
    let mut y = vec![0i32; batch * m * n];
    if n > 0 {
        y.par_chunks_mut(n).enumerate().for_each(|(row, out)| {
            let (bi, i) = (row / m.max(1), row % m.max(1));
            let (ao, bo) = (a_off[bi] as usize, b_off[bi] as usize);
            for (j, o) in out.iter_mut().enumerate() {
                let acc = (0..k).fold(0i32, |acc, kk| {
                    acc.wrapping_add(a[ao + i * k + kk] * b[bo + kk * n + j])
                });
                *o = requantize(acc, a_s * b_s[j] / y_s, yzp);
            }
        });
    }
    store_i32(inv.outputs[0], ye, &y);
    let mut w = Work::new(Precision::Int8);
    w.macs = (batch * m * n * k) as u64;
    w.ops = (batch * m * n) as u64;
    w.weight_bytes = inv.inputs[3].len() as u64;
    w.ddr_bytes = (inv.inputs[0].len() + inv.inputs[3].len() + inv.outputs[0].len()) as u64;
    Ok(w)
}

fn accepts(v: &NodeView<'_>) -> Result<(), String> {
    let node = v.node;
    match node.op_type() {
        "QuantizeLinear" | "DequantizeLinear" => {
            if attr_int(node, "block_size", 0) != 0 {
                return Err("blocked quantization is not supported".into());
            }
            if attr_int(node, "output_dtype", 0) != 0 {
                return Err("the output_dtype attribute is not supported".into());
            }
            expect_elem(v, 1, &[Elem::F32])?;
            if node.op_type() == "QuantizeLinear" {
                expect_elem(v, 0, &[Elem::F32])?;
                if v.has(2) {
                    expect_elem(v, 2, QUANT)?;
                }
            } else {
                let x = expect_elem(v, 0, &[Elem::I8, Elem::U8, Elem::I32])?;
                if v.has(2) && expect_elem(v, 2, &[x])? != x {
                    return Err("zero point of another type".into());
                }
            }
        }
        _ => {
            expect_elem(v, 0, QUANT)?;
            expect_elem(v, 3, QUANT)?;
            for i in [1, 4, 6] {
                expect_elem(v, i, &[Elem::F32])?;
            }
            for i in [0, 3] {
                match v.rank(i) {
                    Some(r) if r >= 2 => {}
                    _ => {
                        return Err(format!(
                            "input #{i} must be a matrix (or a stack of them) of known rank"
                        ))
                    }
                }
            }
        }
    }
    Ok(())
}

struct Linear {
    quantize: bool,
    axis: i64,
}

struct QGemm;

fn compile(v: &NodeView<'_>, _c: &Constants) -> Result<Box<dyn DeviceOp>, String> {
    Ok(match v.node.op_type() {
        "QLinearMatMul" => Box::new(QGemm),
        op => Box::new(Linear {
            quantize: op == "QuantizeLinear",
            axis: attr_int(v.node, "axis", 1),
        }),
    })
}

impl DeviceOp for Linear {
    fn plan(&self, inputs: &[Option<Meta>], _c: &Constants) -> Result<Launch, String> {
        let x = input(inputs, 0)?;
        let scale = input(inputs, 1)?;
        let zp = inputs.get(2).and_then(Option::as_ref);
        let rank = x.shape.len() as i64;
        let (axis_len, inner) = if scale.numel() <= 1 {
            (1, 1)
        } else {
            let axis = if self.axis < 0 {
                self.axis + rank
            } else {
                self.axis
            };
            let a = usize::try_from(axis)
                .ok()
                .filter(|&a| a < x.shape.len())
                .ok_or_else(|| format!("axis {} out of range for rank {rank}", self.axis))?;
            (x.shape[a], x.shape[a + 1..].iter().product())
        };
        let y_elem = if self.quantize {
            zp.map_or(Elem::U8, |z| z.elem)
        } else {
            Elem::F32
        };
        let ints = vec![
            x.elem.code(),
            y_elem.code(),
            i64::from(zp.is_some()),
            axis_len as i64,
            inner as i64,
        ];
        Ok(Launch {
            kernel: if self.quantize {
                QUANTIZE.name
            } else {
                DEQUANTIZE.name
            },
            inputs: vec![Some(0), Some(1), zp.map(|_| 2)],
            outputs: vec![Meta {
                elem: y_elem,
                shape: x.shape.clone(),
            }],
            scalars: vec![Arg::Ints(ints)],
            global: [x.numel(), 1, 1],
        })
    }
}

impl DeviceOp for QGemm {
    fn plan(&self, inputs: &[Option<Meta>], _c: &Constants) -> Result<Launch, String> {
        let (a, b) = (input(inputs, 0)?, input(inputs, 3)?);
        let y_elem = input(inputs, 7)?.elem;
        if a.shape.len() < 2 || b.shape.len() < 2 {
            return Err("QLinearMatMul operands must be matrices".into());
        }
        let (ab, am) = a.shape.split_at(a.shape.len() - 2);
        let (bb, bm) = b.shape.split_at(b.shape.len() - 2);
        let (m, k, n) = (am[0], am[1], bm[1]);
        if bm[0] != k {
            return Err(format!("QLinearMatMul: {:?} x {:?}", a.shape, b.shape));
        }
        let (mut out, offsets) = batch_offsets(ab, bb, [m, n, k])?;
        let mut ints = vec![
            a.elem.code(),
            b.elem.code(),
            y_elem.code(),
            m as i64,
            n as i64,
            k as i64,
            offsets.0.len() as i64,
        ];
        ints.extend(offsets.0);
        ints.extend(offsets.1);
        out.extend([m, n]);
        Ok(Launch {
            kernel: QGEMM.name,
            inputs: (0..8).map(Some).collect(),
            outputs: vec![Meta {
                elem: y_elem,
                shape: out,
            }],
            scalars: vec![Arg::Ints(ints)],
            global: [m, n, 1],
        })
    }
}

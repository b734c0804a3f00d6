//! Elementwise operators: Add and Mul with numpy broadcasting, Relu and
//! Clip (one clamp kernel).

use super::{
    attr_float, elementwise_work, expect_elem, input, load, store, Constants, DeviceOp, Elem,
    Launch, Meta, NodeView, OpFamily,
};
use crate::sim::program::{Invocation, KernelDef, Param};
use crate::sim::{Arg, Work};

const FLOATS: &[Elem] = &[Elem::F32, Elem::F16];

/// The family's registration.
pub static FAMILY: OpFamily = OpFamily {
    ops: &["Add", "Mul", "Relu", "Clip"],
    accepts,
    compile,
};

/// Its kernels.
pub static KERNELS: &[&KernelDef] = &[&BINARY, &CLAMP];

static BINARY: KernelDef = KernelDef {
    name: "eltwise_binary",
    params: &[
        Param::In("a"),
        Param::In("b"),
        Param::Out("y"),
        Param::Scalar("op, elem, rank, out_shape, a_strides, b_strides"),
    ],
    body: binary_body,
};

static CLAMP: KernelDef = KernelDef {
    name: "clamp",
    params: &[
        Param::In("x"),
        Param::Out("y"),
        Param::Scalar("elem"),
        Param::Scalar("lo, hi"),
    ],
    body: clamp_body,
};

fn binary_body(inv: &mut Invocation<'_>) -> Result<Work, String> {
    let ints = inv.ints(0)?;
    let (op, elem) = (ints[0], Elem::from_code(ints[1])?);
    let rank = usize::try_from(ints[2]).map_err(|_| "bad rank")?;
    let shape = &ints[3..3 + rank];
    let sa = &ints[3 + rank..3 + 2 * rank];
    let sb = &ints[3 + 2 * rank..3 + 3 * rank];
    let a = load(inv.inputs[0], elem);
    let b = load(inv.inputs[1], elem);
    let n: usize = shape.iter().map(|&d| d as usize).product();
    let mut out = Vec::with_capacity(n);
    let mut index = vec![0i64; rank];
    let (mut ia, mut ib) = (0i64, 0i64);
    for _ in 0..n {
        let (x, y) = (a[ia as usize], b[ib as usize]);
        out.push(if op == 0 { x + y } else { x * y });
        // Advance the multi-index, keeping both flat offsets in step.
        for d in (0..rank).rev() {
            index[d] += 1;
            ia += sa[d];
            ib += sb[d];
            if index[d] < shape[d] {
                break;
            }
            ia -= sa[d] * shape[d];
            ib -= sb[d] * shape[d];
            index[d] = 0;
        }
    }
    store(inv.outputs[0], elem, &out);
    let bytes = inv.inputs[0].len() + inv.inputs[1].len() + inv.outputs[0].len();
    Ok(elementwise_work(elem, n, bytes))
}

fn clamp_body(inv: &mut Invocation<'_>) -> Result<Work, String> {
    let elem = Elem::from_code(inv.ints(0)?[0])?;
    let (lo, hi) = match inv.floats(1)? {
        [lo, hi] => (*lo, *hi),
        _ => return Err("clamp needs two bounds".into()),
    };
    let x = load(inv.inputs[0], elem);
    // NaN stays NaN, as in ONNX Clip and Relu.
    let y: Vec<f32> = x
        .iter()
        .map(|&v| {
            // max(x, lo) then min(., hi), as numpy's clip: hi wins over lo.
            let c = if v < lo { lo } else { v };
            if c > hi {
                hi
            } else {
                c
            }
        })
        .collect();
    store(inv.outputs[0], elem, &y);
    let bytes = inv.inputs[0].len() + inv.outputs[0].len();
    Ok(elementwise_work(elem, y.len(), bytes))
}

fn accepts(v: &NodeView<'_>) -> Result<(), String> {
    match v.node.op_type() {
        "Add" | "Mul" => {
            let a = expect_elem(v, 0, FLOATS)?;
            if expect_elem(v, 1, FLOATS)? != a {
                return Err("inputs of different element types".into());
            }
        }
        "Relu" => {
            expect_elem(v, 0, FLOATS)?;
        }
        _ => {
            expect_elem(v, 0, FLOATS)?;
            for i in [1, 2] {
                if v.has(i) && !v.is_constant(i) {
                    return Err(format!(
                        "Clip bound #{i} is computed at run time; the device needs it constant"
                    ));
                }
            }
        }
    }
    Ok(())
}

struct Binary {
    op: i64,
}

struct Clamp {
    /// Bounds from attributes (opset < 11); later opsets read constants.
    attr_bounds: Option<(f32, f32)>,
}

fn compile(v: &NodeView<'_>, _c: &Constants) -> Result<Box<dyn DeviceOp>, String> {
    Ok(match v.node.op_type() {
        "Add" => Box::new(Binary { op: 0 }),
        "Mul" => Box::new(Binary { op: 1 }),
        "Relu" => Box::new(Clamp {
            attr_bounds: Some((0.0, f32::INFINITY)),
        }),
        _ => Box::new(Clamp {
            attr_bounds: (v.opset < 11).then(|| {
                (
                    attr_float(v.node, "min", f32::NEG_INFINITY),
                    attr_float(v.node, "max", f32::INFINITY),
                )
            }),
        }),
    })
}

/// Broadcast shape of `a` and `b` (numpy rules).
pub fn broadcast(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let rank = a.len().max(b.len());
    (0..rank)
        .map(|i| {
            let da = if i + a.len() >= rank {
                a[i + a.len() - rank]
            } else {
                1
            };
            let db = if i + b.len() >= rank {
                b[i + b.len() - rank]
            } else {
                1
            };
            match (da, db) {
                (x, y) if x == y => Ok(x),
                (1, y) => Ok(y),
                (x, 1) => Ok(x),
                _ => Err(format!("shapes {a:?} and {b:?} do not broadcast")),
            }
        })
        .collect()
}

/// Strides of `shape` (row-major) aligned to `rank`, 0 on broadcast axes.
pub fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<i64> {
    let rank = out.len();
    let mut strides = vec![0i64; rank];
    let mut s = 1i64;
    for i in (0..shape.len()).rev() {
        let o = i + rank - shape.len();
        strides[o] = if shape[i] == 1 && out[o] != 1 { 0 } else { s };
        s *= shape[i] as i64;
    }
    strides
}

impl DeviceOp for Binary {
    fn plan(&self, inputs: &[Option<Meta>], _c: &Constants) -> Result<Launch, String> {
        let (a, b) = (input(inputs, 0)?, input(inputs, 1)?);
        if a.elem != b.elem {
            return Err("inputs of different element types".into());
        }
        let out = broadcast(&a.shape, &b.shape)?;
        let mut ints = vec![self.op, a.elem.code(), out.len() as i64];
        ints.extend(out.iter().map(|&d| d as i64));
        ints.extend(broadcast_strides(&a.shape, &out));
        ints.extend(broadcast_strides(&b.shape, &out));
        let n = out.iter().product();
        Ok(Launch {
            kernel: BINARY.name,
            inputs: vec![Some(0), Some(1)],
            outputs: vec![Meta {
                elem: a.elem,
                shape: out,
            }],
            scalars: vec![Arg::Ints(ints)],
            global: [n, 1, 1],
        })
    }
}

impl DeviceOp for Clamp {
    fn plan(&self, inputs: &[Option<Meta>], consts: &Constants) -> Result<Launch, String> {
        let x = input(inputs, 0)?;
        let bound = |i: usize, default: f32| -> Result<f32, String> {
            match consts.get(&i) {
                Some((m, bytes)) => load(bytes, m.elem)
                    .first()
                    .copied()
                    .ok_or_else(|| format!("Clip bound #{i} is empty")),
                None if inputs.get(i).is_some_and(Option::is_some) => {
                    Err(format!("Clip bound #{i} must be a constant on this device"))
                }
                None => Ok(default),
            }
        };
        let (lo, hi) = match self.attr_bounds {
            Some(b) => b,
            None => (bound(1, f32::NEG_INFINITY)?, bound(2, f32::INFINITY)?),
        };
        Ok(Launch {
            kernel: CLAMP.name,
            inputs: vec![Some(0)],
            outputs: vec![x.clone()],
            scalars: vec![Arg::Ints(vec![x.elem.code()]), Arg::Floats(vec![lo, hi])],
            global: [x.numel(), 1, 1],
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn broadcasting() {
        assert_eq!(broadcast(&[2, 1, 3], &[4, 1]), Ok(vec![2, 4, 3]));
        assert!(broadcast(&[2, 3], &[4]).is_err());
        assert_eq!(broadcast_strides(&[4, 1], &[2, 4, 3]), vec![0, 1, 0]);
        assert_eq!(broadcast_strides(&[2, 1, 3], &[2, 4, 3]), vec![3, 0, 1]);
    }
}

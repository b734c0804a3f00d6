//! Pooling: MaxPool (2-D, dilations, ceil_mode, no indices output),
//! AveragePool (count_include_pad, ceil_mode) and GlobalAveragePool, on one
//! window kernel computing one output plane per work-item.

use rayon::prelude::*;

use super::conv::{geometry, window_attrs, Geometry, WindowAttrs, GEOMETRY_LEN};
use super::{
    attr_int, expect_elem, input, load, precision, store, Constants, DeviceOp, Elem, Launch, Meta,
    NodeView, OpFamily,
};
use crate::sim::program::{Invocation, KernelDef, Param};
use crate::sim::{Arg, Work};

/// The family's registration.
pub static FAMILY: OpFamily = OpFamily {
    ops: &["MaxPool", "AveragePool", "GlobalAveragePool"],
    accepts,
    compile,
};

/// Its kernels.
pub static KERNELS: &[&KernelDef] = &[&POOL];

static POOL: KernelDef = KernelDef {
    name: "pool2d",
    params: &[
        Param::In("x"),
        Param::Out("y"),
        Param::Scalar("geometry, elem, is_max, count_include_pad"),
    ],
    body: pool_body,
};

fn pool_body(inv: &mut Invocation<'_>) -> Result<Work, String> {
    let p = inv.ints(0)?;
    let g = Geometry::from_ints(p)?;
    let elem = Elem::from_code(p[GEOMETRY_LEN])?;
    let (is_max, include_pad) = (p[GEOMETRY_LEN + 1] != 0, p[GEOMETRY_LEN + 2] != 0);
    let x = load(inv.inputs[0], elem);
    let plane = g.oh * g.ow;
    let mut y = vec![0f32; g.n * g.c * plane];
    if plane > 0 {
        y.par_chunks_mut(plane).enumerate().for_each(|(pi, out)| {
            let xp = &x[pi * g.h * g.w..][..g.h * g.w];
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let (mut best, mut sum, mut valid, mut padded) =
                        (f32::NEG_INFINITY, 0f32, 0usize, 0usize);
                    for ky in 0..g.kh {
                        let iy = (oy * g.sh + ky * g.dh) as isize - g.pt as isize;
                        let row_in_pad = iy < (g.h + g.pb) as isize;
                        for kx in 0..g.kw {
                            let ix = (ox * g.sw + kx * g.dw) as isize - g.pl as isize;
                            if row_in_pad && ix < (g.w + g.pr) as isize {
                                padded += 1;
                            }
                            if iy >= 0 && iy < g.h as isize && ix >= 0 && ix < g.w as isize {
                                let v = xp[iy as usize * g.w + ix as usize];
                                // NaN propagates through max, as in the reference.
                                if v > best || v.is_nan() {
                                    best = v;
                                }
                                sum += v;
                                valid += 1;
                            }
                        }
                    }
                    out[oy * g.ow + ox] = if is_max {
                        best
                    } else {
                        sum / (if include_pad { padded } else { valid }).max(1) as f32
                    };
                }
            }
        });
    }
    store(inv.outputs[0], elem, &y);
    let mut w = Work::new(precision(elem));
    w.ops = (g.n * g.c * plane * g.kh * g.kw) as u64;
    w.ddr_bytes = (inv.inputs[0].len() + inv.outputs[0].len()) as u64;
    Ok(w)
}

fn accepts(v: &NodeView<'_>) -> Result<(), String> {
    if v.rank(0) != Some(4) {
        return Err("the device pools 2-D NCHW inputs of known rank".into());
    }
    match v.node.op_type() {
        "MaxPool" => {
            expect_elem(v, 0, &[Elem::F32, Elem::F16, Elem::I8, Elem::U8])?;
            if v.named_outputs() > 1 {
                return Err("MaxPool's Indices output is not supported".into());
            }
            if attr_int(v.node, "storage_order", 0) != 0 {
                return Err("storage_order 1 is not supported".into());
            }
        }
        _ => {
            expect_elem(v, 0, &[Elem::F32, Elem::F16])?;
        }
    }
    if v.node.op_type() != "GlobalAveragePool" {
        let a = window_attrs(v)?;
        if a.kernel.is_none() {
            return Err("kernel_shape is required".into());
        }
    }
    Ok(())
}

struct Pool {
    /// `None` for global pooling (the window is the whole plane).
    attrs: Option<WindowAttrs>,
    is_max: bool,
    count_include_pad: bool,
}

fn compile(v: &NodeView<'_>, _c: &Constants) -> Result<Box<dyn DeviceOp>, String> {
    let op = v.node.op_type();
    Ok(Box::new(Pool {
        attrs: (op != "GlobalAveragePool")
            .then(|| window_attrs(v))
            .transpose()?,
        is_max: op == "MaxPool",
        count_include_pad: attr_int(v.node, "count_include_pad", 0) != 0,
    }))
}

impl DeviceOp for Pool {
    fn plan(&self, inputs: &[Option<Meta>], _c: &Constants) -> Result<Launch, String> {
        let x = input(inputs, 0)?;
        let g = match &self.attrs {
            Some(a) => {
                let k = a.kernel.ok_or("kernel_shape is required")?;
                geometry(&x.shape, x.shape.get(1).copied().unwrap_or(0), k, a, 1)?
            }
            None => {
                let &[_, c, h, w] = x.shape.as_slice() else {
                    return Err(format!("expected an NCHW input, got {:?}", x.shape));
                };
                let whole = WindowAttrs {
                    kernel: Some([h, w]),
                    strides: [1, 1],
                    dilations: [1, 1],
                    pads: [0; 4],
                    auto_pad: "VALID".into(),
                    ceil_mode: false,
                };
                geometry(&x.shape, c, [h.max(1), w.max(1)], &whole, 1)?
            }
        };
        let mut ints = g.to_ints();
        ints.extend([
            x.elem.code(),
            i64::from(self.is_max),
            i64::from(self.count_include_pad),
        ]);
        Ok(Launch {
            kernel: POOL.name,
            inputs: vec![Some(0)],
            outputs: vec![Meta {
                elem: x.elem,
                shape: vec![g.n, g.c, g.oh, g.ow],
            }],
            scalars: vec![Arg::Ints(ints)],
            global: [g.n * g.c, 1, 1],
        })
    }
}

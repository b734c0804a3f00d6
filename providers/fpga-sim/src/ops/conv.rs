//! Convolution: Conv (2-D, groups, dilations, strides, pads, auto_pad) in
//! fp32/fp16 and QLinearConv in int8/uint8 with int32 accumulation, both on
//! a direct-convolution kernel that computes one output plane per work-item.
//! Also the 2-D window geometry shared with pooling.

use rayon::prelude::*;

use super::{
    attr_int, attr_ints, attr_string, expect_elem, input, load, load_i32, precision, store,
    store_i32, Constants, DeviceOp, Elem, Launch, Meta, NodeView, OpFamily,
};
use crate::sim::program::{Invocation, KernelDef, Param};
use crate::sim::{Arg, Work};

const FLOATS: &[Elem] = &[Elem::F32, Elem::F16];
const QUANT: &[Elem] = &[Elem::I8, Elem::U8];

/// The family's registration.
pub static FAMILY: OpFamily = OpFamily {
    ops: &["Conv", "QLinearConv"],
    accepts,
    compile,
};

/// Its kernels.
pub static KERNELS: &[&KernelDef] = &[&CONV, &QCONV];

static CONV: KernelDef = KernelDef {
    name: "conv2d",
    params: &[
        Param::In("x"),
        Param::In("w"),
        Param::In("bias"),
        Param::Out("y"),
        Param::Scalar("geometry, elem, has_bias"),
    ],
    body: conv_body,
};

static QCONV: KernelDef = KernelDef {
    name: "qlinear_conv2d",
    params: &[
        Param::In("x"),
        Param::In("x_scale"),
        Param::In("x_zero_point"),
        Param::In("w"),
        Param::In("w_scale"),
        Param::In("w_zero_point"),
        Param::In("y_scale"),
        Param::In("y_zero_point"),
        Param::In("bias"),
        Param::Out("y"),
        Param::Scalar("geometry, x_elem, w_elem, y_elem, has_bias"),
    ],
    body: qconv_body,
};

/// A 2-D sliding window over an NCHW input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    /// Output channels (= `c` for pooling).
    pub m: usize,
    pub kh: usize,
    pub kw: usize,
    pub oh: usize,
    pub ow: usize,
    pub sh: usize,
    pub sw: usize,
    pub dh: usize,
    pub dw: usize,
    pub pt: usize,
    pub pl: usize,
    /// Pads at the bottom and right.
    pub pb: usize,
    pub pr: usize,
    pub group: usize,
}

/// Number of kernel arguments a [`Geometry`] takes (the op's own follow).
pub const GEOMETRY_LEN: usize = 18;

impl Geometry {
    /// As kernel arguments.
    pub fn to_ints(self) -> Vec<i64> {
        [
            self.n, self.c, self.h, self.w, self.m, self.kh, self.kw, self.oh, self.ow, self.sh,
            self.sw, self.dh, self.dw, self.pt, self.pl, self.pb, self.pr, self.group,
        ]
        .iter()
        .map(|&v| v as i64)
        .collect()
    }

    /// From kernel arguments.
    pub fn from_ints(v: &[i64]) -> Result<Self, String> {
        if v.len() < GEOMETRY_LEN || v[..GEOMETRY_LEN].iter().any(|&x| x < 0) {
            return Err("bad window geometry".into());
        }
        let g = |i: usize| v[i] as usize;
        Ok(Self {
            n: g(0),
            c: g(1),
            h: g(2),
            w: g(3),
            m: g(4),
            kh: g(5),
            kw: g(6),
            oh: g(7),
            ow: g(8),
            sh: g(9),
            sw: g(10),
            dh: g(11),
            dw: g(12),
            pt: g(13),
            pl: g(14),
            pb: g(15),
            pr: g(16),
            group: g(17).max(1),
        })
    }
}

/// Window attributes of a Conv or pooling node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowAttrs {
    pub kernel: Option<[usize; 2]>,
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    pub pads: [usize; 4],
    pub auto_pad: String,
    pub ceil_mode: bool,
}

/// Reads 2-D window attributes; `Err` for other ranks or bad values.
pub fn window_attrs(v: &NodeView<'_>) -> Result<WindowAttrs, String> {
    let node = v.node;
    let pair = |name: &str, default: usize| -> Result<[usize; 2], String> {
        match attr_ints(node, name) {
            None => Ok([default; 2]),
            Some(x) if x.len() == 2 && x.iter().all(|&d| d >= 1) => {
                Ok([x[0] as usize, x[1] as usize])
            }
            Some(x) => Err(format!(
                "{name} {x:?}: the device runs 2-D windows with positive values"
            )),
        }
    };
    let kernel = match attr_ints(node, "kernel_shape") {
        None => None,
        Some(k) if k.len() == 2 && k.iter().all(|&d| d >= 1) => {
            Some([k[0] as usize, k[1] as usize])
        }
        Some(k) => return Err(format!("kernel_shape {k:?}: the device runs 2-D windows")),
    };
    let pads = match attr_ints(node, "pads") {
        None => [0; 4],
        Some(p) if p.len() == 4 && p.iter().all(|&d| d >= 0) => {
            [p[0] as usize, p[1] as usize, p[2] as usize, p[3] as usize]
        }
        Some(p) => return Err(format!("pads {p:?}: expected four non-negative values")),
    };
    let auto_pad = attr_string(node, "auto_pad").unwrap_or_else(|| "NOTSET".into());
    if !["NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"].contains(&auto_pad.as_str()) {
        return Err(format!("auto_pad '{auto_pad}' is not supported"));
    }
    Ok(WindowAttrs {
        kernel,
        strides: pair("strides", 1)?,
        dilations: pair("dilations", 1)?,
        pads,
        auto_pad,
        ceil_mode: attr_int(node, "ceil_mode", 0) != 0,
    })
}

/// Output size and pads of one spatial axis (ONNX rules, incl. ceil_mode).
fn axis(
    input: usize,
    k: usize,
    s: usize,
    d: usize,
    pads: (usize, usize),
    a: &WindowAttrs,
) -> Result<(usize, usize, usize), String> {
    let span = d * (k - 1) + 1;
    match a.auto_pad.as_str() {
        "SAME_UPPER" | "SAME_LOWER" => {
            let out = input.div_ceil(s);
            let total = ((out.saturating_sub(1)) * s + span).saturating_sub(input);
            let small = total / 2;
            let (b, e) = if a.auto_pad == "SAME_UPPER" {
                (small, total - small)
            } else {
                (total - small, small)
            };
            Ok((out, b, e))
        }
        "VALID" => {
            if input < span {
                return Err(format!(
                    "window of {span} is larger than the input of {input}"
                ));
            }
            Ok(((input - span) / s + 1, 0, 0))
        }
        _ => {
            let padded = input + pads.0 + pads.1;
            if padded < span {
                return Err(format!(
                    "window of {span} is larger than the padded input of {padded}"
                ));
            }
            let mut out = if a.ceil_mode {
                (padded - span).div_ceil(s) + 1
            } else {
                (padded - span) / s + 1
            };
            // The last window must start inside the input or its leading pad.
            if a.ceil_mode && (out - 1) * s >= input + pads.0 {
                out -= 1;
            }
            Ok((out, pads.0, pads.1))
        }
    }
}

/// The geometry of a window over `x` (NCHW) with `m` output channels.
pub fn geometry(
    x: &[usize],
    m: usize,
    kernel: [usize; 2],
    a: &WindowAttrs,
    group: usize,
) -> Result<Geometry, String> {
    let &[n, c, h, w] = x else {
        return Err(format!(
            "the device runs 2-D windows on NCHW inputs, got shape {x:?}"
        ));
    };
    let (oh, pt, pb) = axis(
        h,
        kernel[0],
        a.strides[0],
        a.dilations[0],
        (a.pads[0], a.pads[2]),
        a,
    )?;
    let (ow, pl, pr) = axis(
        w,
        kernel[1],
        a.strides[1],
        a.dilations[1],
        (a.pads[1], a.pads[3]),
        a,
    )?;
    Ok(Geometry {
        n,
        c,
        h,
        w,
        m,
        kh: kernel[0],
        kw: kernel[1],
        oh,
        ow,
        sh: a.strides[0],
        sw: a.strides[1],
        dh: a.dilations[0],
        dw: a.dilations[1],
        pt,
        pl,
        pb,
        pr,
        group,
    })
}

/// Direct convolution: one output plane per (image, output channel),
/// accumulating `mac(x, w)` over the group's input channels and the window.
fn direct<T, A>(
    g: &Geometry,
    x: &[T],
    w: &[T],
    init: impl Fn(usize) -> A + Sync,
    mac: impl Fn(A, T, T) -> A + Sync,
) -> Vec<A>
where
    T: Copy + Sync,
    A: Copy + Send,
{
    let plane = g.oh * g.ow;
    let (cg, mg) = (g.c / g.group, g.m / g.group);
    let mut y: Vec<A> = (0..g.n * g.m * plane)
        .map(|i| init((i / plane.max(1)) % g.m.max(1)))
        .collect();
    if plane == 0 {
        return y;
    }
    y.par_chunks_mut(plane).enumerate().for_each(|(p, out)| {
        let (ni, mi) = (p / g.m, p % g.m);
        let group = mi / mg.max(1);
        for cc in 0..cg {
            let ci = group * cg + cc;
            let xp = &x[(ni * g.c + ci) * g.h * g.w..][..g.h * g.w];
            let wk = &w[(mi * cg + cc) * g.kh * g.kw..][..g.kh * g.kw];
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    let wv = wk[ky * g.kw + kx];
                    for oy in 0..g.oh {
                        let iy = (oy * g.sh + ky * g.dh) as isize - g.pt as isize;
                        if iy < 0 || iy >= g.h as isize {
                            continue;
                        }
                        let row = &xp[iy as usize * g.w..][..g.w];
                        let orow = &mut out[oy * g.ow..][..g.ow];
                        for (ox, o) in orow.iter_mut().enumerate() {
                            let ix = (ox * g.sw + kx * g.dw) as isize - g.pl as isize;
                            if ix >= 0 && ix < g.w as isize {
                                *o = mac(*o, row[ix as usize], wv);
                            }
                        }
                    }
                }
            }
        }
    });
    y
}

fn conv_work(g: &Geometry, elem: Elem, inv: &Invocation<'_>) -> Work {
    let mut w = Work::new(precision(elem));
    w.macs = (g.n * g.m * g.oh * g.ow * (g.c / g.group) * g.kh * g.kw) as u64;
    w.weight_bytes = inv.inputs.get(1).map_or(0, |b| b.len()) as u64;
    w.ddr_bytes = (inv.inputs.iter().map(|b| b.len()).sum::<usize>() + inv.outputs[0].len()) as u64;
    w
}

fn conv_body(inv: &mut Invocation<'_>) -> Result<Work, String> {
    let p = inv.ints(0)?;
    let g = Geometry::from_ints(p)?;
    let elem = Elem::from_code(p[GEOMETRY_LEN])?;
    let has_bias = p[GEOMETRY_LEN + 1] != 0;
    let x = load(inv.inputs[0], elem);
    let w = load(inv.inputs[1], elem);
    let bias = if has_bias {
        load(inv.inputs[2], elem)
    } else {
        vec![0.0; g.m]
    };
    let y = direct(&g, &x, &w, |m| bias[m], |acc, a, b| acc + a * b);
    store(inv.outputs[0], elem, &y);
    Ok(conv_work(&g, elem, inv))
}

/// Per-channel (or per-tensor) values of a quantization parameter.
fn per_channel<T: Copy>(v: &[T], m: usize) -> Result<Vec<T>, String> {
    match v.len() {
        1 => Ok(vec![v[0]; m]),
        n if n == m => Ok(v.to_vec()),
        n => Err(format!(
            "{n} quantization parameters for {m} output channels"
        )),
    }
}

/// `round_half_even(acc * multiplier) + zero_point`, saturated to `elem`.
pub fn requantize(acc: i32, multiplier: f32, zero_point: i32) -> i32 {
    let r = (f64::from(acc) * f64::from(multiplier) + f64::from(zero_point)).round_ties_even();
    r.clamp(i32::MIN as f64, i32::MAX as f64) as i32
}

fn qconv_body(inv: &mut Invocation<'_>) -> Result<Work, String> {
    let p = inv.ints(0)?;
    let g = Geometry::from_ints(p)?;
    let e = |i: usize| Elem::from_code(p[GEOMETRY_LEN + i]);
    let (xe, we, ye) = (e(0)?, e(1)?, e(2)?);
    let has_bias = p[GEOMETRY_LEN + 3] != 0;
    let scalar = |i: usize| {
        load(inv.inputs[i], Elem::F32)
            .first()
            .copied()
            .ok_or("empty scale")
    };
    let xzp = load_i32(inv.inputs[2], xe).first().copied().unwrap_or(0);
    let yzp = load_i32(inv.inputs[7], ye).first().copied().unwrap_or(0);
    let (xs, ys) = (scalar(1)?, scalar(6)?);
    let ws = per_channel(&load(inv.inputs[4], Elem::F32), g.m)?;
    let wzp = per_channel(&load_i32(inv.inputs[5], we), g.m)?;
    let x: Vec<i32> = load_i32(inv.inputs[0], xe)
        .into_iter()
        .map(|v| v - xzp)
        .collect();
    let per_m = (g.c / g.group) * g.kh * g.kw;
    let w: Vec<i32> = load_i32(inv.inputs[3], we)
        .into_iter()
        .enumerate()
        .map(|(i, v)| v - wzp[(i / per_m.max(1)).min(g.m.saturating_sub(1))])
        .collect();
    let bias = if has_bias {
        load_i32(inv.inputs[8], Elem::I32)
    } else {
        vec![0; g.m]
    };
    if bias.len() != g.m {
        return Err(format!(
            "bias has {} values for {} output channels",
            bias.len(),
            g.m
        ));
    }
    let acc = direct(
        &g,
        &x,
        &w,
        |m| bias[m],
        |acc: i32, a, b| acc.wrapping_add(a * b),
    );
    let plane = g.oh * g.ow;
    let y: Vec<i32> = acc
        .iter()
        .enumerate()
        .map(|(i, &a)| {
            let m = (i / plane.max(1)) % g.m.max(1);
            requantize(a, xs * ws[m] / ys, yzp)
        })
        .collect();
    store_i32(inv.outputs[0], ye, &y);
    Ok(conv_work(&g, xe, inv))
}

fn accepts(v: &NodeView<'_>) -> Result<(), String> {
    if v.rank(0) != Some(4) {
        return Err("the device runs 2-D convolutions on NCHW inputs of known rank".into());
    }
    window_attrs(v)?;
    if v.node.op_type() == "Conv" {
        let x = expect_elem(v, 0, FLOATS)?;
        if expect_elem(v, 1, FLOATS)? != x || (v.has(2) && expect_elem(v, 2, FLOATS)? != x) {
            return Err("inputs of different element types".into());
        }
    } else {
        expect_elem(v, 0, QUANT)?;
        expect_elem(v, 3, QUANT)?;
        for i in [1, 4, 6] {
            expect_elem(v, i, &[Elem::F32])?;
        }
        if v.has(8) {
            expect_elem(v, 8, &[Elem::I32])?;
        }
        if !v.has(2) || !v.has(5) || !v.has(7) {
            return Err("QLinearConv without zero points is not supported".into());
        }
    }
    Ok(())
}

struct Conv {
    attrs: WindowAttrs,
    group: usize,
    quantized: bool,
}

fn compile(v: &NodeView<'_>, _c: &Constants) -> Result<Box<dyn DeviceOp>, String> {
    let group = attr_int(v.node, "group", 1);
    if group < 1 {
        return Err(format!("group {group} must be positive"));
    }
    Ok(Box::new(Conv {
        attrs: window_attrs(v)?,
        group: group as usize,
        quantized: v.node.op_type() == "QLinearConv",
    }))
}

impl DeviceOp for Conv {
    fn plan(&self, inputs: &[Option<Meta>], _c: &Constants) -> Result<Launch, String> {
        let (wi, bi) = if self.quantized { (3, 8) } else { (1, 2) };
        let (x, w) = (input(inputs, 0)?, input(inputs, wi)?);
        let &[m, cg, kh, kw] = w.shape.as_slice() else {
            return Err(format!(
                "weights of shape {:?} are not 2-D filters",
                w.shape
            ));
        };
        if let Some(k) = self.attrs.kernel {
            if k != [kh, kw] {
                return Err(format!(
                    "kernel_shape {k:?} disagrees with weights {:?}",
                    w.shape
                ));
            }
        }
        let g = geometry(&x.shape, m, [kh, kw], &self.attrs, self.group)?;
        if g.c != cg * self.group || m % self.group != 0 {
            return Err(format!(
                "{} input channels, weights {:?} and group {} do not fit",
                g.c, w.shape, self.group
            ));
        }
        let has_bias = inputs.get(bi).is_some_and(Option::is_some);
        let mut ints = g.to_ints();
        let (inputs, out_elem) = if self.quantized {
            let ye = input(inputs, 7)?.elem;
            ints.extend([x.elem.code(), w.elem.code(), ye.code(), i64::from(has_bias)]);
            let bound = (0..9).map(|i| (i != 8 || has_bias).then_some(i)).collect();
            (bound, ye)
        } else {
            ints.extend([x.elem.code(), i64::from(has_bias)]);
            (vec![Some(0), Some(1), has_bias.then_some(2)], x.elem)
        };
        Ok(Launch {
            kernel: if self.quantized {
                QCONV.name
            } else {
                CONV.name
            },
            inputs,
            outputs: vec![Meta {
                elem: out_elem,
                shape: vec![g.n, g.m, g.oh, g.ow],
            }],
            scalars: vec![Arg::Ints(ints)],
            global: [g.n * g.m, 1, 1],
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn attrs(pads: [usize; 4], auto_pad: &str, ceil_mode: bool, strides: usize) -> WindowAttrs {
        WindowAttrs {
            kernel: None,
            strides: [strides; 2],
            dilations: [1; 2],
            pads,
            auto_pad: auto_pad.into(),
            ceil_mode,
        }
    }

    #[test]
    fn output_sizes_follow_onnx() {
        let g = geometry(
            &[1, 1, 5, 5],
            1,
            [3, 3],
            &attrs([1; 4], "NOTSET", false, 2),
            1,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((g.oh, g.ow), (3, 3));
        let g = geometry(
            &[1, 1, 5, 5],
            1,
            [2, 2],
            &attrs([0; 4], "SAME_UPPER", false, 2),
            1,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((g.oh, g.pt, g.pb), (3, 0, 1));
        let g = geometry(
            &[1, 1, 5, 5],
            1,
            [2, 2],
            &attrs([0; 4], "SAME_LOWER", false, 2),
            1,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((g.oh, g.pt, g.pb), (3, 1, 0));
        // ceil_mode: 4x4 input, kernel 3, stride 2 -> ceil(1/2)+1 = 2.
        let g = geometry(
            &[1, 1, 4, 4],
            1,
            [3, 3],
            &attrs([0; 4], "NOTSET", true, 2),
            1,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(g.oh, 2);
        assert!(geometry(
            &[1, 1, 2, 2],
            1,
            [3, 3],
            &attrs([0; 4], "VALID", false, 1),
            1
        )
        .is_err());
        assert!(geometry(&[1, 2, 2], 1, [1, 1], &attrs([0; 4], "NOTSET", false, 1), 1).is_err());
    }

    #[test]
    fn direct_convolution_with_padding() {
        let a = attrs([1; 4], "NOTSET", false, 1);
        let g = geometry(&[1, 1, 2, 2], 1, [3, 3], &a, 1).unwrap_or_else(|e| panic!("{e}"));
        // All-ones 3x3 filter over [[1,2],[3,4]] with pad 1: every output sees all four.
        let y = direct(
            &g,
            &[1.0f32, 2.0, 3.0, 4.0],
            &[1.0; 9],
            |_| 0.5,
            |acc, x, w| acc + x * w,
        );
        assert_eq!(y, vec![10.5; 4]);
    }

    #[test]
    fn requantize_rounds_half_to_even_and_keeps_range() {
        assert_eq!(requantize(5, 0.5, 0), 2);
        assert_eq!(requantize(7, 0.5, 0), 4);
        assert_eq!(requantize(-5, 0.5, 10), 8);
    }
}

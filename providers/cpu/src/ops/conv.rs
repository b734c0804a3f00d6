//! Conv (1-D, 2-D, 3-D...): im2col through the window tap table, then GEMM
//! per image and group; ConvInteger and QLinearConv run the same path
//! exactly in i32.

use oxrt_core::shape::WindowAttrs;
use oxrt_core::{
    DataType as D, Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor,
};

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use crate::gemm::{gemm_column_bands, gemm_then, MatRef, RowPost};
use crate::kernel::{
    as_f32_mut, as_type, as_type_mut, optional, required, unsupported_type, with_float_type, Arith,
};
use crate::ops::activation::{bias_then_f32, clamp_of, Epilogue, FLOATS};
use crate::ops::cast::cast;
use crate::ops::depthwise::{deinterleave, depthwise_f32, PlaneFinish};
use crate::ops::direct_conv::{self, direct_f32, pointwise_f32, DirectWeights, TileEpilogue};
use crate::ops::unary::round_half_even;
use crate::ops::window::{taps, valid_outputs, Window2d};
use crate::packed::{gemm_packed, PackedA};

struct Conv {
    attrs: WindowAttrs,
    group: usize,
    /// The tap table of the last input size seen (the same on every run of
    /// a model with static shapes).
    taps: TapCache,
    /// A FusedConv with a residual input `Z` (input 3), summed into the
    /// output before the activation; it may be overwritten in place.
    summed: bool,
    /// A FusedConv's activation, applied with the bias to each output
    /// channel's rows by the thread that computed them.
    epilogue: Option<Epilogue>,
    /// Constant f32 weights packed at creation, one matrix per group, where
    /// the output's known size makes the packed product the faster one.
    packed: Option<Vec<PackedA>>,
    /// Constant f32 weights packed at creation for the direct kernels, one
    /// per group, where the output's known size makes them likely.
    direct: Option<Vec<DirectWeights>>,
}

/// Work on values of one output channel (e.g. an activation).
type ChannelFn<'a, T> = &'a (dyn Fn(&mut [T]) -> Result<()> + Sync);

/// The tap table for one spatial input size, built once.
#[derive(Default)]
struct TapCache(Mutex<Option<TapTable>>);

/// A spatial input size and its tap table.
type TapTable = (Vec<usize>, Arc<Vec<isize>>);

impl TapCache {
    fn get(&self, win: &oxrt_core::shape::Window, spatial: &[usize]) -> Arc<Vec<isize>> {
        if let Ok(guard) = self.0.lock() {
            if let Some((s, t)) = guard.as_ref() {
                if s == spatial
                    && t.len()
                        == win.output.iter().product::<usize>()
                            * win.kernel.iter().product::<usize>()
                {
                    return t.clone();
                }
            }
        }
        let t = Arc::new(taps(win, spatial));
        if let Ok(mut guard) = self.0.lock() {
            *guard = Some((spatial.to_vec(), t.clone()));
        }
        t
    }
}

impl Conv {
    /// `Conv(x, w, b)`, plus `z` (of the output's shape) when given: the
    /// residual input of a `FusedConv`, added before the activation. An
    /// owned `z` becomes the output buffer.
    fn run<T: Arith>(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        z: Option<Cow<'_, Tensor>>,
        act: Option<ChannelFn<'_, T>>,
    ) -> Result<Tensor> {
        let (xs, ws) = (x.shape(), w.shape());
        if xs.len() < 3 || ws.len() != xs.len() {
            return Err(Error::invalid(format!(
                "X must be N x C x spatial... and W of the same rank, got X {xs:?} and W {ws:?}"
            )));
        }
        let (n, c, m) = (xs[0], xs[1], ws[0]);
        let g = self.group;
        if g == 0 || c % g != 0 || m % g != 0 || ws[1] * g != c {
            return Err(Error::invalid(format!(
                "group {g} does not fit X channels {c}, W {ws:?} (W must be M x C/group x kernel...)"
            )));
        }
        let spatial = &xs[2..];
        let win = self.attrs.resolve(spatial, Some(&ws[2..]))?;
        if ws[2..] != win.kernel[..] {
            return Err(Error::invalid(format!(
                "kernel_shape {:?} differs from the weights' spatial dims {:?}",
                win.kernel,
                &ws[2..]
            )));
        }
        let bias = channel_bias::<T>(b, m)?;
        // The bias, then the activation, on values of output channel `ch`.
        // f32 values with a piecewise-linear activation (or none) take one
        // vectorized pass for both.
        let fused = act.and(self.epilogue.as_ref());
        let bias32 = bias.and_then(as_type::<T, f32>);
        // Whether the activation (if any) is one the f32 kernels fuse.
        let fusable = act.is_some() == fused.is_some();
        let finish = |ch: usize, values: &mut [T]| -> Result<()> {
            if let Some(v) = crate::kernel::as_f32_mut(values) {
                let b = bias32.and_then(|b| b.get(ch).copied());
                if fusable && bias_then_f32(fused, b, v) {
                    return Ok(());
                }
            }
            if let Some(bias) = bias {
                let bv = bias[ch];
                values.iter_mut().for_each(|v| *v = v.add(bv));
            }
            act.map_or(Ok(()), |f| f(values))
        };
        let finishing = bias.is_some() || act.is_some();
        // Bias (of output channels `first..first + len`) and a clamp-like
        // activation applied by the direct kernels in registers.
        let tile_epi = |first: usize, len: usize| {
            let clamp = fusable.then(|| clamp_of(fused)).flatten()?;
            let bias = match (bias, bias32) {
                (None, _) => None,
                (Some(_), Some(b)) => Some(&b[first..][..len]),
                (Some(_), None) => return None,
            };
            Some(TileEpilogue { bias, clamp })
        };
        let (cg, mg) = (c / g, m / g);
        let in_len: usize = spatial.iter().product();
        let out_len: usize = win.output.iter().product();
        let k_len: usize = win.kernel.iter().product();
        // 2-D windows are walked row by row; other ranks use the tap table.
        let tap = if spatial.len() == 2 {
            Arc::new(Vec::new())
        } else {
            self.taps.get(&win, spatial)
        };
        let xd = x.as_slice::<T>()?;
        let wd = w.as_slice::<T>()?;
        // A 1x1 window without padding at strides above 1 reads one input
        // per output: those are gathered first (in parallel; a quarter of
        // the input at stride 2) and the product runs as a pointwise one,
        // instead of every input row being split into its stride phases on
        // one thread for an im2col matrix.
        let strided_1x1 = spatial.len() == 2
            && k_len == 1
            && !(cg == 1 && mg == 1)
            && win.strides.iter().any(|&s| s > 1)
            && win.pads_begin.iter().all(|&p| p == 0)
            && (0..2)
                .all(|d| win.output[d] == 0 || (win.output[d] - 1) * win.strides[d] < spatial[d]);
        let sub = strided_1x1.then(|| {
            subsample(
                xd,
                n * c,
                [spatial[0], spatial[1]],
                [win.strides[0], win.strides[1]],
                [win.output[0], win.output[1]],
            )
        });
        let (xd, in_len) = match &sub {
            Some(s) => (s.as_slice(), out_len),
            None => (xd, in_len),
        };
        let mut shape = vec![n, m];
        shape.extend(&win.output);
        let summed = z.is_some();
        let mut y = match z {
            Some(z) if z.shape() != shape.as_slice() => {
                return Err(Error::invalid(format!(
                    "Z must have the output's shape {shape:?}, got {:?}",
                    z.shape()
                )))
            }
            Some(Cow::Owned(z)) => z.into_vec::<T>()?,
            Some(Cow::Borrowed(z)) => oxrt_core::arena::copied(z.as_slice::<T>()?),
            // Every path below writes each output (a product over an
            // empty sum, rows == 0, is filled instead).
            None if cg * k_len > 0 => oxrt_core::arena::stale(n * m * out_len, T::zero()),
            None => crate::kernel::zeros::<T>(n * m * out_len),
        };
        let rows = cg * k_len;
        // A 1x1 window that reads every input position once, in order.
        let pointwise = sub.is_some()
            || (k_len == 1
                && out_len == in_len
                && win.strides.iter().all(|&s| s == 1)
                && win.pads_begin.iter().all(|&p| p == 0));
        // Direct depthwise sums accumulate in T: only for f32/f64 (half
        // precision goes through the GEMM, which accumulates in f32).
        let wide = matches!(x.dtype(), D::F32 | D::F64);
        let depthwise_direct = cg == 1 && mg == 1 && wide;
        if depthwise_direct {
            // The direct kernels overwrite their output: sum afterwards.
            let mut d = if summed {
                crate::kernel::zeros::<T>(y.len())
            } else {
                std::mem::take(&mut y)
            };
            // Without a residual, the f32 kernel finishes each plane as it
            // computes it.
            let mut finished = false;
            if spatial.len() == 2 {
                let plane = [spatial[0], spatial[1]];
                let per_plane = |ch: usize, v: &mut [f32]| match as_type_mut::<f32, T>(v) {
                    Some(v) => finish(ch, v),
                    None => Ok(()),
                };
                let early = (finishing && !summed).then_some(&per_plane as &PlaneFinish<'_>);
                let epi = early.and(tile_epi(0, m));
                if depthwise_f32_as(x, w, &mut d, &win, plane, early, epi)? {
                    finished = early.is_some();
                } else {
                    // This one accumulates into its output.
                    d.fill(T::zero());
                    depthwise_2d(xd, wd, &mut d, &win, plane)?;
                }
            } else {
                depthwise(xd, wd, &tap, &mut d, k_len, in_len, out_len);
            }
            use rayon::prelude::*;
            if summed {
                y.par_iter_mut().zip(&d).for_each(|(v, &e)| *v = v.add(e));
                oxrt_core::arena::recycle(d);
            } else {
                y = d;
            }
            if finishing && !finished {
                y.par_chunks_mut(out_len.max(1))
                    .enumerate()
                    .try_for_each(|(i, plane)| finish(i % m, plane))?;
            }
        } else if let Some(kind) =
            direct_kind(&win, spatial, [mg, rows, out_len], x.dtype(), pointwise)
        {
            // Dense f32 convolution without an im2col matrix.
            for img in 0..n {
                for grp in 0..g {
                    let xg = &xd[(img * c + grp * cg) * in_len..][..cg * in_len];
                    let wg = &wd[grp * mg * rows..][..mg * rows];
                    let yg = &mut y[(img * m + grp * mg) * out_len..][..mg * out_len];
                    let post = |row: usize, v: &mut [f32]| match as_type_mut::<f32, T>(v) {
                        Some(v) => finish(grp * mg + row, v),
                        None => Ok(()),
                    };
                    let post = finishing.then_some(&post as &PlaneFinish<'_>);
                    let fresh;
                    let packed = match self.direct.as_ref().and_then(|d| d.get(grp)) {
                        Some(d) if d.shape() == [mg, rows] => Some(d),
                        _ => {
                            fresh =
                                as_type::<T, f32>(wg).and_then(|w| DirectWeights::new(w, mg, rows));
                            fresh.as_ref()
                        }
                    };
                    let done = match (as_type::<T, f32>(xg), packed, as_f32_mut(yg)) {
                        (Some(xg), Some(wp), Some(yg)) => match &kind {
                            Direct::Window(g2) => {
                                let plane = [spatial[0], spatial[1]];
                                direct_f32(
                                    xg,
                                    wp,
                                    yg,
                                    g2,
                                    plane,
                                    cg,
                                    summed,
                                    post,
                                    tile_epi(grp * mg, mg),
                                )?
                            }
                            Direct::Pointwise => pointwise_f32(
                                xg,
                                wp,
                                yg,
                                out_len,
                                summed,
                                post,
                                tile_epi(grp * mg, mg),
                            )?,
                        },
                        _ => false,
                    };
                    if !done {
                        return Err(Error::invalid(format!(
                            "Conv: the direct f32 kernel declined window {win:?} it was chosen for"
                        )));
                    }
                }
            }
        } else {
            // The banded path is 2-D only; its geometry is built once per run.
            let bands = match spatial {
                [h, wd] if !pointwise => band_columns(mg, rows, [win.output[0], win.output[1]])
                    .map(|band| Ok::<_, Error>((band, [*h, *wd], Window2d::new(&win)?)))
                    .transpose()?,
                _ => None,
            };
            let mut col = if pointwise || bands.is_some() {
                Vec::new()
            } else {
                crate::kernel::zeros::<T>(rows * out_len)
            };
            for img in 0..n {
                for grp in 0..g {
                    let xg = &xd[(img * c + grp * cg) * in_len..][..cg * in_len];
                    if let Some((band, plane, g2)) = &bands {
                        let (band, plane) = (*band, *plane);
                        let phased = phase_columns(xg, plane[1], g2.strides[1]);
                        let (xg, is_phased) = match &phased {
                            Some(p) => (p.as_slice(), true),
                            None => (xg, false),
                        };
                        // im2col a few output rows at a time, each band
                        // multiplied while it is in cache.
                        let ow = win.output[1];
                        let fill = |j0: usize, cols: usize, b: &mut Vec<T>| -> Result<()> {
                            let oys = j0 / ow..(j0 + cols) / ow;
                            b.resize(rows * cols, T::zero());
                            for (r, out) in b.chunks_mut(cols.max(1)).enumerate() {
                                im2col_rows(xg, out, g2, plane, r, oys.clone(), is_phased);
                            }
                            Ok(())
                        };
                        let wg = &wd[grp * mg * rows..][..mg * rows];
                        let yg = &mut y[(img * m + grp * mg) * out_len..][..mg * out_len];
                        let post = |row: usize, values: &mut [T]| finish(grp * mg + row, values);
                        gemm_column_bands(
                            MatRef::row_major(wg, mg, rows, false),
                            out_len,
                            yg,
                            summed,
                            band,
                            &fill,
                            finishing.then_some(&post as &RowPost<'_, T>),
                        )?;
                        if let Some(p) = phased {
                            oxrt_core::arena::recycle(p);
                        }
                        continue;
                    }
                    let b_mat: &[T] = if pointwise {
                        xg
                    } else if spatial.len() == 2 {
                        im2col_2d(xg, &mut col, &win, [spatial[0], spatial[1]])?;
                        &col
                    } else {
                        im2col(xg, &tap, &mut col, k_len, in_len, out_len);
                        &col
                    };
                    let wg = &wd[grp * mg * rows..][..mg * rows];
                    let yg = &mut y[(img * m + grp * mg) * out_len..][..mg * out_len];
                    let post = |row: usize, values: &mut [T]| finish(grp * mg + row, values);
                    let packed = self.packed.as_ref().and_then(|p| p.get(grp)).filter(|p| {
                        p.rows() == mg
                            && p.cols() == rows
                            && crate::packed::prefers(mg, rows, out_len)
                    });
                    if let Some(packed) = packed {
                        if packed_product(
                            packed,
                            b_mat,
                            out_len,
                            yg,
                            summed,
                            finishing.then_some(&post as &RowPost<'_, T>),
                        )? {
                            continue;
                        }
                    }
                    gemm_then(
                        MatRef::row_major(wg, mg, rows, false),
                        MatRef::row_major(b_mat, rows, out_len, false),
                        yg,
                        T::one(),
                        summed,
                        finishing.then_some(&post as &RowPost<'_, T>),
                    )?;
                }
            }
            oxrt_core::arena::recycle(col);
        }
        if let Some(sub) = sub {
            oxrt_core::arena::recycle(sub);
        }
        Tensor::from_vec(shape, y)
    }
}

/// Which direct (im2col-free) f32 kernel a convolution takes.
enum Direct {
    /// A 2-D window over stride-phase planes.
    Window(Window2d),
    /// A 1x1 window at stride 1 (a product read in place).
    Pointwise,
}

/// The direct kernel that suits this convolution (`mg` output channels
/// per group, `depth` products per output, `positions` outputs per
/// plane), if any: f32 only; 1x1 products where the packed product does
/// not win; other 2-D windows per `direct_conv::prefers`.
fn direct_kind(
    win: &oxrt_core::shape::Window,
    spatial: &[usize],
    [mg, depth, positions]: [usize; 3],
    dtype: D,
    pointwise: bool,
) -> Option<Direct> {
    if dtype != D::F32 {
        return None;
    }
    if pointwise {
        let packed = crate::packed::prefers(mg, depth, positions);
        return (!packed && direct_conv::prefers_pointwise(depth, positions))
            .then_some(Direct::Pointwise);
    }
    let [h, wd] = spatial else {
        return None;
    };
    let g = Window2d::new(win).ok()?;
    direct_conv::prefers(&g, [*h, *wd], depth).then_some(Direct::Window(g))
}

/// `y = packed * b (+ y)` (`b`: `packed.cols() x n`), then `post`, when
/// `T` is f32; `Ok(false)` (nothing done) otherwise.
fn packed_product<T: Arith>(
    packed: &PackedA,
    b: &[T],
    n: usize,
    y: &mut [T],
    accumulate: bool,
    post: Option<&RowPost<'_, T>>,
) -> Result<bool> {
    let (Some(b), Some(y)) = (as_type::<T, f32>(b), as_f32_mut(y)) else {
        return Ok(false);
    };
    let post32 = post.map(|post| {
        move |r: usize, row: &mut [f32]| match as_type_mut::<f32, T>(row) {
            Some(row) => post(r, row),
            None => Ok(()),
        }
    });
    gemm_packed(
        packed,
        MatRef::row_major(b, packed.cols(), n, false),
        y,
        accumulate,
        post32.as_ref().map(|p| p as &RowPost<'_, f32>),
    )?;
    Ok(true)
}

/// The weights of a Conv with constant f32 weights, packed per group,
/// when its output size is known and the packed product is the faster one
/// at that size.
fn pack_weights(info: &KernelInfo<'_>, group: usize) -> Option<Vec<PackedA>> {
    let (w, positions) = constant_weights(info)?;
    let ws = w.shape();
    let wd = w.as_slice::<f32>().ok()?;
    let (m, rows) = (*ws.first()?, ws[1..].iter().product::<usize>());
    let mg = m.checked_div(group)?;
    if !crate::packed::prefers(mg, rows, positions) || wd.len() != m * rows {
        return None;
    }
    wd.chunks(mg * rows)
        .map(|wg| PackedA::new(MatRef::row_major(wg, mg, rows, false)))
        .collect()
}

/// Constant f32 weights packed for the direct kernels, one per group,
/// when the output planes' known size is one they take (wide enough, not
/// the packed product's).
fn pack_direct(info: &KernelInfo<'_>, group: usize) -> Option<Vec<DirectWeights>> {
    let (w, positions) = constant_weights(info)?;
    let ws = w.shape();
    let wd = w.as_slice::<f32>().ok()?;
    let (m, rows) = (*ws.first()?, ws[1..].iter().product::<usize>());
    let mg = m.checked_div(group)?;
    let taps: usize = ws[2..].iter().product();
    if crate::packed::prefers(mg, rows, positions)
        || (taps == 1 && !direct_conv::prefers_pointwise(rows, positions))
        || (taps > 1 && (rows > direct_conv::MAX_DEPTH || positions < direct_conv::POINTWISE_MIN))
        || mg < 2
        || wd.len() != m * rows
    {
        return None;
    }
    wd.chunks(mg * rows)
        .map(|wg| DirectWeights::new(wg, mg, rows))
        .collect()
}

/// The constant weights (input 1) and the positions of one output plane,
/// when both are known at creation.
fn constant_weights<'a>(info: &KernelInfo<'a>) -> Option<(&'a Tensor, usize)> {
    let w = info.constants.get(&1).copied()?;
    let ws = w.shape();
    let positions = match info.output_types.first().copied().flatten()? {
        oxrt_core::ValueType::Tensor {
            shape: Some(dims), ..
        } if dims.len() == ws.len() && dims.len() >= 3 => dims[2..]
            .iter()
            .map(|d| match d {
                oxrt_core::Dim::Known(v) => Some(*v),
                _ => None,
            })
            .product::<Option<usize>>()?,
        _ => return None,
    };
    Some((w, positions))
}

/// A convolution's optional bias `b` as one value per output channel (of
/// `m`).
pub(crate) fn channel_bias<T: Arith>(b: Option<&Tensor>, m: usize) -> Result<Option<&[T]>> {
    match b {
        Some(b) if b.len() != m => Err(Error::invalid(format!(
            "B must have {m} values, got shape {:?}",
            b.shape()
        ))),
        Some(b) => Ok(Some(b.as_slice::<T>()?)),
        None => Ok(None),
    }
}

/// `col[(ch * k_len + k), o] = x[ch, tap(o, k)]` (zero where the tap is
/// padding), rows filled in parallel.
fn im2col<T: Arith>(
    x: &[T],
    tap: &[isize],
    col: &mut [T],
    k_len: usize,
    in_len: usize,
    out_len: usize,
) {
    use rayon::prelude::*;
    col.par_chunks_mut(out_len.max(1))
        .enumerate()
        .for_each(|(r, row)| {
            let (ch, k) = (r / k_len, r % k_len);
            let xc = &x[ch * in_len..][..in_len];
            for (o, v) in row.iter_mut().enumerate() {
                let t = tap[o * k_len + k];
                *v = if t >= 0 { xc[t as usize] } else { T::zero() };
            }
        });
}

/// [`im2col`] for 2-D windows without the tap table: each row of `col`
/// (one channel and kernel offset) is filled output row by output row
/// from one input row (a contiguous copy at stride 1), zero where padded.
fn im2col_2d<T: Arith>(
    x: &[T],
    col: &mut [T],
    win: &oxrt_core::shape::Window,
    plane: [usize; 2],
) -> Result<()> {
    use rayon::prelude::*;
    let g = Window2d::new(win)?;
    let oh = g.output[0];
    let phased = phase_columns(x, plane[1], g.strides[1]);
    let (x, is_phased) = match &phased {
        Some(p) => (p.as_slice(), true),
        None => (x, false),
    };
    col.par_chunks_mut((oh * g.output[1]).max(1))
        .enumerate()
        .for_each(|(r, row)| im2col_rows(x, row, &g, plane, r, 0..oh, is_phased));
    if let Some(p) = phased {
        oxrt_core::arena::recycle(p);
    }
    Ok(())
}

/// The inputs of a 1x1 window without padding at strides `[sh, sw]`:
/// `x[oy * sh][ox * sw]` of each of `planes` planes (`h x wd`), gathered
/// into `oh x ow` planes, planes in parallel. Every read lies inside its
/// plane where `(oh - 1) * sh < h` and `(ow - 1) * sw < wd`.
fn subsample<T: Arith>(
    x: &[T],
    planes: usize,
    [h, wd]: [usize; 2],
    [sh, sw]: [usize; 2],
    [oh, ow]: [usize; 2],
) -> Vec<T> {
    use rayon::prelude::*;
    // Every value is written below.
    let mut out = oxrt_core::arena::stale(planes * oh * ow, T::zero());
    out.par_chunks_mut((oh * ow).max(1))
        .zip(x.par_chunks((h * wd).max(1)))
        .for_each(|(dst, src)| {
            for (row, sr) in dst
                .chunks_exact_mut(ow.max(1))
                .zip(src.chunks(wd.max(1)).step_by(sh.max(1)))
            {
                for (v, &s) in row.iter_mut().zip(sr.iter().step_by(sw.max(1))) {
                    *v = s;
                }
            }
        });
    out
}

/// At a column stride above 1, `x`'s rows (`wd` wide) each rearranged into
/// their stride phases: columns `0, s, 2s...`, then `1, 1 + s...`, and so
/// on; `None` at stride 1.
fn phase_columns<T: Arith>(x: &[T], wd: usize, stride: isize) -> Option<Vec<T>> {
    let s = usize::try_from(stride).ok().filter(|&s| s > 1)?;
    // Every value is written below.
    let mut out = oxrt_core::arena::stale(x.len(), T::zero());
    for (src, dst) in x
        .chunks_exact(wd.max(1))
        .zip(out.chunks_exact_mut(wd.max(1)))
    {
        if s == 2 {
            let (even, odd) = dst.split_at_mut(wd.div_ceil(2));
            if let (Some(src), Some(even), Some(odd)) = (
                as_type::<T, f32>(src),
                as_type_mut::<T, f32>(even),
                as_type_mut::<T, f32>(odd),
            ) {
                deinterleave(src, even, odd);
                continue;
            }
            // Pairs split at once, then an odd width's last.
            for ((pair, e), o) in src.chunks_exact(2).zip(even.iter_mut()).zip(odd) {
                *e = pair[0];
                *o = pair[1];
            }
            if wd % 2 == 1 {
                even[wd / 2] = src[wd - 1];
            }
            continue;
        }
        let mut at = 0;
        for q in 0..s.min(wd) {
            for (d, &v) in dst[at..].iter_mut().zip(src[q..].iter().step_by(s)) {
                *d = v;
            }
            at += (wd - q).div_ceil(s);
        }
    }
    Some(out)
}

/// Row `r` (input channel, kernel row and column) of the im2col matrix,
/// for output rows `oys` only, into `out` (`oys.len() x ow`). With
/// `phased`, each input row of `x` is split by the column stride
/// ([`phase_columns`]), so that every run copied is contiguous.
fn im2col_rows<T: Arith>(
    x: &[T],
    out: &mut [T],
    g: &Window2d,
    [h, wd]: [usize; 2],
    r: usize,
    oys: std::ops::Range<usize>,
    phased: bool,
) {
    let ([_, kw], [_, ow], sw) = (g.kernel, g.output, g.strides[1]);
    let k_len = g.kernel[0] * kw;
    let (ch, k) = (r / k_len.max(1), r % k_len.max(1));
    let (ky, kx) = (k / kw.max(1), k % kw.max(1));
    let xc = &x[ch * h * wd..][..h * wd];
    let off = g.column_offset(kx);
    let cols = valid_outputs(off, sw, wd, ow);
    let first = oys.start;
    for oy in oys {
        let out = &mut out[(oy - first) * ow..][..ow];
        let Some(iy) = g.input_row(oy, ky, h) else {
            out.fill(T::zero());
            continue;
        };
        let xr = &xc[iy * wd..][..wd];
        out[..cols.start].fill(T::zero());
        out[cols.end..].fill(T::zero());
        let start = (cols.start as isize * sw + off) as usize;
        if cols.is_empty() {
            continue;
        }
        if sw == 1 {
            out[cols.clone()].copy_from_slice(&xr[start..start + cols.len()]);
        } else if phased {
            // Input column ox * sw + off lies in phase off mod sw, at
            // ox + off div sw of that phase's run.
            let sw = sw as usize;
            let phase = off.rem_euclid(sw as isize) as usize;
            let before: usize = (0..phase).map(|q| (wd - q.min(wd)).div_ceil(sw)).sum();
            let at = before + (cols.start as isize + off.div_euclid(sw as isize)) as usize;
            out[cols.clone()].copy_from_slice(&xr[at..at + cols.len()]);
        } else {
            // A strided walk without per-element bounds checks.
            let src = xr[start..].iter().step_by(sw as usize);
            for (o, &v) in out[cols.clone()].iter_mut().zip(src) {
                *o = v;
            }
        }
    }
}

/// Output columns per band of the banded im2col product
/// ([`gemm_column_bands`]): whole output rows, about 48K values of B
/// (fits in L2 with the packed copy), at least as many columns as the
/// filter has rows so that packing the filter per band stays cheap; `None`
/// where B is better made whole (large filters, or too few bands).
fn band_columns(m: usize, k: usize, [oh, ow]: [usize; 2]) -> Option<usize> {
    const B_VALUES: usize = 48 * 1024;
    const A_VALUES: usize = 64 * 1024;
    if m * k > A_VALUES || ow == 0 {
        return None;
    }
    let cols = (B_VALUES / k.max(1)).max(m).max(64);
    let rows = cols.div_ceil(ow).max(1);
    (rows * 2 <= oh).then_some(rows * ow)
}

/// One filter per channel (group = channels, one output each): each output
/// channel sums its taps directly, channels in parallel. `y` holds
/// `images x channels` planes of `out_len`.
fn depthwise<T: Arith>(
    x: &[T],
    w: &[T],
    tap: &[isize],
    y: &mut [T],
    k_len: usize,
    in_len: usize,
    out_len: usize,
) {
    use rayon::prelude::*;
    let channels = w.len() / k_len.max(1);
    y.par_chunks_mut(out_len.max(1))
        .enumerate()
        .for_each(|(plane, out)| {
            let ch = plane % channels.max(1);
            let xc = &x[plane * in_len..][..in_len];
            let wc = &w[ch * k_len..][..k_len];
            for (o, v) in out.iter_mut().enumerate() {
                let taps = &tap[o * k_len..][..k_len];
                let mut acc = T::zero();
                for (&t, &wk) in taps.iter().zip(wc) {
                    if t >= 0 {
                        acc = acc.add(wk.mul(xc[t as usize]));
                    }
                }
                *v = acc;
            }
        });
}

/// The f32 depthwise kernel (then `finish` on each plane, or `epi` in
/// registers where the kernel applies one) when the tensors are f32;
/// `false` when it did not run.
fn depthwise_f32_as<T: Arith>(
    x: &Tensor,
    w: &Tensor,
    y: &mut [T],
    win: &oxrt_core::shape::Window,
    plane: [usize; 2],
    finish: Option<&PlaneFinish<'_>>,
    epi: Option<TileEpilogue<'_>>,
) -> Result<bool> {
    let y = crate::kernel::as_f32_mut(y);
    match (x.as_slice::<f32>(), w.as_slice::<f32>(), y) {
        (Ok(x), Ok(w), Some(y)) => depthwise_f32(x, w, y, &Window2d::new(win)?, plane, finish, epi),
        _ => Ok(false),
    }
}

/// Depthwise 2-D convolution without a tap table: for each kernel offset,
/// a run over the output row of the input positions it reads (contiguous
/// at stride 1), planes in parallel.
fn depthwise_2d<T: Arith>(
    x: &[T],
    w: &[T],
    y: &mut [T],
    win: &oxrt_core::shape::Window,
    [h, wd]: [usize; 2],
) -> Result<()> {
    use rayon::prelude::*;
    let g = Window2d::new(win)?;
    let ([kh, kw], [oh, ow], sw) = (g.kernel, g.output, g.strides[1]);
    let k_len = kh * kw;
    let channels = w.len() / k_len.max(1);
    y.par_chunks_mut((oh * ow).max(1))
        .enumerate()
        .for_each(|(plane, out)| {
            let ch = plane % channels.max(1);
            let xc = &x[plane * h * wd..][..h * wd];
            let wc = &w[ch * k_len..][..k_len];
            for oy in 0..oh {
                let row = &mut out[oy * ow..][..ow];
                for ky in 0..kh {
                    let Some(iy) = g.input_row(oy, ky, h) else {
                        continue;
                    };
                    let xr = &xc[iy * wd..][..wd];
                    for kx in 0..kw {
                        let wk = wc[ky * kw + kx];
                        let off = g.column_offset(kx);
                        let cols = valid_outputs(off, sw, wd, ow);
                        if sw == 1 {
                            let start = (cols.start as isize + off) as usize;
                            let src = &xr[start..start + cols.len()];
                            for (v, &xv) in row[cols].iter_mut().zip(src) {
                                *v = v.add(wk.mul(xv));
                            }
                        } else {
                            for ox in cols {
                                let v = &mut row[ox];
                                *v = v.add(wk.mul(xr[(ox as isize * sw + off) as usize]));
                            }
                        }
                    }
                }
            }
        });
    Ok(())
}

impl Conv {
    /// Conv, or FusedConv with its residual `z` (input 3).
    fn compute_with(
        &self,
        inputs: &[Option<&Tensor>],
        z: Option<Cow<'_, Tensor>>,
    ) -> Result<Vec<Tensor>> {
        let (x, w, b) = (
            required(inputs, 0)?,
            required(inputs, 1)?,
            optional(inputs, 2),
        );
        with_float_type!(x.dtype(), T => {
            let act = self.epilogue.as_ref().map(|e| move |v: &mut [T]| e.apply_slice(v));
            let act = act.as_ref().map(|f| f as ChannelFn<'_, T>);
            Ok(vec![self.run::<T>(x, w, b, z, act)?])
        }, _ => Err(unsupported_type("Conv", x)))
    }
}

impl Kernel for Conv {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let z = optional(inputs, 3).filter(|_| self.summed);
        self.compute_with(inputs, z.map(Cow::Borrowed))
    }

    fn in_place_input(&self) -> Option<usize> {
        self.summed.then_some(3)
    }

    fn compute_in_place(&self, owned: Tensor, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        self.compute_with(inputs, Some(Cow::Owned(owned)))
    }
}

/// ConvInteger: 8-bit operands minus their zero points (x: one value; w:
/// one value or one per output channel), convolved exactly in i32.
struct ConvInteger(Conv);

/// `t` as i32 minus `zero` (one value, or one per slice along axis 0).
fn minus_zero_point(t: &Tensor, zero: Option<&Tensor>) -> Result<Tensor> {
    let v = cast(t, D::I32)?.into_vec::<i32>()?;
    let z = match zero {
        Some(z) => cast(z, D::I32)?.into_vec::<i32>()?,
        None => vec![0],
    };
    let rows = t.shape().first().copied().unwrap_or(1);
    if z.len() != 1 && z.len() != rows {
        return Err(Error::invalid(format!(
            "zero point has {} values for {rows} channels",
            z.len()
        )));
    }
    let per = v.len() / rows.max(1);
    let out = v
        .iter()
        .enumerate()
        .map(|(i, &e)| e - z[if z.len() == 1 { 0 } else { i / per.max(1) }])
        .collect();
    Tensor::from_vec(t.shape(), out)
}

impl Kernel for ConvInteger {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x_zero = optional(inputs, 2);
        if let Some(z) = x_zero.filter(|z| z.len() != 1) {
            return Err(Error::invalid(format!(
                "x_zero_point must be one value, got shape {:?}",
                z.shape()
            )));
        }
        let x = minus_zero_point(required(inputs, 0)?, x_zero)?;
        let w = minus_zero_point(required(inputs, 1)?, optional(inputs, 3))?;
        Ok(vec![self.0.run::<i32>(&x, &w, None, None, None)?])
    }
}

/// QLinearConv: ConvInteger plus the int32 bias, rescaled by
/// `x_scale * w_scale / y_scale` (w_scale per tensor or per output
/// channel, the multiplier in f32 as the reference computes it), plus
/// `y_zero_point`, saturated and rounded half to even.
struct QLinearConv(Conv);

impl Kernel for QLinearConv {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let scalar = |i: usize, what: &str| -> Result<f32> {
            match required(inputs, i)?.to_f64_vec().as_deref() {
                Some([v]) => Ok(*v as f32),
                _ => Err(Error::invalid(format!("{what} must be one float"))),
            }
        };
        let (x_scale, y_scale) = (scalar(1, "x_scale")?, scalar(6, "y_scale")?);
        let x = required(inputs, 0)?;
        let w = required(inputs, 3)?;
        let xq = minus_zero_point(x, optional(inputs, 2))?;
        let wq = minus_zero_point(w, optional(inputs, 5))?;
        let acc = self
            .0
            .run::<i32>(&xq, &wq, optional(inputs, 8), None, None)?;
        let w_scale: Vec<f32> = required(inputs, 4)?
            .to_f64_vec()
            .ok_or_else(|| Error::invalid("w_scale must be float"))?
            .into_iter()
            .map(|v| v as f32)
            .collect();
        let channels = acc.shape().get(1).copied().unwrap_or(1);
        if w_scale.len() != 1 && w_scale.len() != channels {
            return Err(Error::invalid(format!(
                "w_scale has {} values for {channels} output channels",
                w_scale.len()
            )));
        }
        let y_zero = optional(inputs, 7);
        let out_type = y_zero.map_or(x.dtype(), Tensor::dtype);
        let zero = y_zero
            .map(|z| {
                z.to_f64_vec()
                    .and_then(|v| v.first().copied())
                    .unwrap_or(0.0)
            })
            .unwrap_or(0.0);
        let (lo, hi) = if out_type == D::I8 {
            (-128.0, 127.0)
        } else {
            (0.0, 255.0)
        };
        let plane: usize = acc.shape()[2..].iter().product();
        let y: Vec<f64> = acc
            .as_slice::<i32>()?
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let c = (i / plane.max(1)) % channels;
                let ws = w_scale[if w_scale.len() == 1 { 0 } else { c }];
                let m = f64::from(x_scale * ws / y_scale);
                round_half_even((f64::from(v) * m + zero).clamp(lo, hi))
            })
            .collect();
        Ok(vec![cast(&Tensor::from_vec(acc.shape(), y)?, out_type)?])
    }
}

/// FusedConv: Conv with its activation (and residual input) fused.
pub(crate) fn create_fused(node: &Node, info: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let mut conv = create_conv(node, info)?;
    conv.epilogue = Epilogue::from_node(node)?;
    Ok(Box::new(conv))
}

pub(crate) fn create(node: &Node, info: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let conv = create_conv(node, info)?;
    Ok(match node.op_type.as_str() {
        "ConvInteger" => Box::new(ConvInteger(conv)),
        "QLinearConv" => Box::new(QLinearConv(conv)),
        _ => Box::new(conv),
    })
}

fn create_conv(node: &Node, info: &KernelInfo<'_>) -> Result<Conv> {
    let group = node.int_or("group", 1)?;
    let group = usize::try_from(group)
        .ok()
        .filter(|&g| g > 0)
        .ok_or_else(|| Error::invalid(format!("group must be positive, got {group}")))?;
    Ok(Conv {
        attrs: WindowAttrs::from_node(node)?,
        group,
        taps: TapCache::default(),
        summed: node.op_type == "FusedConv" && node.input(3).is_some(),
        epilogue: None,
        packed: (node.op_type == "Conv" || node.op_type == "FusedConv")
            .then(|| pack_weights(info, group))
            .flatten(),
        direct: (node.op_type == "Conv" || node.op_type == "FusedConv")
            .then(|| pack_direct(info, group))
            .flatten(),
    })
}

/// Registers Conv, ConvInteger and QLinearConv.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new("Conv", 1.., FLOATS, create));
    reg.add(KernelDef::new("ConvInteger", 10.., &[D::U8, D::I8], create));
    reg.add(KernelDef::new("QLinearConv", 10.., &[D::U8, D::I8], create));
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn conv(attrs: WindowAttrs, group: usize, x: Tensor, w: Tensor, b: Option<Tensor>) -> Tensor {
        Conv {
            attrs,
            group,
            taps: TapCache::default(),
            summed: false,
            epilogue: None,
            packed: None,
            direct: None,
        }
        .run::<f32>(&x, &w, b.as_ref(), None, None)
        .unwrap()
    }

    fn attrs(pads: &[usize], strides: &[usize]) -> WindowAttrs {
        WindowAttrs {
            kernel_shape: None,
            strides: Some(strides.to_vec()),
            dilations: None,
            pads: Some(pads.to_vec()),
            auto_pad: oxrt_core::shape::AutoPad::NotSet,
            ceil_mode: false,
        }
    }

    #[test]
    fn matches_the_onnx_conv_example() {
        // The ONNX Conv docs example: 5x5 input 0..25, 3x3 ones kernel, pads 1.
        let x = Tensor::from_vec(vec![1, 1, 5, 5], (0..25).map(|v| v as f32).collect()).unwrap();
        let w = Tensor::from_vec(vec![1, 1, 3, 3], vec![1.0f32; 9]).unwrap();
        let y = conv(attrs(&[1, 1, 1, 1], &[1, 1]), 1, x.clone(), w.clone(), None);
        assert_eq!(
            y.as_slice::<f32>().unwrap(),
            &[
                12., 21., 27., 33., 24., 33., 54., 63., 72., 51., 63., 99., 108., 117., 81., 93.,
                144., 153., 162., 111., 72., 111., 117., 123., 84.
            ]
        );
        let y = conv(attrs(&[1, 1, 1, 1], &[2, 2]), 1, x, w, None);
        assert_eq!(y.shape(), &[1, 1, 3, 3]);
        assert_eq!(
            y.as_slice::<f32>().unwrap(),
            &[12., 27., 24., 63., 108., 81., 72., 117., 84.]
        );
    }

    #[test]
    fn depthwise_groups_and_bias() {
        // 2 channels, group 2, 1x1 kernels scaling by 2 and 3, bias 1 and -1.
        let x = Tensor::from_vec(vec![1, 2, 1, 2], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
        let w = Tensor::from_vec(vec![2, 1, 1, 1], vec![2.0f32, 3.0]).unwrap();
        let b = Tensor::from_vec(vec![2], vec![1.0f32, -1.0]).unwrap();
        let y = conv(attrs(&[0, 0, 0, 0], &[1, 1]), 2, x, w, Some(b));
        assert_eq!(y.as_slice::<f32>().unwrap(), &[3.0, 5.0, 8.0, 11.0]);
    }

    #[test]
    fn conv_integer_shifts_by_zero_points() {
        let k = ConvInteger(Conv {
            attrs: attrs(&[0, 0, 0, 0], &[1, 1]),
            group: 1,
            taps: TapCache::default(),
            summed: false,
            epilogue: None,
            packed: None,
            direct: None,
        });
        let x = Tensor::from_vec(vec![1, 1, 2, 2], vec![10u8, 11, 12, 13]).unwrap();
        let w = Tensor::from_vec(vec![2, 1, 1, 1], vec![3u8, 5]).unwrap();
        let xz = Tensor::scalar(10u8);
        let wz = Tensor::from_vec(vec![2], vec![1u8, 5]).unwrap();
        let y = k
            .compute(&[Some(&x), Some(&w), Some(&xz), Some(&wz)])
            .unwrap();
        // Channel 0: [0,1,2,3] * 2; channel 1: * 0.
        assert_eq!(y[0].as_slice::<i32>().unwrap(), &[0, 2, 4, 6, 0, 0, 0, 0]);
        let bad = Tensor::from_vec(vec![2], vec![1u8, 2]).unwrap();
        assert!(k.compute(&[Some(&x), Some(&w), Some(&bad)]).is_err());
    }

    /// Direct 2-D convolution, the definition.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn naive(
        x: &[f32],
        w: &[f32],
        (n, c, h, wd): (usize, usize, usize, usize),
        (m, kh, kw): (usize, usize, usize),
        g: usize,
        stride: usize,
        pad: usize,
    ) -> (Vec<f32>, usize, usize) {
        let oh = (h + 2 * pad - kh) / stride + 1;
        let ow = (wd + 2 * pad - kw) / stride + 1;
        let (cg, mg) = (c / g, m / g);
        let mut y = vec![0.0f32; n * m * oh * ow];
        for img in 0..n {
            for oc in 0..m {
                let grp = oc / mg;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = 0.0f32;
                        for ic in 0..cg {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let iy = (oy * stride + ky) as isize - pad as isize;
                                    let ix = (ox * stride + kx) as isize - pad as isize;
                                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                        continue;
                                    }
                                    let xv = x[((img * c + grp * cg + ic) * h + iy as usize) * wd
                                        + ix as usize];
                                    acc += xv * w[((oc * cg + ic) * kh + ky) * kw + kx];
                                }
                            }
                        }
                        y[((img * m + oc) * oh + oy) * ow + ox] = acc;
                    }
                }
            }
        }
        (y, oh, ow)
    }

    #[test]
    fn banded_im2col_matches_the_definition_with_bias_activation_and_residual() {
        // 3 -> 8 channels, 7x7 stride 2 pad 3 on 2 x 64x64: 147 im2col rows,
        // output rows of 32 in bands of 11 (two threads); grouped, 98 rows
        // in bands of 16.
        let vals = crate::test_values;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        // Large filters (packed once per band) and few output rows keep
        // the whole im2col matrix.
        assert_eq!(band_columns(256, 2304, [56, 56]), None);
        assert_eq!(band_columns(8, 27, [4, 100]), None);
        for (c, m, g, band_rows) in [(3, 8, 1, 11), (4, 8, 2, 16)] {
            let (n, h, wd, k) = (2, 64, 64, 7);
            assert_eq!(
                band_columns(m / g, c / g * 49, [32, 32]),
                Some(band_rows * 32)
            );
            let x = Tensor::from_vec(vec![n, c, h, wd], vals(n * c * h * wd, 1)).unwrap();
            let w = Tensor::from_vec(vec![m, c / g, k, k], vals(m * c / g * k * k, 2)).unwrap();
            let b = Tensor::from_vec(vec![m], vals(m, 3)).unwrap();
            let (want, oh, ow) = naive(
                x.as_slice().unwrap(),
                w.as_slice().unwrap(),
                (n, c, h, wd),
                (m, k, k),
                g,
                2,
                3,
            );
            let z = Tensor::from_vec(vec![n, m, oh, ow], vals(n * m * oh * ow, 4)).unwrap();
            let conv = Conv {
                packed: None,
                direct: None,
                attrs: attrs(&[3, 3, 3, 3], &[2, 2]),
                group: g,
                taps: TapCache::default(),
                summed: true,
                epilogue: None,
            };
            let relu = |v: &mut [f32]| -> Result<()> {
                v.iter_mut().for_each(|e| *e = e.max(0.0));
                Ok(())
            };
            let y = pool
                .install(|| conv.run::<f32>(&x, &w, Some(&b), Some(Cow::Borrowed(&z)), Some(&relu)))
                .unwrap();
            let (bd, zd) = (b.as_slice::<f32>().unwrap(), z.as_slice::<f32>().unwrap());
            for (i, (&got, &plain)) in y.as_slice::<f32>().unwrap().iter().zip(&want).enumerate() {
                let expected = (plain + bd[(i / (oh * ow)) % m] + zd[i]).max(0.0);
                assert!(
                    (got - expected).abs() < 1e-4,
                    "group {g} at {i}: {got} vs {expected}"
                );
            }
        }
    }

    #[test]
    fn depthwise_pointwise_and_strided_paths_match_the_definition() {
        let vals = crate::test_values;
        // (channels, outputs, kernel, group, stride, pad)
        for (c, m, k, g, stride, pad) in [
            (3, 3, 3, 3, 2, 1),
            (3, 3, 3, 3, 1, 1),
            (4, 5, 1, 1, 1, 0),
            (4, 4, 1, 2, 1, 0),
            (4, 6, 3, 2, 1, 1),
            // Column strides 2 and 3: im2col from stride-phase rows.
            (4, 6, 3, 1, 2, 1),
            (4, 6, 3, 2, 3, 1),
            (2, 3, 5, 1, 2, 2),
            // 1x1 at strides 2 and 3: gathered, then pointwise.
            (4, 5, 1, 1, 2, 0),
            (4, 6, 1, 2, 3, 0),
        ] {
            // Even and odd widths (the stride-2 phase split's tail).
            for (n, h, wd) in [(2, 7, 6), (1, 6, 9)] {
                let x = vals(n * c * h * wd, 1);
                let w = vals(m * (c / g) * k * k, 2);
                let (want, oh, ow) = naive(&x, &w, (n, c, h, wd), (m, k, k), g, stride, pad);
                let mut a = attrs(&[pad; 4], &[stride, stride]);
                a.kernel_shape = Some(vec![k, k]);
                let y = conv(
                    a,
                    g,
                    Tensor::from_vec(vec![n, c, h, wd], x).unwrap(),
                    Tensor::from_vec(vec![m, c / g, k, k], w).unwrap(),
                    None,
                );
                assert_eq!(y.shape(), [n, m, oh, ow]);
                for (a, b) in y.as_slice::<f32>().unwrap().iter().zip(&want) {
                    assert!(
                        (a - b).abs() < 1e-4,
                        "c {c} m {m} k {k} g {g} w {wd}: {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn strided_one_by_one_convolutions_match_the_definition() {
        let vals = crate::test_values;
        // (channels, outputs, input size, stride, pad): maps whose strided
        // outputs (255 and 144 positions) take the pointwise kernels, an
        // odd size whose last row and column are read, and a padded one
        // (not gathered: it reads the padding).
        for (c, m, [h, wd], stride, pad) in [
            (16, 32, [30, 34], 2, 0),
            (8, 40, [23, 36], 2, 0),
            (8, 12, [35, 37], 3, 0),
            (16, 32, [30, 34], 2, 1),
        ] {
            let x = vals(c * h * wd, 4);
            let w = vals(m * c, 5);
            let (want, oh, ow) = naive(&x, &w, (1, c, h, wd), (m, 1, 1), 1, stride, pad);
            let mut a = attrs(&[pad; 4], &[stride, stride]);
            a.kernel_shape = Some(vec![1, 1]);
            let y = conv(
                a,
                1,
                Tensor::from_vec(vec![1, c, h, wd], x).unwrap(),
                Tensor::from_vec(vec![m, c, 1, 1], w).unwrap(),
                None,
            );
            assert_eq!(y.shape(), [1, m, oh, ow]);
            for (i, (a, b)) in y.as_slice::<f32>().unwrap().iter().zip(&want).enumerate() {
                assert!(
                    (a - b).abs() < 1e-4,
                    "{h}x{wd} stride {stride} at {i}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn one_and_three_dimensional_convolutions_match_the_definition() {
        // The 2-D definition with a height (and depth) of 1; each rank takes
        // the general im2col path (the banded and row-walking ones are 2-D).
        let vals = crate::test_values;
        let (n, c, wd, m, k, g) = (2, 4, 9, 6, 3, 2);
        let x = vals(n * c * wd, 3);
        let w = vals(m * (c / g) * k, 4);
        let (want, _, ow) = naive(&x, &w, (n, c, 1, wd), (m, 1, k), g, 1, 0);
        for spatial in [vec![wd], vec![1, 1, wd]] {
            let kernel: Vec<usize> = spatial
                .iter()
                .map(|&d| if d == 1 { 1 } else { k })
                .collect();
            let mut a = attrs(&vec![0; 2 * spatial.len()], &vec![1; spatial.len()]);
            a.kernel_shape = Some(kernel.clone());
            let y = conv(
                a,
                g,
                Tensor::from_vec([&[n, c][..], &spatial].concat(), x.clone()).unwrap(),
                Tensor::from_vec([&[m, c / g][..], &kernel].concat(), w.clone()).unwrap(),
                None,
            );
            let mut out = spatial.clone();
            *out.last_mut().unwrap() = ow;
            assert_eq!(y.shape(), [&[n, m][..], &out].concat());
            for (a, b) in y.as_slice::<f32>().unwrap().iter().zip(&want) {
                assert!((a - b).abs() < 1e-4, "rank {}: {a} vs {b}", spatial.len());
            }
        }
    }

    #[test]
    fn packed_weights_match_the_definition_with_groups_bias_and_residual() {
        if !crate::packed::prefers(32, 9 * 16, 49) {
            eprintln!("skipped: this CPU has no packed product");
            return;
        }
        let vals = crate::test_values;
        // 7x7 maps: 49 output positions, the packed product's shape.
        let (n, c, h, wd, m, k) = (2, 32, 7, 7, 64, 3);
        for g in [1, 2] {
            let x = vals(n * c * h * wd, 5);
            let w = vals(m * (c / g) * k * k, 6);
            let bias = vals(m, 7);
            let z = vals(n * m * h * wd, 8);
            let (want, oh, ow) = naive(&x, &w, (n, c, h, wd), (m, k, k), g, 1, 1);
            let rows = c / g * k * k;
            let packed = w
                .chunks(m / g * rows)
                .map(|wg| PackedA::new(MatRef::row_major(wg, m / g, rows, false)))
                .collect::<Option<Vec<_>>>();
            assert!(packed.is_some());
            let mut a = attrs(&[1; 4], &[1, 1]);
            a.kernel_shape = Some(vec![k, k]);
            let y = Conv {
                attrs: a,
                group: g,
                taps: TapCache::default(),
                summed: true,
                epilogue: None,
                packed,
                direct: None,
            }
            .run::<f32>(
                &Tensor::from_vec(vec![n, c, h, wd], x).unwrap(),
                &Tensor::from_vec(vec![m, c / g, k, k], w).unwrap(),
                Some(&Tensor::from_vec(vec![m], bias.clone()).unwrap()),
                Some(Cow::Owned(
                    Tensor::from_vec(vec![n, m, oh, ow], z.clone()).unwrap(),
                )),
                None,
            )
            .unwrap();
            for (i, (got, want)) in y.as_slice::<f32>().unwrap().iter().zip(&want).enumerate() {
                let want = want + bias[(i / (oh * ow)) % m] + z[i];
                assert!(
                    (got - want).abs() < 1e-3,
                    "group {g} at {i}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn channel_mismatch_is_an_error() {
        let x = Tensor::from_vec(vec![1, 3, 2, 2], vec![0.0f32; 12]).unwrap();
        let w = Tensor::from_vec(vec![1, 2, 1, 1], vec![0.0f32; 2]).unwrap();
        let err = Conv {
            attrs: attrs(&[0, 0, 0, 0], &[1, 1]),
            group: 1,
            taps: TapCache::default(),
            summed: false,
            epilogue: None,
            packed: None,
            direct: None,
        }
        .run::<f32>(&x, &w, None, None, None)
        .unwrap_err();
        assert!(err.to_string().contains("group 1"), "{err}");
    }
}

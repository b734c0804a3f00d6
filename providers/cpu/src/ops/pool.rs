//! MaxPool (with the optional indices output), AveragePool, LpPool,
//! GlobalAveragePool, GlobalMaxPool and GlobalLpPool.

use multiversion::multiversion;
use oxrt_core::shape::WindowAttrs;
use oxrt_core::{
    DataType as D, Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor,
};

use crate::kernel::{cast_f32, required, unsupported_type, with_float_type, Real};
use crate::ops::activation::FLOATS;
use crate::ops::cast::cast;
use crate::ops::window::{taps, valid_outputs, Window2d, OUTSIDE};

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// `indices`: the node names the optional indices output.
    Max {
        column_major: bool,
        indices: bool,
    },
    Average {
        count_include_pad: bool,
    },
    /// `(sum |x|^p)^(1/p)` over the window (padding adds nothing).
    Lp {
        p: f32,
    },
}

struct Pool {
    attrs: WindowAttrs,
    kind: Kind,
}

/// Column-major flat index of a row-major spatial index (MaxPool storage_order=1).
fn column_major(flat: usize, dims: &[usize]) -> usize {
    let mut rem = flat;
    let mut idx = vec![0; dims.len()];
    for d in (0..dims.len()).rev() {
        idx[d] = rem % dims[d];
        rem /= dims[d];
    }
    let mut out = 0;
    for d in (0..dims.len()).rev() {
        out = out * dims[d] + idx[d];
    }
    out
}

/// 2-D max pooling without indices: per output row, the maximum over the
/// kernel's input rows first (whole contiguous rows, so it vectorizes),
/// then over the kernel's columns of that one row; planes in parallel. A
/// window entirely in padding gives -inf, as the general path does.
fn max_pool_2d<T: Real>(
    x: &[T],
    planes: usize,
    [h, wd]: [usize; 2],
    win: &oxrt_core::shape::Window,
) -> Result<Vec<T>> {
    use rayon::prelude::*;
    let g = Window2d::new(win)?;
    let [oh, ow] = g.output;
    #[cfg(target_arch = "x86_64")]
    if let (Some(xf), true) = (crate::kernel::as_type::<T, f32>(x), avx512::fits(&g)) {
        // Every output is stored (a window in padding stores -inf).
        let mut y = oxrt_core::arena::stale(planes * oh * ow, T::neg_infinity());
        if let Some(yf) = crate::kernel::as_f32_mut(&mut y) {
            // The 3x3 stride-2 path needs no row buffer.
            let row = if avx512::is_3x3_stride_2(&g) {
                0
            } else {
                avx512::row_len(&g, wd)
            };
            yf.par_chunks_mut((oh * ow).max(1))
                .enumerate()
                .for_each_init(
                    || vec![f32::NEG_INFINITY; row],
                    |v, (p, out)| {
                        let xp = &xf[p * h * wd..][..h * wd];
                        // SAFETY: `fits` checked that this CPU has
                        // AVX-512F; `v` has `row_len` values.
                        unsafe {
                            if avx512::is_3x3_stride_2(&g) {
                                avx512::plane_3x3_stride_2(xp, [h, wd], &g, out)
                            } else {
                                avx512::plane(xp, [h, wd], &g, v, out)
                            }
                        }
                    },
                );
            return Ok(y);
        }
    }
    let mut y = oxrt_core::arena::filled(planes * oh * ow, T::neg_infinity());
    y.par_chunks_mut((oh * ow).max(1))
        .enumerate()
        .for_each_init(
            || vec![T::neg_infinity(); 2 * wd],
            |rows, (p, out)| max_pool_plane(&x[p * h * wd..][..h * wd], [h, wd], &g, rows, out),
        );
    Ok(y)
}

/// One plane of [`max_pool_2d`]; `scratch` holds two input rows: the
/// maximum over the kernel's rows, and at column stride 2 the same split
/// into its even then odd columns, so every kernel column reads a
/// contiguous run.
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn max_pool_plane<T: Real>(
    xp: &[T],
    [h, wd]: [usize; 2],
    g: &Window2d,
    scratch: &mut [T],
    out: &mut [T],
) {
    // `Float::max` ignores NaN, as the general path does (a window's
    // maximum starts at -inf), and compiles to SIMD max instructions
    // rather than branches or masked stores.
    let max = |a: T, b: T| a.max(b);
    let ([kh, kw], [oh, ow], sw) = (g.kernel, g.output, g.strides[1]);
    let (rows, halves) = scratch.split_at_mut(wd);
    let evens = wd.div_ceil(2);
    for oy in 0..oh {
        rows.fill(T::neg_infinity());
        for ky in 0..kh {
            if let Some(iy) = g.input_row(oy, ky, h) {
                let xr = &xp[iy * wd..][..wd];
                rows.iter_mut().zip(xr).for_each(|(m, &v)| *m = max(*m, v));
            }
        }
        if sw == 2 {
            let (even, odd) = halves.split_at_mut(evens);
            for ((pair, e), o) in rows
                .chunks_exact(2)
                .zip(even.iter_mut())
                .zip(odd.iter_mut())
            {
                *e = pair[0];
                *o = pair[1];
            }
            if wd % 2 == 1 {
                even[evens - 1] = rows[wd - 1];
            }
        }
        let row = &mut out[oy * ow..][..ow];
        for kx in 0..kw {
            let off = g.column_offset(kx);
            let cols = valid_outputs(off, sw, wd, ow);
            let start = cols.start;
            if sw == 1 {
                let first = (start as isize + off) as usize;
                row[cols.clone()]
                    .iter_mut()
                    .zip(&rows[first..])
                    .for_each(|(v, &m)| *v = max(*v, m));
            } else if sw == 2 {
                // Input column (start + i) * 2 + off is column
                // start + i + off / 2 of the even or odd half.
                let half = if off.rem_euclid(2) == 0 { 0 } else { evens };
                let first = half + (start as isize + off.div_euclid(2)) as usize;
                row[cols.clone()]
                    .iter_mut()
                    .zip(&halves[first..])
                    .for_each(|(v, &m)| *v = max(*v, m));
            } else {
                for (ox, v) in row[cols].iter_mut().enumerate() {
                    *v = max(*v, rows[((start + ox) as isize * sw + off) as usize]);
                }
            }
        }
    }
}

/// f32 max pooling with AVX-512 for column strides 1 and 2 (undilated
/// columns): per output row, the maximum over the kernel's input rows into
/// a row buffer padded with -inf on both sides (masked loads, so no scalar
/// tails), then over the kernel's columns 16 outputs at a time (at stride 2
/// the even lanes of two loads, picked by one permute). `max(new, acc)`
/// keeps `acc` when `new` is NaN, as `Float::max` does in the plane kernel
/// above.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use crate::ops::window::Window2d;

    /// `out[i]` = the sum of values `i * len..(i + 1) * len` of `x`.
    ///
    /// # Safety
    /// AVX-512F must be available.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn plane_sums(x: &[f32], len: usize, out: &mut [f32]) {
        for (o, plane) in out.iter_mut().zip(x.chunks_exact(len)) {
            let mut acc = [_mm512_setzero_ps(); 4];
            let mut whole = plane.chunks_exact(64);
            for c in &mut whole {
                for (i, a) in acc.iter_mut().enumerate() {
                    // SAFETY: `c` holds 64 values.
                    *a = _mm512_add_ps(*a, unsafe { _mm512_loadu_ps(c.as_ptr().add(16 * i)) });
                }
            }
            for (a, part) in acc.iter_mut().zip(whole.remainder().chunks(16)) {
                let mask = crate::kernel::first_lanes(part.len());
                // SAFETY: the masked lanes read `part`.
                *a = _mm512_add_ps(*a, unsafe { _mm512_maskz_loadu_ps(mask, part.as_ptr()) });
            }
            let sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
            *o = _mm512_reduce_add_ps(sum);
        }
    }

    /// Most kernel rows [`plane`] takes.
    const MAX_ROWS: usize = 16;

    /// Whether [`plane`] covers `g` on this CPU.
    pub(super) fn fits(g: &Window2d) -> bool {
        matches!(g.strides[1], 1 | 2)
            && g.kernel[0] <= MAX_ROWS
            && g.dilations[1] == 1
            && g.pads[1] >= 0
            && crate::kernel::has_avx512f()
    }

    /// Whether `g` is the 3x3 window at stride 2 that
    /// [`plane_3x3_stride_2`] pools (without dilation).
    pub(super) fn is_3x3_stride_2(g: &Window2d) -> bool {
        g.kernel == [3, 3] && g.strides == [2, 2] && g.dilations == [1, 1]
    }

    /// [`plane`] for a 3x3 window at stride 2, the CNNs' usual pooling,
    /// without the row buffer: per 16 outputs, the maximum over the
    /// window's rows of 32 input columns (two vectors, masked to the row,
    /// -inf outside it), split into even and odd columns, and the even
    /// columns shifted by one lane for the third window column (their
    /// first lane from the next 32 columns, which the next 16 outputs
    /// start from). Nothing is stored and read back, so no load waits on
    /// a store it overlaps.
    ///
    /// # Safety
    /// The CPU must have AVX-512F ([`fits`]) and `g` must be a 3x3 window
    /// at stride 2 without dilation ([`is_3x3_stride_2`]).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn plane_3x3_stride_2(
        xp: &[f32],
        [h, wd]: [usize; 2],
        g: &Window2d,
        out: &mut [f32],
    ) {
        let [oh, ow] = g.output;
        debug_assert!(out.len() >= oh * ow && xp.len() >= h * wd && is_3x3_stride_2(g));
        let lowest = _mm512_set1_ps(f32::NEG_INFINITY);
        let evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odds = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        for (oy, row) in out[..oh * ow].chunks_exact_mut(ow.max(1)).enumerate() {
            let mut starts = [0usize; 3];
            let mut n = 0;
            for ky in 0..3 {
                if let Some(iy) = g.input_row(oy, ky, h) {
                    starts[n] = iy * wd;
                    n += 1;
                }
            }
            let starts = &starts[..n];
            // The maximum over the window's rows of input columns
            // c..c + 16 (-inf for columns outside the row).
            let column_max = |c: isize| -> __m512 {
                // Bounds tested before the mask is built (through
                // `kernel::lanes_inside` this loop ran 20% slower).
                let first = (-c).clamp(0, 16) as u32;
                let end = (wd as isize - c).clamp(0, 16) as u32;
                if end <= first {
                    return lowest;
                }
                let mask = (((1u32 << end) - 1) & !((1u32 << first) - 1)) as __mmask16;
                let mut acc = lowest;
                for &at in starts {
                    let ptr = xp.as_ptr().wrapping_add(at).wrapping_offset(c);
                    // SAFETY: the masked lanes address columns c + j in
                    // 0..wd of a row inside `xp`; the others are not read.
                    let x = unsafe { _mm512_mask_loadu_ps(lowest, mask, ptr) };
                    acc = _mm512_max_ps(acc, x);
                }
                acc
            };
            // Output ox reads columns 2 ox - left + (0, 1, 2).
            let mut c = -g.pads[1];
            let (mut lo, mut hi) = (column_max(c), column_max(c + 16));
            let mut even = _mm512_permutex2var_ps(lo, evens, hi);
            for o in (0..ow).step_by(16) {
                let (next_lo, next_hi) = (column_max(c + 32), column_max(c + 48));
                let odd = _mm512_permutex2var_ps(lo, odds, hi);
                let next_even = _mm512_permutex2var_ps(next_lo, evens, next_hi);
                // Lane i: column c + 2i + 2 (lane 15: the next even's first).
                let third = _mm512_castsi512_ps(_mm512_alignr_epi32(
                    _mm512_castps_si512(next_even),
                    _mm512_castps_si512(even),
                    1,
                ));
                let v = _mm512_max_ps(_mm512_max_ps(even, odd), third);
                let mask = crate::kernel::first_lanes(ow - o);
                // SAFETY: the masked lanes are outputs o.. of this row.
                unsafe { _mm512_mask_storeu_ps(row.as_mut_ptr().add(o), mask, v) };
                (lo, hi, even) = (next_lo, next_hi, next_even);
                c += 32;
            }
        }
    }

    /// Values of the row buffer [`plane`] needs for `wd`-wide input rows:
    /// the left padding, the row, and room for every load of the column
    /// pass (at most two vectors past the last output's window).
    pub(super) fn row_len(g: &Window2d, wd: usize) -> usize {
        let left = g.pads[1].max(0) as usize;
        let span = g.strides[1].max(1) as usize * g.output[1] + g.kernel[1];
        (left + wd).max(span).div_ceil(16) * 16 + 48
    }

    /// One plane `xp` (`h x wd`) pooled into `out` (`oh x ow`).
    ///
    /// # Safety
    /// The CPU must have AVX-512F ([`fits`]), and `v` must hold
    /// [`row_len`] values, all -inf.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn plane(
        xp: &[f32],
        [h, wd]: [usize; 2],
        g: &Window2d,
        v: &mut [f32],
        out: &mut [f32],
    ) {
        let ([kh, kw], [oh, ow]) = (g.kernel, g.output);
        let left = g.pads[1].max(0) as usize;
        let stride2 = g.strides[1] == 2;
        let lowest = _mm512_set1_ps(f32::NEG_INFINITY);
        let mask = crate::kernel::first_lanes;
        let evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        debug_assert!(v.len() >= row_len(g, wd) && out.len() >= oh * ow && xp.len() >= h * wd);
        let vp = v.as_mut_ptr();
        let mut rows = [0usize; MAX_ROWS];
        for oy in 0..oh {
            // The window's input rows (their starts in `xp`), found once.
            let mut n = 0;
            for ky in 0..kh {
                if let Some(iy) = g.input_row(oy, ky, h) {
                    rows[n] = iy * wd;
                    n += 1;
                }
            }
            let rows = &rows[..n];
            // Rows: v[left + c] = max over the window's rows of x[iy][c];
            // the lanes past the row's end load -inf, and so store it
            // (v keeps -inf outside the row).
            for c in (0..wd).step_by(16) {
                let m = mask(wd - c);
                let mut acc = lowest;
                for &at in rows {
                    // SAFETY: lanes past `wd - c` are masked off (not
                    // read); the others lie in one row of `xp`.
                    let x = unsafe { _mm512_mask_loadu_ps(lowest, m, xp.as_ptr().add(at + c)) };
                    acc = _mm512_max_ps(x, acc);
                }
                // SAFETY: left + c + 16 <= row_len (rounded up past left + wd).
                unsafe { _mm512_storeu_ps(vp.add(left + c), acc) };
            }
            // Columns: output ox reads v[ox * stride + kx].
            // SAFETY: row `oy` of `out` starts within it.
            let row = unsafe { out.as_mut_ptr().add(oy * ow) };
            for o in (0..ow).step_by(16) {
                let mut acc = lowest;
                for kx in 0..kw {
                    // SAFETY: the furthest load ends at
                    // 2 * (ow - 1) + kw + 31 < row_len.
                    let x = unsafe {
                        if stride2 {
                            let at = vp.add(2 * o + kx);
                            let (a, b) = (_mm512_loadu_ps(at), _mm512_loadu_ps(at.add(16)));
                            _mm512_permutex2var_ps(a, evens, b)
                        } else {
                            _mm512_loadu_ps(vp.add(o + kx))
                        }
                    };
                    acc = _mm512_max_ps(x, acc);
                }
                // SAFETY: lanes past the row's `ow` outputs are masked off.
                unsafe { _mm512_mask_storeu_ps(row.add(o), mask(ow - o), acc) };
            }
        }
    }
}

impl Pool {
    /// The pooled values, and the indices when the node asked for them.
    fn run<T: Real>(&self, x: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        let xs = x.shape();
        if xs.len() < 3 {
            return Err(Error::invalid(format!(
                "X must be N x C x spatial..., got {xs:?}"
            )));
        }
        let spatial = &xs[2..];
        let win = self.attrs.resolve(spatial, None)?;
        let planes = xs[0] * xs[1];
        // One window over the whole unpadded input (a network's final
        // pooling): the global kernel.
        let whole = win.kernel == spatial
            && win.output.iter().all(|&o| o == 1)
            && win.pads_begin.iter().chain(&win.pads_end).all(|&p| p == 0);
        let global_kind = match self.kind {
            Kind::Max { indices: false, .. } => Some(Global::Max),
            Kind::Average { .. } => Some(Global::Average),
            _ => None,
        };
        if let (true, Some(kind)) = (whole, global_kind) {
            return Ok((global::<T>(x, kind)?, None));
        }
        if let (Kind::Max { indices: false, .. }, [h, w]) = (&self.kind, spatial) {
            let mut shape = xs[..2].to_vec();
            shape.extend(&win.output);
            let y = max_pool_2d(x.as_slice::<T>()?, planes, [*h, *w], &win)?;
            return Ok((Tensor::from_vec(shape, y)?, None));
        }
        let in_len: usize = spatial.iter().product();
        let out_len: usize = win.output.iter().product();
        let k_len: usize = win.kernel.iter().product();
        let tap = taps(&win, spatial);
        let xd = x.as_slice::<T>()?;
        let mut y = Vec::with_capacity(planes * out_len);
        let mut indices = Vec::new();
        for p in 0..planes {
            let plane = &xd[p * in_len..][..in_len];
            for o in 0..out_len {
                let window = &tap[o * k_len..][..k_len];
                match self.kind {
                    Kind::Max {
                        column_major: cm,
                        indices: want,
                    } => {
                        let mut best = T::neg_infinity();
                        let mut at = None;
                        for &t in window.iter().filter(|&&t| t >= 0) {
                            let v = plane[t as usize];
                            if at.is_none() || v > best {
                                best = v;
                                at = Some(t as usize);
                            }
                        }
                        y.push(best);
                        if want {
                            let at = at.unwrap_or(0);
                            let local = if cm { column_major(at, spatial) } else { at };
                            indices.push((p * in_len + local) as i64);
                        }
                    }
                    Kind::Average { count_include_pad } => {
                        let mut sum = T::zero();
                        let mut count = 0usize;
                        for &t in window {
                            if t >= 0 {
                                sum = sum + plane[t as usize];
                                count += 1;
                            } else if count_include_pad && t != OUTSIDE {
                                count += 1;
                            }
                        }
                        let div: T = cast_f32(count.max(1) as f32)?;
                        y.push(sum / div);
                    }
                    Kind::Lp { p } => {
                        let pt: T = cast_f32(p)?;
                        let sum = window
                            .iter()
                            .filter(|&&t| t >= 0)
                            .fold(T::zero(), |a, &t| a + plane[t as usize].abs().powf(pt));
                        y.push(sum.powf(T::one() / pt));
                    }
                }
            }
        }
        let mut shape = xs[..2].to_vec();
        shape.extend(&win.output);
        let idx = match self.kind {
            Kind::Max { indices: true, .. } => Some(Tensor::from_vec(shape.clone(), indices)?),
            _ => None,
        };
        Ok((Tensor::from_vec(shape, y)?, idx))
    }
}

impl Kernel for Pool {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        if matches!(self.kind, Kind::Max { .. }) && matches!(x.dtype(), D::I8 | D::U8) {
            // 8-bit MaxPool: exact through f64, cast back.
            let (y, idx) = self.run::<f64>(&cast(x, D::F64)?)?;
            return Ok(std::iter::once(cast(&y, x.dtype())?).chain(idx).collect());
        }
        let (y, idx) = with_float_type!(x.dtype(), T => self.run::<T>(x)?,
            _ => return Err(unsupported_type("pooling", x)));
        Ok(std::iter::once(y).chain(idx).collect())
    }
}

fn create(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let kind = match node.op_type.as_str() {
        "MaxPool" => Kind::Max {
            column_major: node.int_or("storage_order", 0)? != 0,
            indices: node.outputs.get(1).is_some_and(|o| !o.is_empty()),
        },
        "LpPool" => Kind::Lp { p: lp_order(node)? },
        _ => Kind::Average {
            count_include_pad: node.int_or("count_include_pad", 0)? != 0,
        },
    };
    Ok(Box::new(Pool {
        attrs: WindowAttrs::from_node(node)?,
        kind,
    }))
}

/// MaxUnpool: each value written back to the position its index names in
/// the un-pooled tensor (zeros elsewhere), optionally placed into a larger
/// `output_shape`.
struct MaxUnpool {
    kernel: Vec<i64>,
    pads: Option<Vec<i64>>,
    strides: Option<Vec<i64>>,
}

impl Kernel for MaxUnpool {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let (x, idx) = (required(inputs, 0)?, required(inputs, 1)?);
        let xs = x.shape();
        let n = self.kernel.len();
        if xs.len() != n + 2 || idx.shape() != xs {
            return Err(Error::invalid(format!(
                "X {xs:?} and indices {:?} must match a {n}-D kernel",
                idx.shape()
            )));
        }
        let pads = self.pads.clone().unwrap_or_else(|| vec![0; 2 * n]);
        let strides = self.strides.clone().unwrap_or_else(|| vec![1; n]);
        let mut inferred = xs[..2].to_vec();
        for d in 0..n {
            let size = (xs[d + 2] as i64 - 1) * strides[d] - pads[d] - pads[d + n] + self.kernel[d];
            inferred.push(
                usize::try_from(size)
                    .map_err(|_| Error::invalid(format!("unpooled size {size} is negative")))?,
            );
        }
        let out: Vec<usize> = match crate::kernel::optional(inputs, 2) {
            Some(t) => crate::kernel::read_ints(t, "output_shape")?
                .iter()
                .map(|&v| {
                    usize::try_from(v)
                        .map_err(|_| Error::invalid("output_shape has a negative size"))
                })
                .collect::<Result<_>>()?,
            None => inferred.clone(),
        };
        if out.len() != inferred.len() || out.iter().zip(&inferred).any(|(o, i)| o < i) {
            return Err(Error::invalid(format!(
                "output_shape {out:?} is smaller than the unpooled shape {inferred:?}"
            )));
        }
        crate::kernel::ensure_allocatable(&out, "MaxUnpool output")?;
        let total: usize = inferred.iter().product();
        let values = x
            .to_f64_vec()
            .ok_or_else(|| unsupported_type("MaxUnpool", x))?;
        let mut y = vec![0.0f64; total];
        for (&v, &i) in values
            .iter()
            .zip(&crate::kernel::read_ints(idx, "indices")?)
        {
            let at = usize::try_from(i)
                .ok()
                .filter(|&a| a < total)
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "index {i} is outside the {total} unpooled elements"
                    ))
                })?;
            y[at] = v;
        }
        let sel: Vec<Vec<usize>> = out
            .iter()
            .zip(&inferred)
            .map(|(&o, &i)| {
                (0..o)
                    .map(|k| if k < i { k } else { crate::broadcast::OUTSIDE })
                    .collect()
            })
            .collect();
        let y = Tensor::from_vec(inferred.clone(), y)?;
        let placed = crate::kernel::gather_fill(
            &y,
            out,
            crate::broadcast::select_index(&inferred, &sel),
            &Tensor::from_vec(vec![1], vec![0.0f64])?,
        )?;
        Ok(vec![cast(&placed, x.dtype())?])
    }
}

fn create_unpool(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let ints =
        |name: &str| -> Result<Option<Vec<i64>>> { Ok(node.get_ints(name)?.map(<[i64]>::to_vec)) };
    Ok(Box::new(MaxUnpool {
        kernel: ints("kernel_shape")?
            .ok_or_else(|| Error::invalid("attribute 'kernel_shape' is required"))?,
        pads: ints("pads")?,
        strides: ints("strides")?,
    }))
}

/// LpPool's `p` (an integer attribute; 2 by default).
fn lp_order(node: &Node) -> Result<f32> {
    let p = node.int_or("p", 2)?;
    if p < 1 {
        return Err(Error::invalid(format!("p must be at least 1, got {p}")));
    }
    Ok(p as f32)
}

/// Global pooling: one value per (image, channel) plane.
#[derive(Clone, Copy)]
enum Global {
    Average,
    Max,
    Lp(f32),
}

fn global<T: Real>(x: &Tensor, kind: Global) -> Result<Tensor> {
    let xs = x.shape();
    if xs.len() < 2 {
        return Err(Error::invalid(format!(
            "X must be N x C x spatial..., got {xs:?}"
        )));
    }
    let in_len: usize = xs[2..].iter().product();
    let xd = x.as_slice::<T>()?;
    let n: T = cast_f32(in_len.max(1) as f32)?;
    let pool = |plane: &[T]| match kind {
        Global::Max => Ok(lanes(plane, T::neg_infinity(), T::max)),
        Global::Average => Ok(lanes(plane, T::zero(), |a, b| a + b) / n),
        Global::Lp(p) => {
            let pt: T = cast_f32(p)?;
            let sum = plane.iter().fold(T::zero(), |a, &b| a + b.abs().powf(pt));
            Ok(sum.powf(T::one() / pt))
        }
    };
    let mut shape = xs[..2].to_vec();
    shape.extend(std::iter::repeat_n(1, xs.len() - 2));
    if let (Global::Average, Some(x32)) = (kind, crate::kernel::as_type::<T, f32>(xd)) {
        if let Some(mut sums) = plane_sums_f32(x32, in_len, xs[0] * xs[1]) {
            let inv = 1.0 / in_len.max(1) as f32;
            sums.iter_mut().for_each(|v| *v *= inv);
            return Tensor::from_vec(shape, sums);
        }
    }
    let planes = xd.chunks(in_len.max(1)).take(xs[0] * xs[1]);
    let y: Vec<T> = if xd.len() >= 1 << 16 {
        use rayon::prelude::*;
        planes
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(pool)
            .collect::<Result<_>>()?
    } else {
        planes.map(pool).collect::<Result<_>>()?
    };
    Tensor::from_vec(shape, y)
}

/// The sum of each of `planes` runs of `len` f32 values of `x`, with
/// AVX-512 (four 16-lane partial sums, one reduction per plane), planes
/// in parallel when large; `None` where the CPU has no AVX-512F. The
/// generic fold reduces 16 scalar partial sums per plane, which for
/// MobileNet's 1024 planes of 7x7 took 40 us.
fn plane_sums_f32(x: &[f32], len: usize, planes: usize) -> Option<Vec<f32>> {
    if !crate::kernel::has_avx512f() || len == 0 || x.len() < len * planes {
        return None;
    }
    let mut out = vec![0.0f32; planes];
    #[cfg(target_arch = "x86_64")]
    {
        use rayon::prelude::*;
        let x = &x[..len * planes];
        // SAFETY: has_avx512f() checked above.
        let sums = |(o, p): (&mut [f32], &[f32])| unsafe { avx512::plane_sums(p, len, o) };
        // About 64K values per task.
        let per = (1usize << 16).div_ceil(len).max(1);
        if planes * len >= 1 << 17 {
            out.par_chunks_mut(per)
                .zip(x.par_chunks(per * len))
                .for_each(sums);
        } else {
            sums((&mut out, x));
        }
    }
    Some(out)
}

/// `v` folded by `f` in 16 interleaved partial results, then those
/// together: one running result would chain every step on the last (and
/// not vectorize, float addition not being associative).
fn lanes<T: Real>(v: &[T], init: T, f: impl Fn(T, T) -> T) -> T {
    let mut acc = [init; 16];
    let mut chunks = v.chunks_exact(16);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = f(*a, x);
        }
    }
    let rest = chunks.remainder().iter().fold(init, |a, &x| f(a, x));
    acc.into_iter().fold(rest, &f)
}

impl Kernel for Global {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        with_float_type!(x.dtype(), T => Ok(vec![global::<T>(x, *self)?]),
            _ => Err(unsupported_type("global pooling", x)))
    }
}

fn create_global(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(match node.op_type.as_str() {
        "GlobalMaxPool" => Global::Max,
        "GlobalLpPool" => Global::Lp(lp_order(node)?),
        _ => Global::Average,
    }))
}

/// Registers the pooling operators.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new("MaxPool", 1.., FLOATS, create));
    reg.add(KernelDef::new("MaxPool", 12.., &[D::I8, D::U8], create));
    reg.add(KernelDef::new("MaxUnpool", 9.., FLOATS, create_unpool));
    reg.add(KernelDef::new("AveragePool", 1.., FLOATS, create));
    reg.add(KernelDef::new(
        "GlobalAveragePool",
        1..,
        FLOATS,
        create_global,
    ));
    reg.add(KernelDef::new("GlobalMaxPool", 1.., FLOATS, create_global));
    reg.add(KernelDef::new("LpPool", 11.., FLOATS, create));
    reg.add(KernelDef::new("GlobalLpPool", 2.., FLOATS, create_global));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use oxrt_core::shape::AutoPad;

    use super::*;

    fn attrs(k: &[usize], s: &[usize], pads: &[usize], ceil: bool) -> WindowAttrs {
        WindowAttrs {
            kernel_shape: Some(k.to_vec()),
            strides: Some(s.to_vec()),
            dilations: None,
            pads: Some(pads.to_vec()),
            auto_pad: AutoPad::NotSet,
            ceil_mode: ceil,
        }
    }

    #[test]
    fn the_2d_max_pool_path_matches_the_general_one() {
        // Even and odd widths (the stride-2 column halves differ in length).
        // Rows past one and two 16-lane vectors (55: SqueezeNet's), and
        // one past a vector.
        let shapes = [
            vec![2, 3, 7, 6],
            vec![1, 2, 6, 9],
            vec![1, 2, 9, 55],
            vec![1, 1, 5, 33],
            vec![1, 1, 5, 17],
            // The 3x3 stride-2 path's rows of several 32-column steps:
            // SqueezeNet's 111 (no padding) and ResNet's 112 (padding 1).
            vec![1, 2, 7, 111],
            vec![1, 1, 6, 112],
        ];
        for shape in shapes {
            let n: usize = shape.iter().product();
            let values = (0..n).map(|v| ((v * 37) % 101) as f32 - 50.0);
            let x = Tensor::from_vec(shape, values.collect()).unwrap();
            max_pool_paths_agree(&x);
        }
    }

    fn max_pool_paths_agree(x: &Tensor) {
        // (kernel, strides, pads, ceil, dilations)
        type Case<'a> = (
            &'a [usize],
            &'a [usize],
            &'a [usize],
            bool,
            Option<Vec<usize>>,
        );
        let cases: [Case<'_>; 10] = [
            (&[3, 3], &[2, 2], &[1, 1, 1, 1], false, None),
            (&[3, 3], &[2, 2], &[0, 0, 0, 0], false, None),
            (&[3, 3], &[2, 2], &[0, 1, 1, 0], true, None),
            // Edge windows wholly in the padding: -inf on both paths.
            (&[3, 3], &[2, 2], &[3, 3, 3, 3], true, None),
            (&[3, 3], &[2, 2], &[0, 2, 0, 2], false, None),
            (&[3, 3], &[2, 2], &[2, 3, 2, 2], true, Some(vec![1, 2])),
            (&[2, 2], &[2, 2], &[0, 0, 0, 0], false, None),
            (&[2, 3], &[1, 2], &[0, 1, 1, 0], true, None),
            (&[3, 2], &[2, 1], &[0, 0, 0, 0], false, Some(vec![2, 2])),
            (&[1, 1], &[1, 1], &[0, 0, 0, 0], false, None),
        ];
        for (k, st, pads, ceil, dil) in cases {
            let mut a = attrs(k, st, pads, ceil);
            a.dilations = dil;
            let run = |indices: bool| {
                Pool {
                    attrs: a.clone(),
                    kind: Kind::Max {
                        column_major: false,
                        indices,
                    },
                }
                .run::<f32>(x)
                .unwrap()
                .0
            };
            assert_eq!(
                run(false),
                run(true),
                "kernel {k:?} strides {st:?} pads {pads:?}"
            );
        }
    }

    #[test]
    fn max_pool_with_indices() {
        let x = Tensor::from_vec(
            vec![1, 1, 4, 4],
            (0..16).map(|v| ((v * 7) % 16) as f32).collect(),
        )
        .unwrap();
        let pool = Pool {
            attrs: attrs(&[2, 2], &[2, 2], &[0, 0, 0, 0], false),
            kind: Kind::Max {
                column_major: false,
                indices: true,
            },
        };
        let (y, idx) = pool.run::<f32>(&x).unwrap();
        // x = [0,7,14,5 / 12,3,10,1 / 8,15,6,13 / 4,11,2,9]
        assert_eq!(y.as_slice::<f32>().unwrap(), &[12.0, 14.0, 15.0, 13.0]);
        assert_eq!(idx.unwrap().as_slice::<i64>().unwrap(), &[4, 2, 9, 11]);
    }

    #[test]
    fn a_window_over_the_whole_input_pools_globally() {
        let v: Vec<f32> = (0..2 * 3 * 7 * 7)
            .map(|i| ((i * 37) % 101) as f32)
            .collect();
        let x = Tensor::from_vec(vec![2, 3, 7, 7], v.clone()).unwrap();
        let pool = |kind| Pool {
            attrs: attrs(&[7, 7], &[1, 1], &[0, 0, 0, 0], false),
            kind,
        };
        let avg = pool(Kind::Average {
            count_include_pad: false,
        });
        let max = pool(Kind::Max {
            column_major: false,
            indices: false,
        });
        let (a, _) = avg.run::<f32>(&x).unwrap();
        let (m, _) = max.run::<f32>(&x).unwrap();
        assert_eq!(a.shape(), &[2, 3, 1, 1]);
        assert_eq!(m.shape(), &[2, 3, 1, 1]);
        for (p, plane) in v.chunks(49).enumerate() {
            let mean = plane.iter().sum::<f32>() / 49.0;
            assert!((a.as_slice::<f32>().unwrap()[p] - mean).abs() < 1e-4);
            assert_eq!(
                m.as_slice::<f32>().unwrap()[p],
                plane.iter().copied().fold(0.0, f32::max)
            );
        }
        // With indices, the general path still gives them.
        let with_indices = pool(Kind::Max {
            column_major: false,
            indices: true,
        });
        let (_, i) = with_indices.run::<f32>(&x).unwrap();
        assert_eq!(i.unwrap().shape(), &[2, 3, 1, 1]);
    }

    #[test]
    fn average_pool_pad_counting() {
        let x = Tensor::from_vec(vec![1, 1, 2, 2], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
        let excl = Pool {
            attrs: attrs(&[2, 2], &[1, 1], &[1, 1, 0, 0], false),
            kind: Kind::Average {
                count_include_pad: false,
            },
        };
        let (y, _) = excl.run::<f32>(&x).unwrap();
        assert_eq!(y.as_slice::<f32>().unwrap(), &[1.0, 1.5, 2.0, 2.5]);
        let incl = Pool {
            attrs: attrs(&[2, 2], &[1, 1], &[1, 1, 0, 0], false),
            kind: Kind::Average {
                count_include_pad: true,
            },
        };
        let (y, _) = incl.run::<f32>(&x).unwrap();
        assert_eq!(y.as_slice::<f32>().unwrap(), &[0.25, 0.75, 1.0, 2.5]);
    }

    #[test]
    fn global_average() {
        let x = Tensor::from_vec(vec![1, 2, 2, 1], vec![1.0f32, 3.0, 10.0, 20.0]).unwrap();
        let y = global::<f32>(&x, Global::Average).unwrap();
        assert_eq!(y.shape(), &[1, 2, 1, 1]);
        assert_eq!(y.as_slice::<f32>().unwrap(), &[2.0, 15.0]);
        let y = global::<f32>(&x, Global::Lp(2.0)).unwrap();
        assert!((y.as_slice::<f32>().unwrap()[0] - 10f32.sqrt()).abs() < 1e-6);
        // Planes of 169 (whole 64-value steps and a tail), 49 (a 7x7 map:
        // tails only), 64, 1 and 130; 3000 planes of 49 are enough to be
        // pooled in parallel; against f64 sums and maxima.
        for (planes, [h, w]) in [
            (400, [13, 13]),
            (3000, [7, 7]),
            (6, [8, 8]),
            (6, [1, 1]),
            (4, [10, 13]),
        ] {
            let len = h * w;
            let v: Vec<f32> = (0..planes * len)
                .map(|i| ((i * 7919) % 1001) as f32 / 100.0 - 5.0)
                .collect();
            let x = Tensor::from_vec(vec![2, planes / 2, h, w], v.clone()).unwrap();
            let avg = global::<f32>(&x, Global::Average).unwrap();
            let max = global::<f32>(&x, Global::Max).unwrap();
            assert_eq!(avg.shape(), &[2, planes / 2, 1, 1]);
            for (p, plane) in v.chunks(len).enumerate() {
                let mean = plane.iter().map(|&a| a as f64).sum::<f64>() / len as f64;
                let top = plane.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let got = avg.as_slice::<f32>().unwrap()[p] as f64;
                assert!(
                    (got - mean).abs() < 1e-5,
                    "{planes} x {len} plane {p}: {got} vs {mean}"
                );
                assert_eq!(max.as_slice::<f32>().unwrap()[p], top);
            }
        }
    }

    #[test]
    fn max_unpool_scatters_back() {
        let x = Tensor::from_vec(vec![1, 1, 1, 2], vec![5.0f32, 7.0]).unwrap();
        let i = Tensor::from_vec(vec![1, 1, 1, 2], vec![1i64, 2]).unwrap();
        let k = MaxUnpool {
            kernel: vec![1, 2],
            pads: None,
            strides: Some(vec![1, 2]),
        };
        let y = k.compute(&[Some(&x), Some(&i)]).unwrap();
        assert_eq!(y[0].shape(), &[1, 1, 1, 4]);
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[0.0, 5.0, 7.0, 0.0]);
        let bad = Tensor::from_vec(vec![1, 1, 1, 2], vec![1i64, 9]).unwrap();
        assert!(k.compute(&[Some(&x), Some(&bad)]).is_err());
    }

    #[test]
    fn max_pool_on_bytes() {
        let x = Tensor::from_vec(vec![1, 1, 1, 3], vec![3u8, 250, 7]).unwrap();
        let k = Pool {
            attrs: attrs(&[1, 2], &[1, 1], &[0, 0, 0, 0], false),
            kind: Kind::Max {
                column_major: false,
                indices: false,
            },
        };
        let y = k.compute(&[Some(&x)]).unwrap();
        assert_eq!(y[0].as_slice::<u8>().unwrap(), &[250, 250]);
    }

    #[test]
    fn lp_pool_ignores_padding() {
        let x = Tensor::from_vec(vec![1, 1, 1, 2], vec![3.0f32, -4.0]).unwrap();
        let lp = Pool {
            attrs: attrs(&[1, 2], &[1, 1], &[0, 1, 0, 0], false),
            kind: Kind::Lp { p: 2.0 },
        };
        let (y, _) = lp.run::<f32>(&x).unwrap();
        // Windows [pad, 3] and [3, -4].
        assert_eq!(y.as_slice::<f32>().unwrap(), &[3.0, 5.0]);
    }
}

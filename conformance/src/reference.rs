//! Plain reference implementations, written for clarity rather than speed,
//! on `f64` values in row-major order. Property tests compare kernels
//! against them.

/// Row-major strides of `shape`.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

/// The multi-index of flat position `flat` in `shape`.
pub fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        idx[d] = flat % shape[d];
        flat /= shape[d];
    }
    idx
}

/// numpy broadcasting of two shapes, `None` if incompatible.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let r = a.len().max(b.len());
    (0..r)
        .map(|i| {
            let da = if i + a.len() >= r {
                a[i + a.len() - r]
            } else {
                1
            };
            let db = if i + b.len() >= r {
                b[i + b.len() - r]
            } else {
                1
            };
            match (da, db) {
                (x, y) if x == y => Some(x),
                (1, y) => Some(y),
                (x, 1) => Some(x),
                _ => None,
            }
        })
        .collect()
}

/// Flat index into `shape` read by output multi-index `out` under broadcasting.
fn broadcast_index(shape: &[usize], out: &[usize]) -> usize {
    let off = out.len() - shape.len();
    shape.iter().enumerate().fold(0, |acc, (d, &n)| {
        acc * n + if n == 1 { 0 } else { out[off + d] }
    })
}

/// Elementwise `f(a, b)` with numpy broadcasting.
pub fn binary(
    a: &[f64],
    sa: &[usize],
    b: &[f64],
    sb: &[usize],
    f: impl Fn(f64, f64) -> f64,
) -> Option<(Vec<usize>, Vec<f64>)> {
    let out = broadcast_shape(sa, sb)?;
    let n = out.iter().product();
    let v = (0..n)
        .map(|i| {
            let idx = unravel(i, &out);
            f(a[broadcast_index(sa, &idx)], b[broadcast_index(sb, &idx)])
        })
        .collect();
    Some((out, v))
}

/// `(m x k) @ (k x n)`, both row-major.
pub fn matmul2d(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
        }
    }
    c
}

/// ONNX Gemm: `alpha * A' @ B' + beta * C` with C broadcast to `[m, n]`.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    a: &[f64],
    sa: [usize; 2],
    b: &[f64],
    sb: [usize; 2],
    c: Option<(&[f64], &[usize])>,
    alpha: f64,
    beta: f64,
    trans_a: bool,
    trans_b: bool,
) -> Vec<f64> {
    let at = |i: usize, p: usize| {
        if trans_a {
            a[p * sa[1] + i]
        } else {
            a[i * sa[1] + p]
        }
    };
    let bt = |p: usize, j: usize| {
        if trans_b {
            b[j * sb[1] + p]
        } else {
            b[p * sb[1] + j]
        }
    };
    let (m, k) = if trans_a {
        (sa[1], sa[0])
    } else {
        (sa[0], sa[1])
    };
    let n = if trans_b { sb[0] } else { sb[1] };
    let mut y = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let dot: f64 = (0..k).map(|p| at(i, p) * bt(p, j)).sum();
            let cv = c.map_or(0.0, |(c, sc)| c[broadcast_index(sc, &[i, j])]);
            y[i * n + j] = alpha * dot + beta * cv;
        }
    }
    y
}

/// 2-D convolution, NCHW, with groups, pads `[top, left, bottom, right]`,
/// strides and dilations. Returns the output shape and values.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    x: &[f64],
    xs: [usize; 4],
    w: &[f64],
    ws: [usize; 4],
    bias: Option<&[f64]>,
    pads: [usize; 4],
    strides: [usize; 2],
    dil: [usize; 2],
    group: usize,
) -> ([usize; 4], Vec<f64>) {
    let [n, c, h, wd] = xs;
    let [m, cg, kh, kw] = ws;
    let oh = (h + pads[0] + pads[2] - (dil[0] * (kh - 1) + 1)) / strides[0] + 1;
    let ow = (wd + pads[1] + pads[3] - (dil[1] * (kw - 1) + 1)) / strides[1] + 1;
    let mg = m / group;
    let mut y = vec![0.0; n * m * oh * ow];
    for b in 0..n {
        for oc in 0..m {
            let g = oc / mg;
            for i in 0..oh {
                for j in 0..ow {
                    let mut acc = bias.map_or(0.0, |bb| bb[oc]);
                    for ic in 0..cg {
                        let ch = g * cg + ic;
                        for p in 0..kh {
                            for q in 0..kw {
                                let yy = (i * strides[0] + p * dil[0]) as isize - pads[0] as isize;
                                let xx = (j * strides[1] + q * dil[1]) as isize - pads[1] as isize;
                                if yy >= 0 && xx >= 0 && (yy as usize) < h && (xx as usize) < wd {
                                    acc += x[((b * c + ch) * h + yy as usize) * wd + xx as usize]
                                        * w[((oc * cg + ic) * kh + p) * kw + q];
                                }
                            }
                        }
                    }
                    y[((b * m + oc) * oh + i) * ow + j] = acc;
                }
            }
        }
    }
    ([n, m, oh, ow], y)
}

/// 2-D max or average pooling (floor mode), NCHW.
pub fn pool2d(
    x: &[f64],
    xs: [usize; 4],
    k: [usize; 2],
    strides: [usize; 2],
    pads: [usize; 4],
    max: bool,
    count_include_pad: bool,
) -> ([usize; 4], Vec<f64>) {
    let [n, c, h, w] = xs;
    let oh = (h + pads[0] + pads[2] - k[0]) / strides[0] + 1;
    let ow = (w + pads[1] + pads[3] - k[1]) / strides[1] + 1;
    let mut y = Vec::with_capacity(n * c * oh * ow);
    for plane in 0..n * c {
        for i in 0..oh {
            for j in 0..ow {
                let (mut best, mut sum, mut count) = (f64::NEG_INFINITY, 0.0, 0usize);
                for p in 0..k[0] {
                    for q in 0..k[1] {
                        let yy = (i * strides[0] + p) as isize - pads[0] as isize;
                        let xx = (j * strides[1] + q) as isize - pads[1] as isize;
                        if yy >= 0 && xx >= 0 && (yy as usize) < h && (xx as usize) < w {
                            let v = x[(plane * h + yy as usize) * w + xx as usize];
                            best = best.max(v);
                            sum += v;
                            count += 1;
                        } else if count_include_pad {
                            count += 1;
                        }
                    }
                }
                y.push(if max { best } else { sum / count as f64 });
            }
        }
    }
    ([n, c, oh, ow], y)
}

/// Softmax along `axis` (opset 13 semantics).
pub fn softmax(x: &[f64], shape: &[usize], axis: usize, log: bool) -> Vec<f64> {
    let st = strides(shape);
    let mut y = vec![0.0; x.len()];
    for (i, yv) in y.iter_mut().enumerate() {
        let idx = unravel(i, shape);
        let base = i - idx[axis] * st[axis];
        let lane: Vec<f64> = (0..shape[axis]).map(|k| x[base + k * st[axis]]).collect();
        let max = lane.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = lane.iter().map(|v| (v - max).exp()).sum();
        *yv = if log {
            x[i] - max - sum.ln()
        } else {
            (x[i] - max).exp() / sum
        };
    }
    y
}

/// Transpose by `perm`.
pub fn transpose(x: &[f64], shape: &[usize], perm: &[usize]) -> (Vec<usize>, Vec<f64>) {
    let out: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let st = strides(shape);
    let n = out.iter().product();
    let v = (0..n)
        .map(|i| {
            let idx = unravel(i, &out);
            x[perm
                .iter()
                .enumerate()
                .map(|(d, &p)| idx[d] * st[p])
                .sum::<usize>()]
        })
        .collect();
    (out, v)
}

/// Concatenation along `axis`.
pub fn concat(parts: &[(Vec<f64>, Vec<usize>)], axis: usize) -> (Vec<usize>, Vec<f64>) {
    let mut out = parts[0].1.clone();
    out[axis] = parts.iter().map(|p| p.1[axis]).sum();
    let n = out.iter().product();
    let v = (0..n)
        .map(|i| {
            let mut idx = unravel(i, &out);
            let mut part = 0;
            while idx[axis] >= parts[part].1[axis] {
                idx[axis] -= parts[part].1[axis];
                part += 1;
            }
            let st = strides(&parts[part].1);
            parts[part].0[idx.iter().zip(&st).map(|(a, b)| a * b).sum::<usize>()]
        })
        .collect();
    (out, v)
}

/// Gather along `axis` with (already non-negative) indices.
pub fn gather(
    data: &[f64],
    ds: &[usize],
    indices: &[usize],
    is: &[usize],
    axis: usize,
) -> (Vec<usize>, Vec<f64>) {
    let mut out = ds[..axis].to_vec();
    out.extend(is);
    out.extend(&ds[axis + 1..]);
    let st = strides(ds);
    let n = out.iter().product();
    let v = (0..n)
        .map(|i| {
            let idx = unravel(i, &out);
            let ir = is.len();
            let ipos = idx[axis..axis + ir]
                .iter()
                .zip(strides(is))
                .map(|(a, b)| a * b)
                .sum::<usize>();
            let mut src = 0;
            for d in 0..axis {
                src += idx[d] * st[d];
            }
            src += indices[ipos] * st[axis];
            for d in axis + 1..ds.len() {
                src += idx[d - 1 + ir] * st[d];
            }
            data[src]
        })
        .collect();
    (out, v)
}

/// Reduces `axes` of `x` (all axes when empty) with `fold` from `init`,
/// then maps each result with `finish(acc, count)`; keeps reduced axes as
/// size 1 when `keepdims`.
pub fn reduce(
    x: &[f64],
    shape: &[usize],
    axes: &[usize],
    keepdims: bool,
    init: f64,
    fold: impl Fn(f64, f64) -> f64,
    finish: impl Fn(f64, usize) -> f64,
) -> (Vec<usize>, Vec<f64>) {
    let reduced = |d: usize| axes.is_empty() || axes.contains(&d);
    let kept: Vec<usize> = (0..shape.len())
        .map(|d| if reduced(d) { 1 } else { shape[d] })
        .collect();
    let count: usize = (0..shape.len())
        .filter(|&d| reduced(d))
        .map(|d| shape[d])
        .product();
    let mut acc = vec![init; kept.iter().product()];
    let ks = strides(&kept);
    for (i, &v) in x.iter().enumerate() {
        let idx = unravel(i, shape);
        let o: usize = (0..shape.len())
            .map(|d| if reduced(d) { 0 } else { idx[d] * ks[d] })
            .sum();
        acc[o] = fold(acc[o], v);
    }
    let out_shape = if keepdims {
        kept
    } else {
        (0..shape.len())
            .filter(|&d| !reduced(d))
            .map(|d| shape[d])
            .collect()
    };
    (
        out_shape,
        acc.into_iter().map(|a| finish(a, count)).collect(),
    )
}

/// numpy-style slicing: `ranges[d]` lists the positions kept on axis `d`.
pub fn select(x: &[f64], shape: &[usize], ranges: &[Vec<usize>]) -> (Vec<usize>, Vec<f64>) {
    let out: Vec<usize> = ranges.iter().map(Vec::len).collect();
    let st = strides(shape);
    let n = out.iter().product();
    let v = (0..n)
        .map(|i| {
            let idx = unravel(i, &out);
            x[(0..shape.len())
                .map(|d| ranges[d][idx[d]] * st[d])
                .sum::<usize>()]
        })
        .collect();
    (out, v)
}

/// Positions `start, start+step, ...` of a Python slice `[start:end:step]`
/// over an axis of size `dim` (numpy's clamping).
pub fn py_slice(dim: usize, start: i64, end: i64, step: i64) -> Vec<usize> {
    let d = dim as i64;
    let fix = |v: i64, lo: i64, hi: i64| {
        let v = if v < 0 { v + d } else { v };
        v.clamp(lo, hi)
    };
    let (s, e) = if step > 0 {
        (fix(start, 0, d), fix(end, 0, d))
    } else {
        (fix(start, -1, d - 1), fix(end, -1, d - 1))
    };
    let mut v = Vec::new();
    let mut p = s;
    while (step > 0 && p < e) || (step < 0 && p > e) {
        v.push(p as usize);
        p += step;
    }
    v
}

/// numpy.pad positions for one axis: `mode` is constant (None for padding),
/// edge, reflect or wrap.
pub fn pad_positions(dim: usize, before: usize, after: usize, mode: &str) -> Vec<Option<usize>> {
    let n = dim as i64;
    (0..(dim + before + after) as i64)
        .map(|k| {
            let mut p = k - before as i64;
            if (0..n).contains(&p) {
                return Some(p as usize);
            }
            match mode {
                "edge" => Some(p.clamp(0, n - 1) as usize),
                "wrap" => Some(p.rem_euclid(n) as usize),
                "reflect" if n == 1 => Some(0),
                "reflect" => {
                    // Bounce off the ends until inside.
                    while !(0..n).contains(&p) {
                        p = if p < 0 { -p } else { 2 * (n - 1) - p };
                    }
                    Some(p as usize)
                }
                _ => None,
            }
        })
        .collect()
}

/// Running sums along `axis`, optionally exclusive and/or reversed.
pub fn cumsum(x: &[f64], shape: &[usize], axis: usize, exclusive: bool, reverse: bool) -> Vec<f64> {
    let st = strides(shape);
    (0..x.len())
        .map(|i| {
            let idx = unravel(i, shape);
            let base = i - idx[axis] * st[axis];
            let pos = idx[axis];
            (0..shape[axis])
                .filter(|&j| match (reverse, exclusive) {
                    (false, false) => j <= pos,
                    (false, true) => j < pos,
                    (true, false) => j >= pos,
                    (true, true) => j > pos,
                })
                .map(|j| x[base + j * st[axis]])
                .sum()
        })
        .collect()
}

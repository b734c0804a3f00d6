//! Elementwise iteration with numpy broadcasting, and the strided index
//! helpers that dtype-generic kernels gather through.

use oxrt_core::shape::broadcast;
use oxrt_core::Result;

/// Strides of `shape` aligned to an output of rank `rank`, 0 on broadcast dims.
fn aligned_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let rank = out.len();
    let mut strides = vec![0; rank];
    let mut acc = 1;
    for i in (0..shape.len()).rev() {
        let o = rank - shape.len() + i;
        strides[o] = if shape[i] == 1 && out[o] != 1 { 0 } else { acc };
        acc *= shape[i];
    }
    strides
}

/// Row-major strides of `shape`.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

/// For every multi-index of `shape` in row-major order, the flat offset
/// `base + sum(index[d] * strides[d])` (strides may be negative, as for a
/// reversed slice; callers keep every offset in bounds).
pub fn offsets(shape: &[usize], strides: &[isize], base: usize) -> Vec<usize> {
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return out;
    }
    let rank = shape.len();
    let mut counter = vec![0usize; rank];
    let mut offset = base as isize;
    for _ in 0..n {
        out.push(offset as usize);
        for d in (0..rank).rev() {
            counter[d] += 1;
            offset += strides[d];
            if counter[d] < shape[d] {
                break;
            }
            offset -= strides[d] * counter[d] as isize;
            counter[d] = 0;
        }
    }
    out
}

/// For every element of `out` (row-major), the flat index of the element
/// of an input of `shape` that numpy broadcasting maps to it.
pub fn broadcast_index(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let s: Vec<isize> = aligned_strides(shape, out)
        .into_iter()
        .map(|v| v as isize)
        .collect();
    offsets(out, &s, 0)
}

/// Marks an output element that takes no input element (padding).
pub const OUTSIDE: usize = usize::MAX;

/// Flat input indices of an output whose axis `d` takes input positions
/// `sel[d]` (the output has shape `sel[d].len()` per axis). A position of
/// [`OUTSIDE`] on any axis makes the element [`OUTSIDE`].
pub fn select_index(in_shape: &[usize], sel: &[Vec<usize>]) -> Vec<usize> {
    let st = strides(in_shape);
    let mut flat = vec![0usize];
    for (d, axis_sel) in sel.iter().enumerate() {
        let mut next = Vec::with_capacity(flat.len() * axis_sel.len());
        for &base in &flat {
            for &p in axis_sel {
                next.push(if base == OUTSIDE || p == OUTSIDE {
                    OUTSIDE
                } else {
                    base + p * st[d]
                });
            }
        }
        flat = next;
    }
    flat
}

/// The numpy-broadcast shape of several shapes.
pub fn broadcast_all(shapes: &[&[usize]]) -> Result<Vec<usize>> {
    shapes
        .iter()
        .try_fold(Vec::new(), |acc, s| broadcast(&acc, s))
}

/// Applies `f` to broadcast pairs of `a` and `b`; returns the output shape
/// and values.
pub fn binary<A: Copy, B: Copy, O>(
    a: &[A],
    a_shape: &[usize],
    b: &[B],
    b_shape: &[usize],
    mut f: impl FnMut(A, B) -> Result<O>,
) -> Result<(Vec<usize>, Vec<O>)> {
    let out_shape = broadcast(a_shape, b_shape)?;
    let n: usize = out_shape.iter().product();
    let mut out = Vec::with_capacity(n);
    if a_shape == b_shape {
        for (&x, &y) in a.iter().zip(b) {
            out.push(f(x, y)?);
        }
        return Ok((out_shape, out));
    }
    if b.len() == 1 {
        for &x in a {
            out.push(f(x, b[0])?);
        }
        return Ok((out_shape, out));
    }
    if a.len() == 1 {
        for &y in b {
            out.push(f(a[0], y)?);
        }
        return Ok((out_shape, out));
    }
    if n == 0 {
        return Ok((out_shape, out));
    }
    let rank = out_shape.len();
    let sa = aligned_strides(a_shape, &out_shape);
    let sb = aligned_strides(b_shape, &out_shape);
    let inner = out_shape[rank - 1];
    let (ia, ib) = (sa[rank - 1], sb[rank - 1]);
    let mut idx = vec![0usize; rank];
    let (mut oa, mut ob) = (0usize, 0usize);
    for _ in 0..n / inner {
        for j in 0..inner {
            out.push(f(a[oa + j * ia], b[ob + j * ib])?);
        }
        // Advance the odometer over the outer dims.
        let mut d = rank - 1;
        while d > 0 {
            d -= 1;
            idx[d] += 1;
            oa += sa[d];
            ob += sb[d];
            if idx[d] < out_shape[d] {
                break;
            }
            oa -= sa[d] * idx[d];
            ob -= sb[d] * idx[d];
            idx[d] = 0;
        }
    }
    Ok((out_shape, out))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn broadcasts_like_numpy() {
        // [2,1,3] + [4,1] -> [2,4,3]
        let a: Vec<i32> = (0..6).collect();
        let b: Vec<i32> = vec![0, 10, 20, 30];
        let (shape, out) = binary(&a, &[2, 1, 3], &b, &[4, 1], |x, y| Ok(x + y)).unwrap();
        assert_eq!(shape, vec![2, 4, 3]);
        let mut expected = Vec::new();
        for i in 0..2 {
            for bj in &b {
                for k in 0..3 {
                    expected.push(a[i * 3 + k] + bj);
                }
            }
        }
        assert_eq!(out, expected);
    }

    #[test]
    fn middle_axis_broadcast() {
        // [2,3,2] * [3,1]
        let a: Vec<i32> = (0..12).collect();
        let b = vec![1, 2, 3];
        let (_, out) = binary(&a, &[2, 3, 2], &b, &[3, 1], |x, y| Ok(x * y)).unwrap();
        assert_eq!(out, vec![0, 1, 4, 6, 12, 15, 6, 7, 16, 18, 30, 33]);
    }

    /// Element of `shape` read by output multi-index `out_idx` (numpy rules).
    fn reference_index(shape: &[usize], out_idx: &[usize]) -> usize {
        let off = out_idx.len() - shape.len();
        shape.iter().enumerate().fold(0, |acc, (d, &n)| {
            acc * n + if n == 1 { 0 } else { out_idx[off + d] }
        })
    }

    proptest::proptest! {
        #[test]
        fn matches_reference_on_random_broadcastable_shapes(
            out in proptest::collection::vec(1usize..4, 0..5),
            mask_a in proptest::collection::vec(proptest::bool::ANY, 5),
            mask_b in proptest::collection::vec(proptest::bool::ANY, 5),
            drop_a in 0usize..3,
            drop_b in 0usize..3,
        ) {
            // Each operand: a suffix of `out` with some dims set to 1.
            let make = |mask: &[bool], drop: usize| -> Vec<usize> {
                let start = drop.min(out.len());
                out[start..].iter().enumerate().map(|(i, &d)| if mask[i] { 1 } else { d }).collect()
            };
            let (sa, sb) = (make(&mask_a, drop_a), make(&mask_b, drop_b));
            let a: Vec<i64> = (0..sa.iter().product::<usize>() as i64).collect();
            let b: Vec<i64> = (0..sb.iter().product::<usize>() as i64).map(|v| v * 1000).collect();
            let (shape, got) = binary(&a, &sa, &b, &sb, |x, y| Ok(x + y)).unwrap();
            let n: usize = shape.iter().product();
            let mut want = Vec::with_capacity(n);
            for flat in 0..n {
                let mut idx = vec![0; shape.len()];
                let mut rem = flat;
                for d in (0..shape.len()).rev() {
                    idx[d] = rem % shape[d];
                    rem /= shape[d];
                }
                want.push(a[reference_index(&sa, &idx)] + b[reference_index(&sb, &idx)]);
            }
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn strided_offsets_and_broadcast_index() {
        assert_eq!(strides(&[2, 3, 4]), vec![12, 4, 1]);
        // A reversed view of 4 elements.
        assert_eq!(offsets(&[4], &[-1], 3), vec![3, 2, 1, 0]);
        // Transpose of [2,3]: strides (1, 3).
        assert_eq!(offsets(&[3, 2], &[1, 3], 0), vec![0, 3, 1, 4, 2, 5]);
        assert_eq!(
            broadcast_index(&[3, 1], &[2, 3, 2]),
            vec![0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2]
        );
        assert!(offsets(&[2, 0], &[1, 1], 0).is_empty());
        assert_eq!(broadcast_all(&[&[2, 1], &[3], &[]]).unwrap(), vec![2, 3]);
        // Rows 1,0 and columns 2,pad of a 2x3.
        let sel = vec![vec![1, 0], vec![2, OUTSIDE]];
        assert_eq!(select_index(&[2, 3], &sel), vec![5, OUTSIDE, 2, OUTSIDE]);
        assert_eq!(select_index(&[], &[]), vec![0]);
    }

    #[test]
    fn incompatible_shapes_error() {
        assert!(binary(&[1, 2], &[2], &[1, 2, 3], &[3], |x: i32, y: i32| Ok(x + y)).is_err());
    }
}

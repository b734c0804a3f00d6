//! proptest strategies for operator property tests: shapes (including
//! size-0 dims), broadcastable pairs, values and tensors.

use oxrt::Tensor;
use proptest::prelude::*;

/// A shape of rank `0..=max_rank` with dims in `0..=max_dim` (size-0 dims included).
pub fn shape(max_rank: usize, max_dim: usize) -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(0..=max_dim, 0..=max_rank)
}

/// A shape of rank `min_rank..=max_rank` with dims in `1..=max_dim`.
pub fn nonempty_shape(
    min_rank: usize,
    max_rank: usize,
    max_dim: usize,
) -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(1..=max_dim, min_rank..=max_rank)
}

/// Two shapes that broadcast together: suffixes of one output shape with
/// some dims replaced by 1.
pub fn broadcastable_pair(
    max_rank: usize,
    max_dim: usize,
) -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    (
        shape(max_rank, max_dim),
        proptest::collection::vec(any::<bool>(), max_rank),
        proptest::collection::vec(any::<bool>(), max_rank),
        0..=max_rank,
        0..=max_rank,
    )
        .prop_map(|(out, ones_a, ones_b, drop_a, drop_b)| {
            let make = |ones: &[bool], drop: usize| -> Vec<usize> {
                out[drop.min(out.len())..]
                    .iter()
                    .enumerate()
                    .map(|(i, &d)| if ones[i] { 1 } else { d })
                    .collect()
            };
            (make(&ones_a, drop_a), make(&ones_b, drop_b))
        })
}

/// `n` finite values in `[-range, range]`, rounded to multiples of 1/64 so
/// that small integer-valued intermediate results stay exact.
pub fn values(n: usize, range: f32) -> impl Strategy<Value = Vec<f32>> {
    proptest::collection::vec(-range..=range, n)
        .prop_map(|v| v.into_iter().map(|x| (x * 64.0).round() / 64.0).collect())
}

/// An f32 tensor of the given shape with values in `[-range, range]`.
pub fn f32_tensor(shape: Vec<usize>, range: f32) -> impl Strategy<Value = Tensor> {
    let n = shape.iter().product();
    // The length always matches the shape, so the filter never rejects.
    values(n, range).prop_filter_map("tensor length matches its shape", move |v| {
        Tensor::from_vec(shape.clone(), v).ok()
    })
}

/// Numeric element types the arithmetic kernels take.
pub fn numeric_dtype() -> impl Strategy<Value = oxrt::DataType> {
    use oxrt::DataType as D;
    prop::sample::select(vec![
        D::F32,
        D::F64,
        D::F16,
        D::I8,
        D::I16,
        D::I32,
        D::I64,
        D::U8,
        D::U16,
        D::U32,
        D::U64,
    ])
}

//! Helpers for property tests: reading results as `f64`, comparing with
//! tolerances, and building exact small-integer inputs of any type.

use oxrt::{DataType, Tensor};
use proptest::prelude::*;

use crate::build::{single_node, Attr};

/// The elements of `t` as `f64` (panics on non-numeric tensors: tests only).
#[allow(clippy::unwrap_used)]
pub fn f64s(t: &Tensor) -> Vec<f64> {
    t.to_f64_vec().unwrap()
}

/// `|got - want| <= atol + rtol * |want|` everywhere (NaN matching NaN,
/// infinities equal), and equal shapes.
pub fn close(
    got: &Tensor,
    shape: &[usize],
    want: &[f64],
    atol: f64,
    rtol: f64,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.shape(), shape);
    for (i, (g, w)) in f64s(got).iter().zip(want).enumerate() {
        prop_assert!(
            g == w || (g.is_nan() && w.is_nan()) || (g - w).abs() <= atol + rtol * w.abs(),
            "element {}: got {}, want {}",
            i,
            g,
            w
        );
    }
    Ok(())
}

/// `t` converted to `dtype` by a one-node Cast model.
#[allow(clippy::unwrap_used)]
pub fn cast(t: &Tensor, dtype: DataType) -> Tensor {
    let bytes = single_node(
        "Cast",
        13,
        &[t],
        1,
        dtype,
        &[("to", Attr::Int(i64::from(dtype.onnx_code())))],
    );
    let s = oxrt::Session::builder().commit_from_memory(&bytes).unwrap();
    s.run([("x0", t.clone())]).unwrap()[0].clone()
}

/// Small non-negative integers as a tensor of `dtype` (exact in every type).
#[allow(clippy::unwrap_used)]
pub fn small_ints(shape: &[usize], dtype: DataType, salt: usize) -> Tensor {
    let n: usize = shape.iter().product();
    let ints = Tensor::from_vec(
        shape.to_vec(),
        (0..n).map(|i| ((i * 7 + salt) % 11) as i64).collect(),
    )
    .unwrap();
    cast(&ints, dtype)
}

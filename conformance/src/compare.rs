//! Output comparison with the ONNX backend test runner's tolerances.

use oxrt::{Storage, Tensor};

/// `|actual - expected| <= atol + rtol * |expected|` for floats.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    pub rtol: f64,
    pub atol: f64,
}

impl Default for Tolerance {
    /// rtol 1e-3, atol 1e-7: the defaults of `onnx.backend.test.runner`.
    fn default() -> Self {
        Self {
            rtol: 1e-3,
            atol: 1e-7,
        }
    }
}

/// Why an output differs from its reference.
#[derive(Debug, Clone, PartialEq)]
pub enum Mismatch {
    /// Different element types.
    DataType { expected: String, actual: String },
    /// Different shapes.
    Shape {
        expected: Vec<usize>,
        actual: Vec<usize>,
    },
    /// Values outside the tolerance; the largest errors and how many differ.
    Values {
        max_abs: f64,
        max_rel: f64,
        count: usize,
        first_index: usize,
    },
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::DataType { expected, actual } => write!(f, "element type {actual}, expected {expected}"),
            Mismatch::Shape { expected, actual } => write!(f, "shape {actual:?}, expected {expected:?}"),
            Mismatch::Values { max_abs, max_rel, count, first_index } => write!(
                f,
                "{count} values differ (first at flat index {first_index}); max abs error {max_abs:.3e}, max rel error {max_rel:.3e}"
            ),
        }
    }
}

/// Float elements (complex as re/im pairs) as `f64`; `None` for exact types.
fn floats(t: &Tensor) -> Option<Vec<f64>> {
    match t.storage() {
        Storage::Complex64(v) => Some(v.iter().flat_map(|c| [c[0] as f64, c[1] as f64]).collect()),
        Storage::Complex128(v) => Some(v.iter().flat_map(|c| [c[0], c[1]]).collect()),
        _ if t.dtype().is_float() => t.to_f64_vec(),
        _ => None,
    }
}

/// Compares `actual` with `expected`: same dtype and shape; floats within
/// `tol` (NaN equals NaN, infinities must match); everything else exactly.
pub fn compare(actual: &Tensor, expected: &Tensor, tol: Tolerance) -> Result<(), Mismatch> {
    if actual.dtype() != expected.dtype() {
        return Err(Mismatch::DataType {
            expected: expected.dtype().to_string(),
            actual: actual.dtype().to_string(),
        });
    }
    if actual.shape() != expected.shape() {
        return Err(Mismatch::Shape {
            expected: expected.shape().to_vec(),
            actual: actual.shape().to_vec(),
        });
    }
    let (Some(a), Some(e)) = (floats(actual), floats(expected)) else {
        if actual == expected {
            return Ok(());
        }
        // Exact comparison, one pass: how many elements differ, and the first.
        let differs =
            |i: usize| actual.storage().gather(&[i]).ok() != expected.storage().gather(&[i]).ok();
        let (mut count, mut first) = (0usize, None);
        for i in (0..actual.len()).filter(|&i| differs(i)) {
            count += 1;
            first.get_or_insert(i);
        }
        // Integers still report their largest difference (NaN for strings).
        let (mut max_abs, mut max_rel) = (f64::NAN, f64::NAN);
        if let (Some(x), Some(y)) = (actual.to_f64_vec(), expected.to_f64_vec()) {
            for (x, y) in x.iter().zip(&y) {
                let abs = (x - y).abs();
                max_abs = if max_abs.is_nan() {
                    abs
                } else {
                    max_abs.max(abs)
                };
                let rel = if *y != 0.0 {
                    abs / y.abs()
                } else if abs == 0.0 {
                    0.0
                } else {
                    f64::INFINITY
                };
                max_rel = if max_rel.is_nan() {
                    rel
                } else {
                    max_rel.max(rel)
                };
            }
        }
        return Err(Mismatch::Values {
            max_abs,
            max_rel,
            count,
            first_index: first.unwrap_or(0),
        });
    };
    let (mut max_abs, mut max_rel, mut count, mut first) = (0.0f64, 0.0f64, 0usize, None);
    for (i, (&x, &y)) in a.iter().zip(&e).enumerate() {
        let ok = if x.is_nan() || y.is_nan() {
            x.is_nan() && y.is_nan()
        } else if x.is_infinite() || y.is_infinite() {
            x == y
        } else {
            (x - y).abs() <= tol.atol + tol.rtol * y.abs()
        };
        if !ok {
            let abs = (x - y).abs();
            max_abs = max_abs.max(abs);
            max_rel = max_rel.max(if y != 0.0 {
                abs / y.abs()
            } else {
                f64::INFINITY
            });
            count += 1;
            first.get_or_insert(i);
        }
    }
    match first {
        None => Ok(()),
        Some(first_index) => Err(Mismatch::Values {
            max_abs,
            max_rel,
            count,
            first_index,
        }),
    }
}

/// Compares a value of any kind with its reference: the same kind, the same
/// number of sequence items, the same presence of an optional, and every
/// tensor within `tol`.
pub fn compare_value(
    actual: &oxrt::core::Value,
    expected: &crate::value::RefValue,
    tol: Tolerance,
) -> Result<(), String> {
    use crate::value::RefValue;
    use oxrt::core::Value;
    match (actual, expected) {
        (Value::Tensor(a), RefValue::Tensor(e)) => compare(a, e, tol).map_err(|m| m.to_string()),
        (Value::Sequence(a), RefValue::Sequence(e)) => {
            if a.len() != e.len() {
                return Err(format!(
                    "sequence of {} tensors, expected {}",
                    a.len(),
                    e.len()
                ));
            }
            for (i, (a, e)) in a.items.iter().zip(e).enumerate() {
                let a = Value::Tensor(a.clone());
                compare_value(&a, e, tol).map_err(|m| format!("item #{i}: {m}"))?;
            }
            Ok(())
        }
        (Value::Map(a), RefValue::Map { keys, values }) => {
            compare(&a.keys, keys, tol).map_err(|m| format!("keys: {m}"))?;
            for (i, (a, e)) in a.values.iter().zip(values).enumerate() {
                compare_value(a, e, tol).map_err(|m| format!("value #{i}: {m}"))?;
            }
            Ok(())
        }
        (Value::Optional(a), RefValue::Optional(e)) => match (a, e) {
            (None, None) => Ok(()),
            (Some(a), Some(e)) => compare_value(a, e, tol),
            (None, Some(_)) => Err("empty optional, expected a value".into()),
            (Some(_), None) => Err("optional holds a value, expected none".into()),
        },
        (a, _) => Err(format!("got a {}, expected {}", a.kind(), expected.kind())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn f(v: Vec<f32>) -> Tensor {
        Tensor::from_vec(vec![v.len()], v).unwrap()
    }

    #[test]
    fn tolerances_and_nan() {
        let tol = Tolerance::default();
        assert!(compare(&f(vec![1.0005, f32::NAN]), &f(vec![1.0, f32::NAN]), tol).is_ok());
        let err = compare(&f(vec![1.01, 2.0]), &f(vec![1.0, 2.0]), tol).unwrap_err();
        match err {
            Mismatch::Values {
                count,
                first_index,
                max_abs,
                ..
            } => {
                assert_eq!((count, first_index), (1, 0));
                assert!((max_abs - 0.01).abs() < 1e-6);
            }
            other => panic!("{other:?}"),
        }
        assert!(compare(&f(vec![f32::INFINITY]), &f(vec![f32::NEG_INFINITY]), tol).is_err());
        assert!(compare(&f(vec![f32::NAN]), &f(vec![0.0]), tol).is_err());
    }

    #[test]
    fn exact_types_and_shapes() {
        let i = |v: Vec<i64>| Tensor::from_vec(vec![v.len()], v).unwrap();
        assert!(compare(&i(vec![1, 2]), &i(vec![1, 2]), Tolerance::default()).is_ok());
        match compare(&i(vec![1, 3, 5]), &i(vec![1, 2, 4]), Tolerance::default()) {
            Err(Mismatch::Values {
                count, first_index, ..
            }) => assert_eq!((count, first_index), (2, 1)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            compare(&i(vec![1]), &f(vec![1.0]), Tolerance::default()),
            Err(Mismatch::DataType { .. })
        ));
        assert!(matches!(
            compare(&i(vec![1, 2]), &i(vec![1]), Tolerance::default()),
            Err(Mismatch::Shape { .. })
        ));
    }
}

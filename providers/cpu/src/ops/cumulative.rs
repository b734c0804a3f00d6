//! CumSum and CumProd along an axis (exclusive, reverse).

use oxrt_core::shape::normalize_axis;
use oxrt_core::{Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor};

use crate::kernel::{read_scalar_int, required, unsupported_type, with_numeric_type, Arith};
use crate::ops::elementwise::NUMERIC;

struct Cumulative {
    product: bool,
    exclusive: bool,
    reverse: bool,
}

/// Running sums (or products) over lanes of `len` elements `inner` apart.
fn scan<T: Arith>(x: &[T], outer: usize, len: usize, inner: usize, k: &Cumulative) -> Vec<T> {
    let mut y = vec![T::zero(); x.len()];
    let init = if k.product { T::one() } else { T::zero() };
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| (o * len + j) * inner + i;
            let mut acc = init;
            for step in 0..len {
                let j = if k.reverse { len - 1 - step } else { step };
                let v = x[at(j)];
                let next = if k.product { acc.mul(v) } else { acc.add(v) };
                y[at(j)] = if k.exclusive { acc } else { next };
                acc = next;
            }
        }
    }
    y
}

impl Kernel for Cumulative {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let x = required(inputs, 0)?;
        let axis = normalize_axis(read_scalar_int(inputs, 1, "axis")?, x.rank())?;
        let s = x.shape();
        let (outer, len, inner) = (
            s[..axis].iter().product(),
            s[axis],
            s[axis + 1..].iter().product(),
        );
        with_numeric_type!(x.dtype(), T => {
            Ok(vec![Tensor::from_vec(s, scan(x.as_slice::<T>()?, outer, len, inner, self))?])
        }, _ => Err(unsupported_type(if self.product { "CumProd" } else { "CumSum" }, x)))
    }
}

fn create(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(Cumulative {
        product: node.op_type == "CumProd",
        exclusive: node.int_or("exclusive", 0)? != 0,
        reverse: node.int_or("reverse", 0)? != 0,
    }))
}

/// Registers CumSum and CumProd.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new("CumSum", 11.., NUMERIC, create));
    reg.add(KernelDef::new("CumProd", 26.., NUMERIC, create));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sums_and_products_both_ways() {
        let x = Tensor::from_vec(vec![2, 3], vec![1i32, 2, 3, 4, 5, 6]).unwrap();
        let run = |product, exclusive, reverse, axis: i64| {
            let k = Cumulative {
                product,
                exclusive,
                reverse,
            };
            let a = Tensor::scalar(axis);
            k.compute(&[Some(&x), Some(&a)])
                .unwrap()
                .remove(0)
                .into_vec::<i32>()
                .unwrap()
        };
        assert_eq!(run(false, false, false, 1), vec![1, 3, 6, 4, 9, 15]);
        assert_eq!(run(false, true, false, 1), vec![0, 1, 3, 0, 4, 9]);
        assert_eq!(run(false, false, true, -1), vec![6, 5, 3, 15, 11, 6]);
        assert_eq!(run(false, true, true, 0), vec![4, 5, 6, 0, 0, 0]);
        assert_eq!(run(true, false, false, 1), vec![1, 2, 6, 4, 20, 120]);
    }
}

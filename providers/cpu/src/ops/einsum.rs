//! Einsum: explicit (`ij,jk->ik`) and implicit (`ij,jk`) equations,
//! ellipses with broadcasting, repeated labels (diagonals) and sums.

use oxrt_core::{Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor};

use crate::broadcast::strides;
use crate::kernel::{unsupported_type, with_numeric_type, Arith};

/// Labels 0..52 are letters; ellipsis dims get 52 + position (counted from
/// the right end of the widest ellipsis).
const ELLIPSIS_BASE: usize = 52;

fn letter(c: char) -> Result<usize> {
    match c {
        'a'..='z' => Ok(c as usize - 'a' as usize),
        'A'..='Z' => Ok(26 + c as usize - 'A' as usize),
        _ => Err(Error::invalid(format!(
            "Einsum label '{c}' is not a letter"
        ))),
    }
}

/// One side of the equation: letters, with an optional ellipsis position.
struct Term {
    before: Vec<usize>,
    ellipsis: bool,
    after: Vec<usize>,
}

fn parse_term(s: &str) -> Result<Term> {
    let s = s.trim();
    let (before, ellipsis, after) = match s.split_once("...") {
        Some((b, a)) => (b, true, a),
        None => (s, false, ""),
    };
    let labels = |t: &str| {
        t.chars()
            .filter(|c| !c.is_whitespace())
            .map(letter)
            .collect::<Result<Vec<_>>>()
    };
    Ok(Term {
        before: labels(before)?,
        ellipsis,
        after: labels(after)?,
    })
}

impl Term {
    /// The label of each axis of an operand of `rank` dims whose ellipsis
    /// covers `rank - letters` dims; `width` is the widest ellipsis.
    fn axis_labels(&self, rank: usize, width: usize) -> Result<Vec<usize>> {
        let letters = self.before.len() + self.after.len();
        let ell = rank
            .checked_sub(letters)
            .filter(|&e| e == 0 || self.ellipsis);
        let Some(ell) = ell else {
            return Err(Error::invalid(format!(
                "Einsum term has {letters} labels for an operand of rank {rank}"
            )));
        };
        let mut v = self.before.clone();
        v.extend((width - ell..width).map(|k| ELLIPSIS_BASE + k));
        v.extend(&self.after);
        Ok(v)
    }
}

struct Einsum {
    inputs: Vec<Term>,
    output: Option<Term>,
}

fn contract<T: Arith>(
    ops: &[&[T]],
    op_labels: &[Vec<usize>],
    op_shapes: &[&[usize]],
    out: &[usize],
    sizes: &[usize],
) -> Vec<T> {
    // Every label, output labels first, then the summed ones.
    let mut all: Vec<usize> = out.to_vec();
    for l in op_labels.iter().flatten() {
        if !all.contains(l) {
            all.push(*l);
        }
    }
    let dims: Vec<usize> = all.iter().map(|&l| sizes[l]).collect();
    // Per operand, the stride each label contributes (0 for size-1 broadcast).
    let op_strides: Vec<Vec<usize>> = op_labels
        .iter()
        .zip(op_shapes)
        .map(|(labels, shape)| {
            let st = strides(shape);
            all.iter()
                .map(|l| {
                    labels
                        .iter()
                        .enumerate()
                        .filter(|&(a, x)| x == l && shape[a] != 1)
                        .map(|(a, _)| st[a])
                        .sum()
                })
                .collect()
        })
        .collect();
    let n_out: usize = dims[..out.len()].iter().product();
    let n_sum: usize = dims[out.len()..].iter().product();
    let mut result = vec![T::zero(); n_out];
    let mut counter = vec![0usize; all.len()];
    for slot in result.iter_mut() {
        let mut acc = T::zero();
        for _ in 0..n_sum {
            let mut prod = T::one();
            for (k, op) in ops.iter().enumerate() {
                let off: usize = counter.iter().zip(&op_strides[k]).map(|(c, s)| c * s).sum();
                prod = prod.mul(op[off]);
            }
            acc = acc.add(prod);
            // Advance the summed labels.
            for d in (out.len()..all.len()).rev() {
                counter[d] += 1;
                if counter[d] < dims[d] {
                    break;
                }
                counter[d] = 0;
            }
        }
        *slot = acc;
        // Advance the output labels.
        for d in (0..out.len()).rev() {
            counter[d] += 1;
            if counter[d] < dims[d] {
                break;
            }
            counter[d] = 0;
        }
    }
    result
}

impl Kernel for Einsum {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let xs: Vec<&Tensor> = inputs.iter().flatten().copied().collect();
        if xs.len() != self.inputs.len() {
            return Err(Error::invalid(format!(
                "the equation has {} operands, the node {}",
                self.inputs.len(),
                xs.len()
            )));
        }
        let width = xs
            .iter()
            .zip(&self.inputs)
            .map(|(x, t)| x.rank().saturating_sub(t.before.len() + t.after.len()))
            .max()
            .unwrap_or(0);
        let labels: Vec<Vec<usize>> = xs
            .iter()
            .zip(&self.inputs)
            .map(|(x, t)| t.axis_labels(x.rank(), width))
            .collect::<Result<_>>()?;
        let mut sizes = vec![1usize; ELLIPSIS_BASE + width];
        let mut set = vec![false; sizes.len()];
        for (x, ls) in xs.iter().zip(&labels) {
            for (&l, &d) in ls.iter().zip(x.shape()) {
                if set[l] && sizes[l] != d && d != 1 && sizes[l] != 1 {
                    return Err(Error::invalid(format!(
                        "Einsum label has sizes {} and {d}",
                        sizes[l]
                    )));
                }
                if !set[l] || sizes[l] == 1 {
                    sizes[l] = d;
                }
                set[l] = true;
            }
        }
        let ellipsis: Vec<usize> = (0..width).map(|k| ELLIPSIS_BASE + k).collect();
        let out: Vec<usize> = match &self.output {
            Some(t) => {
                let mut v = t.before.clone();
                if t.ellipsis {
                    v.extend(&ellipsis);
                }
                v.extend(&t.after);
                if let Some(l) = v.iter().find(|&&l| !set[l]) {
                    return Err(Error::invalid(format!(
                        "output label #{l} appears in no input"
                    )));
                }
                v
            }
            None => {
                // Implicit: the ellipsis, then letters used once, alphabetically.
                let mut v = ellipsis.clone();
                for l in 0..ELLIPSIS_BASE {
                    if labels.iter().flatten().filter(|&&x| x == l).count() == 1 {
                        v.push(l);
                    }
                }
                v
            }
        };
        let dtype = xs[0].dtype();
        if let Some(x) = xs.iter().find(|x| x.dtype() != dtype) {
            return Err(unsupported_type("Einsum with mixed element types", x));
        }
        let shapes: Vec<&[usize]> = xs.iter().map(|x| x.shape()).collect();
        let out_shape: Vec<usize> = out.iter().map(|&l| sizes[l]).collect();
        with_numeric_type!(dtype, T => {
            let data: Vec<&[T]> = xs.iter().map(|x| x.as_slice::<T>()).collect::<Result<_>>()?;
            let y = contract(&data, &labels, &shapes, &out, &sizes);
            Ok(vec![Tensor::from_vec(out_shape, y)?])
        }, _ => Err(unsupported_type("Einsum", xs[0])))
    }
}

fn create(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    let eq = node
        .get_string("equation")?
        .ok_or_else(|| Error::invalid("attribute 'equation' is required"))?;
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (eq, None),
    };
    Ok(Box::new(Einsum {
        inputs: lhs.split(',').map(parse_term).collect::<Result<_>>()?,
        output: rhs.map(parse_term).transpose()?,
    }))
}

/// Registers Einsum.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new("Einsum", 12.., &[], create));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn einsum(eq: &str, xs: &[&Tensor]) -> Tensor {
        let (lhs, rhs) = match eq.split_once("->") {
            Some((l, r)) => (l, Some(r)),
            None => (eq, None),
        };
        let k = Einsum {
            inputs: lhs.split(',').map(|t| parse_term(t).unwrap()).collect(),
            output: rhs.map(|r| parse_term(r).unwrap()),
        };
        let inputs: Vec<Option<&Tensor>> = xs.iter().map(|&x| Some(x)).collect();
        k.compute(&inputs).unwrap().remove(0)
    }

    #[test]
    fn matmul_transpose_trace_and_batch() {
        let a = Tensor::from_vec(vec![2, 2], vec![1i64, 2, 3, 4]).unwrap();
        let b = Tensor::from_vec(vec![2, 2], vec![5i64, 6, 7, 8]).unwrap();
        assert_eq!(
            einsum("ij,jk->ik", &[&a, &b]).as_slice::<i64>().unwrap(),
            &[19, 22, 43, 50]
        );
        assert_eq!(
            einsum("ij->ji", &[&a]).as_slice::<i64>().unwrap(),
            &[1, 3, 2, 4]
        );
        assert_eq!(einsum("ii", &[&a]).as_slice::<i64>().unwrap(), &[5]);
        assert_eq!(einsum("ii->i", &[&a]).as_slice::<i64>().unwrap(), &[1, 4]);
        // Implicit output sorts the free letters: "ba" -> "ab" is a transpose.
        assert_eq!(
            einsum("ba", &[&a]).as_slice::<i64>().unwrap(),
            &[1, 3, 2, 4]
        );
        let x = Tensor::from_vec(vec![2, 1, 2], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
        let y = einsum(
            "...ij,...jk->...ik",
            &[
                &x,
                &Tensor::from_vec(vec![2, 1], vec![1.0f32, 1.0]).unwrap(),
            ],
        );
        assert_eq!(y.shape(), &[2, 1, 1]);
        assert_eq!(y.as_slice::<f32>().unwrap(), &[3.0, 7.0]);
    }
}

//! Comparisons and logic with numpy broadcasting: Equal, Less,
//! LessOrEqual, Greater, GreaterOrEqual, And, Or, Xor, and Where.

use oxrt_core::{
    DataType as D, Error, Kernel, KernelDef, KernelInfo, KernelRegistry, Node, Result, Storage,
    Tensor,
};

use crate::broadcast::{binary, broadcast_all, broadcast_index};
use crate::kernel::{required, unsupported_type, with_numeric_type};
use crate::ops::elementwise::NUMERIC;

#[derive(Clone, Copy, Debug)]
enum Op {
    Equal,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    And,
    Or,
    Xor,
}

fn test<T: PartialOrd>(op: Op, x: &T, y: &T) -> bool {
    match op {
        Op::Equal => x == y,
        Op::Less => x < y,
        Op::LessOrEqual => x <= y,
        Op::Greater => x > y,
        Op::GreaterOrEqual => x >= y,
        // Logic ops only reach here for bool inputs, handled below.
        Op::And | Op::Or | Op::Xor => false,
    }
}

struct Compare {
    op: Op,
}

impl Kernel for Compare {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let (a, b) = (required(inputs, 0)?, required(inputs, 1)?);
        let name = format!("{:?}", self.op);
        if a.dtype() != b.dtype() {
            return Err(Error::invalid(format!(
                "{name} needs inputs of one element type, got {} and {}",
                a.dtype(),
                b.dtype()
            )));
        }
        let op = self.op;
        let (shape, out) = match a.dtype() {
            D::Bool => {
                let f = move |x: bool, y: bool| {
                    Ok(match op {
                        Op::And => x && y,
                        Op::Or => x || y,
                        Op::Xor => x != y,
                        _ => test(op, &x, &y),
                    })
                };
                binary(
                    a.as_slice::<bool>()?,
                    a.shape(),
                    b.as_slice::<bool>()?,
                    b.shape(),
                    f,
                )?
            }
            D::String => {
                let shape = broadcast_all(&[a.shape(), b.shape()])?;
                let (sa, sb) = (a.as_strings()?, b.as_strings()?);
                let out = broadcast_index(a.shape(), &shape)
                    .into_iter()
                    .zip(broadcast_index(b.shape(), &shape))
                    .map(|(i, j)| test(op, &sa[i], &sb[j]))
                    .collect();
                (shape, out)
            }
            _ if matches!(op, Op::And | Op::Or | Op::Xor) => {
                return Err(unsupported_type(&name, a))
            }
            dt => with_numeric_type!(dt, T => {
                binary(a.as_slice::<T>()?, a.shape(), b.as_slice::<T>()?, b.shape(), |x, y| Ok(test(op, &x, &y)))?
            }, _ => return Err(unsupported_type(&name, a))),
        };
        Ok(vec![Tensor::from_vec(shape, out)?])
    }
}

fn create(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    if node.int_or("broadcast", 0)? != 0 {
        return Err(Error::NotSupported(
            "the legacy 'broadcast' attribute (opset < 7)".into(),
        ));
    }
    let op = match node.op_type.as_str() {
        "Equal" => Op::Equal,
        "Less" => Op::Less,
        "LessOrEqual" => Op::LessOrEqual,
        "Greater" => Op::Greater,
        "GreaterOrEqual" => Op::GreaterOrEqual,
        "And" => Op::And,
        "Or" => Op::Or,
        "Xor" => Op::Xor,
        other => return Err(Error::NotSupported(format!("comparison {other}"))),
    };
    Ok(Box::new(Compare { op }))
}

/// `Where(condition, X, Y)`: X where the condition holds, else Y, all three
/// broadcast; any element type.
struct Where;

impl Kernel for Where {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let (c, x, y) = (
            required(inputs, 0)?,
            required(inputs, 1)?,
            required(inputs, 2)?,
        );
        if x.dtype() != y.dtype() {
            return Err(Error::invalid(format!(
                "Where needs X and Y of one element type, got {} and {}",
                x.dtype(),
                y.dtype()
            )));
        }
        let cond = c.as_slice::<bool>()?;
        let shape = broadcast_all(&[c.shape(), x.shape(), y.shape()])?;
        let ci = broadcast_index(c.shape(), &shape);
        let xi = broadcast_index(x.shape(), &shape);
        let yi = broadcast_index(y.shape(), &shape);
        // Gather from X and Y laid end to end.
        let both = Storage::concat(&[x.storage(), y.storage()])?;
        let idx: Vec<usize> = (0..ci.len())
            .map(|k| if cond[ci[k]] { xi[k] } else { x.len() + yi[k] })
            .collect();
        Ok(vec![Tensor::from_storage(
            x.dtype(),
            shape,
            both.gather(&idx)?,
        )?])
    }
}

fn create_where(_: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(Where))
}

/// Registers the comparison and logic operators.
pub fn register(reg: &mut KernelRegistry) {
    reg.add(KernelDef::new("Equal", 7.., NUMERIC, create));
    reg.add(KernelDef::new("Equal", 7.., &[D::Bool], create));
    reg.add(KernelDef::new("Equal", 19.., &[D::String], create));
    for op in ["Less", "LessOrEqual", "Greater", "GreaterOrEqual"] {
        reg.add(KernelDef::new(op, 7.., NUMERIC, create));
    }
    for op in ["And", "Or", "Xor"] {
        reg.add(KernelDef::new(op, 7.., &[D::Bool], create));
    }
    reg.add(KernelDef::new("Where", 9.., &[], create_where));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn comparisons_broadcast() {
        let a = Tensor::from_vec(vec![2, 2], vec![1i32, 2, 3, 4]).unwrap();
        let b = Tensor::from_vec(vec![2], vec![2i32, 2]).unwrap();
        let lt = Compare { op: Op::Less }
            .compute(&[Some(&a), Some(&b)])
            .unwrap();
        assert_eq!(lt[0].shape(), &[2, 2]);
        assert_eq!(
            lt[0].as_slice::<bool>().unwrap(),
            &[true, false, false, false]
        );
        let s = Tensor::from_strings(vec![2], vec!["a".into(), "b".into()]).unwrap();
        let one = Tensor::from_strings(vec![1], vec!["b".into()]).unwrap();
        let eq = Compare { op: Op::Equal }
            .compute(&[Some(&s), Some(&one)])
            .unwrap();
        assert_eq!(eq[0].as_slice::<bool>().unwrap(), &[false, true]);
        let t = Tensor::from_vec(vec![2], vec![true, false]).unwrap();
        let x = Compare { op: Op::Xor }
            .compute(&[Some(&t), Some(&t)])
            .unwrap();
        assert_eq!(x[0].as_slice::<bool>().unwrap(), &[false, false]);
        assert!(Compare { op: Op::And }
            .compute(&[Some(&a), Some(&a)])
            .is_err());
    }

    #[test]
    fn where_selects_and_broadcasts() {
        let c = Tensor::from_vec(vec![2, 1], vec![true, false]).unwrap();
        let x = Tensor::from_strings(vec![2], vec!["x0".into(), "x1".into()]).unwrap();
        let y = Tensor::from_strings(vec![], vec!["y".into()]).unwrap();
        let out = Where.compute(&[Some(&c), Some(&x), Some(&y)]).unwrap();
        assert_eq!(out[0].shape(), &[2, 2]);
        assert_eq!(out[0].as_strings().unwrap(), &["x0", "x1", "y", "y"]);
    }
}

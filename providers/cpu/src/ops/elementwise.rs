//! Add, Sub, Mul, Div with numpy broadcasting, for every numeric type.

use oxrt_core::{
    DataType as D, Error, KernelDef, KernelInfo, KernelRegistry, Node, Result, Tensor,
};

use crate::broadcast::binary;
use crate::kernel::{required, unsupported_type, with_numeric_type, Arith};

/// Element types of the arithmetic operators.
pub const NUMERIC: &[D] = &[
    D::F32,
    D::F64,
    D::F16,
    D::BF16,
    D::I8,
    D::I16,
    D::I32,
    D::I64,
    D::U8,
    D::U16,
    D::U32,
    D::U64,
];

#[derive(Clone, Copy, Debug)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
}

struct Binary {
    op: Op,
    name: &'static str,
}

fn apply<T: Arith>(op: Op, x: T, y: T) -> Result<T> {
    Ok(match op {
        Op::Add => x.add(y),
        Op::Sub => x.sub(y),
        Op::Mul => x.mul(y),
        Op::Div => x.div(y)?,
    })
}

impl oxrt_core::Kernel for Binary {
    fn compute(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let (a, b) = (required(inputs, 0)?, required(inputs, 1)?);
        if a.dtype() != b.dtype() {
            return Err(Error::invalid(format!(
                "{} needs inputs of one element type, got {} and {}",
                self.name,
                a.dtype(),
                b.dtype()
            )));
        }
        let op = self.op;
        with_numeric_type!(a.dtype(), T => {
            let (shape, out) = binary(a.as_slice::<T>()?, a.shape(), b.as_slice::<T>()?, b.shape(), |x, y| apply(op, x, y))?;
            Ok(vec![Tensor::from_vec(shape, out)?])
        }, _ => Err(unsupported_type(self.name, a)))
    }
}

fn create(node: &Node, _: &KernelInfo<'_>) -> Result<Box<dyn oxrt_core::Kernel>> {
    let (op, name) = match node.op_type.as_str() {
        "Add" => (Op::Add, "Add"),
        "Sub" => (Op::Sub, "Sub"),
        "Mul" => (Op::Mul, "Mul"),
        _ => (Op::Div, "Div"),
    };
    if node.int_or("broadcast", 0)? != 0 || node.attributes.contains_key("axis") {
        return Err(Error::NotSupported(
            "the legacy 'broadcast'/'axis' attributes (opset < 7)".into(),
        ));
    }
    Ok(Box::new(Binary { op, name }))
}

/// Registers the arithmetic operators (numpy broadcasting since opset 7).
pub fn register(reg: &mut KernelRegistry) {
    for op in ["Add", "Sub", "Mul", "Div"] {
        reg.add(KernelDef::new(op, 7.., NUMERIC, create));
    }
}

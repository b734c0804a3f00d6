//! Unary activations and math (`unary_f32`) and binary arithmetic with
//! numpy broadcasting (`binary_f32`), f32.

use std::sync::Arc;

use cudarc::driver::PushKernelArg;
use oxrt_core::device::DeviceTensor;
use oxrt_core::{Error, Kernel, KernelInfo, Node, Result};

use super::{boxed, first, host_constant, launch_for, Constants, GpuKernel, Strides};
use crate::gpu::{failed, Gpu};
use crate::memory::{f32_view, Output};

/// Unary operators, in `unary()`'s order in kernels.cu (a few share a code
/// with a parameter).
pub(crate) const UNARY_OPS: &[&str] = &[
    "Relu",
    "Sigmoid",
    "Tanh",
    "Exp",
    "Log",
    "Sqrt",
    "Neg",
    "Abs",
    "Erf",
    "Gelu",
    "Reciprocal",
    "LeakyRelu",
    "Clip",
    "HardSigmoid",
    "Softplus",
    "Floor",
    "Ceil",
    "HardSwish",
    "Elu",
];

/// Binary operators, in `binary()`'s order in kernels.cu.
pub(crate) const BINARY_OPS: &[&str] = &["Add", "Sub", "Mul", "Div", "Max", "Min", "Pow"];

/// A unary kernel code and its two parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Unary {
    code: i32,
    p: f32,
    q: f32,
}

/// Code of the tanh form of Gelu in kernels.cu.
const GELU_TANH: i32 = 19;

impl Unary {
    /// The unary op `op` with `node`'s attributes (`inputs`: constant
    /// min/max inputs of Clip).
    pub fn from_node(op: &str, node: &Node, info: Option<&KernelInfo<'_>>) -> Result<Self> {
        let code = UNARY_OPS
            .iter()
            .position(|&o| o == op)
            .ok_or_else(|| Error::NotSupported(format!("CUDA activation {op}")))?
            as i32;
        let f = |name: &str, d: f32| node.float_or(name, d);
        let (code, p, q) = match op {
            "LeakyRelu" => (code, f("alpha", 0.01)?, 0.0),
            "Elu" => (code, f("alpha", 1.0)?, 0.0),
            "HardSigmoid" => (code, f("alpha", 0.2)?, f("beta", 0.5)?),
            "Gelu" if node.string_or("approximate", "none")? == "tanh" => (GELU_TANH, 0.0, 0.0),
            "Clip" => {
                let bound = |i: usize, attr: &str, d: f32| -> Result<f32> {
                    match (node.input(i), info) {
                        (Some(_), Some(info)) => {
                            let t = host_constant(info, i, "Clip")?;
                            t.to_f64_vec()
                                .and_then(|v| v.first().copied())
                                .map(|v| v as f32)
                                .ok_or_else(|| Error::invalid("Clip bounds must be numbers"))
                        }
                        (Some(_), None) => Err(Error::NotSupported(
                            "Clip with non-constant bounds on CUDA".into(),
                        )),
                        (None, _) => f(attr, d),
                    }
                };
                (code, bound(1, "min", f32::MIN)?, bound(2, "max", f32::MAX)?)
            }
            _ => (code, 0.0, 0.0),
        };
        Ok(Self { code, p, q })
    }

    /// The activation a fused product names (`activation` and
    /// `activation_params`), if any.
    pub fn epilogue(node: &Node) -> Result<Option<Self>> {
        let Some(name) = node.get_string("activation")? else {
            return Ok(None);
        };
        let params = node.get_floats("activation_params")?.unwrap_or(&[]);
        let at = |i: usize, d: f32| params.get(i).copied().unwrap_or(d);
        let code = UNARY_OPS
            .iter()
            .position(|&o| o == name)
            .ok_or_else(|| Error::NotSupported(format!("fused activation {name} on CUDA")))?
            as i32;
        let (code, p, q) = match name {
            "LeakyRelu" | "Elu" => (code, at(0, 0.01), 0.0),
            "HardSigmoid" => (code, at(0, 0.2), at(1, 0.5)),
            "Clip" => (code, at(0, f32::MIN), at(1, f32::MAX)),
            "Gelu" if at(0, 0.0) != 0.0 => (GELU_TANH, 0.0, 0.0),
            _ => (code, 0.0, 0.0),
        };
        Ok(Some(Self { code, p, q }))
    }

    /// Applies the op to `x` into a new tensor.
    pub fn apply(&self, gpu: &Gpu, x: &DeviceTensor) -> Result<DeviceTensor> {
        let xv = f32_view(x)?;
        let mut out = Output::new(gpu, x.shape().to_vec())?;
        let n = out.len();
        {
            let mut yv = out.view()?;
            let f = gpu.function("unary_f32")?;
            let mut launch = gpu.stream.launch_builder(&f);
            let n64 = n as i64;
            launch
                .arg(&xv)
                .arg(&mut yv)
                .arg(&n64)
                .arg(&self.code)
                .arg(&self.p)
                .arg(&self.q);
            // SAFETY: unary_f32(const float*, float*, long long, int, float,
            // float) reads x[0..n) and writes y[0..n); both views hold n f32.
            unsafe { launch.launch(launch_for(n)) }.map_err(|e| failed("unary kernel", e))?;
        }
        Ok(out.finish())
    }
}

struct UnaryKernel {
    gpu: Arc<Gpu>,
    op: Unary,
    name: String,
}

impl GpuKernel for UnaryKernel {
    fn op(&self) -> &str {
        &self.name
    }

    fn run(&self, inputs: &[Option<&DeviceTensor>]) -> Result<DeviceTensor> {
        let x = first(inputs, &self.name)?;
        self.op.apply(&self.gpu, x)
    }
}

pub(crate) fn create_unary(
    node: &Node,
    info: &KernelInfo<'_>,
    gpu: &Arc<Gpu>,
) -> Result<Box<dyn Kernel>> {
    Ok(boxed(UnaryKernel {
        gpu: gpu.clone(),
        op: Unary::from_node(&node.op_type, node, Some(info))?,
        name: node.op_type.clone(),
    }))
}

/// `a op b` with broadcasting.
pub(crate) fn binary(
    gpu: &Gpu,
    code: i32,
    a: &DeviceTensor,
    b: &DeviceTensor,
) -> Result<DeviceTensor> {
    let shape = oxrt_core::shape::broadcast(a.shape(), b.shape())?;
    let strides = Strides::broadcast(&shape, a.shape(), b.shape())?;
    let (av, bv) = (f32_view(a)?, f32_view(b)?);
    let mut out = Output::new(gpu, shape)?;
    let n = out.len();
    {
        let mut yv = out.view()?;
        let f = gpu.function("binary_f32")?;
        let mut launch = gpu.stream.launch_builder(&f);
        let n64 = n as i64;
        launch
            .arg(&av)
            .arg(&bv)
            .arg(&mut yv)
            .arg(&n64)
            .arg(&code)
            .arg(&strides);
        // SAFETY: binary_f32(const float*, const float*, float*, long long,
        // int, Strides) writes y[0..n) and reads a and b only at offsets the
        // broadcast table maps into their own shapes.
        unsafe { launch.launch(launch_for(n)) }.map_err(|e| failed("binary kernel", e))?;
    }
    Ok(out.finish())
}

struct BinaryKernel {
    gpu: Arc<Gpu>,
    code: i32,
    constants: Constants,
    name: String,
}

impl GpuKernel for BinaryKernel {
    fn op(&self) -> &str {
        &self.name
    }

    fn run(&self, inputs: &[Option<&DeviceTensor>]) -> Result<DeviceTensor> {
        let a = self.constants.required(inputs, 0, &self.name)?;
        let b = self.constants.required(inputs, 1, &self.name)?;
        binary(&self.gpu, self.code, a, b)
    }
}

pub(crate) fn create_binary(
    node: &Node,
    info: &KernelInfo<'_>,
    gpu: &Arc<Gpu>,
) -> Result<Box<dyn Kernel>> {
    if node.inputs.len() != 2 {
        return Err(Error::NotSupported(format!(
            "{} with {} inputs on CUDA (two are supported)",
            node.op_type,
            node.inputs.len()
        )));
    }
    let code = BINARY_OPS
        .iter()
        .position(|&o| o == node.op_type)
        .ok_or_else(|| Error::NotSupported(format!("CUDA binary op {}", node.op_type)))?;
    Ok(boxed(BinaryKernel {
        gpu: gpu.clone(),
        code: code as i32,
        constants: Constants::upload(gpu, info, 2)?,
        name: node.op_type.clone(),
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use oxrt_core::ir::Attribute;
    use std::collections::BTreeMap;

    fn node(op: &str, attrs: &[(&str, Attribute)]) -> Node {
        Node {
            name: "n".into(),
            op_type: op.into(),
            domain: String::new(),
            inputs: vec!["x".into()],
            outputs: vec!["y".into()],
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn op_codes_follow_the_kernel_source() {
        // The order of the switch in kernels.cu.
        let src = include_str!("../kernels.cu");
        for (code, op) in UNARY_OPS.iter().enumerate() {
            assert!(
                src.contains(&format!("case {code}: return")) && src.contains(&format!("// {op}")),
                "{op} (code {code}) not in kernels.cu"
            );
        }
        let leaky = Unary::from_node(
            "LeakyRelu",
            &node("LeakyRelu", &[("alpha", Attribute::Float(0.3))]),
            None,
        )
        .unwrap();
        assert_eq!((leaky.code, leaky.p), (11, 0.3));
        let tanh = node(
            "Gelu",
            &[("approximate", Attribute::String(b"tanh".to_vec()))],
        );
        assert_eq!(
            Unary::from_node("Gelu", &tanh, None).unwrap().code,
            GELU_TANH
        );
        let fused = node(
            "FusedConv",
            &[
                ("activation", Attribute::String(b"Clip".to_vec())),
                ("activation_params", Attribute::Floats(vec![0.0, 6.0])),
            ],
        );
        let clip = Unary::epilogue(&fused).unwrap().unwrap();
        assert_eq!((clip.code, clip.p, clip.q), (12, 0.0, 6.0));
    }
}

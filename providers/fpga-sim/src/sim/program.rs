//! Programs and kernels. A program is built from the device's bitstream of
//! built-in kernels; a kernel is created from it by name, its arguments are
//! bound by index, and a command queue launches it over an NDRange.

use std::collections::BTreeMap;

use super::cost::Work;
use super::memory::Buffer;

/// How a kernel parameter is passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    /// A buffer the kernel reads.
    In(&'static str),
    /// A buffer the kernel writes.
    Out(&'static str),
    /// A scalar or small array passed by value.
    Scalar(&'static str),
}

/// An argument bound to a kernel parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Buffer(Buffer),
    Ints(Vec<i64>),
    Floats(Vec<f32>),
}

/// The buffers and scalars a running kernel sees (in parameter order).
pub struct Invocation<'a> {
    pub inputs: Vec<&'a [u8]>,
    pub outputs: Vec<&'a mut [u8]>,
    pub scalars: Vec<&'a Arg>,
    /// The NDRange the kernel was launched over.
    pub global: [usize; 3],
}

impl Invocation<'_> {
    /// Scalar argument `i` as integers.
    pub fn ints(&self, i: usize) -> Result<&[i64], String> {
        match self.scalars.get(i) {
            Some(Arg::Ints(v)) => Ok(v),
            _ => Err(format!("scalar argument #{i} is not an integer array")),
        }
    }

    /// Scalar argument `i` as floats.
    pub fn floats(&self, i: usize) -> Result<&[f32], String> {
        match self.scalars.get(i) {
            Some(Arg::Floats(v)) => Ok(v),
            _ => Err(format!("scalar argument #{i} is not a float array")),
        }
    }
}

/// What a kernel computes: reads the inputs, writes the outputs, and
/// returns the work it did for the cycle model.
pub type KernelBody = fn(&mut Invocation<'_>) -> Result<Work, String>;

/// A built-in kernel of the bitstream.
#[derive(Debug)]
pub struct KernelDef {
    pub name: &'static str,
    pub params: &'static [Param],
    pub body: KernelBody,
}

/// A program: the kernels available on a context's device.
#[derive(Debug, Clone)]
pub struct Program {
    kernels: BTreeMap<&'static str, &'static KernelDef>,
}

impl Program {
    /// Builds a program from the built-in kernels of a bitstream.
    pub fn from_builtin(kernels: &[&'static KernelDef]) -> Self {
        Self {
            kernels: kernels.iter().map(|k| (k.name, *k)).collect(),
        }
    }

    /// Names of the kernels in the program.
    pub fn kernel_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.kernels.keys().copied()
    }

    /// Creates a kernel object with no arguments bound.
    pub fn create_kernel(&self, name: &str) -> Result<SimKernel, String> {
        let def = self
            .kernels
            .get(name)
            .copied()
            .ok_or_else(|| format!("the program has no kernel '{name}'"))?;
        Ok(SimKernel {
            def,
            args: vec![None; def.params.len()],
        })
    }
}

/// A kernel object with its bound arguments.
#[derive(Debug, Clone)]
pub struct SimKernel {
    pub(crate) def: &'static KernelDef,
    pub(crate) args: Vec<Option<Arg>>,
}

impl SimKernel {
    /// The kernel's name.
    pub fn name(&self) -> &'static str {
        self.def.name
    }

    /// Binds argument `index`; a buffer goes to a buffer parameter, a
    /// scalar to a scalar parameter.
    pub fn set_arg(&mut self, index: usize, arg: Arg) -> Result<(), String> {
        let param = self.def.params.get(index).ok_or_else(|| {
            format!(
                "kernel '{}' has {} parameters, argument #{index} given",
                self.def.name,
                self.def.params.len()
            )
        })?;
        let ok = matches!(
            (param, &arg),
            (Param::In(_) | Param::Out(_), Arg::Buffer(_))
                | (Param::Scalar(_), Arg::Ints(_) | Arg::Floats(_))
        );
        if !ok {
            return Err(format!(
                "kernel '{}': argument #{index} ({param:?}) cannot take {arg:?}",
                self.def.name
            ));
        }
        self.args[index] = Some(arg);
        Ok(())
    }

    /// Binds arguments 0.. in order.
    pub fn set_args(&mut self, args: Vec<Arg>) -> Result<(), String> {
        for (i, a) in args.into_iter().enumerate() {
            self.set_arg(i, a)?;
        }
        Ok(())
    }
}

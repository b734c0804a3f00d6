//! The operators fpga-sim runs. Each family has its own module with the
//! device kernel (part of the simulated bitstream) next to the node-level
//! logic: which nodes it accepts, and how a node's inputs become a launch.

pub mod conv;
pub mod eltwise;
pub mod gemm;
pub mod pool;
pub mod quant;

use std::collections::HashMap;

use half::f16;
use oxrt_onnx::proto::{attribute_proto::AttributeType, tensor_proto::DataType, NodeProto};

use crate::sim::{Arg, KernelDef, Work};

/// Element types the device stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Elem {
    F32,
    F16,
    I8,
    U8,
    I32,
}

impl Elem {
    /// From an ONNX element type code.
    pub fn from_onnx(code: i32) -> Option<Self> {
        Some(match DataType::try_from(code).ok()? {
            DataType::Float => Elem::F32,
            DataType::Float16 => Elem::F16,
            DataType::Int8 => Elem::I8,
            DataType::Uint8 => Elem::U8,
            DataType::Int32 => Elem::I32,
            _ => return None,
        })
    }

    /// As an integer kernel argument.
    pub fn code(self) -> i64 {
        self as i64
    }

    /// From an integer kernel argument.
    pub fn from_code(c: i64) -> Result<Self, String> {
        [Elem::F32, Elem::F16, Elem::I8, Elem::U8, Elem::I32]
            .into_iter()
            .find(|e| e.code() == c)
            .ok_or_else(|| format!("unknown element code {c}"))
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Elem::F32 | Elem::I32 => 4,
            Elem::F16 => 2,
            Elem::I8 | Elem::U8 => 1,
        }
    }

    /// True for the floating-point types.
    pub fn is_float(self) -> bool {
        matches!(self, Elem::F32 | Elem::F16)
    }

    /// The DLPack type of this element type.
    pub fn abi(self) -> oxrt_provider_abi::OxrtDataType {
        use oxrt_provider_abi::type_code as c;
        let (code, bits) = match self {
            Elem::F32 => (c::FLOAT, 32),
            Elem::F16 => (c::FLOAT, 16),
            Elem::I8 => (c::INT, 8),
            Elem::U8 => (c::UINT, 8),
            Elem::I32 => (c::INT, 32),
        };
        oxrt_provider_abi::OxrtDataType {
            code,
            bits,
            lanes: 1,
        }
    }

    /// From a DLPack type.
    pub fn from_abi(t: oxrt_provider_abi::OxrtDataType) -> Option<Self> {
        [Elem::F32, Elem::F16, Elem::I8, Elem::U8, Elem::I32]
            .into_iter()
            .find(|e| e.abi() == t)
    }
}

/// Reads device bytes of `elem` as f32 (fp16 and integers widen exactly).
pub fn load(bytes: &[u8], elem: Elem) -> Vec<f32> {
    match elem {
        Elem::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Elem::F16 => bytes
            .chunks_exact(2)
            .map(|c| f16::from_ne_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Elem::I8 => bytes.iter().map(|&b| f32::from(b as i8)).collect(),
        Elem::U8 => bytes.iter().map(|&b| f32::from(b)).collect(),
        Elem::I32 => load_i32(bytes, elem)
            .into_iter()
            .map(|v| v as f32)
            .collect(),
    }
}

/// Reads device bytes of an integer `elem` as i32.
pub fn load_i32(bytes: &[u8], elem: Elem) -> Vec<i32> {
    match elem {
        Elem::I8 => bytes.iter().map(|&b| i32::from(b as i8)).collect(),
        Elem::U8 => bytes.iter().map(|&b| i32::from(b)).collect(),
        Elem::I32 => bytes
            .chunks_exact(4)
            .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Elem::F32 | Elem::F16 => load(bytes, elem).into_iter().map(|v| v as i32).collect(),
    }
}

/// Writes f32 values as `elem` (fp16 rounds to nearest even).
pub fn store(out: &mut [u8], elem: Elem, values: &[f32]) {
    match elem {
        Elem::F32 => {
            for (o, v) in out.chunks_exact_mut(4).zip(values) {
                o.copy_from_slice(&v.to_ne_bytes());
            }
        }
        Elem::F16 => {
            for (o, v) in out.chunks_exact_mut(2).zip(values) {
                o.copy_from_slice(&f16::from_f32(*v).to_ne_bytes());
            }
        }
        Elem::I8 | Elem::U8 | Elem::I32 => {
            let ints: Vec<i32> = values.iter().map(|&v| v as i32).collect();
            store_i32(out, elem, &ints);
        }
    }
}

/// Writes i32 values as an integer `elem` (saturating).
pub fn store_i32(out: &mut [u8], elem: Elem, values: &[i32]) {
    match elem {
        Elem::I8 => {
            for (o, v) in out.iter_mut().zip(values) {
                *o = (*v).clamp(-128, 127) as i8 as u8;
            }
        }
        Elem::U8 => {
            for (o, v) in out.iter_mut().zip(values) {
                *o = (*v).clamp(0, 255) as u8;
            }
        }
        Elem::I32 => {
            for (o, v) in out.chunks_exact_mut(4).zip(values) {
                o.copy_from_slice(&v.to_ne_bytes());
            }
        }
        Elem::F32 | Elem::F16 => {
            let f: Vec<f32> = values.iter().map(|&v| v as f32).collect();
            store(out, elem, &f);
        }
    }
}

/// Precision class of float work on `elem`.
pub fn precision(elem: Elem) -> crate::sim::cost::Precision {
    use crate::sim::cost::Precision;
    match elem {
        Elem::F16 => Precision::F16,
        Elem::I8 | Elem::U8 | Elem::I32 => Precision::Int8,
        Elem::F32 => Precision::F32,
    }
}

/// A tensor's element type and shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub elem: Elem,
    pub shape: Vec<usize>,
}

impl Meta {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Size in bytes.
    pub fn bytes(&self) -> usize {
        self.numel() * self.elem.size()
    }
}

/// One kernel launch for a node: which node inputs are bound (in order,
/// `None` binds the first bound input again as a placeholder for an absent
/// optional one), the outputs to allocate, the scalar arguments and the
/// NDRange.
#[derive(Debug, Clone)]
pub struct Launch {
    pub kernel: &'static str,
    pub inputs: Vec<Option<usize>>,
    pub outputs: Vec<Meta>,
    pub scalars: Vec<Arg>,
    pub global: [usize; 3],
}

/// What a graph says about a value: element type and dims, when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueFacts {
    pub elem: Option<Elem>,
    pub dims: Option<Vec<Option<i64>>>,
    /// True for initializers (constants known when the kernel is created).
    pub constant: bool,
}

/// What a node's operator needs to decide and to plan.
pub struct NodeView<'a> {
    pub node: &'a NodeProto,
    pub opset: i64,
    /// Facts of each input (`None` for an omitted optional input).
    pub inputs: Vec<Option<&'a ValueFacts>>,
}

impl NodeView<'_> {
    /// Element type of input `i`, if known.
    pub fn elem(&self, i: usize) -> Option<Elem> {
        self.inputs.get(i).copied().flatten().and_then(|f| f.elem)
    }

    /// Rank of input `i`, if known.
    pub fn rank(&self, i: usize) -> Option<usize> {
        self.inputs
            .get(i)
            .copied()
            .flatten()
            .and_then(|f| f.dims.as_ref().map(Vec::len))
    }

    /// True when input `i` is given.
    pub fn has(&self, i: usize) -> bool {
        self.inputs.get(i).copied().flatten().is_some()
    }

    /// True when input `i` is a constant.
    pub fn is_constant(&self, i: usize) -> bool {
        self.inputs
            .get(i)
            .copied()
            .flatten()
            .is_some_and(|f| f.constant)
    }

    /// Number of outputs the node names.
    pub fn named_outputs(&self) -> usize {
        self.node.output.iter().filter(|o| !o.is_empty()).count()
    }
}

/// An operator the device runs, compiled for one node.
pub trait DeviceOp: Send + Sync {
    /// The launch for inputs of these types and shapes (`None`: omitted).
    /// Constant inputs carry their values in `consts`.
    fn plan(&self, inputs: &[Option<Meta>], consts: &Constants) -> Result<Launch, String>;
}

/// Host copies of a node's constant inputs (by input position), for ops
/// whose launch depends on them (e.g. Clip bounds).
pub type Constants = HashMap<usize, (Meta, Vec<u8>)>;

/// Compiles a node of a family into a device op.
pub type CompileFn = fn(&NodeView<'_>, &Constants) -> Result<Box<dyn DeviceOp>, String>;

/// How an operator family is registered: which ops it takes and how a node
/// of them is checked and compiled.
pub struct OpFamily {
    pub ops: &'static [&'static str],
    /// `Err(reason)` when the device cannot run this node.
    pub accepts: fn(&NodeView<'_>) -> Result<(), String>,
    /// Compiles the node.
    pub compile: CompileFn,
}

/// Every family, and the bitstream of all their kernels.
pub fn families() -> [&'static OpFamily; 5] {
    [
        &eltwise::FAMILY,
        &gemm::FAMILY,
        &conv::FAMILY,
        &pool::FAMILY,
        &quant::FAMILY,
    ]
}

/// The kernels the simulated bitstream contains.
pub fn bitstream() -> Vec<&'static KernelDef> {
    [
        eltwise::KERNELS,
        gemm::KERNELS,
        conv::KERNELS,
        pool::KERNELS,
        quant::KERNELS,
    ]
    .concat()
}

/// Every operator the device runs (default domain), sorted.
pub fn operators() -> Vec<&'static str> {
    let mut ops: Vec<&'static str> = families()
        .iter()
        .flat_map(|f| f.ops.iter().copied())
        .collect();
    ops.sort_unstable();
    ops
}

/// The family running `op` (default domain only).
pub fn family_of(op: &str) -> Option<&'static OpFamily> {
    families().into_iter().find(|f| f.ops.contains(&op))
}

/// Reads an int attribute.
pub fn attr_int(node: &NodeProto, name: &str, default: i64) -> i64 {
    node.attribute
        .iter()
        .find(|a| a.name() == name)
        .map_or(default, |a| a.i())
}

/// Reads a float attribute.
pub fn attr_float(node: &NodeProto, name: &str, default: f32) -> f32 {
    node.attribute
        .iter()
        .find(|a| a.name() == name)
        .map_or(default, |a| a.f())
}

/// Reads an ints attribute.
pub fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    node.attribute
        .iter()
        .find(|a| a.name() == name && a.r#type() == AttributeType::Ints)
        .map(|a| a.ints.clone())
}

/// Reads a string attribute.
pub fn attr_string(node: &NodeProto, name: &str) -> Option<String> {
    node.attribute
        .iter()
        .find(|a| a.name() == name)
        .map(|a| String::from_utf8_lossy(a.s()).into_owned())
}

/// `Ok` when `elem` is one of `allowed`, else a reason naming the input.
pub fn expect_elem(v: &NodeView<'_>, i: usize, allowed: &[Elem]) -> Result<Elem, String> {
    match v.elem(i) {
        Some(e) if allowed.contains(&e) => Ok(e),
        Some(e) => Err(format!(
            "input #{i} has element type {e:?}, the device takes {allowed:?}"
        )),
        None => Err(format!("the element type of input #{i} is not known")),
    }
}

/// The given input, or an error naming it.
pub fn input(inputs: &[Option<Meta>], i: usize) -> Result<&Meta, String> {
    inputs
        .get(i)
        .and_then(Option::as_ref)
        .ok_or_else(|| format!("input #{i} is missing"))
}

/// Work for elementwise kernels: `n` outputs, `bytes` of DDR traffic.
pub fn elementwise_work(elem: Elem, n: usize, bytes: usize) -> Work {
    let mut w = Work::new(precision(elem));
    w.ops = n as u64;
    w.ddr_bytes = bytes as u64;
    w
}

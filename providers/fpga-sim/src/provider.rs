//! The provider behind the ABI: decodes the models the host sends, decides
//! which nodes the device takes, compiles nodes into kernel launches with
//! constants resident in device memory, and runs them on the command queue.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Arc;

use oxrt_onnx::proto::{tensor_proto::DataType, GraphProto, ModelProto, TensorProto};
use oxrt_provider_abi::sdk::{Failure, Outcome, Outputs, ProviderImpl, TensorDesc};
use oxrt_provider_abi::{device_type, OxrtDevice, OxrtProfile};
use prost::Message;

use crate::ops::{bitstream, family_of, Constants, DeviceOp, Elem, Meta, NodeView, ValueFacts};
use crate::sim::{Arg, Buffer, CommandQueue, Context, DeviceConfig, Memory, Platform, Program};

/// A provider instance: one simulated device with its context, queue and
/// the program built from its bitstream.
pub struct FpgaSim {
    platform: Platform,
    context: Context,
    queue: CommandQueue,
    program: Program,
    /// A one-byte buffer bound in place of empty tensors.
    empty: Buffer,
}

/// Where a node input comes from when the kernel runs.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// The `i`-th tensor `compute` receives.
    Runtime(usize),
    /// A constant resident in device memory.
    Constant,
    /// An omitted optional input.
    Absent,
}

/// A node compiled for the device.
pub struct FpgaKernel {
    node: String,
    op: Box<dyn DeviceOp>,
    sources: Vec<Source>,
    constants: HashMap<usize, (Meta, Buffer)>,
    host_constants: Constants,
    outputs: usize,
    memory: Arc<Memory>,
}

impl Drop for FpgaKernel {
    fn drop(&mut self) {
        for (_, b) in self.constants.values() {
            let _ = self.memory.free(b.addr);
        }
    }
}

fn decode(model: &[u8]) -> Outcome<(GraphProto, HashMap<String, i64>)> {
    let m = ModelProto::decode(model)
        .map_err(|e| Failure::invalid(format!("cannot decode the model: {e}")))?;
    let opsets = m
        .opset_import
        .iter()
        .map(|o| (o.domain().to_string(), o.version()))
        .collect();
    Ok((m.graph.unwrap_or_default(), opsets))
}

/// Element type and dims of every typed value of the graph.
fn facts(graph: &GraphProto) -> HashMap<String, ValueFacts> {
    let mut out = HashMap::new();
    for v in graph
        .input
        .iter()
        .chain(&graph.output)
        .chain(&graph.value_info)
    {
        let Some(oxrt_onnx::proto::type_proto::Value::TensorType(t)) =
            v.r#type.as_ref().and_then(|t| t.value.as_ref())
        else {
            continue;
        };
        let dims = t.shape.as_ref().map(|s| {
            s.dim
                .iter()
                .map(|d| match d.value {
                    Some(oxrt_onnx::proto::tensor_shape_proto::dimension::Value::DimValue(n)) => {
                        Some(n)
                    }
                    _ => None,
                })
                .collect()
        });
        out.insert(
            v.name().to_string(),
            ValueFacts {
                elem: t.elem_type.and_then(Elem::from_onnx),
                dims,
                constant: false,
            },
        );
    }
    for t in &graph.initializer {
        out.insert(
            t.name().to_string(),
            ValueFacts {
                elem: Elem::from_onnx(t.data_type()),
                dims: Some(t.dims.iter().map(|&d| Some(d)).collect()),
                constant: true,
            },
        );
    }
    out
}

/// The host-order bytes of a constant the device can hold.
fn tensor_bytes(t: &TensorProto) -> Outcome<(Meta, Vec<u8>)> {
    let elem = Elem::from_onnx(t.data_type()).ok_or_else(|| {
        Failure::unsupported(format!(
            "constant '{}' has a type the device does not store",
            t.name()
        ))
    })?;
    let shape = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| {
            Failure::invalid(format!("constant '{}' has a negative dimension", t.name()))
        })?;
    let meta = Meta { elem, shape };
    if t.data_location() == oxrt_onnx::proto::tensor_proto::DataLocation::External {
        return Err(Failure::unsupported(
            "constants with external data must be loaded by the host",
        ));
    }
    let bytes = if let Some(raw) = t.raw_data.as_ref().filter(|r| !r.is_empty()) {
        // ONNX raw data is little-endian, as is every host this runs on.
        raw.to_vec()
    } else {
        match DataType::try_from(t.data_type()) {
            Ok(DataType::Float) => t.float_data.iter().flat_map(|v| v.to_ne_bytes()).collect(),
            Ok(DataType::Float16) => t
                .int32_data
                .iter()
                .flat_map(|&v| (v as u16).to_ne_bytes())
                .collect(),
            Ok(DataType::Int8 | DataType::Uint8) => t.int32_data.iter().map(|&v| v as u8).collect(),
            Ok(DataType::Int32) => t.int32_data.iter().flat_map(|v| v.to_ne_bytes()).collect(),
            _ => return Err(Failure::unsupported("unsupported constant type")),
        }
    };
    if bytes.len() != meta.bytes() {
        return Err(Failure::invalid(format!(
            "constant '{}' has {} bytes of data for shape {:?}",
            t.name(),
            bytes.len(),
            meta.shape
        )));
    }
    Ok((meta, bytes))
}

fn view<'a>(
    node: &'a oxrt_onnx::proto::NodeProto,
    opsets: &HashMap<String, i64>,
    facts: &'a HashMap<String, ValueFacts>,
) -> NodeView<'a> {
    let domain = match node.domain() {
        "ai.onnx" => "",
        d => d,
    };
    NodeView {
        node,
        opset: opsets.get(domain).copied().unwrap_or(0),
        inputs: node
            .input
            .iter()
            .map(|i| if i.is_empty() { None } else { facts.get(i) })
            .collect(),
    }
}

/// Why the device cannot run `node` (`Ok` when it can).
fn check(v: &NodeView<'_>) -> Result<(), String> {
    if !matches!(v.node.domain(), "" | "ai.onnx") {
        return Err(format!("domain '{}' is not supported", v.node.domain()));
    }
    let family = family_of(v.node.op_type())
        .ok_or_else(|| format!("{} is not in the bitstream", v.node.op_type()))?;
    if v.inputs
        .iter()
        .zip(&v.node.input)
        .any(|(f, name)| f.is_none() && !name.is_empty())
    {
        return Err("an input's type is not known".into());
    }
    (family.accepts)(v)
}

impl ProviderImpl for FpgaSim {
    type Kernel = FpgaKernel;

    fn create(options: &[(String, String)]) -> Result<Self, String> {
        let config = DeviceConfig::from_options(options)?;
        let platform = Platform::new(config);
        let device = platform
            .devices()
            .first()
            .ok_or("the platform has no device")?;
        let context = Context::new(device);
        let queue = context.create_queue();
        let program = Program::from_builtin(&bitstream());
        let empty = context.create_buffer(1)?;
        Ok(Self {
            platform,
            context,
            queue,
            program,
            empty,
        })
    }

    fn device_description(&self) -> String {
        let d = self.context.device();
        format!("{} ({})", d.description(), self.platform.name())
    }

    fn device(&self) -> OxrtDevice {
        OxrtDevice {
            device_type: device_type::EXT_DEV,
            device_id: self.context.device().id as i32,
        }
    }

    fn capability(&self, model: &[u8]) -> Outcome<Vec<i64>> {
        let (graph, opsets) = decode(model)?;
        let facts = facts(&graph);
        Ok(graph
            .node
            .iter()
            .enumerate()
            .map(|(i, n)| {
                if check(&view(n, &opsets, &facts)).is_ok() {
                    i as i64
                } else {
                    -1
                }
            })
            .collect())
    }

    fn create_kernel(&self, model: &[u8]) -> Outcome<FpgaKernel> {
        let (graph, opsets) = decode(model)?;
        let [node] = graph.node.as_slice() else {
            return Err(Failure::unsupported(
                "fpga-sim compiles one node per kernel",
            ));
        };
        let facts = facts(&graph);
        let v = view(node, &opsets, &facts);
        check(&v).map_err(Failure::unsupported)?;
        let runtime: Vec<&str> = graph.input.iter().map(|i| i.name()).collect();
        let initializers: HashMap<&str, &TensorProto> =
            graph.initializer.iter().map(|t| (t.name(), t)).collect();
        let mut sources = Vec::with_capacity(node.input.len());
        let mut constants = HashMap::new();
        let mut host_constants = Constants::new();
        let memory = self.context.memory().clone();
        for (pos, name) in node.input.iter().enumerate() {
            if name.is_empty() {
                sources.push(Source::Absent);
            } else if let Some(t) = initializers.get(name.as_str()) {
                let (meta, bytes) = tensor_bytes(t)?;
                let buf = if bytes.is_empty() {
                    self.empty
                } else {
                    memory
                        .alloc(bytes.len())
                        .map_err(|e| Failure::new(oxrt_provider_abi::OxrtStatus::OutOfMemory, e))?
                };
                if !bytes.is_empty() {
                    self.queue.write_buffer(buf, &bytes)?;
                }
                constants.insert(pos, (meta.clone(), buf));
                host_constants.insert(pos, (meta, bytes));
                sources.push(Source::Constant);
            } else {
                let i = runtime.iter().position(|r| r == name).ok_or_else(|| {
                    Failure::invalid(format!(
                        "input '{name}' is neither a graph input nor an initializer"
                    ))
                })?;
                sources.push(Source::Runtime(i));
            }
        }
        let op = (family_of(node.op_type()).ok_or("unknown op")?.compile)(&v, &host_constants)?;
        Ok(FpgaKernel {
            node: node.name().to_string(),
            op,
            sources,
            constants,
            host_constants,
            outputs: graph.output.len(),
            memory,
        })
    }

    fn compute(
        &self,
        kernel: &FpgaKernel,
        inputs: &[TensorDesc],
        outputs: &mut Outputs<'_>,
        profile: &mut OxrtProfile,
    ) -> Outcome<()> {
        let memory = self.context.memory();
        let mut metas = Vec::with_capacity(kernel.sources.len());
        let mut buffers = Vec::with_capacity(kernel.sources.len());
        for (pos, s) in kernel.sources.iter().enumerate() {
            match s {
                Source::Absent => {
                    metas.push(None);
                    buffers.push(None);
                }
                Source::Constant => {
                    let (meta, buf) = kernel.constants.get(&pos).ok_or("constant missing")?;
                    metas.push(Some(meta.clone()));
                    buffers.push(Some(*buf));
                }
                Source::Runtime(i) => {
                    let t = inputs
                        .get(*i)
                        .ok_or_else(|| Failure::invalid(format!("input #{i} was not passed")))?;
                    if t.device.device_type != device_type::EXT_DEV {
                        return Err(Failure::invalid(format!(
                            "input #{i} is not in fpga-sim device memory"
                        )));
                    }
                    let elem = Elem::from_abi(t.dtype).ok_or_else(|| {
                        Failure::unsupported(format!("input #{i} has element type {:?}", t.dtype))
                    })?;
                    let shape = t
                        .shape
                        .iter()
                        .map(|&d| usize::try_from(d))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|_| Failure::invalid("negative dimension"))?;
                    let meta = Meta { elem, shape };
                    let buf = if meta.bytes() == 0 {
                        self.empty
                    } else {
                        memory.buffer(t.data as u64, meta.bytes())?
                    };
                    metas.push(Some(meta));
                    buffers.push(Some(buf));
                }
            }
        }
        let launch = kernel
            .op
            .plan(&metas, &kernel.host_constants)
            .map_err(|e| Failure::invalid(format!("node '{}': {e}", kernel.node)))?;
        if launch.outputs.len() != kernel.outputs || outputs.len() != kernel.outputs {
            return Err(Failure::invalid(format!(
                "node '{}': the kernel makes {} outputs, the host asked for {}",
                kernel.node,
                launch.outputs.len(),
                outputs.len()
            )));
        }
        let mut out_buffers = Vec::with_capacity(launch.outputs.len());
        for (i, meta) in launch.outputs.iter().enumerate() {
            let shape: Vec<i64> = meta.shape.iter().map(|&d| d as i64).collect();
            let t = outputs.alloc(i, meta.elem.abi(), &shape)?;
            out_buffers.push(if meta.bytes() == 0 {
                None
            } else {
                Some(memory.buffer(t.data as u64, meta.bytes())?)
            });
        }
        if out_buffers.iter().all(Option::is_none) {
            // Nothing to compute for empty outputs.
            return Ok(());
        }
        let placeholder = launch
            .inputs
            .iter()
            .flatten()
            .find_map(|&p| buffers[p])
            .unwrap_or(self.empty);
        let mut k = self.program.create_kernel(launch.kernel)?;
        let mut args = Vec::new();
        for p in &launch.inputs {
            args.push(Arg::Buffer(
                p.and_then(|p| buffers.get(p).copied().flatten())
                    .unwrap_or(placeholder),
            ));
        }
        for b in out_buffers {
            args.push(Arg::Buffer(
                b.ok_or("an empty output next to a non-empty one")?,
            ));
        }
        args.extend(launch.scalars);
        k.set_args(args)?;
        let event = self
            .queue
            .enqueue_nd_range(&k, launch.global)
            .map_err(|e| Failure::invalid(format!("node '{}': {e}", kernel.node)))?;
        profile.device_ns = event.duration_ns();
        Ok(())
    }

    fn alloc(&self, bytes: usize) -> Outcome<*mut c_void> {
        let b = self
            .context
            .create_buffer(bytes)
            .map_err(|e| Failure::new(oxrt_provider_abi::OxrtStatus::OutOfMemory, e))?;
        // Device addresses are opaque handles, never dereferenced by the host.
        Ok(b.addr as usize as *mut c_void)
    }

    fn free(&self, ptr: *mut c_void) {
        let _ = self.context.memory().free(ptr as u64);
    }

    fn copy_to_device(
        &self,
        dst: *mut c_void,
        src: &[u8],
        profile: &mut OxrtProfile,
    ) -> Outcome<()> {
        let b = self.context.memory().buffer(dst as u64, src.len())?;
        let e = self.queue.write_buffer(b, src)?;
        profile.device_ns = e.duration_ns();
        profile.bytes_to_device = e.link_bytes;
        Ok(())
    }

    fn copy_to_host(
        &self,
        dst: &mut [u8],
        src: *const c_void,
        profile: &mut OxrtProfile,
    ) -> Outcome<()> {
        let b = self.context.memory().buffer(src as u64, dst.len())?;
        let e = self.queue.read_buffer(b, dst)?;
        profile.device_ns = e.duration_ns();
        profile.bytes_to_host = e.link_bytes;
        Ok(())
    }
}

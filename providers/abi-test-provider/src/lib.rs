//! A provider library for loader tests, written against the ABI alone.
//!
//! It runs `Neg` on f32 tensors in host memory.
//!
//! - `oxrt_provider_entry`: a well-behaved provider. Options `fail_init=1`
//!   and `panic_init=1` make `create` fail or panic; `fail_compute=1` and
//!   `panic_compute=1` make every `compute` fail or panic.
//! - `oxrt_provider_entry_v99`: claims ABI version 99.
//! - `oxrt_provider_entry_panic`: panics inside the entry point.

use oxrt_onnx::proto::ModelProto;
use oxrt_provider_abi::sdk::{
    api_table, entry_impl, guard, Failure, Outcome, Outputs, ProviderImpl, TensorDesc,
};
use oxrt_provider_abi::{export_provider, type_code, OxrtProfile, OxrtProviderApi, OxrtStatus};
use prost::Message;

/// The test provider.
pub struct TestProvider {
    label: String,
    fail_compute: bool,
    panic_compute: bool,
}

/// The one kernel it has: `Neg` on f32.
pub struct NegKernel;

fn decode(model: &[u8]) -> Outcome<ModelProto> {
    ModelProto::decode(model).map_err(|e| Failure::invalid(format!("bad model: {e}")))
}

impl ProviderImpl for TestProvider {
    type Kernel = NegKernel;

    fn create(options: &[(String, String)]) -> Result<Self, String> {
        let get = |k: &str| {
            options
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        if get("panic_init") == Some("1") {
            panic!("panic_init was requested");
        }
        if get("fail_init") == Some("1") {
            return Err("simulated init failure: device 7 is not present".into());
        }
        Ok(Self {
            label: get("label").unwrap_or("default").to_string(),
            fail_compute: get("fail_compute") == Some("1"),
            panic_compute: get("panic_compute") == Some("1"),
        })
    }

    fn device_description(&self) -> String {
        format!("test device ({})", self.label)
    }

    fn capability(&self, model: &[u8]) -> Outcome<Vec<i64>> {
        let model = decode(model)?;
        let graph = model.graph.unwrap_or_default();
        Ok(graph
            .node
            .iter()
            .enumerate()
            .map(|(i, n)| {
                if n.op_type() == "Neg" && n.domain().is_empty() {
                    i as i64
                } else {
                    -1
                }
            })
            .collect())
    }

    fn create_kernel(&self, model: &[u8]) -> Outcome<NegKernel> {
        let graph = decode(model)?.graph.unwrap_or_default();
        match graph.node.as_slice() {
            [n] if n.op_type() == "Neg" => Ok(NegKernel),
            _ => Err(Failure::unsupported("only single Neg nodes are supported")),
        }
    }

    fn compute(
        &self,
        _kernel: &NegKernel,
        inputs: &[TensorDesc],
        outputs: &mut Outputs<'_>,
        _profile: &mut OxrtProfile,
    ) -> Outcome<()> {
        if self.panic_compute {
            panic!("panic_compute was requested");
        }
        if self.fail_compute {
            return Err(Failure::new(
                OxrtStatus::Internal,
                "simulated compute failure: the device fell off the bus",
            ));
        }
        let [x] = inputs else {
            return Err(Failure::invalid("Neg takes one input"));
        };
        if x.dtype.code != type_code::FLOAT || x.dtype.bits != 32 {
            return Err(Failure::unsupported("Neg runs on f32 only"));
        }
        let src = x.host_bytes().ok_or("input is not in host memory")?;
        let mut y = outputs.alloc(0, x.dtype, &x.shape)?;
        let dst = y.host_bytes_mut().ok_or("output is not in host memory")?;
        for (d, s) in dst.chunks_exact_mut(4).zip(src.chunks_exact(4)) {
            let v = f32::from_ne_bytes([s[0], s[1], s[2], s[3]]);
            d.copy_from_slice(&(-v).to_ne_bytes());
        }
        Ok(())
    }
}

export_provider!(TestProvider, name = "abi-test", version = "0.1.0");

static V99: OxrtProviderApi = OxrtProviderApi {
    abi_version: 99,
    ..api_table::<TestProvider>("abi-test-v99", "99.0.0")
};

/// Entry point of a provider built for a future ABI.
///
/// # Safety
/// `out` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn oxrt_provider_entry_v99(
    host: u32,
    out: *mut *const OxrtProviderApi,
) -> OxrtStatus {
    // SAFETY: forwarded contract.
    unsafe { entry_impl(&V99, host, out) }
}

/// Entry point that panics (caught: it returns `Internal`).
///
/// # Safety
/// Never writes through `out`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn oxrt_provider_entry_panic(
    _host: u32,
    _out: *mut *const OxrtProviderApi,
) -> OxrtStatus {
    guard(|| panic!("the entry point panicked"))
}

//! fpga-sim: a simulated FPGA accelerator as an oxrt execution provider.
//!
//! It is written against `oxrt-provider-abi` alone, the way a third party
//! would write a provider, and built both as a shared library (loaded at
//! run time with `--provider path/to/liboxrt_provider_fpga_sim.so`) and as
//! an rlib (the `oxrt` facade's `fpga-sim` feature links it and goes
//! through the same function table, [`provider_api`]).
//!
//! - [`sim`]: the OpenCL-like device: platform, device, context, device
//!   memory, in-order queues with simulated-time events, programs, kernels
//!   and NDRange launches, and the cycle model.
//! - [`ops`]: the operators it runs (Conv, Gemm, MatMul, Relu, Clip, Add,
//!   Mul, MaxPool, AveragePool, GlobalAveragePool, QuantizeLinear,
//!   DequantizeLinear, QLinearConv, QLinearMatMul), each with its device
//!   kernel and the checks that decide which nodes it takes.
//! - [`provider`]: the ABI side: capability, kernel compilation, compute,
//!   device memory and copies.

pub mod ops;
pub mod provider;
pub mod sim;

pub use provider::FpgaSim;

oxrt_provider_abi::export_provider!(
    provider::FpgaSim,
    name = "fpga-sim",
    version = env!("CARGO_PKG_VERSION")
);

/// The provider's function table (what its `oxrt_provider_entry` returns),
/// for hosts that link the provider statically.
pub fn provider_api() -> &'static oxrt_provider_abi::OxrtProviderApi {
    &OXRT_PROVIDER_API
}

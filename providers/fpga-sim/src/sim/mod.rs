//! An OpenCL-like simulated accelerator: a platform with one configurable
//! device, contexts owning a device memory space, in-order command queues
//! whose events carry simulated timestamps, and programs of built-in
//! kernels launched over an NDRange.
//!
//! Kernels really compute (on host threads) with the device's numerics:
//! fp32, fp16 storage with fp32 accumulation, int8 with int32 accumulation.
//! A cycle model turns the work and bytes of each command into simulated
//! time (see [`cost`]).

pub mod cost;
pub mod memory;
pub mod program;
pub mod queue;

pub use cost::{DeviceConfig, Work};
pub use memory::{Buffer, Memory};
pub use program::{Arg, KernelDef, Param, Program, SimKernel};
pub use queue::{CommandQueue, Event};

use std::sync::Arc;

/// The simulated platform: one device per configuration.
#[derive(Debug, Clone)]
pub struct Platform {
    devices: Vec<Device>,
}

impl Platform {
    /// A platform exposing one device with `config`.
    pub fn new(config: DeviceConfig) -> Self {
        Self {
            devices: vec![Device { id: 0, config }],
        }
    }

    /// The platform's name.
    pub fn name(&self) -> &'static str {
        "oxrt simulated FPGA platform"
    }

    /// Its devices.
    pub fn devices(&self) -> &[Device] {
        &self.devices
    }
}

/// A simulated device.
#[derive(Debug, Clone)]
pub struct Device {
    pub id: u32,
    pub config: DeviceConfig,
}

impl Device {
    /// One line describing the device.
    pub fn description(&self) -> String {
        let c = &self.config;
        format!(
            "simulated FPGA #{}: {} MHz, {} DSP MAC units, {} KiB on-chip, {} MiB DDR at {} GB/s, host link {} GB/s",
            self.id,
            c.clock_mhz,
            c.mac_units,
            c.onchip_bytes / 1024,
            c.ddr_bytes / (1024 * 1024),
            c.ddr_gbps,
            c.link_gbps
        )
    }
}

/// A context: a device and its memory space.
#[derive(Debug, Clone)]
pub struct Context {
    device: Device,
    memory: Arc<Memory>,
}

impl Context {
    /// A context on `device` with an empty device memory of its DDR size.
    pub fn new(device: &Device) -> Self {
        Self {
            device: device.clone(),
            memory: Arc::new(Memory::new(device.config.ddr_bytes)),
        }
    }

    /// The context's device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The device memory.
    pub fn memory(&self) -> &Arc<Memory> {
        &self.memory
    }

    /// Allocates a device buffer.
    pub fn create_buffer(&self, bytes: usize) -> Result<Buffer, String> {
        self.memory.alloc(bytes)
    }

    /// A new in-order command queue.
    pub fn create_queue(&self) -> CommandQueue {
        CommandQueue::new(self.clone())
    }
}

//! The device configuration and the cycle model.
//!
//! A command's simulated duration is
//! `launch overhead + max(compute cycles, memory cycles) / clock`, where
//! compute cycles = MACs / (MAC units x lanes per unit for the data type)
//! plus simple operations / MAC units, and memory cycles = DDR bytes /
//! (DDR bandwidth per cycle). Weights larger than the on-chip memory are
//! streamed from DDR once per tile of the output. Host transfers take
//! `link latency + bytes / link bandwidth`.

/// What the simulated device looks like.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceConfig {
    /// Fabric clock in MHz.
    pub clock_mhz: f64,
    /// Number of DSP multiply-accumulate units.
    pub mac_units: u64,
    /// On-chip memory (BRAM/URAM) in bytes.
    pub onchip_bytes: u64,
    /// Device DDR capacity in bytes.
    pub ddr_bytes: u64,
    /// Device DDR bandwidth in GB/s.
    pub ddr_gbps: f64,
    /// Host link (PCIe) bandwidth in GB/s.
    pub link_gbps: f64,
    /// Fixed cost of starting a transfer over the host link, in ns.
    pub link_latency_ns: u64,
    /// Fixed cost of launching a kernel, in cycles.
    pub launch_cycles: u64,
}

impl Default for DeviceConfig {
    /// A mid-range data-center card: 300 MHz, 2048 DSPs, 8 MiB on-chip,
    /// 4 GiB DDR4 at 19.2 GB/s, PCIe Gen3 x8 (about 7.9 GB/s).
    fn default() -> Self {
        Self {
            clock_mhz: 300.0,
            mac_units: 2048,
            onchip_bytes: 8 << 20,
            ddr_bytes: 4 << 30,
            ddr_gbps: 19.2,
            link_gbps: 7.9,
            link_latency_ns: 2_000,
            launch_cycles: 600,
        }
    }
}

/// The arithmetic class of a kernel's MACs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// One fp32 MAC per DSP per cycle.
    F32,
    /// Two fp16 MACs per DSP per cycle.
    F16,
    /// Four int8 MACs per DSP per cycle (int32 accumulation).
    Int8,
}

impl Precision {
    fn lanes(self) -> u64 {
        match self {
            Precision::F32 => 1,
            Precision::F16 => 2,
            Precision::Int8 => 4,
        }
    }
}

/// The work one kernel launch did, as the cycle model sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Work {
    pub precision: Precision,
    /// Multiply-accumulates.
    pub macs: u64,
    /// Other arithmetic (comparisons, adds, conversions).
    pub ops: u64,
    /// Bytes read from and written to DDR (weights counted once).
    pub ddr_bytes: u64,
    /// Bytes of weights the kernel keeps on chip while it runs.
    pub weight_bytes: u64,
}

impl Work {
    /// Work of `precision` with nothing counted yet.
    pub fn new(precision: Precision) -> Self {
        Self {
            precision,
            macs: 0,
            ops: 0,
            ddr_bytes: 0,
            weight_bytes: 0,
        }
    }
}

impl DeviceConfig {
    /// Bytes of DDR traffic per clock cycle.
    fn ddr_bytes_per_cycle(&self) -> f64 {
        self.ddr_gbps * 1e9 / (self.clock_mhz * 1e6)
    }

    /// Simulated cycles of one kernel launch.
    pub fn kernel_cycles(&self, w: &Work) -> u64 {
        let units = self.mac_units.max(1);
        let compute = w.macs.div_ceil(units * w.precision.lanes()) + w.ops.div_ceil(units);
        let tiles = if w.weight_bytes > self.onchip_bytes && self.onchip_bytes > 0 {
            w.weight_bytes.div_ceil(self.onchip_bytes)
        } else {
            1
        };
        let traffic = w.ddr_bytes + w.weight_bytes * (tiles - 1);
        let memory = (traffic as f64 / self.ddr_bytes_per_cycle()).ceil() as u64;
        self.launch_cycles + compute.max(memory)
    }

    /// Nanoseconds of `cycles` at the fabric clock.
    pub fn cycles_to_ns(&self, cycles: u64) -> u64 {
        (cycles as f64 * 1e3 / self.clock_mhz).ceil() as u64
    }

    /// Nanoseconds to move `bytes` over the host link.
    pub fn transfer_ns(&self, bytes: u64) -> u64 {
        self.link_latency_ns + (bytes as f64 / self.link_gbps).ceil() as u64
    }

    /// Reads options (`clock_mhz`, `mac_units`, `onchip_kib`, `ddr_mib`,
    /// `ddr_gbps`, `link_gbps`, `link_latency_ns`, `launch_cycles`); unknown
    /// keys and unusable values are errors naming them.
    pub fn from_options(options: &[(String, String)]) -> Result<Self, String> {
        let mut c = Self::default();
        for (k, v) in options {
            let float = || -> Result<f64, String> {
                v.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x > 0.0)
                    .ok_or_else(|| format!("option {k}={v}: expected a positive number"))
            };
            let int = || -> Result<u64, String> {
                v.parse::<u64>()
                    .ok()
                    .filter(|&x| x > 0)
                    .ok_or_else(|| format!("option {k}={v}: expected a positive integer"))
            };
            let mul = |x: u64, by: u64| {
                x.checked_mul(by)
                    .ok_or_else(|| format!("option {k}={v}: too large"))
            };
            match k.as_str() {
                "clock_mhz" => c.clock_mhz = float()?,
                "mac_units" => c.mac_units = int()?,
                "onchip_kib" => c.onchip_bytes = mul(int()?, 1024)?,
                "ddr_mib" => c.ddr_bytes = mul(int()?, 1 << 20)?,
                "ddr_gbps" => c.ddr_gbps = float()?,
                "link_gbps" => c.link_gbps = float()?,
                "link_latency_ns" => c.link_latency_ns = v.parse().map_err(|_| format!("option {k}={v}: expected an integer"))?,
                "launch_cycles" => c.launch_cycles = v.parse().map_err(|_| format!("option {k}={v}: expected an integer"))?,
                _ => {
                    return Err(format!(
                        "unknown option '{k}' (known: clock_mhz, mac_units, onchip_kib, ddr_mib, ddr_gbps, link_gbps, link_latency_ns, launch_cycles)"
                    ))
                }
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn compute_bound_kernel() {
        let c = DeviceConfig {
            launch_cycles: 0,
            ..Default::default()
        };
        let mut w = Work::new(Precision::F32);
        w.macs = 2048 * 1000;
        assert_eq!(c.kernel_cycles(&w), 1000);
        w.precision = Precision::Int8;
        assert_eq!(c.kernel_cycles(&w), 250);
        // 1000 cycles at 300 MHz.
        assert_eq!(c.cycles_to_ns(1000), 3334);
    }

    #[test]
    fn memory_bound_kernel_and_weight_streaming() {
        let c = DeviceConfig {
            launch_cycles: 0,
            onchip_bytes: 1000,
            ..Default::default()
        };
        // 19.2 GB/s at 300 MHz = 64 bytes per cycle.
        let mut w = Work::new(Precision::F32);
        w.ddr_bytes = 64_000;
        assert_eq!(c.kernel_cycles(&w), 1000);
        // 3000 bytes of weights on 1000 bytes of chip: streamed 3 times.
        w.weight_bytes = 3000;
        assert_eq!(c.kernel_cycles(&w), (64_000 + 6000) / 64 + 1);
    }

    #[test]
    fn options_are_parsed_and_checked() {
        let o = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        assert_eq!(
            DeviceConfig::from_options(&o("mac_units", "64")).map(|c| c.mac_units),
            Ok(64)
        );
        assert_eq!(
            DeviceConfig::from_options(&o("ddr_mib", "16")).map(|c| c.ddr_bytes),
            Ok(16 << 20)
        );
        let e = DeviceConfig::from_options(&o("clock_mhz", "-3")).unwrap_err();
        assert!(e.contains("clock_mhz=-3"), "{e}");
        let e = DeviceConfig::from_options(&o("warp", "9")).unwrap_err();
        assert!(e.contains("unknown option 'warp'"), "{e}");
    }

    #[test]
    fn transfers() {
        let c = DeviceConfig::default();
        assert_eq!(c.transfer_ns(0), 2000);
        assert_eq!(c.transfer_ns(7900), 3000);
    }
}

//! In-order command queues and events with simulated timestamps.
//!
//! Commands execute when they are enqueued (on the calling host thread);
//! the queue's device clock advances by each command's simulated duration,
//! so events report when the command would have run on the device.

use std::sync::{Mutex, RwLockReadGuard, RwLockWriteGuard};

use super::memory::{Block, Buffer};
use super::program::{Arg, Invocation, Param, SimKernel};
use super::Context;

/// A finished command and its simulated time span, in device nanoseconds
/// since the queue was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub command: String,
    pub start_ns: u64,
    pub end_ns: u64,
    /// Bytes moved over the host link by this command.
    pub link_bytes: u64,
}

impl Event {
    /// Simulated duration.
    pub fn duration_ns(&self) -> u64 {
        self.end_ns - self.start_ns
    }
}

/// An in-order queue on a context's device.
#[derive(Debug)]
pub struct CommandQueue {
    context: Context,
    clock_ns: Mutex<u64>,
}

impl CommandQueue {
    pub(crate) fn new(context: Context) -> Self {
        Self {
            context,
            clock_ns: Mutex::new(0),
        }
    }

    /// The queue's context.
    pub fn context(&self) -> &Context {
        &self.context
    }

    fn record(&self, command: String, duration_ns: u64, link_bytes: u64) -> Result<Event, String> {
        let mut clock = self
            .clock_ns
            .lock()
            .map_err(|_| "command queue poisoned".to_string())?;
        let start_ns = *clock;
        *clock += duration_ns;
        Ok(Event {
            command,
            start_ns,
            end_ns: *clock,
            link_bytes,
        })
    }

    /// The device time when every enqueued command has finished.
    pub fn finish(&self) -> u64 {
        self.clock_ns.lock().map(|c| *c).unwrap_or(0)
    }

    /// Copies host bytes to the start of `buffer`.
    pub fn write_buffer(&self, buffer: Buffer, src: &[u8]) -> Result<Event, String> {
        let b = self.context.memory().buffer(buffer.addr, src.len())?;
        let block = self.context.memory().block(b)?;
        let mut guard = block
            .write()
            .map_err(|_| "device buffer poisoned".to_string())?;
        guard.bytes_mut()[..src.len()].copy_from_slice(src);
        let ns = self.context.device().config.transfer_ns(src.len() as u64);
        self.record(format!("write {} bytes", src.len()), ns, src.len() as u64)
    }

    /// Copies the start of `buffer` into host bytes.
    pub fn read_buffer(&self, buffer: Buffer, dst: &mut [u8]) -> Result<Event, String> {
        let b = self.context.memory().buffer(buffer.addr, dst.len())?;
        let block = self.context.memory().block(b)?;
        let guard = block
            .read()
            .map_err(|_| "device buffer poisoned".to_string())?;
        dst.copy_from_slice(&guard.bytes()[..dst.len()]);
        let ns = self.context.device().config.transfer_ns(dst.len() as u64);
        self.record(format!("read {} bytes", dst.len()), ns, dst.len() as u64)
    }

    /// Launches `kernel` over the NDRange `global`; every argument must be
    /// bound and no output may alias another buffer argument.
    pub fn enqueue_nd_range(
        &self,
        kernel: &SimKernel,
        global: [usize; 3],
    ) -> Result<Event, String> {
        let def = kernel.def;
        let mut ins = Vec::new();
        let mut outs = Vec::new();
        let mut scalars = Vec::new();
        for (i, (p, a)) in def.params.iter().zip(&kernel.args).enumerate() {
            let a = a.as_ref().ok_or_else(|| {
                format!("kernel '{}': argument #{i} ({p:?}) is not set", def.name)
            })?;
            match (p, a) {
                (Param::In(_), Arg::Buffer(b)) => ins.push(*b),
                (Param::Out(_), Arg::Buffer(b)) => outs.push(*b),
                (Param::Scalar(_), a) => scalars.push(a),
                _ => {
                    return Err(format!(
                        "kernel '{}': argument #{i} has the wrong kind",
                        def.name
                    ))
                }
            }
        }
        for o in &outs {
            if ins
                .iter()
                .chain(outs.iter().filter(|x| *x != o))
                .any(|b| b.addr == o.addr)
            {
                return Err(format!(
                    "kernel '{}': output buffer {:#x} aliases another argument",
                    def.name, o.addr
                ));
            }
        }
        let memory = self.context.memory();
        let in_blocks = ins
            .iter()
            .map(|b| memory.block(*b))
            .collect::<Result<Vec<_>, _>>()?;
        let out_blocks = outs
            .iter()
            .map(|b| memory.block(*b))
            .collect::<Result<Vec<_>, _>>()?;
        let poisoned = "device buffer poisoned".to_string();
        let in_guards: Vec<RwLockReadGuard<'_, Block>> = in_blocks
            .iter()
            .map(|b| b.read().map_err(|_| poisoned.clone()))
            .collect::<Result<_, _>>()?;
        let mut out_guards: Vec<RwLockWriteGuard<'_, Block>> = out_blocks
            .iter()
            .map(|b| b.write().map_err(|_| poisoned.clone()))
            .collect::<Result<_, _>>()?;
        let mut inv = Invocation {
            inputs: in_guards.iter().map(|g| g.bytes()).collect(),
            outputs: out_guards.iter_mut().map(|g| g.bytes_mut()).collect(),
            scalars,
            global,
        };
        let work = (def.body)(&mut inv).map_err(|e| format!("kernel '{}': {e}", def.name))?;
        let config = &self.context.device().config;
        let ns = config.cycles_to_ns(config.kernel_cycles(&work));
        self.record(format!("{} {:?}", def.name, global), ns, 0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::sim::cost::{Precision, Work};
    use crate::sim::program::{KernelDef, Program};
    use crate::sim::{DeviceConfig, Platform};

    fn double(inv: &mut Invocation<'_>) -> Result<Work, String> {
        let factor = inv.floats(0)?[0];
        let (src, dst) = (inv.inputs[0], &mut inv.outputs[0]);
        for (d, s) in dst.chunks_exact_mut(4).zip(src.chunks_exact(4)) {
            let v = f32::from_ne_bytes([s[0], s[1], s[2], s[3]]) * factor;
            d.copy_from_slice(&v.to_ne_bytes());
        }
        let mut w = Work::new(Precision::F32);
        w.ops = (src.len() / 4) as u64;
        w.ddr_bytes = (src.len() * 2) as u64;
        Ok(w)
    }

    static SCALE: KernelDef = KernelDef {
        name: "scale",
        params: &[Param::In("x"), Param::Out("y"), Param::Scalar("factor")],
        body: double,
    };

    #[test]
    fn write_launch_read_with_simulated_time() {
        let platform = Platform::new(DeviceConfig::default());
        let ctx = crate::sim::Context::new(&platform.devices()[0]);
        let q = ctx.create_queue();
        let program = Program::from_builtin(&[&SCALE]);
        let x = ctx.create_buffer(8).unwrap();
        let y = ctx.create_buffer(8).unwrap();
        let src: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        let e1 = q.write_buffer(x, &src).unwrap();
        let mut k = program.create_kernel("scale").unwrap();
        assert!(q
            .enqueue_nd_range(&k, [2, 1, 1])
            .unwrap_err()
            .contains("not set"));
        k.set_args(vec![Arg::Buffer(x), Arg::Buffer(y), Arg::Floats(vec![3.0])])
            .unwrap();
        let e2 = q.enqueue_nd_range(&k, [2, 1, 1]).unwrap();
        let mut out = [0u8; 8];
        let e3 = q.read_buffer(y, &mut out).unwrap();
        assert_eq!(out[..4], 4.5f32.to_ne_bytes());
        assert_eq!(out[4..], (-6.0f32).to_ne_bytes());
        // In order: each command starts when the previous one ends.
        assert_eq!(e1.start_ns, 0);
        assert_eq!(e2.start_ns, e1.end_ns);
        assert_eq!(e3.start_ns, e2.end_ns);
        assert_eq!(e1.duration_ns(), DeviceConfig::default().transfer_ns(8));
        assert_eq!(q.finish(), e3.end_ns);
        // An output may not alias an input.
        k.set_arg(1, Arg::Buffer(x)).unwrap();
        assert!(q
            .enqueue_nd_range(&k, [2, 1, 1])
            .unwrap_err()
            .contains("aliases"));
        assert!(k.set_arg(2, Arg::Buffer(x)).is_err());
        assert!(program.create_kernel("nope").is_err());
    }
}

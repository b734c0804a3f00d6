//! Device memory: a separate address space with a capacity limit. Device
//! addresses are handles the host can pass around but never dereference.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

/// Where device addresses start (so they never look like small integers).
const DEVICE_BASE: u64 = 0x0000_7e00_0000_0000;
/// Allocation granularity (DDR burst size).
const ALIGN: u64 = 64;

/// The bytes of one buffer, stored 8-byte aligned so kernels can view them
/// as any element type.
#[derive(Debug)]
pub struct Block {
    words: Vec<u64>,
    len: usize,
}

impl Block {
    fn zeroed(len: usize) -> Self {
        Self {
            words: vec![0; len.div_ceil(8)],
            len,
        }
    }

    /// The buffer's bytes.
    pub fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }

    /// The buffer's bytes, writable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut(&mut self.words)[..self.len]
    }
}

/// A device buffer: an address and a size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Buffer {
    pub addr: u64,
    pub size: usize,
}

#[derive(Debug, Default)]
struct State {
    blocks: HashMap<u64, Arc<RwLock<Block>>>,
    sizes: HashMap<u64, usize>,
    used: u64,
    next: u64,
}

/// A device memory space.
#[derive(Debug)]
pub struct Memory {
    capacity: u64,
    state: Mutex<State>,
}

impl Memory {
    /// An empty memory of `capacity` bytes.
    pub fn new(capacity: u64) -> Self {
        Self {
            capacity,
            state: Mutex::new(State {
                next: DEVICE_BASE,
                ..Default::default()
            }),
        }
    }

    fn state(&self) -> Result<std::sync::MutexGuard<'_, State>, String> {
        self.state
            .lock()
            .map_err(|_| "device memory state is poisoned".to_string())
    }

    /// Allocates `bytes` (zeroed); fails when the device is full.
    pub fn alloc(&self, bytes: usize) -> Result<Buffer, String> {
        let mut s = self.state()?;
        let size = (bytes as u64).max(1).div_ceil(ALIGN) * ALIGN;
        if s.used + size > self.capacity {
            return Err(format!(
                "device out of memory: {bytes} bytes requested, {} of {} bytes in use",
                s.used, self.capacity
            ));
        }
        let addr = s.next;
        s.next += size;
        s.used += size;
        s.blocks
            .insert(addr, Arc::new(RwLock::new(Block::zeroed(bytes))));
        s.sizes.insert(addr, bytes);
        Ok(Buffer { addr, size: bytes })
    }

    /// Frees the buffer at `addr`; unknown addresses are an error.
    pub fn free(&self, addr: u64) -> Result<(), String> {
        let mut s = self.state()?;
        let size = s
            .sizes
            .remove(&addr)
            .ok_or_else(|| format!("free of unknown device address {addr:#x}"))?;
        s.blocks.remove(&addr);
        s.used -= (size as u64).max(1).div_ceil(ALIGN) * ALIGN;
        Ok(())
    }

    /// The buffer at `addr`, checked to hold at least `min_size` bytes.
    pub fn buffer(&self, addr: u64, min_size: usize) -> Result<Buffer, String> {
        let s = self.state()?;
        let size = *s
            .sizes
            .get(&addr)
            .ok_or_else(|| format!("unknown device address {addr:#x}"))?;
        if size < min_size {
            return Err(format!(
                "device buffer {addr:#x} holds {size} bytes, {min_size} needed"
            ));
        }
        Ok(Buffer { addr, size })
    }

    /// The storage of a buffer, for commands to lock.
    pub fn block(&self, b: Buffer) -> Result<Arc<RwLock<Block>>, String> {
        self.state()?
            .blocks
            .get(&b.addr)
            .cloned()
            .ok_or_else(|| format!("unknown device address {:#x}", b.addr))
    }

    /// Bytes in use (including alignment).
    pub fn used(&self) -> u64 {
        self.state().map(|s| s.used).unwrap_or(0)
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn capacity_is_enforced_and_freed_memory_is_reusable() {
        let m = Memory::new(256);
        let a = m.alloc(100).unwrap();
        let b = m.alloc(100).unwrap();
        assert_ne!(a.addr, b.addr);
        assert!(a.addr >= DEVICE_BASE);
        assert_eq!(m.used(), 256);
        let e = m.alloc(1).unwrap_err();
        assert!(e.contains("out of memory"), "{e}");
        m.free(a.addr).unwrap();
        m.alloc(64).unwrap();
        assert!(m
            .free(a.addr)
            .unwrap_err()
            .contains("unknown device address"));
    }

    #[test]
    fn buffers_hold_bytes() {
        let m = Memory::new(1 << 20);
        let b = m.alloc(5).unwrap();
        let block = m.block(b).unwrap();
        block.write().unwrap().bytes_mut().copy_from_slice(b"hello");
        assert_eq!(block.read().unwrap().bytes(), b"hello");
        assert!(m.buffer(b.addr, 6).unwrap_err().contains("holds 5 bytes"));
    }
}

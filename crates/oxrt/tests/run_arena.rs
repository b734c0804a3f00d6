//! The run arena, measured with a counting allocator: once a session has
//! run a model with static shapes, later runs take their tensor buffers
//! from the arena and allocate only a small fraction of the bytes their
//! values occupy (what is left: the fed copy, the returned output, small
//! per-node vectors of shapes and indices). One test in this binary, so
//! no other test's allocations are counted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::read_npy;
use oxrt::{OptimizationLevel, Session};

/// The system allocator, counting the bytes it hands out.
struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged (so `System`'s guarantees hold) and only adds to a counter.
// Exercised by every allocation of this test binary.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller upholds `alloc`'s contract; passed through.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size.saturating_sub(layout.size()), Ordering::Relaxed);
        // SAFETY: `ptr` came from `System` with `layout`; passed through.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Bytes allocated while `f` runs.
fn allocated_by<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = ALLOCATED.load(Ordering::Relaxed);
    let r = f();
    (r, ALLOCATED.load(Ordering::Relaxed) - before)
}

#[test]
fn later_runs_take_their_buffers_from_the_arena() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models");
    let image = read_npy(&dir.join("cnn.in.image.npy"));
    let batch = image.shape()[0];
    let plan_dims = HashMap::from([("batch".to_string(), batch)]);
    for level in [OptimizationLevel::Disabled, OptimizationLevel::All] {
        let make = |limit: Option<usize>| {
            let b = Session::builder()
                .with_intra_threads(1)
                .with_optimization_level(level);
            let b = match limit {
                Some(l) => b.with_arena_limit(l),
                None => b,
            };
            b.commit_from_file(dir.join("cnn.onnx")).unwrap()
        };
        let session = make(None);
        let feeds = || vec![("image".to_string(), image.clone())];
        let first = session.run(feeds()).unwrap();
        let after_first = session.arena_stats().unwrap();
        let (second, bytes) = allocated_by(|| session.run(feeds()).unwrap());
        let stats = session.arena_stats().unwrap();
        assert_eq!(first.get("logits"), second.get("logits"), "{level}");

        // Every buffer the second run asked for came back from the arena,
        // but for the graph output handed to the caller (and the released
        // feed's buffer took that one's place).
        let reused = stats.reused - after_first.reused;
        let fresh = stats.allocated - after_first.allocated;
        assert!(reused >= 5, "{level}: {reused} reused");
        assert!(
            fresh <= 1,
            "{level}: {fresh} fresh buffers in the second run"
        );

        // Bytes: less than the run's values occupy (what is left is the
        // fed copy, the output and small per-node vectors; at level all
        // the fused residual sums leave few values to compare).
        let plan = session.memory_plan(&plan_dims);
        eprintln!(
            "{level}: warm run {bytes} bytes, values {}",
            plan.unplanned_bytes
        );
        assert!(plan.unplanned_bytes > 0);
        assert!(
            bytes < plan.unplanned_bytes,
            "{level}: the second run allocated {bytes} bytes; its values hold {}",
            plan.unplanned_bytes
        );

        // Without the arena the same run allocates every value anew.
        let plain = make(Some(0));
        assert!(plain.arena_stats().is_none());
        plain.run(feeds()).unwrap();
        let (_, plain_bytes) = allocated_by(|| plain.run(feeds()).unwrap());
        eprintln!("{level}: without the arena {plain_bytes} bytes");
        // (Concat with a batch gathered through a 64 KB index vector per
        // run until it copied whole blocks: 113 KB per warm run, 4x less
        // than without the arena; now 15-25 KB.)
        assert!(
            plain_bytes > 10 * bytes,
            "{level}: {plain_bytes} bytes without the arena, {bytes} with"
        );
    }
}

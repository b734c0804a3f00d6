//! The run arena: tensor buffers of values a run released, handed back out
//! to the kernels of later steps and later runs.
//!
//! A session owns one [`Arena`]. While a step runs, the arena is the
//! thread's current one, and kernels take their output and scratch buffers
//! through [`buffer`] / [`zeroed`] (and [`Tensor::zeros`](crate::Tensor::zeros)):
//! a recycled buffer of the same element type and a fitting capacity when
//! there is one, a fresh allocation otherwise. The executor returns each
//! value's buffer when the memory plan releases it. With static shapes the
//! same buffers serve every run: after the first, a run allocates only the
//! graph outputs it hands to the caller.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::tensor::{Element, Storage};

/// Buffers of released values, kept for reuse up to a byte limit.
#[derive(Debug)]
pub struct Arena {
    free: Mutex<FreeList>,
    limit: usize,
    runs: AtomicU64,
    reused: AtomicU64,
    allocated: AtomicU64,
}

/// Free buffers, each with the run count when it came back, and their
/// total bytes.
#[derive(Debug, Default)]
struct FreeList {
    buffers: Vec<(Storage, u64)>,
    bytes: usize,
}

/// What an [`Arena`] has served so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArenaStats {
    /// Buffer requests served with a recycled buffer.
    pub reused: u64,
    /// Buffer requests that needed a fresh allocation.
    pub allocated: u64,
    /// Bytes held by the arena's free buffers now.
    pub pooled_bytes: usize,
    /// Free buffers held now.
    pub pooled_buffers: usize,
}

/// Bytes an arena keeps when nothing else is said (1 GiB).
pub const DEFAULT_LIMIT: usize = 1 << 30;

/// A free buffer no request took for this many runs is dropped (a run's
/// fed inputs come back but may fit no later request).
const KEEP_RUNS: u64 = 2;

/// A recycled buffer serves a request when its capacity is at least the
/// request and at most this many times it (a small tensor never pins a
/// large buffer).
const MAX_WASTE: usize = 2;

impl Arena {
    /// An empty arena that keeps at most `limit` bytes of free buffers.
    pub fn new(limit: usize) -> Self {
        Self {
            free: Mutex::new(FreeList::default()),
            limit,
            runs: AtomicU64::new(0),
            reused: AtomicU64::new(0),
            allocated: AtomicU64::new(0),
        }
    }

    /// Counts so far.
    pub fn stats(&self) -> ArenaStats {
        let (pooled_bytes, pooled_buffers) = self
            .free
            .lock()
            .map(|f| (f.bytes, f.buffers.len()))
            .unwrap_or_default();
        ArenaStats {
            reused: self.reused.load(Ordering::Relaxed),
            allocated: self.allocated.load(Ordering::Relaxed),
            pooled_bytes,
            pooled_buffers,
        }
    }

    /// An empty vector with room for `len` elements: the smallest fitting
    /// recycled buffer of `T`, else a new one.
    pub fn take<T: Element>(&self, len: usize) -> Vec<T> {
        if len == 0 {
            return Vec::new();
        }
        if let Some(mut v) = self.take_recycled::<T>(len) {
            v.clear();
            self.reused.fetch_add(1, Ordering::Relaxed);
            return v;
        }
        self.allocated.fetch_add(1, Ordering::Relaxed);
        Vec::with_capacity(len)
    }

    /// `len` elements whose values are whatever the buffer held before
    /// (`fill` past its earlier length): the smallest fitting recycled
    /// buffer of `T`, else `len` copies of `fill`. For outputs a kernel
    /// overwrites in full, saving the pass that would fill them first.
    pub fn take_stale<T: Element>(&self, len: usize, fill: T) -> Vec<T> {
        if len == 0 {
            return Vec::new();
        }
        let mut v = match self.take_recycled::<T>(len) {
            Some(v) => {
                self.reused.fetch_add(1, Ordering::Relaxed);
                v
            }
            None => {
                self.allocated.fetch_add(1, Ordering::Relaxed);
                Vec::with_capacity(len)
            }
        };
        v.truncate(len);
        v.resize(len, fill);
        v
    }

    fn take_recycled<T: Element>(&self, len: usize) -> Option<Vec<T>> {
        let mut free = self.free.lock().ok()?;
        let best = free
            .buffers
            .iter()
            .enumerate()
            .filter_map(|(i, (s, _))| {
                let cap = T::capacity(s)?;
                (cap >= len && cap <= len.saturating_mul(MAX_WASTE)).then_some((i, cap))
            })
            .min_by_key(|&(_, cap)| cap)
            .map(|(i, _)| i)?;
        let (storage, _) = free.buffers.swap_remove(best);
        free.bytes -= capacity_bytes(&storage);
        T::take(storage)
    }

    /// Marks the end of a run: buffers that came back [`KEEP_RUNS`] runs
    /// ago and were not taken since are dropped.
    pub fn end_run(&self) {
        let now = self.runs.fetch_add(1, Ordering::Relaxed) + 1;
        if let Ok(mut free) = self.free.lock() {
            free.buffers.retain(|&(_, at)| at + KEEP_RUNS >= now);
            free.bytes = free.buffers.iter().map(|(s, _)| capacity_bytes(s)).sum();
        }
    }

    /// Keeps `storage` for reuse (numeric buffers only, while the arena
    /// holds less than its limit); drops it otherwise.
    pub fn give(&self, storage: Storage) {
        let bytes = capacity_bytes(&storage);
        if bytes == 0 || matches!(storage, Storage::String(_)) {
            return;
        }
        if let Ok(mut free) = self.free.lock() {
            if free.bytes + bytes <= self.limit {
                free.bytes += bytes;
                free.buffers
                    .push((storage, self.runs.load(Ordering::Relaxed)));
            }
        }
    }
}

/// Bytes of the allocation behind `storage` (its capacity, not its length).
fn capacity_bytes(storage: &Storage) -> usize {
    fn of<T>(v: &Vec<T>) -> usize {
        v.capacity() * std::mem::size_of::<T>()
    }
    match storage {
        Storage::F32(v) => of(v),
        Storage::F64(v) => of(v),
        Storage::F16(v) => of(v),
        Storage::BF16(v) => of(v),
        Storage::I8(v) => of(v),
        Storage::I16(v) => of(v),
        Storage::I32(v) => of(v),
        Storage::I64(v) => of(v),
        Storage::U8(v) => of(v),
        Storage::U16(v) => of(v),
        Storage::U32(v) => of(v),
        Storage::U64(v) => of(v),
        Storage::Bool(v) => of(v),
        Storage::String(v) => of(v),
        Storage::Complex64(v) => of(v),
        Storage::Complex128(v) => of(v),
        Storage::Bits(v) => of(v),
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<Arena>>> = const { RefCell::new(None) };
}

/// Runs `f` with `arena` as this thread's current arena (the previous one
/// is restored afterwards); `None` leaves the current one in place.
pub fn with_arena<R>(arena: Option<&Arc<Arena>>, f: impl FnOnce() -> R) -> R {
    let Some(arena) = arena else {
        return f();
    };
    let previous = CURRENT.with(|c| c.replace(Some(arena.clone())));
    struct Restore(Option<Option<Arc<Arena>>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take().flatten();
            CURRENT.with(|c| *c.borrow_mut() = previous);
        }
    }
    let _restore = Restore(Some(previous));
    f()
}

/// This thread's current arena, if a run set one.
pub fn current() -> Option<Arc<Arena>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// An empty vector with room for `len` elements, from the current arena
/// when there is one.
pub fn buffer<T: Element>(len: usize) -> Vec<T> {
    if len == 0 {
        return Vec::new();
    }
    match current() {
        Some(a) => a.take(len),
        None => Vec::with_capacity(len),
    }
}

/// `len` copies of `value`, in a buffer from the current arena when there
/// is one.
pub fn filled<T: Element>(len: usize, value: T) -> Vec<T> {
    let mut v = buffer(len);
    v.resize(len, value);
    v
}

/// `len` elements of unspecified values (a recycled buffer's earlier
/// contents, or `fill`), from the current arena: only for buffers the
/// caller overwrites in full before anything reads them.
pub fn stale<T: Element>(len: usize, fill: T) -> Vec<T> {
    match current() {
        Some(a) => a.take_stale(len, fill),
        None => vec![fill; len],
    }
}

/// `len` zeros (`T::default()`), in a buffer from the current arena.
pub fn zeroed<T: Element + Default>(len: usize) -> Vec<T> {
    filled(len, T::default())
}

/// A copy of `x`, in a buffer from the current arena.
pub fn copied<T: Element>(x: &[T]) -> Vec<T> {
    let mut v = buffer(x.len());
    v.extend_from_slice(x);
    v
}

/// Returns a kernel's scratch buffer to the current arena (dropped when
/// there is none).
pub fn recycle<T: Element>(v: Vec<T>) {
    if let Some(a) = current() {
        a.give(T::store(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_buffer_has_the_asked_length_and_reuses_storage() {
        let arena = Arc::new(Arena::new(DEFAULT_LIMIT));
        with_arena(Some(&arena), || {
            // Fresh: default values.
            let v: Vec<f32> = stale(6, 0.0);
            assert_eq!(v, [0.0; 6]);
            recycle(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]);
            // Shorter than the recycled buffer: its first values, truncated.
            let short: Vec<f32> = stale(4, 0.0);
            assert_eq!(short, [1.0, 2.0, 3.0, 4.0]);
            // Longer than the earlier contents (within capacity): the
            // rest is default.
            let mut grown = Vec::with_capacity(8);
            grown.extend_from_slice(&[7.0f32, 8.0]);
            recycle(grown);
            let long: Vec<f32> = stale(5, 0.0);
            assert_eq!(long, [7.0, 8.0, 0.0, 0.0, 0.0]);
        });
        let s = arena.stats();
        assert_eq!((s.reused, s.allocated), (2, 1));
        // Without an arena: default values.
        assert_eq!(stale(3, 9i32), [9, 9, 9]);
    }

    #[test]
    fn a_released_buffer_serves_the_next_request_of_its_type() {
        let arena = Arc::new(Arena::new(DEFAULT_LIMIT));
        let (first_ptr, second_ptr) = with_arena(Some(&arena), || {
            let v: Vec<f32> = zeroed(1000);
            let p = v.as_ptr();
            recycle(v);
            // Another element type does not take it.
            let other: Vec<i64> = buffer(100);
            assert_eq!(other.capacity(), 100);
            let again: Vec<f32> = zeroed(900);
            assert_eq!(again.len(), 900);
            assert!(again.iter().all(|&x| x == 0.0));
            (p, again.as_ptr())
        });
        assert_eq!(first_ptr, second_ptr);
        let s = arena.stats();
        assert_eq!((s.reused, s.allocated, s.pooled_buffers), (1, 2, 0));
    }

    #[test]
    fn small_requests_do_not_take_large_buffers_and_the_limit_holds() {
        let arena = Arena::new(4096);
        arena.give(Storage::F32(Vec::with_capacity(1000)));
        assert_eq!(arena.stats().pooled_bytes, 4000);
        // Over the limit: dropped.
        arena.give(Storage::F32(Vec::with_capacity(100)));
        assert_eq!(arena.stats().pooled_buffers, 1);
        let small: Vec<f32> = arena.take(10);
        assert_eq!(small.capacity(), 10);
        let fits: Vec<f32> = arena.take(600);
        assert!(fits.capacity() >= 1000);
        assert_eq!(arena.stats().pooled_bytes, 0);
        // Strings are never kept.
        arena.give(Storage::String(vec![String::new(); 4]));
        assert_eq!(arena.stats().pooled_buffers, 0);
    }

    #[test]
    fn buffers_no_run_takes_are_dropped() {
        let arena = Arena::new(DEFAULT_LIMIT);
        arena.give(Storage::I32(Vec::with_capacity(8)));
        arena.end_run();
        arena.end_run();
        assert_eq!(arena.stats().pooled_buffers, 1);
        // Taken and given back: kept afresh.
        let v: Vec<i32> = arena.take(8);
        arena.give(Storage::I32(v));
        arena.end_run();
        arena.end_run();
        assert_eq!(arena.stats().pooled_buffers, 1);
        arena.end_run();
        assert_eq!(arena.stats().pooled_buffers, 0);
    }

    #[test]
    fn without_a_current_arena_buffers_are_plain_allocations() {
        assert!(current().is_none());
        let v: Vec<u8> = zeroed(16);
        assert_eq!(v, vec![0; 16]);
        recycle(v);
        let arena = Arc::new(Arena::new(DEFAULT_LIMIT));
        with_arena(Some(&arena), || {
            with_arena(None, || assert!(current().is_some()));
        });
        assert!(current().is_none());
    }
}

//! Per-thread scratch memory for kernels that need a work buffer on every
//! call: sized by the first run, reused after, so a warm run allocates
//! nothing.

use std::cell::RefCell;

thread_local! {
    static F32: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `f` on this thread's scratch of `len` values (contents unspecified).
///
/// The buffer is taken out for the call and put back after, so a nested
/// call on the same thread (e.g. from a rayon work-stealing wait) gets a
/// fresh one instead of aliasing it.
pub(crate) fn with_f32<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut s = F32.with(|s| std::mem::take(&mut *s.borrow_mut()));
    if s.len() < len {
        s.resize(len, 0.0);
    }
    let out = f(&mut s[..len]);
    F32.with(|c| {
        let mut c = c.borrow_mut();
        // Keep the larger of the two when a nested call left its own.
        if c.len() < s.len() {
            *c = s;
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::with_f32;

    #[test]
    fn reuses_and_nests() {
        let p = with_f32(64, |s| {
            s.fill(1.0);
            // A nested call must not see (or alias) the outer buffer.
            let inner = with_f32(8, |t| {
                assert_eq!(t.len(), 8);
                assert!(t.iter().all(|&v| v == 0.0));
                t.as_ptr() as usize
            });
            assert_ne!(inner, s.as_ptr() as usize);
            s.as_ptr() as usize
        });
        // The larger outer buffer is kept and handed out again.
        let again = with_f32(32, |s| {
            assert_eq!(s.len(), 32);
            assert_eq!(s[0], 1.0);
            s.as_ptr() as usize
        });
        assert_eq!(p, again);
    }
}

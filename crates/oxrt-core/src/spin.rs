//! Keeping a session's intra-op workers awake while it runs.
//!
//! An idle rayon worker sleeps after a few dozen empty rounds, and waking
//! a sleeping thread costs a system call and a reschedule; on a small
//! virtual machine, whose idle virtual CPUs halt, that was measured at
//! 0.15 ms on average (`perf sched latency`, SqueezeNet on two threads:
//! 2.4 wake-ups per run), paid by whichever operator's parallel loop finds
//! a worker asleep, and by the start of every run. As onnxruntime's
//! spinning intra-op threads do (its default), the other workers instead
//! poll for jobs while a run is in progress and for [`GRACE`] after the
//! last one ends, so that back-to-back runs find them awake.
//!
//! Polling runs as a broadcast job on each worker. Rayon takes a worker's
//! broadcast jobs before stealing from other workers, so a poller starts
//! at the top of an idle worker's stack, not under a job of the run it
//! serves; a poller never waits on anything but time, so it cannot hold
//! up what lies beneath it for longer than [`MAX_IDLE`].

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long workers keep polling after the last run ends.
const GRACE: Duration = Duration::from_millis(2);
/// Longest a poller waits without finding work, even during a run (an
/// operator with no parallel part), before it lets the worker sleep.
const MAX_IDLE: Duration = Duration::from_millis(5);

thread_local! {
    /// Whether this thread is executing a run (and so must not poll).
    static EXECUTING: Cell<bool> = const { Cell::new(false) };
}

/// A session's record of its runs and of which workers poll.
pub(crate) struct Awake {
    origin: Instant,
    /// Runs in progress.
    runs: AtomicUsize,
    /// When the last run ended, in nanoseconds since `origin`.
    last_end: AtomicU64,
    /// Per worker index: a poller is running there.
    polling: Box<[AtomicBool]>,
}

impl Awake {
    /// The record for a pool of `threads` workers; `None` for one thread
    /// (nothing to keep awake) or when `enabled` is false.
    pub(crate) fn new(threads: usize, enabled: bool) -> Option<Arc<Self>> {
        (enabled && threads > 1).then(|| {
            Arc::new(Self {
                origin: Instant::now(),
                runs: AtomicUsize::new(0),
                last_end: AtomicU64::new(0),
                polling: (0..threads).map(|_| AtomicBool::new(false)).collect(),
            })
        })
    }

    /// Runs `f` (one run of the session, called on one of the pool's
    /// workers) with the other workers polling.
    pub(crate) fn during<R>(self: &Arc<Self>, f: impl FnOnce() -> R) -> R {
        let Some(me) = rayon::current_thread_index() else {
            return f();
        };
        self.runs.fetch_add(1, Ordering::AcqRel);
        let idle = self
            .polling
            .iter()
            .enumerate()
            .any(|(i, p)| i != me && !p.load(Ordering::Acquire));
        if idle {
            let awake = Arc::clone(self);
            rayon::spawn_broadcast(move |ctx| awake.poll(ctx.index()));
        }
        let was = EXECUTING.with(|e| e.replace(true));
        let _end = End { awake: self, was };
        f()
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Executes the pool's jobs on worker `index` until no run is in
    /// progress and [`GRACE`] has passed since the last ended (or nothing
    /// came for [`MAX_IDLE`]).
    fn poll(&self, index: usize) {
        if EXECUTING.with(Cell::get) {
            return;
        }
        let Some(flag) = self.polling.get(index) else {
            return;
        };
        if flag.swap(true, Ordering::AcqRel) {
            return; // a poller already runs on this worker
        }
        let mut last_work = Instant::now();
        loop {
            match rayon::yield_now() {
                Some(rayon::Yield::Executed) => last_work = Instant::now(),
                Some(rayon::Yield::Idle) => {
                    let ended = self
                        .now()
                        .saturating_sub(self.last_end.load(Ordering::Acquire));
                    let quiet =
                        self.runs.load(Ordering::Acquire) == 0 && ended > GRACE.as_nanos() as u64;
                    if quiet || last_work.elapsed() > MAX_IDLE {
                        break;
                    }
                    std::thread::yield_now();
                }
                None => break,
            }
        }
        flag.store(false, Ordering::Release);
    }
}

/// Ends a run (also when it panics): records when, and lets the thread
/// that executed it poll again.
struct End<'a> {
    awake: &'a Arc<Awake>,
    was: bool,
}

impl Drop for End<'_> {
    fn drop(&mut self) {
        EXECUTING.with(|e| e.set(self.was));
        self.awake
            .last_end
            .store(self.awake.now(), Ordering::Release);
        self.awake.runs.fetch_sub(1, Ordering::AcqRel);
        // This worker polls too once the run has returned (a job queued on
        // it, taken after the run's own job is done).
        if !self.was {
            if let Some(me) = rayon::current_thread_index() {
                let awake = Arc::clone(self.awake);
                rayon::spawn(move || awake.poll(me));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rayon::prelude::*;

    fn pool(n: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    }

    /// Waits (up to a second) until no worker polls.
    fn all_quiet(a: &Awake) -> bool {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(1) {
            if a.polling.iter().all(|p| !p.load(Ordering::Acquire)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }

    #[test]
    fn one_thread_or_disabled_keeps_nothing_awake() {
        assert!(Awake::new(1, true).is_none());
        assert!(Awake::new(4, false).is_none());
    }

    #[test]
    fn concurrent_runs_compute_the_same_and_workers_stop_polling_after() {
        let p = pool(3);
        let awake = Awake::new(3, true).unwrap();
        let want: u64 = (0..100_000u64).sum();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..50 {
                        let got = p.install(|| {
                            awake.during(|| (0..100_000u64).into_par_iter().sum::<u64>())
                        });
                        assert_eq!(got, want);
                    }
                });
            }
        });
        assert_eq!(awake.runs.load(Ordering::Acquire), 0);
        // All stop once the grace period has passed.
        assert!(all_quiet(&awake));
    }

    #[test]
    fn the_other_workers_poll_during_a_run() {
        let p = pool(2);
        let awake = Awake::new(2, true).unwrap();
        let other_polled = p.install(|| {
            awake.during(|| {
                let me = rayon::current_thread_index().unwrap();
                let t = Instant::now();
                while t.elapsed() < Duration::from_secs(1) {
                    if awake.polling[1 - me].load(Ordering::Acquire) {
                        return true;
                    }
                    std::hint::spin_loop();
                }
                false
            })
        });
        assert!(other_polled);
        assert!(all_quiet(&awake));
    }

    #[test]
    fn a_panicking_run_ends_and_lets_the_workers_rest() {
        let p = pool(2);
        let awake = Awake::new(2, true).unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            p.install(|| awake.during(|| panic!("kernel failed")))
        }));
        assert!(r.is_err());
        assert_eq!(awake.runs.load(Ordering::Acquire), 0);
        assert!(all_quiet(&awake));
        // The pool still runs work afterwards.
        let s = p.install(|| awake.during(|| (0..1000u32).into_par_iter().sum::<u32>()));
        assert_eq!(s, 499_500);
    }
}

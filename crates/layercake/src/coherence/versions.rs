//! Entry versions: per-key version numbers that order writes from different instances.

use std::sync::atomic::{AtomicU64, Ordering};

use layercake_core::SharedClock;

/// Generates per-key versions: microseconds of wall time, strictly increasing within the
/// process, so versions from different instances order by time of write.
#[derive(Debug)]
pub(crate) struct Versions {
    last: AtomicU64,
    clock: SharedClock,
}

impl Versions {
    pub(crate) fn new(clock: SharedClock) -> Versions {
        Versions {
            last: AtomicU64::new(0),
            clock,
        }
    }

    pub(crate) fn next(&self) -> u64 {
        let now = self.clock.now().as_millis().saturating_mul(1000);
        let mut prev = self.last.load(Ordering::Relaxed);
        loop {
            let v = now.max(prev + 1);
            match self
                .last
                .compare_exchange_weak(prev, v, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return v,
                Err(p) => prev = p,
            }
        }
    }
}

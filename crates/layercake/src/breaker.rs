//! A per-tier circuit breaker: opens after consecutive transport or timeout failures, lets one
//! probe through after a cool-down (half-open), closes on the probe's success.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Circuit-breaker settings for a tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive temporary failures (unavailable, timeout) that open the breaker.
    pub failure_threshold: u32,
    /// How long the breaker stays open before one probe is let through.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    /// 3 failures, 1 s open.
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 3,
            open_for: Duration::from_secs(1),
        }
    }
}

/// The state of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BreakerState {
    /// Requests flow.
    Closed,
    /// Requests are skipped until the cool-down ends.
    Open,
    /// The cool-down ended; one probe request is allowed.
    HalfOpen,
}

impl BreakerState {
    /// A stable name (`closed`, `open`, `half_open`).
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// What a permission check answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Permit {
    /// The breaker is closed.
    Pass,
    /// The caller is the half-open probe; report its outcome.
    Probe,
    /// The breaker is open: skip the tier.
    Reject,
}

/// Lock-free circuit breaker.
#[derive(Debug)]
pub(crate) struct Breaker {
    cfg: BreakerConfig,
    epoch: Instant,
    failures: AtomicU32,
    /// Milliseconds since `epoch` until which the breaker is open; 0 = closed.
    open_until: AtomicU64,
    probing: AtomicBool,
}

impl Breaker {
    pub(crate) fn new(cfg: BreakerConfig) -> Breaker {
        Breaker {
            cfg,
            epoch: Instant::now(),
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        // +1 so that 0 always means "closed".
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// May a request go to the tier?
    pub(crate) fn permit(&self) -> Permit {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return Permit::Pass;
        }
        if self.now_ms() < until {
            return Permit::Reject;
        }
        if self
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            Permit::Probe
        } else {
            Permit::Reject
        }
    }

    /// Record a success; returns the new state if it changed (the caller counts the
    /// transition).
    ///
    /// Only the half-open probe (`was_probe`) closes an open breaker. A call admitted before
    /// the breaker opened that succeeds after (it started before the outage, or was answered
    /// from before it) says nothing about the tier now: letting it close the breaker sent
    /// traffic to a restarting PostgreSQL during its cool-down.
    pub(crate) fn success(&self, was_probe: bool) -> Option<BreakerState> {
        // Read first: an unconditional store on every success would bounce the cache line
        // between the cores of every caller.
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if self.open_until.load(Ordering::Acquire) != 0 {
            if !was_probe {
                return None;
            }
            self.open_until.store(0, Ordering::Release);
            self.probing.store(false, Ordering::Release);
            return Some(BreakerState::Closed);
        }
        None
    }

    /// Record a temporary failure; returns the new state if it changed.
    pub(crate) fn failure(&self, was_probe: bool) -> Option<BreakerState> {
        if was_probe {
            self.open_until.store(
                self.now_ms() + self.cfg.open_for.as_millis() as u64,
                Ordering::Release,
            );
            self.probing.store(false, Ordering::Release);
            return Some(BreakerState::Open);
        }
        let n = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if n >= self.cfg.failure_threshold
            && self
                .open_until
                .compare_exchange(
                    0,
                    self.now_ms() + self.cfg.open_for.as_millis() as u64,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
        {
            return Some(BreakerState::Open);
        }
        None
    }

    /// A probe ended without a verdict (e.g. cancelled): let another probe through.
    pub(crate) fn release_probe(&self) {
        self.probing.store(false, Ordering::Release);
    }

    /// The current state.
    pub(crate) fn state(&self) -> BreakerState {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            BreakerState::Closed
        } else if self.now_ms() < until {
            BreakerState::Open
        } else {
            BreakerState::HalfOpen
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_then_half_opens_and_closes() {
        let b = Breaker::new(BreakerConfig {
            failure_threshold: 3,
            open_for: Duration::from_millis(30),
        });
        assert_eq!(b.permit(), Permit::Pass);
        assert_eq!(b.failure(false), None);
        assert_eq!(b.failure(false), None);
        assert_eq!(b.failure(false), Some(BreakerState::Open));
        assert_eq!(b.permit(), Permit::Reject);
        assert_eq!(b.state(), BreakerState::Open);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.permit(), Permit::Probe);
        assert_eq!(b.permit(), Permit::Reject, "only one probe");
        assert_eq!(b.failure(true), Some(BreakerState::Open));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.permit(), Permit::Probe);
        assert_eq!(b.success(true), Some(BreakerState::Closed));
        assert_eq!(b.permit(), Permit::Pass);
    }

    #[test]
    fn a_straggler_success_leaves_an_open_breaker_open() {
        let b = Breaker::new(BreakerConfig {
            failure_threshold: 3,
            open_for: Duration::from_millis(30),
        });
        for _ in 0..3 {
            b.failure(false);
        }
        // A call admitted before the breaker opened succeeds now.
        assert_eq!(b.success(false), None);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.permit(), Permit::Reject);
        // Nor does one close it in the half-open state: the probe decides.
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.permit(), Permit::Probe);
        assert_eq!(b.success(false), None);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.success(true), Some(BreakerState::Closed));
    }

    #[test]
    fn success_resets_the_count() {
        let b = Breaker::new(BreakerConfig::default());
        b.failure(false);
        b.failure(false);
        assert_eq!(b.success(false), None);
        b.failure(false);
        b.failure(false);
        assert_eq!(b.state(), BreakerState::Closed);
    }
}

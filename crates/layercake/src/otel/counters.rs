//! The per-cache OpenTelemetry counters: exact atomics bumped on the hot path, indexed by
//! tier, operation, outcome, error kind and breaker state, read when the reader collects.

use std::sync::atomic::{AtomicU64, Ordering};

use layercake_core::ErrorKind;

use crate::breaker::BreakerState;
use crate::stats::Op;
use crate::telemetry::Outcome;

// ------------------------------------------------------------------------------ counters

pub(super) const OPS: usize = Op::ALL.len();
pub(super) const OUTCOMES: usize = Outcome::ALL.len();
/// Tier request outcomes: hit, miss, error, skipped.
pub(super) const REQ_OUTCOMES: [&str; 4] = ["hit", "miss", "error", "skipped"];
pub(super) const REQ_HIT: usize = 0;
pub(super) const REQ_MISS: usize = 1;
pub(super) const REQ_ERROR: usize = 2;
pub(super) const REQ_SKIPPED: usize = 3;
pub(super) const KINDS: [ErrorKind; 10] = [
    ErrorKind::Unavailable,
    ErrorKind::Timeout,
    ErrorKind::CircuitOpen,
    ErrorKind::Codec,
    ErrorKind::Corrupt,
    ErrorKind::InvalidKey,
    ErrorKind::TooLarge,
    ErrorKind::Config,
    ErrorKind::Unsupported,
    ErrorKind::Loader,
];
/// Index of kinds this version does not know (`ErrorKind` is non-exhaustive).
pub(super) const KIND_OTHER: usize = KINDS.len();
pub(super) const STATES: [BreakerState; 3] = [
    BreakerState::Closed,
    BreakerState::Open,
    BreakerState::HalfOpen,
];

pub(super) fn kind_index(k: ErrorKind) -> usize {
    KINDS.iter().position(|x| *x == k).unwrap_or(KIND_OTHER)
}

pub(super) fn state_index(s: BreakerState) -> usize {
    match s {
        BreakerState::Closed => 0,
        BreakerState::Open => 1,
        BreakerState::HalfOpen => 2,
    }
}

pub(super) fn outcome_index(o: Outcome) -> usize {
    o as usize
}

pub(super) fn op_index(op: Op) -> usize {
    op as usize
}

pub(super) fn atomics(n: usize) -> Box<[AtomicU64]> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

#[inline]
pub(super) fn bump(slot: Option<&AtomicU64>, n: u64) {
    if let Some(a) = slot {
        a.fetch_add(n, Ordering::Relaxed);
    }
}

/// The counters behind the observable instruments.
#[derive(Debug)]
pub(crate) struct Counters {
    pub(super) tiers: usize,
    /// `[tier][op][REQ_*]`.
    pub(super) requests: Box<[AtomicU64]>,
    /// `[op][outcome]`.
    pub(super) ops: Box<[AtomicU64]>,
    /// `[tier][kind]` (kinds + other).
    pub(super) errors: Box<[AtomicU64]>,
    /// `[tier][state]`: transitions into each state.
    pub(super) breaker: Box<[AtomicU64]>,
    /// `[tier]`.
    pub(super) write_behind_full: Box<[AtomicU64]>,
    pub(crate) bp_sent: AtomicU64,
    pub(crate) bp_received: AtomicU64,
    pub(crate) bp_publish_failed: AtomicU64,
    pub(crate) bp_lagged: AtomicU64,
    pub(crate) bp_reconnects: AtomicU64,
}

impl Counters {
    pub(super) fn new(tiers: usize) -> Counters {
        Counters {
            tiers,
            requests: atomics(tiers * OPS * REQ_OUTCOMES.len()),
            ops: atomics(OPS * OUTCOMES),
            errors: atomics(tiers * (KINDS.len() + 1)),
            breaker: atomics(tiers * STATES.len()),
            write_behind_full: atomics(tiers),
            bp_sent: AtomicU64::new(0),
            bp_received: AtomicU64::new(0),
            bp_publish_failed: AtomicU64::new(0),
            bp_lagged: AtomicU64::new(0),
            bp_reconnects: AtomicU64::new(0),
        }
    }

    #[inline]
    pub(super) fn request(&self, tier: usize, op: Op, outcome: usize) {
        if tier < self.tiers {
            let i = (tier * OPS + op_index(op)) * REQ_OUTCOMES.len() + outcome;
            bump(self.requests.get(i), 1);
        }
    }

    pub(crate) fn error(&self, tier: usize, kind: ErrorKind) {
        if tier < self.tiers {
            bump(
                self.errors.get(tier * (KINDS.len() + 1) + kind_index(kind)),
                1,
            );
        }
    }

    pub(crate) fn breaker_changed(&self, tier: usize, state: BreakerState) {
        if tier < self.tiers {
            bump(
                self.breaker.get(tier * STATES.len() + state_index(state)),
                1,
            );
        }
    }

    pub(crate) fn write_behind_full(&self, tier: usize) {
        bump(self.write_behind_full.get(tier), 1);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::instruments::Attrs;
    use super::*;

    #[test]
    fn every_error_kind_has_its_slot() {
        for (i, k) in KINDS.iter().enumerate() {
            assert_eq!(kind_index(*k), i);
        }
        let c = Counters::new(2);
        c.error(1, ErrorKind::Timeout);
        c.error(5, ErrorKind::Timeout); // out of range: ignored
        assert_eq!(c.errors[KINDS.len() + 1 + 1].load(Ordering::Relaxed), 1);
        assert_eq!(
            c.errors
                .iter()
                .map(|a| a.load(Ordering::Relaxed))
                .sum::<u64>(),
            1
        );
    }

    #[test]
    fn attribute_sets_line_up_with_counters() {
        let tiers: Vec<Arc<str>> = vec![Arc::from("a"), Arc::from("b")];
        let a = Attrs::new("c", &tiers);
        let c = Counters::new(2);
        assert_eq!(a.requests.len(), c.requests.len());
        assert_eq!(a.ops.len(), c.ops.len());
        assert_eq!(a.errors.len(), c.errors.len());
        assert_eq!(a.breaker.len(), c.breaker.len());
        // tier 1, op get_many, outcome miss
        let i = (OPS + op_index(Op::GetMany)) * REQ_OUTCOMES.len() + REQ_MISS;
        let kv: Vec<String> = a.requests[i].iter().map(|k| k.value.to_string()).collect();
        assert_eq!(kv, ["c", "b", "get_many", "miss"]);
        let i = op_index(Op::Warm) * OUTCOMES + outcome_index(Outcome::Error);
        let kv: Vec<String> = a.ops[i].iter().map(|k| k.value.to_string()).collect();
        assert_eq!(kv, ["c", "warm", "error"]);
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(outcome_index(*o), i);
        }
        for (i, o) in Op::ALL.iter().enumerate() {
            assert_eq!(op_index(*o), i);
        }
    }
}

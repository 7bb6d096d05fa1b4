//! The one counter store of a cache: exact relaxed atomics bumped once per event on the hot
//! path, read by [`Cache::stats`](crate::Cache::stats) and, with the `otel` feature, by the
//! observable instruments at collection time. Nothing here is counted in two places: figures
//! that two readers see differently (a tier's `hits` in `Stats`, the same hits by operation in
//! `layercake.requests`) are sums over the same slots, taken when read.

use std::sync::atomic::{AtomicU64, Ordering};

use layercake_core::ErrorKind;

use crate::breaker::BreakerState;
use crate::stats::Op;
use crate::telemetry::Outcome;

pub(crate) const OPS: usize = Op::ALL.len();
pub(crate) const OUTCOMES: usize = Outcome::ALL.len();
/// Tier request outcomes: hit, miss, error, skipped.
pub(crate) const REQ_OUTCOMES: [&str; 4] = ["hit", "miss", "error", "skipped"];
pub(crate) const REQ_HIT: usize = 0;
pub(crate) const REQ_MISS: usize = 1;
/// Never bumped: a failed lookup is counted once, by kind, in `read_errors`.
pub(crate) const REQ_ERROR: usize = 2;
pub(crate) const REQ_SKIPPED: usize = 3;
const REQS: usize = REQ_OUTCOMES.len();
pub(crate) const KINDS: [ErrorKind; 10] = [
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
pub(crate) const KIND_OTHER: usize = KINDS.len();
/// Error kind slots: the known kinds and "other".
pub(crate) const KIND_SLOTS: usize = KINDS.len() + 1;
pub(crate) const STATES: [BreakerState; 3] = [
    BreakerState::Closed,
    BreakerState::Open,
    BreakerState::HalfOpen,
];

pub(crate) fn kind_index(k: ErrorKind) -> usize {
    KINDS.iter().position(|x| *x == k).unwrap_or(KIND_OTHER)
}

pub(crate) fn state_index(s: BreakerState) -> usize {
    match s {
        BreakerState::Closed => 0,
        BreakerState::Open => 1,
        BreakerState::HalfOpen => 2,
    }
}

pub(crate) fn outcome_index(o: Outcome) -> usize {
    o as usize
}

pub(crate) fn op_index(op: Op) -> usize {
    op as usize
}

fn atomics(n: usize) -> Box<[AtomicU64]> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

#[inline]
fn bump(slot: Option<&AtomicU64>, n: u64) {
    if let Some(a) = slot {
        a.fetch_add(n, Ordering::Relaxed);
    }
}

fn load(slot: Option<&AtomicU64>) -> u64 {
    slot.map_or(0, |a| a.load(Ordering::Relaxed))
}

fn sum(slots: &[AtomicU64]) -> u64 {
    slots.iter().map(|a| a.load(Ordering::Relaxed)).sum()
}

/// One counter per event; see the module documentation.
#[derive(Debug)]
pub(crate) struct Counters {
    tiers: usize,
    /// `[tier][op][REQ_*]`: lookups of reads (the `REQ_ERROR` slot stays 0).
    requests: Box<[AtomicU64]>,
    /// `[tier][op][kind]`: lookups of reads that failed.
    read_errors: Box<[AtomicU64]>,
    /// `[tier][kind]`: other failed tier calls (writes, deletes, invalidations, listings).
    other_errors: Box<[AtomicU64]>,
    /// `[tier]`: other tier calls skipped by an open breaker.
    other_skipped: Box<[AtomicU64]>,
    /// `[tier]`.
    promotions: Box<[AtomicU64]>,
    /// `[tier]`: copies that failed to decode in the composer.
    corrupt: Box<[AtomicU64]>,
    /// `[op][outcome]`: bumped only when OpenTelemetry is attached (its only reader).
    ops: Box<[AtomicU64]>,
    /// `[tier][state]`: transitions into each state.
    breaker: Box<[AtomicU64]>,
    /// `[tier]`.
    write_behind_full: Box<[AtomicU64]>,
    pub(crate) loader_calls: AtomicU64,
    pub(crate) loader_errors: AtomicU64,
    pub(crate) coalesced: AtomicU64,
    pub(crate) stale_served: AtomicU64,
    /// Reads that found nothing in any tier.
    pub(crate) misses: AtomicU64,
    pub(crate) bp_sent: AtomicU64,
    /// Backplane messages applied (bumped with `Release` once the local copies are gone).
    pub(crate) bp_applied: AtomicU64,
    pub(crate) bp_publish_failed: AtomicU64,
    pub(crate) bp_lagged: AtomicU64,
    /// Backplane reconnects and lag events (bumped with `Release` once local tiers dropped).
    pub(crate) bp_resets: AtomicU64,
}

/// The per-tier figures of [`TierStats`](crate::TierStats) that come from the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TierFigures {
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    pub(crate) errors: u64,
    pub(crate) skipped: u64,
    pub(crate) promotions: u64,
    pub(crate) corrupt: u64,
    pub(crate) breaker_transitions: u64,
}

impl Counters {
    pub(crate) fn new(tiers: usize) -> Counters {
        Counters {
            tiers,
            requests: atomics(tiers * OPS * REQS),
            read_errors: atomics(tiers * OPS * KIND_SLOTS),
            other_errors: atomics(tiers * KIND_SLOTS),
            other_skipped: atomics(tiers),
            promotions: atomics(tiers),
            corrupt: atomics(tiers),
            ops: atomics(OPS * OUTCOMES),
            breaker: atomics(tiers * STATES.len()),
            write_behind_full: atomics(tiers),
            loader_calls: AtomicU64::new(0),
            loader_errors: AtomicU64::new(0),
            coalesced: AtomicU64::new(0),
            stale_served: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            bp_sent: AtomicU64::new(0),
            bp_applied: AtomicU64::new(0),
            bp_publish_failed: AtomicU64::new(0),
            bp_lagged: AtomicU64::new(0),
            bp_resets: AtomicU64::new(0),
        }
    }

    /// A lookup of a read at `tier` ended with `outcome` (`REQ_HIT`, `REQ_MISS`, `REQ_SKIPPED`).
    #[inline]
    pub(crate) fn request(&self, tier: usize, op: Op, outcome: usize) {
        if tier < self.tiers {
            bump(
                self.requests
                    .get((tier * OPS + op_index(op)) * REQS + outcome),
                1,
            );
        }
    }

    /// A lookup of a read at `tier` failed.
    pub(crate) fn read_error(&self, tier: usize, op: Op, kind: ErrorKind) {
        if tier < self.tiers {
            let i = (tier * OPS + op_index(op)) * KIND_SLOTS + kind_index(kind);
            bump(self.read_errors.get(i), 1);
        }
    }

    /// Another tier call failed.
    pub(crate) fn error(&self, tier: usize, kind: ErrorKind) {
        if tier < self.tiers {
            bump(
                self.other_errors.get(tier * KIND_SLOTS + kind_index(kind)),
                1,
            );
        }
    }

    /// Another tier call was skipped by an open breaker.
    pub(crate) fn skipped(&self, tier: usize) {
        bump(self.other_skipped.get(tier), 1);
    }

    pub(crate) fn promoted(&self, tier: usize) {
        bump(self.promotions.get(tier), 1);
    }

    pub(crate) fn corrupt(&self, tier: usize) {
        bump(self.corrupt.get(tier), 1);
    }

    #[cfg_attr(
        not(feature = "otel"),
        expect(dead_code, reason = "OpenTelemetry only")
    )]
    #[inline]
    pub(crate) fn op_done(&self, op: Op, outcome: Outcome) {
        bump(
            self.ops
                .get(op_index(op) * OUTCOMES + outcome_index(outcome)),
            1,
        );
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

    /// What `Stats` reports for `tier`.
    pub(crate) fn tier(&self, tier: usize) -> TierFigures {
        if tier >= self.tiers {
            return TierFigures::default();
        }
        let per_op = |slot: usize| -> u64 {
            (0..OPS)
                .map(|op| load(self.requests.get((tier * OPS + op) * REQS + slot)))
                .sum()
        };
        let range = |v: &[AtomicU64], width: usize| -> u64 {
            v.get(tier * width..(tier + 1) * width).map_or(0, sum)
        };
        TierFigures {
            hits: per_op(REQ_HIT),
            misses: per_op(REQ_MISS),
            errors: range(&self.read_errors, OPS * KIND_SLOTS)
                + range(&self.other_errors, KIND_SLOTS),
            skipped: per_op(REQ_SKIPPED) + load(self.other_skipped.get(tier)),
            promotions: load(self.promotions.get(tier)),
            corrupt: load(self.corrupt.get(tier)),
            breaker_transitions: range(&self.breaker, STATES.len()),
        }
    }

    /// `layercake.requests`, `[tier][op][REQ_*]`, the error slot summed from `read_errors`.
    #[cfg_attr(
        not(any(feature = "otel", test)),
        expect(dead_code, reason = "read by the instruments")
    )]
    pub(crate) fn requests(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .requests
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .collect();
        for (i, errors) in self.read_errors.chunks(KIND_SLOTS).enumerate() {
            if let Some(slot) = v.get_mut(i * REQS + REQ_ERROR) {
                *slot = sum(errors);
            }
        }
        v
    }

    /// `layercake.tier.errors`, `[tier][kind]`: other errors plus read errors of every op.
    #[cfg_attr(
        not(any(feature = "otel", test)),
        expect(dead_code, reason = "read by the instruments")
    )]
    pub(crate) fn errors_by_kind(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .other_errors
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .collect();
        for (i, a) in self.read_errors.iter().enumerate() {
            let (tier, kind) = (i / (OPS * KIND_SLOTS), i % KIND_SLOTS);
            if let Some(slot) = v.get_mut(tier * KIND_SLOTS + kind) {
                *slot += a.load(Ordering::Relaxed);
            }
        }
        v
    }

    /// `layercake.operations`, `[op][outcome]`.
    #[cfg_attr(
        not(feature = "otel"),
        expect(dead_code, reason = "read by the instruments")
    )]
    pub(crate) fn ops(&self) -> &[AtomicU64] {
        &self.ops
    }

    /// `layercake.breaker.transitions`, `[tier][state]`.
    #[cfg_attr(
        not(feature = "otel"),
        expect(dead_code, reason = "read by the instruments")
    )]
    pub(crate) fn breaker(&self) -> &[AtomicU64] {
        &self.breaker
    }

    /// `layercake.write_behind.fallbacks` of `tier`.
    #[cfg_attr(
        not(feature = "otel"),
        expect(dead_code, reason = "read by the instruments")
    )]
    pub(crate) fn write_behind_fallbacks(&self, tier: usize) -> u64 {
        load(self.write_behind_full.get(tier))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_kind_has_its_slot() {
        for (i, k) in KINDS.iter().enumerate() {
            assert_eq!(kind_index(*k), i);
        }
        let c = Counters::new(2);
        c.error(1, ErrorKind::Timeout);
        c.error(5, ErrorKind::Timeout); // out of range: ignored
        c.read_error(1, Op::Get, ErrorKind::Timeout);
        c.read_error(0, Op::GetMany, ErrorKind::Unavailable);
        let by_kind = c.errors_by_kind();
        assert_eq!(by_kind[KIND_SLOTS + 1], 2);
        assert_eq!(by_kind[0], 1);
        assert_eq!(by_kind.iter().sum::<u64>(), 3);
        assert_eq!((c.tier(0).errors, c.tier(1).errors), (1, 2));
    }

    #[test]
    fn one_event_one_slot_every_reader_sees_it() {
        let c = Counters::new(2);
        c.request(0, Op::Get, REQ_HIT);
        c.request(0, Op::GetOrCompute, REQ_HIT);
        c.request(1, Op::GetMany, REQ_MISS);
        c.request(1, Op::Get, REQ_SKIPPED);
        c.skipped(1);
        c.read_error(1, Op::GetMany, ErrorKind::Timeout);
        c.breaker_changed(1, BreakerState::Open);
        c.breaker_changed(1, BreakerState::Closed);
        let t0 = c.tier(0);
        assert_eq!((t0.hits, t0.misses, t0.errors, t0.skipped), (2, 0, 0, 0));
        let t1 = c.tier(1);
        assert_eq!((t1.hits, t1.misses, t1.errors, t1.skipped), (0, 1, 1, 2));
        assert_eq!(t1.breaker_transitions, 2);
        let r = c.requests();
        let at = |tier: usize, op: Op, o: usize| r[(tier * OPS + op_index(op)) * REQS + o];
        assert_eq!(at(0, Op::Get, REQ_HIT), 1);
        assert_eq!(at(1, Op::GetMany, REQ_ERROR), 1);
        assert_eq!(at(1, Op::Get, REQ_SKIPPED), 1);
        assert_eq!(
            r.iter().sum::<u64>(),
            5,
            "the other skip is not a read lookup"
        );
    }
}

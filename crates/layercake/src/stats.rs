//! [`Stats`]: a snapshot of what the cache did, without any OpenTelemetry setup.

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hdrhistogram::Histogram;
use parking_lot::Mutex;

use crate::breaker::BreakerState;
use crate::stack::Stack;

/// A public operation of the cache, for latency statistics and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// `get`.
    Get,
    /// `set`.
    Set,
    /// `delete`.
    Delete,
    /// `get_or_compute` (and its optional variant).
    GetOrCompute,
    /// `get_many`.
    GetMany,
    /// `get_or_compute_many`.
    GetOrComputeMany,
    /// `invalidate_prefix` / `invalidate_tag`.
    Invalidate,
    /// `warm`.
    Warm,
}

impl Op {
    /// Every operation, in a fixed order.
    pub const ALL: [Op; 8] = [
        Op::Get,
        Op::Set,
        Op::Delete,
        Op::GetOrCompute,
        Op::GetMany,
        Op::GetOrComputeMany,
        Op::Invalidate,
        Op::Warm,
    ];

    /// A stable name (`get`, `set`, `delete`, `get_or_compute`, `get_many`,
    /// `get_or_compute_many`, `invalidate`, `warm`).
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Set => "set",
            Op::Delete => "delete",
            Op::GetOrCompute => "get_or_compute",
            Op::GetMany => "get_many",
            Op::GetOrComputeMany => "get_or_compute_many",
            Op::Invalidate => "invalidate",
            Op::Warm => "warm",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Latency percentiles of one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Latency {
    /// Operations timed.
    pub count: u64,
    /// Median.
    pub p50: Duration,
    /// 95th percentile.
    pub p95: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest.
    pub max: Duration,
}

/// Counters of one tier.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TierStats {
    /// Tier name.
    pub name: String,
    /// Backend kind.
    pub kind: &'static str,
    /// Reads that found a fresh entry here.
    pub hits: u64,
    /// Reads that found nothing usable here.
    pub misses: u64,
    /// Operations that failed here (timeouts included).
    pub errors: u64,
    /// Operations skipped because the breaker was open.
    pub skipped: u64,
    /// Entries copied into this tier from a lower one.
    pub promotions: u64,
    /// Stored copies that failed to decode and were removed.
    pub corrupt: u64,
    /// The breaker's state now.
    pub breaker: BreakerState,
    /// Breaker state changes since start.
    pub breaker_transitions: u64,
    /// Writes waiting in the write-behind queue now (0 for write-through tiers).
    pub write_behind_depth: usize,
    /// Write-behind writes that failed in the background.
    pub write_behind_failures: u64,
    /// Auto-recovery of this tier: what writes and removals did not reach it.
    pub repairs: RepairStats,
    /// The reads that did not hit here, by reason (failed and skipped reads included); all
    /// zero when [`InsightConfig::miss_reasons`](crate::InsightConfig::miss_reasons) is off.
    pub misses_by_reason: crate::MissReasons,
}

/// The repair record of one tier (auto-recovery; see the write contract on
/// [`Cache`](crate::Cache)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RepairStats {
    /// Notes pending now (keys, selections, or 1 for the whole tier).
    pub pending: usize,
    /// The whole tier is noted (a failed `clear`, or the record overflowed): reads skip the
    /// tier until the repair has cleared it.
    pub whole_tier: bool,
    /// Age of the oldest pending note.
    pub oldest_pending: Option<Duration>,
    /// Notes made since start (a write, removal or `clear` that did not reach the tier).
    pub noted: u64,
    /// Repairs applied (the older copy removed, the selection invalidated, the tier cleared).
    pub applied: u64,
    /// Repair attempts that failed (the tier did not answer yet).
    pub failed: u64,
    /// Notes made obsolete by a later write or removal that reached the tier.
    pub resolved: u64,
    /// Times the record was full and turned into one note for the whole tier.
    pub overflowed: u64,
    /// Notes refused because the record was full (`Overflow::RefuseWrites`): each failed its
    /// call.
    pub refused: u64,
}

impl TierStats {
    /// hits / (hits + misses), 0 when there were no reads.
    pub fn hit_ratio(&self) -> f64 {
        let n = self.hits + self.misses;
        if n == 0 {
            0.0
        } else {
            self.hits as f64 / n as f64
        }
    }
}

/// A snapshot of the cache's statistics: per-tier counters, per-operation latency and loader
/// figures.
///
/// Counters are exact. Latencies are recorded for one operation in [`Stats::SAMPLE_EVERY`]
/// per thread (timing every hit would cost more than the hit itself), so percentiles come
/// from a uniform sample.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// Per tier, in order (L1 first).
    pub tiers: Vec<TierStats>,
    /// Per operation that ran at least once.
    pub latency: Vec<(Op, Latency)>,
    /// Loader calls.
    pub loader_calls: u64,
    /// Loader failures (errors, panics, hard timeouts).
    pub loader_errors: u64,
    /// Loader latency.
    pub loader_latency: Latency,
    /// Calls that shared another call's loader run.
    pub coalesced: u64,
    /// Stale values served by fail-safe.
    pub stale_served: u64,
    /// Reads that found nothing in any tier.
    pub misses: u64,
    /// Backplane messages from other instances applied to the local tiers.
    pub backplane_applied: u64,
    /// Backplane reconnects (or lagged receivers) that dropped the local tiers.
    pub backplane_resets: u64,
}

impl Stats {
    /// One operation in this many is timed (per thread).
    pub const SAMPLE_EVERY: u32 = 4;

    /// The stats of the tier at `position`.
    pub fn tier(&self, position: usize) -> Option<&TierStats> {
        self.tiers.get(position)
    }

    /// The latency of `op`, if it ran.
    pub fn op(&self, op: Op) -> Option<Latency> {
        self.latency.iter().find(|(o, _)| *o == op).map(|(_, l)| *l)
    }

    /// Fraction of reads served by some tier: total hits / (total hits + misses).
    pub fn hit_ratio(&self) -> f64 {
        let hits: u64 = self.tiers.iter().map(|t| t.hits).sum();
        let n = hits + self.misses;
        if n == 0 { 0.0 } else { hits as f64 / n as f64 }
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "tier       kind      hits    misses  errors  hit ratio")?;
        for t in &self.tiers {
            writeln!(
                f,
                "{:<10} {:<8} {:>7} {:>8} {:>7} {:>9.1}%",
                t.name,
                t.kind,
                t.hits,
                t.misses,
                t.errors,
                t.hit_ratio() * 100.0
            )?;
        }
        writeln!(
            f,
            "overall hit ratio {:.1}%, loader calls {}",
            self.hit_ratio() * 100.0,
            self.loader_calls
        )?;
        for t in self.tiers.iter().filter(|t| t.repairs.pending > 0) {
            writeln!(
                f,
                "repairs pending on {}: {}{} (oldest {:.1?})",
                t.name,
                t.repairs.pending,
                if t.repairs.whole_tier {
                    ", the whole tier"
                } else {
                    ""
                },
                t.repairs.oldest_pending.unwrap_or_default()
            )?;
        }
        for (op, l) in &self.latency {
            writeln!(
                f,
                "{:<20} n={:<7} p50={:>9.1?} p95={:>9.1?} p99={:>9.1?}",
                op.as_str(),
                l.count,
                l.p50,
                l.p95,
                l.p99
            )?;
        }
        Ok(())
    }
}

fn new_hist() -> layercake_core::Result<Mutex<Histogram<u64>>> {
    // Microseconds, 1 µs .. 1 hour, 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3)
        .map(Mutex::new)
        .map_err(|e| layercake_core::Error::config(format!("latency histogram: {e}")))
}

/// Records sampled latency histograms (the counters are in [`Counters`](crate::counters)).
#[derive(Debug)]
pub(crate) struct StatsRecorder {
    ops: Vec<Mutex<Histogram<u64>>>,
    loader: Mutex<Histogram<u64>>,
}

thread_local! {
    static TICK: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Whether this operation should be timed (one in [`Stats::SAMPLE_EVERY`] per thread).
#[inline]
pub(crate) fn sample() -> bool {
    TICK.with(|t| {
        let v = t.get().wrapping_add(1);
        t.set(v);
        v % Stats::SAMPLE_EVERY == 0
    })
}

impl StatsRecorder {
    pub(crate) fn new() -> layercake_core::Result<StatsRecorder> {
        Ok(StatsRecorder {
            ops: Op::ALL
                .iter()
                .map(|_| new_hist())
                .collect::<Result<_, _>>()?,
            loader: new_hist()?,
        })
    }

    pub(crate) fn record_op(&self, op: Op, d: Duration) {
        if let Some(h) = self.ops.get(op.index()) {
            h.lock().saturating_record(d.as_micros().max(1) as u64);
        }
    }

    pub(crate) fn record_loader(&self, d: Duration) {
        self.loader
            .lock()
            .saturating_record(d.as_micros().max(1) as u64);
    }

    pub(crate) fn latency_of(h: &Histogram<u64>) -> Latency {
        let us = |v: u64| Duration::from_micros(v);
        Latency {
            count: h.len(),
            p50: us(h.value_at_quantile(0.50)),
            p95: us(h.value_at_quantile(0.95)),
            p99: us(h.value_at_quantile(0.99)),
            max: us(h.max()),
        }
    }

    pub(crate) fn op_latencies(&self) -> Vec<(Op, Latency)> {
        Op::ALL
            .iter()
            .filter_map(|&op| {
                let h = self.ops.get(op.index())?.lock();
                (!h.is_empty()).then(|| (op, Self::latency_of(&h)))
            })
            .collect()
    }

    pub(crate) fn loader_latency(&self) -> Latency {
        Self::latency_of(&self.loader.lock())
    }
}

/// The snapshot [`Cache::stats`](crate::Cache::stats) returns: the counter store, the
/// histograms, and what the tiers, breakers, queues and repair records hold now.
pub(crate) fn snapshot(inner: &Stack) -> Stats {
    let tel = &inner.telemetry;
    let c = &tel.counters;
    let ld = Ordering::Relaxed;
    let reasons = inner.insight.per_tier();
    Stats {
        tiers: inner
            .tiers
            .iter()
            .map(|t| {
                let f = c.tier(t.position);
                TierStats {
                    name: t.name.to_string(),
                    kind: t.kind,
                    hits: f.hits,
                    misses: f.misses,
                    errors: f.errors,
                    skipped: f.skipped,
                    promotions: f.promotions,
                    corrupt: f.corrupt + t.backend.corrupt_reads(),
                    breaker: t
                        .breaker
                        .as_ref()
                        .map_or(BreakerState::Closed, |b| b.state()),
                    breaker_transitions: f.breaker_transitions,
                    write_behind_depth: t.write_behind.as_ref().map_or(0, |w| w.depth()),
                    write_behind_failures: t
                        .write_behind
                        .as_ref()
                        .map_or(0, |w| w.failures.load(ld)),
                    repairs: inner
                        .repairs
                        .record(t.position)
                        .map(|r| r.stats())
                        .unwrap_or_default(),
                    misses_by_reason: reasons.get(t.position).copied().unwrap_or_default(),
                }
            })
            .collect(),
        latency: tel.stats.op_latencies(),
        loader_calls: c.loader_calls.load(ld),
        loader_errors: c.loader_errors.load(ld),
        loader_latency: tel.stats.loader_latency(),
        coalesced: c.coalesced.load(ld),
        stale_served: c.stale_served.load(ld),
        misses: c.misses.load(ld),
        backplane_applied: c.bp_applied.load(std::sync::atomic::Ordering::Acquire),
        backplane_resets: c.bp_resets.load(std::sync::atomic::Ordering::Acquire),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_histogram() {
        let r = StatsRecorder::new().unwrap();
        for i in 1..=100u64 {
            r.record_op(Op::Get, Duration::from_micros(i * 10));
        }
        let l = r.op_latencies();
        assert_eq!(l.len(), 1);
        let (op, lat) = l[0];
        assert_eq!(op, Op::Get);
        assert_eq!(lat.count, 100);
        assert!(
            (495..=505).contains(&(lat.p50.as_micros() as u64)),
            "{lat:?}"
        );
        assert!(
            (985..=1000).contains(&(lat.p99.as_micros() as u64)),
            "{lat:?}"
        );
        assert_eq!(lat.max, Duration::from_micros(1000));
    }

    #[test]
    fn sampling_times_one_in_n() {
        let n = (0..400).filter(|_| sample()).count();
        assert_eq!(n, 400 / Stats::SAMPLE_EVERY as usize);
    }
}

//! The one place the composer reports what it does: the [`Stats`](crate::Stats) counters and
//! histograms always, OpenTelemetry instruments and spans with the `otel` feature.
//!
//! Attributes never carry keys or values: only the cache name, tier names and positions,
//! backend kinds, operation names, outcomes and error kinds (all bounded).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use layercake_core::{Error, Result};

use crate::breaker::BreakerState;
use crate::stats::{Op, StatsRecorder, sample};

/// Outcome of an operation, for metrics and spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Hit,
    Miss,
    Stale,
    Computed,
    Coalesced,
    Ok,
    Error,
}

impl Outcome {
    #[cfg_attr(not(feature = "otel"), allow(dead_code))]
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Stale => "stale",
            Outcome::Computed => "computed",
            Outcome::Coalesced => "coalesced",
            Outcome::Ok => "ok",
            Outcome::Error => "error",
        }
    }
}

/// Per-cache reporting facade.
#[derive(Debug)]
pub(crate) struct Telemetry {
    pub(crate) stats: StatsRecorder,
    #[allow(dead_code)]
    pub(crate) cache_name: Arc<str>,
    #[allow(dead_code)]
    pub(crate) tier_names: Vec<Arc<str>>,
}

/// Times one public operation (sampled) and closes it with an outcome.
#[derive(Debug)]
pub(crate) struct OpScope {
    op: Op,
    start: Option<Instant>,
}

impl OpScope {
    /// Record a notable step inside the operation (fall-through, promotion, breaker skip).
    #[inline]
    pub(crate) fn event(&self, _name: &'static str, _tier: usize) {}
}

impl Telemetry {
    pub(crate) fn new(cache_name: Arc<str>, tier_names: Vec<Arc<str>>) -> Result<Telemetry> {
        Ok(Telemetry {
            stats: StatsRecorder::new(tier_names.len())?,
            cache_name,
            tier_names,
        })
    }

    #[inline]
    pub(crate) fn start(&self, op: Op) -> OpScope {
        OpScope {
            op,
            start: sample().then(Instant::now),
        }
    }

    #[inline]
    pub(crate) fn finish(&self, scope: OpScope, outcome: Outcome) {
        let _ = outcome;
        if let Some(s) = scope.start {
            self.stats.record_op(scope.op, s.elapsed());
        }
    }

    #[inline]
    pub(crate) fn hit(&self, tier: usize) {
        if let Some(t) = self.stats.tier(tier) {
            t.hits.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[inline]
    pub(crate) fn miss(&self, tier: usize) {
        if let Some(t) = self.stats.tier(tier) {
            t.misses.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn error(&self, tier: usize, _err: &Error) {
        if let Some(t) = self.stats.tier(tier) {
            t.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn skipped(&self, tier: usize) {
        if let Some(t) = self.stats.tier(tier) {
            t.skipped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn promoted(&self, tier: usize) {
        if let Some(t) = self.stats.tier(tier) {
            t.promotions.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn corrupt(&self, tier: usize) {
        if let Some(t) = self.stats.tier(tier) {
            t.corrupt.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn breaker_changed(&self, _tier: usize, _state: BreakerState) {}

    pub(crate) fn full_miss(&self) {
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn loader_done(&self, d: Duration, ok: bool) {
        self.stats.loader_calls.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.stats.loader_errors.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.record_loader(d);
    }

    pub(crate) fn coalesced(&self) {
        self.stats.coalesced.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stale_served(&self) {
        self.stats.stale_served.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn backplane_sent(&self) {}
    pub(crate) fn backplane_received(&self) {}
    pub(crate) fn backplane_reconnect(&self) {}
    pub(crate) fn write_behind_full(&self, _tier: usize) {}
}

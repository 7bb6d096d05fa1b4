//! The one place the composer reports what it does: one counter store
//! ([`Counters`](crate::counters)) read by both [`Stats`](crate::Stats) and, with the `otel`
//! feature, the OpenTelemetry observable instruments; the `Stats` histograms; OpenTelemetry
//! spans and histograms (see [`crate::otel`] when the feature is on); and, with the `tracing`
//! feature, log events for what an operator should know (see [`crate::log`]).
//!
//! Attributes never carry keys or values: only the cache name, tier names and positions,
//! backend kinds, operation names, outcomes and error kinds (all bounded).
//!
//! Cost model: every hook is a relaxed atomic add or less on the hot path, and each event is
//! counted once: an L1 hit is one add (two with OpenTelemetry attached: the tier lookup and the
//! operation's outcome). With the `otel` feature, observable instruments read the same atomics
//! as `stats()` at collection time, the
//! duration histogram is recorded only for timed (sampled) operations, and a span is opened
//! lazily — only when the operation does something an L1 hit does not (an event, a miss, an
//! error, a write), or for an L1 hit when [`L1HitSpans`](crate::otel::L1HitSpans) asks for it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use layercake_core::{Error, Result};

use crate::breaker::BreakerState;
use crate::counters::{Counters, REQ_HIT, REQ_MISS, REQ_SKIPPED};
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
    /// Every outcome, in index order.
    pub(crate) const ALL: [Outcome; 7] = [
        Outcome::Hit,
        Outcome::Miss,
        Outcome::Stale,
        Outcome::Computed,
        Outcome::Coalesced,
        Outcome::Ok,
        Outcome::Error,
    ];

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

/// How a tier's read (`Tier::get`, `Tier::get_many`) ended, for
/// `layercake.tier.read.duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TierRead {
    /// Found an entry (for `get_many`: at least one).
    Hit,
    /// Found nothing.
    Miss,
    /// Failed or timed out.
    Error,
    /// Skipped by the open breaker: not a read, not recorded.
    Skipped,
}

impl TierRead {
    pub(crate) fn of<T>(r: &Result<T>, found: impl Fn(&T) -> bool) -> TierRead {
        match r {
            Ok(v) if found(v) => TierRead::Hit,
            Ok(_) => TierRead::Miss,
            Err(e) if e.kind() == layercake_core::ErrorKind::CircuitOpen => TierRead::Skipped,
            Err(_) => TierRead::Error,
        }
    }
}

/// Per-cache reporting facade.
#[derive(Debug)]
pub(crate) struct Telemetry {
    pub(crate) stats: StatsRecorder,
    /// Every counter, read by `stats()` and the observable instruments.
    pub(crate) counters: Counters,
    /// The cache name, for OpenTelemetry attributes and log fields.
    #[cfg_attr(
        not(any(feature = "otel", feature = "tracing")),
        expect(dead_code, reason = "read by OpenTelemetry and tracing only")
    )]
    pub(crate) cache_name: Arc<str>,
    /// Tier names, for OpenTelemetry attributes and log fields.
    pub(crate) tier_names: Vec<Arc<str>>,
    /// OpenTelemetry instruments, tracer and counters; `None` when disabled.
    #[cfg(feature = "otel")]
    pub(crate) otel: Option<crate::otel::Otel>,
}

/// Times one public operation (sampled) and closes it with an outcome.
#[derive(Debug)]
pub(crate) struct OpScope<'t> {
    op: Op,
    start: Option<Instant>,
    #[cfg(feature = "otel")]
    otel: Option<crate::otel::OtelScope<'t>>,
    #[cfg(not(feature = "otel"))]
    _t: std::marker::PhantomData<&'t Telemetry>,
}

impl OpScope<'_> {
    /// Record a notable step inside the operation (a span event, counted nowhere): `corrupt`,
    /// `promotion`, `repair_pending` (a tier skipped for a key awaiting its repair there);
    /// `fall_through` and `breaker_skip` come from [`Telemetry::read_failed`].
    #[inline]
    pub(crate) fn event(&self, name: &'static str, tier: usize) {
        self.step(name, tier);
    }

    #[inline]
    fn step(&self, name: &'static str, tier: usize) {
        #[cfg(feature = "otel")]
        if let Some(o) = &self.otel {
            o.step(self.op, name, tier);
        }
        #[cfg(not(feature = "otel"))]
        let _ = (name, tier);
    }

    /// Wrap a loader so that it runs inside this operation's trace context (its spans become
    /// children of the operation's span when that span is open, else of the caller's span).
    /// Without the `otel` feature, the loader is returned as is.
    #[cfg(feature = "otel")]
    pub(crate) fn in_span<F, Fut>(
        &self,
        loader: F,
    ) -> impl FnOnce() -> opentelemetry::context::WithContext<Fut> + Send + 'static
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future,
    {
        use opentelemetry::context::FutureExt as _;
        let cx = match &self.otel {
            Some(o) => o.context(),
            None => opentelemetry::Context::current(),
        };
        move || loader().with_context(cx)
    }

    /// Without the `otel` feature: the loader itself.
    #[cfg(not(feature = "otel"))]
    #[inline]
    pub(crate) fn in_span<F>(&self, loader: F) -> F {
        loader
    }
}

impl Telemetry {
    pub(crate) fn new(cache_name: Arc<str>, tier_names: Vec<Arc<str>>) -> Result<Telemetry> {
        Ok(Telemetry {
            stats: StatsRecorder::new()?,
            counters: Counters::new(tier_names.len()),
            cache_name,
            tier_names,
            #[cfg(feature = "otel")]
            otel: None,
        })
    }

    /// Attach OpenTelemetry: `None` = the global meter and tracer providers.
    #[cfg(feature = "otel")]
    pub(crate) fn with_otel(mut self, config: Option<crate::otel::OtelConfig>) -> Telemetry {
        let config = config.unwrap_or_else(crate::otel::OtelConfig::global);
        self.otel = crate::otel::Otel::new(config, &self.cache_name, &self.tier_names);
        self
    }

    #[inline]
    pub(crate) fn start(&self, op: Op) -> OpScope<'_> {
        #[cfg(feature = "otel")]
        {
            let otel = self.otel.as_ref().map(|o| o.scope(op));
            let timed = match &self.otel {
                Some(o) if o.time_every_operation() => true,
                _ => sample(),
            };
            OpScope {
                op,
                start: timed.then(Instant::now),
                otel,
            }
        }
        #[cfg(not(feature = "otel"))]
        OpScope {
            op,
            start: sample().then(Instant::now),
            _t: std::marker::PhantomData,
        }
    }

    #[inline]
    pub(crate) fn finish(&self, scope: OpScope<'_>, outcome: Outcome) {
        let elapsed = scope.start.map(|s| s.elapsed());
        if let Some(d) = elapsed {
            self.stats.record_op(scope.op, d);
        }
        #[cfg(feature = "otel")]
        if let Some(o) = scope.otel {
            self.counters.op_done(scope.op, outcome);
            o.finish(scope.op, outcome, elapsed);
        }
        #[cfg(not(feature = "otel"))]
        let _ = outcome;
    }

    /// The start of a tier read, when `layercake.tier.read.duration` records it: every read
    /// of a tier outside the process (a round trip dwarfs two clock reads and a record), a
    /// sample of reads of an in-process tier (see `Otel::tier_read_start`). `None` without
    /// OpenTelemetry.
    #[inline]
    pub(crate) fn tier_read_start(&self, in_process: bool) -> Option<Instant> {
        #[cfg(feature = "otel")]
        if let Some(o) = &self.otel {
            return o.tier_read_start(in_process);
        }
        let _ = in_process;
        None
    }

    /// A tier read that [`tier_read_start`](Self::tier_read_start) timed ended.
    #[inline]
    pub(crate) fn tier_read_done(&self, tier: usize, start: Option<Instant>, read: TierRead) {
        #[cfg(feature = "otel")]
        if let (Some(o), Some(start)) = (&self.otel, start) {
            o.tier_read_done(tier, start.elapsed(), read);
        }
        #[cfg(not(feature = "otel"))]
        let _ = (tier, start, read);
    }

    /// A read found a fresh entry at `tier`.
    #[inline]
    pub(crate) fn hit(&self, scope: &OpScope<'_>, tier: usize) {
        self.counters.request(tier, scope.op, REQ_HIT);
        #[cfg(feature = "otel")]
        if let Some(o) = &scope.otel {
            o.hit(scope.op, tier);
        }
    }

    /// A read found nothing usable at `tier` and falls through.
    #[inline]
    pub(crate) fn miss(&self, scope: &OpScope<'_>, tier: usize) {
        self.counters.request(tier, scope.op, REQ_MISS);
        #[cfg(feature = "otel")]
        if let Some(o) = &scope.otel {
            o.miss(scope.op, tier);
        }
    }

    /// A read's lookup at `tier` failed (`err`) or was skipped by the open breaker
    /// (`ErrorKind::CircuitOpen`); the read falls through. Counted here only: the tier call
    /// (`Tier::get`, `Tier::get_many`) leaves lookups to its caller.
    pub(crate) fn read_failed(&self, scope: &OpScope<'_>, tier: usize, err: &Error) {
        if err.kind() == layercake_core::ErrorKind::CircuitOpen {
            self.counters.request(tier, scope.op, REQ_SKIPPED);
            scope.step("breaker_skip", tier);
        } else {
            self.counters.read_error(tier, scope.op, err.kind());
            crate::log::tier_error(self, tier, err);
            scope.step("fall_through", tier);
        }
    }

    /// Another tier call (a write, a removal, a listing) failed.
    pub(crate) fn error(&self, tier: usize, err: &Error) {
        self.counters.error(tier, err.kind());
        crate::log::tier_error(self, tier, err);
    }

    /// Another tier call was skipped by the open breaker.
    pub(crate) fn skipped(&self, tier: usize) {
        self.counters.skipped(tier);
    }

    pub(crate) fn promoted(&self, tier: usize) {
        self.counters.promoted(tier);
    }

    pub(crate) fn corrupt(&self, tier: usize) {
        self.counters.corrupt(tier);
    }

    /// The name of tier `tier` (empty if out of range).
    #[cfg_attr(
        not(feature = "tracing"),
        expect(dead_code, reason = "log fields only")
    )]
    pub(crate) fn tier_name(&self, tier: usize) -> &str {
        self.tier_names.get(tier).map_or("", |n| n)
    }

    pub(crate) fn breaker_changed(&self, tier: usize, state: BreakerState) {
        self.counters.breaker_changed(tier, state);
        crate::log::breaker_changed(self, tier, state);
    }

    pub(crate) fn full_miss(&self) {
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn loader_done(&self, d: Duration, ok: bool) {
        self.counters.loader_calls.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.counters.loader_errors.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.record_loader(d);
        #[cfg(feature = "otel")]
        if let Some(o) = &self.otel {
            o.loader_done(d, ok);
        }
    }

    pub(crate) fn coalesced(&self) {
        self.counters.coalesced.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stale_served(&self) {
        self.counters.stale_served.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn backplane_sent(&self) {
        self.counters.bp_sent.fetch_add(1, Ordering::Relaxed);
    }

    /// A message could not be published (the other instances will not see it).
    pub(crate) fn backplane_publish_failed(&self) {
        self.counters
            .bp_publish_failed
            .fetch_add(1, Ordering::Relaxed);
        crate::log::backplane_publish_failed(self);
    }

    /// `n` incoming messages were lost because the listener lagged behind.
    pub(crate) fn backplane_lagged(&self, n: u64) {
        self.counters.bp_lagged.fetch_add(n, Ordering::Relaxed);
        crate::log::backplane_lagged(self, n);
    }

    /// A message from another instance was applied (its local copies are gone: a reader of
    /// `Stats::backplane_applied` may rely on that).
    pub(crate) fn backplane_applied(&self) {
        self.counters.bp_applied.fetch_add(1, Ordering::Release);
    }

    /// A reconnect or lag event dropped the local tiers.
    pub(crate) fn backplane_reset(&self) {
        self.counters.bp_resets.fetch_add(1, Ordering::Release);
    }

    pub(crate) fn write_behind_full(&self, tier: usize) {
        self.counters.write_behind_full(tier);
    }
}

/// The outcome of an operation that returns no read result.
pub(crate) fn ok_or_error<T>(r: &Result<T>) -> Outcome {
    if r.is_ok() {
        Outcome::Ok
    } else {
        Outcome::Error
    }
}

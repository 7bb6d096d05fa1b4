//! The one place the composer reports what it does: the [`Stats`](crate::Stats) counters and
//! histograms always, OpenTelemetry instruments and spans with the `otel` feature (see
//! [`crate::otel`] when the feature is on).
//!
//! Attributes never carry keys or values: only the cache name, tier names and positions,
//! backend kinds, operation names, outcomes and error kinds (all bounded).
//!
//! Cost model: every hook is a relaxed atomic add or less on the hot path. With the `otel`
//! feature, counters stay atomics read by observable instruments at collection time, the
//! duration histogram is recorded only for timed (sampled) operations, and a span is opened
//! lazily — only when the operation does something an L1 hit does not (an event, a miss, an
//! error, a write), or for an L1 hit when [`L1HitSpans`](crate::otel::L1HitSpans) asks for it.

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
    /// Every outcome, in index order.
    #[cfg_attr(not(feature = "otel"), allow(dead_code))]
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

/// Per-cache reporting facade.
#[derive(Debug)]
pub(crate) struct Telemetry {
    pub(crate) stats: StatsRecorder,
    #[allow(
        dead_code,
        reason = "read only by the OpenTelemetry instruments (feature `otel`)"
    )]
    pub(crate) cache_name: Arc<str>,
    #[allow(
        dead_code,
        reason = "read only by the OpenTelemetry instruments (feature `otel`)"
    )]
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
    /// Record a notable step inside the operation: `fall_through` (a tier failed or timed
    /// out), `breaker_skip`, `corrupt`, `promotion`, `repair_pending` (a tier skipped for a
    /// key awaiting its repair there).
    #[inline]
    pub(crate) fn event(&self, name: &'static str, tier: usize) {
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
            stats: StatsRecorder::new(tier_names.len())?,
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
            o.finish(scope.op, outcome, elapsed);
        }
        #[cfg(not(feature = "otel"))]
        let _ = outcome;
    }

    /// A read found a fresh entry at `tier`.
    #[inline]
    pub(crate) fn hit(&self, scope: &OpScope<'_>, tier: usize) {
        if let Some(t) = self.stats.tier(tier) {
            t.hits.fetch_add(1, Ordering::Relaxed);
        }
        #[cfg(feature = "otel")]
        if let Some(o) = &scope.otel {
            o.hit(scope.op, tier);
        }
        #[cfg(not(feature = "otel"))]
        let _ = scope;
    }

    /// A read found nothing usable at `tier` and falls through.
    #[inline]
    pub(crate) fn miss(&self, scope: &OpScope<'_>, tier: usize) {
        if let Some(t) = self.stats.tier(tier) {
            t.misses.fetch_add(1, Ordering::Relaxed);
        }
        #[cfg(feature = "otel")]
        if let Some(o) = &scope.otel {
            o.miss(scope.op, tier);
        }
        #[cfg(not(feature = "otel"))]
        let _ = scope;
    }

    pub(crate) fn error(&self, tier: usize, err: &Error) {
        if let Some(t) = self.stats.tier(tier) {
            t.errors.fetch_add(1, Ordering::Relaxed);
        }
        #[cfg(feature = "otel")]
        if let Some(o) = &self.otel {
            o.counters.error(tier, err.kind());
        }
        #[cfg(not(feature = "otel"))]
        let _ = err;
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

    pub(crate) fn breaker_changed(&self, tier: usize, state: BreakerState) {
        #[cfg(feature = "otel")]
        if let Some(o) = &self.otel {
            o.counters.breaker_changed(tier, state);
        }
        #[cfg(not(feature = "otel"))]
        let _ = (tier, state);
    }

    pub(crate) fn full_miss(&self) {
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn loader_done(&self, d: Duration, ok: bool) {
        self.stats.loader_calls.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.stats.loader_errors.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.record_loader(d);
        #[cfg(feature = "otel")]
        if let Some(o) = &self.otel {
            o.loader_done(d, ok);
        }
    }

    pub(crate) fn coalesced(&self) {
        self.stats.coalesced.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stale_served(&self) {
        self.stats.stale_served.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn backplane_sent(&self) {
        #[cfg(feature = "otel")]
        if let Some(o) = &self.otel {
            o.counters.bp_sent.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn backplane_received(&self) {
        #[cfg(feature = "otel")]
        if let Some(o) = &self.otel {
            o.counters.bp_received.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A message could not be published (the other instances will not see it).
    pub(crate) fn backplane_publish_failed(&self) {
        #[cfg(feature = "otel")]
        if let Some(o) = &self.otel {
            o.counters.bp_publish_failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `n` incoming messages were lost because the listener lagged behind.
    pub(crate) fn backplane_lagged(&self, n: u64) {
        #[cfg(feature = "otel")]
        if let Some(o) = &self.otel {
            o.counters.bp_lagged.fetch_add(n, Ordering::Relaxed);
        }
        #[cfg(not(feature = "otel"))]
        let _ = n;
    }

    pub(crate) fn backplane_reconnect(&self) {
        #[cfg(feature = "otel")]
        if let Some(o) = &self.otel {
            o.counters.bp_reconnects.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn write_behind_full(&self, tier: usize) {
        #[cfg(feature = "otel")]
        if let Some(o) = &self.otel {
            o.counters.write_behind_full(tier);
        }
        #[cfg(not(feature = "otel"))]
        let _ = tier;
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

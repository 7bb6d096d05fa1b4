//! The observable instruments: callbacks registered once per cache that read, at collection
//! time, the cache's one counter store (the same atomics `stats()` reads), the tiers,
//! breakers, write-behind queues and the backplane, through a weak reference. One helper per
//! instrument shape: a flat counter array with its attribute sets, a per-tier figure, a
//! backplane figure.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{AsyncInstrument, Meter};

use super::config::OtelSetup;
use super::instruments::{Attrs, Otel};
use crate::counters::{Counters, STATES, state_index};
use crate::stack::Stack;
use crate::tier::Tier;

/// Run `f` with the live cache's Otel state, if the cache still exists.
pub(super) fn with<F: Fn(&Stack, &Otel)>(weak: &Weak<Stack>, f: F) {
    if let Some(inner) = weak.upgrade()
        && let Some(o) = inner.telemetry.otel.as_ref()
    {
        f(&inner, o);
    }
}

/// Instruments kept alive for as long as the cache's telemetry lives.
pub(super) type Keep = Vec<Box<dyn std::any::Any + Send + Sync>>;

/// Counter (monotonic sum) or gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    Counter,
    Gauge,
}

/// Name, unit and description of an instrument.
pub(super) type Spec = (&'static str, &'static str, &'static str);

/// Where instruments are registered: the meter, the cache (weakly) and what keeps them alive.
pub(super) struct Registry<'a> {
    pub(super) meter: &'a Meter,
    pub(super) weak: Weak<Stack>,
    pub(super) keep: Keep,
}

impl Registry<'_> {
    /// Register a `u64` instrument whose callback reads the live cache.
    pub(super) fn u64(
        &mut self,
        shape: Shape,
        (name, unit, description): Spec,
        f: impl Fn(&Stack, &Otel, &dyn AsyncInstrument<u64>) + Send + Sync + 'static,
    ) {
        let w = self.weak.clone();
        let cb = move |obs: &dyn AsyncInstrument<u64>| with(&w, |inner, o| f(inner, o, obs));
        let m = self.meter;
        self.keep.push(match shape {
            Shape::Counter => Box::new(
                m.u64_observable_counter(name)
                    .with_unit(unit)
                    .with_description(description)
                    .with_callback(cb)
                    .build(),
            ),
            Shape::Gauge => Box::new(
                m.u64_observable_gauge(name)
                    .with_unit(unit)
                    .with_description(description)
                    .with_callback(cb)
                    .build(),
            ),
        });
    }

    /// A counter over a flat array of the store, reported where non-zero with the attribute
    /// set of the same index.
    fn flat<A: AsRef<[KeyValue]> + 'static>(
        &mut self,
        spec: Spec,
        values: fn(&Counters) -> Vec<u64>,
        attrs: fn(&Attrs) -> &[A],
    ) {
        self.u64(Shape::Counter, spec, move |inner, o, obs| {
            for (v, a) in values(&inner.telemetry.counters)
                .into_iter()
                .zip(attrs(&o.attrs))
            {
                if v > 0 {
                    obs.observe(v, a.as_ref());
                }
            }
        });
    }

    /// One figure per tier, with the tier's attributes; `read` returns `None` for tiers the
    /// instrument does not cover.
    pub(super) fn per_tier(
        &mut self,
        shape: Shape,
        spec: Spec,
        read: impl Fn(&Stack, &Tier) -> Option<u64> + Send + Sync + 'static,
    ) {
        self.u64(shape, spec, move |inner, o, obs| {
            for t in &inner.tiers {
                if let (Some(v), Some(a)) = (read(inner, t), o.attrs.per_tier.get(t.position)) {
                    obs.observe(v, a);
                }
            }
        });
    }

    /// A backplane figure (reported only when the cache has a backplane).
    fn backplane(&mut self, spec: Spec, read: fn(&Counters) -> &AtomicU64) {
        self.u64(Shape::Counter, spec, move |inner, o, obs| {
            if inner.backplane.is_some() {
                let v = read(&inner.telemetry.counters).load(Ordering::Relaxed);
                obs.observe(v, std::slice::from_ref(&o.attrs.cache));
            }
        });
    }
}

fn loads(v: &[AtomicU64]) -> Vec<u64> {
    v.iter().map(|a| a.load(Ordering::Relaxed)).collect()
}

/// Register the observable instruments of a built cache. Callbacks hold a weak reference.
pub(crate) fn observe(inner: &Arc<Stack>, setup: OtelSetup) {
    let Some(otel) = inner.telemetry.otel.as_ref() else {
        return;
    };
    otel.fast_first_tier.store(
        inner
            .tiers
            .first()
            .is_some_and(|t| t.capability.reach == layercake_core::Reach::InProcess),
        Ordering::Relaxed,
    );
    let mut r = Registry {
        meter: &otel.meter,
        weak: Arc::downgrade(inner),
        keep: Vec::new(),
    };
    use Shape::{Counter, Gauge};
    r.flat(
        ("layercake.requests", "{request}", "Tier lookups made by read operations, by tier, operation and outcome (hit, miss, error, skipped)"),
        Counters::requests,
        |a| &a.requests,
    );
    r.flat(
        (
            "layercake.operations",
            "{operation}",
            "Public cache operations, by operation and outcome",
        ),
        |c| loads(c.ops()),
        |a| &a.ops,
    );
    r.flat(
        (
            "layercake.tier.errors",
            "{error}",
            "Failed tier calls (reads, writes, deletes, invalidations), by tier and error kind",
        ),
        Counters::errors_by_kind,
        |a| &a.errors,
    );
    r.per_tier(
        Counter,
        (
            "layercake.tier.promotions",
            "{entry}",
            "Entries copied into a tier from a lower one",
        ),
        |inner, t| Some(inner.telemetry.counters.tier(t.position).promotions),
    );
    r.per_tier(
        Counter,
        ("layercake.tier.decode_failures", "{entry}", "Stored copies that failed to decode (corrupt or foreign bytes) and were removed, by tier"),
        |inner, t| Some(inner.telemetry.counters.tier(t.position).corrupt + t.backend.corrupt_reads()),
    );
    r.flat(
        (
            "layercake.breaker.transitions",
            "{transition}",
            "Circuit-breaker state changes, by tier and new state",
        ),
        |c| loads(c.breaker()),
        |a| &a.breaker,
    );
    r.u64(
        Gauge,
        ("layercake.breaker.state", "{state}", "1 for the current circuit-breaker state of each tier that has a breaker, 0 for the others"),
        |inner, o, obs| {
            for t in &inner.tiers {
                let Some(b) = &t.breaker else { continue };
                let now = state_index(b.state());
                for s in 0..STATES.len() {
                    if let Some(a) = o.attrs.breaker.get(t.position * STATES.len() + s) {
                        obs.observe(u64::from(s == now), a);
                    }
                }
            }
        },
    );
    r.backplane(
        (
            "layercake.backplane.messages.sent",
            "{message}",
            "Backplane messages published after sets, deletes and invalidations",
        ),
        |c| &c.bp_sent,
    );
    r.backplane(
        (
            "layercake.backplane.messages.received",
            "{message}",
            "Backplane messages from other instances applied to the local tiers",
        ),
        |c| &c.bp_applied,
    );
    r.u64(
        Counter,
        ("layercake.backplane.messages.dropped", "{message}", "Backplane messages lost: not published (publish_failed) or missed by a lagging listener (lagged)"),
        |inner, o, obs| {
            if inner.backplane.is_some() {
                let c = &inner.telemetry.counters;
                obs.observe(c.bp_publish_failed.load(Ordering::Relaxed), &o.attrs.dropped[0]);
                obs.observe(c.bp_lagged.load(Ordering::Relaxed), &o.attrs.dropped[1]);
            }
        },
    );
    r.backplane(
        (
            "layercake.backplane.reconnects",
            "{reconnect}",
            "Backplane reconnections (and lag events); each drops the local tiers",
        ),
        |c| &c.bp_resets,
    );
    r.per_tier(
        Gauge,
        (
            "layercake.write_behind.depth",
            "{write}",
            "Writes waiting in a write-behind queue, by tier",
        ),
        |_, t| t.write_behind.as_ref().map(|wb| wb.depth() as u64),
    );
    r.per_tier(
        Counter,
        (
            "layercake.write_behind.fallbacks",
            "{write}",
            "Writes done in line because the write-behind queue was full",
        ),
        |inner, t| {
            t.write_behind.as_ref()?;
            Some(inner.telemetry.counters.write_behind_fallbacks(t.position))
        },
    );
    r.per_tier(
        Counter,
        (
            "layercake.write_behind.failures",
            "{write}",
            "Queued writes that failed in the background (the entry is missing from that tier)",
        ),
        |_, t| {
            t.write_behind
                .as_ref()
                .map(|wb| wb.failures.load(Ordering::Relaxed))
        },
    );
    super::repairs::observe(&mut r);
    #[cfg(feature = "memory")]
    if !setup.memory.is_empty() {
        let probes = Arc::new(setup.memory);
        let mut memory_gauge = |spec: Spec, read: fn(&layercake_memory::MemoryBackend) -> u64| {
            let p = probes.clone();
            r.per_tier(Gauge, spec, move |_, t| {
                let (_, mem) = p.iter().find(|(pos, _)| *pos == t.position)?;
                mem.upgrade().map(|m| read(&m))
            });
        };
        memory_gauge(
            (
                "layercake.memory.entries",
                "{entry}",
                "Entries held by a memory tier",
            ),
            |mem| mem.entries() as u64,
        );
        memory_gauge(
            (
                "layercake.memory.size",
                "By",
                "Weighted bytes held by a memory tier (keys, values and overhead)",
            ),
            |mem| mem.weighted_bytes(),
        );
    }
    #[cfg(not(feature = "memory"))]
    let _ = setup;
    crate::insight::otel::observe_misses(inner, r.meter, &mut r.keep);
    otel.observers.lock().extend(r.keep);
}

//! The observable instruments: callbacks registered once per cache that read the counters,
//! the tiers, breakers, write-behind queues and the backplane through a weak reference.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use layercake_core::Backend;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{AsyncInstrument, Meter};

use super::config::OtelSetup;
use super::counters::{Counters, STATES, state_index};
use super::instruments::Otel;
use crate::stack::Stack;

// ------------------------------------------------------------------------------ observers

/// Run `f` with the live cache's Otel state, if the cache still exists.
pub(super) fn with<F: Fn(&Stack, &Otel)>(weak: &Weak<Stack>, f: F) {
    if let Some(inner) = weak.upgrade()
        && let Some(o) = inner.telemetry.otel.as_ref()
    {
        f(&inner, o);
    }
}

/// Report each non-zero counter with its attribute set.
pub(super) fn observe_nonzero<A: AsRef<[KeyValue]>>(
    obs: &dyn AsyncInstrument<u64>,
    values: &[AtomicU64],
    attrs: &[A],
) {
    for (v, a) in values.iter().zip(attrs) {
        let v = v.load(Ordering::Relaxed);
        if v > 0 {
            obs.observe(v, a.as_ref());
        }
    }
}

/// Register a counter of one backplane figure (reported only when a backplane is set).
pub(super) fn backplane_counter(
    keep: &mut Keep,
    m: &Meter,
    weak: &Weak<Stack>,
    name: &'static str,
    unit: &'static str,
    description: &'static str,
    pick: fn(&Counters) -> &AtomicU64,
) {
    counter(
        keep,
        m,
        weak,
        name,
        unit,
        description,
        move |inner, o, obs| {
            if inner.backplane.is_some() {
                obs.observe(
                    pick(&o.counters).load(Ordering::Relaxed),
                    std::slice::from_ref(&o.attrs.cache),
                );
            }
        },
    );
}

/// What an observable instrument's callback reports from the live cache.
pub(super) type Observe = dyn Fn(&Stack, &Otel, &dyn AsyncInstrument<u64>) + Send + Sync;

/// Instruments kept alive for as long as the cache's telemetry lives.
pub(super) type Keep = Vec<Box<dyn std::any::Any + Send + Sync>>;

/// Register an observable counter whose callback reads the live cache (weakly held).
pub(super) fn counter(
    keep: &mut Keep,
    m: &Meter,
    weak: &Weak<Stack>,
    name: &'static str,
    unit: &'static str,
    description: &'static str,
    f: impl Fn(&Stack, &Otel, &dyn AsyncInstrument<u64>) + Send + Sync + 'static,
) {
    let w = weak.clone();
    let f: Box<Observe> = Box::new(f);
    keep.push(Box::new(
        m.u64_observable_counter(name)
            .with_unit(unit)
            .with_description(description)
            .with_callback(move |obs| with(&w, |inner, o| f(inner, o, obs)))
            .build(),
    ));
}

/// Register an observable gauge whose callback reads the live cache (weakly held).
pub(super) fn gauge(
    keep: &mut Keep,
    m: &Meter,
    weak: &Weak<Stack>,
    name: &'static str,
    unit: &'static str,
    description: &'static str,
    f: impl Fn(&Stack, &Otel, &dyn AsyncInstrument<u64>) + Send + Sync + 'static,
) {
    let w = weak.clone();
    let f: Box<Observe> = Box::new(f);
    keep.push(Box::new(
        m.u64_observable_gauge(name)
            .with_unit(unit)
            .with_description(description)
            .with_callback(move |obs| with(&w, |inner, o| f(inner, o, obs)))
            .build(),
    ));
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
    let m = &otel.meter;
    let mut keep: Keep = Vec::new();
    let weak = Arc::downgrade(inner);

    counter(
        &mut keep,
        m,
        &weak,
        "layercake.requests",
        "{request}",
        "Tier lookups made by read operations, by tier, operation and outcome (hit, miss, error, skipped)",
        move |_, o, obs| {
            observe_nonzero(obs, &o.counters.requests, &o.attrs.requests);
        },
    );
    counter(
        &mut keep,
        m,
        &weak,
        "layercake.operations",
        "{operation}",
        "Public cache operations, by operation and outcome",
        move |_, o, obs| {
            observe_nonzero(obs, &o.counters.ops, &o.attrs.ops);
        },
    );
    counter(
        &mut keep,
        m,
        &weak,
        "layercake.tier.errors",
        "{error}",
        "Failed tier calls (reads, writes, deletes, invalidations), by tier and error kind",
        move |_, o, obs| observe_nonzero(obs, &o.counters.errors, &o.attrs.errors),
    );
    counter(
        &mut keep,
        m,
        &weak,
        "layercake.tier.promotions",
        "{entry}",
        "Entries copied into a tier from a lower one",
        move |inner, o, obs| {
            for t in &inner.tiers {
                if let (Some(c), Some(a)) = (
                    inner.telemetry.stats.tier(t.position),
                    o.attrs.per_tier.get(t.position),
                ) {
                    obs.observe(c.promotions.load(Ordering::Relaxed), a);
                }
            }
        },
    );
    counter(
        &mut keep,
        m,
        &weak,
        "layercake.tier.decode_failures",
        "{entry}",
        "Stored copies that failed to decode (corrupt or foreign bytes) and were removed, by tier",
        move |inner, o, obs| {
            for t in &inner.tiers {
                if let (Some(c), Some(a)) = (
                    inner.telemetry.stats.tier(t.position),
                    o.attrs.per_tier.get(t.position),
                ) {
                    let n = c.corrupt.load(Ordering::Relaxed) + t.backend.corrupt_reads();
                    obs.observe(n, a);
                }
            }
        },
    );
    counter(
        &mut keep,
        m,
        &weak,
        "layercake.breaker.transitions",
        "{transition}",
        "Circuit-breaker state changes, by tier and new state",
        move |_, o, obs| {
            observe_nonzero(obs, &o.counters.breaker, &o.attrs.breaker);
        },
    );
    gauge(
        &mut keep,
        m,
        &weak,
        "layercake.breaker.state",
        "{state}",
        "1 for the current circuit-breaker state of each tier that has a breaker, 0 for the others",
        move |inner, o, obs| {
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
    backplane_counter(
        &mut keep,
        m,
        &weak,
        "layercake.backplane.messages.sent",
        "{message}",
        "Backplane messages published after sets, deletes and invalidations",
        |c| &c.bp_sent,
    );
    backplane_counter(
        &mut keep,
        m,
        &weak,
        "layercake.backplane.messages.received",
        "{message}",
        "Backplane messages from other instances applied to the local tiers",
        |c| &c.bp_received,
    );
    counter(
        &mut keep,
        m,
        &weak,
        "layercake.backplane.messages.dropped",
        "{message}",
        "Backplane messages lost: not published (publish_failed) or missed by a lagging listener (lagged)",
        move |inner, o, obs| {
            if inner.backplane.is_some() {
                obs.observe(
                    o.counters.bp_publish_failed.load(Ordering::Relaxed),
                    &o.attrs.dropped[0],
                );
                obs.observe(
                    o.counters.bp_lagged.load(Ordering::Relaxed),
                    &o.attrs.dropped[1],
                );
            }
        },
    );
    backplane_counter(
        &mut keep,
        m,
        &weak,
        "layercake.backplane.reconnects",
        "{reconnect}",
        "Backplane reconnections (and lag events); each drops the local tiers",
        |c| &c.bp_reconnects,
    );
    gauge(
        &mut keep,
        m,
        &weak,
        "layercake.write_behind.depth",
        "{write}",
        "Writes waiting in a write-behind queue, by tier",
        move |inner, o, obs| {
            for t in &inner.tiers {
                if let (Some(wb), Some(a)) = (&t.write_behind, o.attrs.per_tier.get(t.position)) {
                    obs.observe(wb.depth() as u64, a);
                }
            }
        },
    );
    counter(
        &mut keep,
        m,
        &weak,
        "layercake.write_behind.fallbacks",
        "{write}",
        "Writes done in line because the write-behind queue was full",
        move |inner, o, obs| {
            for t in inner.tiers.iter().filter(|t| t.write_behind.is_some()) {
                if let (Some(v), Some(a)) = (
                    o.counters.write_behind_full.get(t.position),
                    o.attrs.per_tier.get(t.position),
                ) {
                    obs.observe(v.load(Ordering::Relaxed), a);
                }
            }
        },
    );
    counter(
        &mut keep,
        m,
        &weak,
        "layercake.write_behind.failures",
        "{write}",
        "Queued writes that failed in the background (the entry is missing from that tier)",
        move |inner, o, obs| {
            for t in &inner.tiers {
                if let (Some(wb), Some(a)) = (&t.write_behind, o.attrs.per_tier.get(t.position)) {
                    obs.observe(wb.failures.load(Ordering::Relaxed), a);
                }
            }
        },
    );
    super::repairs::observe(&mut keep, m, &weak);
    #[cfg(feature = "memory")]
    if !setup.memory.is_empty() {
        let probes = Arc::new(setup.memory);
        let memory_gauge =
            |keep: &mut Keep,
             name: &'static str,
             unit: &'static str,
             description: &'static str,
             read: fn(&layercake_memory::MemoryBackend) -> u64| {
                let p = probes.clone();
                gauge(keep, m, &weak, name, unit, description, move |_, o, obs| {
                    for (pos, mem) in p.iter() {
                        if let (Some(mem), Some(a)) = (mem.upgrade(), o.attrs.per_tier.get(*pos)) {
                            obs.observe(read(&mem), a);
                        }
                    }
                });
            };
        memory_gauge(
            &mut keep,
            "layercake.memory.entries",
            "{entry}",
            "Entries held by a memory tier",
            |mem| mem.entries() as u64,
        );
        memory_gauge(
            &mut keep,
            "layercake.memory.size",
            "By",
            "Weighted bytes held by a memory tier (keys, values and overhead)",
            |mem| mem.weighted_bytes(),
        );
    }
    #[cfg(not(feature = "memory"))]
    let _ = setup;
    crate::insight::otel::observe_misses(inner, m, &mut keep);
    otel.observers.lock().extend(keep);
}

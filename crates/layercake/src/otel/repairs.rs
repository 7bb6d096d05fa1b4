//! The repair instruments (auto-recovery), per tier: notes pending and the age of the oldest,
//! notes made, repairs applied, failed attempts, overflows and refusals of a full record.

use std::sync::Weak;

use opentelemetry::metrics::{AsyncInstrument, Meter};

use super::instruments::Otel;
use super::observers::{Keep, counter, gauge, with};
use crate::repair::record::RepairRecord;
use crate::stack::Stack;

/// Report `read(record)` for every tier, with the tier's attributes.
fn per_tier(
    inner: &Stack,
    o: &Otel,
    obs: &dyn AsyncInstrument<u64>,
    read: impl Fn(&RepairRecord) -> u64,
) {
    for t in &inner.tiers {
        if let (Some(r), Some(a)) = (
            inner.repairs.record(t.position),
            o.attrs.per_tier.get(t.position),
        ) {
            obs.observe(read(r), a);
        }
    }
}

/// Register the repair instruments of a cache.
pub(super) fn observe(keep: &mut Keep, m: &Meter, weak: &Weak<Stack>) {
    use std::sync::atomic::Ordering::Relaxed;
    gauge(
        keep,
        m,
        weak,
        "layercake.repair.pending",
        "{note}",
        "Repair notes pending, by tier: keys, selections or the whole tier that a write or removal did not reach",
        |inner, o, obs| per_tier(inner, o, obs, |r| r.len() as u64),
    );
    let w = weak.clone();
    keep.push(Box::new(
        m.f64_observable_gauge("layercake.repair.oldest_pending_age")
            .with_unit("s")
            .with_description(
                "Age of the oldest pending repair note, by tier (0 when none is pending)",
            )
            .with_callback(move |obs| {
                with(&w, |inner, o| {
                    for t in &inner.tiers {
                        if let (Some(r), Some(a)) = (
                            inner.repairs.record(t.position),
                            o.attrs.per_tier.get(t.position),
                        ) {
                            obs.observe(r.oldest().map_or(0.0, |d| d.as_secs_f64()), a);
                        }
                    }
                });
            })
            .build(),
    ));
    counter(
        keep,
        m,
        weak,
        "layercake.repair.notes",
        "{note}",
        "Repair notes made, by tier (a write, removal or clear that did not reach the tier)",
        |inner, o, obs| per_tier(inner, o, obs, |r| r.counters.noted.load(Relaxed)),
    );
    counter(
        keep,
        m,
        weak,
        "layercake.repair.applied",
        "{repair}",
        "Repairs applied, by tier (older copy removed, selection invalidated, tier cleared)",
        |inner, o, obs| per_tier(inner, o, obs, |r| r.counters.applied.load(Relaxed)),
    );
    counter(
        keep,
        m,
        weak,
        "layercake.repair.failures",
        "{attempt}",
        "Repair attempts that failed because the tier did not answer yet, by tier",
        |inner, o, obs| per_tier(inner, o, obs, |r| r.counters.failed.load(Relaxed)),
    );
    counter(
        keep,
        m,
        weak,
        "layercake.repair.overflows",
        "{overflow}",
        "Times a full repair record turned into one note for the whole tier, by tier",
        |inner, o, obs| per_tier(inner, o, obs, |r| r.counters.overflowed.load(Relaxed)),
    );
    counter(
        keep,
        m,
        weak,
        "layercake.repair.refused",
        "{note}",
        "Repair notes refused by a full record (each failed its call), by tier",
        |inner, o, obs| per_tier(inner, o, obs, |r| r.counters.refused.load(Relaxed)),
    );
}

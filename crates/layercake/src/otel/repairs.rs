//! The repair instruments (auto-recovery), per tier: notes pending and the age of the oldest,
//! notes made, repairs applied, failed attempts, overflows and refusals of a full record.

use std::sync::atomic::Ordering::Relaxed;

use super::observers::{Registry, Shape, with};
use crate::repair::record::RepairRecord;
use crate::stack::Stack;
use crate::tier::Tier;

/// `read` of the tier's repair record.
fn of(inner: &Stack, t: &Tier, read: fn(&RepairRecord) -> u64) -> Option<u64> {
    inner.repairs.record(t.position).map(read)
}

/// Register the repair instruments of a cache.
pub(super) fn observe(r: &mut Registry<'_>) {
    use Shape::{Counter, Gauge};
    r.per_tier(
        Gauge,
        ("layercake.repair.pending", "{note}", "Repair notes pending, by tier: keys, selections or the whole tier that a write or removal did not reach"),
        |inner, t| of(inner, t, |r| r.len() as u64),
    );
    let w = r.weak.clone();
    r.keep.push(Box::new(
        r.meter
            .f64_observable_gauge("layercake.repair.oldest_pending_age")
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
    r.per_tier(
        Counter,
        (
            "layercake.repair.notes",
            "{note}",
            "Repair notes made, by tier (a write, removal or clear that did not reach the tier)",
        ),
        |inner, t| of(inner, t, |r| r.counters.noted.load(Relaxed)),
    );
    r.per_tier(
        Counter,
        (
            "layercake.repair.applied",
            "{repair}",
            "Repairs applied, by tier (older copy removed, selection invalidated, tier cleared)",
        ),
        |inner, t| of(inner, t, |r| r.counters.applied.load(Relaxed)),
    );
    r.per_tier(
        Counter,
        (
            "layercake.repair.failures",
            "{attempt}",
            "Repair attempts that failed because the tier did not answer yet, by tier",
        ),
        |inner, t| of(inner, t, |r| r.counters.failed.load(Relaxed)),
    );
    r.per_tier(
        Counter,
        (
            "layercake.repair.overflows",
            "{overflow}",
            "Times a full repair record turned into one note for the whole tier, by tier",
        ),
        |inner, t| of(inner, t, |r| r.counters.overflowed.load(Relaxed)),
    );
    r.per_tier(
        Counter,
        (
            "layercake.repair.refused",
            "{note}",
            "Repair notes refused by a full record (each failed its call), by tier",
        ),
        |inner, t| of(inner, t, |r| r.counters.refused.load(Relaxed)),
    );
}

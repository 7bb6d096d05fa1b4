//! The repair task: while notes are pending, every `retry_every` it applies them tier by tier
//! (the lowest tier first) — a key note removes the key, a selection note invalidates it (both
//! leaving a tombstone, so a fill of the older copy that lands later is refused), a whole-tier
//! note clears the tier — drops the notes that were not made again meanwhile, and
//! tells the other instances (backplane) to drop their local copies of what it removed from
//! a tier they share.
//!
//! It holds the stack weakly and ends when the cache is dropped. Repair calls go through the
//! tier like any write (its breaker and write timeout): an open breaker's cool-down spares a
//! recovering server the repairs as it spares it the reads, and a repair can be the half-open
//! probe that closes the breaker. Reads keep skipping the noted keys until the repair is done.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::future::join_all;
use layercake_core::backplane::Target;
use layercake_core::{Key, Selector, Tombstone};
use tokio::sync::Notify;

use super::record::Repair;
use crate::stack::Stack;
use crate::tier::{Scope, Tier};

/// Notes taken from a record at a time.
const BATCH: usize = 256;

/// The task's loop: sleep until something is noted, then apply every `every` until nothing is
/// pending.
pub(crate) async fn run(stack: Weak<Stack>, wake: Arc<Notify>, every: Duration) {
    loop {
        let pending = match stack.upgrade() {
            Some(s) => s.repairs.pending() > 0,
            None => return,
        };
        if !pending {
            wake.notified().await;
            continue;
        }
        tokio::time::sleep(every).await;
        let Some(s) = stack.upgrade() else { return };
        round(&s).await;
    }
}

/// One pass over every tier with pending notes, the lowest tier first (an instance filling an
/// upper tier from a lower one then finds the lower one repaired already). A tier's pass stops
/// at its first failed call. Returns the repairs applied.
pub(crate) async fn round(stack: &Stack) -> usize {
    let mut applied = 0;
    for tier in stack.tiers.iter().rev() {
        let Some(record) = stack.repairs.record(tier.position) else {
            continue;
        };
        // Bounded: notes made while the pass runs wait for the next one.
        for _ in 0..=record.len() / BATCH {
            let batch = record.batch(BATCH);
            if batch.is_empty() {
                break;
            }
            let (done, failed) = apply(stack, tier, &batch).await;
            if !done.is_empty() {
                record.applied(&done);
                crate::log::repairs_applied(&stack.telemetry, tier.position, done.len());
                applied += done.len();
                announce(stack, tier, &done).await;
            }
            if failed {
                record.attempt_failed();
                break;
            }
        }
    }
    applied
}

/// Keys removed concurrently by one pass (after a first key alone, the probe).
const CONCURRENT: usize = 16;

/// Apply a batch to one tier: a selection or the whole tier one call each, keys
/// [`CONCURRENT`] at a time (the first alone: when the tier is still down, one call finds
/// out). Each removal leaves its note's tombstone. Returns what was applied and whether a call
/// failed (the rest waits for the next pass).
async fn apply(stack: &Stack, tier: &Tier, batch: &[(Repair, u64)]) -> (Vec<(Repair, u64)>, bool) {
    let tel = &stack.telemetry;
    let tomb = |v: u64| Tombstone::new(v, stack.tombstone_ttl);
    let mut done = Vec::with_capacity(batch.len());
    let mut keys: Vec<(&Key, u64, u64)> = Vec::new();
    for (repair, serial) in batch {
        let r = match repair {
            Repair::Key(k, v) => {
                keys.push((k, *v, *serial));
                continue;
            }
            Repair::Select(s, v) => {
                tier.call(tel, true, tier.backend.invalidate_with(s, tomb(*v)))
                    .await
            }
            Repair::Everything => tier.call(tel, true, tier.backend.clear()).await,
        };
        if r.is_err() {
            return (done, true);
        }
        done.push((repair.clone(), *serial));
    }
    let mut rest = keys.as_slice();
    let mut width = 1;
    while !rest.is_empty() {
        let (now, later) = rest.split_at(width.min(rest.len()));
        let results = join_all(
            now.iter()
                .map(|(k, v, _)| tier.call(tel, true, tier.backend.delete_with(k, tomb(*v)))),
        )
        .await;
        let mut failed = false;
        for ((k, v, serial), r) in now.iter().zip(results) {
            match r {
                Ok(()) => done.push((Repair::Key((*k).clone(), *v), *serial)),
                Err(_) => failed = true,
            }
        }
        if failed {
            return (done, true);
        }
        rest = later;
        width = CONCURRENT;
    }
    (done, false)
}

/// Tell the other instances what a repair removed from a tier they see (their local tiers
/// may hold copies filled from the older one).
async fn announce(stack: &Stack, tier: &Tier, done: &[(Repair, u64)]) {
    if tier.scope == Scope::Process || stack.backplane.is_none() {
        return;
    }
    for (repair, _) in done {
        let target = match repair {
            Repair::Key(k, _) => Target::Key(k.as_str().to_owned()),
            Repair::Select(Selector::Prefix(p), _) => Target::Prefix(p.clone()),
            Repair::Select(Selector::Tag(t), _) => Target::Tag(t.clone()),
            Repair::Select(..) | Repair::Everything => Target::All,
        };
        stack.publish(target, 0).await;
    }
}

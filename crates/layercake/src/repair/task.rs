//! The repair task: while notes are pending, every `retry_every` it applies them tier by tier
//! (the lowest tier first) — a key note removes the key, a selection note invalidates it, a
//! whole-tier note clears the tier — drops the notes that were not made again meanwhile, and
//! tells the other instances (backplane) to drop their local copies of what it removed from
//! a tier they share.
//!
//! It holds the stack weakly and ends when the cache is dropped. Repair calls go through the
//! tier like any write (its breaker and write timeout): an open breaker's cool-down spares a
//! recovering server the repairs as it spares it the reads, and a repair can be the half-open
//! probe that closes the breaker. Reads keep skipping the noted keys until the repair is done.

use std::sync::{Arc, Weak};
use std::time::Duration;

use layercake_core::backplane::Target;
use layercake_core::{Key, Selector};
use tokio::sync::Notify;

use super::record::Repair;
use crate::stack::Stack;
use crate::tier::{Scope, Tier};

/// Notes applied per backend call (keys go in one `delete_many`).
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

/// Apply a batch to one tier: selections and the whole tier one call each, keys in one
/// `delete_many`. Returns what was applied and whether a call failed (the rest waits).
async fn apply(stack: &Stack, tier: &Tier, batch: &[(Repair, u64)]) -> (Vec<(Repair, u64)>, bool) {
    let tel = &stack.telemetry;
    let mut done = Vec::with_capacity(batch.len());
    let mut keys: Vec<(Key, u64)> = Vec::new();
    for (repair, serial) in batch {
        let r = match repair {
            Repair::Key(k) => {
                keys.push((k.clone(), *serial));
                continue;
            }
            Repair::Select(s) => tier.call(tel, true, tier.backend.invalidate(s)).await,
            Repair::Everything => tier.call(tel, true, tier.backend.clear()).await,
        };
        if r.is_err() {
            return (done, true);
        }
        done.push((repair.clone(), *serial));
    }
    if !keys.is_empty() {
        let ks: Vec<Key> = keys.iter().map(|(k, _)| k.clone()).collect();
        if tier
            .call(tel, true, tier.backend.delete_many(&ks))
            .await
            .is_err()
        {
            return (done, true);
        }
        done.extend(keys.into_iter().map(|(k, s)| (Repair::Key(k), s)));
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
            Repair::Key(k) => Target::Key(k.as_str().to_owned()),
            Repair::Select(Selector::Prefix(p)) => Target::Prefix(p.clone()),
            Repair::Select(Selector::Tag(t)) => Target::Tag(t.clone()),
            Repair::Select(_) | Repair::Everything => Target::All,
        };
        stack.publish(target, 0).await;
    }
}

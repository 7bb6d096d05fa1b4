//! Promotion: the one plan for filling upper tiers after a hit in a lower one — which tiers,
//! with which copy (remaining lifetime, never extended; capped by the policy's
//! [`Promotion`]) — used by reads, batches, warming and the raw adapter.

use std::any::Any;
use std::sync::Arc;

use futures::future::join_all;
use layercake_core::{Entry, Key, Promotion, TierSet, Timestamp};

use crate::cache::Cache;
use crate::coherence::epochs::Snapshot;
use crate::telemetry::OpScope;
use crate::tier::{Scope, Tier};
use crate::write::{How, cap_lifetime};

/// What a promotion needs from the read that found the entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fill {
    pub(crate) snap: Snapshot,
    pub(crate) failed: TierSet,
}

/// How far up a hit at tier `found` fills: tiers `0..found`; for a hit in L1 itself, L1 again
/// when `upgrade_l1` (its copy lacks the decoded value); `None` = nothing to fill.
pub(crate) fn promotion_upto(found: usize, upgrade_l1: bool) -> Option<usize> {
    match found {
        0 if upgrade_l1 => Some(1),
        0 => None,
        f => Some(f),
    }
}

/// The copy of a lower tier's entry to promote, or `None` when promotion is off.
fn promotion_copy(entry: &Entry, promotion: Promotion, now: Timestamp) -> Option<Entry> {
    let mut copy = entry.clone().without_decoded();
    match promotion {
        Promotion::Never => return None,
        Promotion::Capped(c) => cap_lifetime(&mut copy, now.plus(c)),
        _ => {}
    }
    Some(copy)
}

impl Cache {
    /// The promotion plan, the one rule for every path that fills upper tiers after a hit at
    /// tier `found` (see [`promotion_upto`]): the tiers above it that the policy allows and
    /// `skip` does not exclude and that hold no repair note for the key (a promotion never
    /// writes where an older copy awaits its repair), each with its copy of `entry` — the policy's [`Promotion`]
    /// applied, the tier's own caps ([`Cache::tier_copy`]), the decoded value for in-process
    /// tiers. Empty when nothing is to be filled.
    #[expect(
        clippy::too_many_arguments,
        reason = "the hit (key, entry, tier, decoded value) and the read's time and exclusions"
    )]
    pub(crate) fn promotion_plan<'a>(
        &'a self,
        key: &Key,
        entry: &Entry,
        found: usize,
        upgrade_l1: bool,
        decoded: Option<&Arc<dyn Any + Send + Sync>>,
        now: Timestamp,
        skip: impl Fn(&Tier) -> bool,
    ) -> Vec<(&'a Tier, Entry)> {
        self.promotion_targets(key, entry, found, upgrade_l1, decoded, now, skip)
            .into_iter()
            .flatten()
            .collect()
    }

    /// [`promotion_plan`](Self::promotion_plan) as it is computed, without collecting it.
    #[expect(
        clippy::too_many_arguments,
        reason = "the hit (key, entry, tier, decoded value) and the read's time and exclusions"
    )]
    fn promotion_targets<'a, 'b>(
        &'a self,
        key: &'b Key,
        entry: &'b Entry,
        found: usize,
        upgrade_l1: bool,
        decoded: Option<&'b Arc<dyn Any + Send + Sync>>,
        now: Timestamp,
        skip: impl Fn(&Tier) -> bool + 'b,
    ) -> Option<impl Iterator<Item = (&'a Tier, Entry)> + 'b>
    where
        'a: 'b,
    {
        let upto = promotion_upto(found, upgrade_l1)?;
        let d = self
            .inner
            .decide(key, entry.value.len(), entry.is_negative());
        let copy = promotion_copy(entry, d.promotion, now)?;
        Some(
            self.inner.tiers[..upto.min(self.inner.tiers.len())]
                .iter()
                .filter(move |t| {
                    d.tiers.contains(t.position)
                        && !self.call.skip.contains(t.position)
                        && !skip(t)
                        && !self.inner.repairs.skips_entry(t.position, key, &entry.tags)
                })
                .map(move |t| (t, self.tier_copy(t, &copy, now, decoded))),
        )
    }

    /// Promote after a read: fill the tiers of the plan (skipping those that failed during
    /// this read and those whose breaker is open) with a copy of `entry`, unless the key
    /// changed since the read began.
    #[expect(
        clippy::too_many_arguments,
        reason = "the read's findings are passed as they are; a struct would only rename them"
    )]
    pub(crate) async fn promote(
        &self,
        key: &Key,
        entry: &Entry,
        found: usize,
        upgrade_l1: bool,
        decoded: Option<Arc<dyn Any + Send + Sync>>,
        now: Timestamp,
        scope: &OpScope<'_>,
        fill: Fill,
    ) {
        let Some(plan) =
            self.promotion_targets(key, entry, found, upgrade_l1, decoded.as_ref(), now, |t| {
                fill.failed.contains(t.position) || t.is_open()
            })
        else {
            return;
        };
        // The in-process tiers are written at once (their write never waits), the others
        // together; the common promotion (an L2 hit into a memory L1) allocates no list.
        let mut others = Vec::new();
        for (t, e) in plan {
            if t.scope == Scope::Process && t.memory().is_some() {
                self.promote_into(t, key, e, fill.snap, scope).await;
            } else {
                others.push(self.promote_into(t, key, e, fill.snap, scope));
            }
        }
        if !others.is_empty() {
            join_all(others).await;
        }
    }

    /// Fill one tier of a promotion and account for it.
    async fn promote_into(
        &self,
        t: &Tier,
        key: &Key,
        e: Entry,
        snap: Snapshot,
        scope: &OpScope<'_>,
    ) {
        let tel = &self.inner.telemetry;
        let stored = self.write_to(t, key, e, How::Fill(snap)).await;
        crate::log::fill(tel, t.position, &stored);
        if let Ok(true) = stored {
            tel.promoted(t.position);
            scope.event("promotion", t.position);
        }
    }
}

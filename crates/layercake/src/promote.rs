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
use crate::tier::Tier;
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
        let Some(upto) = promotion_upto(found, upgrade_l1) else {
            return Vec::new();
        };
        let d = self
            .inner
            .decide(key, entry.value.len(), entry.is_negative());
        let Some(copy) = promotion_copy(entry, d.promotion, now) else {
            return Vec::new();
        };
        self.inner.tiers[..upto.min(self.inner.tiers.len())]
            .iter()
            .filter(|t| {
                d.tiers.contains(t.position)
                    && !self.call.skip.contains(t.position)
                    && !skip(t)
                    && !self.inner.repairs.skips_entry(t.position, key, &entry.tags)
            })
            .map(|t| (t, self.tier_copy(t, &copy, now, decoded)))
            .collect()
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
        let plan = self.promotion_plan(key, entry, found, upgrade_l1, decoded.as_ref(), now, |t| {
            fill.failed.contains(t.position) || t.is_open()
        });
        let tel = &self.inner.telemetry;
        let jobs = plan.into_iter().map(|(t, e)| async move {
            let stored = self.write_to(t, key, e, How::Fill(fill.snap)).await;
            crate::log::fill(tel, t.position, &stored);
            if let Ok(true) = stored {
                tel.promoted(t.position);
                scope.event("promotion", t.position);
            }
        });
        join_all(jobs).await;
    }
}

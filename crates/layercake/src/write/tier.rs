//! One write, tier by tier: the copy each tier gets (`tier_copy`), the write to one tier
//! (`write_to_tier`: the in-process tier under the key's epoch lock, conditional fills, the
//! undo of a fill a concurrent change overtook, write-behind queues) and the fan-out of one
//! entry to several tiers at once (`write_all`).

use std::any::Any;
use std::sync::Arc;

use futures::future::join_all;
use layercake_core::{Entry, FillOutcome, Key, Result, Timestamp};

use super::How;
use crate::cache::Cache;
use crate::tier::{Scope, Tier};

/// Shorten an entry's lifetime (fresh and stale) to end by `cap`; never extends it.
pub(crate) fn cap_lifetime(e: &mut Entry, cap: Timestamp) {
    e.expires_at = e.expires_at.min(cap);
    e.stale_until = e.stale_until.map(|s| s.min(cap));
}

impl Cache {
    /// The copy of `entry` for `tier`: capped while the backplane is down if the tier is
    /// process- or host-local, and carrying the decoded value if the tier is in-process.
    pub(crate) fn tier_copy(
        &self,
        tier: &Tier,
        entry: &Entry,
        now: Timestamp,
        decoded: Option<&Arc<dyn Any + Send + Sync>>,
    ) -> Entry {
        let mut e = entry.clone();
        if let Some(max) = tier.max_ttl {
            cap_lifetime(&mut e, now.plus(max));
        }
        if tier.scope != Scope::Shared
            && let Some(bp) = &self.inner.backplane
            && !bp.is_connected()
        {
            cap_lifetime(&mut e, now.plus(self.inner.disconnected_cap));
        }
        match decoded {
            Some(v) if tier.scope == Scope::Process => e.with_decoded(v.clone()),
            _ => e,
        }
    }

    /// Write one entry to one tier, through its write-behind queue if it has one; `Ok(false)`
    /// when a fill was dropped because the key changed since its read began.
    ///
    /// An in-process memory tier is written synchronously under the key's epoch lock: a
    /// [`How::Set`] bumps the epoch, a [`How::Fill`] writes only if the epoch did not move.
    pub(crate) async fn write_to_tier(
        &self,
        tier: &Tier,
        key: &Key,
        entry: Entry,
        how: How,
    ) -> Result<bool> {
        let epochs = &self.inner.epochs;
        if tier.scope == Scope::Process
            && let Some(mem) = tier.memory()
        {
            let r = match how {
                How::Set => epochs
                    .change(key, || mem.set_sync(key, &entry))
                    .map(|()| true),
                How::Fill(snap) => epochs
                    .fill_if_unchanged(key, snap, || mem.set_sync(key, &entry))
                    .map_or(Ok(false), |r| r.map(|()| true)),
            };
            return r.map_err(|e| {
                let e = e.with_tier(tier.name.clone());
                self.inner.telemetry.error(tier.position, &e);
                e
            });
        }
        if let How::Fill(snap) = how
            && epochs.changed_since(key, snap)
        {
            return Ok(false);
        }
        let tel = &self.inner.telemetry;
        let fill = matches!(how, How::Fill(_));
        if fill && tier.capability.conditional_fill {
            // The backend refuses, atomically, a fill older than what it holds or than a
            // removal's tombstone: a fill can never undo a newer write or a removal, in this
            // instance or another, however late it lands.
            if let Some(wb) = &tier.write_behind {
                match wb.try_write(key.clone(), entry, true) {
                    None => return Ok(true),
                    Some((k, e)) => {
                        tel.write_behind_full(tier.position);
                        return tier
                            .call(tel, true, tier.backend.fill(&k, &e))
                            .await
                            .map(FillOutcome::is_stored);
                    }
                }
            }
            return tier
                .call(tel, true, tier.backend.fill(key, &entry))
                .await
                .map(FillOutcome::is_stored);
        }
        if let How::Fill(snap) = how
            && tier.write_behind.is_none()
        {
            // A backend without conditional fills: a fill of a tier other instances read can
            // land after a concurrent change of the key and overwrite it. If the key changed
            // while the fill was written, delete the copy; if a change arrives later (a
            // backplane message), the listener deletes it.
            let _serial = epochs.fill_lock(key).write().await;
            // A backplane message applied while this fill waited for the lock has changed the
            // epoch: writing now would put the old value where the other instance just
            // deleted it, visible until the undo below.
            if epochs.changed_since(key, snap) {
                return Ok(false);
            }
            self.inner.recent_fills.record(key, 1 << tier.position);
            let written = tier.set(tel, key, &entry).await;
            if written.is_ok() && epochs.changed_since(key, snap) {
                let _ = tier.call(tel, true, tier.backend.delete(key)).await;
                return Ok(false);
            }
            return written.map(|()| true);
        }
        if let Some(wb) = &tier.write_behind {
            return match wb.try_write(key.clone(), entry, false) {
                None => Ok(true),
                Some((k, e)) => {
                    tel.write_behind_full(tier.position);
                    tier.set(tel, &k, &e).await.map(|()| true)
                }
            };
        }
        tier.set(tel, key, &entry).await.map(|()| true)
    }

    /// Write `entry` to every tier of `targets` at once; the results in the order of `targets`.
    ///
    /// An in-process memory tier's write never waits (see [`write_to_tier`](Cache::write_to_tier)),
    /// so with such an L1 and one tier below it (the common hierarchy) the two writes are
    /// awaited one after the other: the same order, within the same poll, as joining them, but
    /// without the boxed list of futures `join_all` builds (its allocation and the moves of two
    /// large futures into it were ~4 % of a `set`). Any other set of tiers is joined.
    pub(super) async fn write_all(
        &self,
        targets: &[&Tier],
        key: &Key,
        entry: &Entry,
        now: Timestamp,
        decoded: Option<&Arc<dyn Any + Send + Sync>>,
        how: How,
    ) -> Vec<Result<bool>> {
        let one = |i: usize| {
            let t = targets[i];
            self.write_to(t, key, self.tier_copy(t, entry, now, decoded), how)
        };
        match targets {
            [l1, _] if l1.scope == Scope::Process && l1.memory().is_some() => {
                let first = one(0).await;
                vec![first, one(1).await]
            }
            _ => join_all((0..targets.len()).map(one)).await,
        }
    }
}

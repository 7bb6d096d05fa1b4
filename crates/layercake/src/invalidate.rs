//! Removal: `delete`, `invalidate*` and `clear`, all through `remove_everywhere`, which
//! reaches every tier (through write-behind queues in order) and publishes the change; a tier
//! that failed gets a repair note (the key, the selection, or everything for `clear`).

use futures::future::join_all;
use layercake_core::backplane::Target;
use layercake_core::{Error, ErrorKind, Key, Result, Selector, Tombstone};

use crate::cache::Cache;
use crate::key_input::IntoKey;
use crate::stats::Op;
use crate::telemetry::ok_or_error;
use crate::tier::Scope;

/// What [`Cache::remove_everywhere`] removes.
#[derive(Clone)]
pub(crate) enum Removal {
    Key(Key),
    Select(Selector),
}
impl Cache {
    /// Remove a key or a selection from every tier, in parallel, through write-behind queues
    /// where a tier has one (keeping order with queued writes); the first error, after every
    /// tier was tried. Each tier that failed gets a repair note; a key removed from a tier
    /// resolves that tier's note of the key.
    ///
    /// Tiers outside the process are asked to leave a tombstone of `version` (for the cache's
    /// tombstone lifetime), so that a fill whose read began before this removal — in this
    /// instance or another — is refused when it lands.
    pub(crate) async fn remove_everywhere(&self, what: &Removal, version: u64) -> Result<()> {
        let tel = &self.inner.telemetry;
        let epochs = &self.inner.epochs;
        let tomb = Tombstone::new(version, self.inner.tombstone_ttl);
        self.inner.insight.removed(what);
        if let Removal::Select(_) = what {
            epochs.change_all();
        }
        let _writing = match what {
            Removal::Key(k) => Some(epochs.fill_lock(k).read().await),
            Removal::Select(_) => None,
        };
        let results = join_all(self.inner.tiers.iter().map(|t| async move {
            if let (Removal::Key(k), Scope::Process, Some(mem)) = (what, t.scope, t.memory()) {
                epochs.change(k, || mem.delete_sync(k));
                return Ok(());
            }
            if let Some(wb) = &t.write_behind {
                let job = |ack| match what.clone() {
                    Removal::Key(k) => crate::write_behind::Job::Delete(k, tomb, ack),
                    Removal::Select(s) => crate::write_behind::Job::Invalidate(s, tomb, ack),
                };
                if let Some(r) = wb.send_and_wait(job).await {
                    return r;
                }
            }
            match what {
                Removal::Key(k) => t.call(tel, true, t.backend.delete_with(k, tomb)).await,
                Removal::Select(s) => t.call(tel, true, t.backend.invalidate_with(s, tomb)).await,
            }
        }))
        .await;
        // Again once every tier is done: a read that promoted an old copy from a slower tier
        // meanwhile must not keep it.
        match what {
            Removal::Key(k) => {
                for t in self
                    .inner
                    .tiers
                    .iter()
                    .filter(|t| t.scope == Scope::Process)
                {
                    if let Some(mem) = t.memory() {
                        epochs.change(k, || mem.delete_sync(k));
                    }
                }
            }
            Removal::Select(s) => {
                epochs.change_all();
                for t in self
                    .inner
                    .tiers
                    .iter()
                    .filter(|t| t.scope == Scope::Process)
                {
                    let _ = t.call(tel, true, t.backend.invalidate(s)).await;
                }
            }
        }
        self.note_removals(what, results, version)
    }

    /// Note a repair on each tier whose removal failed; the first error.
    fn note_removals(&self, what: &Removal, results: Vec<Result<()>>, version: u64) -> Result<()> {
        let repairs = &self.inner.repairs;
        let mut first: Option<Error> = None;
        for (t, r) in self.inner.tiers.iter().zip(results) {
            match (r, what) {
                (Ok(()), Removal::Key(k)) => repairs.resolved_key(t.position, k),
                (Ok(()), Removal::Select(_)) => {}
                (Err(e), Removal::Key(k)) => {
                    let _ = repairs.note_key(t.position, k, &e, version);
                    first = first.or(Some(e));
                }
                (Err(e), Removal::Select(s)) => {
                    // A tier that cannot invalidate by this selector cannot be repaired by it.
                    if e.kind() != ErrorKind::Unsupported {
                        let _ = repairs.note_selector(t.position, s, version);
                    }
                    first = first.or(Some(e));
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Remove a key from every tier; an error if any tier could not be reached.
    ///
    /// `Ok` promises that every tier removed the key: no instance reads the removed value
    /// from a shared tier, and other instances drop their local copies (backplane). An error
    /// names the first tier that failed; each failed tier holds a repair note, so this
    /// instance never reads the key from it, and the repair removes it there once the tier
    /// answers again (the removed value then comes back nowhere).
    pub async fn delete(&self, key: impl IntoKey) -> Result<()> {
        let tel = &self.inner.telemetry;
        let scope = tel.start(Op::Delete);
        let r = async {
            let key = key.into_key(&*self.keys)?;
            self.inner.flights.supersede_key(&key);
            let version = self.inner.versions.next();
            let removed = self
                .remove_everywhere(&Removal::Key(key.clone()), version)
                .await;
            self.inner.publish_key(&key, version).await;
            removed
        }
        .await;
        tel.finish(scope, ok_or_error(&r));
        r
    }

    /// Remove every entry whose key starts with the namespace prefix plus `prefix`, from every
    /// tier. Pass `""` to drop the whole namespace.
    pub async fn invalidate_prefix(&self, prefix: &str) -> Result<()> {
        let full = format!("{}{prefix}", self.keys.namespace().prefix());
        self.invalidate(Selector::Prefix(full)).await
    }

    /// Remove every entry carrying `tag`, from every tier.
    pub async fn invalidate_tag(&self, tag: &str) -> Result<()> {
        self.invalidate(Selector::Tag(tag.to_owned())).await
    }

    /// Remove every entry the selector matches, from every tier; an error if any tier could
    /// not do it (including tiers that cannot invalidate by that selector). The contract of
    /// [`delete`](Cache::delete): each failed tier holds a repair note for the selection
    /// (this instance skips what it matches there; the repair invalidates it there).
    pub async fn invalidate(&self, selector: Selector) -> Result<()> {
        let tel = &self.inner.telemetry;
        let scope = tel.start(Op::Invalidate);
        self.inner.flights.supersede(Some(&selector));
        let version = self.inner.versions.next();
        let removed = self
            .remove_everywhere(&Removal::Select(selector.clone()), version)
            .await;
        let target = match &selector {
            Selector::Prefix(p) => Target::Prefix(p.clone()),
            Selector::Tag(t) => Target::Tag(t.clone()),
            _ => Target::All,
        };
        self.inner.publish(target, version).await;
        let r = removed;
        tel.finish(scope, ok_or_error(&r));
        r
    }

    /// Remove everything from every tier. The contract of [`delete`](Cache::delete): a tier
    /// that failed is noted whole — this instance reads nothing from it until the repair has
    /// cleared it. A tier with a write-behind queue is cleared in queue order: no write queued
    /// before `clear` lands after it.
    pub async fn clear(&self) -> Result<()> {
        let tel = &self.inner.telemetry;
        let marks: Vec<u64> = (0..self.inner.tiers.len())
            .map(|i| self.inner.repairs.record(i).map_or(0, |r| r.mark()))
            .collect();
        self.inner.flights.supersede(None);
        self.inner.epochs.change_all();
        self.inner.insight.removed_selector(None);
        let results = join_all(self.inner.tiers.iter().map(|t| async move {
            if let Some(wb) = &t.write_behind
                && let Some(r) = wb.send_and_wait(crate::write_behind::Job::Clear).await
            {
                return r;
            }
            t.call(tel, true, t.backend.clear()).await
        }))
        .await;
        self.inner.publish(Target::All, 0).await;
        let mut first = None;
        for ((i, r), mark) in results.into_iter().enumerate().zip(marks) {
            match r {
                Ok(()) => {
                    if let Some(rec) = self.inner.repairs.record(i) {
                        rec.resolved_upto(mark);
                    }
                }
                Err(e) => {
                    self.inner.repairs.note_everything(i);
                    first = first.or(Some(e));
                }
            }
        }
        first.map_or(Ok(()), Err)
    }
}

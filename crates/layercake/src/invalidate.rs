//! Removal: `delete`, `invalidate*` and `clear`, all through `remove_everywhere`, which
//! reaches every tier (through write-behind queues in order) and publishes the change.

use futures::future::join_all;
use layercake_core::backplane::Target;
use layercake_core::{Key, Result, Selector, Tombstone};

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
    /// tier was tried.
    ///
    /// Tiers outside the process are asked to leave a tombstone of `version` (for the cache's
    /// tombstone lifetime), so that a fill whose read began before this removal — in this
    /// instance or another — is refused when it lands.
    pub(crate) async fn remove_everywhere(&self, what: &Removal, version: u64) -> Result<()> {
        let tel = &self.inner.telemetry;
        let epochs = &self.inner.epochs;
        let tomb = Tombstone::new(version, self.inner.tombstone_ttl);
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
        results.into_iter().collect()
    }

    /// Remove a key from every tier; an error if any tier could not be reached.
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
            self.inner
                .publish(Target::Key(key.as_str().to_owned()), version)
                .await;
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
    /// not do it (including tiers that cannot invalidate by that selector).
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

    /// Remove everything from every tier. A tier with a write-behind queue is cleared in
    /// queue order: no write queued before `clear` lands after it.
    pub async fn clear(&self) -> Result<()> {
        let tel = &self.inner.telemetry;
        self.inner.flights.supersede(None);
        self.inner.epochs.change_all();
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
        results.into_iter().collect::<Result<Vec<()>>>().map(|_| ())
    }
}

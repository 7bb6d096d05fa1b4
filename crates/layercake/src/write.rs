//! Writes: `set`, encoding a value into an entry (`prepare`), and the fan-out of one entry to
//! the tiers (`write_entry`, per tier `write_to`) with its epoch guards, write-behind queues
//! and the rollback after a permanent rejection.

use std::any::Any;
use std::sync::Arc;

use futures::future::join_all;
use layercake_core::backplane::Target;
use layercake_core::{Entry, EntryFlags, Error, FillOutcome, Key, Result, TierSet, Timestamp};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::{Cache, WriteOptions};
use crate::coherence::epochs::Snapshot;
use crate::key_input::IntoKey;
use crate::stats::Op;
use crate::telemetry::ok_or_error;
use crate::tier::{Scope, Tier};

/// How a write relates to concurrent changes of its key.
#[derive(Debug, Clone, Copy)]
pub(crate) enum How {
    /// An authoritative write (`set`): it is the newest value.
    Set,
    /// A fill (promotion, load result): written only if the key did not change since the
    /// read that produced it began.
    Fill(Snapshot),
}

/// An encoded entry and where it may go.
pub(crate) struct Prepared {
    pub(crate) entry: Entry,
    pub(crate) tiers: TierSet,
    pub(crate) decoded: Option<Arc<dyn Any + Send + Sync>>,
}

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
    pub(crate) async fn write_to(
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
            let written = tier.call(tel, true, tier.backend.set(key, &entry)).await;
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
                    tier.call(tel, true, tier.backend.set(&k, &e))
                        .await
                        .map(|()| true)
                }
            };
        }
        tier.call(tel, true, tier.backend.set(key, &entry))
            .await
            .map(|()| true)
    }

    /// Write an entry to the tiers of `tiers`; see the contract on [`Cache`].
    pub(crate) async fn write_entry(
        &self,
        key: &Key,
        entry: Entry,
        tiers: TierSet,
        decoded: Option<Arc<dyn Any + Send + Sync>>,
        how: How,
    ) -> Result<()> {
        let now = self.inner.clock.now();
        let targets: Vec<&Tier> = self
            .inner
            .tiers
            .iter()
            .filter(|t| tiers.contains(t.position))
            .collect();
        if targets.is_empty() {
            return Ok(());
        }
        let size = entry.value.len() + key.len() + 64;
        if let Some(t) = targets
            .iter()
            .find(|t| t.capability.max_value_bytes.is_some_and(|m| size > m))
        {
            return Err(Error::too_large(format!(
                "a value of {} bytes does not fit tier {} (limit {:?} bytes); route it with a \
                 size policy",
                entry.value.len(),
                t.name,
                t.capability.max_value_bytes
            ))
            .with_tier(t.name.clone())
            .with_backend(t.kind));
        }
        let _writing = match how {
            How::Set => Some(self.inner.epochs.fill_lock(key).read().await),
            How::Fill(_) => None,
        };
        let results = join_all(targets.iter().map(|t| {
            let e = self.tier_copy(t, &entry, now, decoded.as_ref());
            self.write_to(t, key, e, how)
        }))
        .await;
        if let How::Set = how {
            // A read that began after the in-process write but read a slower tier before
            // that tier was written may have promoted the old value: write it again, under a
            // new epoch, now that every tier has the new value.
            for t in &targets {
                if t.scope == Scope::Process
                    && let Some(mem) = t.memory()
                {
                    let e = self.tier_copy(t, &entry, now, decoded.as_ref());
                    let _ = self.inner.epochs.change(key, || mem.set_sync(key, &e));
                }
            }
        }
        let mut stored = Vec::new();
        let mut dropped = false;
        let mut temporary = None;
        let mut permanent = None;
        for (t, r) in targets.iter().zip(results) {
            match r {
                Ok(true) => stored.push(*t),
                Ok(false) => dropped = true,
                Err(e) if e.is_temporary() => temporary = temporary.or(Some(e)),
                Err(e) => permanent = permanent.or(Some(e)),
            }
        }
        if let Some(e) = permanent {
            // Nothing partial: remove what the other tiers took.
            for t in stored {
                let _ = t
                    .call(&self.inner.telemetry, true, t.backend.delete(key))
                    .await;
            }
            return Err(e);
        }
        match (stored.is_empty() && !dropped, temporary) {
            (true, Some(e)) => Err(e),
            _ => Ok(()),
        }
    }

    // ---------------------------------------------------------------- writes

    /// Write a value to every tier the policy allows, with the policy's TTL.
    pub async fn set<T>(&self, key: impl IntoKey, value: T) -> Result<()>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        self.set_with(key, value, &WriteOptions::default()).await
    }

    /// Write a value with tags and/or an explicit TTL.
    pub async fn set_with<T>(&self, key: impl IntoKey, value: T, opts: &WriteOptions) -> Result<()>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let tel = &self.inner.telemetry;
        let scope = tel.start(Op::Set);
        let r = async {
            let key = key.into_key(&*self.keys)?;
            let version = self
                .store(&key, Some(Arc::new(value)), opts, How::Set, None)
                .await?;
            self.inner
                .publish(Target::Key(key.as_str().to_owned()), version)
                .await;
            Ok(())
        }
        .await;
        tel.finish(scope, ok_or_error(&r));
        r
    }

    /// Encode a value (`None` = a negative entry) into the entry to write, with the tiers the
    /// policy allows; `None` when the policy does not cache it. The entry's version is
    /// `version` (a fill passes the version taken before its read began, so that any write or
    /// removal during the load is newer), or a new one.
    pub(crate) fn prepare<T>(
        &self,
        key: &Key,
        value: Option<&Arc<T>>,
        opts: &WriteOptions,
        version: Option<u64>,
    ) -> Result<Option<Prepared>>
    where
        T: Serialize + Send + Sync + 'static,
    {
        let inner = &*self.inner;
        let (bytes, format, compression) = match value {
            Some(v) => {
                let enc = inner.codec.encode(&**v)?;
                (enc.bytes, enc.format, enc.compression)
            }
            None => (
                Vec::new(),
                inner.codec.format(),
                layercake_core::Compression::None,
            ),
        };
        let d = self.inner.decide(key, bytes.len(), value.is_none());
        let ttl = match (value.is_some(), opts.ttl) {
            (true, Some(t)) => t,
            _ => d.ttl,
        };
        if ttl.is_zero() || d.tiers.is_empty() {
            return Ok(None);
        }
        let entry = Entry::new(bytes, inner.clock.now(), ttl)
            .with_stale_for(d.stale_for)
            .with_tags(opts.tags.iter().cloned())
            .with_version(version.unwrap_or_else(|| inner.versions.next()))
            .with_encoding(format, compression)
            .with_flags(if value.is_none() {
                EntryFlags::NEGATIVE
            } else {
                EntryFlags::NONE
            });
        Ok(Some(Prepared {
            entry,
            tiers: d.tiers,
            decoded: value.map(|v| v.clone() as Arc<dyn Any + Send + Sync>),
        }))
    }

    /// Encode and write a value; returns the version written (0 when the policy does not
    /// cache it). `version` as for [`Cache::prepare`].
    pub(crate) async fn store<T>(
        &self,
        key: &Key,
        value: Option<Arc<T>>,
        opts: &WriteOptions,
        how: How,
        version: Option<u64>,
    ) -> Result<u64>
    where
        T: Serialize + Send + Sync + 'static,
    {
        if let How::Set = how {
            self.inner.flights.supersede_key(key);
        }
        let Some(p) = self.prepare(key, value.as_ref(), opts, version)? else {
            return Ok(0);
        };
        let version = p.entry.version;
        self.write_entry(key, p.entry, p.tiers, p.decoded, how)
            .await?;
        Ok(version)
    }
}

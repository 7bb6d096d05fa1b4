//! Writes: `set`, encoding a value into an entry (`prepare`), and the fan-out of one entry to
//! the tiers (`write_entry`) with the exact size check before any tier is touched, the set's
//! guards against promotions in flight, and the outcome per tier: repair notes for the tiers
//! that did not answer, the older copy removed from a tier that refused. The write to each
//! tier is in [`tier`].

mod tier;

pub(crate) use tier::cap_lifetime;

use std::any::Any;
use std::sync::Arc;

use layercake_core::envelope::{self, EnvelopeLimits};
use layercake_core::{Entry, EntryFlags, Error, Key, Result, TierSet};
use serde::Serialize;

use crate::cache::{Cache, WriteOptions};
use crate::coherence::epochs::Snapshot;
use crate::key_input::IntoKey;
use crate::repair::record::Noted;
use crate::repair::record_full;
use crate::repair::report::WriteReport;
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

/// What a write did, tier by tier (bit `i` = tier `i`; no allocation on the no-fault path).
#[derive(Debug, Default)]
pub(crate) struct Written {
    /// Tiers that took the entry (a write-behind tier: queued it).
    pub(crate) stored: u64,
    /// Tiers that failed temporarily and hold a repair note for the key.
    pub(crate) pending: u64,
    /// The first of their errors.
    pub(crate) error: Option<Error>,
}

impl Cache {
    /// Write an entry to the tiers of `tiers`; see the write contract on [`Cache`]. A
    /// [`How::Set`] is `Ok` when a tier took it and no tier refused it permanently; the tiers
    /// that failed temporarily then hold a repair note ([`Written::pending`]).
    pub(crate) async fn write_entry(
        &self,
        key: &Key,
        entry: Entry,
        tiers: TierSet,
        decoded: Option<Arc<dyn Any + Send + Sync>>,
        how: How,
    ) -> Result<Written> {
        let now = self.inner.clock.now();
        // A fill skips the tiers this handle's options skip.
        let tiers = match how {
            How::Fill(_) => tiers.without(self.call.skip),
            How::Set => tiers,
        };
        let targets: Vec<&Tier> = self
            .inner
            .tiers
            .iter()
            .filter(|t| tiers.contains(t.position))
            .collect();
        if targets.is_empty() {
            return Ok(Written::default());
        }
        // Everything that can be known before writing is checked before writing: the exact
        // envelope (key, tags, payload) against every target's limit.
        let size = envelope::measure(key, &entry, &EnvelopeLimits::default())?;
        if let Some(t) = targets
            .iter()
            .find(|t| t.capability.max_value_bytes.is_some_and(|m| size > m))
        {
            return Err(Error::too_large(format!(
                "an entry of {size} bytes (a value of {} bytes, its key and tags) does not fit \
                 tier {} (limit {:?} bytes); route it with a size policy",
                entry.value.len(),
                t.name,
                t.capability.max_value_bytes
            ))
            .with_tier(t.name.clone())
            .with_backend(t.kind));
        }
        let repairs = &self.inner.repairs;
        let targets: Vec<&Tier> = match how {
            How::Set => targets,
            // A fill never writes into a tier that may hold an older copy awaiting its repair.
            How::Fill(_) => targets
                .into_iter()
                .filter(|t| !repairs.skips_entry(t.position, key, &entry.tags))
                .collect(),
        };
        // A set holds the key's fill lock across its fan-out, and notes the promotions the
        // key's stripe let through so far (its second write of the in-process tier depends on
        // them); a fill needs neither.
        let (_writing, fills) = match how {
            How::Set => (
                Some(self.inner.epochs.fill_lock(key).read().await),
                Some(self.inner.epochs.fills_mark(key)),
            ),
            How::Fill(_) => (None, None),
        };
        let results = self
            .write_all(&targets, key, &entry, now, decoded.as_ref(), how)
            .await;
        if let Some(fills) = fills {
            // A read that began after the in-process write but read a slower tier before
            // that tier was written may have promoted the old value: now that every tier has
            // the new value, bump the epoch (a promotion that read before now is refused) and
            // write the in-process tier again if a promotion got through meanwhile.
            for t in &targets {
                if t.scope == Scope::Process
                    && let Some(mem) = t.memory()
                {
                    let _ = self.inner.epochs.change_if_filled_since(key, fills, || {
                        mem.set_sync(key, &self.tier_copy(t, &entry, now, decoded.as_ref()))
                    });
                }
            }
        }
        let set = matches!(how, How::Set);
        // A repair removes what is older than this write, and refuses fills of it.
        let older = entry.version.saturating_sub(1);
        let mut w = Written::default();
        let mut dropped = false;
        let mut failed = Vec::new();
        let mut permanent = None;
        for (t, r) in targets.iter().zip(results) {
            match r {
                Ok(true) => {
                    w.stored |= 1 << t.position;
                    if set && t.write_behind.is_none() {
                        repairs.resolved_key(t.position, key);
                    }
                }
                Ok(false) => dropped = true,
                Err(e) if e.is_temporary() => failed.push((*t, e)),
                Err(e) => {
                    if set {
                        // The other tiers keep the new value: the refusing tier must not keep
                        // serving the older one.
                        let removed = t
                            .call(&self.inner.telemetry, true, t.backend.delete(key))
                            .await;
                        if let Err(d) = removed {
                            let _ = repairs.note_key(t.position, key, &d, older);
                        }
                    }
                    permanent = permanent.or(Some(e));
                }
            }
        }
        if set && (permanent.is_some() || w.stored != 0) {
            // The value is in some tier: every tier that did not take it gets a repair note.
            let mut refused = None;
            for (t, e) in failed {
                match repairs.note_key(t.position, key, &e, older) {
                    Noted::Refused => refused = refused.or_else(|| Some(record_full(&t.name, &e))),
                    Noted::Recorded | Noted::Overflowed => w.pending |= 1 << t.position,
                }
                w.error = w.error.or(Some(e));
            }
            if let Some(e) = permanent.or(refused) {
                return Err(e);
            }
            return Ok(w);
        }
        if let Some(e) = permanent {
            return Err(e);
        }
        match failed.into_iter().next() {
            Some((_, e)) if w.stored == 0 && !dropped => Err(e),
            _ => Ok(w),
        }
    }

    // ---------------------------------------------------------------- writes

    /// Write a value to every tier the policy allows, with the policy's TTL.
    ///
    /// `Ok` promises, for every tier the policy assigns: the tier took the value, or it did
    /// not answer (timeout, unreachable, open breaker, out of memory, disk full) and holds a
    /// repair note for the key — reads skip the key there and the repair removes the tier's
    /// older copy once it answers again, before this instance reads the key from it again.
    /// At least one tier took the value. See the write contract on [`Cache`] for what other
    /// instances see; [`set_reporting`](Cache::set_reporting) tells which tiers took it, and
    /// [`strict_writes`](crate::CacheBuilder::strict_writes) makes a pending repair an error.
    ///
    /// An error promises nothing about the new value; a rejection known before writing (the
    /// entry over a tier's size limit, a key, tag or codec error) touches no tier, so the
    /// previous value stays readable everywhere.
    pub async fn set<T>(&self, key: impl IntoKey, value: T) -> Result<()>
    where
        T: Serialize + Send + Sync + 'static,
    {
        self.set_with(key, value, &WriteOptions::default()).await
    }

    /// Write a value with tags and/or an explicit TTL; the contract of [`set`](Cache::set).
    pub async fn set_with<T>(&self, key: impl IntoKey, value: T, opts: &WriteOptions) -> Result<()>
    where
        T: Serialize + Send + Sync + 'static,
    {
        let strict = self.inner.repairs.strict;
        self.set_reported(key, value, opts, strict).await.map(drop)
    }

    /// [`set_with`](Cache::set_with), telling which assigned tiers took the value and which
    /// are left to the repair. Never an error for a pending repair, even with
    /// [`strict_writes`](crate::CacheBuilder::strict_writes).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> layercake::Result<()> {
    /// use layercake::{Cache, MemoryBackend, WriteOptions};
    /// let cache = Cache::builder("docs").tier(MemoryBackend::with_max_bytes(1 << 20)?).build()?;
    /// let report = cache.set_reporting("k", 1u32, &WriteOptions::new()).await?;
    /// assert_eq!(report.stored, ["l1"]);
    /// assert!(report.is_complete());
    /// # Ok(()) }
    /// ```
    pub async fn set_reporting<T>(
        &self,
        key: impl IntoKey,
        value: T,
        opts: &WriteOptions,
    ) -> Result<WriteReport>
    where
        T: Serialize + Send + Sync + 'static,
    {
        let w = self.set_reported(key, value, opts, false).await?;
        let names = |bits: u64| {
            self.inner
                .tiers
                .iter()
                .filter(|t| bits & (1 << t.position) != 0)
                .map(|t| t.name.to_string())
                .collect()
        };
        Ok(WriteReport {
            stored: names(w.stored),
            pending_repair: names(w.pending),
        })
    }

    async fn set_reported<T>(
        &self,
        key: impl IntoKey,
        value: T,
        opts: &WriteOptions,
        strict: bool,
    ) -> Result<Written>
    where
        T: Serialize + Send + Sync + 'static,
    {
        let tel = &self.inner.telemetry;
        let scope = tel.start(Op::Set);
        let r = async {
            let key = key.into_key(&*self.keys)?;
            let (version, written) = self
                .store(&key, Some(Arc::new(value)), opts, How::Set, None)
                .await?;
            self.inner.publish_key(&key, version).await;
            self.strict(written, strict)
        }
        .await;
        tel.finish(scope, ok_or_error(&r));
        r
    }

    /// With `strict`, a pending repair is an error: the first tier's.
    pub(crate) fn strict(&self, w: Written, strict: bool) -> Result<Written> {
        match w.error {
            Some(e) if strict => Err(e),
            _ => Ok(w),
        }
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
        // The encoded bytes as the payload, marked as a whole allocation: the memory tier
        // keeps them without a copy.
        let entry = Entry::new(layercake_core::Bytes::new(), inner.clock.now(), ttl)
            .with_owned_value(bytes)
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
    /// cache it) and what each tier did. `version` as for [`Cache::prepare`].
    pub(crate) async fn store<T>(
        &self,
        key: &Key,
        value: Option<Arc<T>>,
        opts: &WriteOptions,
        how: How,
        version: Option<u64>,
    ) -> Result<(u64, Written)>
    where
        T: Serialize + Send + Sync + 'static,
    {
        if let How::Set = how {
            self.inner.flights.supersede_key(key);
        }
        let Some(p) = self.prepare(key, value.as_ref(), opts, version)? else {
            return Ok((0, Written::default()));
        };
        let version = p.entry.version;
        let written = self
            .write_entry(key, p.entry, p.tiers, p.decoded, how)
            .await?;
        Ok((version, written))
    }
}

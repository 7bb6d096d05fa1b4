//! Reads: `get`, the synchronous L1 fast path, and the read-through loop that walks the tiers
//! top-down (falling through errors, open breakers and undecodable copies) and hands fresh
//! hits to [`promote`](crate::promote).

use std::sync::Arc;

use layercake_core::{Entry, Key, Result, TierSet, Timestamp};
use serde::de::DeserializeOwned;

use crate::cache::Cache;
use crate::coherence::epochs::Snapshot;
use crate::key_input::IntoKey;
use crate::lookup::{Hit, Lookup, Source};
use crate::promote::{Fill, promotion_upto};
use crate::stats::Op;
use crate::telemetry::{OpScope, Outcome};
use crate::tier::Scope;
use crate::value::{Value, decode_typed};

pub(crate) struct Found<V> {
    pub(crate) tier: usize,
    pub(crate) entry: Entry,
    pub(crate) value: V,
}

/// What the synchronous L1 read found.
pub(crate) enum L1Fast<T> {
    /// A fresh entry with a decoded `T` (or a negative entry).
    Hit(Arc<Entry>, Value<T>),
    /// L1 is a plain memory tier and holds nothing for the key.
    Absent,
    /// Anything else: read L1 the general way.
    Other,
}

pub(crate) struct Read<V> {
    pub(crate) fresh: Option<Found<V>>,
    pub(crate) stale: Option<Found<V>>,
    /// The epochs before the first tier read (for promotions and fills).
    pub(crate) snap: Snapshot,
    /// Tiers that failed during this read (promotions skip them).
    pub(crate) failed: TierSet,
}
impl Cache {
    // ---------------------------------------------------------------- reads

    /// Read a value. `Ok(None)` when no tier holds a fresh copy (a cached "not found" also
    /// reads as `None`). A read needs only `DeserializeOwned`: lower tiers' copies are
    /// promoted as they are, never encoded again.
    pub async fn get<T>(&self, key: impl IntoKey) -> Result<Option<Lookup<Arc<T>>>>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        Ok(self.get_hit::<T>(key).await?.map(|h| Lookup {
            value: h.value,
            source: h.source,
        }))
    }

    /// [`get`](Cache::get) with the entry's times: when it was written, its age and remaining
    /// fresh life, whether it is stale (only with
    /// [`ReadOptions::allow_stale`](crate::ReadOptions::allow_stale)).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> layercake::Result<()> {
    /// use layercake::memory::MemoryConfig;
    /// use layercake::{Cache, ManualClock, MemoryBackend, WriteOptions};
    /// use std::{sync::Arc, time::Duration};
    /// let clock = ManualClock::new();
    /// let cache = Cache::builder("docs")
    ///     .tier(MemoryBackend::new(MemoryConfig::new(1 << 20).with_clock(Arc::new(clock.clone())))?)
    ///     .clock(Arc::new(clock.clone()))
    ///     .build()?;
    /// cache.set_with("k", 1u32, &WriteOptions::new().ttl(Duration::from_secs(60))).await?;
    /// clock.advance(Duration::from_secs(15));
    /// let hit = cache.get_with_meta::<u32>("k").await?.unwrap();
    /// assert_eq!((*hit.value, hit.age(), hit.remaining()), (1, Duration::from_secs(15), Duration::from_secs(45)));
    /// assert!(!hit.is_stale());
    /// # Ok(()) }
    /// ```
    pub async fn get_with_meta<T>(&self, key: impl IntoKey) -> Result<Option<Hit<T>>>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        self.get_hit(key).await
    }

    async fn get_hit<T>(&self, key: impl IntoKey) -> Result<Option<Hit<T>>>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let tel = &self.inner.telemetry;
        let scope = tel.start(Op::Get);
        let key = match key.into_key(&*self.keys) {
            Ok(k) => k,
            Err(e) => {
                tel.finish(scope, Outcome::Error);
                return Err(e);
            }
        };
        self.inner.insight.read(&key);
        let now = self.inner.clock.now();
        let first = match self.l1_fast::<T>(&key, now) {
            L1Fast::Hit(entry, value) => {
                tel.hit(&scope, 0);
                tel.finish(scope, Outcome::Hit);
                return Ok(Hit::of(
                    value.into_option(),
                    Source::Hit { tier: 0 },
                    &entry,
                    now,
                ));
            }
            L1Fast::Absent => {
                tel.miss(&scope, 0);
                self.inner.insight.missed(0, &key, now);
                1
            }
            L1Fast::Other => 0,
        };
        let read = self
            .read_typed::<T>(&key, now, &scope, first..usize::MAX)
            .await;
        match (read.fresh, read.stale) {
            (Some(f), _) => {
                tel.finish(scope, Outcome::Hit);
                Ok(Hit::of(
                    f.value.into_option(),
                    Source::Hit { tier: f.tier },
                    &f.entry,
                    now,
                ))
            }
            (None, Some(s)) if self.call.read.allows_stale() => {
                tel.stale_served();
                tel.finish(scope, Outcome::Stale);
                Ok(Hit::of(s.value.into_option(), Source::Stale, &s.entry, now))
            }
            (None, _) => {
                tel.full_miss();
                tel.finish(scope, Outcome::Miss);
                Ok(None)
            }
        }
    }

    /// The L1 hit path without a future: when L1 is a memory tier without timeout or breaker,
    /// read it synchronously; a fresh entry carrying a decoded `T` (or a negative entry) is a
    /// hit, no entry at all is [`L1Fast::Absent`] (the read goes on from L2, not asking L1
    /// again). Anything else (stale, not yet decoded, another kind of L1) goes the general
    /// way.
    #[inline]
    pub(crate) fn l1_fast<T>(&self, key: &Key, now: Timestamp) -> L1Fast<T>
    where
        T: Send + Sync + 'static,
    {
        let Some(tier) = self.inner.tiers.first() else {
            return L1Fast::Other;
        };
        if tier.breaker.is_some() || self.call.skip.contains(0) || tier.read_timeout.is_some() {
            return L1Fast::Other;
        }
        // A repair pending on L1 (one load when none is): read it the general way.
        if self.inner.repairs.record(0).is_some_and(|r| !r.is_empty()) {
            return L1Fast::Other;
        }
        let Some(mem) = tier.memory() else {
            return L1Fast::Other;
        };
        let Some(entry) = mem.get_shared_at(key, now) else {
            return L1Fast::Absent;
        };
        if !entry.is_fresh(now) {
            return L1Fast::Other;
        }
        if entry.is_negative() {
            return L1Fast::Hit(entry, Value::Negative);
        }
        match entry.decoded().map(|d| d.clone().downcast::<T>()) {
            Some(Ok(value)) => L1Fast::Hit(entry, Value::Some(value)),
            _ => L1Fast::Other,
        }
    }

    /// Read through the tiers in `range`, decode, promote. Never fails: tier errors fall
    /// through.
    pub(crate) async fn read_typed<T>(
        &self,
        key: &Key,
        now: Timestamp,
        scope: &OpScope<'_>,
        range: std::ops::Range<usize>,
    ) -> Read<Value<T>>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let codec = self.inner.codec;
        let read = self
            .read_through(key, now, scope, range, |_, e| decode_typed::<T>(&codec, e))
            .await;
        if let Some(f) = &read.fresh {
            // Promote from lower tiers; upgrade an L1 copy that lacks the decoded value.
            let l1_lacks_value = f.tier == 0
                && self.inner.tiers[0].scope == Scope::Process
                && !f.entry.is_negative()
                && f.entry.decoded().is_none_or(|d| !d.is::<T>());
            if promotion_upto(f.tier, l1_lacks_value).is_some() {
                let fill = Fill {
                    snap: read.snap,
                    failed: read.failed,
                };
                self.promote(
                    key,
                    &f.entry,
                    f.tier,
                    l1_lacks_value,
                    f.value.clone().into_any(),
                    now,
                    scope,
                    fill,
                )
                .await;
            }
        }
        read
    }

    /// The generic read loop.
    pub(crate) async fn read_through<V>(
        &self,
        key: &Key,
        now: Timestamp,
        scope: &OpScope<'_>,
        range: std::ops::Range<usize>,
        decode: impl Fn(usize, &Entry) -> Result<V>,
    ) -> Read<V> {
        let inner = &*self.inner;
        let tel = &inner.telemetry;
        let snap = inner.epochs.snapshot(key);
        let mut failed = Vec::new();
        let mut stale = None;
        let range = range.start.min(inner.tiers.len())..range.end.min(inner.tiers.len());
        for tier in &inner.tiers[range] {
            let i = tier.position;
            if self.call.skip.contains(i) {
                continue;
            }
            // A key whose write or removal did not reach this tier is read as a miss there
            // until the repair removed the older copy.
            if inner.repairs.skips_key(i, key) {
                tel.miss(scope, i);
                inner.insight.missed_entry(i, key, None, true, now);
                scope.event("repair_pending", i);
                failed.push(i);
                continue;
            }
            let entry = match tier.get(tel, key).await {
                Ok(Some(e)) => e,
                Ok(None) => {
                    tel.miss(scope, i);
                    inner.insight.missed(i, key, now);
                    continue;
                }
                Err(e) => {
                    inner.insight.failed(i, key, &e);
                    tel.read_failed(scope, i, &e);
                    failed.push(i);
                    continue;
                }
            };
            if !entry.is_retained(now) {
                tel.miss(scope, i);
                inner.insight.missed_entry(i, key, Some(&entry), false, now);
                continue;
            }
            if inner.repairs.skips_entry(i, key, &entry.tags) {
                tel.miss(scope, i);
                inner.insight.missed_entry(i, key, None, true, now);
                scope.event("repair_pending", i);
                failed.push(i);
                continue;
            }
            match decode(i, &entry) {
                Ok(value) => {
                    if entry.is_fresh(now) {
                        tel.hit(scope, i);
                        return Read {
                            fresh: Some(Found {
                                tier: i,
                                entry,
                                value,
                            }),
                            stale,
                            snap,
                            failed: TierSet::only(&failed),
                        };
                    }
                    tel.miss(scope, i);
                    inner.insight.missed_entry(i, key, Some(&entry), false, now);
                    if stale.is_none() {
                        stale = Some(Found {
                            tier: i,
                            entry,
                            value,
                        });
                    }
                }
                Err(_) => {
                    // An undecodable copy is a miss that heals itself.
                    tel.corrupt(i);
                    tel.miss(scope, i);
                    inner.insight.missed_as(i, key, crate::MissReason::Corrupt);
                    scope.event("corrupt", i);
                    let _ = tier.call(tel, true, tier.backend.delete(key)).await;
                }
            }
        }
        Read {
            fresh: None,
            stale,
            snap,
            failed: TierSet::only(&failed),
        }
    }
}

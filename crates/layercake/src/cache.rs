//! [`Cache`]: the typed API over a stack of tiers.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use futures::future::join_all;
use layercake_core::backplane::{Backplane, Message, Target};
use layercake_core::{
    Codec, DistributedLock, Entry, EntryFlags, Error, ErrorKind, Key, KeyStrategy, LockToken,
    Policy, PolicyContext, Promotion, RefreshAhead, Result, Selector, SharedClock, TierSet,
    Timestamp,
};
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

use crate::coherence::Versions;
use crate::epochs::{Epochs, RecentFills, Snapshot};
use crate::flight::{AnyValue, Flights, LeaderHandle, Loaded, Role, Shared, Waiter};
use crate::key_input::IntoKey;
use crate::lock::LockOptions;
use crate::lookup::{Lookup, Source};
use crate::stats::{Op, Stats, TierStats};
use crate::telemetry::{OpScope, Outcome, Telemetry};
use crate::tier::{Scope, Tier};

/// Options of one write: tags and an optional TTL that overrides the policy's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Tags for [`Cache::invalidate_tag`].
    pub tags: Vec<String>,
    /// Fresh lifetime; `None` = the policy decides.
    pub ttl: Option<Duration>,
}

impl WriteOptions {
    /// No tags, policy TTL.
    pub fn new() -> WriteOptions {
        WriteOptions::default()
    }
    /// Add a tag.
    pub fn tag(mut self, tag: impl Into<String>) -> WriteOptions {
        self.tags.push(tag.into());
        self
    }
    /// Override the TTL.
    pub fn ttl(mut self, ttl: Duration) -> WriteOptions {
        self.ttl = Some(ttl);
        self
    }
}

/// What [`Cache::warm`] fills upper tiers with.
#[derive(Debug, Clone, Copy)]
pub enum Warm<'a> {
    /// These keys (caller text, made into keys by the cache's key strategy).
    Keys(&'a [&'a str]),
    /// Up to `limit` keys of the cache's namespace whose caller text starts with `prefix`,
    /// listed by the lowest tier that can list keys.
    Prefix {
        /// Caller-text prefix (the namespace prefix is added).
        prefix: &'a str,
        /// Most keys to warm.
        limit: usize,
    },
}

pub(crate) struct Inner {
    pub(crate) name: Arc<str>,
    pub(crate) tiers: Vec<Tier>,
    pub(crate) policy: Arc<dyn Policy>,
    pub(crate) codec: Codec,
    pub(crate) clock: SharedClock,
    pub(crate) flights: Arc<Flights>,
    pub(crate) epochs: Epochs,
    pub(crate) recent_fills: RecentFills,
    pub(crate) telemetry: Telemetry,
    pub(crate) versions: Versions,
    pub(crate) backplane: Option<Arc<dyn Backplane>>,
    pub(crate) disconnected_cap: Duration,
    pub(crate) soft_timeout: Option<Duration>,
    pub(crate) hard_timeout: Option<Duration>,
    pub(crate) lock: Option<(Arc<dyn DistributedLock>, LockOptions)>,
    pub(crate) tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("name", &self.name)
            .field(
                "tiers",
                &self
                    .tiers
                    .iter()
                    .map(|t| (&*t.name, t.kind))
                    .collect::<Vec<_>>(),
            )
            .field("policy", &self.policy)
            .field("codec", &self.codec)
            .field("backplane", &self.backplane.as_ref().map(|b| b.kind()))
            .finish()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
    }
}

/// A tiered cache: the tiers in order (L1 first), a key strategy, a policy and a codec.
///
/// Cheap to clone (shared state). Build one with [`Cache::builder`].
///
/// Contract:
/// - reads walk the tiers top-down; a fresh hit at tier *i* fills the tiers above it that the
///   policy allows, with the entry's remaining lifetime (never extended); a tier error,
///   timeout, open breaker or undecodable copy is counted and skipped (the read falls through;
///   an undecodable copy is also deleted);
/// - an L1 hit returns the `Arc<T>` stored in L1, without decoding;
/// - writes go to every tier the policy allows; `set` succeeds when at least one tier stored
///   the value and no tier rejected it permanently (a permanent rejection such as `TooLarge`
///   removes what other tiers stored and is returned);
/// - deletes and invalidations reach every tier or return an error;
/// - `get_or_compute` runs at most one loader per key per process at a time; a panicking,
///   failing or cancelled caller never leaves the others waiting;
/// - with a backplane, every `set`, `delete` and invalidation publishes a message and other
///   instances drop their process- and host-local copies; fills after a miss publish nothing.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> layercake::Result<()> {
/// use layercake::{Cache, MemoryBackend, Source};
/// let cache = Cache::builder("docs").tier(MemoryBackend::with_max_bytes(1 << 20)?).build()?;
/// let first = cache.get_or_compute("answer", || async { Ok::<_, std::io::Error>(42u32) }).await?;
/// assert_eq!((*first.value, first.source), (42, Source::Computed));
/// let again = cache.get::<u32>("answer").await?.unwrap();
/// assert_eq!(again.source, Source::Hit { tier: 0 });
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Cache {
    pub(crate) inner: Arc<Inner>,
    pub(crate) keys: Arc<dyn KeyStrategy>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("inner", &self.inner)
            .field("keys", &self.keys)
            .finish()
    }
}

/// A decoded read.
enum Value<T> {
    Some(Arc<T>),
    Negative,
}

impl<T> Clone for Value<T> {
    fn clone(&self) -> Self {
        match self {
            Value::Some(a) => Value::Some(a.clone()),
            Value::Negative => Value::Negative,
        }
    }
}

impl<T: Send + Sync + 'static> Value<T> {
    fn into_any(self) -> AnyValue {
        match self {
            Value::Some(a) => Some(a),
            Value::Negative => None,
        }
    }
}

/// A type-erased value back to `T` (`Ok(None)` = negative; `Err` = another type).
fn downcast_value<T: Send + Sync + 'static>(v: AnyValue) -> Result<Option<Arc<T>>> {
    match v {
        None => Ok(None),
        Some(a) => a
            .downcast::<T>()
            .map(Some)
            .map_err(|_| Error::codec("a concurrent load of this key produced another type")),
    }
}

impl<T> Value<T> {
    fn into_option(self) -> Option<Arc<T>> {
        match self {
            Value::Some(a) => Some(a),
            Value::Negative => None,
        }
    }
}

struct Found<V> {
    tier: usize,
    entry: Entry,
    value: V,
}

/// How a write relates to concurrent changes of its key.
#[derive(Debug, Clone, Copy)]
enum How {
    /// An authoritative write (`set`): it is the newest value.
    Set,
    /// A fill (promotion, load result): written only if the key did not change since the
    /// read that produced it began.
    Fill(Snapshot),
}

/// What a promotion needs from the read that found the entry.
#[derive(Debug, Clone, Copy)]
struct Fill {
    snap: Snapshot,
    failed: TierSet,
}

/// What [`Cache::remove_everywhere`] removes.
#[derive(Clone)]
enum Removal {
    Key(Key),
    Select(Selector),
}

/// What waiting for the cross-instance lock ended with.
enum LockWait<T> {
    /// This instance holds the lock: compute.
    Held(LockToken),
    /// Another instance's value appeared in a shared tier.
    Found(Found<Value<T>>),
    /// No lock (its store failed, or the wait passed): compute anyway.
    Proceed,
}

/// An encoded entry and where it may go.
struct Prepared {
    entry: Entry,
    tiers: TierSet,
    decoded: Option<Arc<dyn Any + Send + Sync>>,
}

/// What the synchronous L1 read found.
enum L1Fast<T> {
    /// A fresh entry with a decoded `T` (or a negative entry).
    Hit(Arc<Entry>, Value<T>),
    /// L1 is a plain memory tier and holds nothing for the key.
    Absent,
    /// Anything else: read L1 the general way.
    Other,
}

struct Read<V> {
    fresh: Option<Found<V>>,
    stale: Option<Found<V>>,
    /// The epochs before the first tier read (for promotions and fills).
    snap: Snapshot,
    /// Tiers that failed during this read (promotions skip them).
    failed: TierSet,
}

fn decode_typed<T>(codec: &Codec, entry: &Entry) -> Result<Value<T>>
where
    T: DeserializeOwned + Send + Sync + 'static,
{
    if entry.is_negative() {
        return Ok(Value::Negative);
    }
    if let Some(d) = entry.decoded()
        && let Ok(a) = d.clone().downcast::<T>()
    {
        return Ok(Value::Some(a));
    }
    codec
        .decode::<T>(&entry.value, entry.format, entry.compression)
        .map(|v| Value::Some(Arc::new(v)))
}

/// The outcome of an operation that returns no read result.
fn ok_or_error<T>(r: &Result<T>) -> Outcome {
    if r.is_ok() {
        Outcome::Ok
    } else {
        Outcome::Error
    }
}

/// Shorten an entry's lifetime (fresh and stale) to end by `cap`; never extends it.
fn cap_lifetime(e: &mut Entry, cap: Timestamp) {
    e.expires_at = e.expires_at.min(cap);
    e.stale_until = e.stale_until.map(|s| s.min(cap));
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

fn loader_error<E: Into<Box<dyn std::error::Error + Send + Sync>>>(e: E) -> Error {
    let boxed: Box<dyn std::error::Error + Send + Sync> = e.into();
    Error::loader("the loader failed").with_shared_source(Arc::from(boxed))
}

impl Cache {
    /// Start building a cache named `name` (the name appears in metrics and stats).
    pub fn builder(name: impl Into<String>) -> crate::CacheBuilder {
        crate::CacheBuilder::new(name)
    }

    /// The same cache (same tiers, same state) making keys with another strategy — e.g. one
    /// handle per namespace.
    pub fn with_keys(&self, keys: impl KeyStrategy) -> Cache {
        Cache {
            inner: self.inner.clone(),
            keys: Arc::new(keys),
        }
    }

    /// The cache's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The key strategy in use.
    pub fn keys(&self) -> &dyn KeyStrategy {
        &*self.keys
    }

    /// Make the key for caller input, as the typed methods do.
    pub fn key(&self, input: impl IntoKey) -> Result<Key> {
        input.into_key(&*self.keys)
    }

    /// Tier names in order.
    pub fn tier_names(&self) -> Vec<String> {
        self.inner
            .tiers
            .iter()
            .map(|t| t.name.to_string())
            .collect()
    }

    // ---------------------------------------------------------------- reads

    /// Read a value. `Ok(None)` when no tier holds a fresh copy (a cached "not found" also
    /// reads as `None`).
    pub async fn get<T>(&self, key: impl IntoKey) -> Result<Option<Lookup<Arc<T>>>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
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
        let now = self.inner.clock.now();
        let first = match self.l1_fast::<T>(&key, now) {
            L1Fast::Hit(_, value) => {
                tel.hit(&scope, 0);
                tel.finish(scope, Outcome::Hit);
                return Ok(value.into_option().map(|value| Lookup {
                    value,
                    source: Source::Hit { tier: 0 },
                }));
            }
            L1Fast::Absent => {
                tel.miss(&scope, 0);
                1
            }
            L1Fast::Other => 0,
        };
        let read = self
            .read_typed::<T>(&key, now, &scope, first..usize::MAX)
            .await;
        match read.fresh {
            Some(f) => {
                tel.finish(scope, Outcome::Hit);
                Ok(f.value.into_option().map(|value| Lookup {
                    value,
                    source: Source::Hit { tier: f.tier },
                }))
            }
            None => {
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
    fn l1_fast<T>(&self, key: &Key, now: Timestamp) -> L1Fast<T>
    where
        T: Send + Sync + 'static,
    {
        let Some(tier) = self.inner.tiers.first() else {
            return L1Fast::Other;
        };
        if tier.breaker.is_some() || tier.read_timeout.is_some() {
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
    async fn read_typed<T>(
        &self,
        key: &Key,
        now: Timestamp,
        scope: &OpScope<'_>,
        range: std::ops::Range<usize>,
    ) -> Read<Value<T>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
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
            if f.tier > 0 || l1_lacks_value {
                let upto = if f.tier == 0 { 1 } else { f.tier };
                let fill = Fill {
                    snap: read.snap,
                    failed: read.failed,
                };
                self.promote(
                    key,
                    &f.entry,
                    upto,
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

    /// How many leading tiers are in-process (read by every caller before single flight).
    fn local_tiers(&self) -> usize {
        self.inner
            .tiers
            .iter()
            .take_while(|t| t.scope == Scope::Process)
            .count()
    }

    /// The generic read loop.
    async fn read_through<V>(
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
            let entry = match tier.get(tel, key).await {
                Ok(Some(e)) => e,
                Ok(None) => {
                    tel.miss(scope, i);
                    continue;
                }
                Err(e) => {
                    scope.event(
                        if e.kind() == ErrorKind::CircuitOpen {
                            "breaker_skip"
                        } else {
                            "fall_through"
                        },
                        i,
                    );
                    failed.push(i);
                    continue;
                }
            };
            if !entry.is_retained(now) {
                tel.miss(scope, i);
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

    fn decide(&self, key: &Key, value_len: usize, negative: bool) -> layercake_core::Decision {
        self.inner.policy.decide(&PolicyContext {
            key,
            value_len,
            negative,
        })
    }

    /// The copy of `entry` for `tier`: capped while the backplane is down if the tier is
    /// process- or host-local, and carrying the decoded value if the tier is in-process.
    fn tier_copy(
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

    /// Fill tiers `0..upto` (those the policy allows, and that did not just fail this read)
    /// with a copy of `entry`, unless the key changed since the read began.
    #[allow(clippy::too_many_arguments)]
    async fn promote(
        &self,
        key: &Key,
        entry: &Entry,
        upto: usize,
        decoded: Option<Arc<dyn Any + Send + Sync>>,
        now: Timestamp,
        scope: &OpScope<'_>,
        fill: Fill,
    ) {
        let d = self.decide(key, entry.value.len(), entry.is_negative());
        let Some(copy) = promotion_copy(entry, d.promotion, now) else {
            return;
        };
        let tel = &self.inner.telemetry;
        let jobs = self.inner.tiers[..upto.min(self.inner.tiers.len())]
            .iter()
            .filter(|t| {
                d.tiers.contains(t.position) && !fill.failed.contains(t.position) && !t.is_open()
            })
            .map(|t| {
                let e = self.tier_copy(t, &copy, now, decoded.as_ref());
                async move {
                    if let Ok(true) = self.write_to(t, key, e, How::Fill(fill.snap)).await {
                        tel.promoted(t.position);
                        scope.event("promotion", t.position);
                    }
                }
            });
        join_all(jobs).await;
    }

    /// Write one entry to one tier, through its write-behind queue if it has one; `Ok(false)`
    /// when a fill was dropped because the key changed since its read began.
    ///
    /// An in-process memory tier is written synchronously under the key's epoch lock: a
    /// [`How::Set`] bumps the epoch, a [`How::Fill`] writes only if the epoch did not move.
    async fn write_to(&self, tier: &Tier, key: &Key, entry: Entry, how: How) -> Result<bool> {
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
        if let How::Fill(snap) = how
            && tier.write_behind.is_none()
        {
            // A fill of a tier other instances read can land after a concurrent change of the
            // key and overwrite it. If the key changed while the fill was written, delete the
            // copy; if a change arrives later (a backplane message), the listener deletes it.
            let _serial = epochs.fill_lock(key).write().await;
            // A backplane message applied while this fill waited for the lock has changed the
            // epoch: writing now would put the old value where the other instance just
            // deleted it, visible until the undo below.
            if epochs.changed_since(key, snap) {
                return Ok(false);
            }
            self.inner.recent_fills.record(key, 1 << tier.position);
            let written = tier
                .call(&self.inner.telemetry, true, tier.backend.set(key, &entry))
                .await;
            if written.is_ok() && epochs.changed_since(key, snap) {
                let _ = tier
                    .call(&self.inner.telemetry, true, tier.backend.delete(key))
                    .await;
                return Ok(false);
            }
            return written.map(|()| true);
        }
        if let Some(wb) = &tier.write_behind {
            return match wb.try_set(key.clone(), entry) {
                None => Ok(true),
                Some((k, e)) => {
                    self.inner.telemetry.write_behind_full(tier.position);
                    tier.call(&self.inner.telemetry, true, tier.backend.set(&k, &e))
                        .await
                        .map(|()| true)
                }
            };
        }
        tier.call(&self.inner.telemetry, true, tier.backend.set(key, &entry))
            .await
            .map(|()| true)
    }

    /// Write an entry to the tiers of `tiers`; see the contract on [`Cache`].
    async fn write_entry(
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

    async fn publish(&self, target: Target, version: u64) {
        if let Some(bp) = &self.inner.backplane {
            let msg = Message {
                target,
                version,
                origin: bp.instance(),
            };
            if bp.publish(&msg).await.is_ok() {
                self.inner.telemetry.backplane_sent();
            } else {
                self.inner.telemetry.backplane_publish_failed();
            }
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
                .store(&key, Some(Arc::new(value)), opts, How::Set)
                .await?;
            self.publish(Target::Key(key.as_str().to_owned()), version)
                .await;
            Ok(())
        }
        .await;
        tel.finish(scope, ok_or_error(&r));
        r
    }

    /// Encode a value (`None` = a negative entry) into the entry to write, with the tiers the
    /// policy allows; `None` when the policy does not cache it.
    fn prepare<T>(
        &self,
        key: &Key,
        value: Option<&Arc<T>>,
        opts: &WriteOptions,
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
        let d = self.decide(key, bytes.len(), value.is_none());
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
            .with_version(inner.versions.next())
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
    /// cache it).
    async fn store<T>(
        &self,
        key: &Key,
        value: Option<Arc<T>>,
        opts: &WriteOptions,
        how: How,
    ) -> Result<u64>
    where
        T: Serialize + Send + Sync + 'static,
    {
        if let How::Set = how {
            self.inner.flights.supersede_key(key);
        }
        let Some(p) = self.prepare(key, value.as_ref(), opts)? else {
            return Ok(0);
        };
        let version = p.entry.version;
        self.write_entry(key, p.entry, p.tiers, p.decoded, how)
            .await?;
        Ok(version)
    }

    /// The in-process tiers (scope `Process`).
    fn process_tiers(&self) -> TierSet {
        let local: Vec<usize> = self
            .inner
            .tiers
            .iter()
            .filter(|t| t.scope == Scope::Process)
            .map(|t| t.position)
            .collect();
        TierSet::only(&local)
    }

    /// Remove a key or a selection from every tier, in parallel, through write-behind queues
    /// where a tier has one (keeping order with queued writes); the first error, after every
    /// tier was tried.
    async fn remove_everywhere(&self, what: &Removal) -> Result<()> {
        let tel = &self.inner.telemetry;
        let epochs = &self.inner.epochs;
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
                    Removal::Key(k) => crate::write_behind::Job::Delete(k, ack),
                    Removal::Select(s) => crate::write_behind::Job::Invalidate(s, ack),
                };
                if let Some(r) = wb.send_and_wait(job).await {
                    return r;
                }
            }
            match what {
                Removal::Key(k) => t.call(tel, true, t.backend.delete(k)).await,
                Removal::Select(s) => t.call(tel, true, t.backend.invalidate(s)).await,
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
            let removed = self.remove_everywhere(&Removal::Key(key.clone())).await;
            self.publish(Target::Key(key.as_str().to_owned()), 0).await;
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
        let removed = self
            .remove_everywhere(&Removal::Select(selector.clone()))
            .await;
        let target = match &selector {
            Selector::Prefix(p) => Target::Prefix(p.clone()),
            Selector::Tag(t) => Target::Tag(t.clone()),
            _ => Target::All,
        };
        self.publish(target, 0).await;
        let r = removed;
        tel.finish(scope, ok_or_error(&r));
        r
    }

    /// Remove everything from every tier.
    pub async fn clear(&self) -> Result<()> {
        let tel = &self.inner.telemetry;
        self.inner.flights.supersede(None);
        self.inner.epochs.change_all();
        let results = join_all(
            self.inner
                .tiers
                .iter()
                .map(|t| t.call(tel, true, t.backend.clear())),
        )
        .await;
        self.publish(Target::All, 0).await;
        results.into_iter().collect::<Result<Vec<()>>>().map(|_| ())
    }

    // ---------------------------------------------------------------- get-or-compute

    /// Read a value, or compute it with `loader` once for all concurrent callers and write it
    /// to the tiers.
    ///
    /// - a fresh hit returns at once; past the policy's refresh-ahead threshold it also starts
    ///   one background refresh with this `loader`;
    /// - on a miss, one caller per key runs the loader (in its own task: cancelling a caller
    ///   does not cancel the load); the others get [`Source::Coalesced`];
    /// - when the loader fails, panics or passes the soft timeout and a stale copy exists
    ///   (within the policy's stale window), the stale copy is served ([`Source::Stale`]);
    /// - the hard timeout ends the load with a `Timeout` error.
    pub async fn get_or_compute<T, F, Fut, E>(
        &self,
        key: impl IntoKey,
        loader: F,
    ) -> Result<Lookup<Arc<T>>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<T, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        self.get_or_compute_with(key, &WriteOptions::default(), loader)
            .await
    }

    /// [`get_or_compute`](Cache::get_or_compute) with tags / TTL for the computed value.
    pub async fn get_or_compute_with<T, F, Fut, E>(
        &self,
        key: impl IntoKey,
        opts: &WriteOptions,
        loader: F,
    ) -> Result<Lookup<Arc<T>>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<T, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        let l = self
            .compute(
                key,
                opts,
                false,
                move || async move { loader().await.map(Some) },
            )
            .await?;
        match l.value {
            Some(value) => Ok(Lookup {
                value,
                source: l.source,
            }),
            None => Err(Error::loader("the loader returned no value")),
        }
    }

    /// Like [`get_or_compute`](Cache::get_or_compute) for loaders that may find nothing:
    /// `None` results are cached as negative entries for the policy's negative TTL
    /// ([`PolicyExt::negative_ttl`](layercake_core::PolicyExt::negative_ttl)).
    pub async fn get_or_compute_opt<T, F, Fut, E>(
        &self,
        key: impl IntoKey,
        loader: F,
    ) -> Result<Lookup<Option<Arc<T>>>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<Option<T>, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        self.compute(key, &WriteOptions::default(), true, loader)
            .await
    }

    async fn compute<T, F, Fut, E>(
        &self,
        key: impl IntoKey,
        opts: &WriteOptions,
        accept_negative: bool,
        loader: F,
    ) -> Result<Lookup<Option<Arc<T>>>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<Option<T>, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        let tel = &self.inner.telemetry;
        let scope = tel.start(Op::GetOrCompute);
        let key = match key.into_key(&*self.keys) {
            Ok(k) => k,
            Err(e) => {
                tel.finish(scope, Outcome::Error);
                return Err(e);
            }
        };
        let now = self.inner.clock.now();
        let n = self.inner.tiers.len();
        let local = self.local_tiers();
        let usable = |v: &Value<T>| accept_negative || matches!(v, Value::Some(_));
        // 1. Every caller reads the in-process tiers: the memory L1 synchronously when it can.
        let mut loader = Some(loader);
        let first = match self.l1_fast::<T>(&key, now) {
            L1Fast::Hit(entry, value) if usable(&value) => {
                tel.hit(&scope, 0);
                self.refresh_if_due(&key, &entry, now, opts, &mut loader, &scope);
                tel.finish(scope, Outcome::Hit);
                return Ok(Lookup {
                    value: value.into_option(),
                    source: Source::Hit { tier: 0 },
                });
            }
            L1Fast::Absent => {
                tel.miss(&scope, 0);
                1
            }
            L1Fast::Hit(..) | L1Fast::Other => 0,
        };
        let read = self.read_typed::<T>(&key, now, &scope, first..local).await;
        let snap = read.snap;
        if let Some(f) = read.fresh
            && usable(&f.value)
        {
            self.refresh_if_due(&key, &f.entry, now, opts, &mut loader, &scope);
            tel.finish(scope, Outcome::Hit);
            return Ok(Lookup {
                value: f.value.into_option(),
                source: Source::Hit { tier: f.tier },
            });
        }
        let mut stale: Option<AnyValue> = read
            .stale
            .map(|s| s.value)
            .filter(|v| usable(v))
            .map(Value::into_any);
        // 2. One caller per key reads the shared tiers and, on a miss there, starts the
        //    loader; the others wait for it. A leader cancelled during its read abandons the
        //    flight, and a waiter leads again.
        let (result, waiter, leader) = loop {
            let (waiter, leader) = match self.inner.flights.join(&key) {
                Role::Leader(h) => {
                    let remote = self.read_typed::<T>(&key, now, &scope, local..n).await;
                    if let Some(f) = remote.fresh
                        && usable(&f.value)
                    {
                        let source = Source::Hit { tier: f.tier };
                        h.complete(Ok(Loaded {
                            value: f.value.clone().into_any(),
                            source,
                        }));
                        tel.finish(scope, Outcome::Hit);
                        return Ok(Lookup {
                            value: f.value.into_option(),
                            source,
                        });
                    }
                    tel.full_miss();
                    if stale.is_none() {
                        stale = remote
                            .stale
                            .map(|s| s.value)
                            .filter(|v| usable(v))
                            .map(Value::into_any);
                    }
                    if let Some(s) = &stale {
                        h.offer_stale(s.clone());
                    }
                    let Some(l) = loader.take() else {
                        return Err(Error::loader("internal: loader already used"));
                    };
                    let token = match &self.inner.lock {
                        Some((lock, lo)) => {
                            match self
                                .lock_or_wait::<T>(lock, lo, &key, &scope, local, accept_negative)
                                .await
                            {
                                LockWait::Held(t) => Some(t),
                                LockWait::Proceed => None,
                                LockWait::Found(f) => {
                                    let source = Source::Hit { tier: f.tier };
                                    h.complete(Ok(Loaded {
                                        value: f.value.clone().into_any(),
                                        source,
                                    }));
                                    tel.finish(scope, Outcome::Hit);
                                    return Ok(Lookup {
                                        value: f.value.into_option(),
                                        source,
                                    });
                                }
                            }
                        }
                        None => None,
                    };
                    let w = h.waiter.clone();
                    self.spawn_load(h, key.clone(), opts.clone(), token, snap, scope.in_span(l));
                    (w, true)
                }
                Role::Follower(w) => (w, false),
            };
            match self.await_flight(&waiter, stale.is_some()).await {
                Some(r) => break (r, waiter, leader),
                None if leader => {
                    break (
                        Err(Error::loader("the load task ended without a result")),
                        waiter,
                        leader,
                    );
                }
                None => continue,
            }
        };
        let stale = stale.or_else(|| waiter.stale());
        let out = match result {
            Ok(loaded) => downcast_value::<T>(loaded.value).map(|value| {
                let source = match loaded.source {
                    Source::Computed if !leader => {
                        tel.coalesced();
                        Source::Coalesced
                    }
                    s => s,
                };
                Lookup { value, source }
            }),
            Err(e) => match stale {
                Some(s) => {
                    tel.stale_served();
                    downcast_value::<T>(s).map(|value| Lookup {
                        value,
                        source: Source::Stale,
                    })
                }
                None => Err(e),
            },
        };
        let outcome = match &out {
            Ok(l) => match l.source {
                Source::Computed => Outcome::Computed,
                Source::Coalesced => Outcome::Coalesced,
                Source::Stale => Outcome::Stale,
                Source::Hit { .. } => Outcome::Hit,
            },
            Err(_) => Outcome::Error,
        };
        tel.finish(scope, outcome);
        out
    }

    /// Refresh-ahead: past the policy's threshold, start one background load with `loader`
    /// (unless one runs already); the caller returns its hit at once.
    fn refresh_if_due<T, F, Fut, E>(
        &self,
        key: &Key,
        entry: &Entry,
        now: Timestamp,
        opts: &WriteOptions,
        loader: &mut Option<F>,
        scope: &OpScope<'_>,
    ) where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<Option<T>, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        let d = self.decide(key, entry.value.len(), entry.is_negative());
        let RefreshAhead::AfterFraction(fr) = d.refresh_ahead else {
            return;
        };
        let ttl = entry.ttl().as_millis() as f64;
        let age = now.saturating_since(entry.created_at).as_millis() as f64;
        if age >= ttl * fr as f64
            && !self.inner.flights.in_flight(key)
            && let Role::Leader(h) = self.inner.flights.join(key)
            && let Some(l) = loader.take()
        {
            let snap = self.inner.epochs.snapshot(key);
            self.spawn_load(h, key.clone(), opts.clone(), None, snap, scope.in_span(l));
        }
    }

    /// Take the cross-instance lock, or wait for its holder's value in the shared tiers.
    async fn lock_or_wait<T>(
        &self,
        lock: &Arc<dyn DistributedLock>,
        lo: &LockOptions,
        key: &Key,
        scope: &OpScope<'_>,
        local: usize,
        accept_negative: bool,
    ) -> LockWait<T>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let n = self.inner.tiers.len();
        let deadline = Instant::now() + lo.wait;
        loop {
            let held = match lock.try_lock(key, lo.ttl).await {
                Ok(held) => held,
                // The lock's store is down: compute without it rather than block.
                Err(_) => return LockWait::Proceed,
            };
            // Holder or not, the value may have landed since the last read.
            let now = self.inner.clock.now();
            let read = self.read_typed::<T>(key, now, scope, local..n).await;
            if let Some(f) = read.fresh
                && (accept_negative || matches!(f.value, Value::Some(_)))
            {
                if let Some(t) = held {
                    let _ = lock.unlock(key, t).await;
                }
                return LockWait::Found(f);
            }
            if let Some(t) = held {
                return LockWait::Held(t);
            }
            if Instant::now() >= deadline {
                return LockWait::Proceed;
            }
            tokio::time::sleep(lo.poll).await;
        }
    }

    /// Wait for a flight. With a soft timeout, a caller that has (or is offered) a stale copy
    /// stops waiting when it passes: the result is then a soft-timeout error, which the caller
    /// answers with the stale copy. `None` = the flight was abandoned.
    async fn await_flight(&self, waiter: &Waiter, has_stale: bool) -> Option<Shared> {
        let Some(soft) = self.inner.soft_timeout else {
            return waiter.clone().wait().await;
        };
        match tokio::time::timeout(soft, waiter.clone().wait()).await {
            Ok(r) => r,
            Err(_) if has_stale || waiter.stale().is_some() => Some(Err(Error::timeout(format!(
                "the loader passed its soft timeout of {soft:?}"
            )))),
            Err(_) => waiter.clone().wait().await,
        }
    }

    /// Run a load in its own task: loader (panic-safe, hard timeout), write the result unless
    /// superseded, then publish it to the waiters.
    fn spawn_load<T, F, Fut, E>(
        &self,
        h: LeaderHandle,
        key: Key,
        opts: WriteOptions,
        token: Option<LockToken>,
        snap: Snapshot,
        loader: F,
    ) where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<Option<T>, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        let cache = self.clone();
        let hard = self.inner.hard_timeout;
        tokio::spawn(async move {
            let start = Instant::now();
            let run = AssertUnwindSafe(async move { loader().await }).catch_unwind();
            let outcome = match hard {
                Some(h) => tokio::time::timeout(h, run).await.map_err(|_| h),
                None => Ok(run.await),
            };
            let result: Result<Option<Arc<T>>> = match outcome {
                Ok(Ok(Ok(v))) => Ok(v.map(Arc::new)),
                Ok(Ok(Err(e))) => Err(loader_error(e)),
                Ok(Err(_panic)) => Err(Error::loader("the loader panicked")),
                Err(h) => Err(Error::timeout(format!(
                    "the loader passed its hard timeout of {h:?}"
                ))),
            };
            cache
                .inner
                .telemetry
                .loader_done(start.elapsed(), result.is_ok());
            // A fill after a miss publishes nothing, and is dropped if the key changed since
            // the leader's read began; its failure only costs a future miss. The in-process
            // tiers are filled before the waiters are released (so the next caller hits), the
            // shared tiers after (so nobody waits on a slow remote write).
            let superseded = h
                .state
                .superseded
                .load(std::sync::atomic::Ordering::Acquire);
            let prepared = match &result {
                Ok(v) if !superseded => cache.prepare(&key, v.as_ref(), &opts).ok().flatten(),
                _ => None,
            };
            let local = cache.process_tiers();
            let how = How::Fill(snap);
            if let Some(p) = &prepared {
                let _ = cache
                    .write_entry(
                        &key,
                        p.entry.clone(),
                        p.tiers.and(local),
                        p.decoded.clone(),
                        how,
                    )
                    .await;
            }
            h.complete(result.map(|v| Loaded {
                value: v.map(|a| a as Arc<dyn Any + Send + Sync>),
                source: Source::Computed,
            }));
            if let Some(p) = prepared {
                let _ = cache
                    .write_entry(&key, p.entry, p.tiers.without(local), p.decoded, how)
                    .await;
            }
            if let (Some(t), Some((lock, _))) = (token, &cache.inner.lock) {
                let _ = lock.unlock(&key, t).await;
            }
        });
    }

    // ---------------------------------------------------------------- batches

    /// Read several values; one slot per input, in order. Each tier is asked once, with its
    /// bulk operation, for the keys still missing; hits at lower tiers fill upper tiers.
    pub async fn get_many<T, S>(&self, inputs: &[S]) -> Result<Vec<Option<Lookup<Arc<T>>>>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        S: AsRef<str>,
    {
        let tel = &self.inner.telemetry;
        let scope = tel.start(Op::GetMany);
        let r = self
            .get_many_inner::<T, S>(inputs, &scope)
            .await
            .map(|(v, _)| v);
        tel.finish(scope, ok_or_error(&r));
        r
    }

    async fn get_many_inner<T, S>(
        &self,
        inputs: &[S],
        scope: &OpScope<'_>,
    ) -> Result<(Vec<Option<Lookup<Arc<T>>>>, Vec<Key>)>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        S: AsRef<str>,
    {
        let inner = &*self.inner;
        let tel = &inner.telemetry;
        let keys: Vec<Key> = inputs
            .iter()
            .map(|s| self.keys.key_for_text(s.as_ref()))
            .collect::<Result<_>>()?;
        let snaps: Vec<Snapshot> = keys.iter().map(|k| inner.epochs.snapshot(k)).collect();
        let now = inner.clock.now();
        let mut out: Vec<Option<Lookup<Arc<T>>>> = (0..keys.len()).map(|_| None).collect();
        let mut pending: Vec<usize> = (0..keys.len()).collect();
        // (tier found, key index, entry, decoded)
        let mut to_promote: Vec<(usize, usize, Entry, Arc<T>)> = Vec::new();
        for tier in &inner.tiers {
            if pending.is_empty() {
                break;
            }
            let batch: Vec<Key> = pending.iter().map(|&i| keys[i].clone()).collect();
            let got = match tier.call(tel, false, tier.backend.get_many(&batch)).await {
                Ok(g) if g.len() == batch.len() => g,
                Ok(_) => continue,
                Err(e) => {
                    scope.event(
                        if e.kind() == ErrorKind::CircuitOpen {
                            "breaker_skip"
                        } else {
                            "fall_through"
                        },
                        tier.position,
                    );
                    continue;
                }
            };
            let mut still = Vec::new();
            for (&i, entry) in pending.iter().zip(got) {
                let Some(entry) = entry.filter(|e| e.is_fresh(now) && !e.is_negative()) else {
                    tel.miss(scope, tier.position);
                    still.push(i);
                    continue;
                };
                match decode_typed::<T>(&inner.codec, &entry) {
                    Ok(Value::Some(v)) => {
                        tel.hit(scope, tier.position);
                        if tier.position > 0 || entry.decoded().is_none() {
                            to_promote.push((tier.position, i, entry, v.clone()));
                        }
                        out[i] = Some(Lookup {
                            value: v,
                            source: Source::Hit {
                                tier: tier.position,
                            },
                        });
                    }
                    _ => {
                        tel.corrupt(tier.position);
                        tel.miss(scope, tier.position);
                        let _ = tier.call(tel, true, tier.backend.delete(&keys[i])).await;
                        still.push(i);
                    }
                }
            }
            pending = still;
        }
        for _ in &pending {
            tel.full_miss();
        }
        // Fill upper tiers: the in-process ones entry by entry under the epoch guard, the
        // others in bulk (one set_many per tier) with the keys that did not change.
        let mut per_tier: HashMap<usize, Vec<(Key, Entry)>> = HashMap::new();
        for (found, i, entry, v) in to_promote {
            let d = self.decide(&keys[i], entry.value.len(), false);
            let Some(copy) = promotion_copy(&entry, d.promotion, now) else {
                continue;
            };
            let decoded: Arc<dyn Any + Send + Sync> = v;
            let upto = if found == 0 { 1 } else { found };
            for t in &inner.tiers[..upto] {
                if !d.tiers.contains(t.position) {
                    continue;
                }
                let e = self.tier_copy(t, &copy, now, Some(&decoded));
                if t.scope == Scope::Process && t.memory().is_some() {
                    if let Ok(true) = self.write_to(t, &keys[i], e, How::Fill(snaps[i])).await {
                        tel.promoted(t.position);
                    }
                } else if !inner.epochs.changed_since(&keys[i], snaps[i]) {
                    per_tier
                        .entry(t.position)
                        .or_default()
                        .push((keys[i].clone(), e));
                }
            }
        }
        join_all(per_tier.into_iter().map(|(pos, items)| {
            let t = &inner.tiers[pos];
            async move {
                let n = items.len();
                if t.call(tel, true, t.backend.set_many(&items)).await.is_ok() {
                    for _ in 0..n {
                        tel.promoted(pos);
                    }
                }
            }
        }))
        .await;
        let missing = pending.iter().map(|&i| keys[i].clone()).collect();
        Ok((out, missing))
    }

    /// Read several values and compute the missing ones with one loader call that receives
    /// only the missing inputs and returns what it found (inputs it leaves out stay `None`).
    pub async fn get_or_compute_many<T, S, F, Fut, E>(
        &self,
        inputs: &[S],
        loader: F,
    ) -> Result<Vec<Option<Lookup<Arc<T>>>>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        S: AsRef<str>,
        F: FnOnce(Vec<String>) -> Fut,
        Fut: Future<Output = std::result::Result<HashMap<String, T>, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let tel = &self.inner.telemetry;
        let scope = tel.start(Op::GetOrComputeMany);
        let r = async {
            let snaps = inputs
                .iter()
                .map(|s| {
                    Ok(self
                        .inner
                        .epochs
                        .snapshot(&self.keys.key_for_text(s.as_ref())?))
                })
                .collect::<Result<Vec<_>>>()?;
            let (mut out, _) = self.get_many_inner::<T, S>(inputs, &scope).await?;
            let missing: Vec<usize> = (0..out.len()).filter(|&i| out[i].is_none()).collect();
            if missing.is_empty() {
                return Ok(out);
            }
            let wanted: Vec<String> = missing
                .iter()
                .map(|&i| inputs[i].as_ref().to_owned())
                .collect();
            let start = Instant::now();
            let loaded = loader(wanted).await;
            tel.loader_done(start.elapsed(), loaded.is_ok());
            let mut loaded = loaded.map_err(loader_error)?;
            for i in missing {
                if let Some(v) = loaded.remove(inputs[i].as_ref()) {
                    let key = self.keys.key_for_text(inputs[i].as_ref())?;
                    let v = Arc::new(v);
                    let how = How::Fill(snaps[i]);
                    let _ = self
                        .store(&key, Some(v.clone()), &WriteOptions::default(), how)
                        .await;
                    out[i] = Some(Lookup {
                        value: v,
                        source: Source::Computed,
                    });
                }
            }
            Ok(out)
        }
        .await;
        tel.finish(scope, ok_or_error(&r));
        r
    }

    // ---------------------------------------------------------------- warm

    /// Fill upper tiers from lower ones, without decoding; returns how many keys were found.
    pub async fn warm(&self, what: Warm<'_>) -> Result<usize> {
        let tel = &self.inner.telemetry;
        let scope = tel.start(Op::Warm);
        let r = async {
            let keys: Vec<Key> = match what {
                Warm::Keys(ks) => ks
                    .iter()
                    .map(|k| self.keys.key_for_text(k))
                    .collect::<Result<_>>()?,
                Warm::Prefix { prefix, limit } => {
                    let full = format!("{}{prefix}", self.keys.namespace().prefix());
                    let mut found = None;
                    for t in self
                        .inner
                        .tiers
                        .iter()
                        .rev()
                        .filter(|t| t.capability.list_keys)
                    {
                        if let Ok(ks) = t
                            .call(tel, false, t.backend.keys_with_prefix(&full, limit))
                            .await
                        {
                            found = Some(ks);
                            break;
                        }
                    }
                    found.ok_or_else(|| {
                        Error::unsupported("no reachable tier can list keys by prefix")
                    })?
                }
            };
            let now = self.inner.clock.now();
            let mut n = 0;
            for key in &keys {
                let read = self
                    .read_through(key, now, &scope, 0..usize::MAX, |_, _| Ok(()))
                    .await;
                let fill = Fill {
                    snap: read.snap,
                    failed: read.failed,
                };
                if let Some(f) = read.fresh {
                    n += 1;
                    if f.tier > 0 {
                        self.promote(key, &f.entry, f.tier, None, now, &scope, fill)
                            .await;
                    }
                }
            }
            Ok(n)
        }
        .await;
        tel.finish(scope, ok_or_error(&r));
        r
    }

    // ---------------------------------------------------------------- lifecycle

    /// A snapshot of the statistics.
    pub fn stats(&self) -> Stats {
        let rec = &self.inner.telemetry.stats;
        let ld = std::sync::atomic::Ordering::Relaxed;
        Stats {
            tiers: self
                .inner
                .tiers
                .iter()
                .map(|t| {
                    let c = rec.tier(t.position);
                    let get =
                        |f: fn(&crate::stats::TierCounters) -> &std::sync::atomic::AtomicU64| {
                            c.map_or(0, |c| f(c).load(ld))
                        };
                    TierStats {
                        name: t.name.to_string(),
                        kind: t.kind,
                        hits: get(|c| &c.hits),
                        misses: get(|c| &c.misses),
                        errors: get(|c| &c.errors),
                        skipped: get(|c| &c.skipped),
                        promotions: get(|c| &c.promotions),
                        corrupt: get(|c| &c.corrupt) + t.backend.corrupt_reads(),
                        breaker: t
                            .breaker
                            .as_ref()
                            .map_or(crate::BreakerState::Closed, |b| b.state()),
                        breaker_transitions: t.breaker.as_ref().map_or(0, |b| b.transitions()),
                        write_behind_depth: t.write_behind.as_ref().map_or(0, |w| w.depth()),
                        write_behind_failures: t
                            .write_behind
                            .as_ref()
                            .map_or(0, |w| w.failures.load(ld)),
                    }
                })
                .collect(),
            latency: rec.op_latencies(),
            loader_calls: rec.loader_calls.load(ld),
            loader_errors: rec.loader_errors.load(ld),
            loader_latency: rec.loader_latency(),
            coalesced: rec.coalesced.load(ld),
            stale_served: rec.stale_served.load(ld),
            misses: rec.misses.load(ld),
            backplane_applied: rec.backplane_applied.load(ld),
            backplane_resets: rec.backplane_resets.load(ld),
        }
    }

    /// Loads running now (single-flight entries).
    pub fn loads_in_flight(&self) -> usize {
        self.inner.flights.len()
    }

    /// Flush write-behind queues and stop background tasks. Reads and writes still work
    /// afterwards, write-through.
    pub async fn shutdown(&self) {
        for t in &self.inner.tiers {
            if let Some(wb) = &t.write_behind {
                wb.flush_and_stop().await;
            }
        }
        for t in self.inner.tasks.lock().drain(..) {
            t.abort();
        }
    }

    /// The composed stack as one untyped [`Backend`](layercake_core::Backend).
    pub fn as_backend(&self) -> crate::TieredBackend {
        crate::TieredBackend {
            cache: self.clone(),
        }
    }

    pub(crate) async fn raw_get(&self, key: &Key) -> Result<Option<Entry>> {
        let scope = self.inner.telemetry.start(Op::Get);
        let now = self.inner.clock.now();
        let read = self
            .read_through(key, now, &scope, 0..usize::MAX, |_, _| Ok(()))
            .await;
        let fill = Fill {
            snap: read.snap,
            failed: read.failed,
        };
        let r = match read.fresh.or(read.stale) {
            Some(f) => {
                if f.tier > 0 {
                    self.promote(key, &f.entry, f.tier, None, now, &scope, fill)
                        .await;
                }
                Some(f.entry.without_decoded())
            }
            None => None,
        };
        self.inner.telemetry.finish(scope, Outcome::Ok);
        Ok(r)
    }

    pub(crate) async fn raw_set(&self, key: &Key, entry: &Entry) -> Result<()> {
        self.inner.flights.supersede_key(key);
        let now = self.inner.clock.now();
        if !entry.is_retained(now) {
            return self.delete(key).await;
        }
        let d = self.decide(key, entry.value.len(), entry.is_negative());
        self.write_entry(
            key,
            entry.clone().without_decoded(),
            d.tiers,
            None,
            How::Set,
        )
        .await?;
        self.publish(Target::Key(key.as_str().to_owned()), entry.version)
            .await;
        Ok(())
    }
}

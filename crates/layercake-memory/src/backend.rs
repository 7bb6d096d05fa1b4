//! [`MemoryBackend`]: entries kept as values in a sharded, weight-bounded quick_cache.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use layercake_core::{
    Backend, Capability, Entry, Error, FillOutcome, Key, Result, Selector, SharedClock, Timestamp,
    Tombstone, TombstoneLog,
};
use parking_lot::RwLock;
use quick_cache::sync::Cache;
use quick_cache::{DefaultHashBuilder, OptionsBuilder, Weighter};

use crate::config::MemoryConfig;
use crate::weight::{stored_copy, weigh};

/// Share of each shard's capacity that quick_cache's "hot" section may hold; an entry heavier
/// than this share of one shard is never admitted. Set explicitly (it is quick_cache's default)
/// so [`MemoryBackend::max_entry_weight`] stays exact.
pub(crate) const HOT_ALLOCATION: f64 = 0.97;

/// Headroom kept below [`MemoryBackend::max_entry_weight`] when reporting
/// `Capability::max_value_bytes`: room for the key, tags and fixed overhead.
const VALUE_HEADROOM: u64 = 4096;

#[derive(Debug, Clone, Copy)]
pub(crate) struct EntryWeighter;

impl Weighter<Key, Arc<Entry>> for EntryWeighter {
    fn weight(&self, key: &Key, entry: &Arc<Entry>) -> u64 {
        weigh(key, entry)
    }
}

/// The in-process L1 tier: entries (with their decoded values) in a quick_cache bounded by
/// bytes.
///
/// Contract (besides [`Backend`]'s):
/// - keeps [`Entry`] values as given, the optional decoded value included, so a hit returns the
///   already-decoded value; a `get` clones the entry (a few reference-count increments), takes
///   one shard's read lock and reads the clock;
/// - the summed weight stays within `max_bytes`; beyond it quick_cache evicts (CLOCK-Pro:
///   recently and frequently used entries stay). An entry weighs what it holds:
///   `Entry::weight() + key length` + a fixed overhead for the tier's own allocations (key,
///   shared entry, table slot), plus, when it carries a decoded value, an estimate of that
///   value (the payload's uncompressed length, as its lz4 or zstd header states it, + a fixed
///   overhead). Both copies are held, so both are weighed; the payload is kept in an
///   allocation of exactly its length (copied on `set` and `fill`). Resident memory then
///   follows the bound (measured by `cargo xtask bench`, section `memory`);
/// - an entry whose bytes alone weigh more than
///   [`max_entry_weight`](MemoryBackend::max_entry_weight) is refused: `set` (and `fill`)
///   return a [`TooLarge`](layercake_core::ErrorKind::TooLarge) error and change nothing: an
///   older copy of the key stays readable (a rejected write touches nothing); one that fits
///   only without its decoded value is kept without it (a hit then decodes the bytes);
/// - fills are conditional ([`Capability::conditional_fill`]): compared and written under the
///   key's shard write lock, so a concurrent `set` or `delete` of the key always stands;
///   tombstones of `delete_with` / `invalidate_with` are kept in process (not weighed against
///   `max_bytes`; expired ones are pruned as more are recorded) and judged by the clock;
/// - expiry is exact: every read compares `retain_until` with the configured clock, and an
///   expired entry found by a read is removed then and there; expired entries nobody reads
///   stay (weighing, but never returned) until evicted by pressure, removed by an
///   invalidation's scan, or by [`purge_expired`](MemoryBackend::purge_expired); there is
///   no background sweeper;
/// - `invalidate` (prefix or tag) scans every entry, one shard at a time under that shard's
///   write lock: O(entries), and it purges expired entries on the way;
/// - bulk operations are loops over the map in the calling task (no I/O), hence
///   `native_bulk`.
pub struct MemoryBackend {
    /// Entries are shared (`Arc`), so a read touches one reference count, not one per field.
    pub(crate) cache: Cache<Key, Arc<Entry>, EntryWeighter, DefaultHashBuilder>,
    pub(crate) clock: SharedClock,
    pub(crate) max_entry_weight: u64,
    /// Read-locked by fills from their check to their write; write-locked to record one.
    pub(crate) tombstones: RwLock<TombstoneLog>,
}

impl fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("capacity_bytes", &self.cache.capacity())
            .field("shards", &self.cache.num_shards())
            .field("max_entry_weight", &self.max_entry_weight)
            .field("entries", &self.cache.len())
            .field("weighted_bytes", &self.cache.weight())
            .field("tombstones", &self.tombstones())
            .field("clock", &self.clock)
            .finish()
    }
}

impl MemoryBackend {
    /// A memory tier with `config`; a [`Config`](layercake_core::ErrorKind::Config) error if
    /// it is invalid (see [`MemoryConfig::validate`]).
    pub fn new(config: MemoryConfig) -> Result<Self> {
        config.validate()?;
        let mut options = OptionsBuilder::new();
        options
            .estimated_items_capacity(config.estimated_items())
            .weight_capacity(config.max_bytes)
            .hot_allocation(HOT_ALLOCATION);
        if let Some(shards) = config.shards {
            options.shards(shards);
        }
        let options = options.build().map_err(|e| {
            Error::config(format!("memory tier: invalid quick_cache options: {e}"))
                .with_backend("memory")
        })?;
        let cache = Cache::with_options(
            options,
            EntryWeighter,
            DefaultHashBuilder::default(),
            Default::default(),
        );
        // quick_cache refuses an item heavier than the "hot" share of one shard; the same
        // computation as `CacheShard::new`.
        let shard = cache.shard_capacity();
        let max_entry_weight = ((shard as f64 * HOT_ALLOCATION) as u64).clamp(shard.min(1), shard);
        Ok(MemoryBackend {
            cache,
            clock: config.clock,
            max_entry_weight,
            tombstones: RwLock::new(TombstoneLog::new()),
        })
    }

    /// A memory tier bounded to `max_bytes` on the system clock.
    pub fn with_max_bytes(max_bytes: u64) -> Result<Self> {
        Self::new(MemoryConfig::new(max_bytes))
    }

    /// Number of entries held, expired ones not yet removed included.
    pub fn entries(&self) -> usize {
        self.cache.len()
    }

    /// Summed weight of the entries held, in bytes (at most the capacity).
    pub fn weighted_bytes(&self) -> u64 {
        self.cache.weight()
    }

    /// The bound on [`weighted_bytes`](MemoryBackend::weighted_bytes): `max_bytes` rounded up
    /// to a multiple of the shard count.
    pub fn capacity_bytes(&self) -> u64 {
        self.cache.capacity()
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.cache.num_shards()
    }

    /// The heaviest entry (its weight without the decoded value) `set` accepts:
    /// `capacity_bytes / shards × 0.97`.
    pub fn max_entry_weight(&self) -> u64 {
        self.max_entry_weight
    }

    /// [`Backend::get`] without the boxed future: the entry if present and retained now.
    ///
    /// Does not allocate: one shard read lock, one clone of the stored entry (reference counts)
    /// and, on a hit only, one clock read.
    pub fn get_sync(&self, key: &Key) -> Option<Entry> {
        let entry = self.cache.get(key)?;
        let now = self.clock.now();
        self.retained(key, entry, now).map(|e| Entry::clone(&e))
    }

    /// [`get_sync`](MemoryBackend::get_sync) judged at `now` instead of reading the clock
    /// (for a caller that has just read the same clock).
    pub fn get_sync_at(&self, key: &Key, now: Timestamp) -> Option<Entry> {
        self.get_shared_at(key, now).map(|e| Entry::clone(&e))
    }

    /// The stored entry itself, shared, if retained at `now`: the cheapest read (one
    /// reference-count increment), for a caller that only looks at it.
    pub fn get_shared_at(&self, key: &Key, now: Timestamp) -> Option<Arc<Entry>> {
        let entry = self.cache.get(key)?;
        self.retained(key, entry, now)
    }

    /// `entry` if retained at `now`, else remove it and return `None`.
    #[inline]
    fn retained(&self, key: &Key, entry: Arc<Entry>, now: Timestamp) -> Option<Arc<Entry>> {
        if entry.is_retained(now) {
            return Some(entry);
        }
        self.remove_expired(key, now);
        None
    }

    #[cold]
    fn remove_expired(&self, key: &Key, now: Timestamp) {
        // Only if still expired: a concurrent `set` may have replaced it meanwhile.
        self.cache.remove_if(key, |e| !e.is_retained(now));
    }

    /// [`Backend::set`] without the boxed future. An entry over
    /// [`max_entry_weight`](MemoryBackend::max_entry_weight) is a `TooLarge` error and changes
    /// nothing (an older copy stays).
    pub fn set_sync(&self, key: &Key, entry: &Entry) -> Result<()> {
        if !entry.is_retained(self.clock.now()) {
            self.cache.remove(key);
            return Ok(());
        }
        self.check_weight(key, entry)?;
        self.cache.insert(
            key.clone(),
            Arc::new(stored_copy(key, entry, self.max_entry_weight)),
        );
        Ok(())
    }

    /// [`Backend::delete`] without the boxed future.
    pub fn delete_sync(&self, key: &Key) {
        self.cache.remove(key);
    }

    /// Remove every expired entry now (O(entries), one shard write lock at a time). Reads
    /// never return expired entries anyway; this only frees their weight early.
    pub fn purge_expired(&self) {
        let now = self.clock.now();
        self.cache.retain(|_, e| e.is_retained(now));
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn as_any(&self) -> Option<&(dyn std::any::Any + Send + Sync)> {
        Some(self)
    }

    fn capability(&self) -> Capability {
        let mut c = Capability::MINIMAL;
        c.native_bulk = true;
        c.prefix_invalidation = true;
        c.tag_invalidation = true;
        c.clear = true;
        c.list_keys = true;
        c.clock_driven_expiry = true;
        c.stores_bytes = false;
        c.shared = false;
        c.reach = layercake_core::Reach::InProcess;
        c.durable = false;
        c.max_value_bytes =
            usize::try_from(self.max_entry_weight.saturating_sub(VALUE_HEADROOM)).ok();
        c.conditional_fill = true;
        c
    }

    async fn get(&self, key: &Key) -> Result<Option<Entry>> {
        Ok(self.get_sync(key))
    }

    async fn set(&self, key: &Key, entry: &Entry) -> Result<()> {
        self.set_sync(key, entry)
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        self.delete_sync(key);
        Ok(())
    }

    /// Reads the clock at most once for the whole batch.
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Entry>>> {
        let mut now = None;
        Ok(keys
            .iter()
            .map(|k| {
                let entry = self.cache.get(k)?;
                let now = *now.get_or_insert_with(|| self.clock.now());
                self.retained(k, entry, now).map(|e| Entry::clone(&e))
            })
            .collect())
    }

    /// Every item is attempted; if some are too large, the others are still written and the
    /// first error is returned.
    async fn set_many(&self, items: &[(Key, Entry)]) -> Result<()> {
        let mut first_error = None;
        for (k, e) in items {
            if let Err(err) = self.set_sync(k, e) {
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn delete_many(&self, keys: &[Key]) -> Result<()> {
        for k in keys {
            self.cache.remove(k);
        }
        Ok(())
    }

    async fn invalidate(&self, selector: &Selector) -> Result<()> {
        let now = self.clock.now();
        match selector {
            Selector::Prefix(p) => self
                .cache
                .retain(|k, e| !k.starts_with(p) && e.is_retained(now)),
            Selector::Tag(t) => self
                .cache
                .retain(|_, e| !e.tags.iter().any(|x| x == t) && e.is_retained(now)),
            other => {
                return Err(Error::unsupported(format!(
                    "memory backend cannot invalidate by {other:?}"
                ))
                .with_backend("memory"));
            }
        }
        Ok(())
    }

    async fn clear(&self) -> Result<()> {
        self.clear_all();
        Ok(())
    }

    async fn fill(&self, key: &Key, entry: &Entry) -> Result<FillOutcome> {
        self.fill_sync(key, entry)
    }

    /// Stops at the first error (an entry over the per-entry limit), like the default.
    async fn fill_many(&self, items: &[(Key, Entry)]) -> Result<Vec<FillOutcome>> {
        items.iter().map(|(k, e)| self.fill_sync(k, e)).collect()
    }

    async fn delete_with(&self, key: &Key, tombstone: Tombstone) -> Result<()> {
        self.delete_with_sync(key, tombstone);
        Ok(())
    }

    /// Records the tombstone, then scans like `invalidate`.
    async fn invalidate_with(&self, selector: &Selector, tombstone: Tombstone) -> Result<()> {
        if matches!(selector, Selector::Prefix(_) | Selector::Tag(_)) {
            self.record_selector(selector, tombstone);
        }
        self.invalidate(selector).await
    }

    /// A scan of every entry (one shard lock at a time).
    async fn keys_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<Key>> {
        let now = self.clock.now();
        Ok(self
            .cache
            .iter()
            .filter(|(k, e)| k.starts_with(prefix) && e.is_retained(now))
            .map(|(k, _)| k)
            .take(limit)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use layercake_core::{Clock, ErrorKind, ManualClock};
    use std::any::Any;
    use std::sync::Arc;
    use std::time::Duration;

    fn key(s: &str) -> Key {
        Key::new(s).unwrap()
    }

    fn manual(max_bytes: u64) -> (MemoryBackend, ManualClock) {
        let clock = ManualClock::new();
        let b =
            MemoryBackend::new(MemoryConfig::new(max_bytes).with_clock(Arc::new(clock.clone())))
                .unwrap();
        (b, clock)
    }

    #[tokio::test]
    async fn expired_entries_are_never_returned_and_are_removed_on_read() {
        let (b, clock) = manual(1 << 20);
        let e = Entry::new(&b"v"[..], clock.now(), Duration::from_secs(10));
        b.set(&key("k"), &e).await.unwrap();
        assert_eq!(b.entries(), 1);
        clock.advance(Duration::from_secs(10));
        assert_eq!(b.get(&key("k")).await.unwrap(), None);
        assert_eq!(b.entries(), 0, "the expired entry is removed by the read");
        assert_eq!(b.weighted_bytes(), 0);
    }

    #[tokio::test]
    async fn decoded_value_is_kept() {
        let (b, clock) = manual(1 << 20);
        let decoded: Arc<dyn Any + Send + Sync> = Arc::new(String::from("typed"));
        let e = Entry::new(&b"\"typed\""[..], clock.now(), Duration::from_secs(10))
            .with_decoded(decoded.clone());
        b.set(&key("k"), &e).await.unwrap();
        let got = b.get(&key("k")).await.unwrap().unwrap();
        let back = got.decoded().unwrap();
        assert!(Arc::ptr_eq(back, &decoded), "the same Arc comes back");
        assert_eq!(back.downcast_ref::<String>().unwrap(), "typed");
    }

    #[tokio::test]
    async fn entries_over_the_per_entry_limit_are_refused_exactly() {
        let (b, clock) = manual(1 << 20);
        let max = b.max_entry_weight();
        assert_eq!(
            max,
            ((b.capacity_bytes() / b.shards() as u64) as f64 * 0.97) as u64
        );
        let k = key("big");
        let fixed = weigh(
            &k,
            &Entry::new(Vec::new(), clock.now(), Duration::from_secs(9)),
        );
        let fits = Entry::new(
            vec![1u8; (max - fixed) as usize],
            clock.now(),
            Duration::from_secs(9),
        );
        assert_eq!(weigh(&k, &fits), max);
        b.set(&k, &fits).await.unwrap();
        assert_eq!(
            b.get(&k).await.unwrap(),
            Some(fits.clone()),
            "exactly at the limit is kept"
        );
        let over = Entry::new(
            vec![2u8; (max - fixed + 1) as usize],
            clock.now(),
            Duration::from_secs(9),
        );
        let err = b.set(&k, &over).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TooLarge);
        assert_eq!(err.backend(), Some("memory"));
        assert_eq!(
            b.get(&k).await.unwrap(),
            Some(fits.clone()),
            "the older copy stays: a refused write changes nothing"
        );
        let err = b.fill(&k, &over.clone().with_version(9)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TooLarge);
        assert_eq!(
            b.get(&k).await.unwrap(),
            Some(fits.clone()),
            "nor does a fill"
        );
        let cap = b.capability().max_value_bytes.unwrap() as u64;
        assert!(cap < max && cap + 4096 == max);
    }

    #[tokio::test]
    async fn set_many_writes_the_others_and_reports_the_first_error() {
        let (b, clock) = manual(1 << 20);
        let small = Entry::new(&b"s"[..], clock.now(), Duration::from_secs(9));
        let huge = Entry::new(vec![0u8; 1 << 20], clock.now(), Duration::from_secs(9));
        let err = b
            .set_many(&[
                (key("a"), small.clone()),
                (key("h"), huge),
                (key("b"), small.clone()),
            ])
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TooLarge);
        assert_eq!(b.get(&key("a")).await.unwrap(), Some(small.clone()));
        assert_eq!(b.get(&key("b")).await.unwrap(), Some(small));
        assert_eq!(b.get(&key("h")).await.unwrap(), None);
    }

    #[tokio::test]
    async fn weight_stays_within_max_bytes_under_pressure() {
        let (b, clock) = manual(256 << 10);
        let e = Entry::new(vec![7u8; 1000], clock.now(), Duration::from_secs(60));
        for i in 0..2000 {
            b.set(&key(&format!("k{i}")), &e).await.unwrap();
            assert!(b.weighted_bytes() <= b.capacity_bytes());
        }
        let per = weigh(&key("k1000"), &e);
        assert!(b.entries() < 2000);
        assert!(
            b.weighted_bytes() > b.capacity_bytes() - b.shards() as u64 * per * 2,
            "the cache fills up to its bound ({} of {})",
            b.weighted_bytes(),
            b.capacity_bytes()
        );
        assert_eq!(b.capacity_bytes() % b.shards() as u64, 0);
        assert!(b.capacity_bytes() >= 256 << 10);
    }

    #[tokio::test]
    async fn purge_and_invalidate_drop_expired_entries() {
        let (b, clock) = manual(1 << 20);
        let short = Entry::new(&b"s"[..], clock.now(), Duration::from_secs(1));
        let long = Entry::new(&b"l"[..], clock.now(), Duration::from_secs(100));
        for i in 0..10 {
            b.set(&key(&format!("s{i}")), &short).await.unwrap();
            b.set(&key(&format!("l{i}")), &long).await.unwrap();
        }
        clock.advance(Duration::from_secs(2));
        assert_eq!(b.entries(), 20, "no background sweep");
        b.purge_expired();
        assert_eq!(b.entries(), 10);
        b.set(
            &key("s0"),
            &Entry::new(&b"s"[..], clock.now(), Duration::from_secs(1)),
        )
        .await
        .unwrap();
        clock.advance(Duration::from_secs(2));
        b.invalidate(&Selector::Tag("none".into())).await.unwrap();
        assert_eq!(
            b.entries(),
            10,
            "the invalidation scan purged the expired entry"
        );
        assert_eq!(b.get(&key("l3")).await.unwrap(), Some(long));
    }

    #[test]
    fn invalid_configs_are_rejected() {
        for cfg in [
            MemoryConfig::new(0),
            MemoryConfig::new(1024).with_estimated_items(0),
            MemoryConfig::new(1024).with_shards(0),
        ] {
            let err = MemoryBackend::new(cfg).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        }
        let b = MemoryBackend::new(MemoryConfig::new(1 << 20).with_shards(4)).unwrap();
        assert_eq!(b.shards(), 4);
        assert!(format!("{b:?}").contains("max_entry_weight"));
    }

    #[test]
    fn capability_is_an_in_process_tier() {
        let b = MemoryBackend::with_max_bytes(8 << 20).unwrap();
        let c = b.capability();
        assert!(c.native_bulk && c.prefix_invalidation && c.tag_invalidation && c.clear);
        assert!(c.clock_driven_expiry);
        assert!(!c.stores_bytes && !c.shared && !c.durable);
        assert_eq!(b.kind(), "memory");
        assert_eq!(b.corrupt_reads(), 0);
    }
}

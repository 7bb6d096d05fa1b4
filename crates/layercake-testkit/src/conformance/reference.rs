//! [`ReferenceBackend`]: the simplest backend that meets the whole [`Backend`] contract, storing
//! envelope bytes in a map behind one mutex.
//!
//! It exists to test the test kit: the conformance suite must pass on it, and must fail the
//! right case for each deliberate [`Flaw`] switched on. It also serves doc examples and composer
//! tests that need a byte-storing tier without a server. It is not fast (one global lock).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use layercake_core::{
    Backend, Bytes, Capability, Entry, Error, FillOutcome, Key, Result, Selector, SharedClock,
    Timestamp, Tombstone, TombstoneLog, envelope, system_clock,
};
use parking_lot::Mutex;

use super::RawStore;

/// A deliberate contract violation, switched on with [`ReferenceBackend::with_flaw`] to prove
/// that the conformance suite notices it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Flaw {
    /// `get` does not check `retain_until`: expired entries are returned.
    ReturnsExpired,
    /// `invalidate(Prefix)` treats `*` and `?` as glob wildcards.
    GlobPrefix,
    /// Corrupt bytes read as a miss but are neither removed nor counted.
    KeepsCorrupt,
    /// `set` of an already-expired entry is ignored, leaving the older copy in place.
    ExpiredSetKeepsOld,
    /// The per-key version is not stored (always read back as 0).
    DropsVersion,
    /// `invalidate(Tag)` removes entries whose tag merely starts with the requested tag.
    TagPrefixMatch,
    /// `fill` ignores the stored entry's version and overwrites it.
    FillReplacesNewer,
    /// `delete_with` removes the entry but keeps no tombstone (like the trait's default).
    DeleteKeepsNoTombstone,
    /// `invalidate_with` removes the entries but keeps no tombstone (like the trait's default).
    InvalidateKeepsNoTombstone,
    /// `keys_with_prefix` also lists keys that only have a tombstone.
    ListsTombstones,
    /// Tombstones never expire.
    TombstonesNeverExpire,
    /// `fill` checks, yields to other tasks, then writes without checking again.
    FillNotAtomic,
    /// While [`set_failing`](ReferenceBackend::set_failing) is on, `get` reports a miss
    /// (`Ok(None)`) instead of its error.
    ErrorsAsMisses,
}

/// A byte-storing, clock-driven backend with every optional capability; see the
/// [module docs](self).
///
/// Contract: the whole [`Backend`] contract, unless a [`Flaw`] is switched on; while
/// [`set_failing`](ReferenceBackend::set_failing) is on, every operation returns an
/// `Unavailable` error.
#[derive(Debug)]
pub struct ReferenceBackend {
    map: Mutex<HashMap<Key, Bytes>>,
    /// Locked only while `map` is (lock order: map, then tombstones).
    tombstones: Mutex<TombstoneLog>,
    clock: SharedClock,
    corrupt: AtomicU64,
    failing: AtomicBool,
    flaws: Mutex<Vec<Flaw>>,
}

impl Default for ReferenceBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl ReferenceBackend {
    /// An empty backend on the system clock.
    pub fn new() -> Self {
        Self::with_clock(system_clock())
    }

    /// An empty backend judging expiry with `clock`.
    pub fn with_clock(clock: SharedClock) -> Self {
        ReferenceBackend {
            map: Mutex::new(HashMap::new()),
            tombstones: Mutex::new(TombstoneLog::new()),
            clock,
            corrupt: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            flaws: Mutex::new(Vec::new()),
        }
    }

    /// Switch a deliberate contract violation on.
    pub fn with_flaw(self, flaw: Flaw) -> Self {
        self.flaws.lock().push(flaw);
        self
    }

    /// Make every operation fail with `Unavailable` (or serve again).
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// The backend's current time.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Number of stored copies (valid or not, expired or not).
    pub fn stored(&self) -> usize {
        self.map.lock().len()
    }

    fn has(&self, flaw: Flaw) -> bool {
        self.flaws.lock().contains(&flaw)
    }

    /// The tombstone as recorded (forever with [`Flaw::TombstonesNeverExpire`]).
    fn recorded(&self, t: Tombstone) -> Tombstone {
        if self.has(Flaw::TombstonesNeverExpire) && !t.ttl.is_zero() {
            Tombstone::new(t.version, Duration::MAX)
        } else {
            t
        }
    }

    /// What a fill of `entry` would do against `map` and the tombstones at `now`.
    fn judge(
        &self,
        map: &HashMap<Key, Bytes>,
        key: &Key,
        entry: &Entry,
        now: Timestamp,
    ) -> FillOutcome {
        if self
            .tombstones
            .lock()
            .refuses(key, &entry.tags, entry.version, now)
        {
            return FillOutcome::Tombstoned;
        }
        let newer = map
            .get(key)
            .and_then(|b| envelope::peek_header(b).ok())
            .is_some_and(|h| h.retain_until() > now && h.version >= entry.version);
        if newer && !self.has(Flaw::FillReplacesNewer) {
            return FillOutcome::KeptNewer;
        }
        FillOutcome::Stored
    }

    fn check(&self) -> Result<()> {
        if self.failing.load(Ordering::SeqCst) {
            Err(Error::unavailable("reference backend set to fail").with_backend("reference"))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Backend for ReferenceBackend {
    fn kind(&self) -> &'static str {
        "reference"
    }

    fn capability(&self) -> Capability {
        let mut c = Capability::MINIMAL;
        c.prefix_invalidation = true;
        c.tag_invalidation = true;
        c.clear = true;
        c.list_keys = true;
        c.clock_driven_expiry = true;
        c.stores_bytes = true;
        c.conditional_fill = true;
        c
    }

    async fn get(&self, key: &Key) -> Result<Option<Entry>> {
        if let Err(e) = self.check() {
            return if self.has(Flaw::ErrorsAsMisses) {
                Ok(None)
            } else {
                Err(e)
            };
        }
        let Some(bytes) = self.map.lock().get(key).cloned() else {
            return Ok(None);
        };
        match envelope::decode(key, bytes) {
            Ok(e) if e.is_retained(self.now()) || self.has(Flaw::ReturnsExpired) => Ok(Some(e)),
            Ok(_) => {
                self.map.lock().remove(key);
                Ok(None)
            }
            Err(_) => {
                if !self.has(Flaw::KeepsCorrupt) {
                    self.map.lock().remove(key);
                    self.corrupt.fetch_add(1, Ordering::Relaxed);
                }
                Ok(None)
            }
        }
    }

    async fn set(&self, key: &Key, entry: &Entry) -> Result<()> {
        self.check()?;
        if !entry.is_retained(self.now()) {
            if !self.has(Flaw::ExpiredSetKeepsOld) {
                self.map.lock().remove(key);
            }
            return Ok(());
        }
        let stored = if self.has(Flaw::DropsVersion) {
            entry.clone().with_version(0)
        } else {
            entry.clone()
        };
        let bytes = envelope::encode(key, &stored)?;
        self.map.lock().insert(key.clone(), Bytes::from(bytes));
        Ok(())
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        self.check()?;
        self.map.lock().remove(key);
        Ok(())
    }

    async fn invalidate(&self, selector: &Selector) -> Result<()> {
        self.check()?;
        let glob = self.has(Flaw::GlobPrefix);
        let tag_prefix = self.has(Flaw::TagPrefixMatch);
        let limits = envelope::EnvelopeLimits::default();
        self.map.lock().retain(|k, bytes| match selector {
            Selector::Prefix(p) if glob => !glob_prefix(p.as_bytes(), k.as_bytes()),
            Selector::Tag(t) if tag_prefix => match tags_of(bytes, &limits) {
                Some(tags) => !tags.iter().any(|x| x.starts_with(t.as_str())),
                None => true,
            },
            Selector::Prefix(_) => !selector.matches(k.as_str(), &[]),
            Selector::Tag(_) => match tags_of(bytes, &limits) {
                Some(tags) => !selector.matches(k.as_str(), &tags),
                None => true,
            },
            _ => true,
        });
        Ok(())
    }

    async fn clear(&self) -> Result<()> {
        self.check()?;
        let mut map = self.map.lock();
        map.clear();
        self.tombstones.lock().clear();
        Ok(())
    }

    async fn fill(&self, key: &Key, entry: &Entry) -> Result<FillOutcome> {
        self.check()?;
        let now = self.now();
        if !entry.is_retained(now) {
            return Ok(FillOutcome::Expired);
        }
        let bytes = Bytes::from(envelope::encode(key, entry)?);
        if self.has(Flaw::FillNotAtomic) {
            let verdict = self.judge(&self.map.lock(), key, entry, now);
            if !verdict.is_stored() {
                return Ok(verdict);
            }
            tokio::task::yield_now().await;
            self.map.lock().insert(key.clone(), bytes);
            return Ok(FillOutcome::Stored);
        }
        let mut map = self.map.lock();
        let verdict = self.judge(&map, key, entry, now);
        if verdict.is_stored() {
            map.insert(key.clone(), bytes);
        }
        Ok(verdict)
    }

    async fn delete_with(&self, key: &Key, tombstone: Tombstone) -> Result<()> {
        self.check()?;
        let now = self.now();
        let mut map = self.map.lock();
        if !self.has(Flaw::DeleteKeepsNoTombstone) {
            self.tombstones
                .lock()
                .record_key(key, self.recorded(tombstone), now);
        }
        map.remove(key);
        Ok(())
    }

    async fn invalidate_with(&self, selector: &Selector, tombstone: Tombstone) -> Result<()> {
        self.check()?;
        if !matches!(selector, Selector::Prefix(_) | Selector::Tag(_)) {
            return self.invalidate(selector).await;
        }
        if !self.has(Flaw::InvalidateKeepsNoTombstone) {
            let now = self.now();
            let _map = self.map.lock();
            self.tombstones
                .lock()
                .record_selector(selector, self.recorded(tombstone), now);
        }
        // Fills hold the map lock while they check and write: one that checked before the
        // record above has written already, and the removal below takes it.
        self.invalidate(selector).await
    }

    async fn keys_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<Key>> {
        self.check()?;
        let now = self.now();
        let map = self.map.lock();
        let mut keys: Vec<Key> = map
            .iter()
            .filter(|(k, bytes)| {
                k.starts_with(prefix)
                    && envelope::peek_header(bytes).is_ok_and(|h| h.retain_until() > now)
            })
            .map(|(k, _)| k.clone())
            .collect();
        if self.has(Flaw::ListsTombstones) {
            let tombstones = self.tombstones.lock();
            keys.extend(
                tombstones
                    .live_keys(now)
                    .filter(|k| k.starts_with(prefix) && !map.contains_key(*k))
                    .cloned(),
            );
        }
        keys.truncate(limit);
        Ok(keys)
    }

    async fn health(&self) -> Result<()> {
        self.check()
    }

    fn corrupt_reads(&self) -> u64 {
        self.corrupt.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl RawStore for ReferenceBackend {
    async fn put_raw(&self, key: &Key, bytes: Vec<u8>) -> Result<()> {
        self.map.lock().insert(key.clone(), Bytes::from(bytes));
        Ok(())
    }

    async fn raw_exists(&self, key: &Key) -> Result<bool> {
        Ok(self.map.lock().contains_key(key))
    }
}

/// The tags of an envelope, read from its header without checking the payload's checksum
/// (a tag invalidation must not hash every stored megabyte); `None` when malformed.
fn tags_of(bytes: &[u8], limits: &envelope::EnvelopeLimits) -> Option<Vec<String>> {
    let h = envelope::peek_header(bytes).ok()?;
    if h.tag_count > limits.max_tags {
        return None;
    }
    let mut pos = envelope::HeaderInfo::LEN.checked_add(h.key_len)?;
    let mut tags = Vec::with_capacity(h.tag_count);
    for _ in 0..h.tag_count {
        let len = bytes.get(pos..pos + 2)?;
        let len = u16::from_le_bytes([len[0], len[1]]) as usize;
        pos += 2;
        tags.push(
            std::str::from_utf8(bytes.get(pos..pos + len)?)
                .ok()?
                .to_owned(),
        );
        pos += len;
    }
    Some(tags)
}

/// Whether `text` starts with something matching the glob `pattern` (`*` any run, `?` any
/// byte): the bug [`Flaw::GlobPrefix`] models.
fn glob_prefix(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => true,
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob_prefix(rest, &text[i..])),
        Some((b'?', rest)) => !text.is_empty() && glob_prefix(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && glob_prefix(rest, &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_prefix_models_the_bug() {
        assert!(glob_prefix(b"a*b", b"axxb/1"));
        assert!(glob_prefix(b"a?b", b"axb"));
        assert!(!glob_prefix(b"a?b", b"ab"));
        assert!(glob_prefix(b"", b"anything"));
    }
}

//! Conditional fills and tombstones of the memory tier.
//!
//! - A fill compares and writes under the key's shard write lock (quick_cache's entry API): an
//!   existing entry is replaced in place only when older; a vacant key gets a placeholder that
//!   a concurrent `set` or `delete` of the key removes, so the fill's insert then fails and
//!   the authoritative write stands.
//! - Tombstones live in a [`TombstoneLog`] behind a read-write lock. A fill holds the read side
//!   from its tombstone check until its write is done; `delete_with` and `invalidate_with`
//!   record their tombstone under the write side. So a fill either finished writing before a
//!   tombstone was recorded (and the removal that follows the record takes its entry) or sees
//!   the tombstone.

use std::sync::Arc;
use std::time::Duration;

use layercake_core::{Entry, Error, FillOutcome, Key, Result, Selector, Tombstone};
use quick_cache::sync::{EntryAction, EntryResult};

use crate::backend::MemoryBackend;
use crate::weight::{bytes_weight, stored_copy};

/// How long a fill waits for another fill of the same key holding its placeholder (a few
/// instructions in practice) before giving up as refused.
const PLACEHOLDER_WAIT: Duration = Duration::from_millis(50);

impl MemoryBackend {
    /// [`Backend::fill`](layercake_core::Backend::fill) without the boxed future.
    ///
    /// An entry over [`max_entry_weight`](MemoryBackend::max_entry_weight) is a `TooLarge`
    /// error and changes nothing.
    pub fn fill_sync(&self, key: &Key, entry: &Entry) -> Result<FillOutcome> {
        let now = self.clock.now();
        if !entry.is_retained(now) {
            return Ok(FillOutcome::Expired);
        }
        self.check_weight(key, entry)?;
        let tombstones = self.tombstones.read();
        if tombstones.refuses(key, &entry.tags, entry.version, now) {
            return Ok(FillOutcome::Tombstoned);
        }
        let new = Arc::new(stored_copy(key, entry, self.max_entry_weight));
        let result = self
            .cache
            .entry(key, Some(PLACEHOLDER_WAIT), |_, stored: &mut Arc<Entry>| {
                if stored.is_retained(now) && stored.version >= entry.version {
                    EntryAction::Retain(false)
                } else {
                    *stored = new.clone();
                    EntryAction::Retain(true)
                }
            });
        let outcome = match result {
            EntryResult::Retained(true) => FillOutcome::Stored,
            EntryResult::Vacant(guard) => match guard.insert(new) {
                Ok(()) => FillOutcome::Stored,
                // A `set` or `delete` of the key replaced the placeholder: it stands.
                Err(_) => FillOutcome::KeptNewer,
            },
            // Another fill of the key held its placeholder for too long.
            _ => FillOutcome::KeptNewer,
        };
        drop(tombstones);
        Ok(outcome)
    }

    /// [`Backend::delete_with`](layercake_core::Backend::delete_with) without the boxed
    /// future.
    pub fn delete_with_sync(&self, key: &Key, tombstone: Tombstone) {
        let now = self.clock.now();
        let mut tombstones = self.tombstones.write();
        tombstones.record_key(key, tombstone, now);
        self.cache.remove(key);
    }

    /// Record a selector tombstone (the removal itself follows, as `invalidate`).
    pub(crate) fn record_selector(&self, selector: &Selector, tombstone: Tombstone) {
        let now = self.clock.now();
        self.tombstones
            .write()
            .record_selector(selector, tombstone, now);
    }

    /// Remove every entry and every tombstone.
    pub(crate) fn clear_all(&self) {
        let mut tombstones = self.tombstones.write();
        self.cache.clear();
        tombstones.clear();
    }

    /// Number of tombstone records held (expired ones not yet pruned included).
    pub fn tombstones(&self) -> usize {
        self.tombstones.read().len()
    }

    /// `TooLarge` when `entry`'s bytes (its decoded value not counted: it is dropped when only
    /// it does not fit) are heavier than one entry may be; nothing is changed.
    pub(crate) fn check_weight(&self, key: &Key, entry: &Entry) -> Result<()> {
        let weight = bytes_weight(key, entry);
        if weight > self.max_entry_weight {
            return Err(Error::too_large(format!(
                "entry of weight {weight} bytes is over the memory tier's per-entry limit of {} \
                 bytes (capacity / shards × {})",
                self.max_entry_weight,
                crate::backend::HOT_ALLOCATION
            ))
            .with_backend("memory"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryConfig;
    use layercake_core::{Clock as _, ManualClock};

    fn key(s: &str) -> Key {
        Key::new(s).unwrap()
    }

    #[test]
    fn a_fill_never_overwrites_a_concurrent_set() {
        let clock = ManualClock::new();
        let b = Arc::new(
            MemoryBackend::new(MemoryConfig::new(1 << 20).with_clock(Arc::new(clock.clone())))
                .unwrap(),
        );
        let k = key("contended");
        let entry = |v: u64| {
            Entry::new(
                v.to_le_bytes().to_vec(),
                clock.now(),
                Duration::from_secs(60),
            )
            .with_version(v)
        };
        const ROUNDS: u64 = 2_000;
        let filler = {
            let (b, k) = (b.clone(), k.clone());
            let fills: Vec<Entry> = (0..ROUNDS).map(entry).collect();
            std::thread::spawn(move || {
                for e in &fills {
                    b.fill_sync(&k, e).unwrap();
                }
            })
        };
        for i in 0..ROUNDS {
            let e = entry(1_000_000 + i);
            // The delete leaves the key vacant, so fills race the set on both paths (in place
            // and through a placeholder).
            b.delete_sync(&k);
            b.set_sync(&k, &e).unwrap();
            let got = b.get_sync(&k);
            assert!(
                got.as_ref().is_none_or(|g| g.version >= e.version),
                "round {i}: a fill replaced a newer set: {got:?}"
            );
        }
        filler.join().unwrap();
        let last = b.get_sync(&k);
        assert!(
            last.is_none_or(|g| g.version >= 1_000_000),
            "a fill landed over the last set"
        );
    }

    #[test]
    fn delete_with_and_clear_manage_tombstones() {
        let clock = ManualClock::new();
        let b = MemoryBackend::new(MemoryConfig::new(1 << 20).with_clock(Arc::new(clock.clone())))
            .unwrap();
        let k = key("k");
        let e = Entry::new(&b"v"[..], clock.now(), Duration::from_secs(60)).with_version(5);
        b.delete_with_sync(&k, Tombstone::new(5, Duration::from_secs(1)));
        assert_eq!(b.tombstones(), 1);
        assert_eq!(b.fill_sync(&k, &e).unwrap(), FillOutcome::Tombstoned);
        assert_eq!(
            b.entries(),
            0,
            "a refused fill leaves no placeholder or entry"
        );
        b.clear_all();
        assert_eq!(b.tombstones(), 0);
        assert_eq!(b.fill_sync(&k, &e).unwrap(), FillOutcome::Stored);
        assert!(format!("{b:?}").contains("tombstones: 0"));
    }
}

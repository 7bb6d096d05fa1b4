//! The ghost record of one tier: a bounded table of the key hashes written there recently,
//! with each copy's expiry and size, and the shared record of removals — what a miss is
//! classified by (evicted, expired, invalidated, never seen).
//!
//! Bound: a fixed number of slots per tier (24 bytes each), direct-mapped by the key's hash.
//! A key whose slot was taken by another key since it was written is *forgotten*: its miss
//! counts as never seen. Lock-free: a slot is three relaxed atomics; a reader racing a writer
//! of a colliding key can misclassify that one miss, nothing worse.

use std::sync::atomic::{AtomicU64, Ordering};

use layercake_core::{Key, Timestamp};
use parking_lot::Mutex;

/// The hash the ghost records keep of a key (never 0: 0 marks an empty slot).
#[inline]
pub(crate) fn key_hash(key: &Key) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key.as_bytes()) | 1
}

const RELAXED: Ordering = Ordering::Relaxed;
/// The "was missed as evicted" bit of a slot's meta word (sticky across rewrites).
const EVICTED_SEEN: u64 = 1 << 63;

/// What the ghost remembers of a key written to a tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Remembered {
    /// When the copy stopped being fresh (ms).
    pub(crate) expires_at: Timestamp,
    /// The removal generation when it was written.
    pub(crate) generation: u64,
    /// Its encoded size (key and value bytes).
    pub(crate) size: u64,
    /// Whether a miss of this key was already classified as an eviction.
    pub(crate) evicted_seen: bool,
}

/// One tier's ghost table.
#[derive(Debug)]
pub(crate) struct Ghost {
    /// `[hash, expires_at ms, generation << 32 | size | EVICTED_SEEN]` per slot.
    slots: Box<[[AtomicU64; 3]]>,
    mask: usize,
}

impl Ghost {
    /// A table of `slots` slots (rounded up to a power of two, at least 64).
    pub(crate) fn new(slots: usize) -> Ghost {
        let n = slots.max(64).next_power_of_two();
        Ghost {
            slots: (0..n)
                .map(|_| [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)])
                .collect(),
            mask: n - 1,
        }
    }

    #[inline]
    fn slot(&self, hash: u64) -> &[AtomicU64; 3] {
        &self.slots[(hash as usize) & self.mask]
    }

    /// Remember that the key was written with this expiry and size.
    #[inline]
    pub(crate) fn stored(&self, hash: u64, expires_at: Timestamp, size: usize, generation: u64) {
        let s = self.slot(hash);
        let same = s[0].load(RELAXED) == hash;
        let sticky = if same {
            s[2].load(RELAXED) & EVICTED_SEEN
        } else {
            0
        };
        let meta =
            sticky | ((generation & 0x7fff_ffff) << 32) | (size.min(u32::MAX as usize) as u64);
        if !same {
            s[0].store(0, RELAXED);
        }
        s[1].store(expires_at.0, RELAXED);
        s[2].store(meta, RELAXED);
        s[0].store(hash, Ordering::Release);
    }

    /// What the table remembers of the key, if its slot still holds it.
    #[inline]
    pub(crate) fn recall(&self, hash: u64) -> Option<Remembered> {
        let s = self.slot(hash);
        if s[0].load(Ordering::Acquire) != hash {
            return None;
        }
        let expires_at = Timestamp(s[1].load(RELAXED));
        let meta = s[2].load(RELAXED);
        (s[0].load(RELAXED) == hash).then_some(Remembered {
            expires_at,
            generation: (meta >> 32) & 0x7fff_ffff,
            size: meta & 0xffff_ffff,
            evicted_seen: meta & EVICTED_SEEN != 0,
        })
    }

    /// Mark the key as missed for an eviction; `true` the first time since it was first
    /// remembered (so each evicted key's size is counted once).
    pub(crate) fn mark_evicted(&self, hash: u64) -> bool {
        let s = self.slot(hash);
        s[0].load(RELAXED) == hash && s[2].fetch_or(EVICTED_SEEN, RELAXED) & EVICTED_SEEN == 0
    }
}

/// The most recent prefix invalidations remembered.
const PREFIXES: usize = 32;

/// Removals: a generation counter, a direct-mapped table of removed key hashes with the
/// generation of their removal, the generation of the last removal that cannot be matched to a
/// key (a tag, `clear`, a backplane reset) and the last [`PREFIXES`] prefixes removed.
#[derive(Debug)]
pub(crate) struct Removals {
    generation: AtomicU64,
    keys: Box<[[AtomicU64; 2]]>,
    mask: usize,
    all: AtomicU64,
    prefixes: Mutex<Vec<(u64, String)>>,
    any_prefix: AtomicU64,
}

impl Removals {
    pub(crate) fn new(slots: usize) -> Removals {
        let n = (slots / 4).max(64).next_power_of_two();
        Removals {
            generation: AtomicU64::new(0),
            keys: (0..n)
                .map(|_| [AtomicU64::new(0), AtomicU64::new(0)])
                .collect(),
            mask: n - 1,
            all: AtomicU64::new(0),
            prefixes: Mutex::new(Vec::new()),
            any_prefix: AtomicU64::new(0),
        }
    }

    /// The generation a write is stamped with.
    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(RELAXED) & 0x7fff_ffff
    }

    fn next(&self) -> u64 {
        (self.generation.fetch_add(1, RELAXED) + 1) & 0x7fff_ffff
    }

    /// A key was removed.
    pub(crate) fn key(&self, hash: u64) {
        let g = self.next();
        let s = &self.keys[(hash as usize) & self.mask];
        s[1].store(g, RELAXED);
        s[0].store(hash, Ordering::Release);
    }

    /// Keys under a prefix were removed.
    pub(crate) fn prefix(&self, prefix: &str) {
        let g = self.next();
        let mut p = self.prefixes.lock();
        if p.len() == PREFIXES {
            p.remove(0);
        }
        p.push((g, prefix.to_owned()));
        self.any_prefix.store(g, RELAXED);
    }

    /// Removals that cannot be matched to keys (a tag, everything).
    pub(crate) fn everything(&self) {
        let g = self.next();
        self.all.store(g, RELAXED);
    }

    /// Whether the key, written at `written` (or never remembered: `None`), was removed since.
    #[inline]
    pub(crate) fn removed_since(&self, key: &Key, hash: u64, written: Option<u64>) -> bool {
        // Nothing removed since the write (or ever): no table to look into.
        if self.generation() <= written.unwrap_or(0) {
            return false;
        }
        let since = written.unwrap_or(0);
        let s = &self.keys[(hash as usize) & self.mask];
        if s[0].load(Ordering::Acquire) == hash && s[1].load(RELAXED) > since {
            return true;
        }
        // Broad removals count only for keys the ghost remembers writing before them.
        let Some(w) = written else { return false };
        if self.all.load(RELAXED) > w {
            return true;
        }
        self.any_prefix.load(RELAXED) > w
            && self
                .prefixes
                .lock()
                .iter()
                .any(|(g, p)| *g > w && key.as_str().starts_with(p.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_until_a_colliding_key_takes_the_slot() {
        let g = Ghost::new(64);
        g.stored(5, Timestamp(100), 10, 0);
        assert_eq!(g.recall(5).map(|r| r.size), Some(10));
        assert!(g.mark_evicted(5));
        assert!(!g.mark_evicted(5));
        g.stored(5, Timestamp(200), 12, 1);
        let r = g.recall(5).unwrap();
        assert_eq!(
            (r.expires_at, r.generation, r.evicted_seen),
            (Timestamp(200), 1, true)
        );
        g.stored(5 + 64, Timestamp(1), 1, 0);
        assert_eq!(g.recall(5), None);
    }

    #[test]
    fn removals_after_the_write_only() {
        let r = Removals::new(256);
        let k = Key::new("ns:v1:a").unwrap();
        let h = key_hash(&k);
        let w = r.generation();
        assert!(!r.removed_since(&k, h, Some(w)));
        r.prefix("ns:v1:");
        assert!(r.removed_since(&k, h, Some(w)));
        assert!(!r.removed_since(&k, h, Some(r.generation())));
        assert!(!r.removed_since(&k, h, None));
        r.key(h);
        assert!(r.removed_since(&k, h, None));
    }
}

//! The ghost record of one tier: a bounded table of the key hashes written there recently,
//! with each copy's expiry and size, and the shared record of removals — what a miss is
//! classified by (evicted, expired, invalidated, never seen).
//!
//! Bound: a fixed number of slots per tier (16 bytes each: 1 MiB for the default 65 536),
//! direct-mapped by the key's hash. A key whose slot was taken by another key since it was
//! written is *forgotten*: its miss counts as never seen. A slot is two words, small so that
//! the table stays in the CPU caches as much as it can (a miss looks into it on the request
//! path): a 32-bit fingerprint of the hash with the removal generation and the "evicted" bit,
//! and the expiry (milliseconds, 42 bits: until the year 2109) with the size (in 16-byte
//! units, up to 64 MiB). Lock-free: a reader racing a writer of a colliding key can
//! misclassify that one miss, nothing worse.

use std::sync::atomic::{AtomicU64, Ordering};

use layercake_core::{Key, Timestamp};
use parking_lot::Mutex;

/// The hash the ghost records keep of a key (never 0: 0 marks an empty slot).
#[inline]
pub(crate) fn key_hash(key: &Key) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key.as_bytes()) | 1
}

const RELAXED: Ordering = Ordering::Relaxed;
/// The "was missed as evicted" bit of a slot's first word (sticky across rewrites).
const EVICTED_SEEN: u64 = 1;
/// Bits of the size field (in [`SIZE_UNIT`]-byte units) of a slot's second word.
const SIZE_BITS: u32 = 22;
/// The size unit, in bytes.
const SIZE_UNIT: u64 = 16;
/// The largest expiry a slot holds (ms); later ones are kept as this (far beyond any miss).
const MAX_EXPIRY: u64 = (1 << (64 - SIZE_BITS)) - 1;

/// What the ghost remembers of a key written to a tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Remembered {
    /// When the copy stopped being fresh (ms).
    pub(crate) expires_at: Timestamp,
    /// The removal generation when it was written.
    pub(crate) generation: u64,
    /// Its encoded size (key and value bytes), rounded up to 16 bytes.
    pub(crate) size: u64,
    /// Whether a miss of this key was already classified as an eviction.
    pub(crate) evicted_seen: bool,
}

/// The 32-bit fingerprint of a hash, in the high half of a slot's first word (never 0).
#[inline]
fn fingerprint(hash: u64) -> u64 {
    (((hash >> 32) ^ (hash & 0xffff_ffff)) | 1) << 32
}

/// One tier's ghost table.
#[derive(Debug)]
pub(crate) struct Ghost {
    /// `[fingerprint << 32 | generation << 1 | EVICTED_SEEN, expiry ms << 22 | size units]`
    /// per slot; a first word of 0 is an empty slot.
    slots: Box<[[AtomicU64; 2]]>,
    mask: usize,
}

impl Ghost {
    /// A table of `slots` slots (rounded up to a power of two, at least 64).
    pub(crate) fn new(slots: usize) -> Ghost {
        let n = slots.max(64).next_power_of_two();
        Ghost {
            slots: (0..n)
                .map(|_| [AtomicU64::new(0), AtomicU64::new(0)])
                .collect(),
            mask: n - 1,
        }
    }

    #[inline]
    fn slot(&self, hash: u64) -> &[AtomicU64; 2] {
        &self.slots[(hash as usize) & self.mask]
    }

    /// Remember that the key was written with this expiry and size.
    #[inline]
    pub(crate) fn stored(&self, hash: u64, expires_at: Timestamp, size: usize, generation: u64) {
        let s = self.slot(hash);
        let fp = fingerprint(hash);
        let old = s[0].load(RELAXED);
        let same = old & !0xffff_ffff == fp;
        let sticky = if same { old & EVICTED_SEEN } else { 0 };
        let units = (size as u64).div_ceil(SIZE_UNIT).min((1 << SIZE_BITS) - 1);
        let second = (expires_at.0.min(MAX_EXPIRY) << SIZE_BITS) | units;
        if !same {
            s[0].store(0, RELAXED);
        }
        s[1].store(second, RELAXED);
        s[0].store(
            fp | ((generation & 0x7fff_ffff) << 1) | sticky,
            Ordering::Release,
        );
    }

    /// What the table remembers of the key, if its slot still holds it.
    #[inline]
    pub(crate) fn recall(&self, hash: u64) -> Option<Remembered> {
        let s = self.slot(hash);
        let fp = fingerprint(hash);
        let first = s[0].load(Ordering::Acquire);
        if first & !0xffff_ffff != fp {
            return None;
        }
        let second = s[1].load(RELAXED);
        (s[0].load(RELAXED) == first).then_some(Remembered {
            expires_at: Timestamp(second >> SIZE_BITS),
            generation: (first >> 1) & 0x7fff_ffff,
            size: (second & ((1 << SIZE_BITS) - 1)) * SIZE_UNIT,
            evicted_seen: first & EVICTED_SEEN != 0,
        })
    }

    /// Mark the key as missed for an eviction; `true` the first time since it was first
    /// remembered (so each evicted key's size is counted once).
    pub(crate) fn mark_evicted(&self, hash: u64) -> bool {
        let s = self.slot(hash);
        s[0].load(RELAXED) & !0xffff_ffff == fingerprint(hash)
            && s[0].fetch_or(EVICTED_SEEN, RELAXED) & EVICTED_SEEN == 0
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
        assert_eq!(
            g.recall(5).map(|r| r.size),
            Some(16),
            "rounded up to 16 bytes"
        );
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
        // An expiry beyond the field stays in the far future; a size beyond it saturates.
        g.stored(7, Timestamp(u64::MAX), 1 << 30, 3);
        let r = g.recall(7).unwrap();
        assert_eq!(r.expires_at, Timestamp(MAX_EXPIRY));
        assert!(
            r.expires_at > Timestamp(4_000_000_000_000),
            "after the year 2096"
        );
        assert_eq!(r.size, ((1 << SIZE_BITS) - 1) * SIZE_UNIT);
        assert_eq!(r.generation, 3);
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

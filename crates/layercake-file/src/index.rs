//! The in-memory index: what this process knows about the files of the directory.
//!
//! It serves the byte bound (sizes and least-recently-used order) and invalidation (key text
//! for prefixes, tags). It is advisory: `get` always reads the file, so an index that is stale
//! with respect to another process's writes never returns wrong data.
//!
//! A hit only marks its record as used ([`Index::touch`], through a shared reference: one
//! atomic store, under the store's read lock, so concurrent hits do not wait for each other).
//! The least-recently-used order catches up when it is needed: [`Index::victims`] moves a
//! record used since it was placed to its place in the order before it would evict it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use layercake_core::{Selector, Timestamp, TombstoneLog};

use crate::layout::Hash;

/// What the index records about one entry file.
#[derive(Debug)]
pub(crate) struct Meta {
    /// The key text (for prefix invalidation).
    pub(crate) key: Arc<str>,
    /// The entry's tags.
    pub(crate) tags: Arc<[String]>,
    /// File length in bytes.
    pub(crate) size: u64,
    /// When the entry stops being returnable.
    pub(crate) retain_until: Timestamp,
    /// Inode of the file this record describes (0 when unknown).
    pub(crate) ino: u64,
    /// Its key in the LRU order (nanoseconds since the epoch, unique).
    stamp: u64,
    /// When it was last used (nanoseconds since the epoch); later than `stamp` when a hit
    /// used it since it was placed in the order.
    used: AtomicU64,
    /// Insertion sequence number: a new record always has a higher one.
    pub(crate) seq: u64,
}

/// A record to insert.
#[derive(Debug, Clone)]
pub(crate) struct NewMeta {
    pub(crate) key: Arc<str>,
    pub(crate) tags: Arc<[String]>,
    pub(crate) size: u64,
    pub(crate) retain_until: Timestamp,
    pub(crate) ino: u64,
}

/// The index proper. Callers hold it under a mutex for short, I/O-free critical sections.
#[derive(Debug, Default)]
pub(crate) struct Index {
    entries: HashMap<Hash, Meta>,
    lru: BTreeMap<u64, Hash>,
    by_key: BTreeMap<Arc<str>, Hash>,
    by_tag: HashMap<String, HashSet<Hash>>,
    bytes: u64,
    last_stamp: u64,
    seq: u64,
    /// Tombstones left by `delete_with` / `invalidate_with` (this process's only).
    pub(crate) tombstones: TombstoneLog,
}

/// A time for [`Meta::used`]: now, in nanoseconds since the epoch.
fn use_stamp() -> u64 {
    now_nanos()
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos().min(u64::MAX as u128) as u64)
        .unwrap_or(0)
}

impl Index {
    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Sum of file sizes.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The highest sequence number handed out so far.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// The record of `h`.
    pub(crate) fn get(&self, h: &Hash) -> Option<&Meta> {
        self.entries.get(h)
    }

    fn fresh_stamp(&mut self) -> u64 {
        let s = now_nanos().max(self.last_stamp.saturating_add(1));
        self.last_stamp = s;
        s
    }

    fn free_stamp(&self, mut s: u64) -> u64 {
        while self.lru.contains_key(&s) {
            s = s.wrapping_add(1);
        }
        s
    }

    /// Insert or replace the record of `h`, as used now (or at `used_at_nanos`, e.g. a file's
    /// mtime when the index is rebuilt). Returns the record's sequence number.
    pub(crate) fn insert(&mut self, h: Hash, m: NewMeta, used_at_nanos: Option<u64>) -> u64 {
        self.remove(&h);
        let stamp = match used_at_nanos {
            Some(t) => self.free_stamp(t),
            None => self.fresh_stamp(),
        };
        self.seq += 1;
        let seq = self.seq;
        self.lru.insert(stamp, h);
        self.by_key.insert(m.key.clone(), h);
        for t in m.tags.iter() {
            self.by_tag.entry(t.clone()).or_default().insert(h);
        }
        self.bytes += m.size;
        self.entries.insert(
            h,
            Meta {
                key: m.key,
                tags: m.tags,
                size: m.size,
                retain_until: m.retain_until,
                ino: m.ino,
                stamp,
                used: AtomicU64::new(stamp),
                seq,
            },
        );
        seq
    }

    /// Remove the record of `h`.
    pub(crate) fn remove(&mut self, h: &Hash) -> Option<Meta> {
        let m = self.entries.remove(h)?;
        self.lru.remove(&m.stamp);
        self.by_key.remove(&m.key);
        for t in m.tags.iter() {
            if let Some(set) = self.by_tag.get_mut(t) {
                set.remove(h);
                if set.is_empty() {
                    self.by_tag.remove(t);
                }
            }
        }
        self.bytes -= m.size;
        Some(m)
    }

    /// Remove the record of `h` only if it still describes inode `ino`.
    pub(crate) fn remove_if_ino(&mut self, h: &Hash, ino: u64) -> bool {
        if self.entries.get(h).is_some_and(|m| m.ino == ino) {
            self.remove(h);
            true
        } else {
            false
        }
    }

    /// Mark `h` as used now (through a shared reference: the order catches up in
    /// [`victims`](Index::victims)).
    pub(crate) fn touch(&self, h: &Hash) {
        if let Some(m) = self.entries.get(h) {
            m.used
                .fetch_max(use_stamp().max(m.stamp + 1), Ordering::Relaxed);
        }
    }

    /// Record that a read found file `m` for `h`: touch the record when it already describes
    /// that file; otherwise (re)insert it, unless a write of this process replaced the record
    /// since `seq_before` (the record's sequence number, or 0, sampled before the read).
    pub(crate) fn observe(&mut self, h: Hash, m: NewMeta, seq_before: u64) {
        match self.entries.get(&h) {
            Some(cur) if cur.ino == m.ino && cur.ino != 0 => self.touch(&h),
            Some(cur) if cur.seq != seq_before => {}
            // The record existed before the read and was removed since (a delete raced).
            None if seq_before != 0 => {}
            _ => {
                self.insert(h, m, None);
            }
        }
    }

    /// Entries to evict, oldest use first, so that the remaining bytes are at most `max_bytes`.
    ///
    /// Walks the order from its oldest record; a record used since it was placed is moved to
    /// its place first (each at most once per call: once moved, its stamp is its last use), so
    /// the victims are the least recently used, as if every hit had moved its record.
    pub(crate) fn victims(&mut self, max_bytes: u64) -> Vec<(Hash, u64)> {
        let mut over = self.bytes.saturating_sub(max_bytes);
        let mut out = Vec::new();
        let mut after: Option<u64> = None;
        while over > 0 {
            let next = match after {
                None => self.lru.first_key_value(),
                Some(a) => self
                    .lru
                    .range((Bound::Excluded(a), Bound::Unbounded))
                    .next(),
            };
            let Some((&stamp, &h)) = next else { break };
            after = Some(stamp);
            let Some(m) = self.entries.get(&h) else {
                continue;
            };
            let used = m.used.load(Ordering::Relaxed);
            if used > stamp {
                self.lru.remove(&stamp);
                let moved = self.free_stamp(used);
                self.lru.insert(moved, h);
                if let Some(m) = self.entries.get_mut(&h) {
                    m.stamp = moved;
                    *m.used.get_mut() = moved;
                }
                continue;
            }
            over = over.saturating_sub(m.size);
            out.push((h, m.ino));
        }
        out
    }

    /// Up to `limit` keys starting with `prefix` that are retained at `now`.
    pub(crate) fn keys_with_prefix(
        &self,
        prefix: &str,
        now: Timestamp,
        limit: usize,
    ) -> Vec<Arc<str>> {
        self.by_key
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(_, h)| self.entries.get(*h).is_some_and(|m| m.retain_until > now))
            .map(|(k, _)| k.clone())
            .take(limit)
            .collect()
    }

    /// Entries the selector matches.
    pub(crate) fn select(&self, selector: &Selector) -> Vec<Hash> {
        match selector {
            Selector::Prefix(p) => self
                .by_key
                .range::<str, _>((
                    std::ops::Bound::Included(p.as_str()),
                    std::ops::Bound::Unbounded,
                ))
                .take_while(|(k, _)| k.starts_with(p.as_str()))
                .map(|(_, h)| *h)
                .collect(),
            Selector::Tag(t) => self
                .by_tag
                .get(t)
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default(),
            _ => self
                .entries
                .iter()
                .filter(|(_, m)| selector.matches(&m.key, &m.tags))
                .map(|(h, _)| *h)
                .collect(),
        }
    }

    /// Forget records of files a directory scan did not see, except records inserted after the
    /// scan started (`seq > start_seq`). Returns how many were dropped.
    pub(crate) fn retain_seen(&mut self, seen: &HashSet<Hash>, start_seq: u64) -> usize {
        let gone: Vec<Hash> = self
            .entries
            .iter()
            .filter(|(h, m)| m.seq <= start_seq && !seen.contains(*h))
            .map(|(h, _)| *h)
            .collect();
        for h in &gone {
            self.remove(h);
        }
        gone.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(key: &str, size: u64, tags: &[&str]) -> NewMeta {
        NewMeta {
            key: Arc::from(key),
            tags: tags
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .into(),
            size,
            retain_until: Timestamp(10),
            ino: size,
        }
    }

    fn h(n: u8) -> Hash {
        [n; 32]
    }

    #[test]
    fn lru_victims_are_the_oldest_used() {
        let mut ix = Index::default();
        for i in 1..=4u8 {
            ix.insert(h(i), meta(&format!("k{i}"), 100, &[]), None);
        }
        assert_eq!(ix.bytes(), 400);
        ix.touch(&h(1));
        let v: Vec<Hash> = ix.victims(250).into_iter().map(|(h, _)| h).collect();
        assert_eq!(v, vec![h(2), h(3)]);
        assert!(ix.victims(400).is_empty());
    }

    #[test]
    fn a_touch_is_caught_up_by_eviction_as_if_it_had_moved_the_record() {
        let mut ix = Index::default();
        for i in 1..=5u8 {
            ix.insert(h(i), meta(&format!("k{i}"), 100, &[]), None);
        }
        // Used in the order 3, 1 (so 2, 4, 5 are the least recently used, in that order).
        ix.touch(&h(3));
        ix.touch(&h(1));
        let order = |ix: &mut Index, keep| -> Vec<Hash> {
            ix.victims(keep).into_iter().map(|(h, _)| h).collect()
        };
        assert_eq!(order(&mut ix, 0), vec![h(2), h(4), h(5), h(3), h(1)]);
        // The order was caught up once; asking again gives the same answer.
        assert_eq!(order(&mut ix, 0), vec![h(2), h(4), h(5), h(3), h(1)]);
        assert_eq!(order(&mut ix, 300), vec![h(2), h(4)]);
        // A record removed and inserted again is placed as new.
        ix.remove(&h(2));
        ix.insert(h(2), meta("k2", 100, &[]), None);
        ix.touch(&h(4));
        assert_eq!(order(&mut ix, 0), vec![h(5), h(3), h(1), h(2), h(4)]);
        assert_eq!(ix.bytes(), 500);
    }

    #[test]
    fn select_by_prefix_and_tag() {
        let mut ix = Index::default();
        ix.insert(h(1), meta("a*b", 1, &["x"]), None);
        ix.insert(h(2), meta("a*c", 2, &["y"]), None);
        ix.insert(h(3), meta("ab", 3, &["x", "y"]), None);
        let mut p = ix.select(&Selector::Prefix("a*".into()));
        p.sort();
        assert_eq!(p, vec![h(1), h(2)]);
        let mut t = ix.select(&Selector::Tag("x".into()));
        t.sort();
        assert_eq!(t, vec![h(1), h(3)]);
        ix.remove(&h(3));
        assert_eq!(ix.select(&Selector::Tag("x".into())), vec![h(1)]);
        assert_eq!(ix.bytes(), 3);
        let seen: HashSet<Hash> = [h(1)].into_iter().collect();
        assert_eq!(ix.retain_seen(&seen, ix.seq()), 1);
        assert_eq!(ix.len(), 1);
    }

    #[test]
    fn observe_respects_newer_writes() {
        let mut ix = Index::default();
        let before = 0;
        let s = ix.insert(h(1), meta("k", 5, &[]), None);
        // A read that started before the write must not overwrite it with the old file.
        let mut old = meta("k", 9, &[]);
        old.ino = 9;
        ix.observe(h(1), old.clone(), before);
        assert_eq!(ix.get(&h(1)).unwrap().size, 5);
        // A read that started after it may.
        ix.observe(h(1), old, s);
        assert_eq!(ix.get(&h(1)).unwrap().size, 9);
    }
}

//! Per-key write epochs: they keep a read's promotion or a load's fill from putting an older
//! value into the in-process tier after a newer write, delete or invalidation.
//!
//! Every authoritative change of a key (a `set`, a `delete`, a backplane message) bumps the
//! key's epoch and writes the in-process tier while holding the key's stripe lock; a selector
//! change (prefix, tag, clear) bumps the global epoch and waits for every stripe (a barrier).
//! A read records the epochs before its first tier read, and its promotion writes the
//! in-process tier only if, under the same stripe lock, nothing changed since. Each stripe also
//! counts the promotions it let through, so that a `set` can tell, once its slower tiers hold
//! the new value, whether a read may have promoted the old one meanwhile (see
//! [`Epochs::change_if_filled_since`]).

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};

use layercake_core::Key;
use parking_lot::Mutex;

const STRIPES: usize = 256;

/// What a read saw before it started: its key's stripe epoch and the global epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Snapshot(u64, u64);

/// One stripe's state: the epoch of its keys and the promotions ([`Epochs::fill_if_unchanged`])
/// it let through.
#[derive(Debug, Default)]
struct Stripe {
    epoch: u64,
    fills: u64,
}

/// A stripe's promotion count, taken before a write ([`Epochs::fills_mark`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FillsMark(u64);

/// The epochs of one cache.
#[derive(Debug)]
pub(crate) struct Epochs {
    stripes: Box<[Mutex<Stripe>]>,
    /// Order a key's fills of shared tiers (exclusive, held across the fill's write and its
    /// re-check) against authoritative writes of the key (shared, held across their fan-out)
    /// and the undo of fills (exclusive): a fill never lands in the middle of a write.
    fill_locks: Box<[tokio::sync::RwLock<()>]>,
    global: AtomicU64,
    hasher: RandomState,
}

impl Epochs {
    pub(crate) fn new() -> Epochs {
        Epochs {
            stripes: (0..STRIPES)
                .map(|_| Mutex::new(Stripe::default()))
                .collect(),
            fill_locks: (0..STRIPES).map(|_| tokio::sync::RwLock::new(())).collect(),
            global: AtomicU64::new(0),
            hasher: RandomState::new(),
        }
    }

    fn index(&self, key: &Key) -> usize {
        self.hasher.hash_one(key.as_str()) as usize % STRIPES
    }

    fn stripe(&self, key: &Key) -> &Mutex<Stripe> {
        &self.stripes[self.index(key)]
    }

    /// The lock that orders a key's shared-tier fills against its writes and undos.
    pub(crate) fn fill_lock(&self, key: &Key) -> &tokio::sync::RwLock<()> {
        &self.fill_locks[self.index(key)]
    }

    /// The epochs now, before a read.
    pub(crate) fn snapshot(&self, key: &Key) -> Snapshot {
        let s = self.stripe(key).lock().epoch;
        Snapshot(s, self.global.load(Ordering::Acquire))
    }

    /// An authoritative change of `key`: bump its epoch and run `write` (the in-process part
    /// of the change) under its stripe lock.
    pub(crate) fn change<R>(&self, key: &Key, write: impl FnOnce() -> R) -> R {
        let mut s = self.stripe(key).lock();
        s.epoch += 1;
        write()
    }

    /// The promotions `key`'s stripe has let through so far, for
    /// [`change_if_filled_since`](Self::change_if_filled_since).
    pub(crate) fn fills_mark(&self, key: &Key) -> FillsMark {
        FillsMark(self.stripe(key).lock().fills)
    }

    /// [`change`](Self::change) that runs `write` only when the key's stripe let a promotion
    /// through since `mark`: the epoch is bumped either way (a promotion that read before now
    /// is refused from here on), and the in-process tier is written again only when one may
    /// have put an older value there. A promotion of another key of the stripe also counts:
    /// the write is then done for nothing, never skipped when it was needed.
    pub(crate) fn change_if_filled_since<R>(
        &self,
        key: &Key,
        mark: FillsMark,
        write: impl FnOnce() -> R,
    ) -> Option<R> {
        let mut s = self.stripe(key).lock();
        s.epoch += 1;
        (s.fills != mark.0).then(write)
    }

    /// A change of many keys: bump the global epoch, then wait until no promotion that
    /// checked the old epoch is still writing.
    pub(crate) fn change_all(&self) {
        self.global.fetch_add(1, Ordering::AcqRel);
        for s in self.stripes.iter() {
            drop(s.lock());
        }
    }

    /// Run `fill` under the key's stripe lock if nothing changed since `snap`; `None` when
    /// something did (the fill is dropped).
    pub(crate) fn fill_if_unchanged<R>(
        &self,
        key: &Key,
        snap: Snapshot,
        fill: impl FnOnce() -> R,
    ) -> Option<R> {
        let mut s = self.stripe(key).lock();
        if Snapshot(s.epoch, self.global.load(Ordering::Acquire)) != snap {
            return None;
        }
        s.fills = s.fills.wrapping_add(1);
        Some(fill())
    }

    /// Whether something changed since `snap` (a hint, for tiers written outside the lock).
    pub(crate) fn changed_since(&self, key: &Key, snap: Snapshot) -> bool {
        self.snapshot(key) != snap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_run_only_when_nothing_changed() {
        let e = Epochs::new();
        let k = Key::new("k").unwrap();
        let other = Key::new("other-key").unwrap();
        let s = e.snapshot(&k);
        assert_eq!(e.fill_if_unchanged(&k, s, || 1), Some(1));
        e.change(&k, || ());
        assert_eq!(e.fill_if_unchanged(&k, s, || 1), None);
        let s = e.snapshot(&k);
        e.change_all();
        assert!(e.changed_since(&k, s));
        assert_eq!(e.fill_if_unchanged(&k, s, || 1), None);
        let s = e.snapshot(&other);
        assert_eq!(e.fill_if_unchanged(&other, s, || 2), Some(2));
    }

    #[test]
    fn a_write_is_repeated_only_after_a_promotion_and_refuses_later_ones() {
        let e = Epochs::new();
        let k = Key::new("k").unwrap();
        // No promotion since the mark: nothing to write again.
        let mark = e.fills_mark(&k);
        assert_eq!(e.change_if_filled_since(&k, mark, || 1), None);
        // A promotion that read before the write lands in between: written again.
        let mark = e.fills_mark(&k);
        let before = e.snapshot(&k);
        assert_eq!(e.fill_if_unchanged(&k, before, || ()), Some(()));
        assert_eq!(e.change_if_filled_since(&k, mark, || 2), Some(2));
        // Either way the epoch moved: a promotion that read before it is refused.
        let s = e.snapshot(&k);
        let mark = e.fills_mark(&k);
        assert_eq!(e.change_if_filled_since(&k, mark, || 3), None);
        assert_eq!(e.fill_if_unchanged(&k, s, || ()), None);
        // A refused promotion does not count.
        assert_eq!(e.change_if_filled_since(&k, mark, || 4), None);
    }
}

/// Fills this instance wrote into tiers other instances read (shared or host tiers), kept for
/// a short window: when a change of the key reaches this instance (a backplane message) after
/// such a fill landed, the fill may have overwritten the change, so the copy is deleted.
#[derive(Debug, Default)]
pub(crate) struct RecentFills {
    map: Mutex<std::collections::HashMap<Key, (std::time::Instant, u64)>>,
}

/// How long a shared fill stays suspect: longer than a backplane message normally takes.
pub(crate) const RECENT_FILL_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);
const RECENT_FILLS_MAX: usize = 8192;

impl RecentFills {
    /// Remember that `key` was filled into the tiers of the `tiers` bit mask.
    pub(crate) fn record(&self, key: &Key, tiers: u64) {
        let now = std::time::Instant::now();
        let mut map = self.map.lock();
        if map.len() >= RECENT_FILLS_MAX {
            map.retain(|_, (t, _)| now.duration_since(*t) < RECENT_FILL_WINDOW);
            if map.len() >= RECENT_FILLS_MAX {
                map.clear();
            }
        }
        let e = map.entry(key.clone()).or_insert((now, 0));
        *e = (now, e.1 | tiers);
    }

    /// The suspect fills of `key` (tier bit mask), forgotten once taken.
    pub(crate) fn take(&self, key: &Key) -> Option<u64> {
        let (t, tiers) = self.map.lock().remove(key)?;
        (t.elapsed() < RECENT_FILL_WINDOW).then_some(tiers)
    }

    /// The suspect fills of every key matching `filter`.
    pub(crate) fn take_matching(&self, filter: impl Fn(&Key) -> bool) -> Vec<(Key, u64)> {
        let mut map = self.map.lock();
        let keys: Vec<Key> = map.keys().filter(|k| filter(k)).cloned().collect();
        keys.into_iter()
            .filter_map(|k| {
                let (t, tiers) = map.remove(&k)?;
                (t.elapsed() < RECENT_FILL_WINDOW).then_some((k, tiers))
            })
            .collect()
    }
}

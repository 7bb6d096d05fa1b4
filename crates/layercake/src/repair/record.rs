//! [`RepairRecord`]: the repair record of one tier — which keys and selections a write or
//! removal did not reach.
//!
//! When a `set` fails on a tier with a temporary error while another tier took the value, or a
//! `delete`, invalidation or `clear` fails on a tier, the tier may still hold an older copy.
//! The composer notes the key (the selection, or the whole tier) here; until the note is
//! repaired:
//!
//! - reads of that tier skip a noted key, a key under a noted prefix and an entry carrying a
//!   noted tag (as if the tier missed), and promotions do not write the key into the tier;
//! - the repair task removes the older copies once the tier answers again, and only then
//!   drops the note (unless the note was made again meanwhile).
//!
//! Notes are deduplicated per key (the newest wins; a prefix covers the keys and narrower
//! prefixes under it). The record is bounded: a note that does not fit either turns the
//! record into one note for the whole tier ([`Overflow::ClearTier`]) or is refused
//! ([`Overflow::RefuseWrites`], the caller's write then fails). No note is ever dropped
//! without its repair.
//!
//! A note made after a *timeout* is uncertain: the tier may still apply the write later. A
//! later successful write of the key does not resolve an uncertain note (the late write could
//! land after it); only the repair does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use layercake_core::{Key, Selector};
use parking_lot::Mutex;

use super::config::{Overflow, RepairConfig};

/// One pending repair. The version is the tombstone the removal leaves: fills of entries at
/// or below it are refused for a while, so a fill of an older copy that lands after the
/// repair cannot put it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Repair {
    /// Remove this key's copy.
    Key(Key, u64),
    /// Remove the entries this selector matches.
    Select(Selector, u64),
    /// Remove everything the tier holds (a failed `clear`, or an overflowed record).
    Everything,
}

/// When a note was made, its serial (a note made again after a repair began is newer than
/// the repair and survives it), whether the failed call may still land, and the version of
/// the tombstone its repair leaves (the highest of the calls noted).
#[derive(Debug, Clone, Copy)]
struct Note {
    since: Instant,
    serial: u64,
    uncertain: bool,
    version: u64,
}

#[derive(Debug, Default)]
struct State {
    keys: HashMap<Key, Note>,
    selectors: Vec<(Selector, Note)>,
    everything: Option<Note>,
    serial: u64,
}

impl State {
    fn next(&mut self, uncertain: bool, version: u64) -> Note {
        self.serial += 1;
        Note {
            since: Instant::now(),
            serial: self.serial,
            uncertain,
            version,
        }
    }

    fn len(&self) -> usize {
        self.keys.len() + self.selectors.len() + usize::from(self.everything.is_some())
    }

    /// Replace every note by one for the whole tier, keeping the oldest note's age.
    fn everything(&mut self) {
        let since = self
            .keys
            .values()
            .chain(self.selectors.iter().map(|(_, n)| n))
            .chain(self.everything.iter())
            .map(|n| n.since)
            .min();
        let mut n = self.next(false, 0);
        if let Some(s) = since {
            n.since = s;
        }
        self.keys.clear();
        self.selectors.clear();
        self.everything = Some(n);
    }
}

/// What noting did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Noted {
    /// The note is recorded (or an equal one already was, and is now the newest).
    Recorded,
    /// The record was full: the whole tier is now noted (or already was).
    Overflowed,
    /// The record is full and refuses: nothing noted, the call must fail.
    Refused,
}

/// Counters of one record since start.
#[derive(Debug, Default)]
pub(crate) struct RepairCounters {
    /// Notes made (including those merged into an existing one).
    pub(crate) noted: AtomicU64,
    /// Repairs applied (each key, selection or whole-tier repair once).
    pub(crate) applied: AtomicU64,
    /// Repair attempts that failed (the tier did not answer yet).
    pub(crate) failed: AtomicU64,
    /// Times the record overflowed into a whole-tier note.
    pub(crate) overflowed: AtomicU64,
    /// Notes refused because the record was full ([`Overflow::RefuseWrites`]).
    pub(crate) refused: AtomicU64,
    /// Notes made obsolete by a later successful write or removal on the tier.
    pub(crate) resolved: AtomicU64,
}

/// The repair record of one tier.
#[derive(Debug)]
pub(crate) struct RepairRecord {
    state: Mutex<State>,
    /// Notes pending, kept outside the lock: the read path checks it with one load.
    pending: AtomicUsize,
    max_pending: usize,
    overflow: Overflow,
    pub(crate) counters: RepairCounters,
}

impl RepairRecord {
    pub(crate) fn new(config: &RepairConfig) -> RepairRecord {
        RepairRecord {
            state: Mutex::new(State::default()),
            pending: AtomicUsize::new(0),
            max_pending: config.max_pending(),
            overflow: config.overflow(),
            counters: RepairCounters::default(),
        }
    }

    fn publish_len(&self, s: &State) {
        self.pending.store(s.len(), Ordering::Release);
    }

    /// Whether nothing is pending (one atomic load: the read path's check).
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.pending.load(Ordering::Acquire) == 0
    }

    /// Notes pending.
    pub(crate) fn len(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Age of the oldest pending note.
    pub(crate) fn oldest(&self) -> Option<Duration> {
        if self.is_empty() {
            return None;
        }
        let s = self.state.lock();
        s.keys
            .values()
            .chain(s.selectors.iter().map(|(_, n)| n))
            .chain(s.everything.iter())
            .map(|n| n.since.elapsed())
            .max()
    }

    /// Whether a whole-tier note is pending.
    pub(crate) fn everything_pending(&self) -> bool {
        !self.is_empty() && self.state.lock().everything.is_some()
    }

    /// Make room for one more note (not already present): `None` when there is room or the
    /// record overflowed into a whole-tier note; `Some(Refused)` when it refuses.
    fn room(&self, s: &mut State) -> Option<Noted> {
        if s.len() < self.max_pending {
            return None;
        }
        match self.overflow {
            Overflow::RefuseWrites => {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                Some(Noted::Refused)
            }
            Overflow::ClearTier => {
                s.everything();
                self.counters.overflowed.fetch_add(1, Ordering::Relaxed);
                self.publish_len(s);
                Some(Noted::Overflowed)
            }
        }
    }

    /// Note that a write or removal of `key` did not reach the tier; `uncertain` when it
    /// may still land (it was sent); `version`: the tombstone its repair leaves.
    pub(crate) fn note_key(&self, key: &Key, uncertain: bool, version: u64) -> Noted {
        let mut s = self.state.lock();
        self.counters.noted.fetch_add(1, Ordering::Relaxed);
        if s.everything.is_some() {
            return Noted::Overflowed;
        }
        let (was_uncertain, was_version) = match s.keys.get(key) {
            Some(n) => (n.uncertain, n.version),
            None => {
                if let Some(r) = self.room(&mut s) {
                    return r;
                }
                (false, 0)
            }
        };
        let n = s.next(uncertain || was_uncertain, version.max(was_version));
        s.keys.insert(key.clone(), n);
        self.publish_len(&s);
        Noted::Recorded
    }

    /// Note that an invalidation did not reach the tier; `version`: the tombstone its repair
    /// leaves.
    pub(crate) fn note_selector(&self, selector: &Selector, version: u64) -> Noted {
        let mut s = self.state.lock();
        self.counters.noted.fetch_add(1, Ordering::Relaxed);
        if s.everything.is_some() {
            return Noted::Overflowed;
        }
        // A prefix note covers the keys and narrower prefixes under it: their repair is this
        // one (its serial is newer than theirs, its tombstone at least as high).
        let mut version = version;
        if let Selector::Prefix(p) = selector {
            let under = |k: &str| k.starts_with(p.as_str());
            for (_, n) in s.keys.iter().filter(|(k, _)| under(k.as_str())) {
                version = version.max(n.version);
            }
            s.keys.retain(|k, _| !under(k.as_str()));
            let narrower =
                |x: &Selector| x != selector && matches!(x, Selector::Prefix(q) if under(q));
            for (_, n) in s.selectors.iter().filter(|(x, _)| narrower(x)) {
                version = version.max(n.version);
            }
            s.selectors.retain(|(x, _)| !narrower(x));
        }
        let present = s
            .selectors
            .iter()
            .find(|(x, _)| x == selector)
            .map(|(_, n)| n.version);
        if present.is_none()
            && let Some(r) = self.room(&mut s)
        {
            return r;
        }
        let n = s.next(false, version.max(present.unwrap_or(0)));
        match s.selectors.iter_mut().find(|(x, _)| x == selector) {
            Some(slot) => slot.1 = n,
            None => s.selectors.push((selector.clone(), n)),
        }
        self.publish_len(&s);
        Noted::Recorded
    }

    /// Note that a `clear` did not reach the tier: everything must go.
    pub(crate) fn note_everything(&self) {
        let mut s = self.state.lock();
        self.counters.noted.fetch_add(1, Ordering::Relaxed);
        s.everything();
        self.publish_len(&s);
    }

    /// Whether a read of `key` from this tier must be skipped: the whole tier, the key or a
    /// prefix covering it is noted.
    #[inline]
    pub(crate) fn skips_key(&self, key: &Key) -> bool {
        if self.is_empty() {
            return false;
        }
        let s = self.state.lock();
        s.everything.is_some()
            || s.keys.contains_key(key)
            || s.selectors.iter().any(|(sel, _)| {
                matches!(sel, Selector::Prefix(p) if key.as_str().starts_with(p.as_str()))
            })
    }

    /// Whether an entry read from this tier must be discarded: [`skips_key`](Self::skips_key),
    /// or a pending tag invalidation selects it.
    #[inline]
    pub(crate) fn skips_entry(&self, key: &Key, tags: &[String]) -> bool {
        if self.is_empty() {
            return false;
        }
        let s = self.state.lock();
        s.everything.is_some()
            || s.keys.contains_key(key)
            || s.selectors
                .iter()
                .any(|(sel, _)| sel.matches(key.as_str(), tags))
    }

    /// A later write or removal of `key` reached the tier: its note is obsolete, unless it is
    /// uncertain (the failed call may still land after this one).
    pub(crate) fn resolved_key(&self, key: &Key) {
        if self.is_empty() {
            return;
        }
        let mut s = self.state.lock();
        if s.keys.get(key).is_some_and(|n| !n.uncertain) {
            s.keys.remove(key);
            self.counters.resolved.fetch_add(1, Ordering::Relaxed);
            self.publish_len(&s);
        }
    }

    /// The serial of the newest note so far (to resolve, after a `clear` that began now,
    /// every note it covers).
    pub(crate) fn mark(&self) -> u64 {
        self.state.lock().serial
    }

    /// A `clear` that began at `mark` reached the tier: every certain note made before it is
    /// obsolete.
    pub(crate) fn resolved_upto(&self, mark: u64) {
        if self.is_empty() {
            return;
        }
        let mut s = self.state.lock();
        let before = s.len();
        let stale = |n: &Note| n.serial <= mark && !n.uncertain;
        s.keys.retain(|_, n| !stale(n));
        s.selectors.retain(|(_, n)| !stale(n));
        if s.everything.as_ref().is_some_and(stale) {
            s.everything = None;
        }
        let gone = before - s.len();
        if gone > 0 {
            self.counters
                .resolved
                .fetch_add(gone as u64, Ordering::Relaxed);
            self.publish_len(&s);
        }
    }

    /// Up to `limit` repairs to apply now, each with its note's serial: the whole tier alone
    /// when it is noted, else selections first, then keys.
    pub(crate) fn batch(&self, limit: usize) -> Vec<(Repair, u64)> {
        if self.is_empty() {
            return Vec::new();
        }
        let s = self.state.lock();
        if let Some(n) = s.everything {
            return vec![(Repair::Everything, n.serial)];
        }
        s.selectors
            .iter()
            .map(|(sel, n)| (Repair::Select(sel.clone(), n.version), n.serial))
            .chain(
                s.keys
                    .iter()
                    .map(|(k, n)| (Repair::Key(k.clone(), n.version), n.serial)),
            )
            .take(limit)
            .collect()
    }

    /// Repairs were applied: drop each note unless it was made again since (a newer serial).
    /// An applied whole-tier repair also drops every older note.
    pub(crate) fn applied(&self, done: &[(Repair, u64)]) {
        let mut s = self.state.lock();
        for (repair, serial) in done {
            let serial = *serial;
            match repair {
                Repair::Key(k, _) => {
                    if s.keys.get(k).is_some_and(|n| n.serial <= serial) {
                        s.keys.remove(k);
                    }
                }
                Repair::Select(sel, _) => {
                    s.selectors
                        .retain(|(x, n)| !(x == sel && n.serial <= serial));
                }
                Repair::Everything => {
                    if s.everything.is_some_and(|n| n.serial <= serial) {
                        s.everything = None;
                    }
                    s.keys.retain(|_, n| n.serial > serial);
                    s.selectors.retain(|(_, n)| n.serial > serial);
                }
            }
        }
        self.counters
            .applied
            .fetch_add(done.len() as u64, Ordering::Relaxed);
        self.publish_len(&s);
    }

    /// The record's figures for [`Stats`](crate::Stats).
    pub(crate) fn stats(&self) -> crate::stats::RepairStats {
        let c = &self.counters;
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        crate::stats::RepairStats {
            pending: self.len(),
            whole_tier: self.everything_pending(),
            oldest_pending: self.oldest(),
            noted: ld(&c.noted),
            applied: ld(&c.applied),
            failed: ld(&c.failed),
            resolved: ld(&c.resolved),
            overflowed: ld(&c.overflowed),
            refused: ld(&c.refused),
        }
    }

    /// A repair attempt failed (the tier still does not answer).
    pub(crate) fn attempt_failed(&self) {
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;

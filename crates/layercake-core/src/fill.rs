//! Conditional fills and tombstones: [`FillOutcome`], [`Tombstone`] and [`TombstoneLog`].
//!
//! A *fill* is a write that copies a value into a tier because it was missing there (a
//! promotion from a lower tier, or a loader's result written after the callers were served).
//! Unlike an authoritative `set`, a fill must never replace a newer entry, nor recreate a key
//! removed after the fill's read began. Entries carry a per-key [`version`](crate::Entry::version)
//! for the first rule; removals leave short-lived [`Tombstone`]s for the second. See
//! [`Backend::fill`](crate::Backend::fill) for the contract.

use std::collections::HashMap;
use std::time::Duration;

use crate::clock::Timestamp;
use crate::key::Key;
use crate::selector::Selector;

/// What a [`Backend::fill`](crate::Backend::fill) did. New outcomes may be added, so match
/// with a wildcard arm (or use [`is_stored`](FillOutcome::is_stored)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FillOutcome {
    /// The entry was written.
    Stored,
    /// Refused: the backend holds an entry of the key at the same or a newer version (or a
    /// concurrent write or fill of the key got there first). The stored entry is unchanged.
    KeptNewer,
    /// Refused: a live tombstone of the key, or of a prefix or tag matching it, has a version
    /// at or above the entry's: the key was removed after the fill's read began.
    Tombstoned,
    /// Refused: the entry is already past its `retain_until`; nothing was written or removed.
    Expired,
}

impl FillOutcome {
    /// Whether the entry was written.
    pub fn is_stored(self) -> bool {
        matches!(self, FillOutcome::Stored)
    }

    /// A stable lower-case name (`"stored"`, `"kept_newer"`, `"tombstoned"`, `"expired"`).
    pub fn as_str(self) -> &'static str {
        match self {
            FillOutcome::Stored => "stored",
            FillOutcome::KeptNewer => "kept_newer",
            FillOutcome::Tombstoned => "tombstoned",
            FillOutcome::Expired => "expired",
        }
    }
}

/// The record a removal leaves behind: fills at or below `version` are refused for `ttl`.
///
/// ```
/// use layercake_core::Tombstone;
/// use std::time::Duration;
/// let t = Tombstone::new(42, Duration::from_secs(5));
/// assert!(t.refuses(42) && t.refuses(7));
/// assert!(!t.refuses(43));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Tombstone {
    /// The removal's version: fills of entries with a version at or below it are refused.
    pub version: u64,
    /// How long the tombstone lives. A zero `ttl` leaves no tombstone (a plain removal).
    pub ttl: Duration,
}

impl Tombstone {
    /// A tombstone of `version` living `ttl`.
    pub const fn new(version: u64, ttl: Duration) -> Tombstone {
        Tombstone { version, ttl }
    }

    /// Whether a fill of an entry at `version` is refused by this tombstone (while it lives).
    pub fn refuses(&self, version: u64) -> bool {
        version <= self.version
    }
}

/// A live tombstone: its version and the instant it stops refusing fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mark {
    version: u64,
    until: Timestamp,
}

impl Mark {
    fn merge(&mut self, other: Mark) {
        self.version = self.version.max(other.version);
        self.until = self.until.max(other.until);
    }
}

/// Fewest records before the log prunes expired ones.
const PRUNE_MIN: usize = 64;

/// The tombstones of an in-process backend: per key and per selector (prefix or tag), each
/// with a version and an expiry instant.
///
/// A building block for backends that keep tombstones in memory (the memory and file tiers,
/// the testkit's reference backend); it holds no lock and reads no clock: the caller passes
/// `now` and serializes access.
///
/// Contract:
/// - recording a tombstone where one lives already keeps the higher version and the later
///   expiry; a zero `ttl` records nothing;
/// - [`refuses`](TombstoneLog::refuses) is true when a live key tombstone of the key, a live
///   prefix tombstone of a prefix of the key, or a live tag tombstone of one of the entry's
///   tags has a version at or above the entry's;
/// - a tombstone is live while `now < recorded_at + ttl`;
/// - expired records are pruned when the log has doubled since the last prune (amortized
///   O(1) per record); memory is therefore bounded by about twice the live records.
///
/// ```
/// use layercake_core::{Key, Selector, Timestamp, Tombstone, TombstoneLog};
/// use std::time::Duration;
/// let mut log = TombstoneLog::new();
/// let now = Timestamp(1_000);
/// let k = Key::new("user:1").unwrap();
/// log.record_key(&k, Tombstone::new(10, Duration::from_secs(1)), now);
/// assert!(log.refuses(&k, &[], 10, now));
/// assert!(!log.refuses(&k, &[], 11, now));
/// assert!(!log.refuses(&k, &[], 10, Timestamp(2_000)), "expired");
/// log.record_selector(&Selector::Tag("t".into()), Tombstone::new(20, Duration::from_secs(1)), now);
/// let other = Key::new("other").unwrap();
/// assert!(log.refuses(&other, &["t".to_owned()], 15, now));
/// assert!(!log.refuses(&other, &[], 15, now));
/// ```
#[derive(Debug, Clone, Default)]
pub struct TombstoneLog {
    keys: HashMap<Key, Mark>,
    selectors: Vec<(Selector, Mark)>,
    next_prune: usize,
}

impl TombstoneLog {
    /// An empty log.
    pub fn new() -> TombstoneLog {
        TombstoneLog::default()
    }

    /// Record a removal of `key` at `now`.
    pub fn record_key(&mut self, key: &Key, tombstone: Tombstone, now: Timestamp) {
        if tombstone.ttl.is_zero() {
            return;
        }
        let mark = Mark {
            version: tombstone.version,
            until: now.plus(tombstone.ttl),
        };
        match self.keys.get_mut(key) {
            Some(m) if m.until > now => m.merge(mark),
            Some(m) => *m = mark,
            None => {
                self.keys.insert(key.clone(), mark);
            }
        }
        self.maybe_prune(now);
    }

    /// Record a removal of every key `selector` matches, at `now`.
    pub fn record_selector(&mut self, selector: &Selector, tombstone: Tombstone, now: Timestamp) {
        if tombstone.ttl.is_zero() {
            return;
        }
        let mark = Mark {
            version: tombstone.version,
            until: now.plus(tombstone.ttl),
        };
        match self.selectors.iter_mut().find(|(s, _)| s == selector) {
            Some((_, m)) if m.until > now => m.merge(mark),
            Some((_, m)) => *m = mark,
            None => self.selectors.push((selector.clone(), mark)),
        }
        self.maybe_prune(now);
    }

    /// Whether a fill of `key` with an entry of `version` carrying `tags` is refused at `now`.
    pub fn refuses(&self, key: &Key, tags: &[String], version: u64, now: Timestamp) -> bool {
        let live = |m: &Mark| m.until > now && version <= m.version;
        if self.keys.get(key).is_some_and(live) {
            return true;
        }
        self.selectors
            .iter()
            .any(|(s, m)| live(m) && s.matches(key.as_str(), tags))
    }

    /// The keys with a live tombstone of their own at `now`, in no particular order.
    pub fn live_keys(&self, now: Timestamp) -> impl Iterator<Item = &Key> {
        self.keys
            .iter()
            .filter(move |(_, m)| m.until > now)
            .map(|(k, _)| k)
    }

    /// The version of `key`'s own live tombstone at `now`, if any.
    pub fn key_version(&self, key: &Key, now: Timestamp) -> Option<u64> {
        self.keys
            .get(key)
            .filter(|m| m.until > now)
            .map(|m| m.version)
    }

    /// Drop every record (as `clear` does).
    pub fn clear(&mut self) {
        self.keys.clear();
        self.selectors.clear();
        self.next_prune = 0;
    }

    /// Number of records held, expired ones not yet pruned included.
    pub fn len(&self) -> usize {
        self.keys.len() + self.selectors.len()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Remove the records that are no longer live at `now`.
    pub fn prune(&mut self, now: Timestamp) {
        self.keys.retain(|_, m| m.until > now);
        self.selectors.retain(|(_, m)| m.until > now);
        self.next_prune = (self.len() * 2).max(PRUNE_MIN);
    }

    fn maybe_prune(&mut self, now: Timestamp) {
        if self.len() >= self.next_prune.max(PRUNE_MIN) {
            self.prune(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Key {
        Key::new(s).unwrap()
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn key_tombstones_keep_the_highest_version_and_latest_expiry() {
        let mut log = TombstoneLog::new();
        let k = key("k");
        log.record_key(&k, Tombstone::new(10, S), Timestamp(0));
        log.record_key(&k, Tombstone::new(5, S * 3), Timestamp(500));
        assert_eq!(log.key_version(&k, Timestamp(3_000)), Some(10));
        assert!(log.refuses(&k, &[], 10, Timestamp(3_499)));
        assert!(!log.refuses(&k, &[], 10, Timestamp(3_500)));
        // After expiry a new record starts afresh.
        log.record_key(&k, Tombstone::new(3, S), Timestamp(4_000));
        assert_eq!(log.key_version(&k, Timestamp(4_000)), Some(3));
        log.record_key(
            &key("zero"),
            Tombstone::new(9, Duration::ZERO),
            Timestamp(0),
        );
        assert_eq!(log.key_version(&key("zero"), Timestamp(0)), None);
    }

    #[test]
    fn selector_tombstones_match_literal_prefixes_and_exact_tags() {
        let mut log = TombstoneLog::new();
        let now = Timestamp(0);
        log.record_selector(&Selector::Prefix("a*".into()), Tombstone::new(7, S), now);
        log.record_selector(&Selector::Tag("t1".into()), Tombstone::new(7, S), now);
        assert!(log.refuses(&key("a*b"), &[], 7, now));
        assert!(!log.refuses(&key("axb"), &[], 7, now));
        assert!(!log.refuses(&key("a*b"), &[], 8, now));
        assert!(log.refuses(&key("x"), &["t0".into(), "t1".into()], 1, now));
        assert!(!log.refuses(&key("x"), &["t1x".into()], 1, now));
        log.clear();
        assert!(log.is_empty());
        assert!(!log.refuses(&key("a*b"), &[], 7, now));
    }

    #[test]
    fn expired_records_are_pruned_as_the_log_grows() {
        let mut log = TombstoneLog::new();
        for i in 0..1000u64 {
            log.record_key(
                &key(&format!("k{i}")),
                Tombstone::new(i, S),
                Timestamp(i * 10),
            );
        }
        // Records live 1 s = 100 steps: the log stays within a small multiple of that.
        assert!(log.len() < 400, "{}", log.len());
        log.prune(Timestamp(1_000_000));
        assert!(log.is_empty());
        assert!(FillOutcome::Stored.is_stored() && !FillOutcome::Tombstoned.is_stored());
        assert_eq!(FillOutcome::KeptNewer.as_str(), "kept_newer");
    }
}

//! What a read returns: the value and where it came from.

use std::sync::Arc;
use std::time::Duration;

use layercake_core::{Entry, Timestamp};

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Source {
    /// Found fresh in the tier at this position (0 = L1).
    Hit {
        /// Tier position.
        tier: usize,
    },
    /// This call ran the loader.
    Computed,
    /// Another concurrent call ran the loader; this call shared its result.
    Coalesced,
    /// The loader failed or was too slow, and a stale copy (inside its fail-safe window) was
    /// served instead.
    Stale,
}

impl Source {
    /// A stable outcome name for metrics: `hit`, `computed`, `coalesced`, `stale`.
    pub fn outcome(self) -> &'static str {
        match self {
            Source::Hit { .. } => "hit",
            Source::Computed => "computed",
            Source::Coalesced => "coalesced",
            Source::Stale => "stale",
        }
    }
}

/// A value and its [`Source`].
///
/// An L1 hit hands out the `Arc` stored in L1: no decode, no copy of the payload.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Lookup<T> {
    /// The value.
    pub value: T,
    /// Where it came from.
    pub source: Source,
}

impl<T> Lookup<Arc<T>> {
    /// The shared value.
    pub fn into_value(self) -> Arc<T> {
        self.value
    }
}

impl<T> std::ops::Deref for Lookup<Arc<T>> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// A value read by [`Cache::get_with_meta`](crate::Cache::get_with_meta), with its entry's
/// times (from the envelope every tier stores) and the instant of the read.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Hit<T> {
    /// The value.
    pub value: Arc<T>,
    /// Where it came from: [`Source::Hit`], or [`Source::Stale`] for a stale copy.
    pub source: Source,
    /// When the value was written (by `set` or a loader).
    pub created_at: Timestamp,
    /// When it stops being fresh.
    pub expires_at: Timestamp,
    /// The end of its fail-safe window, if it has one.
    pub stale_until: Option<Timestamp>,
    /// When it was read (the cache's clock).
    pub read_at: Timestamp,
}

impl<T> Hit<T> {
    /// A positive read of `entry` (`None` for a negative entry: "not found" reads as `None`).
    pub(crate) fn of(
        value: Option<Arc<T>>,
        source: Source,
        entry: &Entry,
        now: Timestamp,
    ) -> Option<Hit<T>> {
        value.map(|value| Hit {
            value,
            source,
            created_at: entry.created_at,
            expires_at: entry.expires_at,
            stale_until: entry.stale_until,
            read_at: now,
        })
    }
    /// How old the value was when read.
    pub fn age(&self) -> Duration {
        self.read_at.saturating_since(self.created_at)
    }
    /// Its fresh life left when read (zero when stale).
    pub fn remaining(&self) -> Duration {
        self.expires_at.saturating_since(self.read_at)
    }
    /// Its whole fresh lifetime (from write to expiry).
    pub fn ttl(&self) -> Duration {
        self.expires_at.saturating_since(self.created_at)
    }
    /// Whether it was past its expiry when read (served from the fail-safe window).
    pub fn is_stale(&self) -> bool {
        self.read_at >= self.expires_at
    }
}

impl<T> std::ops::Deref for Hit<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

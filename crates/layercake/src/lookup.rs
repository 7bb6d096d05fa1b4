//! What a read returns: the value and where it came from.

use std::sync::Arc;

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

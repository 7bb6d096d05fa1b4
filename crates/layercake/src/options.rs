//! Per-call choices: [`ReadOptions`] (skip the memory or the shared tiers, accept a stale
//! copy), applied through [`Cache::with_options`](crate::Cache::with_options), and
//! [`Computed`], a loader's value with the lifetime its result decided.

use std::time::Duration;

use layercake_core::TierSet;

use crate::tier::Scope;

/// How the calls made through a [`Cache::with_options`](crate::Cache::with_options) handle
/// read (and fill) the tiers.
///
/// - [`skip_memory`](ReadOptions::skip_memory): the in-process tiers (scope
///   [`Scope::Process`]) are neither read nor filled — e.g. a value that must come from the
///   shared tier every time, or a large one-off read that should not evict the hot set;
/// - [`skip_shared`](ReadOptions::skip_shared): the tiers shared by every instance (scope
///   [`Scope::Shared`]: Redis, PostgreSQL) are neither read nor filled — e.g. a
///   per-instance value, or a read that must not wait on the network;
/// - [`allow_stale`](ReadOptions::allow_stale): [`get`](crate::Cache::get) and
///   [`get_with_meta`](crate::Cache::get_with_meta) return a stale copy (inside the policy's
///   fail-safe window) when no tier holds a fresh one, with [`Source::Stale`](crate::Source).
///
/// Skipping concerns reads and fills (promotions, a loader's result): `set`, `delete` and
/// invalidations always reach every tier the policy assigns, so no tier keeps an older copy.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> layercake::Result<()> {
/// use layercake::{Cache, MemoryBackend, ReadOptions};
/// let cache = Cache::builder("docs").tier(MemoryBackend::with_max_bytes(1 << 20)?).build()?;
/// cache.set("k", 1u32).await?;
/// let no_memory = cache.with_options(ReadOptions::new().skip_memory());
/// assert!(no_memory.get::<u32>("k").await?.is_none()); // the only tier is skipped
/// assert_eq!(*cache.get::<u32>("k").await?.unwrap(), 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadOptions {
    skip_memory: bool,
    skip_shared: bool,
    allow_stale: bool,
}

impl ReadOptions {
    /// Every tier, fresh copies only (the default).
    pub fn new() -> ReadOptions {
        ReadOptions::default()
    }
    /// Neither read nor fill the in-process (memory) tiers.
    pub fn skip_memory(mut self) -> ReadOptions {
        self.skip_memory = true;
        self
    }
    /// Neither read nor fill the shared tiers (Redis, PostgreSQL).
    pub fn skip_shared(mut self) -> ReadOptions {
        self.skip_shared = true;
        self
    }
    /// Let `get` return a stale copy when no fresh one exists.
    pub fn allow_stale(mut self) -> ReadOptions {
        self.allow_stale = true;
        self
    }
    /// Whether the in-process tiers are skipped.
    pub fn skips_memory(&self) -> bool {
        self.skip_memory
    }
    /// Whether the shared tiers are skipped.
    pub fn skips_shared(&self) -> bool {
        self.skip_shared
    }
    /// Whether `get` may return a stale copy.
    pub fn allows_stale(&self) -> bool {
        self.allow_stale
    }
    pub(crate) fn skips(&self, scope: Scope) -> bool {
        match scope {
            Scope::Process => self.skip_memory,
            Scope::Shared => self.skip_shared,
            Scope::Host => false,
        }
    }
}

/// The per-call options of a [`Cache`] handle and the tiers they skip.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallOptions {
    pub(crate) read: ReadOptions,
    /// The tiers neither read nor filled.
    pub(crate) skip: TierSet,
}

impl Default for CallOptions {
    fn default() -> CallOptions {
        CallOptions {
            read: ReadOptions::default(),
            skip: TierSet::NONE,
        }
    }
}

/// A loader's value and what its result decided about caching it, for
/// [`Cache::get_or_compute_adaptive`](crate::Cache::get_or_compute_adaptive): a lifetime (an HTTP `max-age`, a short one for an
/// answer that must not live long) or no caching at all (the callers get the value, no tier
/// keeps it).
///
/// ```
/// use layercake::Computed;
/// use std::time::Duration;
/// let c = Computed::new("page").ttl(Duration::from_secs(30));
/// assert_eq!(c.ttl_override(), Some(Duration::from_secs(30)));
/// assert!(!Computed::new("error page").no_cache().is_cached());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Computed<T> {
    value: T,
    ttl: Option<Duration>,
    cache: bool,
}

impl<T> Computed<T> {
    /// The value, cached as the policy (or the call's [`WriteOptions`](crate::WriteOptions))
    /// says.
    pub fn new(value: T) -> Computed<T> {
        Computed {
            value,
            ttl: None,
            cache: true,
        }
    }
    /// Cache it for `ttl` (fresh lifetime) instead of the policy's; the policy's stale window
    /// still follows. A zero `ttl` caches nothing.
    pub fn ttl(mut self, ttl: Duration) -> Computed<T> {
        self.ttl = Some(ttl);
        self
    }
    /// Do not cache it: the callers (the one that ran the loader and those that joined it)
    /// get the value, no tier is written.
    pub fn no_cache(mut self) -> Computed<T> {
        self.cache = false;
        self
    }
    /// The lifetime the loader chose, if any.
    pub fn ttl_override(&self) -> Option<Duration> {
        self.ttl
    }
    /// Whether the value is written to the tiers.
    pub fn is_cached(&self) -> bool {
        self.cache
    }
    /// The value.
    pub fn value(&self) -> &T {
        &self.value
    }
    /// The value.
    pub fn into_value(self) -> T {
        self.value
    }
    pub(crate) fn map<U>(self, f: impl FnOnce(T) -> U) -> Computed<U> {
        Computed {
            value: f(self.value),
            ttl: self.ttl,
            cache: self.cache,
        }
    }
}

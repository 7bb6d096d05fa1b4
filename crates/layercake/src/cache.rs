//! [`Cache`]: the typed API over a stack of tiers — the type, its contract, accessors, stats
//! and lifecycle. The operations live one file per path: `read`, `promote`, `write`,
//! `invalidate`, `load`, `batch`, `warm`.

use std::sync::Arc;
use std::time::Duration;

use layercake_core::{Key, KeyStrategy, Result, TierSet};

use crate::key_input::IntoKey;
use crate::options::{CallOptions, ReadOptions};
use crate::stack::Stack;
use crate::stats::Stats;

/// Options of one write: tags and an optional TTL that overrides the policy's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Tags for [`Cache::invalidate_tag`].
    pub tags: Vec<String>,
    /// Fresh lifetime; `None` = the policy decides.
    pub ttl: Option<Duration>,
}

impl WriteOptions {
    /// No tags, policy TTL.
    pub fn new() -> WriteOptions {
        WriteOptions::default()
    }
    /// Add a tag.
    pub fn tag(mut self, tag: impl Into<String>) -> WriteOptions {
        self.tags.push(tag.into());
        self
    }
    /// Override the TTL.
    pub fn ttl(mut self, ttl: Duration) -> WriteOptions {
        self.ttl = Some(ttl);
        self
    }
}

/// What [`Cache::warm`] fills upper tiers with.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Warm<'a> {
    /// These keys (caller text, made into keys by the cache's key strategy).
    Keys(&'a [&'a str]),
    /// Up to `limit` keys of the cache's namespace whose caller text starts with `prefix`,
    /// listed by the lowest tier that can list keys.
    Prefix {
        /// Caller-text prefix (the namespace prefix is added).
        prefix: &'a str,
        /// Most keys to warm.
        limit: usize,
    },
}

/// A tiered cache: the tiers in order (L1 first), a key strategy, a policy and a codec.
///
/// Cheap to clone (shared state). Build one with [`Cache::builder`].
///
/// Contract:
/// - reads walk the tiers top-down; a fresh hit at tier *i* fills the tiers above it that the
///   policy allows, with the entry's remaining lifetime (never extended); a tier error,
///   timeout, open breaker or undecodable copy is counted and skipped (the read falls through;
///   an undecodable copy is also deleted);
/// - an L1 hit returns the `Arc<T>` stored in L1, without decoding;
/// - writes go to every tier the policy allows; what can be known before writing (the exact
///   entry size against each tier's limit, key, tags, codec) is checked before any tier is
///   touched, so such a rejection leaves the previous value readable everywhere;
/// - the write contract (auto-recovery): `set` returns `Ok` when at least one assigned tier
///   took the value and every other one either took it too or did not answer (a temporary
///   error) and now holds a *repair note* for the key. While a note is pending, this instance
///   reads the key from that tier as a miss and never promotes into it; once the tier answers
///   again, the repair task removes the tier's older copy (through the tier's breaker: within
///   its open time plus [`RepairConfig::retry_every`](crate::RepairConfig::retry_every), 1 s +
///   200 ms by default), then tells the other instances through the backplane. From then on no instance reads a
///   value older than the newest acknowledged write. A tier that refuses permanently in the
///   middle of the fan-out (a rejection no check could foresee) makes `set` return that error;
///   the other tiers keep the new value and the refusing tier's older copy is removed (or
///   noted);
/// - `delete`, `invalidate*` and `clear` reach every tier or return an error; each tier that
///   failed holds a note (the key, the selection, the whole tier) that this instance honours
///   on reads and the repair applies, so a removed value never comes back after the fault;
/// - what remains: other instances can read a tier's older copy while the tier is reachable
///   to them but not to the writer, and between the tier's recovery and the repair; pending
///   notes live in this process's memory (a crash loses them: the older copies then live
///   until their TTL); see `docs/concepts.md`;
/// - `get_or_compute` runs at most one loader per key per process at a time; a panicking,
///   failing or cancelled caller never leaves the others waiting;
/// - with a backplane, every `set`, `delete` and invalidation publishes a message and other
///   instances drop their process- and host-local copies; fills after a miss publish nothing.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> layercake::Result<()> {
/// use layercake::{Cache, MemoryBackend, Source};
/// let cache = Cache::builder("docs").tier(MemoryBackend::with_max_bytes(1 << 20)?).build()?;
/// let first = cache.get_or_compute("answer", || async { Ok::<_, std::io::Error>(42u32) }).await?;
/// assert_eq!((*first.value, first.source), (42, Source::Computed));
/// let again = cache.get::<u32>("answer").await?.unwrap();
/// assert_eq!(again.source, Source::Hit { tier: 0 });
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Cache {
    pub(crate) inner: Arc<Stack>,
    pub(crate) keys: Arc<dyn KeyStrategy>,
    /// This handle's per-call options (see [`Cache::with_options`]).
    pub(crate) call: CallOptions,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("inner", &self.inner)
            .field("keys", &self.keys)
            .field("options", &self.call.read)
            .finish()
    }
}

impl Cache {
    /// The same cache (same tiers, same state) making keys with another strategy — e.g. one
    /// handle per namespace.
    pub fn with_keys(&self, keys: impl KeyStrategy) -> Cache {
        Cache {
            inner: self.inner.clone(),
            keys: Arc::new(keys),
            call: self.call,
        }
    }

    /// The same cache (same tiers, same state) whose reads and fills follow `opts`: skip the
    /// memory or the shared tiers, accept a stale copy. Cheap; make one per call or keep it.
    /// Loads are still shared with every other handle of the cache (single flight per key):
    /// a caller that joins a load started through another handle gets that load's result.
    pub fn with_options(&self, opts: ReadOptions) -> Cache {
        let skipped: Vec<usize> = self
            .inner
            .tiers
            .iter()
            .filter(|t| opts.skips(t.scope))
            .map(|t| t.position)
            .collect();
        Cache {
            inner: self.inner.clone(),
            keys: self.keys.clone(),
            call: CallOptions {
                read: opts,
                skip: TierSet::only(&skipped),
            },
        }
    }

    /// The options of this handle ([`ReadOptions::new`] unless made by
    /// [`with_options`](Cache::with_options)).
    pub fn options(&self) -> ReadOptions {
        self.call.read
    }

    /// The cache's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The key strategy in use.
    pub fn keys(&self) -> &dyn KeyStrategy {
        &*self.keys
    }

    /// Make the key for caller input, as the typed methods do.
    pub fn key(&self, input: impl IntoKey) -> Result<Key> {
        input.into_key(&*self.keys)
    }

    /// Tier names in order.
    pub fn tier_names(&self) -> Vec<String> {
        self.inner
            .tiers
            .iter()
            .map(|t| t.name.to_string())
            .collect()
    }

    // ---------------------------------------------------------------- lifecycle

    /// A snapshot of the statistics.
    pub fn stats(&self) -> Stats {
        crate::stats::snapshot(&self.inner)
    }

    /// Loads running now (single-flight entries).
    pub fn loads_in_flight(&self) -> usize {
        self.inner.flights.len()
    }

    /// Flush write-behind queues, try once to apply the pending repairs (each tier bounded
    /// by its write timeout), save the configured hot-set and miss-report files, and stop
    /// background tasks. Reads and writes still work
    /// afterwards, write-through. Repairs still pending then are lost with the process: check
    /// [`RepairStats::pending`](crate::RepairStats::pending) in [`stats`](Cache::stats).
    pub async fn shutdown(&self) {
        for t in &self.inner.tiers {
            if let Some(wb) = &t.write_behind {
                wb.flush_and_stop().await;
            }
        }
        crate::repair::task::round(&self.inner).await;
        self.save_configured_hot_set();
        self.save_configured_miss_report();
        for t in self.inner.tasks.lock().drain(..) {
            t.abort();
        }
    }
}

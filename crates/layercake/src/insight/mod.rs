//! Insight: why reads miss and what was hot. Per tier a ghost record of recent writes and a
//! shared record of removals classify every miss ([`MissReason`]); a sample of the reads
//! keeps a bounded frequency estimate of the keys (the hot set, saved and warmed from across
//! restarts); hit-ratio targets and [`MissReport`] turn the counts into suggestions.
//!
//! Every path of the composer calls in here with one line: `stored` on a write to a tier,
//! `removed_*` on a removal, `missed*` on a miss, `read` on a read.

pub(crate) mod config;
pub(crate) mod ghost;
pub(crate) mod hotset;
#[cfg(feature = "otel")]
pub(crate) mod otel;
pub(crate) mod reasons;
pub(crate) mod report;
mod saved;
mod warm;

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use layercake_core::{Entry, Key, Result, Selector, Timestamp, namespace_of};

use crate::cache::Cache;
use crate::tier::Tier;
use crate::write::How;

pub use config::{HitTarget, HotSetFile, InsightConfig, MissReportFile};
use ghost::{Ghost, Removals, key_hash};
use hotset::HotSet;
use reasons::Rows;
pub use reasons::{MissReason, MissReasons, NAMESPACES, NamespaceMisses};
pub use report::{MissReport, Suggestion, TargetReport};
pub use saved::{MISS_REPORT_FORMAT, SavedMissReport, TierReads};
pub use warm::HotSetWarm;
pub(crate) use warm::start_saver;

const RELAXED: Ordering = Ordering::Relaxed;

/// Buckets of the "read again this long after expiry" histogram: bucket `b` holds delays
/// below 2^b ms (the last one everything longer).
pub(crate) const LATE_BUCKETS: usize = 32;

/// One tier's records.
#[derive(Debug)]
pub(crate) struct TierInsight {
    ghost: Ghost,
    /// Distinct keys missed as evicted (each counted once while the ghost remembers it).
    pub(crate) evicted_keys: AtomicU64,
    /// Their encoded sizes, summed.
    pub(crate) evicted_bytes: AtomicU64,
    /// Expired misses by how long after the expiry the key was read again.
    pub(crate) late: [AtomicU64; LATE_BUCKETS],
}

/// The cache's insight records (in the shared stack).
#[derive(Debug)]
pub(crate) struct Insight {
    pub(crate) config: InsightConfig,
    pub(crate) tiers: Vec<TierInsight>,
    removals: Removals,
    pub(crate) rows: Rows,
    pub(crate) hot: Option<HotSet>,
}

thread_local! {
    static TICK: Cell<u32> = const { Cell::new(0) };
}

impl Insight {
    pub(crate) fn new(config: InsightConfig, tiers: usize) -> Insight {
        let slots = if config.miss_reasons {
            config.ghost_slots
        } else {
            0
        };
        Insight {
            tiers: (0..tiers)
                .map(|_| TierInsight {
                    ghost: Ghost::new(slots),
                    evicted_keys: AtomicU64::new(0),
                    evicted_bytes: AtomicU64::new(0),
                    late: Default::default(),
                })
                .collect(),
            removals: Removals::new(slots),
            rows: Rows::new(tiers),
            hot: (config.hot_candidates > 0).then(|| HotSet::new(config.hot_candidates)),
            config,
        }
    }

    /// A read of `key` (sampled: one in `sample_every` per thread is recorded).
    #[inline]
    pub(crate) fn read(&self, key: &Key) {
        if self.hot.is_none() && !self.config.miss_reasons {
            return;
        }
        // A countdown, not a modulo: no division on the hit path.
        let sampled = TICK.with(|t| match t.get() {
            0 => {
                t.set(self.config.sample_every.saturating_sub(1));
                true
            }
            left => {
                t.set(left - 1);
                false
            }
        });
        if sampled {
            self.sampled(key);
        }
    }

    #[cold]
    fn sampled(&self, key: &Key) {
        if self.config.miss_reasons {
            self.rows
                .row(namespace_of(key.as_str()))
                .sampled_reads
                .fetch_add(1, RELAXED);
        }
        if let Some(h) = &self.hot {
            h.record(key);
        }
    }

    /// A copy of `key` expiring at `expires_at`, `size` bytes, was written to `tier`.
    #[inline]
    pub(crate) fn stored(&self, tier: usize, key: &Key, expires_at: Timestamp, size: usize) {
        if !self.config.miss_reasons {
            return;
        }
        if let Some(t) = self.tiers.get(tier) {
            let g = self.removals.generation();
            t.ghost.stored(key_hash(key), expires_at, size, g);
        }
    }

    /// Copies written to `tier` in bulk.
    pub(crate) fn stored_many(&self, tier: usize, items: &[(Key, Entry)]) {
        for (k, e) in items {
            self.stored(tier, k, e.expires_at, k.len() + e.value.len());
        }
    }

    /// A key was removed (from every tier, or the local ones).
    pub(crate) fn removed_key(&self, key: &Key) {
        if self.config.miss_reasons {
            self.removals.key(key_hash(key));
        }
    }

    /// A key or a selection was removed from every tier.
    pub(crate) fn removed(&self, what: &crate::invalidate::Removal) {
        match what {
            crate::invalidate::Removal::Key(k) => self.removed_key(k),
            crate::invalidate::Removal::Select(s) => self.removed_selector(Some(s)),
        }
    }

    /// A selection was removed; `None` = everything.
    pub(crate) fn removed_selector(&self, selector: Option<&Selector>) {
        if !self.config.miss_reasons {
            return;
        }
        match selector {
            Some(Selector::Prefix(p)) => self.removals.prefix(p),
            _ => self.removals.everything(),
        }
    }

    /// A miss at `tier` whose reason is known.
    #[inline]
    pub(crate) fn missed_as(&self, tier: usize, key: &Key, reason: MissReason) {
        if self.config.miss_reasons {
            self.rows.count(namespace_of(key.as_str()), tier, reason);
        }
    }

    /// A miss at `tier` because the copy there is past its fresh time (`expires_at`).
    pub(crate) fn missed_expired(
        &self,
        tier: usize,
        key: &Key,
        expires_at: Timestamp,
        now: Timestamp,
    ) {
        if !self.config.miss_reasons {
            return;
        }
        if let Some(t) = self.tiers.get(tier) {
            let late = now.0.saturating_sub(expires_at.0);
            let b = (u64::BITS - late.leading_zeros()) as usize;
            t.late[b.min(LATE_BUCKETS - 1)].fetch_add(1, RELAXED);
        }
        self.missed_as(tier, key, MissReason::Expired);
    }

    /// A miss at `tier` where the tier had no copy: classified by the ghost and removals.
    pub(crate) fn missed(&self, tier: usize, key: &Key, now: Timestamp) {
        if !self.config.miss_reasons {
            return;
        }
        let Some(t) = self.tiers.get(tier) else {
            return;
        };
        let h = key_hash(key);
        let seen = t.ghost.recall(h);
        if self
            .removals
            .removed_since(key, h, seen.map(|r| r.generation))
        {
            return self.missed_as(tier, key, MissReason::Invalidated);
        }
        match seen {
            None => self.missed_as(tier, key, MissReason::NeverSeen),
            Some(r) if r.expires_at <= now => self.missed_expired(tier, key, r.expires_at, now),
            Some(r) => {
                if t.ghost.mark_evicted(h) {
                    t.evicted_keys.fetch_add(1, RELAXED);
                    t.evicted_bytes.fetch_add(r.size, RELAXED);
                }
                self.missed_as(tier, key, MissReason::Evicted)
            }
        }
    }

    /// A miss at `tier` that found `entry` (or nothing) there: nothing → [`missed`](Self::missed);
    /// a copy held back by a pending repair; a copy past its fresh time.
    pub(crate) fn missed_entry(
        &self,
        tier: usize,
        key: &Key,
        entry: Option<&Entry>,
        repair: bool,
        now: Timestamp,
    ) {
        match entry {
            _ if repair => self.missed_as(tier, key, MissReason::RepairPending),
            Some(e) => self.missed_expired(tier, key, e.expires_at, now),
            None => self.missed(tier, key, now),
        }
    }

    /// A failed read of `tier`: skipped by its breaker, or an error.
    pub(crate) fn failed(&self, tier: usize, key: &Key, err: &layercake_core::Error) {
        let reason = if err.kind() == layercake_core::ErrorKind::CircuitOpen {
            MissReason::Skipped
        } else {
            MissReason::Error
        };
        self.missed_as(tier, key, reason);
    }

    /// Per tier, the misses by reason (every namespace).
    pub(crate) fn per_tier(&self) -> Vec<MissReasons> {
        self.rows.per_tier()
    }
}

impl Cache {
    /// Write one entry to one tier ([`Cache::write_to_tier`]) and remember it in the tier's
    /// ghost record when the tier took it.
    pub(crate) async fn write_to(
        &self,
        tier: &Tier,
        key: &Key,
        entry: Entry,
        how: How,
    ) -> Result<bool> {
        let (expires_at, size) = (entry.expires_at, key.len() + entry.value.len());
        let r = self.write_to_tier(tier, key, entry, how).await;
        if let Ok(true) = r {
            self.inner
                .insight
                .stored(tier.position, key, expires_at, size);
        }
        r
    }
}

//! [`MissReport`]: per tier, the hit ratio against its target, what the misses were, and
//! measured suggestions (more capacity for evictions, a longer TTL or refresh-ahead for
//! expirations of keys read again soon after).

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::reasons::{MissReason, MissReasons};
use super::{Insight, LATE_BUCKETS};
use crate::cache::Cache;

/// The share of a tier's misses a reason needs before the report suggests something.
const SUGGEST_FROM: f64 = 0.10;

/// A measured suggestion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Suggestion {
    /// Evictions of keys that were read again: this much more room would have kept them.
    MoreCapacity {
        /// The share of the tier's misses that were evictions.
        share: f64,
        /// Distinct evicted keys read again (as far as the ghost record remembers).
        keys: u64,
        /// Their encoded sizes, summed: the room that would have kept them.
        bytes: u64,
    },
    /// Expirations of keys read again soon after: a longer TTL, or refresh-ahead, would have
    /// served them.
    LongerTtl {
        /// The share of the tier's misses that were expirations.
        share: f64,
        /// Nine in ten of those reads came within this long after the expiry.
        within: Duration,
    },
}

impl fmt::Display for Suggestion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Suggestion::MoreCapacity { share, keys, bytes } => write!(
                f,
                "{:.0} % of misses were evictions: ~{} more would have kept them \
                 ({keys} keys read again after their eviction)",
                share * 100.0,
                fmt_bytes(*bytes)
            ),
            Suggestion::LongerTtl { share, within } => write!(
                f,
                "{:.0} % were expirations of keys read again within {within:?}: a TTL longer \
                 by that or refresh-ahead would have served them",
                share * 100.0
            ),
        }
    }
}

/// Bytes in MiB, or KiB below one MiB.
fn fmt_bytes(b: u64) -> String {
    if b >= 1 << 20 {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", b as f64 / 1024.0)
    }
}

/// One tier (or one namespace at one tier) in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetReport {
    /// The tier's name.
    pub tier: String,
    /// The tier's position (0 = L1).
    pub position: usize,
    /// The namespace, or `None` for the whole tier.
    pub namespace: Option<String>,
    /// Hits over the reads that reached the tier (estimated from the read sample for a
    /// namespace).
    pub hit_ratio: f64,
    /// The target, if one was set.
    pub target: Option<f64>,
    /// The misses, by reason.
    pub misses: MissReasons,
    /// What would have served more of them.
    pub suggestions: Vec<Suggestion>,
}

impl TargetReport {
    /// Whether a target is set and the hit ratio is below it.
    pub fn missed_target(&self) -> bool {
        self.target.is_some_and(|t| self.hit_ratio < t)
    }
}

/// Where each hit-ratio target is missed and what the misses were; see
/// [`Cache::miss_report`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MissReport {
    /// Every tier, then each namespace that has a target.
    pub rows: Vec<TargetReport>,
}

impl MissReport {
    /// The rows whose target is missed.
    pub fn missed(&self) -> impl Iterator<Item = &TargetReport> {
        self.rows.iter().filter(|r| r.missed_target())
    }
}

impl fmt::Display for MissReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.rows {
            let who = match &r.namespace {
                Some(ns) => format!("{} in {ns}", r.tier),
                None => r.tier.clone(),
            };
            write!(f, "{who}: hit ratio {:.1} %", r.hit_ratio * 100.0)?;
            match r.target {
                Some(t) if r.hit_ratio < t => write!(f, ", target {:.1} % MISSED", t * 100.0)?,
                Some(t) => write!(f, ", target {:.1} % met", t * 100.0)?,
                None => {}
            }
            writeln!(f, "; misses: {}", r.misses)?;
            for s in &r.suggestions {
                writeln!(f, "  - {s}")?;
            }
        }
        Ok(())
    }
}

/// The delay nine in ten expired misses of `tier` came within (an upper bound).
fn late_p90(insight: &Insight, tier: usize) -> Duration {
    let Some(t) = insight.tiers.get(tier) else {
        return Duration::ZERO;
    };
    let counts: Vec<u64> = t.late.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let total: u64 = counts.iter().sum();
    let mut seen = 0;
    for (b, n) in counts.iter().enumerate() {
        seen += n;
        if seen * 10 >= total * 9 {
            return Duration::from_millis(1u64 << b.min(LATE_BUCKETS - 1));
        }
    }
    Duration::ZERO
}

fn suggestions(insight: &Insight, tier: usize, misses: &MissReasons) -> Vec<Suggestion> {
    let total = misses.total();
    let mut out = Vec::new();
    if total == 0 {
        return out;
    }
    let share = |r: MissReason| misses.get(r) as f64 / total as f64;
    let evicted = share(MissReason::Evicted);
    if evicted >= SUGGEST_FROM
        && let Some(t) = insight.tiers.get(tier)
    {
        out.push(Suggestion::MoreCapacity {
            share: evicted,
            keys: t.evicted_keys.load(Ordering::Relaxed),
            bytes: t.evicted_bytes.load(Ordering::Relaxed),
        });
    }
    let expired = share(MissReason::Expired);
    if expired >= SUGGEST_FROM {
        out.push(Suggestion::LongerTtl {
            share: expired,
            within: late_p90(insight, tier),
        });
    }
    out.sort_by(|a, b| {
        let s = |x: &Suggestion| match x {
            Suggestion::MoreCapacity { share, .. } | Suggestion::LongerTtl { share, .. } => *share,
        };
        s(b).total_cmp(&s(a))
    });
    out
}

impl Cache {
    /// The misses of each namespace, per tier and by reason (the first
    /// [`NAMESPACES`](crate::NAMESPACES) namespaces seen have their own row; later ones share
    /// the row `other`), with each namespace's reads estimated from the read sample.
    pub fn misses_by_namespace(&self) -> Vec<super::NamespaceMisses> {
        let insight = &self.inner.insight;
        insight
            .rows
            .snapshot(u64::from(insight.config.sample_every))
    }

    /// Per tier (and per namespace with a target), the hit ratio against its target, the
    /// misses by reason, and measured suggestions. See [`InsightConfig::target`](crate::InsightConfig::target).
    pub fn miss_report(&self) -> MissReport {
        self.miss_report_of(&self.stats())
    }

    /// [`miss_report`](Cache::miss_report) from stats already taken.
    pub(crate) fn miss_report_of(&self, stats: &crate::Stats) -> MissReport {
        let insight = &self.inner.insight;
        let target = |tier: usize, ns: Option<&str>| {
            insight
                .config
                .targets
                .iter()
                .find(|t| t.tier == tier && t.namespace.as_deref() == ns)
                .map(|t| t.ratio)
        };
        let mut rows: Vec<TargetReport> = stats
            .tiers
            .iter()
            .enumerate()
            .map(|(i, t)| TargetReport {
                tier: t.name.clone(),
                position: i,
                namespace: None,
                hit_ratio: t.hit_ratio(),
                target: target(i, None),
                misses: t.misses_by_reason,
                suggestions: suggestions(insight, i, &t.misses_by_reason),
            })
            .collect();
        let every = u64::from(insight.config.sample_every);
        for ns in insight.rows.snapshot(every) {
            let mut reached = ns.reads;
            for (i, m) in ns.tiers.iter().enumerate() {
                let Some(goal) = target(i, Some(&ns.namespace)) else {
                    reached = m.total();
                    continue;
                };
                let hits = reached.saturating_sub(m.total());
                rows.push(TargetReport {
                    tier: stats
                        .tiers
                        .get(i)
                        .map_or_else(String::new, |t| t.name.clone()),
                    position: i,
                    namespace: Some(ns.namespace.clone()),
                    hit_ratio: if reached == 0 {
                        0.0
                    } else {
                        hits as f64 / reached as f64
                    },
                    target: Some(goal),
                    misses: *m,
                    suggestions: suggestions(insight, i, m),
                });
                reached = m.total();
            }
        }
        MissReport { rows }
    }
}

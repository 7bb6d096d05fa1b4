//! Why a read missed at a tier: [`MissReason`], the counts per reason ([`MissReasons`]) and
//! the counters behind them, per tier and per namespace (bounded: the first
//! [`NAMESPACES`] namespaces seen get their own row, later ones share the row `other`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a read found nothing usable at a tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MissReason {
    /// The tier has no copy and its ghost record does not remember one: never written here,
    /// or written so long ago (or among so many other keys) that the record forgot it.
    NeverSeen,
    /// The copy had expired (or was past its stale window and gone).
    Expired,
    /// The copy was written here, still had time to live, and is gone: evicted for room (or
    /// removed by something the cache did not see).
    Evicted,
    /// The copy was removed by a `delete`, an invalidation, a `clear` or a backplane message.
    Invalidated,
    /// A write or removal did not reach the tier, and its repair is pending: the tier was
    /// not asked.
    RepairPending,
    /// The copy could not be decoded (and was deleted).
    Corrupt,
    /// The tier failed or timed out.
    Error,
    /// The tier's circuit breaker was open: the tier was not asked.
    Skipped,
}

impl MissReason {
    /// Every reason, in a fixed order.
    pub const ALL: [MissReason; 8] = [
        MissReason::NeverSeen,
        MissReason::Expired,
        MissReason::Evicted,
        MissReason::Invalidated,
        MissReason::RepairPending,
        MissReason::Corrupt,
        MissReason::Error,
        MissReason::Skipped,
    ];

    /// A stable name, the `reason` attribute of the `layercake.tier.misses` metric:
    /// `never_seen`, `expired`, `evicted`, `invalidated`, `repair_pending`, `corrupt`,
    /// `error`, `skipped`.
    pub fn as_str(self) -> &'static str {
        match self {
            MissReason::NeverSeen => "never_seen",
            MissReason::Expired => "expired",
            MissReason::Evicted => "evicted",
            MissReason::Invalidated => "invalidated",
            MissReason::RepairPending => "repair_pending",
            MissReason::Corrupt => "corrupt",
            MissReason::Error => "error",
            MissReason::Skipped => "skipped",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for MissReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Misses of one tier counted by reason.
///
/// Every read of the tier that did not hit counts once here, including the reads that failed
/// or were skipped by the breaker ([`MissReason::Error`], [`MissReason::Skipped`]), which
/// [`TierStats::misses`](crate::TierStats::misses) does not count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MissReasons {
    counts: [u64; MissReason::ALL.len()],
}

impl MissReasons {
    /// The misses for `reason`.
    pub fn get(&self, reason: MissReason) -> u64 {
        self.counts[reason.index()]
    }

    /// Every miss counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The reasons with at least one miss, most frequent first.
    pub fn iter(&self) -> impl Iterator<Item = (MissReason, u64)> + '_ {
        let mut v: Vec<(MissReason, u64)> = MissReason::ALL
            .iter()
            .map(|&r| (r, self.get(r)))
            .filter(|&(_, n)| n > 0)
            .collect();
        v.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
        v.into_iter()
    }

    /// Add `other`'s counts to these (to combine tiers, namespaces or instances).
    pub fn add(&mut self, other: &MissReasons) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
    }
}

/// As a map from each reason's name ([`MissReason::as_str`]) to its count.
impl Serialize for MissReasons {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let map: BTreeMap<&str, u64> = MissReason::ALL
            .iter()
            .map(|&r| (r.as_str(), self.get(r)))
            .collect();
        map.serialize(s)
    }
}

/// From a map of reason names to counts (names this version does not know are an error).
impl<'de> Deserialize<'de> for MissReasons {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<String, u64>::deserialize(d)?;
        let mut m = MissReasons::default();
        for (name, n) in map {
            let r = MissReason::ALL
                .iter()
                .find(|r| r.as_str() == name)
                .ok_or_else(|| serde::de::Error::custom(format!("unknown miss reason `{name}`")))?;
            m.counts[r.index()] = n;
        }
        Ok(m)
    }
}

impl fmt::Display for MissReasons {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (r, n) in self.iter() {
            write!(f, "{}{r} {n}", if first { "" } else { ", " })?;
            first = false;
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

/// The misses of one namespace, per tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceMisses {
    /// The namespace (the key text before the first `:`), or `other` for namespaces past the
    /// first [`NAMESPACES`].
    pub namespace: String,
    /// Per tier, in order (L1 first).
    pub tiers: Vec<MissReasons>,
    /// Reads of the namespace, estimated from the read sample (one read in
    /// [`InsightConfig::sample_every`](crate::InsightConfig::sample_every), times that).
    pub reads: u64,
}

/// How many namespaces get their own row of counters.
pub const NAMESPACES: usize = 32;

/// Counters of one namespace: per tier, per reason; and sampled reads.
#[derive(Debug)]
pub(crate) struct Row {
    counts: Box<[[AtomicU64; MissReason::ALL.len()]]>,
    pub(crate) sampled_reads: AtomicU64,
}

impl Row {
    fn new(tiers: usize) -> Row {
        Row {
            counts: (0..tiers).map(|_| Default::default()).collect(),
            sampled_reads: AtomicU64::new(0),
        }
    }

    fn snapshot(&self) -> Vec<MissReasons> {
        self.counts
            .iter()
            .map(|t| {
                let mut m = MissReasons::default();
                for (c, a) in m.counts.iter_mut().zip(t) {
                    *c = a.load(Ordering::Relaxed);
                }
                m
            })
            .collect()
    }
}

/// A namespace's name and its row.
type Named = (Box<str>, Row);

/// The per-namespace rows: lock-free lookup by name, a mutex only to claim a new row.
#[derive(Debug)]
pub(crate) struct Rows {
    tiers: usize,
    named: Box<[OnceLock<Named>]>,
    claim: parking_lot::Mutex<()>,
    other: Row,
}

impl Rows {
    pub(crate) fn new(tiers: usize) -> Rows {
        Rows {
            tiers,
            named: (0..NAMESPACES).map(|_| OnceLock::new()).collect(),
            claim: parking_lot::Mutex::new(()),
            other: Row::new(tiers),
        }
    }

    /// The row of `namespace`, claimed on first use.
    #[inline]
    pub(crate) fn row(&self, namespace: &str) -> &Row {
        for slot in self.named.iter() {
            match slot.get() {
                Some((n, row)) if &**n == namespace => return row,
                Some(_) => continue,
                None => return self.claim(namespace),
            }
        }
        &self.other
    }

    #[cold]
    fn claim(&self, namespace: &str) -> &Row {
        let _g = self.claim.lock();
        for slot in self.named.iter() {
            if let Some((n, row)) = slot.get() {
                if &**n == namespace {
                    return row;
                }
                continue;
            }
            let (_, row) = slot.get_or_init(|| (Box::from(namespace), Row::new(self.tiers)));
            return row;
        }
        &self.other
    }

    /// Count one miss.
    #[inline]
    pub(crate) fn count(&self, namespace: &str, tier: usize, reason: MissReason) {
        if let Some(t) = self.row(namespace).counts.get(tier) {
            t[reason.index()].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The rows in use, with reads scaled by `sample_every`.
    pub(crate) fn snapshot(&self, sample_every: u64) -> Vec<NamespaceMisses> {
        let named = self.named.iter().filter_map(|s| s.get());
        let mut out: Vec<NamespaceMisses> = named
            .map(|(n, row)| (n.to_string(), row))
            .chain(std::iter::once(("other".to_string(), &self.other)))
            .map(|(namespace, row)| NamespaceMisses {
                namespace,
                tiers: row.snapshot(),
                reads: row.sampled_reads.load(Ordering::Relaxed) * sample_every,
            })
            .collect();
        out.retain(|m| m.reads > 0 || m.tiers.iter().any(|t| t.total() > 0));
        out
    }

    /// Per tier, the sum over every namespace.
    pub(crate) fn per_tier(&self) -> Vec<MissReasons> {
        let mut out = vec![MissReasons::default(); self.tiers];
        for ns in self.snapshot(1) {
            for (o, t) in out.iter_mut().zip(&ns.tiers) {
                o.add(t);
            }
        }
        out
    }
}

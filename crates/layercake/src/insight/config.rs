//! [`InsightConfig`]: what the cache records to explain its misses and to warm a restart —
//! miss reasons (ghost records), the read sample behind the hot set, hit-ratio targets and
//! where the hot set is saved.

use std::path::PathBuf;
use std::time::Duration;

/// A hit-ratio target of one tier, for every namespace or one.
#[derive(Debug, Clone, PartialEq)]
pub struct HitTarget {
    /// The tier's position (0 = L1).
    pub tier: usize,
    /// The namespace it applies to; `None` = the whole tier.
    pub namespace: Option<String>,
    /// The hit ratio wanted, 0.0–1.0: hits at the tier over the reads that reached it.
    pub ratio: f64,
}

/// Where and how often the hot set is saved (see [`Cache::save_hot_set`](crate::Cache::save_hot_set)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HotSetFile {
    /// The file (written atomically: a temporary file next to it, then renamed).
    pub path: PathBuf,
    /// The hottest keys kept per namespace.
    pub keys_per_namespace: usize,
    /// Save every this long (and on [`Cache::shutdown`](crate::Cache::shutdown)); `None` =
    /// only on shutdown.
    pub every: Option<Duration>,
}

/// Where and how often the miss report is saved (see
/// [`Cache::save_miss_report`](crate::Cache::save_miss_report)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissReportFile {
    /// The file (JSON, written atomically: a temporary file next to it, then renamed).
    pub path: PathBuf,
    /// Save every this long (and on [`Cache::shutdown`](crate::Cache::shutdown)); `None` =
    /// only on shutdown.
    pub every: Option<Duration>,
}

/// What the cache records to explain its misses and to warm a restart; give it to
/// [`CacheBuilder::insight`](crate::CacheBuilder::insight). On by default.
///
/// Memory: per tier, `ghost_slots` × 16 bytes (1 MiB for the default 65 536), plus
/// `ghost_slots` / 4 × 16 bytes of removal record; the hot-set sample holds at most
/// `hot_candidates` keys (about 64 bytes each plus the key's text). Cost: nothing on an L1
/// hit but a per-thread tick (and one read in `sample_every` counted in the sample); on a
/// miss a hash and a few atomic loads; on a write to a tier two or three atomic stores.
///
/// ```
/// use layercake::{Cache, InsightConfig, MemoryBackend};
/// let cache = Cache::builder("docs")
///     .tier(MemoryBackend::with_max_bytes(1 << 20)?)
///     .insight(InsightConfig::new().ghost_slots(1 << 12).target(0, 0.9))
///     .build()?;
/// assert_eq!(cache.stats().tiers[0].misses_by_reason.total(), 0);
/// # Ok::<(), layercake::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct InsightConfig {
    pub(crate) miss_reasons: bool,
    pub(crate) ghost_slots: usize,
    pub(crate) hot_candidates: usize,
    pub(crate) sample_every: u32,
    pub(crate) targets: Vec<HitTarget>,
    pub(crate) hot_set_file: Option<HotSetFile>,
    pub(crate) miss_report_file: Option<MissReportFile>,
}

impl Default for InsightConfig {
    fn default() -> Self {
        InsightConfig::new()
    }
}

impl InsightConfig {
    /// The defaults: miss reasons on with 65 536 ghost slots per tier, a hot-set sample of
    /// one read in 16 into at most 65 536 candidate keys, no targets, no hot-set file.
    pub fn new() -> InsightConfig {
        InsightConfig {
            miss_reasons: true,
            ghost_slots: 1 << 16,
            hot_candidates: 1 << 16,
            sample_every: 16,
            targets: Vec::new(),
            hot_set_file: None,
            miss_report_file: None,
        }
    }

    /// Nothing recorded: no miss reasons, no hot-set sample (the switch the benchmark
    /// compares against).
    pub fn off() -> InsightConfig {
        InsightConfig {
            miss_reasons: false,
            hot_candidates: 0,
            ..InsightConfig::new()
        }
    }

    /// Count misses by reason (default `true`).
    pub fn miss_reasons(mut self, on: bool) -> Self {
        self.miss_reasons = on;
        self
    }

    /// Ghost slots per tier (rounded up to a power of two, at least 64): how many recently
    /// written keys a tier remembers. Size it above the number of keys the tier holds, or
    /// evictions of forgotten keys count as [`NeverSeen`](crate::MissReason::NeverSeen).
    pub fn ghost_slots(mut self, slots: usize) -> Self {
        self.ghost_slots = slots;
        self
    }

    /// The most keys the hot-set sample tracks (0 = no sample, no hot set).
    pub fn hot_candidates(mut self, keys: usize) -> Self {
        self.hot_candidates = keys;
        self
    }

    /// Sample one read in `n` per thread for the hot set and the per-namespace read counts
    /// (at least 1).
    pub fn sample_every(mut self, n: u32) -> Self {
        self.sample_every = n.max(1);
        self
    }

    /// A hit-ratio target for the tier at `tier` (0 = L1), all namespaces together; see
    /// [`Cache::miss_report`](crate::Cache::miss_report).
    pub fn target(mut self, tier: usize, ratio: f64) -> Self {
        self.targets.push(HitTarget {
            tier,
            namespace: None,
            ratio,
        });
        self
    }

    /// A hit-ratio target for one namespace at one tier (the namespace's ratio is estimated
    /// from the read sample).
    pub fn target_in(mut self, namespace: &str, tier: usize, ratio: f64) -> Self {
        self.targets.push(HitTarget {
            tier,
            namespace: Some(namespace.to_owned()),
            ratio,
        });
        self
    }

    /// Save the hot set to `path` (the hottest `keys_per_namespace` keys of each namespace)
    /// every `every` (`None`: only on shutdown) and on [`Cache::shutdown`](crate::Cache::shutdown).
    pub fn save_hot_set(
        mut self,
        path: impl Into<PathBuf>,
        keys_per_namespace: usize,
        every: Option<Duration>,
    ) -> Self {
        self.hot_set_file = Some(HotSetFile {
            path: path.into(),
            keys_per_namespace,
            every,
        });
        self
    }

    /// Save the miss report ([`SavedMissReport`](crate::SavedMissReport), JSON) to `path`
    /// every `every` (`None`: only on shutdown) and on
    /// [`Cache::shutdown`](crate::Cache::shutdown), for `layercake misses` to read.
    pub fn save_miss_report(mut self, path: impl Into<PathBuf>, every: Option<Duration>) -> Self {
        self.miss_report_file = Some(MissReportFile {
            path: path.into(),
            every,
        });
        self
    }

    /// The read sample rate.
    pub fn sample_rate(&self) -> u32 {
        self.sample_every
    }
}

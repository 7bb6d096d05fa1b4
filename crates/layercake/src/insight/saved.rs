//! Miss reports saved to a file ([`SavedMissReport`]): an instance's misses by reason, its
//! hit ratios against their targets and the suggestions, as JSON, for the operator's
//! `layercake misses` command (which reads and combines the files of several instances) and
//! for anything else that reads JSON.

use std::path::Path;

use layercake_core::{Error, Result};
use serde::{Deserialize, Serialize};

use super::hotset::write_atomically;
use super::reasons::NamespaceMisses;
use super::report::MissReport;
use crate::cache::Cache;

/// The `format` of the files this version writes.
pub const MISS_REPORT_FORMAT: u32 = 1;

/// Hits and reads of one tier, so that reports of several instances can be combined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TierReads {
    /// The tier's name.
    pub tier: String,
    /// Reads the tier answered with a fresh copy.
    pub hits: u64,
    /// Reads that reached the tier: its hits and its misses of every reason.
    pub reads: u64,
}

/// One instance's [`MissReport`], saved by [`Cache::save_miss_report`] (or periodically, see
/// [`InsightConfig::save_miss_report`](crate::InsightConfig::save_miss_report)).
///
/// ```
/// use layercake::{Cache, MemoryBackend, SavedMissReport};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> layercake::Result<()> {
/// let cache = Cache::builder("docs").tier(MemoryBackend::with_max_bytes(1 << 20)?).build()?;
/// assert!(cache.get::<u32>("absent").await?.is_none());
/// let dir = std::env::temp_dir().join(format!("layercake-doc-report-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).map_err(|e| layercake::Error::config(e.to_string()))?;
/// let path = dir.join("misses.json");
/// cache.save_miss_report(&path)?;
/// let saved = SavedMissReport::read(&path)?;
/// assert_eq!(saved.cache, "docs");
/// assert_eq!(saved.report.rows[0].misses.total(), 1);
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SavedMissReport {
    /// The file format ([`MISS_REPORT_FORMAT`]).
    pub format: u32,
    /// The cache's name.
    pub cache: String,
    /// When it was saved, milliseconds since the Unix epoch (the cache's clock).
    pub saved_at_ms: u64,
    /// Per tier, hits and reads.
    pub tiers: Vec<TierReads>,
    /// The report: per tier (and per namespace with a target), hit ratio, target, misses by
    /// reason, suggestions.
    pub report: MissReport,
    /// Misses per namespace, per tier, by reason.
    pub namespaces: Vec<NamespaceMisses>,
}

impl SavedMissReport {
    /// Read a saved report.
    ///
    /// # Errors
    /// A `Config` error naming the file when it cannot be read, is not a miss report, or has a
    /// format this version does not read.
    pub fn read(path: impl AsRef<Path>) -> Result<SavedMissReport> {
        let path = path.as_ref();
        let io = |e: std::io::Error| {
            Error::config(format!("miss report {}: {e}", path.display())).with_source(e)
        };
        let text = std::fs::read_to_string(path).map_err(io)?;
        let saved: SavedMissReport = serde_json::from_str(&text).map_err(|e| {
            Error::config(format!("{} is not a miss report: {e}", path.display())).with_source(e)
        })?;
        if saved.format != MISS_REPORT_FORMAT {
            return Err(Error::config(format!(
                "miss report {}: format {} (this version reads {MISS_REPORT_FORMAT})",
                path.display(),
                saved.format
            )));
        }
        Ok(saved)
    }

    /// Write it to `path` atomically (a temporary file next to it, then a rename).
    ///
    /// # Errors
    /// A `Config` error naming the file when it cannot be written.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let text = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::config(format!("miss report: {e}")).with_source(e))?;
        write_atomically(path.as_ref(), &text, "miss report")
    }
}

impl Cache {
    /// This instance's miss report as it stands, with the counts needed to combine it with
    /// other instances' ([`SavedMissReport`]).
    pub fn saved_miss_report(&self) -> SavedMissReport {
        let stats = self.stats();
        SavedMissReport {
            format: MISS_REPORT_FORMAT,
            cache: self.name().to_owned(),
            saved_at_ms: self.inner.clock.now().0,
            tiers: stats
                .tiers
                .iter()
                .map(|t| TierReads {
                    tier: t.name.clone(),
                    hits: t.hits,
                    reads: t.hits + t.misses_by_reason.total(),
                })
                .collect(),
            report: self.miss_report_of(&stats),
            namespaces: self.misses_by_namespace(),
        }
    }

    /// Save [`saved_miss_report`](Cache::saved_miss_report) to a file, atomically, as JSON:
    /// `layercake misses FILE…` prints it (and combines several instances' files).
    ///
    /// # Errors
    /// A `Config` error naming the file when it cannot be written.
    pub fn save_miss_report(&self, path: impl AsRef<Path>) -> Result<()> {
        self.saved_miss_report().write(path)
    }

    /// Save the miss report to the configured file, if any (on shutdown).
    pub(crate) fn save_configured_miss_report(&self) {
        if let Some(f) = &self.inner.insight.config.miss_report_file {
            let _ = self.save_miss_report(&f.path);
        }
    }
}

//! [`FileConfig`] and [`Durability`].

use std::path::PathBuf;
use std::time::Duration;

use layercake_core::{EnvelopeLimits, Result, SharedClock, system_clock};

use crate::error;

/// How hard a `set` works to make an entry survive a crash of the machine (not of the process:
/// a process crash never loses an acknowledged entry at any level, because the page cache
/// survives it).
///
/// Every level is crash-*consistent*: a reader sees the old entry, the new entry or no entry,
/// and a torn file is detected by its checksum and treated as a miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Durability {
    /// Write the temp file and rename it; no fsync (the default, like ccache, sccache and
    /// browser disk caches). A process crash loses nothing; after a power loss or kernel crash
    /// recent entries may be missing or their files empty or torn — misses, never wrong data.
    #[default]
    None,
    /// `fdatasync` the temp file before the rename: after a power loss the file behind a name
    /// is complete; the most recent renames may be undone (old entry or none).
    Data,
    /// Also `fsync` the shard directory after the rename, so an acknowledged `set` survives a
    /// power loss.
    Full,
}

/// Configuration of a [`FileBackend`](crate::FileBackend).
///
/// | field | default | meaning |
/// |---|---|---|
/// | `dir` | (required) | the cache directory, created if missing |
/// | `max_bytes` | 1 GiB | bound on the sum of entry file sizes; least recently used entries are evicted after each `set` |
/// | `durability` | [`Durability::None`] | fsync policy of `set` |
/// | `sweep_interval` | 60 s | period of the background sweep (expired and garbled files, stale temp files, other processes' files); `None` disables it |
/// | `clock` | system clock | judges expiry |
/// | `inline_read_max` | 68 KiB | files up to this size (a 64 KiB value plus its envelope) are read on the calling task; larger ones through `spawn_blocking` |
/// | `rescan_on_invalidate` | `true` | before a prefix/tag invalidation, pick up files other processes wrote |
/// | `limits` | [`EnvelopeLimits::default`] | envelope limits used to encode and decode |
///
/// ```
/// use layercake_file::{Durability, FileConfig};
/// use std::time::Duration;
/// let cfg = FileConfig::new("/var/cache/app")
///     .with_max_bytes(256 << 20)
///     .with_durability(Durability::Data)
///     .with_sweep_interval(Some(Duration::from_secs(30)));
/// assert_eq!(cfg.max_bytes, 256 << 20);
/// assert!(cfg.validate().is_ok());
/// assert!(cfg.with_max_bytes(0).validate().is_err());
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FileConfig {
    /// The cache directory; created (with parents) by `open` if missing.
    pub dir: PathBuf,
    /// Bound on the sum of the sizes of the entry files, in bytes.
    pub max_bytes: u64,
    /// fsync policy of `set`.
    pub durability: Durability,
    /// Period of the background sweep; `None` disables it (call
    /// [`FileBackend::sweep`](crate::FileBackend::sweep) yourself).
    pub sweep_interval: Option<Duration>,
    /// The clock that judges expiry.
    pub clock: SharedClock,
    /// Files up to this many bytes are read in place on the calling task (a page-cached read
    /// costs less than a thread hand-off); larger files are read through `spawn_blocking`.
    /// `0` sends every read through `spawn_blocking`.
    pub inline_read_max: u64,
    /// Before a prefix or tag invalidation, list the directory and index files that this
    /// process does not know yet (written by another process). Turn off when one process owns
    /// the directory.
    pub rescan_on_invalidate: bool,
    /// Envelope limits used to encode and decode.
    pub limits: EnvelopeLimits,
}

impl FileConfig {
    /// The defaults for `dir` (see the table on [`FileConfig`]).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileConfig {
            dir: dir.into(),
            max_bytes: 1 << 30,
            durability: Durability::default(),
            sweep_interval: Some(Duration::from_secs(60)),
            clock: system_clock(),
            inline_read_max: 68 * 1024,
            rescan_on_invalidate: true,
            limits: EnvelopeLimits::default(),
        }
    }

    /// Set the byte bound.
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Set the durability.
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Set the sweep interval (`None`: no background sweep).
    pub fn with_sweep_interval(mut self, interval: Option<Duration>) -> Self {
        self.sweep_interval = interval;
        self
    }

    /// Set the clock.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Set the largest file read in place.
    pub fn with_inline_read_max(mut self, bytes: u64) -> Self {
        self.inline_read_max = bytes;
        self
    }

    /// Set whether invalidation rescans the directory first.
    pub fn with_rescan_on_invalidate(mut self, rescan: bool) -> Self {
        self.rescan_on_invalidate = rescan;
        self
    }

    /// Set the envelope limits.
    pub fn with_limits(mut self, limits: EnvelopeLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Check the configuration: `max_bytes` must not be zero, nor `sweep_interval` when set.
    /// [`FileBackend::open`](crate::FileBackend::open) calls it; a problem is a
    /// [`Config`](layercake_core::ErrorKind::Config) error.
    pub fn validate(&self) -> Result<()> {
        if self.max_bytes == 0 {
            return Err(error::config("file tier: max_bytes must be above 0"));
        }
        if self.sweep_interval.is_some_and(|d| d.is_zero()) {
            return Err(error::config(
                "file tier: sweep_interval must be above 0 (or None)",
            ));
        }
        Ok(())
    }
}

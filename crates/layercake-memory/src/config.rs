//! [`MemoryConfig`]: how big the memory tier is and which clock judges expiry.

use layercake_core::{Error, Result, SharedClock, system_clock};

/// Configuration of a [`MemoryBackend`](crate::MemoryBackend).
///
/// | field | default | meaning |
/// |---|---|---|
/// | `max_bytes` | 64 MiB | bound on the summed weight of the entries (see [`MemoryBackend`](crate::MemoryBackend)) |
/// | `estimated_items` | `max_bytes / 1 KiB` (at least 32) | expected number of entries; sizes the hash tables and the shard count |
/// | `shards` | quick_cache's: 4 × cores, a power of two | number of independently locked shards |
/// | `clock` | the system clock | the clock expiry is judged with |
///
/// ```
/// use layercake_memory::MemoryConfig;
/// let cfg = MemoryConfig::new(256 << 20).with_estimated_items(100_000);
/// assert_eq!(cfg.max_bytes, 256 << 20);
/// assert_eq!(cfg.estimated_items(), 100_000);
/// assert_eq!(MemoryConfig::default().max_bytes, 64 << 20);
/// assert_eq!(MemoryConfig::default().estimated_items(), 65_536);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MemoryConfig {
    /// Bound on the summed weight of the entries kept, in bytes: each weighs its payload, key,
    /// tags and the tier's own allocations, and its decoded value when it carries one (see
    /// [`MemoryBackend`](crate::MemoryBackend)).
    pub max_bytes: u64,
    /// Expected number of entries; `None` means `max_bytes / 1024` (at least 32).
    pub estimated_items: Option<usize>,
    /// Number of shards; `None` lets quick_cache choose (4 × available cores).
    pub shards: Option<usize>,
    /// The clock expiry is judged with.
    pub clock: SharedClock,
}

/// Default bound: 64 MiB.
const DEFAULT_MAX_BYTES: u64 = 64 << 20;

impl Default for MemoryConfig {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_BYTES)
    }
}

impl MemoryConfig {
    /// A configuration bounded to `max_bytes`, other fields at their defaults.
    pub fn new(max_bytes: u64) -> Self {
        MemoryConfig {
            max_bytes,
            estimated_items: None,
            shards: None,
            clock: system_clock(),
        }
    }

    /// Set the expected number of entries.
    pub fn with_estimated_items(mut self, items: usize) -> Self {
        self.estimated_items = Some(items);
        self
    }

    /// Set the number of shards (rounded up to a power of two by quick_cache; it may use fewer
    /// so that each shard expects at least 32 entries).
    pub fn with_shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// Judge expiry with `clock` (a [`ManualClock`](layercake_core::ManualClock) in tests).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The expected number of entries, defaulted.
    pub fn estimated_items(&self) -> usize {
        self.estimated_items
            .unwrap_or_else(|| usize::try_from(self.max_bytes / 1024).unwrap_or(usize::MAX))
            .max(32)
    }

    /// Check the configuration: `max_bytes`, `estimated_items` and `shards` must not be zero.
    pub fn validate(&self) -> Result<()> {
        let err = |m: &'static str| Err(Error::config(m).with_backend("memory"));
        if self.max_bytes == 0 {
            return err("memory tier: max_bytes must be greater than zero");
        }
        if self.estimated_items == Some(0) {
            return err("memory tier: estimated_items must be greater than zero");
        }
        if self.shards == Some(0) {
            return err("memory tier: shards must be greater than zero");
        }
        Ok(())
    }
}

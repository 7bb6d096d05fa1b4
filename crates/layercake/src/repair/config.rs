//! [`RepairConfig`]: how many repairs a tier's record holds, what happens when it is full, and
//! how often pending repairs are retried.

use std::time::Duration;

/// What a tier's repair record does when a new note does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Overflow {
    /// Replace the notes by one note for the whole tier (default): reads skip the tier until
    /// it answers again, and the repair then clears it. Nothing is dropped; the cost is a cold
    /// tier after a long outage.
    #[default]
    ClearTier,
    /// Keep the notes and make the call whose note does not fit fail with a temporary
    /// `Unavailable` error: the caller learns the value was not stored everywhere (and a
    /// failed removal stays an error, as it always is).
    RefuseWrites,
}

/// How the composer records and repairs writes and removals that did not reach a tier
/// (auto-recovery); see [`CacheBuilder::repairs`](crate::CacheBuilder::repairs).
///
/// ```
/// use std::time::Duration;
/// use layercake::{Overflow, RepairConfig};
///
/// let repairs = RepairConfig::new()
///     .with_max_pending(50_000)
///     .with_overflow(Overflow::RefuseWrites)
///     .with_retry_every(Duration::from_millis(100));
/// assert_eq!(repairs.max_pending(), 50_000);
/// assert_eq!(repairs.overflow(), Overflow::RefuseWrites);
/// assert_eq!(repairs.retry_every(), Duration::from_millis(100));
/// assert_eq!(RepairConfig::new().max_pending(), 100_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepairConfig {
    max_pending: usize,
    overflow: Overflow,
    retry_every: Duration,
}

impl Default for RepairConfig {
    fn default() -> Self {
        RepairConfig {
            max_pending: 100_000,
            overflow: Overflow::ClearTier,
            retry_every: Duration::from_millis(200),
        }
    }
}

impl RepairConfig {
    /// The defaults: 100 000 pending notes per tier, [`Overflow::ClearTier`], a retry every
    /// 200 ms while notes are pending.
    pub fn new() -> RepairConfig {
        RepairConfig::default()
    }

    /// Most pending notes (keys and selections) per tier; at least 1.
    pub fn with_max_pending(mut self, n: usize) -> RepairConfig {
        self.max_pending = n.max(1);
        self
    }

    /// What happens when a tier's record is full.
    pub fn with_overflow(mut self, overflow: Overflow) -> RepairConfig {
        self.overflow = overflow;
        self
    }

    /// How often pending repairs are tried while their tier does not answer (at least 10 ms).
    pub fn with_retry_every(mut self, every: Duration) -> RepairConfig {
        self.retry_every = every.max(Duration::from_millis(10));
        self
    }

    /// Most pending notes per tier.
    pub fn max_pending(&self) -> usize {
        self.max_pending
    }

    /// What happens when a tier's record is full.
    pub fn overflow(&self) -> Overflow {
        self.overflow
    }

    /// The retry interval.
    pub fn retry_every(&self) -> Duration {
        self.retry_every
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_clamped() {
        let c = RepairConfig::new()
            .with_max_pending(0)
            .with_retry_every(Duration::ZERO);
        assert_eq!(c.max_pending(), 1);
        assert_eq!(c.retry_every(), Duration::from_millis(10));
        assert_eq!(c.overflow(), Overflow::ClearTier);
    }
}

//! [`WriteReport`]: which tiers took a write and which are left to the repair.

/// What one write did, tier by tier (see [`Cache::set_reporting`](crate::Cache::set_reporting)).
///
/// Only the tiers the policy assigned to the value appear. A tier written behind counts as
/// stored once the write is queued.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriteReport {
    /// Tiers that took the value.
    pub stored: Vec<String>,
    /// Tiers that did not answer (a temporary error: timeout, unreachable, open breaker, out
    /// of memory, disk full): each holds a repair note for the key, so reads skip the key
    /// there and the repair removes its older copy once the tier answers again.
    pub pending_repair: Vec<String>,
}

impl WriteReport {
    /// Every assigned tier took the value.
    ///
    /// ```
    /// let r = layercake::WriteReport::default();
    /// assert!(r.is_complete());
    /// ```
    pub fn is_complete(&self) -> bool {
        self.pending_repair.is_empty()
    }
}

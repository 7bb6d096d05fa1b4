//! Options of the optional cross-instance lock (see
//! [`CacheBuilder::distributed_lock`](crate::CacheBuilder::distributed_lock)).

use std::time::Duration;

/// How `get_or_compute` uses a [`DistributedLock`](layercake_core::DistributedLock).
///
/// On a miss in every tier, the flight leader of each instance tries the lock: the holder
/// computes and writes; the others re-read the shared tiers every `poll` until the value
/// appears, for at most `wait`, and then compute themselves (a slow or dead holder never
/// blocks the fleet for longer than `wait`). If the lock's store fails, the instance computes
/// without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockOptions {
    /// How long a lock is held at most (it frees itself after this, even if its holder dies).
    /// Must be at least the loader's hard timeout.
    pub ttl: Duration,
    /// How long a non-holder waits for the holder's value before computing itself.
    pub wait: Duration,
    /// How often a non-holder re-reads the shared tiers.
    pub poll: Duration,
}

impl Default for LockOptions {
    /// 30 s lease, 5 s wait, 25 ms poll.
    fn default() -> Self {
        LockOptions {
            ttl: Duration::from_secs(30),
            wait: Duration::from_secs(5),
            poll: Duration::from_millis(25),
        }
    }
}

//! [`DistributedLock`]: a lease that lets one instance of a service compute a key while the
//! others wait for its result in the shared tiers.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::backplane::InstanceId;
use crate::error::Result;
use crate::key::Key;

/// Proof of holding a lock; only its holder can release it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LockToken(pub [u8; 16]);

impl LockToken {
    /// A new random token.
    pub fn generate() -> LockToken {
        LockToken(InstanceId::generate().0)
    }

    /// The token as 32 lower-case hex characters.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for LockToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LockToken({}…)", &self.to_hex()[..8])
    }
}

/// A named lease shared by every instance (Redis `SET NX PX`, for example).
///
/// Contract:
/// - `try_lock` takes the lock named by `key` if nobody holds it, for at most `ttl` (it frees
///   itself after `ttl` even if its holder dies), and returns its token; it returns
///   `Ok(None)` at once when someone else holds it — it never waits;
/// - `unlock` releases the lock only if `token` still holds it (a lock that expired and was
///   taken by someone else is left alone);
/// - errors are errors (`Unavailable`, `Timeout`), never reported as "held by someone else".
#[async_trait]
pub trait DistributedLock: Send + Sync + fmt::Debug + 'static {
    /// The implementation (`"redis"`, …), for metrics and errors.
    fn kind(&self) -> &'static str;
    /// Take the lock if free.
    async fn try_lock(&self, key: &Key, ttl: Duration) -> Result<Option<LockToken>>;
    /// Release the lock if `token` holds it.
    async fn unlock(&self, key: &Key, token: LockToken) -> Result<()>;
}

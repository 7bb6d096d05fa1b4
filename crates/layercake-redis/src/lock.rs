//! [`DistributedLock`] on Redis: `SET lock token NX PX ttl`, released by a compare-and-delete
//! script, so only the holder releases and a crashed holder's lock frees itself.

use std::time::Duration;

use async_trait::async_trait;
use layercake_core::{DistributedLock, Key, LockToken, Result};

use crate::RedisBackend;

/// Deletes the lock only if it still holds the caller's token.
const UNLOCK: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                      return redis.call('DEL', KEYS[1]) else return 0 end";

#[async_trait]
impl DistributedLock for RedisBackend {
    fn kind(&self) -> &'static str {
        "redis"
    }

    /// `SET <prefix>\0lock:<key> <token> NX PX <ttl>`.
    async fn try_lock(&self, key: &Key, ttl: Duration) -> Result<Option<LockToken>> {
        let token = LockToken::generate();
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.lock_key(key))
            .arg(token.to_hex())
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64);
        let set: Option<String> = self.redis().cmd("lock", &cmd).await?;
        Ok(set.map(|_| token))
    }

    async fn unlock(&self, key: &Key, token: LockToken) -> Result<()> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(UNLOCK)
            .arg(1)
            .arg(self.lock_key(key))
            .arg(token.to_hex());
        let _: i64 = self.redis().cmd("unlock", &cmd).await?;
        Ok(())
    }
}

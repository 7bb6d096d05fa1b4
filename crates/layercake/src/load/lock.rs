//! The cross-instance lock around a load: take it, or wait for its holder's value to appear
//! in the shared tiers.

use std::sync::Arc;
use std::time::Instant;

use layercake_core::{DistributedLock, Key, LockToken};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::Cache;
use crate::lock::LockOptions;
use crate::read::Found;
use crate::telemetry::OpScope;
use crate::value::Value;

/// What waiting for the cross-instance lock ended with.
pub(crate) enum LockWait<T> {
    /// This instance holds the lock: compute.
    Held(LockToken),
    /// Another instance's value appeared in a shared tier.
    Found(Found<Value<T>>),
    /// No lock (its store failed, or the wait passed): compute anyway.
    Proceed,
}
impl Cache {
    /// Take the cross-instance lock, or wait for its holder's value in the shared tiers.
    pub(crate) async fn lock_or_wait<T>(
        &self,
        lock: &Arc<dyn DistributedLock>,
        lo: &LockOptions,
        key: &Key,
        scope: &OpScope<'_>,
        local: usize,
        accept_negative: bool,
    ) -> LockWait<T>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let n = self.inner.tiers.len();
        let deadline = Instant::now() + lo.wait;
        loop {
            let held = match lock.try_lock(key, lo.ttl).await {
                Ok(held) => held,
                // The lock's store is down: compute without it rather than block.
                Err(_) => return LockWait::Proceed,
            };
            // Holder or not, the value may have landed since the last read.
            let now = self.inner.clock.now();
            let read = self.read_typed::<T>(key, now, scope, local..n).await;
            if let Some(f) = read.fresh
                && (accept_negative || matches!(f.value, Value::Some(_)))
            {
                if let Some(t) = held {
                    let _ = lock.unlock(key, t).await;
                }
                return LockWait::Found(f);
            }
            if let Some(t) = held {
                return LockWait::Held(t);
            }
            if Instant::now() >= deadline {
                return LockWait::Proceed;
            }
            tokio::time::sleep(lo.poll).await;
        }
    }
}

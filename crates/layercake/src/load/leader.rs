//! The single-flight leader's load: run the loader in its own task (panic-safe, hard timeout),
//! fill the tiers unless superseded, release the waiters; and how a caller waits for a flight
//! (soft timeout with a stale copy in hand).

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures::FutureExt as _;
use layercake_core::{Error, Key, LockToken, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::loader_error;
use crate::cache::{Cache, WriteOptions};
use crate::coherence::epochs::Snapshot;
use crate::flight::{LeaderHandle, Loaded, Shared, Waiter};
use crate::lookup::Source;
use crate::options::Computed;
use crate::write::How;

impl Cache {
    /// Wait for a flight. With a soft timeout, a caller that has (or is offered) a stale copy
    /// stops waiting when it passes: the result is then a soft-timeout error, which the caller
    /// answers with the stale copy. `None` = the flight was abandoned.
    pub(crate) async fn await_flight(&self, waiter: &Waiter, has_stale: bool) -> Option<Shared> {
        let Some(soft) = self.inner.soft_timeout else {
            return waiter.clone().wait().await;
        };
        match tokio::time::timeout(soft, waiter.clone().wait()).await {
            Ok(r) => r,
            Err(_) if has_stale || waiter.stale().is_some() => Some(Err(Error::timeout(format!(
                "the loader passed its soft timeout of {soft:?}"
            )))),
            Err(_) => waiter.clone().wait().await,
        }
    }

    /// Run a load in its own task: loader (panic-safe, hard timeout), write the result unless
    /// superseded, then publish it to the waiters.
    #[expect(
        clippy::too_many_arguments,
        reason = "the flight, the key and its options, and what the read that led here saw"
    )]
    pub(crate) fn spawn_load<T, F, Fut, E>(
        &self,
        h: LeaderHandle,
        key: Key,
        opts: WriteOptions,
        token: Option<LockToken>,
        snap: Snapshot,
        version: u64,
        loader: F,
    ) where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<Computed<Option<T>>, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        let cache = self.clone();
        let hard = self.inner.hard_timeout;
        tokio::spawn(async move {
            let start = Instant::now();
            let run = AssertUnwindSafe(async move { loader().await }).catch_unwind();
            let outcome = match hard {
                Some(h) => tokio::time::timeout(h, run).await.map_err(|_| h),
                None => Ok(run.await),
            };
            let result: Result<Computed<Option<Arc<T>>>> = match outcome {
                Ok(Ok(Ok(c))) => Ok(c.map(|v| v.map(Arc::new))),
                Ok(Ok(Err(e))) => Err(loader_error(e)),
                Ok(Err(_panic)) => Err(Error::loader("the loader panicked")),
                Err(h) => Err(Error::timeout(format!(
                    "the loader passed its hard timeout of {h:?}"
                ))),
            };
            cache
                .inner
                .telemetry
                .loader_done(start.elapsed(), result.is_ok());
            // A fill after a miss publishes nothing, and is dropped if the key changed since
            // the leader's read began; its failure only costs a future miss. Its entry carries
            // the version taken before that read, so a tier outside the process refuses it if
            // a write or removal (here or in another instance) happened meanwhile. The
            // in-process tiers are filled first; the other tiers before the waiters are
            // released (so another instance finds the value once the call returns), or after
            // with `background_fills` (so nobody waits on a remote write).
            let superseded = h
                .state
                .superseded
                .load(std::sync::atomic::Ordering::Acquire);
            // The loader's result may have chosen its lifetime, or not to be cached.
            let prepared = match &result {
                Ok(c) if !superseded && c.is_cached() => {
                    let opts = match c.ttl_override() {
                        Some(ttl) => opts.ttl(ttl),
                        None => opts,
                    };
                    cache
                        .prepare(&key, c.value().as_ref(), &opts, Some(version))
                        .ok()
                        .flatten()
                }
                _ => None,
            };
            let local = cache.inner.process_tiers();
            let how = How::Fill(snap);
            if let Some(p) = &prepared {
                let _ = cache
                    .write_entry(
                        &key,
                        p.entry.clone(),
                        p.tiers.and(local),
                        p.decoded.clone(),
                        how,
                    )
                    .await;
            }
            let background = cache.inner.background_fills;
            let mut prepared = prepared;
            if !background && let Some(p) = prepared.take() {
                let _ = cache
                    .write_entry(&key, p.entry, p.tiers.without(local), p.decoded, how)
                    .await;
            }
            h.complete(result.map(|c| Loaded {
                value: c.into_value().map(|a| a as Arc<dyn Any + Send + Sync>),
                source: Source::Computed,
            }));
            if let Some(p) = prepared {
                let _ = cache
                    .write_entry(&key, p.entry, p.tiers.without(local), p.decoded, how)
                    .await;
            }
            if let (Some(t), Some((lock, _))) = (token, &cache.inner.lock) {
                let _ = lock.unlock(&key, t).await;
            }
        });
    }
}

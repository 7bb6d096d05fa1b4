//! Get-or-compute: the typed entry points and the orchestration of one load — local tiers
//! for every caller, then one leader per key (single flight) reads the shared tiers, takes the
//! cross-instance lock ([`lock`]) and starts the loader ([`leader`]); stale copies answer
//! failures; [`refresh`] starts loads ahead of expiry.

mod leader;
mod lock;
mod refresh;

use std::future::Future;
use std::sync::Arc;

use layercake_core::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::{Cache, WriteOptions};
use crate::flight::{AnyValue, Loaded, Role};
use crate::key_input::IntoKey;
use crate::lookup::{Lookup, Source};
use crate::options::Computed;
use crate::read::L1Fast;
use crate::stats::Op;
use crate::telemetry::Outcome;
use crate::value::{Value, downcast_value};
use lock::LockWait;

/// A load that must produce a value: `None` (impossible for these loaders) is an error.
fn required<T>(l: Result<Lookup<Option<Arc<T>>>>) -> Result<Lookup<Arc<T>>> {
    let l = l?;
    match l.value {
        Some(value) => Ok(Lookup {
            value,
            source: l.source,
        }),
        None => Err(Error::loader("the loader returned no value")),
    }
}

/// The loader's error as the cause of a `Loader` error, so that
/// [`Error::loader_error`] gives it back typed.
pub(crate) fn loader_error<E: Into<Box<dyn std::error::Error + Send + Sync>>>(e: E) -> Error {
    let boxed: Box<dyn std::error::Error + Send + Sync> = e.into();
    Error::loader("the loader failed").with_shared_source(Arc::from(boxed))
}
impl Cache {
    // ---------------------------------------------------------------- get-or-compute

    /// Read a value, or compute it with `loader` once for all concurrent callers and write it
    /// to the tiers.
    ///
    /// - a fresh hit returns at once; past the policy's refresh-ahead threshold it also starts
    ///   one background refresh with this `loader`;
    /// - on a miss, one caller per key runs the loader (in its own task: cancelling a caller
    ///   does not cancel the load); the others get [`Source::Coalesced`];
    /// - when the loader fails, panics or passes the soft timeout and a stale copy exists
    ///   (within the policy's stale window), the stale copy is served ([`Source::Stale`]);
    /// - the hard timeout ends the load with a `Timeout` error.
    pub async fn get_or_compute<T, F, Fut, E>(
        &self,
        key: impl IntoKey,
        loader: F,
    ) -> Result<Lookup<Arc<T>>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<T, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        self.get_or_compute_with(key, &WriteOptions::default(), loader)
            .await
    }

    /// [`get_or_compute`](Cache::get_or_compute) with tags / TTL for the computed value.
    pub async fn get_or_compute_with<T, F, Fut, E>(
        &self,
        key: impl IntoKey,
        opts: &WriteOptions,
        loader: F,
    ) -> Result<Lookup<Arc<T>>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<T, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        let load = move || async move { loader().await.map(|v| Computed::new(Some(v))) };
        required(self.compute(key, opts, false, load).await)
    }

    /// [`get_or_compute`](Cache::get_or_compute) whose loader decides, from its result, how
    /// long the value lives or whether it is cached at all ([`Computed`]): an HTTP response's
    /// `max-age`, an answer that must not be kept long, an error page not to keep.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> layercake::Result<()> {
    /// use layercake::{Cache, Computed, MemoryBackend, Source};
    /// use std::time::Duration;
    /// let cache = Cache::builder("docs").tier(MemoryBackend::with_max_bytes(1 << 20)?).build()?;
    /// let page = cache
    ///     .get_or_compute_adaptive("page", || async {
    ///         let (body, max_age) = ("<html>".to_string(), 30); // e.g. from Cache-Control
    ///         Ok::<_, std::io::Error>(Computed::new(body).ttl(Duration::from_secs(max_age)))
    ///     })
    ///     .await?;
    /// assert_eq!(page.source, Source::Computed);
    /// let hit = cache.get_with_meta::<String>("page").await?.unwrap();
    /// assert_eq!(hit.ttl(), Duration::from_secs(30));
    /// # Ok(()) }
    /// ```
    pub async fn get_or_compute_adaptive<T, F, Fut, E>(
        &self,
        key: impl IntoKey,
        loader: F,
    ) -> Result<Lookup<Arc<T>>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<Computed<T>, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        let load = move || async move { loader().await.map(|c| c.map(Some)) };
        required(
            self.compute(key, &WriteOptions::default(), false, load)
                .await,
        )
    }

    /// Like [`get_or_compute`](Cache::get_or_compute) for loaders that may find nothing:
    /// `None` results are cached as negative entries for the policy's negative TTL
    /// ([`PolicyExt::negative_ttl`](layercake_core::PolicyExt::negative_ttl)).
    pub async fn get_or_compute_optional<T, F, Fut, E>(
        &self,
        key: impl IntoKey,
        loader: F,
    ) -> Result<Lookup<Option<Arc<T>>>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<Option<T>, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        let load = move || async move { loader().await.map(Computed::new) };
        self.compute(key, &WriteOptions::default(), true, load)
            .await
    }

    pub(crate) async fn compute<T, F, Fut, E>(
        &self,
        key: impl IntoKey,
        opts: &WriteOptions,
        accept_negative: bool,
        loader: F,
    ) -> Result<Lookup<Option<Arc<T>>>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<Computed<Option<T>>, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        let tel = &self.inner.telemetry;
        let scope = tel.start(Op::GetOrCompute);
        let key = match key.into_key(&*self.keys) {
            Ok(k) => k,
            Err(e) => {
                tel.finish(scope, Outcome::Error);
                return Err(e);
            }
        };
        self.inner.insight.read(&key);
        let now = self.inner.clock.now();
        let n = self.inner.tiers.len();
        let local = self.inner.local_tiers();
        let usable = |v: &Value<T>| accept_negative || matches!(v, Value::Some(_));
        // 1. Every caller reads the in-process tiers: the memory L1 synchronously when it can.
        let mut loader = Some(loader);
        let first = match self.l1_fast::<T>(&key, now) {
            L1Fast::Hit(entry, value) if usable(&value) => {
                tel.hit(&scope, 0);
                self.refresh_if_due(&key, &entry, now, opts, &mut loader, &scope);
                tel.finish(scope, Outcome::Hit);
                return Ok(Lookup {
                    value: value.into_option(),
                    source: Source::Hit { tier: 0 },
                });
            }
            L1Fast::Absent => {
                tel.miss(&scope, 0);
                self.inner.insight.missed(0, &key, now);
                1
            }
            L1Fast::Hit(..) | L1Fast::Other => 0,
        };
        let read = self.read_typed::<T>(&key, now, &scope, first..local).await;
        let snap = read.snap;
        if let Some(f) = read.fresh
            && usable(&f.value)
        {
            self.refresh_if_due(&key, &f.entry, now, opts, &mut loader, &scope);
            tel.finish(scope, Outcome::Hit);
            return Ok(Lookup {
                value: f.value.into_option(),
                source: Source::Hit { tier: f.tier },
            });
        }
        let mut stale: Option<AnyValue> = read
            .stale
            .map(|s| s.value)
            .filter(|v| usable(v))
            .map(Value::into_any);
        // 2. One caller per key reads the shared tiers and, on a miss there, starts the
        //    loader; the others wait for it. A leader cancelled during its read abandons the
        //    flight, and a waiter leads again.
        let (result, waiter, leader) = loop {
            let (waiter, leader) = match self.inner.flights.join(&key) {
                Role::Leader(h) => {
                    // Taken before the shared tiers are read: a write or removal of the key
                    // after this point, anywhere, is newer than the value this load fills.
                    let version = self.inner.versions.next();
                    let remote = self.read_typed::<T>(&key, now, &scope, local..n).await;
                    if let Some(f) = remote.fresh
                        && usable(&f.value)
                    {
                        let source = Source::Hit { tier: f.tier };
                        h.complete(Ok(Loaded {
                            value: f.value.clone().into_any(),
                            source,
                        }));
                        tel.finish(scope, Outcome::Hit);
                        return Ok(Lookup {
                            value: f.value.into_option(),
                            source,
                        });
                    }
                    tel.full_miss();
                    if stale.is_none() {
                        stale = remote
                            .stale
                            .map(|s| s.value)
                            .filter(|v| usable(v))
                            .map(Value::into_any);
                    }
                    if let Some(s) = &stale {
                        h.offer_stale(s.clone());
                    }
                    let Some(l) = loader.take() else {
                        return Err(Error::loader("internal: loader already used"));
                    };
                    let token = match &self.inner.lock {
                        Some((lock, lo)) => {
                            match self
                                .lock_or_wait::<T>(lock, lo, &key, &scope, local, accept_negative)
                                .await
                            {
                                LockWait::Held(t) => Some(t),
                                LockWait::Proceed => None,
                                LockWait::Found(f) => {
                                    let source = Source::Hit { tier: f.tier };
                                    h.complete(Ok(Loaded {
                                        value: f.value.clone().into_any(),
                                        source,
                                    }));
                                    tel.finish(scope, Outcome::Hit);
                                    return Ok(Lookup {
                                        value: f.value.into_option(),
                                        source,
                                    });
                                }
                            }
                        }
                        None => None,
                    };
                    let w = h.waiter.clone();
                    self.spawn_load(
                        h,
                        key.clone(),
                        opts.clone(),
                        token,
                        snap,
                        version,
                        scope.in_span(l),
                    );
                    (w, true)
                }
                Role::Follower(w) => (w, false),
            };
            match self.await_flight(&waiter, stale.is_some()).await {
                Some(r) => break (r, waiter, leader),
                None if leader => {
                    break (
                        Err(Error::loader("the load task ended without a result")),
                        waiter,
                        leader,
                    );
                }
                None => continue,
            }
        };
        let stale = stale.or_else(|| waiter.stale());
        let out = match result {
            Ok(loaded) => downcast_value::<T>(loaded.value).map(|value| {
                let source = match loaded.source {
                    Source::Computed if !leader => {
                        tel.coalesced();
                        Source::Coalesced
                    }
                    s => s,
                };
                Lookup { value, source }
            }),
            Err(e) => match stale {
                Some(s) => {
                    tel.stale_served();
                    downcast_value::<T>(s).map(|value| Lookup {
                        value,
                        source: Source::Stale,
                    })
                }
                None => Err(e),
            },
        };
        let outcome = match &out {
            Ok(l) => match l.source {
                Source::Computed => Outcome::Computed,
                Source::Coalesced => Outcome::Coalesced,
                Source::Stale => Outcome::Stale,
                Source::Hit { .. } => Outcome::Hit,
            },
            Err(_) => Outcome::Error,
        };
        tel.finish(scope, outcome);
        out
    }
}

//! A tier at run time: its backend, timeouts, breaker and write mode.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use layercake_core::{Backend, Capability, Error, Reach, Result};

use crate::breaker::{Breaker, BreakerConfig, Permit};
use crate::telemetry::{Telemetry, TierRead};
use crate::write_behind::WriteBehind;

/// The memory backend, whose synchronous methods the composer uses for in-process tiers.
#[cfg(feature = "memory")]
pub(crate) use layercake_memory::MemoryBackend as MemoryTier;

/// Without the `memory` feature there is no memory backend: an uninhabited stand-in.
#[cfg(not(feature = "memory"))]
#[derive(Debug)]
pub(crate) enum MemoryTier {}

#[cfg(not(feature = "memory"))]
impl MemoryTier {
    pub(crate) fn get_shared_at(
        &self,
        _key: &layercake_core::Key,
        _now: layercake_core::Timestamp,
    ) -> Option<std::sync::Arc<layercake_core::Entry>> {
        match *self {}
    }
    pub(crate) fn set_sync(
        &self,
        _key: &layercake_core::Key,
        _entry: &layercake_core::Entry,
    ) -> Result<()> {
        match *self {}
    }
    pub(crate) fn delete_sync(&self, _key: &layercake_core::Key) {
        match *self {}
    }
}

/// Which instances see a tier's entries; decides what the backplane invalidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scope {
    /// Only this process (memory): backplane messages drop entries here.
    Process,
    /// Every process on this host (a local directory): backplane messages drop entries here
    /// too, since other hosts do not share it.
    Host,
    /// Every instance (Redis, PostgreSQL): written once, seen by all; never invalidated by
    /// backplane messages.
    Shared,
}

/// How writes reach a tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteMode {
    /// `set` waits for the tier.
    Through,
    /// `set` enqueues the write in a bounded queue of this capacity, drained in order by a
    /// background task and flushed by [`Cache::shutdown`](crate::Cache::shutdown); when the
    /// queue is full the write is done in line (back-pressure, nothing dropped). Deletes and
    /// invalidations go through the same queue, in order, and wait for completion.
    Behind {
        /// Queue capacity.
        capacity: usize,
    },
}

/// Per-tier options given to the builder.
///
/// Defaults depend on the backend kind: a `memory` tier has no timeout and no breaker (it
/// cannot hang or be down); other tiers get a 250 ms read timeout, a 1 s write timeout and the
/// default [`BreakerConfig`] (3 failures, 1 s open).
#[derive(Debug, Clone)]
pub struct TierOptions {
    pub(crate) name: Option<String>,
    pub(crate) read_timeout: Option<Option<Duration>>,
    pub(crate) write_timeout: Option<Option<Duration>>,
    pub(crate) breaker: Option<Option<BreakerConfig>>,
    pub(crate) write_mode: WriteMode,
    pub(crate) scope: Option<Scope>,
    pub(crate) max_ttl: Option<Duration>,
}

impl Default for TierOptions {
    fn default() -> Self {
        TierOptions {
            name: None,
            read_timeout: None,
            write_timeout: None,
            breaker: None,
            write_mode: WriteMode::Through,
            scope: None,
            max_ttl: None,
        }
    }
}

impl TierOptions {
    /// Options with the defaults for the backend kind.
    pub fn new() -> TierOptions {
        TierOptions::default()
    }
    /// The tier's name in stats, metrics and errors (default `l1`, `l2`, … by position).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Timeout of reads (`None` = no timeout).
    pub fn read_timeout(mut self, t: Option<Duration>) -> Self {
        self.read_timeout = Some(t);
        self
    }
    /// Timeout of writes, deletes and invalidations (`None` = no timeout).
    pub fn write_timeout(mut self, t: Option<Duration>) -> Self {
        self.write_timeout = Some(t);
        self
    }
    /// Circuit breaker (`None` = no breaker).
    pub fn breaker(mut self, b: Option<BreakerConfig>) -> Self {
        self.breaker = Some(b);
        self
    }
    /// Write mode (default [`WriteMode::Through`]).
    pub fn write_mode(mut self, m: WriteMode) -> Self {
        self.write_mode = m;
        self
    }
    /// Keep copies in this tier for at most `ttl` (fresh and stale time together), whatever
    /// the policy says — e.g. L1 for a minute while Redis keeps the value for an hour. Applies
    /// to writes and promotions; never extends a lifetime.
    pub fn max_ttl(mut self, ttl: Duration) -> Self {
        self.max_ttl = Some(ttl);
        self
    }
    /// Scope (default: from the backend's [`Capability::reach`](layercake_core::Capability::reach):
    /// `Process` for in-process, `Host` for host-local, `Shared` for shared backends).
    pub fn scope(mut self, s: Scope) -> Self {
        self.scope = Some(s);
        self
    }
}

/// A configured tier.
#[derive(Debug)]
pub(crate) struct Tier {
    pub(crate) name: Arc<str>,
    pub(crate) position: usize,
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) kind: &'static str,
    pub(crate) capability: Capability,
    pub(crate) read_timeout: Option<Duration>,
    /// The timer armed around `get`: `read_timeout`, unless the backend bounds its `get` by
    /// itself within it ([`Capability::get_timeout`]).
    pub(crate) get_timer: Option<Duration>,
    pub(crate) write_timeout: Option<Duration>,
    /// The timer armed around `set`: `write_timeout`, unless the backend bounds its `set` by
    /// itself within it ([`Capability::set_timeout`]).
    pub(crate) set_timer: Option<Duration>,
    pub(crate) breaker: Option<Breaker>,
    pub(crate) scope: Scope,
    pub(crate) max_ttl: Option<Duration>,
    pub(crate) write_behind: Option<WriteBehind>,
}

/// Releases a half-open probe that ended without a verdict (the caller was cancelled).
struct ProbeGuard<'a> {
    breaker: Option<&'a Breaker>,
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if let Some(b) = self.breaker {
            b.release_probe();
        }
    }
}

impl Tier {
    pub(crate) fn new(position: usize, backend: Arc<dyn Backend>, opts: TierOptions) -> Tier {
        let kind = backend.kind();
        let capability = backend.capability();
        // Defaults follow from who sees the tier's entries, never from its kind name: an
        // in-process tier does no I/O (no timer, no breaker).
        let in_process = capability.reach == Reach::InProcess;
        let default_read = if in_process {
            None
        } else {
            Some(Duration::from_millis(250))
        };
        let default_write = if in_process {
            None
        } else {
            Some(Duration::from_secs(1))
        };
        let default_breaker = if in_process {
            None
        } else {
            Some(BreakerConfig::default())
        };
        let scope = opts.scope.unwrap_or(match capability.reach {
            Reach::InProcess => Scope::Process,
            Reach::HostLocal => Scope::Host,
            Reach::Shared => Scope::Shared,
        });
        Tier {
            name: Arc::from(opts.name.unwrap_or_else(|| format!("l{}", position + 1))),
            position,
            capability,
            kind,
            backend,
            read_timeout: opts.read_timeout.unwrap_or(default_read),
            get_timer: own_timer(
                opts.read_timeout.unwrap_or(default_read),
                capability.get_timeout,
            ),
            write_timeout: opts.write_timeout.unwrap_or(default_write),
            set_timer: own_timer(
                opts.write_timeout.unwrap_or(default_write),
                capability.set_timeout,
            ),
            breaker: opts.breaker.unwrap_or(default_breaker).map(Breaker::new),
            scope,
            max_ttl: opts.max_ttl,
            write_behind: None,
        }
    }

    /// The tier as a memory backend, when it is one (for synchronous reads and writes).
    #[inline]
    pub(crate) fn memory(&self) -> Option<&MemoryTier> {
        self.backend.as_any()?.downcast_ref::<MemoryTier>()
    }

    /// Whether the tier is currently skipped by its breaker (without taking a probe).
    pub(crate) fn is_open(&self) -> bool {
        self.breaker
            .as_ref()
            .is_some_and(|b| b.state() == crate::breaker::BreakerState::Open)
    }

    /// Run one operation against the tier with its timeout and breaker; errors are tagged
    /// with the tier and counted.
    pub(crate) async fn call<T, F>(&self, telemetry: &Telemetry, write: bool, fut: F) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        let timeout = if write {
            self.write_timeout
        } else {
            self.read_timeout
        };
        self.call_within(telemetry, Call::Other { write }, timeout, fut)
            .await
    }

    /// The tier's `get` of `key` for a read, through [`call`](Tier::call) with the `get`
    /// timer; a failure or a skip is counted by the caller
    /// ([`Telemetry::read_failed`](crate::telemetry::Telemetry::read_failed)), which knows the
    /// operation.
    pub(crate) async fn get(
        &self,
        telemetry: &Telemetry,
        key: &layercake_core::Key,
    ) -> Result<Option<layercake_core::Entry>> {
        let start = telemetry.tier_read_start(self.in_process());
        let read = self.backend.get(key);
        let r = self
            .call_within(telemetry, Call::Lookup, self.get_timer, read)
            .await;
        telemetry.tier_read_done(self.position, start, TierRead::of(&r, Option::is_some));
        r
    }

    /// The tier's `set` of `key` through [`call`](Tier::call) with the `set` timer.
    pub(crate) async fn set(
        &self,
        telemetry: &Telemetry,
        key: &layercake_core::Key,
        entry: &layercake_core::Entry,
    ) -> Result<()> {
        let write = self.backend.set(key, entry);
        self.call_within(
            telemetry,
            Call::Other { write: true },
            self.set_timer,
            write,
        )
        .await
    }

    fn in_process(&self) -> bool {
        self.capability.reach == layercake_core::Reach::InProcess
    }

    /// The tier's `get_many` of `keys` for a read: like [`get`](Tier::get), the caller
    /// counts a failure ([`Telemetry::read_failed`]).
    pub(crate) async fn get_many(
        &self,
        telemetry: &Telemetry,
        keys: &[layercake_core::Key],
    ) -> Result<Vec<Option<layercake_core::Entry>>> {
        let start = telemetry.tier_read_start(self.in_process());
        let read = self.backend.get_many(keys);
        let r = self
            .call_within(telemetry, Call::Lookup, self.read_timeout, read)
            .await;
        let found = |v: &Vec<Option<layercake_core::Entry>>| v.iter().any(Option::is_some);
        telemetry.tier_read_done(self.position, start, TierRead::of(&r, found));
        r
    }

    /// [`call`](Tier::call) with an explicit timeout.
    async fn call_within<T, F>(
        &self,
        telemetry: &Telemetry,
        call: Call,
        timeout: Option<Duration>,
        fut: F,
    ) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        let permit = match &self.breaker {
            Some(b) => b.permit(),
            None => Permit::Pass,
        };
        if permit == Permit::Reject {
            if call != Call::Lookup {
                telemetry.skipped(self.position);
            }
            return Err(Error::new(
                layercake_core::ErrorKind::CircuitOpen,
                "circuit breaker open; tier skipped",
            )
            .with_tier(self.name.clone())
            .with_backend(self.kind));
        }
        let mut guard = ProbeGuard {
            breaker: if permit == Permit::Probe {
                self.breaker.as_ref()
            } else {
                None
            },
        };
        let res = match timeout {
            Some(t) => match tokio::time::timeout(t, fut).await {
                Ok(r) => r,
                Err(_) => Err(Error::timeout(format!(
                    "{} did not answer within {t:?}",
                    if call == (Call::Other { write: true }) {
                        "write"
                    } else {
                        "read"
                    }
                ))),
            },
            None => fut.await,
        };
        guard.breaker = None;
        match res {
            Ok(v) => {
                if let Some(b) = &self.breaker
                    && let Some(s) = b.success(permit == Permit::Probe)
                {
                    telemetry.breaker_changed(self.position, s);
                }
                Ok(v)
            }
            Err(e) => {
                let e = if e.tier().is_none() {
                    e.with_tier(self.name.clone())
                } else {
                    e
                };
                let e = if e.backend().is_none() {
                    e.with_backend(self.kind)
                } else {
                    e
                };
                if call != Call::Lookup {
                    telemetry.error(self.position, &e);
                }
                if let Some(b) = &self.breaker {
                    if e.is_temporary() {
                        if let Some(s) = b.failure(permit == Permit::Probe) {
                            telemetry.breaker_changed(self.position, s);
                        }
                    } else if permit == Permit::Probe {
                        // A permanent error still proves the tier answers.
                        if let Some(s) = b.success(true) {
                            telemetry.breaker_changed(self.position, s);
                        }
                    }
                }
                Err(e)
            }
        }
    }
}

/// What a tier call is, for counting: a read's lookup is counted by its caller (which knows
/// the operation), anything else here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Lookup,
    Other { write: bool },
}

/// The timer the composer arms around a tier's `get` (or `set`): none when the backend's own
/// bound for the call is within the tier's read (or write) timeout.
fn own_timer(timeout: Option<Duration>, backend_bound: Option<Duration>) -> Option<Duration> {
    match (timeout, backend_bound) {
        (Some(t), Some(b)) if b <= t => None,
        (t, _) => t,
    }
}

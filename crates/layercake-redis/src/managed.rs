//! [`Managed`]: the multiplexed connection of [`ConnectionMode::Multiplexed`], a redis-rs
//! `ConnectionManager` that is replaced by a fresh one once a request on it timed out.
//!
//! The manager reconnects by itself after connection-level errors, but not after a timeout: a
//! timed-out request keeps its reply slot, so after lost replies every later reply would be
//! matched to an older request and the connection would time out forever (see
//! [`Lease`](crate::lease::Lease)).
//!
//! The current manager sits in an [`ArcSwap`]: a request reads it without taking a lock or
//! touching the slot's reference count, clones the manager handle (as every caller of
//! redis-rs clones its connection) and lets go of the slot at once. A request that must break
//! its manager names it by generation. Holding the slot for the whole round trip instead
//! holds one arc-swap guard per request in flight, and past a few per thread arc-swap falls
//! back to a slower path (~80 ns per request at 64 in flight, in a profile).
//!
//! [`ConnectionMode::Multiplexed`]: crate::ConnectionMode::Multiplexed

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use layercake_core::Result;
use redis::Client;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::error::map_err;

/// One connection manager, its generation and whether it must be replaced.
struct Slot {
    manager: ConnectionManager,
    generation: u64,
    broken: AtomicBool,
}

impl Slot {
    fn new(manager: ConnectionManager, generation: u64) -> Arc<Slot> {
        Arc::new(Slot {
            manager,
            generation,
            broken: AtomicBool::new(false),
        })
    }
}

/// A request's claim to break the manager of one generation (see [`Lease`](crate::lease::Lease)).
#[derive(Clone, Copy)]
pub(crate) struct Generation<'a> {
    managed: &'a Managed,
    generation: u64,
}

impl crate::lease::Breakable for Generation<'_> {
    fn mark_broken(&self) {
        let cur = self.managed.current.load();
        // A manager already replaced stays replaced; the new one is not this request's.
        if cur.generation == self.generation {
            cur.broken.store(true, Ordering::Relaxed);
        }
    }
}

/// A replaceable connection manager.
///
/// Contract:
/// - [`current`](Managed::current) hands out the live manager; once its `broken` flag is set,
///   the next call replaces it (exactly once, whatever the number of concurrent callers) by a
///   lazily connecting manager, so a broken manager never serves another request;
/// - the replacement is synchronous and never waits on the network (the new manager connects
///   on its first request, within the connect timeout): callers are blocked only for the
///   swap itself;
/// - requests still running on a replaced manager keep it alive until they finish; it closes
///   its socket when the last of them drops it.
pub(crate) struct Managed {
    client: Client,
    config: ConnectionManagerConfig,
    current: ArcSwap<Slot>,
    /// Serializes replacements, so a broken manager is replaced once.
    replacing: Mutex<()>,
}

impl Managed {
    /// Wrap a connected `manager` built from `client` and `config`.
    pub(crate) fn new(
        client: Client,
        config: ConnectionManagerConfig,
        manager: ConnectionManager,
    ) -> Managed {
        Managed {
            client,
            config,
            current: ArcSwap::new(Slot::new(manager, 0)),
            replacing: Mutex::new(()),
        }
    }

    /// The manager to send the next request on (the current one, or a fresh one if it broke),
    /// and the generation that names it.
    pub(crate) fn current(&self) -> Result<(ConnectionManager, Generation<'_>)> {
        {
            let cur = self.current.load();
            if !cur.broken.load(Ordering::Relaxed) {
                return Ok((cur.manager.clone(), self.generation(cur.generation)));
            }
        }
        let _one = self
            .replacing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Another caller may have replaced it while this one waited for the lock.
        let cur = self.current.load_full();
        if !cur.broken.load(Ordering::Relaxed) {
            return Ok((cur.manager.clone(), self.generation(cur.generation)));
        }
        let manager =
            ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone())
                .map_err(map_err)?;
        let generation = cur.generation + 1;
        self.current.store(Slot::new(manager.clone(), generation));
        Ok((manager, self.generation(generation)))
    }

    fn generation(&self, generation: u64) -> Generation<'_> {
        Generation {
            managed: self,
            generation,
        }
    }
}

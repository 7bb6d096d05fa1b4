//! [`Managed`]: the multiplexed connection of [`ConnectionMode::Multiplexed`], a redis-rs
//! `ConnectionManager` that is replaced by a fresh one once a request on it timed out.
//!
//! The manager reconnects by itself after connection-level errors, but not after a timeout: a
//! timed-out request keeps its reply slot, so after lost replies every later reply would be
//! matched to an older request and the connection would time out forever (see
//! [`Lease`](crate::lease::Lease)).
//!
//! The current manager sits in an [`ArcSwap`]: a request reads it without taking a lock or
//! touching a shared reference count (both cost a contended atomic per request at 64 in
//! flight), and holds that read for its whole round trip.
//!
//! [`ConnectionMode::Multiplexed`]: crate::ConnectionMode::Multiplexed

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::{ArcSwap, Guard};
use layercake_core::Result;
use redis::Client;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::error::map_err;

/// One connection manager and whether it must be replaced.
pub(crate) struct Slot {
    pub(crate) manager: ConnectionManager,
    pub(crate) broken: AtomicBool,
}

impl Slot {
    fn new(manager: ConnectionManager) -> Arc<Slot> {
        Arc::new(Slot {
            manager,
            broken: AtomicBool::new(false),
        })
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
            current: ArcSwap::new(Slot::new(manager)),
            replacing: Mutex::new(()),
        }
    }

    /// The manager to send the next request on: the current one, or a fresh one if it broke.
    pub(crate) fn current(&self) -> Result<Guard<Arc<Slot>>> {
        let cur = self.current.load();
        if !cur.broken.load(Ordering::Relaxed) {
            return Ok(cur);
        }
        drop(cur);
        let _one = self
            .replacing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Another caller may have replaced it while this one waited for the lock.
        if self.current.load().broken.load(Ordering::Relaxed) {
            let manager =
                ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone())
                    .map_err(map_err)?;
            self.current.store(Slot::new(manager));
        }
        Ok(self.current.load())
    }
}

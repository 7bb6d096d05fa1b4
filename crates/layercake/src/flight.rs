//! Single flight: at most one remote read-through and one loader run per key per process at a
//! time.
//!
//! The first caller on a miss becomes the leader: it reads the shared tiers once and, on a
//! miss there, starts the loader in its own task — so a caller that is cancelled does not
//! cancel the load for the others, and a panicking loader is caught and reported to every
//! waiter as a [`Loader`](layercake_core::ErrorKind::Loader) error. A leader cancelled before
//! it handed over (during its read) abandons the flight: the waiters notice and one of them
//! leads again. The flight leaves the map when it completes or is abandoned, so the next call
//! starts afresh.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use layercake_core::{Key, Result, Selector};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::lookup::Source;

/// A type-erased value (`None` = a negative result).
pub(crate) type AnyValue = Option<Arc<dyn Any + Send + Sync>>;

/// What a flight produced: the value and where it came from (a hit at a shared tier, a
/// computation, or a stale copy served by fail-safe).
#[derive(Clone)]
pub(crate) struct Loaded {
    pub(crate) value: AnyValue,
    pub(crate) source: Source,
}

/// A flight's shared result.
pub(crate) type Shared = Result<Loaded>;

#[derive(Debug)]
pub(crate) struct FlightState {
    rx: watch::Receiver<Option<Shared>>,
    /// Set when the key is written, deleted or invalidated while the load runs: the loaded
    /// value must not be written to the tiers (it may be older than what was written).
    pub(crate) superseded: AtomicBool,
    /// A stale copy the leader found, for waiters whose soft timeout passes.
    stale: Mutex<Option<AnyValue>>,
    id: u64,
}

/// What a caller became.
pub(crate) enum Role {
    /// Read the shared tiers, then load, and publish through the handle.
    Leader(LeaderHandle),
    /// Wait for someone else's flight.
    Follower(Waiter),
}

/// Owned by whoever currently drives the flight (the leading caller, then the load task).
pub(crate) struct LeaderHandle {
    tx: watch::Sender<Option<Shared>>,
    pub(crate) state: Arc<FlightState>,
    flights: Arc<Flights>,
    key: Key,
    pub(crate) waiter: Waiter,
}

impl LeaderHandle {
    /// Publish the result to every waiter and remove the flight.
    pub(crate) fn complete(self, result: Shared) {
        self.flights.remove(&self.key, self.state.id);
        let _ = self.tx.send(Some(result));
    }

    /// Offer a stale copy to waiters whose soft timeout passes.
    pub(crate) fn offer_stale(&self, value: AnyValue) {
        *self.state.stale.lock() = Some(value);
    }
}

impl Drop for LeaderHandle {
    fn drop(&mut self) {
        // Completed, or abandoned (the leader was cancelled, or its task aborted): either way
        // the flight leaves the map; waiters of an abandoned flight see the sender dropped.
        self.flights.remove(&self.key, self.state.id);
    }
}

/// Waits for a flight's result.
#[derive(Clone)]
pub(crate) struct Waiter {
    rx: watch::Receiver<Option<Shared>>,
    state: Arc<FlightState>,
}

impl Waiter {
    /// The result, or `None` if the flight was abandoned without one (lead again).
    pub(crate) async fn wait(mut self) -> Option<Shared> {
        loop {
            if let Some(r) = self.rx.borrow_and_update().clone() {
                return Some(r);
            }
            if self.rx.changed().await.is_err() {
                return self.rx.borrow().clone();
            }
        }
    }

    /// The stale copy the leader offered, if any.
    pub(crate) fn stale(&self) -> Option<AnyValue> {
        self.state.stale.lock().clone()
    }
}

/// The in-flight loads of one cache.
#[derive(Debug, Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<Key, Arc<FlightState>>>,
    next: AtomicU64,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Flights {
    pub(crate) fn join(self: &Arc<Self>, key: &Key) -> Role {
        let mut map = self.map.lock();
        if let Some(f) = map.get(key) {
            return Role::Follower(Waiter {
                rx: f.rx.clone(),
                state: f.clone(),
            });
        }
        let (tx, rx) = watch::channel(None);
        let state = Arc::new(FlightState {
            rx: rx.clone(),
            superseded: AtomicBool::new(false),
            stale: Mutex::new(None),
            id: self.next.fetch_add(1, Ordering::Relaxed),
        });
        map.insert(key.clone(), state.clone());
        Role::Leader(LeaderHandle {
            tx,
            state: state.clone(),
            flights: self.clone(),
            key: key.clone(),
            waiter: Waiter { rx, state },
        })
    }

    fn remove(&self, key: &Key, id: u64) {
        let mut map = self.map.lock();
        if map.get(key).is_some_and(|f| f.id == id) {
            map.remove(key);
        }
    }

    /// Whether a load for `key` is running.
    pub(crate) fn in_flight(&self, key: &Key) -> bool {
        self.map.lock().contains_key(key)
    }

    /// Number of loads running.
    pub(crate) fn len(&self) -> usize {
        self.map.lock().len()
    }

    /// Mark the load of `key` as superseded (its result is not written).
    pub(crate) fn supersede_key(&self, key: &Key) {
        if let Some(f) = self.map.lock().get(key) {
            f.superseded.store(true, Ordering::Release);
        }
    }

    /// Mark every load matching a selector (or all, for `None`) as superseded. Tags are not
    /// known before the load finishes, so a tag selector supersedes every running load.
    pub(crate) fn supersede(&self, selector: Option<&Selector>) {
        for (k, f) in self.map.lock().iter() {
            let hit = match selector {
                Some(Selector::Prefix(p)) => k.starts_with(p),
                _ => true,
            };
            if hit {
                f.superseded.store(true, Ordering::Release);
            }
        }
    }
}

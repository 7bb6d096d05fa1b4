//! Single flight: at most one loader run per key per process at a time.
//!
//! The loader runs in its own task, so a caller that is cancelled does not cancel the load for
//! the others, and a panicking loader is caught and reported to every waiter as a
//! [`Loader`](layercake_core::ErrorKind::Loader) error; the flight is removed when the task
//! ends, whatever happens, so the next call computes again.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use layercake_core::{Error, Key, Result, Selector};
use parking_lot::Mutex;
use tokio::sync::watch;

/// A loader's shared result: the value (`None` = the loader found nothing), type-erased.
pub(crate) type Shared = Result<Option<Arc<dyn Any + Send + Sync>>>;

#[derive(Debug)]
pub(crate) struct FlightState {
    rx: watch::Receiver<Option<Shared>>,
    /// Set when the key is written, deleted or invalidated while the load runs: the loaded
    /// value must not be written to the tiers (it may be older than what was written).
    pub(crate) superseded: AtomicBool,
    id: u64,
}

/// What a caller became.
pub(crate) enum Role {
    /// Run the load and publish through the sender.
    Leader(LeaderHandle),
    /// Wait for someone else's load.
    Follower(Waiter),
}

/// Owned by the task that runs the load.
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
}

impl Drop for LeaderHandle {
    fn drop(&mut self) {
        // If the task ended without completing (aborted at runtime shutdown), waiters see the
        // sender dropped; make sure the map does not keep the flight either.
        self.flights.remove(&self.key, self.state.id);
    }
}

/// Waits for a flight's result.
#[derive(Clone)]
pub(crate) struct Waiter {
    rx: watch::Receiver<Option<Shared>>,
}

impl Waiter {
    pub(crate) async fn wait(mut self) -> Shared {
        loop {
            if let Some(r) = self.rx.borrow_and_update().clone() {
                return r;
            }
            if self.rx.changed().await.is_err() {
                if let Some(r) = self.rx.borrow().clone() {
                    return r;
                }
                return Err(Error::loader(
                    "the load ended without a result (task aborted)",
                ));
            }
        }
    }
}

/// The in-flight loads of one cache.
#[derive(Debug, Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<Key, Arc<FlightState>>>,
    next: std::sync::atomic::AtomicU64,
}

impl Flights {
    pub(crate) fn join(self: &Arc<Self>, key: &Key) -> Role {
        let mut map = self.map.lock();
        if let Some(f) = map.get(key) {
            return Role::Follower(Waiter { rx: f.rx.clone() });
        }
        let (tx, rx) = watch::channel(None);
        let state = Arc::new(FlightState {
            rx: rx.clone(),
            superseded: AtomicBool::new(false),
            id: self.next.fetch_add(1, Ordering::Relaxed),
        });
        map.insert(key.clone(), state.clone());
        Role::Leader(LeaderHandle {
            tx,
            state,
            flights: self.clone(),
            key: key.clone(),
            waiter: Waiter { rx },
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

    /// Mark the loads whose keys match as superseded (their results are not written).
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

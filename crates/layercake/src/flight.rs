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
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use layercake_core::{Key, Result, Selector};
use parking_lot::Mutex;
use tokio::sync::Notify;

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

/// A flight: its result once published, and what its waiters wait on.
///
/// The leader publishes by filling `result` and setting `ended`, or abandons by setting
/// `ended` alone, then wakes the waiters (`notify`) — only if one ever waited: a flight nobody
/// waited for (most of them: a read that finds the key in a shared tier) ends without a
/// wake-up. A waiter arms its wake-up and counts itself before it looks at `ended`, and the
/// leader sets `ended` before it reads the count (both sequentially consistent), so either
/// the waiter sees the end or the leader sees the waiter: no wake-up is missed.
#[derive(Debug)]
pub(crate) struct FlightState {
    result: Mutex<Option<Shared>>,
    ended: AtomicBool,
    notify: Notify,
    /// Waits begun on the flight (never decremented: only "none" matters).
    waiting: AtomicUsize,
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
    pub(crate) state: Arc<FlightState>,
    flights: Arc<Flights>,
    key: Key,
    pub(crate) waiter: Waiter,
}

impl LeaderHandle {
    /// Publish the result to every waiter and remove the flight.
    pub(crate) fn complete(self, result: Shared) {
        self.flights.remove(&self.key, self.state.id);
        *self.state.result.lock() = Some(result);
        self.state.end();
    }

    /// Offer a stale copy to waiters whose soft timeout passes.
    pub(crate) fn offer_stale(&self, value: AnyValue) {
        *self.state.stale.lock() = Some(value);
    }
}

impl Drop for LeaderHandle {
    fn drop(&mut self) {
        // Abandoned (the leader was cancelled, or its task aborted) unless it completed: the
        // flight leaves the map and its waiters find it ended without a result.
        if !self.state.ended.load(Ordering::Acquire) {
            self.flights.remove(&self.key, self.state.id);
            self.state.end();
        }
    }
}

impl FlightState {
    /// Mark the flight ended (its result, if any, already in place) and wake its waiters.
    fn end(&self) {
        self.ended.store(true, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.notify.notify_waiters();
        }
    }
}

/// Waits for a flight's result.
#[derive(Clone)]
pub(crate) struct Waiter {
    state: Arc<FlightState>,
}

impl Waiter {
    /// The result, or `None` if the flight was abandoned without one (lead again).
    pub(crate) async fn wait(self) -> Option<Shared> {
        loop {
            let woken = self.state.notify.notified();
            tokio::pin!(woken);
            // Armed and counted before looking: an end after this point wakes it.
            woken.as_mut().enable();
            self.state.waiting.fetch_add(1, Ordering::SeqCst);
            if self.state.ended.load(Ordering::SeqCst) {
                return self.state.result.lock().clone();
            }
            woken.await;
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
            return Role::Follower(Waiter { state: f.clone() });
        }
        let state = Arc::new(FlightState {
            result: Mutex::new(None),
            ended: AtomicBool::new(false),
            notify: Notify::new(),
            waiting: AtomicUsize::new(0),
            superseded: AtomicBool::new(false),
            stale: Mutex::new(None),
            id: self.next.fetch_add(1, Ordering::Relaxed),
        });
        map.insert(key.clone(), state.clone());
        Role::Leader(LeaderHandle {
            state: state.clone(),
            flights: self.clone(),
            key: key.clone(),
            waiter: Waiter { state },
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key::new("k").unwrap()
    }

    fn leader(flights: &Arc<Flights>) -> LeaderHandle {
        match flights.join(&key()) {
            Role::Leader(h) => h,
            Role::Follower(_) => panic!("the first caller leads"),
        }
    }

    fn follower(flights: &Arc<Flights>) -> Waiter {
        match flights.join(&key()) {
            Role::Follower(w) => w,
            Role::Leader(_) => panic!("a second caller follows"),
        }
    }

    fn loaded(n: u32) -> Shared {
        Ok(Loaded {
            value: Some(Arc::new(n)),
            source: Source::Computed,
        })
    }

    fn number(r: Option<Shared>) -> Option<u32> {
        r.and_then(|r| r.ok())
            .and_then(|l| l.value)
            .and_then(|v| v.downcast::<u32>().ok())
            .map(|v| *v)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_waiter_wakes_with_the_result_the_leader_s_own_too() {
        let flights = Arc::new(Flights::default());
        let h = leader(&flights);
        let own = tokio::spawn(h.waiter.clone().wait());
        let others: Vec<_> = (0..8)
            .map(|_| tokio::spawn(follower(&flights).wait()))
            .collect();
        tokio::task::yield_now().await;
        h.complete(loaded(7));
        assert_eq!(number(own.await.unwrap()), Some(7));
        for o in others {
            assert_eq!(number(o.await.unwrap()), Some(7));
        }
        assert_eq!(flights.len(), 0);
        // A wait begun after the end returns at once.
        assert!(matches!(flights.join(&key()), Role::Leader(_)));
    }

    #[tokio::test]
    async fn an_abandoned_flight_ends_its_waiters_without_a_result() {
        let flights = Arc::new(Flights::default());
        let h = leader(&flights);
        let w = tokio::spawn(follower(&flights).wait());
        tokio::task::yield_now().await;
        drop(h);
        assert!(w.await.unwrap().is_none(), "the waiter leads again");
        assert_eq!(flights.len(), 0);
    }

    #[tokio::test]
    async fn a_flight_nobody_waited_for_ends_quietly_and_a_late_waiter_sees_it() {
        let flights = Arc::new(Flights::default());
        let h = leader(&flights);
        let late = h.waiter.clone();
        h.complete(loaded(3));
        assert_eq!(number(late.wait().await), Some(3));
    }
}

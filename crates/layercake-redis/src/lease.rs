//! [`Lease`]: one request's hold on a connection, which marks the connection broken when the
//! request ran out of time without an answer.
//!
//! Why: on a multiplexed connection replies are matched to requests by order. A request that
//! is abandoned at the operation timeout keeps its reply slot (redis-rs's own response
//! timeout is off in the modes that use leases: the deadline is the only timer); when its bytes or its reply were lost (a middlebox swallowing traffic), every later
//! reply is matched to an older slot and the connection never answers anyone again — or,
//! worse, answers one request with another's reply. Such a connection must never be reused.
//!
//! A request cancelled by its caller before the deadline (a composer timeout shorter than the
//! backend's, a `select!`) is no sign of a lost reply: its slot is filled by its own reply as
//! usual. Breaking the connection then would only make every cancellation cost a reconnect;
//! if the reply was in fact lost, the next request on the connection times out and breaks it.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::time::Instant;

/// Something a lease can mark broken: a connection's flag, or a generation of the
/// multiplexed manager.
pub(crate) trait Breakable {
    /// Mark the connection broken: it is never used for another request.
    fn mark_broken(&self);
}

impl Breakable for &AtomicBool {
    fn mark_broken(&self) {
        self.store(true, Ordering::Relaxed);
    }
}

/// Marks `broken` when dropped at or after `deadline` without [`settle`](Lease::settle).
///
/// Contract:
/// - dropped without `settle` at or after the deadline (the operation timeout fired): the
///   connection is marked broken;
/// - dropped without `settle` before the deadline (cancelled by the caller): left as it is;
/// - `settle(true)`: marked broken; `settle(false)`: left as it is.
pub(crate) struct Lease<B: Breakable> {
    broken: Option<B>,
    deadline: Instant,
}

impl<B: Breakable> Lease<B> {
    /// A lease on the connection that `broken` marks, for a request due by `deadline`.
    pub(crate) fn new(broken: B, deadline: Instant) -> Lease<B> {
        Lease {
            broken: Some(broken),
            deadline,
        }
    }

    /// The request finished; mark the connection broken if `breaks`.
    pub(crate) fn settle(mut self, breaks: bool) {
        if let Some(b) = self.broken.take()
            && breaks
        {
            b.mark_broken();
        }
    }
}

impl<B: Breakable> Drop for Lease<B> {
    fn drop(&mut self) {
        if let Some(b) = self.broken.take()
            && Instant::now() >= self.deadline
        {
            b.mark_broken();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_lease_abandoned_at_its_deadline_breaks_the_connection() {
        let flag = Arc::new(AtomicBool::new(false));
        let later = Instant::now() + Duration::from_secs(60);
        Lease::new(&*flag, later).settle(false);
        assert!(!flag.load(Ordering::Relaxed), "answered");
        drop(Lease::new(&*flag, later));
        assert!(!flag.load(Ordering::Relaxed), "cancelled by the caller");
        drop(Lease::new(&*flag, Instant::now()));
        assert!(flag.load(Ordering::Relaxed), "abandoned at the deadline");
        let flag = Arc::new(AtomicBool::new(false));
        Lease::new(&*flag, later).settle(true);
        assert!(flag.load(Ordering::Relaxed), "settled as broken");
    }
}

//! [`Coalescer`]: single-key `GET`s that arrive while many others are in flight are sent
//! together as one `MGET`.
//!
//! Why: at many requests in flight the client's CPU, not Redis, bounds the throughput, and
//! most of a request's cost is per command (building it, handing it to the connection's
//! driver task, matching and parsing its reply, waking its caller). One `MGET` of 64 keys
//! costs the client far less than 64 `GET`s. See decision 0007.
//!
//! How:
//! - a `GET` that finds fewer than `direct_max` lone `GET`s in flight is sent at once: at a
//!   few requests in flight nothing waits, and the multiplexed connection pipelines them
//!   anyway (see [`DEFAULT_DIRECT_MAX`] for why the default is 16, not 1);
//! - otherwise it joins a queue. The first one to join an empty queue wakes the flusher (a
//!   task spawned on demand, which ends once the queue is empty and its batches are answered);
//!   the flusher takes the whole queue (up to `batch_size` keys) as one `MGET`, with up to
//!   [`BATCHES_IN_FLIGHT`] batches on the wire at once;
//! - every caller keeps its own deadline, without a timer of its own: a batch is due by the
//!   earliest deadline among its callers (and breaks its connection when it runs out of time,
//!   see [`Lease`](crate::lease::Lease)), so each caller has its reply, or a `Timeout`, by its
//!   deadline. Callers queue in the order of their deadlines (all are one operation timeout
//!   after the call), so a queued caller waits at most until the batches on the wire are due,
//!   which is before its own deadline; one whose deadline passed in the queue is answered
//!   `Timeout` without being sent, and one that gave up (dropped its call) is left out.
//!
//! One difference from a lone `GET`: `MGET` answers nil for a key that holds another type,
//! so a coalesced read of such a key is a plain miss; a lone `GET` reports it as corrupt and
//! removes it. Either way the next write replaces it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use layercake_core::{Error, Key, Result};
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::conn::Redis;
use crate::error::{BACKEND, op_timeout};
use crate::keys::Layout;

/// Lone `GET`s a multiplexed connection keeps in flight before further ones are coalesced
/// (`RedisConfig::coalesce_after`'s default in that mode).
///
/// Measured side by side on a 2-vCPU VM (docs/benchmarks.md, session 11) against coalescing
/// from the second `GET` on: with 16 tasks on a two-worker runtime, the hand-written
/// comparison's uniform workload (most reads going to Redis) ran 1.35–1.45× the glue instead
/// of 1.28–1.37×, and `RedisBackend::get` at 64 in flight on one thread cost 0.76–0.81× a raw
/// `GET` instead of 0.90–1.01×. Coalescing early kept at most one lone `GET` and two batches
/// on the wire: the callers queued behind a round trip while the CPU idled. Never coalescing
/// (every `GET` alone) cost 1.12–1.19× at 64 in flight. In pool mode the default stays 1:
/// there 16 measured slower at 64 in flight, and 4 or 8 the same as 1.
pub(crate) const DEFAULT_DIRECT_MAX: usize = 16;

/// Batches one flusher keeps on the wire at once. One leaves the connection idle while a
/// batch's reply is parsed and its callers run; more than two gained nothing in a probe.
pub(crate) const BATCHES_IN_FLIGHT: usize = 2;

/// What a `GET` returns: the stored bytes, if any.
pub(crate) type Fetched = Result<Option<Vec<u8>>>;

/// One queued `GET`.
struct Waiter {
    key: Key,
    deadline: Instant,
    reply: oneshot::Sender<Fetched>,
}

#[derive(Default)]
struct Queue {
    waiters: Vec<Waiter>,
    /// Whether a flusher task is running (it drains the queue before it ends).
    flushing: bool,
}

/// Joins concurrent `GET`s into `MGET`s.
///
/// Contract:
/// - [`get`](Coalescer::get) returns exactly what a `GET` of the key would (bytes or nil),
///   except that a key of another type reads as nil;
/// - it returns by `deadline` (give or take the runtime's scheduling), with a `Timeout` error
///   if the reply has not come by then;
/// - a failed `MGET` fails every caller in it with the same error.
pub(crate) struct Coalescer {
    redis: Redis,
    layout: Layout,
    batch_size: usize,
    op_timeout: std::time::Duration,
    /// Lone `GET`s allowed in flight before further ones join the queue (at least 1:
    /// `RedisConfig::validate` refuses 0).
    direct_max: usize,
    queue: Mutex<Queue>,
    wake: Notify,
    /// Lone `GET`s in flight.
    direct: AtomicUsize,
    /// `GET`s answered through an `MGET`.
    coalesced: AtomicU64,
}

/// Whether the caller sends its own `GET` (the returned guard counts it as in flight) or
/// must join the queue.
pub(crate) enum Route<'a> {
    /// Send a lone `GET`; drop the guard when it is answered.
    Direct(DirectGuard<'a>),
    /// Join the queue with [`Coalescer::join`].
    Join,
}

/// Counts one lone `GET` as in flight until dropped.
pub(crate) struct DirectGuard<'a>(&'a AtomicUsize);

impl Drop for DirectGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Coalescer {
    pub(crate) fn new(
        redis: Redis,
        layout: Layout,
        batch_size: usize,
        op_timeout: std::time::Duration,
        direct_max: usize,
    ) -> Coalescer {
        Coalescer {
            redis,
            layout,
            batch_size,
            op_timeout,
            direct_max,
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            direct: AtomicUsize::new(0),
            coalesced: AtomicU64::new(0),
        }
    }

    /// `GET`s answered through an `MGET` so far.
    pub(crate) fn coalesced(&self) -> u64 {
        self.coalesced.load(Ordering::Relaxed)
    }

    /// Whether the next `GET` goes alone (fewer than `direct_max` lone `GET`s in flight, or
    /// no runtime to run a flusher on) or joins the queue.
    pub(crate) fn route(&self) -> Route<'_> {
        if self.direct.fetch_add(1, Ordering::Relaxed) < self.direct_max
            || tokio::runtime::Handle::try_current().is_err()
        {
            return Route::Direct(DirectGuard(&self.direct));
        }
        self.direct.fetch_sub(1, Ordering::Relaxed);
        Route::Join
    }

    /// Queue a `GET` of `key` and wait for its reply, which comes by `deadline`.
    pub(crate) async fn join(self: &Arc<Self>, key: &Key, deadline: Instant) -> Fetched {
        let (tx, rx) = oneshot::channel();
        let (spawn, notify) = {
            let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            let was_empty = q.waiters.is_empty();
            q.waiters.push(Waiter {
                key: key.clone(),
                deadline,
                reply: tx,
            });
            let spawn = !q.flushing;
            q.flushing = true;
            (spawn, was_empty && !spawn)
        };
        if spawn {
            tokio::spawn(
                Flusher {
                    co: self.clone(),
                    ended: false,
                }
                .run(),
            );
        } else if notify {
            self.wake.notify_one();
        }
        match rx.await {
            Ok(r) => r,
            // The flusher was dropped with its runtime.
            Err(_) => Err(Error::unavailable(
                "the task sending coalesced GETs stopped (its runtime shut down)",
            )
            .with_backend(BACKEND)),
        }
    }

    /// Take the next batch: the waiters still waiting, up to `batch_size`. `None` (and the
    /// flusher marked as ended) when there is nothing to send and nothing on the wire.
    /// Waiters whose deadline passed are answered `Timeout` here.
    fn take(&self, on_wire: usize) -> Option<Vec<Waiter>> {
        let now = Instant::now();
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        q.waiters.retain_mut(|w| {
            if w.reply.is_closed() {
                return false;
            }
            if w.deadline <= now {
                let (dead, _) = oneshot::channel();
                let reply = std::mem::replace(&mut w.reply, dead);
                let _ = reply.send(Err(op_timeout("GET", self.op_timeout)));
                return false;
            }
            true
        });
        if q.waiters.is_empty() {
            if on_wire == 0 {
                q.flushing = false;
            }
            return None;
        }
        let n = q.waiters.len().min(self.batch_size);
        Some(q.waiters.drain(..n).collect())
    }

    /// Send one batch and hand each waiter its reply.
    async fn send(&self, batch: Vec<Waiter>) {
        let size = batch
            .iter()
            .map(|w| self.layout.entry_len(&w.key))
            .sum::<usize>();
        let mut c = redis::Cmd::with_capacity(1 + batch.len(), 4 + size);
        c.arg("MGET");
        for w in &batch {
            c.arg(self.layout.entry_arg(&w.key));
        }
        // Due by the earliest deadline in it: every caller has its reply by its own.
        let Some(deadline) = batch.iter().map(|w| w.deadline).min() else {
            return;
        };
        let r: Result<Vec<Option<Vec<u8>>>> = self.redis.cmd_until("MGET", &c, deadline).await;
        match r {
            Ok(values) if values.len() == batch.len() => {
                self.coalesced
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                for (w, v) in batch.into_iter().zip(values) {
                    let _ = w.reply.send(Ok(v));
                }
            }
            Ok(values) => {
                let e = Error::corrupt(format!(
                    "MGET of {} keys returned {} values",
                    batch.len(),
                    values.len()
                ))
                .with_backend(BACKEND);
                for w in batch {
                    let _ = w.reply.send(Err(e.clone()));
                }
            }
            Err(e) => {
                for w in batch {
                    let _ = w.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// The task that drains the queue. Dropped with its runtime, it marks itself ended so that
/// the next `GET` starts a new one.
struct Flusher {
    co: Arc<Coalescer>,
    /// Set when the queue was found empty with nothing on the wire (`flushing` is then
    /// already false, and may belong to a newer flusher).
    ended: bool,
}

impl Flusher {
    async fn run(mut self) {
        let co = self.co.clone();
        let mut on_wire = FuturesUnordered::new();
        loop {
            while on_wire.len() < BATCHES_IN_FLIGHT {
                match co.take(on_wire.len()) {
                    Some(batch) => on_wire.push(co.send(batch)),
                    None if on_wire.is_empty() => {
                        self.ended = true;
                        return;
                    }
                    None => break,
                }
            }
            tokio::select! {
                _ = on_wire.next() => {}
                _ = co.wake.notified() => {}
            }
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        // Dropped mid-way (with its runtime): the waiters left are served by the next
        // flusher, which the next `GET` to join starts.
        if !self.ended {
            let mut q = self.co.queue.lock().unwrap_or_else(PoisonError::into_inner);
            q.flushing = false;
        }
    }
}

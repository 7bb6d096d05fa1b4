//! Write-behind: a bounded, ordered queue of writes to one slow tier, drained by a task.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use layercake_core::{Backend, Entry, Key, Result, Selector, Tombstone};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// One queued operation.
pub(crate) enum Job {
    Set(Key, Entry),
    /// A conditional write ([`Backend::fill`]): it never replaces a newer entry nor lands
    /// under a tombstone, however late the queue applies it.
    Fill(Key, Entry),
    Delete(Key, Tombstone, oneshot::Sender<Result<()>>),
    Invalidate(Selector, Tombstone, oneshot::Sender<Result<()>>),
    Clear(oneshot::Sender<Result<()>>),
}

/// Told the outcome of each queued set (its key, its entry's version), in the worker.
pub(crate) type SetDone = Box<dyn Fn(&Key, u64, &Result<()>) + Send + Sync>;

/// The queue of one tier.
#[derive(Debug)]
pub(crate) struct WriteBehind {
    tx: parking_lot::Mutex<Option<mpsc::Sender<Job>>>,
    worker: parking_lot::Mutex<Option<JoinHandle<()>>>,
    pub(crate) failures: Arc<AtomicU64>,
    capacity: usize,
}

impl WriteBehind {
    /// Start the worker for `backend`; `done` hears the outcome of every queued set (the
    /// repair record notes the failures).
    pub(crate) fn start(backend: Arc<dyn Backend>, capacity: usize, done: SetDone) -> WriteBehind {
        let (tx, mut rx) = mpsc::channel::<Job>(capacity.max(1));
        let failures = Arc::new(AtomicU64::new(0));
        let f = failures.clone();
        let worker = tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                match job {
                    Job::Set(k, e) => {
                        let r = backend.set(&k, &e).await;
                        if r.is_err() {
                            f.fetch_add(1, Ordering::Relaxed);
                        }
                        done(&k, e.version, &r);
                    }
                    Job::Fill(k, e) => {
                        if backend.fill(&k, &e).await.is_err() {
                            f.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Job::Delete(k, t, ack) => {
                        let _ = ack.send(backend.delete_with(&k, t).await);
                    }
                    Job::Invalidate(s, t, ack) => {
                        let _ = ack.send(backend.invalidate_with(&s, t).await);
                    }
                    Job::Clear(ack) => {
                        let _ = ack.send(backend.clear().await);
                    }
                }
            }
        });
        WriteBehind {
            tx: parking_lot::Mutex::new(Some(tx)),
            worker: parking_lot::Mutex::new(Some(worker)),
            failures,
            capacity,
        }
    }

    fn sender(&self) -> Option<mpsc::Sender<Job>> {
        self.tx.lock().clone()
    }

    /// Enqueue a set (or, with `fill`, a conditional fill); hands the write back when the
    /// queue is full or closed (the caller then writes in line).
    pub(crate) fn try_write(&self, key: Key, entry: Entry, fill: bool) -> Option<(Key, Entry)> {
        let job = if fill {
            Job::Fill(key, entry)
        } else {
            Job::Set(key, entry)
        };
        match self.sender() {
            Some(tx) => match tx.try_send(job) {
                Ok(()) => None,
                // try_send hands back exactly the job it was given.
                Err(e) => match e.into_inner() {
                    Job::Set(k, e) | Job::Fill(k, e) => Some((k, e)),
                    Job::Delete(..) | Job::Invalidate(..) | Job::Clear(..) => None,
                },
            },
            None => match job {
                Job::Set(k, e) | Job::Fill(k, e) => Some((k, e)),
                Job::Delete(..) | Job::Invalidate(..) | Job::Clear(..) => None,
            },
        }
    }

    /// Enqueue a job that needs an acknowledgement and wait for it (keeps order with queued
    /// sets). `None` when the queue is closed (the caller then acts in line).
    pub(crate) async fn send_and_wait(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<()>>) -> Job,
    ) -> Option<Result<()>> {
        let tx = self.sender()?;
        let (ack, rx) = oneshot::channel();
        tx.send(make(ack)).await.ok()?;
        rx.await.ok()
    }

    /// Queued jobs now.
    pub(crate) fn depth(&self) -> usize {
        self.sender()
            .map_or(0, |tx| self.capacity.max(1) - tx.capacity())
    }

    /// Close the queue and wait until every queued write is done.
    pub(crate) async fn flush_and_stop(&self) {
        self.tx.lock().take();
        let worker = self.worker.lock().take();
        if let Some(w) = worker {
            let _ = w.await;
        }
    }
}

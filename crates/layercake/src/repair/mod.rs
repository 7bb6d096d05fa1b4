//! Auto-recovery: per tier, a [`RepairRecord`](record::RepairRecord) of the keys, selections
//! (or the whole tier) that a write or removal did not reach, and the task that repairs them
//! when the tier answers again.
//!
//! [`Repairs`] is held by the stack: the write and removal paths note failures and resolve
//! notes, the read paths skip what is noted (one atomic load per tier when nothing is), and
//! the repair task ([`task`]) is started on the first note and holds the stack weakly.

pub(crate) mod config;
pub(crate) mod record;
pub(crate) mod report;
pub(crate) mod task;

use std::sync::{Arc, OnceLock, Weak};

use layercake_core::{Error, ErrorKind, Key, Selector};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use self::config::RepairConfig;
use self::record::{Noted, RepairRecord};
use crate::stack::Stack;

/// The repair records of every tier of one cache, and the repair task.
#[derive(Debug)]
pub(crate) struct Repairs {
    records: Box<[RepairRecord]>,
    pub(crate) config: RepairConfig,
    /// `strict_writes`: a write not taken by every assigned tier is an error.
    pub(crate) strict: bool,
    wake: Arc<Notify>,
    stack: OnceLock<Weak<Stack>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Repairs {
    fn drop(&mut self) {
        if let Some(t) = self.task.lock().take() {
            t.abort();
        }
    }
}

impl Repairs {
    pub(crate) fn new(tiers: usize, config: RepairConfig, strict: bool) -> Repairs {
        Repairs {
            records: (0..tiers).map(|_| RepairRecord::new(&config)).collect(),
            config,
            strict,
            wake: Arc::new(Notify::new()),
            stack: OnceLock::new(),
            task: Mutex::new(None),
        }
    }

    /// The stack the repair task works on (set once, right after the stack is built).
    pub(crate) fn bind(&self, stack: Weak<Stack>) {
        let _ = self.stack.set(stack);
    }

    /// The record of tier `pos`.
    pub(crate) fn record(&self, pos: usize) -> Option<&RepairRecord> {
        self.records.get(pos)
    }

    /// Notes pending in every tier.
    pub(crate) fn pending(&self) -> usize {
        self.records.iter().map(RepairRecord::len).sum()
    }

    /// Start the repair task if it does not run (it needs a Tokio runtime; without one the
    /// notes wait for the next call that has one), and wake it.
    fn wake(&self) {
        {
            let mut task = self.task.lock();
            if task.as_ref().is_none_or(JoinHandle::is_finished)
                && let (Some(stack), Ok(rt)) =
                    (self.stack.get(), tokio::runtime::Handle::try_current())
            {
                *task = Some(rt.spawn(task::run(
                    stack.clone(),
                    self.wake.clone(),
                    self.config.retry_every(),
                )));
            }
        }
        self.wake.notify_one();
    }

    /// Note that a write or removal of `key` failed on tier `pos` with `err`; the repair's
    /// removal leaves a tombstone of `version` (fills at or below it are refused).
    pub(crate) fn note_key(&self, pos: usize, key: &Key, err: &Error, version: u64) -> Noted {
        let Some(r) = self.record(pos) else {
            return Noted::Refused;
        };
        // Only a call the tier was never asked (open breaker) surely did not land.
        let n = r.note_key(key, err.kind() != ErrorKind::CircuitOpen, version);
        if n != Noted::Refused {
            self.wake();
        }
        n
    }

    /// Note that an invalidation failed on tier `pos`; its repair leaves a tombstone of
    /// `version`.
    pub(crate) fn note_selector(&self, pos: usize, selector: &Selector, version: u64) -> Noted {
        let Some(r) = self.record(pos) else {
            return Noted::Refused;
        };
        let n = r.note_selector(selector, version);
        if n != Noted::Refused {
            self.wake();
        }
        n
    }

    /// Note that a `clear` failed on tier `pos`.
    pub(crate) fn note_everything(&self, pos: usize) {
        if let Some(r) = self.record(pos) {
            r.note_everything();
            self.wake();
        }
    }

    /// Whether a read of `key` must skip tier `pos` (before reading it).
    #[inline]
    pub(crate) fn skips_key(&self, pos: usize, key: &Key) -> bool {
        self.record(pos).is_some_and(|r| r.skips_key(key))
    }

    /// Whether an entry read from tier `pos` must be discarded.
    #[inline]
    pub(crate) fn skips_entry(&self, pos: usize, key: &Key, tags: &[String]) -> bool {
        self.record(pos).is_some_and(|r| r.skips_entry(key, tags))
    }

    /// A write or removal of `key` reached tier `pos`.
    #[inline]
    pub(crate) fn resolved_key(&self, pos: usize, key: &Key) {
        if let Some(r) = self.record(pos) {
            r.resolved_key(key);
        }
    }
}

/// The error of a call that could not be noted for repair because the tier's record is full
/// ([`Overflow::RefuseWrites`](config::Overflow::RefuseWrites)).
pub(crate) fn record_full(tier: &str, cause: &Error) -> Error {
    Error::unavailable(format!(
        "tier {tier} did not take the write ({}) and its repair record is full",
        cause.kind()
    ))
    .with_tier(tier.to_owned())
}

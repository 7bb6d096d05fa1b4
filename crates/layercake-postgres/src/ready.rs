//! [`Startup`]: whether a backend's table is set up yet, and why not (the last failure), so
//! that operations fail fast with `Unavailable` until it is.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use layercake_core::{Error, Result};

use crate::error::BACKEND;

/// Whether the table is set up, and why not yet.
pub(crate) struct Startup {
    ready: AtomicBool,
    last_error: Mutex<Option<Error>>,
}

impl Startup {
    /// Not ready: nothing has been migrated yet.
    pub(crate) fn new() -> Startup {
        Startup {
            ready: AtomicBool::new(false),
            last_error: Mutex::new(None),
        }
    }

    /// `Ok` once the table is set up, else the `Unavailable` error of a backend still waiting
    /// for its server (naming `endpoint` and the last failure).
    #[inline]
    pub(crate) fn check(&self, op: &'static str, endpoint: &str) -> Result<()> {
        if self.ready.load(Ordering::Acquire) {
            return Ok(());
        }
        Err(self.not_ready(op, endpoint))
    }

    /// Whether the table is set up.
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    #[cold]
    fn not_ready(&self, op: &'static str, endpoint: &str) -> Error {
        let e = Error::unavailable(format!(
            "{op}: PostgreSQL at {endpoint} has not answered yet; the table is set up in the \
             background when it does"
        ))
        .with_backend(BACKEND);
        match self.last().clone() {
            Some(cause) => e.with_source(cause),
            None => e,
        }
    }

    fn last(&self) -> std::sync::MutexGuard<'_, Option<Error>> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn failed(&self, e: Error) {
        *self.last() = Some(e);
    }

    pub(crate) fn succeeded(&self) {
        self.last().take();
        self.ready.store(true, Ordering::Release);
    }
}

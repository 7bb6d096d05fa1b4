//! Mapping of tokio-postgres and pool errors to layercake [`Error`]s, in one place.
//!
//! - the connection is closed, refused, reset or any I/O failure → `Unavailable`, temporary;
//! - an I/O or connect timeout, a pool wait/create timeout, a statement cancelled by
//!   `statement_timeout` (SQLSTATE `57014`) → `Timeout`, temporary;
//! - server states that pass (class `08` connection exception, `57P01`–`57P03` shutdown or
//!   start-up, class `53` insufficient resources, class `40` rollbacks, `55P03` lock not
//!   available, `25006` read-only transaction after a fail-over) → `Unavailable`, temporary;
//! - every other SQL error (syntax, permissions, missing table, …) → `Unavailable`,
//!   **permanent**: retrying does not help, the configuration or the database must change;
//! - always tagged `.with_backend("postgres")`.

use std::io;
use std::time::Duration;

use deadpool_postgres::{HookError, PoolError, TimeoutType};
use layercake_core::{Error, ErrorKind};

/// The backend kind, as reported in errors and metrics.
pub(crate) const BACKEND: &str = "postgres";

/// Map a tokio-postgres error raised while doing `op`.
pub(crate) fn pg(op: &'static str, e: tokio_postgres::Error) -> Error {
    let (kind, temporary) = classify(&e);
    Error::new(kind, format!("{op} failed"))
        .with_temporary(temporary)
        .with_backend(BACKEND)
        .with_source(e)
}

fn classify(e: &tokio_postgres::Error) -> (ErrorKind, bool) {
    if e.is_closed() {
        return (ErrorKind::Unavailable, true);
    }
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        return match code {
            "57014" => (ErrorKind::Timeout, true),
            "57P01" | "57P02" | "57P03" | "55P03" | "25006" => (ErrorKind::Unavailable, true),
            c if c.starts_with("08") || c.starts_with("53") || c.starts_with("40") => {
                (ErrorKind::Unavailable, true)
            }
            _ => (ErrorKind::Unavailable, false),
        };
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            return match io.kind() {
                io::ErrorKind::TimedOut => (ErrorKind::Timeout, true),
                _ => (ErrorKind::Unavailable, true),
            };
        }
        source = s.source();
    }
    // Connect-time failures without an I/O cause (authentication, TLS) and protocol
    // failures: the server answered, and answering again will not change its mind.
    (ErrorKind::Unavailable, false)
}

/// Map a pool checkout error.
pub(crate) fn pool(op: &'static str, e: PoolError) -> Error {
    match e {
        PoolError::Timeout(t) => {
            let what = match t {
                TimeoutType::Wait => "waiting for a pooled connection",
                TimeoutType::Create => "opening a connection",
                TimeoutType::Recycle => "checking a pooled connection",
            };
            Error::timeout(format!("{op}: timed out {what}")).with_backend(BACKEND)
        }
        PoolError::Backend(e) => pg(op, e),
        PoolError::Closed => Error::unavailable(format!("{op}: the connection pool is closed"))
            .with_temporary(false)
            .with_backend(BACKEND),
        PoolError::NoRuntimeSpecified => {
            Error::config(format!("{op}: the pool has no runtime")).with_backend(BACKEND)
        }
        PoolError::PostCreateHook(h) => match h {
            HookError::Backend(e) => pg(op, e),
            HookError::Message(m) => Error::unavailable(format!("{op}: {m}")).with_backend(BACKEND),
        },
    }
}

/// The operation did not finish within `limit`.
pub(crate) fn timeout(op: &'static str, limit: Duration) -> Error {
    Error::timeout(format!("{op} did not finish within {limit:?}")).with_backend(BACKEND)
}

/// A stored row that is not what this backend writes (used for decode failures of columns).
pub(crate) fn config(message: String) -> Error {
    Error::config(message).with_backend(BACKEND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_timeouts_are_temporary_timeouts() {
        let e = pool("get", PoolError::Timeout(TimeoutType::Wait));
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert!(e.is_temporary());
        assert_eq!(e.backend(), Some("postgres"));
        let e = pool("get", PoolError::Closed);
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(!e.is_temporary());
        let e = timeout("get", Duration::from_millis(20));
        assert_eq!(
            e.to_string(),
            "timeout (postgres): get did not finish within 20ms"
        );
    }
}

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
///
/// The message carries the server's own words for an SQL error — its message, SQLSTATE,
/// detail and hint (e.g. `database "x" does not exist (SQLSTATE 3D000)`) — which
/// tokio-postgres's `Display` leaves out (it says "db error").
pub(crate) fn pg(op: &'static str, e: tokio_postgres::Error) -> Error {
    let (kind, temporary) = classify(&e);
    Error::new(kind, format!("{op} failed{}", server_says(&e)))
        .with_temporary(temporary)
        .with_backend(BACKEND)
        .with_source(e)
}

/// Map an error of a connection attempt to `endpoint` made for `op`: as [`pg`], naming where.
pub(crate) fn connect(op: &'static str, e: tokio_postgres::Error, endpoint: &str) -> Error {
    let (kind, temporary) = classify(&e);
    let msg = if e.as_db_error().is_some() {
        format!(
            "{op}: PostgreSQL at {endpoint} refused the connection{}",
            server_says(&e)
        )
    } else {
        format!("{op}: cannot connect to PostgreSQL at {endpoint}")
    };
    Error::new(kind, msg)
        .with_temporary(temporary)
        .with_backend(BACKEND)
        .with_source(e)
}

/// `": <message> (SQLSTATE <code>); detail: …; hint: …"` for an error the server reported,
/// else nothing.
fn server_says(e: &tokio_postgres::Error) -> String {
    let Some(db) = e.as_db_error() else {
        return String::new();
    };
    let mut out = format!(": {} (SQLSTATE {})", db.message(), db.code().code());
    if let Some(d) = db.detail() {
        out.push_str("; detail: ");
        out.push_str(d);
    }
    if let Some(h) = db.hint() {
        out.push_str("; hint: ");
        out.push_str(h);
    }
    out
}

/// Where `pg` connects, for messages: `host:port` of each configured host (or socket
/// directory), comma-separated; never the user or password.
pub(crate) fn endpoint(pg: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let ports = pg.get_ports();
    let port = |i: usize| match ports {
        [] => 5432,
        [one] => *one,
        many => many.get(i).copied().unwrap_or(5432),
    };
    let hosts: Vec<String> = pg
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| match h {
            Host::Tcp(name) if name.contains(':') => format!("[{name}]:{}", port(i)),
            Host::Tcp(name) => format!("{name}:{}", port(i)),
            #[cfg(unix)]
            Host::Unix(dir) => format!("{}/.s.PGSQL.{}", dir.display(), port(i)),
        })
        .collect();
    if hosts.is_empty() {
        let addrs: Vec<String> = pg
            .get_hostaddrs()
            .iter()
            .enumerate()
            .map(|(i, a)| std::net::SocketAddr::new(*a, port(i)).to_string())
            .collect();
        if addrs.is_empty() {
            return format!("localhost:{}", port(0));
        }
        return addrs.join(", ");
    }
    hosts.join(", ")
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

/// Map a pool checkout error; `endpoint` says where the pool connects.
pub(crate) fn pool(op: &'static str, e: PoolError, endpoint: &str) -> Error {
    match e {
        PoolError::Timeout(t) => {
            let what = match t {
                TimeoutType::Wait => "waiting for a pooled connection".to_owned(),
                TimeoutType::Create => format!("opening a connection to PostgreSQL at {endpoint}"),
                TimeoutType::Recycle => "checking a pooled connection".to_owned(),
            };
            Error::timeout(format!("{op}: timed out {what}")).with_backend(BACKEND)
        }
        PoolError::Backend(e) => connect(op, e, endpoint),
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
        let e = pool("get", PoolError::Timeout(TimeoutType::Wait), "h:1");
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert!(e.is_temporary());
        assert_eq!(e.backend(), Some("postgres"));
        let e = pool("get", PoolError::Closed, "h:1");
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(!e.is_temporary());
        let e = timeout("get", Duration::from_millis(20));
        assert_eq!(
            e.to_string(),
            "timeout (postgres): get did not finish within 20ms"
        );
    }

    #[test]
    fn endpoints_name_hosts_and_ports_but_no_credentials() {
        let pg: tokio_postgres::Config = "postgres://app:s3cret@db1:6000,db2/x".parse().unwrap();
        assert_eq!(endpoint(&pg), "db1:6000, db2:5432");
        let pg: tokio_postgres::Config = "host=/run/postgresql user=app password=s3cret"
            .parse()
            .unwrap();
        assert_eq!(endpoint(&pg), "/run/postgresql/.s.PGSQL.5432");
        let pg: tokio_postgres::Config = "postgres://u@[::1]:7/x".parse().unwrap();
        assert_eq!(endpoint(&pg), "[::1]:7");
    }
}

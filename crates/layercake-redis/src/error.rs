//! The one place where redis-rs, bb8 and timer errors become layercake [`Error`]s.
//!
//! Mapping (every error carries `backend = "redis"`):
//! - I/O errors (refused, reset, broken pipe, EOF), a missing cluster connection,
//!   `CLUSTERDOWN`, `MASTERDOWN`, `TRYAGAIN`, `LOADING`, `READONLY`, `OOM`, `BUSY` →
//!   [`Unavailable`](ErrorKind::Unavailable), temporary (a failed pipeline is judged by its
//!   first failed command);
//! - an I/O timeout, an operation past its deadline, a pool wait past its deadline →
//!   [`Timeout`](ErrorKind::Timeout), temporary;
//! - failed authentication and missing ACL permission (`NOAUTH`, `WRONGPASS`, `NOPERM`) →
//!   `Unavailable`, permanent (a retry with the same credentials will fail again);
//! - unexpected reply types, parse errors, `WRONGTYPE` → [`Corrupt`](ErrorKind::Corrupt),
//!   permanent;
//! - invalid client configuration, RESP3 unsupported → [`Config`](ErrorKind::Config);
//! - any other server or client error → `Unavailable`, permanent.

use std::time::Duration;

use layercake_core::{Error, ErrorKind};
use redis::{RedisError, ServerErrorKind};

/// The backend kind stamped on every error.
pub(crate) const BACKEND: &str = "redis";

/// Map a redis-rs error to the core error.
pub(crate) fn map_err(e: RedisError) -> Error {
    use redis::ErrorKind as K;
    // A failed pipeline (e.g. a tagged write) has no code of its own: its first failed
    // command's code decides (an `OOM` inside a pipeline is as temporary as a lone one).
    let code = e.code().map(str::to_owned).or_else(|| {
        e.clone()
            .into_server_errors()
            .and_then(|items| items.first().map(|(_, s)| s.code().to_owned()))
    });
    let (kind, temporary, what): (ErrorKind, bool, &'static str) = match e.kind() {
        K::Io if e.is_timeout() => (ErrorKind::Timeout, true, "redis I/O timed out"),
        K::Io => (ErrorKind::Unavailable, true, "redis connection failed"),
        K::ClusterConnectionNotFound => (
            ErrorKind::Unavailable,
            true,
            "no connection to the cluster node owning the slot",
        ),
        K::Server(
            ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::TryAgain
            | ServerErrorKind::BusyLoading
            | ServerErrorKind::ReadOnly
            | ServerErrorKind::Moved
            | ServerErrorKind::Ask,
        ) => (
            ErrorKind::Unavailable,
            true,
            "redis cannot serve the request now",
        ),
        K::Server(ServerErrorKind::NoPerm) | K::AuthenticationFailed => (
            ErrorKind::Unavailable,
            false,
            "redis refused the credentials or the permission",
        ),
        K::Parse | K::UnexpectedReturnType => (
            ErrorKind::Corrupt,
            false,
            "redis returned an unexpected reply",
        ),
        K::InvalidClientConfig | K::RESP3NotSupported => (
            ErrorKind::Config,
            false,
            "invalid redis client configuration",
        ),
        _ => match code.as_deref() {
            Some("WRONGTYPE") => (
                ErrorKind::Corrupt,
                false,
                "a redis key holds the wrong kind of value",
            ),
            Some("OOM" | "BUSY") => (
                ErrorKind::Unavailable,
                true,
                "redis is out of memory or busy",
            ),
            Some("NOAUTH" | "WRONGPASS") => (
                ErrorKind::Unavailable,
                false,
                "redis refused the credentials",
            ),
            _ => (ErrorKind::Unavailable, false, "redis rejected the request"),
        },
    };
    Error::new(kind, what)
        .with_temporary(temporary)
        .with_source(e)
        .with_backend(BACKEND)
}

/// Map a redis-rs error of a request sent to `addr` (`host:port` or a socket path, never
/// credentials): connection-level failures name the address, so a refused connection says
/// where nothing listens.
pub(crate) fn map_err_at(e: RedisError, addr: &str) -> Error {
    if !e.is_io_error() {
        return map_err(e);
    }
    let (kind, msg) = if e.is_timeout() {
        (
            ErrorKind::Timeout,
            format!("redis at {addr} did not answer in time"),
        )
    } else if e.is_connection_refusal() {
        (
            ErrorKind::Unavailable,
            format!(
                "connection to redis at {addr} refused: nothing listens there (is the server \
                 running, and are the URL's host and port right?)"
            ),
        )
    } else if is_dropped(&e) {
        (
            ErrorKind::Unavailable,
            format!("redis at {addr} closed the connection"),
        )
    } else {
        (
            ErrorKind::Unavailable,
            format!("redis connection to {addr} failed"),
        )
    };
    Error::new(kind, msg)
        .with_temporary(true)
        .with_source(e)
        .with_backend(BACKEND)
}

/// Map a redis-rs error of a connection attempt (the handshake) to `addr`, as
/// [`map_err_at`], and say so when the peer is not a Redis server: a server that closes the
/// connection or answers something other than RESP to the handshake (a PostgreSQL or HTTP
/// port, or a TLS-only Redis reached with `redis://`).
pub(crate) fn connect_err_at(e: RedisError, addr: &str) -> Error {
    use redis::ErrorKind as K;
    if let Some(tls) = tls_failure(&e) {
        let hint = match tls {
            rustls::Error::InvalidMessage(_) => {
                " (is the server TLS? a plaintext Redis needs a redis:// URL)"
            }
            rustls::Error::InvalidCertificate(_) => {
                " (set the CA that signed the server's certificate with \
                 RedisConfig::with_tls_root_ca)"
            }
            rustls::Error::AlertReceived(_) => {
                " (a server that requires client certificates needs \
                 RedisConfig::with_tls_client_auth)"
            }
            _ => "",
        };
        // The server answered: the same handshake will fail again.
        return Error::unavailable(format!(
            "the TLS handshake with redis at {addr} failed: {tls}{hint}"
        ))
        .with_temporary(false)
        .with_source(e)
        .with_backend(BACKEND);
    }
    let not_redis = is_dropped(&e) || matches!(e.kind(), K::Parse | K::UnexpectedReturnType);
    if !not_redis {
        return map_err_at(e, addr);
    }
    Error::unavailable(format!(
        "the server at {addr} did not answer the handshake like a Redis server: is this the port \
         of a Redis server? (a TLS-only Redis needs a rediss:// URL)"
    ))
    // The server answered, not as Redis: waiting will not change that.
    .with_temporary(false)
    .with_source(e)
    .with_backend(BACKEND)
}

/// The rustls error behind `e`, if the connection failed in the TLS handshake.
fn tls_failure(e: &RedisError) -> Option<&rustls::Error> {
    type Shared = std::sync::Arc<dyn std::error::Error + Send + Sync>;
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        // redis-rs keeps its inner error in an `Arc`, which is what `source` hands out.
        let s: &(dyn std::error::Error + 'static) = match s.downcast_ref::<Shared>() {
            Some(inner) => inner.as_ref(),
            None => s,
        };
        if let Some(tls) = s.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(tls) = s
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .and_then(|i| i.downcast_ref::<rustls::Error>())
        {
            return Some(tls);
        }
        source = s.source();
    }
    None
}

/// Whether the connection was closed or reset by the peer (EOF, reset, broken pipe).
fn is_dropped(e: &RedisError) -> bool {
    e.is_connection_dropped() && !e.is_connection_refusal()
}

/// An operation that did not finish within `limit`.
pub(crate) fn op_timeout(op: &'static str, limit: Duration) -> Error {
    Error::timeout(format!(
        "redis {op} did not finish within {} ms",
        limit.as_millis()
    ))
    .with_backend(BACKEND)
}

/// A connection attempt to `addr` that did not finish within `limit`; `tls`: the URL is
/// `rediss://` (a plaintext Redis never answers a TLS hello, so that mistake ends here too).
pub(crate) fn connect_timeout(addr: &str, limit: Duration, tls: bool) -> Error {
    let hint = if tls {
        " (a rediss:// URL at a plaintext Redis port also ends like this)"
    } else {
        ""
    };
    Error::timeout(format!(
        "connecting to redis at {addr} did not finish within {} ms{hint}",
        limit.as_millis()
    ))
    .with_backend(BACKEND)
}

/// A pool checkout error.
pub(crate) fn map_pool_err(e: bb8::RunError<RedisError>, wait: Duration, addr: &str) -> Error {
    match e {
        bb8::RunError::User(e) => connect_err_at(e, addr),
        bb8::RunError::TimedOut => Error::timeout(format!(
            "no pooled redis connection became available within {} ms",
            wait.as_millis()
        ))
        .with_backend(BACKEND),
    }
}

/// Whether a redis error means the connection it came from must be replaced: a connection
/// that dropped or misparsed, or a request that timed out (its reply slot stays, so a later
/// reply could be matched to it).
pub(crate) fn breaks_connection(e: &RedisError) -> bool {
    e.is_unrecoverable_error() || e.is_timeout()
}

/// Whether a request failed at the I/O level (connection refused, reset, broken pipe, EOF,
/// timed out — also a connection attempt's failure that the multiplexed manager stored and
/// hands to the next request): it got no answer, and may be sent again on a fresh connection
/// if time remains. (A request that reached its deadline has none left.)
pub(crate) fn is_connection_failure(e: &RedisError) -> bool {
    e.is_io_error()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn io_errors_are_temporary_unavailable_or_timeout() {
        let e = map_err(RedisError::from(io::Error::from(
            io::ErrorKind::ConnectionRefused,
        )));
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.is_temporary());
        assert_eq!(e.backend(), Some("redis"));
        let e = map_err(RedisError::from(io::Error::from(io::ErrorKind::TimedOut)));
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert!(e.is_temporary());
    }

    #[test]
    fn reply_type_errors_are_permanent_corrupt() {
        let e = map_err(RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "bad",
        )));
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        assert!(!e.is_temporary());
        let e = map_err(RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "bad url",
        )));
        assert_eq!(e.kind(), ErrorKind::Config);
    }

    #[test]
    fn io_failures_are_retried_and_break_the_connection() {
        for kind in [
            io::ErrorKind::ConnectionRefused,
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::BrokenPipe,
            io::ErrorKind::UnexpectedEof,
        ] {
            let e = RedisError::from(io::Error::from(kind));
            assert!(is_connection_failure(&e), "{kind:?}");
            assert!(breaks_connection(&e), "{kind:?}");
        }
        let timeout = RedisError::from(io::Error::from(io::ErrorKind::TimedOut));
        assert!(is_connection_failure(&timeout));
        assert!(breaks_connection(&timeout));
        let answer = RedisError::from((redis::ErrorKind::UnexpectedReturnType, "bad"));
        assert!(!is_connection_failure(&answer));
        assert!(!breaks_connection(&answer));
    }

    #[test]
    fn timeouts_name_the_limit() {
        let e = op_timeout("GET", Duration::from_millis(50));
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert_eq!(
            e.to_string(),
            "timeout (redis): redis GET did not finish within 50 ms"
        );
        let e = map_pool_err(bb8::RunError::TimedOut, Duration::from_millis(7), "h:1");
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert!(e.message().contains("7 ms"));
    }
}

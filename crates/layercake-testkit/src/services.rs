//! The shared services tests talk to: `REDIS_URL` / `DATABASE_URL`, or the local defaults.
//!
//! A test that needs a service and finds none fails with a message saying how to get one; it
//! never passes by skipping.

use std::net::ToSocketAddrs;
use std::time::Duration;

/// The local Redis used when `REDIS_URL` is not set.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// The local PostgreSQL used when `DATABASE_URL` is not set.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

const HOW: &str = "Start the services with `cargo xtask services up` (it uses REDIS_URL / \
DATABASE_URL, the local defaults, native redis-server/PostgreSQL binaries, or docker compose \
-f tests/compose.yml), or point REDIS_URL / DATABASE_URL at running servers.";

/// The Redis URL for tests: `REDIS_URL` or [`DEFAULT_REDIS_URL`].
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_owned())
}

/// The PostgreSQL URL for tests: `DATABASE_URL` or [`DEFAULT_DATABASE_URL`].
pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned())
}

/// The `host:port` part of a `redis://` or `postgres://` URL (default ports 6379 / 5432).
pub fn host_port(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let hostport = rest.split(['/', '?']).next()?;
    if hostport.is_empty() {
        return None;
    }
    if hostport.contains(':') && !hostport.ends_with(']') {
        Some(hostport.to_owned())
    } else if url.starts_with("redis") {
        Some(format!("{hostport}:6379"))
    } else {
        Some(format!("{hostport}:5432"))
    }
}

fn reachable(url: &str) -> bool {
    let Some(hp) = host_port(url) else {
        return false;
    };
    let Ok(addrs) = hp.to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
}

/// The Redis URL, after checking that it accepts connections.
///
/// # Panics
/// When nothing answers, with a message saying how to start Redis — a test needing Redis must
/// fail, not skip.
pub fn require_redis() -> String {
    let url = redis_url();
    assert!(
        reachable(&url),
        "this test needs Redis, and nothing answers at {url}.\n{HOW}"
    );
    url
}

/// The PostgreSQL URL, after checking that it accepts connections.
///
/// # Panics
/// When nothing answers, with a message saying how to start PostgreSQL.
pub fn require_postgres() -> String {
    let url = database_url();
    assert!(
        reachable(&url),
        "this test needs PostgreSQL, and nothing answers at {url}.\n{HOW}"
    );
    url
}

/// A loopback port nothing listens on (bound, then released), for an instance of a backend
/// that cannot reach its server (see
/// [`Conformance::with_unreachable`](crate::conformance::Conformance::with_unreachable)).
/// Another process could take the port in between; within a test that is unlikely.
pub fn closed_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A random lower-case identifier, for per-run namespaces, key prefixes and schemas.
pub fn unique_id(prefix: &str) -> String {
    use rand::RngExt as _;
    let mut rng = rand::rng();
    let n: u64 = rng.random();
    format!("{prefix}{n:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_parsing() {
        assert_eq!(
            host_port("redis://127.0.0.1:6380").as_deref(),
            Some("127.0.0.1:6380")
        );
        assert_eq!(host_port("redis://:pw@h").as_deref(), Some("h:6379"));
        assert_eq!(
            host_port("postgres://postgres@127.0.0.1/test").as_deref(),
            Some("127.0.0.1:5432")
        );
        assert_eq!(
            host_port("postgres://u:p@db:6000/x?sslmode=disable").as_deref(),
            Some("db:6000")
        );
        assert_ne!(unique_id("t"), unique_id("t"));
    }
}

//! Throwaway servers for fault tests: a [`RedisServer`] and a [`PostgresServer`] of their own, on
//! free loopback ports, that a test may stop, kill, freeze and restart.
//!
//! - They never touch the shared services on 6379/5432: each fixture starts its own process as a
//!   direct child and signals only its own pids (PostgreSQL: the postmaster and its children).
//! - Signals are sent with the `kill` program, so no `unsafe` code is needed.
//! - Every wait is bounded (start 15–60 s, stop 10–30 s) and fails with the tail of the server
//!   log; dropping a fixture kills what is left and removes its temporary directory.
//!
//! ```no_run
//! # async fn demo() -> Result<(), layercake_testkit::server::FixtureError> {
//! use std::time::Duration;
//! use layercake_testkit::server::RedisServer;
//!
//! let mut redis = RedisServer::start().await?;
//! redis.freeze().await?;
//! assert!(!redis.ping(Duration::from_millis(200)).await); // hangs, bounded by the timeout
//! redis.thaw().await?;
//! assert!(redis.ping(Duration::from_secs(2)).await);
//! # Ok(()) }
//! ```

mod error;
mod postgres;
mod process;
mod redis;

pub use error::FixtureError;
pub use postgres::PostgresServer;
pub use redis::RedisServer;

//! Connection errors keep PostgreSQL's own words and say where: a database that does not exist
//! is named as the server names it, a refused connection names `host:port`, and neither shows
//! the password.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests: a panic is a test failure"
)]

mod support;

use std::net::TcpListener;
use std::time::Duration;

use layercake_core::ErrorKind;
use layercake_postgres::{
    PostgresBackend, PostgresBackplane, PostgresBackplaneConfig, PostgresConfig,
};
use layercake_testkit::services::{host_port, require_postgres, unique_id};

/// Bound on any connection attempt of these tests.
const LIMIT: Duration = Duration::from_secs(15);

/// `url` with its database replaced by `db` and the password `s3cret` added.
fn with_database(url: &str, db: &str) -> String {
    let hp = host_port(url).unwrap();
    format!("postgres://postgres:s3cret@{hp}/{db}")
}

#[tokio::test]
async fn a_missing_database_is_named_as_postgres_names_it() {
    let url = require_postgres();
    let db = unique_id("lc_missing_");
    let cfg = PostgresConfig::new(&with_database(&url, &db))
        .unwrap()
        .with_table(unique_id("lcpg_"), "cache");
    let err = tokio::time::timeout(LIMIT, PostgresBackend::connect(cfg))
        .await
        .expect("connect must give up within its timeouts")
        .unwrap_err();
    let shown = err.to_string();
    let hp = host_port(&url).unwrap();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{shown}");
    assert!(
        !err.is_temporary(),
        "a missing database is not temporary: {shown}"
    );
    assert!(
        shown.starts_with(&format!(
            "unavailable (postgres): schema migration: PostgreSQL at {hp} refused the \
             connection: database \"{db}\" does not exist (SQLSTATE 3D000)"
        )),
        "{shown}"
    );
    assert!(!shown.contains("s3cret") && !format!("{err:?}").contains("s3cret"));
}

#[tokio::test]
async fn a_refused_connection_names_host_and_port() {
    // A loopback port that nothing listens on (free when picked; the connection is refused).
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = PostgresConfig::new(&format!("postgres://app:s3cret@127.0.0.1:{port}/test"))
        .unwrap()
        .with_require_server(true);
    let err = tokio::time::timeout(LIMIT, PostgresBackend::connect(cfg))
        .await
        .expect("connect must give up within its timeouts")
        .unwrap_err();
    let shown = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{shown}");
    assert!(err.is_temporary(), "{shown}");
    assert!(
        shown.starts_with(&format!(
            "unavailable (postgres): schema migration: cannot connect to PostgreSQL at \
             127.0.0.1:{port}"
        )),
        "{shown}"
    );
    assert!(!shown.contains("s3cret") && !format!("{err:?}").contains("s3cret"));
}

#[tokio::test]
async fn a_backplane_names_a_missing_database() {
    let url = require_postgres();
    let db = unique_id("lc_missing_");
    let cfg = PostgresBackplaneConfig::new(&with_database(&url, &db)).unwrap();
    let err = tokio::time::timeout(LIMIT, PostgresBackplane::connect(cfg))
        .await
        .expect("connect must give up within its timeouts")
        .unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.contains(&format!(
            "database \"{db}\" does not exist (SQLSTATE 3D000)"
        )),
        "{shown}"
    );
    assert!(!shown.contains("s3cret"));
}

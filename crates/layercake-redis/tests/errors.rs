//! Connection errors say what went wrong and where: a refused connection names `host:port`
//! (never the credentials), and a URL pointing at a port that is not Redis's says so.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests: a panic is a test failure"
)]

mod support;

use std::time::Duration;

use layercake_core::{Backend, ErrorKind, Key};
use layercake_redis::{
    ConnectionMode, RedisBackend, RedisBackplane, RedisBackplaneConfig, RedisConfig,
};
use layercake_testkit::services::{host_port, require_postgres};

/// Bound on any connection attempt of these tests.
const LIMIT: Duration = Duration::from_secs(10);

fn config(url: String, mode: ConnectionMode) -> RedisConfig {
    RedisConfig::new(url)
        .with_cache_name("errors")
        .with_mode(mode)
        .with_connect_timeout(Duration::from_secs(2))
        .with_operation_timeout(Duration::from_secs(2))
        // Pool mode: time for the pool's own connection attempt to fail (and be reported).
        .with_pool_wait_timeout(Duration::from_secs(1))
}

#[tokio::test]
async fn a_refused_connection_names_host_and_port_and_hides_the_password() {
    // A loopback port that nothing listens on: the connection is refused at once.
    let port = support::free_port(false);
    for mode in [ConnectionMode::Multiplexed, ConnectionMode::Pool] {
        let cfg = config(format!("redis://app:s3cret@127.0.0.1:{port}/0"), mode)
            .with_require_server(true);
        let err = tokio::time::timeout(LIMIT, RedisBackend::connect(cfg))
            .await
            .expect("connect must give up within its timeouts")
            .unwrap_err();
        let shown = err.to_string();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{mode:?}: {shown}");
        assert!(err.is_temporary(), "{mode:?}: {shown}");
        assert!(
            shown.starts_with(&format!(
                "unavailable (redis): connection to redis at 127.0.0.1:{port} refused: nothing \
                 listens there"
            )),
            "{mode:?}: {shown}"
        );
        let debug = format!("{err:?}");
        assert!(
            !shown.contains("s3cret") && !debug.contains("s3cret"),
            "{debug}"
        );
    }
}

#[tokio::test]
async fn calls_of_a_backend_still_connecting_name_host_port_and_the_cause() {
    let port = support::free_port(false);
    for mode in [ConnectionMode::Multiplexed, ConnectionMode::Pool] {
        let cfg = config(format!("redis://app:s3cret@127.0.0.1:{port}/0"), mode);
        let backend = tokio::time::timeout(LIMIT, RedisBackend::connect(cfg))
            .await
            .expect("connect must give up within its timeouts")
            .expect("connect succeeds while the server is down");
        assert!(!backend.is_connected());
        let key = Key::new("k").unwrap();
        let err = backend.get(&key).await.unwrap_err();
        let shown = err.to_string();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{mode:?}: {shown}");
        assert!(err.is_temporary());
        assert!(
            shown.starts_with(&format!(
                "unavailable (redis): redis at 127.0.0.1:{port} has not answered yet; \
                 connecting in the background: unavailable (redis): connection to redis at \
                 127.0.0.1:{port} refused"
            )),
            "{mode:?}: {shown}"
        );
        assert!(!shown.contains("s3cret") && !format!("{err:?}").contains("s3cret"));
    }
}

#[tokio::test]
async fn a_url_pointing_at_a_postgres_port_says_it_is_not_redis() {
    let pg = host_port(&require_postgres()).unwrap();
    for mode in [ConnectionMode::Multiplexed, ConnectionMode::Pool] {
        let cfg = config(format!("redis://{pg}"), mode);
        let err = tokio::time::timeout(LIMIT, RedisBackend::connect(cfg))
            .await
            .expect("connect must give up within its timeouts")
            .unwrap_err();
        let shown = err.to_string();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{mode:?}: {shown}");
        assert!(!err.is_temporary(), "{mode:?}: {shown}");
        assert!(
            shown.starts_with(&format!(
                "unavailable (redis): the server at {pg} did not answer the handshake like a \
                 Redis server: is this the port of a Redis server?"
            )),
            "{mode:?}: {shown}"
        );
    }
}

#[tokio::test]
async fn a_backplane_names_where_its_subscription_failed() {
    let port = support::free_port(false);
    let cfg = config(
        format!("redis://:s3cret@127.0.0.1:{port}"),
        ConnectionMode::Multiplexed,
    )
    .with_require_server(true);
    let err = tokio::time::timeout(
        LIMIT,
        RedisBackplane::connect(&cfg, RedisBackplaneConfig::new("lc:errors")),
    )
    .await
    .expect("connect must give up within its timeouts")
    .unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.contains(&format!("127.0.0.1:{port} refused")),
        "{shown}"
    );
    assert!(!shown.contains("s3cret"), "{shown}");
}

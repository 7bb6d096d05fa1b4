//! A backend and a backplane built while Redis is down: `connect` succeeds, calls fail with
//! `Unavailable`, and both begin to work once a server comes up on the configured port — a
//! throwaway `redis-server` started after `connect` (its port reserved by starting and killing
//! it first). Nothing sleeps to assert: each wait polls with a bound.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests: a panic is a test failure"
)]

mod support;

use std::time::{Duration, Instant};

use layercake_core::backplane::{Backplane, BackplaneEvent};
use layercake_core::{Backend, Clock, Entry, ErrorKind, Key, SystemClock};
use layercake_redis::{
    ConnectionMode, RedisBackend, RedisBackplane, RedisBackplaneConfig, RedisConfig,
};
use support::{Server, unique_prefix};

/// Bound on `connect` while the server is down (one attempt, refused at once).
const CONNECT_LIMIT: Duration = Duration::from_secs(5);
/// Bound on the tier answering after the server is up: the background connector's longest
/// pause is 1 s; the rest is slack for a loaded 2-core machine.
const PICKUP_LIMIT: Duration = Duration::from_secs(10);

fn config(url: String, mode: ConnectionMode) -> RedisConfig {
    RedisConfig::new(url)
        .with_key_prefix(unique_prefix("startdown"))
        .with_mode(mode)
        .with_connect_timeout(Duration::from_millis(500))
        .with_operation_timeout(Duration::from_millis(500))
}

/// A server started and killed: its port is free now, reserved for its own restart.
fn down_server() -> Server {
    let mut server = Server::start();
    server.kill();
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_built_while_redis_is_down_picks_it_up() {
    for mode in [ConnectionMode::Multiplexed, ConnectionMode::Pool] {
        let mut server = down_server();
        let backend = tokio::time::timeout(
            CONNECT_LIMIT,
            RedisBackend::connect(config(server.url(), mode)),
        )
        .await
        .expect("connect returns within its timeouts")
        .expect("connect succeeds while Redis is down");
        assert!(!backend.is_connected(), "{mode:?}");
        let key = Key::new("answer").unwrap();
        let err = backend.get(&key).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{mode:?}: {err}");
        let entry = Entry::new(&b"42"[..], SystemClock.now(), Duration::from_secs(60));
        assert_eq!(
            backend.set(&key, &entry).await.unwrap_err().kind(),
            ErrorKind::Unavailable
        );

        server.restart();
        let up = Instant::now();
        let mut stored = false;
        while up.elapsed() < PICKUP_LIMIT {
            if backend.set(&key, &entry).await.is_ok() {
                stored = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            stored,
            "{mode:?}: the tier did not answer within {PICKUP_LIMIT:?} of the server coming up"
        );
        println!(
            "{mode:?}: serving {:?} after the server came up",
            up.elapsed()
        );
        assert!(backend.is_connected());
        assert_eq!(backend.get(&key).await.unwrap(), Some(entry));
    }
}

#[tokio::test]
async fn require_server_fails_connect_while_redis_is_down() {
    let server = down_server();
    let err = tokio::time::timeout(
        CONNECT_LIMIT,
        RedisBackend::connect(
            config(server.url(), ConnectionMode::Multiplexed).with_require_server(true),
        ),
    )
    .await
    .expect("connect returns within its timeouts")
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("refused"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backplane_built_while_redis_is_down_subscribes_when_it_comes_up() {
    let mut server = down_server();
    let cfg = config(server.url(), ConnectionMode::Multiplexed);
    let channel = unique_prefix("startdown-channel");
    let backplane = tokio::time::timeout(
        CONNECT_LIMIT,
        RedisBackplane::connect(&cfg, RedisBackplaneConfig::new(channel)),
    )
    .await
    .expect("connect returns within its timeouts")
    .expect("connect succeeds while Redis is down");
    assert!(!backplane.is_connected());
    let mut events = backplane.subscribe();

    server.restart();
    let event = tokio::time::timeout(PICKUP_LIMIT, events.recv())
        .await
        .expect("the backplane subscribes within the bound once Redis is up")
        .unwrap();
    assert!(matches!(event, BackplaneEvent::Reconnected), "{event:?}");
    assert!(backplane.is_connected());
}

//! Regression tests for two recovery bugs, on throwaway servers (testkit `RedisServer`, own
//! port and pid) and the testkit fault proxy, in both standalone connection modes:
//!
//! - after a Redis restart, the very first command succeeds (the multiplexed manager used to
//!   hand it the failure of its last reconnect attempt, which under the composer's circuit
//!   breaker failed the half-open probe and kept the tier skipped another cool-down);
//! - after replies were lost (a proxy swallowing traffic while requests time out), the
//!   connection is replaced: the very first command once traffic flows again succeeds, and
//!   concurrent requests each get their own key's value (the stuck connection used to match
//!   every later reply to an abandoned request, timing out forever).
//!
//! No wall-clock speed is asserted: every wait is bounded by the configured timeouts, and the
//! assertions are on outcomes.

#![allow(clippy::unwrap_used, reason = "test code: a panic is a test failure")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use layercake_core::{Backend, Clock, Entry, ErrorKind, Key, SystemClock};
use layercake_redis::{ConnectionMode, RedisBackend, RedisConfig};
use layercake_testkit::proxy::{FaultProxy, Mode};
use layercake_testkit::server::RedisServer;
use support::unique_prefix;

const OP_TIMEOUT: Duration = Duration::from_millis(200);

async fn backend(url: String, mode: ConnectionMode) -> Arc<RedisBackend> {
    let cfg = RedisConfig::new(url)
        .with_key_prefix(unique_prefix("recovery"))
        .with_mode(mode)
        .with_pool_max_size(2)
        .with_operation_timeout(OP_TIMEOUT)
        .with_connect_timeout(Duration::from_millis(200))
        .with_pool_wait_timeout(Duration::from_millis(200));
    Arc::new(RedisBackend::connect(cfg).await.unwrap())
}

fn entry(value: &str) -> Entry {
    Entry::new(
        value.as_bytes().to_vec(),
        SystemClock.now(),
        Duration::from_secs(60),
    )
}

async fn first_command_after_restart_succeeds(mode: ConnectionMode) {
    let mut server = RedisServer::start().await.unwrap();
    let b = backend(server.url(), mode).await;
    let k = Key::new("k").unwrap();
    let (before, after) = (entry("before"), entry("after"));
    b.set(&k, &before).await.unwrap();

    server.kill().await.unwrap();
    // Commands while nothing listens fail (and leave the connection with a failed reconnect).
    for _ in 0..3 {
        let e = b.get(&k).await.unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Timeout),
            "{mode:?}: {e}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the last reconnect attempt fail too.
    tokio::time::sleep(Duration::from_millis(200)).await;

    // `restart` returns once the new (empty) server answers PING.
    server.restart().await.unwrap();
    let first = b.get(&k).await;
    assert!(
        matches!(first, Ok(None)),
        "{mode:?}: the first command after the restart must succeed (the restarted server is \
         empty): {first:?}"
    );
    b.set(&k, &after).await.unwrap();
    assert_eq!(b.get(&k).await.unwrap(), Some(after));
    b.clear().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_command_after_restart_succeeds_multiplexed() {
    first_command_after_restart_succeeds(ConnectionMode::Multiplexed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_command_after_restart_succeeds_pool() {
    first_command_after_restart_succeeds(ConnectionMode::Pool).await;
}

async fn lost_replies_replace_the_connection(mode: ConnectionMode) {
    let server = RedisServer::start().await.unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let b = backend(format!("redis://{}", proxy.addr()), mode).await;
    let keys: Vec<Key> = (0..8).map(|i| Key::new(format!("k{i}")).unwrap()).collect();
    let values: Vec<Entry> = (0..8).map(|i| entry(&format!("v{i}"))).collect();
    for (k, v) in keys.iter().zip(&values) {
        b.set(k, v).await.unwrap();
    }

    // Requests on the open connection(s) whose bytes are swallowed: all time out.
    proxy.set_mode(Mode::Blackhole);
    let lost = futures::future::join_all(keys.iter().map(|k| {
        let b = b.clone();
        async move { b.get(k).await }
    }))
    .await;
    for r in &lost {
        let e = r.as_ref().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{mode:?}: {e}");
    }
    // A few more while the fault lasts (they may land on a replacement connection).
    for k in &keys[..3] {
        assert!(b.get(k).await.is_err(), "{mode:?}: served while blackholed");
    }
    proxy.set_mode(Mode::Pass);

    // Multiplexed: the very first command once traffic flows again is answered, with its own
    // value. Pool: the connections bb8 began to open during the fault must time out first
    // (connect timeout, then bb8's retry pause), so a few calls may still fail, but only
    // with Timeout / Unavailable, and the pool serves again within a bounded number of calls.
    let mut failed = 0;
    loop {
        match b.get(&keys[0]).await {
            Ok(got) => {
                assert_eq!(got.as_ref(), Some(&values[0]), "{mode:?}: after the fault");
                break;
            }
            Err(e) => {
                assert!(
                    mode == ConnectionMode::Pool,
                    "{mode:?}: the first command after the fault failed: {e}"
                );
                assert!(
                    matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Timeout),
                    "{mode:?}: {e}"
                );
                failed += 1;
                assert!(failed < 10, "{mode:?}: the pool did not recover: {e}");
            }
        }
    }
    println!("{mode:?}: {failed} failed calls after the fault ended");
    // And it stays so: sequential and concurrent reads each get their own key's value.
    for round in 0..5 {
        for (i, k) in keys.iter().enumerate() {
            let got = b.get(k).await;
            assert_eq!(
                got.as_ref().ok(),
                Some(&Some(values[i].clone())),
                "{mode:?}: round {round}, key {i}: {got:?}"
            );
        }
        let all = futures::future::join_all(keys.iter().map(|k| {
            let b = b.clone();
            async move { b.get(k).await }
        }))
        .await;
        for (i, got) in all.iter().enumerate() {
            assert_eq!(
                got.as_ref().ok(),
                Some(&Some(values[i].clone())),
                "{mode:?}: concurrent round {round}, key {i}: {got:?}"
            );
        }
    }
    b.health().await.unwrap();
    assert_eq!(
        b.corrupt_reads(),
        0,
        "{mode:?}: a reply was matched to another key"
    );
    assert!(
        proxy.accepted() > 1,
        "{mode:?}: the connection that lost replies was replaced"
    );
    // The replaced connections are closed, not leaked (their driver task waits for replies
    // that never come unless the last handle's drop aborts it).
    let most = if mode == ConnectionMode::Pool { 2 } else { 1 };
    let mut open = proxy.connections();
    for _ in 0..100 {
        if open <= most {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        open = proxy.connections();
    }
    assert!(open <= most, "{mode:?}: {open} connections still open");
    b.clear().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_replies_replace_the_connection_multiplexed() {
    lost_replies_replace_the_connection(ConnectionMode::Multiplexed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_replies_replace_the_connection_pool() {
    lost_replies_replace_the_connection(ConnectionMode::Pool).await;
}

/// Calls cancelled by their caller before the operation timeout (a composer timeout shorter
/// than the backend's) are no sign of a lost reply: the connection is kept (no reconnect per
/// cancellation), and the late replies fill their own slots, so later calls get their own
/// values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_cancelled_by_the_caller_keep_the_connection() {
    let server = RedisServer::start().await.unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let b = backend(
        format!("redis://{}", proxy.addr()),
        ConnectionMode::Multiplexed,
    )
    .await;
    let keys: Vec<Key> = (0..4).map(|i| Key::new(format!("k{i}")).unwrap()).collect();
    let values: Vec<Entry> = (0..4).map(|i| entry(&format!("v{i}"))).collect();
    for (k, v) in keys.iter().zip(&values) {
        b.set(k, v).await.unwrap();
    }
    let connections = proxy.accepted();

    proxy.set_mode(Mode::Latency(Duration::from_millis(20)));
    for k in keys.iter().cycle().take(12) {
        let cancelled = tokio::time::timeout(Duration::from_millis(2), b.get(k)).await;
        assert!(cancelled.is_err(), "answered despite the proxy's latency");
    }
    proxy.set_mode(Mode::Pass);
    for _ in 0..3 {
        for (k, v) in keys.iter().zip(&values) {
            assert_eq!(b.get(k).await.unwrap().as_ref(), Some(v));
        }
    }
    assert_eq!(
        proxy.accepted(),
        connections,
        "a cancelled call forced a reconnect"
    );
    assert_eq!(b.corrupt_reads(), 0);
    b.clear().await.unwrap();
}

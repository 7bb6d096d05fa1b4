//! Fault tests on a throwaway cluster of our own (initdb + pg_ctl on a free loopback port):
//! server restart with idle pooled connections, a frozen server, and the backplane across a
//! restart. Only this cluster's processes are stopped or signalled.
#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] functions")]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use layercake_core::backplane::{Backplane, BackplaneEvent, Message, Target};
use layercake_core::{Backend, Clock as _, Entry, ErrorKind, Key, SystemClock};
use layercake_postgres::{
    PostgresBackend, PostgresBackplane, PostgresBackplaneConfig, PostgresConfig, Recycling,
};
use support::Cluster;

const OP_TIMEOUT: Duration = Duration::from_millis(500);

fn config(cluster: &Cluster, recycling: Recycling) -> PostgresConfig {
    PostgresConfig::new(&cluster.url())
        .unwrap()
        .with_table("fault", "cache")
        .with_pool_max_size(4)
        .with_operation_timeout(OP_TIMEOUT)
        .with_connect_timeout(Duration::from_millis(300))
        .with_pool_timeouts(
            Duration::from_millis(300),
            Duration::from_millis(300),
            Duration::from_millis(200),
        )
        .with_recycling(recycling)
        .with_reaper(None)
}

fn entry(v: &str) -> Entry {
    Entry::new(
        v.as_bytes().to_vec(),
        SystemClock.now(),
        Duration::from_secs(600),
    )
}

/// Check out every pooled connection at once so the pool holds `n` idle ones afterwards.
async fn warm(b: &Arc<PostgresBackend>, n: usize) {
    let mut tasks = Vec::new();
    for i in 0..n * 4 {
        let b = Arc::clone(b);
        tasks.push(tokio::spawn(async move {
            b.get(&Key::new(format!("warm{i}")).unwrap()).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(b.pool().status().size, n, "pool warmed to {n} connections");
}

/// Restart with several idle pooled connections: the first calls after the restart succeed.
async fn restart_with_idle_connections(recycling: Recycling) {
    let cluster = Cluster::start();
    let b = Arc::new(
        PostgresBackend::connect(config(&cluster, recycling))
            .await
            .unwrap(),
    );
    let k = Key::new("survivor").unwrap();
    b.set(&k, &entry("before")).await.unwrap();
    warm(&b, 4).await;

    cluster.stop();
    // While down: every call fails fast with a temporary Unavailable or Timeout.
    let mut max = Duration::ZERO;
    let mut calls = 0;
    let down = Instant::now();
    while down.elapsed() < Duration::from_millis(800) {
        let start = Instant::now();
        let err = b.get(&k).await.unwrap_err();
        let took = start.elapsed();
        max = max.max(took);
        calls += 1;
        assert!(
            matches!(err.kind(), ErrorKind::Unavailable | ErrorKind::Timeout),
            "{err}"
        );
        assert!(err.is_temporary(), "{err:?}");
        assert!(
            took <= OP_TIMEOUT + Duration::from_millis(200),
            "a call took {took:?}"
        );
    }
    println!("{recycling:?}: {calls} calls while down, slowest failure {max:?}");

    // The failures above emptied the pool; the first call after the restart connects anew.
    let up = cluster.start_again();
    let v = b.get(&k).await.unwrap();
    println!(
        "{recycling:?}: first call {:?} after the restart",
        up.elapsed()
    );
    assert_eq!(v.unwrap().value.as_ref(), b"before");
    assert!(up.elapsed() < Duration::from_secs(2));
    // Now leave four idle connections in the pool and restart under them: all four are dead
    // when the next calls check them out.
    warm(&b, 4).await;
    let retries = b.retries();
    cluster.stop();
    let up = cluster.start_again();
    // Four concurrent first calls, one per dead idle connection.
    let mut tasks = Vec::new();
    for i in 0..4 {
        let b = Arc::clone(&b);
        let k = k.clone();
        tasks.push(tokio::spawn(async move {
            b.set(&Key::new(format!("after{i}")).unwrap(), &entry("x"))
                .await?;
            b.get(&k).await
        }));
    }
    for t in tasks {
        let got = t.await.unwrap().unwrap();
        assert_eq!(got.unwrap().value.as_ref(), b"before");
    }
    let took = up.elapsed();
    println!(
        "{recycling:?}: 4 concurrent first calls done {took:?} after the restart \
         (retries on closed connections: {})",
        b.retries() - retries
    );
    assert!(took < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_verified_recycling() {
    restart_with_idle_connections(Recycling::Verified).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_default_recycling() {
    restart_with_idle_connections(Recycling::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_server_calls_return_within_their_timeout() {
    let mut cluster = Cluster::start();
    let b = Arc::new(
        PostgresBackend::connect(config(&cluster, Recycling::default()))
            .await
            .unwrap(),
    );
    let k = Key::new("k").unwrap();
    b.set(&k, &entry("v")).await.unwrap();
    warm(&b, 4).await;
    cluster.freeze();
    let mut max = Duration::ZERO;
    let mut tasks = Vec::new();
    // Concurrent calls, more than the pool holds.
    for i in 0..8 {
        let b = Arc::clone(&b);
        let k = k.clone();
        tasks.push(tokio::spawn(async move {
            let start = Instant::now();
            let r = if i % 2 == 0 {
                b.get(&k).await.map(|_| ())
            } else {
                b.set(&k, &entry("w")).await
            };
            (r, start.elapsed())
        }));
    }
    for t in tasks {
        let (r, took) = t.await.unwrap();
        let err = r.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
        max = max.max(took);
    }
    for _ in 0..3 {
        let start = Instant::now();
        let err = b.health().await.unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::Timeout), "{err}");
        max = max.max(start.elapsed());
    }
    println!("frozen: slowest call returned after {max:?} (timeout {OP_TIMEOUT:?})");
    assert!(max <= OP_TIMEOUT + Duration::from_millis(250), "{max:?}");
    cluster.thaw();
    let thawed = Instant::now();
    let v = b.get(&k).await.unwrap();
    assert!(v.is_some());
    println!("thawed: first call succeeded after {:?}", thawed.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backplane_reconnects_after_a_restart() {
    let cluster = Cluster::start();
    let cfg = |c: &Cluster| {
        PostgresBackplaneConfig::new(&c.url())
            .unwrap()
            .with_channel("lc")
            .with_timeouts(Duration::from_millis(300), Duration::from_millis(500))
            .with_backoff(Duration::from_millis(20), Duration::from_millis(200))
    };
    let publisher = PostgresBackplane::connect(cfg(&cluster)).await.unwrap();
    let listener = PostgresBackplane::connect(cfg(&cluster)).await.unwrap();
    let mut rx = listener.subscribe();
    cluster.stop();
    let ev = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev, BackplaneEvent::Disconnected);
    assert!(!listener.is_connected());
    let m = Message {
        target: Target::Tag("t".into()),
        version: 1,
        origin: publisher.instance(),
    };
    let err = publisher.publish(&m).await.unwrap_err();
    assert!(err.is_temporary(), "{err}");
    let up = cluster.start_again();
    let ev = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev, BackplaneEvent::Reconnected);
    println!("backplane reconnected {:?} after the restart", up.elapsed());
    publisher.publish(&m).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev, BackplaneEvent::Message(m));
}

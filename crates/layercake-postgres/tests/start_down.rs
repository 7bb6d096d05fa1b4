//! A backend and a backplane built while PostgreSQL is down: `connect` succeeds, operations
//! fail with `Unavailable`, and once a server answers on the configured port the table is set
//! up and both work — a throwaway cluster stopped before `connect` and started after it.
//! Concurrent start-ups migrating one schema all succeed. Nothing sleeps to assert: each wait
//! polls with a bound.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests: a panic is a test failure"
)]

mod support;

use std::time::{Duration, Instant};

use layercake_core::backplane::{Backplane, BackplaneEvent};
use layercake_core::{Backend, Clock, Entry, ErrorKind, Key, SystemClock};
use layercake_postgres::{
    PostgresBackend, PostgresBackplane, PostgresBackplaneConfig, PostgresConfig,
};
use support::{Cluster, TestSchema};

/// Bound on `connect` while the server is down (one attempt, refused at once).
const CONNECT_LIMIT: Duration = Duration::from_secs(10);
/// Bound on the tier answering after the server accepts connections: the background
/// migration's longest pause is 1 s (the backplane's 2 s); the rest is slack for a loaded
/// 2-core machine.
const PICKUP_LIMIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_and_a_backplane_built_while_postgres_is_down_pick_it_up() {
    let cluster = Cluster::start();
    cluster.stop();
    let cfg = PostgresConfig::new(&cluster.url())
        .unwrap()
        .with_table("layercake_down", "cache")
        .with_connect_timeout(Duration::from_millis(500));
    let backend = tokio::time::timeout(CONNECT_LIMIT, PostgresBackend::connect(cfg.clone()))
        .await
        .expect("connect returns within its timeouts")
        .expect("connect succeeds while PostgreSQL is down");
    assert!(!backend.is_connected());
    let key = Key::new("answer").unwrap();
    let err = backend.get(&key).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_temporary());
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!(
            "unavailable (postgres): get: PostgreSQL at 127.0.0.1:{} has not answered yet",
            cluster.port
        )),
        "{shown}"
    );
    let bp_cfg = PostgresBackplaneConfig::new(&cluster.url())
        .unwrap()
        .with_channel("layercake_down")
        .with_timeouts(Duration::from_millis(500), Duration::from_secs(1));
    let backplane = tokio::time::timeout(CONNECT_LIMIT, PostgresBackplane::connect(bp_cfg.clone()))
        .await
        .expect("connect returns within its timeouts")
        .expect("the backplane starts disconnected while PostgreSQL is down");
    assert!(!backplane.is_connected());
    let mut events = backplane.subscribe();

    // With the server required, connect still fails.
    let err = tokio::time::timeout(
        CONNECT_LIMIT,
        PostgresBackend::connect(cfg.clone().with_require_server(true)),
    )
    .await
    .expect("connect returns within its timeouts")
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let err = tokio::time::timeout(
        CONNECT_LIMIT,
        PostgresBackplane::connect(bp_cfg.with_require_server(true)),
    )
    .await
    .expect("connect returns within its timeouts")
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");

    let up = cluster.start_again();
    let entry = Entry::new(&b"42"[..], SystemClock.now(), Duration::from_secs(60));
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
        "the tier did not answer within {PICKUP_LIMIT:?} of the server coming up"
    );
    println!(
        "backend: serving {:?} after the server came up",
        up.elapsed()
    );
    assert!(backend.is_connected());
    assert_eq!(backend.get(&key).await.unwrap(), Some(entry));

    let left = PICKUP_LIMIT.saturating_sub(up.elapsed());
    let event = tokio::time::timeout(left, events.recv())
        .await
        .expect("the backplane LISTENs within the bound once PostgreSQL is up")
        .unwrap();
    assert!(matches!(event, BackplaneEvent::Reconnected), "{event:?}");
    assert!(backplane.is_connected());
    println!(
        "backplane: listening {:?} after the server came up",
        up.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_start_ups_migrate_one_schema_safely() {
    let schema = TestSchema::new();
    // Four instances of one table and four of other tables in the same schema, at once.
    let started = Instant::now();
    let connects = (0..8).map(|i| {
        let table = if i % 2 == 0 {
            "shared".to_owned()
        } else {
            format!("own_{i}")
        };
        let cfg = schema.config(&table).with_require_server(true);
        tokio::spawn(async move {
            tokio::time::timeout(CONNECT_LIMIT, PostgresBackend::connect(cfg)).await
        })
    });
    let backends: Vec<PostgresBackend> = futures::future::join_all(connects)
        .await
        .into_iter()
        .map(|r| r.unwrap().expect("connect within the bound").unwrap())
        .collect();
    println!("8 concurrent start-ups in {:?}", started.elapsed());
    let key = Key::new("k").unwrap();
    let entry = Entry::new(&b"v"[..], SystemClock.now(), Duration::from_secs(60));
    backends[0].set(&key, &entry).await.unwrap();
    assert_eq!(backends[2].get(&key).await.unwrap(), Some(entry));
    // Odd instances have tables of their own.
    for b in backends.iter().skip(1).step_by(2) {
        assert_eq!(b.get(&key).await.unwrap(), None);
    }
    assert_eq!(schema.count("shared").await, 1);
}

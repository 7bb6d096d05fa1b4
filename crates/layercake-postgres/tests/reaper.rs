//! The reaper keeps the table bounded under a churn of short-lived entries, and stops.
#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] functions")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use layercake_core::{Backend, Clock as _, Entry, Key, ManualClock};
use layercake_postgres::{PostgresBackend, ReaperConfig};
use support::{TestSchema, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reaper_bounds_the_table_under_churn() {
    let schema = TestSchema::new();
    let clock = ManualClock::new();
    let cfg = schema
        .config("churn")
        .with_clock(Arc::new(clock.clone()))
        .with_reaper(Some(
            ReaperConfig::default()
                .with_interval(Duration::from_millis(50))
                .with_batch_size(100),
        ));
    let b = PostgresBackend::connect(cfg).await.unwrap();
    assert!(b.reaper_running());
    const ROUNDS: usize = 30;
    const PER_ROUND: usize = 200;
    let mut max_rows = 0;
    for round in 0..ROUNDS {
        let items: Vec<(Key, Entry)> = (0..PER_ROUND)
            .map(|i| {
                let k = Key::new(format!("r{round}:k{i}")).unwrap();
                (
                    k,
                    Entry::new(&b"short-lived"[..], clock.now(), Duration::from_secs(1)),
                )
            })
            .collect();
        b.set_many(&items).await.unwrap();
        // This round's rows plus whatever the reaper has not removed yet.
        max_rows = max_rows.max(schema.count("churn").await);
        // Every entry of this round expires; the next round's are fresh.
        clock.advance(Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let written = (ROUNDS * PER_ROUND) as i64;
    println!(
        "churn: {written} rows written, at most {max_rows} present, {} reaped",
        b.reaped()
    );
    // Without a reaper the table would hold all 6000 rows; with it, a few rounds at most.
    assert!(max_rows <= 1000, "table grew to {max_rows} rows");
    assert!(eventually(Duration::from_secs(10), || b.reaped() == written as u64).await);
    assert_eq!(schema.count("churn").await, 0);
    assert_eq!(b.reaper_errors(), 0);

    // Stopped reapers reap no more.
    b.stop_reaper();
    assert!(!b.reaper_running());
    let k = Key::new("after-stop").unwrap();
    b.set(
        &k,
        &Entry::new(&b"x"[..], clock.now(), Duration::from_secs(1)),
    )
    .await
    .unwrap();
    clock.advance(Duration::from_secs(2));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(schema.count("churn").await, 1);
    // The expired row is a miss all the same, and an explicit pass removes it.
    assert_eq!(b.get(&k).await.unwrap(), None);
    assert_eq!(b.reap_expired(10).await.unwrap(), 1);
    assert_eq!(schema.count("churn").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reaper_batches_are_bounded_and_spare_live_rows() {
    let schema = TestSchema::new();
    let clock = ManualClock::new();
    let cfg = schema
        .config("batches")
        .with_clock(Arc::new(clock.clone()))
        .with_reaper(None);
    let b = PostgresBackend::connect(cfg).await.unwrap();
    let short: Vec<(Key, Entry)> = (0..250)
        .map(|i| {
            (
                Key::new(format!("s{i}")).unwrap(),
                Entry::new(&b"s"[..], clock.now(), Duration::from_secs(1)),
            )
        })
        .collect();
    let long: Vec<(Key, Entry)> = (0..50)
        .map(|i| {
            (
                Key::new(format!("l{i}")).unwrap(),
                Entry::new(&b"l"[..], clock.now(), Duration::from_secs(1))
                    .with_stale_for(Duration::from_secs(3600)),
            )
        })
        .collect();
    b.set_many(&short).await.unwrap();
    b.set_many(&long).await.unwrap();
    clock.advance(Duration::from_secs(5));
    // Entries in their stale window are retained: only the 250 short ones go, 100 at a time.
    assert_eq!(b.reap_expired(100).await.unwrap(), 250);
    assert_eq!(schema.count("batches").await, 50);
    assert!(b.get(&long[0].0).await.unwrap().is_some());
}

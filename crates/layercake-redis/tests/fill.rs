//! Conditional fills on Redis beyond the conformance suite: where tombstones live, that a
//! plain prefix invalidation keeps them, and that the scripts come back after the server
//! forgot them.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failure")]

mod support;

use std::time::Duration;

use layercake_core::Clock as _;
use layercake_core::{Backend, Entry, FillOutcome, Key, Selector, SystemClock, Tombstone};
use layercake_redis::{RedisBackend, RedisConfig};
use layercake_testkit::services::require_redis;
use redis::AsyncCommands;
use support::{Server, unique_prefix};

fn entry(version: u64) -> Entry {
    Entry::new(&b"v"[..], SystemClock.now(), Duration::from_secs(60)).with_version(version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstones_sit_beside_their_entry_and_outlive_a_plain_prefix_invalidation() {
    let url = require_redis();
    let prefix = unique_prefix("fill-layout");
    let b = RedisBackend::connect(RedisConfig::new(&url).with_key_prefix(&prefix))
        .await
        .unwrap();
    let mut raw = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let k = Key::new("users/1").unwrap();
    b.set(&k, &entry(3)).await.unwrap();
    b.delete_with(
        &k,
        Tombstone::new(0x0102_0304_0506_0708, Duration::from_secs(30)),
    )
    .await
    .unwrap();
    let mut keys: Vec<String> = raw.keys(format!("{prefix}*")).await.unwrap();
    keys.sort();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let tomb = &keys[0];
    assert!(
        tomb.starts_with(&format!("{prefix}users/1\0tomb:")),
        "{tomb:?}"
    );
    let value: Vec<u8> = raw.get(tomb).await.unwrap();
    assert_eq!(value, [1, 2, 3, 4, 5, 6, 7, 8], "the version, big-endian");
    let pttl: i64 = raw.pttl(tomb).await.unwrap();
    assert!(pttl > 0 && pttl <= 30_000, "{pttl}");
    // Not listed, and kept by a plain invalidation of a prefix covering it.
    assert!(b.keys_with_prefix("users/", 10).await.unwrap().is_empty());
    b.invalidate(&Selector::Prefix("users/".into()))
        .await
        .unwrap();
    assert!(raw.exists::<_, bool>(tomb).await.unwrap());
    assert_eq!(
        b.fill(&k, &entry(5)).await.unwrap(),
        FillOutcome::Tombstoned
    );
    // A selector tombstone is one field of the marks hash, with its version and expiry.
    b.invalidate_with(
        &Selector::Tag("t".into()),
        Tombstone::new(9, Duration::from_secs(30)),
    )
    .await
    .unwrap();
    let marks: Vec<(Vec<u8>, Vec<u8>)> = raw.hgetall(format!("{prefix}\0marks")).await.unwrap();
    assert_eq!(marks.len(), 1);
    assert_eq!(marks[0].0, b"tt");
    assert_eq!(marks[0].1[..8], 9u64.to_be_bytes());
    // clear removes entries, tombstones and marks alike.
    b.clear().await.unwrap();
    let left: Vec<String> = raw.keys(format!("{prefix}*")).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(b.fill(&k, &entry(5)).await.unwrap(), FillOutcome::Stored);
    b.clear().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_are_sent_again_after_the_server_forgets_them() {
    let server = Server::start();
    let b = RedisBackend::connect(RedisConfig::new(server.url()).with_key_prefix("s:"))
        .await
        .unwrap();
    let mut raw = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let t = Tombstone::new(10, Duration::from_secs(30));
    for round in 0..2 {
        let k = Key::new(format!("k{round}")).unwrap();
        assert_eq!(b.fill(&k, &entry(1)).await.unwrap(), FillOutcome::Stored);
        b.delete_with(&k, t).await.unwrap();
        b.invalidate_with(&Selector::Prefix(format!("p{round}")), t)
            .await
            .unwrap();
        assert_eq!(
            b.fill(&k, &entry(2)).await.unwrap(),
            FillOutcome::Tombstoned
        );
        // Forget every script: the next round must work through EVAL.
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut raw)
            .await
            .unwrap();
    }
    drop(server);
}

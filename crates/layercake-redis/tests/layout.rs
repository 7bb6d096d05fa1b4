//! Redis-specific behaviour the conformance suite cannot see: the key layout, native expiry
//! (`PX`) from the remaining lifetime, tag-set lifetimes, and a wrong-type key healed as
//! corruption.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests: a panic is a test failure"
)]

mod support;

use std::time::Duration;

use layercake_core::{Backend, Clock, Entry, Key, SystemClock};
use layercake_redis::{RedisBackend, RedisConfig};
use layercake_testkit::services::require_redis;
use support::unique_prefix;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_expiry_and_tag_sets() {
    let url = require_redis();
    let prefix = unique_prefix("layout");
    let b = RedisBackend::connect(RedisConfig::new(&url).with_key_prefix(&prefix))
        .await
        .unwrap();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let pttl_conn = raw.clone();
    let pttl = |k: String| {
        let mut raw = pttl_conn.clone();
        async move {
            redis::cmd("PTTL")
                .arg(k)
                .query_async::<i64>(&mut raw)
                .await
                .unwrap()
        }
    };

    // Created 20 s ago, 60 s TTL, 30 s stale window: 70 s left.
    let now = SystemClock.now();
    let created = layercake_core::Timestamp(now.as_millis() - 20_000);
    let k = Key::new("item").unwrap();
    let e = Entry::new(&b"v"[..], created, Duration::from_secs(60))
        .with_stale_for(Duration::from_secs(30))
        .with_tags(["t1"]);
    b.set(&k, &e).await.unwrap();
    let ttl = pttl(format!("{prefix}item")).await;
    assert!(
        (68_000..=70_000).contains(&ttl),
        "PX from the remaining lifetime: {ttl}"
    );
    let tag_ttl = pttl(format!("{prefix}\0tag:t1")).await;
    assert!(
        (68_000..=70_000).contains(&tag_ttl),
        "tag set TTL: {tag_ttl}"
    );
    // A longer-lived member extends the tag set; a shorter one does not shorten it.
    let k2 = Key::new("item2").unwrap();
    b.set(
        &k2,
        &Entry::new(&b"v"[..], now, Duration::from_secs(500)).with_tags(["t1"]),
    )
    .await
    .unwrap();
    assert!(pttl(format!("{prefix}\0tag:t1")).await > 490_000);
    b.set(
        &k2,
        &Entry::new(&b"v"[..], now, Duration::from_secs(5)).with_tags(["t1"]),
    )
    .await
    .unwrap();
    assert!(pttl(format!("{prefix}\0tag:t1")).await > 490_000);
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg(format!("{prefix}\0tag:t1"))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(members.len(), 2);

    // An entry already past retain_until removes the stored copy.
    let gone = Entry::new(&b"v"[..], created, Duration::from_secs(1));
    b.set(&k, &gone).await.unwrap();
    assert_eq!(pttl(format!("{prefix}item")).await, -2);

    // A key of the wrong type under the prefix is a healed, counted miss.
    let bad = Key::new("listy").unwrap();
    redis::cmd("RPUSH")
        .arg(format!("{prefix}listy"))
        .arg("x")
        .query_async::<()>(&mut raw)
        .await
        .unwrap();
    assert_eq!(b.get(&bad).await.unwrap(), None);
    assert_eq!(b.corrupt_reads(), 1);
    assert_eq!(pttl(format!("{prefix}listy")).await, -2);

    // clear removes entries and tag sets, and nothing outside the prefix.
    let outside = format!("{}x", &prefix[..prefix.len() - 1]);
    redis::cmd("SET")
        .arg(&outside)
        .arg("keep")
        .query_async::<()>(&mut raw)
        .await
        .unwrap();
    b.clear().await.unwrap();
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", layercake_redis::escape_glob(&prefix)))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(pttl(outside.clone()).await, -1);
    redis::cmd("DEL")
        .arg(&outside)
        .query_async::<()>(&mut raw)
        .await
        .unwrap();
}

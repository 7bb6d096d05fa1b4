//! Coalesced `GET`s (`RedisConfig::coalesce_gets`): concurrent reads answered through one
//! `MGET` must each get exactly their own key's entry, miss or corruption, in both
//! connection modes and on both runtimes; with coalescing off the answers are the same and
//! no `MGET` is used.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests: a panic is a test failure"
)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use layercake_core::{Backend, Clock, Entry, Key, SystemClock};
use layercake_redis::{ConnectionMode, RedisBackend, RedisConfig};
use layercake_testkit::services::require_redis;
use support::unique_prefix;

/// Keys read concurrently per round.
const KEYS: usize = 300;

fn entry(i: usize) -> Entry {
    Entry::new(
        format!("value {i}").into_bytes(),
        SystemClock.now(),
        Duration::from_secs(60),
    )
}

/// What key `i` holds: an entry (i % 5 != 0), nothing (i % 10 == 0), or garbage bytes
/// (i % 10 == 5).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Held {
    Entry,
    Nothing,
    Garbage,
}

fn held(i: usize) -> Held {
    match i % 10 {
        0 => Held::Nothing,
        5 => Held::Garbage,
        _ => Held::Entry,
    }
}

/// Write the fixture, read every key concurrently (each read on its own task), check each
/// answer; returns the backend for the caller's counters.
///
/// `after` sets `RedisConfig::coalesce_after` (`None`: the mode's default).
async fn read_all_concurrently(
    mode: ConnectionMode,
    coalesce: bool,
    after: Option<usize>,
) -> Arc<RedisBackend> {
    let url = require_redis();
    let prefix = unique_prefix("coalesce");
    let mut cfg = RedisConfig::new(&url)
        .with_key_prefix(&prefix)
        .with_mode(mode)
        .with_coalesce_gets(coalesce);
    if let Some(n) = after {
        cfg = cfg.with_coalesce_after(n);
    }
    let b = Arc::new(RedisBackend::connect(cfg).await.unwrap());
    let keys: Vec<Key> = (0..KEYS)
        .map(|i| Key::new(format!("k{i}")).unwrap())
        .collect();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    for (i, k) in keys.iter().enumerate() {
        match held(i) {
            Held::Entry => b.set(k, &entry(i)).await.unwrap(),
            Held::Nothing => {}
            Held::Garbage => redis::cmd("SET")
                .arg(format!("{prefix}{}", k.as_str()))
                .arg(b"not an envelope".as_slice())
                .query_async::<()>(&mut raw)
                .await
                .unwrap(),
        }
    }
    // Two rounds: the first heals the garbage, the second finds those keys gone.
    for round in 0..2 {
        let reads: Vec<_> = keys
            .iter()
            .cloned()
            .map(|k| {
                let b = b.clone();
                tokio::spawn(async move { b.get(&k).await })
            })
            .collect();
        for (i, r) in reads.into_iter().enumerate() {
            let got = r.await.unwrap().unwrap();
            match held(i) {
                Held::Entry => assert_eq!(
                    got.map(|e| e.value),
                    Some(entry(i).value),
                    "{mode:?}, coalesce {coalesce}, round {round}: key k{i}"
                ),
                Held::Nothing | Held::Garbage => assert_eq!(
                    got, None,
                    "{mode:?}, coalesce {coalesce}, round {round}: key k{i}"
                ),
            }
        }
    }
    let garbage = (0..KEYS).filter(|&i| held(i) == Held::Garbage).count() as u64;
    assert_eq!(
        b.corrupt_reads(),
        garbage,
        "{mode:?}, coalesce {coalesce}: each garbage value is reported once, then healed"
    );
    b.clear().await.unwrap();
    b
}

async fn coalesced(mode: ConnectionMode) {
    let on = read_all_concurrently(mode, true, None).await;
    assert!(
        on.coalesced_gets() > 0,
        "{mode:?}: {KEYS} concurrent reads were all sent alone"
    );
    assert!(
        on.coalesced_gets() <= 2 * KEYS as u64,
        "{mode:?}: more coalesced reads ({}) than reads",
        on.coalesced_gets()
    );
    let off = read_all_concurrently(mode, false, None).await;
    assert_eq!(off.coalesced_gets(), 0, "{mode:?}: coalescing was off");
}

/// A multiplexed connection sends up to `coalesce_after` concurrent `GET`s alone (16 by
/// default), and coalesces only the ones beyond.
#[tokio::test(flavor = "current_thread")]
async fn gets_are_coalesced_only_past_coalesce_after() {
    let mode = ConnectionMode::Multiplexed;
    // Every round starts with nothing in flight: its first 16 reads go alone.
    let default = read_all_concurrently(mode, true, None).await;
    let most = 2 * (KEYS as u64 - 16);
    assert!(
        (1..=most).contains(&default.coalesced_gets()),
        "default: {} of 2 × {KEYS} concurrent reads coalesced; expected 1..={most}",
        default.coalesced_gets()
    );
    // A limit above the reads in flight: every read goes alone.
    let above = read_all_concurrently(mode, true, Some(KEYS + 1)).await;
    assert_eq!(
        above.coalesced_gets(),
        0,
        "coalesce_after {}: fewer reads than that were in flight",
        KEYS + 1
    );
}

#[tokio::test(flavor = "current_thread")]
async fn concurrent_gets_coalesce_multiplexed_current_thread() {
    coalesced(ConnectionMode::Multiplexed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_gets_coalesce_multiplexed_multi_thread() {
    coalesced(ConnectionMode::Multiplexed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_gets_coalesce_pool() {
    coalesced(ConnectionMode::Pool).await;
}

/// `n` reads of `k`, each on its own task, started together.
fn concurrent_gets(
    b: &Arc<RedisBackend>,
    k: &Key,
    n: usize,
) -> Vec<tokio::task::JoinHandle<layercake_core::Result<Option<Entry>>>> {
    (0..n)
        .map(|_| {
            let (b, k) = (b.clone(), k.clone());
            tokio::spawn(async move { b.get(&k).await })
        })
        .collect()
}

/// A backend used from a second runtime after the first one (which ran its flusher) shut
/// down still answers: the dropped flusher does not leave the queue orphaned.
#[test]
fn a_backend_outlives_the_runtime_that_ran_its_flusher() {
    let url = require_redis();
    let prefix = unique_prefix("coalesce-rt");
    let rt = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let first = rt();
    let b = first.block_on(async {
        let b = Arc::new(
            RedisBackend::connect(
                RedisConfig::new(&url)
                    .with_key_prefix(&prefix)
                    .with_mode(ConnectionMode::Pool),
            )
            .await
            .unwrap(),
        );
        let k = Key::new("k").unwrap();
        b.set(&k, &entry(1)).await.unwrap();
        for r in concurrent_gets(&b, &k, 50) {
            assert_eq!(
                r.await.unwrap().unwrap().map(|e| e.value),
                Some(entry(1).value)
            );
        }
        b
    });
    drop(first);
    // The pool's connections died with the first runtime; the backend replaces them.
    rt().block_on(async {
        let k = Key::new("k").unwrap();
        let mut ok = 0;
        for r in concurrent_gets(&b, &k, 50) {
            if let Ok(Some(e)) = r.await.unwrap() {
                assert_eq!(e.value, entry(1).value);
                ok += 1;
            }
        }
        assert!(ok > 0, "no read succeeded on the second runtime");
        b.clear().await.unwrap();
    });
}

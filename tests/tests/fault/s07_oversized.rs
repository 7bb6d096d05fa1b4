//! Scenario 7: oversized values.

use std::sync::Arc;
use std::time::Duration;

use layercake::{
    Backend, Cache, Clock, Codec, Entry, ErrorKind, FixedTtl, MemoryBackend, PolicyExt, Source,
    SystemClock, TierSet, WriteOptions,
};
use layercake_file::{FileBackend, FileConfig};
use layercake_postgres::PostgresBackend;
use layercake_testkit::services::{require_postgres, require_redis, unique_id};
use layercake_tests::drop_schema;

use super::support::{postgres_config, redis_tier};

/// Which tiers hold `name` (raw `get` on each backend).
async fn holders(cache: &Cache, stack: &[Arc<dyn Backend>], name: &str) -> Vec<Option<String>> {
    let key = cache.key(name).unwrap();
    let mut out = Vec::new();
    for t in stack {
        out.push(t.get(&key).await.unwrap().map(|e| {
            let s = Codec::json()
                .decode::<String>(&e.value, e.format, e.compression)
                .unwrap();
            if s.len() > 16 {
                format!("<{} bytes>", s.len())
            } else {
                s
            }
        }));
    }
    out
}

/// L1 memory (1 MiB bound), L2 Redis, L3 PostgreSQL (64 KiB limit), L4 files (1 MiB bound):
///
/// - a 200 KiB value with the default policy is rejected with `TooLarge` naming L1, and no
///   tier stores it (nor loses the old value of the key to it);
/// - routed by a size policy (over 100 KiB: skip L1 and L3) it is stored in L2 and L4 only,
///   read from L2, never promoted to L1;
/// - a value that passes the composer's size check but whose envelope (with tags) a tier
///   rejects is removed from the tiers that took it: nothing partial is stored;
/// - each backend rejects a value over its own limit with `TooLarge` and stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_07_oversized_values_are_rejected_or_routed_never_partial() {
    let (redis_url, database_url) = (require_redis(), require_postgres());
    let name = unique_id("fault_s7_");
    let dir = tempfile::tempdir().unwrap();
    let stack: Vec<Arc<dyn Backend>> = vec![
        Arc::new(MemoryBackend::with_max_bytes(1 << 20).unwrap()),
        Arc::new(redis_tier(&redis_url, &format!("{name}:")).await),
        Arc::new(
            PostgresBackend::connect(
                postgres_config(&database_url, &name).with_max_value_bytes(64 * 1024),
            )
            .await
            .unwrap(),
        ),
        Arc::new(
            FileBackend::open(FileConfig::new(dir.path()).with_max_bytes(1 << 20))
                .await
                .unwrap(),
        ),
    ];
    let build = |policy: Option<TierSet>| {
        let mut b = Cache::builder("fault-s7");
        for t in &stack {
            b = b.shared_tier(t.clone());
        }
        match policy {
            Some(skip) => {
                b.policy(FixedTtl::new(Duration::from_secs(600)).route_by_size(100 * 1024, skip))
            }
            None => b.policy(FixedTtl::new(Duration::from_secs(600))),
        }
        .build()
        .unwrap()
    };
    let plain = build(None);
    let big = "b".repeat(200 * 1024);

    // (a) Rejected before anything is written.
    let err = plain.set("big", big.clone()).await.unwrap_err();
    let a = holders(&plain, &stack, "big").await;
    // (d) An old value survives a rejected overwrite, and the new one is nowhere.
    plain.set("old", "old value".to_string()).await.unwrap();
    let err_d = plain.set("old", big.clone()).await.unwrap_err();
    let d = holders(&plain, &stack, "old").await;

    // (b) Routed by size.
    let routed = build(Some(TierSet::only(&[0, 2])));
    routed.set("routed", big.clone()).await.unwrap();
    let b = holders(&routed, &stack, "routed").await;
    let first = routed.get::<String>("routed").await.unwrap().unwrap();
    let second = routed.get::<String>("routed").await.unwrap().unwrap();
    let b_after = holders(&routed, &stack, "routed").await;

    // (c) Passes the composer's check, rejected by PostgreSQL's envelope limit: rolled back.
    let key_len = plain.key("edge").unwrap().len();
    let edge = "e".repeat(64 * 1024 - key_len - 64 - 2);
    let err_c = plain
        .set_with(
            "edge",
            edge,
            &WriteOptions::new().tag("a-tag-of-twenty-char"),
        )
        .await
        .unwrap_err();
    let c = holders(&plain, &stack, "edge").await;

    // (e) Each backend's own limit.
    let now = SystemClock.now();
    let mut direct = Vec::new();
    for (i, (t, size)) in stack
        .iter()
        .zip([1 << 20, 0, 65 * 1024, 1 << 20])
        .enumerate()
    {
        if size == 0 {
            continue; // Redis accepts up to 512 MiB: not worth a test allocation.
        }
        let key = layercake::Key::new(format!("{name}:direct")).unwrap();
        let r = t
            .set(
                &key,
                &Entry::new(vec![7u8; size], now, Duration::from_secs(60)),
            )
            .await;
        let kind = r.as_ref().err().map(|e| e.kind());
        let stored = t.get(&key).await.unwrap().is_some();
        direct.push((i, kind, stored));
    }

    println!(
        "scenario 7: default_policy={:?} (tier {:?}) stored={a:?} overwrite={:?} kept={d:?} \
         routed_stored={b:?} routed_reads={:?},{:?} routed_after_reads={b_after:?} \
         tagged_edge={:?} (tier {:?}) stored={c:?} direct={direct:?}",
        err.kind(),
        err.tier(),
        err_d.kind(),
        first.source,
        second.source,
        err_c.kind(),
        err_c.tier(),
    );
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
    assert_eq!(err.tier(), Some("l1"), "{err}");
    assert_eq!(a, vec![None, None, None, None]);
    assert_eq!(err_d.kind(), ErrorKind::TooLarge);
    assert!(d.iter().all(|v| v.as_deref() == Some("old value")), "{d:?}");
    assert_eq!(
        b,
        vec![
            None,
            Some("<204800 bytes>".into()),
            None,
            Some("<204800 bytes>".into())
        ]
    );
    assert_eq!(
        (first.value.len(), first.source),
        (big.len(), Source::Hit { tier: 1 })
    );
    assert_eq!(
        second.source,
        Source::Hit { tier: 1 },
        "never promoted to L1"
    );
    assert_eq!(b_after, b);
    assert_eq!(err_c.kind(), ErrorKind::TooLarge, "{err_c}");
    assert_eq!(c, vec![None, None, None, None], "nothing partial stored");
    for (i, kind, stored) in &direct {
        assert_eq!(*kind, Some(ErrorKind::TooLarge), "tier {i}");
        assert!(!stored, "tier {i} stored part of an oversized value");
    }
    let _ = stack[1].clear().await;
    let _ = drop_schema(&database_url, &name).await;
}

//! Miss reasons, produced on purpose and counted exactly, per tier: never seen, evicted
//! (removed from the tier behind the cache's back), expired, invalidated (delete, prefix, tag,
//! clear), corrupt, tier error, skipped by the breaker, repair pending; per namespace; off.
#![allow(clippy::unwrap_used, reason = "test code: a panic is a test failure")]

use std::sync::Arc;
use std::time::Duration;

use layercake::{
    Backend, BreakerConfig, Cache, Clock, ErrorKind, FixedTtl, InsightConfig, ManualClock,
    MemoryBackend, MissReason, MissReasons, TierOptions, WriteOptions,
};
use layercake_memory::MemoryConfig;
use layercake_testkit::faulty::{Fault, FaultHandle, FaultyBackend};
use layercake_testkit::recording::Operation;

use MissReason::*;

fn mem(clock: &ManualClock) -> Arc<dyn Backend> {
    Arc::new(
        MemoryBackend::new(MemoryConfig::new(64 << 20).with_clock(Arc::new(clock.clone())))
            .unwrap(),
    )
}

struct Setup {
    cache: Cache,
    l1: Arc<dyn Backend>,
    faults: FaultHandle,
    clock: ManualClock,
}

/// L1 memory, L2 a fault-injecting memory tier with a breaker that opens after 2 failures;
/// a 100 s TTL on a manual clock.
fn setup(insight: InsightConfig) -> Setup {
    let clock = ManualClock::new();
    let l1 = mem(&clock);
    let faulty = FaultyBackend::new(mem(&clock), 7);
    let faults = faulty.handle();
    let cache = Cache::builder("why")
        .shared_tier(l1.clone())
        .tier_with(
            faulty,
            TierOptions::new().breaker(Some(BreakerConfig {
                failure_threshold: 2,
                open_for: Duration::from_secs(3600),
            })),
        )
        .policy(FixedTtl::new(Duration::from_secs(100)))
        .clock(Arc::new(clock.clone()))
        .insight(insight)
        .build()
        .unwrap();
    Setup {
        cache,
        l1,
        faults,
        clock,
    }
}

/// The misses of tier `t` as (reason, count) pairs, most frequent first.
fn misses(cache: &Cache, t: usize) -> Vec<(MissReason, u64)> {
    cache.stats().tiers[t].misses_by_reason.iter().collect()
}

async fn evict_from_l1(s: &Setup, text: &str) {
    s.l1.delete(&s.cache.key(text).unwrap()).await.unwrap();
}

#[tokio::test]
async fn never_seen_at_every_tier() {
    let s = setup(InsightConfig::new());
    assert!(s.cache.get::<u32>("a").await.unwrap().is_none());
    assert_eq!(misses(&s.cache, 0), vec![(NeverSeen, 1)]);
    assert_eq!(misses(&s.cache, 1), vec![(NeverSeen, 1)]);
}

#[tokio::test]
async fn evicted_from_l1_then_hit_in_l2() {
    let s = setup(InsightConfig::new());
    s.cache.set("b", 1u32).await.unwrap();
    evict_from_l1(&s, "b").await;
    assert_eq!(*s.cache.get::<u32>("b").await.unwrap().unwrap().value, 1);
    assert_eq!(misses(&s.cache, 0), vec![(Evicted, 1)]);
    assert_eq!(misses(&s.cache, 1), vec![]);
    // The promotion wrote it back: the next read hits L1.
    s.cache.get::<u32>("b").await.unwrap().unwrap();
    assert_eq!(s.cache.stats().tiers[0].misses_by_reason.total(), 1);
}

#[tokio::test]
async fn expired_at_every_tier() {
    let s = setup(InsightConfig::new());
    s.cache.set("c", 1u32).await.unwrap();
    s.clock.advance(Duration::from_secs(101));
    assert!(s.cache.get::<u32>("c").await.unwrap().is_none());
    assert_eq!(misses(&s.cache, 0), vec![(Expired, 1)]);
    assert_eq!(misses(&s.cache, 1), vec![(Expired, 1)]);
}

#[tokio::test]
async fn invalidated_by_delete_prefix_tag_and_clear() {
    let s = setup(InsightConfig::new());
    let c = &s.cache;
    c.set("d", 1u32).await.unwrap();
    c.delete("d").await.unwrap();
    c.set("p/1", 1u32).await.unwrap();
    c.invalidate_prefix("p/").await.unwrap();
    c.set_with("t", 1u32, &WriteOptions::new().tag("x"))
        .await
        .unwrap();
    c.invalidate_tag("x").await.unwrap();
    for k in ["d", "p/1", "t"] {
        assert!(c.get::<u32>(k).await.unwrap().is_none(), "{k}");
    }
    assert_eq!(misses(c, 0), vec![(Invalidated, 3)]);
    assert_eq!(misses(c, 1), vec![(Invalidated, 3)]);
    // Written again after the removal: a later eviction is an eviction again.
    c.set("d", 2u32).await.unwrap();
    evict_from_l1(&s, "d").await;
    c.get::<u32>("d").await.unwrap().unwrap();
    assert_eq!(c.stats().tiers[0].misses_by_reason.get(Evicted), 1);
    c.set("e", 1u32).await.unwrap();
    c.clear().await.unwrap();
    assert!(c.get::<u32>("e").await.unwrap().is_none());
    assert_eq!(c.stats().tiers[0].misses_by_reason.get(Invalidated), 4);
    assert_eq!(c.stats().tiers[1].misses_by_reason.get(Invalidated), 4);
}

#[tokio::test]
async fn corrupt_in_l2() {
    let s = setup(InsightConfig::new());
    s.cache.set("f", 1u32).await.unwrap();
    evict_from_l1(&s, "f").await;
    s.faults.inject(Operation::Get, Fault::FlipValue);
    assert!(s.cache.get::<u32>("f").await.unwrap().is_none());
    assert_eq!(misses(&s.cache, 0), vec![(Evicted, 1)]);
    assert_eq!(misses(&s.cache, 1), vec![(Corrupt, 1)]);
}

#[tokio::test]
async fn tier_errors_then_breaker_skips() {
    let s = setup(InsightConfig::new());
    s.faults
        .inject(Operation::Get, Fault::Fail(ErrorKind::Unavailable));
    for _ in 0..5 {
        assert!(s.cache.get::<u32>("g").await.unwrap().is_none());
    }
    assert_eq!(misses(&s.cache, 0), vec![(NeverSeen, 5)]);
    // Two failures open the breaker; the next three reads skip the tier.
    assert_eq!(misses(&s.cache, 1), vec![(Skipped, 3), (Error, 2)]);
}

#[tokio::test]
async fn repair_pending_in_l2() {
    let s = setup(InsightConfig::new());
    s.faults
        .inject(Operation::Set, Fault::Fail(ErrorKind::Unavailable));
    s.cache.set("h", 1u32).await.unwrap();
    s.faults.clear_all();
    evict_from_l1(&s, "h").await;
    assert!(s.cache.get::<u32>("h").await.unwrap().is_none());
    assert_eq!(misses(&s.cache, 0), vec![(Evicted, 1)]);
    assert_eq!(misses(&s.cache, 1), vec![(RepairPending, 1)]);
}

#[tokio::test]
async fn batches_count_reasons_too() {
    let s = setup(InsightConfig::new());
    s.cache.set("b", 1u32).await.unwrap();
    evict_from_l1(&s, "b").await;
    s.cache.set("c", 1u32).await.unwrap();
    let got = s.cache.get_many::<u32, _>(&["a", "b", "c"]).await.unwrap();
    assert_eq!(got.iter().filter(|g| g.is_some()).count(), 2);
    assert_eq!(misses(&s.cache, 0), vec![(NeverSeen, 1), (Evicted, 1)]);
    assert_eq!(misses(&s.cache, 1), vec![(NeverSeen, 1)]);
}

#[tokio::test]
async fn per_namespace_rows() {
    let s = setup(InsightConfig::new());
    let other = s.cache.with_keys(layercake::PlainKeys::new(
        layercake::Namespace::new("users", 1).unwrap(),
    ));
    assert!(s.cache.get::<u32>("a").await.unwrap().is_none());
    other.set("u", 1u32).await.unwrap();
    s.l1.delete(&other.key("u").unwrap()).await.unwrap();
    other.get::<u32>("u").await.unwrap().unwrap();
    let rows = s.cache.misses_by_namespace();
    let row = |ns: &str| {
        rows.iter()
            .find(|r| r.namespace == ns)
            .map(|r| r.tiers.clone())
            .unwrap_or_else(|| panic!("no row {ns}: {rows:?}"))
    };
    assert_eq!(
        row("default")[0].iter().collect::<Vec<_>>(),
        vec![(NeverSeen, 1)]
    );
    assert_eq!(
        row("users")[0].iter().collect::<Vec<_>>(),
        vec![(Evicted, 1)]
    );
    assert_eq!(row("users")[1], MissReasons::default());
}

#[tokio::test]
async fn off_counts_nothing() {
    let s = setup(InsightConfig::off());
    s.cache.set("b", 1u32).await.unwrap();
    evict_from_l1(&s, "b").await;
    s.cache.get::<u32>("b").await.unwrap().unwrap();
    assert!(s.cache.get::<u32>("a").await.unwrap().is_none());
    assert_eq!(s.cache.stats().tiers[0].misses_by_reason.total(), 0);
    assert_eq!(s.cache.stats().tiers[0].misses, 2);
}

#[tokio::test]
async fn a_saved_miss_report_holds_the_counts_and_reads_back() {
    let s = setup(InsightConfig::new().target(0, 0.9));
    s.cache.set("hit", 1u32).await.unwrap();
    assert!(s.cache.get::<u32>("hit").await.unwrap().is_some());
    assert!(s.cache.get::<u32>("absent").await.unwrap().is_none());
    s.cache.set("gone", 2u32).await.unwrap();
    s.cache.delete("gone").await.unwrap();
    assert!(s.cache.get::<u32>("gone").await.unwrap().is_none());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("misses.json");
    s.cache.save_miss_report(&path).unwrap();
    let saved = layercake::SavedMissReport::read(&path).unwrap();
    assert_eq!(saved, s.cache.saved_miss_report());
    assert_eq!(saved.format, layercake::MISS_REPORT_FORMAT);
    assert_eq!(saved.cache, "why");
    assert_eq!(saved.saved_at_ms, s.clock.now().0);
    let l1 = &saved.report.rows[0];
    assert_eq!((l1.position, l1.namespace.as_deref()), (0, None));
    assert_eq!(
        (l1.misses.get(NeverSeen), l1.misses.get(Invalidated)),
        (1, 1)
    );
    assert!(l1.missed_target(), "1 hit in 3 reads is below 90 %");
    assert_eq!((saved.tiers[0].hits, saved.tiers[0].reads), (1, 3));
    assert_eq!(saved.tiers[1].reads, 2, "both misses reached L2");
    assert_eq!(saved.namespaces[0].namespace, "default");
    assert_eq!(saved.namespaces[0].tiers[0], l1.misses);

    std::fs::write(&path, b"{\"format\": 1}").unwrap();
    let err = layercake::SavedMissReport::read(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("is not a miss report"), "{err}");
}

#[tokio::test]
async fn the_configured_miss_report_is_saved_periodically_and_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let periodic = dir.path().join("periodic.json");
    let s =
        setup(InsightConfig::new().save_miss_report(&periodic, Some(Duration::from_millis(20))));
    assert!(s.cache.get::<u32>("absent").await.unwrap().is_none());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(saved) = layercake::SavedMissReport::read(&periodic)
            && saved.report.rows[0].misses.get(NeverSeen) == 1
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no periodic save within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let on_shutdown = dir.path().join("shutdown.json");
    let s = setup(InsightConfig::new().save_miss_report(&on_shutdown, None));
    assert!(s.cache.get::<u32>("absent").await.unwrap().is_none());
    assert!(!on_shutdown.exists(), "saved only on shutdown");
    s.cache.shutdown().await;
    let saved = layercake::SavedMissReport::read(&on_shutdown).unwrap();
    assert_eq!(saved.report.rows[0].misses.get(NeverSeen), 1);
}

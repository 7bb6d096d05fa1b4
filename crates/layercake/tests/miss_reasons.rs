//! Miss reasons, produced on purpose and counted exactly, per tier: never seen, evicted
//! (removed from the tier behind the cache's back), expired, invalidated (delete, prefix, tag,
//! clear), corrupt, tier error, skipped by the breaker, repair pending; per namespace; off.
#![allow(clippy::unwrap_used, reason = "test code: a panic is a test failure")]

use std::sync::Arc;
use std::time::Duration;

use layercake::{
    Backend, BreakerConfig, Cache, ErrorKind, FixedTtl, InsightConfig, ManualClock, MemoryBackend,
    MissReason, MissReasons, TierOptions, WriteOptions,
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

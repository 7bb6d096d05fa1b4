//! The typed API's per-call choices: reads that need only `DeserializeOwned`, the loader's
//! error back typed, `get_many` over any key input, skipping the memory or the shared tiers,
//! stale reads on request, a lifetime chosen by the loader's result, and a hit's age.
#![allow(clippy::unwrap_used, reason = "test code: a panic is a test failure")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use layercake::{
    Backend, Cache, Computed, ErrorKind, FixedTtl, ManualClock, MemoryBackend, PolicyExt,
    ReadOptions, Request, Scope, Source, TierOptions, WriteOptions,
};
use layercake_memory::MemoryConfig;

/// An L1 memory tier and an L2 memory tier declared `Shared` (standing for Redis), both
/// reachable by the test, on a manual clock; TTL 10 s, stale for 100 s more.
fn stack() -> (Cache, Arc<dyn Backend>, Arc<dyn Backend>, ManualClock) {
    let clock = ManualClock::new();
    let mem = || -> Arc<dyn Backend> {
        Arc::new(
            MemoryBackend::new(MemoryConfig::new(8 << 20).with_clock(Arc::new(clock.clone())))
                .unwrap(),
        )
    };
    let (l1, l2) = (mem(), mem());
    let cache = Cache::builder("api")
        .shared_tier(l1.clone())
        .shared_tier_with(l2.clone(), TierOptions::new().scope(Scope::Shared))
        .clock(Arc::new(clock.clone()))
        .policy(FixedTtl::new(Duration::from_secs(10)).stale_for(Duration::from_secs(100)))
        .build()
        .unwrap();
    (cache, l1, l2, clock)
}

/// A type that can be read but not written: `get` must not ask for `Serialize`.
#[derive(Debug, serde::Deserialize, PartialEq)]
struct ReadOnly {
    n: u32,
}

/// A type that can be written but not read: `set` must not ask for `Deserialize`.
#[derive(serde::Serialize)]
struct WriteOnly {
    n: u32,
}

#[tokio::test]
async fn get_needs_only_deserialize_and_set_only_serialize() {
    let (cache, l1, ..) = stack();
    cache.set("k", WriteOnly { n: 7 }).await.unwrap();
    // From L1 (another type was decoded there) and from L2 (decoded from bytes).
    let got = cache.get::<ReadOnly>("k").await.unwrap().unwrap();
    assert_eq!(got.value.n, 7);
    l1.delete(&cache.key("k").unwrap()).await.unwrap();
    let got = cache.get::<ReadOnly>("k").await.unwrap().unwrap();
    assert_eq!((got.n, got.source), (7, Source::Hit { tier: 1 }));
}

#[derive(Debug)]
struct UpstreamError {
    status: u16,
}
impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "upstream answered {}", self.status)
    }
}
impl std::error::Error for UpstreamError {}

#[tokio::test]
async fn loader_error_comes_back_typed() {
    let (cache, ..) = stack();
    let e = cache
        .get_or_compute::<u32, _, _, _>("k", || async { Err(UpstreamError { status: 503 }) })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Loader);
    assert_eq!(e.loader_error::<UpstreamError>().unwrap().status, 503);
    assert!(e.loader_error::<std::io::Error>().is_none());
    assert!(e.to_string().contains("upstream answered 503"), "{e}");
    // Batches keep it too.
    let e = cache
        .get_or_compute_many::<u32, _, _, _, _>(&["a"], |_| async {
            Err(UpstreamError { status: 429 })
        })
        .await
        .unwrap_err();
    assert_eq!(e.loader_error::<UpstreamError>().unwrap().status, 429);
}

#[tokio::test]
async fn get_many_takes_any_key_input() {
    let (cache, ..) = stack();
    cache.set("a", 1u32).await.unwrap();
    let req = serde_json::json!({"q": "b"});
    cache.set(Request(&req), 2u32).await.unwrap();
    let by_text = cache.get_many::<u32, _>(&["a", "zz"]).await.unwrap();
    assert_eq!(by_text[0].as_ref().map(|l| *l.value), Some(1));
    assert!(by_text[1].is_none());
    let keys = [cache.key("a").unwrap(), cache.key(Request(&req)).unwrap()];
    let by_key = cache.get_many::<u32, _>(&keys).await.unwrap();
    let values: Vec<Option<u32>> = by_key
        .iter()
        .map(|l| l.as_ref().map(|l| *l.value))
        .collect();
    assert_eq!(values, [Some(1), Some(2)]);
    let owned = vec!["a".to_string()];
    assert!(cache.get_many::<u32, _>(&owned).await.unwrap()[0].is_some());
}

#[tokio::test]
async fn skip_memory_reads_and_fills_only_the_other_tiers() {
    let (cache, l1, l2, _) = stack();
    let key = cache.key("k").unwrap();
    cache.set("k", 5u32).await.unwrap();
    l1.delete(&key).await.unwrap();
    let no_memory = cache.with_options(ReadOptions::new().skip_memory());
    assert!(no_memory.options().skips_memory());
    let got = no_memory.get::<u32>("k").await.unwrap().unwrap();
    assert_eq!((*got.value, got.source), (5, Source::Hit { tier: 1 }));
    assert!(
        l1.get(&key).await.unwrap().is_none(),
        "no promotion into a skipped tier"
    );
    // A load through the handle fills L2 only.
    let l = no_memory
        .get_or_compute("loaded", || async { Ok::<_, std::io::Error>(9u32) })
        .await
        .unwrap();
    assert_eq!((*l.value, l.source), (9, Source::Computed));
    let loaded = cache.key("loaded").unwrap();
    assert!(l1.get(&loaded).await.unwrap().is_none());
    assert!(l2.get(&loaded).await.unwrap().is_some());
    // The plain handle still promotes.
    let got = cache.get::<u32>("k").await.unwrap().unwrap();
    assert_eq!(got.source, Source::Hit { tier: 1 });
    assert!(l1.get(&key).await.unwrap().is_some());
    // A memory-only value is invisible through the handle.
    l2.delete(&key).await.unwrap();
    assert!(no_memory.get::<u32>("k").await.unwrap().is_none());
}

#[tokio::test]
async fn skip_shared_never_touches_the_shared_tier() {
    let (cache, l1, l2, _) = stack();
    let local = cache.with_options(ReadOptions::new().skip_shared());
    let calls = Arc::new(AtomicU32::new(0));
    for _ in 0..2 {
        let calls = calls.clone();
        let l = local
            .get_or_compute("k", move || async move {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok::<_, std::io::Error>(3u32)
            })
            .await
            .unwrap();
        assert_eq!(*l.value, 3);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the second call hit L1");
    let key = cache.key("k").unwrap();
    assert!(l1.get(&key).await.unwrap().is_some());
    assert!(l2.get(&key).await.unwrap().is_none());
    // Values only in L2 are not read through the handle.
    cache.set("shared", 4u32).await.unwrap();
    l1.delete(&cache.key("shared").unwrap()).await.unwrap();
    assert!(local.get::<u32>("shared").await.unwrap().is_none());
    assert_eq!(*cache.get::<u32>("shared").await.unwrap().unwrap(), 4);
    l1.delete(&cache.key("shared").unwrap()).await.unwrap(); // that read promoted it
    let many = local.get_many::<u32, _>(["shared", "k"]).await.unwrap();
    assert!(many[0].is_none());
    assert_eq!(many[1].as_ref().unwrap().source, Source::Hit { tier: 0 });
}

#[tokio::test]
async fn allow_stale_returns_the_fail_safe_copy() {
    let (cache, _, _, clock) = stack();
    cache.set("k", 1u32).await.unwrap();
    clock.advance(Duration::from_secs(20));
    assert!(cache.get::<u32>("k").await.unwrap().is_none());
    let stale_ok = cache.with_options(ReadOptions::new().allow_stale());
    let hit = stale_ok.get_with_meta::<u32>("k").await.unwrap().unwrap();
    assert_eq!((*hit.value, hit.source), (1, Source::Stale));
    assert!(hit.is_stale());
    assert_eq!(hit.age(), Duration::from_secs(20));
    assert_eq!(hit.remaining(), Duration::ZERO);
    let plain = stale_ok.get::<u32>("k").await.unwrap().unwrap();
    assert_eq!(plain.source, Source::Stale);
    assert_eq!(cache.stats().stale_served, 2);
    // Past the stale window there is nothing.
    clock.advance(Duration::from_secs(100));
    assert!(stale_ok.get::<u32>("k").await.unwrap().is_none());
}

#[tokio::test]
async fn a_hit_tells_its_age_and_remaining_life() {
    let (cache, l1, _, clock) = stack();
    let opts = WriteOptions::new().ttl(Duration::from_secs(60));
    cache.set_with("k", 1u32, &opts).await.unwrap();
    clock.advance(Duration::from_secs(15));
    let hit = cache.get_with_meta::<u32>("k").await.unwrap().unwrap();
    assert_eq!(hit.source, Source::Hit { tier: 0 });
    assert_eq!(hit.age(), Duration::from_secs(15));
    assert_eq!(hit.remaining(), Duration::from_secs(45));
    assert_eq!(hit.ttl(), Duration::from_secs(60));
    assert!(!hit.is_stale());
    // From L2, the envelope's times survive the trip (and the promotion keeps them).
    l1.delete(&cache.key("k").unwrap()).await.unwrap();
    clock.advance(Duration::from_secs(5));
    let hit = cache.get_with_meta::<u32>("k").await.unwrap().unwrap();
    assert_eq!(hit.source, Source::Hit { tier: 1 });
    assert_eq!(
        (hit.age(), hit.remaining()),
        (Duration::from_secs(20), Duration::from_secs(40))
    );
    let again = cache.get_with_meta::<u32>("k").await.unwrap().unwrap();
    assert_eq!(again.source, Source::Hit { tier: 0 });
    assert_eq!(again.remaining(), Duration::from_secs(40));
    // A negative entry reads as nothing.
    cache
        .get_or_compute_optional::<u32, _, _, _>("none", || async { Ok::<_, std::io::Error>(None) })
        .await
        .unwrap();
    assert!(cache.get_with_meta::<u32>("none").await.unwrap().is_none());
}

#[tokio::test]
async fn the_loader_result_chooses_the_ttl() {
    let (cache, _, l2, clock) = stack();
    let l = cache
        .get_or_compute_adaptive("short", || async {
            Ok::<_, std::io::Error>(Computed::new(1u32).ttl(Duration::from_secs(2)))
        })
        .await
        .unwrap();
    assert_eq!((*l.value, l.source), (1, Source::Computed));
    let hit = cache.get_with_meta::<u32>("short").await.unwrap().unwrap();
    assert_eq!(hit.ttl(), Duration::from_secs(2));
    let in_l2 = l2.get(&cache.key("short").unwrap()).await.unwrap().unwrap();
    assert_eq!(in_l2.ttl(), Duration::from_secs(2));
    clock.advance(Duration::from_secs(3));
    assert!(cache.get::<u32>("short").await.unwrap().is_none());
    // Without a choice, the policy's 10 s.
    cache
        .get_or_compute_adaptive("policy", || async {
            Ok::<_, std::io::Error>(Computed::new(2u32))
        })
        .await
        .unwrap();
    let hit = cache.get_with_meta::<u32>("policy").await.unwrap().unwrap();
    assert_eq!(hit.ttl(), Duration::from_secs(10));
}

#[tokio::test]
async fn the_loader_result_can_refuse_caching() {
    let (cache, _, l2, _) = stack();
    let calls = Arc::new(AtomicU32::new(0));
    for round in 1..=2 {
        let calls = calls.clone();
        let l = cache
            .get_or_compute_adaptive("k", move || async move {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                Ok::<_, std::io::Error>(Computed::new(n).no_cache())
            })
            .await
            .unwrap();
        assert_eq!((*l.value, l.source), (round, Source::Computed));
    }
    assert!(cache.get::<u32>("k").await.unwrap().is_none());
    assert!(l2.get(&cache.key("k").unwrap()).await.unwrap().is_none());
}

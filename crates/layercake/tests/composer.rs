//! Composer behaviour on in-process tiers, with fault-injecting and recording wrappers and a
//! manual clock. (End-to-end suites on real Redis/PostgreSQL/file tiers live in `tests/`.)
#![allow(clippy::unwrap_used, reason = "test code: a panic is a test failure")]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use layercake::{
    Backend, BreakerConfig, BreakerState, Cache, ErrorKind, FixedTtl, ManualClock, MemoryBackend,
    PolicyExt, Scope, Source, TierOptions, TierSet, Warm, WriteMode, WriteOptions,
};
use layercake_memory::MemoryConfig;
use layercake_testkit::faulty::{Fault, FaultyBackend};
use layercake_testkit::recording::{Operation, RecordingBackend};

fn mem(clock: &ManualClock) -> Arc<dyn Backend> {
    Arc::new(
        MemoryBackend::new(MemoryConfig::new(64 << 20).with_clock(Arc::new(clock.clone())))
            .unwrap(),
    )
}

/// Three memory tiers standing for L1..L3, all on one manual clock.
fn stack(clock: &ManualClock, ttl: Duration) -> (Cache, Vec<Arc<dyn Backend>>) {
    let tiers: Vec<Arc<dyn Backend>> = (0..3).map(|_| mem(clock)).collect();
    let mut b = Cache::builder("test")
        .clock(Arc::new(clock.clone()))
        .policy(FixedTtl::new(ttl).stale_for(Duration::from_secs(60)));
    for t in &tiers {
        b = b.shared_tier(t.clone());
    }
    (b.build().unwrap(), tiers)
}

#[tokio::test]
async fn lower_tier_hit_is_promoted_with_remaining_lifetime() {
    let clock = ManualClock::new();
    let (cache, tiers) = stack(&clock, Duration::from_secs(100));
    cache.set("k", "v".to_string()).await.unwrap();
    let key = cache.key("k").unwrap();
    let written = tiers[2].get(&key).await.unwrap().unwrap();
    // Only L3 keeps it; time passes.
    tiers[0].delete(&key).await.unwrap();
    tiers[1].delete(&key).await.unwrap();
    clock.advance(Duration::from_secs(40));
    let got = cache.get::<String>("k").await.unwrap().unwrap();
    assert_eq!(
        (got.value.as_str(), got.source),
        ("v", Source::Hit { tier: 2 })
    );
    for t in &tiers[..2] {
        let e = t.get(&key).await.unwrap().expect("promoted");
        assert_eq!(
            e.expires_at, written.expires_at,
            "remaining lifetime, never extended"
        );
        assert_eq!(e.stale_until, written.stale_until);
    }
    let again = cache.get::<String>("k").await.unwrap().unwrap();
    assert_eq!(again.source, Source::Hit { tier: 0 });
    // Past the expiry no tier returns it as a hit.
    clock.advance(Duration::from_secs(61));
    assert!(cache.get::<String>("k").await.unwrap().is_none());
    let s = cache.stats();
    assert_eq!(s.tiers[2].hits, 1);
    assert_eq!(s.tiers[0].hits, 1);
    assert_eq!(s.tiers[0].promotions, 1);
    assert_eq!(s.tiers[1].promotions, 1);
}

#[tokio::test]
async fn l1_hit_returns_the_stored_arc() {
    let clock = ManualClock::new();
    let (cache, _) = stack(&clock, Duration::from_secs(100));
    cache.set("k", vec![1u64, 2, 3]).await.unwrap();
    let a = cache.get::<Vec<u64>>("k").await.unwrap().unwrap();
    let b = cache.get::<Vec<u64>>("k").await.unwrap().unwrap();
    assert!(Arc::ptr_eq(&a.value, &b.value), "no decode on L1 hits");
    assert_eq!(*a.value, vec![1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_flight_runs_the_loader_once_for_concurrent_callers() {
    let clock = ManualClock::new();
    let (cache, _) = stack(&clock, Duration::from_secs(100));
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..2000 {
        let cache = cache.clone();
        let calls = calls.clone();
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_compute("hot", move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok::<_, std::io::Error>(7u32)
                })
                .await
                .unwrap()
        }));
    }
    let mut by_source: HashMap<&'static str, usize> = HashMap::new();
    for t in tasks {
        let l = t.await.unwrap();
        assert_eq!(*l.value, 7);
        *by_source.entry(l.source.outcome()).or_default() += 1;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(by_source.get("computed"), Some(&1), "{by_source:?}");
    assert_eq!(cache.stats().loader_calls, 1);
    assert_eq!(cache.loads_in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_loader_fails_every_waiter_and_the_next_call_recomputes() {
    let clock = ManualClock::new();
    let (cache, _) = stack(&clock, Duration::from_secs(100));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let cache = cache.clone();
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_compute::<u32, _, _, std::io::Error>("p", || async {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    panic!("loader bug")
                })
                .await
        }));
    }
    for t in tasks {
        let e = t.await.unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Loader, "{e}");
    }
    assert_eq!(cache.loads_in_flight(), 0);
    let l = cache
        .get_or_compute("p", || async { Ok::<_, std::io::Error>(1u32) })
        .await
        .unwrap();
    assert_eq!((*l.value, l.source), (1, Source::Computed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_leader_does_not_cancel_the_load() {
    let clock = ManualClock::new();
    let (cache, _) = stack(&clock, Duration::from_secs(100));
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    let leader = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_compute("c", move || async move {
                    c2.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok::<_, std::io::Error>(5u32)
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let follower = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_compute("c", || async { Ok::<_, std::io::Error>(99u32) })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    leader.abort();
    let l = follower.await.unwrap().unwrap();
    assert_eq!((*l.value, l.source), (5, Source::Coalesced));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(*cache.get::<u32>("c").await.unwrap().unwrap().value, 5);
}

#[tokio::test]
async fn fail_safe_serves_stale_when_the_loader_fails_or_is_slow() {
    let clock = ManualClock::new();
    let tiers: Vec<Arc<dyn Backend>> = vec![mem(&clock)];
    let cache = Cache::builder("fs")
        .shared_tier(tiers[0].clone())
        .clock(Arc::new(clock.clone()))
        .policy(FixedTtl::new(Duration::from_secs(10)).stale_for(Duration::from_secs(100)))
        .loader_soft_timeout(Duration::from_millis(50))
        .loader_hard_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    cache.set("k", 1u32).await.unwrap();
    clock.advance(Duration::from_secs(20)); // expired, inside the stale window
    let l = cache
        .get_or_compute::<u32, _, _, _>("k", || async { Err(std::io::Error::other("down")) })
        .await
        .unwrap();
    assert_eq!((*l.value, l.source), (1, Source::Stale));
    // Slow loader: soft timeout serves stale, the load goes on and fills the cache.
    let l = cache
        .get_or_compute("k", || async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok::<_, std::io::Error>(2u32)
        })
        .await
        .unwrap();
    assert_eq!((*l.value, l.source), (1, Source::Stale));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let l = cache.get::<u32>("k").await.unwrap().unwrap();
    assert_eq!((*l.value, l.source), (2, Source::Hit { tier: 0 }));
    assert_eq!(cache.stats().stale_served, 2);
    // Past the stale window the failure is returned.
    clock.advance(Duration::from_secs(200));
    let e = cache
        .get_or_compute::<u32, _, _, _>("k", || async { Err(std::io::Error::other("down")) })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Loader);
}

#[tokio::test]
async fn hard_timeout_ends_the_load() {
    let clock = ManualClock::new();
    let cache = Cache::builder("ht")
        .shared_tier(mem(&clock))
        .clock(Arc::new(clock.clone()))
        .loader_hard_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let e = cache
        .get_or_compute("k", || async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok::<_, std::io::Error>(1u32)
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(cache.loads_in_flight(), 0);
}

#[tokio::test]
async fn failing_tier_falls_through_and_its_breaker_opens() {
    let clock = ManualClock::new();
    let faulty = FaultyBackend::new(mem(&clock), 1);
    let faults = faulty.handle();
    let l1 = mem(&clock);
    let l3 = mem(&clock);
    let cache = Cache::builder("ft")
        .shared_tier(l1.clone())
        .tier_with(
            faulty,
            TierOptions::new().breaker(Some(BreakerConfig {
                failure_threshold: 3,
                open_for: Duration::from_millis(200),
            })),
        )
        .shared_tier(l3.clone())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    cache.set("k", 9u32).await.unwrap();
    let before = faults.total_calls();
    // The server is down: every operation fails.
    faults.inject_everywhere(Fault::Fail(ErrorKind::Unavailable));
    let key = cache.key("k").unwrap();
    for i in 0..6 {
        l1.delete(&key).await.unwrap();
        let l = cache.get::<u32>("k").await.unwrap().unwrap();
        assert_eq!(
            (*l.value, l.source),
            (9, Source::Hit { tier: 2 }),
            "read {i}"
        );
    }
    let s = cache.stats();
    // Reads 1-3 fail at the tier (a read does not promote into a tier that just failed it),
    // which opens the breaker; reads 4-6 skip the tier.
    assert_eq!(s.tiers[1].errors, 3, "{s:?}");
    assert_eq!(s.tiers[1].breaker, BreakerState::Open);
    assert_eq!(s.tiers[1].skipped, 3, "reads 4-6 skip the tier");
    assert_eq!(
        faults.total_calls() - before,
        3,
        "an open breaker does not ask the tier"
    );
    // Recovery: the probe closes the breaker.
    faults.clear_all();
    tokio::time::sleep(Duration::from_millis(250)).await;
    l1.delete(&key).await.unwrap();
    let l = cache.get::<u32>("k").await.unwrap().unwrap();
    assert_eq!(l.source, Source::Hit { tier: 1 });
    assert_eq!(cache.stats().tiers[1].breaker, BreakerState::Closed);
}

#[tokio::test]
async fn failed_delete_is_an_error_and_reaches_the_other_tiers() {
    let clock = ManualClock::new();
    let l1 = mem(&clock);
    let faulty = FaultyBackend::new(mem(&clock), 2);
    let faults = faulty.handle();
    let cache = Cache::builder("fd")
        .shared_tier(l1.clone())
        .tier(faulty)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    cache.set("k", 1u8).await.unwrap();
    faults.inject(Operation::Delete, Fault::Fail(ErrorKind::Timeout));
    let e = cache.delete("k").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert_eq!(e.tier(), Some("l2"));
    assert!(
        l1.get(&cache.key("k").unwrap()).await.unwrap().is_none(),
        "L1 copy removed"
    );
}

#[tokio::test]
async fn undecodable_copies_fall_through_heal_and_count() {
    let clock = ManualClock::new();
    let inner = mem(&clock);
    let faulty = FaultyBackend::new(inner.clone(), 3);
    let faults = faulty.handle();
    let l2 = mem(&clock);
    let cache = Cache::builder("cr")
        .tier(faulty)
        .shared_tier(l2.clone())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    // Write through the stack, then drop L1's decoded shortcut by writing raw bytes.
    cache.set("k", "value".to_string()).await.unwrap();
    let key = cache.key("k").unwrap();
    let e = inner.get(&key).await.unwrap().unwrap().without_decoded();
    inner.set(&key, &e).await.unwrap();
    faults.inject(Operation::Get, Fault::FlipValue);
    let l = cache.get::<String>("k").await.unwrap().unwrap();
    assert_eq!(
        (l.value.as_str(), l.source),
        ("value", Source::Hit { tier: 1 })
    );
    assert_eq!(cache.stats().tiers[0].corrupt, 1);
}

#[tokio::test]
async fn refresh_ahead_returns_at_once_and_refreshes_once_in_the_background() {
    let clock = ManualClock::new();
    let cache = Cache::builder("ra")
        .shared_tier(mem(&clock))
        .clock(Arc::new(clock.clone()))
        .policy(FixedTtl::new(Duration::from_secs(100)).refresh_ahead(0.8))
        .build()
        .unwrap();
    cache.set("k", 1u32).await.unwrap();
    clock.advance(Duration::from_secs(85));
    let calls = Arc::new(AtomicUsize::new(0));
    for _ in 0..5 {
        let c = calls.clone();
        let l = cache
            .get_or_compute("k", move || async move {
                c.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok::<_, std::io::Error>(2u32)
            })
            .await
            .unwrap();
        assert_eq!((*l.value, l.source), (1, Source::Hit { tier: 0 }));
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one background refresh");
    let l = cache.get::<u32>("k").await.unwrap().unwrap();
    assert_eq!(*l.value, 2);
}

#[tokio::test]
async fn negative_results_are_cached_for_the_negative_ttl() {
    let clock = ManualClock::new();
    let cache = Cache::builder("neg")
        .shared_tier(mem(&clock))
        .clock(Arc::new(clock.clone()))
        .policy(FixedTtl::new(Duration::from_secs(100)).negative_ttl(Duration::from_secs(5)))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let load = |calls: Arc<AtomicUsize>| {
        move || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<Option<u32>, std::io::Error>(None)
        }
    };
    let l = cache
        .get_or_compute_optional::<u32, _, _, _>("missing", load(calls.clone()))
        .await
        .unwrap();
    assert_eq!((l.value, l.source), (None, Source::Computed));
    let l = cache
        .get_or_compute_optional::<u32, _, _, _>("missing", load(calls.clone()))
        .await
        .unwrap();
    assert_eq!((l.value, l.source), (None, Source::Hit { tier: 0 }));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    clock.advance(Duration::from_secs(6));
    cache
        .get_or_compute_optional::<u32, _, _, _>("missing", load(calls.clone()))
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn batches_use_bulk_calls_and_load_only_missing_keys() {
    let clock = ManualClock::new();
    let l1 = RecordingBackend::new(mem(&clock));
    let rec1 = l1.recorder();
    let l2 = RecordingBackend::new(mem(&clock));
    let rec2 = l2.recorder();
    let cache = Cache::builder("batch")
        .tier(l1)
        .tier(l2)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    cache.set("a", 1u32).await.unwrap();
    cache.set("b", 2u32).await.unwrap();
    rec1.reset();
    rec2.reset();
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let out = cache
        .get_or_compute_many(&["a", "b", "c", "d"], move |missing| async move {
            s2.lock().extend(missing.clone());
            Ok::<_, std::io::Error>(
                missing
                    .into_iter()
                    .filter(|m| m == "c")
                    .map(|m| (m, 3u32))
                    .collect(),
            )
        })
        .await
        .unwrap();
    assert_eq!(*seen.lock(), vec!["c".to_string(), "d".to_string()]);
    let vals: Vec<Option<(u32, Source)>> = out
        .iter()
        .map(|o| o.as_ref().map(|l| (*l.value, l.source)))
        .collect();
    assert_eq!(
        vals,
        vec![
            Some((1, Source::Hit { tier: 0 })),
            Some((2, Source::Hit { tier: 0 })),
            Some((3, Source::Computed)),
            None
        ]
    );
    assert_eq!(rec1.count(Operation::GetMany), 1);
    assert_eq!(rec1.count(Operation::Get), 0);
    assert_eq!(
        rec2.count(Operation::GetMany),
        1,
        "L2 asked once for the two missing keys"
    );
}

#[tokio::test]
async fn write_behind_is_flushed_by_shutdown() {
    let clock = ManualClock::new();
    let slow = FaultyBackend::new(mem(&clock), 4);
    slow.handle()
        .inject(Operation::Set, Fault::Delay(Duration::from_millis(20)));
    let inner = slow.inner().clone();
    let cache = Cache::builder("wb")
        .shared_tier(mem(&clock))
        .tier_with(
            slow,
            TierOptions::new().write_mode(WriteMode::Behind { capacity: 8 }),
        )
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    for i in 0..20u32 {
        cache.set(format!("k{i}").as_str(), i).await.unwrap();
    }
    cache.shutdown().await;
    for i in 0..20u32 {
        let key = cache.key(format!("k{i}").as_str()).unwrap();
        assert!(
            inner.get(&key).await.unwrap().is_some(),
            "k{i} reached the slow tier"
        );
    }
}

#[tokio::test]
async fn oversized_values_are_routed_by_policy() {
    let clock = ManualClock::new();
    let l1 = mem(&clock);
    let l2 = mem(&clock);
    let cache = Cache::builder("size")
        .shared_tier(l1.clone())
        .shared_tier(l2.clone())
        .clock(Arc::new(clock.clone()))
        .policy(
            FixedTtl::new(Duration::from_secs(60)).route_by_size(256 * 1024, TierSet::only(&[0])),
        )
        .build()
        .unwrap();
    let big = vec![7u8; 300 * 1024];
    cache.set("big", big.clone()).await.unwrap();
    let key = cache.key("big").unwrap();
    assert!(
        l1.get(&key).await.unwrap().is_none(),
        "over 256 KiB skips L1"
    );
    assert!(l2.get(&key).await.unwrap().is_some());
    let l = cache.get::<Vec<u8>>("big").await.unwrap().unwrap();
    assert_eq!(l.source, Source::Hit { tier: 1 });
    assert!(
        l1.get(&key).await.unwrap().is_none(),
        "and is not promoted there either"
    );
}

#[tokio::test]
async fn invalidation_by_tag_and_prefix_reaches_every_tier() {
    let clock = ManualClock::new();
    let (cache, tiers) = stack(&clock, Duration::from_secs(100));
    cache
        .set_with("u1", 1u32, &WriteOptions::new().tag("user:1"))
        .await
        .unwrap();
    cache
        .set_with("u2", 2u32, &WriteOptions::new().tag("user:2"))
        .await
        .unwrap();
    cache.set("docs/a", 3u32).await.unwrap();
    cache.set("docs/b", 4u32).await.unwrap();
    cache.set("docsx", 5u32).await.unwrap();
    cache.invalidate_tag("user:1").await.unwrap();
    cache.invalidate_prefix("docs/").await.unwrap();
    for t in &tiers {
        for (k, present) in [
            ("u1", false),
            ("u2", true),
            ("docs/a", false),
            ("docs/b", false),
            ("docsx", true),
        ] {
            let key = cache.key(k).unwrap();
            assert_eq!(t.get(&key).await.unwrap().is_some(), present, "{k}");
        }
    }
}

#[tokio::test]
async fn warm_fills_upper_tiers_from_lower_ones() {
    let clock = ManualClock::new();
    let (cache, tiers) = stack(&clock, Duration::from_secs(100));
    cache.set("w1", 1u32).await.unwrap();
    cache.set("w2", 2u32).await.unwrap();
    for k in ["w1", "w2"] {
        let key = cache.key(k).unwrap();
        tiers[0].delete(&key).await.unwrap();
        tiers[1].delete(&key).await.unwrap();
    }
    let n = cache.warm(Warm::Keys(&["w1", "w2", "nope"])).await.unwrap();
    assert_eq!(n, 2);
    for k in ["w1", "w2"] {
        assert!(
            tiers[0]
                .get(&cache.key(k).unwrap())
                .await
                .unwrap()
                .is_some()
        );
    }
    let l = cache.get::<u32>("w2").await.unwrap().unwrap();
    assert_eq!((*l.value, l.source), (2, Source::Hit { tier: 0 }));
    // By prefix: the lowest tier lists the keys.
    cache.set("other", 3u32).await.unwrap();
    for k in ["w1", "w2", "other"] {
        let key = cache.key(k).unwrap();
        tiers[0].delete(&key).await.unwrap();
        tiers[1].delete(&key).await.unwrap();
    }
    let n = cache
        .warm(Warm::Prefix {
            prefix: "w",
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert!(
        tiers[0]
            .get(&cache.key("w1").unwrap())
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        tiers[0]
            .get(&cache.key("other").unwrap())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn builder_rejects_bad_configurations() {
    let clock = ManualClock::new();
    let e = Cache::builder("x").build().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    let e = Cache::builder("x")
        .shared_tier_with(
            mem(&clock),
            TierOptions::new().write_mode(WriteMode::Behind { capacity: 0 }),
        )
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("capacity"), "{e}");
    let keys_err = Cache::builder("x")
        .shared_tier(mem(&clock))
        .build()
        .unwrap()
        .get::<u32>("")
        .await;
    assert_eq!(keys_err.unwrap_err().kind(), ErrorKind::InvalidKey);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stampede_reads_the_shared_tiers_once() {
    let clock = ManualClock::new();
    let l2 = RecordingBackend::new(mem(&clock));
    let rec = l2.recorder();
    let cache = Cache::builder("stampede")
        .shared_tier(mem(&clock))
        .tier_with(l2, TierOptions::new().scope(Scope::Shared))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..500 {
        let cache = cache.clone();
        let calls = calls.clone();
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_compute("k", move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok::<_, std::io::Error>(1u32)
                })
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(*t.await.unwrap().value, 1);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        rec.count(Operation::Get),
        1,
        "one read of the shared tier for 500 callers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cancelled_during_its_read_hands_the_flight_over() {
    let clock = ManualClock::new();
    let slow = FaultyBackend::new(mem(&clock), 5);
    let faults = slow.handle();
    let cache = Cache::builder("handover")
        .shared_tier(mem(&clock))
        .tier_with(
            slow,
            TierOptions::new().scope(Scope::Shared).read_timeout(None),
        )
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    faults.inject(Operation::Get, Fault::Delay(Duration::from_millis(200)));
    let leader = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_compute("k", || async { Ok::<_, std::io::Error>(1u32) })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    let follower = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_compute("k", || async { Ok::<_, std::io::Error>(2u32) })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    leader.abort(); // cancelled while reading the shared tier
    let l = follower.await.unwrap().unwrap();
    assert_eq!(
        (*l.value, l.source),
        (2, Source::Computed),
        "the follower led again"
    );
    assert_eq!(cache.loads_in_flight(), 0);
}

#[tokio::test]
async fn a_tier_max_ttl_caps_its_copies() {
    let clock = ManualClock::new();
    let l1 = mem(&clock);
    let l2 = mem(&clock);
    let cache = Cache::builder("cap")
        .shared_tier_with(
            l1.clone(),
            TierOptions::new().max_ttl(Duration::from_secs(10)),
        )
        .shared_tier(l2.clone())
        .clock(Arc::new(clock.clone()))
        .policy(FixedTtl::new(Duration::from_secs(100)).stale_for(Duration::from_secs(50)))
        .build()
        .unwrap();
    cache.set("k", 1u32).await.unwrap();
    let key = cache.key("k").unwrap();
    let now = layercake::Clock::now(&clock);
    let in_l1 = l1.get(&key).await.unwrap().unwrap();
    let in_l2 = l2.get(&key).await.unwrap().unwrap();
    assert_eq!(in_l1.retain_until(), now.plus(Duration::from_secs(10)));
    assert_eq!(in_l2.expires_at, now.plus(Duration::from_secs(100)));
    clock.advance(Duration::from_secs(11));
    let l = cache.get::<u32>("k").await.unwrap().unwrap();
    assert_eq!(
        l.source,
        Source::Hit { tier: 1 },
        "L1 let it go after 10 s, L2 still has it"
    );
    let again = l1.get(&key).await.unwrap().unwrap();
    assert_eq!(
        again.retain_until(),
        now.plus(Duration::from_secs(21)),
        "promoted, capped again"
    );
}

/// A set writes an in-process memory L1 at once, before the tier below it answers: the two
/// writes go out in the same poll, the memory tier's first (it never waits).
#[tokio::test]
async fn a_set_writes_the_memory_l1_before_the_tier_below_answers() {
    let clock = ManualClock::new();
    let l1 = mem(&clock);
    let below = FaultyBackend::new(mem(&clock), 6);
    below.handle().inject(Operation::Set, Fault::Hang);
    let cache = Cache::builder("order")
        .clock(Arc::new(clock.clone()))
        .tier(l1.clone())
        .shared_tier(Arc::new(below))
        .build()
        .unwrap();
    let key = cache.key("k").unwrap();
    let mut set = Box::pin(cache.set("k", 7u32));
    // One poll sends both writes: the set waits for the tier below, L1 already has the value.
    assert!(futures::poll!(set.as_mut()).is_pending());
    assert!(
        l1.get(&key).await.unwrap().is_some(),
        "L1 holds the value while the tier below has not answered"
    );
}

/// A tier backend whose `set` never answers, declaring how long it takes at most
/// ([`Capability::set_timeout`](layercake::Capability::set_timeout)).
#[derive(Debug)]
struct SetNeverAnswers {
    set_timeout: Option<Duration>,
}

#[async_trait::async_trait]
impl Backend for SetNeverAnswers {
    fn kind(&self) -> &'static str {
        "never-answers"
    }
    fn capability(&self) -> layercake::Capability {
        let mut c = layercake::Capability::MINIMAL;
        c.set_timeout = self.set_timeout;
        c
    }
    async fn get(&self, _: &layercake::Key) -> layercake::Result<Option<layercake::Entry>> {
        Ok(None)
    }
    async fn set(&self, _: &layercake::Key, _: &layercake::Entry) -> layercake::Result<()> {
        std::future::pending().await
    }
    async fn delete(&self, _: &layercake::Key) -> layercake::Result<()> {
        Ok(())
    }
}

/// The composer arms its write timer around a tier's `set` unless the backend bounds the call
/// itself within the tier's write timeout: one timer per write, not two. (A backend that
/// declares a bound it does not keep, as here, is trusted: the set then waits.)
#[tokio::test(start_paused = true)]
async fn the_write_timer_is_skipped_only_for_a_set_bounded_within_it() {
    let clock = ManualClock::new();
    let cache_over = |set_timeout: Option<Duration>| {
        Cache::builder("timers")
            .clock(Arc::new(clock.clone()))
            .tier_with(
                Arc::new(SetNeverAnswers { set_timeout }),
                TierOptions::new()
                    .scope(Scope::Shared)
                    .write_timeout(Some(Duration::from_millis(50))),
            )
            .build()
            .unwrap()
    };
    let waited = |cache: Cache| async move {
        tokio::time::timeout(Duration::from_secs(5), cache.set("k", 1u32)).await
    };
    // No bound, or one longer than the tier's write timeout: the tier's 50 ms timer ends it.
    for declared in [None, Some(Duration::from_secs(1))] {
        let e = waited(cache_over(declared))
            .await
            .expect("the composer's timer fires")
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{declared:?}: {e}");
    }
    // A bound within it: no timer of the composer's around the call.
    assert!(
        waited(cache_over(Some(Duration::from_millis(50))))
            .await
            .is_err(),
        "no composer timer: only the test's own 5 s limit ends the hanging set"
    );
}

/// A fault-injecting wrapper can delay or hang any call, so it passes on no bound of the inner
/// backend's: the composer keeps its write timer around a faulty tier.
#[tokio::test(start_paused = true)]
async fn a_faulty_tier_keeps_the_write_timer_its_inner_backend_would_spare() {
    let inner = Arc::new(SetNeverAnswers {
        set_timeout: Some(Duration::from_millis(50)),
    });
    let faulty = FaultyBackend::new(inner, 8);
    let declared = faulty.capability();
    assert_eq!((declared.get_timeout, declared.set_timeout), (None, None));
    let cache = Cache::builder("faulty-timers")
        .tier_with(
            Arc::new(faulty),
            TierOptions::new()
                .scope(Scope::Shared)
                .write_timeout(Some(Duration::from_millis(50))),
        )
        .build()
        .unwrap();
    let e = tokio::time::timeout(Duration::from_secs(5), cache.set("k", 1u32))
        .await
        .expect("the composer's timer fires")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
}

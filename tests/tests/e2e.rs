//! End-to-end: four real tiers (memory, Redis, PostgreSQL, file) composed by the cache.
#![allow(clippy::unwrap_used, reason = "test code: a panic is a test failure")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use layercake::{Cache, FixedTtl, PolicyExt, Source, SystemClock, TierSet};
use layercake_tests::Tiers;

/// A value written only to L4 is served from L4 and promoted to L3, L2 and L1 with its
/// remaining lifetime; after its expiry no tier returns it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l4_value_is_promoted_with_its_remaining_ttl_and_expires_everywhere() {
    let tiers = Tiers::connect(Arc::new(SystemClock)).await;
    let ttl = Duration::from_secs(3);
    // A writer that may only write L4 (position 3).
    let writer = tiers
        .builder("e2e-writer")
        .policy(FixedTtl::new(ttl).only_tiers(TierSet::only(&[3])))
        .build()
        .unwrap();
    writer
        .set("doc", "from the file tier".to_string())
        .await
        .unwrap();
    let key = writer.key("doc").unwrap();
    let on_disk = tiers.file.get(&key).await.unwrap().expect("written to L4");
    for t in &tiers.all()[..3] {
        assert!(t.get(&key).await.unwrap().is_none(), "only L4 holds it");
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let reader = tiers
        .builder("e2e-reader")
        .policy(FixedTtl::new(ttl))
        .build()
        .unwrap();
    let got = reader.get::<String>("doc").await.unwrap().unwrap();
    assert_eq!(
        (got.value.as_str(), got.source),
        ("from the file tier", Source::Hit { tier: 3 })
    );
    for (i, t) in tiers.all()[..3].iter().enumerate() {
        let e = t
            .get(&key)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("promoted to tier {i}"));
        assert_eq!(
            e.expires_at, on_disk.expires_at,
            "tier {i}: remaining lifetime, not extended"
        );
        assert_eq!(e.version, on_disk.version);
    }
    let again = reader.get::<String>("doc").await.unwrap().unwrap();
    assert_eq!(again.source, Source::Hit { tier: 0 });
    // Past the expiry (plus Redis's own expiry granularity) nothing returns it.
    let left = on_disk.fresh_remaining(layercake::Clock::now(&SystemClock));
    tokio::time::sleep(left + Duration::from_millis(150)).await;
    assert!(reader.get::<String>("doc").await.unwrap().is_none());
    for (i, t) in tiers.all().iter().enumerate() {
        assert!(
            t.get(&key).await.unwrap().is_none(),
            "tier {i} returned an expired entry"
        );
    }
    tiers.cleanup().await;
}

/// 10 000 concurrent `get_or_compute` calls on one key run the loader once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_callers_run_the_loader_once() {
    let tiers = Tiers::connect(Arc::new(SystemClock)).await;
    let cache = tiers.builder("e2e-stampede").build().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        let cache = cache.clone();
        let calls = calls.clone();
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_compute("stampede", move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Ok::<_, std::io::Error>("expensive".to_string())
                })
                .await
        }));
    }
    let mut computed = 0;
    for t in tasks {
        let l = t.await.unwrap().unwrap();
        assert_eq!(l.value.as_str(), "expensive");
        if l.source == Source::Computed {
            computed += 1;
        }
    }
    println!("loader calls: {}", calls.load(Ordering::SeqCst));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(computed, 1);
    assert_eq!(cache.loads_in_flight(), 0);
    // The value reached every tier: the in-process one before the callers were released, the
    // shared ones right after (their fills do not hold the callers up).
    let key = cache.key("stampede").unwrap();
    assert!(
        tiers.memory.get(&key).await.unwrap().is_some(),
        "L1 filled before release"
    );
    for (i, t) in tiers.all().iter().enumerate() {
        let t0 = Instant::now();
        while t.get(&key).await.unwrap().is_none() {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "tier {i} never filled"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    tiers.cleanup().await;
}

/// Two instances sharing L2/L3 with a Redis backplane: once a write has returned and its
/// message has been applied by the other instance, that instance never reads the old value
/// from its L1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_with_a_backplane_never_read_old_values_from_l1() {
    use layercake_redis::{RedisBackplane, RedisBackplaneConfig, RedisConfig};
    let shared = Tiers::connect(Arc::new(SystemClock)).await;
    let channel = format!("{}-bp", shared.name);
    let cfg = RedisConfig::new(&shared.redis_url);
    let instance = |bp: RedisBackplane| {
        Cache::builder("e2e-coherence")
            .tier(layercake::MemoryBackend::with_max_bytes(8 << 20).unwrap())
            .shared_tier(shared.redis.clone())
            .shared_tier(shared.postgres.clone())
            .backplane(Arc::new(bp))
            .build()
            .unwrap()
    };
    let a = instance(
        RedisBackplane::connect(&cfg, RedisBackplaneConfig::new(&channel))
            .await
            .unwrap(),
    );
    let b = instance(
        RedisBackplane::connect(&cfg, RedisBackplaneConfig::new(&channel))
            .await
            .unwrap(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut delivery = Vec::new();
    for i in 0..200u32 {
        let key = format!("k{}", i % 7);
        // A caches the current value in its L1.
        let _ = a.get::<u32>(key.as_str()).await.unwrap();
        let applied = a.stats().backplane_applied;
        let t = Instant::now();
        b.set(key.as_str(), i).await.unwrap();
        // Wait (bounded) until A has applied B's message.
        while a.stats().backplane_applied == applied {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "message for write {i} never applied"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        delivery.push(t.elapsed());
        let l = a.get::<u32>(key.as_str()).await.unwrap().unwrap();
        assert_eq!(
            *l.value, i,
            "A read an old value after the write and its message"
        );
    }
    delivery.sort();
    println!(
        "backplane delivery after the write: p50 {:?}, p99 {:?}",
        delivery[delivery.len() / 2],
        delivery[delivery.len() * 99 / 100]
    );
    shared.cleanup().await;
}

/// With Redis killed, a four-tier stack serves from L1/L3/L4 with zero errors to callers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_the_stack_serves_from_the_other_tiers() {
    use layercake_testkit::server::RedisServer;
    let database_url = layercake_testkit::services::require_postgres();
    let mut redis = RedisServer::start().await.unwrap();
    let tiers = Tiers::connect_to(&redis.url(), &database_url, Arc::new(SystemClock)).await;
    let cache = tiers.builder("e2e-redis-down").build().unwrap();
    for i in 0..100u32 {
        cache.set(format!("k{i}").as_str(), i).await.unwrap();
    }
    redis.kill().await.unwrap();
    let mut errors = 0;
    let mut by_tier = [0usize; 4];
    for round in 0..3 {
        for i in 0..100u32 {
            let key = format!("k{i}");
            if round == 1 && i % 2 == 0 {
                // Drop the L1 copy so reads must fall past the dead L2.
                let k = cache.key(key.as_str()).unwrap();
                tiers.memory.delete(&k).await.unwrap();
            }
            let r = cache
                .get_or_compute(
                    key.as_str(),
                    move || async move { Ok::<_, std::io::Error>(i) },
                )
                .await;
            match r {
                Ok(l) => {
                    assert_eq!(*l.value, i, "never a wrong value");
                    if let Source::Hit { tier } = l.source {
                        by_tier[tier] += 1;
                    }
                }
                Err(_) => errors += 1,
            }
        }
        // Writes keep working too.
        cache.set("written-while-down", round).await.unwrap();
    }
    let s = cache.stats();
    println!(
        "hits by tier with Redis down: {by_tier:?}; L2 errors {}, skipped {}",
        s.tiers[1].errors, s.tiers[1].skipped
    );
    assert_eq!(errors, 0);
    assert_eq!(by_tier[1], 0, "nothing from the dead L2");
    assert!(
        by_tier[2] >= 50,
        "L3 served the dropped L1 copies: {by_tier:?}"
    );
    assert!(
        s.tiers[1].errors <= 3,
        "the breaker opened after at most 3 failures: {s:?}"
    );
    assert_eq!(s.tiers[1].breaker, layercake::BreakerState::Open);
    tiers.cleanup().await;
}

/// With a distributed lock on Redis, concurrent misses on several instances run the loader
/// once in the whole fleet; a holder that never finishes delays the others by at most `wait`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_distributed_lock_runs_the_loader_once_across_instances() {
    use layercake::{DistributedLock, LockOptions};
    use layercake_redis::{RedisBackend, RedisConfig};
    let tiers = Tiers::connect(Arc::new(SystemClock)).await;
    let lock = Arc::new(
        RedisBackend::connect(
            RedisConfig::new(&tiers.redis_url).with_key_prefix(format!("{}:lock:", tiers.name)),
        )
        .await
        .unwrap(),
    );
    let opts = LockOptions {
        wait: Duration::from_secs(3),
        ..LockOptions::default()
    };
    let instances: Vec<Cache> = (0..3)
        .map(|_| {
            Cache::builder("e2e-lock")
                .tier(layercake::MemoryBackend::with_max_bytes(8 << 20).unwrap())
                .shared_tier(tiers.redis.clone())
                .shared_tier(tiers.postgres.clone())
                .distributed_lock(lock.clone(), opts)
                .build()
                .unwrap()
        })
        .collect();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..30 {
        let cache = instances[i % 3].clone();
        let calls = calls.clone();
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_compute("fleet-wide", move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok::<_, std::io::Error>(42u32)
                })
                .await
                .unwrap()
        }));
    }
    let mut sources = Vec::new();
    for t in tasks {
        let l = t.await.unwrap();
        assert_eq!(*l.value, 42);
        sources.push(l.source);
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one loader run for three instances: {sources:?}"
    );

    // A holder that never releases: the others compute after `wait`.
    let key = instances[0].key("stuck").unwrap();
    let _held = lock
        .try_lock(&key, Duration::from_secs(60))
        .await
        .unwrap()
        .expect("free");
    let t = Instant::now();
    let l = instances[1]
        .get_or_compute("stuck", || async { Ok::<_, std::io::Error>(7u32) })
        .await
        .unwrap();
    let waited = t.elapsed();
    println!("waited {waited:?} for a stuck holder before computing");
    assert_eq!((*l.value, l.source), (7, Source::Computed));
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
    tiers.cleanup().await;
}

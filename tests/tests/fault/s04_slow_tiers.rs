//! Scenario 4: slow tiers (latency added by a proxy) and fail-safe.

use std::sync::Arc;
use std::time::{Duration, Instant};

use layercake::{Backend, Cache, ErrorKind, FixedTtl, MemoryBackend, PolicyExt, Source};
use layercake_testkit::proxy::{FaultProxy, Mode};
use layercake_testkit::server::RedisServer;
use layercake_testkit::services::{require_postgres, unique_id};
use layercake_tests::drop_schema;

use super::support::{READ_TIMEOUT, SLACK, WRITE_TIMEOUT, fast_tier, postgres_tier, redis_tier};

/// L1 memory + L2 Redis behind a proxy adding 300 ms each way + L3 PostgreSQL; policy: 1 s
/// fresh, 60 s stale window; loader soft timeout 100 ms, hard timeout 1 s:
///
/// - a read whose L2 is slower than its 150 ms read timeout falls through to L3 and returns
///   L3's value, within the read timeout plus the promotion's write timeout (plus slack); the
///   slow L2 is counted as errors, then skipped by its breaker;
/// - once the value is stale, a failing loader serves it (`Source::Stale`), a panicking one
///   too, and a loader slower than the soft timeout serves it within the soft timeout;
/// - with no stale copy, a loader slower than the hard timeout ends with a `Timeout` error;
/// - when the latency goes away, L2 is used again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_04_slow_tiers_fall_through_and_fail_safe_serves_stale() {
    let database_url = require_postgres();
    let redis = RedisServer::start().await.unwrap();
    let proxy = FaultProxy::start(redis.addr()).await.unwrap();
    let schema = unique_id("fault_s4_");
    let l1: Arc<dyn Backend> = Arc::new(MemoryBackend::with_max_bytes(16 << 20).unwrap());
    let l2 = Arc::new(redis_tier(&format!("redis://{}", proxy.addr()), "s4:").await);
    let l3 = Arc::new(postgres_tier(&database_url, &schema).await);
    let soft = Duration::from_millis(100);
    let hard = Duration::from_secs(1);
    let cache = Cache::builder("fault-s4")
        .shared_tier(l1.clone())
        .shared_tier_with(l2.clone(), fast_tier())
        .shared_tier_with(l3.clone(), fast_tier())
        .policy(FixedTtl::new(Duration::from_secs(1)).stale_for(Duration::from_secs(60)))
        .loader_soft_timeout(soft)
        .loader_hard_timeout(hard)
        .build()
        .unwrap();
    for i in 0..10u32 {
        cache
            .set(format!("k{i}").as_str(), format!("v{i}"))
            .await
            .unwrap();
    }

    // Slow L2: reads fall through to L3.
    proxy.set_mode(Mode::Latency(Duration::from_millis(300)));
    let mut fall_through = Vec::new();
    for i in 0..10u32 {
        let name = format!("k{i}");
        l1.delete(&cache.key(name.as_str()).unwrap()).await.unwrap();
        let t = Instant::now();
        let got = cache.get::<String>(name.as_str()).await.unwrap().unwrap();
        fall_through.push(t.elapsed());
        assert_eq!(got.value.as_str(), format!("v{i}"));
        assert_eq!(
            got.source,
            Source::Hit { tier: 2 },
            "served by L3 past the slow L2"
        );
    }
    let max_fall_through = fall_through.iter().max().copied().unwrap();
    let s = cache.stats();
    let (l2_errors, l2_skipped) = (s.tiers[1].errors, s.tiers[1].skipped);

    // Stale values are served when the loader fails, panics or is slow.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let failing = cache
        .get_or_compute("k1", || async {
            Err::<String, _>(std::io::Error::other("down"))
        })
        .await
        .unwrap();
    let panicking = cache.get_or_compute("k2", panicking_loader).await.unwrap();
    let t = Instant::now();
    let slow = cache
        .get_or_compute("k3", || async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Ok::<_, std::io::Error>("late".to_string())
        })
        .await
        .unwrap();
    let slow_took = t.elapsed();
    // No stale copy: the hard timeout ends the call.
    let t = Instant::now();
    let hard_err = cache
        .get_or_compute("never-cached", || async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Ok::<_, std::io::Error>("late".to_string())
        })
        .await
        .unwrap_err();
    let hard_took = t.elapsed();

    // Latency gone: the breaker lets L2 back in.
    proxy.set_mode(Mode::Pass);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut back = false;
    for _ in 0..20 {
        cache.set("after", "fast again".to_string()).await.unwrap();
        l1.delete(&cache.key("after").unwrap()).await.unwrap();
        if cache
            .get::<String>("after")
            .await
            .unwrap()
            .map(|l| l.source)
            == Some(Source::Hit { tier: 1 })
        {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = cache.stats();
    println!(
        "scenario 4: l2_latency=300ms read_timeout={}ms max_fall_through_read={}ms \
         l2_errors={l2_errors} l2_skipped={l2_skipped} stale_on_error={:?} stale_on_panic={:?} \
         stale_on_slow={:?} slow_loader_answered_in={}ms (soft {}ms) hard_timeout_error_in={}ms \
         (hard {}ms) stale_served={} l2_used_again={back}",
        READ_TIMEOUT.as_millis(),
        max_fall_through.as_millis(),
        failing.source,
        panicking.source,
        slow.source,
        slow_took.as_millis(),
        soft.as_millis(),
        hard_took.as_millis(),
        hard.as_millis(),
        s.stale_served,
    );
    // The read gives up on L2 after its read timeout, finds the value in L3, then promotes it
    // into L1 and L2 and waits for that: the promotion to the slow L2 costs up to its write
    // timeout (until the breaker opens).
    assert!(
        max_fall_through <= READ_TIMEOUT + WRITE_TIMEOUT + SLACK,
        "a read waited {max_fall_through:?}"
    );
    assert!(l2_errors >= 3, "the slow L2 timed out");
    assert_eq!(
        (failing.source, failing.value.as_str()),
        (Source::Stale, "v1")
    );
    assert_eq!(
        (panicking.source, panicking.value.as_str()),
        (Source::Stale, "v2")
    );
    assert_eq!((slow.source, slow.value.as_str()), (Source::Stale, "v3"));
    // The stale copy was found in L1 (fresh reads skip the slow L2 by breaker or timeout).
    assert!(
        slow_took <= soft + READ_TIMEOUT + SLACK,
        "slow loader: answered in {slow_took:?}"
    );
    assert_eq!(hard_err.kind(), ErrorKind::Timeout, "{hard_err}");
    assert!(
        hard_took >= hard && hard_took <= hard + READ_TIMEOUT * 2 + SLACK,
        "hard timeout after {hard_took:?}"
    );
    assert_eq!(s.stale_served, 3);
    assert!(back, "L2 served reads again once the latency was gone");
    let _ = l2.clear().await;
    let _ = drop_schema(&database_url, &schema).await;
}

/// A loader that panics.
async fn panicking_loader() -> Result<String, std::io::Error> {
    panic!("the loader panicked (expected by scenario 4)")
}

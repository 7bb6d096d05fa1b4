//! Scenario 2: Redis frozen (SIGSTOP) and blackholed (a proxy that swallows traffic).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use layercake::{Backend, BreakerState, Cache, MemoryBackend};
use layercake_testkit::proxy::{FaultProxy, Mode};
use layercake_testkit::server::RedisServer;
use layercake_testkit::services::unique_id;

use super::support::{
    LoadSpec, READ_TIMEOUT, SLACK, WRITE_TIMEOUT, fast_tier, redis_tier, start_load, wait_for,
};

/// The Redis backend's own operation timeout in this scenario (see `redis_tier`).
const BACKEND_TIMEOUT: Duration = Duration::from_millis(200);

/// L1 memory + L2 Redis reached through a fault proxy; 4 tasks (20 % writes, every read
/// forced past L1) while Redis is frozen for 1.2 s; one more task calls the Redis backend
/// directly:
///
/// - no cache read waits longer than the tier's read timeout (150 ms), no write longer than
///   its write timeout (300 ms), no direct backend call longer than its operation timeout
///   (200 ms), each plus 100 ms of scheduling slack;
/// - zero errors to callers, zero wrong values (also once traffic flows again: answers that
///   were queued or swallowed must not be matched to other requests);
/// - the breaker closes again after each fault ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_02a_redis_frozen_calls_stay_bounded_and_recover() {
    run("frozen").await;
}

/// As `scenario_02a`, with the proxy swallowing every byte for 1.2 s instead of a frozen
/// server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_02b_redis_blackholed_calls_stay_bounded_and_recover() {
    run("blackholed").await;
}

/// One fault (`frozen` or `blackholed`) under load.
async fn run(fault: &str) {
    let mut redis = RedisServer::start().await.unwrap();
    let proxy = FaultProxy::start(redis.addr()).await.unwrap();
    let url = format!("redis://{}", proxy.addr());
    let prefix = format!("{}:", unique_id("fault-s2-"));
    let backend = Arc::new(redis_tier(&url, &prefix).await);
    let l1: Arc<dyn Backend> = Arc::new(MemoryBackend::with_max_bytes(16 << 20).unwrap());
    let cache = Cache::builder(format!("fault-s2-{fault}"))
        .shared_tier(l1.clone())
        .shared_tier_with(backend.clone(), fast_tier())
        .build()
        .unwrap();
    let spec = LoadSpec {
        tasks: 4,
        keys: 50,
        write_pct: 20,
        drop_l1_pct: 100,
        compute: false,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(cache.clone(), l1.clone(), spec, stop.clone()).await;
    // A task calling the backend directly, recording the longest call per phase.
    let direct = {
        let (backend, stop, cache) = (backend.clone(), stop.clone(), cache.clone());
        tokio::spawn(async move {
            let mut calls = Vec::new();
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let key = cache.key(format!("k{}", i % 50).as_str()).unwrap();
                let t = Instant::now();
                let r = backend.get(&key).await;
                calls.push((t, t.elapsed(), r.is_ok()));
                i += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            calls
        })
    };

    let mut phases = Vec::new();
    for phase in [fault] {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let from = Instant::now();
        match phase {
            "frozen" => redis.freeze().await.unwrap(),
            _ => proxy.set_mode(Mode::Blackhole),
        }
        tokio::time::sleep(Duration::from_millis(1200)).await;
        match phase {
            "frozen" => redis.thaw().await.unwrap(),
            _ => proxy.set_mode(Mode::Pass),
        }
        let to = Instant::now();
        let recovered = wait_for(Duration::from_secs(5), || {
            cache.stats().tiers[1].breaker == BreakerState::Closed
        })
        .await;
        phases.push((phase, from, to, recovered));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let result = load.await.unwrap();
    let direct = direct.await.unwrap();
    let s = cache.stats();

    for (phase, from, to, recovered) in &phases {
        // Calls that started before the fault ended (and up to a timeout after it started).
        let (max_read, max_write) = result.max_between(*from, *to);
        let max_direct = direct
            .iter()
            .filter(|(t, _, _)| t >= from && t < to)
            .map(|(_, d, _)| *d)
            .max()
            .unwrap_or_default();
        let failed_direct = direct
            .iter()
            .filter(|(t, _, ok)| t >= from && t < to && !ok)
            .count();
        println!(
            "scenario 2 ({phase}): max_read={}ms (timeout {}ms) max_write={}ms (timeout {}ms) \
             max_direct_backend_call={}ms (timeout {}ms) direct_failures={failed_direct} \
             breaker_closed_after={}",
            max_read.as_millis(),
            READ_TIMEOUT.as_millis(),
            max_write.as_millis(),
            WRITE_TIMEOUT.as_millis(),
            max_direct.as_millis(),
            BACKEND_TIMEOUT.as_millis(),
            recovered.map_or("never".into(), |d| format!("{}ms", d.as_millis())),
        );
        assert!(
            max_read <= READ_TIMEOUT + SLACK,
            "{phase}: a read waited {max_read:?}"
        );
        assert!(
            max_write <= WRITE_TIMEOUT + SLACK,
            "{phase}: a write waited {max_write:?}"
        );
        assert!(
            max_direct <= BACKEND_TIMEOUT + SLACK,
            "{phase}: a backend call waited {max_direct:?}"
        );
        assert!(
            failed_direct > 0,
            "{phase}: the fault was seen by the backend"
        );
        assert!(
            recovered.is_some(),
            "{phase}: the breaker closed again after the fault"
        );
    }
    println!(
        "scenario 2 ({fault}): ops={} errors={} wrong={} l2_errors={} l2_skipped={} l2_breaker_transitions={}",
        result.ops.len(),
        result.errors.len(),
        result.wrong,
        s.tiers[1].errors,
        s.tiers[1].skipped,
        s.tiers[1].breaker_transitions
    );
    assert!(
        result.errors.is_empty(),
        "errors to callers: {:?}",
        &result.errors[..result.errors.len().min(5)]
    );
    assert_eq!(result.wrong, 0, "wrong values");
    // After the faults, L2 answers correctly again: every key reads back through L2.
    for k in 0..50u32 {
        let key = cache.key(format!("k{k}").as_str()).unwrap();
        l1.delete(&key).await.unwrap();
        let v = cache
            .get::<super::support::Val>(format!("k{k}").as_str())
            .await
            .unwrap();
        if let Some(v) = v {
            assert_eq!(
                v.value.k, k,
                "L2 answered another key's value after the faults"
            );
        }
    }
    backend.clear().await.unwrap();
}

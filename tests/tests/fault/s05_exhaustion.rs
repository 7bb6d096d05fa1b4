//! Scenario 5: pool exhaustion and caller cancellation.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::future::join_all;
use layercake::{
    Backend, BreakerState, Cache, Clock, Entry, Key, MemoryBackend, Source, SystemClock,
};
use layercake_redis::{ConnectionMode, RedisBackend};
use layercake_testkit::proxy::{FaultProxy, Mode};
use layercake_testkit::server::RedisServer;
use layercake_testkit::services::{require_postgres, unique_id};
use layercake_tests::drop_schema;

use super::support::{SLACK, fast_tier, postgres_config, redis_config, redis_tier, wait_for};

/// Run `n` concurrent `get`s on `backend`; (longest call, failures).
async fn storm(backend: Arc<dyn Backend>, n: usize) -> (Duration, usize) {
    let calls = (0..n).map(|i| {
        let backend = backend.clone();
        async move {
            let key = Key::new(format!("storm:{}", i % 8)).unwrap();
            let t = Instant::now();
            let r = backend.get(&key).await;
            (t.elapsed(), r.is_err())
        }
    });
    let results = join_all(calls).await;
    let max = results.iter().map(|(d, _)| *d).max().unwrap_or_default();
    (max, results.iter().filter(|(_, e)| *e).count())
}

/// Pools of 2 connections (Redis pool mode, PostgreSQL) behind proxies adding 100 ms, stormed
/// by 64 concurrent calls:
///
/// - callers that cannot get a connection fail within the operation timeout (200 ms + slack),
///   nothing hangs;
/// - afterwards every call succeeds again and the proxies see at most 2 open connections per
///   pool (nothing leaked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_05a_pool_exhaustion_is_bounded_and_leaks_nothing() {
    let database_url = require_postgres();
    let redis = RedisServer::start().await.unwrap();
    let redis_proxy = FaultProxy::start(redis.addr()).await.unwrap();
    let redis_pool: Arc<dyn Backend> = Arc::new(
        RedisBackend::connect(
            redis_config(&format!("redis://{}", redis_proxy.addr()), "s5:")
                .with_mode(ConnectionMode::Pool)
                .with_pool_max_size(2)
                .with_pool_wait_timeout(Duration::from_millis(50)),
        )
        .await
        .unwrap(),
    );
    let pg_addr = layercake_testkit::services::host_port(&database_url).unwrap();
    let pg_proxy = FaultProxy::start(pg_addr.parse().unwrap()).await.unwrap();
    let schema = unique_id("fault_s5_");
    // Create the schema directly, then reach the server through the proxy.
    drop(
        layercake_postgres::PostgresBackend::connect(postgres_config(&database_url, &schema))
            .await
            .unwrap(),
    );
    let proxied_url = database_url.replace(&pg_addr, &pg_proxy.addr().to_string());
    let pg_pool: Arc<dyn Backend> = Arc::new(
        layercake_postgres::PostgresBackend::connect(
            postgres_config(&proxied_url, &schema).with_pool_max_size(2),
        )
        .await
        .unwrap(),
    );
    let now = SystemClock.now();
    for i in 0..8 {
        let k = Key::new(format!("storm:{i}")).unwrap();
        let e = Entry::new(&b"v"[..], now, Duration::from_secs(600));
        redis_pool.set(&k, &e).await.unwrap();
        pg_pool.set(&k, &e).await.unwrap();
    }
    let mut figures = Vec::new();
    for (name, backend, proxy) in [
        ("redis", &redis_pool, &redis_proxy),
        ("postgres", &pg_pool, &pg_proxy),
    ] {
        proxy.set_mode(Mode::Latency(Duration::from_millis(100)));
        let (slow_max, slow_failed) = storm(backend.clone(), 64).await;
        proxy.set_mode(Mode::Pass);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (_, after_failed) = storm(backend.clone(), 64).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let open = proxy.connections();
        println!(
            "scenario 5a ({name}): pool=2 calls=64 latency=100ms max_call={}ms failed={slow_failed} \
             failed_after={after_failed} open_connections_after={open}",
            slow_max.as_millis()
        );
        figures.push((name, slow_max, slow_failed, after_failed, open));
    }
    for (name, slow_max, slow_failed, after_failed, open) in figures {
        assert!(
            slow_max <= Duration::from_millis(200) + SLACK,
            "{name}: a call waited {slow_max:?}"
        );
        assert!(slow_failed > 0, "{name}: the pool was exhausted");
        assert_eq!(after_failed, 0, "{name}: calls fail after the storm");
        assert!(open <= 2, "{name}: {open} connections open for a pool of 2");
    }
    let _ = redis_pool.clear().await;
    let _ = drop_schema(&database_url, &schema).await;
}

/// Caller cancellation:
///
/// - 1 000 `get_or_compute` callers of one key, each cancelled after 50 ms while the loader
///   takes 300 ms: the loader runs once, completes, and its value is stored; no single-flight
///   entry and no task is left behind;
/// - a caller cancelled while it is the breaker's half-open probe does not wedge the breaker:
///   the next call probes and closes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_05b_cancelled_callers_leak_no_flight_task_or_probe() {
    let redis = RedisServer::start().await.unwrap();
    let proxy = FaultProxy::start(redis.addr()).await.unwrap();
    let l1: Arc<dyn Backend> = Arc::new(MemoryBackend::with_max_bytes(16 << 20).unwrap());
    let l2 = Arc::new(redis_tier(&format!("redis://{}", proxy.addr()), "s5b:").await);
    let cache = Cache::builder("fault-s5b")
        .shared_tier(l1.clone())
        .shared_tier_with(l2.clone(), fast_tier())
        .build()
        .unwrap();
    cache.set("warm", 1u32).await.unwrap();
    let _ = cache.get::<u32>("warm").await.unwrap();
    let metrics = tokio::runtime::Handle::current().metrics();
    let tasks_before = metrics.num_alive_tasks();

    let calls = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..1000)
        .map(|_| {
            let (cache, calls) = (cache.clone(), calls.clone());
            tokio::spawn(async move {
                tokio::time::timeout(
                    Duration::from_millis(50),
                    cache.get_or_compute("slow", move || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        Ok::<_, std::io::Error>(42u32)
                    }),
                )
                .await
                .is_err()
            })
        })
        .collect();
    let mut cancelled = 0;
    for c in callers {
        if c.await.unwrap() {
            cancelled += 1;
        }
    }
    let settled = wait_for(Duration::from_secs(3), || cache.loads_in_flight() == 0).await;
    let stored = cache.get::<u32>("slow").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let tasks_after = metrics.num_alive_tasks();

    // A cancelled half-open probe.
    // Latency above the read timeout (answers late, in order), so the breaker opens; a
    // blackhole would also lose answers, which wedges the connection (scenario 2b).
    proxy.set_mode(Mode::Latency(Duration::from_millis(400)));
    for i in 0..3 {
        let name = format!("p{i}");
        let _ = cache.get::<u32>(name.as_str()).await.unwrap();
    }
    let opened = cache.stats().tiers[1].breaker;
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let half_open = cache.stats().tiers[1].breaker;
    // This call is the probe; cancel it while it waits on the slow tier.
    let probe = tokio::time::timeout(Duration::from_millis(20), cache.get::<u32>("probe")).await;
    proxy.set_mode(Mode::Pass);
    let t = Instant::now();
    let mut closed_after = None;
    while t.elapsed() < Duration::from_secs(2) {
        l1.delete(&cache.key("warm").unwrap()).await.unwrap();
        let _ = cache.get::<u32>("warm").await.unwrap();
        if cache.stats().tiers[1].breaker == BreakerState::Closed {
            closed_after = Some(t.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "scenario 5b: callers=1000 cancelled={cancelled} loader_calls={} flights_settled_in={:?} \
         value_stored={:?} alive_tasks_before={tasks_before} after={tasks_after} \
         breaker={opened:?}->{half_open:?} probe_cancelled={} closed_after_cancelled_probe={:?}",
        calls.load(Ordering::SeqCst),
        settled,
        stored.as_ref().map(|l| (*l.value, l.source)),
        probe.is_err(),
        closed_after,
    );
    assert_eq!(cancelled, 1000, "every caller was cancelled");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one loader run for all callers"
    );
    assert!(
        settled.is_some(),
        "single-flight entries left: {}",
        cache.loads_in_flight()
    );
    let stored = stored.expect("the load finished and stored its value");
    assert_eq!(
        (*stored.value, stored.source),
        (42, Source::Hit { tier: 0 })
    );
    assert!(
        tasks_after <= tasks_before,
        "tasks leaked: {tasks_before} -> {tasks_after}"
    );
    assert_eq!(opened, BreakerState::Open);
    assert_eq!(half_open, BreakerState::HalfOpen);
    assert!(probe.is_err(), "the probe call was cancelled");
    assert!(
        closed_after.is_some(),
        "the breaker stayed wedged after a cancelled probe"
    );
    let _ = l2.clear().await;
}

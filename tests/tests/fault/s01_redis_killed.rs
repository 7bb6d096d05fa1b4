//! Scenario 1: Redis killed (SIGKILL) mid-load under a four-tier stack.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use layercake::{BreakerState, Cache, SystemClock};
use layercake_testkit::server::RedisServer;
use layercake_testkit::services::require_postgres;
use layercake_tests::Tiers;

use super::support::{LoadSpec, Logged, breaker_report, fast_tier, start_load, wait_for};

/// 8 tasks (reads, 5 % writes, 20 % of reads forced past L1) on L1 memory, L2 Redis (a
/// throwaway server, killed after 0.7 s and restarted 1.3 s later), L3 PostgreSQL, L4 files:
///
/// - zero errors to callers and zero wrong values;
/// - the L2 breaker opens at the 3rd failure: no call reaches L2 during its cool-down;
/// - L1-hit p99 stays under 2 ms during the outage;
/// - after the restart the breaker closes within 1.5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_01_redis_killed_mid_load() {
    let database_url = require_postgres();
    let mut redis = RedisServer::start().await.unwrap();
    let tiers = Tiers::connect_to(&redis.url(), &database_url, Arc::new(SystemClock)).await;
    let (l2, log) = Logged::new(tiers.redis.clone());
    let cache = Cache::builder("fault-s1")
        .shared_tier(tiers.memory.clone())
        .shared_tier_with(Arc::new(l2), fast_tier())
        .shared_tier_with(tiers.postgres.clone(), fast_tier())
        .shared_tier_with(tiers.file.clone(), fast_tier())
        .build()
        .unwrap();
    let spec = LoadSpec {
        tasks: 8,
        keys: 200,
        write_pct: 5,
        drop_l1_pct: 20,
        compute: true,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(cache.clone(), tiers.memory.clone(), spec, stop.clone()).await;

    tokio::time::sleep(Duration::from_millis(700)).await;
    let outage = Instant::now();
    redis.kill().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    redis.restart().await.unwrap();
    let restarted = Instant::now();
    let close_after = wait_for(Duration::from_secs(3), || {
        cache.stats().tiers[1].breaker == BreakerState::Closed
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let result = load.await.unwrap();

    let report = breaker_report(&log.lock(), outage, Duration::from_secs(1));
    let (l1_p99, l1_n) = result.l1_p99(outage, restarted);
    let s = cache.stats();
    println!(
        "scenario 1: ops={} errors={} wrong={} l2_failures_before_open={} \
         l2_calls_admitted_while_open={} l2_errors={} l2_skipped={} \
         l1_hits_during_outage={l1_n} l1_p99={}µs close_after={}",
        result.ops.len(),
        result.errors.len(),
        result.wrong,
        report.failures_before_open,
        report.admitted_while_open,
        s.tiers[1].errors,
        s.tiers[1].skipped,
        l1_p99.as_micros(),
        close_after.map_or("never".into(), |d| format!("{}ms", d.as_millis())),
    );
    assert!(
        result.errors.is_empty(),
        "errors to callers: {:?}",
        &result.errors[..result.errors.len().min(5)]
    );
    assert_eq!(result.wrong, 0, "wrong values");
    assert!(
        report.failures_before_open >= 3,
        "the outage was seen: {report:?}"
    );
    assert_eq!(
        report.admitted_while_open, 0,
        "the breaker opened at the 3rd failure: {report:?}"
    );
    assert!(l1_n > 100, "L1 served reads during the outage");
    assert!(
        l1_p99 < Duration::from_millis(2),
        "L1-hit p99 {l1_p99:?} during the outage"
    );
    let close_after = close_after.expect("the L2 breaker closed after the restart");
    assert!(
        close_after <= Duration::from_millis(1500),
        "closed {close_after:?} after the restart"
    );
    assert!(
        s.tiers[1].breaker_transitions >= 2,
        "opened and closed: {s:?}"
    );
    tiers.cleanup().await;
}

//! Scenario 3: PostgreSQL restarted, killed and frozen.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use layercake::{Backend, BreakerState, Cache, Entry, MemoryBackend, SystemClock};
use layercake_testkit::server::PostgresServer;

use super::support::{
    LoadSpec, Logged, READ_TIMEOUT, SLACK, WRITE_TIMEOUT, breaker_report, fast_tier, postgres_tier,
    start_load, wait_for,
};

/// L1 memory + L3 PostgreSQL (a throwaway cluster with `synchronous_commit=on`); 8 tasks
/// (5 % writes, 20 % of reads forced past L1) while PostgreSQL is restarted, then frozen for
/// 1.2 s; then, idle, killed with SIGKILL and restarted:
///
/// - zero errors to callers and zero wrong values;
/// - the breaker opens at the 3rd failure (no call reaches the tier during its cool-down)
///   and closes within 1.5 s of the server answering again;
/// - L1-hit p99 stays under 2 ms during the outage;
/// - while frozen no call to the tier waits longer than its timeout: a `get_or_compute` (a read
///   and the fill of the computed value) at most the read plus the write timeout, a `set` the
///   write timeout (plus 100 ms slack);
/// - the first query after each restart succeeds (the pool does not hand out dead
///   connections), and nothing acknowledged is lost across the SIGKILL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_03_postgres_restarted_and_frozen() {
    let mut pg = PostgresServer::start_with(&[("synchronous_commit", "on")])
        .await
        .unwrap();
    let backend: Arc<dyn Backend> = Arc::new(postgres_tier(&pg.url(), "fault_s3").await);
    let (l3, log) = Logged::new(backend.clone());
    let l1: Arc<dyn Backend> = Arc::new(MemoryBackend::with_max_bytes(16 << 20).unwrap());
    let cache = Cache::builder("fault-s3")
        .shared_tier(l1.clone())
        .shared_tier_with(Arc::new(l3), fast_tier())
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
    let load = start_load(cache.clone(), l1.clone(), spec, stop.clone()).await;

    // Restart under load.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outage = Instant::now();
    pg.restart().await.unwrap();
    let restarted = Instant::now();
    let close_after_restart = wait_for(Duration::from_secs(3), || {
        cache.stats().tiers[1].breaker == BreakerState::Closed
    })
    .await;
    let report = breaker_report(&log.lock(), outage, Duration::from_secs(1));

    // Freeze under load.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let frozen = Instant::now();
    pg.freeze().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    pg.thaw().await.unwrap();
    let thawed = Instant::now();
    let close_after_thaw = wait_for(Duration::from_secs(3), || {
        cache.stats().tiers[1].breaker == BreakerState::Closed
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let result = load.await.unwrap();

    let (l1_p99, l1_n) = result.l1_p99(outage, restarted);
    let (max_read, max_write) = result.max_between(frozen, thawed);
    let s = cache.stats();
    let ms = |d: Option<Duration>| d.map_or("never".into(), |d| format!("{}ms", d.as_millis()));

    // Idle: acknowledged writes, SIGKILL, restart, first query.
    let clock = SystemClock;
    let now = layercake::Clock::now(&clock);
    let mut acked = Vec::new();
    for i in 0..200u32 {
        let key = layercake::Key::new(format!("acked:{i}")).unwrap();
        let e = Entry::new(
            format!("value {i}").into_bytes(),
            now,
            Duration::from_secs(600),
        );
        if backend.set(&key, &e).await.is_ok() {
            acked.push((key, e));
        }
    }
    pg.kill().await.unwrap();
    pg.restart().await.unwrap();
    let first = backend.get(&acked[0].0).await;
    let mut lost = 0;
    for (k, e) in &acked {
        match backend.get(k).await {
            Ok(Some(got)) if got.value == e.value => {}
            _ => lost += 1,
        }
    }
    println!(
        "scenario 3: ops={} errors={} wrong={} l3_failures_before_open={} \
         l3_calls_admitted_while_open={} l1_hits_during_restart={l1_n} l1_p99={}µs \
         close_after_restart={} frozen_max_read={}ms frozen_max_write={}ms close_after_thaw={} \
         acked={} lost_after_sigkill={lost} first_query_after_restart={}",
        result.ops.len(),
        result.errors.len(),
        result.wrong,
        report.failures_before_open,
        report.admitted_while_open,
        l1_p99.as_micros(),
        ms(close_after_restart),
        max_read.as_millis(),
        max_write.as_millis(),
        ms(close_after_thaw),
        acked.len(),
        if first.is_ok() { "ok" } else { "error" },
    );
    println!("scenario 3: L3 stats {:?}", s.tiers[1]);
    assert!(
        result.errors.is_empty(),
        "errors to callers: {:?}",
        &result.errors[..result.errors.len().min(5)]
    );
    assert_eq!(result.wrong, 0, "wrong values");
    assert!(
        report.failures_before_open >= 3,
        "the restart was seen: {report:?}"
    );
    assert_eq!(
        report.admitted_while_open, 0,
        "the breaker opened at the 3rd failure: {report:?}"
    );
    assert!(l1_n > 100, "L1 served reads during the restart");
    assert!(
        l1_p99 < Duration::from_millis(2),
        "L1-hit p99 {l1_p99:?} during the restart"
    );
    let c = close_after_restart.expect("the L3 breaker closed after the restart");
    assert!(
        c <= Duration::from_millis(1500),
        "closed {c:?} after the restart"
    );
    // A `get_or_compute` that misses makes two calls to the frozen tier: its read, then the
    // fill of the computed value (awaited before the callers get it).
    assert!(
        max_read <= READ_TIMEOUT + WRITE_TIMEOUT + SLACK,
        "frozen: a read waited {max_read:?}"
    );
    assert!(
        max_write <= WRITE_TIMEOUT + SLACK,
        "frozen: a write waited {max_write:?}"
    );
    let c = close_after_thaw.expect("the L3 breaker closed after the thaw");
    assert!(
        c <= Duration::from_millis(1500),
        "closed {c:?} after the thaw"
    );
    assert_eq!(acked.len(), 200, "every write acknowledged before the kill");
    assert!(
        first.is_ok(),
        "the first query after the restart failed: {first:?}"
    );
    assert_eq!(lost, 0, "acknowledged writes lost across SIGKILL");
}

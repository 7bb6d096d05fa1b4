//! Scenario 13: Redis unreachable (a proxy drops every packet) for 2 s, then back — the write
//! contract.

use std::sync::Arc;
use std::time::{Duration, Instant};

use layercake::{Backend, Cache};
use layercake_testkit::proxy::{FaultProxy, Mode};
use layercake_testkit::server::RedisServer;
use layercake_testkit::services::{require_postgres, unique_id};
use layercake_tests::drop_schema;

use super::contract::{
    self, CALL_LIMIT, Reader, Role, SCENARIO_LIMIT, bounded, write_during_fault, write_v1,
};

/// One instance: its own L1, its own connections to L2 (Redis at `redis_url`) and L3
/// (PostgreSQL).
async fn instance(
    redis_url: &str,
    database_url: &str,
    name: &str,
    role: Role,
) -> (Cache, Arc<dyn Backend>) {
    let shared = vec![
        contract::redis(redis_url, &format!("{name}:"), role).await,
        contract::postgres(database_url, name, role).await,
    ];
    contract::instance("fault-s13", role, shared)
}

/// How long the proxy drops every packet.
const UNREACHABLE_FOR: Duration = Duration::from_secs(2);

/// L1 memory + L2 Redis (a throwaway server reached through a fault proxy) + L3 PostgreSQL.
/// Generation 1 of 60 keys is written everywhere; the proxy swallows every byte both ways
/// (connections accepted, nothing answered: what dropped packets look like to a client) for
/// 2 s; meanwhile 15 keys get generation 2, 15 are deleted and the tag of 15 more is
/// invalidated; then traffic passes again. A fresh instance (empty L1, new connections through
/// the proxy) and the writer with its L1 cleared read every key, again every 250 ms until
/// consistent or 10 s after traffic passes again:
///
/// - 0 keys read older than their newest acknowledged `set` (`set` returned `Ok`);
/// - 0 removals acknowledged (`delete`/`invalidate_tag` returned `Ok`) that read a value again;
/// - no wrong value, no failed read.
///
/// Checked that the fault was real: L2 failed or skipped calls while unreachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_13_redis_unreachable_then_back_keeps_acknowledged_writes() {
    bounded("scenario 13", SCENARIO_LIMIT, run()).await;
}

async fn run() {
    let database_url = require_postgres();
    let redis = bounded(
        "starting redis-server",
        Duration::from_secs(20),
        RedisServer::start(),
    )
    .await
    .unwrap();
    let proxy = FaultProxy::start(redis.addr()).await.unwrap();
    let url = format!("redis://{}", proxy.addr());
    let name = unique_id("fault_s13_");
    let (writer, writer_l1) = instance(&url, &database_url, &name, Role::Writer).await;
    let mut ledger = bounded(
        "writing generation 1",
        Duration::from_secs(20),
        write_v1(&writer),
    )
    .await;

    let before = writer.stats().tiers[1].clone();
    let cut = Instant::now();
    proxy.set_mode(Mode::Blackhole);
    bounded(
        "the writes while unreachable",
        4 * CALL_LIMIT,
        write_during_fault(&writer, &mut ledger),
    )
    .await;
    let writes_took = cut.elapsed();
    if let Some(rest) = UNREACHABLE_FOR.checked_sub(writes_took) {
        tokio::time::sleep(rest).await;
    }
    let during = writer.stats().tiers[1].clone();
    proxy.set_mode(Mode::Pass);
    let recovered = Instant::now();

    let (fresh, fresh_l1) = instance(&url, &database_url, &name, Role::Reader).await;
    let readers = [
        Reader {
            name: "fresh",
            cache: fresh,
            l1: fresh_l1,
        },
        Reader {
            name: "writer",
            cache: writer.clone(),
            l1: writer_l1,
        },
    ];
    let settled = contract::settle(&readers, &ledger, recovered).await;

    println!(
        "scenario 13: while unreachable: {} | writes_took={}ms unreachable_for={}ms \
         l2_errors={} l2_skipped={}",
        ledger.during.line(),
        writes_took.as_millis(),
        (recovered - cut).as_millis(),
        during.errors - before.errors,
        during.skipped - before.skipped,
    );
    settled.print("scenario 13", &readers);
    let _ = drop_schema(&database_url, &name).await;
    assert!(
        during.errors + during.skipped > before.errors + before.skipped,
        "the outage was seen by L2"
    );
    settled.assert_kept("scenario 13");
}

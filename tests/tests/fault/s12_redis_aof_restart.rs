//! Scenario 12: Redis killed and restarted with persistence (AOF) on — the write contract.

use std::sync::Arc;
use std::time::{Duration, Instant};

use layercake::{Backend, Cache};
use layercake_testkit::server::RedisServer;
use layercake_testkit::services::{require_postgres, unique_id};
use layercake_tests::drop_schema;

use super::contract::{
    self, CALL_LIMIT, Reader, Role, SCENARIO_LIMIT, bounded, write_during_fault, write_v1,
};
use super::support::RawRedis;

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
    contract::instance("fault-s12", role, shared)
}

/// L1 memory + L2 Redis (a throwaway server with `appendonly yes`, `appendfsync always`) + L3
/// PostgreSQL. Generation 1 of 60 keys is written everywhere; Redis is killed (SIGKILL); during
/// the outage 15 keys get generation 2, 15 are deleted and the tag of 15 more is invalidated;
/// Redis restarts and reloads its AOF (so it holds generation 1 again). Then a fresh instance
/// (empty L1, new connections) and the writer with its L1 cleared read every key, again every
/// 250 ms until consistent or 10 s after the restart:
///
/// - 0 keys read older than their newest acknowledged `set` (`set` returned `Ok`);
/// - 0 removals acknowledged (`delete`/`invalidate_tag` returned `Ok`) that read a value again;
/// - no wrong value, no failed read.
///
/// Checked that the fault was real: L2 failed or skipped calls during the outage, and the
/// restarted Redis still held a marker key written before the kill (the AOF was reloaded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_12_redis_killed_and_restarted_with_aof_keeps_acknowledged_writes() {
    bounded("scenario 12", SCENARIO_LIMIT, run()).await;
}

async fn run() {
    let database_url = require_postgres();
    let mut redis = bounded(
        "starting redis-server",
        Duration::from_secs(20),
        RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]),
    )
    .await
    .unwrap();
    let name = unique_id("fault_s12_");
    let (writer, writer_l1) = instance(&redis.url(), &database_url, &name, Role::Writer).await;
    let mut ledger = bounded(
        "writing generation 1",
        Duration::from_secs(20),
        write_v1(&writer),
    )
    .await;

    // A key outside the cache's namespace: no repair touches it, so finding it after the
    // restart shows that the AOF was reloaded.
    let marker = layercake::Key::new("aof-marker").unwrap();
    let prefix = format!("{name}:");
    let raw = bounded(
        "raw connection",
        CALL_LIMIT,
        RawRedis::connect(&redis.url(), &prefix),
    )
    .await;
    bounded("raw SET", CALL_LIMIT, raw.put(&marker, b"1")).await;
    drop(raw);

    let before = writer.stats().tiers[1].clone();
    bounded(
        "killing redis-server",
        Duration::from_secs(15),
        redis.kill(),
    )
    .await
    .unwrap();
    bounded(
        "the writes during the outage",
        4 * CALL_LIMIT,
        write_during_fault(&writer, &mut ledger),
    )
    .await;
    let during = writer.stats().tiers[1].clone();
    bounded(
        "restarting redis-server",
        Duration::from_secs(20),
        redis.restart(),
    )
    .await
    .unwrap();
    let recovered = Instant::now();
    let raw = bounded(
        "raw connection",
        CALL_LIMIT,
        RawRedis::connect(&redis.url(), &prefix),
    )
    .await;
    let reloaded = bounded("raw EXISTS", CALL_LIMIT, raw.exists(&marker)).await;

    let (fresh, fresh_l1) = instance(&redis.url(), &database_url, &name, Role::Reader).await;
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
        "scenario 12: during outage: {} | l2_errors={} l2_skipped={} aof_reloaded={reloaded}",
        ledger.during.line(),
        during.errors - before.errors,
        during.skipped - before.skipped,
    );
    settled.print("scenario 12", &readers);
    let _ = drop_schema(&database_url, &name).await;
    assert!(
        during.errors + during.skipped > before.errors + before.skipped,
        "the outage was seen by L2"
    );
    assert!(reloaded, "the restarted Redis reloaded its AOF");
    settled.assert_kept("scenario 12");
}

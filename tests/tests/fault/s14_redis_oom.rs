//! Scenario 14: Redis refusing writes (`maxmemory` below its use, `noeviction`: every write
//! answered `OOM`), then accepting them again — the write contract.

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

/// One instance: its own L1, its own connection to L2 (Redis) and, when `database_url` is
/// given, to L3 (PostgreSQL).
async fn instance(
    redis_url: &str,
    database_url: Option<&str>,
    name: &str,
    role: Role,
) -> (Cache, Arc<dyn Backend>) {
    let mut shared = vec![contract::redis(redis_url, &format!("{name}:"), role).await];
    if let Some(url) = database_url {
        shared.push(contract::postgres(url, name, role).await);
    }
    contract::instance("fault-s14", role, shared)
}

/// L1 memory + L2 Redis (a throwaway server with `maxmemory-policy noeviction`) + L3
/// PostgreSQL. Generation 1 of 60 keys is written everywhere; `CONFIG SET maxmemory 1` makes
/// Redis answer every write that may grow memory with `OOM command not allowed` (reads and
/// `DEL` still work); meanwhile 15 keys get generation 2, 15 are deleted and the tag of 15 more
/// is invalidated; then `CONFIG SET maxmemory 0` lifts the limit. A fresh instance (empty L1,
/// its own connections) and the writer with its L1 cleared read every key, again every 250 ms
/// until consistent or 10 s after the limit is lifted:
///
/// - 0 keys read older than their newest acknowledged `set` (`set` returned `Ok`);
/// - 0 removals acknowledged (`delete`/`invalidate_tag` returned `Ok`) that read a value again;
/// - no wrong value, no failed read.
///
/// Checked that the fault was real: a raw `SET` was refused with `OOM` during the fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_14a_redis_refusing_writes_over_postgres_keeps_acknowledged_writes() {
    let database_url = require_postgres();
    bounded(
        "scenario 14a",
        SCENARIO_LIMIT,
        run("14a", Some(&database_url)),
    )
    .await;
}

/// As `scenario_14a` with nothing below Redis: a write Redis refuses reaches no shared tier,
/// only the writer's own memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_14b_redis_refusing_writes_alone_keeps_acknowledged_writes() {
    bounded("scenario 14b", SCENARIO_LIMIT, run("14b", None)).await;
}

/// Scenario `label` over L1 + Redis (+ PostgreSQL at `database_url`).
async fn run(label: &str, database_url: Option<&str>) {
    let redis = bounded(
        "starting redis-server",
        Duration::from_secs(20),
        RedisServer::start_with(&["--maxmemory-policy", "noeviction"]),
    )
    .await
    .unwrap();
    let name = unique_id("fault_s14_");
    let (writer, writer_l1) = instance(&redis.url(), database_url, &name, Role::Writer).await;
    let mut ledger = bounded(
        "writing generation 1",
        Duration::from_secs(20),
        write_v1(&writer),
    )
    .await;

    let admin = bounded(
        "raw connection",
        CALL_LIMIT,
        RawRedis::connect(&redis.url(), ""),
    )
    .await;
    let before = writer.stats().tiers[1].clone();
    let limited = bounded(
        "CONFIG SET maxmemory 1",
        CALL_LIMIT,
        admin.command(&["CONFIG", "SET", "maxmemory", "1"]),
    )
    .await;
    let probe = bounded(
        "raw SET",
        CALL_LIMIT,
        admin.command(&["SET", "oom-probe", "x"]),
    )
    .await;
    bounded(
        "the writes while Redis refuses them",
        4 * CALL_LIMIT,
        write_during_fault(&writer, &mut ledger),
    )
    .await;
    let during = writer.stats().tiers[1].clone();
    let lifted = bounded(
        "CONFIG SET maxmemory 0",
        CALL_LIMIT,
        admin.command(&["CONFIG", "SET", "maxmemory", "0"]),
    )
    .await;
    let recovered = Instant::now();

    let (fresh, fresh_l1) = instance(&redis.url(), database_url, &name, Role::Reader).await;
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
        "scenario {label}: while refusing: {} | l2_errors={} l2_skipped={} limit={limited} \
         probe={probe} lifted={lifted}",
        ledger.during.line(),
        during.errors - before.errors,
        during.skipped - before.skipped,
    );
    let scenario = format!("scenario {label}");
    settled.print(&scenario, &readers);
    if let Some(url) = database_url {
        let _ = drop_schema(url, &name).await;
    }
    assert!(probe.contains("OOM"), "Redis refused writes: {probe}");
    settled.assert_kept(&scenario);
}

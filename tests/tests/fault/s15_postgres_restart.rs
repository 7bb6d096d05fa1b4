//! Scenario 15: PostgreSQL killed (SIGKILL) and restarted — the write contract.

use std::sync::Arc;
use std::time::{Duration, Instant};

use layercake::{Backend, Cache};
use layercake_testkit::server::PostgresServer;

use super::contract::{
    self, CALL_LIMIT, Reader, Role, SCENARIO_LIMIT, bounded, write_during_fault, write_v1,
};
use super::support::RawPg;

/// The schema of the scenario's table (on its own throwaway server).
const SCHEMA: &str = "fault_s15";

/// One instance: its own L1 and its own pool to the shared tier (PostgreSQL).
async fn instance(database_url: &str, role: Role) -> (Cache, Arc<dyn Backend>) {
    let shared = vec![contract::postgres(database_url, SCHEMA, role).await];
    contract::instance("fault-s15", role, shared)
}

/// L1 memory + PostgreSQL as the shared tier (a throwaway cluster with
/// `synchronous_commit=on`). Generation 1 of 60 keys is written everywhere; PostgreSQL is
/// killed (SIGKILL of the postmaster and its children); during the outage 15 keys get
/// generation 2, 15 are deleted and the tag of 15 more is invalidated; PostgreSQL restarts and
/// recovers its data (so it holds generation 1 again). A fresh instance (empty L1, its own
/// pool) and the writer with its L1 cleared read every key, again every 250 ms until
/// consistent or 10 s after the restart:
///
/// - 0 keys read older than their newest acknowledged `set` (`set` returned `Ok`);
/// - 0 removals acknowledged (`delete`/`invalidate_tag` returned `Ok`) that read a value again;
/// - no wrong value, no failed read.
///
/// Checked that the fault was real: the tier failed or skipped calls during the outage, and
/// the restarted server still held a marker row written before the kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_15_postgres_killed_and_restarted_keeps_acknowledged_writes() {
    bounded("scenario 15", SCENARIO_LIMIT, run()).await;
}

async fn run() {
    let mut pg = bounded(
        "starting postgres",
        Duration::from_secs(30),
        PostgresServer::start_with(&[("synchronous_commit", "on")]),
    )
    .await
    .unwrap();
    let url = pg.url();
    let (writer, writer_l1) = instance(&url, Role::Writer).await;
    let mut ledger = bounded(
        "writing generation 1",
        Duration::from_secs(20),
        write_v1(&writer),
    )
    .await;
    // A row outside the cache's namespace: no repair touches it, so finding it after the
    // restart shows that the server came back with its data.
    let marker = layercake::Key::new("pg-marker").unwrap();
    {
        let raw = bounded("raw connection", CALL_LIMIT, RawPg::connect(&url, SCHEMA)).await;
        bounded("raw INSERT", CALL_LIMIT, raw.put(&marker, b"1")).await;
    }

    let before = writer.stats().tiers[1].clone();
    bounded("killing postgres", Duration::from_secs(20), pg.kill())
        .await
        .unwrap();
    bounded(
        "the writes during the outage",
        4 * CALL_LIMIT,
        write_during_fault(&writer, &mut ledger),
    )
    .await;
    let during = writer.stats().tiers[1].clone();
    bounded("restarting postgres", Duration::from_secs(30), pg.restart())
        .await
        .unwrap();
    let recovered = Instant::now();
    let raw = bounded("raw connection", CALL_LIMIT, RawPg::connect(&url, SCHEMA)).await;
    let kept = bounded("raw SELECT", CALL_LIMIT, raw.exists(&marker)).await;
    drop(raw);

    let (fresh, fresh_l1) = instance(&url, Role::Reader).await;
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
        "scenario 15: during outage: {} | tier_errors={} tier_skipped={} data_kept={kept}",
        ledger.during.line(),
        during.errors - before.errors,
        during.skipped - before.skipped,
    );
    settled.print("scenario 15", &readers);
    assert!(
        during.errors + during.skipped > before.errors + before.skipped,
        "the outage was seen by the tier"
    );
    assert!(kept, "the restarted PostgreSQL kept its data");
    settled.assert_kept("scenario 15");
}

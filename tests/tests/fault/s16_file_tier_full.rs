//! Scenario 16: the file tier's filesystem full (a tmpfs filled to its last page), then freed
//! — the write contract.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use layercake::{Backend, Cache};
use layercake_file::{FileBackend, FileConfig};
use layercake_testkit::tmpfs::Tmpfs;

use super::contract::{
    self, CALL_LIMIT, Reader, Role, SCENARIO_LIMIT, bounded, write_during_fault_with, write_v1,
};

/// Size of the tmpfs: room for generation 1 of every key (a page per entry file) and more.
const TMPFS_BYTES: u64 = 4 << 20;

/// One instance: its own L1 and its own handle on the shared tier (files in `dir`).
async fn instance(dir: &Path, role: Role) -> (Cache, Arc<dyn Backend>) {
    let file = bounded(
        "opening the file tier",
        CALL_LIMIT,
        FileBackend::open(FileConfig::new(dir).with_sweep_interval(None)),
    )
    .await
    .expect("file tier");
    contract::instance("fault-s16", role, vec![Arc::new(file)])
}

/// L1 memory + the file tier as the shared tier, its directory on a tmpfs of its own (4 MiB,
/// mounted by the test: needs root). Generation 1 of 60 keys is written everywhere; a filler
/// file takes every free page of the tmpfs (a write of one byte to a new file then fails with
/// `ENOSPC`); meanwhile 15 keys get generation 2, 15 are deleted and the tag of 15 more is
/// invalidated, the filler taking again before each call whatever a removal freed; then the
/// filler is removed. A fresh instance (empty L1, its own file tier on
/// the same directory) and the writer with its L1 cleared read every key, again every 250 ms
/// until consistent or 10 s after the space is freed:
///
/// - 0 keys read older than their newest acknowledged `set` (`set` returned `Ok`);
/// - 0 removals acknowledged (`delete`/`invalidate_tag` returned `Ok`) that read a value again;
/// - no wrong value, no failed read.
///
/// Checked that the fault was real: the filesystem was full (probe write refused) and the tier
/// failed or skipped calls during the fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_16_file_tier_on_a_full_filesystem_keeps_acknowledged_writes() {
    bounded("scenario 16", SCENARIO_LIMIT, run()).await;
}

async fn run() {
    let fs = Tmpfs::mount(TMPFS_BYTES)
        .await
        .unwrap_or_else(|e| panic!("scenario 16: {e}"));
    let dir = fs.path().join("cache");
    let (writer, writer_l1) = instance(&dir, Role::Writer).await;
    let mut ledger = bounded(
        "writing generation 1",
        Duration::from_secs(20),
        write_v1(&writer),
    )
    .await;

    let before = writer.stats().tiers[1].clone();
    let mut filled = fs.fill().expect("filling the tmpfs");
    let full = fs.is_full();
    // Kept full: a delete frees a page, and the next write would take it.
    bounded(
        "the writes while the filesystem is full",
        4 * CALL_LIMIT,
        write_during_fault_with(&writer, &mut ledger, || {
            filled += fs.fill().expect("filling the tmpfs");
        }),
    )
    .await;
    let during = writer.stats().tiers[1].clone();
    fs.unfill().expect("freeing the tmpfs");
    let recovered = Instant::now();

    let (fresh, fresh_l1) = instance(&dir, Role::Reader).await;
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
        "scenario 16: while full: {} | tier_errors={} tier_skipped={} filler_bytes={filled} \
         full={full}",
        ledger.during.line(),
        during.errors - before.errors,
        during.skipped - before.skipped,
    );
    settled.print("scenario 16", &readers);
    drop(readers);
    drop(writer);
    assert!(full, "the filesystem was full");
    assert!(
        during.errors + during.skipped > before.errors + before.skipped,
        "the full filesystem was seen by the tier"
    );
    settled.assert_kept("scenario 16");
}

//! Conditional fills of the file tier beyond the conformance suite: the version is read from
//! the file in place (so another writer's newer file is respected) and a refused fill leaves
//! no trace.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failure")]

use std::sync::Arc;
use std::time::Duration;

use layercake_core::{Backend, Clock as _, Entry, FillOutcome, Key, ManualClock, Tombstone};
use layercake_file::{FileBackend, FileConfig};

fn files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for shard in std::fs::read_dir(dir).unwrap() {
        let shard = shard.unwrap();
        if shard.file_type().unwrap().is_dir() {
            for f in std::fs::read_dir(shard.path()).unwrap() {
                out.push(f.unwrap().file_name().into_string().unwrap());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fills_respect_the_file_in_place_and_refusals_leave_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let open = || {
        FileBackend::open(
            FileConfig::new(dir.path())
                .with_clock(Arc::new(clock.clone()))
                .with_sweep_interval(None),
        )
    };
    let (a, b) = (open().await.unwrap(), open().await.unwrap());
    let k = Key::new("k").unwrap();
    let entry = |v: u64| {
        Entry::new(
            format!("v{v}").into_bytes(),
            clock.now(),
            Duration::from_secs(60),
        )
        .with_version(v)
    };
    // Written by the other backend: this one's index does not know it, the file does.
    b.set(&k, &entry(9)).await.unwrap();
    let before = std::fs::read(a.path_of(&k)).unwrap();
    assert_eq!(a.fill(&k, &entry(5)).await.unwrap(), FillOutcome::KeptNewer);
    assert_eq!(std::fs::read(a.path_of(&k)).unwrap(), before, "unchanged");
    assert_eq!(
        files(dir.path()).len(),
        1,
        "no temp file left: {:?}",
        files(dir.path())
    );
    assert_eq!(a.fill(&k, &entry(10)).await.unwrap(), FillOutcome::Stored);
    assert_eq!(b.get(&k).await.unwrap(), Some(entry(10)));
    // A tombstone refuses; the refused fill leaves neither a file nor an index record.
    a.delete_with(&k, Tombstone::new(20, Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(
        a.fill(&k, &entry(15)).await.unwrap(),
        FillOutcome::Tombstoned
    );
    assert!(files(dir.path()).is_empty(), "{:?}", files(dir.path()));
    assert_eq!(a.stats().entries, 0);
    // A garbled file in place does not refuse a fill: it is replaced.
    let g = Key::new("g").unwrap();
    let path = b.path_of(&g);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"garbage").unwrap();
    assert_eq!(a.fill(&g, &entry(1)).await.unwrap(), FillOutcome::Stored);
    assert_eq!(a.get(&g).await.unwrap(), Some(entry(1)));
}

//! The byte bound under churn: unique keys worth 20× the bound, sizes varied.

#![allow(
    clippy::unwrap_used,
    reason = "helpers outside #[test] functions panic on failure too"
)]

use std::path::Path;
use std::time::Duration;

use layercake_core::{Backend, Clock, Entry, Key, SystemClock};
use layercake_file::{FileBackend, FileConfig};

/// Sum of the sizes of the entry files in the directory (what is really on disk).
fn dir_bytes(dir: &Path) -> (u64, usize) {
    let (mut bytes, mut files) = (0, 0);
    for shard in std::fs::read_dir(dir).unwrap().flatten() {
        if shard.file_type().unwrap().is_dir() {
            for f in std::fs::read_dir(shard.path()).unwrap().flatten() {
                if f.file_name().to_string_lossy().ends_with(".lce") {
                    bytes += f.metadata().unwrap().len();
                    files += 1;
                }
            }
        }
    }
    (bytes, files)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_bound_holds_within_ten_percent_under_churn() {
    let dir = tempfile::tempdir().unwrap();
    let bound: u64 = 512 * 1024;
    let b = FileBackend::open(
        FileConfig::new(dir.path())
            .with_max_bytes(bound)
            .with_sweep_interval(None),
    )
    .await
    .unwrap();
    let hot = Key::new("churn:hot").unwrap();
    let now = SystemClock.now();
    b.set(
        &hot,
        &Entry::new(vec![1u8; 2000], now, Duration::from_secs(3600)),
    )
    .await
    .unwrap();
    let (mut written, mut i, mut max_seen, mut min_seen) = (0u64, 0u64, 0u64, u64::MAX);
    while written < 20 * bound {
        let len = 100 + (i * 7919 % 4000) as usize;
        let k = Key::new(format!("churn:{i}")).unwrap();
        let e = Entry::new(vec![(i % 251) as u8; len], now, Duration::from_secs(3600))
            .with_tags([format!("t{}", i % 5)]);
        b.set(&k, &e).await.unwrap();
        written += len as u64;
        i += 1;
        // The hot key is read often, so LRU keeps it.
        if i % 20 == 0 {
            assert!(
                b.get(&hot).await.unwrap().is_some(),
                "LRU evicted the hot key"
            );
        }
        assert!(b.stats().bytes <= bound, "index over the bound after a set");
        if i % 100 == 0 {
            let (on_disk, _) = dir_bytes(dir.path());
            max_seen = max_seen.max(on_disk);
            if written > bound * 2 {
                min_seen = min_seen.min(on_disk);
            }
            assert!(
                on_disk as f64 <= bound as f64 * 1.10,
                "on disk {on_disk} bytes > bound {bound} + 10 %"
            );
        }
    }
    let (on_disk, files) = dir_bytes(dir.path());
    println!(
        "churn: {i} unique keys, {written} bytes written (20× the {bound}-byte bound); \
         on disk at the end {on_disk} bytes in {files} files; max seen {max_seen} ({:.1} % of \
         the bound), min seen after warm-up {min_seen} ({:.1} %)",
        max_seen as f64 * 100.0 / bound as f64,
        min_seen as f64 * 100.0 / bound as f64
    );
    assert!(on_disk <= bound);
    // Eviction takes only what it must: the directory stays nearly full.
    assert!(
        min_seen as f64 >= bound as f64 * 0.9,
        "over-evicted: {min_seen}"
    );
    assert_eq!(b.stats().bytes, on_disk);
    assert_eq!(b.stats().entries, files);
    // A reopen rebuilds the same accounting from the files.
    drop(b);
    let b = FileBackend::open(
        FileConfig::new(dir.path())
            .with_max_bytes(bound)
            .with_sweep_interval(None),
    )
    .await
    .unwrap();
    assert_eq!(b.open_report().indexed, files);
    assert_eq!(b.stats().bytes, on_disk);
    assert!(b.get(&hot).await.unwrap().is_some());
}

#[tokio::test]
async fn reopening_with_a_smaller_bound_evicts_the_least_recently_written() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemClock.now();
    {
        let b = FileBackend::open(FileConfig::new(dir.path()).with_sweep_interval(None))
            .await
            .unwrap();
        for i in 0..40 {
            let k = Key::new(format!("shrink:{i}")).unwrap();
            b.set(
                &k,
                &Entry::new(vec![0u8; 1000], now, Duration::from_secs(60)),
            )
            .await
            .unwrap();
            // Distinct mtimes, so the rebuilt LRU order is the write order.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let b = FileBackend::open(
        FileConfig::new(dir.path())
            .with_max_bytes(10 * 1100)
            .with_sweep_interval(None),
    )
    .await
    .unwrap();
    let rep = b.open_report();
    assert!(rep.evicted >= 30, "{rep:?}");
    assert!(b.stats().bytes <= 10 * 1100);
    assert!(
        b.get(&Key::new("shrink:0").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        b.get(&Key::new("shrink:39").unwrap())
            .await
            .unwrap()
            .is_some()
    );
}

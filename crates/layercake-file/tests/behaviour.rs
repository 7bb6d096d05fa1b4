//! Behaviour specific to the file tier: paths, the open-time scan, sharing a directory, the
//! sweep and its lock, parallel `get_many`.

#![allow(
    clippy::unwrap_used,
    reason = "helpers outside #[test] functions panic on failure too"
)]

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use layercake_core::{
    Backend, Clock, Entry, ErrorKind, Key, ManualClock, Selector, SystemClock, envelope,
};
use layercake_file::{Durability, FileBackend, FileConfig};

fn cfg(dir: &Path) -> FileConfig {
    FileConfig::new(dir).with_sweep_interval(None)
}

fn entry(v: &[u8]) -> Entry {
    Entry::new(v.to_vec(), SystemClock.now(), Duration::from_secs(3600))
}

fn key(s: &str) -> Key {
    Key::new(s).unwrap()
}

/// Every path under `root`, recursively.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(root).unwrap().flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[tokio::test]
async fn hostile_keys_never_create_paths_outside_the_directory() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cache");
    let b = FileBackend::open(cfg(&dir)).await.unwrap();
    let long = "é".repeat(512); // 1024 bytes, the longest allowed key
    let hostile = [
        "..",
        ".",
        "../escape",
        "../../../../../../tmp/escape",
        "/etc/passwd",
        "a/../../b",
        "..\\..\\windows",
        "ключ 🔑",
        "*?[]%\\",
        " ",
        long.as_str(),
    ];
    for (i, k) in hostile.iter().enumerate() {
        b.set(&key(k), &entry(&[i as u8; 10])).await.unwrap();
    }
    for (i, k) in hostile.iter().enumerate() {
        let e = b.get(&key(k)).await.unwrap().unwrap();
        assert_eq!(e.value.as_ref(), &[i as u8; 10]);
        let p = b.path_of(&key(k));
        assert!(p.starts_with(&dir), "{p:?}");
    }
    // The only thing in the root is the cache directory; inside it only shards, lock files
    // and `<64 hex>.lce` files.
    let top: Vec<_> = fs::read_dir(root.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(top, vec![std::ffi::OsString::from("cache")]);
    let files = walk(&dir);
    let mut entries = 0;
    for p in &files {
        let rel = p.strip_prefix(&dir).unwrap();
        let name = p.file_name().unwrap().to_str().unwrap();
        match rel.components().count() {
            1 => assert!(
                name == ".layercake.lock" || (name.len() == 2 && p.is_dir()),
                "{rel:?}"
            ),
            2 => {
                assert!(name.len() == 68 && name.ends_with(".lce"), "{rel:?}");
                assert!(name[..64].bytes().all(|c| c.is_ascii_hexdigit()));
                entries += 1;
            }
            _ => panic!("unexpected depth: {rel:?}"),
        }
    }
    assert_eq!(entries, hostile.len());
}

#[tokio::test]
async fn open_rebuilds_the_index_from_headers_and_heals_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let paths;
    {
        let b = FileBackend::open(cfg(dir.path())).await.unwrap();
        for i in 0..30 {
            let e = entry(&vec![i as u8; 100 + i]).with_tags([format!("t{}", i % 3)]);
            b.set(&key(&format!("open:{i}")), &e).await.unwrap();
        }
        paths = (0..4)
            .map(|i| b.path_of(&key(&format!("open:{i}"))))
            .collect::<Vec<_>>();
    }
    // 0: garbled header; 1: truncated; 2: a valid envelope of another key (foreign);
    // 3: valid header, corrupted payload (only a full read can tell).
    fs::write(&paths[0], b"not an envelope at all").unwrap();
    let bytes = fs::read(&paths[1]).unwrap();
    fs::write(&paths[1], &bytes[..bytes.len() - 5]).unwrap();
    let other = envelope::encode(&key("someone:else"), &entry(b"x")).unwrap();
    fs::write(&paths[2], other).unwrap();
    let mut bytes = fs::read(&paths[3]).unwrap();
    let n = bytes.len();
    bytes[n - 20] ^= 0xFF;
    fs::write(&paths[3], bytes).unwrap();
    // And a temp file left by a crashed writer.
    let temp = paths[0].parent().unwrap().join(".tmp-4000000-7");
    fs::write(&temp, b"half a write").unwrap();

    let b = FileBackend::open(cfg(dir.path()).with_rescan_on_invalidate(false))
        .await
        .unwrap();
    let rep = b.open_report();
    assert_eq!(rep.files, 30);
    assert_eq!(rep.corrupt_removed, 3, "{rep:?}");
    assert_eq!(rep.indexed, 27, "{rep:?}");
    assert_eq!(rep.temp_files_removed, 1);
    assert!(!temp.exists());
    assert_eq!(b.corrupt_reads(), 3);
    for p in &paths[..3] {
        assert!(!p.exists(), "{p:?} should have been removed");
    }
    // The payload is not read at open: the corrupted payload is found on the first get.
    assert!(paths[3].exists());
    assert!(b.get(&key("open:3")).await.unwrap().is_none());
    assert!(!paths[3].exists());
    assert_eq!(b.corrupt_reads(), 4);
    // The rebuilt index serves invalidation (no rescan configured).
    b.invalidate(&Selector::Tag("t1".into())).await.unwrap();
    for i in 4..30 {
        let got = b.get(&key(&format!("open:{i}"))).await.unwrap();
        assert_eq!(got.is_some(), i % 3 != 1, "open:{i}");
    }
    b.invalidate(&Selector::Prefix("open:1".into()))
        .await
        .unwrap();
    for i in [10, 12, 14, 15, 17, 18] {
        assert!(b.get(&key(&format!("open:{i}"))).await.unwrap().is_none());
    }
    assert!(b.get(&key("open:20")).await.unwrap().is_some());
}

#[tokio::test]
async fn two_instances_share_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let a = FileBackend::open(cfg(dir.path())).await.unwrap();
    let b = FileBackend::open(cfg(dir.path())).await.unwrap();
    // B's index never heard of A's entry, but get consults the file system.
    a.set(&key("shared:1"), &entry(b"one").with_tags(["t"]))
        .await
        .unwrap();
    assert_eq!(b.stats().entries, 0);
    assert_eq!(
        b.get(&key("shared:1"))
            .await
            .unwrap()
            .unwrap()
            .value
            .as_ref(),
        b"one"
    );
    // A replaces it; B reads the new version.
    a.set(&key("shared:1"), &entry(b"two").with_tags(["t"]))
        .await
        .unwrap();
    assert_eq!(
        b.get(&key("shared:1"))
            .await
            .unwrap()
            .unwrap()
            .value
            .as_ref(),
        b"two"
    );
    // Tag invalidation in B (with the default rescan) removes an entry only A wrote.
    a.set(&key("shared:2"), &entry(b"x").with_tags(["t"]))
        .await
        .unwrap();
    b.invalidate(&Selector::Tag("t".into())).await.unwrap();
    assert!(a.get(&key("shared:1")).await.unwrap().is_none());
    assert!(a.get(&key("shared:2")).await.unwrap().is_none());
    // A delete in one instance is a miss in the other, which forgets it.
    a.set(&key("shared:3"), &entry(b"y")).await.unwrap();
    assert!(b.get(&key("shared:3")).await.unwrap().is_some());
    a.delete(&key("shared:3")).await.unwrap();
    assert!(b.get(&key("shared:3")).await.unwrap().is_none());
    // B's sweep picks up A's files; clear in B removes everything, whoever wrote it.
    a.set(&key("shared:4"), &entry(b"z")).await.unwrap();
    let rep = b.sweep().await.unwrap();
    assert!(!rep.skipped);
    assert_eq!(rep.entries, 1, "{rep:?}");
    b.clear().await.unwrap();
    assert!(a.get(&key("shared:4")).await.unwrap().is_none());
}

#[tokio::test]
async fn temp_files_of_live_writers_survive_another_open() {
    let dir = tempfile::tempdir().unwrap();
    let a = FileBackend::open(cfg(dir.path())).await.unwrap();
    a.set(&key("k"), &entry(b"v")).await.unwrap();
    let shard = a.path_of(&key("k")).parent().unwrap().to_path_buf();
    // A write in flight by this (live) process, and a stale one of a dead process.
    let live = shard.join(format!(".tmp-{}-999999", std::process::id()));
    fs::write(&live, b"in flight").unwrap();
    // While A holds the directory, a second open must not remove A's temp file.
    let b = FileBackend::open(cfg(dir.path())).await.unwrap();
    assert!(live.exists());
    assert_eq!(b.open_report().temp_files_removed, 0);
    drop((a, b));
    // Alone, the opener removes every temp file.
    let c = FileBackend::open(cfg(dir.path())).await.unwrap();
    assert!(!live.exists());
    assert_eq!(c.open_report().temp_files_removed, 1);
}

#[tokio::test]
async fn expiry_is_lazy_and_swept_with_the_given_clock() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let b = FileBackend::open(cfg(dir.path()).with_clock(Arc::new(clock.clone())))
        .await
        .unwrap();
    let now = clock.now();
    let short = Entry::new(&b"short"[..], now, Duration::from_secs(10));
    let stale = Entry::new(&b"stale"[..], now, Duration::from_secs(10))
        .with_stale_for(Duration::from_secs(100));
    b.set(&key("exp:lazy"), &short).await.unwrap();
    b.set(&key("exp:swept"), &short).await.unwrap();
    b.set(&key("exp:stale"), &stale).await.unwrap();
    clock.advance(Duration::from_secs(11));
    // Lazy: a get past expiry is a miss and removes the file.
    assert!(b.get(&key("exp:lazy")).await.unwrap().is_none());
    assert!(!b.path_of(&key("exp:lazy")).exists());
    // Within its stale window an entry is still returned.
    let e = b.get(&key("exp:stale")).await.unwrap().unwrap();
    assert!(!e.is_fresh(clock.now()));
    // The sweep removes the other one without a read.
    let rep = b.sweep().await.unwrap();
    assert_eq!(rep.expired_removed, 1, "{rep:?}");
    assert!(!b.path_of(&key("exp:swept")).exists());
    assert!(b.path_of(&key("exp:stale")).exists());
    assert_eq!(b.corrupt_reads(), 0);
}

#[tokio::test]
async fn the_sweep_is_skipped_while_another_process_holds_its_lock() {
    let dir = tempfile::tempdir().unwrap();
    let b = FileBackend::open(cfg(dir.path())).await.unwrap();
    let lock = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.path().join(".sweep.lock"))
        .unwrap();
    lock.lock().unwrap();
    assert!(b.sweep().await.unwrap().skipped);
    lock.unlock().unwrap();
    assert!(!b.sweep().await.unwrap().skipped);
}

#[tokio::test]
async fn the_periodic_sweep_runs_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let b = FileBackend::open(
        FileConfig::new(dir.path())
            .with_clock(Arc::new(clock.clone()))
            .with_sweep_interval(Some(Duration::from_millis(20))),
    )
    .await
    .unwrap();
    let e = Entry::new(&b"v"[..], clock.now(), Duration::from_secs(1));
    b.set(&key("periodic:1"), &e).await.unwrap();
    clock.advance(Duration::from_secs(2));
    let path = b.path_of(&key("periodic:1"));
    let mut waited = 0;
    while path.exists() && waited < 5_000 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 10;
    }
    assert!(
        !path.exists(),
        "the periodic sweep did not remove the expired file"
    );
    b.stop_sweeper();
    tokio::time::sleep(Duration::from_millis(30)).await;
    b.set(
        &key("periodic:2"),
        &Entry::new(&b"v"[..], clock.now(), Duration::from_secs(1)),
    )
    .await
    .unwrap();
    clock.advance(Duration::from_secs(2));
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        b.path_of(&key("periodic:2")).exists(),
        "the sweep kept running after stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_many_in_parallel_equals_a_loop_of_get() {
    let dir = tempfile::tempdir().unwrap();
    let b = FileBackend::open(cfg(dir.path())).await.unwrap();
    let mut keys = Vec::new();
    for i in 0..100 {
        let k = key(&format!("many:{i}"));
        if i % 3 != 0 {
            let len = if i == 50 { 300 * 1024 } else { i * 10 };
            b.set(&k, &entry(&vec![i as u8; len])).await.unwrap();
        }
        keys.push(k);
    }
    keys.push(keys[5].clone());
    keys.push(keys[6].clone());
    // A corrupt file among them is a miss, healed.
    fs::write(b.path_of(&keys[7]), b"garbage").unwrap();
    let many = b.get_many(&keys).await.unwrap();
    assert_eq!(b.corrupt_reads(), 1);
    let mut one_by_one = Vec::new();
    for k in &keys {
        one_by_one.push(b.get(k).await.unwrap());
    }
    assert_eq!(many, one_by_one);
    // 66 stored, one corrupted, and the duplicate of a stored key (the other is a miss).
    assert_eq!(many.iter().filter(|e| e.is_some()).count(), 66 - 1 + 1);
    assert_eq!(many[50].as_ref().unwrap().value.len(), 300 * 1024);
}

#[tokio::test]
async fn every_durability_round_trips_and_large_values_go_off_the_runtime() {
    for d in [Durability::None, Durability::Data, Durability::Full] {
        let dir = tempfile::tempdir().unwrap();
        let b = FileBackend::open(
            cfg(dir.path())
                .with_durability(d)
                .with_inline_read_max(1024),
        )
        .await
        .unwrap();
        for len in [0, 1000, 5000] {
            let k = key(&format!("dur:{len}"));
            b.set(&k, &entry(&vec![7; len])).await.unwrap();
            assert_eq!(b.get(&k).await.unwrap().unwrap().value.len(), len, "{d:?}");
        }
    }
}

#[tokio::test]
async fn configuration_errors_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    let err = FileBackend::open(cfg(dir.path()).with_max_bytes(0))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    let err =
        FileBackend::open(FileConfig::new(dir.path()).with_sweep_interval(Some(Duration::ZERO)))
            .await
            .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    let b = FileBackend::open(cfg(dir.path()).with_max_bytes(4096))
        .await
        .unwrap();
    let err = b.set(&key("big"), &entry(&[0; 5000])).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge);
    assert_eq!(b.capability().max_value_bytes, Some(4096));
    let cap = b.capability();
    assert!(cap.clock_driven_expiry && cap.stores_bytes && cap.durable && cap.shared);
    assert!(cap.prefix_invalidation && cap.tag_invalidation && cap.clear);
    b.health().await.unwrap();
    // A file where the directory should be: open fails with a configuration error that says
    // so (the OS says only "File exists").
    let file = dir.path().join("not-a-dir");
    fs::write(&file, b"x").unwrap();
    let err = FileBackend::open(cfg(&file)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(!err.is_temporary());
    let expected = format!(
        "config (file): file tier: the cache path {} is a file, not a directory; give the \
         path of a directory (it is created if missing) or remove the file",
        file.display()
    );
    assert!(err.to_string().starts_with(&expected), "{err}");
    // A file where a parent directory should be (the OS says "Not a directory").
    let below = file.join("cache");
    let err = FileBackend::open(cfg(&below)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    let expected = format!(
        "config (file): file tier: cannot create the cache directory {}: {} is a file, not a \
         directory",
        below.display(),
        file.display()
    );
    assert!(err.to_string().starts_with(&expected), "{err}");
}

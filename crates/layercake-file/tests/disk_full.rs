//! A full disk: `set` fails with a clear error, earlier entries stay readable, and nothing that
//! was acknowledged is lost. On a real 1 MiB tmpfs of each test's own, filled to its last page
//! (by a filler file, or by the tier's own writes): mounting it needs root or `CAP_SYS_ADMIN`,
//! and the tests fail saying so without it.

#![allow(
    clippy::unwrap_used,
    reason = "helpers outside #[test] functions panic on failure too"
)]

use std::path::Path;
use std::time::Duration;

use layercake_core::{Backend, Clock, Entry, ErrorKind, Key, SystemClock};
use layercake_file::{FileBackend, FileConfig};
use layercake_testkit::tmpfs::Tmpfs;

fn entry(fill: u8, len: usize) -> Entry {
    Entry::new(
        vec![fill; len],
        SystemClock.now(),
        Duration::from_secs(3600),
    )
}

fn temp_files(dir: &Path) -> usize {
    let mut n = 0;
    for shard in std::fs::read_dir(dir).unwrap().flatten() {
        if shard.file_type().unwrap().is_dir() {
            n += std::fs::read_dir(shard.path())
                .unwrap()
                .flatten()
                .filter(|f| f.file_name().to_string_lossy().starts_with(".tmp-"))
                .count();
        }
    }
    n
}

/// A tmpfs of this test's own; fails saying what is needed when it cannot be mounted.
async fn tmpfs(bytes: u64) -> Tmpfs {
    Tmpfs::mount(bytes)
        .await
        .unwrap_or_else(|e| panic!("the disk-full tests need a real full filesystem: {e}"))
}

#[tokio::test]
async fn a_full_filesystem_is_a_clear_error_and_loses_nothing() {
    let fs = tmpfs(1 << 20).await;
    let dir = fs.path().join("cache");
    let b = FileBackend::open(FileConfig::new(&dir).with_sweep_interval(None))
        .await
        .unwrap();
    let keys: Vec<Key> = (0..20)
        .map(|i| Key::new(format!("full:{i}")).unwrap())
        .collect();
    for (i, k) in keys.iter().enumerate() {
        b.set(k, &entry(i as u8, 1000)).await.unwrap();
    }
    fs.fill().unwrap();
    assert!(fs.is_full(), "the filler left room on the tmpfs");
    // A new key and an overwrite of an existing one both fail …
    let err = b
        .set(&Key::new("full:new").unwrap(), &entry(99, 1000))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert_eq!(err.backend(), Some("file"));
    let text = err.to_string();
    assert!(text.contains("no space left on the device"), "{text}");
    assert!(
        text.contains("entries already stored are unchanged"),
        "{text}"
    );
    let err = b.set(&keys[3], &entry(77, 500)).await.unwrap_err();
    assert!(err.to_string().contains("no space left"), "{err}");
    // … leave no temp file, and change nothing that was acknowledged.
    assert_eq!(temp_files(&dir), 0);
    assert!(
        b.get(&Key::new("full:new").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    for (i, k) in keys.iter().enumerate() {
        let e = b.get(k).await.unwrap().expect("acknowledged entry lost");
        assert_eq!(e.value.as_ref(), vec![i as u8; 1000].as_slice());
    }
    // Space is back: writes work again.
    fs.unfill().unwrap();
    b.set(&keys[3], &entry(77, 500)).await.unwrap();
    assert_eq!(b.get(&keys[3]).await.unwrap().unwrap().value.len(), 500);
}

#[tokio::test]
async fn real_enospc_on_a_one_mib_tmpfs() {
    let fs = tmpfs(1 << 20).await;
    let dir = fs.path().join("cache");
    let b = FileBackend::open(FileConfig::new(&dir).with_sweep_interval(None))
        .await
        .unwrap();
    let mut acked = Vec::new();
    let mut first_err = None;
    for i in 0..1000u32 {
        let k = Key::new(format!("tmpfs:{i}")).unwrap();
        match b.set(&k, &entry(i as u8, 8 * 1024)).await {
            Ok(()) => acked.push((k, i as u8)),
            Err(e) => {
                first_err = Some(e);
                break;
            }
        }
    }
    let err = first_err.expect("a 1 MiB tmpfs never filled up");
    println!(
        "tmpfs full after {} acknowledged 8 KiB entries: {err}",
        acked.len()
    );
    assert!(acked.len() > 50, "only {} entries fit", acked.len());
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(
        err.to_string().contains("no space left on the device"),
        "{err}"
    );
    assert_eq!(temp_files(&dir), 0, "a failed write left its temp file");
    // An overwrite of an acknowledged key fails too and keeps the old value.
    let (k0, v0) = acked[0].clone();
    if b.set(&k0, &entry(0xEE, 64 * 1024)).await.is_err() {
        assert_eq!(b.get(&k0).await.unwrap().unwrap().value[0], v0);
    }
    for (k, v) in &acked {
        let e = b.get(k).await.unwrap().expect("acknowledged entry lost");
        assert_eq!(e.value.len(), 8 * 1024);
        assert_eq!(e.value[0], *v);
    }
    // Reopen: everything acknowledged is still there, nothing is corrupt.
    drop(b);
    let b = FileBackend::open(FileConfig::new(&dir).with_sweep_interval(None))
        .await
        .unwrap();
    assert_eq!(b.open_report().corrupt_removed, 0);
    for (k, v) in &acked {
        assert_eq!(b.get(k).await.unwrap().unwrap().value[0], *v);
    }
    // Deleting frees space; writes succeed again.
    b.delete(&acked[0].0).await.unwrap();
    b.delete(&acked[1].0).await.unwrap();
    b.set(&Key::new("tmpfs:after").unwrap(), &entry(1, 8 * 1024))
        .await
        .unwrap();
    drop(b);
}

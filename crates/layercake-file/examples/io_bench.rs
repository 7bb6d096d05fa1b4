//! Measures how the file tier should do its I/O, and what it costs: prints medians (and p99)
//! in microseconds of
//! - a raw 1 KiB `std::fs::read` in place, through `spawn_blocking` (current-thread and
//!   2-worker runtimes) and through `tokio::fs::read`;
//! - a raw 1 KiB write + rename with no fsync, with `fdatasync`, and with a directory fsync;
//! - `FileBackend::get` of a 1 KiB hit (read in place, and forced through `spawn_blocking`);
//! - `FileBackend::set` of a 1 KiB entry at each durability;
//! - `get_many` of 64 hits against a loop of `get`;
//! - `open` (the index rebuild) of 10 000 and 40 000 files.
//!
//! Run: `cargo run --release -p layercake-file --example io_bench [dir]`.
//! It is a measurement, not a test: nothing here asserts a time.

#![allow(
    clippy::unwrap_used,
    reason = "a measurement program: any failure should abort it"
)]

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use layercake_core::{Backend, Clock, Entry, Key, SystemClock};
use layercake_file::{Durability, FileBackend, FileConfig};

fn stats(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let us = |d: Duration| d.as_nanos() as f64 / 1000.0;
    let med = v[v.len() / 2];
    let p99 = v[(v.len() * 99 / 100).min(v.len() - 1)];
    println!(
        "{name:<58} median {:>8.1} µs   p99 {:>8.1} µs   (n={})",
        us(med),
        us(p99),
        v.len()
    );
}

fn time<F: FnMut()>(n: usize, mut f: F) -> Vec<Duration> {
    for _ in 0..n / 10 {
        f();
    }
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect()
}

async fn time_async<F, Fut>(n: usize, mut f: F) -> Vec<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..n / 10 {
        f().await;
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f().await;
        out.push(t.elapsed());
    }
    out
}

fn raw(dir: &Path) {
    let payload = vec![7u8; 1024];
    let file = dir.join("raw-1k");
    fs::write(&file, &payload).unwrap();
    stats(
        "raw std::fs::read 1 KiB, in place",
        time(20_000, || {
            std::hint::black_box(fs::read(&file).unwrap());
        }),
    );
    for (label, rt) in [
        (
            "current-thread",
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        ),
        (
            "2-worker",
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
        ),
    ] {
        let f2 = file.clone();
        let v = rt.block_on(async move {
            time_async(20_000, || {
                let f = f2.clone();
                async move {
                    let b = tokio::task::spawn_blocking(move || fs::read(&f).unwrap())
                        .await
                        .unwrap();
                    std::hint::black_box(b);
                }
            })
            .await
        });
        stats(&format!("raw read through spawn_blocking ({label})"), v);
        let f2 = file.clone();
        let v = rt.block_on(async move {
            time_async(20_000, || {
                let f = f2.clone();
                async move {
                    std::hint::black_box(tokio::fs::read(&f).await.unwrap());
                }
            })
            .await
        });
        stats(&format!("raw tokio::fs::read ({label})"), v);
    }
    for kib in [4usize, 16, 64, 256, 1024] {
        let f = dir.join(format!("raw-{kib}k"));
        fs::write(&f, vec![3u8; kib * 1024]).unwrap();
        stats(
            &format!("raw std::fs::read {kib} KiB, in place"),
            time(5_000, || {
                std::hint::black_box(fs::read(&f).unwrap());
            }),
        );
    }
    let mut i = 0u64;
    let mut write = |sync: bool, dsync: bool| {
        i += 1;
        let tmp = dir.join(format!(".tmp-{i}"));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .unwrap();
        f.write_all(&payload).unwrap();
        if sync {
            f.sync_data().unwrap();
        }
        drop(f);
        fs::rename(&tmp, dir.join("raw-w")).unwrap();
        if dsync {
            fs::File::open(dir).unwrap().sync_all().unwrap();
        }
    };
    stats(
        "raw write+rename 1 KiB, no fsync",
        time(5_000, || write(false, false)),
    );
    stats(
        "raw write+fdatasync+rename 1 KiB",
        time(1_000, || write(true, false)),
    );
    stats(
        "raw write+fdatasync+rename+dir fsync 1 KiB",
        time(1_000, || write(true, true)),
    );
}

async fn backend(dir: &Path, label: &str) {
    let now = SystemClock.now();
    let entry = Entry::new(vec![1u8; 1024], now, Duration::from_secs(3600));
    for (inline, name) in [(64 * 1024, "in place"), (0, "spawn_blocking")] {
        let d = dir.join(format!("b-{inline}"));
        let b = FileBackend::open(FileConfig::new(&d).with_inline_read_max(inline))
            .await
            .unwrap();
        let k = Key::new("bench:hit").unwrap();
        b.set(&k, &entry).await.unwrap();
        let v = time_async(20_000, || async {
            assert!(b.get(&k).await.unwrap().is_some());
        })
        .await;
        stats(&format!("FileBackend::get 1 KiB hit, {name} ({label})"), v);
        let miss = Key::new("bench:miss").unwrap();
        let v = time_async(20_000, || async {
            assert!(b.get(&miss).await.unwrap().is_none());
        })
        .await;
        stats(&format!("FileBackend::get miss, {name} ({label})"), v);
    }
    for (dur, n) in [
        (Durability::None, 3000),
        (Durability::Data, 800),
        (Durability::Full, 800),
    ] {
        let d = dir.join(format!("s-{dur:?}"));
        let b = FileBackend::open(FileConfig::new(&d).with_durability(dur))
            .await
            .unwrap();
        let mut i = 0;
        let v = time_async(n, || {
            i += 1;
            let k = Key::new(format!("bench:set:{}", i % 100)).unwrap();
            let b = &b;
            let e = &entry;
            async move { b.set(&k, e).await.unwrap() }
        })
        .await;
        stats(
            &format!("FileBackend::set 1 KiB, Durability::{dur:?} ({label})"),
            v,
        );
    }
    let d = dir.join("many");
    let b = FileBackend::open(FileConfig::new(&d)).await.unwrap();
    let keys: Vec<Key> = (0..64)
        .map(|i| Key::new(format!("bench:many:{i}")).unwrap())
        .collect();
    for k in &keys {
        b.set(k, &entry).await.unwrap();
    }
    let v = time_async(2_000, || async {
        for k in &keys {
            assert!(b.get(k).await.unwrap().is_some());
        }
    })
    .await;
    stats(&format!("64 × get (loop, in place) ({label})"), v);
    let v = time_async(2_000, || async {
        let r = b.get_many(&keys).await.unwrap();
        assert!(r.iter().all(Option::is_some));
    })
    .await;
    stats(&format!("get_many of 64 (parallel chunks) ({label})"), v);
}

async fn rebuild(dir: &Path) {
    let now = SystemClock.now();
    let entry = Entry::new(vec![1u8; 1024], now, Duration::from_secs(3600)).with_tags(["t"]);
    let mut made = 0;
    for n in [10_000usize, 40_000] {
        let b = FileBackend::open(FileConfig::new(dir).with_durability(Durability::None))
            .await
            .unwrap();
        for i in made..n {
            b.set(&Key::new(format!("rebuild:{i}")).unwrap(), &entry)
                .await
                .unwrap();
        }
        made = n;
        drop(b);
        let t = Instant::now();
        let b = FileBackend::open(FileConfig::new(dir)).await.unwrap();
        let el = t.elapsed();
        assert_eq!(b.open_report().indexed, n);
        println!(
            "open (index rebuild, page-cached) of {n} files: {:.1} ms = {:.2} µs per file",
            el.as_secs_f64() * 1e3,
            el.as_secs_f64() * 1e6 / n as f64
        );
    }
}

fn main() {
    let base = std::env::args()
        .nth(1)
        .map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::tempdir_in(base).unwrap();
    println!("directory: {}", dir.path().display());
    raw(dir.path());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(backend(&dir.path().join("ct"), "current-thread"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(backend(&dir.path().join("mt"), "2-worker"));
    rt.block_on(rebuild(&dir.path().join("rebuild")));
}

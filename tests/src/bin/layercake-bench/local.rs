//! The file tier (L4): a `Cache::get` that misses L1 and hits the file tier beside a raw
//! `std::fs::read` of the very same file, and an atomic 1 KiB `FileBackend::set` beside a raw
//! write + rename of the same bytes in the same file system.

use std::hint::black_box;
use std::sync::Arc;

use layercake::{Backend, Clock, Codec, Entry, SystemClock};

use crate::Result;
use crate::data::{Doc, shuffled};
use crate::env::{Env, TTL, cache, memory, only};
use crate::harness::{Plan, Side, interleave};
use crate::results::{Comparison, Results};

/// Target of issue 8 for the L4 hit.
pub(crate) const L4_TARGET: f64 = 1.3;

const KEYS: usize = 256;

/// L4 hit for one value size.
async fn hit(env: &Env, results: &mut Results, plan: Plan, label: &str, size: usize) -> Result<()> {
    let c = cache(
        &format!("bench-l4-{label}"),
        vec![Arc::new(memory(16 << 20)?), env.file.clone()],
        only(&[1]),
        Codec::json(),
    )?;
    let post = cache(
        &format!("bench-l4p-{label}"),
        vec![Arc::new(memory(16 << 20)?), env.file.clone()],
        only(&[1]),
        Codec::postcard(),
    )?;
    let keys: Vec<String> = (0..KEYS).map(|i| format!("l4-{label}:{i:04}")).collect();
    let post_keys: Vec<String> = (0..KEYS).map(|i| format!("l4p-{label}:{i:04}")).collect();
    for (i, k) in keys.iter().enumerate() {
        c.set(k.as_str(), Doc::sized(i as u64, size)).await?;
        post.set(post_keys[i].as_str(), Doc::sized(i as u64, size))
            .await?;
    }
    let paths = keys
        .iter()
        .map(|k| Ok(env.file.path_of(&c.key(k.as_str())?)))
        .collect::<Result<Vec<_>>>()?;
    let on_disk = std::fs::metadata(&paths[0])?.len();
    match c.get::<Doc>(keys[0].as_str()).await? {
        Some(l) if l.source == (layercake::Source::Hit { tier: 1 }) => {}
        other => {
            return Err(
                format!("L4: expected a file hit, got {:?}", other.map(|l| l.source)).into(),
            );
        }
    }
    let built: Vec<layercake::Key> = keys
        .iter()
        .map(|k| c.key(k.as_str()))
        .collect::<layercake::Result<_>>()?;
    let (built, backend) = (&built, &*env.file);
    let order = shuffled(KEYS, 0x44);
    let (order, keys, paths, c, post, post_keys) = (&order, &keys, &paths, &c, &post, &post_keys);
    let at = move |i: u64| order[i as usize % KEYS];
    let sides = vec![
        Side::new("std::fs::read", move |start, n| {
            Box::pin(async move {
                for i in start..start + n as u64 {
                    let _ = black_box(std::fs::read(&paths[at(i)]));
                }
            })
        }),
        Side::new("Cache::get, file tier", move |start, n| {
            Box::pin(async move {
                for i in start..start + n as u64 {
                    let _ = black_box(c.get::<Doc>(keys[at(i)].as_str()).await);
                }
            })
        }),
        Side::new("Cache::get, file tier, postcard codec", move |start, n| {
            Box::pin(async move {
                for i in start..start + n as u64 {
                    let _ = black_box(post.get::<Doc>(post_keys[at(i)].as_str()).await);
                }
            })
        }),
        Side::new("FileBackend::get, no composer", move |start, n| {
            Box::pin(async move {
                for i in start..start + n as u64 {
                    let _ = black_box(backend.get(&built[at(i)]).await);
                }
            })
        }),
    ];
    let m = interleave(plan, sides).await?;
    let group = "L4 hit (L1 miss)";
    let mut cmp = Comparison::new(group, format!("l4.{label}"), &m[0], &m[1]);
    if label == "1k" {
        cmp = cmp
            .target(L4_TARGET, "L4 hit ≤ 1.3× raw file read")
            .headline("L4 hit / std::fs::read");
    }
    results.comparisons.push(cmp);
    results.comparisons.push(Comparison::new(
        group,
        format!("l4.{label}.postcard"),
        &m[0],
        &m[2],
    ));
    results.comparisons.push(Comparison::new(
        group,
        format!("l4.{label}.backend_only"),
        &m[0],
        &m[3],
    ));
    let inline_max = layercake_file::FileConfig::new(".").inline_read_max;
    if on_disk > inline_max && label != "1k" {
        results.notes.push(format!(
            "L4 {label}: the entry file is {on_disk} bytes, above the file tier's `inline_read_max` \
             ({inline_max} bytes), so the tier reads it through `spawn_blocking` while the raw \
             read runs in place."
        ));
    }
    Ok(())
}

/// Atomic 1 KiB set through `FileBackend::set` vs raw write + rename, in place and on the
/// blocking pool (where the tier writes).
async fn set(env: &Env, results: &mut Results, plan: Plan) -> Result<()> {
    let file = &*env.file;
    let now = SystemClock.now();
    let payload = Doc::sized(1, 1024);
    let bytes = Codec::json().encode(&payload)?.bytes;
    let entry = Entry::new(bytes, now, TTL);
    let keys: Vec<layercake::Key> = (0..KEYS)
        .map(|i| Ok(layercake::Key::new(format!("l4set:{i:04}"))?))
        .collect::<Result<_>>()?;
    file.set(&keys[0], &entry).await?;
    let envelope = std::fs::read(file.path_of(&keys[0]))?;
    let raw_dir = tempfile::Builder::new()
        .prefix("raw")
        .tempdir_in(env.dir.path())?;
    let (keys, entry, envelope, raw) = (&keys, &entry, &envelope, raw_dir.path());
    let sides = vec![
        Side::new("raw write temp + rename", move |start, n| {
            Box::pin(async move {
                for i in start..start + n as u64 {
                    let j = i as usize % KEYS;
                    let tmp = raw.join(format!(".{j}.tmp"));
                    let dst = raw.join(format!("{j}"));
                    let r =
                        std::fs::write(&tmp, envelope).and_then(|()| std::fs::rename(&tmp, &dst));
                    let _ = black_box(r);
                }
            })
        }),
        Side::new(
            "raw write temp + rename, on the blocking pool",
            move |start, n| {
                Box::pin(async move {
                    for i in start..start + n as u64 {
                        let j = i as usize % KEYS;
                        let tmp = raw.join(format!(".{j}.tmp"));
                        let dst = raw.join(format!("{j}"));
                        let bytes = envelope.clone();
                        let r = tokio::task::spawn_blocking(move || {
                            std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, &dst))
                        })
                        .await;
                        let _ = black_box(r);
                    }
                })
            },
        ),
        Side::new("FileBackend::set", move |start, n| {
            Box::pin(async move {
                for i in start..start + n as u64 {
                    let _ = black_box(file.set(&keys[i as usize % KEYS], entry).await);
                }
            })
        }),
    ];
    let m = interleave(plan, sides).await?;
    let group = "L4 atomic set (1 KiB, durability none)";
    results
        .comparisons
        .push(Comparison::new(group, "l4.set", &m[0], &m[2]));
    // The tier writes on the blocking pool (decision 0003): against a raw write that makes the
    // same hop, the ratio is the tier's own work.
    results
        .comparisons
        .push(Comparison::new(group, "l4.set.vs_blocking", &m[1], &m[2]));
    Ok(())
}

/// Every L4 case.
pub(crate) async fn run(env: &Env, results: &mut Results, hits: Plan, sets: Plan) -> Result<()> {
    hit(env, results, hits, "1k", 1024).await?;
    hit(env, results, hits, "64k", 64 * 1024).await?;
    set(env, results, sets).await?;
    Ok(())
}

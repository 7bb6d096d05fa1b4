//! Memory + file against foyer (issue 21): a read-only Zipf 0.99 workload over a working set
//! five times what the memory tier holds, side by side in one run — layercake (a memory L1
//! over the file tier, JSON and postcard codecs) and foyer's `HybridCache` (its memory cache
//! over its block engine on a directory; values through its `serde` feature). Both memory
//! tiers hold the same number of entries; both disk tiers live in the same file system (a
//! tmpfs by default, see `--file-dir`). Every key is written first and flushed; then only
//! reads. The ratio is layercake's time per read over foyer's (below 1: layercake faster), with
//! its spread across the interleaved rounds.

use std::hint::black_box;
use std::sync::Arc;

use foyer::{
    BlockEngineConfig, DeviceBuilder, FsDeviceBuilder, HybridCache, HybridCacheBuilder,
    HybridCachePolicy,
};
use layercake::{Backend, Cache, Codec};
use layercake_file::{FileBackend, FileConfig};

use crate::Result;
use crate::data::{Doc, Rng, Zipf};
use crate::env::{Env, cache, everywhere, memory};
use futures::future::BoxFuture;

use crate::harness::{Plan, Side, interleave};
use crate::results::{Comparison, Results};

/// Target of issue 21: at least foyer's throughput.
const TARGET: f64 = 1.0;
/// Distinct keys (the working set).
const KEYS: usize = 20_000;
/// The memory tiers hold one key in this many.
const MEMORY_SHARE: usize = 5;
/// Value size.
const SIZE: usize = 1024;
/// Concurrent readers in the second comparison.
const READERS: usize = 16;
/// Zipf samples drawn once and replayed by every side.
const SAMPLES: usize = 1 << 18;

/// The weight layercake's memory tier gives one ~1 KiB document (measured: 500 read into a
/// roomy tier).
async fn entry_weight() -> Result<u64> {
    let probe = Arc::new(memory(64 << 20)?);
    let c = cache(
        "bench-hybrid-probe",
        vec![probe.clone() as Arc<dyn Backend>],
        everywhere(),
        Codec::json(),
    )?;
    for i in 0..500u64 {
        c.set(format!("probe:{i}").as_str(), Doc::sized(i, SIZE))
            .await?;
        c.get::<Doc>(format!("probe:{i}").as_str()).await?;
    }
    Ok(probe.weighted_bytes() / probe.entries().max(1) as u64)
}

/// A layercake memory L1 holding `KEYS / MEMORY_SHARE` documents over a file tier in `dir`.
async fn layercake(
    name: &str,
    dir: &std::path::Path,
    per_entry: u64,
    codec: Codec,
) -> Result<Cache> {
    let l1 = memory(per_entry * (KEYS / MEMORY_SHARE) as u64)?;
    let file = FileBackend::open(FileConfig::new(dir)).await?;
    cache(
        name,
        vec![Arc::new(l1) as Arc<dyn Backend>, Arc::new(file)],
        everywhere(),
        codec,
    )
}

/// foyer: a memory cache of `KEYS / MEMORY_SHARE` entries over its block engine in `dir`,
/// every insert written to disk too (so the disk holds the whole working set). The device gets
/// 16× the working set's bytes in 4 MiB blocks: with 4× in 16 MiB blocks it kept only 11 856
/// of the 20 000 entries (its reclaimer frees whole blocks ahead of need).
async fn foyer(dir: &std::path::Path) -> Result<HybridCache<String, Doc>> {
    let device = FsDeviceBuilder::new(dir)
        .with_capacity(KEYS * SIZE * 16)
        .build()
        .map_err(|e| format!("foyer device: {e}"))?;
    let hybrid = HybridCacheBuilder::new()
        .with_policy(HybridCachePolicy::WriteOnInsertion)
        .memory(KEYS / MEMORY_SHARE)
        .with_weighter(|_: &String, _: &Doc| 1)
        .storage()
        .with_engine_config(BlockEngineConfig::new(device).with_block_size(4 << 20))
        .build()
        .await
        .map_err(|e| format!("foyer: {e}"))?;
    Ok(hybrid)
}

/// One read of operation `i`.
type Read<'a> = dyn Fn(u64) -> BoxFuture<'a, ()> + Sync + 'a;

/// A side whose batch is split among readers of `per` operations each (one reader when the
/// batch is no longer than that), all at once; operation `i` is `read(i)`.
fn readers_side<'a>(name: String, per: u64, read: &'a Read<'a>) -> Side<'a> {
    Side::new(name, move |start, n| {
        let end = start + n as u64;
        let tasks = (n as u64).div_ceil(per).max(1);
        Box::pin(async move {
            futures::future::join_all((0..tasks).map(|t| async move {
                for i in start + t * per..(start + (t + 1) * per).min(end) {
                    read(i).await;
                }
            }))
            .await;
        })
    })
}

pub(crate) async fn run(env: &Env, results: &mut Results, plan: Plan) -> Result<()> {
    let per_entry = entry_weight().await?;
    let root = tempfile::tempdir_in(env.dir.path())?;
    let lc = layercake(
        "bench-hybrid",
        &root.path().join("layercake-json"),
        per_entry,
        Codec::json(),
    )
    .await?;
    let lcp = layercake(
        "bench-hybrid",
        &root.path().join("layercake-postcard"),
        per_entry,
        Codec::postcard(),
    )
    .await?;
    let fy = foyer(&root.path().join("foyer")).await?;
    let keys: Vec<String> = (0..KEYS).map(|i| format!("hybrid:{i:06}")).collect();
    for (i, k) in keys.iter().enumerate() {
        let doc = Doc::sized(i as u64, SIZE);
        lc.set(k.as_str(), doc.clone()).await?;
        lcp.set(k.as_str(), doc.clone()).await?;
        fy.insert(k.clone(), doc);
        // foyer drops disk writes its flushers cannot take yet: let them drain as it goes.
        if i % 256 == 255 {
            fy.storage().wait().await;
        }
    }
    fy.storage().wait().await;
    // Every key readable from each side before measuring.
    for k in &keys {
        let missing = if lc.get::<Doc>(k.as_str()).await?.is_none() {
            Some("layercake")
        } else if lcp.get::<Doc>(k.as_str()).await?.is_none() {
            Some("layercake (postcard)")
        } else if fy
            .get(k)
            .await
            .map_err(|e| format!("foyer get: {e}"))?
            .is_none()
        {
            Some("foyer")
        } else {
            None
        };
        if let Some(side) = missing {
            return Err(format!("hybrid: {k} is missing from {side} after the fill").into());
        }
    }
    let zipf = Zipf::new(KEYS, 0.99);
    let mut rng = Rng::new(0x21);
    let order: Vec<usize> = (0..SAMPLES).map(|_| zipf.sample(&mut rng)).collect();
    let (order, keys, lc, lcp, fy) = (&order, &keys, &lc, &lcp, &fy);
    let key = move |i: u64| &keys[order[i as usize % SAMPLES]];
    let foyer_read = move |i: u64| -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = black_box(fy.get(key(i)).await);
        })
    };
    let json_read = move |i: u64| -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = black_box(lc.get::<Doc>(key(i).as_str()).await);
        })
    };
    let postcard_read = move |i: u64| -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = black_box(lcp.get::<Doc>(key(i).as_str()).await);
        })
    };
    let group = "Memory + file, read-only Zipf 0.99, working set 5× memory (1 KiB)";
    // One reader, then READERS readers at once (each reading its share of the batch), as a
    // service's concurrent requests would.
    for (readers, batch_plan, id, text) in [
        (
            1,
            plan,
            "hybrid.vs_foyer",
            "memory + file read ≤ 1.0× foyer's time, 1 reader (JSON)",
        ),
        (
            READERS,
            Plan::new(plan.rounds, plan.batches, plan.batch * READERS),
            "hybrid.vs_foyer_16",
            "memory + file read ≤ 1.0× foyer's time, 16 readers (JSON)",
        ),
    ] {
        let per = (batch_plan.batch / readers).max(1) as u64;
        let sides = vec![
            readers_side(
                format!("foyer HybridCache::get (memory + block engine), {readers} reader(s)"),
                per,
                &foyer_read,
            ),
            readers_side(
                format!("Cache::get, memory + file tier, {readers} reader(s)"),
                per,
                &json_read,
            ),
            readers_side(
                format!("Cache::get, memory + file tier, postcard codec, {readers} reader(s)"),
                per,
                &postcard_read,
            ),
        ];
        let m = interleave(batch_plan, sides).await?;
        results
            .comparisons
            .push(Comparison::new(group, id, &m[0], &m[1]).target(TARGET, text));
        results.comparisons.push(Comparison::new(
            group,
            format!("{id}_postcard"),
            &m[0],
            &m[2],
        ));
    }
    fy.close().await.map_err(|e| format!("foyer close: {e}"))?;
    Ok(())
}

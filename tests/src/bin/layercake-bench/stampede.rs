//! Stampede: `callers` tasks call `get_or_compute` on one key that no tier holds, all at once;
//! the loader takes 20 ms and counts its calls. Repeated on fresh keys.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use layercake::Codec;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use crate::Result;
use crate::data::Doc;
use crate::env::{Env, cache, everywhere};
use crate::harness::{latency_histogram, record};
use crate::results::{Results, StampedeRow};

/// Loader duration.
const LOAD: Duration = Duration::from_millis(20);

async fn one(env: &Env, results: &mut Results, callers: usize, keys: usize) -> Result<()> {
    let c = cache(
        &format!("bench-stampede-{callers}"),
        env.four_tiers(16 << 20)?,
        everywhere(),
        Codec::json(),
    )?;
    let calls = Arc::new(AtomicU64::new(0));
    let mut h = latency_histogram()?;
    let mut errors = 0;
    let before = c.stats();
    for k in 0..keys {
        let key = Arc::new(format!("stampede-{callers}:{k}"));
        let barrier = Arc::new(Barrier::new(callers));
        let mut set = JoinSet::new();
        for _ in 0..callers {
            let (c, key, calls, barrier) = (c.clone(), key.clone(), calls.clone(), barrier.clone());
            set.spawn(async move {
                barrier.wait().await;
                let start = Instant::now();
                let r = c
                    .get_or_compute(key.as_str(), move || async move {
                        calls.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(LOAD).await;
                        Ok::<_, std::io::Error>(Doc::sized(k as u64, 1024))
                    })
                    .await;
                (start.elapsed(), r.is_ok())
            });
        }
        while let Some(r) = set.join_next().await {
            let (d, ok) = r?;
            record(&mut h, d);
            if !ok {
                errors += 1;
            }
        }
    }
    let after = c.stats();
    results.stampedes.push(StampedeRow {
        callers,
        keys,
        loader_calls: calls.load(Ordering::Relaxed),
        coalesced: after.coalesced - before.coalesced,
        loader_ns: LOAD.as_nanos() as f64,
        p50: h.value_at_quantile(0.5) as f64,
        p99: h.value_at_quantile(0.99) as f64,
        errors,
    });
    Ok(())
}

/// 100 and 1000 callers.
pub(crate) async fn run(env: &Env, results: &mut Results, quick: bool) -> Result<()> {
    let keys = if quick { 3 } else { 10 };
    one(env, results, 100, keys).await?;
    one(env, results, 1000, keys).await?;
    Ok(())
}

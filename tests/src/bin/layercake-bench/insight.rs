//! Miss reasons and hot-set restarts (issue 20): what miss-reason accounting costs on an L1 hit
//! and an L2 hit, in process (a memory L2: the harshest case) and in Redis (the benchmark's own
//! L2-hit row) — the same contents read through caches that differ only in
//! `InsightConfig::off()` — and a restart under Zipf 0.99 over 100 000 keys with an L1 that
//! holds 10 % of them — a cold instance and one warmed from the hot set of the instance
//! before it, side by side, in the same run.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use layercake::{Backend, Cache, Codec, InsightConfig, TierOptions};

use crate::Result;
use crate::data::{Doc, Rng, Zipf, shuffled};
use crate::env::{Env, READ_TIMEOUT, everywhere, memory, only};
use crate::harness::{Plan, cache_gets, interleave};
use crate::results::{Comparison, Results};

/// The accounting's budget on the L1-hit and L2-hit rows.
pub(crate) const TARGET: f64 = 1.05;

fn over(
    tiers: &[Arc<dyn Backend>],
    name: &str,
    l1_only: bool,
    insight: InsightConfig,
) -> Result<Cache> {
    let mut b = Cache::builder(name)
        .codec(Codec::json())
        .otel(layercake::OtelConfig::disabled())
        .insight(insight);
    b = if l1_only {
        b.policy(everywhere())
    } else {
        b.policy(only(&[1]))
    };
    for t in tiers {
        let opts = if t.kind() == "memory" {
            TierOptions::new()
        } else {
            TierOptions::new().read_timeout(Some(READ_TIMEOUT))
        };
        b = b.shared_tier_with(t.clone(), opts);
    }
    Ok(b.build()?)
}

/// The cost comparison: L1 hit (memory only) and L2 hit (values only in a memory L2, so every
/// read misses L1 and is counted with its reason), insight off vs on.
async fn cost(results: &mut Results, plan: Plan) -> Result<()> {
    const N: usize = 10_000;
    let l1: Arc<dyn Backend> = Arc::new(memory(64 << 20)?);
    let l2: Arc<dyn Backend> = Arc::new(memory(64 << 20)?);
    let hit_off = over(
        std::slice::from_ref(&l1),
        "bench-insight",
        true,
        InsightConfig::off(),
    )?;
    let hit_on = over(
        std::slice::from_ref(&l1),
        "bench-insight",
        true,
        InsightConfig::new(),
    )?;
    let two = [Arc::new(memory(64 << 20)?) as Arc<dyn Backend>, l2.clone()];
    let miss_off = over(&two, "bench-insight-l2", false, InsightConfig::off())?;
    let miss_on = over(&two, "bench-insight-l2", false, InsightConfig::new())?;
    let small = InsightConfig::new().ghost_slots(4096);
    let miss_small = over(&two, "bench-insight-l2", false, small)?;
    let keys: Vec<String> = (0..N).map(|i| format!("insight:{i:06}")).collect();
    for (i, k) in keys.iter().enumerate() {
        hit_off.set(k.as_str(), Doc::sized(i as u64, 1024)).await?;
        miss_off.set(k.as_str(), Doc::sized(i as u64, 1024)).await?;
    }
    let order = shuffled(N, 0x20);
    let (keys, order) = (&keys, &order);
    let key = move |i: u64| keys[order[i as usize % N]].as_str();
    let side = |name: &str, cache: Cache| cache_gets(name, cache, key);
    let m = interleave(
        plan,
        vec![
            side("L1 hit, insight off", hit_off),
            side("L1 hit, insight on", hit_on),
        ],
    )
    .await?;
    let group = "Miss-reason accounting on vs off (1 KiB)";
    results.comparisons.push(
        Comparison::new(group, "insight.l1_hit", &m[0], &m[1])
            .target(TARGET, "miss-reason accounting ≤ 1.05× off (L1 hit)"),
    );
    let m = interleave(
        plan,
        vec![
            side("L2 hit (memory L2), insight off", miss_off),
            side("L2 hit (memory L2), insight on", miss_on),
            side(
                "L2 hit (memory L2), insight on, 4 096 ghost slots",
                miss_small,
            ),
        ],
    )
    .await?;
    results.comparisons.push(
        Comparison::new(group, "insight.l2_hit", &m[0], &m[1])
            .target(TARGET, "miss-reason accounting ≤ 1.05× off (L2 hit)"),
    );
    results.comparisons.push(Comparison::new(
        group,
        "insight.l2_hit_small_ghost",
        &m[0],
        &m[2],
    ));
    Ok(())
}

/// Reads `n` Zipf-chosen keys through `cache`; the L1 hit ratio over them.
async fn run_requests(
    cache: &Cache,
    keys: &[String],
    zipf: &Zipf,
    rng: &mut Rng,
    n: usize,
) -> Result<f64> {
    let before = cache.stats().tiers[0].hits;
    for _ in 0..n {
        let k = keys[zipf.sample(rng)].as_str();
        black_box(cache.get::<Doc>(k).await?);
    }
    Ok((cache.stats().tiers[0].hits - before) as f64 / n as f64)
}

/// The restart: Zipf 0.99 over 100 000 keys in Redis, an L1 holding 10 % of them.
async fn restart(env: &Env, results: &mut Results, quick: bool) -> Result<()> {
    const KEYS: usize = 100_000;
    const SIZE: usize = 256;
    let l2: Arc<dyn Backend> = env.redis_mux.clone();
    let keys: Vec<String> = (0..KEYS).map(|i| format!("hot:{i:06}")).collect();
    // Fill the lower tier only.
    let filler = over(
        &[Arc::new(memory(1 << 20)?) as Arc<dyn Backend>, l2.clone()],
        "bench-hot",
        false,
        InsightConfig::off(),
    )?;
    for (c, chunk) in keys.chunks(64).enumerate() {
        let writes = chunk.iter().enumerate().map(|(j, k)| {
            let (filler, k) = (filler.clone(), k.clone());
            let id = (c * 64 + j) as u64;
            async move { filler.set(k.as_str(), Doc::sized(id, SIZE)).await }
        });
        for r in futures::future::join_all(writes).await {
            r?;
        }
    }
    // The weight of one L1 entry, measured: 1 000 entries read into a roomy L1.
    let probe = memory(64 << 20)?;
    let probe = Arc::new(probe);
    let probe_cache = over(
        &[probe.clone() as Arc<dyn Backend>, l2.clone()],
        "bench-hot",
        true,
        InsightConfig::off(),
    )?;
    for k in keys.iter().take(1000) {
        probe_cache.get::<Doc>(k.as_str()).await?;
    }
    let per_entry = probe.weighted_bytes() / probe.entries().max(1) as u64;
    let l1_bytes = per_entry * (KEYS as u64 / 10);
    let zipf = Zipf::new(KEYS, 0.99);
    let instance = |insight: InsightConfig| -> Result<(Cache, Arc<layercake::MemoryBackend>)> {
        let l1 = Arc::new(memory(l1_bytes)?);
        let c = over(
            &[l1.clone() as Arc<dyn Backend>, l2.clone()],
            "bench-hot",
            true,
            insight,
        )?;
        Ok((c, l1))
    };
    // The instance before the deploy: runs to steady state, then saves its hot set.
    let (before, before_l1) = instance(InsightConfig::new())?;
    let (warmup, measured) = if quick {
        (100_000, 20_000)
    } else {
        (400_000, 100_000)
    };
    let mut rng = Rng::new(0x99);
    run_requests(&before, &keys, &zipf, &mut rng, warmup).await?;
    let steady = run_requests(&before, &keys, &zipf, &mut rng, measured).await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("hot-set");
    let per_ns = before_l1.entries() * 9 / 10;
    let saved = before.save_hot_set(&path, per_ns)?;
    // Two fresh instances over the same Redis, the same next 10 000 requests.
    const FIRST: usize = 10_000;
    let (cold, _) = instance(InsightConfig::new())?;
    let cold_ratio = run_requests(&cold, &keys, &zipf, &mut Rng::new(0x1234), FIRST).await?;
    let (warm, warm_l1) = instance(InsightConfig::new())?;
    let t = Instant::now();
    let report = warm.spawn_warm_from_hot_set(&path).await??;
    let warm_time = t.elapsed();
    let held = warm_l1.entries();
    let warm_ratio = run_requests(&warm, &keys, &zipf, &mut Rng::new(0x1234), FIRST).await?;
    let line = format!(
        "Hot-set restart (Zipf 0.99, {KEYS} keys of {SIZE} B in Redis, L1 of {:.1} MiB = 10 % of \
         the keys at {per_entry} B each): steady-state L1 hit ratio {:.3} (over {measured} \
         requests after {warmup}); first {FIRST} requests of a fresh instance: cold {:.3}, \
         warmed from the hot set {:.3} (= {:.0} % of steady state). Warm-up: {saved} keys saved, \
         {} filled ({held} in L1 after), {} lower-tier reads in {} bulk calls, {:.1} ms \
         (in the background: start-up not delayed).",
        l1_bytes as f64 / (1 << 20) as f64,
        steady,
        cold_ratio,
        warm_ratio,
        warm_ratio / steady * 100.0,
        report.warmed,
        report.lower_reads,
        report.bulk_calls,
        warm_time.as_secs_f64() * 1000.0,
    );
    eprintln!("  {line}");
    results.insight.push(line);
    Ok(())
}

/// The cost on the benchmark's own L2-hit row (`remote`: an L1 miss, then a hit in Redis),
/// insight off vs on: the same contents in Redis read through two caches that differ only in
/// `InsightConfig::off()`, each over an L1 that the route never fills (so every read misses
/// L1 and is counted with its reason).
async fn cost_redis(env: &Env, results: &mut Results, plan: Plan) -> Result<()> {
    const N: usize = 2_000;
    let l2: Arc<dyn Backend> = env.redis_mux.clone();
    let cache = |insight: InsightConfig| -> Result<Cache> {
        let l1 = Arc::new(memory(64 << 20)?) as Arc<dyn Backend>;
        over(&[l1, l2.clone()], "bench-insight-redis", false, insight)
    };
    let off = cache(InsightConfig::off())?;
    let on = cache(InsightConfig::new())?;
    let keys: Vec<String> = (0..N).map(|i| format!("insight:{i:06}")).collect();
    for (i, k) in keys.iter().enumerate() {
        off.set(k.as_str(), Doc::sized(i as u64, 1024)).await?;
    }
    let order = shuffled(N, 0x21);
    let (keys, order) = (&keys, &order);
    let key = move |i: u64| keys[order[i as usize % N]].as_str();
    let side = |name: &str, cache: Cache| cache_gets(name, cache, key);
    let m = interleave(
        plan,
        vec![
            side("L2 hit (Redis), insight off", off),
            side("L2 hit (Redis), insight on", on),
        ],
    )
    .await?;
    results.comparisons.push(
        Comparison::new(
            "Miss-reason accounting on vs off (1 KiB)",
            "insight.l2_hit_redis",
            &m[0],
            &m[1],
        )
        .target(TARGET, "miss-reason accounting ≤ 1.05× off (L2 hit, Redis)"),
    );
    Ok(())
}

/// Every part: the cost on in-process rows (`plan`), on the Redis L2-hit row (`remote`), and
/// the hot-set restart.
pub(crate) async fn run(
    env: &Env,
    results: &mut Results,
    plan: Plan,
    remote: Plan,
    quick: bool,
) -> Result<()> {
    cost(results, plan).await?;
    cost_redis(env, results, remote).await?;
    restart(env, results, quick).await
}

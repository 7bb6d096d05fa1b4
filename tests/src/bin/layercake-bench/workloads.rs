//! Field workloads over the four-tier stack (memory, Redis, PostgreSQL, file), with the default
//! tier options (write-through everywhere), reporting throughput, where reads were served and
//! read / write latency percentiles.
//!
//! Reads are `get_or_compute` with a loader that builds the document at once (no simulated
//! source latency), so a read that no tier serves costs a load plus a write through every
//! tier. Writes are `set`; deletes are `delete`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use layercake::{Backend, Cache, Clock, Codec, Entry, Key, SystemClock};
use tokio::task::JoinSet;

use crate::Result;
use crate::data::{Doc, Rng, Zipf, shuffled};
use crate::env::{Env, TTL, cache, everywhere};
use crate::harness::{latency_histogram, record};
use crate::results::{Results, TierShare, WorkloadRow};

/// How keys are picked.
#[derive(Debug, Clone)]
enum Pick {
    /// Zipf over ranks, ranks mapped to keys through a fixed permutation.
    Zipf(Arc<Zipf>, Arc<Vec<usize>>),
    /// Uniform over `n` keys.
    Uniform(u64),
}

impl Pick {
    fn next(&self, rng: &mut Rng) -> usize {
        match self {
            Pick::Zipf(z, perm) => perm[z.sample(rng)],
            Pick::Uniform(n) => rng.below(*n) as usize,
        }
    }
}

/// One workload's shape.
struct Shape {
    name: &'static str,
    description: String,
    prefix: &'static str,
    tasks: usize,
    pick: Pick,
    /// Per mille: reads, then writes; the rest are deletes.
    reads: u32,
    writes: u32,
    l1_bytes: u64,
}

#[derive(Default)]
struct TaskOut {
    reads: u64,
    ops: u64,
    errors: u64,
}

async fn drive(
    c: Cache,
    shape: Arc<Shape>,
    seed: u64,
    until: Instant,
    mut read_h: Histogram<u64>,
    mut write_h: Histogram<u64>,
) -> (TaskOut, Histogram<u64>, Histogram<u64>) {
    let mut rng = Rng::new(seed);
    let mut out = TaskOut::default();
    while Instant::now() < until {
        for _ in 0..16 {
            let id = shape.pick.next(&mut rng);
            let key = format!("{}:{id:07}", shape.prefix);
            let dice = (rng.next() % 1000) as u32;
            let start = Instant::now();
            let ok = if dice < shape.reads {
                out.reads += 1;
                let r = c
                    .get_or_compute(key.as_str(), move || async move {
                        Ok::<_, std::io::Error>(Doc::sized(id as u64, 1024))
                    })
                    .await;
                record(&mut read_h, start.elapsed());
                r.is_ok()
            } else if dice < shape.reads + shape.writes {
                let r = c.set(key.as_str(), Doc::sized(id as u64 + 1, 1024)).await;
                record(&mut write_h, start.elapsed());
                r.is_ok()
            } else {
                let r = c.delete(key.as_str()).await;
                record(&mut write_h, start.elapsed());
                r.is_ok()
            };
            out.ops += 1;
            if !ok {
                out.errors += 1;
            }
        }
    }
    (out, read_h, write_h)
}

/// Run `shape` for `warmup` (not measured) then `secs`.
async fn run_shape(
    env: &Env,
    results: &mut Results,
    shape: Shape,
    warmup: Duration,
    measure: Duration,
) -> Result<()> {
    let c = cache(
        &format!("bench-{}", shape.prefix),
        env.four_tiers(shape.l1_bytes)?,
        everywhere(),
        Codec::json(),
    )?;
    if shape.prefix == "mixed" {
        seed_mixed(env, &c).await?;
    }
    let shape = Arc::new(shape);
    let mut snapshot = None;
    let mut merged_r = latency_histogram()?;
    let mut merged_w = latency_histogram()?;
    let mut total = TaskOut::default();
    let mut secs = 0.0;
    for (phase, d) in [(0u64, warmup), (1, measure)] {
        if phase == 1 {
            snapshot = Some(c.stats());
        }
        let started = Instant::now();
        let until = started + d;
        let mut set = JoinSet::new();
        for t in 0..shape.tasks as u64 {
            set.spawn(drive(
                c.clone(),
                shape.clone(),
                phase * 1_000_003 + t * 7919 + 1,
                until,
                latency_histogram()?,
                latency_histogram()?,
            ));
        }
        while let Some(r) = set.join_next().await {
            let (o, rh, wh) = r?;
            if phase == 1 {
                total.ops += o.ops;
                total.reads += o.reads;
                total.errors += o.errors;
                merged_r.add(&rh)?;
                merged_w.add(&wh)?;
            }
        }
        if phase == 1 {
            secs = started.elapsed().as_secs_f64();
        }
    }
    let before = snapshot.unwrap_or_else(|| c.stats());
    let after = c.stats();
    let tiers = after
        .tiers
        .iter()
        .zip(&before.tiers)
        .map(|(a, b)| TierShare {
            hits: a.hits - b.hits,
            misses: a.misses - b.misses,
        })
        .collect();
    let q = |h: &Histogram<u64>, p: f64| {
        if h.is_empty() {
            0.0
        } else {
            h.value_at_quantile(p) as f64
        }
    };
    results.workloads.push(WorkloadRow {
        name: shape.name,
        description: shape.description.clone(),
        tasks: shape.tasks,
        ops: total.ops,
        reads: total.reads,
        secs,
        tiers,
        loader_calls: after.loader_calls - before.loader_calls,
        read_p50: q(&merged_r, 0.5),
        read_p99: q(&merged_r, 0.99),
        write_p50: q(&merged_w, 0.5),
        write_p99: q(&merged_w, 0.99),
        errors: total.errors,
    });
    Ok(())
}

/// Mixed workload seed: of 8000 keys, a quarter in Redis + PostgreSQL + file, a quarter only
/// in PostgreSQL (evicted from Redis), a quarter only in the file tier (a warm restart on a
/// host whose shared tiers lost them), a quarter nowhere.
async fn seed_mixed(env: &Env, c: &Cache) -> Result<()> {
    let now = SystemClock.now();
    let codec = Codec::json();
    let mut lower = Vec::new();
    let mut pg_only = Vec::new();
    let mut file_only = Vec::new();
    for id in 0..6000usize {
        let key: Key = c.key(format!("mixed:{id:07}").as_str())?;
        let enc = codec.encode(&Doc::sized(id as u64, 1024))?;
        let e = Entry::new(enc.bytes, now, TTL).with_encoding(enc.format, enc.compression);
        match id % 3 {
            0 => lower.push((key, e)),
            1 => pg_only.push((key, e)),
            _ => file_only.push((key, e)),
        }
    }
    env.redis_mux.set_many(&lower).await?;
    env.postgres.set_many(&lower).await?;
    env.file.set_many(&lower).await?;
    env.postgres.set_many(&pg_only).await?;
    env.file.set_many(&file_only).await?;
    Ok(())
}

/// The four workloads.
pub(crate) async fn run(env: &Env, results: &mut Results, quick: bool) -> Result<()> {
    let (warm, measure) = if quick {
        (Duration::from_secs(1), Duration::from_secs(4))
    } else {
        (Duration::from_secs(4), Duration::from_secs(20))
    };
    let hot = Arc::new(Zipf::new(20_000, 1.0));
    let hot_perm = Arc::new(shuffled(20_000, 0x5EED));
    run_shape(
        env,
        results,
        Shape {
            name: "Zipf hot set",
            description: "20 000 keys, Zipf s = 1.0; 90 % reads, 10 % writes; 4 tasks; L1 of 2 MiB"
                .into(),
            prefix: "hot",
            tasks: 4,
            pick: Pick::Zipf(hot.clone(), hot_perm.clone()),
            reads: 900,
            writes: 100,
            l1_bytes: 2 << 20,
        },
        warm,
        measure,
    )
    .await?;
    run_shape(
        env,
        results,
        Shape {
            name: "Uniform cold set",
            description: "1 000 000 keys, uniform; 70 % reads, 30 % writes; 4 tasks; L1 of 8 MiB"
                .into(),
            prefix: "cold",
            tasks: 4,
            pick: Pick::Uniform(1_000_000),
            reads: 700,
            writes: 300,
            l1_bytes: 8 << 20,
        },
        warm,
        measure,
    )
    .await?;
    let mixed_zipf = Arc::new(Zipf::new(8_000, 0.8));
    run_shape(
        env,
        results,
        Shape {
            name: "Mixed",
            description: "8 000 keys, Zipf s = 0.8, seeded ¼ in L2+L3+L4, ¼ only in L3, ¼ only in \
                          L4, ¼ nowhere; 80 % reads, 15 % writes, 5 % deletes; 4 tasks; L1 of 2 MiB"
                .into(),
            prefix: "mixed",
            tasks: 4,
            pick: Pick::Zipf(mixed_zipf, Arc::new(shuffled(8_000, 0xA11))),
            reads: 800,
            writes: 150,
            l1_bytes: 2 << 20,
        },
        warm,
        measure,
    )
    .await?;
    run_shape(
        env,
        results,
        Shape {
            name: "High concurrency",
            description:
                "20 000 keys, Zipf s = 1.0; 90 % reads, 10 % writes; 64 tasks; L1 of 2 MiB".into(),
            prefix: "conc",
            tasks: 64,
            pick: Pick::Zipf(hot, hot_perm),
            reads: 900,
            writes: 100,
            l1_bytes: 2 << 20,
        },
        warm,
        measure,
    )
    .await?;
    Ok(())
}

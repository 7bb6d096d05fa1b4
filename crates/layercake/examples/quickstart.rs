//! layercake quick start: cache slow, costly calls (an LLM completion, an embedding, a tool
//! catalog) in a tiered cache and see what it saves.
//!
//! ```sh
//! cargo run -p layercake --features file,redis,postgres --example quickstart
//! REDIS_URL=redis://127.0.0.1:6379 DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo run -p layercake --features file,redis,postgres --example quickstart
//! ```
//!
//! With no server it stacks memory (L1) over a file directory (the last tier); with
//! `REDIS_URL` / `DATABASE_URL` set it puts Redis and PostgreSQL in between. The file directory
//! is `LAYERCAKE_DIR`, or a directory of its own under the system's temporary directory,
//! removed at the end.
//!
//! It runs a repeated workload twice: once on a cold cache, then again as a "restarted"
//! instance whose memory tier is empty, so the lower tiers serve and promote. Every figure it
//! prints is measured in this run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use layercake::file::{FileBackend, FileConfig};
use layercake::{
    Cache, HashedKeys, MemoryBackend, Namespace, NamespaceTable, PlainKeys, PolicyExt, Request,
    Source,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, Clone)]
struct Completion {
    model: String,
    text: String,
    tokens: u32,
}

#[derive(Debug, Serialize)]
struct CompletionRequest<'a> {
    model: &'a str,
    prompt: &'a str,
    temperature: f32,
}

/// The expensive calls, simulated: each sleeps like the real thing and counts itself.
#[derive(Default)]
struct Upstream {
    llm_calls: AtomicU64,
    embedding_calls: AtomicU64,
    catalog_calls: AtomicU64,
}

impl Upstream {
    async fn complete(&self, prompt: &str) -> Result<Completion, std::io::Error> {
        self.llm_calls.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(40)).await;
        Ok(Completion {
            model: "small-model".into(),
            text: format!("An answer to {prompt:?}. ").repeat(8),
            tokens: 96,
        })
    }
    async fn embed(&self, text: &str) -> Result<Vec<f32>, std::io::Error> {
        self.embedding_calls.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(15)).await;
        Ok((0..384)
            .map(|i| ((text.len() + i) % 17) as f32 / 17.0)
            .collect())
    }
    async fn catalog(&self) -> Result<Vec<String>, std::io::Error> {
        self.catalog_calls.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(25)).await;
        Ok(["search", "fetch", "calculator", "calendar", "email"]
            .map(String::from)
            .to_vec())
    }
}

const PROMPTS: [&str; 12] = [
    "What is a tiered cache?",
    "Explain single flight.",
    "Why cache embeddings?",
    "What is fail-safe caching?",
    "How does Redis expire keys?",
    "What is LISTEN/NOTIFY?",
    "Summarise the design.",
    "What does promotion mean?",
    "How big should L1 be?",
    "Is JSON fast?",
    "What is a circuit breaker?",
    "How do backplanes work?",
];

async fn build(dir: &std::path::Path) -> layercake::Result<(Cache, Vec<String>)> {
    let mut described = vec!["memory".to_string()];
    let mut b = Cache::builder("quickstart")
        .tier(MemoryBackend::with_max_bytes(32 << 20)?)
        // Namespace TTLs: llm 24 h, embedding 7 d, catalog 24 h (5 % jitter), stale-if-error 1 h.
        .policy(NamespaceTable::ai_defaults().stale_for(Duration::from_secs(3600)));
    if let Ok(url) = std::env::var("REDIS_URL") {
        let redis = layercake::redis::RedisBackend::connect(
            layercake::redis::RedisConfig::new(url).with_cache_name("quickstart"),
        )
        .await?;
        b = b.tier(redis);
        described.push("redis".into());
    }
    if let Ok(url) = std::env::var("DATABASE_URL") {
        let pg = layercake::postgres::PostgresBackend::connect(
            layercake::postgres::PostgresConfig::new(&url)?
                .with_table("layercake_quickstart", "entries"),
        )
        .await?;
        b = b.tier(pg);
        described.push("postgres".into());
    }
    let file = FileBackend::open(FileConfig::new(dir).with_max_bytes(256 << 20)).await?;
    b = b.tier(file);
    described.push("file".into());
    Ok((b.build()?, described))
}

#[derive(Default)]
struct Timings {
    hits: Vec<Duration>,
    misses: Vec<Duration>,
}

fn median(v: &mut [Duration]) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[v.len() / 2]
}

/// 300 requests over the three namespaces, skewed towards a few hot prompts.
async fn workload(cache: &Cache, up: &Arc<Upstream>, t: &mut Timings) -> layercake::Result<u64> {
    let llm = cache.with_keys(HashedKeys::new(Namespace::new("llm", 1)?));
    let embeddings = cache.with_keys(HashedKeys::new(Namespace::new("embedding", 1)?));
    let catalog = cache.with_keys(PlainKeys::new(Namespace::new("catalog", 1)?));
    let mut requests = 0;
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    for i in 0..300u64 {
        // Deterministic skew (u³ of a uniform u): the first prompts come up far more often.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let u = (seed >> 11) as f64 / (1u64 << 53) as f64;
        let prompt = PROMPTS[((u * u * u) * PROMPTS.len() as f64) as usize];
        let start = Instant::now();
        let source = match i % 3 {
            0 => {
                let req = CompletionRequest {
                    model: "small-model",
                    prompt,
                    temperature: 0.0,
                };
                let up = up.clone();
                let p = prompt.to_owned();
                llm.get_or_compute(Request(&req), move || async move { up.complete(&p).await })
                    .await?
                    .source
            }
            1 => {
                let up = up.clone();
                let p = prompt.to_owned();
                embeddings
                    .get_or_compute(prompt, move || async move { up.embed(&p).await })
                    .await?
                    .source
            }
            _ => {
                let up = up.clone();
                catalog
                    .get_or_compute("tools", move || async move { up.catalog().await })
                    .await?
                    .source
            }
        };
        let took = start.elapsed();
        match source {
            Source::Hit { .. } => t.hits.push(took),
            _ => t.misses.push(took),
        }
        requests += 1;
    }
    Ok(requests)
}

#[tokio::main]
async fn main() -> layercake::Result<()> {
    // The file tier's directory: LAYERCAKE_DIR, or one of this run's own (removed at the end).
    let (dir, own_dir) = match std::env::var_os("LAYERCAKE_DIR") {
        Some(d) => (std::path::PathBuf::from(d), false),
        None => {
            let name = format!("layercake-quickstart-{}", std::process::id());
            (std::env::temp_dir().join(name), true)
        }
    };
    let up = Arc::new(Upstream::default());

    let (cache, tiers) = build(&dir).await?;
    println!(
        "layercake quickstart — tiers: {} (file tier in {})",
        tiers.join(" → "),
        dir.display()
    );
    // Start from a clean slate in the shared tiers so the figures are this run's.
    for ns in ["llm", "embedding", "catalog"] {
        let view = cache.with_keys(PlainKeys::new(Namespace::new(ns, 1)?));
        view.invalidate_prefix("").await?;
    }

    let mut t1 = Timings::default();
    let n1 = workload(&cache, &up, &mut t1).await?;
    println!("\n== pass 1: cold cache, {n1} requests");
    println!("{}", cache.stats());

    // A restarted instance: empty memory tier, same lower tiers.
    drop(cache);
    let (cache2, _) = build(&dir).await?;
    let mut t2 = Timings::default();
    let n2 = workload(&cache2, &up, &mut t2).await?;
    println!("== pass 2: restarted instance (empty L1), {n2} requests");
    println!("{}", cache2.stats());

    let calls = up.llm_calls.load(Ordering::Relaxed)
        + up.embedding_calls.load(Ordering::Relaxed)
        + up.catalog_calls.load(Ordering::Relaxed);
    let total = n1 + n2;
    let mut hits: Vec<Duration> = t1.hits.iter().chain(&t2.hits).copied().collect();
    let mut misses: Vec<Duration> = t1.misses.iter().chain(&t2.misses).copied().collect();
    println!("== summary");
    println!(
        "requests {total}; upstream calls {calls} (llm {}, embedding {}, catalog {}); calls saved {} ({:.1} %)",
        up.llm_calls.load(Ordering::Relaxed),
        up.embedding_calls.load(Ordering::Relaxed),
        up.catalog_calls.load(Ordering::Relaxed),
        total - calls,
        (total - calls) as f64 * 100.0 / total as f64
    );
    println!(
        "median latency: hit {:?} over {} hits, miss {:?} over {} misses",
        median(&mut hits),
        hits.len(),
        median(&mut misses),
        misses.len()
    );
    if own_dir {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

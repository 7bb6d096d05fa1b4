//! Scenario 18: a cache built while Redis and PostgreSQL are both down.

use std::time::{Duration, Instant};

use layercake::{Backend, Cache, Key, MemoryBackend};
use layercake_file::{FileBackend, FileConfig};
use layercake_postgres::{PostgresBackend, PostgresConfig};
use layercake_redis::{RedisBackend, RedisConfig};
use layercake_testkit::server::{PostgresServer, RedisServer};

use super::contract::{CALL_LIMIT, bounded};
use super::support::Val;

/// Keys the instance reads and writes.
const KEYS: u32 = 40;
/// Bound of the whole scenario (two server starts, two pick-ups, the reads).
const LIMIT: Duration = Duration::from_secs(110);
/// Bound on a tier being used after its server is up. What a user gets with the defaults is
/// at most the backend's reconnect pause (1 s) plus the breaker's cool-down (1 s); the rest
/// is slack for a loaded 2-core machine. The measured times are printed.
const PICKUP_LIMIT: Duration = Duration::from_secs(10);
/// How long the instance works with both servers down before the first comes up.
const DOWN_FOR: Duration = Duration::from_secs(2);

/// One instance over the four tiers, each with the defaults a user gets (backends and
/// composer): memory, Redis, PostgreSQL, files in `dir`.
async fn instance(redis_url: &str, pg_url: &str, dir: &std::path::Path) -> Cache {
    let redis = bounded(
        "connecting redis while it is down",
        CALL_LIMIT,
        RedisBackend::connect(redis_config(redis_url)),
    )
    .await
    .expect("RedisBackend::connect succeeds while Redis is down");
    let pg = bounded(
        "connecting postgres while it is down",
        CALL_LIMIT,
        PostgresBackend::connect(pg_config(pg_url)),
    )
    .await
    .expect("PostgresBackend::connect succeeds while PostgreSQL is down");
    let file = FileBackend::open(FileConfig::new(dir))
        .await
        .expect("file tier");
    Cache::builder("fault-s18")
        .tier(MemoryBackend::with_max_bytes(8 << 20).expect("L1"))
        .tier(redis)
        .tier(pg)
        .tier(file)
        .build()
        .expect("the cache builds while its servers are down")
}

fn redis_config(url: &str) -> RedisConfig {
    RedisConfig::new(url).with_key_prefix("s18:")
}

fn pg_config(url: &str) -> PostgresConfig {
    PostgresConfig::new(url)
        .expect("postgres url")
        .with_table("fault_s18", "entries")
}

/// Every call the instance makes, and what it was told.
#[derive(Default)]
struct Work {
    calls: usize,
    errors: Vec<String>,
    /// Per key, the generation of the newest acknowledged `set` (0: computed by the loader).
    last: Vec<Option<u64>>,
    generation: u64,
}

impl Work {
    fn new() -> Work {
        Work {
            last: vec![None; KEYS as usize],
            ..Work::default()
        }
    }

    /// One round over every key: `get_or_compute`, then a `set` of every fourth key and a
    /// `get` of it, checking each value read.
    async fn round(&mut self, cache: &Cache) {
        self.generation += 1;
        for k in 0..KEYS {
            let key = format!("k{k}");
            self.calls += 1;
            match bounded(
                "get_or_compute",
                CALL_LIMIT,
                cache.get_or_compute(key.as_str(), move || async move {
                    Ok::<_, std::io::Error>(Val::new(k, 0))
                }),
            )
            .await
            {
                Ok(v) => self.check(k, v.k, v.generation, "get_or_compute"),
                Err(e) => self.errors.push(format!("get_or_compute {key}: {e}")),
            }
            if self.last[k as usize].is_none() {
                self.last[k as usize] = Some(0);
            }
            if (u64::from(k) + self.generation).is_multiple_of(4) {
                let g = self.generation;
                self.calls += 2;
                match bounded("set", CALL_LIMIT, cache.set(key.as_str(), Val::new(k, g))).await {
                    Ok(()) => self.last[k as usize] = Some(g),
                    Err(e) => self.errors.push(format!("set {key}: {e}")),
                }
                match bounded("get", CALL_LIMIT, cache.get::<Val>(key.as_str())).await {
                    Ok(Some(v)) => self.check(k, v.k, v.generation, "get after set"),
                    Ok(None) => self.errors.push(format!("get {key} after set: a miss")),
                    Err(e) => self.errors.push(format!("get {key}: {e}")),
                }
            }
        }
    }

    fn check(&mut self, k: u32, read_k: u32, read_g: u64, what: &str) {
        let want = self.last[k as usize].unwrap_or(0);
        if read_k != k || read_g != want {
            self.errors.push(format!(
                "{what} k{k}: read k{read_k} generation {read_g}, newest acknowledged {want}"
            ));
        }
    }
}

/// Works (rounds of [`Work::round`]) until a probe `set` made through the cache is found in
/// the server by `raw` (a backend of its own, connected once the server is up); how long that
/// took.
async fn until_used(cache: &Cache, work: &mut Work, raw: &dyn Backend, probe: &str) -> Duration {
    let start = Instant::now();
    let key: Key = cache.key(probe).expect("probe key");
    let mut n = 0u64;
    while start.elapsed() < PICKUP_LIMIT {
        n += 1;
        work.calls += 1;
        if let Err(e) = cache.set(probe, Val::new(KEYS, n)).await {
            work.errors.push(format!("set {probe}: {e}"));
        }
        if let Ok(Some(_)) = raw.get(&key).await {
            return start.elapsed();
        }
        work.round(cache).await;
    }
    panic!(
        "scenario 18: the cache did not write to the server within {PICKUP_LIMIT:?} of it coming up"
    );
}

/// A cache with memory, Redis, PostgreSQL and file tiers, built while Redis and PostgreSQL are
/// both down (throwaway servers, started once to reserve their ports and data, then killed),
/// with the backends' and the composer's defaults:
///
/// - building succeeds, and every call while the servers are down succeeds with the right
///   value (memory, files and the loader serve): 0 errors;
/// - Redis comes up: a `set` through the cache reaches it within [`PICKUP_LIMIT`] (the time is
///   printed; the defaults make it at most about 2 s); then PostgreSQL the same, its schema
///   created when it first answers;
/// - a fresh instance (empty L1) then reads every key: each holds the newest acknowledged
///   write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_18_a_cache_built_while_its_servers_are_down_serves_then_uses_them() {
    bounded("scenario 18", LIMIT, run()).await;
}

async fn run() {
    let mut redis = bounded(
        "starting redis",
        Duration::from_secs(20),
        RedisServer::start(),
    )
    .await
    .expect("redis-server");
    let mut pg = bounded(
        "starting postgres",
        Duration::from_secs(60),
        PostgresServer::start(),
    )
    .await
    .expect("postgres");
    bounded("killing redis", CALL_LIMIT, redis.kill())
        .await
        .unwrap();
    bounded("killing postgres", Duration::from_secs(20), pg.kill())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();

    let built = Instant::now();
    let cache = instance(&redis.url(), &pg.url(), dir.path()).await;
    let build_time = built.elapsed();
    let mut work = Work::new();
    while built.elapsed() < DOWN_FOR {
        work.round(&cache).await;
    }
    let calls_down = work.calls;
    let errors_down = work.errors.len();
    assert!(
        work.errors.is_empty(),
        "scenario 18: calls failed or read wrong values while the servers were down: {:?}",
        &work.errors[..work.errors.len().min(5)]
    );
    let stats = cache.stats();
    assert!(
        stats.tiers[1].errors + stats.tiers[1].skipped > 0
            && stats.tiers[2].errors + stats.tiers[2].skipped > 0,
        "scenario 18: the servers were not really down (no tier error or skip): {stats:?}"
    );

    bounded("restarting redis", Duration::from_secs(20), redis.restart())
        .await
        .unwrap();
    let raw_redis = RedisBackend::connect(redis_config(&redis.url()))
        .await
        .unwrap();
    let redis_pickup = until_used(&cache, &mut work, &raw_redis, "probe-redis").await;

    bounded("restarting postgres", Duration::from_secs(60), pg.restart())
        .await
        .unwrap();
    let raw_pg = PostgresBackend::connect(pg_config(&pg.url()))
        .await
        .unwrap();
    let pg_pickup = until_used(&cache, &mut work, &raw_pg, "probe-postgres").await;
    assert!(
        work.errors.is_empty(),
        "scenario 18: calls failed or read wrong values as the servers came up: {:?}",
        &work.errors[..work.errors.len().min(5)]
    );

    // The habit of every fault test: a fresh instance (empty L1) reads every key.
    cache.shutdown().await;
    drop(cache);
    let fresh = instance(&redis.url(), &pg.url(), dir.path()).await;
    let mut wrong = Vec::new();
    for k in 0..KEYS {
        let want = work.last[k as usize].expect("every key was read or written");
        match bounded(
            "fresh get",
            CALL_LIMIT,
            fresh.get::<Val>(format!("k{k}").as_str()),
        )
        .await
        {
            Ok(Some(v)) if v.k == k && v.generation == want => {}
            other => wrong.push(format!(
                "k{k}: {:?}, newest acknowledged generation {want}",
                other.map(|o| o.map(|v| (v.k, v.generation)))
            )),
        }
    }
    println!(
        "scenario 18: build={build_time:?} calls_while_down={calls_down} errors_while_down={errors_down} \
         calls={} errors={} redis_pickup={redis_pickup:?} postgres_pickup={pg_pickup:?} \
         fresh_reads={KEYS} fresh_wrong={}",
        work.calls,
        work.errors.len(),
        wrong.len()
    );
    assert!(
        wrong.is_empty(),
        "scenario 18: a fresh instance read other than the newest acknowledged write: {wrong:?}"
    );
}

//! Quick measurement of the connection modes against raw redis-rs, in one run.
//!
//! ```text
//! cargo run --release -p layercake-redis --example conn_modes [redis-url] [seconds-per-case]
//! ```
//!
//! The URL defaults to `REDIS_URL`, else `redis://127.0.0.1:6379`.
//!
//! For each of: raw multiplexed `GET` (redis-rs, no envelope), the backend in `Multiplexed`
//! mode, and the backend in `Pool` mode, it reports the median and p99 latency of `get` with one
//! request in flight, and the throughput with 64 requests in flight, on a 2-worker runtime.
//! Only ratios measured in the same run are meaningful.

use std::sync::Arc;
use std::time::{Duration, Instant};

use layercake_core::{Backend, Clock, Entry, Key, SystemClock};
use layercake_redis::{ConnectionMode, RedisBackend, RedisConfig};

const KEYS: usize = 1000;

#[derive(Clone)]
enum Target {
    Raw(redis::aio::MultiplexedConnection, Arc<Vec<String>>),
    Manager(redis::aio::ConnectionManager, Arc<Vec<String>>),
    Backend(Arc<RedisBackend>, Arc<Vec<Key>>),
}

impl Target {
    async fn get(&self, i: usize) {
        match self {
            Target::Raw(c, keys) => {
                let mut c = c.clone();
                let v: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(&keys[i % KEYS])
                    .query_async(&mut c)
                    .await
                    .expect("raw GET");
                assert!(v.is_some());
            }
            Target::Manager(c, keys) => {
                let mut c = c.clone();
                let v: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(&keys[i % KEYS])
                    .query_async(&mut c)
                    .await
                    .expect("manager GET");
                assert!(v.is_some());
            }
            Target::Backend(b, keys) => {
                let v = b.get(&keys[i % KEYS]).await.expect("backend get");
                assert!(v.is_some());
            }
        }
    }
}

async fn latency(t: &Target, dur: Duration) -> (f64, f64) {
    let mut samples = Vec::new();
    let start = Instant::now();
    let mut i = 0;
    while start.elapsed() < dur {
        let s = Instant::now();
        t.get(i).await;
        samples.push(s.elapsed().as_nanos() as f64 / 1000.0);
        i += 1;
    }
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let p = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    (p(0.5), p(0.99))
}

async fn throughput(t: &Target, inflight: usize, dur: Duration) -> f64 {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..inflight {
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            let mut i = w * 7;
            while start.elapsed() < dur {
                t.get(i).await;
                n += 1;
                i += inflight;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("worker");
    }
    total as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .cloned()
        .or_else(|| std::env::var("REDIS_URL").ok())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let secs: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let dur = Duration::from_secs_f64(secs);
    let prefix = format!("lcbench:{}:", std::process::id());

    let mk = |mode| {
        RedisConfig::new(&url)
            .with_key_prefix(&prefix)
            .with_mode(mode)
            .with_pool_wait_timeout(Duration::from_secs(5))
            .with_operation_timeout(Duration::from_secs(5))
    };
    let multiplexed = Arc::new(
        RedisBackend::connect(mk(ConnectionMode::Multiplexed))
            .await
            .expect("connect"),
    );
    let pool = Arc::new(
        RedisBackend::connect(mk(ConnectionMode::Pool))
            .await
            .expect("connect"),
    );
    let keys: Vec<Key> = (0..KEYS)
        .map(|i| Key::new(format!("k{i}")).expect("key"))
        .collect();
    let now = SystemClock.now();
    let items: Vec<(Key, Entry)> = keys
        .iter()
        .map(|k| {
            (
                k.clone(),
                Entry::new(vec![7u8; 200], now, Duration::from_secs(600)),
            )
        })
        .collect();
    multiplexed.set_many(&items).await.expect("fill");
    let raw_keys: Vec<String> = keys
        .iter()
        .map(|k| format!("{prefix}{}", k.as_str()))
        .collect();
    let client = redis::Client::open(url.as_str()).expect("url");
    let raw = client
        .get_multiplexed_async_connection()
        .await
        .expect("raw connect");
    let manager = client
        .get_connection_manager()
        .await
        .expect("manager connect");
    let raw_keys = Arc::new(raw_keys);

    let targets = [
        ("raw multiplexed GET", Target::Raw(raw, raw_keys.clone())),
        ("raw ConnectionManager", Target::Manager(manager, raw_keys)),
        (
            "backend Multiplexed",
            Target::Backend(multiplexed.clone(), Arc::new(keys.clone())),
        ),
        (
            "backend Pool(8)",
            Target::Backend(pool, Arc::new(keys.clone())),
        ),
    ];
    // Warm up every target (connections, pool fill, caches).
    for (_, t) in &targets {
        throughput(t, 64, Duration::from_millis(300)).await;
    }
    println!(
        "{:<22} {:>12} {:>12} {:>14} {:>14}",
        "target", "p50 1-in-flight", "p99", "ops/s @1", "ops/s @64"
    );
    let mut raw_p50 = 0.0;
    let mut raw_tp = 0.0;
    for round in 0..3 {
        for (name, t) in &targets {
            let (p50, p99) = latency(t, dur).await;
            let tp1 = 1e6 / p50;
            let tp64 = throughput(t, 64, dur).await;
            if name.starts_with("raw multiplexed") {
                raw_p50 = p50;
                raw_tp = tp64;
            }
            println!(
                "{name:<22} {p50:>10.1}µs {p99:>10.1}µs {tp1:>14.0} {tp64:>14.0}   (x{:.2} latency, x{:.2} throughput vs raw) round {round}",
                p50 / raw_p50,
                tp64 / raw_tp
            );
        }
    }
    multiplexed.clear().await.expect("clear");
}

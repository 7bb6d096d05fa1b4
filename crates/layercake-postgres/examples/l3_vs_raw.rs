//! Measure (not a test): an L3 hit through `PostgresBackend::get` against a raw prepared
//! `SELECT value FROM t WHERE key = $1` on one tokio-postgres connection, in the same run.
//!
//! ```text
//! cargo run --release -p layercake-postgres --example l3_vs_raw [-- ITERATIONS]
//! ```
//!
//! Uses `DATABASE_URL` or `postgres://postgres@127.0.0.1:5432/test`, in a schema of its own
//! that is dropped at the end. One request in flight at a time; the contenders are
//! interleaved op by op so drift of the machine hits all of them alike.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a measurement program: any failure should abort it"
)]

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use layercake_core::{Backend, Clock as _, Entry, Key, SystemClock};
use layercake_postgres::{PostgresBackend, PostgresConfig, Recycling};
use tokio_postgres::NoTls;

const KEYS: usize = 1000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p) as usize]
}

#[derive(Default)]
struct Samples(Vec<Duration>);

impl Samples {
    fn report(&mut self, name: &str) -> Duration {
        self.0.sort();
        let med = percentile(&self.0, 0.5);
        println!(
            "{name:<34} median {:>7.1} µs   p90 {:>7.1} µs   p99 {:>7.1} µs   ({} ops)",
            med.as_secs_f64() * 1e6,
            percentile(&self.0, 0.9).as_secs_f64() * 1e6,
            percentile(&self.0, 0.99).as_secs_f64() * 1e6,
            self.0.len()
        );
        med
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let iterations: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("lcbench_{}", std::process::id());
    let base = PostgresConfig::new(&url)
        .unwrap()
        .with_table(schema.clone(), "cache")
        .with_reaper(None);

    let contenders: Vec<(&str, Arc<PostgresBackend>)> = vec![
        (
            "backend, default (verify idle > 1s)",
            Arc::new(PostgresBackend::connect(base.clone()).await.unwrap()),
        ),
        (
            "backend, Recycling::Verified",
            Arc::new(
                PostgresBackend::connect(base.clone().with_recycling(Recycling::Verified))
                    .await
                    .unwrap(),
            ),
        ),
        (
            "backend, no server statement_timeout",
            Arc::new(
                PostgresBackend::connect(base.clone().with_server_statement_timeout(false))
                    .await
                    .unwrap(),
            ),
        ),
        (
            "backend, Recycling::Fast",
            Arc::new(
                PostgresBackend::connect(base.clone().with_recycling(Recycling::Fast))
                    .await
                    .unwrap(),
            ),
        ),
    ];
    let keys: Vec<Key> = (0..KEYS)
        .map(|i| Key::new(format!("bench:v1:item:{i:05}")).unwrap())
        .collect();
    let items: Vec<(Key, Entry)> = keys
        .iter()
        .map(|k| {
            (
                k.clone(),
                Entry::new(vec![7u8; 200], SystemClock.now(), Duration::from_secs(3600))
                    .with_tags(["bench"]),
            )
        })
        .collect();
    contenders[0].1.set_many(&items).await.unwrap();

    let (raw, conn) = tokio_postgres::Config::from_str(&url)
        .unwrap()
        .connect(NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let stmt = raw
        .prepare(&format!(
            "SELECT value FROM {} WHERE key = $1",
            contenders[0].1.qualified_table()
        ))
        .await
        .unwrap();

    let mut raw_samples = Samples::default();
    let mut samples: Vec<Samples> = contenders.iter().map(|_| Samples::default()).collect();
    // Warm-up: fill every pool connection's statement cache.
    for (_, b) in &contenders {
        for k in keys.iter().take(200) {
            assert!(b.get(k).await.unwrap().is_some());
        }
    }
    // Interleaved op by op: raw, then each backend, on the same key.
    for i in 0..iterations {
        let k = &keys[(i * 7) % KEYS];
        let t = Instant::now();
        let row = raw.query_opt(&stmt, &[&k.as_bytes()]).await.unwrap();
        let v: Vec<u8> = row.unwrap().get(0);
        raw_samples.0.push(t.elapsed());
        assert!(v.len() > 200);
        for (j, (_, b)) in contenders.iter().enumerate() {
            let t = Instant::now();
            let e = b.get(k).await.unwrap();
            samples[j].0.push(t.elapsed());
            assert_eq!(e.unwrap().value.len(), 200);
        }
    }
    println!("L3 hit vs raw prepared SELECT, 200-byte values, one request in flight, 2 workers");
    let raw_med = raw_samples.report("raw tokio-postgres prepared SELECT");
    for (j, (name, _)) in contenders.iter().enumerate() {
        let med = samples[j].report(name);
        println!(
            "{:<34} ratio to raw (medians): {:.3}x",
            "",
            med.as_secs_f64() / raw_med.as_secs_f64()
        );
    }
    raw.batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await
        .unwrap();
}

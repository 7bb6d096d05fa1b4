//! layercake metrics on a Prometheus scrape endpoint.
//!
//! ```sh
//! cargo run -p layercake --features otel,redis,postgres --example prometheus
//! REDIS_URL=redis://127.0.0.1:6379 DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo run -p layercake --features otel,redis,postgres --example prometheus
//! curl -s http://127.0.0.1:9464/metrics | grep '^layercake_'
//! ```
//!
//! It builds a cache over a memory tier (plus Redis and PostgreSQL when `REDIS_URL` /
//! `DATABASE_URL` are set), wires an OpenTelemetry SDK meter provider to a Prometheus registry
//! through `opentelemetry-prometheus`, runs a small workload, and serves the registry as plain
//! text on `/metrics` (address `METRICS_ADDR`, default `127.0.0.1:9464`). With lower tiers it
//! also runs a second, "restarted" instance (empty memory tier, same Redis and PostgreSQL) so
//! that the lower tiers serve hits too. `SERVE_SECS` ends the server after that many seconds
//! (default: serve until killed).
//!
//! The integration test `tests/otel.rs` drives the same functions and scrapes the endpoint.

use std::time::Duration;

use layercake::otel::OtelConfig;
use layercake::postgres::{PostgresBackend, PostgresConfig};
use layercake::redis::{RedisBackend, RedisConfig};
use layercake::{Cache, FixedTtl, MemoryBackend, Namespace, PlainKeys, TierOptions};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Where the lower tiers live, when there are any.
#[derive(Debug, Clone, Default)]
pub struct Lower {
    /// Redis URL and the key prefix this demo owns.
    pub redis: Option<(String, String)>,
    /// PostgreSQL URL and the schema this demo owns.
    pub postgres: Option<(String, String)>,
}

/// The demo: caches reporting to a meter provider that feeds a Prometheus registry.
pub struct Demo {
    /// The instance that computed the values.
    pub cache: Cache,
    /// A second instance with an empty memory tier over the same lower tiers, if any.
    pub restarted: Option<Cache>,
    /// The registry `/metrics` serves.
    pub registry: Registry,
    /// Keep the provider alive (it owns the reader).
    pub meters: SdkMeterProvider,
}

/// Item keys the workload computes.
pub const ITEMS: usize = 20;
/// Rounds of reads over the items (plus 5 keys that are never there).
pub const ROUNDS: usize = 5;

async fn build_cache(
    name: &str,
    lower: &Lower,
    meters: &SdkMeterProvider,
) -> layercake::Result<Cache> {
    let mut b = Cache::builder(name)
        .keys(PlainKeys::new(Namespace::new("demo", 1)?))
        .policy(FixedTtl::new(Duration::from_secs(300)))
        .tier_with(
            MemoryBackend::with_max_bytes(16 << 20)?,
            TierOptions::new().name("memory"),
        );
    if let Some((url, prefix)) = &lower.redis {
        let redis = RedisBackend::connect(RedisConfig::new(url).with_key_prefix(prefix)).await?;
        b = b.tier_with(redis, TierOptions::new().name("redis"));
    }
    if let Some((url, schema)) = &lower.postgres {
        let pg =
            PostgresBackend::connect(PostgresConfig::new(url)?.with_table(schema.clone(), "cache"))
                .await?;
        b = b.tier_with(pg, TierOptions::new().name("postgres"));
    }
    // Metrics only: a tracer provider without exporter records nothing anywhere.
    b.otel(OtelConfig::from_providers(
        meters,
        &SdkTracerProvider::builder().build(),
    ))
    .build()
}

/// Build the registry, the meter provider and the caches.
pub async fn build(lower: &Lower) -> Result<Demo, Box<dyn std::error::Error>> {
    let registry = Registry::new();
    let exporter = opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .build()?;
    let meters = SdkMeterProvider::builder().with_reader(exporter).build();
    let cache = build_cache("demo", lower, &meters).await?;
    let restarted = if lower.redis.is_some() || lower.postgres.is_some() {
        Some(build_cache("demo-restarted", lower, &meters).await?)
    } else {
        None
    };
    Ok(Demo {
        cache,
        restarted,
        registry,
        meters,
    })
}

/// Compute [`ITEMS`] values, read them (and 5 absent keys) [`ROUNDS`] times, then read the
/// items once from the restarted instance.
///
/// On `demo`: `ITEMS` computed, `ITEMS * ROUNDS` L1 hits, `5 * ROUNDS` misses at every tier.
/// On `demo-restarted`: `ITEMS` hits at the tier right below memory.
pub async fn workload(demo: &Demo) -> layercake::Result<()> {
    for i in 0..ITEMS {
        demo.cache
            .get_or_compute(&format!("item-{i}"), move || async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                Ok::<_, std::io::Error>(format!("value of item {i}"))
            })
            .await?;
    }
    for _ in 0..ROUNDS {
        for i in 0..ITEMS + 5 {
            demo.cache.get::<String>(&format!("item-{i}")).await?;
        }
    }
    if let Some(r) = &demo.restarted {
        for i in 0..ITEMS {
            r.get::<String>(&format!("item-{i}")).await?;
        }
    }
    Ok(())
}

/// The registry in the Prometheus text format.
pub fn render(registry: &Registry) -> Vec<u8> {
    let mut out = Vec::new();
    if TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .is_err()
    {
        out = b"# encoding failed\n".to_vec();
    }
    out
}

/// Serve `GET /metrics` (anything else: 404) until the listener fails.
pub async fn serve(listener: TcpListener, registry: Registry) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            let mut n = 0;
            // Read the request head (no body is expected).
            while n < buf.len() {
                match sock.read(&mut buf[n..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(m) => {
                        n += m;
                        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                    }
                }
            }
            let head = String::from_utf8_lossy(&buf[..n]);
            let path = head.split_whitespace().nth(1).unwrap_or("");
            let (status, body) = if head.starts_with("GET ") && path == "/metrics" {
                ("200 OK", render(&registry))
            } else {
                ("404 Not Found", b"not found; try /metrics\n".to_vec())
            };
            let header = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(header.as_bytes()).await;
            let _ = sock.write_all(&body).await;
            let _ = sock.shutdown().await;
        });
    }
}

/// Remove what the demo stored in the lower tiers.
pub async fn clean_up(demo: &Demo) {
    let _ = demo.cache.clear().await;
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lower = Lower {
        redis: std::env::var("REDIS_URL")
            .ok()
            .map(|u| (u, "layercake-example:".to_owned())),
        postgres: std::env::var("DATABASE_URL")
            .ok()
            .map(|u| (u, "layercake_example".to_owned())),
    };
    let demo = build(&lower).await?;
    workload(&demo).await?;
    print!("{}", demo.cache.stats());
    if let Some(r) = &demo.restarted {
        print!("restarted instance:\n{}", r.stats());
    }
    let addr = std::env::var("METRICS_ADDR").unwrap_or_else(|_| "127.0.0.1:9464".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    println!("serving http://{}/metrics", listener.local_addr()?);
    let server = serve(listener, demo.registry.clone());
    match std::env::var("SERVE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(secs) => {
            let _ = tokio::time::timeout(Duration::from_secs(secs), server).await;
        }
        None => server.await,
    }
    clean_up(&demo).await;
    let _ = demo.meters.shutdown();
    Ok(())
}

//! Two instances kept coherent by a backplane.
//!
//! ```sh
//! cargo run -p layercake --features redis,postgres --example two_instances            # Redis pub/sub backplane
//! BACKPLANE=postgres cargo run -p layercake --features redis,postgres --example two_instances
//! ```
//!
//! Two caches in one process stand for two instances of a service: each has its own memory
//! tier (L1) and they share L2 (Redis, or PostgreSQL with `BACKPLANE=postgres`). Instance A
//! reads a value into its L1; instance B updates it; B's write publishes an invalidation, A
//! drops its L1 copy, and A's next read sees the new value from the shared tier.
//! Uses `REDIS_URL` / `DATABASE_URL` or the local defaults.

use std::sync::Arc;
use std::time::{Duration, Instant};

use layercake::{Backend, Backplane, Cache, MemoryBackend, Source};

async fn shared_tier_and_backplane(
    which: &str,
) -> layercake::Result<(Arc<dyn Backend>, Arc<dyn Backplane>, Arc<dyn Backplane>)> {
    if which == "postgres" {
        use layercake::postgres::{
            PostgresBackend, PostgresBackplane, PostgresBackplaneConfig, PostgresConfig,
        };
        let url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let backend = PostgresBackend::connect(
            PostgresConfig::new(&url)?.with_table("layercake_demo", "entries"),
        )
        .await?;
        let channel = "layercake_demo";
        let a =
            PostgresBackplane::connect(PostgresBackplaneConfig::new(&url)?.with_channel(channel))
                .await?;
        let b =
            PostgresBackplane::connect(PostgresBackplaneConfig::new(&url)?.with_channel(channel))
                .await?;
        Ok((Arc::new(backend), Arc::new(a), Arc::new(b)))
    } else {
        use layercake::redis::{RedisBackend, RedisBackplane, RedisBackplaneConfig, RedisConfig};
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let cfg = RedisConfig::new(url).with_cache_name("demo");
        let backend = RedisBackend::connect(cfg.clone()).await?;
        let channel = "layercake-demo";
        let a = RedisBackplane::connect(&cfg, RedisBackplaneConfig::new(channel)).await?;
        let b = RedisBackplane::connect(&cfg, RedisBackplaneConfig::new(channel)).await?;
        Ok((Arc::new(backend), Arc::new(a), Arc::new(b)))
    }
}

#[tokio::main]
async fn main() -> layercake::Result<()> {
    let which = std::env::var("BACKPLANE").unwrap_or_else(|_| "redis".into());
    let (shared, bp_a, bp_b) = shared_tier_and_backplane(&which).await?;
    let instance = |bp: Arc<dyn Backplane>| -> layercake::Result<Cache> {
        Cache::builder("demo")
            .tier(MemoryBackend::with_max_bytes(8 << 20)?)
            .shared_tier(shared.clone())
            .backplane(bp)
            .build()
    };
    let a = instance(bp_a)?;
    let b = instance(bp_b)?;
    // Give both subscribers a moment to be listening.
    tokio::time::sleep(Duration::from_millis(200)).await;

    b.set("price:sku-1", 100u32).await?;
    let first = a
        .get::<u32>("price:sku-1")
        .await?
        .map(|l| (*l.value, l.source));
    println!("A reads price      -> {first:?}  (from the shared tier, now in A's L1)");
    let again = a
        .get::<u32>("price:sku-1")
        .await?
        .map(|l| (*l.value, l.source));
    println!("A reads again      -> {again:?}  (A's L1)");

    let t = Instant::now();
    b.set("price:sku-1", 120u32).await?;
    println!("B updates price to 120 and publishes an invalidation ({which})");
    // Wait (bounded) until A's L1 copy is gone.
    let mut seen = None;
    while t.elapsed() < Duration::from_secs(5) {
        let l = a.get::<u32>("price:sku-1").await?;
        if let Some(l) = l.filter(|l| *l.value == 120) {
            seen = Some((*l.value, l.source, t.elapsed()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    match seen {
        Some((v, source, after)) => {
            println!("A reads price      -> {v} from {source:?}, {after:?} after B's write");
            assert_ne!(
                source,
                Source::Hit { tier: 0 },
                "the new value came from the shared tier"
            );
        }
        None => println!("A still had the old value after 5 s: the backplane did not deliver"),
    }
    a.delete("price:sku-1").await?;
    Ok(())
}

//! The benchmark's world: the services, one backend of each kind (isolated by a random name),
//! the raw clients the baselines use, and helpers that compose caches over them.

use std::sync::Arc;
use std::time::Duration;

use layercake::file::{FileBackend, FileConfig};
use layercake::postgres::{PostgresBackend, PostgresConfig};
use layercake::redis::{ConnectionMode, RedisBackend, RedisConfig};
use layercake::{
    Backend, Cache, Codec, Decision, MemoryBackend, Policy, PolicyContext, TierOptions, TierSet,
};
use layercake_memory::MemoryConfig;
use layercake_testkit::services::{require_postgres, require_redis, unique_id};

use crate::Result;

/// TTL of everything the benchmarks write (long enough that nothing expires during a run).
pub(crate) const TTL: Duration = Duration::from_secs(3600);

/// Read timeout given to the network and file tiers in the benchmarks: generous, so that a
/// burst of machine noise shows up as latency, not as a fall-through.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Services, backends and raw clients of one run.
pub(crate) struct Env {
    /// Random name of the run: Redis key prefix and PostgreSQL schema.
    pub(crate) name: String,
    /// The Redis tier, multiplexed connection mode.
    pub(crate) redis_mux: Arc<RedisBackend>,
    /// The Redis tier, pooled connection mode (same key prefix).
    pub(crate) redis_pool: Arc<RedisBackend>,
    /// The PostgreSQL tier.
    pub(crate) postgres: Arc<PostgresBackend>,
    /// The file tier.
    pub(crate) file: Arc<FileBackend>,
    /// Its directory (removed on drop).
    pub(crate) dir: tempfile::TempDir,
    /// Raw redis-rs multiplexed connection (the baseline of L2).
    pub(crate) raw_redis: redis::aio::MultiplexedConnection,
    /// The PostgreSQL connection string.
    pub(crate) database_url: String,
    /// Raw tokio-postgres client (the baseline of the set through all tiers).
    pub(crate) raw_pg: Arc<tokio_postgres::Client>,
}

/// A policy that stores values only in `tiers`, with a fixed TTL and promotion on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Route {
    /// Where values may live.
    pub(crate) tiers: TierSet,
}

impl Policy for Route {
    fn decide(&self, _ctx: &PolicyContext<'_>) -> Decision {
        Decision {
            tiers: self.tiers,
            ..Decision::ttl(TTL)
        }
    }
}

impl Env {
    /// Connect everything (fails with instructions when a service is missing); the file tier
    /// lives in a fresh directory under `file_dir`.
    pub(crate) async fn connect(file_dir: &std::path::Path) -> Result<Env> {
        let redis_url = require_redis();
        let database_url = require_postgres();
        let name = unique_id("bench");
        let redis_cfg = |mode| {
            RedisConfig::new(&redis_url)
                .with_key_prefix(format!("{name}:"))
                .with_mode(mode)
                .with_operation_timeout(READ_TIMEOUT)
        };
        let redis_mux = RedisBackend::connect(redis_cfg(ConnectionMode::Multiplexed)).await?;
        let redis_pool = RedisBackend::connect(redis_cfg(ConnectionMode::Pool)).await?;
        let postgres = PostgresBackend::connect(
            PostgresConfig::new(&database_url)?.with_table(name.clone(), "entries"),
        )
        .await?;
        let dir = tempfile::Builder::new()
            .prefix("layercake-bench")
            .tempdir_in(file_dir)?;
        let file = FileBackend::open(FileConfig::new(dir.path())).await?;
        let raw_redis = redis::Client::open(redis_url.as_str())?
            .get_multiplexed_async_connection()
            .await?;
        let (raw_pg, conn) = tokio_postgres::connect(&database_url, tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Env {
            name,
            redis_mux: Arc::new(redis_mux),
            redis_pool: Arc::new(redis_pool),
            postgres: Arc::new(postgres),
            file: Arc::new(file),
            dir,
            raw_redis,
            raw_pg: Arc::new(raw_pg),
            database_url,
        })
    }

    /// Remove what the run wrote: Redis keys under the prefix, the PostgreSQL schema (the
    /// file directory goes with `dir`).
    pub(crate) async fn cleanup(&self) {
        let _ = self.redis_mux.clear().await;
        self.postgres.stop_reaper();
        let _ = self
            .raw_pg
            .simple_query(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name))
            .await;
    }

    /// The four tiers, L1 (a fresh memory tier of `l1_bytes`) first.
    pub(crate) fn four_tiers(&self, l1_bytes: u64) -> Result<Vec<Arc<dyn Backend>>> {
        Ok(vec![
            Arc::new(memory(l1_bytes)?),
            self.redis_mux.clone(),
            self.postgres.clone(),
            self.file.clone(),
        ])
    }
}

/// A memory tier bounded to `bytes`.
pub(crate) fn memory(bytes: u64) -> Result<MemoryBackend> {
    Ok(MemoryBackend::new(MemoryConfig::new(bytes))?)
}

/// A cache named `name` over `tiers` with `policy` and `codec`; network and file tiers get
/// [`READ_TIMEOUT`]; OpenTelemetry is disabled (its cost is measured on its own, see
/// `otel.rs`).
pub(crate) fn cache(
    name: &str,
    tiers: Vec<Arc<dyn Backend>>,
    policy: impl Policy,
    codec: Codec,
) -> Result<Cache> {
    let mut b = Cache::builder(name)
        .policy(policy)
        .codec(codec)
        .otel(layercake::OtelConfig::disabled());
    for t in tiers {
        let opts = if t.kind() == "memory" {
            TierOptions::new()
        } else {
            TierOptions::new().read_timeout(Some(READ_TIMEOUT))
        };
        b = b.shared_tier_with(t, opts);
    }
    Ok(b.build()?)
}

/// Route everything to every tier.
pub(crate) fn everywhere() -> Route {
    Route {
        tiers: TierSet::ALL,
    }
}

/// Route everything to the tiers at `positions` only.
pub(crate) fn only(positions: &[usize]) -> Route {
    Route {
        tiers: TierSet::only(positions),
    }
}

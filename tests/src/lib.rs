//! End-to-end and fault suites for layercake (tests live in `tests/tests/`), and the helpers
//! they share: four-tier stacks on the machine's Redis and PostgreSQL (or throwaway servers),
//! each isolated by a random name.

use std::sync::Arc;
use std::time::Duration;

use layercake::{Backend, SharedClock};
use layercake_file::{FileBackend, FileConfig};
use layercake_postgres::{PostgresBackend, PostgresConfig};
use layercake_redis::{RedisBackend, RedisConfig};
use layercake_testkit::services::{require_postgres, require_redis, unique_id};

/// The four real tiers of one test, isolated by a random name.
pub struct Tiers {
    /// L1.
    pub memory: Arc<dyn Backend>,
    /// L2.
    pub redis: Arc<dyn Backend>,
    /// L3.
    pub postgres: Arc<dyn Backend>,
    /// L4.
    pub file: Arc<dyn Backend>,
    /// The random name (Redis key prefix, PostgreSQL schema).
    pub name: String,
    /// The file tier's directory (removed on drop).
    pub dir: tempfile::TempDir,
    /// The Redis URL used.
    pub redis_url: String,
    /// The PostgreSQL URL used.
    pub database_url: String,
}

impl Tiers {
    /// Connect the four tiers on the machine's services (`REDIS_URL` / `DATABASE_URL` or the
    /// local defaults), failing with instructions when one is missing.
    pub async fn connect(clock: SharedClock) -> Tiers {
        let redis_url = require_redis();
        let database_url = require_postgres();
        Self::connect_to(&redis_url, &database_url, clock).await
    }

    /// Connect the four tiers to the given servers.
    pub async fn connect_to(redis_url: &str, database_url: &str, clock: SharedClock) -> Tiers {
        let name = unique_id("e2e");
        let dir = tempfile::tempdir().expect("temp dir");
        let memory = layercake_memory::MemoryBackend::new(
            layercake_memory::MemoryConfig::new(64 << 20).with_clock(clock.clone()),
        )
        .expect("memory tier");
        let redis = RedisBackend::connect(
            RedisConfig::new(redis_url)
                .with_key_prefix(format!("{name}:"))
                .with_clock(clock.clone())
                .with_operation_timeout(Duration::from_millis(200))
                .with_connect_timeout(Duration::from_millis(200)),
        )
        .await
        .expect("redis tier");
        let postgres = PostgresBackend::connect(
            PostgresConfig::new(database_url)
                .expect("postgres url")
                .with_table(name.clone(), "entries")
                .with_clock(clock.clone()),
        )
        .await
        .expect("postgres tier");
        let file = FileBackend::open(FileConfig::new(dir.path()).with_clock(clock))
            .await
            .expect("file tier");
        Tiers {
            memory: Arc::new(memory),
            redis: Arc::new(redis),
            postgres: Arc::new(postgres),
            file: Arc::new(file),
            name,
            dir,
            redis_url: redis_url.to_owned(),
            database_url: database_url.to_owned(),
        }
    }

    /// The tiers in order, L1 first.
    pub fn all(&self) -> [Arc<dyn Backend>; 4] {
        [
            self.memory.clone(),
            self.redis.clone(),
            self.postgres.clone(),
            self.file.clone(),
        ]
    }

    /// A cache builder over the four tiers.
    pub fn builder(&self, name: &str) -> layercake::CacheBuilder {
        let mut b = layercake::Cache::builder(name);
        for t in self.all() {
            b = b.shared_tier(t);
        }
        b
    }

    /// Drop the test's PostgreSQL schema.
    pub async fn cleanup(&self) {
        let _ = self.postgres.clear().await;
        let _ = self.redis.clear().await;
        let _ = drop_schema(&self.database_url, &self.name).await;
    }
}

/// Drop a schema created by a test.
pub async fn drop_schema(database_url: &str, schema: &str) -> Result<(), String> {
    let out = tokio::process::Command::new("psql")
        .arg(database_url)
        .arg("-qc")
        .arg(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .output()
        .await
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into())
    }
}

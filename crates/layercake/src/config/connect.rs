//! Connecting the tiers a [`CacheConfig`] names, and composing them into a [`Cache`].

use std::sync::Arc;
#[cfg(feature = "file")]
use std::time::Duration;

use layercake_core::backplane::Backplane;
use layercake_core::{Backend, Error, HashedKeys, PlainKeys, Result};
use layercake_memory::{MemoryBackend, MemoryConfig};

use super::{CacheConfig, KeyKind};
use crate::{Cache, TierOptions};

/// One tier of a configured hierarchy: its name (`memory`, `redis`, `postgres`, `file`) and
/// its backend.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NamedTier {
    /// The tier name.
    pub name: &'static str,
    /// The backend.
    pub backend: Arc<dyn Backend>,
}

/// The connected tiers and backplane of a [`CacheConfig`], typed, before they are composed
/// (tools read each tier on its own; [`Tiers::cache`] composes them).
#[derive(Debug)]
#[non_exhaustive]
pub struct Tiers {
    /// The memory tier (always present).
    pub memory: Arc<MemoryBackend>,
    /// The Redis tier, when configured.
    #[cfg(feature = "redis")]
    pub redis: Option<Arc<layercake_redis::RedisBackend>>,
    /// The PostgreSQL tier, when configured.
    #[cfg(feature = "postgres")]
    pub postgres: Option<Arc<layercake_postgres::PostgresBackend>>,
    /// The file tier, when configured.
    #[cfg(feature = "file")]
    pub file: Option<Arc<layercake_file::FileBackend>>,
    /// The backplane, when configured.
    pub backplane: Option<Arc<dyn Backplane>>,
}

impl Tiers {
    /// Every tier in order, memory first.
    pub fn all(&self) -> Vec<NamedTier> {
        let mut v = vec![NamedTier {
            name: "memory",
            backend: self.memory.clone() as Arc<dyn Backend>,
        }];
        v.extend(self.below_memory());
        v
    }

    /// The tiers below memory, in order: the ones every instance (Redis, PostgreSQL) or every
    /// process of the host (files) sees.
    pub fn below_memory(&self) -> Vec<NamedTier> {
        #[cfg_attr(
            not(any(feature = "redis", feature = "postgres", feature = "file")),
            expect(unused_mut, reason = "no tier below memory can be configured")
        )]
        let mut v = Vec::new();
        #[cfg(feature = "redis")]
        if let Some(r) = &self.redis {
            v.push(NamedTier {
                name: "redis",
                backend: r.clone() as Arc<dyn Backend>,
            });
        }
        #[cfg(feature = "postgres")]
        if let Some(p) = &self.postgres {
            v.push(NamedTier {
                name: "postgres",
                backend: p.clone() as Arc<dyn Backend>,
            });
        }
        #[cfg(feature = "file")]
        if let Some(f) = &self.file {
            v.push(NamedTier {
                name: "file",
                backend: f.clone() as Arc<dyn Backend>,
            });
        }
        v
    }

    /// Compose the tiers into a [`Cache`] with the configuration's name, keys, policy, codec
    /// and backplane. Needs a Tokio runtime when a backplane is configured.
    pub fn cache(&self, config: &CacheConfig) -> Result<Cache> {
        let ns = config.namespace()?;
        let mut b = Cache::builder(config.name.clone());
        for t in self.all() {
            b = b.shared_tier_with(t.backend, TierOptions::new().name(t.name));
        }
        b = match config.keys {
            KeyKind::Plain => b.keys(PlainKeys::new(ns)),
            KeyKind::Hashed => b.keys(HashedKeys::new(ns)),
        };
        b = b.policy(config.policy()).codec(config.codec());
        if let Some(bp) = &self.backplane {
            b = b.backplane(bp.clone());
        }
        b.build()
    }
}

fn missing_feature(var: &str, feature: &str) -> Error {
    Error::config(format!(
        "{var} is set, but layercake was built without its `{feature}` feature"
    ))
}

impl CacheConfig {
    /// Connect every configured tier and the backplane. Fails on the first tier that cannot
    /// be reached or is misconfigured, naming it.
    pub async fn connect(&self) -> Result<Tiers> {
        self.validate()?;
        let memory = Arc::new(
            MemoryBackend::new(MemoryConfig::new(self.memory_bytes))
                .map_err(|e| e.with_tier("memory"))?,
        );
        #[cfg(feature = "redis")]
        let redis = self.connect_redis().await?.map(Arc::new);
        #[cfg(not(feature = "redis"))]
        if self.redis_url.is_some() {
            return Err(missing_feature("LAYERCAKE_REDIS_URL", "redis"));
        }
        #[cfg(feature = "postgres")]
        let postgres = self.connect_postgres().await?.map(Arc::new);
        #[cfg(not(feature = "postgres"))]
        if self.postgres_url.is_some() {
            return Err(missing_feature("LAYERCAKE_POSTGRES_URL", "postgres"));
        }
        #[cfg(feature = "file")]
        let file = self.open_file().await?.map(Arc::new);
        #[cfg(not(feature = "file"))]
        if self.file_dir.is_some() {
            return Err(missing_feature("LAYERCAKE_FILE_DIR", "file"));
        }
        let backplane: Option<Arc<dyn Backplane>> = match self.backplane_choice() {
            #[cfg(feature = "redis")]
            Some("redis") => match &redis {
                Some(r) => {
                    let mut cfg = layercake_redis::RedisBackplaneConfig::default();
                    if let Some(ch) = &self.backplane_channel {
                        cfg = layercake_redis::RedisBackplaneConfig::new(ch.clone());
                    }
                    let bp = layercake_redis::RedisBackplane::for_backend(r, cfg)
                        .await
                        .map_err(|e| e.with_tier("redis backplane"))?;
                    Some(Arc::new(bp))
                }
                None => None,
            },
            #[cfg(feature = "postgres")]
            Some("postgres") => match &self.postgres_url {
                Some(url) => {
                    let mut cfg = layercake_postgres::PostgresBackplaneConfig::new(url)?;
                    if let Some(ch) = &self.backplane_channel {
                        cfg = cfg.with_channel(ch.clone());
                    }
                    let bp = layercake_postgres::PostgresBackplane::connect(cfg)
                        .await
                        .map_err(|e| e.with_tier("postgres backplane"))?;
                    Some(Arc::new(bp))
                }
                None => None,
            },
            Some(other) => return Err(missing_feature("LAYERCAKE_BACKPLANE", other)),
            None => None,
        };
        Ok(Tiers {
            memory,
            #[cfg(feature = "redis")]
            redis,
            #[cfg(feature = "postgres")]
            postgres,
            #[cfg(feature = "file")]
            file,
            backplane,
        })
    }

    /// Connect the tiers and compose them into a [`Cache`] (see [`connect`](Self::connect)).
    pub async fn build(&self) -> Result<Cache> {
        self.connect().await?.cache(self)
    }

    /// The Redis tier alone, when configured.
    #[cfg(feature = "redis")]
    pub async fn connect_redis(&self) -> Result<Option<layercake_redis::RedisBackend>> {
        let Some(url) = &self.redis_url else {
            return Ok(None);
        };
        let cfg = layercake_redis::RedisConfig::new(url.clone()).with_cache_name(&self.name);
        layercake_redis::RedisBackend::connect(cfg)
            .await
            .map(Some)
            .map_err(|e| e.with_tier("redis"))
    }

    /// The PostgreSQL tier alone, when configured (its reaper runs only with
    /// [`background_tasks`](CacheConfig::background_tasks)).
    #[cfg(feature = "postgres")]
    pub async fn connect_postgres(&self) -> Result<Option<layercake_postgres::PostgresBackend>> {
        let Some(url) = &self.postgres_url else {
            return Ok(None);
        };
        let (schema, table) = self.postgres_table_parts()?;
        let reaper = self
            .background_tasks
            .then(layercake_postgres::ReaperConfig::default);
        let cfg = layercake_postgres::PostgresConfig::new(url)
            .map_err(|e| e.with_tier("postgres"))?
            .with_table(schema, table)
            .with_reaper(reaper);
        layercake_postgres::PostgresBackend::connect(cfg)
            .await
            .map(Some)
            .map_err(|e| e.with_tier("postgres"))
    }

    /// The file tier alone, when configured (its periodic sweep runs only with
    /// [`background_tasks`](CacheConfig::background_tasks)).
    #[cfg(feature = "file")]
    pub async fn open_file(&self) -> Result<Option<layercake_file::FileBackend>> {
        let Some(dir) = &self.file_dir else {
            return Ok(None);
        };
        let sweep = self.background_tasks.then(|| Duration::from_secs(60));
        let cfg = layercake_file::FileConfig::new(dir.clone())
            .with_max_bytes(self.file_max_bytes)
            .with_sweep_interval(sweep);
        layercake_file::FileBackend::open(cfg)
            .await
            .map(Some)
            .map_err(|e| e.with_tier("file"))
    }
}

//! What every command starts from: the configuration (with the command line's overrides),
//! the connected tiers, and the key strategy.

use std::sync::Arc;

use layercake::config::{CacheConfig, NamedTier, Tiers};
use layercake::{Cache, Key, KeyStrategy, KeyStrategyExt};

use crate::cli::{Cli, KeyArg};
use crate::exit::Failure;

/// The configuration of the environment with `--namespace` / `--key-version` applied, and
/// with the PostgreSQL reaper and the file sweep off: the tool observes, it does not tidy up.
pub(crate) fn load_config(cli: &Cli) -> Result<CacheConfig, Failure> {
    let mut c = CacheConfig::from_env()?;
    if let Some(ns) = &cli.namespace {
        c.namespace = ns.clone();
    }
    if let Some(v) = cli.key_version {
        c.key_version = v;
    }
    c.background_tasks = false;
    c.validate()?;
    Ok(c)
}

/// A connected configuration.
pub(crate) struct Ctx {
    pub(crate) config: CacheConfig,
    pub(crate) tiers: Tiers,
    pub(crate) keys: Arc<dyn KeyStrategy>,
    pub(crate) json: bool,
}

impl Ctx {
    /// Connect every configured tier (failing on the first that cannot be reached).
    pub(crate) async fn connect(cli: &Cli) -> Result<Ctx, Failure> {
        let config = load_config(cli)?;
        let tiers = config.connect().await?;
        let keys = config.key_strategy()?;
        Ok(Ctx {
            config,
            tiers,
            keys,
            json: cli.json,
        })
    }

    /// The stored key for a key argument.
    pub(crate) fn key(&self, arg: &KeyArg) -> Result<Key, Failure> {
        if arg.raw {
            return Ok(Key::new(&arg.key)?);
        }
        if arg.request {
            let v: serde_json::Value = serde_json::from_str(&arg.key)
                .map_err(|e| Failure::usage(format!("--request: KEY is not JSON: {e}")))?;
            return Ok(self.keys.key_for(&v)?);
        }
        Ok(self.keys.key_for_text(&arg.key)?)
    }

    /// The whole key prefix for a prefix argument.
    pub(crate) fn prefix(&self, prefix: &str, raw: bool) -> String {
        if raw {
            prefix.to_owned()
        } else {
            format!("{}{prefix}", self.keys.namespace().prefix())
        }
    }

    /// The tiers below memory, in order.
    pub(crate) fn below(&self) -> Vec<NamedTier> {
        self.tiers.below_memory()
    }

    /// The configured cache, composed from the connected tiers (with the backplane).
    pub(crate) fn cache(&self) -> Result<Cache, Failure> {
        Ok(self.tiers.cache(&self.config)?)
    }

    /// Fail with a usage error unless the tiers below memory include at least one.
    pub(crate) fn need_tiers(&self) -> Result<Vec<NamedTier>, Failure> {
        let below = self.below();
        if below.is_empty() {
            return Err(Failure::usage(
                "no tier below memory is configured: set LAYERCAKE_REDIS_URL, \
                 LAYERCAKE_POSTGRES_URL or LAYERCAKE_FILE_DIR (see `layercake config`)",
            ));
        }
        Ok(below)
    }

    /// The backplane's kind and whether it is connected, for reports.
    pub(crate) fn backplane_state(&self) -> serde_json::Value {
        match &self.tiers.backplane {
            Some(bp) => serde_json::json!({"kind": bp.kind(), "connected": bp.is_connected()}),
            None => serde_json::Value::Null,
        }
    }
}

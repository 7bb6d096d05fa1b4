//! [`CacheConfig`]: one configuration, read from the environment (or a file through serde),
//! that a service and the `layercake` operator tool share.
//!
//! The hierarchy is built from what is set: a memory tier always, then Redis when a Redis URL
//! is set, PostgreSQL when a PostgreSQL URL is set, and a file tier when a directory is set —
//! "Redis when `REDIS_URL` is set, else memory + files" is the same code with a different
//! environment. Tiers are named `memory`, `redis`, `postgres` and `file`.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `LAYERCAKE_NAME` | `default` | cache name: metrics, and the Redis key prefix `lc:{name}:` |
//! | `LAYERCAKE_NAMESPACE` | `default` | namespace of the keys (`{namespace}:v{version}:…`) |
//! | `LAYERCAKE_KEY_VERSION` | `1` | key version; bump it to invalidate the namespace |
//! | `LAYERCAKE_KEYS` | `plain` | `plain` (readable keys) or `hashed` (128-bit digests) |
//! | `LAYERCAKE_CODEC` | `json` | `json`, `msgpack` or `postcard` |
//! | `LAYERCAKE_TTL` | `5m` | lifetime of a value (`250ms`, `30s`, `5m`, `24h`, `7d`) |
//! | `LAYERCAKE_STALE_FOR` | `0s` | fail-safe window kept after expiry |
//! | `LAYERCAKE_TTLS` | (none) | per-namespace lifetimes, `catalog=24h,search=1h` |
//! | `LAYERCAKE_MEMORY_BYTES` | `64MiB` | bound of the memory tier |
//! | `LAYERCAKE_REDIS_URL`, else `REDIS_URL` | (none) | Redis tier (`redis://` or `rediss://`) |
//! | `LAYERCAKE_POSTGRES_URL`, else `DATABASE_URL` | (none) | PostgreSQL tier |
//! | `LAYERCAKE_POSTGRES_TABLE` | `layercake.cache` | `schema.table` of the PostgreSQL tier |
//! | `LAYERCAKE_FILE_DIR` | (none) | directory of the file tier |
//! | `LAYERCAKE_FILE_MAX_BYTES` | `1GiB` | bound of the file tier |
//! | `LAYERCAKE_BACKPLANE` | `auto` | `auto` (Redis if set, else PostgreSQL, else none), `redis`, `postgres`, `none` |
//! | `LAYERCAKE_BACKPLANE_CHANNEL` | backend's | channel name (`layercake:backplane` on Redis, `layercake` on PostgreSQL) |
//!
//! A variable set to the empty string counts as not set, and an empty `LAYERCAKE_REDIS_URL` /
//! `LAYERCAKE_POSTGRES_URL` also stops the fall-back to `REDIS_URL` / `DATABASE_URL`.
//! Connection strings are shown only through [`redact`] (`Debug` and `Display` of the
//! configuration use it), so a password never reaches a log.
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> layercake::Result<()> {
//! use layercake::config::CacheConfig;
//!
//! let cache = CacheConfig::from_env()?.build().await?;
//! cache.set("greeting", "hello".to_string()).await?;
//! println!("tiers: {:?}", cache.tier_names()); // e.g. ["memory", "redis"]
//! # Ok(()) }
//! ```

mod connect;
mod env;
mod parse;
mod redact;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use layercake_core::{
    Codec, Error, FixedTtl, HashedKeys, KeyStrategy, Namespace, NamespaceTable, PlainKeys, Policy,
    PolicyExt, Result,
};
use serde::Deserialize;

pub use connect::{NamedTier, Tiers};
pub use redact::redact;

/// How keys are made from the caller's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum KeyKind {
    /// `{namespace}:v{version}:{text}`: readable ([`PlainKeys`]).
    #[default]
    Plain,
    /// `{namespace}:v{version}:{32 hex}`: a digest of the text ([`HashedKeys`]).
    Hashed,
}

/// The payload format of values written by the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum CodecKind {
    /// JSON (readable; the default).
    #[default]
    Json,
    /// MessagePack.
    Msgpack,
    /// postcard (compact, not self-describing).
    Postcard,
}

/// Which backplane keeps the memory tiers of several instances coherent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum BackplaneKind {
    /// Redis pub/sub when Redis is configured, else PostgreSQL LISTEN/NOTIFY when PostgreSQL
    /// is configured, else none.
    #[default]
    Auto,
    /// Redis pub/sub (needs a Redis URL).
    Redis,
    /// PostgreSQL LISTEN/NOTIFY (needs a PostgreSQL URL).
    Postgres,
    /// No backplane: other instances keep their memory copies until they expire.
    None,
}

/// The configuration of a cache built from the environment or a configuration file.
///
/// Build one with [`from_env`](CacheConfig::from_env), [`from_vars`](CacheConfig::from_vars)
/// (tests), serde (every field optional, durations and sizes as text: `"5m"`, `"64MiB"`), or
/// [`CacheConfig::default`] and field assignments. See the [module documentation](self) for
/// the variables.
///
/// ```
/// use layercake::config::CacheConfig;
/// let cfg = CacheConfig::from_vars([
///     ("LAYERCAKE_REDIS_URL", "redis://app:s3cret@cache:6379"),
///     ("LAYERCAKE_FILE_DIR", "/var/cache/app"),
///     ("LAYERCAKE_NAMESPACE", "catalog"),
///     ("LAYERCAKE_TTL", "1h"),
/// ])
/// .unwrap();
/// assert_eq!(cfg.tier_names(), ["memory", "redis", "file"]);
/// assert!(!format!("{cfg:?}{cfg}").contains("s3cret"));
/// ```
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct CacheConfig {
    /// Cache name: metrics, and the Redis key prefix `lc:{name}:`.
    pub name: String,
    /// Namespace of the keys.
    pub namespace: String,
    /// Key version (bump to invalidate every key of the namespace).
    pub key_version: u32,
    /// How keys are made.
    pub keys: KeyKind,
    /// Payload format.
    pub codec: CodecKind,
    /// Lifetime of a value.
    #[serde(with = "text::duration")]
    pub ttl: Duration,
    /// Fail-safe window after expiry (zero: none).
    #[serde(with = "text::duration")]
    pub stale_for: Duration,
    /// Lifetimes of other namespaces (`NamespaceTable`), e.g. `catalog` → 24 h.
    #[serde(with = "text::ttls")]
    pub namespace_ttls: Vec<(String, Duration)>,
    /// Bound of the memory tier, bytes.
    #[serde(with = "text::bytes")]
    pub memory_bytes: u64,
    /// Redis URL; `None`: no Redis tier.
    pub redis_url: Option<String>,
    /// PostgreSQL connection string; `None`: no PostgreSQL tier.
    pub postgres_url: Option<String>,
    /// `schema.table` of the PostgreSQL tier.
    pub postgres_table: String,
    /// Directory of the file tier; `None`: no file tier.
    pub file_dir: Option<PathBuf>,
    /// Bound of the file tier, bytes.
    #[serde(with = "text::bytes")]
    pub file_max_bytes: u64,
    /// The backplane.
    pub backplane: BackplaneKind,
    /// Backplane channel; `None`: the backend's default.
    pub backplane_channel: Option<String>,
    /// Start the PostgreSQL reaper and the file sweep (on for services; the operator tool
    /// turns them off so that it observes without changing).
    #[serde(skip)]
    pub background_tasks: bool,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            name: "default".to_owned(),
            namespace: "default".to_owned(),
            key_version: 1,
            keys: KeyKind::Plain,
            codec: CodecKind::Json,
            ttl: Duration::from_secs(300),
            stale_for: Duration::ZERO,
            namespace_ttls: Vec::new(),
            memory_bytes: 64 << 20,
            redis_url: None,
            postgres_url: None,
            postgres_table: "layercake.cache".to_owned(),
            file_dir: None,
            file_max_bytes: 1 << 30,
            backplane: BackplaneKind::Auto,
            backplane_channel: None,
            background_tasks: true,
        }
    }
}

/// Every variable [`CacheConfig::from_vars`] reads.
pub const VARIABLES: &[&str] = &[
    "LAYERCAKE_NAME",
    "LAYERCAKE_NAMESPACE",
    "LAYERCAKE_KEY_VERSION",
    "LAYERCAKE_KEYS",
    "LAYERCAKE_CODEC",
    "LAYERCAKE_TTL",
    "LAYERCAKE_STALE_FOR",
    "LAYERCAKE_TTLS",
    "LAYERCAKE_MEMORY_BYTES",
    "LAYERCAKE_REDIS_URL",
    "REDIS_URL",
    "LAYERCAKE_POSTGRES_URL",
    "DATABASE_URL",
    "LAYERCAKE_POSTGRES_TABLE",
    "LAYERCAKE_FILE_DIR",
    "LAYERCAKE_FILE_MAX_BYTES",
    "LAYERCAKE_BACKPLANE",
    "LAYERCAKE_BACKPLANE_CHANNEL",
];

impl CacheConfig {
    /// Check the values that can be checked without connecting: namespace name, table name,
    /// sizes, and a backplane whose server is configured.
    pub fn validate(&self) -> Result<()> {
        Namespace::new(&self.namespace, self.key_version)?;
        for (ns, _) in &self.namespace_ttls {
            Namespace::new(ns, 1)?;
        }
        if self.name.is_empty() || self.name.chars().any(char::is_control) {
            return Err(Error::config(
                "LAYERCAKE_NAME must be non-empty text without control characters",
            ));
        }
        if self.ttl.is_zero() {
            return Err(Error::config("LAYERCAKE_TTL must be above zero"));
        }
        if self.memory_bytes == 0 {
            return Err(Error::config("LAYERCAKE_MEMORY_BYTES must be above zero"));
        }
        if self.file_max_bytes == 0 {
            return Err(Error::config("LAYERCAKE_FILE_MAX_BYTES must be above zero"));
        }
        self.postgres_table_parts()?;
        match self.backplane {
            BackplaneKind::Redis if self.redis_url.is_none() => Err(Error::config(
                "LAYERCAKE_BACKPLANE=redis needs LAYERCAKE_REDIS_URL (or REDIS_URL)",
            )),
            BackplaneKind::Postgres if self.postgres_url.is_none() => Err(Error::config(
                "LAYERCAKE_BACKPLANE=postgres needs LAYERCAKE_POSTGRES_URL (or DATABASE_URL)",
            )),
            _ => Ok(()),
        }
    }

    /// `(schema, table)` of the PostgreSQL tier.
    pub fn postgres_table_parts(&self) -> Result<(&str, &str)> {
        match self.postgres_table.split_once('.') {
            Some((s, t)) if !s.is_empty() && !t.is_empty() => Ok((s, t)),
            _ => Err(Error::config(format!(
                "LAYERCAKE_POSTGRES_TABLE={:?} must be schema.table (e.g. layercake.cache)",
                self.postgres_table
            ))),
        }
    }

    /// The names of the tiers this configuration builds, in order.
    pub fn tier_names(&self) -> Vec<&'static str> {
        let mut v = vec!["memory"];
        if self.redis_url.is_some() {
            v.push("redis");
        }
        if self.postgres_url.is_some() {
            v.push("postgres");
        }
        if self.file_dir.is_some() {
            v.push("file");
        }
        v
    }

    /// The backplane this configuration connects: `"redis"`, `"postgres"` or `None`.
    pub fn backplane_choice(&self) -> Option<&'static str> {
        match self.backplane {
            BackplaneKind::Auto if self.redis_url.is_some() => Some("redis"),
            BackplaneKind::Auto if self.postgres_url.is_some() => Some("postgres"),
            BackplaneKind::Auto | BackplaneKind::None => None,
            BackplaneKind::Redis => Some("redis"),
            BackplaneKind::Postgres => Some("postgres"),
        }
    }

    /// The namespace of the keys.
    pub fn namespace(&self) -> Result<Namespace> {
        Namespace::new(&self.namespace, self.key_version)
    }

    /// The key strategy.
    pub fn key_strategy(&self) -> Result<Arc<dyn KeyStrategy>> {
        let ns = self.namespace()?;
        Ok(match self.keys {
            KeyKind::Plain => Arc::new(PlainKeys::new(ns)),
            KeyKind::Hashed => Arc::new(HashedKeys::new(ns)),
        })
    }

    /// The policy: the TTL (with the per-namespace table) and the fail-safe window.
    pub fn policy(&self) -> Arc<dyn Policy> {
        let mut table = NamespaceTable::new(FixedTtl::new(self.ttl));
        for (ns, ttl) in &self.namespace_ttls {
            table = table.with(ns.clone(), FixedTtl::new(*ttl));
        }
        if self.stale_for.is_zero() {
            Arc::new(table)
        } else {
            Arc::new(table.stale_for(self.stale_for))
        }
    }

    /// The codec.
    pub fn codec(&self) -> Codec {
        match self.codec {
            CodecKind::Json => Codec::json(),
            CodecKind::Msgpack => Codec::msgpack(),
            CodecKind::Postcard => Codec::postcard(),
        }
    }

    /// Every setting as `(name, value)` text, connection strings redacted — what `Display`
    /// prints, one per line.
    pub fn summary(&self) -> Vec<(&'static str, String)> {
        let opt = |v: &Option<String>| v.as_deref().map_or_else(|| "-".to_owned(), redact);
        vec![
            ("name", self.name.clone()),
            ("namespace", self.namespace.clone()),
            ("key_version", self.key_version.to_string()),
            ("keys", format!("{:?}", self.keys).to_lowercase()),
            ("codec", format!("{:?}", self.codec).to_lowercase()),
            ("ttl", parse::format_duration(self.ttl)),
            ("stale_for", parse::format_duration(self.stale_for)),
            (
                "namespace_ttls",
                if self.namespace_ttls.is_empty() {
                    "-".to_owned()
                } else {
                    self.namespace_ttls
                        .iter()
                        .map(|(n, d)| format!("{n}={}", parse::format_duration(*d)))
                        .collect::<Vec<_>>()
                        .join(",")
                },
            ),
            ("memory_bytes", parse::format_bytes(self.memory_bytes)),
            ("redis_url", opt(&self.redis_url)),
            ("postgres_url", opt(&self.postgres_url)),
            ("postgres_table", self.postgres_table.clone()),
            (
                "file_dir",
                self.file_dir
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |d| d.display().to_string()),
            ),
            ("file_max_bytes", parse::format_bytes(self.file_max_bytes)),
            (
                "backplane",
                self.backplane_choice().unwrap_or("none").to_owned(),
            ),
            (
                "backplane_channel",
                self.backplane_channel
                    .clone()
                    .unwrap_or_else(|| "-".to_owned()),
            ),
            ("tiers", self.tier_names().join(",")),
        ]
    }
}

/// Pick the value named `text` (case-insensitive) or fail naming the variable and the choices.
fn choice<T: Copy>(var: &str, text: &str, options: &[(&str, T)]) -> Result<T> {
    options
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(text))
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            Error::config(format!(
                "{var}={text:?} must be one of {}",
                names.join(", ")
            ))
        })
}

impl fmt::Display for CacheConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, v) in self.summary() {
            writeln!(f, "{k:<18} {v}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for CacheConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("CacheConfig");
        for (k, v) in self.summary() {
            d.field(k, &v);
        }
        d.finish()
    }
}

mod text;

#[cfg(test)]
mod tests;

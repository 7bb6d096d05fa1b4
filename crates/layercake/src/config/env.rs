//! Reading a [`CacheConfig`] from the environment or from `(name, value)` pairs.

use super::*;

impl CacheConfig {
    /// Read the configuration from the process environment (see the [module
    /// documentation](crate::config)); an invalid value is a `Config` error naming the variable.
    pub fn from_env() -> Result<CacheConfig> {
        Self::from_vars(
            VARIABLES
                .iter()
                .filter_map(|name| std::env::var(name).ok().map(|v| (*name, v))),
        )
    }

    /// Read the configuration from `(name, value)` pairs, as [`from_env`](Self::from_env) reads
    /// the environment. Unknown names are ignored.
    pub fn from_vars<I, K, V>(vars: I) -> Result<CacheConfig>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let vars: Vec<(String, String)> = vars
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
            .collect();
        // The last occurrence wins, as in an environment.
        let raw = |name: &str| -> Option<&str> {
            vars.iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let get = |name: &str| raw(name).map(str::trim).filter(|v| !v.is_empty());
        let mut c = CacheConfig::default();
        if let Some(v) = get("LAYERCAKE_NAME") {
            c.name = v.to_owned();
        }
        if let Some(v) = get("LAYERCAKE_NAMESPACE") {
            c.namespace = v.to_owned();
        }
        if let Some(v) = get("LAYERCAKE_KEY_VERSION") {
            c.key_version = v.parse().map_err(|_| {
                Error::config(format!(
                    "LAYERCAKE_KEY_VERSION={v:?} is not a whole number from 0 to {}",
                    u32::MAX
                ))
            })?;
        }
        if let Some(v) = get("LAYERCAKE_KEYS") {
            c.keys = choice(
                "LAYERCAKE_KEYS",
                v,
                &[("plain", KeyKind::Plain), ("hashed", KeyKind::Hashed)],
            )?;
        }
        if let Some(v) = get("LAYERCAKE_CODEC") {
            c.codec = choice(
                "LAYERCAKE_CODEC",
                v,
                &[
                    ("json", CodecKind::Json),
                    ("msgpack", CodecKind::Msgpack),
                    ("postcard", CodecKind::Postcard),
                ],
            )?;
        }
        if let Some(v) = get("LAYERCAKE_TTL") {
            c.ttl = parse::duration("LAYERCAKE_TTL", v)?;
        }
        if let Some(v) = get("LAYERCAKE_STALE_FOR") {
            c.stale_for = parse::duration("LAYERCAKE_STALE_FOR", v)?;
        }
        if let Some(v) = get("LAYERCAKE_TTLS") {
            c.namespace_ttls = parse::namespace_ttls("LAYERCAKE_TTLS", v)?;
        }
        if let Some(v) = get("LAYERCAKE_MEMORY_BYTES") {
            c.memory_bytes = parse::bytes("LAYERCAKE_MEMORY_BYTES", v)?;
        }
        c.redis_url = match raw("LAYERCAKE_REDIS_URL") {
            Some(_) => get("LAYERCAKE_REDIS_URL").map(str::to_owned),
            None => get("REDIS_URL").map(str::to_owned),
        };
        c.postgres_url = match raw("LAYERCAKE_POSTGRES_URL") {
            Some(_) => get("LAYERCAKE_POSTGRES_URL").map(str::to_owned),
            None => get("DATABASE_URL").map(str::to_owned),
        };
        if let Some(v) = get("LAYERCAKE_POSTGRES_TABLE") {
            c.postgres_table = v.to_owned();
        }
        c.file_dir = get("LAYERCAKE_FILE_DIR").map(PathBuf::from);
        if let Some(v) = get("LAYERCAKE_FILE_MAX_BYTES") {
            c.file_max_bytes = parse::bytes("LAYERCAKE_FILE_MAX_BYTES", v)?;
        }
        if let Some(v) = get("LAYERCAKE_BACKPLANE") {
            c.backplane = choice(
                "LAYERCAKE_BACKPLANE",
                v,
                &[
                    ("auto", BackplaneKind::Auto),
                    ("redis", BackplaneKind::Redis),
                    ("postgres", BackplaneKind::Postgres),
                    ("none", BackplaneKind::None),
                ],
            )?;
        }
        c.backplane_channel = get("LAYERCAKE_BACKPLANE_CHANNEL").map(str::to_owned);
        c.validate()?;
        Ok(c)
    }
}

//! Read-only views of the server and of one entry, for operator tools: what `INFO`, `CONFIG
//! GET`, `TIME` and `PTTL` say.

use std::collections::HashMap;
use std::time::Duration;

use layercake_core::{Key, Result};
use redis::Value;

use crate::backend::RedisBackend;

/// What the Redis server reports about itself (`INFO`, plus `CONFIG GET save` when allowed).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisServerInfo {
    /// `redis_version`.
    pub version: String,
    /// `maxmemory` in bytes; 0 means no bound.
    pub maxmemory: u64,
    /// `maxmemory_policy` (`noeviction`, `allkeys-lru`, `volatile-ttl`, …).
    pub maxmemory_policy: String,
    /// `used_memory` in bytes.
    pub used_memory: u64,
    /// `evicted_keys` since the server started.
    pub evicted_keys: u64,
    /// Whether the append-only file is on.
    pub aof_enabled: bool,
    /// The RDB snapshot schedule (`CONFIG GET save`), `None` when the server refuses `CONFIG`
    /// (managed services often do); an empty string means snapshots are off.
    pub rdb_save: Option<String>,
    /// Whether the last RDB snapshot succeeded (`rdb_last_bgsave_status:ok`).
    pub rdb_last_save_ok: bool,
    /// `role` (`master` / `slave`).
    pub role: String,
    /// `redis_mode` (`standalone`, `cluster`, `sentinel`).
    pub mode: String,
}

/// How long Redis itself will keep an entry (`PTTL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerTtl {
    /// No such key.
    Missing,
    /// The key has no expiry (never written so by this backend).
    Persistent,
    /// Redis removes the key after this long.
    Expires(Duration),
}

fn info_map(text: &str) -> HashMap<&str, &str> {
    text.lines()
        .filter_map(|l| l.trim_end_matches('\r').split_once(':'))
        .collect()
}

impl RedisBackend {
    /// Read the server's version, memory bound and policy, eviction count and persistence
    /// settings (in cluster mode, from whichever node answers).
    pub async fn server_info(&self) -> Result<RedisServerInfo> {
        let text: String = self.redis().cmd("INFO", &redis::cmd("INFO")).await?;
        let m = info_map(&text);
        let num = |k: &str| {
            m.get(k)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        let txt = |k: &str| m.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
        let mut save = redis::cmd("CONFIG");
        save.arg("GET").arg("save");
        let rdb_save = match self.redis().cmd::<Value>("CONFIG GET", &save).await {
            Ok(v) => config_value(v),
            Err(_) => None,
        };
        Ok(RedisServerInfo {
            version: txt("redis_version"),
            maxmemory: num("maxmemory"),
            maxmemory_policy: txt("maxmemory_policy"),
            used_memory: num("used_memory"),
            evicted_keys: num("evicted_keys"),
            aof_enabled: num("aof_enabled") == 1,
            rdb_save,
            rdb_last_save_ok: txt("rdb_last_bgsave_status") == "ok",
            role: txt("role"),
            mode: txt("redis_mode"),
        })
    }

    /// The server's clock (`TIME`), in microseconds since the Unix epoch.
    pub async fn server_time_micros(&self) -> Result<u64> {
        let (secs, micros): (u64, u64) = self.redis().cmd("TIME", &redis::cmd("TIME")).await?;
        Ok(secs.saturating_mul(1_000_000).saturating_add(micros))
    }

    /// How long Redis will keep `key`'s entry (`PTTL` of its Redis key).
    pub async fn server_ttl(&self, key: &Key) -> Result<ServerTtl> {
        let mut c = redis::cmd("PTTL");
        c.arg(format!("{}{}", self.key_prefix(), key.as_str()));
        let ms: i64 = self.redis().cmd("PTTL", &c).await?;
        Ok(match ms {
            -2 => ServerTtl::Missing,
            ms if ms < 0 => ServerTtl::Persistent,
            ms => ServerTtl::Expires(Duration::from_millis(ms.unsigned_abs())),
        })
    }
}

/// The value of a one-parameter `CONFIG GET` reply (a flat array or a RESP3 map).
fn config_value(v: Value) -> Option<String> {
    let text = |v: &Value| match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    match v {
        Value::Array(items) => items.get(1).and_then(text),
        Value::Map(pairs) => pairs.first().and_then(|(_, v)| text(v)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_lines_and_config_replies_parse() {
        let m = info_map("# Server\r\nredis_version:7.2.4\r\nmaxmemory_policy:noeviction\r\n");
        assert_eq!(m.get("redis_version"), Some(&"7.2.4"));
        assert_eq!(m.get("maxmemory_policy"), Some(&"noeviction"));
        let flat = Value::Array(vec![
            Value::BulkString(b"save".to_vec()),
            Value::BulkString(b"3600 1".to_vec()),
        ]);
        assert_eq!(config_value(flat).as_deref(), Some("3600 1"));
        let map = Value::Map(vec![(
            Value::BulkString(b"save".to_vec()),
            Value::BulkString(Vec::new()),
        )]);
        assert_eq!(config_value(map).as_deref(), Some(""));
    }
}

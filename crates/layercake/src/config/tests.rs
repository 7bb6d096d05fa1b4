//! Reading the configuration from variables and from serde, and its redacted display.

use std::path::PathBuf;
use std::time::Duration;

use super::*;

#[test]
fn defaults_build_memory_only() {
    let c = CacheConfig::from_vars(Vec::<(String, String)>::new()).unwrap();
    assert_eq!(c.tier_names(), ["memory"]);
    assert_eq!(c.backplane_choice(), None);
    assert_eq!(c.namespace().unwrap().prefix(), "default:v1:");
    assert_eq!(c.ttl, Duration::from_secs(300));
    assert_eq!(c.memory_bytes, 64 << 20);
}

#[test]
fn every_variable_is_read() {
    let c = CacheConfig::from_vars([
        ("LAYERCAKE_NAME", "orders"),
        ("LAYERCAKE_NAMESPACE", "catalog"),
        ("LAYERCAKE_KEY_VERSION", "7"),
        ("LAYERCAKE_KEYS", "Hashed"),
        ("LAYERCAKE_CODEC", "msgpack"),
        ("LAYERCAKE_TTL", "1h"),
        ("LAYERCAKE_STALE_FOR", "10m"),
        ("LAYERCAKE_TTLS", "search=30s"),
        ("LAYERCAKE_MEMORY_BYTES", "8MiB"),
        ("LAYERCAKE_REDIS_URL", "redis://127.0.0.1:6379"),
        (
            "LAYERCAKE_POSTGRES_URL",
            "postgres://postgres@127.0.0.1/test",
        ),
        ("LAYERCAKE_POSTGRES_TABLE", "app.cache"),
        ("LAYERCAKE_FILE_DIR", "/tmp/lc"),
        ("LAYERCAKE_FILE_MAX_BYTES", "2GiB"),
        ("LAYERCAKE_BACKPLANE", "postgres"),
        ("LAYERCAKE_BACKPLANE_CHANNEL", "orders_bp"),
    ])
    .unwrap();
    assert_eq!(c.name, "orders");
    assert_eq!(c.namespace().unwrap().prefix(), "catalog:v7:");
    assert_eq!(c.keys, KeyKind::Hashed);
    assert_eq!(c.codec, CodecKind::Msgpack);
    assert_eq!(c.ttl, Duration::from_secs(3600));
    assert_eq!(c.stale_for, Duration::from_secs(600));
    assert_eq!(
        c.namespace_ttls,
        vec![("search".to_owned(), Duration::from_secs(30))]
    );
    assert_eq!(c.memory_bytes, 8 << 20);
    assert_eq!(c.postgres_table_parts().unwrap(), ("app", "cache"));
    assert_eq!(c.file_dir, Some(PathBuf::from("/tmp/lc")));
    assert_eq!(c.file_max_bytes, 2 << 30);
    assert_eq!(c.tier_names(), ["memory", "redis", "postgres", "file"]);
    assert_eq!(c.backplane_choice(), Some("postgres"));
    assert_eq!(c.backplane_channel.as_deref(), Some("orders_bp"));
    let k = c.key_strategy().unwrap().key_for_text("x").unwrap();
    assert_eq!(k.len(), "catalog:v7:".len() + 32);
}

#[test]
fn usual_variables_are_the_fallback_and_empty_turns_a_tier_off() {
    let c = CacheConfig::from_vars([
        ("REDIS_URL", "redis://r:6379"),
        ("DATABASE_URL", "postgres://p/db"),
    ])
    .unwrap();
    assert_eq!(c.tier_names(), ["memory", "redis", "postgres"]);
    assert_eq!(c.backplane_choice(), Some("redis"));
    let c = CacheConfig::from_vars([
        ("REDIS_URL", "redis://r:6379"),
        ("LAYERCAKE_REDIS_URL", ""),
        ("DATABASE_URL", "postgres://p/db"),
        ("LAYERCAKE_POSTGRES_URL", "postgres://mine/db"),
    ])
    .unwrap();
    assert_eq!(c.tier_names(), ["memory", "postgres"]);
    assert_eq!(c.postgres_url.as_deref(), Some("postgres://mine/db"));
    assert_eq!(c.backplane_choice(), Some("postgres"));
    let c = CacheConfig::from_vars([("REDIS_URL", "redis://r"), ("LAYERCAKE_BACKPLANE", "none")])
        .unwrap();
    assert_eq!(c.backplane_choice(), None);
}

#[test]
fn bad_values_name_their_variable() {
    for (var, val, says) in [
        ("LAYERCAKE_KEY_VERSION", "two", "LAYERCAKE_KEY_VERSION"),
        ("LAYERCAKE_KEYS", "md5", "plain, hashed"),
        ("LAYERCAKE_TTL", "soon", "LAYERCAKE_TTL"),
        ("LAYERCAKE_TTL", "0s", "above zero"),
        ("LAYERCAKE_MEMORY_BYTES", "big", "LAYERCAKE_MEMORY_BYTES"),
        ("LAYERCAKE_NAMESPACE", "bad:ns", "namespace"),
        ("LAYERCAKE_POSTGRES_TABLE", "cache", "schema.table"),
        ("LAYERCAKE_BACKPLANE", "redis", "needs LAYERCAKE_REDIS_URL"),
        ("LAYERCAKE_CODEC", "xml", "json, msgpack, postcard"),
    ] {
        let e = CacheConfig::from_vars([(var, val)]).unwrap_err();
        assert_eq!(e.kind(), layercake_core::ErrorKind::Config);
        assert!(e.to_string().contains(says), "{var}={val}: {e}");
    }
}

#[test]
fn display_and_debug_never_show_a_password() {
    let c = CacheConfig::from_vars([
        (
            "LAYERCAKE_REDIS_URL",
            "rediss://app:r3dis-secret@cache:6380/0",
        ),
        (
            "LAYERCAKE_POSTGRES_URL",
            "host=db user=app password=pg-secret dbname=app",
        ),
    ])
    .unwrap();
    let shown = format!("{c}\n{c:?}");
    assert!(
        !shown.contains("r3dis-secret") && !shown.contains("pg-secret"),
        "{shown}"
    );
    assert!(shown.contains("rediss://app:***@cache:6380/0"), "{shown}");
    assert!(shown.contains("password=***"), "{shown}");
    assert!(
        shown.contains("tiers              memory,redis,postgres"),
        "{shown}"
    );
}

#[test]
fn serde_reads_text_durations_and_sizes() {
    let c: CacheConfig = serde_json::from_str(
        r#"{"namespace": "search", "ttl": "2h", "stale_for": 30, "memory_bytes": "16MiB",
            "redis_url": "redis://127.0.0.1", "file_dir": "/var/cache/x",
            "namespace_ttls": {"catalog": "1d"}, "keys": "hashed", "backplane": "none"}"#,
    )
    .unwrap();
    assert_eq!(c.ttl, Duration::from_secs(7200));
    assert_eq!(c.stale_for, Duration::from_secs(30));
    assert_eq!(c.memory_bytes, 16 << 20);
    assert_eq!(c.tier_names(), ["memory", "redis", "file"]);
    assert_eq!(
        c.namespace_ttls,
        vec![("catalog".to_owned(), Duration::from_secs(86_400))]
    );
    assert_eq!(c.keys, KeyKind::Hashed);
    assert_eq!(c.backplane_choice(), None);
    assert!(c.background_tasks);
    let e = serde_json::from_str::<CacheConfig>(r#"{"tll": "1h"}"#).unwrap_err();
    assert!(e.to_string().contains("unknown field"), "{e}");
}

#[cfg(feature = "file")]
#[tokio::test]
async fn memory_and_files_build_with_the_configured_names_and_policy() {
    let dir = tempfile::tempdir().unwrap();
    let c = CacheConfig::from_vars([
        ("LAYERCAKE_FILE_DIR", dir.path().to_str().unwrap()),
        ("LAYERCAKE_NAMESPACE", "cfgtest"),
        ("LAYERCAKE_TTL", "90s"),
        ("LAYERCAKE_REDIS_URL", ""),
        ("LAYERCAKE_POSTGRES_URL", ""),
    ])
    .unwrap();
    let tiers = c.connect().await.unwrap();
    let cache = tiers.cache(&c).unwrap();
    assert_eq!(cache.tier_names(), ["memory", "file"]);
    cache.set("k", "v".to_string()).await.unwrap();
    let key = cache.key("k").unwrap();
    assert_eq!(key.as_str(), "cfgtest:v1:k");
    let file = tiers.file.as_ref().unwrap();
    let e = layercake_core::Backend::get(&**file, &key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.ttl(), Duration::from_secs(90));
    assert_eq!(e.format, layercake_core::Format::Json);
}

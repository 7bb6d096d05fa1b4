//! Scenario 8: hostile keys.

use std::sync::Arc;

use layercake::{
    Backend, Cache, Codec, ErrorKind, HashedKeys, KeyStrategy, Namespace, PlainKeys, Source,
    SystemClock,
};
use layercake_file::{FileBackend, FileConfig};
use layercake_tests::Tiers;

use super::support::{RawPg, RawRedis};

/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Four real tiers; the file tier's directory is `<tmp>/cache` with nothing else in `<tmp>`:
///
/// - empty keys, keys over 1 KiB, keys with NUL or other control characters are rejected with
///   `InvalidKey` naming the rule (a 1 MiB input is fine with digest keys);
/// - path traversal, SQL, glob and unicode keys round-trip through every tier unchanged;
/// - invalid UTF-8 request bytes are an error with plain keys and a round trip with digest
///   keys; invalid UTF-8 values round-trip;
/// - the file tier writes only under its directory; the PostgreSQL table survives
///   `'; DROP TABLE …` keys (statements are parameterized); a prefix invalidation with glob
///   characters removes exactly the matching keys (patterns are escaped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_08_hostile_keys_are_rejected_or_round_trip_and_stay_contained() {
    let tiers = Tiers::connect(Arc::new(SystemClock)).await;
    let root = tempfile::tempdir().unwrap();
    let file = Arc::new(
        FileBackend::open(FileConfig::new(root.path().join("cache")))
            .await
            .unwrap(),
    );
    let stack: [Arc<dyn Backend>; 4] = [
        tiers.memory.clone(),
        tiers.redis.clone(),
        tiers.postgres.clone(),
        file.clone(),
    ];
    let build = |keys: Arc<dyn KeyStrategyBox>| {
        let mut b = Cache::builder("fault-s8");
        for t in &stack {
            b = b.shared_tier(t.clone());
        }
        keys.apply(b).build().unwrap()
    };
    let plain = build(Arc::new(PlainKeys::new(Namespace::new("s8", 1).unwrap())));
    let hashed = build(Arc::new(HashedKeys::new(Namespace::new("s8h", 1).unwrap())));
    let schema = &tiers.name;

    // Rejected with the rule named.
    let huge = "k".repeat(1 << 20);
    let mut rejected = Vec::new();
    for (what, text, rule) in [
        ("empty", "", "not-empty"),
        ("1 MiB", huge.as_str(), "max-length"),
        ("NUL", "a\0b", "no-control-characters"),
        ("newline", "a\nb", "no-control-characters"),
        ("escape", "\u{1b}[2J", "no-control-characters"),
    ] {
        let err = plain.set(text, 1u32).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidKey, "{what}: {err}");
        assert!(err.to_string().contains(rule), "{what}: {err}");
        assert!(plain.get::<u32>(text).await.is_err(), "{what}: read");
        rejected.push(what);
    }
    // A 1 MiB input is fine as a digest.
    hashed.set(huge.as_str(), 7u32).await.unwrap();
    let huge_back = hashed.get::<u32>(huge.as_str()).await.unwrap().unwrap();
    assert_eq!(*huge_back.value, 7);

    // Round trips through every tier.
    let drop_table = format!("'; DROP TABLE \"{schema}\".entries; --");
    let hostile: Vec<String> = vec![
        "../../etc/passwd".into(),
        "../../../../../../tmp/layercake-escape".into(),
        "/etc/shadow".into(),
        "..".into(),
        ".".into(),
        "..\\..\\windows\\system32".into(),
        drop_table.clone(),
        "\" OR 1=1 --".into(),
        "$1; SELECT pg_sleep(10)".into(),
        "*".into(),
        "a*".into(),
        "[abc]?".into(),
        "\\*\\?".into(),
        "{a,b}".into(),
        "%s%n%x".into(),
        "ключ 🔑 鍵".into(),
        "e\u{301}".into(),
        "\u{202e}gnp.exe".into(),
        "\u{feff}bom".into(),
    ];
    for text in &hostile {
        plain.set(text.as_str(), text.clone()).await.unwrap();
        let key = plain.key(text.as_str()).unwrap();
        assert_eq!(key.as_str(), format!("s8:v1:{text}"), "never altered");
        for (i, t) in stack.iter().enumerate() {
            let e = t
                .get(&key)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{text:?} missing in tier {i}"));
            let v: String = Codec::json()
                .decode(&e.value, e.format, e.compression)
                .unwrap();
            assert_eq!(&v, text, "tier {i}");
        }
        stack[0].delete(&key).await.unwrap();
        let back = plain.get::<String>(text.as_str()).await.unwrap().unwrap();
        assert_eq!(
            (back.value.as_str(), back.source),
            (text.as_str(), Source::Hit { tier: 1 })
        );
    }

    // Bytes: invalid UTF-8 request bytes and values.
    let bytes_req: &[u8] = &[0xff, 0xfe, 0x00, b'x', 0xc3];
    let plain_err = plain.keys().key_for_canonical(bytes_req).unwrap_err();
    let digest = hashed.keys().key_for_canonical(bytes_req).unwrap();
    let value: Vec<u8> = vec![0xff, 0x00, 0xfe, 0xc3, 0x28];
    hashed.set(&digest, value.clone()).await.unwrap();
    stack[0].delete(&digest).await.unwrap();
    let got = hashed.get::<Vec<u8>>(&digest).await.unwrap().unwrap();
    assert_eq!(*got.value, value);

    // Containment: files only under <tmp>/cache.
    let outside: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let files = files_under(&root.path().join("cache"));
    let escaped = std::path::Path::new("/tmp/layercake-escape").exists();
    for text in &hostile {
        let p = file.path_of(&plain.key(text.as_str()).unwrap());
        assert!(
            p.starts_with(root.path().join("cache")),
            "{text:?} -> {p:?}"
        );
    }
    // SQL: the table is still there, with every row.
    let raw_pg = RawPg::connect(&tiers.database_url, schema).await;
    let rows = raw_pg.count().await;
    // Globs: invalidating the prefix "a*" removes "a*" only, not "ab".
    plain.set("ab", "ab".to_string()).await.unwrap();
    plain.invalidate_prefix("a*").await.unwrap();
    let raw_redis = RawRedis::connect(&tiers.redis_url, &format!("{}:", tiers.name)).await;
    let ab_kept = raw_redis.exists(&plain.key("ab").unwrap()).await
        && raw_pg.exists(&plain.key("ab").unwrap()).await;
    let glob_gone = !raw_redis.exists(&plain.key("a*").unwrap()).await;
    let ab_read = plain
        .get::<String>("ab")
        .await
        .unwrap()
        .map(|l| l.value.to_string());

    println!(
        "scenario 8: rejected={rejected:?} round_trips={} (x4 tiers) plain_keys_on_bytes={:?} \
         digest_key_on_bytes=ok files={} entries_outside_dir={:?} escaped={escaped} \
         pg_rows={rows:?} glob_prefix_removed_only_matching={}",
        hostile.len(),
        plain_err.kind(),
        files.len(),
        outside.iter().filter(|n| *n != "cache").collect::<Vec<_>>(),
        ab_kept && glob_gone,
    );
    assert_ne!(plain_err.kind(), ErrorKind::Unavailable);
    assert_eq!(
        outside,
        vec!["cache".to_string()],
        "the file tier wrote outside its directory"
    );
    assert!(!escaped, "a file escaped to /tmp");
    assert!(
        files.len() >= hostile.len(),
        "one file per entry: {}",
        files.len()
    );
    assert!(
        rows.is_some_and(|n| n >= hostile.len() as i64),
        "the table lost rows: {rows:?}"
    );
    assert!(glob_gone, "the glob key was not invalidated");
    assert!(ab_kept, "a glob prefix removed a key it does not start");
    assert_eq!(ab_read.as_deref(), Some("ab"));
    let _ = hashed.delete(huge.as_str()).await;
    tiers.cleanup().await;
}

/// Puts either key strategy into a builder (the builder takes `impl KeyStrategy`).
trait KeyStrategyBox {
    fn apply(&self, b: layercake::CacheBuilder) -> layercake::CacheBuilder;
}

impl<S: KeyStrategy + Clone> KeyStrategyBox for S {
    fn apply(&self, b: layercake::CacheBuilder) -> layercake::CacheBuilder {
        b.keys(self.clone())
    }
}

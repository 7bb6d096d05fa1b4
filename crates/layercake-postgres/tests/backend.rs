//! Behaviour of the PostgreSQL backend beyond the conformance suite: byte-exact round trips of
//! hostile keys and values, bulk statements, schema creation and migration, identifier
//! quoting, error mapping and timeouts.
#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] functions")]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use layercake_core::{Backend, Entry, ErrorKind, Key, Selector};
use layercake_postgres::{PostgresBackend, TableKind};
use support::{TestSchema, manual_backend, raw_client};

fn entry(clock: &layercake_core::ManualClock, value: &[u8]) -> Entry {
    use layercake_core::Clock as _;
    Entry::new(value.to_vec(), clock.now(), Duration::from_secs(60))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_keys_and_values_round_trip_byte_exact() {
    let schema = TestSchema::new();
    let (b, clock) = manual_backend(&schema, "hostile").await;
    let keys = [
        "'; DROP TABLE hostile; --".to_owned(),
        "quote ' double \" backslash \\ percent % underscore _".to_owned(),
        "ключ 🔑 日本語".to_owned(),
        "k".repeat(1024),
        "a*b?[c]".to_owned(),
    ];
    let mut value: Vec<u8> = (0..=255u8).collect();
    value.extend_from_slice(b"\0\0'; DROP TABLE hostile; --\0");
    for k in &keys {
        let key = Key::new(k).unwrap();
        let e = entry(&clock, &value).with_tags(["t'1", "ключ", "%_"]);
        b.set(&key, &e).await.unwrap();
        assert_eq!(b.get(&key).await.unwrap(), Some(e), "key {k:?}");
    }
    // The table survived and holds exactly those rows.
    assert_eq!(schema.count("hostile").await, keys.len() as i64);
    // Tags with SQL and LIKE metacharacters select exactly.
    b.invalidate(&Selector::Tag("%_".into())).await.unwrap();
    assert_eq!(schema.count("hostile").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_operations_are_single_statements_with_last_write_winning() {
    let schema = TestSchema::new();
    let (b, clock) = manual_backend(&schema, "bulk").await;
    let k = |s: &str| Key::new(s).unwrap();
    let items = vec![
        (k("a"), entry(&clock, b"a1").with_tags(["x", "y"])),
        (k("b"), entry(&clock, b"b1")),
        (k("a"), entry(&clock, b"a2").with_tags(["z"])),
        (k("c"), entry(&clock, b"").with_tags(["x"])),
    ];
    b.set_many(&items).await.unwrap();
    let got = b
        .get_many(&[k("a"), k("missing"), k("c"), k("a"), k("b")])
        .await
        .unwrap();
    assert_eq!(got[0].as_ref().unwrap().value.as_ref(), b"a2");
    assert_eq!(&*got[0].as_ref().unwrap().tags, &["z".to_owned()]);
    assert_eq!(got[1], None);
    assert_eq!(got[2].as_ref().unwrap().value.len(), 0);
    assert_eq!(got[3], got[0]);
    assert_eq!(got[4].as_ref().unwrap().value.as_ref(), b"b1");
    // The tags column is what tag invalidation uses: "x" is on c only now.
    let c = raw_client(&schema.url).await;
    let tags: Vec<String> = c
        .query_one(
            &format!("SELECT tags FROM {} WHERE key = $1", b.qualified_table()),
            &[&b"a".as_slice()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tags, vec!["z".to_owned()]);
    b.invalidate(&Selector::Tag("x".into())).await.unwrap();
    assert_eq!(b.get(&k("c")).await.unwrap(), None);
    assert!(b.get(&k("a")).await.unwrap().is_some());
    b.delete_many(&[k("a"), k("b"), k("nope")]).await.unwrap();
    assert_eq!(schema.count("bulk").await, 0);
    // Empty inputs do not touch the server.
    assert!(b.get_many(&[]).await.unwrap().is_empty());
    b.set_many(&[]).await.unwrap();
    b.delete_many(&[]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_invalidation_is_a_byte_range() {
    let schema = TestSchema::new();
    let (b, clock) = manual_backend(&schema, "prefix").await;
    let names = [
        "ab",
        "ab%",
        "ab_c",
        "abc",
        "ac",
        "aa",
        "ключ:1",
        "ключа",
        "ключ",
        "b",
    ];
    for n in names {
        b.set(&Key::new(n).unwrap(), &entry(&clock, n.as_bytes()))
            .await
            .unwrap();
    }
    b.invalidate(&Selector::Prefix("ab".into())).await.unwrap();
    b.invalidate(&Selector::Prefix("ключ:".into()))
        .await
        .unwrap();
    let mut left = Vec::new();
    for n in names {
        if b.get(&Key::new(n).unwrap()).await.unwrap().is_some() {
            left.push(n);
        }
    }
    assert_eq!(left, ["ac", "aa", "ключа", "ключ", "b"]);
    // The empty prefix has no upper bound: everything goes.
    b.invalidate(&Selector::Prefix(String::new()))
        .await
        .unwrap();
    assert_eq!(schema.count("prefix").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_startups_migrate_once_and_quote_names() {
    let schema = TestSchema::new();
    let table = "we\"ird; DROP TABLE x; --";
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let cfg = schema.config(table).with_reaper(None);
        tasks.push(tokio::spawn(PostgresBackend::connect(cfg)));
    }
    let mut backends = Vec::new();
    for t in tasks {
        backends.push(t.await.unwrap().unwrap());
    }
    let c = raw_client(&schema.url).await;
    let version: i32 = c
        .query_one(
            &format!(
                "SELECT version FROM \"{}\".layercake_migrations WHERE table_name = $1",
                schema.schema
            ),
            &[&table],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, 2);
    let indexes: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND tablename = $2",
            &[&schema.schema, &table],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(indexes, 3, "primary key, GIN on tags, btree on expires_at");
    let k = Key::new("k").unwrap();
    let e = Entry::new(
        &b"v"[..],
        layercake_core::SystemClock.now_ts(),
        Duration::from_secs(5),
    );
    backends[0].set(&k, &e).await.unwrap();
    assert_eq!(backends[3].get(&k).await.unwrap(), Some(e));
}

trait NowTs {
    fn now_ts(&self) -> layercake_core::Timestamp;
}
impl NowTs for layercake_core::SystemClock {
    fn now_ts(&self) -> layercake_core::Timestamp {
        layercake_core::Clock::now(self)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlogged_tables_and_kind_mismatch() {
    let schema = TestSchema::new();
    let b = PostgresBackend::connect(
        schema
            .config("u")
            .with_table_kind(TableKind::Unlogged)
            .with_reaper(None),
    )
    .await
    .unwrap();
    assert_eq!(b.table_kind(), TableKind::Unlogged);
    let c = raw_client(&schema.url).await;
    let p: i8 = c
        .query_one(
            "SELECT c.relpersistence FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = 'u'",
            &[&schema.schema],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(p as u8, b'u');
    let err = PostgresBackend::connect(schema.config("u").with_reaper(None))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.message().contains("SET LOGGED"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_errors_are_permanent_and_locks_time_out() {
    let schema = TestSchema::new();
    let (b, clock) = manual_backend(&schema, "errs").await;
    let b = Arc::new(b);
    let k = Key::new("k").unwrap();
    b.set(&k, &entry(&clock, b"v")).await.unwrap();

    // A lock held elsewhere: the operation gives up at its timeout (1 s by default).
    let locker = raw_client(&schema.url).await;
    locker.batch_execute("BEGIN").await.unwrap();
    locker
        .batch_execute(&format!(
            "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
            b.qualified_table()
        ))
        .await
        .unwrap();
    let start = Instant::now();
    let err = b.get(&k).await.unwrap_err();
    let took = start.elapsed();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.is_temporary());
    assert_eq!(err.backend(), Some("postgres"));
    assert!(
        took < Duration::from_millis(1900),
        "returned after {took:?}"
    );
    println!("blocked get returned {err} after {took:?}");
    locker.batch_execute("ROLLBACK").await.unwrap();
    assert!(b.get(&k).await.unwrap().is_some());

    // The table dropped under the backend: a permanent error, not a miss.
    locker
        .batch_execute(&format!("DROP TABLE {}", b.qualified_table()))
        .await
        .unwrap();
    let err = b.get(&k).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(!err.is_temporary(), "{err:?}");
    assert_eq!(err.backend(), Some("postgres"));
    assert!(b.health().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_rows_are_deleted_and_counted() {
    let schema = TestSchema::new();
    let (b, clock) = manual_backend(&schema, "corrupt").await;
    let k = Key::new("k").unwrap();
    let other = Key::new("other").unwrap();
    b.set(&other, &entry(&clock, b"v")).await.unwrap();
    let c = raw_client(&schema.url).await;
    // Another key's valid envelope planted under k: a key mismatch.
    c.execute(
        &format!(
            "INSERT INTO {} (key, value, expires_at) SELECT $1, value, expires_at FROM {} WHERE key = $2",
            b.qualified_table(),
            b.qualified_table()
        ),
        &[&k.as_bytes(), &other.as_bytes()],
    )
    .await
    .unwrap();
    assert_eq!(
        b.get_many(&[k.clone(), other.clone(), k.clone()])
            .await
            .unwrap()[0],
        None
    );
    assert_eq!(b.corrupt_reads(), 1);
    assert_eq!(schema.count("corrupt").await, 1);
    assert!(b.get(&other).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_names_are_config_errors() {
    let schema = TestSchema::new();
    for (s, t) in [
        ("ok", ""),
        ("ok", &*"t".repeat(49)),
        ("bad\0", "t"),
        ("", "t"),
    ] {
        let cfg = schema.config("x").with_table(s, t);
        let err = PostgresBackend::connect(cfg).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{s:?}.{t:?}: {err}");
    }
}

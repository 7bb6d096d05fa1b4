//! Conditional fills on PostgreSQL beyond the conformance suite: the tombstone table, its
//! migration (in place, and concurrently for several tables of one new schema), and its reaper.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failure")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use layercake_core::{
    Backend, Clock as _, Entry, FillOutcome, Key, ManualClock, Selector, Tombstone,
};
use layercake_postgres::{PostgresBackend, ReaperConfig};
use support::{TestSchema, raw_client};

async fn migrated_version(schema: &TestSchema, table: &str) -> i32 {
    raw_client(&schema.url)
        .await
        .query_one(
            &format!(
                "SELECT version FROM \"{}\".layercake_migrations WHERE table_name = $1",
                schema.schema
            ),
            &[&table],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_of_one_new_schema_migrate_concurrently() {
    // Several instances with different tables start together on a schema that does not exist
    // yet: all of them create (or find) the schema and the migrations table.
    let schema = TestSchema::new();
    let mut tasks = Vec::new();
    for i in 0..6 {
        let cfg = schema.config(&format!("t{i}")).with_reaper(None);
        tasks.push(tokio::spawn(PostgresBackend::connect(cfg)));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let b = tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .unwrap()
            .unwrap()
            .unwrap_or_else(|e| panic!("instance {i}: {e}"));
        assert_eq!(migrated_version(&schema, &format!("t{i}")).await, 2);
        let k = Key::new("k").unwrap();
        let e = Entry::new(
            &b"v"[..],
            layercake_core::SystemClock.now(),
            Duration::from_secs(9),
        );
        assert_eq!(b.fill(&k, &e).await.unwrap(), FillOutcome::Stored);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_table_gains_its_tombstone_table_in_place() {
    let schema = TestSchema::new();
    let c = raw_client(&schema.url).await;
    let s = &schema.schema;
    c.batch_execute(&format!(
        "CREATE SCHEMA \"{s}\";
         CREATE TABLE \"{s}\".layercake_migrations (table_name text PRIMARY KEY,
             version integer NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());
         CREATE TABLE \"{s}\".old (key bytea PRIMARY KEY, value bytea NOT NULL,
             expires_at bigint NOT NULL, tags text[] NOT NULL DEFAULT '{{}}');
         INSERT INTO \"{s}\".layercake_migrations (table_name, version) VALUES ('old', 1);"
    ))
    .await
    .unwrap();
    let clock = ManualClock::new();
    let k = Key::new("kept").unwrap();
    let e = Entry::new(&b"from v1"[..], clock.now(), Duration::from_secs(60)).with_version(4);
    let bytes = layercake_core::envelope::encode(&k, &e).unwrap();
    c.execute(
        &format!("INSERT INTO \"{s}\".old (key, value, expires_at) VALUES ($1, $2, $3)"),
        &[&k.as_bytes(), &bytes, &(e.retain_until().0 as i64)],
    )
    .await
    .unwrap();
    let b = PostgresBackend::connect(
        schema
            .config("old")
            .with_clock(Arc::new(clock.clone()))
            .with_reaper(None),
    )
    .await
    .unwrap();
    assert_eq!(migrated_version(&schema, "old").await, 2);
    assert_eq!(b.get(&k).await.unwrap(), Some(e.clone()), "rows are kept");
    // The stored version is read from the envelope: an older fill is refused.
    let older = Entry::new(&b"older"[..], clock.now(), Duration::from_secs(60)).with_version(3);
    assert_eq!(b.fill(&k, &older).await.unwrap(), FillOutcome::KeptNewer);
    b.delete_with(&k, Tombstone::new(9, Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(schema.count("old_tomb").await, 1);
    assert_eq!(b.fill(&k, &older).await.unwrap(), FillOutcome::Tombstoned);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reaper_removes_expired_tombstones() {
    let schema = TestSchema::new();
    let clock = ManualClock::new();
    let b = PostgresBackend::connect(
        schema
            .config("reaped")
            .with_clock(Arc::new(clock.clone()))
            .with_reaper(Some(
                ReaperConfig::default()
                    .with_interval(Duration::from_millis(50))
                    .with_batch_size(100),
            )),
    )
    .await
    .unwrap();
    let k = Key::new("p/k").unwrap();
    let t = Tombstone::new(10, Duration::from_secs(1));
    b.delete_with(&k, t).await.unwrap();
    b.invalidate_with(&Selector::Prefix("p/".into()), t)
        .await
        .unwrap();
    b.invalidate_with(&Selector::Tag("tag".into()), t)
        .await
        .unwrap();
    assert_eq!(schema.count("reaped_tomb").await, 3);
    assert_eq!(
        schema.count("reaped").await,
        0,
        "no entry row for a tombstone"
    );
    let e = Entry::new(&b"v"[..], clock.now(), Duration::from_secs(60)).with_version(5);
    assert_eq!(b.fill(&k, &e).await.unwrap(), FillOutcome::Tombstoned);
    clock.advance(Duration::from_secs(2));
    let start = std::time::Instant::now();
    while schema.count("reaped_tomb").await > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "expired tombstones were not reaped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let e = Entry::new(&b"v"[..], clock.now(), Duration::from_secs(60)).with_version(5);
    assert_eq!(b.fill(&k, &e).await.unwrap(), FillOutcome::Stored);
    assert_eq!(b.reaper_errors(), 0);
}

//! `layercake drift` finds copies planted behind the library's back in each shared tier, and
//! `--repair --yes` removes exactly those (and tells running instances).

mod support;

use layercake::{Backend, Key, Timestamp};
use serde_json::{Value, json};
use support::{Env, eventually};

/// The version of `key`'s copy in `b`, if any.
async fn present(b: &dyn Backend, key: &Key) -> Option<u64> {
    b.get(key)
        .await
        .expect("the tier answers")
        .map(|e| e.version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_finds_planted_copies_and_repair_removes_exactly_those() {
    let env = Env::full();
    let (tiers, cache) = env.instance().await;
    for k in ["a", "b", "c", "d"] {
        cache.set(k, format!("value of {k}")).await.unwrap();
    }
    let redis = tiers.redis.clone().unwrap();
    let postgres = tiers.postgres.clone().unwrap();
    let file = tiers.file.clone().unwrap();
    let key = |t: &str| cache.key(t).unwrap();
    let written = postgres.get(&key("a")).await.unwrap().unwrap();

    // a: Redis holds an older version than PostgreSQL.
    let older = written.clone().with_version(written.version - 1_000);
    redis.set(&key("a"), &older).await.unwrap();
    // b: PostgreSQL's copy (same version) outlives the file tier's.
    let b = postgres.get(&key("b")).await.unwrap().unwrap();
    let mut longer = b.clone();
    longer.expires_at = Timestamp(b.expires_at.0 + 3_600_000);
    postgres.set(&key("b"), &longer).await.unwrap();
    // c: the file tier holds an older version than PostgreSQL.
    let c = postgres.get(&key("c")).await.unwrap().unwrap();
    file.set(&key("c"), &c.clone().with_version(c.version - 5))
        .await
        .unwrap();

    let found = |doc: &Value| -> Vec<(String, String, String, String)> {
        let mut v: Vec<_> = doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["key"].as_str().unwrap().to_owned(),
                    f["kind"].as_str().unwrap().to_owned(),
                    f["stale_tier"].as_str().unwrap().to_owned(),
                    f["other_tier"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let ns = env.namespace_prefix();
    let expected = vec![
        (
            format!("{ns}a"),
            "older-above".into(),
            "redis".into(),
            "postgres".into(),
        ),
        (
            format!("{ns}b"),
            "outlives-lower".into(),
            "postgres".into(),
            "file".into(),
        ),
        (
            format!("{ns}c"),
            "older-below".into(),
            "file".into(),
            "postgres".into(),
        ),
    ];

    let report = env.run_expect(&["--json", "drift"], 4).json();
    assert_eq!(report["keys_walked"].as_u64(), Some(4));
    assert_eq!(found(&report), expected);
    assert_eq!(report["dry_run"], json!(true));
    let human = env.run_expect(&["drift"], 4).stdout;
    assert!(human.contains("3 stale copies"), "{human}");

    // --repair without --yes shows the plan and removes nothing.
    let refused = env.run_expect(&["drift", "--repair"], 2);
    assert!(
        refused.stderr.contains("--repair --yes"),
        "{}",
        refused.stderr
    );
    assert!(redis.get(&key("a")).await.unwrap().is_some());

    // No instance listens during the repair: what changes is the tool's doing alone.
    cache.shutdown().await;
    let repaired = env
        .run_expect(&["--json", "drift", "--repair", "--yes"], 0)
        .json();
    assert_eq!(repaired["repaired"].as_u64(), Some(3));
    assert_eq!(found(&repaired), expected);

    // Exactly the planted copies are gone; every other copy stays.
    assert_eq!(present(&*redis, &key("a")).await, None);
    assert_eq!(present(&*postgres, &key("a")).await, Some(written.version));
    assert_eq!(present(&*file, &key("a")).await, Some(written.version));
    assert!(present(&*redis, &key("b")).await.is_some());
    assert_eq!(present(&*postgres, &key("b")).await, None);
    assert!(present(&*file, &key("b")).await.is_some());
    assert!(present(&*redis, &key("c")).await.is_some());
    assert!(present(&*postgres, &key("c")).await.is_some());
    assert_eq!(present(&*file, &key("c")).await, None);
    for t in [&*redis as &dyn Backend, &*postgres, &*file] {
        assert!(present(t, &key("d")).await.is_some());
    }
    let clean = env.run_expect(&["--json", "drift"], 0).json();
    assert_eq!(clean["findings"], json!([]));

    // A running instance whose memory tier holds a key hears the repair of that key (its
    // local copy may be the stale one) and of no other key.
    let (tiers2, cache2) = env.instance().await;
    for k in ["e", "f"] {
        cache2.set(k, format!("value of {k}")).await.unwrap();
    }
    let e = postgres.get(&key("e")).await.unwrap().unwrap();
    redis
        .set(&key("e"), &e.clone().with_version(e.version - 1))
        .await
        .unwrap();
    let in_memory = |t: &str| tiers2.memory.get_sync(&key(t)).is_some();
    assert!(in_memory("e") && in_memory("f"));
    let repaired = env
        .run_expect(&["--json", "drift", "--repair", "--yes"], 0)
        .json();
    assert_eq!(repaired["repaired"].as_u64(), Some(1));
    eventually("the instance drops its memory copy of e", || {
        !in_memory("e")
    })
    .await;
    assert!(in_memory("f"));
    assert_eq!(present(&*redis, &key("e")).await, None);
    assert_eq!(present(&*postgres, &key("e")).await, Some(e.version));
    env.cleanup(&tiers2, &cache2).await;
    drop((tiers, cache));
}

//! The built `layercake` binary against real Redis, PostgreSQL and a temp directory: what a
//! test writes through the library, the tool shows; what the tool removes, a running instance
//! stops serving.

mod support;

use std::time::{Duration, Instant};

use layercake::WriteOptions;
use serde_json::json;
use support::{Env, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_and_get_show_what_the_library_wrote() {
    let env = Env::full();
    let (tiers, cache) = env.instance().await;
    let value = json!({"name": "search", "tools": ["fetch", "grep"]});
    let written = Instant::now();
    cache
        .set_with(
            "tools",
            value.clone(),
            &WriteOptions::new()
                .tag("catalog")
                .ttl(Duration::from_secs(60)),
        )
        .await
        .unwrap();

    let r = env.run_expect(&["--json", "inspect", "tools", "--decode"], 0);
    let elapsed = written.elapsed().as_millis() as i64;
    let doc = r.json();
    let key = format!("{}tools", env.namespace_prefix());
    assert_eq!(doc["key"], json!(key));
    let list = doc["tiers"].as_array().unwrap();
    let names: Vec<&str> = list.iter().map(|t| t["tier"].as_str().unwrap()).collect();
    assert_eq!(names, ["redis", "postgres", "file"]);
    let version = list[0]["version"].as_u64().unwrap();
    assert!(version > 0);
    for t in list {
        assert_eq!(t["present"], json!(true), "{t}");
        assert_eq!(t["version"].as_u64(), Some(version), "{t}");
        assert_eq!(t["tags"], json!(["catalog"]), "{t}");
        assert_eq!(t["codec"], json!("json"), "{t}");
        assert_eq!(t["compression"], json!("none"), "{t}");
        assert_eq!(t["fresh"], json!(true), "{t}");
        assert_eq!(
            t["size"].as_u64(),
            Some(value.to_string().len() as u64),
            "{t}"
        );
        // Remaining life: 60 s minus the time since the write, within a second.
        let remaining = t["remaining_ms"].as_i64().unwrap();
        assert!(
            remaining <= 60_000 && remaining >= 60_000 - elapsed - 1_000,
            "remaining {remaining} ms, {elapsed} ms after the write: {t}"
        );
    }
    // Redis's own lifetime of the key agrees, by the same bound.
    let server_ttl = list[0]["server_ttl_ms"].as_i64().unwrap();
    assert!(
        server_ttl <= 60_000 && server_ttl >= 60_000 - elapsed - 1_000,
        "PTTL {server_ttl} ms, {elapsed} ms after the write"
    );
    assert_eq!(doc["value"], value);
    assert_eq!(doc["value_from"], json!("redis"));

    // The same key given whole, and the human table.
    let raw = env
        .run_expect(&["--json", "inspect", "--raw", &key], 0)
        .json();
    assert_eq!(raw["tiers"][1]["version"].as_u64(), Some(version));
    let human = env.run_expect(&["inspect", "tools"], 0).stdout;
    assert!(human.contains(&format!("key  {key}")), "{human}");
    for tier in ["redis ", "postgres ", "file "] {
        let line = human
            .lines()
            .find(|l| l.starts_with(tier))
            .unwrap_or_else(|| panic!("no {tier} row in\n{human}"));
        assert!(line.contains(" yes ") && line.contains("catalog"), "{line}");
    }

    let got = env.run_expect(&["--json", "get", "tools"], 0).json();
    assert_eq!(got["value"], value);
    assert_eq!(got["tier"], json!("redis"));
    let plain = env.run_expect(&["get", "tools"], 0);
    let printed: serde_json::Value = serde_json::from_str(&plain.stdout).unwrap();
    assert_eq!(printed, value);
    assert!(plain.stderr.contains("from redis"), "{}", plain.stderr);

    // A key in no tier: exit 3, every tier says no.
    let missing = env
        .run_expect(&["--json", "inspect", "nothing-here"], 3)
        .json();
    assert!(
        missing["tiers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["present"] == json!(false))
    );
    env.run_expect(&["get", "nothing-here"], 3);
    env.cleanup(&tiers, &cache).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn del_and_invalidate_reach_every_tier_and_a_running_instance() {
    let env = Env::full();
    let (tiers, cache) = env.instance().await;
    for k in ["one", "p:two", "p:three", "tagged"] {
        let opts = if k == "tagged" {
            WriteOptions::new().tag("group-7")
        } else {
            WriteOptions::new()
        };
        cache.set_with(k, k.to_string(), &opts).await.unwrap();
    }
    let in_memory = |text: &str| {
        let key = cache.key(text).unwrap();
        tiers.memory.get_sync(&key).is_some()
    };
    assert!(in_memory("one") && in_memory("p:two") && in_memory("tagged"));

    // Destructive commands need --yes.
    let refused = env.run_expect(&["del", "one"], 2);
    assert!(refused.stderr.contains("--yes"), "{}", refused.stderr);
    assert!(in_memory("one"));
    env.run_expect(&["invalidate", "--tag", "group-7"], 2);

    let del = env.run_expect(&["--json", "del", "one", "--yes"], 0).json();
    assert_eq!(del["deleted"], json!(true));
    for t in del["tiers"].as_array().unwrap() {
        assert_eq!(t["before"], json!("present"), "{t}");
        assert_eq!(t["after"], json!("absent"), "{t}");
    }
    assert_eq!(del["backplane"]["kind"], json!("redis"));
    eventually("the instance drops its memory copy of `one`", || {
        !in_memory("one")
    })
    .await;
    assert!(cache.get::<String>("one").await.unwrap().is_none());

    let inv = env
        .run_expect(&["--json", "invalidate", "--tag", "group-7", "--yes"], 0)
        .json();
    for t in inv["tiers"].as_array().unwrap() {
        assert_eq!(
            (t["before"].as_u64(), t["after"].as_u64()),
            (Some(1), Some(0)),
            "{t}"
        );
    }
    eventually("the instance drops its memory copy of `tagged`", || {
        !in_memory("tagged")
    })
    .await;

    let inv = env
        .run_expect(&["--json", "invalidate", "--prefix", "p:", "--yes"], 0)
        .json();
    assert_eq!(
        inv["prefix"],
        json!(format!("{}p:", env.namespace_prefix()))
    );
    for t in inv["tiers"].as_array().unwrap() {
        assert_eq!(
            (t["before"].as_u64(), t["after"].as_u64()),
            (Some(2), Some(0)),
            "{t}"
        );
    }
    eventually("the instance drops its memory copies under p:", || {
        !in_memory("p:two") && !in_memory("p:three")
    })
    .await;
    assert!(cache.get::<String>("p:two").await.unwrap().is_none());
    env.cleanup(&tiers, &cache).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_pages_through_sorted_keys_and_stats_counts_them() {
    let env = Env::full();
    let (tiers, cache) = env.instance().await;
    for i in 0..5 {
        let opts = WriteOptions::new().tag(if i % 2 == 0 { "even" } else { "odd" });
        cache
            .set_with(format!("s:{i}").as_str(), "x".repeat(10 * (i + 1)), &opts)
            .await
            .unwrap();
    }
    cache.set("other", 1u32).await.unwrap();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..5 {
        let mut args = vec![
            "--json", "scan", "--prefix", "s:", "--limit", "2", "--tier", "postgres",
        ];
        if let Some(a) = &after {
            args.extend(["--after", a.as_str()]);
        }
        let page = env.run_expect(&args, 0).json();
        assert_eq!(page["tier"], json!("postgres"));
        for k in page["keys"].as_array().unwrap() {
            seen.push(k["key"].as_str().unwrap().to_owned());
            assert!(
                (1..=300_000).contains(&k["remaining_ms"].as_i64().unwrap()),
                "{k}"
            );
        }
        match page["next_after"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => break,
        }
    }
    let ns = env.namespace_prefix();
    let expected: Vec<String> = (0..5).map(|i| format!("{ns}s:{i}")).collect();
    assert_eq!(seen, expected);

    let human = env
        .run_expect(&["scan", "--prefix", "s:", "--limit", "2"], 0)
        .stdout;
    assert!(human.contains("tier redis"), "{human}");
    assert!(
        human.contains(&format!("next page: --after '{ns}s:1'")),
        "{human}"
    );

    let stats = env.run_expect(&["--json", "stats"], 0).json();
    for t in stats["tiers"].as_array().unwrap() {
        assert_eq!(t["keys"].as_u64(), Some(6), "{t}");
        assert_eq!(t["by_tag"]["even"]["keys"].as_u64(), Some(3), "{t}");
        assert_eq!(t["by_tag"]["odd"]["keys"].as_u64(), Some(2), "{t}");
        // JSON strings of 10..50 x's (quotes included) and the number 1.
        let bytes: u64 = (1..=5).map(|i| 10 * i + 2).sum::<u64>() + 1;
        assert_eq!(t["bytes"].as_u64(), Some(bytes), "{t}");
    }
    env.cleanup(&tiers, &cache).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_and_files_only_same_commands() {
    let env = Env::files_only();
    let (_tiers, cache) = env.instance().await;
    assert_eq!(cache.tier_names(), ["memory", "file"]);
    cache.set("k", vec![1, 2, 3]).await.unwrap();
    let doc = env
        .run_expect(&["--json", "inspect", "k", "--decode"], 0)
        .json();
    assert_eq!(doc["tiers"].as_array().unwrap().len(), 1);
    assert_eq!(doc["tiers"][0]["tier"], json!("file"));
    assert_eq!(doc["value"], json!([1, 2, 3]));
    env.run_expect(&["del", "k", "--yes"], 0);
    env.run_expect(&["inspect", "k"], 3);
    cache.shutdown().await;
}

#[test]
fn config_is_shown_redacted_and_bad_usage_exits_2() {
    let mut env = Env::files_only();
    env.set(
        "LAYERCAKE_REDIS_URL",
        "redis://app:hunter2@cache.internal:6379/0",
    );
    env.set(
        "LAYERCAKE_POSTGRES_URL",
        "postgres://app:pgsecret@db.internal/app",
    );
    let out = env.run_expect(&["config"], 0);
    assert!(
        !out.stdout.contains("hunter2") && !out.stdout.contains("pgsecret"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("redis://app:***@cache.internal:6379/0"),
        "{}",
        out.stdout
    );
    let doc = env.run_expect(&["--json", "config"], 0).json();
    assert_eq!(doc["tiers"], json!("memory,redis,postgres,file"));

    let mut bad = Env::files_only();
    bad.set("LAYERCAKE_TTL", "soon");
    let r = bad.run_expect(&["config"], 2);
    assert!(r.stderr.contains("LAYERCAKE_TTL"), "{}", r.stderr);
    Env::files_only().run_expect(&["inspect"], 2);
}

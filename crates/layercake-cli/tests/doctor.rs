//! `layercake doctor` reports real figures of the servers, flags a planted misconfiguration
//! (Redis `noeviction` with a small `maxmemory`, a file directory near its bound, a temp file
//! left by a crashed writer) and a tier that does not answer.

mod support;

use std::time::{Duration, SystemTime};

use layercake_testkit::server::RedisServer;
use serde_json::Value;
use support::Env;

fn check<'a>(doc: &'a Value, tier: &str, name: &str) -> &'a Value {
    doc["checks"]
        .as_array()
        .expect("a list of checks")
        .iter()
        .find(|c| c["tier"] == tier && c["check"] == name)
        .unwrap_or_else(|| panic!("no {tier}/{name} check in {doc:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_real_figures() {
    let env = Env::full();
    let (tiers, cache) = env.instance().await;
    for k in ["x", "y", "z"] {
        cache.set(k, k.repeat(100)).await.unwrap();
    }
    // 0 (all ok) or 4 (warnings, e.g. the shared Redis has no maxmemory); never a failure.
    let r = env.run(&["--json", "doctor"]);
    assert!(r.code == 0 || r.code == 4, "{}\n{}", r.stdout, r.stderr);
    let doc = r.json();
    let info = tiers.redis.as_ref().unwrap().server_info().await.unwrap();
    let v = check(&doc, "redis", "version");
    assert_eq!(
        v["figures"]["version"].as_str(),
        Some(info.version.as_str())
    );
    assert_eq!(
        check(&doc, "redis", "memory")["figures"]["maxmemory"].as_u64(),
        Some(info.maxmemory)
    );
    for tier in ["redis", "postgres", "file"] {
        assert_eq!(check(&doc, tier, "reachable")["status"], "ok");
        let l = &check(&doc, tier, "latency")["figures"];
        assert!(
            l["median_ms"].as_f64().unwrap() >= 0.0 && l["reads"] == 5,
            "{l}"
        );
    }
    let table = &check(&doc, "postgres", "table")["figures"];
    assert_eq!(table["rows"].as_i64(), Some(3));
    assert!(table["total_bytes"].as_i64().unwrap() > 0);
    assert_eq!(
        check(&doc, "postgres", "expired")["figures"]["expired_rows"].as_i64(),
        Some(0)
    );
    let usage = layercake::file::inspect_dir(env.dir()).unwrap();
    let file = &check(&doc, "file", "usage")["figures"];
    assert_eq!(file["entries"].as_u64(), Some(3));
    assert_eq!(file["bytes"].as_u64(), Some(usage.entry_bytes));
    for tier in ["redis", "postgres"] {
        assert!(check(&doc, tier, "clock")["figures"]["skew_ms"].is_f64());
    }
    assert_eq!(check(&doc, "backplane", "reachable")["status"], "ok");
    let human = env.run(&["doctor"]).stdout;
    assert!(
        human.contains(&format!("Redis {}", info.version)),
        "{human}"
    );
    env.cleanup(&tiers, &cache).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_flags_planted_misconfiguration_and_a_dead_tier() {
    let mut server =
        RedisServer::start_with(&["--maxmemory", "4mb", "--maxmemory-policy", "noeviction"])
            .await
            .expect("a throwaway redis-server (install redis-server to run this test)");
    let mut env = Env::files_only();
    env.set("LAYERCAKE_REDIS_URL", server.url());
    let (tiers, cache) = env.instance().await;
    for i in 0..8 {
        cache
            .set(format!("k{i}").as_str(), "v".repeat(900))
            .await
            .unwrap();
    }
    cache.shutdown().await;
    drop((tiers, cache));
    // The directory at 95 % of the bound the services are configured with.
    let used = layercake::file::inspect_dir(env.dir()).unwrap().entry_bytes;
    env.set("LAYERCAKE_FILE_MAX_BYTES", (used * 100 / 95).to_string());
    // A temp file left an hour ago by a writer that is gone.
    let shard = env.dir().join("00");
    std::fs::create_dir_all(&shard).unwrap();
    let tmp = std::fs::File::create(shard.join(".tmp-4194304-0")).unwrap();
    tmp.set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    drop(tmp);

    let doc = env.run_expect(&["--json", "doctor"], 4).json();
    let mem = check(&doc, "redis", "memory");
    assert_eq!(mem["status"], "warn", "{mem}");
    assert_eq!(mem["figures"]["maxmemory"].as_u64(), Some(4 << 20));
    assert_eq!(mem["figures"]["maxmemory_policy"], "noeviction");
    assert!(
        mem["detail"]
            .as_str()
            .unwrap()
            .contains("every write fails"),
        "{mem}"
    );
    let usage = check(&doc, "file", "usage");
    assert_eq!(usage["status"], "warn", "{usage}");
    let share = usage["figures"]["used_share"].as_f64().unwrap();
    assert!((0.94..0.96).contains(&share), "{usage}");
    let temp = check(&doc, "file", "temp files");
    assert_eq!(temp["status"], "warn", "{temp}");
    assert_eq!(temp["figures"]["temp_files"].as_u64(), Some(1));
    let human = env.run_expect(&["doctor"], 4).stdout;
    assert!(
        human.contains("WARN") && human.contains("noeviction"),
        "{human}"
    );

    server.kill().await.unwrap();
    let doc = env.run_expect(&["--json", "doctor"], 1).json();
    assert_eq!(check(&doc, "redis", "reachable")["status"], "fail");
    assert_eq!(check(&doc, "file", "reachable")["status"], "ok");
}

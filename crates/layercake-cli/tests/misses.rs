//! `layercake misses`: the miss reports two instances saved, shown per instance and combined,
//! with exact counts; a missed target exits 4; a file that is not a report is bad usage.

mod support;

use layercake::{Cache, InsightConfig, MemoryBackend};
use support::Env;

/// An instance of one memory tier with an L1 hit-ratio target of 90 %.
fn instance() -> Cache {
    Cache::builder("shop")
        .tier(MemoryBackend::with_max_bytes(1 << 20).expect("memory tier"))
        .insight(InsightConfig::new().target(0, 0.9))
        .build()
        .expect("cache")
}

#[tokio::test]
async fn misses_shows_and_combines_what_instances_saved() {
    let env = Env::files_only();
    // Instance A: two keys never seen, one read after its delete: 3 reads, 0 hits.
    let a = instance();
    for k in ["a1", "a2"] {
        assert!(a.get::<u32>(k).await.unwrap().is_none());
    }
    a.set("gone", 1u32).await.unwrap();
    a.delete("gone").await.unwrap();
    assert!(a.get::<u32>("gone").await.unwrap().is_none());
    // Instance B: one hit, one key never seen: 2 reads, 1 hit.
    let b = instance();
    b.set("b", 2u32).await.unwrap();
    assert!(b.get::<u32>("b").await.unwrap().is_some());
    assert!(b.get::<u32>("c").await.unwrap().is_none());
    let (pa, pb) = (env.dir().join("a.json"), env.dir().join("b.json"));
    a.save_miss_report(&pa).unwrap();
    b.save_miss_report(&pb).unwrap();
    let (pa, pb) = (pa.display().to_string(), pb.display().to_string());

    let doc = env.run_expect(&["--json", "misses", &pa, &pb], 4).json();
    assert_eq!(doc["instances"].as_array().unwrap().len(), 2);
    assert_eq!(doc["targets_missed"], true);
    let l1 = &doc["combined"]["tiers"][0];
    assert_eq!(l1["tier"], "l1");
    assert_eq!(
        (l1["hits"].as_u64(), l1["reads"].as_u64()),
        (Some(1), Some(5))
    );
    assert_eq!(l1["misses"]["never_seen"], 3);
    assert_eq!(l1["misses"]["invalidated"], 1);
    assert_eq!(l1["misses"]["evicted"], 0);
    let ns = &doc["combined"]["namespaces"][0];
    assert_eq!(
        (ns["namespace"].as_str(), ns["tier"].as_str()),
        (Some("default"), Some("l1"))
    );
    assert_eq!(ns["misses"]["never_seen"], 3);

    let text = env.run_expect(&["misses", &pa, &pb], 4).stdout;
    assert!(text.contains("all 2 instances"), "{text}");
    assert!(text.contains("target 90.0 % MISSED"), "{text}");
    let row = text
        .lines()
        .find(|l| l.starts_with("l1 ") && l.contains('%'))
        .unwrap_or_else(|| panic!("no combined l1 row in:\n{text}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    // tier, ratio, "%", reads, then one column per reason: never_seen, expired, evicted,
    // invalidated, …
    assert_eq!(
        &cells[..8],
        ["l1", "20.0", "%", "5", "3", "0", "0", "1"],
        "{row}"
    );

    // One instance meeting its target: exit 0.
    let met = instance();
    met.set("x", 1u32).await.unwrap();
    assert!(met.get::<u32>("x").await.unwrap().is_some());
    let pm = env.dir().join("met.json");
    met.save_miss_report(&pm).unwrap();
    env.run_expect(&["misses", &pm.display().to_string()], 0);

    // Not a report: bad usage, naming the file.
    let bad = env.dir().join("bad.json");
    std::fs::write(&bad, "not json").unwrap();
    let r = env.run_expect(&["misses", &bad.display().to_string()], 2);
    assert!(
        r.stderr.contains("bad.json") && r.stderr.contains("is not a miss report"),
        "{}",
        r.stderr
    );
}

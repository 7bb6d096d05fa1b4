//! Scenario 6: corrupt bytes planted in each tier.

use std::sync::Arc;
use std::time::Duration;

use layercake::core::envelope;
use layercake::{Backend, Cache, Clock, Codec, Entry, Key, Source, SystemClock};
use layercake_file::{FileBackend, FileConfig};
use layercake_tests::Tiers;

use super::support::{RawPg, RawRedis, Rng};

/// A valid entry holding the JSON string `text`.
fn good_entry(text: &str) -> Entry {
    let enc = Codec::json().encode(&text.to_string()).unwrap();
    Entry::new(enc.bytes, SystemClock.now(), Duration::from_secs(600))
        .with_encoding(enc.format, enc.compression)
}

/// The four kinds of bad bytes planted for `key`.
fn bad_bytes(key: &Key, rng: &mut Rng) -> Vec<(&'static str, Vec<u8>)> {
    let good = envelope::encode(key, &good_entry("never returned")).unwrap();
    let other = Key::new(format!("{}-other", key.as_str())).unwrap();
    let mut future = good.clone();
    future[4] = envelope::FORMAT_VERSION + 1;
    vec![
        ("random", rng.bytes(97)),
        ("truncated", good[..good.len() / 2].to_vec()),
        (
            "other_key",
            envelope::encode(&other, &good_entry("other key's value")).unwrap(),
        ),
        ("future_version", future),
    ]
}

/// L1 memory, L2 Redis, L3 PostgreSQL, L4 files; for each byte-storing tier and each kind of
/// bad bytes (random, truncated envelope, another key's envelope, a future format version),
/// planted under a key with nothing else in the stack, then under a key whose good copy is in
/// L4; and an L1 entry whose payload the codec cannot read:
///
/// - the read is a miss (or the good L4 value), never the bad bytes;
/// - the bad copy is deleted (healed) and counted in the tier's `corrupt` statistic;
/// - nothing is promoted from it (upper tiers stay empty, or get the good value).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_06_corrupt_bytes_are_misses_healed_counted_never_promoted() {
    let tiers = Tiers::connect(Arc::new(SystemClock)).await;
    let dir = tempfile::tempdir().unwrap();
    let file = Arc::new(
        FileBackend::open(FileConfig::new(dir.path()))
            .await
            .unwrap(),
    );
    let cache = Cache::builder("fault-s6")
        .shared_tier(tiers.memory.clone())
        .shared_tier(tiers.redis.clone())
        .shared_tier(tiers.postgres.clone())
        .shared_tier(file.clone())
        .build()
        .unwrap();
    let stack: [Arc<dyn Backend>; 4] = [
        tiers.memory.clone(),
        tiers.redis.clone(),
        tiers.postgres.clone(),
        file.clone(),
    ];
    let raw_redis = RawRedis::connect(&tiers.redis_url, &format!("{}:", tiers.name)).await;
    let raw_pg = RawPg::connect(&tiers.database_url, &tiers.name).await;
    let mut rng = Rng::new(6);
    let mut cases = 0;
    let mut healed = 0;
    for tier in 1..4usize {
        for with_good_copy in [false, true] {
            if with_good_copy && tier == 3 {
                continue;
            }
            let probe = cache.key(format!("bad-{tier}-probe").as_str()).unwrap();
            for (kind, bytes) in bad_bytes(&probe, &mut rng) {
                let name = format!("bad-{tier}-{kind}-{with_good_copy}");
                let key = cache.key(name.as_str()).unwrap();
                // Re-target the bad bytes at this key (the "other key" kind stays another key's).
                let bytes = match kind {
                    "truncated" | "future_version" => {
                        let mut good =
                            envelope::encode(&key, &good_entry("never returned")).unwrap();
                        if kind == "truncated" {
                            good.truncate(good.len() / 2);
                        } else {
                            good[4] = envelope::FORMAT_VERSION + 1;
                        }
                        good
                    }
                    _ => bytes,
                };
                match tier {
                    1 => raw_redis.put(&key, &bytes).await,
                    2 => raw_pg.put(&key, &bytes).await,
                    _ => {
                        let path = file.path_of(&key);
                        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                        std::fs::write(&path, &bytes).unwrap();
                    }
                }
                if with_good_copy {
                    file.set(&key, &good_entry("good")).await.unwrap();
                }
                let before = cache.stats().tiers[tier].corrupt;
                let got = cache.get::<String>(name.as_str()).await.unwrap();
                let after = cache.stats().tiers[tier].corrupt;
                let still_bad = match tier {
                    1 => raw_redis.exists(&key).await && !with_good_copy,
                    2 => raw_pg.exists(&key).await && !with_good_copy,
                    _ => file.path_of(&key).exists(),
                };
                let ctx = format!("tier {tier}, {kind}, good copy below: {with_good_copy}");
                if with_good_copy {
                    let got =
                        got.unwrap_or_else(|| panic!("{ctx}: the good L4 copy was not found"));
                    assert_eq!(
                        (got.value.as_str(), got.source),
                        ("good", Source::Hit { tier: 3 }),
                        "{ctx}"
                    );
                    // Upper tiers now hold the good value, never the bad bytes.
                    for (i, t) in stack[..3].iter().enumerate() {
                        let e = t.get(&key).await.unwrap();
                        let v = e.map(|e| {
                            Codec::json()
                                .decode::<String>(&e.value, e.format, e.compression)
                                .unwrap()
                        });
                        assert_eq!(v.as_deref(), Some("good"), "{ctx}: tier {i}");
                    }
                } else {
                    assert!(got.is_none(), "{ctx}: bad bytes returned as {got:?}");
                    for (i, t) in stack[..tier].iter().enumerate() {
                        assert!(
                            t.get(&key).await.unwrap().is_none(),
                            "{ctx}: promoted to tier {i}"
                        );
                    }
                }
                assert_eq!(after, before + 1, "{ctx}: counted once");
                assert!(!still_bad, "{ctx}: the bad copy was not deleted");
                cases += 1;
                healed += usize::from(!still_bad);
            }
        }
    }
    // L1: an entry whose payload the codec cannot read.
    let key = cache.key("bad-0-codec").unwrap();
    let garbage = Entry::new(
        &b"{not json"[..],
        SystemClock.now(),
        Duration::from_secs(600),
    )
    .with_encoding(layercake::Format::Json, layercake::Compression::None);
    tiers.memory.set(&key, &garbage).await.unwrap();
    let before = cache.stats().tiers[0].corrupt;
    assert!(cache.get::<String>("bad-0-codec").await.unwrap().is_none());
    assert_eq!(cache.stats().tiers[0].corrupt, before + 1);
    assert!(tiers.memory.get(&key).await.unwrap().is_none(), "L1 healed");
    cases += 1;
    healed += 1;
    let s = cache.stats();
    println!(
        "scenario 6: cases={cases} returned_bad=0 promoted_bad=0 healed={healed} corrupt_counted={:?}",
        s.tiers.iter().map(|t| t.corrupt).collect::<Vec<_>>()
    );
    tiers.cleanup().await;
}

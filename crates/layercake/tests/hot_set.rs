//! Hot-set restarts and the miss report on scripted workloads whose answer is known.
#![allow(clippy::unwrap_used, reason = "test code: a panic is a test failure")]

use std::sync::Arc;
use std::time::Duration;

use layercake::{
    Backend, Cache, FixedTtl, InsightConfig, ManualClock, MemoryBackend, MissReason, Suggestion,
    WriteOptions,
};
use layercake_memory::MemoryConfig;

fn mem(clock: &ManualClock, bytes: u64) -> Arc<dyn Backend> {
    Arc::new(
        MemoryBackend::new(MemoryConfig::new(bytes).with_clock(Arc::new(clock.clone()))).unwrap(),
    )
}

fn cache(clock: &ManualClock, l1: &Arc<dyn Backend>, l2: &Arc<dyn Backend>, ttl: u64) -> Cache {
    Cache::builder("hot")
        .shared_tier(l1.clone())
        .shared_tier(l2.clone())
        .policy(FixedTtl::new(Duration::from_secs(ttl)))
        .clock(Arc::new(clock.clone()))
        .insight(InsightConfig::new().sample_every(1).target(0, 0.9))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_fresh_instance_warms_l1_with_the_hot_keys_and_nothing_expired() {
    let clock = ManualClock::new();
    let l2 = mem(&clock, 64 << 20);
    let first = cache(&clock, &mem(&clock, 64 << 20), &l2, 100);
    for i in 0..100u32 {
        first.set(format!("k{i}").as_str(), i).await.unwrap();
    }
    // Keys 0..10 are hot (read 20 times), the others once.
    for round in 0..20 {
        for i in 0..100u32 {
            if i < 10 || round == 0 {
                first.get::<u32>(format!("k{i}").as_str()).await.unwrap();
            }
        }
    }
    // One hot key's lower-tier copy is short-lived: it expires before the restart.
    first
        .set_with("k9", 9u32, &WriteOptions::new().ttl(Duration::from_secs(5)))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hot-set");
    assert_eq!(first.save_hot_set(&path, 10).unwrap(), 10);
    clock.advance(Duration::from_secs(10));

    let l1 = mem(&clock, 64 << 20);
    let second = cache(&clock, &l1, &l2, 100);
    let warm = second
        .spawn_warm_from_hot_set(&path)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((warm.keys, warm.present, warm.warmed), (10, 0, 9));
    assert_eq!((warm.lower_reads, warm.bulk_calls), (10, 1));
    for i in 0..100u32 {
        let held = l1
            .get(&second.key(format!("k{i}").as_str()).unwrap())
            .await
            .unwrap();
        assert_eq!(held.is_some(), i < 9, "k{i}");
    }
    // The warmed keys hit L1 at once.
    for i in 0..9u32 {
        let l = second
            .get::<u32>(format!("k{i}").as_str())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (*l.value, l.source),
            (i, layercake::Source::Hit { tier: 0 })
        );
    }
}

#[tokio::test]
async fn an_l1_too_small_gets_a_capacity_suggestion() {
    let clock = ManualClock::new();
    // Room for a few dozen of the 400 keys.
    let c = cache(&clock, &mem(&clock, 16 << 10), &mem(&clock, 64 << 20), 3600);
    for i in 0..400u32 {
        c.set(format!("k{i}").as_str(), vec![i; 16]).await.unwrap();
    }
    for _ in 0..3 {
        for i in 0..400u32 {
            c.get::<Vec<u32>>(format!("k{i}").as_str())
                .await
                .unwrap()
                .unwrap();
        }
    }
    let report = c.miss_report();
    println!("{report}");
    let l1 = &report.rows[0];
    assert!(l1.missed_target(), "{report}");
    assert!(
        l1.misses.get(MissReason::Evicted) * 10 >= l1.misses.total() * 9,
        "{report}"
    );
    match l1.suggestions.as_slice() {
        [Suggestion::MoreCapacity { share, keys, bytes }] => {
            assert!(*share >= 0.9, "{report}");
            assert!(*keys >= 300 && *keys <= 400, "{report}");
            assert!(*bytes >= *keys * 16, "{report}");
        }
        other => panic!("{other:?}\n{report}"),
    }
    assert!(report.to_string().contains("MISSED"), "{report}");
}

#[tokio::test]
async fn a_ttl_too_short_gets_a_longer_ttl_suggestion() {
    let clock = ManualClock::new();
    let l1 = mem(&clock, 64 << 20);
    let c = Cache::builder("ttl")
        .shared_tier(l1)
        .policy(FixedTtl::new(Duration::from_secs(10)))
        .clock(Arc::new(clock.clone()))
        .insight(InsightConfig::new().target(0, 0.8))
        .build()
        .unwrap();
    // Every key is read again 15 s after it was computed: 5 s after its expiry.
    for _ in 0..4 {
        for i in 0..50u32 {
            c.get_or_compute(format!("k{i}").as_str(), move || async move {
                Ok::<_, std::io::Error>(i)
            })
            .await
            .unwrap();
        }
        clock.advance(Duration::from_secs(15));
    }
    let report = c.miss_report();
    println!("{report}");
    let l1 = &report.rows[0];
    assert_eq!(l1.misses.get(MissReason::Expired), 150, "{report}");
    assert_eq!(l1.misses.get(MissReason::NeverSeen), 50, "{report}");
    assert!(l1.missed_target(), "{report}");
    match l1.suggestions.as_slice() {
        [Suggestion::LongerTtl { share, within }] => {
            assert_eq!(*share, 0.75);
            // Read 5 s after expiry: within the 8.192 s bucket.
            assert_eq!(*within, Duration::from_millis(8192));
        }
        other => panic!("{other:?}\n{report}"),
    }
}

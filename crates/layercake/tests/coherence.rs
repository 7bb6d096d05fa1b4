//! Backplane handling in the composer, over an in-process bus whose connections the tests
//! drop and restore: messages drop other instances' local copies, a disconnected instance caps
//! its local lifetimes, a reconnect drops everything local.
#![allow(clippy::unwrap_used, reason = "test code: a panic is a test failure")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use layercake::{Backend, Cache, FixedTtl, ManualClock, MemoryBackend, Scope, Source, TierOptions};
use layercake_memory::MemoryConfig;
use layercake_testkit::local_backplane::{LocalBackplane, LocalBus};

fn mem(clock: &ManualClock) -> Arc<dyn Backend> {
    Arc::new(
        MemoryBackend::new(MemoryConfig::new(8 << 20).with_clock(Arc::new(clock.clone()))).unwrap(),
    )
}

/// An instance: its own L1, the shared L2 (a memory tier declared `Shared`), a backplane.
fn instance(
    clock: &ManualClock,
    l2: &Arc<dyn Backend>,
    bp: LocalBackplane,
) -> (Cache, Arc<dyn Backend>) {
    let l1 = mem(clock);
    let cache = Cache::builder("coherence")
        .shared_tier(l1.clone())
        .shared_tier_with(l2.clone(), TierOptions::new().scope(Scope::Shared))
        .clock(Arc::new(clock.clone()))
        .policy(FixedTtl::new(Duration::from_secs(3600)))
        .disconnected_local_ttl(Duration::from_secs(5))
        .backplane(Arc::new(bp))
        .build()
        .unwrap();
    (cache, l1)
}

async fn until_applied(cache: &Cache, before: u64) {
    let t = Instant::now();
    while cache.stats().backplane_applied + cache.stats().backplane_resets == before {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "message never applied"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test]
async fn a_write_on_one_instance_drops_the_others_local_copy() {
    let clock = ManualClock::new();
    let bus = LocalBus::new();
    let l2 = mem(&clock);
    let (a, a_l1) = instance(&clock, &l2, bus.join());
    let (b, _) = instance(&clock, &l2, bus.join());
    b.set("k", 1u32).await.unwrap();
    assert_eq!(
        a.get::<u32>("k").await.unwrap().unwrap().source,
        Source::Hit { tier: 1 }
    );
    assert_eq!(
        a.get::<u32>("k").await.unwrap().unwrap().source,
        Source::Hit { tier: 0 }
    );
    let before = a.stats().backplane_applied;
    b.set("k", 2u32).await.unwrap();
    until_applied(&a, before).await;
    assert!(a_l1.get(&a.key("k").unwrap()).await.unwrap().is_none());
    let l = a.get::<u32>("k").await.unwrap().unwrap();
    assert_eq!((*l.value, l.source), (2, Source::Hit { tier: 1 }));
    // Tags and prefixes travel too.
    let before = a.stats().backplane_applied;
    b.invalidate_prefix("").await.unwrap();
    until_applied(&a, before).await;
    assert!(a.get::<u32>("k").await.unwrap().is_none());
}

#[tokio::test]
async fn while_disconnected_local_copies_are_capped_and_a_reconnect_drops_them() {
    let clock = ManualClock::new();
    let bus = LocalBus::new();
    let l2 = mem(&clock);
    let bp = bus.join();
    let (a, a_l1) = instance(&clock, &l2, bp.clone());
    a.set("before", 1u32).await.unwrap();
    bp.disconnect();
    a.set("during", 2u32).await.unwrap();
    let now = layercake::Clock::now(&clock);
    let during = a_l1.get(&a.key("during").unwrap()).await.unwrap().unwrap();
    assert_eq!(
        during.retain_until(),
        now.plus(Duration::from_secs(5)),
        "capped locally"
    );
    let shared = l2.get(&a.key("during").unwrap()).await.unwrap().unwrap();
    assert_eq!(
        shared.expires_at,
        now.plus(Duration::from_secs(3600)),
        "not capped in L2"
    );
    clock.advance(Duration::from_secs(6));
    assert_eq!(
        a.get::<u32>("during").await.unwrap().unwrap().source,
        Source::Hit { tier: 1 }
    );
    let before = a.stats().backplane_resets;
    bp.reconnect();
    let t = Instant::now();
    while a.stats().backplane_resets == before {
        assert!(t.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(
        a_l1.get(&a.key("before").unwrap()).await.unwrap().is_none(),
        "L1 dropped"
    );
    assert!(
        l2.get(&a.key("before").unwrap()).await.unwrap().is_some(),
        "L2 kept"
    );
}

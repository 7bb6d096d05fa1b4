//! Fills that cannot land after a newer write or removal, and the batch and `clear` paths that
//! used to let them (or reloaded what was cached as absent).
//!
//! Two `Cache` instances share "remote" tiers here: memory backends given the shared scope,
//! which implement conditional fills and tombstones as every shared backend must (the
//! conformance suite checks it for Redis, PostgreSQL and files).
#![allow(clippy::unwrap_used, reason = "test code: a panic is a test failure")]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use layercake::{
    Backend, Cache, Capability, Entry, FillOutcome, FixedTtl, Key, MemoryBackend, PolicyExt,
    Result, Scope, Selector, TierOptions, Tombstone, WriteMode, WriteOptions,
};
use layercake_memory::MemoryConfig;
use layercake_testkit::faulty::{Fault, FaultyBackend};
use layercake_testkit::recording::Operation;

fn mem() -> Arc<dyn Backend> {
    Arc::new(MemoryBackend::new(MemoryConfig::new(16 << 20)).unwrap())
}

fn shared() -> TierOptions {
    TierOptions::new().scope(Scope::Shared)
}

/// Forwards to `inner`; while `slow` is set, a `get` (or `get_many`) reads first and then waits (so the value
/// it returns can be outdated by the time the caller acts on it).
#[derive(Debug)]
struct SlowAfterRead {
    inner: Arc<dyn Backend>,
    slow: AtomicBool,
}

#[async_trait]
impl Backend for SlowAfterRead {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn capability(&self) -> Capability {
        self.inner.capability()
    }
    async fn get(&self, key: &Key) -> Result<Option<Entry>> {
        let got = self.inner.get(key).await?;
        self.pause().await;
        Ok(got)
    }
    async fn set(&self, key: &Key, entry: &Entry) -> Result<()> {
        self.inner.set(key, entry).await
    }
    async fn delete(&self, key: &Key) -> Result<()> {
        self.inner.delete(key).await
    }
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Entry>>> {
        let got = self.inner.get_many(keys).await?;
        self.pause().await;
        Ok(got)
    }
    async fn set_many(&self, items: &[(Key, Entry)]) -> Result<()> {
        self.inner.set_many(items).await
    }
    async fn delete_many(&self, keys: &[Key]) -> Result<()> {
        self.inner.delete_many(keys).await
    }
    async fn invalidate(&self, selector: &Selector) -> Result<()> {
        self.inner.invalidate(selector).await
    }
    async fn clear(&self) -> Result<()> {
        self.inner.clear().await
    }
    async fn health(&self) -> Result<()> {
        self.inner.health().await
    }
    async fn keys_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<Key>> {
        self.inner.keys_with_prefix(prefix, limit).await
    }
    async fn fill(&self, key: &Key, entry: &Entry) -> Result<FillOutcome> {
        self.inner.fill(key, entry).await
    }
    async fn fill_many(&self, items: &[(Key, Entry)]) -> Result<Vec<FillOutcome>> {
        self.inner.fill_many(items).await
    }
    async fn delete_with(&self, key: &Key, tombstone: Tombstone) -> Result<()> {
        self.inner.delete_with(key, tombstone).await
    }
    async fn invalidate_with(&self, selector: &Selector, tombstone: Tombstone) -> Result<()> {
        self.inner.invalidate_with(selector, tombstone).await
    }
    fn corrupt_reads(&self) -> u64 {
        self.inner.corrupt_reads()
    }
    fn as_any(&self) -> Option<&(dyn std::any::Any + Send + Sync)> {
        // Not forwarded: the composer's synchronous memory reads would skip the pause.
        None
    }
}

impl SlowAfterRead {
    /// While `slow` is set, wait after a read (so what it read can be outdated).
    async fn pause(&self) {
        if self.slow.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// Instance B reads an old value from a slow L3 while instance A removes the key; B's
/// promotion of what it read must not land in the shared L2 afterwards.
async fn late_promotion_after(remove: impl AsyncFnOnce(&Cache)) {
    let l2 = mem();
    let l3 = Arc::new(SlowAfterRead {
        inner: mem(),
        slow: AtomicBool::new(false),
    });
    let build = || {
        Cache::builder("late")
            .policy(FixedTtl::new(Duration::from_secs(600)))
            .tier(MemoryBackend::new(MemoryConfig::new(1 << 20)).unwrap())
            .shared_tier_with(l2.clone(), shared().name("l2"))
            .shared_tier_with(l3.clone(), shared().name("l3"))
            .build()
            .unwrap()
    };
    let (a, b) = (build(), build());
    a.set_with("k", 1u32, &WriteOptions::new().tag("t"))
        .await
        .unwrap();
    let key = a.key("k").unwrap();
    l2.delete(&key).await.unwrap();
    l3.slow.store(true, Ordering::Release);
    let reader = {
        let b = b.clone();
        tokio::spawn(async move { b.get::<u32>("k").await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    remove(&a).await;
    let got = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got.map(|l| *l.value), Some(1), "B read before the removal");
    assert!(
        l2.get(&key).await.unwrap().is_none(),
        "B's promotion landed in the shared tier after A's removal"
    );
    l3.slow.store(false, Ordering::Release);
    assert!(a.get::<u32>("k").await.unwrap().is_none());
}

#[tokio::test]
async fn a_promotion_read_before_a_delete_does_not_land_after_it() {
    late_promotion_after(async |a: &Cache| a.delete("k").await.unwrap()).await;
}

#[tokio::test]
async fn a_promotion_read_before_a_tag_invalidation_does_not_land_after_it() {
    late_promotion_after(async |a: &Cache| a.invalidate_tag("t").await.unwrap()).await;
}

#[tokio::test]
async fn a_promotion_read_before_a_prefix_invalidation_does_not_land_after_it() {
    late_promotion_after(async |a: &Cache| a.invalidate_prefix("").await.unwrap()).await;
}

#[tokio::test]
async fn get_or_compute_returns_once_the_shared_tiers_hold_the_value() {
    let slow = FaultyBackend::new(mem(), 2);
    slow.handle()
        .inject(Operation::Fill, Fault::Delay(Duration::from_millis(150)));
    let l2 = Arc::new(slow);
    let cache = Cache::builder("visible")
        .tier(MemoryBackend::new(MemoryConfig::new(1 << 20)).unwrap())
        .shared_tier_with(l2.clone(), shared())
        .build()
        .unwrap();
    let got = cache
        .get_or_compute("k", || async { Ok::<_, std::io::Error>(7u32) })
        .await
        .unwrap();
    assert_eq!(*got.value, 7);
    let key = cache.key("k").unwrap();
    assert!(
        l2.get(&key).await.unwrap().is_some(),
        "another instance reading L2 now must find the computed value"
    );
}

#[tokio::test]
async fn get_or_compute_many_asks_for_a_repeated_input_once_and_fills_every_slot() {
    let cache = Cache::builder("dup")
        .tier(MemoryBackend::new(MemoryConfig::new(1 << 20)).unwrap())
        .build()
        .unwrap();
    let asked = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let seen = asked.clone();
    let out = cache
        .get_or_compute_many(&["dup", "dup", "other"], |wanted: Vec<String>| async move {
            seen.lock().extend(wanted.iter().cloned());
            Ok::<_, std::io::Error>(
                wanted
                    .into_iter()
                    .map(|w| (w.clone(), w.len()))
                    .collect::<HashMap<_, _>>(),
            )
        })
        .await
        .unwrap();
    assert_eq!(*asked.lock(), vec!["dup".to_owned(), "other".to_owned()]);
    let values: Vec<Option<usize>> = out.iter().map(|l| l.as_ref().map(|l| *l.value)).collect();
    assert_eq!(values, vec![Some(3), Some(3), Some(5)]);
}

#[tokio::test]
async fn get_or_compute_many_does_not_reload_what_is_cached_as_absent() {
    let cache = Cache::builder("neg")
        .policy(FixedTtl::new(Duration::from_secs(60)).negative_ttl(Duration::from_secs(60)))
        .tier(MemoryBackend::new(MemoryConfig::new(1 << 20)).unwrap())
        .build()
        .unwrap();
    let none = cache
        .get_or_compute_optional("n", || async { Ok::<Option<u32>, std::io::Error>(None) })
        .await
        .unwrap();
    assert!(none.value.is_none());
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let out = cache
        .get_or_compute_many(&["n"], |wanted: Vec<String>| async move {
            c.fetch_add(wanted.len(), Ordering::SeqCst);
            Ok::<_, std::io::Error>(HashMap::<String, u32>::new())
        })
        .await
        .unwrap();
    assert!(out[0].is_none());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "the absent key was reloaded"
    );
}

#[tokio::test]
async fn clear_waits_for_writes_queued_behind_it() {
    let slow = FaultyBackend::new(mem(), 3);
    slow.handle()
        .inject(Operation::Set, Fault::Delay(Duration::from_millis(200)));
    let l2 = Arc::new(slow);
    let cache = Cache::builder("clear")
        .tier(MemoryBackend::new(MemoryConfig::new(1 << 20)).unwrap())
        .shared_tier_with(
            l2.clone(),
            shared().write_mode(WriteMode::Behind { capacity: 16 }),
        )
        .build()
        .unwrap();
    cache.set("k", 1u8).await.unwrap();
    cache.clear().await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let key = cache.key("k").unwrap();
    assert!(
        l2.get(&key).await.unwrap().is_none(),
        "a set queued before clear landed after it"
    );
}

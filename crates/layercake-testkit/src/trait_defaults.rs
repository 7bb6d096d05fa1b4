//! The trait's defaults of `fill`, `fill_many`, `delete_with` and `invalidate_with`, and
//! their forwarding through `Arc`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use layercake_core::{
    Backend, Capability, Entry, FillOutcome, Key, Result, Selector, Timestamp, Tombstone,
};

/// The smallest backend: only the required methods, so every fill method is the default.
#[derive(Debug, Default)]
struct Minimal(Mutex<HashMap<Key, Entry>>);

#[async_trait]
impl Backend for Minimal {
    fn kind(&self) -> &'static str {
        "minimal"
    }
    fn capability(&self) -> Capability {
        Capability::MINIMAL
    }
    async fn get(&self, key: &Key) -> Result<Option<Entry>> {
        Ok(self.0.lock().unwrap().get(key).cloned())
    }
    async fn set(&self, key: &Key, entry: &Entry) -> Result<()> {
        self.0.lock().unwrap().insert(key.clone(), entry.clone());
        Ok(())
    }
    async fn delete(&self, key: &Key) -> Result<()> {
        self.0.lock().unwrap().remove(key);
        Ok(())
    }
}

/// A backend whose own `fill` always refuses, to see it reached through `Arc`s.
#[derive(Debug)]
struct Refusing;

#[async_trait]
impl Backend for Refusing {
    fn kind(&self) -> &'static str {
        "refusing"
    }
    fn capability(&self) -> Capability {
        Capability::MINIMAL
    }
    async fn get(&self, _: &Key) -> Result<Option<Entry>> {
        Ok(None)
    }
    async fn set(&self, _: &Key, _: &Entry) -> Result<()> {
        Ok(())
    }
    async fn delete(&self, _: &Key) -> Result<()> {
        Ok(())
    }
    async fn fill(&self, _: &Key, _: &Entry) -> Result<FillOutcome> {
        Ok(FillOutcome::Tombstoned)
    }
}

fn entry(version: u64) -> Entry {
    Entry::new(&b"v"[..], Timestamp(0), Duration::from_secs(60)).with_version(version)
}

#[tokio::test]
async fn the_defaults_compare_versions_and_keep_no_tombstone() {
    let b = Minimal::default();
    let k = Key::new("k").unwrap();
    assert!(!b.capability().conditional_fill);
    assert_eq!(b.fill(&k, &entry(5)).await.unwrap(), FillOutcome::Stored);
    assert_eq!(b.fill(&k, &entry(5)).await.unwrap(), FillOutcome::KeptNewer);
    assert_eq!(b.fill(&k, &entry(4)).await.unwrap(), FillOutcome::KeptNewer);
    let many = b
        .fill_many(&[(k.clone(), entry(6)), (Key::new("j").unwrap(), entry(1))])
        .await
        .unwrap();
    assert_eq!(many, [FillOutcome::Stored, FillOutcome::Stored]);
    assert_eq!(b.get(&k).await.unwrap().unwrap().version, 6);
    // delete_with is a plain delete: no tombstone refuses the next fill.
    b.delete_with(&k, Tombstone::new(100, Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(b.get(&k).await.unwrap(), None);
    assert_eq!(b.fill(&k, &entry(1)).await.unwrap(), FillOutcome::Stored);
    // invalidate_with is invalidate: Unsupported here.
    let err = b
        .invalidate_with(
            &Selector::Prefix("k".into()),
            Tombstone::new(1, Duration::ZERO),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), layercake_core::ErrorKind::Unsupported);
}

#[tokio::test]
async fn arcs_forward_to_the_backends_own_fill() {
    let inner: Arc<dyn Backend> = Arc::new(Refusing);
    let outer: Arc<dyn Backend> = Arc::new(inner);
    let k = Key::new("k").unwrap();
    assert_eq!(
        outer.fill(&k, &entry(1)).await.unwrap(),
        FillOutcome::Tombstoned
    );
    assert_eq!(
        outer.fill_many(&[(k.clone(), entry(1))]).await.unwrap(),
        [FillOutcome::Tombstoned]
    );
    outer
        .delete_with(&k, Tombstone::new(1, Duration::from_secs(1)))
        .await
        .unwrap();
}

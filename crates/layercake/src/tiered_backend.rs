//! [`TieredBackend`]: a composed stack used as one untyped [`Backend`].

use async_trait::async_trait;
use layercake_core::{Backend, Capability, Entry, Error, Key, Result, Selector};

use crate::Cache;

/// The whole stack of a [`Cache`] as one [`Backend`]: reads walk the tiers with promotion,
/// writes go through, deletes and invalidations reach every tier. It lets a stack be a tier of
/// another stack, and lets the conformance suite check the composer.
#[derive(Debug, Clone)]
pub struct TieredBackend {
    pub(crate) cache: Cache,
}

#[async_trait]
impl Backend for TieredBackend {
    fn kind(&self) -> &'static str {
        "tiered"
    }

    fn capability(&self) -> Capability {
        let tiers = &self.cache.inner.tiers;
        let all = |f: fn(&Capability) -> bool| tiers.iter().all(|t| f(&t.capability));
        let mut c = Capability::MINIMAL;
        c.prefix_invalidation = all(|c| c.prefix_invalidation);
        c.tag_invalidation = all(|c| c.tag_invalidation);
        c.clear = all(|c| c.clear);
        c.clock_driven_expiry = all(|c| c.clock_driven_expiry);
        c.stores_bytes = false;
        c.shared = tiers.iter().any(|t| t.capability.shared);
        c.durable = tiers.iter().any(|t| t.capability.durable);
        c.max_value_bytes = tiers
            .iter()
            .filter_map(|t| t.capability.max_value_bytes)
            .min();
        c
    }

    async fn get(&self, key: &Key) -> Result<Option<Entry>> {
        self.cache.raw_get(key).await
    }

    async fn set(&self, key: &Key, entry: &Entry) -> Result<()> {
        self.cache.raw_set(key, entry).await
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        self.cache.delete(key).await
    }

    async fn invalidate(&self, selector: &Selector) -> Result<()> {
        let cap = self.capability();
        let ok = match selector {
            Selector::Prefix(_) => cap.prefix_invalidation,
            Selector::Tag(_) => cap.tag_invalidation,
            _ => false,
        };
        if !ok {
            return Err(Error::unsupported(format!(
                "a tier of this stack cannot invalidate by {selector:?}"
            )));
        }
        self.cache.invalidate(selector.clone()).await
    }

    async fn clear(&self) -> Result<()> {
        if !self.capability().clear {
            return Err(Error::unsupported("a tier of this stack cannot clear"));
        }
        self.cache.clear().await
    }

    async fn health(&self) -> Result<()> {
        for t in &self.cache.inner.tiers {
            t.backend.health().await?;
        }
        Ok(())
    }

    fn corrupt_reads(&self) -> u64 {
        self.cache
            .inner
            .tiers
            .iter()
            .map(|t| t.backend.corrupt_reads())
            .sum()
    }
}

//! [`TieredBackend`]: a composed stack used as one untyped [`Backend`].

use async_trait::async_trait;
use layercake_core::{Backend, Capability, Entry, Error, Key, Result, Selector};

use crate::Cache;
use crate::promote::Fill;
use crate::stats::Op;
use crate::telemetry::Outcome;
use crate::write::How;

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
        c.reach = tiers
            .iter()
            .map(|t| t.capability.reach)
            .max()
            .unwrap_or_default();
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

// The raw adapter: entries in and out, no decoding.
impl Cache {
    /// The composed stack as one untyped [`Backend`].
    pub fn as_backend(&self) -> TieredBackend {
        TieredBackend {
            cache: self.clone(),
        }
    }

    pub(crate) async fn raw_get(&self, key: &Key) -> Result<Option<Entry>> {
        let scope = self.inner.telemetry.start(Op::Get);
        let now = self.inner.clock.now();
        let read = self
            .read_through(key, now, &scope, 0..usize::MAX, |_, _| Ok(()))
            .await;
        let fill = Fill {
            snap: read.snap,
            failed: read.failed,
        };
        let r = match read.fresh.or(read.stale) {
            Some(f) => {
                if f.tier > 0 {
                    self.promote(key, &f.entry, f.tier, false, None, now, &scope, fill)
                        .await;
                }
                Some(f.entry.without_decoded())
            }
            None => None,
        };
        self.inner.telemetry.finish(scope, Outcome::Ok);
        Ok(r)
    }

    pub(crate) async fn raw_set(&self, key: &Key, entry: &Entry) -> Result<()> {
        self.inner.flights.supersede_key(key);
        let now = self.inner.clock.now();
        if !entry.is_retained(now) {
            return self.delete(key).await;
        }
        let d = self
            .inner
            .decide(key, entry.value.len(), entry.is_negative());
        let written = self
            .write_entry(
                key,
                entry.clone().without_decoded(),
                d.tiers,
                None,
                How::Set,
            )
            .await?;
        self.inner.publish_key(key, entry.version).await;
        self.strict(written, self.inner.repairs.strict).map(drop)
    }
}

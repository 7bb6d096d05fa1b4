//! The `layercake.tier.misses` counter (feature `otel`): the misses of each tier by reason,
//! read from the insight counters at collection time.

use std::any::Any;
use std::sync::Arc;

use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;

use super::MissReason;
use crate::stack::Stack;

/// Register `layercake.tier.misses` {`layercake.tier`, `layercake.reason`}; the callback holds
/// the cache weakly. Nothing is registered when miss reasons are off.
pub(crate) fn observe_misses(
    inner: &Arc<Stack>,
    m: &Meter,
    keep: &mut Vec<Box<dyn Any + Send + Sync>>,
) {
    if !inner.insight.config.miss_reasons {
        return;
    }
    let cache = KeyValue::new("layercake.cache", inner.name.to_string());
    let attrs: Vec<Vec<[KeyValue; 3]>> = inner
        .tiers
        .iter()
        .map(|t| {
            MissReason::ALL
                .iter()
                .map(|r| {
                    [
                        cache.clone(),
                        KeyValue::new("layercake.tier", t.name.to_string()),
                        KeyValue::new("layercake.reason", r.as_str()),
                    ]
                })
                .collect()
        })
        .collect();
    let weak = Arc::downgrade(inner);
    keep.push(Box::new(
        m.u64_observable_counter("layercake.tier.misses")
            .with_unit("{miss}")
            .with_description(
                "Reads that did not hit a tier, by tier and reason (never_seen, expired, evicted, \
                 invalidated, repair_pending, corrupt, error, skipped)",
            )
            .with_callback(move |obs| {
                let Some(inner) = weak.upgrade() else { return };
                for (tier, counts) in inner.insight.per_tier().iter().enumerate() {
                    for r in MissReason::ALL {
                        let n = counts.get(r);
                        if n > 0
                            && let Some(a) = attrs.get(tier).and_then(|t| t.get(r.index()))
                        {
                            obs.observe(n, a);
                        }
                    }
                }
            })
            .build(),
    ));
}

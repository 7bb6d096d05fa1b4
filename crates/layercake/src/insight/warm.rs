//! Hot-set restarts: `hot_set`, `save_hot_set`, `warm_from_hot_set` (upper tiers filled from
//! the lower tiers' bulk reads, fresh copies only) and the periodic saver.

use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use layercake_core::{Key, Result};
use tokio::task::JoinHandle;

use super::hotset::{read_file, write_file};
use crate::cache::Cache;
use crate::stack::Stack;
use crate::stats::Op;
use crate::telemetry::ok_or_error;
use crate::write::How;

/// Keys asked per bulk read while warming.
const CHUNK: usize = 512;

/// What [`Cache::warm_from_hot_set`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HotSetWarm {
    /// Keys in the hot set.
    pub keys: usize,
    /// Keys already in L1 (not read again).
    pub present: usize,
    /// Keys filled into the upper tiers (a fresh copy was found below).
    pub warmed: usize,
    /// Keys asked of the lower tiers, all tiers together.
    pub lower_reads: u64,
    /// Bulk calls (`get_many`) made to the lower tiers.
    pub bulk_calls: u64,
    /// How long the warm-up took.
    pub elapsed: Duration,
}

impl Cache {
    /// The hottest `per_namespace` keys of each namespace, from the read sample (hottest
    /// first within a namespace). Empty when the sample is off
    /// ([`InsightConfig::hot_candidates`](crate::InsightConfig::hot_candidates) 0).
    pub fn hot_set(&self, per_namespace: usize) -> Vec<Key> {
        self.inner
            .insight
            .hot
            .as_ref()
            .map_or_else(Vec::new, |h| h.hottest(per_namespace))
    }

    /// Save the hot set (the hottest `per_namespace` keys of each namespace) to a file,
    /// atomically; returns how many keys were written. Only keys are saved, never values:
    /// [`warm_from_hot_set`](Cache::warm_from_hot_set) reads the values from the lower tiers.
    pub fn save_hot_set(&self, path: impl AsRef<Path>, per_namespace: usize) -> Result<usize> {
        let keys = self.hot_set(per_namespace);
        write_file(path.as_ref(), &keys)?;
        Ok(keys.len())
    }

    /// Fill the upper tiers (L1 first) with the keys of a hot-set file that they lack, from
    /// the lower tiers' bulk reads (`get_many`, 512 keys a call). Only fresh copies are
    /// filled, with their remaining lifetime (never extended), as a promotion would: nothing
    /// expired is ever served from the warm-up. Keys are filled coldest first, so that an L1
    /// too small for the whole set keeps the hottest.
    pub async fn warm_from_hot_set(&self, path: impl AsRef<Path>) -> Result<HotSetWarm> {
        let tel = &self.inner.telemetry;
        let scope = tel.start(Op::Warm);
        let r = match read_file(path.as_ref()) {
            Ok(keys) => Ok(self.warm_keys(keys).await),
            Err(e) => Err(e),
        };
        tel.finish(scope, ok_or_error(&r));
        r
    }

    /// [`warm_from_hot_set`](Cache::warm_from_hot_set) in a background task: start-up is not
    /// delayed; reads meanwhile go through as usual.
    pub fn spawn_warm_from_hot_set(
        &self,
        path: impl AsRef<Path>,
    ) -> JoinHandle<Result<HotSetWarm>> {
        let cache = self.clone();
        let path = path.as_ref().to_path_buf();
        tokio::spawn(async move { cache.warm_from_hot_set(path).await })
    }

    async fn warm_keys(&self, mut keys: Vec<Key>) -> HotSetWarm {
        let start = Instant::now();
        let inner = &*self.inner;
        let tel = &inner.telemetry;
        let mut report = HotSetWarm {
            keys: keys.len(),
            ..HotSetWarm::default()
        };
        keys.reverse();
        let now = inner.clock.now();
        if let Some(mem) = inner.tiers.first().and_then(|t| t.memory()) {
            keys.retain(|k| mem.get_shared_at(k, now).is_none_or(|e| !e.is_fresh(now)));
        }
        report.present = report.keys - keys.len();
        for chunk in keys.chunks(CHUNK) {
            let snaps: Vec<_> = chunk.iter().map(|k| inner.epochs.snapshot(k)).collect();
            let mut pending: Vec<usize> = (0..chunk.len()).collect();
            for tier in inner.tiers.iter().skip(1) {
                if pending.is_empty() {
                    break;
                }
                let batch: Vec<Key> = pending.iter().map(|&i| chunk[i].clone()).collect();
                report.lower_reads += batch.len() as u64;
                report.bulk_calls += 1;
                let Ok(got) = tier.call(tel, false, tier.backend.get_many(&batch)).await else {
                    continue;
                };
                let mut still = Vec::new();
                for (&i, entry) in pending.iter().zip(got) {
                    let Some(entry) = entry.filter(|e| e.is_fresh(now)) else {
                        still.push(i);
                        continue;
                    };
                    let plan = self.promotion_plan(
                        &chunk[i],
                        &entry,
                        tier.position,
                        false,
                        None,
                        now,
                        |t| inner.repairs.skips_key(t.position, &chunk[i]),
                    );
                    let mut filled = false;
                    for (t, e) in plan {
                        if let Ok(true) = self.write_to(t, &chunk[i], e, How::Fill(snaps[i])).await
                        {
                            tel.promoted(t.position);
                            filled = true;
                        }
                    }
                    report.warmed += usize::from(filled);
                }
                pending = still;
            }
        }
        report.elapsed = start.elapsed();
        report
    }

    /// Save the hot set to the configured file, if any (on shutdown).
    pub(crate) fn save_configured_hot_set(&self) {
        if let Some(f) = &self.inner.insight.config.hot_set_file {
            let _ = self.save_hot_set(&f.path, f.keys_per_namespace);
        }
    }
}

/// Start the periodic savers the configuration asks for — the hot set, the miss report —
/// (they need a Tokio runtime; without one, both are saved on shutdown only).
pub(crate) fn start_saver(inner: &Arc<Stack>, keys: Arc<dyn layercake_core::KeyStrategy>) {
    let config = &inner.insight.config;
    if let Some(f) = config.hot_set_file.clone() {
        every(inner, &keys, f.every, move |cache| {
            let _ = cache.save_hot_set(&f.path, f.keys_per_namespace);
        });
    }
    if let Some(f) = config.miss_report_file.clone() {
        every(inner, &keys, f.every, move |cache| {
            let _ = cache.save_miss_report(&f.path);
        });
    }
}

/// Run `save` on the cache every `period` (none: never), until the cache is dropped or shut
/// down.
fn every(
    inner: &Arc<Stack>,
    keys: &Arc<dyn layercake_core::KeyStrategy>,
    period: Option<Duration>,
    save: impl Fn(&Cache) + Send + 'static,
) {
    let (Some(period), Ok(rt)) = (period, tokio::runtime::Handle::try_current()) else {
        return;
    };
    let weak: Weak<Stack> = Arc::downgrade(inner);
    let keys = keys.clone();
    let task = rt.spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(inner) = weak.upgrade() else { return };
            save(&Cache {
                inner,
                keys: keys.clone(),
                call: Default::default(),
            });
        }
    });
    inner.tasks.lock().push(task);
}

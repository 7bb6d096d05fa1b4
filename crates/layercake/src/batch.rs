//! Batches: `get_many` (each tier asked once, in bulk, for the keys still missing) and
//! `get_or_compute_many` (one loader call for the misses).

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use futures::future::join_all;
use layercake_core::{Entry, Key, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::MissReason;
use crate::cache::{Cache, WriteOptions};
use crate::coherence::epochs::Snapshot;
use crate::key_input::IntoKey;
use crate::load::loader_error;
use crate::lookup::{Lookup, Source};
use crate::promote::promotion_upto;
use crate::stats::Op;
use crate::telemetry::{OpScope, ok_or_error};
use crate::tier::Scope;
use crate::value::{Value, decode_typed};
use crate::write::How;

impl Cache {
    // ---------------------------------------------------------------- batches

    /// Read several values; one slot per input, in order. Each tier is asked once, with its
    /// bulk operation, for the keys still missing; hits at lower tiers fill upper tiers.
    /// Inputs are what [`get`](Cache::get) takes ([`IntoKey`]): caller text, [`Key`]s,
    /// [`Request`](crate::Request)s, or references to them.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> layercake::Result<()> {
    /// use layercake::{Cache, MemoryBackend};
    /// let cache = Cache::builder("docs").tier(MemoryBackend::with_max_bytes(1 << 20)?).build()?;
    /// cache.set("a", 1u32).await?;
    /// let found = cache.get_many::<u32, _>(["a", "b"]).await?;
    /// assert_eq!(found.iter().map(|l| l.as_ref().map(|l| *l.value)).collect::<Vec<_>>(), [Some(1), None]);
    /// let key = cache.key("a")?;
    /// assert!(cache.get_many::<u32, _>([&key]).await?[0].is_some());
    /// # Ok(()) }
    /// ```
    pub async fn get_many<T, K>(
        &self,
        inputs: impl IntoIterator<Item = K>,
    ) -> Result<Vec<Option<Lookup<Arc<T>>>>>
    where
        T: DeserializeOwned + Send + Sync + 'static,
        K: IntoKey,
    {
        let tel = &self.inner.telemetry;
        let scope = tel.start(Op::GetMany);
        let r = async {
            let keys = inputs
                .into_iter()
                .map(|k| k.into_key(&*self.keys))
                .collect::<Result<Vec<Key>>>()?;
            self.get_many_inner::<T>(&keys, &scope)
                .await
                .map(|(v, _)| v)
        }
        .await;
        tel.finish(scope, ok_or_error(&r));
        r
    }

    pub(crate) async fn get_many_inner<T>(
        &self,
        keys: &[Key],
        scope: &OpScope<'_>,
    ) -> Result<(Vec<Option<Lookup<Arc<T>>>>, Vec<usize>)>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let inner = &*self.inner;
        let tel = &inner.telemetry;
        keys.iter().for_each(|k| inner.insight.read(k));
        let snaps: Vec<Snapshot> = keys.iter().map(|k| inner.epochs.snapshot(k)).collect();
        let now = inner.clock.now();
        let mut out: Vec<Option<Lookup<Arc<T>>>> = (0..keys.len()).map(|_| None).collect();
        let mut pending: Vec<usize> = (0..keys.len()).collect();
        // (tier found, key index, entry, decoded)
        let mut to_promote: Vec<(usize, usize, Entry, Arc<T>)> = Vec::new();
        // (tier found, key index, negative entry)
        let mut absent_promote: Vec<(usize, usize, Entry)> = Vec::new();
        for tier in &inner.tiers {
            if pending.is_empty() {
                break;
            }
            if self.call.skip.contains(tier.position) {
                continue;
            }
            // Keys awaiting a repair in this tier are not asked there (misses).
            let (asked, noted): (Vec<usize>, Vec<usize>) = match inner.repairs.record(tier.position)
            {
                Some(r) if !r.is_empty() => pending.iter().partition(|&&i| !r.skips_key(&keys[i])),
                _ => (pending.clone(), Vec::new()),
            };
            for &i in &noted {
                tel.miss(scope, tier.position);
                inner
                    .insight
                    .missed_entry(tier.position, &keys[i], None, true, now);
            }
            if asked.is_empty() {
                continue;
            }
            let batch: Vec<Key> = asked.iter().map(|&i| keys[i].clone()).collect();
            let got = match tier.get_many(tel, &batch).await {
                Ok(g) if g.len() == batch.len() => g,
                Ok(_) => continue,
                Err(e) => {
                    asked
                        .iter()
                        .for_each(|&i| inner.insight.failed(tier.position, &keys[i], &e));
                    tel.read_failed(scope, tier.position, &e);
                    continue;
                }
            };
            let mut still = noted;
            for (&i, entry) in asked.iter().zip(got) {
                let repair =
                    |e: &Entry| inner.repairs.skips_entry(tier.position, &keys[i], &e.tags);
                let held = entry.as_ref().is_some_and(repair);
                let (entry, past) = match entry {
                    Some(e) if !held && e.is_fresh(now) => (Some(e), None),
                    e => (None, e),
                };
                let Some(entry) = entry else {
                    tel.miss(scope, tier.position);
                    let (p, t) = (past.as_ref(), tier.position);
                    inner.insight.missed_entry(t, &keys[i], p, held, now);
                    still.push(i);
                    continue;
                };
                if entry.is_negative() {
                    // Cached as absent: a hit whose answer is "none" (not a miss to reload).
                    tel.hit(scope, tier.position);
                    if promotion_upto(tier.position, false).is_some() {
                        absent_promote.push((tier.position, i, entry));
                    }
                    continue;
                }
                match decode_typed::<T>(&inner.codec, &entry) {
                    Ok(Value::Some(v)) => {
                        tel.hit(scope, tier.position);
                        if promotion_upto(tier.position, entry.decoded().is_none()).is_some() {
                            to_promote.push((tier.position, i, entry, v.clone()));
                        }
                        out[i] = Some(Lookup {
                            value: v,
                            source: Source::Hit {
                                tier: tier.position,
                            },
                        });
                    }
                    _ => {
                        tel.corrupt(tier.position);
                        tel.miss(scope, tier.position);
                        inner
                            .insight
                            .missed_as(tier.position, &keys[i], MissReason::Corrupt);
                        let _ = tier.call(tel, true, tier.backend.delete(&keys[i])).await;
                        still.push(i);
                    }
                }
            }
            pending = still;
        }
        for _ in &pending {
            tel.full_miss();
        }
        // Fill upper tiers: the in-process ones entry by entry under the epoch guard, the
        // others in bulk (one set_many per tier) with the keys that did not change.
        let mut per_tier: HashMap<usize, Vec<(Key, Entry)>> = HashMap::new();
        let promotions = to_promote
            .into_iter()
            .map(|(found, i, entry, v)| (found, i, entry, Some(v as Arc<dyn Any + Send + Sync>)))
            .chain(absent_promote.into_iter().map(|(f, i, e)| (f, i, e, None)));
        for (found, i, entry, decoded) in promotions {
            let upgrade_l1 = decoded.is_some() && entry.decoded().is_none();
            let plan = self.promotion_plan(
                &keys[i],
                &entry,
                found,
                upgrade_l1,
                decoded.as_ref(),
                now,
                |_| false,
            );
            for (t, e) in plan {
                if t.scope == Scope::Process && t.memory().is_some() {
                    if let Ok(true) = self.write_to(t, &keys[i], e, How::Fill(snaps[i])).await {
                        tel.promoted(t.position);
                    }
                } else if !inner.epochs.changed_since(&keys[i], snaps[i]) {
                    per_tier
                        .entry(t.position)
                        .or_default()
                        .push((keys[i].clone(), e));
                }
            }
        }
        join_all(per_tier.into_iter().map(|(pos, items)| {
            let t = &inner.tiers[pos];
            async move {
                // Fills: conditional where the backend can (never over a newer entry nor
                // under a removal's tombstone).
                let stored = if t.capability.conditional_fill {
                    t.call(tel, true, t.backend.fill_many(&items))
                        .await
                        .map(|o| o.iter().filter(|o| o.is_stored()).count())
                } else {
                    let n = items.len();
                    t.call(tel, true, t.backend.set_many(&items))
                        .await
                        .map(|()| n)
                };
                if matches!(stored, Ok(n) if n > 0) {
                    inner.insight.stored_many(pos, &items);
                }
                for _ in 0..stored.unwrap_or(0) {
                    tel.promoted(pos);
                }
            }
        }))
        .await;
        Ok((out, pending))
    }

    /// Read several values and compute the missing ones with one loader call that receives
    /// only the missing inputs and returns what it found (inputs it leaves out stay `None`).
    pub async fn get_or_compute_many<T, S, F, Fut, E>(
        &self,
        inputs: &[S],
        loader: F,
    ) -> Result<Vec<Option<Lookup<Arc<T>>>>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        S: AsRef<str>,
        F: FnOnce(Vec<String>) -> Fut,
        Fut: Future<Output = std::result::Result<HashMap<String, T>, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let tel = &self.inner.telemetry;
        let scope = tel.start(Op::GetOrComputeMany);
        let r = async {
            let keys = inputs
                .iter()
                .map(|s| self.keys.key_for_text(s.as_ref()))
                .collect::<Result<Vec<Key>>>()?;
            let snaps: Vec<Snapshot> = keys.iter().map(|k| self.inner.epochs.snapshot(k)).collect();
            // Taken before the tiers are read: a write or removal after this point, anywhere,
            // is newer than the values this call fills.
            let version = self.inner.versions.next();
            let (mut out, missing) = self.get_many_inner::<T>(&keys, &scope).await?;
            if missing.is_empty() {
                return Ok(out);
            }
            // Each missing input once, in the order first seen.
            let mut wanted: Vec<String> = Vec::with_capacity(missing.len());
            for &i in &missing {
                let text = inputs[i].as_ref();
                if !wanted.iter().any(|w| w == text) {
                    wanted.push(text.to_owned());
                }
            }
            let start = Instant::now();
            let loaded = loader(wanted.clone()).await;
            tel.loader_done(start.elapsed(), loaded.is_ok());
            let mut loaded = loaded.map_err(loader_error)?;
            let mut computed: HashMap<String, Arc<T>> = HashMap::with_capacity(wanted.len());
            for text in wanted {
                let Some(v) = loaded.remove(&text) else {
                    continue;
                };
                let i = missing
                    .iter()
                    .copied()
                    .find(|&i| inputs[i].as_ref() == text)
                    .unwrap_or_default();
                let v = Arc::new(v);
                let how = How::Fill(snaps[i]);
                let _ = self
                    .store(
                        &keys[i],
                        Some(v.clone()),
                        &WriteOptions::default(),
                        how,
                        Some(version),
                    )
                    .await;
                computed.insert(text, v);
            }
            for i in missing {
                if let Some(v) = computed.get(inputs[i].as_ref()) {
                    out[i] = Some(Lookup {
                        value: v.clone(),
                        source: Source::Computed,
                    });
                }
            }
            Ok(out)
        }
        .await;
        tel.finish(scope, ok_or_error(&r));
        r
    }
}

//! Batches: `get_many` (each tier asked once, in bulk, for the keys still missing) and
//! `get_or_compute_many` (one loader call for the misses).

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use futures::future::join_all;
use layercake_core::{Entry, ErrorKind, Key, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::{Cache, WriteOptions};
use crate::coherence::epochs::Snapshot;
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
    pub async fn get_many<T, S>(&self, inputs: &[S]) -> Result<Vec<Option<Lookup<Arc<T>>>>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        S: AsRef<str>,
    {
        let tel = &self.inner.telemetry;
        let scope = tel.start(Op::GetMany);
        let r = self
            .get_many_inner::<T, S>(inputs, &scope)
            .await
            .map(|(v, _)| v);
        tel.finish(scope, ok_or_error(&r));
        r
    }

    pub(crate) async fn get_many_inner<T, S>(
        &self,
        inputs: &[S],
        scope: &OpScope<'_>,
    ) -> Result<(Vec<Option<Lookup<Arc<T>>>>, Vec<Key>)>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        S: AsRef<str>,
    {
        let inner = &*self.inner;
        let tel = &inner.telemetry;
        let keys: Vec<Key> = inputs
            .iter()
            .map(|s| self.keys.key_for_text(s.as_ref()))
            .collect::<Result<_>>()?;
        let snaps: Vec<Snapshot> = keys.iter().map(|k| inner.epochs.snapshot(k)).collect();
        let now = inner.clock.now();
        let mut out: Vec<Option<Lookup<Arc<T>>>> = (0..keys.len()).map(|_| None).collect();
        let mut pending: Vec<usize> = (0..keys.len()).collect();
        // (tier found, key index, entry, decoded)
        let mut to_promote: Vec<(usize, usize, Entry, Arc<T>)> = Vec::new();
        for tier in &inner.tiers {
            if pending.is_empty() {
                break;
            }
            // Keys awaiting a repair in this tier are not asked there (misses).
            let (asked, noted): (Vec<usize>, Vec<usize>) = match inner.repairs.record(tier.position)
            {
                Some(r) if !r.is_empty() => pending.iter().partition(|&&i| !r.skips_key(&keys[i])),
                _ => (pending.clone(), Vec::new()),
            };
            for _ in &noted {
                tel.miss(scope, tier.position);
            }
            if asked.is_empty() {
                continue;
            }
            let batch: Vec<Key> = asked.iter().map(|&i| keys[i].clone()).collect();
            let got = match tier.call(tel, false, tier.backend.get_many(&batch)).await {
                Ok(g) if g.len() == batch.len() => g,
                Ok(_) => continue,
                Err(e) => {
                    scope.event(
                        if e.kind() == ErrorKind::CircuitOpen {
                            "breaker_skip"
                        } else {
                            "fall_through"
                        },
                        tier.position,
                    );
                    continue;
                }
            };
            let mut still = noted;
            for (&i, entry) in asked.iter().zip(got) {
                let entry = entry.filter(|e| {
                    !inner.repairs.skips_entry(tier.position, &keys[i], &e.tags)
                        && e.is_fresh(now)
                        && !e.is_negative()
                });
                let Some(entry) = entry else {
                    tel.miss(scope, tier.position);
                    still.push(i);
                    continue;
                };
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
        for (found, i, entry, v) in to_promote {
            let decoded: Arc<dyn Any + Send + Sync> = v;
            let upgrade_l1 = entry.decoded().is_none();
            let plan = self.promotion_plan(
                &keys[i],
                &entry,
                found,
                upgrade_l1,
                Some(&decoded),
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
                let n = items.len();
                if t.call(tel, true, t.backend.set_many(&items)).await.is_ok() {
                    for _ in 0..n {
                        tel.promoted(pos);
                    }
                }
            }
        }))
        .await;
        let missing = pending.iter().map(|&i| keys[i].clone()).collect();
        Ok((out, missing))
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
            let snaps = inputs
                .iter()
                .map(|s| {
                    Ok(self
                        .inner
                        .epochs
                        .snapshot(&self.keys.key_for_text(s.as_ref())?))
                })
                .collect::<Result<Vec<_>>>()?;
            let (mut out, _) = self.get_many_inner::<T, S>(inputs, &scope).await?;
            let missing: Vec<usize> = (0..out.len()).filter(|&i| out[i].is_none()).collect();
            if missing.is_empty() {
                return Ok(out);
            }
            let wanted: Vec<String> = missing
                .iter()
                .map(|&i| inputs[i].as_ref().to_owned())
                .collect();
            let start = Instant::now();
            let loaded = loader(wanted).await;
            tel.loader_done(start.elapsed(), loaded.is_ok());
            let mut loaded = loaded.map_err(loader_error)?;
            for i in missing {
                if let Some(v) = loaded.remove(inputs[i].as_ref()) {
                    let key = self.keys.key_for_text(inputs[i].as_ref())?;
                    let v = Arc::new(v);
                    let how = How::Fill(snaps[i]);
                    let _ = self
                        .store(&key, Some(v.clone()), &WriteOptions::default(), how)
                        .await;
                    out[i] = Some(Lookup {
                        value: v,
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

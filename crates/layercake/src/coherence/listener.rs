//! The backplane listener: applies other instances' changes to the process- and host-local
//! tiers (drops their copies), and caps local lifetimes while the backplane is disconnected.

use std::sync::Arc;
use std::time::Duration;

use layercake_core::backplane::{Backplane, BackplaneEvent, Target};
use layercake_core::{Key, Selector};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use crate::stack::Stack;
use crate::tier::Scope;

/// How long local copies may live while the backplane is disconnected (default 5 s).
pub(crate) const DEFAULT_DISCONNECTED_L1_CAP: Duration = Duration::from_secs(5);

/// Start the task that applies backplane events to the local tiers.
pub(crate) fn spawn_listener(inner: Arc<Stack>, backplane: Arc<dyn Backplane>) -> JoinHandle<()> {
    let mut rx = backplane.subscribe();
    let weak = Arc::downgrade(&inner);
    drop(inner);
    tokio::spawn(async move {
        loop {
            let event = rx.recv().await;
            let Some(inner) = weak.upgrade() else { return };
            if let Err(RecvError::Lagged(n)) = &event {
                inner.telemetry.backplane_lagged(*n);
            }
            match event {
                Ok(BackplaneEvent::Message(m)) => {
                    match m.target {
                        Target::Key(k) => {
                            if let Ok(key) = Key::new(&k) {
                                inner.flights.supersede_key(&key);
                                drop_local_key(&inner, &key).await;
                            }
                        }
                        Target::Prefix(p) => {
                            let s = Selector::Prefix(p);
                            inner.flights.supersede(Some(&s));
                            drop_local(&inner, Some(&s)).await;
                        }
                        Target::Tag(t) => {
                            let s = Selector::Tag(t);
                            inner.flights.supersede(Some(&s));
                            drop_local(&inner, Some(&s)).await;
                        }
                        _ => {
                            inner.flights.supersede(None);
                            drop_local(&inner, None).await;
                        }
                    }
                    // Counted once the local copies are gone, so a reader can wait on it.
                    inner.telemetry.backplane_applied();
                }
                Ok(BackplaneEvent::Reconnected) | Err(RecvError::Lagged(_)) => {
                    // Messages may have been lost: nothing local can be trusted.
                    inner.flights.supersede(None);
                    drop_local(&inner, None).await;
                    inner.telemetry.backplane_reset();
                }
                Ok(_) => {}
                Err(RecvError::Closed) => return,
            }
        }
    })
}

fn local_tiers(inner: &Stack) -> impl Iterator<Item = &crate::tier::Tier> {
    inner.tiers.iter().filter(|t| t.scope != Scope::Shared)
}

/// Delete this instance's recent fills of shared tiers that the change may have overwritten.
async fn undo_recent_fills(inner: &Stack, fills: Vec<(Key, u64)>) {
    for (key, tiers) in fills {
        for t in inner
            .tiers
            .iter()
            .filter(|t| tiers & (1 << t.position) != 0)
        {
            let _ = t.call(&inner.telemetry, true, t.backend.delete(&key)).await;
        }
    }
}

async fn drop_local_key(inner: &Stack, key: &Key) {
    inner.insight.removed_key(key);
    // Hold the key's fill lock through the undo and the epoch change: a fill still being
    // written finishes first (and is undone), a later one sees the new epoch (and undoes
    // itself).
    let _serial = inner.epochs.fill_lock(key).write().await;
    inner.epochs.change(key, || ());
    if let Some(tiers) = inner.recent_fills.take(key) {
        for t in inner
            .tiers
            .iter()
            .filter(|t| tiers & (1 << t.position) != 0)
        {
            let _ = t.call(&inner.telemetry, true, t.backend.delete(key)).await;
        }
    }
    for t in local_tiers(inner) {
        if t.scope == Scope::Process
            && let Some(mem) = t.memory()
        {
            // Under the key's epoch lock, so no in-flight promotion puts the old copy back.
            inner.epochs.change(key, || mem.delete_sync(key));
        } else {
            let _ = t.call(&inner.telemetry, true, t.backend.delete(key)).await;
        }
    }
}

async fn drop_local(inner: &Stack, selector: Option<&Selector>) {
    inner.insight.removed_selector(selector);
    inner.epochs.change_all();
    let fills = inner.recent_fills.take_matching(|k| match selector {
        Some(Selector::Prefix(p)) => k.starts_with(p),
        _ => true,
    });
    undo_recent_fills(inner, fills).await;
    for t in local_tiers(inner) {
        let r = match selector {
            Some(s) if matches!(s, Selector::Prefix(_)) && t.capability.prefix_invalidation => {
                t.call(&inner.telemetry, true, t.backend.invalidate(s))
                    .await
            }
            Some(s) if matches!(s, Selector::Tag(_)) && t.capability.tag_invalidation => {
                t.call(&inner.telemetry, true, t.backend.invalidate(s))
                    .await
            }
            _ => Err(layercake_core::Error::unsupported("fall back to clear")),
        };
        if r.is_err() {
            let _ = t.call(&inner.telemetry, true, t.backend.clear()).await;
        }
    }
}

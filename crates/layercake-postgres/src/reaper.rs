//! The background reaper: deletes expired rows in bounded batches.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::time::MissedTickBehavior;

use crate::config::ReaperConfig;
use crate::shared::Shared;

/// Every `interval`, delete expired rows `batch_size` at a time until a batch comes back
/// short, then the expired tombstones. Each batch is one short statement (its own transaction), so the reaper never holds
/// locks on many rows at once. Errors are counted and the pass ends; the next tick retries.
/// The task ends when aborted (the backend's drop or `stop_reaper`).
pub(crate) async fn run(shared: Arc<Shared>, cfg: ReaperConfig) {
    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The first tick fires at once; start reaping one interval after start-up.
    tick.tick().await;
    loop {
        tick.tick().await;
        loop {
            match shared.reap_batch(cfg.batch_size).await {
                Ok(n) if n >= u64::from(cfg.batch_size) => tokio::task::yield_now().await,
                Ok(_) => break,
                Err(_) => {
                    shared.reaper_errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
        // Tombstones are few and short-lived: one statement per pass.
        if shared.reap_tombstones().await.is_err() {
            shared.reaper_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

//! [`Stack`]: the shared state under every [`Cache`](crate::Cache) handle — the tiers in
//! order, policy, codec, clock, single-flight table, epochs, telemetry, backplane — with the
//! helpers every path needs (tier ranges by scope, the policy decision, publishing a change).
//!
//! The bottom of the composer: it imports nothing that imports it back.

use std::sync::Arc;
use std::time::Duration;

use layercake_core::backplane::{Backplane, Message, Target};
use layercake_core::{Codec, DistributedLock, Key, Policy, PolicyContext, SharedClock, TierSet};
use parking_lot::Mutex;
use tokio::task::JoinHandle;

use crate::coherence::Versions;
use crate::coherence::epochs::{Epochs, RecentFills};
use crate::flight::Flights;
use crate::lock::LockOptions;
use crate::repair::Repairs;
use crate::telemetry::Telemetry;
use crate::tier::{Scope, Tier};

pub(crate) struct Stack {
    pub(crate) name: Arc<str>,
    pub(crate) tiers: Vec<Tier>,
    pub(crate) policy: Arc<dyn Policy>,
    pub(crate) codec: Codec,
    pub(crate) clock: SharedClock,
    pub(crate) flights: Arc<Flights>,
    pub(crate) epochs: Epochs,
    pub(crate) recent_fills: RecentFills,
    pub(crate) telemetry: Telemetry,
    pub(crate) versions: Versions,
    pub(crate) backplane: Option<Arc<dyn Backplane>>,
    pub(crate) disconnected_cap: Duration,
    /// How long removals' tombstones refuse older fills outside the process.
    pub(crate) tombstone_ttl: Duration,
    /// Whether loads answer their callers before writing the tiers outside the process.
    pub(crate) background_fills: bool,
    pub(crate) soft_timeout: Option<Duration>,
    pub(crate) hard_timeout: Option<Duration>,
    pub(crate) lock: Option<(Arc<dyn DistributedLock>, LockOptions)>,
    pub(crate) tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Auto-recovery: per tier, what a write or removal did not reach.
    pub(crate) repairs: Arc<Repairs>,
    /// Miss reasons, the read sample and the hot set.
    pub(crate) insight: crate::insight::Insight,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("name", &self.name)
            .field(
                "tiers",
                &self
                    .tiers
                    .iter()
                    .map(|t| (&*t.name, t.kind))
                    .collect::<Vec<_>>(),
            )
            .field("policy", &self.policy)
            .field("codec", &self.codec)
            .field("backplane", &self.backplane.as_ref().map(|b| b.kind()))
            .finish()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
    }
}

impl Stack {
    /// How many leading tiers are in-process (read by every caller before single flight).
    pub(crate) fn local_tiers(&self) -> usize {
        self.tiers
            .iter()
            .take_while(|t| t.scope == Scope::Process)
            .count()
    }

    /// The in-process tiers (scope `Process`).
    pub(crate) fn process_tiers(&self) -> TierSet {
        let local: Vec<usize> = self
            .tiers
            .iter()
            .filter(|t| t.scope == Scope::Process)
            .map(|t| t.position)
            .collect();
        TierSet::only(&local)
    }

    pub(crate) fn decide(
        &self,
        key: &Key,
        value_len: usize,
        negative: bool,
    ) -> layercake_core::Decision {
        self.policy.decide(&PolicyContext {
            key,
            value_len,
            negative,
        })
    }

    /// [`publish`](Self::publish) the change of one key (its text copied only when there
    /// is a backplane to tell).
    pub(crate) async fn publish_key(&self, key: &Key, version: u64) {
        if self.backplane.is_some() {
            self.publish(Target::Key(key.as_str().to_owned()), version)
                .await;
        }
    }

    pub(crate) async fn publish(&self, target: Target, version: u64) {
        if let Some(bp) = &self.backplane {
            let msg = Message {
                target,
                version,
                origin: bp.instance(),
            };
            if bp.publish(&msg).await.is_ok() {
                self.telemetry.backplane_sent();
            } else {
                self.telemetry.backplane_publish_failed();
            }
        }
    }
}

//! Warming: fill upper tiers from lower ones for listed keys or a prefix, without decoding.

use layercake_core::{Error, Key, Result};

use crate::cache::{Cache, Warm};
use crate::promote::Fill;
use crate::stats::Op;
use crate::telemetry::ok_or_error;

impl Cache {
    // ---------------------------------------------------------------- warm

    /// Fill upper tiers from lower ones, without decoding; returns how many keys were found.
    pub async fn warm(&self, what: Warm<'_>) -> Result<usize> {
        let tel = &self.inner.telemetry;
        let scope = tel.start(Op::Warm);
        let r = async {
            let keys: Vec<Key> = match what {
                Warm::Keys(ks) => ks
                    .iter()
                    .map(|k| self.keys.key_for_text(k))
                    .collect::<Result<_>>()?,
                Warm::Prefix { prefix, limit } => {
                    let full = format!("{}{prefix}", self.keys.namespace().prefix());
                    let mut found = None;
                    for t in self
                        .inner
                        .tiers
                        .iter()
                        .rev()
                        .filter(|t| t.capability.list_keys)
                    {
                        if let Ok(ks) = t
                            .call(tel, false, t.backend.keys_with_prefix(&full, limit))
                            .await
                        {
                            found = Some(ks);
                            break;
                        }
                    }
                    found.ok_or_else(|| {
                        Error::unsupported("no reachable tier can list keys by prefix")
                    })?
                }
            };
            let now = self.inner.clock.now();
            let mut n = 0;
            for key in &keys {
                let read = self
                    .read_through(key, now, &scope, 0..usize::MAX, |_, _| Ok(()))
                    .await;
                let fill = Fill {
                    snap: read.snap,
                    failed: read.failed,
                };
                if let Some(f) = read.fresh {
                    n += 1;
                    if f.tier > 0 {
                        self.promote(key, &f.entry, f.tier, false, None, now, &scope, fill)
                            .await;
                    }
                }
            }
            Ok(n)
        }
        .await;
        tel.finish(scope, ok_or_error(&r));
        r
    }
}

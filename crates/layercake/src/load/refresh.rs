//! Refresh-ahead: past the policy's threshold a hit starts one background load.

use std::future::Future;

use layercake_core::{Entry, Key, RefreshAhead, Timestamp};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::{Cache, WriteOptions};
use crate::flight::Role;
use crate::options::Computed;
use crate::telemetry::OpScope;

impl Cache {
    /// Refresh-ahead: past the policy's threshold, start one background load with `loader`
    /// (unless one runs already); the caller returns its hit at once.
    pub(crate) fn refresh_if_due<T, F, Fut, E>(
        &self,
        key: &Key,
        entry: &Entry,
        now: Timestamp,
        opts: &WriteOptions,
        loader: &mut Option<F>,
        scope: &OpScope<'_>,
    ) where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<Computed<Option<T>>, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        let d = self
            .inner
            .decide(key, entry.value.len(), entry.is_negative());
        let RefreshAhead::AfterFraction(fr) = d.refresh_ahead else {
            return;
        };
        let ttl = entry.ttl().as_millis() as f64;
        let age = now.saturating_since(entry.created_at).as_millis() as f64;
        if age >= ttl * fr as f64
            && !self.inner.flights.in_flight(key)
            && let Role::Leader(h) = self.inner.flights.join(key)
            && let Some(l) = loader.take()
        {
            let snap = self.inner.epochs.snapshot(key);
            let version = self.inner.versions.next();
            self.spawn_load(
                h,
                key.clone(),
                opts.clone(),
                None,
                snap,
                version,
                scope.in_span(l),
            );
        }
    }
}

//! Start-up while PostgreSQL may be down: the schema migration at `connect`, and, when the
//! server cannot be reached then, the same migration retried in the background until it
//! answers, with every operation failing fast (`Unavailable`) meanwhile.

use std::sync::{Arc, Weak};
use std::time::Duration;

use deadpool_postgres::Object;
use layercake_core::{Error, Result};

use crate::config::{PostgresConfig, TableKind};
use crate::error::{self, BACKEND};
use crate::schema;
use crate::shared::Shared;

/// First pause between background migration attempts (doubled up to [`RETRY_MAX_DELAY`]).
const RETRY_MIN_DELAY: Duration = Duration::from_millis(50);
/// Longest pause between background migration attempts: a server that comes up is used
/// within about this long (plus one attempt).
const RETRY_MAX_DELAY: Duration = Duration::from_secs(1);

/// What a migration attempt needs from the configuration.
#[derive(Clone)]
struct Target {
    schema: String,
    table: String,
    kind: TableKind,
    /// Bound on one attempt (it may wait on another instance's migration).
    limit: Duration,
}

/// Set up the table at `connect`: one attempt; when it fails because the server cannot be
/// reached (a temporary error) and the configuration does not require the server, the
/// attempt is repeated in the background (backoff from 50 ms doubling to 1 s) and `Ok` is
/// returned. Any other failure is returned.
pub(crate) async fn begin(shared: &Arc<Shared>, config: &PostgresConfig) -> Result<()> {
    let target = Target {
        schema: config.schema.clone(),
        table: config.table.clone(),
        kind: config.table_kind,
        limit: config.operation_timeout.max(config.connect_timeout) * 5,
    };
    match attempt(shared, &target).await {
        Ok(()) => {
            shared.startup.succeeded();
            Ok(())
        }
        Err(e) if config.require_server || !e.is_temporary() => Err(e),
        Err(e) => {
            shared.startup.failed(e);
            tokio::spawn(retry(Arc::downgrade(shared), target));
            Ok(())
        }
    }
}

/// Repeat the migration until it succeeds or the backend is gone.
async fn retry(shared: Weak<Shared>, target: Target) {
    let mut delay = RETRY_MIN_DELAY;
    loop {
        tokio::time::sleep(delay).await;
        let Some(live) = shared.upgrade() else { return };
        match attempt(&live, &target).await {
            Ok(()) => {
                live.startup.succeeded();
                return;
            }
            Err(e) => live.startup.failed(e),
        }
        drop(live);
        delay = (delay * 2).min(RETRY_MAX_DELAY);
    }
}

/// One migration on a pooled connection, within `target.limit`.
async fn attempt(shared: &Shared, target: &Target) -> Result<()> {
    let op = "schema migration";
    let run = async {
        let obj = shared
            .pool
            .get()
            .await
            .map_err(|e| error::pool(op, e, &shared.endpoint))?;
        let mut conn = Checked(Some(obj));
        let obj = conn
            .0
            .as_mut()
            .ok_or_else(|| Error::unavailable("no connection").with_backend(BACKEND))?;
        schema::migrate(obj, &target.schema, &target.table, target.kind).await?;
        conn.release();
        Ok(())
    };
    tokio::time::timeout(target.limit, run)
        .await
        .map_err(|_| error::timeout(op, target.limit))?
}

/// A connection that goes back to the pool only after a clean migration; dropped otherwise
/// (failed, or cancelled mid-transaction by the time limit), it is closed.
struct Checked(Option<Object>);

impl Checked {
    fn release(mut self) {
        drop(self.0.take());
    }
}

impl Drop for Checked {
    fn drop(&mut self) {
        if let Some(obj) = self.0.take() {
            drop(Object::take(obj));
        }
    }
}

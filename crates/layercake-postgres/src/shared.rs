//! The state a backend shares with its background tasks (the reaper, the start-up retry):
//! the pool, the statements, the counters, and one operation's checkout, retry and timeout
//! ([`run!`]). The lowest layer of the crate's backend: `backend.rs`, `fill.rs`, `reaper.rs`
//! and `startup.rs` build on it; it imports none of them.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::{ClientWrapper, Object, Pool};
use layercake_core::{Error, Result, SharedClock, Timestamp};

use crate::error::{self, BACKEND};
use crate::ready::Startup;
use crate::sql::Sql;

/// State shared by the backend and its reaper task.
pub(crate) struct Shared {
    pub(crate) pool: Pool,
    pub(crate) sql: Sql,
    pub(crate) clock: SharedClock,
    pub(crate) op_timeout: Duration,
    pub(crate) corrupt: AtomicU64,
    pub(crate) reaped: AtomicU64,
    pub(crate) reaper_errors: AtomicU64,
    pub(crate) retries: AtomicU64,
    /// Where the pool connects (`host:port`, no credentials), for errors.
    pub(crate) endpoint: String,
    /// Whether the table is set up (operations fail fast until it is).
    pub(crate) startup: Startup,
}

/// A pooled connection checked out for one attempt of one operation.
///
/// Returned to the pool only when the attempt finished cleanly ([`Lease::release`]); a lease
/// dropped otherwise — the operation timed out or was cancelled mid-query, or the connection
/// failed — takes its connection out of the pool and closes it, so a connection with a
/// response still in flight, or to a frozen server, is never handed out again.
pub(crate) struct Lease {
    obj: Option<Object>,
}

impl Lease {
    pub(crate) fn client(&self) -> Option<&ClientWrapper> {
        self.obj.as_deref()
    }

    /// Whether the connection had served an earlier checkout (a fresh one cannot be stale).
    pub(crate) fn reused(&self) -> bool {
        self.obj
            .as_ref()
            .is_some_and(|o| Object::metrics(o).recycle_count > 0)
    }

    pub(crate) fn release(mut self) {
        // Dropping the object returns it to the pool.
        drop(self.obj.take());
    }

    /// Keep the connection after an SQL error the server reported (it is still usable).
    pub(crate) fn finish_after(self, e: &tokio_postgres::Error) {
        if e.as_db_error().is_some() && !e.is_closed() {
            self.release();
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(obj) = self.obj.take() {
            drop(Object::take(obj));
        }
    }
}

/// Run one operation: check out a connection, run `$body` (an expression of type
/// `impl Future<Output = Result<T, tokio_postgres::Error>>` using the client bound to `$c`),
/// retry once on a fresh connection when a reused one turns out to be closed, map errors,
/// all within the operation timeout.
macro_rules! run {
    ($shared:expr, $op:literal, |$c:ident| $body:expr) => {{
        let shared: &Shared = $shared;
        shared
            .timed($op, async {
                let mut retried = false;
                loop {
                    let lease = shared.checkout($op).await?;
                    let result = match lease.client() {
                        Some($c) => $body.await,
                        None => {
                            break Err(Error::unavailable("no connection").with_backend(BACKEND));
                        }
                    };
                    match result {
                        Ok(v) => {
                            lease.release();
                            break Ok(v);
                        }
                        Err(e) => {
                            let retry = e.is_closed() && !retried && lease.reused();
                            lease.finish_after(&e);
                            if retry {
                                retried = true;
                                shared.retries.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                            break Err(error::pg($op, e));
                        }
                    }
                }
            })
            .await
    }};
}
pub(crate) use run;

impl Shared {
    pub(crate) async fn timed<T>(
        &self,
        op: &'static str,
        f: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.op_timeout, f).await {
            Ok(r) => r,
            Err(_) => Err(error::timeout(op, self.op_timeout)),
        }
    }

    pub(crate) async fn checkout(&self, op: &'static str) -> Result<Lease> {
        self.startup.check(op, &self.endpoint)?;
        let obj = self
            .pool
            .get()
            .await
            .map_err(|e| error::pool(op, e, &self.endpoint))?;
        Ok(Lease { obj: Some(obj) })
    }

    pub(crate) fn now(&self) -> i64 {
        to_sql_ms(self.clock.now())
    }

    /// Delete up to `batch` expired rows; returns how many were deleted.
    pub(crate) async fn reap_batch(&self, batch: u32) -> Result<u64> {
        let now = self.now();
        let limit = i64::from(batch);
        let sql = &self.sql.reap;
        let n = run!(self, "reap", |c| async {
            let st = c.prepare_cached(sql).await?;
            c.execute(&st, &[&now, &limit]).await
        })?;
        self.reaped.fetch_add(n, Ordering::Relaxed);
        Ok(n)
    }

    pub(crate) async fn delete_corrupt(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let sql = &self.sql.delete_if_value;
        run!(self, "delete corrupt entry", |c| async {
            let st = c.prepare_cached(sql).await?;
            c.execute(&st, &[&key, &value]).await
        })?;
        self.corrupt.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Milliseconds as PostgreSQL `bigint`, saturating.
pub(crate) fn to_sql_ms(t: Timestamp) -> i64 {
    i64::try_from(t.0).unwrap_or(i64::MAX)
}

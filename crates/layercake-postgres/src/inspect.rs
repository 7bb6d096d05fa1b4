//! A read-only view of the cache table, for operator tools: server version and clock, table
//! size, rows, and expired rows the reaper has not deleted yet.

use std::time::Duration;

use layercake_core::{Result, system_clock};

use crate::backend::PostgresBackend;
use crate::error;

/// What the server and the cache table look like now.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TableInfo {
    /// `server_version`.
    pub server_version: String,
    /// The server's clock, milliseconds since the Unix epoch (`clock_timestamp()`).
    pub server_now_ms: i64,
    /// `pg_total_relation_size` of the table: rows, TOAST and indexes, bytes.
    pub total_bytes: i64,
    /// Rows in the table (an exact count).
    pub rows: i64,
    /// Rows past their `expires_at` by this host's clock, waiting for the reaper.
    pub expired_rows: i64,
    /// How long the oldest expired row has been waiting, if any.
    pub oldest_expired_for: Option<Duration>,
}

impl PostgresBackend {
    /// Read [`TableInfo`], every statement on one pooled connection, the whole within
    /// `timeout`. The counts scan the table: meant for an operator's occasional look.
    pub async fn table_info(&self, timeout: Duration) -> Result<TableInfo> {
        let op = "table inspection";
        let table = self.qualified_table().to_owned();
        let work = async {
            self.check_started(op)?;
            let client = self
                .pool()
                .get()
                .await
                .map_err(|e| error::pool(op, e, self.endpoint()))?;
            let now = i64::try_from(system_clock().now().0).unwrap_or(i64::MAX);
            let head = client
                .query_one(
                    "SELECT current_setting('server_version'), \
                     (extract(epoch FROM clock_timestamp()) * 1000)::bigint, \
                     pg_total_relation_size($1::text::regclass)",
                    &[&table],
                )
                .await
                .map_err(|e| error::pg(op, e))?;
            let counts = client
                .query_one(
                    &format!(
                        "SELECT count(*), count(*) FILTER (WHERE expires_at <= $1), \
                         min(expires_at) FILTER (WHERE expires_at <= $1) FROM {table}"
                    ),
                    &[&now],
                )
                .await
                .map_err(|e| error::pg(op, e))?;
            let get = |e| error::pg(op, e);
            let oldest: Option<i64> = counts.try_get(2).map_err(get)?;
            Ok(TableInfo {
                server_version: head.try_get(0).map_err(get)?,
                server_now_ms: head.try_get(1).map_err(get)?,
                total_bytes: head.try_get(2).map_err(get)?,
                rows: counts.try_get(0).map_err(get)?,
                expired_rows: counts.try_get(1).map_err(get)?,
                oldest_expired_for: oldest
                    .map(|t| Duration::from_millis(now.saturating_sub(t).max(0).unsigned_abs())),
            })
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| error::timeout(op, timeout))?
    }
}

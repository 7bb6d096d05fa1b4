//! [`PostgresBackend`]: the L3 tier on a pooled set of tokio-postgres connections.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{
    ClientWrapper, Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime,
};
use layercake_core::{
    Backend, Bytes, Capability, Entry, Error, FillOutcome, Key, Result, Selector, Tombstone,
    envelope,
};
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;

use crate::config::{PostgresConfig, Recycling, TableKind};
use crate::error::{self, BACKEND};
use crate::prefix::successor;
use crate::ready::Startup;
use crate::reaper;
use crate::shared::{Shared, run, to_sql_ms};
use crate::sql::Sql;
use crate::startup;

/// The PostgreSQL tier (L3): one table of envelopes, shared by every instance.
///
/// - entries are stored as envelope bytes in `value`, keyed by the key's bytes, with
///   `expires_at` = the entry's `retain_until` in milliseconds and the tags in a `text[]`
///   column (GIN-indexed) for tag invalidation;
/// - expiry is judged by the configured [`Clock`](layercake_core::Clock), passed to every
///   read as a parameter; the reaper deletes expired rows in the background;
/// - every operation runs within the operation timeout, checkout included; errors are mapped
///   as described in the crate documentation and carry the backend kind `"postgres"`;
/// - fills are conditional ([`Capability::conditional_fill`]): one `INSERT … ON CONFLICT …
///   WHERE` refused by a newer stored version or a live tombstone (rows of `<table>_tomb`),
///   followed in the same pipeline by a statement that removes the row again if a tombstone
///   committed meanwhile refuses it; the reaper also deletes expired tombstones;
/// - dropping the backend stops its reaper.
///
/// See the crate documentation for an example.
pub struct PostgresBackend {
    shared: Arc<Shared>,
    table_kind: TableKind,
    max_value_bytes: usize,
    schema: String,
    table: String,
    reaper: Mutex<Option<JoinHandle<()>>>,
}

impl PostgresBackend {
    /// Build the pool, create or migrate the table, and start the reaper.
    ///
    /// - fails with `Config` for invalid names or settings, and with `Unavailable` when the
    ///   server answers but refuses (a database that does not exist, wrong credentials,
    ///   missing permissions), with the server's own message;
    /// - when the server cannot be reached (refused, timed out, starting up), returns a
    ///   backend that sets up its table in the background once the server answers (backoff
    ///   from 50 ms doubling to 1 s) and fails every operation with `Unavailable` until then;
    ///   with [`require_server`](PostgresConfig::with_require_server) it fails instead;
    /// - must be called within a Tokio runtime (the reaper and the connections are tasks).
    pub async fn connect(config: PostgresConfig) -> Result<PostgresBackend> {
        config.validate()?;
        let method = match config.recycling {
            Recycling::Verified => RecyclingMethod::Verified,
            Recycling::VerifiedWhenIdle(_) | Recycling::Fast => RecyclingMethod::Fast,
        };
        let manager = Manager::from_config(
            config.effective_pg(),
            NoTls,
            ManagerConfig {
                recycling_method: method,
            },
        );
        let mut builder = Pool::builder(manager)
            .max_size(config.pool_max_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(config.wait_timeout))
            .create_timeout(Some(config.create_timeout))
            .recycle_timeout(Some(config.recycle_timeout));
        if let Recycling::VerifiedWhenIdle(idle) = config.recycling {
            builder = builder.pre_recycle(verify_when_idle(idle, config.recycle_timeout));
        }
        let pool = builder
            .build()
            .map_err(|e| error::config(format!("cannot build the connection pool: {e}")))?;
        let shared = Arc::new(Shared {
            pool,
            sql: Sql::new(&config.schema, &config.table),
            clock: config.clock.clone(),
            op_timeout: config.operation_timeout,
            corrupt: AtomicU64::new(0),
            reaped: AtomicU64::new(0),
            reaper_errors: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            endpoint: error::endpoint(&config.pg),
            startup: Startup::new(),
        });
        startup::begin(&shared, &config).await?;
        let reaper = config
            .reaper
            .map(|r| tokio::spawn(reaper::run(Arc::clone(&shared), r)));
        Ok(PostgresBackend {
            shared,
            table_kind: config.table_kind,
            max_value_bytes: config.max_value_bytes,
            schema: config.schema,
            table: config.table,
            reaper: Mutex::new(reaper),
        })
    }

    /// Whether the table is set up: `false` only for a backend built while PostgreSQL could
    /// not be reached, until the server first answers (see
    /// [`with_require_server`](PostgresConfig::with_require_server)).
    pub fn is_connected(&self) -> bool {
        self.shared.startup.is_ready()
    }

    /// `(schema, table)` as configured (unquoted).
    pub fn table_name(&self) -> (&str, &str) {
        (&self.schema, &self.table)
    }

    /// The table as it appears in SQL: `"schema"."table"`, quoted.
    pub fn qualified_table(&self) -> &str {
        &self.shared.sql.table
    }

    /// Whether the table is logged or unlogged.
    pub fn table_kind(&self) -> TableKind {
        self.table_kind
    }

    /// The connection pool (for metrics such as `pool().status()`).
    pub fn pool(&self) -> &Pool {
        &self.shared.pool
    }

    /// `Unavailable` (naming the server) until the table is set up; for callers that take a
    /// connection from [`pool`](Self::pool) themselves.
    pub(crate) fn check_started(&self, op: &'static str) -> Result<()> {
        self.shared.startup.check(op, &self.shared.endpoint)
    }

    /// The server's `host:port`, for error messages.
    pub(crate) fn endpoint(&self) -> &str {
        &self.shared.endpoint
    }

    /// Expired rows deleted by the reaper (and [`reap_expired`](Self::reap_expired)) since
    /// start.
    pub fn reaped(&self) -> u64 {
        self.shared.reaped.load(Ordering::Relaxed)
    }

    /// Reaper passes that ended with an error since start.
    pub fn reaper_errors(&self) -> u64 {
        self.shared.reaper_errors.load(Ordering::Relaxed)
    }

    /// Operations retried on a fresh connection because a pooled one was found closed.
    pub fn retries(&self) -> u64 {
        self.shared.retries.load(Ordering::Relaxed)
    }

    /// Delete every expired row now, in batches of `batch_size`; returns the rows deleted.
    pub async fn reap_expired(&self, batch_size: u32) -> Result<u64> {
        let batch = batch_size.max(1);
        let mut total = 0;
        loop {
            let n = self.shared.reap_batch(batch).await?;
            total += n;
            if n < u64::from(batch) {
                return Ok(total);
            }
        }
    }

    /// Whether the background reaper is running.
    pub fn reaper_running(&self) -> bool {
        self.reaper
            .lock()
            .map(|g| g.as_ref().is_some_and(|h| !h.is_finished()))
            .unwrap_or(false)
    }

    /// Stop the background reaper (also done on drop). Idempotent.
    pub fn stop_reaper(&self) {
        let handle = match self.reaper.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        if let Some(h) = handle {
            h.abort();
        }
    }

    fn encode(&self, key: &Key, entry: &Entry) -> Result<Vec<u8>> {
        let bytes = envelope::encode(key, entry).map_err(|e| e.with_backend(BACKEND))?;
        if bytes.len() > self.max_value_bytes {
            return Err(Error::too_large(format!(
                "envelope of {} bytes over the limit of {}",
                bytes.len(),
                self.max_value_bytes
            ))
            .with_backend(BACKEND));
        }
        if entry.tags.iter().any(|t| t.contains('\0')) {
            return Err(
                Error::unsupported("PostgreSQL text cannot hold a tag containing U+0000")
                    .with_backend(BACKEND),
            );
        }
        Ok(bytes)
    }

    /// Decode a row's value; a corrupt copy is deleted (only if unchanged), counted, and a miss.
    async fn decode(&self, key: &Key, value: Vec<u8>, now: i64) -> Result<Option<Entry>> {
        let bytes = Bytes::from(value);
        match envelope::decode(key, bytes.clone()) {
            Ok(e) if to_sql_ms(e.retain_until()) > now => Ok(Some(e)),
            Ok(_) => Ok(None),
            Err(_) => {
                self.shared.delete_corrupt(key.as_bytes(), &bytes).await?;
                Ok(None)
            }
        }
    }
}

fn verify_when_idle(idle: Duration, limit: Duration) -> Hook {
    Hook::async_fn(move |client: &mut ClientWrapper, metrics| {
        let stale = metrics.last_used() >= idle;
        Box::pin(async move {
            if !stale {
                return Ok(());
            }
            match tokio::time::timeout(limit, client.simple_query("")).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(HookError::Backend(e)),
                Err(_) => Err(HookError::message("connection check timed out")),
            }
        })
    })
}

impl Drop for PostgresBackend {
    fn drop(&mut self) {
        self.stop_reaper();
    }
}

impl fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("table", &self.shared.sql.table)
            .field("table_kind", &self.table_kind)
            .field("pool", &self.shared.pool.status())
            .field("op_timeout", &self.shared.op_timeout)
            .finish()
    }
}

#[async_trait]
impl Backend for PostgresBackend {
    fn kind(&self) -> &'static str {
        BACKEND
    }

    fn capability(&self) -> Capability {
        let mut c = Capability::MINIMAL;
        c.native_bulk = true;
        c.prefix_invalidation = true;
        c.tag_invalidation = true;
        c.clear = true;
        c.list_keys = true;
        c.clock_driven_expiry = true;
        c.stores_bytes = true;
        c.shared = true;
        c.reach = layercake_core::Reach::Shared;
        // Both kinds survive a restart of the application and a clean restart of the server;
        // an unlogged table is emptied only by a server crash (see the README).
        c.durable = true;
        c.max_value_bytes = Some(self.max_value_bytes);
        c.conditional_fill = true;
        c
    }

    async fn get(&self, key: &Key) -> Result<Option<Entry>> {
        let now = self.shared.now();
        let k = key.as_bytes();
        let sql = &self.shared.sql.get;
        let value: Option<Vec<u8>> = run!(&self.shared, "get", |c| async {
            let st = c.prepare_cached(sql).await?;
            match c.query_opt(&st, &[&k, &now]).await? {
                Some(row) => row.try_get::<_, Vec<u8>>(0).map(Some),
                None => Ok(None),
            }
        })?;
        match value {
            Some(v) => self.decode(key, v, now).await,
            None => Ok(None),
        }
    }

    async fn set(&self, key: &Key, entry: &Entry) -> Result<()> {
        let now = self.shared.clock.now();
        if !entry.is_retained(now) {
            return self.delete(key).await;
        }
        let bytes = self.encode(key, entry)?;
        let k = key.as_bytes();
        let exp = to_sql_ms(entry.retain_until());
        let tags: Vec<&str> = entry.tags.iter().map(String::as_str).collect();
        let sql = &self.shared.sql.upsert;
        run!(&self.shared, "set", |c| async {
            let st = c.prepare_cached(sql).await?;
            c.execute(&st, &[&k, &bytes, &exp, &tags]).await
        })?;
        Ok(())
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        let k = key.as_bytes();
        let sql = &self.shared.sql.delete;
        run!(&self.shared, "delete", |c| async {
            let st = c.prepare_cached(sql).await?;
            c.execute(&st, &[&k]).await
        })?;
        Ok(())
    }

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Entry>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.shared.now();
        let ks: Vec<&[u8]> = keys.iter().map(Key::as_bytes).collect();
        let sql = &self.shared.sql.get_many;
        let rows: Vec<(Vec<u8>, Vec<u8>)> = run!(&self.shared, "get_many", |c| async {
            let st = c.prepare_cached(sql).await?;
            let rows = c.query(&st, &[&ks, &now]).await?;
            rows.iter()
                .map(|r| Ok((r.try_get::<_, Vec<u8>>(0)?, r.try_get::<_, Vec<u8>>(1)?)))
                .collect::<std::result::Result<Vec<_>, tokio_postgres::Error>>()
        })?;
        let mut found: HashMap<Vec<u8>, Vec<u8>> = rows.into_iter().collect();
        let mut decoded: HashMap<&[u8], Option<Entry>> = HashMap::with_capacity(found.len());
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let kb = key.as_bytes();
            if let Some(e) = decoded.get(kb) {
                out.push(e.clone());
                continue;
            }
            let entry = match found.remove(kb) {
                Some(v) => self.decode(key, v, now).await?,
                None => None,
            };
            decoded.insert(kb, entry.clone());
            out.push(entry);
        }
        Ok(out)
    }

    async fn set_many(&self, items: &[(Key, Entry)]) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let now = self.shared.clock.now();
        // The last write of a key wins, as in a loop of `set`; one upsert statement cannot
        // touch a row twice, so duplicates are resolved here.
        let mut last: HashMap<&Key, usize> = HashMap::with_capacity(items.len());
        for (i, (k, _)) in items.iter().enumerate() {
            last.insert(k, i);
        }
        let mut expired: Vec<&[u8]> = Vec::new();
        let mut ks: Vec<&[u8]> = Vec::new();
        let mut vs: Vec<Vec<u8>> = Vec::new();
        let mut es: Vec<i64> = Vec::new();
        let mut tags: Vec<&str> = Vec::new();
        let mut starts: Vec<i32> = Vec::new();
        let mut counts: Vec<i32> = Vec::new();
        for (i, (k, e)) in items.iter().enumerate() {
            if last.get(k) != Some(&i) {
                continue;
            }
            if !e.is_retained(now) {
                expired.push(k.as_bytes());
                continue;
            }
            vs.push(self.encode(k, e)?);
            ks.push(k.as_bytes());
            es.push(to_sql_ms(e.retain_until()));
            starts.push(i32::try_from(tags.len() + 1).unwrap_or(i32::MAX));
            counts.push(i32::try_from(e.tags.len()).unwrap_or(i32::MAX));
            tags.extend(e.tags.iter().map(String::as_str));
        }
        if !expired.is_empty() {
            let sql = &self.shared.sql.delete_many;
            run!(&self.shared, "set_many", |c| async {
                let st = c.prepare_cached(sql).await?;
                c.execute(&st, &[&expired]).await
            })?;
        }
        if !ks.is_empty() {
            let sql = &self.shared.sql.upsert_many;
            run!(&self.shared, "set_many", |c| async {
                let st = c.prepare_cached(sql).await?;
                c.execute(&st, &[&ks, &vs, &es, &tags, &starts, &counts])
                    .await
            })?;
        }
        Ok(())
    }

    async fn delete_many(&self, keys: &[Key]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let ks: Vec<&[u8]> = keys.iter().map(Key::as_bytes).collect();
        let sql = &self.shared.sql.delete_many;
        run!(&self.shared, "delete_many", |c| async {
            let st = c.prepare_cached(sql).await?;
            c.execute(&st, &[&ks]).await
        })?;
        Ok(())
    }

    async fn invalidate(&self, selector: &Selector) -> Result<()> {
        match selector {
            Selector::Prefix(p) => {
                let lo = p.as_bytes();
                match successor(lo) {
                    Some(hi) => {
                        let sql = &self.shared.sql.delete_range;
                        run!(&self.shared, "invalidate prefix", |c| async {
                            let st = c.prepare_cached(sql).await?;
                            c.execute(&st, &[&lo, &hi]).await
                        })?;
                    }
                    None => {
                        let sql = &self.shared.sql.delete_from;
                        run!(&self.shared, "invalidate prefix", |c| async {
                            let st = c.prepare_cached(sql).await?;
                            c.execute(&st, &[&lo]).await
                        })?;
                    }
                }
                Ok(())
            }
            Selector::Tag(t) => {
                if t.contains('\0') {
                    // No stored tag can contain U+0000 (see `set`).
                    return Ok(());
                }
                let tag = t.as_str();
                let sql = &self.shared.sql.delete_tag;
                run!(&self.shared, "invalidate tag", |c| async {
                    let st = c.prepare_cached(sql).await?;
                    c.execute(&st, &[&tag]).await
                })?;
                Ok(())
            }
            other => Err(Error::unsupported(format!(
                "postgres backend cannot invalidate by {other:?}"
            ))
            .with_backend(BACKEND)),
        }
    }

    /// A `bytea` range scan over the primary key, like prefix invalidation.
    async fn keys_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<Key>> {
        let lo = prefix.as_bytes();
        let now = self.shared.now();
        let limit = limit.min(i64::MAX as usize) as i64;
        let rows: Vec<Vec<u8>> = match successor(lo) {
            Some(hi) => {
                let sql = &self.shared.sql.keys_range;
                run!(&self.shared, "keys_with_prefix", |c| async {
                    let st = c.prepare_cached(sql).await?;
                    let rows = c.query(&st, &[&lo, &hi, &now, &limit]).await?;
                    rows.iter().map(|r| r.try_get::<_, Vec<u8>>(0)).collect()
                })?
            }
            None => {
                let sql = &self.shared.sql.keys_from;
                run!(&self.shared, "keys_with_prefix", |c| async {
                    let st = c.prepare_cached(sql).await?;
                    let rows = c.query(&st, &[&lo, &now, &limit]).await?;
                    rows.iter().map(|r| r.try_get::<_, Vec<u8>>(0)).collect()
                })?
            }
        };
        // Rows whose key is not a valid key (written by something else) are skipped.
        Ok(rows
            .into_iter()
            .filter_map(|k| String::from_utf8(k).ok().and_then(|s| Key::new(s).ok()))
            .collect())
    }

    async fn clear(&self) -> Result<()> {
        let sql = &self.shared.sql.clear;
        run!(&self.shared, "clear", |c| async {
            let st = c.prepare_cached(sql).await?;
            c.execute(&st, &[]).await
        })?;
        self.shared.clear_tombstones().await
    }

    async fn fill(&self, key: &Key, entry: &Entry) -> Result<FillOutcome> {
        if !entry.is_retained(self.shared.clock.now()) {
            return Ok(FillOutcome::Expired);
        }
        let bytes = self.encode(key, entry)?;
        self.shared.fill(key, entry, bytes).await
    }

    async fn delete_with(&self, key: &Key, tombstone: Tombstone) -> Result<()> {
        self.shared.delete_with(key, tombstone).await
    }

    /// Records the tombstone (committed), then removes as `invalidate`.
    async fn invalidate_with(&self, selector: &Selector, tombstone: Tombstone) -> Result<()> {
        self.shared.record_selector(selector, tombstone).await?;
        self.invalidate(selector).await
    }

    async fn health(&self) -> Result<()> {
        run!(&self.shared, "health", |c| async {
            let st = c.prepare_cached("SELECT 1").await?;
            c.query_one(&st, &[]).await.map(|_| ())
        })
    }

    fn corrupt_reads(&self) -> u64 {
        self.shared.corrupt.load(Ordering::Relaxed)
    }
}

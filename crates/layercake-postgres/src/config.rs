//! [`PostgresConfig`]: connection, table, pool, timeouts, reaper ([`ReaperConfig`]);
//! [`PostgresBackplaneConfig`]: the LISTEN/NOTIFY backplane's channel, timeouts and backoff.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use layercake_core::backplane::InstanceId;
use layercake_core::{Result, SharedClock, system_clock};

use crate::error;
use crate::ident;

/// The longest table name accepted: 63 bytes minus room for the index-name suffixes, so that
/// PostgreSQL never truncates (and so conflates) two index names.
pub const MAX_TABLE_NAME_LEN: usize = 48;

/// Whether the cache table is written to the write-ahead log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TableKind {
    /// A normal table: crash-safe and replicated to standbys. The default.
    #[default]
    Logged,
    /// `CREATE UNLOGGED TABLE`: writes skip the WAL (faster, less I/O), but PostgreSQL empties
    /// the table after a crash (not after a clean restart) and standbys do not have its rows.
    Unlogged,
}

/// How a pooled connection is checked before it is handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recycling {
    /// Always: an empty query round trip on every checkout (deadpool's
    /// `RecyclingMethod::Verified`). A dead connection is never handed out, at the price of
    /// one extra round trip per operation.
    Verified,
    /// Connections idle for longer than the duration get the empty-query round trip; every
    /// connection is checked for a closed socket (free). A connection that still fails with a
    /// closed-connection error is discarded and the operation retried once on a fresh
    /// connection (every operation of this backend is idempotent). The default, with 1 s.
    VerifiedWhenIdle(Duration),
    /// Only the closed-socket check (deadpool's `RecyclingMethod::Fast`), plus the retry on a
    /// closed connection.
    Fast,
}

impl Default for Recycling {
    fn default() -> Self {
        Recycling::VerifiedWhenIdle(Duration::from_secs(1))
    }
}

/// The background reaper that deletes expired rows.
///
/// ```
/// use layercake_postgres::ReaperConfig;
/// use std::time::Duration;
/// let reaper = ReaperConfig::default()
///     .with_interval(Duration::from_secs(5))
///     .with_batch_size(500);
/// assert_eq!((reaper.interval, reaper.batch_size), (Duration::from_secs(5), 500));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReaperConfig {
    /// Time between passes. Default 30 s.
    pub interval: Duration,
    /// Rows deleted per statement; a pass repeats statements until one deletes fewer. Default
    /// 1000.
    pub batch_size: u32,
}

impl ReaperConfig {
    /// Set the time between passes.
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Set the rows deleted per statement.
    pub fn with_batch_size(mut self, rows: u32) -> Self {
        self.batch_size = rows;
        self
    }
}

impl Default for ReaperConfig {
    fn default() -> Self {
        ReaperConfig {
            interval: Duration::from_secs(30),
            batch_size: 1000,
        }
    }
}

/// Configuration of a [`PostgresBackend`](crate::PostgresBackend).
///
/// Built from a connection string or a [`tokio_postgres::Config`], then adjusted with the
/// `with_*` methods. Defaults:
///
/// | setting | default |
/// |---|---|
/// | schema / table | `layercake` / `cache` |
/// | table kind | [`TableKind::Logged`] |
/// | pool max size | 16 |
/// | pool wait / create / recycle timeouts | 500 ms / 1 s / 500 ms |
/// | connect timeout (TCP + start-up) | 1 s |
/// | operation timeout | 1 s (applied with `tokio::time::timeout` around checkout and query) |
/// | server `statement_timeout` | on, equal to the operation timeout |
/// | recycling | [`Recycling::VerifiedWhenIdle`]`(1 s)` |
/// | clock | the system clock |
/// | reaper | every 30 s, batches of 1000 |
/// | max value bytes | 256 MiB (the envelope limit) |
///
/// `Debug` never shows the password (tokio-postgres redacts it).
#[derive(Clone)]
#[non_exhaustive]
pub struct PostgresConfig {
    pub(crate) pg: tokio_postgres::Config,
    pub(crate) schema: String,
    pub(crate) table: String,
    pub(crate) table_kind: TableKind,
    pub(crate) pool_max_size: usize,
    pub(crate) wait_timeout: Duration,
    pub(crate) create_timeout: Duration,
    pub(crate) recycle_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) operation_timeout: Duration,
    pub(crate) server_statement_timeout: bool,
    pub(crate) recycling: Recycling,
    pub(crate) clock: SharedClock,
    pub(crate) reaper: Option<ReaperConfig>,
    pub(crate) max_value_bytes: usize,
    pub(crate) require_server: bool,
}

impl PostgresConfig {
    /// Parse a connection string (`postgres://user@host:port/db` or `host=… user=…`).
    ///
    /// - an unparsable string is a [`Config`](layercake_core::ErrorKind::Config) error.
    ///
    /// ```
    /// use layercake_postgres::{PostgresConfig, TableKind};
    /// let cfg = PostgresConfig::new("postgres://postgres@127.0.0.1:5432/test")
    ///     .unwrap()
    ///     .with_table("app", "cache")
    ///     .with_table_kind(TableKind::Unlogged);
    /// assert_eq!(cfg.table_name(), ("app", "cache"));
    /// ```
    pub fn new(connection_string: &str) -> Result<PostgresConfig> {
        let pg = tokio_postgres::Config::from_str(connection_string)
            .map_err(|e| error::config(format!("invalid PostgreSQL connection string: {e}")))?;
        Ok(Self::from_pg_config(pg))
    }

    /// Use an already built tokio-postgres configuration.
    pub fn from_pg_config(pg: tokio_postgres::Config) -> PostgresConfig {
        PostgresConfig {
            pg,
            schema: "layercake".to_owned(),
            table: "cache".to_owned(),
            table_kind: TableKind::Logged,
            pool_max_size: 16,
            wait_timeout: Duration::from_millis(500),
            create_timeout: Duration::from_secs(1),
            recycle_timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(1),
            operation_timeout: Duration::from_secs(1),
            server_statement_timeout: true,
            recycling: Recycling::default(),
            clock: system_clock(),
            reaper: Some(ReaperConfig::default()),
            max_value_bytes: 256 * 1024 * 1024,
            require_server: false,
        }
    }

    /// Schema and table names (any text without control characters; always quoted). The
    /// schema is at most 63 bytes, the table at most [`MAX_TABLE_NAME_LEN`]; checked when the
    /// backend connects.
    pub fn with_table(mut self, schema: impl Into<String>, table: impl Into<String>) -> Self {
        self.schema = schema.into();
        self.table = table.into();
        self
    }

    /// Logged (default) or unlogged table; applies when the table is created.
    pub fn with_table_kind(mut self, kind: TableKind) -> Self {
        self.table_kind = kind;
        self
    }

    /// Most connections in the pool (at least 1).
    pub fn with_pool_max_size(mut self, n: usize) -> Self {
        self.pool_max_size = n.max(1);
        self
    }

    /// Pool timeouts: waiting for a free connection, opening one, checking one.
    pub fn with_pool_timeouts(
        mut self,
        wait: Duration,
        create: Duration,
        recycle: Duration,
    ) -> Self {
        self.wait_timeout = wait;
        self.create_timeout = create;
        self.recycle_timeout = recycle;
        self
    }

    /// Timeout of TCP connect plus the start-up handshake.
    pub fn with_connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Timeout of each operation, checkout included.
    pub fn with_operation_timeout(mut self, d: Duration) -> Self {
        self.operation_timeout = d;
        self
    }

    /// Whether each connection also sets the server's `statement_timeout` to the operation
    /// timeout (so the server stops work the client gave up on). Default on.
    pub fn with_server_statement_timeout(mut self, on: bool) -> Self {
        self.server_statement_timeout = on;
        self
    }

    /// How pooled connections are checked before use.
    pub fn with_recycling(mut self, r: Recycling) -> Self {
        self.recycling = r;
        self
    }

    /// The clock that judges expiry (a `ManualClock` in tests).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The reaper, or `None` to run none (another instance, or `pg_cron`, reaps).
    pub fn with_reaper(mut self, reaper: Option<ReaperConfig>) -> Self {
        self.reaper = reaper;
        self
    }

    /// Whether [`connect`](crate::PostgresBackend::connect) fails when PostgreSQL cannot be
    /// reached (`true`), or returns a backend that sets up its table in the background once
    /// the server answers and fails every operation with `Unavailable` until then (`false`,
    /// the default), so a service starts while PostgreSQL is down and a cache's circuit
    /// breaker skips the tier meanwhile. A server that answers and refuses (a database that
    /// does not exist, wrong credentials) fails `connect` either way.
    pub fn with_require_server(mut self, on: bool) -> Self {
        self.require_server = on;
        self
    }

    /// The largest envelope accepted by `set`.
    pub fn with_max_value_bytes(mut self, n: usize) -> Self {
        self.max_value_bytes = n;
        self
    }

    /// `(schema, table)`.
    pub fn table_name(&self) -> (&str, &str) {
        (&self.schema, &self.table)
    }

    /// The tokio-postgres configuration.
    pub fn pg_config(&self) -> &tokio_postgres::Config {
        &self.pg
    }

    pub(crate) fn validate(&self) -> Result<()> {
        ident::validate("schema", &self.schema, ident::MAX_IDENT_LEN)?;
        ident::validate("table", &self.table, MAX_TABLE_NAME_LEN)?;
        if self.operation_timeout.is_zero() {
            return Err(error::config("the operation timeout is zero".into()));
        }
        if let Some(r) = self.reaper
            && (r.batch_size == 0 || r.interval.is_zero())
        {
            return Err(error::config(
                "the reaper needs a non-zero interval and batch size".into(),
            ));
        }
        Ok(())
    }

    /// The tokio-postgres configuration with the connect timeout and, when enabled, the
    /// server-side `statement_timeout` added.
    pub(crate) fn effective_pg(&self) -> tokio_postgres::Config {
        let mut pg = self.pg.clone();
        pg.connect_timeout(self.connect_timeout);
        if pg.get_application_name().is_none() {
            pg.application_name("layercake");
        }
        if self.server_statement_timeout {
            let ms = self.operation_timeout.as_millis().max(1);
            let opt = format!("-c statement_timeout={ms}");
            let options = match pg.get_options() {
                Some(o) if !o.is_empty() => format!("{o} {opt}"),
                _ => opt,
            };
            pg.options(options);
        }
        pg
    }
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("pg", &self.pg)
            .field("schema", &self.schema)
            .field("table", &self.table)
            .field("table_kind", &self.table_kind)
            .field("pool_max_size", &self.pool_max_size)
            .field("wait_timeout", &self.wait_timeout)
            .field("create_timeout", &self.create_timeout)
            .field("recycle_timeout", &self.recycle_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .field("server_statement_timeout", &self.server_statement_timeout)
            .field("recycling", &self.recycling)
            .field("clock", &self.clock)
            .field("reaper", &self.reaper)
            .field("max_value_bytes", &self.max_value_bytes)
            .field("require_server", &self.require_server)
            .finish()
    }
}

/// Configuration of a [`PostgresBackplane`](crate::PostgresBackplane).
///
/// | setting | default |
/// |---|---|
/// | channel | `layercake` |
/// | instance id | [`InstanceId::generate`] |
/// | event buffer per subscriber | 1024 |
/// | connect timeout / operation timeout | 1 s / 1 s |
/// | heartbeat on the LISTEN connection | every 5 s |
/// | reconnect backoff | 50 ms doubling to 2 s |
#[derive(Clone)]
#[non_exhaustive]
pub struct PostgresBackplaneConfig {
    pub(crate) pg: tokio_postgres::Config,
    pub(crate) channel: String,
    pub(crate) instance: InstanceId,
    pub(crate) capacity: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) operation_timeout: Duration,
    pub(crate) heartbeat: Duration,
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) require_server: bool,
}

impl PostgresBackplaneConfig {
    /// Parse a connection string.
    pub fn new(connection_string: &str) -> Result<Self> {
        let pg = tokio_postgres::Config::from_str(connection_string)
            .map_err(|e| error::config(format!("invalid PostgreSQL connection string: {e}")))?;
        Ok(Self::from_pg_config(pg))
    }

    /// Use an already built tokio-postgres configuration.
    pub fn from_pg_config(pg: tokio_postgres::Config) -> Self {
        PostgresBackplaneConfig {
            pg,
            channel: "layercake".to_owned(),
            instance: InstanceId::generate(),
            capacity: 1024,
            connect_timeout: Duration::from_secs(1),
            operation_timeout: Duration::from_secs(1),
            heartbeat: Duration::from_secs(5),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            require_server: false,
        }
    }

    /// The NOTIFY channel (1..=63 bytes, no control characters; case-sensitive).
    pub fn with_channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = channel.into();
        self
    }

    /// This instance's id (the composer passes its own).
    pub fn with_instance(mut self, id: InstanceId) -> Self {
        self.instance = id;
        self
    }

    /// Events buffered per subscriber before it lags.
    pub fn with_capacity(mut self, n: usize) -> Self {
        self.capacity = n.max(1);
        self
    }

    /// Connect and operation (publish, LISTEN, heartbeat) timeouts.
    pub fn with_timeouts(mut self, connect: Duration, operation: Duration) -> Self {
        self.connect_timeout = connect;
        self.operation_timeout = operation;
        self
    }

    /// How often the LISTEN connection is checked with an empty query (so a silently dead
    /// connection is noticed).
    pub fn with_heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every;
        self
    }

    /// Reconnect backoff: first delay and cap (doubling in between).
    pub fn with_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min;
        self.backoff_max = max.max(min);
        self
    }

    /// Whether [`connect`](crate::PostgresBackplane::connect) fails when PostgreSQL cannot be
    /// reached (`true`), or starts disconnected and LISTENs once the server answers
    /// (`false`, the default; it then sends [`BackplaneEvent::Reconnected`](layercake_core::backplane::BackplaneEvent::Reconnected)). A server that
    /// answers and refuses (a database that does not exist, wrong credentials) fails
    /// `connect` either way.
    pub fn with_require_server(mut self, on: bool) -> Self {
        self.require_server = on;
        self
    }

    pub(crate) fn effective_pg(&self) -> tokio_postgres::Config {
        let mut pg = self.pg.clone();
        pg.connect_timeout(self.connect_timeout);
        if pg.get_application_name().is_none() {
            pg.application_name("layercake-backplane");
        }
        pg
    }
}

impl fmt::Debug for PostgresBackplaneConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresBackplaneConfig")
            .field("pg", &self.pg)
            .field("channel", &self.channel)
            .field("instance", &self.instance)
            .field("capacity", &self.capacity)
            .field("connect_timeout", &self.connect_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .field("heartbeat", &self.heartbeat)
            .field("require_server", &self.require_server)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_validates_and_hides_the_password() {
        let c = PostgresConfig::new("postgres://u:s3cret@db:6000/x").unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!(c.validate().is_ok());
        let pg = c.effective_pg();
        assert_eq!(pg.get_options(), Some("-c statement_timeout=1000"));
        assert_eq!(pg.get_connect_timeout(), Some(&Duration::from_secs(1)));
        assert!(PostgresConfig::new("postgres://[::1").is_err());
        let bad = c.clone().with_table("s", "x".repeat(49));
        assert!(bad.validate().is_err());
        let bad = c.with_table("s\0", "t");
        assert!(bad.validate().is_err());
    }
}

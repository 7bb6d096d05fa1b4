//! Start-up schema creation and migration, serialized across instances with advisory locks.

use deadpool_postgres::Object;
use layercake_core::Result;

use crate::config::TableKind;
use crate::error;
use crate::ident::quote;

/// The schema version this crate writes.
pub(crate) const SCHEMA_VERSION: i32 = 2;

/// The name of the tombstone table of `table` (the suffix fits [`MAX_TABLE_NAME_LEN`]'s
/// room).
///
/// [`MAX_TABLE_NAME_LEN`]: crate::MAX_TABLE_NAME_LEN
pub(crate) fn tomb_table(table: &str) -> String {
    format!("{table}_tomb")
}

/// Create the schema, the migrations table and the cache table with its indexes, or bring
/// them up to [`SCHEMA_VERSION`].
///
/// - runs in one transaction holding `pg_advisory_xact_lock` on a hash of the schema name, so
///   concurrent start-ups of several instances (of one table or of several tables in the
///   schema) do not race on `CREATE … IF NOT EXISTS`;
/// - version 1 creates the cache table and its indexes; version 2 adds the tombstone table
///   `<table>_tomb` (kind, selector, version, expiry) of conditional fills;
/// - a table recorded at a newer version than this crate knows is a `Config` error;
/// - an existing table of the other kind (logged / unlogged) is a `Config` error naming the
///   `ALTER TABLE … SET LOGGED | UNLOGGED` that converts it (a rewrite is never done
///   implicitly at start-up).
pub(crate) async fn migrate(
    client: &mut Object,
    schema: &str,
    table: &str,
    kind: TableKind,
) -> Result<()> {
    let op = "schema migration";
    let s = quote(schema);
    let t = format!("{s}.{}", quote(table));
    let tx = client.transaction().await.map_err(|e| error::pg(op, e))?;
    // Start-up DDL may wait on other instances' migrations and catalog locks: the server-side
    // per-statement timeout (set per connection to the operation timeout) would cancel it, so
    // lift it for this transaction only; the whole migration stays bounded by the client-side
    // start-up timeout.
    tx.batch_execute("SET LOCAL statement_timeout = 0")
        .await
        .map_err(|e| error::pg(op, e))?;
    // One lock per schema, not per table: migrations of two tables of one schema both create
    // the schema and its migrations table, and concurrent `CREATE … IF NOT EXISTS` of the same
    // object can fail with a unique violation in the catalog.
    let lock_key = format!("layercake:{schema}");
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&lock_key],
    )
    .await
    .map_err(|e| error::pg(op, e))?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {s};
         CREATE TABLE IF NOT EXISTS {s}.layercake_migrations (
             table_name text PRIMARY KEY,
             version integer NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now());"
    ))
    .await
    .map_err(|e| error::pg(op, e))?;
    let current: i32 = tx
        .query_opt(
            &format!("SELECT version FROM {s}.layercake_migrations WHERE table_name = $1"),
            &[&table],
        )
        .await
        .map_err(|e| error::pg(op, e))?
        .map(|r| r.try_get::<_, i32>(0))
        .transpose()
        .map_err(|e| error::pg(op, e))?
        .unwrap_or(0);
    if current > SCHEMA_VERSION {
        return Err(error::config(format!(
            "table {schema}.{table} is at schema version {current}, newer than this \
             layercake-postgres ({SCHEMA_VERSION}); upgrade the crate"
        )));
    }
    let unlogged = match kind {
        TableKind::Logged => "",
        TableKind::Unlogged => "UNLOGGED ",
    };
    if current < 1 {
        let tags_idx = quote(&format!("{table}_tags_gin"));
        let exp_idx = quote(&format!("{table}_expires_at"));
        tx.batch_execute(&format!(
            "CREATE {unlogged}TABLE IF NOT EXISTS {t} (
                 key bytea PRIMARY KEY,
                 value bytea NOT NULL,
                 expires_at bigint NOT NULL,
                 tags text[] NOT NULL DEFAULT '{{}}');
             CREATE INDEX IF NOT EXISTS {tags_idx} ON {t} USING gin (tags);
             CREATE INDEX IF NOT EXISTS {exp_idx} ON {t} (expires_at);"
        ))
        .await
        .map_err(|e| error::pg(op, e))?;
    }
    if current < 2 {
        let tomb = format!("{s}.{}", quote(&tomb_table(table)));
        let pk = quote(&format!("{table}_tomb_pk"));
        // kind: 0 key, 1 prefix, 2 tag; version: 8 bytes big-endian (compares as unsigned).
        tx.batch_execute(&format!(
            "CREATE {unlogged}TABLE IF NOT EXISTS {tomb} (
                 kind smallint NOT NULL,
                 sel bytea NOT NULL,
                 version bytea NOT NULL,
                 expires_at bigint NOT NULL,
                 CONSTRAINT {pk} PRIMARY KEY (kind, sel));"
        ))
        .await
        .map_err(|e| error::pg(op, e))?;
    }
    // Future migrations: `if current < 3 { … }`.
    if current < SCHEMA_VERSION {
        tx.execute(
            &format!(
                "INSERT INTO {s}.layercake_migrations (table_name, version) VALUES ($1, $2)
                 ON CONFLICT (table_name) DO UPDATE
                 SET version = EXCLUDED.version, applied_at = now()"
            ),
            &[&table, &SCHEMA_VERSION],
        )
        .await
        .map_err(|e| error::pg(op, e))?;
    }
    let persistence: Option<i8> = tx
        .query_opt(
            "SELECT c.relpersistence FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = $2",
            &[&schema, &table],
        )
        .await
        .map_err(|e| error::pg(op, e))?
        .map(|r| r.try_get::<_, i8>(0))
        .transpose()
        .map_err(|e| error::pg(op, e))?;
    let expected = match kind {
        TableKind::Logged => b'p' as i8,
        TableKind::Unlogged => b'u' as i8,
    };
    match persistence {
        Some(p) if p == expected => {}
        Some(_) => {
            let fix = match kind {
                TableKind::Logged => "LOGGED",
                TableKind::Unlogged => "UNLOGGED",
            };
            return Err(error::config(format!(
                "table {schema}.{table} exists as the other kind than the configured {kind:?}; \
                 convert it with ALTER TABLE {t} SET {fix} (rewrites the table) or change the \
                 configuration"
            )));
        }
        None => {
            return Err(error::config(format!(
                "table {schema}.{table} is recorded as migrated but does not exist; delete its \
                 row from {schema}.layercake_migrations to recreate it"
            )));
        }
    }
    tx.commit().await.map_err(|e| error::pg(op, e))?;
    Ok(())
}

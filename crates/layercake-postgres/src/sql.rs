//! The SQL text of every statement, built once from the quoted table name.
//!
//! Only identifiers are spliced in (through [`ident::quote`](crate::ident::quote)); every
//! value is a bound parameter.

use crate::ident::quote;

/// Statements of one cache table.
#[derive(Debug)]
pub(crate) struct Sql {
    /// `"schema"."table"`.
    pub(crate) table: String,
    pub(crate) get: String,
    pub(crate) get_many: String,
    pub(crate) upsert: String,
    pub(crate) upsert_many: String,
    pub(crate) delete: String,
    pub(crate) delete_if_value: String,
    pub(crate) delete_many: String,
    pub(crate) delete_range: String,
    pub(crate) delete_from: String,
    pub(crate) delete_tag: String,
    pub(crate) keys_range: String,
    pub(crate) keys_from: String,
    pub(crate) clear: String,
    pub(crate) reap: String,
}

impl Sql {
    pub(crate) fn new(schema: &str, table: &str) -> Sql {
        let t = format!("{}.{}", quote(schema), quote(table));
        let set = "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, \
                   expires_at = EXCLUDED.expires_at, tags = EXCLUDED.tags";
        Sql {
            get: format!("SELECT value FROM {t} WHERE key = $1 AND expires_at > $2"),
            get_many: format!(
                "SELECT key, value FROM {t} WHERE key = ANY($1::bytea[]) AND expires_at > $2"
            ),
            upsert: format!(
                "INSERT INTO {t} (key, value, expires_at, tags) VALUES ($1, $2, $3, $4) {set}"
            ),
            // Tags are jagged, so they travel flattened in $4 with a start index ($5) and a
            // count ($6) per row; a slice with lower > upper bound is the empty array.
            upsert_many: format!(
                "INSERT INTO {t} (key, value, expires_at, tags) \
                 SELECT u.k, u.v, u.e, COALESCE(($4::text[])[u.s : u.s + u.n - 1], '{{}}'::text[]) \
                 FROM UNNEST($1::bytea[], $2::bytea[], $3::int8[], $5::int4[], $6::int4[]) \
                 AS u(k, v, e, s, n) {set}"
            ),
            delete: format!("DELETE FROM {t} WHERE key = $1"),
            delete_if_value: format!("DELETE FROM {t} WHERE key = $1 AND value = $2"),
            delete_many: format!("DELETE FROM {t} WHERE key = ANY($1::bytea[])"),
            delete_range: format!("DELETE FROM {t} WHERE key >= $1 AND key < $2"),
            delete_from: format!("DELETE FROM {t} WHERE key >= $1"),
            delete_tag: format!("DELETE FROM {t} WHERE tags @> ARRAY[$1::text]"),
            keys_range: format!(
                "SELECT key FROM {t} WHERE key >= $1 AND key < $2 AND expires_at > $3 LIMIT $4"
            ),
            keys_from: format!("SELECT key FROM {t} WHERE key >= $1 AND expires_at > $2 LIMIT $3"),
            clear: format!("DELETE FROM {t}"),
            // ctid = ANY(ARRAY(…)) plans as a TID scan; SKIP LOCKED lets the reapers of
            // several instances share the work instead of queueing on the same rows.
            reap: format!(
                "DELETE FROM {t} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {t} \
                 WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)) AND expires_at <= $1"
            ),
            table: t,
        }
    }
}
